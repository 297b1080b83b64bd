//! Follows the statements of a session through both directions of the relay, so each one
//! can be audited with its text, outcome, rows and duration.
//!
//! Pure state machine: the relay feeds it every client and server message it inspects.
//! Simple queries complete at ReadyForQuery; extended-protocol Executes complete at their
//! CommandComplete / EmptyQueryResponse / PortalSuspended / ErrorResponse, and Executes the
//! server skipped after an error (up to the next Sync) are reported as not executed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{
    cstr, cstr_bytes, encoding_reads_as_utf8, error_summary, rows_of_tag, CodecError,
};
use crate::gate::Ruling;

/// Upper bound on statements in flight (pipelined and not yet answered).
pub const MAX_IN_FLIGHT: usize = 100_000;

/// A statement whose outcome is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// Statement text.
    pub statement: Arc<str>,
    /// Command tags, `; `-separated when a simple query held several statements.
    pub tags: String,
    /// Rows returned or affected, if any tag counted rows.
    pub rows: Option<u64>,
    /// (SQLSTATE, message) when it failed.
    pub error: Option<(String, String)>,
    /// Time from the request to its outcome.
    pub duration: Duration,
    /// The session's `standard_conforming_strings` when the statement was sent (how its
    /// string literals are lexed), as last reported by the server.
    pub standard_conforming_strings: bool,
    /// Postern's ruling, when the session's statements are checked.
    pub ruling: Option<Arc<Ruling>>,
    /// For a simple query: the transaction status of the ReadyForQuery that ended it.
    pub ready_status: Option<u8>,
    /// Result columns Postern masked.
    pub masked: Vec<postern_audit::MaskedColumn>,
}

#[derive(Debug)]
struct Open {
    text: Arc<str>,
    ruling: Option<Arc<Ruling>>,
    standard_conforming_strings: bool,
    start: Instant,
    tags: String,
    rows: Option<u64>,
    error: Option<(String, String)>,
    masked: Vec<postern_audit::MaskedColumn>,
}

impl Open {
    fn new(text: Arc<str>, standard_conforming_strings: bool) -> Self {
        Self {
            text,
            ruling: None,
            standard_conforming_strings,
            start: Instant::now(),
            tags: String::new(),
            rows: None,
            error: None,
            masked: Vec::new(),
        }
    }
    fn tag(&mut self, tag: &str) {
        if !self.tags.is_empty() {
            self.tags.push_str("; ");
        }
        self.tags.push_str(tag);
        if let Some(n) = rows_of_tag(tag) {
            self.rows = Some(self.rows.unwrap_or(0) + n);
        }
    }
    fn ruled(mut self, ruling: Option<Arc<Ruling>>) -> Self {
        self.ruling = ruling;
        self
    }
    fn done(self) -> Completed {
        Completed {
            statement: self.text,
            ruling: self.ruling,
            ready_status: None,
            tags: self.tags,
            rows: self.rows,
            error: self.error,
            duration: self.start.elapsed(),
            standard_conforming_strings: self.standard_conforming_strings,
            masked: self.masked,
        }
    }
}

#[derive(Debug)]
enum Pending {
    Query(Open),
    Execute(Open),
    Sync,
    /// The client ended a COPY FROM STDIN before the server confirmed copy-in mode.
    CopyEnd,
}

/// The statement tracker of one session.
#[derive(Debug, Default)]
pub struct Tracker {
    named_stmts: HashMap<Box<str>, Named>,
    unnamed_stmt: Option<Named>,
    named_portals: HashMap<Box<str>, Named>,
    unnamed_portal: Option<Named>,
    last_parse: Option<Named>,
    queue: VecDeque<Pending>,
    /// The server is in copy-in mode and the client has not yet sent CopyDone/CopyFail:
    /// the server ignores Sync messages meanwhile, so they must not be queued.
    client_in_copy: bool,
    /// Statements completed since the caller last drained this.
    pub completed: Vec<Completed>,
    /// The server's `standard_conforming_strings`, from its ParameterStatus messages (set
    /// from the startup parameters by the session; on by default since PostgreSQL 9.1).
    pub standard_conforming_strings: bool,
    /// Whether the session's `client_encoding` reads as UTF-8
    /// ([`crate::codec::encoding_reads_as_utf8`]), from ParameterStatus like the above.
    pub utf8_client: bool,
    /// Type of the last client message fed (0: none yet).
    last_client: u8,
    /// Transaction status of the last ReadyForQuery (`I` idle, `T` in a block, `E` failed).
    pub ready: u8,
}

const UNKNOWN: &str = "<unknown prepared statement>";

/// Statement text for the audit trail: bytes that are not UTF-8 (a client in LATIN1…)
/// are shown as U+FFFD rather than ending the session.
fn lossy(text: &[u8]) -> Arc<str> {
    Arc::from(String::from_utf8_lossy(text).as_ref())
}

/// A statement or portal's text and the ruling it was prepared or bound under.
type Named = (Arc<str>, Option<Arc<Ruling>>);

impl Tracker {
    /// A tracker for a new session.
    pub fn new() -> Self {
        Self {
            standard_conforming_strings: true,
            utf8_client: true,
            ready: b'I',
            ..Self::default()
        }
    }

    /// Whether the upstream is waiting for the client outside any transaction block: every
    /// request answered, no extended-protocol batch left without its Sync, no COPY. Only
    /// then may Postern run a query of its own on the session.
    pub fn idle(&self) -> bool {
        self.queue.is_empty()
            && matches!(self.last_client, 0 | b'Q' | b'S')
            && self.ready == b'I'
            && !self.client_in_copy
    }

    fn push(&mut self, p: Pending) -> Result<(), CodecError> {
        if self.queue.len() >= MAX_IN_FLIGHT {
            return Err(CodecError::Malformed(
                "pipeline (too many statements in flight)",
            ));
        }
        self.queue.push_back(p);
        Ok(())
    }

    fn statement(&self, name: &str) -> Named {
        let s = if name.is_empty() {
            self.unnamed_stmt.clone()
        } else {
            self.named_stmts.get(name).cloned()
        };
        s.unwrap_or_else(|| (Arc::from(UNKNOWN), None))
    }

    /// Feeds a message the client sent (type byte and body), with the gate's ruling on it
    /// when statements are checked.
    pub fn client_message(
        &mut self,
        ty: u8,
        body: &[u8],
        ruling: Option<Arc<Ruling>>,
    ) -> Result<(), CodecError> {
        self.last_client = ty;
        match ty {
            b'Q' => {
                let (text, _) = cstr_bytes(body).ok_or(CodecError::Malformed("Query"))?;
                self.push(Pending::Query(
                    Open::new(lossy(text), self.standard_conforming_strings).ruled(ruling),
                ))?;
            }
            b'P' => {
                let (name, rest) = cstr_bytes(body).ok_or(CodecError::Malformed("Parse"))?;
                let (text, _) = cstr_bytes(rest).ok_or(CodecError::Malformed("Parse"))?;
                let name = String::from_utf8_lossy(name);
                let named: Named = (lossy(text), ruling);
                self.last_parse = Some(named.clone());
                if name.is_empty() {
                    self.unnamed_stmt = Some(named);
                } else {
                    self.named_stmts.insert(name.into(), named);
                }
            }
            b'B' => {
                let (portal, rest) = cstr_bytes(body).ok_or(CodecError::Malformed("Bind"))?;
                let (stmt, _) = cstr_bytes(rest).ok_or(CodecError::Malformed("Bind"))?;
                let (portal, stmt) = (
                    String::from_utf8_lossy(portal),
                    String::from_utf8_lossy(stmt),
                );
                let (portal, stmt) = (portal.as_ref(), stmt.as_ref());
                let (text, prepared) = self.statement(stmt);
                // A refusal at Bind (or a judgement made again) outranks the Parse's.
                let named = (text, ruling.or(prepared));
                if portal.is_empty() {
                    self.unnamed_portal = Some(named);
                } else {
                    self.named_portals.insert(portal.into(), named);
                }
            }
            b'E' => {
                let (portal, _) = cstr_bytes(body).ok_or(CodecError::Malformed("Execute"))?;
                let portal = String::from_utf8_lossy(portal);
                let portal = portal.as_ref();
                let (text, ruling) = if portal.is_empty() {
                    self.unnamed_portal.clone()
                } else {
                    self.named_portals.get(portal).cloned()
                }
                .unwrap_or_else(|| (Arc::from(UNKNOWN), None));
                self.push(Pending::Execute(
                    Open::new(text, self.standard_conforming_strings).ruled(ruling),
                ))?;
            }
            b'C' => {
                let (&kind, rest) = body.split_first().ok_or(CodecError::Malformed("Close"))?;
                let (name, _) = cstr_bytes(rest).ok_or(CodecError::Malformed("Close"))?;
                let name = String::from_utf8_lossy(name);
                let name = name.as_ref();
                match (kind, name.is_empty()) {
                    (b'S', true) => self.unnamed_stmt = None,
                    (b'S', false) => {
                        self.named_stmts.remove(name);
                    }
                    (b'P', true) => self.unnamed_portal = None,
                    (b'P', false) => {
                        self.named_portals.remove(name);
                    }
                    _ => return Err(CodecError::Malformed("Close")),
                }
            }
            b'S' if self.client_in_copy => {}
            b'S' => self.push(Pending::Sync)?,
            b'c' | b'f' if self.client_in_copy => self.client_in_copy = false,
            b'c' | b'f' => self.push(Pending::CopyEnd)?,
            b'F' => {
                let oid = body
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(CodecError::Malformed("FunctionCall"))?;
                let text = Arc::from(format!("<function call oid={oid}>"));
                self.push(Pending::Query(
                    Open::new(text, self.standard_conforming_strings).ruled(ruling),
                ))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Notes masked result columns on the statement whose results are arriving.
    pub fn masked(&mut self, mut cols: Vec<postern_audit::MaskedColumn>) {
        if let Some(Pending::Query(o) | Pending::Execute(o)) = self
            .queue
            .iter_mut()
            .find(|p| matches!(p, Pending::Query(_) | Pending::Execute(_)))
        {
            for c in cols.drain(..) {
                if !o.masked.contains(&c) {
                    o.masked.push(c);
                }
            }
        }
    }

    /// Feeds a message the server sent (type byte and body).
    pub fn server_message(&mut self, ty: u8, body: &[u8]) {
        while matches!(self.queue.front(), Some(Pending::CopyEnd)) {
            self.queue.pop_front();
        }
        match ty {
            b'G' | b'W' => {
                // Copy-in mode: the server ignores every Sync the client sent after the
                // statement that started COPY, up to its CopyDone/CopyFail (tokio-postgres
                // pipelines one before the data). Forget those Syncs so the queue stays
                // aligned with the server's replies.
                let mut i = 1;
                let mut ended = false;
                while i < self.queue.len() {
                    match self.queue[i] {
                        Pending::Sync => {
                            self.queue.remove(i);
                        }
                        Pending::CopyEnd => {
                            self.queue.remove(i);
                            ended = true;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                self.client_in_copy = !ended;
            }
            b'S' => {
                // The server reports this setting whenever it changes (it is GUC_REPORT).
                match cstr(body) {
                    Some(("standard_conforming_strings", rest)) => {
                        if let Some((value, _)) = cstr(rest) {
                            self.standard_conforming_strings = value == "on";
                        }
                    }
                    Some(("client_encoding", rest)) => {
                        if let Some((value, _)) = cstr(rest) {
                            self.utf8_client = encoding_reads_as_utf8(value);
                        }
                    }
                    _ => {}
                }
            }
            b'C' | b'I' | b's' => {
                let tag = if ty == b'C' {
                    cstr(body).map(|(t, _)| t).unwrap_or("")
                } else if ty == b's' {
                    "(portal suspended)"
                } else {
                    ""
                };
                match self.queue.front_mut() {
                    Some(Pending::Query(o)) if !tag.is_empty() => o.tag(tag),
                    Some(Pending::Query(_)) => {}
                    Some(Pending::Execute(_)) => {
                        if let Some(Pending::Execute(mut o)) = self.queue.pop_front() {
                            if !tag.is_empty() {
                                o.tag(tag);
                            }
                            self.completed.push(o.done());
                        }
                    }
                    _ => {}
                }
            }
            b'E' => {
                let err = error_summary(body);
                match self.queue.front_mut() {
                    Some(Pending::Query(o)) => o.error = Some(err),
                    Some(Pending::Execute(_)) => {
                        if let Some(Pending::Execute(mut o)) = self.queue.pop_front() {
                            o.error = Some(err);
                            self.completed.push(o.done());
                        }
                    }
                    Some(Pending::Sync) | Some(Pending::CopyEnd) | None => {
                        // A Parse or Bind failed with no Execute queued behind it (or the server
                        // ended the session): still on record, against the last parsed text.
                        let (text, ruling) = self
                            .last_parse
                            .clone()
                            .unwrap_or_else(|| (Arc::from("<no statement>"), None));
                        let mut o = Open::new(text, self.standard_conforming_strings).ruled(ruling);
                        o.error = Some(err);
                        self.completed.push(o.done());
                    }
                }
            }
            b'Z' => {
                self.ready = body.first().copied().unwrap_or(b'I');
                while let Some(p) = self.queue.pop_front() {
                    match p {
                        Pending::Query(o) => {
                            let mut done = o.done();
                            done.ready_status = body.first().copied();
                            self.completed.push(done);
                            break;
                        }
                        Pending::Sync => break,
                        Pending::CopyEnd => {}
                        Pending::Execute(mut o) => {
                            o.error = Some((
                                String::new(),
                                "not executed: an earlier message of the same batch failed".into(),
                            ));
                            self.completed.push(o.done());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Statements still waiting for their outcome (reported as interrupted at session end).
    pub fn drain_unfinished(&mut self) -> Vec<Completed> {
        self.queue
            .drain(..)
            .filter_map(|p| match p {
                Pending::Query(mut o) | Pending::Execute(mut o) => {
                    o.error.get_or_insert_with(|| {
                        (String::new(), "interrupted: the session ended".into())
                    });
                    Some(o.done())
                }
                Pending::Sync | Pending::CopyEnd => None,
            })
            .collect()
    }
}

/// Whether a completed statement changed the schema (what masking rules may cover).
pub fn changes_schema(done: &Completed) -> bool {
    done.error.is_none()
        && done.tags.split("; ").any(|t| {
            ["CREATE ", "ALTER ", "DROP ", "IMPORT FOREIGN SCHEMA"]
                .iter()
                .any(|p| t.starts_with(p))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    fn err_body(code: &str, msg: &str) -> Vec<u8> {
        let mut v = vec![b'C'];
        v.extend(c(code));
        v.push(b'M');
        v.extend(c(msg));
        v.push(0);
        v
    }

    #[test]
    fn statements_remember_how_strings_were_lexed() {
        let mut t = Tracker::new();
        assert!(t.standard_conforming_strings);
        t.client_message(b'Q', &c("set standard_conforming_strings = off"), None)
            .unwrap();
        let mut status = c("standard_conforming_strings");
        status.extend(c("off"));
        t.server_message(b'S', &status);
        t.server_message(b'C', &c("SET"));
        t.server_message(b'Z', b"I");
        assert!(!t.standard_conforming_strings);
        t.client_message(b'Q', &c("select 'a\\'"), None).unwrap();
        t.server_message(b'C', &c("SELECT 1"));
        t.server_message(b'Z', b"I");
        assert!(t.completed[0].standard_conforming_strings);
        assert!(!t.completed[1].standard_conforming_strings);
        // Other parameters leave it alone.
        let mut other = c("TimeZone");
        other.extend(c("UTC"));
        t.server_message(b'S', &other);
        assert!(!t.standard_conforming_strings);
    }

    #[test]
    fn simple_multi_statement_query() {
        let mut t = Tracker::new();
        t.client_message(b'Q', &c("select 1; insert into t values (1)"), None)
            .unwrap();
        t.server_message(b'C', &c("SELECT 1"));
        t.server_message(b'C', &c("INSERT 0 1"));
        assert!(t.completed.is_empty());
        t.server_message(b'Z', b"I");
        assert_eq!(t.completed.len(), 1);
        let s = &t.completed[0];
        assert_eq!(&*s.statement, "select 1; insert into t values (1)");
        assert_eq!(s.tags, "SELECT 1; INSERT 0 1");
        assert_eq!(s.rows, Some(2));
        assert!(s.error.is_none());
    }

    #[test]
    fn simple_query_error() {
        let mut t = Tracker::new();
        t.client_message(b'Q', &c("selec 1"), None).unwrap();
        t.server_message(b'E', &err_body("42601", "syntax error"));
        t.server_message(b'Z', b"I");
        assert_eq!(
            t.completed[0].error,
            Some(("42601".into(), "syntax error".into()))
        );
    }

    fn parse(name: &str, q: &str) -> Vec<u8> {
        let mut v = c(name);
        v.extend(c(q));
        v.extend([0, 0]);
        v
    }
    fn bind(portal: &str, stmt: &str) -> Vec<u8> {
        let mut v = c(portal);
        v.extend(c(stmt));
        v.extend([0, 0, 0, 0, 0, 0]);
        v
    }
    fn exec(portal: &str) -> Vec<u8> {
        let mut v = c(portal);
        v.extend([0, 0, 0, 0]);
        v
    }

    #[test]
    fn extended_pipeline_with_named_statement() {
        let mut t = Tracker::new();
        t.client_message(b'P', &parse("s1", "select $1"), None)
            .unwrap();
        for _ in 0..3 {
            t.client_message(b'B', &bind("", "s1"), None).unwrap();
            t.client_message(b'E', &exec(""), None).unwrap();
            t.client_message(b'S', &[], None).unwrap();
        }
        for _ in 0..3 {
            t.server_message(b'2', &[]);
            t.server_message(b'D', &[]);
            t.server_message(b'C', &c("SELECT 1"));
            t.server_message(b'Z', b"I");
        }
        assert_eq!(t.completed.len(), 3);
        assert!(t
            .completed
            .iter()
            .all(|s| &*s.statement == "select $1" && s.rows == Some(1)));
        assert!(t.queue.is_empty());
    }

    #[test]
    fn error_skips_rest_of_batch() {
        let mut t = Tracker::new();
        t.client_message(b'P', &parse("", "select 1/0"), None)
            .unwrap();
        t.client_message(b'B', &bind("", ""), None).unwrap();
        t.client_message(b'E', &exec(""), None).unwrap();
        t.client_message(b'P', &parse("", "select 2"), None)
            .unwrap();
        t.client_message(b'B', &bind("", ""), None).unwrap();
        t.client_message(b'E', &exec(""), None).unwrap();
        t.client_message(b'S', &[], None).unwrap();
        t.server_message(b'E', &err_body("22012", "division by zero"));
        t.server_message(b'Z', b"I");
        assert_eq!(t.completed.len(), 2);
        assert_eq!(&*t.completed[0].statement, "select 1/0");
        assert_eq!(t.completed[0].error.as_ref().unwrap().0, "22012");
        assert_eq!(&*t.completed[1].statement, "select 2");
        assert!(t.completed[1]
            .error
            .as_ref()
            .unwrap()
            .1
            .starts_with("not executed"));
    }

    #[test]
    fn parse_error_without_execute_is_recorded() {
        let mut t = Tracker::new();
        t.client_message(b'P', &parse("x", "selec"), None).unwrap();
        t.client_message(b'S', &[], None).unwrap();
        t.server_message(b'E', &err_body("42601", "syntax error"));
        t.server_message(b'Z', b"I");
        assert_eq!(t.completed.len(), 1);
        assert_eq!(&*t.completed[0].statement, "selec");
    }

    /// tokio-postgres pipelines Bind/Execute/Sync before the COPY data and sends CopyDone +
    /// Sync after it; the server ignores the first Sync. The queue must stay aligned.
    #[test]
    fn copy_in_with_pipelined_sync() {
        let mut t = Tracker::new();
        t.client_message(b'P', &parse("s0", "COPY t FROM STDIN"), None)
            .unwrap();
        t.client_message(b'S', &[], None).unwrap();
        t.server_message(b'1', &[]);
        t.server_message(b'Z', b"I");
        t.client_message(b'B', &bind("", "s0"), None).unwrap();
        t.client_message(b'E', &exec(""), None).unwrap();
        t.client_message(b'S', &[], None).unwrap();
        t.server_message(b'2', &[]);
        t.server_message(b'G', &[0, 0, 0]);
        t.client_message(b'd', b"1\n", None).unwrap();
        t.client_message(b'c', &[], None).unwrap();
        t.client_message(b'S', &[], None).unwrap();
        t.server_message(b'C', &c("COPY 1"));
        t.server_message(b'Z', b"I");
        assert_eq!(t.completed.len(), 1);
        assert_eq!(t.completed[0].tags, "COPY 1");
        assert!(t.queue.is_empty(), "{:?}", t.queue);
        // The next simple query is matched with its own outcome.
        t.client_message(b'Q', &c("select pg_sleep(1)"), None)
            .unwrap();
        t.server_message(b'E', &err_body("57014", "canceling statement"));
        t.server_message(b'Z', b"I");
        assert_eq!(t.completed[1].error.as_ref().unwrap().0, "57014");
    }

    /// psql: simple-query COPY, where the client waits for CopyInResponse.
    #[test]
    fn copy_in_simple_query() {
        let mut t = Tracker::new();
        t.client_message(b'Q', &c("COPY t FROM STDIN"), None)
            .unwrap();
        t.server_message(b'G', &[0, 0, 0]);
        t.client_message(b'd', b"1\n", None).unwrap();
        t.client_message(b'c', &[], None).unwrap();
        t.server_message(b'C', &c("COPY 1"));
        t.server_message(b'Z', b"I");
        assert_eq!(t.completed.len(), 1);
        assert_eq!(t.completed[0].rows, Some(1));
        assert!(t.queue.is_empty());
    }

    #[test]
    fn unfinished_reported() {
        let mut t = Tracker::new();
        t.client_message(b'Q', &c("select pg_sleep(10)"), None)
            .unwrap();
        let u = t.drain_unfinished();
        assert_eq!(u.len(), 1);
        assert!(u[0].error.as_ref().unwrap().1.contains("interrupted"));
    }

    #[test]
    fn malformed_bodies() {
        let mut t = Tracker::new();
        assert!(t.client_message(b'Q', b"no nul", None).is_err());
        assert!(t.client_message(b'P', b"", None).is_err());
        assert!(t.client_message(b'C', b"Xname\0", None).is_err());
        assert!(t.client_message(b'F', b"", None).is_err());
    }
}
