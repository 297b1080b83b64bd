//! The audit event schema (documented in `docs/audit-events.md`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A person proved who they are (proxy or API).
    LoginSuccess,
    /// A login attempt was refused (wrong password, unknown user, no grant, bad input).
    LoginFailure,
    /// A proxied session reached its upstream.
    SessionOpen,
    /// A proxied session ended.
    SessionClose,
    /// A statement ran (or failed) on a datasource.
    Statement,
    /// An admin changed a resource.
    AdminChange,
    /// Postern started.
    ServerStart,
    /// Too many failed logins: a user, an address or both are locked for a while.
    Lockout,
    /// A second-factor event: enrolment, reset, an approval asked for, given or refused.
    SecondFactor,
    /// A client certificate was issued to a person (`postern login`) or revoked.
    Certificate,
    /// An SSH channel: a shell, a command, a file transfer, a forwarding — opened, refused
    /// or finished (with its exit status, bytes and recording).
    SshChannel,
    /// A file operation over SSH (scp, sftp): upload, download, remove, rename, …, with the
    /// path and the bytes moved.
    SshFile,
}

impl EventKind {
    /// The snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LoginSuccess => "login_success",
            EventKind::LoginFailure => "login_failure",
            EventKind::SessionOpen => "session_open",
            EventKind::SessionClose => "session_close",
            EventKind::Statement => "statement",
            EventKind::AdminChange => "admin_change",
            EventKind::ServerStart => "server_start",
            EventKind::Lockout => "lockout",
            EventKind::SecondFactor => "second_factor",
            EventKind::Certificate => "certificate",
            EventKind::SshChannel => "ssh_channel",
            EventKind::SshFile => "ssh_file",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// Postern's ruling on a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// It went upstream.
    Allow,
    /// It was refused; the upstream never saw it.
    Deny,
}

/// Which front door the event came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// PostgreSQL wire protocol.
    Postgres,
    /// MySQL wire protocol.
    Mysql,
    /// SSH.
    Ssh,
    /// The HTTPS API / portal.
    Api,
}

/// One audit event. Fields that do not apply are absent from the JSON.
///
/// Session-wide strings are `Arc<str>` so a statement event costs no copies of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, assigned by the writer (0 until then).
    #[serde(default)]
    pub seq: u64,
    /// UTC time, RFC 3339 with microseconds (sorts lexically).
    pub ts: String,
    /// What happened.
    pub kind: EventKind,
    /// Front door.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Postern session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Arc<str>>,
    /// Postern user (the person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Arc<str>>,
    /// Client address `ip:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<Arc<str>>,
    /// Datasource alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<Arc<str>>,
    /// Upstream database account the statement ran as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_user: Option<Arc<str>>,
    /// Statement text (simple query, or the prepared statement an Execute ran), with every
    /// literal replaced by `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<Arc<str>>,
    /// The statement as sent, when it differs from `statement`; literals that may hold a
    /// password stay masked. Shown only to readers with the `view-clear-sql-log`
    /// permission (and admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_clear: Option<Arc<str>>,
    /// Parameter values of a prepared statement's execution, in order (`None`: SQL NULL), as
    /// text; `?` for each when the statement may carry a password. Shown only where
    /// `statement_clear` is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Option<String>>,
    /// Command tags returned (`SELECT 3`, `INSERT 0 1`; several for a multi-statement query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_tag: Option<String>,
    /// Rows returned or affected, summed over the command tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Wall time from the request reaching Postern to its completion, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Error message, when the action failed or was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// SQLSTATE of the error, when it came from or went to a SQL client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// Postern's ruling on a statement, when the session's statements are checked (absent
    /// in PASSTHROUGH mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The rule that decided: `firewall: NAME`, or `ROLE: PATTERN` for a privilege rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why a statement was refused (the full reason, also when the client was told less),
    /// or why it passed unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An allow-and-alert firewall rule let the statement through.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alert: bool,
    /// Result columns whose values were masked, and by which rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<MaskedColumn>,
    /// Extra structured detail (admin changes, counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// Hash of the previous event in the chain (hex), assigned by the writer.
    #[serde(default)]
    pub prev_hash: String,
    /// SHA-256 over this event with `hash` empty (hex), assigned by the writer.
    #[serde(default)]
    pub hash: String,
}

/// A result column whose values Postern masked before they reached the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedColumn {
    /// The column's name in the result (as the server described it).
    pub column: String,
    /// The masking rule (`policy/rule`), with `(computed)` when the value was computed
    /// from masked columns; `opaque result` for a function Postern cannot see into.
    pub rule: String,
    /// The masking function applied (`email`, `partial(0, 4)`, `full`, …).
    pub function: String,
}

/// The current UTC time in the event format.
pub fn now_ts() -> String {
    format_ts(time::OffsetDateTime::now_utc())
}

/// A time in the event format: UTC, RFC 3339 with microseconds, so that text order is time
/// order (the store compares these strings).
pub fn format_ts(t: time::OffsetDateTime) -> String {
    // Written digit by digit: `format!` here was a visible share of the per-statement cost.
    let t = t.to_offset(time::UtcOffset::UTC);
    let (year, month, day) = t.to_calendar_date();
    let (hour, minute, second, micro) = t.to_hms_micro();
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    fn put(b: &mut [u8], mut v: u32) {
        for d in b.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    // Years outside 0..=9999 cannot come from a clock; clamp rather than break the format.
    put(&mut b[0..4], year.clamp(0, 9999) as u32);
    put(&mut b[5..7], u32::from(u8::from(month)));
    put(&mut b[8..10], u32::from(day));
    put(&mut b[11..13], u32::from(hour));
    put(&mut b[14..16], u32::from(minute));
    put(&mut b[17..19], u32::from(second));
    put(&mut b[20..26], micro);
    // Only ASCII digits and separators were written: this never falls back.
    std::str::from_utf8(&b)
        .map(str::to_owned)
        .unwrap_or_default()
}

impl AuditEvent {
    /// An event of `kind` at the current time, every optional field empty.
    pub fn new(kind: EventKind) -> Self {
        Self {
            seq: 0,
            ts: now_ts(),
            kind,
            protocol: None,
            session: None,
            user: None,
            client_addr: None,
            datasource: None,
            db_user: None,
            statement: None,
            statement_clear: None,
            parameters: Vec::new(),
            command_tag: None,
            rows: None,
            duration_us: None,
            error: None,
            sqlstate: None,
            decision: None,
            rule: None,
            reason: None,
            alert: false,
            masked: Vec::new(),
            detail: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// Who and where a client session is: the fields every audit event of the session shares,
/// filled in as the login learns them.
#[derive(Debug, Clone)]
pub struct SessionIdent {
    /// The front door.
    pub protocol: Protocol,
    /// Postern's session id.
    pub session: Arc<str>,
    /// `ip:port` of the client.
    pub client: Arc<str>,
    /// The client's address (firewall source rules, lockouts).
    pub ip: std::net::IpAddr,
    /// The Postern user, once named.
    pub user: Option<Arc<str>>,
    /// The datasource alias, once named.
    pub datasource: Option<Arc<str>>,
    /// The upstream account, once chosen.
    pub db_user: Option<Arc<str>>,
}

impl SessionIdent {
    /// A new session of a client at `peer`, with a fresh session id.
    pub fn new(protocol: Protocol, session: Arc<str>, peer: std::net::SocketAddr) -> Self {
        Self {
            protocol,
            session,
            client: peer.to_string().into(),
            ip: peer.ip(),
            user: None,
            datasource: None,
            db_user: None,
        }
    }

    /// An event of this session.
    pub fn event(&self, kind: EventKind) -> AuditEvent {
        let mut e = AuditEvent::new(kind);
        e.protocol = Some(self.protocol);
        e.session = Some(self.session.clone());
        e.client_addr = Some(self.client.clone());
        e.user = self.user.clone();
        e.datasource = self.datasource.clone();
        e.db_user = self.db_user.clone();
        e
    }

    /// The event of a refused session: a `login_failure`, or — refused after the person
    /// logged in (`login` false) — a `session_open` carrying the error.
    pub fn refusal(&self, login: bool, error: String, code: &str) -> AuditEvent {
        let mut e = self.event(if login {
            EventKind::LoginFailure
        } else {
            EventKind::SessionOpen
        });
        e.error = Some(error);
        e.sqlstate = Some(code.to_string());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_digits_match_the_calendar() {
        let mut secs: i64 = -1;
        for i in 0..20_000i64 {
            // Spread over 1970..2100, with leap days, month ends and odd microseconds.
            secs = (secs + 1 + i * 197_731) % 4_102_444_800;
            let nanos = ((i * 7_919) % 1_000_000) * 1000;
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(nanos);
            let want = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.microsecond()
            );
            assert_eq!(format_ts(t), want);
        }
    }

    #[test]
    fn ts_shape() {
        let t = now_ts();
        assert_eq!(t.len(), 27, "{t}");
        assert!(t.ends_with('Z'));
    }

    #[test]
    fn json_omits_empty_fields() {
        let mut e = AuditEvent::new(EventKind::Statement);
        e.user = Some("alice".into());
        let s = serde_json::to_string(&e).unwrap();
        assert!(s.contains("\"kind\":\"statement\""));
        assert!(s.contains("\"user\":\"alice\""));
        assert!(!s.contains("statement\":null"));
        let back: AuditEvent = serde_json::from_str(&s).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            EventKind::parse("login_failure"),
            Some(EventKind::LoginFailure)
        );
        assert_eq!(EventKind::parse("nope"), None);
    }
}
