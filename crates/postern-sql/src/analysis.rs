//! What a statement does, independent of the parser that found it out.
//!
//! The PostgreSQL analyser ([`crate::pg`]) produces these values; the MySQL path will
//! produce the same ones from its own parser, and the policy decides on them alone.

use serde::Serialize;

/// A database object as the statement names it (identifiers already case-folded the way
/// the server folds them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectName {
    /// Database (catalog), when the statement names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Schema, when the statement names one; `None` means "resolved by search_path".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Object name. `*` for statements that act on the whole database (roles, grants,
    /// system settings, extensions…).
    pub name: String,
}

impl ObjectName {
    /// An unqualified name.
    pub fn bare(name: impl Into<String>) -> Self {
        Self {
            database: None,
            schema: None,
            name: name.into(),
        }
    }

    /// A schema-qualified name.
    pub fn qualified(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            database: None,
            schema: Some(schema.into()),
            name: name.into(),
        }
    }

    /// The whole database: what role, grant and system-level statements act on.
    pub fn whole_database() -> Self {
        Self::bare("*")
    }

    /// The schemas this name may resolve to, given the session's search_path (already
    /// expanded: `$user` replaced by the session user). A qualified name has one.
    pub fn candidate_schemas<'a>(&'a self, search_path: &'a [String]) -> Vec<&'a str> {
        match &self.schema {
            Some(s) => vec![s.as_str()],
            None => search_path.iter().map(String::as_str).collect(),
        }
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.database {
            write!(f, "{d}.")?;
        }
        if let Some(s) = &self.schema {
            write!(f, "{s}.")?;
        }
        f.write_str(&self.name)
    }
}

/// How a statement touches an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reads rows (SELECT, a subquery, `RETURNING`, `COPY … TO`, the WHERE of an UPDATE…).
    Select,
    /// Adds rows (INSERT, `COPY … FROM`, MERGE … INSERT).
    Insert,
    /// Changes rows (UPDATE, `ON CONFLICT DO UPDATE`, MERGE … UPDATE).
    Update,
    /// Removes rows (DELETE, MERGE … DELETE).
    Delete,
    /// Empties a table.
    Truncate,
    /// Locks rows or tables (`SELECT … FOR UPDATE`, `LOCK TABLE`).
    Lock,
    /// Creates, alters or drops the object (or, for [`ObjectName::whole_database`], roles,
    /// grants and settings of the database).
    Ddl,
    /// Calls a function.
    Execute,
    /// Calls a procedure (`CALL`).
    Call,
}

/// One object touched one way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Access {
    /// The object.
    pub object: ObjectName,
    /// How.
    pub action: Action,
}

/// A change to the session's state that later statements depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum SessionEffect {
    /// `SET search_path` to these schemas (as written: `$user` not expanded).
    SearchPath(Vec<String>),
    /// `RESET search_path`, `SET search_path TO DEFAULT`, `RESET ALL`, `DISCARD ALL`.
    SearchPathDefault,
    /// The search_path changed to something not known in advance (`set_config` with a
    /// computed value): later unqualified names cannot be resolved.
    SearchPathUnknown,
    /// `SET ROLE` / `RESET ROLE` / `set_config('role', …)`: the session acts as another role.
    SetRole(Option<String>),
    /// `SET SESSION AUTHORIZATION`.
    SetSessionAuthorization(Option<String>),
    /// Any other setting (`SET statement_timeout = …`).
    Setting(String),
    /// MySQL `USE db` (or the protocol's COM_INIT_DB): unqualified names now mean this
    /// database's objects.
    UseDatabase(String),
}

/// What kind of statement this is, for policies and for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// SELECT, VALUES, TABLE, SHOW, and read-only cursor work.
    Select,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// MERGE.
    Merge,
    /// TRUNCATE.
    Truncate,
    /// COPY (either direction).
    Copy,
    /// Data definition (CREATE, ALTER, DROP, COMMENT, GRANT, roles…).
    Ddl,
    /// CALL of a procedure.
    Call,
    /// A `DO` block: procedural code, not analysable.
    DoBlock,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT…
    Transaction,
    /// SET, RESET, SHOW, DISCARD.
    Session,
    /// PREPARE (the statement it prepares is analysed with it).
    Prepare,
    /// EXECUTE of a statement prepared with PREPARE.
    Execute,
    /// DEALLOCATE.
    Deallocate,
    /// EXPLAIN (with ANALYZE it runs the statement: its accesses are those of the statement).
    Explain,
    /// LISTEN, NOTIFY, UNLISTEN.
    Notify,
    /// LOCK TABLE.
    Lock,
    /// VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, REFRESH MATERIALIZED VIEW.
    Maintenance,
}

/// Properties the firewall looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// An UPDATE or DELETE (at any depth) without a WHERE clause.
    pub modifies_without_where: bool,
    /// `COPY … TO/FROM PROGRAM`: runs a shell command on the database server.
    pub copy_program: bool,
    /// `COPY … TO/FROM 'file'`: a file on the database server.
    pub copy_server_file: bool,
    /// Runs SQL text built at run time (`EXECUTE` in procedural code, `query_to_xml`…).
    pub dynamic_sql: bool,
    /// Drops an object (DROP …).
    pub drops: bool,
    /// An `OR` with an always-true branch (`OR 1=1`, `OR 'a'='a'`, `OR true`): the shape
    /// of an injected condition.
    pub tautology: bool,
    /// Changes how the server reads later text (a MySQL `sql_mode` with `ANSI_QUOTES`,
    /// `NO_BACKSLASH_ESCAPES` or another grammar, or one computed at run time): Postern's
    /// analysis would no longer read statements the way the server does.
    pub lexing: bool,
}

impl Flags {
    /// No flag set.
    pub fn is_empty(&self) -> bool {
        *self == Flags::default()
    }
}

/// Everything one statement does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementFacts {
    /// Statement kind.
    pub kind: StatementKind,
    /// The command as PostgreSQL names it in its tags and docs (`SELECT`, `CREATE TABLE`,
    /// `ALTER ROLE`…).
    pub command: String,
    /// Objects touched, sorted, without duplicates.
    pub accesses: Vec<Access>,
    /// Functions called (also those behind `CALL`), sorted, without duplicates.
    pub functions: Vec<ObjectName>,
    /// Session changes, in order.
    pub session: Vec<SessionEffect>,
    /// For PREPARE: the name; for EXECUTE and DEALLOCATE: the prepared statement meant
    /// (`None` for `DEALLOCATE ALL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepared: Option<String>,
    /// Firewall-relevant properties.
    pub flags: Flags,
    /// Where column values go (for data masking).
    pub flow: Box<crate::flow::ColumnFlow>,
}

/// One statement of a query string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Statement {
    /// Understood fully.
    Analysed(StatementFacts),
    /// Parsed, but of a kind (or with a construct) the analyser does not understand: never
    /// guessed at. `command` names it when known.
    Unanalysable {
        /// The statement type as the parser names it (e.g. `CreateConversionStmt`).
        command: String,
        /// Why.
        reason: String,
        /// What a scan of its words found even so (MySQL: `INTO OUTFILE`, `LOAD_FILE(`,
        /// UDFs that run programs…), so modes that let unanalysable text through still
        /// check these.
        #[serde(skip_serializing_if = "Flags::is_empty")]
        flags: Flags,
    },
}

/// The analysis of a whole query string (a simple Query may hold several statements).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// The statements, in order.
    pub statements: Vec<Statement>,
}

impl StatementFacts {
    /// Whether running it changes the session: a setting, the search_path or role, or the
    /// set of prepared statements.
    pub fn changes_session(&self) -> bool {
        !self.session.is_empty()
            || matches!(
                self.kind,
                StatementKind::Prepare | StatementKind::Deallocate
            )
            || self.discards_all()
    }

    /// Whether it sets the search_path (to a value, back to the default, or to something
    /// not known before it runs), or for MySQL the current database.
    pub fn sets_search_path(&self) -> bool {
        self.session.iter().any(|e| {
            matches!(
                e,
                SessionEffect::SearchPath(_)
                    | SessionEffect::SearchPathDefault
                    | SessionEffect::SearchPathUnknown
                    | SessionEffect::UseDatabase(_)
            )
        })
    }

    /// `DISCARD ALL`: resets the session, prepared statements included.
    pub fn discards_all(&self) -> bool {
        // The only DISCARD that resets the search_path.
        self.command == "DISCARD" && self.session.contains(&SessionEffect::SearchPathDefault)
    }
}

impl Analysis {
    /// Whether every statement was understood.
    pub fn fully_analysed(&self) -> bool {
        self.statements
            .iter()
            .all(|s| matches!(s, Statement::Analysed(_)))
    }
}

/// The text does not parse: the server would reject it too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error: {message}")]
pub struct SyntaxError {
    /// The parser's message.
    pub message: String,
}
