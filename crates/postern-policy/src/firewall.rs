//! The SQL firewall (A3): ordered rules per datasource and role; the first rule whose
//! conditions all hold decides.
//!
//! Conditions look at what the analyser found (DELETE/UPDATE without WHERE, DROP,
//! TRUNCATE, ALTER, DDL, several statements in one message, `OR 1=1` shapes, a trailing
//! `--` comment, functions that reach outside the database, `COPY … PROGRAM`), at the text
//! (a regular expression), at the client address and at the time of day.

use std::net::IpAddr;

use ipnet::IpNet;
use postern_sql::{Analysis, Statement, StatementKind};
use regex::Regex;
use serde::Serialize;
use time::{OffsetDateTime, Weekday};

use crate::builtins::{function_class, FunctionClass};

pub use postern_core::{FirewallAction, FirewallRuleSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Any,
    ModifyWithoutWhere,
    Drop,
    Truncate,
    Alter,
    Ddl,
    MultiStatement,
    Tautology,
    CommentTerminated,
    DangerousFunction,
    CopyProgram,
}

const CONDITIONS: &[(&str, Condition)] = &[
    ("any", Condition::Any),
    ("modify-without-where", Condition::ModifyWithoutWhere),
    ("drop", Condition::Drop),
    ("truncate", Condition::Truncate),
    ("alter", Condition::Alter),
    ("ddl", Condition::Ddl),
    ("multi-statement", Condition::MultiStatement),
    ("tautology", Condition::Tautology),
    ("comment-terminated", Condition::CommentTerminated),
    ("dangerous-function", Condition::DangerousFunction),
    ("copy-program", Condition::CopyProgram),
];

/// A checked rule.
#[derive(Debug, Clone)]
pub struct FirewallRule {
    /// Name.
    pub name: String,
    /// Action.
    pub action: FirewallAction,
    when: Vec<Condition>,
    regex: Option<Regex>,
    datasources: Vec<String>,
    roles: Vec<String>,
    source: Vec<IpNet>,
    /// Minutes after midnight UTC: [from, to).
    hours: Option<(u16, u16)>,
    days: Vec<Weekday>,
}

/// Largest compiled size of a rule's regular expression.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn parse_day(s: &str) -> Option<Weekday> {
    Some(match s.trim().to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

impl FirewallRule {
    /// Checks a rule; errors name the field at fault.
    pub fn compile(spec: &FirewallRuleSpec) -> Result<FirewallRule, String> {
        let at = |field: &str, msg: String| format!("firewall rule {}: {field}: {msg}", spec.name);
        if spec.name.trim().is_empty() {
            return Err("firewall rule without a name".into());
        }
        let mut when = Vec::new();
        for w in &spec.when {
            let c = CONDITIONS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(w.trim()))
                .map(|(_, c)| *c)
                .ok_or_else(|| {
                    at(
                        "when",
                        format!(
                            "unknown condition {w:?}; conditions are {}",
                            CONDITIONS
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            when.push(c);
        }
        if when.is_empty() && spec.regex.is_none() {
            return Err(at(
                "when",
                "give at least one condition (or `any`) or a regex".into(),
            ));
        }
        let regex = match &spec.regex {
            Some(r) => Some(
                regex::RegexBuilder::new(r)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| at("regex", e.to_string()))?,
            ),
            None => None,
        };
        let source = spec
            .source
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| at("source", format!("{s:?} is not an address or CIDR network")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hours = match &spec.hours {
            Some(h) => {
                let (from, to) = h
                    .split_once('-')
                    .and_then(|(a, b)| Some((parse_hhmm(a)?, parse_hhmm(b)?)))
                    .ok_or_else(|| at("hours", format!("{h:?} is not HH:MM-HH:MM")))?;
                Some((from, to))
            }
            None => None,
        };
        let days = spec
            .days
            .iter()
            .map(|d| {
                parse_day(d).ok_or_else(|| at("days", format!("{d:?} is not a day (mon … sun)")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FirewallRule {
            name: spec.name.clone(),
            action: spec.action,
            when,
            regex,
            datasources: spec.datasources.clone(),
            roles: spec.roles.clone(),
            source,
            hours,
            days,
        })
    }
}

/// What the firewall looks at.
pub struct FirewallInput<'a> {
    /// Datasource alias.
    pub datasource: &'a str,
    /// The user's roles.
    pub roles: &'a [String],
    /// The client's address.
    pub client: IpAddr,
    /// Now.
    pub now: OffsetDateTime,
    /// The query text as sent.
    pub text: &'a str,
    /// Its analysis.
    pub analysis: &'a Analysis,
    /// Whether the text ends in a `--` comment
    /// ([`postern_sql::mask::ends_with_line_comment`]).
    pub comment_terminated: bool,
    /// Whose SQL it is (the built-in functions differ).
    pub dialect: postern_core::DatasourceType,
}

/// The rule that decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallVerdict {
    /// Its name.
    pub rule: String,
    /// Its action.
    pub action: FirewallAction,
}

fn holds(c: Condition, i: &FirewallInput<'_>) -> bool {
    let facts = || {
        i.analysis.statements.iter().filter_map(|s| match s {
            Statement::Analysed(f) => Some(f),
            Statement::Unanalysable { .. } => None,
        })
    };
    // What the word scan found in statements the analyser could not read.
    let scanned = || {
        i.analysis.statements.iter().filter_map(|s| match s {
            Statement::Unanalysable { flags, .. } => Some(flags),
            Statement::Analysed(_) => None,
        })
    };
    let class = |func: &postern_sql::ObjectName| match i.dialect {
        postern_core::DatasourceType::Mysql => crate::mysql_builtins::function_class(func),
        postern_core::DatasourceType::Postgres => function_class(func),
    };
    match c {
        Condition::Any => true,
        Condition::ModifyWithoutWhere => facts().any(|f| f.flags.modifies_without_where),
        Condition::Drop => facts().any(|f| f.flags.drops),
        Condition::Truncate => facts().any(|f| f.kind == StatementKind::Truncate),
        Condition::Alter => {
            facts().any(|f| f.kind == StatementKind::Ddl && f.command.starts_with("ALTER"))
        }
        Condition::Ddl => facts().any(|f| f.kind == StatementKind::Ddl),
        Condition::MultiStatement => i.analysis.statements.len() > 1,
        Condition::Tautology => facts().any(|f| f.flags.tautology),
        Condition::CommentTerminated => i.comment_terminated,
        Condition::DangerousFunction => {
            facts().any(|f| {
                f.flags.dynamic_sql
                    || f.flags.copy_program
                    || f.flags.copy_server_file
                    || f.functions
                        .iter()
                        .any(|func| class(func) == FunctionClass::Dangerous)
            }) || scanned().any(|f| f.dynamic_sql || f.copy_program || f.copy_server_file)
        }
        Condition::CopyProgram => {
            facts().any(|f| f.flags.copy_program) || scanned().any(|f| f.copy_program)
        }
    }
}

impl FirewallRule {
    /// Whether the rule's verdict can change with the time of day (so a statement prepared
    /// earlier must be judged again when it runs).
    pub fn depends_on_time(&self) -> bool {
        self.hours.is_some() || !self.days.is_empty()
    }

    fn applies(&self, i: &FirewallInput<'_>) -> bool {
        if !self.datasources.is_empty() && !self.datasources.iter().any(|d| d == i.datasource) {
            return false;
        }
        if !self.roles.is_empty() && !self.roles.iter().any(|r| i.roles.contains(r)) {
            return false;
        }
        if !self.source.is_empty() && !self.source.iter().any(|n| n.contains(&i.client)) {
            return false;
        }
        let utc = i.now.to_offset(time::UtcOffset::UTC);
        if !self.days.is_empty() && !self.days.contains(&utc.weekday()) {
            return false;
        }
        if let Some((from, to)) = self.hours {
            let m = u16::from(utc.hour()) * 60 + u16::from(utc.minute());
            let inside = if from <= to {
                m >= from && m < to
            } else {
                m >= from || m < to
            };
            if !inside {
                return false;
            }
        }
        if let Some(r) = &self.regex {
            if !r.is_match(i.text) {
                return false;
            }
        }
        self.when.iter().all(|c| holds(*c, i))
    }
}

/// The first rule that applies, if any.
pub fn evaluate(rules: &[FirewallRule], input: &FirewallInput<'_>) -> Option<FirewallVerdict> {
    rules
        .iter()
        .find(|r| r.applies(input))
        .map(|r| FirewallVerdict {
            rule: r.name.clone(),
            action: r.action,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_sql::mask::ends_with_line_comment;
    use postern_sql::pg::{analyse, LexSettings};

    fn rule(name: &str, action: FirewallAction, when: &[&str]) -> FirewallRuleSpec {
        FirewallRuleSpec {
            name: name.into(),
            action,
            when: when.iter().map(|s| s.to_string()).collect(),
            regex: None,
            datasources: vec![],
            roles: vec![],
            source: vec![],
            hours: None,
            days: vec![],
        }
    }

    fn compile(specs: &[FirewallRuleSpec]) -> Vec<FirewallRule> {
        specs
            .iter()
            .map(|s| FirewallRule::compile(s).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    /// Monday 2026-11-23 10:30 UTC.
    fn monday_morning() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_429_800).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn verdict(
        rules: &[FirewallRule],
        sql: &str,
        roles: &[&str],
        client: &str,
        now: OffsetDateTime,
    ) -> Option<String> {
        let a = analyse(sql, LexSettings::default()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let input = FirewallInput {
            datasource: "shop",
            roles: &roles,
            client: client.parse().unwrap_or(IpAddr::from([127, 0, 0, 1])),
            now,
            text: sql,
            analysis: &a,
            comment_terminated: ends_with_line_comment(sql),
            dialect: postern_core::DatasourceType::Postgres,
        };
        evaluate(rules, &input).map(|v| v.rule)
    }

    #[test]
    fn each_condition_fires_and_stays_silent_on_a_near_miss() {
        use FirewallAction::Deny;
        let cases: &[(&str, &str, &str)] = &[
            (
                "modify-without-where",
                "delete from orders",
                "delete from orders where id = 1",
            ),
            (
                "modify-without-where",
                "update orders set x = 1",
                "update orders set x = 1 where id = 2",
            ),
            ("drop", "drop table orders", "create table orders2 (a int)"),
            (
                "truncate",
                "truncate orders",
                "delete from orders where true",
            ),
            (
                "alter",
                "alter table orders add column y int",
                "create index on orders (x)",
            ),
            ("ddl", "create index on orders (x)", "select * from orders"),
            ("multi-statement", "select 1; select 2", "select 1;"),
            (
                "tautology",
                "select * from users where name = '' or 1=1",
                "select * from users where 1=1 and name = ''",
            ),
            (
                "comment-terminated",
                "select * from users where name = 'x' --' and pw = 'y'",
                "select * from users /* tag */",
            ),
            (
                "dangerous-function",
                "select pg_read_file('/etc/passwd')",
                "select upper('x')",
            ),
            (
                "dangerous-function",
                "select * from dblink('h', 'select 1') t(a int)",
                "select * from orders",
            ),
            (
                "copy-program",
                "copy orders to program 'gzip > /tmp/x'",
                "copy orders to stdout",
            ),
        ];
        for (cond, hit, miss) in cases {
            let rules = compile(&[rule("r", Deny, &[cond])]);
            let now = monday_morning();
            assert_eq!(
                verdict(&rules, hit, &[], "10.0.0.1", now).as_deref(),
                Some("r"),
                "{cond}: {hit}"
            );
            assert_eq!(
                verdict(&rules, miss, &[], "10.0.0.1", now),
                None,
                "{cond}: {miss}"
            );
        }
    }

    #[test]
    fn regex_source_time_role_and_order() {
        use FirewallAction::*;
        let mut by_regex = rule("no-salaries", Deny, &[]);
        by_regex.regex = Some("(?i)\\bsalar(y|ies)\\b".into());
        let mut office_only = rule("office-ddl", Allow, &["ddl"]);
        office_only.source = vec!["10.0.0.0/8".into()];
        let mut night = rule("night-writes", AllowAndAlert, &["modify-without-where"]);
        night.hours = Some("22:00-06:00".into());
        let mut weekend = rule("weekend", DenySilently, &["any"]);
        weekend.days = vec!["sat".into(), "sun".into()];
        let mut interns = rule("interns", Deny, &["ddl"]);
        interns.roles = vec!["intern".into()];
        let rules = compile(&[
            by_regex,
            office_only,
            night,
            weekend,
            interns,
            rule("ddl", Deny, &["ddl"]),
        ]);
        let mon = monday_morning();
        assert_eq!(
            verdict(&rules, "select * from Salaries", &[], "1.2.3.4", mon).as_deref(),
            Some("no-salaries")
        );
        assert_eq!(
            verdict(&rules, "select * from salary_bands", &[], "1.2.3.4", mon),
            None
        );
        // First match wins: DDL from the office network is allowed before the later deny.
        assert_eq!(
            verdict(&rules, "create table t (a int)", &[], "10.1.2.3", mon).as_deref(),
            Some("office-ddl")
        );
        assert_eq!(
            verdict(&rules, "create table t (a int)", &[], "192.168.1.1", mon).as_deref(),
            Some("ddl")
        );
        assert_eq!(
            verdict(
                &rules,
                "create table t (a int)",
                &["intern"],
                "192.168.1.1",
                mon
            )
            .as_deref(),
            Some("interns")
        );
        // Hours wrap past midnight.
        let at = |h: u8| mon.replace_hour(h).unwrap_or(mon);
        assert_eq!(
            verdict(&rules, "delete from t", &[], "1.1.1.1", at(23)).as_deref(),
            Some("night-writes")
        );
        assert_eq!(
            verdict(&rules, "delete from t", &[], "1.1.1.1", at(3)).as_deref(),
            Some("night-writes")
        );
        assert_eq!(
            verdict(&rules, "delete from t", &[], "1.1.1.1", at(12)),
            None
        );
        let saturday = mon + time::Duration::days(5);
        assert_eq!(
            verdict(&rules, "select 1", &[], "1.1.1.1", saturday).as_deref(),
            Some("weekend")
        );
        assert_eq!(verdict(&rules, "select 1", &[], "1.1.1.1", mon), None);
    }

    #[test]
    fn bad_rules_name_the_field() {
        let mut r = rule("x", FirewallAction::Deny, &["dropp"]);
        assert!(FirewallRule::compile(&r)
            .unwrap_err()
            .contains("firewall rule x: when: unknown condition"));
        r.when = vec![];
        assert!(FirewallRule::compile(&r)
            .unwrap_err()
            .contains("at least one condition"));
        r.regex = Some("(".into());
        assert!(FirewallRule::compile(&r).unwrap_err().contains("regex"));
        let mut r = rule("y", FirewallAction::Deny, &["any"]);
        r.source = vec!["10.0.0.0/33".into()];
        assert!(FirewallRule::compile(&r).unwrap_err().contains("source"));
        let mut r = rule("z", FirewallAction::Deny, &["any"]);
        r.hours = Some("25:00-26:00".into());
        assert!(FirewallRule::compile(&r).unwrap_err().contains("hours"));
        let mut r = rule("w", FirewallAction::Deny, &["any"]);
        r.days = vec!["funday".into()];
        assert!(FirewallRule::compile(&r).unwrap_err().contains("days"));
        let spec: FirewallRuleSpec = serde_json::from_str(
            r#"{"name":"n","action":"allow-and-alert","when":["tautology"],"source":["127.0.0.1"]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(FirewallRule::compile(&spec).is_ok());
    }
}
