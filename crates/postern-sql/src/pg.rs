//! PostgreSQL statements analysed with PostgreSQL's own grammar (libpg_query, through the
//! `pg_query` crate): the server and Postern cannot read a statement two ways.
//!
//! The parse tree is walked as a generic value (its serde form), so *every* field of
//! every node is visited, including node types added by newer grammars: a table reference
//! nested somewhere unexpected is still found. Statement types get specific handling where
//! the role of a table depends on its position (the target of an INSERT, a CTE name, the
//! object of a DDL statement); statement types the analyser does not know are reported as
//! unanalysable rather than guessed at.

use crate::tree::{to_tree, Map, Value};
use pg_query::protobuf::{
    AExprKind, BoolExprType, CmdType, DiscardMode, OnConflictAction, TransactionStmtKind as Tx,
    VariableSetKind as Var,
};

use crate::analysis::{
    Access, Action, Analysis, Flags, ObjectName, SessionEffect, Statement, StatementFacts,
    StatementKind, SyntaxError,
};

/// How the server will lex string literals, which changes where a statement ends: the
/// analyser must lex exactly as the session's server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexSettings {
    /// The session's `standard_conforming_strings` (on by default since PostgreSQL 9.1).
    /// Off, backslashes escape in ordinary string literals.
    pub standard_conforming_strings: bool,
}

impl Default for LexSettings {
    fn default() -> Self {
        Self {
            standard_conforming_strings: true,
        }
    }
}

/// Deepest parse tree analysed; deeper statements are reported unanalysable.
const MAX_DEPTH: usize = 2000;

/// Analyses a query string (one or more statements).
pub fn analyse(sql: &str, lex: LexSettings) -> Result<Analysis, SyntaxError> {
    let mut opts = pg_query::ParserOptions::DEFAULT;
    if !lex.standard_conforming_strings {
        opts |= pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS;
    }
    let parsed = pg_query::parse(sql, opts).map_err(|e| SyntaxError {
        message: match e {
            pg_query::Error::Parse(m) => m,
            // The parse tree is handed over as protobuf, whose decoder stops at a nesting
            // depth: the statement may be valid, but it cannot be analysed.
            pg_query::Error::Decode(_) => "statement nested too deeply to analyse".into(),
            other => other.to_string(),
        },
    })?;
    let mut statements = Vec::with_capacity(parsed.protobuf.stmts.len());
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        statements.push(match to_tree(node) {
            Ok(v) => statement(&v),
            Err(e) => Statement::Unanalysable {
                command: String::new(),
                reason: format!("parse tree not readable: {e}"),
                flags: Flags::default(),
            },
        });
    }
    Ok(Analysis { statements })
}

/// `(kind, command)` of the statement types the analyser understands.
fn classify(tag: &str, n: &Map) -> Option<(StatementKind, String)> {
    use StatementKind as K;
    let s = |k: K, c: &str| Some((k, c.to_string()));
    match tag {
        "SelectStmt" => s(K::Select, "SELECT"),
        "InsertStmt" => s(K::Insert, "INSERT"),
        "UpdateStmt" => s(K::Update, "UPDATE"),
        "DeleteStmt" => s(K::Delete, "DELETE"),
        "MergeStmt" => s(K::Merge, "MERGE"),
        "TruncateStmt" => s(K::Truncate, "TRUNCATE"),
        "CopyStmt" => s(K::Copy, "COPY"),
        "CallStmt" => s(K::Call, "CALL"),
        "DoStmt" => s(K::DoBlock, "DO"),
        "TransactionStmt" => s(K::Transaction, transaction_command(n)),
        "VariableSetStmt" => s(
            K::Session,
            if kind_of(n) >= Var::VarReset as i64 {
                "RESET"
            } else {
                "SET"
            },
        ),
        "VariableShowStmt" => s(K::Session, "SHOW"),
        "DiscardStmt" => s(K::Session, "DISCARD"),
        "PrepareStmt" => s(K::Prepare, "PREPARE"),
        "ExecuteStmt" => s(K::Execute, "EXECUTE"),
        "DeallocateStmt" => s(K::Deallocate, "DEALLOCATE"),
        "ExplainStmt" => s(K::Explain, "EXPLAIN"),
        "DeclareCursorStmt" => s(K::Select, "DECLARE CURSOR"),
        "FetchStmt" => s(K::Select, "FETCH"),
        "ClosePortalStmt" => s(K::Select, "CLOSE"),
        "ListenStmt" => s(K::Notify, "LISTEN"),
        "UnlistenStmt" => s(K::Notify, "UNLISTEN"),
        "NotifyStmt" => s(K::Notify, "NOTIFY"),
        "LockStmt" => s(K::Lock, "LOCK TABLE"),
        "VacuumStmt" => s(K::Maintenance, "VACUUM"),
        "ClusterStmt" => s(K::Maintenance, "CLUSTER"),
        "ReindexStmt" => s(K::Maintenance, "REINDEX"),
        "CheckPointStmt" => s(K::Maintenance, "CHECKPOINT"),
        "RefreshMatViewStmt" => s(K::Maintenance, "REFRESH MATERIALIZED VIEW"),
        _ => ddl_command(tag).map(|c| (K::Ddl, c.to_string())),
    }
}

/// DDL statement types on objects: every relation they mention needs DDL rights.
fn ddl_command(tag: &str) -> Option<&'static str> {
    Some(match tag {
        "CreateStmt" => "CREATE TABLE",
        "CreateTableAsStmt" => "CREATE TABLE AS",
        "ViewStmt" => "CREATE VIEW",
        "AlterTableStmt" => "ALTER TABLE",
        "DropStmt" => "DROP",
        "IndexStmt" => "CREATE INDEX",
        "RenameStmt" => "ALTER … RENAME",
        "CreateFunctionStmt" => "CREATE FUNCTION",
        "AlterFunctionStmt" => "ALTER FUNCTION",
        "CreateSchemaStmt" => "CREATE SCHEMA",
        "CreateSeqStmt" => "CREATE SEQUENCE",
        "AlterSeqStmt" => "ALTER SEQUENCE",
        "CommentStmt" => "COMMENT",
        "CreateTrigStmt" => "CREATE TRIGGER",
        "RuleStmt" => "CREATE RULE",
        "CreateEnumStmt" => "CREATE TYPE",
        "AlterEnumStmt" => "ALTER TYPE",
        "CompositeTypeStmt" => "CREATE TYPE",
        "CreateDomainStmt" => "CREATE DOMAIN",
        "AlterDomainStmt" => "ALTER DOMAIN",
        "DefineStmt" => "CREATE",
        "AlterObjectSchemaStmt" => "ALTER … SET SCHEMA",
        "AlterOwnerStmt" => "ALTER … OWNER TO",
        "CreatePolicyStmt" => "CREATE POLICY",
        "AlterPolicyStmt" => "ALTER POLICY",
        "CreateStatsStmt" => "CREATE STATISTICS",
        "CreateRangeStmt" => "CREATE TYPE",
        "AlterTableMoveAllStmt" => "ALTER TABLE",
        "CreateTableSpaceStmt" | "DropTableSpaceStmt" | "AlterTableSpaceOptionsStmt" => {
            "TABLESPACE"
        }
        "CreateRoleStmt" => "CREATE ROLE",
        "AlterRoleStmt" => "ALTER ROLE",
        "AlterRoleSetStmt" => "ALTER ROLE",
        "DropRoleStmt" => "DROP ROLE",
        "GrantStmt" => "GRANT",
        "GrantRoleStmt" => "GRANT ROLE",
        "AlterDefaultPrivilegesStmt" => "ALTER DEFAULT PRIVILEGES",
        "ReassignOwnedStmt" => "REASSIGN OWNED",
        "DropOwnedStmt" => "DROP OWNED",
        "AlterSystemStmt" => "ALTER SYSTEM",
        "CreatedbStmt" => "CREATE DATABASE",
        "DropdbStmt" => "DROP DATABASE",
        "AlterDatabaseStmt" | "AlterDatabaseSetStmt" => "ALTER DATABASE",
        "CreateExtensionStmt" => "CREATE EXTENSION",
        "AlterExtensionStmt" | "AlterExtensionContentsStmt" => "ALTER EXTENSION",
        "LoadStmt" => "LOAD",
        "CreateEventTrigStmt" => "CREATE EVENT TRIGGER",
        "AlterEventTrigStmt" => "ALTER EVENT TRIGGER",
        "CreateFdwStmt" | "AlterFdwStmt" => "FOREIGN DATA WRAPPER",
        "CreateForeignServerStmt" | "AlterForeignServerStmt" => "SERVER",
        "CreateUserMappingStmt" | "AlterUserMappingStmt" | "DropUserMappingStmt" => "USER MAPPING",
        "CreateForeignTableStmt" => "CREATE FOREIGN TABLE",
        "ImportForeignSchemaStmt" => "IMPORT FOREIGN SCHEMA",
        "CreatePublicationStmt" | "AlterPublicationStmt" => "PUBLICATION",
        "CreateSubscriptionStmt" | "AlterSubscriptionStmt" | "DropSubscriptionStmt" => {
            "SUBSCRIPTION"
        }
        "SecLabelStmt" => "SECURITY LABEL",
        "CreateCastStmt" => "CREATE CAST",
        "CreateConversionStmt" => "CREATE CONVERSION",
        "CreateOpClassStmt" | "CreateOpFamilyStmt" | "AlterOpFamilyStmt" => "OPERATOR CLASS",
        "AlterOperatorStmt" => "ALTER OPERATOR",
        "AlterTypeStmt" => "ALTER TYPE",
        "CreateTransformStmt" => "CREATE TRANSFORM",
        "CreatePLangStmt" => "CREATE LANGUAGE",
        "AlterCollationStmt" => "ALTER COLLATION",
        "AlterTsdictionaryStmt" | "AlterTsconfigurationStmt" => "ALTER TEXT SEARCH",
        "CreateAmStmt" => "CREATE ACCESS METHOD",
        "AlterStatsStmt" => "ALTER STATISTICS",
        _ => return None,
    })
}

/// Statement types that act on the database as a whole (roles, privileges, settings,
/// extensions, server-side code): they need DDL on [`ObjectName::whole_database`].
fn database_level(tag: &str) -> bool {
    matches!(
        tag,
        "CreateRoleStmt"
            | "AlterRoleStmt"
            | "AlterRoleSetStmt"
            | "DropRoleStmt"
            | "GrantStmt"
            | "GrantRoleStmt"
            | "AlterDefaultPrivilegesStmt"
            | "ReassignOwnedStmt"
            | "DropOwnedStmt"
            | "AlterSystemStmt"
            | "CreatedbStmt"
            | "DropdbStmt"
            | "AlterDatabaseStmt"
            | "AlterDatabaseSetStmt"
            | "CreateExtensionStmt"
            | "AlterExtensionStmt"
            | "AlterExtensionContentsStmt"
            | "LoadStmt"
            | "CreateEventTrigStmt"
            | "AlterEventTrigStmt"
            | "CreateFdwStmt"
            | "AlterFdwStmt"
            | "CreateForeignServerStmt"
            | "AlterForeignServerStmt"
            | "CreateUserMappingStmt"
            | "AlterUserMappingStmt"
            | "DropUserMappingStmt"
            | "ImportForeignSchemaStmt"
            | "CreatePublicationStmt"
            | "AlterPublicationStmt"
            | "CreateSubscriptionStmt"
            | "AlterSubscriptionStmt"
            | "DropSubscriptionStmt"
            | "CreateTableSpaceStmt"
            | "DropTableSpaceStmt"
            | "AlterTableSpaceOptionsStmt"
            | "AlterTableMoveAllStmt"
            | "CreateCastStmt"
            | "CreateConversionStmt"
            | "CreateOpClassStmt"
            | "CreateOpFamilyStmt"
            | "AlterOpFamilyStmt"
            | "AlterOperatorStmt"
            | "CreateTransformStmt"
            | "CreatePLangStmt"
            | "CreateAmStmt"
            | "SecLabelStmt"
            | "CheckPointStmt"
    )
}

fn kind_of(n: &Map) -> i64 {
    n.get("kind").and_then(Value::as_i64).unwrap_or(0)
}

fn transaction_command(n: &Map) -> &'static str {
    let k = kind_of(n);
    let is = |t: Tx| k == t as i64;
    if is(Tx::TransStmtBegin) || is(Tx::TransStmtStart) {
        "BEGIN"
    } else if is(Tx::TransStmtCommit) {
        "COMMIT"
    } else if is(Tx::TransStmtRollback) {
        "ROLLBACK"
    } else if is(Tx::TransStmtSavepoint) {
        "SAVEPOINT"
    } else if is(Tx::TransStmtRelease) {
        "RELEASE"
    } else if is(Tx::TransStmtRollbackTo) {
        "ROLLBACK TO SAVEPOINT"
    } else if is(Tx::TransStmtPrepare) {
        "PREPARE TRANSACTION"
    } else if is(Tx::TransStmtCommitPrepared) {
        "COMMIT PREPARED"
    } else if is(Tx::TransStmtRollbackPrepared) {
        "ROLLBACK PREPARED"
    } else {
        "TRANSACTION"
    }
}

fn statement(v: &Value) -> Statement {
    let Some((tag, n)) = tagged(v) else {
        return Statement::Unanalysable {
            command: String::new(),
            reason: "unexpected parse tree shape".into(),
            flags: Flags::default(),
        };
    };
    let Some((kind, command)) = classify(tag, n) else {
        return Statement::Unanalysable {
            command: tag.to_string(),
            reason: format!("{tag} statements are not analysed"),
            flags: Flags::default(),
        };
    };
    let mut w = Walker::default();
    w.statement(tag, n);
    if let Some(reason) = w.unanalysable {
        return Statement::Unanalysable {
            command,
            reason,
            flags: Flags::default(),
        };
    }
    // A definition or maintenance statement whose object the walk could not name (DROP CAST,
    // VACUUM of every table, REINDEX DATABASE…) must still need DDL rights: on the whole
    // database, never on nothing.
    if matches!(kind, StatementKind::Ddl | StatementKind::Maintenance)
        && !w.accesses.iter().any(|a| a.action == Action::Ddl)
    {
        w.access(ObjectName::whole_database(), Action::Ddl);
    }
    w.accesses.sort();
    w.accesses.dedup();
    w.functions.sort();
    w.functions.dedup();
    Statement::Analysed(StatementFacts {
        kind,
        command,
        accesses: w.accesses,
        functions: w.functions,
        session: w.session,
        prepared: w.prepared,
        flags: w.flags,
        flow: Box::new(crate::flow::column_flow(tag, n)),
    })
}

/// `{"Tag": {...}}` → (tag, fields).
pub(crate) fn tagged(v: &Value) -> Option<(&str, &Map)> {
    let o = v.as_object()?;
    if o.len() != 1 {
        return None;
    }
    let (k, v) = o.iter().next()?;
    Some((k, v.as_object()?))
}

/// `{"node": {"Tag": {...}}}` (a `Node`) → (tag, fields).
pub(crate) fn node(v: &Value) -> Option<(&str, &Map)> {
    let o = v.as_object()?;
    if o.len() != 1 {
        return None;
    }
    tagged(o.get("node")?)
}

pub(crate) fn str_field<'a>(n: &'a Map, k: &str) -> &'a str {
    n.get(k).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn list<'a>(n: &'a Map, k: &str) -> &'a [Value] {
    n.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_present(n: &Map, k: &str) -> bool {
    match n.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// The strings of a list of `String` nodes (a qualified name).
pub(crate) fn name_parts(items: &[Value]) -> Option<Vec<&str>> {
    items
        .iter()
        .map(|i| match node(i) {
            Some(("String", s)) => Some(str_field(s, "sval")),
            _ => None,
        })
        .collect()
}

pub(crate) fn object_from_parts(parts: &[&str]) -> Option<ObjectName> {
    let own = |s: &&str| (*s).to_string();
    match parts {
        [name] => Some(ObjectName::bare(*name)),
        [schema, name] => Some(ObjectName::qualified(*schema, *name)),
        [db, schema, name] => Some(ObjectName {
            database: Some(own(db)),
            schema: Some(own(schema)),
            name: own(name),
        }),
        _ => None,
    }
}

/// The string of a constant (`'text'`), if the node is one.
fn const_str(v: &Value) -> Option<&str> {
    match node(v)? {
        ("AConst", c) => c.get("val")?.get("Sval")?.get("sval")?.as_str(),
        _ => None,
    }
}

fn is_range_var(o: &Map) -> bool {
    o.contains_key("relname") && o.contains_key("schemaname") && o.contains_key("catalogname")
}

fn is_func_call(o: &Map) -> bool {
    o.contains_key("funcname") && o.contains_key("agg_star")
}

/// The name a RangeVar gives, as written (CTE names not told apart).
pub(crate) fn range_var_name(rv: &Map) -> ObjectName {
    let db = str_field(rv, "catalogname");
    let schema = str_field(rv, "schemaname");
    ObjectName {
        database: (!db.is_empty()).then(|| db.to_string()),
        schema: (!schema.is_empty()).then(|| schema.to_string()),
        name: str_field(rv, "relname").to_string(),
    }
}

pub(crate) fn is_select(o: &Map) -> bool {
    o.contains_key("larg") && o.contains_key("rarg") && o.contains_key("values_lists")
}

/// Functions that run SQL text given at run time: what they read is unknowable here.
pub const DYNAMIC_SQL_FUNCTIONS: &[&str] = &[
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_fetch",
    "dblink_send_query",
    "ts_stat",
    "ts_rewrite",
];

#[derive(Default)]
struct Walker {
    accesses: Vec<Access>,
    functions: Vec<ObjectName>,
    session: Vec<SessionEffect>,
    flags: Flags,
    prepared: Option<String>,
    /// CTE names visible at the current point (innermost last).
    ctes: Vec<String>,
    /// What a plain relation reference means in the current context.
    rel_action: Option<Action>,
    depth: usize,
    unanalysable: Option<String>,
}

impl Walker {
    fn access(&mut self, object: ObjectName, action: Action) {
        self.accesses.push(Access { object, action });
    }

    fn fail(&mut self, reason: impl Into<String>) {
        if self.unanalysable.is_none() {
            self.unanalysable = Some(reason.into());
        }
    }

    /// A relation reference; `None` when it names a CTE in scope.
    fn relation(&self, rv: &Map) -> Option<ObjectName> {
        let o = range_var_name(rv);
        if o.schema.is_none() && o.database.is_none() && self.ctes.contains(&o.name) {
            return None;
        }
        Some(o)
    }

    fn relation_as(&mut self, rv: Option<&Value>, action: Action) {
        if let Some(rv) = rv.and_then(Value::as_object) {
            if let Some(o) = self.relation(rv) {
                self.access(o, action);
            }
        }
    }

    /// The statement at the top of a query string.
    fn statement(&mut self, tag: &str, n: &Map) {
        if ddl_command(tag).is_some() {
            self.ddl(tag, n);
        } else {
            self.node(tag, n);
        }
    }

    fn ddl(&mut self, tag: &str, n: &Map) {
        if database_level(tag) {
            self.access(ObjectName::whole_database(), Action::Ddl);
        }
        match tag {
            "ViewStmt" => {
                self.relation_as(n.get("view"), Action::Ddl);
                self.walk_read(n.get("query"));
                self.walk_fields_as(n, &["view", "query"], Action::Ddl);
            }
            "CreateTableAsStmt" => {
                let into = n.get("into").and_then(Value::as_object);
                self.relation_as(into.and_then(|i| i.get("rel")), Action::Ddl);
                self.walk_read(n.get("query"));
                self.walk_fields_as(n, &["into", "query"], Action::Ddl);
            }
            "DropStmt" => {
                self.flags.drops = true;
                for o in list(n, "objects") {
                    // Relations, views, sequences…: a list of name parts. Functions and
                    // other objects with arguments are found by the generic walk below.
                    if let Some(("List", l)) = node(o) {
                        if let Some(obj) = name_parts(list(l, "items"))
                            .as_deref()
                            .and_then(object_from_parts)
                        {
                            self.access(obj, Action::Ddl);
                        }
                    } else if let Some(("ObjectWithArgs", f)) = node(o) {
                        if let Some(obj) = name_parts(list(f, "objname"))
                            .as_deref()
                            .and_then(object_from_parts)
                        {
                            self.access(obj, Action::Ddl);
                        }
                    } else if let Some(("TypeName", t)) = node(o) {
                        if let Some(obj) = name_parts(list(t, "names"))
                            .as_deref()
                            .and_then(object_from_parts)
                        {
                            self.access(obj, Action::Ddl);
                        }
                    } else if let Some(("String", s)) = node(o) {
                        // DROP SCHEMA x: the schema's objects go with it.
                        self.access(
                            ObjectName::qualified(str_field(s, "sval"), "*"),
                            Action::Ddl,
                        );
                    }
                }
                self.walk_fields_as(n, &["objects"], Action::Ddl);
                self.walk_ddl_names(n);
            }
            "CreateFunctionStmt" => {
                if let Some(f) = name_parts(list(n, "funcname"))
                    .as_deref()
                    .and_then(object_from_parts)
                {
                    self.access(f, Action::Ddl);
                }
                self.walk_fields_as(n, &["funcname"], Action::Ddl);
            }
            "CreateSchemaStmt" => {
                self.access(
                    ObjectName::qualified(str_field(n, "schemaname"), "*"),
                    Action::Ddl,
                );
                self.walk_fields_as(n, &[], Action::Ddl);
            }
            _ => {
                self.walk_fields_as(n, &[], Action::Ddl);
                self.walk_ddl_names(n);
            }
        }
    }

    /// Object names held as name lists rather than relation references (COMMENT ON,
    /// ALTER … OWNER, DROP FUNCTION…): each becomes a DDL access.
    fn walk_ddl_names(&mut self, n: &Map) {
        for key in ["object", "objname", "defnames", "type_name"] {
            let Some(v) = n.get(key) else { continue };
            let parts = match (v, node(v)) {
                (Value::Array(a), _) => name_parts(a),
                (_, Some(("List", l))) => name_parts(list(l, "items")),
                (_, Some(("ObjectWithArgs", o))) => name_parts(list(o, "objname")),
                (_, Some(("TypeName", t))) => name_parts(list(t, "names")),
                (_, Some(("String", s))) => Some(vec![str_field(s, "sval")]),
                _ => None,
            };
            if let Some(obj) = parts.as_deref().and_then(object_from_parts) {
                self.access(obj, Action::Ddl);
            }
        }
    }

    /// Walks every field except `skip`, with relation references meaning `action`.
    fn walk_fields_as(&mut self, n: &Map, skip: &[&str], action: Action) {
        let saved = self.rel_action.replace(action);
        for (k, v) in n {
            if !skip.contains(&k) {
                self.walk(v);
            }
        }
        self.rel_action = saved;
    }

    /// Walks a subtree whose relation references are reads.
    fn walk_read(&mut self, v: Option<&Value>) {
        if let Some(v) = v {
            let saved = self.rel_action.replace(Action::Select);
            self.walk(v);
            self.rel_action = saved;
        }
    }

    /// Generic walk: every field of every object, dispatching on the nodes that matter.
    fn walk(&mut self, v: &Value) {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.fail("statement nested too deeply to analyse");
        } else {
            match v {
                Value::Array(items) => {
                    for i in items {
                        self.walk(i);
                    }
                }
                Value::Object(o) => {
                    if let Some((tag, n)) = node(v) {
                        self.node(tag, n);
                    } else if is_range_var(o) {
                        let action = self.rel_action.unwrap_or(Action::Select);
                        if let Some(obj) = self.relation(o) {
                            self.access(obj, action);
                        }
                        self.walk_obj_except(o, &[]);
                    } else if is_func_call(o) {
                        self.func_call(o, Action::Execute);
                    } else if is_select(o) {
                        self.select(o);
                    } else {
                        self.walk_obj_except(o, &[]);
                    }
                }
                _ => {}
            }
        }
        self.depth -= 1;
    }

    fn walk_obj_except(&mut self, o: &Map, skip: &[&str]) {
        for (k, v) in o.iter() {
            if !skip.contains(&k) {
                self.walk(v);
            }
        }
    }

    /// A tagged node found inside a statement.
    fn node(&mut self, tag: &str, n: &Map) {
        match tag {
            "SelectStmt" => self.select(n),
            "InsertStmt" => self.insert(n),
            "UpdateStmt" => self.update(n),
            "DeleteStmt" => self.delete(n),
            "MergeStmt" => self.merge(n),
            "RangeVar" => {
                let action = self.rel_action.unwrap_or(Action::Select);
                if let Some(obj) = self.relation(n) {
                    self.access(obj, action);
                }
                self.walk_obj_except(n, &[]);
            }
            "FuncCall" => self.func_call(n, Action::Execute),
            "BoolExpr" => {
                if n.get("boolop").and_then(Value::as_i64) == Some(BoolExprType::OrExpr as i64)
                    && list(n, "args").iter().any(always_true)
                {
                    self.flags.tautology = true;
                }
                self.walk_obj_except(n, &[]);
            }
            "CopyStmt" => self.copy(n),
            "CallStmt" => {
                if let Some(f) = n.get("funccall").and_then(Value::as_object) {
                    self.func_call(f, Action::Call);
                }
                self.walk_obj_except(n, &["funccall"]);
            }
            "DoStmt" => {
                // Procedural code: what it does is not knowable before it runs.
                self.flags.dynamic_sql = true;
            }
            "VariableSetStmt" => self.set(n),
            "DiscardStmt" => {
                // DISCARD ALL also resets the search_path and the role.
                if n.get("target").and_then(Value::as_i64) == Some(DiscardMode::DiscardAll as i64) {
                    self.session.push(SessionEffect::SearchPathDefault);
                    self.session.push(SessionEffect::SetRole(None));
                }
            }
            "PrepareStmt" => {
                self.prepared = Some(str_field(n, "name").to_string());
                self.walk_obj_except(n, &["name"]);
            }
            "ExecuteStmt" => {
                self.prepared = Some(str_field(n, "name").to_string());
                self.walk_obj_except(n, &["name"]);
            }
            "DeallocateStmt" => {
                let name = str_field(n, "name");
                self.prepared = (!name.is_empty()).then(|| name.to_string());
            }
            "TruncateStmt" => {
                for r in list(n, "relations") {
                    if let Some((_, rv)) = node(r) {
                        if let Some(o) = self.relation(rv) {
                            self.access(o, Action::Truncate);
                        }
                    }
                }
                self.walk_obj_except(n, &["relations"]);
            }
            "LockStmt" => {
                for r in list(n, "relations") {
                    if let Some((_, rv)) = node(r) {
                        if let Some(o) = self.relation(rv) {
                            self.access(o, Action::Lock);
                        }
                    }
                }
                self.walk_obj_except(n, &["relations"]);
            }
            "ExplainStmt" | "DeclareCursorStmt" => self.walk_read(n.get("query")),
            "CheckPointStmt" => self.access(ObjectName::whole_database(), Action::Ddl),
            "VacuumStmt" | "ClusterStmt" | "ReindexStmt" | "RefreshMatViewStmt" => {
                self.walk_fields_as(n, &[], Action::Ddl)
            }
            t if ddl_command(t).is_some() => self.ddl(t, n),
            t if t.ends_with("Stmt")
                && classify(t, n).is_none()
                && !matches!(t, "RawStmt" | "ReturnStmt" | "PlassignStmt") =>
            {
                self.fail(format!("{t} inside a statement is not analysed"));
            }
            _ => self.walk_obj_except(n, &[]),
        }
    }

    /// Runs `body` with the WITH clause's names in scope, after walking the CTE queries
    /// with the names each of them may see.
    fn with_scope(&mut self, with: Option<&Value>, body: impl FnOnce(&mut Self)) {
        let mark = self.ctes.len();
        if let Some(w) = with.and_then(Value::as_object) {
            let recursive = w.get("recursive").and_then(Value::as_bool).unwrap_or(false);
            let ctes: Vec<(&str, Option<&Value>)> = list(w, "ctes")
                .iter()
                .filter_map(|c| match node(c) {
                    Some(("CommonTableExpr", c)) => {
                        Some((str_field(c, "ctename"), c.get("ctequery")))
                    }
                    _ => None,
                })
                .collect();
            if recursive {
                // Every name is visible in every CTE of a WITH RECURSIVE.
                self.ctes.extend(ctes.iter().map(|(n, _)| n.to_string()));
                for (_, q) in &ctes {
                    self.walk_read(*q);
                }
            } else {
                for (name, q) in &ctes {
                    self.walk_read(*q);
                    self.ctes.push(name.to_string());
                }
            }
        }
        body(self);
        self.ctes.truncate(mark);
    }

    fn select(&mut self, n: &Map) {
        self.with_scope(n.get("with_clause"), |w| {
            let saved = w.rel_action.replace(Action::Select);
            for key in ["larg", "rarg"] {
                if let Some(side) = n.get(key).and_then(Value::as_object) {
                    w.select(side);
                }
            }
            if let Some(into) = n.get("into_clause").and_then(Value::as_object) {
                // SELECT … INTO creates a table.
                w.relation_as(into.get("rel"), Action::Ddl);
            }
            if is_present(n, "locking_clause") {
                // FOR UPDATE / SHARE locks rows of the named FROM items (by alias or name),
                // or of every table in FROM when none is named.
                let mut from = Vec::new();
                for f in list(n, "from_clause") {
                    w.collect_from_tables(f, &mut from);
                }
                for l in list(n, "locking_clause") {
                    let Some(("LockingClause", lc)) = node(l) else {
                        continue;
                    };
                    let rels = list(lc, "locked_rels");
                    if rels.is_empty() {
                        for (_, o) in &from {
                            w.access(o.clone(), Action::Lock);
                        }
                    }
                    for r in rels {
                        let Some((_, rv)) = node(r) else { continue };
                        let name = str_field(rv, "relname");
                        let by_alias = if str_field(rv, "schemaname").is_empty() {
                            from.iter().find(|(a, _)| a == name)
                        } else {
                            None
                        };
                        match by_alias {
                            Some((_, o)) => w.access(o.clone(), Action::Lock),
                            None => {
                                if let Some(o) = w.relation(rv) {
                                    w.access(o, Action::Lock);
                                }
                            }
                        }
                    }
                }
            }
            w.walk_obj_except(
                n,
                &[
                    "with_clause",
                    "larg",
                    "rarg",
                    "into_clause",
                    "locking_clause",
                ],
            );
            w.rel_action = saved;
        });
    }

    /// Tables named directly in a FROM item, with the name they go by there (alias or
    /// table name), for `FOR UPDATE [OF …]`.
    fn collect_from_tables(&self, v: &Value, out: &mut Vec<(String, ObjectName)>) {
        match node(v) {
            Some(("RangeVar", rv)) => {
                if let Some(o) = self.relation(rv) {
                    let alias = rv
                        .get("alias")
                        .and_then(Value::as_object)
                        .map(|a| str_field(a, "aliasname"))
                        .filter(|a| !a.is_empty())
                        .unwrap_or(o.name.as_str())
                        .to_string();
                    out.push((alias, o));
                }
            }
            Some(("JoinExpr", j)) => {
                for side in ["larg", "rarg"] {
                    if let Some(s) = j.get(side) {
                        self.collect_from_tables(s, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn returning(&mut self, n: &Map, target: Option<&ObjectName>) {
        if is_present(n, "returning_clause") {
            if let Some(t) = target {
                self.access(t.clone(), Action::Select);
            }
            self.walk_read(n.get("returning_clause"));
        }
    }

    fn target(&self, n: &Map) -> Option<ObjectName> {
        n.get("relation")
            .and_then(Value::as_object)
            .and_then(|rv| self.relation(rv))
    }

    fn insert(&mut self, n: &Map) {
        self.with_scope(n.get("with_clause"), |w| {
            let target = w.target(n);
            if let Some(t) = &target {
                w.access(t.clone(), Action::Insert);
            }
            w.walk_read(n.get("select_stmt"));
            if let Some(oc) = n.get("on_conflict_clause").and_then(Value::as_object) {
                // ON CONFLICT DO UPDATE updates and reads the target.
                if oc.get("action").and_then(Value::as_i64)
                    == Some(OnConflictAction::OnconflictUpdate as i64)
                {
                    if let Some(t) = &target {
                        w.access(t.clone(), Action::Update);
                        w.access(t.clone(), Action::Select);
                    }
                }
                w.walk_fields_as(oc, &[], Action::Select);
            }
            w.returning(n, target.as_ref());
            w.walk_fields_as(
                n,
                &[
                    "with_clause",
                    "relation",
                    "select_stmt",
                    "on_conflict_clause",
                    "returning_clause",
                ],
                Action::Select,
            );
        });
    }

    fn update(&mut self, n: &Map) {
        // Reading the target's columns (WHERE, SET x = x + 1) needs SELECT.
        let reads = is_present(n, "where_clause") || has_column_ref(n.get("target_list"));
        self.modify(n, Action::Update, reads);
    }

    fn delete(&mut self, n: &Map) {
        self.modify(n, Action::Delete, is_present(n, "where_clause"));
    }

    /// UPDATE or DELETE: the target is written (and read when `reads_target`), a missing
    /// WHERE is flagged, everything else is read.
    fn modify(&mut self, n: &Map, action: Action, reads_target: bool) {
        self.with_scope(n.get("with_clause"), |w| {
            let target = w.target(n);
            if let Some(t) = &target {
                w.access(t.clone(), action);
                if reads_target {
                    w.access(t.clone(), Action::Select);
                }
            }
            if !is_present(n, "where_clause") {
                w.flags.modifies_without_where = true;
            }
            w.returning(n, target.as_ref());
            w.walk_fields_as(
                n,
                &["with_clause", "relation", "returning_clause"],
                Action::Select,
            );
        });
    }

    fn merge(&mut self, n: &Map) {
        self.with_scope(n.get("with_clause"), |w| {
            let target = w.target(n);
            if let Some(t) = &target {
                // The join condition reads the target.
                w.access(t.clone(), Action::Select);
                for c in list(n, "merge_when_clauses") {
                    if let Some(("MergeWhenClause", mc)) = node(c) {
                        let ct = mc.get("command_type").and_then(Value::as_i64);
                        let action = if ct == Some(CmdType::CmdUpdate as i64) {
                            Some(Action::Update)
                        } else if ct == Some(CmdType::CmdInsert as i64) {
                            Some(Action::Insert)
                        } else if ct == Some(CmdType::CmdDelete as i64) {
                            Some(Action::Delete)
                        } else {
                            None
                        };
                        if let Some(a) = action {
                            w.access(t.clone(), a);
                        }
                    }
                }
            }
            w.returning(n, target.as_ref());
            w.walk_fields_as(
                n,
                &["with_clause", "relation", "returning_clause"],
                Action::Select,
            );
        });
    }

    fn copy(&mut self, n: &Map) {
        let from = n.get("is_from").and_then(Value::as_bool).unwrap_or(false);
        self.relation_as(
            n.get("relation"),
            if from { Action::Insert } else { Action::Select },
        );
        if n.get("is_program").and_then(Value::as_bool) == Some(true) {
            self.flags.copy_program = true;
        } else if !str_field(n, "filename").is_empty() {
            self.flags.copy_server_file = true;
        }
        self.walk_read(n.get("query"));
        self.walk_fields_as(n, &["relation", "query"], Action::Select);
    }

    fn func_call(&mut self, n: &Map, action: Action) {
        let parts = name_parts(list(n, "funcname")).unwrap_or_default();
        match object_from_parts(&parts) {
            Some(f) => {
                let plain = f.name.as_str();
                let catalog = f.schema.as_deref().is_none_or(|s| s == "pg_catalog");
                if DYNAMIC_SQL_FUNCTIONS.contains(&plain) {
                    self.flags.dynamic_sql = true;
                }
                if catalog && plain == "set_config" {
                    self.set_config(list(n, "args"));
                }
                if action == Action::Call {
                    self.access(f.clone(), Action::Call);
                }
                self.functions.push(f);
            }
            None => self.fail("function name not understood"),
        }
        self.walk_fields_as(n, &["funcname"], Action::Select);
    }

    /// `set_config(name, value, is_local)`: a SET in function form.
    fn set_config(&mut self, args: &[Value]) {
        let name = args.first().and_then(const_str);
        let value = args.get(1).and_then(const_str);
        match name.map(str::to_ascii_lowercase).as_deref() {
            Some("search_path") => self.session.push(match value {
                Some(v) => SessionEffect::SearchPath(split_search_path(v)),
                None => SessionEffect::SearchPathUnknown,
            }),
            Some("role") => self
                .session
                .push(SessionEffect::SetRole(value.map(str::to_string))),
            Some("session_authorization") => self.session.push(
                SessionEffect::SetSessionAuthorization(value.map(str::to_string)),
            ),
            Some(other) => self.session.push(SessionEffect::Setting(other.to_string())),
            // A computed setting name may be any of the above.
            None => {
                self.session.push(SessionEffect::SearchPathUnknown);
                self.session.push(SessionEffect::SetRole(None));
                self.flags.dynamic_sql = true;
            }
        }
    }

    fn set(&mut self, n: &Map) {
        let name = str_field(n, "name");
        let kind = kind_of(n);
        let args: Vec<String> = list(n, "args")
            .iter()
            .filter_map(|a| match node(a) {
                Some(("AConst", c)) => c.get("val").and_then(|v| {
                    v.get("Sval")
                        .and_then(|s| s.get("sval"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            v.get("Ival")
                                .and_then(|i| i.get("ival"))
                                .and_then(Value::as_i64)
                                .map(|i| i.to_string())
                        })
                }),
                _ => None,
            })
            .collect();
        let local = n.get("is_local").and_then(Value::as_bool) == Some(true);
        let value = kind == Var::VarSetValue as i64;
        let reset_all = kind == Var::VarResetAll as i64;
        let from_current = kind == Var::VarSetCurrent as i64;
        let effect = match name {
            _ if reset_all => {
                self.session.push(SessionEffect::SearchPathDefault);
                self.session.push(SessionEffect::SetRole(None));
                SessionEffect::SetSessionAuthorization(None)
            }
            // SET LOCAL reverts at transaction end, which the session does not see as a
            // statement: the path is not known for certain afterwards.
            "search_path" if local || from_current => SessionEffect::SearchPathUnknown,
            "search_path" if value => SessionEffect::SearchPath(args),
            "search_path" => SessionEffect::SearchPathDefault,
            "role" if value => SessionEffect::SetRole(args.first().cloned()),
            "role" => SessionEffect::SetRole(None),
            "session_authorization" if value => {
                SessionEffect::SetSessionAuthorization(args.first().cloned())
            }
            "session_authorization" => SessionEffect::SetSessionAuthorization(None),
            other => SessionEffect::Setting(other.to_string()),
        };
        self.session.push(effect);
        // Settings take constants only, but walk anyway: nothing may hide there unseen.
        self.walk_fields_as(n, &["name", "args"], Action::Select);
    }
}

/// Whether an expression is true whatever the row: `true`, or `=` between equal constants
/// or the same column (`1=1`, `'a'='a'`, `x=x`).
fn always_true(v: &Value) -> bool {
    match node(v) {
        Some(("AConst", c)) => {
            c.get("val")
                .and_then(|v| v.get("Boolval"))
                .and_then(|b| b.get("boolval"))
                .and_then(Value::as_bool)
                == Some(true)
        }
        Some(("AExpr", e)) => {
            let is_eq = e.get("kind").and_then(Value::as_i64) == Some(AExprKind::AexprOp as i64)
                && name_parts(list(e, "name")).as_deref() == Some(&["="][..]);
            let (Some(l), Some(r)) = (e.get("lexpr"), e.get("rexpr")) else {
                return false;
            };
            let (l, r) = (uncast(l), uncast(r));
            let comparable =
                |x: &Value| matches!(node(x), Some(("AConst", _)) | Some(("ColumnRef", _)));
            is_eq && comparable(l) && comparable(r) && strip_location(l) == strip_location(r)
        }
        Some(("TypeCast", t)) => t.get("arg").is_some_and(always_true),
        _ => false,
    }
}

/// The operand of a cast (`1::int` → `1`), or the node itself.
fn uncast(v: &Value) -> &Value {
    match node(v) {
        Some(("TypeCast", t)) => t.get("arg").map(uncast).unwrap_or(v),
        _ => v,
    }
}

/// A copy of a node without `location` fields (positions differ between equal operands).
fn strip_location(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(Map::from_pairs(
            o.iter()
                .filter(|(k, _)| *k != "location")
                .map(|(k, v)| (k, strip_location(v)))
                .collect(),
        )),
        Value::Array(a) => Value::Array(a.iter().map(strip_location).collect()),
        other => other.clone(),
    }
}

fn has_column_ref(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Object(o)) => {
            o.contains_key("ColumnRef") || o.values().any(|v| has_column_ref(Some(v)))
        }
        Some(Value::Array(a)) => a.iter().any(|v| has_column_ref(Some(v))),
        _ => false,
    }
}

/// The schemas of a search_path string (`'a, "B", $user'`), as the server splits it.
pub fn split_search_path(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                out.push(finish_ident(&cur, was_quoted));
                cur.clear();
                was_quoted = false;
            }
            c if !quoted && c.is_whitespace() => {}
            c => cur.push(c),
        }
    }
    if !cur.is_empty() || was_quoted {
        out.push(finish_ident(&cur, was_quoted));
    }
    out
}

fn finish_ident(s: &str, quoted: bool) -> String {
    if quoted {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

/// The text of each statement of `sql`, as the parser splits it (what [`analyse`]
/// returns one entry for). Empty when the text does not parse.
pub fn split_statements(sql: &str) -> Vec<&str> {
    pg_query::split_with_parser(sql)
        .unwrap_or_default()
        .into_iter()
        .map(str::trim)
        .collect()
}
