//! The per-statement decision: passthrough modes (A2) and object privileges (A1) applied
//! to an analysed statement.

use std::collections::{HashMap, HashSet};

use postern_sql::{
    Access, Action, ObjectName, SessionEffect, Statement, StatementFacts, StatementKind,
};
use serde::{Deserialize, Serialize};

use postern_core::DatasourceType;

use crate::builtins::{function_class, is_catalog_relation, FunctionClass, CATALOG_SCHEMAS};
use crate::privilege::{check, Check, Privilege, PrivilegeRule, ResolvedObject};

/// How closely a user's statements on a datasource are checked (A2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No statement checks (still fully audited).
    Passthrough,
    /// Privileges enforced on everything analysable; unanalysable statements pass.
    Masked,
    /// Privileges enforced; unanalysable statements refused unless allow-listed.
    Protected,
}

impl Mode {
    fn strictness(self) -> u8 {
        match self {
            Mode::Passthrough => 0,
            Mode::Masked => 1,
            Mode::Protected => 2,
        }
    }

    /// The mode of a user holding these grants: the most restrictive, and PROTECTED when
    /// there are none.
    pub fn effective(granted: impl IntoIterator<Item = Mode>) -> Mode {
        granted
            .into_iter()
            .max_by_key(|m| m.strictness())
            .unwrap_or(Mode::Protected)
    }

    /// The name used in admin files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Passthrough => "PASSTHROUGH",
            Mode::Masked => "MASKED PASSTHROUGH",
            Mode::Protected => "PROTECTED PASSTHROUGH",
        }
    }
}

/// What the decision needs to know about the session.
pub struct Context<'a> {
    /// Datasource alias.
    pub datasource: &'a str,
    /// The database the session is connected to.
    pub database: &'a str,
    /// The session's search_path with `$user` expanded, or `None` when it is not known
    /// (after a computed `set_config` or `SET LOCAL`).
    pub search_path: Option<&'a [String]>,
    /// Schemas known to exist, when known: unqualified names resolve only to these (the
    /// server skips search_path entries that do not exist).
    pub existing_schemas: Option<&'a HashSet<String>>,
    /// The user's effective mode on this datasource.
    pub mode: Mode,
    /// The privilege rules of all the user's roles.
    pub rules: &'a [PrivilegeRule],
    /// Whether reading the system catalogs (`pg_catalog`, `information_schema`) needs no
    /// grant (clients such as psql read them for `\d`); deny rules still apply.
    pub catalog_read: bool,
    /// Statements prepared with SQL `PREPARE` in this session, by name.
    pub prepared: &'a HashMap<String, StatementFacts>,
    /// Whether the statement's exact normalised text is on the datasource's allow-list.
    pub allow_listed: bool,
    /// Whose SQL this is: for MySQL a database is what PostgreSQL calls a schema, so an
    /// object `db.t` is `datasource.db.db.t` in privilege patterns, and the built-ins differ.
    pub dialect: DatasourceType,
}

/// Allowed or refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Go ahead.
    Allow {
        /// Why it passed without a full check, when it did (for the audit log).
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Refuse.
    Deny {
        /// What to tell the user: the privilege and object, or the rule, at fault.
        reason: String,
        /// The deny rule that decided, as `role: pattern`, when a rule decided.
        #[serde(skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
}

impl Decision {
    fn allow() -> Self {
        Decision::Allow { note: None }
    }

    fn deny(reason: impl Into<String>) -> Self {
        Decision::Deny {
            reason: reason.into(),
            rule: None,
        }
    }

    /// Whether the statement may run.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Decides one statement of a query string.
pub fn decide(statement: &Statement, cx: &Context<'_>) -> Decision {
    if cx.mode == Mode::Passthrough {
        return Decision::Allow {
            note: Some("PASSTHROUGH mode: not checked".into()),
        };
    }
    match statement {
        Statement::Unanalysable {
            command,
            reason,
            flags,
        } => {
            // What the word scan found is checked in every mode that checks at all.
            if let Some(d) = check_flags(flags, cx) {
                return d;
            }
            match cx.mode {
                Mode::Masked => Decision::Allow {
                    note: Some(format!(
                        "not analysed ({reason}); allowed in MASKED PASSTHROUGH mode"
                    )),
                },
                _ if cx.allow_listed => Decision::Allow {
                    note: Some("not analysed; on the datasource's allow-list".into()),
                },
                _ => Decision::deny(format!(
                    "Postern cannot analyse this {} statement ({reason}), and PROTECTED PASSTHROUGH \
                     mode refuses what it cannot check; ask an admin to add its exact text to the \
                     allow-list of datasource {}",
                    if command.is_empty() { "kind of" } else { command },
                    cx.datasource
                )),
            }
        }
        Statement::Analysed(f) => decide_facts(f, cx, 0),
    }
}

fn decide_facts(f: &StatementFacts, cx: &Context<'_>, depth: u8) -> Decision {
    if f.kind == StatementKind::Execute {
        let Some(name) = &f.prepared else {
            return Decision::deny("EXECUTE without a statement name");
        };
        return match cx.prepared.get(name) {
            // The EXECUTE's own accesses (subqueries in its parameters) count too.
            Some(inner) if depth == 0 => {
                let d = decide_facts(inner, cx, depth + 1);
                if !d.allowed() {
                    return d;
                }
                check_all(f, cx)
            }
            Some(_) => Decision::deny("nested EXECUTE"),
            None => Decision::deny(format!(
                "no statement named {name:?} was prepared in this session"
            )),
        };
    }
    check_all(f, cx)
}

fn check_all(f: &StatementFacts, cx: &Context<'_>) -> Decision {
    let whole_db = ResolvedObject {
        datasource: cx.datasource,
        database: cx.database,
        schema: "*",
        object: "*",
    };
    let need_db = |p: Privilege, why: &str| -> Option<Decision> { refusal(cx, p, &whole_db, why) };
    for effect in &f.session {
        let target = match effect {
            SessionEffect::SetRole(Some(r)) | SessionEffect::SetSessionAuthorization(Some(r))
                if !r.eq_ignore_ascii_case("none") && !r.eq_ignore_ascii_case("default") =>
            {
                Some(r)
            }
            _ => None,
        };
        if let Some(r) = target {
            if let Some(d) = need_db(Privilege::SetRole, &format!("to act as role {r}")) {
                return d;
            }
        }
    }
    // A DO block needs its own privilege, which covers the SQL it builds.
    let mut flags = f.flags.clone();
    flags.dynamic_sql &= f.kind != StatementKind::DoBlock;
    if let Some(d) = check_flags(&flags, cx) {
        return d;
    }
    if f.kind == StatementKind::DoBlock {
        if let Some(d) = need_db(Privilege::ExecuteSqlBlock, "to run a DO block") {
            return d;
        }
    }
    for effect in &f.session {
        if let SessionEffect::UseDatabase(db) = effect {
            if let Some(d) = use_database(db, cx) {
                return d;
            }
        }
    }
    for a in &f.accesses {
        if let Some(d) = check_access(a, cx) {
            return d;
        }
    }
    for func in &f.functions {
        if let Some(d) = check_function(func, cx) {
            return d;
        }
    }
    Decision::allow()
}

/// The privileges the firewall-relevant flags need (whole datasource), and the flags no
/// privilege grants.
fn check_flags(flags: &postern_sql::Flags, cx: &Context<'_>) -> Option<Decision> {
    if flags.lexing {
        return Some(Decision::deny(
            "this changes sql_mode in a way that changes how the server reads SQL text \
             (ANSI_QUOTES, NO_BACKSLASH_ESCAPES, another grammar, or a value computed when it \
             runs), and Postern could no longer check statements the way the server reads them",
        ));
    }
    let whole_db = ResolvedObject {
        datasource: cx.datasource,
        database: cx.database,
        schema: "*",
        object: "*",
    };
    let need = |p: Privilege, why: &str| refusal(cx, p, &whole_db, why);
    if flags.copy_program {
        if let Some(d) = need(
            Privilege::CopyProgram,
            "to run a program on the database server",
        ) {
            return Some(d);
        }
    }
    if flags.copy_server_file {
        if let Some(d) = need(
            Privilege::CopyFile,
            "to read or write a file on the database server",
        ) {
            return Some(d);
        }
    }
    if flags.dynamic_sql {
        if let Some(d) = need(Privilege::ExecuteDynamicSql, "to run SQL built at run time") {
            return Some(d);
        }
    }
    None
}

/// MySQL `USE db`: allowed when a role grants anything in that database.
fn use_database(db: &str, cx: &Context<'_>) -> Option<Decision> {
    if cx.catalog_read && db == "information_schema" {
        return None;
    }
    if crate::privilege::grants_within(cx.rules, cx.datasource, db, db) {
        return None;
    }
    Some(Decision::deny(format!(
        "no role of yours grants anything in database {db} of datasource {}",
        cx.datasource
    )))
}

fn privilege_for(action: Action) -> Privilege {
    match action {
        Action::Select => Privilege::Select,
        Action::Insert => Privilege::Insert,
        // Locking rows or tables is a write intent.
        Action::Update | Action::Lock => Privilege::Update,
        Action::Delete => Privilege::Delete,
        Action::Truncate => Privilege::Truncate,
        Action::Ddl => Privilege::Ddl,
        Action::Execute | Action::Call => Privilege::Execute,
    }
}

/// The schemas an object may live in. `Err` when an unqualified name meets an unknown
/// search_path.
fn candidates<'a>(o: &'a ObjectName, cx: &'a Context<'_>) -> Result<Vec<&'a str>, Decision> {
    if let Some(s) = &o.schema {
        return Ok(vec![s.as_str()]);
    }
    if o.name == "*" {
        return Ok(vec!["*"]);
    }
    if cx.dialect == DatasourceType::Mysql {
        // The current database: known from the session, or none selected.
        return match cx.search_path {
            Some(p) if !p.is_empty() => Ok(p.iter().map(String::as_str).collect()),
            Some(_) => Err(Decision::deny(format!(
                "{} is not qualified with a database and no database is selected (USE one, or \
                 write db.{})",
                o.name, o.name
            ))),
            None => Err(Decision::deny(format!(
                "the session's current database is not known here, so {} cannot be resolved; \
                 qualify it with its database",
                o.name
            ))),
        };
    }
    let Some(path) = cx.search_path else {
        return Err(Decision::deny(format!(
            "the session's search_path is not known here (it was changed with set_config or \
             SET LOCAL), so {} cannot be resolved; qualify it with its schema or SET search_path",
            o.name
        )));
    };
    // The server searches pg_catalog first unless the path names it: a catalog relation's
    // name means the catalog's.
    if is_catalog_relation(&o.name) && !path.iter().any(|s| s == "pg_catalog") {
        return Ok(vec!["pg_catalog"]);
    }
    let mut out: Vec<&str> = Vec::new();
    for s in path {
        if cx.existing_schemas.is_none_or(|e| e.contains(s)) {
            out.push(s.as_str());
        }
    }
    if out.is_empty() {
        return Err(Decision::deny(format!(
            "{} is not schema-qualified and no schema of the session's search_path exists",
            o.name
        )));
    }
    Ok(out)
}

fn check_access(a: &Access, cx: &Context<'_>) -> Option<Decision> {
    let p = privilege_for(a.action);
    let mysql = cx.dialect == DatasourceType::Mysql;
    let schemas = match candidates(&a.object, cx) {
        Ok(s) => s,
        Err(d) => return Some(d),
    };
    for schema in schemas {
        // MySQL: a database is a schema; both levels of the pattern hold its name.
        let db = if mysql && schema != "*" {
            schema
        } else {
            a.object.database.as_deref().unwrap_or(cx.database)
        };
        let o = ResolvedObject {
            datasource: cx.datasource,
            database: db,
            schema,
            object: &a.object.name,
        };
        let catalog_schema = if mysql {
            schema == "information_schema"
        } else {
            CATALOG_SCHEMAS.contains(&schema)
        };
        let catalog = cx.catalog_read && p == Privilege::Select && catalog_schema;
        let d = if catalog {
            // Free to read, unless a rule denies it.
            match check(cx.rules, p, &o) {
                Check::Denied(r) => Some(denied_by(p, &o, r)),
                _ => None,
            }
        } else {
            refusal(cx, p, &o, "")
        };
        if d.is_some() {
            return d;
        }
    }
    None
}

fn check_function(func: &ObjectName, cx: &Context<'_>) -> Option<Decision> {
    // A built-in that reaches outside needs EXECUTE on it in the system schema:
    // `ds.db.pg_catalog.<name>`, or for MySQL `ds.mysql.mysql.<name>` (MySQL's files and
    // programs are also refused through the statement's flags).
    let (class, database, schema) = match cx.dialect {
        DatasourceType::Mysql => (
            crate::mysql_builtins::function_class(func),
            "mysql",
            "mysql",
        ),
        DatasourceType::Postgres => (function_class(func), cx.database, "pg_catalog"),
    };
    match class {
        FunctionClass::Harmless => None,
        FunctionClass::Dangerous => {
            let o = ResolvedObject {
                datasource: cx.datasource,
                database,
                schema,
                object: &func.name,
            };
            refusal(
                cx,
                Privilege::Execute,
                &o,
                "(a function that reaches outside the database)",
            )
        }
        FunctionClass::Other => check_access(
            &Access {
                object: func.clone(),
                action: Action::Execute,
            },
            cx,
        ),
    }
}

fn denied_by(p: Privilege, o: &ResolvedObject<'_>, r: &PrivilegeRule) -> Decision {
    Decision::Deny {
        reason: format!(
            "{p} on {o} is denied by role {}'s rule on {}",
            r.role,
            r.pattern.as_str()
        ),
        rule: Some(format!("{}: {}", r.role, r.pattern.as_str())),
    }
}

/// `None` when allowed; otherwise the refusal naming the privilege and object.
fn refusal(cx: &Context<'_>, p: Privilege, o: &ResolvedObject<'_>, why: &str) -> Option<Decision> {
    match check(cx.rules, p, o) {
        Check::Allowed(_) => None,
        Check::Denied(r) => Some(denied_by(p, o, r)),
        Check::NotGranted => {
            let what = if o.schema == "*" && o.object == "*" {
                format!(
                    "{p} on datasource {} (database {})",
                    o.datasource, o.database
                )
            } else {
                format!("{p} on {o}")
            };
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" {why}")
            };
            Some(Decision::deny(format!(
                "no role of yours grants {what}{why}"
            )))
        }
    }
}
