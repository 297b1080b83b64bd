//! Which masking rule covers a column for a user (A4): rules grouped into policies with a
//! priority, REVEAL grants that exempt a user from a rule. Pure; the proxies resolve each
//! output column to its source table column and ask [`rule_for`].

use std::collections::HashSet;

use postern_masking::MaskFn;

use crate::privilege::{ColumnPattern, ColumnRef};

/// One masking rule.
#[derive(Debug, Clone)]
pub struct MaskingRule {
    /// `policy/rule`, as named in REVEAL grants, errors and audit events.
    pub name: String,
    /// The columns it covers.
    pub pattern: ColumnPattern,
    /// What their values become.
    pub function: MaskFn,
    /// Whether the column may appear in WHERE / JOIN / ORDER BY / GROUP BY / HAVING /
    /// window clauses (otherwise filtering on it would leak it by bisection).
    pub allow_filter: bool,
}

impl MaskingRule {
    /// Whether the rule may mask anything for a user on `datasource` / `database` who is
    /// not exempt (`revealed`) from it.
    pub fn applies(&self, revealed: &HashSet<String>, datasource: &str, database: &str) -> bool {
        !revealed.contains(&self.name) && self.pattern.covers_database(datasource, database)
    }
}

/// A named group of rules with a priority (higher wins when several cover a column).
#[derive(Debug, Clone)]
pub struct MaskingPolicy {
    /// Name.
    pub name: String,
    /// Priority.
    pub priority: i32,
    /// Rules, in order: the first that covers a column is the policy's answer.
    pub rules: Vec<MaskingRule>,
}

/// The rule that masks column `c` for a user subject to `policies` who holds REVEAL on the
/// rules named in `revealed`: the first covering rule of the highest-priority policy that
/// covers it, skipping revealed rules (a policy that covers the column only through revealed
/// rules leaves it to lower-priority policies). Ties in priority go to the policy named first
/// alphabetically, so the answer never depends on the order policies were loaded in.
pub fn rule_for<'p>(
    policies: &'p [MaskingPolicy],
    revealed: &HashSet<String>,
    c: &ColumnRef<'_>,
) -> Option<&'p MaskingRule> {
    let mut best: Option<(&MaskingPolicy, &MaskingRule)> = None;
    for p in policies {
        let Some(r) = p
            .rules
            .iter()
            .find(|r| !revealed.contains(&r.name) && r.pattern.matches(c))
        else {
            continue;
        };
        let better = match best {
            None => true,
            Some((b, _)) => {
                p.priority > b.priority || (p.priority == b.priority && p.name < b.name)
            }
        };
        if better {
            best = Some((p, r));
        }
    }
    best.map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(policy: &str, name: &str, pattern: &str, f: &str) -> MaskingRule {
        MaskingRule {
            name: format!("{policy}/{name}"),
            pattern: ColumnPattern::parse(pattern).unwrap(),
            function: MaskFn::parse(f).unwrap(),
            allow_filter: false,
        }
    }

    fn col<'a>(table: &'a str, column: &'a str) -> ColumnRef<'a> {
        ColumnRef {
            datasource: "shop",
            database: "shop",
            schema: "public",
            table,
            column,
        }
    }

    #[test]
    fn priority_patterns_and_reveal() {
        let policies = vec![
            MaskingPolicy {
                name: "pii".into(),
                priority: 10,
                rules: vec![
                    rule("pii", "emails", "*.*.*.*.*email*", "email"),
                    rule("pii", "ssn", "shop.*.public.customers.ssn", "partial(0, 4)"),
                ],
            },
            MaskingPolicy {
                name: "strict".into(),
                priority: 20,
                rules: vec![rule(
                    "strict",
                    "vip-emails",
                    "shop.*.public.vips.email",
                    "null",
                )],
            },
        ];
        let none = HashSet::new();
        let name = |c: ColumnRef<'_>, rev: &HashSet<String>| {
            rule_for(&policies, rev, &c).map(|r| r.name.clone())
        };
        assert_eq!(
            name(col("customers", "email"), &none).as_deref(),
            Some("pii/emails")
        );
        assert_eq!(
            name(col("customers", "work_email_2"), &none).as_deref(),
            Some("pii/emails")
        );
        assert_eq!(
            name(col("customers", "ssn"), &none).as_deref(),
            Some("pii/ssn")
        );
        assert_eq!(name(col("customers", "name"), &none), None);
        // The higher priority wins where both cover the column.
        assert_eq!(
            name(col("vips", "email"), &none).as_deref(),
            Some("strict/vip-emails")
        );
        // REVEAL on the winning rule leaves the column to the next policy…
        let rev: HashSet<String> = ["strict/vip-emails".to_string()].into();
        assert_eq!(
            name(col("vips", "email"), &rev).as_deref(),
            Some("pii/emails")
        );
        // …and REVEAL on every covering rule shows it in clear.
        let all: HashSet<String> =
            ["strict/vip-emails".to_string(), "pii/emails".to_string()].into();
        assert_eq!(name(col("vips", "email"), &all), None);
        // Quoted, case-sensitive names match exactly.
        let p = ColumnPattern::parse("shop.shop.public.\"Customers\".\"EMail\"").unwrap();
        assert!(p.matches(&col("Customers", "EMail")));
        assert!(!p.matches(&col("customers", "email")));
        assert!(ColumnPattern::parse("a.b.c.d.e.f").is_err());
    }
}
