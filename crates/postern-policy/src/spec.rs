//! Turning a role's stored privilege specs and modes into decision inputs, with errors that
//! name the offending entry.

use postern_core::{PrivilegeSpec, RoleSpec};

use crate::decide::Mode;
use crate::privilege::{Effect, ObjectPattern, Privilege, PrivilegeRule};

/// The rules of one role, checked. Errors read `privileges[1].allow: …`.
pub fn compile_rules(role: &str, specs: &[PrivilegeSpec]) -> Result<Vec<PrivilegeRule>, String> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let at = |field: &str, msg: String| format!("privileges[{i}].{field}: {msg}");
        let pattern = ObjectPattern::parse(&spec.on).map_err(|e| at("on", e.to_string()))?;
        if spec.allow.is_empty() == spec.deny.is_empty() {
            return Err(format!(
                "privileges[{i}]: give either `allow` or `deny` (a list of privileges), not {}",
                if spec.allow.is_empty() {
                    "neither"
                } else {
                    "both"
                }
            ));
        }
        for (effect, field, names) in [
            (Effect::Allow, "allow", &spec.allow),
            (Effect::Deny, "deny", &spec.deny),
        ] {
            if names.is_empty() {
                continue;
            }
            let mut privileges = Vec::new();
            for n in names {
                if n.trim().eq_ignore_ascii_case("all") {
                    privileges.extend(Privilege::ALL);
                    continue;
                }
                privileges.push(Privilege::parse(n).ok_or_else(|| {
                    at(
                        field,
                        format!(
                            "unknown privilege {n:?}; privileges are ALL, {}",
                            Privilege::ALL.map(Privilege::name).join(", ")
                        ),
                    )
                })?);
            }
            privileges.sort();
            privileges.dedup();
            out.push(PrivilegeRule {
                effect,
                privileges,
                pattern: pattern.clone(),
                role: role.to_string(),
            });
        }
    }
    Ok(out)
}

/// Parses a mode name as written in admin files (`passthrough`, `masked`, `protected`;
/// the long names `MASKED PASSTHROUGH` and `PROTECTED PASSTHROUGH` too).
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    let norm = s.trim().to_ascii_lowercase().replace(['_', '-'], " ");
    match norm
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .as_str()
    {
        "passthrough" => Ok(Mode::Passthrough),
        "masked" | "masked passthrough" => Ok(Mode::Masked),
        "protected" | "protected passthrough" => Ok(Mode::Protected),
        _ => Err(format!(
            "unknown mode {s:?}; modes are passthrough, masked, protected"
        )),
    }
}

/// Checks a role's privileges and modes as an admin wrote them.
pub fn validate_role(r: &RoleSpec) -> Result<(), String> {
    compile_rules(&r.name, &r.privileges)?;
    for (ds, m) in &r.modes {
        parse_mode(m).map_err(|e| format!("modes.{ds}: {e}"))?;
    }
    Ok(())
}

/// Checks and compiles a masking policy as an admin wrote it. Errors read
/// `rules[1].function: …`.
pub fn compile_masking_policy(
    spec: &postern_core::MaskingPolicySpec,
) -> Result<crate::masking::MaskingPolicy, String> {
    let mut rules = Vec::with_capacity(spec.rules.len());
    let mut seen = std::collections::HashSet::new();
    for (i, r) in spec.rules.iter().enumerate() {
        let at = |field: &str, msg: String| format!("rules[{i}].{field}: {msg}");
        if !postern_core::names::valid_name(&r.name) {
            return Err(at(
                "name",
                format!(
                    "{:?} is invalid: use 1 to 63 ASCII letters, digits, '_', '-' or '.', \
                     starting with a letter or digit",
                    r.name
                ),
            ));
        }
        if !seen.insert(r.name.as_str()) {
            return Err(at(
                "name",
                format!(
                    "{} appears twice in the policy; keep one rule of that name",
                    r.name
                ),
            ));
        }
        let pattern =
            crate::privilege::ColumnPattern::parse(&r.on).map_err(|e| at("on", e.to_string()))?;
        let function = postern_masking::MaskFn::parse(&r.function)
            .map_err(|e| at("function", e.to_string()))?;
        rules.push(crate::masking::MaskingRule {
            name: format!("{}/{}", spec.name, r.name),
            pattern,
            function,
            allow_filter: r.allow_filter,
        });
    }
    Ok(crate::masking::MaskingPolicy {
        name: spec.name.clone(),
        priority: spec.priority,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(allow: &[&str], deny: &[&str], on: &str) -> PrivilegeSpec {
        PrivilegeSpec {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
            on: on.into(),
        }
    }

    #[test]
    fn compiles_and_reports_the_entry_at_fault() {
        let rules = compile_rules(
            "analyst",
            &[
                spec(&["select", "INSERT"], &[], "shop.shop.public.*"),
                spec(&[], &["all"], "shop.*.*.salaries"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].privileges, [Privilege::Select, Privilege::Insert]);
        assert_eq!(rules[1].effect, Effect::Deny);
        assert_eq!(rules[1].privileges.len(), Privilege::ALL.len());
        let e = compile_rules(
            "r",
            &[spec(&["select"], &[], "a"), spec(&["selec"], &[], "a")],
        )
        .unwrap_err();
        assert!(
            e.starts_with("privileges[1].allow: unknown privilege \"selec\""),
            "{e}"
        );
        let e = compile_rules("r", &[spec(&["select"], &["delete"], "a")]).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = compile_rules("r", &[spec(&[], &[], "a")]).unwrap_err();
        assert!(e.contains("not neither"), "{e}");
        let e = compile_rules("r", &[spec(&["select"], &[], "a..b")]).unwrap_err();
        assert!(e.starts_with("privileges[0].on:"), "{e}");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("masked"), Ok(Mode::Masked));
        assert_eq!(parse_mode("PROTECTED PASSTHROUGH"), Ok(Mode::Protected));
        assert_eq!(parse_mode("masked_passthrough"), Ok(Mode::Masked));
        assert_eq!(parse_mode("Passthrough"), Ok(Mode::Passthrough));
        assert!(parse_mode("open").is_err());
    }

    #[test]
    fn masking_policies_compile_and_report_the_rule_at_fault() {
        use postern_core::{MaskingPolicySpec, MaskingRuleSpec};
        let rule = |name: &str, on: &str, function: &str| MaskingRuleSpec {
            name: name.into(),
            on: on.into(),
            function: function.into(),
            allow_filter: false,
        };
        let mut p = MaskingPolicySpec {
            name: "pii".into(),
            priority: 10,
            rules: vec![
                rule("emails", "*.*.*.*.*email*", "email"),
                rule("ssn", "shop.*.public.customers.ssn", "partial(0, 4)"),
            ],
            ..Default::default()
        };
        let compiled = compile_masking_policy(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(compiled.priority, 10);
        let names: Vec<&str> = compiled.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["pii/emails", "pii/ssn"]);

        p.rules[1].function = "scramble".into();
        let e = compile_masking_policy(&p).unwrap_err();
        assert!(e.starts_with("rules[1].function: "), "{e}");
        p.rules[1] = rule("emails", "*.*.*.*.x", "null");
        let e = compile_masking_policy(&p).unwrap_err();
        assert!(e.starts_with("rules[1].name: emails appears twice"), "{e}");
        p.rules[1] = rule("x", "shop..t.c", "null");
        let e = compile_masking_policy(&p).unwrap_err();
        assert!(e.starts_with("rules[1].on: "), "{e}");
        p.rules[1] = rule("a b", "*.*.*.*.*", "null");
        let e = compile_masking_policy(&p).unwrap_err();
        assert!(e.starts_with("rules[1].name: \"a b\" is invalid"), "{e}");
    }
}
