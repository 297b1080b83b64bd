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
}
