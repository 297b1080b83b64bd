//! `postern get` and `postern delete`.

use std::process::ExitCode;

use postern_core::Kind;
use reqwest::Method;
use serde_json::Value;

use super::api::Api;
use super::conn::ConnArgs;
use super::table::{cell, print_structured, render, Output};
use super::{profile, ClientError, CmdResult};

/// `postern get`
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// users, roles, masking-policies, datasources, credentials or ssh-logins (singular works too)
    #[arg(value_parser = parse_kind)]
    kind: Kind,
    /// Show only this one.
    name: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern delete`
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// user, role, masking-policy, datasource or credential
    #[arg(value_parser = parse_kind)]
    kind: Kind,
    /// Name of the resource.
    name: String,
    #[command(flatten)]
    conn: ConnArgs,
}

/// Parses a resource kind for clap.
pub fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| {
        format!(
            "unknown resource kind {s:?}: use users, roles, masking-policies, datasources or \
             credentials"
        )
    })
}

/// A client for the resolved connection settings.
pub fn api(conn: &ConnArgs) -> Result<Api, ClientError> {
    let saved = profile::load()?;
    Api::new(conn.resolve(saved.as_ref())?)
}

/// Path segment of a name (percent-encoded).
pub fn seg(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `postern get KIND [NAME]`
pub async fn get(a: GetArgs) -> CmdResult {
    let api = api(&a.conn)?;
    let mut path = format!("/api/v1/{}", a.kind.plural());
    if let Some(n) = &a.name {
        path = format!("{path}/{}", seg(n));
    }
    let v = api.call(Method::GET, &path, &[], None).await?;
    if a.output != Output::Table {
        print_structured(&v, a.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = match v {
        Value::Array(items) => items,
        one => vec![one],
    };
    print!("{}", kind_table(a.kind, &rows));
    Ok(ExitCode::SUCCESS)
}

/// The table of resources of one kind.
pub fn kind_table(kind: Kind, items: &[Value]) -> String {
    let cols: &[(&str, &str)] = match kind {
        Kind::Datasource => &[
            ("NAME", "name"),
            ("TYPE", "type"),
            ("HOST", "host"),
            ("PORT", "port"),
            ("DATABASE", "database"),
            ("TLS", "tls"),
        ],
        Kind::Credential => &[
            ("NAME", "name"),
            ("DATASOURCE", "datasource"),
            ("USERNAME", "username"),
        ],
        Kind::SshLogin => &[
            ("NAME", "name"),
            ("HOST", "host"),
            ("PORT", "port"),
            ("USER", "user"),
            ("AUTH", "auth"),
            ("HOST KEY", "host_key_pinned"),
        ],
        Kind::MaskingPolicy => &[
            ("NAME", "name"),
            ("PRIORITY", "priority"),
            ("RULES", "rules"),
            ("DESCRIPTION", "description"),
        ],
        Kind::Role => &[
            ("NAME", "name"),
            ("CREDENTIALS", "credentials"),
            ("PERMISSIONS", "permissions"),
            ("MASKING", "masking"),
            ("REVEAL", "reveal"),
            ("DESCRIPTION", "description"),
        ],
        Kind::User => &[
            ("NAME", "name"),
            ("ROLES", "roles"),
            ("DISABLED", "disabled"),
            ("PASSWORD", "has_password"),
        ],
    };
    let headers: Vec<&str> = cols.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| {
            cols.iter()
                .map(|(h, f)| {
                    let v = &it[*f];
                    match (*h, v) {
                        ("PASSWORD", Value::Bool(b)) => if *b { "set" } else { "none" }.into(),
                        ("DISABLED", Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
                        // Masking rules by name (their patterns and functions: `-o yaml`).
                        ("RULES", Value::Array(rules)) => cell(
                            &Value::Array(rules.iter().map(|r| r["name"].clone()).collect()),
                            60,
                        ),
                        _ => cell(v, 60),
                    }
                })
                .collect()
        })
        .collect();
    render(&headers, &rows)
}

/// `postern delete KIND NAME`
pub async fn delete(a: DeleteArgs) -> CmdResult {
    let api = api(&a.conn)?;
    let path = format!("/api/v1/{}/{}", a.kind.plural(), seg(&a.name));
    api.call(Method::DELETE, &path, &[], None).await?;
    println!("deleted {} {}", a.kind, a.name);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_and_segments() {
        let t = kind_table(
            Kind::User,
            &[
                json!({"name": "alice", "roles": ["dba", "ro"], "disabled": false, "has_password": true}),
            ],
        );
        assert_eq!(
            t,
            "NAME   ROLES   DISABLED  PASSWORD\nalice  dba,ro  no        set\n"
        );
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("shop-rw.1"), "shop-rw.1");
        assert!(parse_kind("tables").is_err());
        assert_eq!(parse_kind("mp"), Ok(Kind::MaskingPolicy));

        let t = kind_table(
            Kind::MaskingPolicy,
            &[json!({
                "name": "pii",
                "priority": 10,
                "rules": [
                    {"name": "emails", "on": "*.*.*.*.*email*", "function": "email", "allow_filter": false},
                    {"name": "ssn", "on": "*.*.*.*.ssn", "function": "partial(0, 4)", "allow_filter": false}
                ]
            })],
        );
        assert_eq!(
            t,
            "NAME  PRIORITY  RULES       DESCRIPTION\npii   10        emails,ssn\n"
        );
        let t = kind_table(
            Kind::Role,
            &[
                json!({"name": "dba", "credentials": ["shop-rw"], "masking": ["pii"], "reveal": ["pii/ssn"]}),
                json!({"name": "ro", "credentials": []}),
            ],
        );
        assert_eq!(
            t,
            "NAME  CREDENTIALS  PERMISSIONS  MASKING  REVEAL   DESCRIPTION\n\
             dba   shop-rw                   pii      pii/ssn\n\
             ro\n"
        );
    }
}
