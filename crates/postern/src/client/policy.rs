//! `postern policy check`: what Postern decides for a user's SQL, without running it.

use std::process::ExitCode;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::conn::ConnArgs;
use super::resources::api;
use super::{ClientError, CmdResult};

/// `postern policy …`
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the decision and its reason for each statement of SQL a user would send to a
    /// datasource, and which result columns masking rules would mask (read from the
    /// upstream catalog with the user's credential). Nothing of the SQL is run. Exits 0
    /// when every statement is allowed, 1 otherwise.
    Check(CheckArgs),
}

/// `postern policy check`
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The Postern user.
    #[arg(long)]
    user: String,
    /// The datasource alias.
    #[arg(long)]
    datasource: String,
    /// The session's search_path, comma-separated (default: public).
    #[arg(long, value_name = "SCHEMAS")]
    search_path: Option<String>,
    /// The client address firewall rules should see (default 127.0.0.1).
    #[arg(long, value_name = "IP")]
    client: Option<std::net::IpAddr>,
    /// Print the server's full answer (analysis included) as JSON.
    #[arg(long)]
    json: bool,
    /// The SQL (one or more statements); `-` reads it from standard input.
    sql: String,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Deserialize)]
struct Verdict {
    statement: String,
    decision: Value,
    #[serde(default)]
    masked: Vec<PlannedMask>,
}

#[derive(Deserialize)]
struct PlannedMask {
    column: String,
    rule: String,
    function: String,
}

#[derive(Deserialize)]
struct MaskingStatus {
    rules: Vec<String>,
    #[serde(default)]
    unavailable: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    mode: String,
    #[serde(default)]
    firewall: Option<FirewallVerdict>,
    #[serde(default)]
    masking: Option<MaskingStatus>,
    statements: Vec<Verdict>,
}

#[derive(Deserialize)]
struct FirewallVerdict {
    rule: String,
    action: String,
}

/// Runs a policy command.
pub async fn run(cmd: PolicyCommand) -> CmdResult {
    match cmd {
        PolicyCommand::Check(a) => check(a).await,
    }
}

async fn check(a: CheckArgs) -> CmdResult {
    let sql = if a.sql == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| ClientError::Usage(format!("cannot read the SQL from stdin: {e}")))?;
        s
    } else {
        a.sql.clone()
    };
    let mut body = json!({ "user": a.user, "datasource": a.datasource, "sql": sql });
    if let Some(p) = &a.search_path {
        body["search_path"] = json!(p
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>());
    }
    if let Some(ip) = a.client {
        body["client"] = json!(ip.to_string());
    }
    let api = api(&a.conn)?;
    let v = api
        .call(Method::POST, "/api/v1/policy/check", &[], Some(&body))
        .await?;
    let allowed = v.get("allowed").and_then(Value::as_bool).unwrap_or(false);
    if a.json {
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| ClientError::Failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        let ans: Answer = serde_json::from_value(v)
            .map_err(|e| ClientError::Failed(format!("unexpected answer from the server: {e}")))?;
        println!("mode: {}", ans.mode);
        if let Some(fw) = &ans.firewall {
            println!("firewall rule {} applies: {}", fw.rule, fw.action);
        }
        if let Some(m) = &ans.masking {
            println!("masking rules: {}", m.rules.join(", "));
            if let Some(why) = &m.unavailable {
                println!("masking plan unavailable (decisions below ignore masking): {why}");
            }
        }
        for s in &ans.statements {
            let verdict = match s.decision.get("decision").and_then(Value::as_str) {
                Some("allow") => match s.decision.get("note").and_then(Value::as_str) {
                    Some(n) => format!("ALLOW ({n})"),
                    None => "ALLOW".to_string(),
                },
                _ => format!(
                    "DENY: {}",
                    s.decision
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("(no reason given)")
                ),
            };
            println!("{verdict}\n    {}", s.statement);
            for m in &s.masked {
                println!(
                    "    masks result column {} with {} (rule {})",
                    m.column, m.function, m.rule
                );
            }
        }
        if ans.statements.is_empty() {
            println!("(no statements)");
        }
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
