//! `postern apply -f FILE`: declarative resources from YAML or TOML.
//!
//! Every string value may hold `${VAR}`, replaced by the environment variable `VAR` (an
//! unset variable is an error; `$${` stands for a literal `${`). That keeps secrets such as
//! upstream passwords out of the file: `password: "${SHOP_RW_PASSWORD}"`. A file holding
//! literal passwords must be protected like any other secret.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use postern_core::{ApplyChange, ApplyDocument};
use reqwest::Method;
use serde_json::Value;

use super::conn::ConnArgs;
use super::resources::api;
use super::table::{print_structured, render, Output};
use super::{ClientError, CmdResult};

/// `postern apply`
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// File to apply: `.yaml`/`.yml`, `.toml` or `.json`; `-` reads YAML from stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    /// Output format of the report.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    conn: ConnArgs,
}

/// Runs `postern apply`.
pub async fn run(a: ApplyArgs) -> CmdResult {
    let doc = load(&a.file, &|name| std::env::var(name).ok())?;
    let api = api(&a.conn)?;
    let body = serde_json::to_value(&doc)
        .map_err(|e| ClientError::Failed(format!("cannot encode the document: {e}")))?;
    let v = api
        .call(Method::POST, "/api/v1/apply", &[], Some(&body))
        .await?;
    if a.output != Output::Table {
        print_structured(&v, a.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let changes: Vec<ApplyChange> = serde_json::from_value(v)
        .map_err(|e| ClientError::Failed(format!("unexpected apply answer: {e}")))?;
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                c.kind.to_string(),
                c.name.clone(),
                serde_json::to_value(c.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", render(&["KIND", "NAME", "OUTCOME"], &rows));
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy)]
enum Format {
    Yaml,
    Toml,
    Json,
}

/// Reads, expands and checks an apply file (`-` = YAML on stdin).
pub fn load(
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApplyDocument, ClientError> {
    let (text, format, shown) = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| ClientError::Usage(format!("cannot read stdin: {e}")))?;
        (s, Format::Yaml, "stdin".to_string())
    } else {
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match ext.as_deref() {
            Some("yaml" | "yml") => Format::Yaml,
            Some("toml") => Format::Toml,
            Some("json") => Format::Json,
            _ => {
                return Err(ClientError::Usage(format!(
                    "{}: name the file .yaml, .yml, .toml or .json so its format is known",
                    file.display()
                )))
            }
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", file.display())))?;
        (text, format, file.display().to_string())
    };
    parse(&text, format, &shown, env)
}

fn parse(
    text: &str,
    format: Format,
    shown: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApplyDocument, ClientError> {
    let bad = |e: String| ClientError::Usage(format!("{shown}: {e}"));
    let mut v: Value = match format {
        Format::Yaml => serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?,
        Format::Toml => toml::from_str(text).map_err(|e| bad(e.to_string()))?,
        Format::Json => serde_json::from_str(text).map_err(|e| bad(e.to_string()))?,
    };
    if v.is_null() {
        v = Value::Object(Default::default());
    }
    expand(&mut v, "", env).map_err(bad)?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            bad(e.inner().to_string())
        } else {
            bad(format!("{path}: {}", e.inner()))
        }
    })
}

/// Replaces `${VAR}` in every string of `v`. `at` names the place, for errors.
fn expand(v: &mut Value, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    match v {
        Value::String(s) if s.contains('$') => {
            *s = expand_str(s, at, env)?;
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                expand(x, &format!("{at}[{i}]"), env)?;
            }
        }
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                expand(x, &here, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(format!("{at}: `${{` without a closing `}}`"));
            };
            let name = &after[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "{at}: `${{{name}}}` is not a variable name (letters, digits, _); write `$${{` for a literal `${{`"
                ));
            }
            match env(name) {
                Some(val) => out.push_str(&val),
                None => {
                    return Err(format!(
                        "{at}: environment variable {name} is not set (export it, or write `$${{` for a literal `${{`)"
                    ))
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cret-from-env".into()),
            "HOST" => Some("db.internal".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion() {
        let e = |s: &str| expand_str(s, "x", &env);
        assert_eq!(e("${PW}").unwrap(), "s3cret-from-env");
        assert_eq!(e("a${HOST}:b").unwrap(), "adb.internal:b");
        assert_eq!(e("cost $5 and $${PW}").unwrap(), "cost $5 and ${PW}");
        assert!(e("${NOPE}").unwrap_err().contains("NOPE is not set"));
        assert!(e("${PW").is_err());
        assert!(e("${1X}").is_err());
    }

    const YAML: &str = r#"
datasources:
  - name: shop
    host: ${HOST}
    port: 5432
    database: shop
credentials:
  - name: shop-rw
    datasource: shop
    username: app
    password: ${PW}
users:
  - name: alice
    roles: [dba]
"#;

    #[test]
    fn yaml_and_toml_parse_the_same() {
        let y = parse(YAML, Format::Yaml, "f.yaml", &env).unwrap();
        assert_eq!(y.datasource[0].host, "db.internal");
        assert_eq!(y.credential[0].password.as_deref(), Some("s3cret-from-env"));
        let toml = r#"
[[datasource]]
name = "shop"
host = "${HOST}"
port = 5432
database = "shop"

[[credential]]
name = "shop-rw"
datasource = "shop"
username = "app"
password = "${PW}"

[[user]]
name = "alice"
roles = ["dba"]
"#;
        let t = parse(toml, Format::Toml, "f.toml", &env).unwrap();
        assert_eq!(y, t);
    }

    #[test]
    fn errors_name_the_place() {
        let e = parse(
            "user:\n  - name: a\n    rolez: []\n",
            Format::Yaml,
            "f.yaml",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("user[0]") && e.contains("rolez"), "{e}");
        let e = parse(
            "credential:\n  - {name: c, datasource: d, username: u, password: '${MISSING}'}\n",
            Format::Yaml,
            "f.yaml",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("credential[0].password") && e.contains("MISSING"),
            "{e}"
        );
        assert!(parse("", Format::Yaml, "f.yaml", &env).unwrap() == ApplyDocument::default());
        assert!(matches!(
            load(Path::new("x.txt"), &env),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn shipped_examples_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let all = |_: &str| Some("from-env".to_string());
        let y = load(&root.join("postern-apply.yaml"), &all).unwrap();
        let t = load(&root.join("postern-apply.toml"), &all).unwrap();
        assert_eq!(y, t);
        assert!(!y.datasource.is_empty() && !y.credential.is_empty());
        assert!(!y.role.is_empty() && !y.user.is_empty());
        assert_eq!(y.masking_policy[0].rules[2].function, "partial(0, 4)");
        assert!(y.role.iter().any(|r| r.reveal == ["pii/ssn"]));
        assert_eq!(y.ssh_login[0].name, "web");
        assert!(y.role.iter().any(|r| r.ssh.logins == ["web"]));
    }
}
