//! `postern audit search` and `postern audit verify`.

use std::process::ExitCode;
use std::time::Duration;

use postern_audit::AuditEvent;
use serde::Deserialize;

use super::conn::ConnArgs;
use super::resources::api;
use super::table::{render, truncate};
use super::{ClientError, CmdResult};

/// `postern audit …`
#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Search events, newest first (needs the admin or audit-read permission).
    Search(SearchArgs),
    /// Verify the hash chain over the whole stored trail; exits 1 when it is broken.
    Verify(VerifyArgs),
}

/// `postern audit search`
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Only this Postern user's events.
    #[arg(long)]
    user: Option<String>,
    /// Only events on this datasource.
    #[arg(long)]
    datasource: Option<String>,
    /// Only this kind: login_success, login_failure, session_open, session_close,
    /// statement, admin_change, server_start.
    #[arg(long)]
    kind: Option<String>,
    /// From this time on: RFC 3339 (2024-05-01T12:00:00Z), a date, or an age such as 1h, 30m, 2d.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Most events shown (server default 100, at most 10000).
    #[arg(long)]
    limit: Option<u32>,
    /// Print the events as a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern audit verify`
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Deserialize)]
struct VerifyReport {
    ok: bool,
    events: u64,
    head_seq: u64,
    #[serde(default)]
    error: Option<String>,
}

/// Runs an audit command.
pub async fn run(cmd: AuditCommand) -> CmdResult {
    match cmd {
        AuditCommand::Search(a) => search(a).await,
        AuditCommand::Verify(a) => verify(a).await,
    }
}

/// A time as the server takes it: an age (`1h`, `30m`, `1h30m`, `2d`) becomes the RFC 3339
/// UTC time that long ago; anything else is passed on for the server to check.
pub fn resolve_time(s: &str, now: time::OffsetDateTime) -> Result<String, ClientError> {
    let s = s.trim();
    let looks_relative = s.chars().next().is_some_and(|c| c.is_ascii_digit())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphabetic())
        && !s.contains(['-', ':']);
    if !looks_relative {
        return Ok(s.to_string());
    }
    let d: Duration = humantime::parse_duration(s).map_err(|e| {
        ClientError::Usage(format!(
            "{s:?} is not an age like 1h, 30m or 2d ({e}), nor an RFC 3339 time"
        ))
    })?;
    let at = time::Duration::try_from(d)
        .ok()
        .and_then(|d| now.checked_sub(d))
        .ok_or_else(|| ClientError::Usage(format!("{s:?} reaches too far back")))?;
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| ClientError::Usage(format!("cannot format {s:?}: {e}")))
}

async fn search(a: SearchArgs) -> CmdResult {
    let now = time::OffsetDateTime::now_utc();
    let mut q: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("user", &a.user),
        ("datasource", &a.datasource),
        ("kind", &a.kind),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    if let Some(s) = &a.since {
        q.push(("since", resolve_time(s, now)?));
    }
    if let Some(s) = &a.until {
        q.push(("until", resolve_time(s, now)?));
    }
    if let Some(l) = a.limit {
        q.push(("limit", l.to_string()));
    }
    let api = api(&a.conn)?;
    let events: Vec<AuditEvent> = api.get("/api/v1/audit", &q).await?;
    if a.json {
        let text = serde_json::to_string_pretty(&events)
            .map_err(|e| ClientError::Failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", events_table(&events));
    Ok(ExitCode::SUCCESS)
}

/// TIME KIND USER DATASOURCE DETAIL, one line per event.
pub fn events_table(events: &[AuditEvent]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let time = match e.ts.get(..19) {
                Some(t) => format!("{t}Z"),
                None => e.ts.clone(),
            };
            vec![
                time,
                e.kind.as_str().to_string(),
                e.user.as_deref().unwrap_or("").to_string(),
                e.datasource.as_deref().unwrap_or("").to_string(),
                truncate(&one_line(&detail(e)), 80),
            ]
        })
        .collect();
    render(
        &["TIME", "KIND", "USER", "DATASOURCE", "STATEMENT/ERROR"],
        &rows,
    )
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The most telling text of an event: its error, its statement (in clear when the server
/// sent the clear form), or its detail.
fn detail(e: &AuditEvent) -> String {
    if let Some(err) = &e.error {
        return format!("ERROR: {err}");
    }
    // The server sends the clear form only to readers allowed to see it.
    if let Some(s) = e.statement_clear.as_ref().or(e.statement.as_ref()) {
        return s.to_string();
    }
    match &e.detail {
        Some(d) => match (d.get("action"), d.get("kind"), d.get("name")) {
            (Some(a), Some(k), Some(n)) => format!(
                "{} {} {}",
                a.as_str().unwrap_or_default(),
                k.as_str().unwrap_or_default(),
                n.as_str().unwrap_or_default()
            ),
            _ => d.to_string(),
        },
        None => String::new(),
    }
}

async fn verify(a: VerifyArgs) -> CmdResult {
    let api = api(&a.conn)?;
    let r: VerifyReport = api.get("/api/v1/audit/verify", &[]).await?;
    if r.ok {
        println!(
            "audit chain OK: {} events verified (last seq {})",
            r.events, r.head_seq
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Err(ClientError::Failed(format!(
            "audit chain BROKEN after seq {}: {} ({} events stored)",
            r.head_seq,
            r.error.unwrap_or_default(),
            r.events
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_audit::EventKind;
    use time::macros::datetime;

    #[test]
    fn relative_times() {
        let now = datetime!(2024-05-01 12:00:00.123 UTC);
        assert_eq!(resolve_time("1h", now).unwrap(), "2024-05-01T11:00:00Z");
        assert_eq!(resolve_time("30m", now).unwrap(), "2024-05-01T11:30:00Z");
        assert_eq!(resolve_time("2d", now).unwrap(), "2024-04-29T12:00:00Z");
        assert_eq!(resolve_time("1h30m", now).unwrap(), "2024-05-01T10:30:00Z");
        assert_eq!(
            resolve_time("2024-04-01T00:00:00Z", now).unwrap(),
            "2024-04-01T00:00:00Z"
        );
        assert_eq!(resolve_time("2024-04-01", now).unwrap(), "2024-04-01");
        assert!(resolve_time("5 fortnights", now).is_err());
    }

    #[test]
    fn table_shows_the_telling_part() {
        let mut a = AuditEvent::new(EventKind::Statement);
        a.ts = "2024-05-01T12:00:00.123456Z".into();
        a.user = Some("alice".into());
        a.datasource = Some("shop".into());
        a.statement = Some("select *\n  from orders".into());
        let mut b = AuditEvent::new(EventKind::AdminChange);
        b.ts = "2024-05-01T12:00:01.000000Z".into();
        b.user = Some("admin".into());
        b.detail = Some(serde_json::json!({"action": "create", "kind": "user", "name": "bob"}));
        let mut c = AuditEvent::new(EventKind::LoginFailure);
        c.ts = "2024-05-01T12:00:02.000000Z".into();
        c.error = Some("wrong password".into());
        let t = events_table(&[a, b, c]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("TIME"));
        assert!(lines[1].ends_with("select * from orders"), "{t}");
        assert!(lines[1].starts_with("2024-05-01T12:00:00Z  statement"));
        assert!(lines[2].ends_with("create user bob"));
        assert!(lines[3].ends_with("ERROR: wrong password"));
    }

    #[test]
    fn clear_statement_shown_when_the_server_sent_it() {
        let mut a = AuditEvent::new(EventKind::Statement);
        a.statement = Some("select * from t where id = ?".into());
        assert!(events_table(std::slice::from_ref(&a)).contains("id = ?"));
        a.statement_clear = Some("select * from t where id = 7".into());
        let t = events_table(&[a]);
        assert!(t.contains("id = 7") && !t.contains("id = ?"), "{t}");
    }
}
