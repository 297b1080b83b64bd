//! The statement gate: decides every statement a client sends before a byte of it goes
//! upstream (pure, no I/O; the relay feeds it complete messages).
//!
//! A refused message is not dropped: it is *replaced* by a harmless one that makes the
//! server fail at the same point of the protocol — `SELECT "<token>"` (an unknown column)
//! for a Query, Parse or FunctionCall, a Bind of an unknown statement named `<token>`. The
//! server then does what it does for any failed statement: aborts the transaction, skips
//! the rest of an extended-protocol batch up to Sync, answers ReadyForQuery with the right
//! status. Its ErrorResponse, recognised by the session-random token, is replaced on the
//! way back by Postern's own (SQLSTATE 42501, naming the rule). The upstream never sees the
//! refused text, and the client's view of the session stays exactly PostgreSQL's.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use postern_policy::{
    apply_effects, decide_in, judge, Arrival, Decision, Judgement, Policy, Refusal, SessionView,
};
use postern_sql::cache::{AnalysisCache, Cached};
use postern_sql::pg::LexSettings;
use postern_sql::{Statement, StatementKind};

use crate::codec::{self, cstr_bytes, error_fields, CodecError, Severity};

/// Analyses kept per session.
const CACHE_ENTRIES: usize = 512;
/// Refusals waiting for the server's answer (older ones are forgotten: the server skipped
/// them, e.g. after an earlier error of the same batch).
const MAX_PENDING_REFUSALS: usize = 1024;
/// Texts remembered for one statement name (see [`Gate::stmts`]).
const MAX_CANDIDATES: usize = 8;

/// How Postern ruled on a statement, for its audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling {
    /// Whether it went upstream.
    pub allowed: bool,
    /// Why it was refused, or a note on why it passed unchecked.
    pub reason: Option<String>,
    /// The rule that decided, when one did.
    pub rule: Option<String>,
    /// An allow-and-alert firewall rule let it through.
    pub alert: bool,
    /// For a lone `SET search_path`: the path it sets, and the gate's path-change count
    /// after it (see [`Gate::confirm_search_path`]).
    pub search_path: Option<(Vec<String>, u64)>,
    /// The statement's audit-log forms, when the gate lexed it.
    pub log: Option<LogForms>,
    /// Masking plans of its statements, when the session masks anything.
    pub masks: Option<crate::masker::Plans>,
}

/// A statement's masked text and, when it differs, its clear text (passwords masked).
pub type LogForms = (Arc<str>, Option<Arc<str>>);

/// How the session's text is to be read, as the server last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexing {
    /// `standard_conforming_strings`.
    pub standard_conforming_strings: bool,
    /// `client_encoding` reads as UTF-8 ([`codec::encoding_reads_as_utf8`]).
    pub utf8_client: bool,
}

/// What to do with a message.
#[derive(Debug)]
pub enum GateOut {
    /// Forward it as it is.
    Forward(Option<Arc<Ruling>>),
    /// Send these bytes upstream instead.
    Replace(BytesMut, Arc<Ruling>),
    /// The store changed since the policy was loaded: reload it ([`Gate::set_policy`]),
    /// then offer the same message again.
    Stale,
}

/// A statement prepared under a name, as Postern judged it.
#[derive(Debug, Clone)]
enum Prepared {
    /// By a protocol Parse: its text and analysis.
    Parsed { text: Arc<str>, analysis: Cached },
    /// By SQL PREPARE: the PREPARE statement.
    Sql(Statement),
}

#[derive(Debug)]
struct Named {
    /// Every text that may be what the server holds under this name: a Parse of a name
    /// already in use fails on the server, and Postern does not see which one did, so a
    /// later Bind must be allowed for all of them.
    candidates: Vec<Prepared>,
    /// The session generation they were last judged in.
    judged: u64,
    ruling: Arc<Ruling>,
}

/// The gate of one session.
pub struct Gate {
    policy: Arc<Policy>,
    /// The store's change counter, and its value when `policy` was loaded.
    epoch_source: Arc<AtomicU64>,
    epoch: u64,
    view: SessionView,
    /// Bumped whenever the session context changes (search_path, prepared statements):
    /// statements prepared before are judged again when bound, as the server re-resolves
    /// names in a prepared statement whose search_path changed.
    generation: u64,
    /// Some firewall rule depends on the time: judge prepared statements at every Bind.
    timed: bool,
    cache: AnalysisCache,
    client: IpAddr,
    /// `postern_refused_<random>_`: marks Postern's replacement statements.
    token: String,
    next_refusal: u64,
    refusals: BTreeMap<u64, Refusal>,
    /// Statements prepared in the session, by name (`""`: the unnamed statement).
    stmts: HashMap<Box<str>, Named>,
    allowed: Arc<Ruling>,
    /// Counts changes to the search_path Postern assumes (see [`Gate::confirm_search_path`]).
    path_changes: u64,
    /// The session's masking, when any rule covers something on this datasource.
    pub masking: Option<Arc<postern_policy::SessionMasking>>,
    /// When the masking catalog must be read again (`None`: no rule may apply).
    catalog: Option<CatalogWatch>,
    /// [`Policy::masking_fingerprint`] of the policy `masking` was built for.
    masking_built_for: String,
}

/// The age of a session's masking catalog snapshot.
#[derive(Debug)]
struct CatalogWatch {
    read_at: std::time::Instant,
    max_age: std::time::Duration,
    /// A statement of this session changed the schema.
    stale: bool,
    /// The refresh had to wait (the upstream was busy): let one statement through first.
    skip_once: bool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("mode", &self.policy.mode)
            .field("search_path", &self.view.search_path)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Gate {
    /// A gate for a session of a user under `policy`, whose upstream session started with
    /// `search_path` (existing schemas; `None` when not asked, in PASSTHROUGH mode) and
    /// `user_schema` (what `$user` names). `epoch` is the store's change counter, `loaded`
    /// its value when `policy` was read.
    pub fn new(
        policy: Arc<Policy>,
        epoch: (Arc<AtomicU64>, u64),
        search_path: Option<Vec<String>>,
        user_schema: Option<String>,
        client: IpAddr,
    ) -> Self {
        let timed = policy.firewall.iter().any(|r| r.depends_on_time());
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            view: SessionView {
                initial_search_path: search_path.clone().unwrap_or_default(),
                search_path,
                prepared: HashMap::new(),
                user_schema,
            },
            policy,
            epoch_source: epoch.0,
            epoch: epoch.1,
            generation: 0,
            timed,
            cache: AnalysisCache::new(CACHE_ENTRIES),
            client,
            token: format!("postern_refused_{}_", &random[..12]),
            next_refusal: 0,
            refusals: BTreeMap::new(),
            stmts: HashMap::new(),
            allowed: Arc::new(Ruling {
                allowed: true,
                reason: None,
                rule: None,
                alert: false,
                search_path: None,
                log: None,
                masks: None,
            }),
            path_changes: 0,
            masking: None,
            catalog: None,
            masking_built_for: String::new(),
        }
    }

    /// Installs a policy reloaded after the store changed (`epoch`: the counter's value
    /// read before loading it). Prepared statements are judged again at their next Bind.
    pub fn set_policy(&mut self, policy: Arc<Policy>, epoch: u64) {
        self.timed = policy.firewall.iter().any(|r| r.depends_on_time());
        self.policy = policy;
        self.epoch = epoch;
        self.generation += 1;
    }

    /// The policy the gate judges by.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Whether the policy is as current as the store.
    pub fn policy_current(&self) -> bool {
        self.epoch_source.load(Ordering::Acquire) == self.epoch
    }

    /// Installs masking built from a catalog snapshot just read (`max_age`: when to read it
    /// again; `None` with no masking rule that may apply). Prepared statements are planned
    /// again at their next Bind.
    pub fn set_masking(
        &mut self,
        masking: Option<Arc<postern_policy::SessionMasking>>,
        max_age: Option<std::time::Duration>,
    ) {
        self.masking = masking;
        self.masking_built_for = self.policy.masking_fingerprint();
        self.catalog = max_age.map(|max_age| CatalogWatch {
            read_at: std::time::Instant::now(),
            max_age,
            stale: false,
            skip_once: false,
        });
        self.generation += 1;
    }

    /// Whether the installed masking was built for the current policy's masking rules.
    pub fn masking_current(&self) -> bool {
        self.masking_built_for == self.policy.masking_fingerprint()
    }

    /// A statement changed the schema: read the masking catalog before the next statement.
    pub fn schema_changed(&mut self) {
        if let Some(w) = &mut self.catalog {
            w.stale = true;
        }
    }

    /// Whether the masking catalog should be read again now.
    pub fn catalog_due(&self) -> bool {
        self.catalog
            .as_ref()
            .is_some_and(|w| w.stale || w.read_at.elapsed() >= w.max_age)
    }

    /// The catalog could not be read yet (the upstream was busy): the next statement goes
    /// on with the current snapshot, the one after asks again. With `max_age`, a watch is
    /// started for a session that had none (masking newly granted).
    pub fn catalog_deferred(&mut self, max_age: std::time::Duration) {
        let w = self.catalog.get_or_insert(CatalogWatch {
            read_at: std::time::Instant::now(),
            max_age,
            stale: true,
            skip_once: false,
        });
        w.skip_once = true;
    }

    /// The user's mode under the current policy.
    pub fn mode(&self) -> postern_policy::Mode {
        self.policy.mode
    }

    /// The schemas unqualified names may currently resolve to (`None`: unknown).
    pub fn search_path(&self) -> Option<&[String]> {
        self.view.search_path.as_deref()
    }

    fn arrival(&self) -> Arrival {
        Arrival {
            client: self.client,
            now: time::OffsetDateTime::now_utc(),
        }
    }

    fn ruling(&self, j: &Judgement) -> Arc<Ruling> {
        let note = j.decisions.iter().find_map(|d| match d {
            Decision::Allow { note: Some(n) } => Some(n.clone()),
            _ => None,
        });
        let alert = j.alert();
        if note.is_none() && j.firewall.is_none() {
            return self.allowed.clone();
        }
        Arc::new(Ruling {
            allowed: true,
            reason: note,
            rule: j.firewall.as_ref().map(|f| format!("firewall: {}", f.rule)),
            alert,
            search_path: None,
            log: None,
            masks: None,
        })
    }

    /// Records a refusal; returns the token the replacement carries and the audit ruling.
    fn refuse(&mut self, r: Refusal) -> (String, Arc<Ruling>) {
        let n = self.next_refusal;
        self.next_refusal += 1;
        let ruling = Arc::new(Ruling {
            allowed: false,
            reason: Some(r.reason.clone()),
            rule: r.rule.clone(),
            alert: false,
            search_path: None,
            log: None,
            masks: None,
        });
        self.refusals.insert(n, r);
        while self.refusals.len() > MAX_PENDING_REFUSALS {
            self.refusals.pop_first();
        }
        (format!("{}{n}", self.token), ruling)
    }

    /// The analysis of `text` and its audit-log forms (masked, clear when it differs):
    /// computed here once, so the audit does not lex the text a second time.
    fn analyse(&mut self, text: &str, scs: bool) -> (Cached, LogForms) {
        let (a, log) = self.cache.analyse(
            text,
            LexSettings {
                standard_conforming_strings: scs,
            },
        );
        let masked: Arc<str> = Arc::from(log.masked.as_ref());
        let clear = (log.clear != log.masked).then(|| Arc::from(log.clear.as_ref()));
        (a, (masked, clear))
    }

    /// The masking plans of a message's statements (the inference and copy guards refuse
    /// here); `None` when the session masks nothing.
    fn mask_plans(&self, analysis: &Cached) -> Result<Option<crate::masker::Plans>, Refusal> {
        let (Some(m), Ok(a)) = (&self.masking, analysis.as_ref()) else {
            return Ok(None);
        };
        let path = self.view.search_path.as_deref().unwrap_or(&[]);
        let mut plans = Vec::with_capacity(a.statements.len());
        for st in &a.statements {
            plans.push(match st {
                Statement::Analysed(f) => m.plan(f, &self.view.prepared, path, self.policy.mode)?,
                // Let through unanalysed (allow-list, MASKED mode): what its computed
                // columns hold is unknown, so they are masked.
                Statement::Unanalysable { .. } => Some(postern_policy::StatementMask::opaque()),
            });
        }
        Ok(plans.iter().any(Option::is_some).then(|| Arc::new(plans)))
    }

    /// `ruling` with the statement's audit-log forms attached.
    fn with_log(ruling: Arc<Ruling>, log: LogForms) -> Arc<Ruling> {
        let mut r = Arc::unwrap_or_clone(ruling);
        r.log = Some(log);
        Arc::new(r)
    }

    /// Applies an allowed text's session effects; bumps the generation when they change
    /// what names resolve to.
    fn apply(&mut self, analysis: &Cached) {
        let Ok(a) = analysis.as_ref() else { return };
        let mut touched = false;
        for s in &a.statements {
            let Statement::Analysed(f) = s else { continue };
            if !f.changes_session() {
                continue;
            }
            touched = true;
            // Any statement that sets the path makes earlier confirmations stale, even when
            // the assumed path (a union) does not grow.
            if f.sets_search_path() {
                self.path_changes += 1;
            }
            // Protocol and SQL prepared statements share one namespace on the server.
            match (f.kind, &f.prepared) {
                (StatementKind::Prepare, Some(name)) => {
                    self.add_named(name, Prepared::Sql(s.clone()));
                }
                (StatementKind::Deallocate, Some(name)) => {
                    self.stmts.remove(name.as_str());
                }
                // DEALLOCATE ALL and DISCARD ALL leave the unnamed protocol statement alone.
                (StatementKind::Deallocate, None) => self.stmts.retain(|k, _| k.is_empty()),
                _ if f.discards_all() => self.stmts.retain(|k, _| k.is_empty()),
                _ => {}
            }
        }
        if touched {
            apply_effects(&mut self.view, a);
            self.generation += 1;
        }
    }

    fn add_named(&mut self, name: &str, p: Prepared) {
        if name.is_empty() {
            // A new unnamed statement replaces the old one, even when it then fails.
            self.stmts.insert(
                "".into(),
                Named {
                    candidates: vec![p],
                    judged: self.generation,
                    ruling: self.allowed.clone(),
                },
            );
            return;
        }
        match self.stmts.get_mut(name) {
            Some(n) => {
                if n.candidates.len() < MAX_CANDIDATES {
                    n.candidates.push(p);
                }
                n.judged = u64::MAX;
            }
            None => {
                self.stmts.insert(
                    name.into(),
                    Named {
                        candidates: vec![p],
                        judged: self.generation,
                        ruling: self.allowed.clone(),
                    },
                );
            }
        }
    }

    /// Refuses SQL text Postern would not read as the server does: not UTF-8, or non-ASCII
    /// in a client encoding the server converts from.
    fn readable(text: &[u8], lex: Lexing) -> Result<&str, Refusal> {
        let refusal = |why: &str| Refusal {
            sqlstate: "22021",
            message: format!(
                "Postern refused this statement: {why}; Postern checks statements as UTF-8 \
                 (SET client_encoding = 'UTF8', or PGCLIENTENCODING=UTF8)"
            ),
            reason: why.to_string(),
            rule: None,
        };
        let Ok(t) = std::str::from_utf8(text) else {
            return Err(refusal("its text is not valid UTF-8"));
        };
        if !lex.utf8_client && !t.is_ascii() {
            return Err(refusal(
                "it holds non-ASCII characters and the session's client_encoding is not UTF8",
            ));
        }
        Ok(t)
    }

    /// Judges a complete client message.
    pub fn client_message(
        &mut self,
        ty: u8,
        body: &[u8],
        lex: Lexing,
    ) -> Result<GateOut, CodecError> {
        let decides = matches!(ty, b'Q' | b'P' | b'B' | b'F');
        if decides && self.epoch_source.load(Ordering::Acquire) != self.epoch {
            return Ok(GateOut::Stale);
        }
        if matches!(ty, b'Q' | b'P') {
            if let Some(w) = &mut self.catalog {
                if w.skip_once {
                    w.skip_once = false;
                } else if w.stale || w.read_at.elapsed() >= w.max_age {
                    return Ok(GateOut::Stale);
                }
            }
        }
        if self.policy.mode == postern_policy::Mode::Passthrough {
            // Nothing is checked; statements prepared now are unknown to a later, stricter
            // policy, whose Bind of them is then refused.
            return Ok(GateOut::Forward(None));
        }
        let scs = lex.standard_conforming_strings;
        match ty {
            b'Q' => {
                let (text, _) = cstr_bytes(body).ok_or(CodecError::Malformed("Query"))?;
                let text = match Self::readable(text, lex) {
                    Ok(t) => t,
                    Err(r) => {
                        let (token, ruling) = self.refuse(r);
                        return Ok(GateOut::Replace(query_message(&token), ruling));
                    }
                };
                if text.trim().is_empty() {
                    return Ok(GateOut::Forward(None));
                }
                let (analysis, log) = self.analyse(text, scs);
                let j = judge(&self.policy, &self.view, text, &analysis, self.arrival());
                let masks = match j
                    .refusal
                    .clone()
                    .map_or_else(|| self.mask_plans(&analysis), Err)
                {
                    Ok(m) => m,
                    Err(r) => {
                        let (token, ruling) = self.refuse(r);
                        return Ok(GateOut::Replace(
                            query_message(&token),
                            Self::with_log(ruling, log),
                        ));
                    }
                };
                let ruling = self.ruling(&j);
                let exact = lone_search_path(&analysis, &self.view);
                self.apply(&analysis);
                let mut r = Arc::unwrap_or_clone(ruling);
                r.log = Some(log);
                r.masks = masks;
                if let Some(path) = exact {
                    // Confirmed (or not) when the server has answered this very message.
                    r.search_path = Some((path, self.path_changes));
                }
                Ok(GateOut::Forward(Some(Arc::new(r))))
            }
            b'P' => {
                let (name, rest) = cstr_bytes(body).ok_or(CodecError::Malformed("Parse"))?;
                let (text, _) = cstr_bytes(rest).ok_or(CodecError::Malformed("Parse"))?;
                let checked = Self::readable(text, lex).and_then(|t| {
                    std::str::from_utf8(name)
                        .map(|n| (n, t))
                        .map_err(|_| Refusal {
                            sqlstate: "22021",
                            message: "Postern refused this statement: its name is not valid UTF-8"
                                .into(),
                            reason: "statement name not valid UTF-8".into(),
                            rule: None,
                        })
                });
                let (name, text) = match checked {
                    Ok(nt) => nt,
                    Err(r) => {
                        if name.is_empty() {
                            self.stmts.remove("");
                        }
                        let (token, ruling) = self.refuse(r);
                        return Ok(GateOut::Replace(parse_message(name, &token), ruling));
                    }
                };
                let (analysis, log) = self.analyse(text, scs);
                let j = judge(&self.policy, &self.view, text, &analysis, self.arrival());
                let masks = j
                    .refusal
                    .clone()
                    .map_or_else(|| self.mask_plans(&analysis), Err);
                if let Err(r) = masks {
                    if name.is_empty() {
                        self.stmts.remove("");
                    }
                    let (token, ruling) = self.refuse(r);
                    return Ok(GateOut::Replace(
                        parse_message(name.as_bytes(), &token),
                        Self::with_log(ruling, log),
                    ));
                }
                let mut ruling = Arc::unwrap_or_clone(Self::with_log(self.ruling(&j), log));
                ruling.masks = masks.ok().flatten();
                let ruling = Arc::new(ruling);
                self.apply(&analysis);
                if let (false, Ok(a)) = (name.is_empty(), analysis.as_ref()) {
                    // Protocol statements share SQL EXECUTE's namespace.
                    if let [Statement::Analysed(f)] = a.statements.as_slice() {
                        self.view.prepared.insert(name.to_string(), f.clone());
                    }
                }
                self.add_named(
                    name,
                    Prepared::Parsed {
                        text: text.into(),
                        analysis,
                    },
                );
                if let Some(n) = self.stmts.get_mut(name) {
                    n.ruling = ruling.clone();
                }
                Ok(GateOut::Forward(Some(ruling)))
            }
            b'B' => {
                let (portal, rest) = cstr_bytes(body).ok_or(CodecError::Malformed("Bind"))?;
                let (stmt, _) = cstr_bytes(rest).ok_or(CodecError::Malformed("Bind"))?;
                // Every statement Postern let through has a UTF-8 name.
                let stmt = std::str::from_utf8(stmt).unwrap_or("\u{fffd}");
                match self.bind(stmt) {
                    Ok(ruling) => Ok(GateOut::Forward(Some(ruling))),
                    Err(r) => {
                        let (token, ruling) = self.refuse(r);
                        Ok(GateOut::Replace(bind_message(portal, &token), ruling))
                    }
                }
            }
            b'F' => {
                let (token, ruling) = self.refuse(Refusal {
                    sqlstate: postern_policy::judge::SQLSTATE_REFUSED,
                    message: "Postern refused a fast-path function call: it names the function \
                              by OID, which Postern cannot check; call it with SELECT instead"
                        .into(),
                    reason: "fast-path function call (not checkable)".into(),
                    rule: None,
                });
                Ok(GateOut::Replace(query_message(&token), ruling))
            }
            b'C' => {
                if let Some((b'S', rest)) = body.split_first().map(|(k, r)| (*k, r)) {
                    if let Some((name, _)) =
                        cstr_bytes(rest).and_then(|(n, r)| Some((std::str::from_utf8(n).ok()?, r)))
                    {
                        self.stmts.remove(name);
                        if !name.is_empty() && self.view.prepared.remove(name).is_some() {
                            self.generation += 1;
                        }
                    }
                }
                Ok(GateOut::Forward(None))
            }
            _ => Ok(GateOut::Forward(None)),
        }
    }

    /// The ruling for binding statement `name` now; judges it again when the session
    /// changed since it was prepared.
    fn bind(&mut self, name: &str) -> Result<Arc<Ruling>, Refusal> {
        let generation = self.generation;
        let Some(named) = self.stmts.get(name) else {
            return Err(Refusal {
                sqlstate: "26000",
                message: format!("prepared statement \"{name}\" does not exist"),
                reason: format!("Bind of statement {name:?}, which Postern did not see prepared"),
                rule: None,
            });
        };
        if named.judged == generation && !self.timed {
            return Ok(named.ruling.clone());
        }
        // Taken out while judging (judging borrows the gate), put back below.
        let candidates = self
            .stmts
            .get_mut(name)
            .map(|n| std::mem::take(&mut n.candidates))
            .unwrap_or_default();
        let verdict = self.judge_candidates(&candidates);
        if let Some(n) = self.stmts.get_mut(name) {
            n.candidates = candidates;
            if let Ok(ruling) = &verdict {
                n.judged = generation;
                n.ruling = ruling.clone();
            }
        }
        verdict
    }

    /// Judges every text a statement name may hold, in the session as it is now.
    fn judge_candidates(&self, candidates: &[Prepared]) -> Result<Arc<Ruling>, Refusal> {
        let ruling = self.judge_candidates_access(candidates)?;
        if self.masking.is_none() {
            return Ok(ruling);
        }
        // Planned again with the masking as it is now (it may have been refreshed).
        let masks = match candidates {
            [Prepared::Parsed { analysis, .. }] => self.mask_plans(analysis)?,
            // Several texts may be what the server holds: mask every computed column.
            _ => Some(Arc::new(vec![
                Some(postern_policy::StatementMask::opaque()),
            ])),
        };
        let mut r = Arc::unwrap_or_clone(ruling);
        r.masks = masks;
        Ok(Arc::new(r))
    }

    /// [`Gate::judge_candidates`] without masking: the access decision.
    fn judge_candidates_access(&self, candidates: &[Prepared]) -> Result<Arc<Ruling>, Refusal> {
        let mut ruling = None;
        for c in candidates {
            match c {
                Prepared::Parsed { text, analysis } => {
                    let j = judge(&self.policy, &self.view, text, analysis, self.arrival());
                    if let Some(r) = j.refusal {
                        return Err(r);
                    }
                    ruling.get_or_insert_with(|| self.ruling(&j));
                }
                Prepared::Sql(s) => {
                    if let Decision::Deny { reason, rule } = decide_in(&self.policy, &self.view, s)
                    {
                        return Err(Refusal {
                            sqlstate: postern_policy::judge::SQLSTATE_REFUSED,
                            message: format!("Postern refused this statement: {reason}"),
                            reason,
                            rule,
                        });
                    }
                }
            }
        }
        Ok(ruling.unwrap_or_else(|| self.allowed.clone()))
    }

    /// Looks at a server message; returns a replacement when it is the server's answer to
    /// one of Postern's replacement statements.
    pub fn server_message(&mut self, ty: u8, body: &[u8]) -> Option<BytesMut> {
        match ty {
            b'S' => {
                // PostgreSQL 18 and later report search_path whenever it changes, also
                // inside functions Postern cannot see into: from then on the path is exact.
                let (name, rest) = cstr_bytes(body)?;
                if name == b"search_path" {
                    // A report Postern cannot read leaves the path unknown: unqualified
                    // names are then refused rather than resolved against a stale guess.
                    let path = cstr_bytes(rest)
                        .and_then(|(v, _)| std::str::from_utf8(v).ok())
                        .map(|v| {
                            postern_policy::judge::expand_path(
                                &postern_sql::pg::split_search_path(v),
                                self.view.user_schema.as_deref(),
                            )
                        });
                    if self.view.search_path != path {
                        self.view.search_path = path;
                        self.path_changes += 1;
                        self.generation += 1;
                    }
                }
                None
            }
            b'E' => {
                let n = refusal_number(body, &self.token)?;
                let r = self.refusals.remove(&n)?;
                let mut out = BytesMut::with_capacity(64 + r.message.len());
                codec::error_response(&mut out, Severity::Error, r.sqlstate, &r.message, None);
                Some(out)
            }
            _ => None,
        }
    }

    /// A lone `SET search_path` (or `RESET`) completed without error and the server then
    /// reported no open transaction block: the path is now exactly what it set (until
    /// then Postern assumed old and new together) — unless the assumed path changed again
    /// since (`at`, from [`Ruling::search_path`]).
    pub fn confirm_search_path(&mut self, path: &[String], at: u64) {
        if self.path_changes == at {
            self.view.search_path = Some(path.to_vec());
            self.path_changes += 1;
            self.generation += 1;
        }
    }
}

/// The path after `text` when it is exactly one session-level `SET search_path` or
/// `RESET search_path` (and nothing else).
fn lone_search_path(analysis: &Cached, view: &SessionView) -> Option<Vec<String>> {
    let a = analysis.as_ref().as_ref().ok()?;
    let [Statement::Analysed(f)] = a.statements.as_slice() else {
        return None;
    };
    match f.session.as_slice() {
        [postern_sql::SessionEffect::SearchPath(p)] => Some(postern_policy::judge::expand_path(
            p,
            view.user_schema.as_deref(),
        )),
        [postern_sql::SessionEffect::SearchPathDefault] if !f.discards_all() => {
            Some(view.initial_search_path.clone())
        }
        _ => None,
    }
}

/// The number in `<token><n>` inside an ErrorResponse's message, if there is one.
fn refusal_number(body: &[u8], token: &str) -> Option<u64> {
    let (_, msg) = error_fields(body).find(|(k, _)| *k == b'M')?;
    let at = msg.find(token)? + token.len();
    let digits: &str = &msg[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// `SELECT "<token>"`: fails in parse analysis (no such column), so at Query or Parse.
fn failing_select(token: &str) -> String {
    format!("SELECT \"{token}\"")
}

fn query_message(token: &str) -> BytesMut {
    let mut out = BytesMut::new();
    codec::query(&mut out, &failing_select(token));
    out
}

fn parse_message(name: &[u8], token: &str) -> BytesMut {
    let mut out = BytesMut::new();
    codec::parse(&mut out, name, &failing_select(token));
    out
}

/// A Bind of the statement named `<token>`, which does not exist.
fn bind_message(portal: &[u8], token: &str) -> BytesMut {
    let mut out = BytesMut::new();
    codec::bind(&mut out, portal, token);
    out
}

#[cfg(test)]
mod tests;
