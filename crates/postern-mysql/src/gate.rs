//! The statement gate of one MySQL session: every query, prepared statement, execution and
//! change of database is judged by the shared policy ([`postern_policy::judge`]) before it
//! goes upstream. No I/O: the relay asks, the gate answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use postern_policy::{
    apply_effects, judge, Arrival, Decision, Judgement, Mode, Policy, Refusal, SessionMasking,
    SessionView, StatementMask,
};
use postern_sql::cache::{AnalysisCache, Cached};
use postern_sql::mask::LogText;
use postern_sql::{SessionEffect, Statement};

use crate::masker::StatementPlan;

/// Analyses kept per session.
const CACHE: usize = 512;

/// MySQL's error for a refused statement: ER_TABLEACCESS_DENIED_ERROR's code and class.
pub const ER_REFUSED: u16 = 1142;
/// SQLSTATE class MySQL uses for access errors.
pub const SQLSTATE_REFUSED: &str = "42000";

/// How Postern ruled on a command, for the client and its audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruling {
    /// Whether it may go upstream.
    pub allowed: bool,
    /// Why it was refused, or a note on why it passed unchecked.
    pub reason: Option<String>,
    /// The rule that decided, when one did.
    pub rule: Option<String>,
    /// An allow-and-alert firewall rule let it through.
    pub alert: bool,
    /// What the client is told when refused.
    pub message: Option<String>,
    /// A lone `USE db`: the database the session is in once the server says OK.
    pub use_database: Option<String>,
    /// When the session masks: per statement, the masking of its computed columns.
    pub plans: Option<Vec<StatementPlan>>,
}

impl Ruling {
    fn allow() -> Self {
        Ruling {
            allowed: true,
            ..Ruling::default()
        }
    }

    fn refuse(r: Refusal) -> Self {
        Ruling {
            allowed: false,
            reason: Some(r.reason),
            rule: r.rule,
            alert: false,
            message: Some(r.message),
            use_database: None,
            plans: None,
        }
    }

    fn of(j: &Judgement) -> Self {
        if let Some(r) = &j.refusal {
            return Ruling::refuse(r.clone());
        }
        Ruling {
            allowed: true,
            reason: j.decisions.iter().find_map(|d| match d {
                Decision::Allow { note: Some(n) } => Some(n.clone()),
                _ => None,
            }),
            rule: j.firewall.as_ref().map(|f| format!("firewall: {}", f.rule)),
            alert: j.alert(),
            message: None,
            use_database: None,
            plans: None,
        }
    }
}

/// Tables of sampled column values (MariaDB's engine-independent statistics, MySQL's
/// histograms): masked values in another form.
fn is_statistics(r: &postern_sql::ObjectName) -> bool {
    matches!(
        (r.schema.as_deref(), r.name.as_str()),
        (Some("mysql"), "column_stats")
            | (Some("information_schema"), "column_statistics")
            | (Some("mysql"), "column_statistics")
    )
}

/// A statement prepared with COM_STMT_PREPARE, as judged.
struct Prepared {
    text: Arc<str>,
    analysis: Cached,
    plans: Option<Vec<StatementPlan>>,
    /// The policy generation it was judged in.
    judged: u64,
}

/// The gate of one session.
pub struct Gate {
    policy: Arc<Policy>,
    epoch: u64,
    generation: u64,
    view: SessionView,
    cache: AnalysisCache,
    stmts: HashMap<u32, Prepared>,
    client: IpAddr,
    masking: Option<Arc<SessionMasking>>,
    /// The session changed the schema (or ran what Postern cannot see into): the masking
    /// catalog is read again before the next command.
    catalog_stale: bool,
    /// When the masking catalog was last read.
    catalog_read: std::time::Instant,
    /// A firewall rule depends on the time of day: executions are judged every time.
    timed: bool,
    /// The connection's character set may read non-ASCII bytes differently from UTF-8 (a
    /// multi-byte set whose second bytes can be quotes or backslashes: GBK, Big5, SJIS…), so
    /// only ASCII text is judged.
    ascii_only: bool,
}

/// Collation ids of character sets whose bytes read as Postern reads UTF-8 text:
/// utf8mb4, utf8mb3, latin1, ascii, binary.
fn safe_collation(id: u8) -> bool {
    matches!(id, 5 | 8 | 11 | 15 | 31 | 33 | 45 | 46 | 47 | 48 | 49 | 63 | 65 | 83 | 94 | 192..=215 | 223..=247 | 255)
}

/// Character set names (as `SET NAMES` gives them) that read as Postern reads UTF-8 text.
fn safe_charset(name: &str) -> bool {
    matches!(
        name,
        "utf8mb4" | "utf8" | "utf8mb3" | "latin1" | "ascii" | "binary" | "default"
    )
}

impl Gate {
    /// A gate for a session that starts in `database` (empty: none selected) under `policy`
    /// (loaded when the store's change counter was `epoch`).
    pub fn new(
        policy: Arc<Policy>,
        epoch: u64,
        database: &str,
        client: IpAddr,
        collation: u8,
    ) -> Self {
        let initial: Vec<String> = if database.is_empty() {
            Vec::new()
        } else {
            vec![database.to_lowercase()]
        };
        let timed = policy.firewall.iter().any(|r| r.depends_on_time());
        Gate {
            policy,
            epoch,
            generation: 0,
            view: SessionView {
                search_path: Some(initial.clone()),
                initial_search_path: initial,
                ..SessionView::default()
            },
            cache: AnalysisCache::new(CACHE),
            stmts: HashMap::new(),
            client,
            masking: None,
            catalog_stale: false,
            catalog_read: std::time::Instant::now(),
            timed,
            ascii_only: !safe_collation(collation),
        }
    }

    /// Whether statements go unchecked (PASSTHROUGH mode).
    pub fn passthrough(&self) -> bool {
        self.policy.mode == Mode::Passthrough
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Whether the store changed since the policy was loaded (`now`: its change counter).
    pub fn stale(&self, now: u64) -> bool {
        now != self.epoch
    }

    /// A reloaded policy; prepared statements are judged again at their next execution.
    pub fn set_policy(&mut self, policy: Arc<Policy>, epoch: u64) {
        self.timed = policy.firewall.iter().any(|r| r.depends_on_time());
        self.policy = policy;
        self.epoch = epoch;
        self.generation += 1;
    }

    /// What result values the session masks (`None`: nothing).
    pub fn set_masking(&mut self, m: Option<Arc<SessionMasking>>) {
        if m.as_ref().is_some_and(|m| !m.is_blind()) {
            self.catalog_read = std::time::Instant::now();
        }
        self.masking = m;
        // Prepared statements are planned again under it at their next execution.
        self.generation += 1;
    }

    /// The session's masking, when results are masked.
    pub fn masking(&self) -> Option<&Arc<SessionMasking>> {
        self.masking.as_ref()
    }

    /// Whether the masking catalog is older than `max_age` (others' schema changes are seen
    /// when it is read again).
    pub fn catalog_due(&self, max_age: std::time::Duration) -> bool {
        self.masking.is_some() && self.catalog_read.elapsed() >= max_age
    }

    /// Whether the masking catalog must be read again before the next command.
    pub fn catalog_stale(&self) -> bool {
        self.catalog_stale
    }

    /// The masking rules changed: the catalog is read again before the next command.
    pub fn mark_catalog_stale(&mut self) {
        self.catalog_stale = true;
    }

    /// Whether the masking catalog must be read again (and clears the flag).
    pub fn take_catalog_stale(&mut self) -> bool {
        std::mem::take(&mut self.catalog_stale)
    }

    /// The masking plans of an allowed analysis, or the refusal a masking guard gives.
    fn plans(&self, analysis: &Cached) -> Result<Option<Vec<StatementPlan>>, Refusal> {
        let Some(m) = &self.masking else {
            return Ok(None);
        };
        let path = self
            .view
            .search_path
            .clone()
            .unwrap_or_else(|| self.view.initial_search_path.clone());
        let Ok(a) = analysis.as_ref() else {
            return Ok(Some(vec![StatementPlan::opaque()]));
        };
        let refuse = |what: String| Refusal {
            sqlstate: SQLSTATE_REFUSED,
            message: format!("Postern refused this statement: {what}"),
            reason: what,
            rule: None,
        };
        let mut out = Vec::with_capacity(a.statements.len());
        for s in &a.statements {
            out.push(match s {
                Statement::Analysed(f) => {
                    if f.flags.dynamic_sql {
                        return Err(refuse(
                            "it runs SQL text built at run time, which could copy masked values \
                             where they are read unmasked, and masking rules apply to you here"
                                .into(),
                        ));
                    }
                    if let Some(r) = f.flow.relations.iter().find(|r| is_statistics(r)) {
                        return Err(refuse(format!(
                            "{r} shows sampled column values, which masking rules hide from you"
                        )));
                    }
                    let mut mask = m.plan(f, &self.view.prepared, &path, self.policy.mode)?;
                    if f.command == "SHOW WARNINGS" || f.command == "SHOW ERRORS" {
                        // Their messages quote values ("Truncated incorrect … value: '…'").
                        mask = Some(StatementMask::opaque());
                    }
                    StatementPlan {
                        mask,
                        defines: f.flow.derived.iter().map(|(n, _)| n.clone()).collect(),
                    }
                }
                Statement::Unanalysable {
                    command, reason, ..
                } => {
                    return Err(refuse(format!(
                        "Postern cannot analyse this {} statement ({reason}), and masking rules \
                         apply to you here: it could copy masked values where they are read \
                         unmasked",
                        if command.is_empty() {
                            "kind of"
                        } else {
                            command
                        }
                    )));
                }
            });
        }
        Ok(Some(out))
    }

    fn arrival(&self) -> Arrival {
        Arrival {
            client: self.client,
            now: time::OffsetDateTime::now_utc(),
        }
    }

    /// Text that cannot be judged as the server will read it: not UTF-8, or non-ASCII on a
    /// connection whose character set reads bytes differently. Refused in the checked modes.
    pub fn unreadable(&self, raw: &[u8]) -> Option<Ruling> {
        if self.passthrough() {
            return None;
        }
        let why = if std::str::from_utf8(raw).is_err() {
            "the statement text is not UTF-8, so Postern cannot read it as the server will"
        } else if self.ascii_only && !raw.is_ascii() {
            "the connection's character set reads non-ASCII bytes differently from UTF-8 \
             (SET NAMES utf8mb4 to send such text)"
        } else {
            return None;
        };
        Some(Ruling::refuse(Refusal {
            sqlstate: SQLSTATE_REFUSED,
            message: format!("Postern refused this statement: {why}"),
            reason: why.to_string(),
            rule: None,
        }))
    }

    /// Judges a COM_QUERY (or COM_STMT_PREPARE) text. Returns the ruling, the analysis and
    /// the text's audit forms (`None` in PASSTHROUGH mode, where nothing is analysed).
    pub fn query<'s>(&mut self, text: &'s str) -> (Ruling, Option<(Cached, LogText<'s>)>) {
        if self.passthrough() {
            return (Ruling::allow(), None);
        }
        let (analysis, log) = self.cache.analyse_mysql(text);
        let j = judge(&self.policy, &self.view, text, &analysis, self.arrival());
        let mut r = Ruling::of(&j);
        if r.allowed {
            match self.plans(&analysis) {
                Ok(p) => r.plans = p,
                Err(refusal) => return (Ruling::refuse(refusal), Some((analysis, log))),
            }
            if let Ok(a) = analysis.as_ref() {
                if self.masking.is_some() {
                    self.catalog_stale |= a.statements.iter().any(|s| match s {
                        Statement::Analysed(f) => f.kind == postern_sql::StatementKind::Ddl,
                        Statement::Unanalysable { .. } => true,
                    });
                }
                apply_effects(&mut self.view, a);
                if a.statements.iter().any(|s| match s {
                    Statement::Analysed(f) => !f.session.is_empty(),
                    Statement::Unanalysable { .. } => true,
                }) {
                    // A character set that reads bytes differently: only ASCII from now on
                    // (and back when a safe one is chosen).
                    for c in postern_sql::mysql::charset_changes(text) {
                        self.ascii_only = !safe_charset(&c);
                    }
                }
                if let [Statement::Analysed(f)] = a.statements.as_slice() {
                    r.use_database = f.session.iter().find_map(|e| match e {
                        SessionEffect::UseDatabase(db) => Some(db.clone()),
                        _ => None,
                    });
                }
            }
        }
        (r, Some((analysis, log)))
    }

    /// COM_INIT_DB: the same decision as `USE db`.
    pub fn init_db(&mut self, db: &str) -> Ruling {
        let text = format!("USE `{}`", db.replace('`', "``"));
        self.query(&text).0
    }

    /// The server prepared `text` (judged by [`Gate::query`]) as statement `id`.
    pub fn prepared(
        &mut self,
        id: u32,
        text: Arc<str>,
        analysis: Cached,
        plans: Option<Vec<StatementPlan>>,
    ) {
        self.stmts.insert(
            id,
            Prepared {
                text,
                analysis,
                plans,
                judged: self.generation,
            },
        );
    }

    /// COM_STMT_EXECUTE of statement `id`: allowed as prepared unless the policy changed
    /// since, or the firewall depends on the time; then judged again.
    pub fn execute(&mut self, id: u32) -> Ruling {
        if self.passthrough() {
            return Ruling::allow();
        }
        let Some(p) = self.stmts.get(&id) else {
            // Prepared before statements were checked, or never: fail closed.
            return Ruling::refuse(Refusal {
                sqlstate: SQLSTATE_REFUSED,
                message: format!(
                    "Postern refused this execution: statement {id} was not prepared under the \
                     current policy; prepare it again"
                ),
                reason: format!("execution of statement {id}, not judged when prepared"),
                rule: None,
            });
        };
        if p.judged == self.generation && !self.timed {
            let mut r = Ruling::allow();
            r.plans.clone_from(&p.plans);
            return r;
        }
        let (text, analysis) = (p.text.clone(), p.analysis.clone());
        let j = judge(&self.policy, &self.view, &text, &analysis, self.arrival());
        let mut r = Ruling::of(&j);
        if r.allowed {
            match self.plans(&analysis) {
                Ok(plans) => r.plans = plans,
                Err(refusal) => return Ruling::refuse(refusal),
            }
            if let Some(p) = self.stmts.get_mut(&id) {
                p.judged = self.generation;
                p.plans.clone_from(&r.plans);
            }
        }
        r
    }

    /// COM_STMT_CLOSE.
    pub fn close(&mut self, id: u32) {
        self.stmts.remove(&id);
    }

    /// COM_RESET_CONNECTION: prepared statements and the session's state are gone; the
    /// database stays as it was.
    pub fn reset(&mut self) {
        self.stmts.clear();
        self.view.prepared.clear();
    }

    /// The server confirmed a lone `USE db`: unqualified names now mean that database only.
    pub fn confirm_database(&mut self, db: &str) {
        self.view.search_path = Some(vec![db.to_string()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_core::{DatasourceType, PrivilegeSpec};
    use postern_policy::compile_rules;

    fn policy(mode: Mode, allow: &[(&str, &str)]) -> Arc<Policy> {
        let specs: Vec<PrivilegeSpec> = allow
            .iter()
            .map(|(p, on)| PrivilegeSpec {
                allow: vec![p.to_string()],
                deny: vec![],
                on: on.to_string(),
            })
            .collect();
        Arc::new(Policy {
            datasource: "shop".into(),
            database: "shopdb".into(),
            mode,
            rules: compile_rules("reader", &specs).expect("rules"),
            firewall: vec![],
            roles: vec!["reader".into()],
            allow_list: Default::default(),
            catalog_read: true,
            masking: Vec::new(),
            revealed: Default::default(),
            dialect: DatasourceType::Mysql,
        })
    }

    fn gate(mode: Mode) -> Gate {
        Gate::new(
            policy(mode, &[("SELECT", "shop.shopdb.shopdb.products")]),
            1,
            "shopdb",
            IpAddr::from([127, 0, 0, 1]),
            45,
        )
    }

    #[test]
    fn privileges_on_mysql_names() {
        let mut g = gate(Mode::Protected);
        assert!(g.query("select * from products").0.allowed);
        assert!(g.query("select * from `shopdb`.`products`").0.allowed);
        let r = g.query("select * from secrets").0;
        assert!(!r.allowed);
        assert!(
            r.message
                .as_deref()
                .unwrap_or("")
                .contains("shop.shopdb.shopdb.secrets"),
            "{r:?}"
        );
        assert!(!g.query("select * from other.products").0.allowed);
        // USE of a database with nothing granted is refused; of the own one, allowed.
        assert!(!g.init_db("other").allowed);
        let r = g.query("use shopdb").0;
        assert!(r.allowed);
        assert_eq!(r.use_database.as_deref(), Some("shopdb"));
    }

    #[test]
    fn use_then_unqualified_names_mean_the_new_database() {
        let mut g = Gate::new(
            policy(
                Mode::Protected,
                &[
                    ("SELECT", "shop.shopdb.shopdb.products"),
                    ("SELECT", "shop.other.other.products"),
                ],
            ),
            1,
            "shopdb",
            IpAddr::from([127, 0, 0, 1]),
            45,
        );
        assert!(g.query("use other").0.allowed);
        // Until the server confirms, names may mean either database.
        assert!(g.query("select * from products").0.allowed);
        g.confirm_database("other");
        assert!(g.query("select * from products").0.allowed);
        assert!(!g.query("select * from shopdb.secrets").0.allowed);
    }

    #[test]
    fn fail_closed_corners() {
        let mut g = gate(Mode::Masked);
        // Unanalysable text passes in MASKED mode, but not with what the word scan found.
        assert!(
            g.query("select 1 from products lock in share mode")
                .0
                .allowed
        );
        let r = g.query("select * from products into outfile '/tmp/x'").0;
        assert!(!r.allowed, "{r:?}");
        assert!(!g.query("select load_file('/etc/passwd')").0.allowed);
        assert!(!g.query("select sys_exec('id')").0.allowed);
        assert!(!g.query("set sql_mode = 'ANSI_QUOTES'").0.allowed);
        assert!(
            !g.query("SET STATEMENT sql_mode='ANSI_QUOTES' FOR select 1")
                .0
                .allowed
        );
        assert!(!g.query("prepare s from @q").0.allowed);
        assert!(g.query("set sql_mode = 'STRICT_TRANS_TABLES'").0.allowed);
        let mut p = gate(Mode::Protected);
        assert!(
            !p.query("select 1 from products lock in share mode")
                .0
                .allowed
        );
        // An execution Postern never saw prepared is refused.
        assert!(!p.execute(7).allowed);
    }

    #[test]
    fn text_read_differently_by_the_server_is_refused() {
        let mut g = gate(Mode::Masked);
        assert!(g.unreadable(b"select 1").is_none());
        assert!(g.unreadable("select 'é'".as_bytes()).is_none());
        assert!(g.unreadable(b"select '\xbf\x5c' from products").is_some());
        // SET NAMES gbk: a trailing byte may be a backslash there; only ASCII from then on.
        assert!(g.query("SET NAMES gbk").0.allowed);
        assert!(g.unreadable("select '\u{4e2d}'".as_bytes()).is_some());
        assert!(g.unreadable(b"select 1").is_none());
        assert!(g.query("SET NAMES utf8mb4").0.allowed);
        assert!(g.unreadable("select '\u{4e2d}'".as_bytes()).is_none());
        // Connected with a GBK collation (28): ASCII only.
        let sjis = Gate::new(
            policy(Mode::Masked, &[]),
            1,
            "shopdb",
            IpAddr::from([127, 0, 0, 1]),
            28,
        );
        assert!(sjis.unreadable("select 'é'".as_bytes()).is_some());
        // PASSTHROUGH checks nothing.
        let p = Gate::new(
            policy(Mode::Passthrough, &[]),
            1,
            "",
            IpAddr::from([127, 0, 0, 1]),
            28,
        );
        assert!(p.unreadable(b"\xff").is_none());
    }

    #[test]
    fn prepared_statements_are_judged_again_after_a_policy_change() {
        let mut g = gate(Mode::Protected);
        let (r, a) = g.query("select * from products where id = ?");
        assert!(r.allowed);
        let (analysis, _) = a.expect("analysed");
        g.prepared(
            1,
            "select * from products where id = ?".into(),
            analysis,
            None,
        );
        assert!(g.execute(1).allowed);
        g.set_policy(policy(Mode::Protected, &[]), 2);
        assert!(!g.execute(1).allowed);
        g.close(1);
        assert!(!g.execute(1).allowed);
    }

    #[test]
    fn passthrough_checks_nothing() {
        let mut g = Gate::new(
            policy(Mode::Passthrough, &[]),
            1,
            "",
            IpAddr::from([127, 0, 0, 1]),
            45,
        );
        let (r, a) = g.query("select * from secrets");
        assert!(r.allowed && a.is_none());
        assert!(g.execute(9).allowed);
    }
}
