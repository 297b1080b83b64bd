//! The MySQL / MariaDB analyser: the same [`Analysis`] the PostgreSQL analyser gives, from
//! MySQL text.
//!
//! The grammar is `sqlparser`'s MySQL dialect, which is not the server's own. Three things
//! keep the gap from becoming a way around the policy:
//!
//! * Postern's own lexer reads the text first, the way the server does (`#` and `-- `
//!   comments, backslash escapes, backticks), splits it into statements and turns
//!   executable comments (`/*! … */`, MariaDB's `/*M! … */`) into plain code, whatever
//!   version they name: code the server may skip is checked as if it ran.
//! * A statement the grammar cannot read is [`Statement::Unanalysable`], never guessed at,
//!   and it still carries the [`Flags`] a scan of its words finds (`INTO OUTFILE`,
//!   `LOAD_FILE(`, `LOAD DATA`, UDFs that run programs, a `sql_mode` change), so modes that
//!   let unanalysable text through still check those.
//! * MySQL statements the grammar lacks are read here: `PREPARE … FROM`, `HANDLER`,
//!   `TABLE t`, `DO`, `LOAD DATA`, `DESCRIBE`.
//!
//! Names are folded to lower case (tables are case-insensitive on some servers and rules
//! are written in lower case); `db.t` is the table `t` of database (schema) `db`.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, FromTable, ObjectNamePart, Query, TableFactor, TableObject, Visit, Visitor,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::analysis::{
    Access, Action, Analysis, Flags, ObjectName, SessionEffect, Statement, StatementFacts,
    StatementKind, SyntaxError,
};

/// Longest text analysed; longer text is unanalysable (the parser's work grows with it).
const MAX_TEXT: usize = 1 << 20;
/// How deep the parser may nest.
const MAX_DEPTH: usize = 200;

/// Functions (user-defined functions of well-known intrusion kits) that run programs on the
/// database server.
pub const PROGRAM_FUNCTIONS: &[&str] = &[
    "lib_mysqludf_sys_info",
    "sys_bineval",
    "sys_eval",
    "sys_exec",
    "sys_get",
    "sys_set",
];

/// Analyses one message of MySQL text (`COM_QUERY` or `COM_STMT_PREPARE`). Never a syntax
/// error: text the grammar cannot read is unanalysable, since the server may read it.
pub fn analyse(sql: &str) -> Result<Analysis, SyntaxError> {
    let statements = split(sql)
        .into_iter()
        .map(|piece| analyse_statement(&piece, 0))
        .collect();
    Ok(Analysis { statements })
}

/// One statement of the text, as the lexer left it.
#[derive(Debug, Clone)]
struct Piece {
    /// The text with executable-comment markers blanked out.
    code: String,
    /// Its tokens.
    toks: Vec<Tok>,
    /// Where it is in the text (without the `;`).
    span: (usize, usize),
    /// Where each token is in `code`.
    offs: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An unquoted word, lower case.
    Word(String),
    /// A `quoted` identifier, lower case, unquoted.
    Quoted(String),
    /// A string literal, its value.
    Str(String),
    /// A number or other literal.
    Num,
    /// A `@name` / `@@name` variable.
    Var(String),
    /// Punctuation.
    Punct(u8),
}

impl Tok {
    fn word(&self) -> Option<&str> {
        match self {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Quoted(w) => Some(w),
            _ => None,
        }
    }
}

/// Splits `sql` into statements at top-level `;`, the way the server reads it. Statements
/// that hold nothing but comments and spaces are dropped.
fn split(sql: &str) -> Vec<Piece> {
    split_lexed(sql).0
}

/// The statements, and whether the text ends in a line comment.
fn split_lexed(sql: &str) -> (Vec<Piece>, bool) {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut code: Vec<u8> = Vec::with_capacity(b.len());
    let mut toks = Vec::new();
    let mut in_exec = false;
    let mut i = 0;
    let mut from = 0;
    let mut line_comment = false;
    let mut offs = Vec::new();
    let flush = |code: &mut Vec<u8>,
                 toks: &mut Vec<Tok>,
                 offs: &mut Vec<(usize, usize)>,
                 out: &mut Vec<Piece>,
                 span| {
        if !toks.is_empty() {
            out.push(Piece {
                code: String::from_utf8_lossy(code).into_owned(),
                toks: std::mem::take(toks),
                span,
                offs: std::mem::take(offs),
            });
        }
        code.clear();
        toks.clear();
        offs.clear();
    };
    while i < b.len() {
        let (cs, nt) = (code.len(), toks.len());
        let c = b[i];
        let start = i;
        if !c.is_ascii_whitespace() {
            line_comment = false;
        }
        match c {
            b'\'' | b'"' | b'`' => {
                // Strings take backslash escapes; `identifiers` do not.
                let (value, end) = quoted(b, i, c, c != b'`');
                i = end;
                code.extend_from_slice(&b[start..i]);
                let value = String::from_utf8_lossy(&value);
                toks.push(if c == b'`' {
                    Tok::Quoted(value.to_lowercase())
                } else {
                    Tok::Str(value.into_owned())
                });
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                code.push(b' ');
                line_comment = true;
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                code.push(b' ');
                line_comment = true;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let exec = match (b.get(i + 2), b.get(i + 3)) {
                    (Some(b'!'), _) => Some(3),
                    (Some(b'M' | b'm'), Some(b'!')) => Some(4),
                    _ => None,
                };
                if let (Some(skip), false) = (exec, in_exec) {
                    // Executable comment: its body is code, whatever version it names.
                    i += skip;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    in_exec = true;
                    code.push(b' ');
                    continue;
                }
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
                code.push(b' ');
            }
            b'*' if in_exec && b.get(i + 1) == Some(&b'/') => {
                in_exec = false;
                i += 2;
                code.push(b' ');
            }
            b';' => {
                flush(&mut code, &mut toks, &mut offs, &mut out, (from, i));
                i += 1;
                from = i;
            }
            b'0'..=b'9' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    if (b[i] == b'e' || b[i] == b'E') && matches!(b.get(i + 1), Some(b'-' | b'+')) {
                        i += 1;
                    }
                    i += 1;
                }
                code.extend_from_slice(&b[start..i]);
                toks.push(Tok::Num);
            }
            b'@' => {
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || matches!(b[i], b'_' | b'$' | b'@' | b'.')
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                code.extend_from_slice(&b[start..i]);
                toks.push(Tok::Var(sql[start..i].to_ascii_lowercase()));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                code.extend_from_slice(&b[start..i]);
                let w = &sql[start..i];
                // X'…' / B'…' / N'…' / _charset'…': the string takes the prefix with it.
                if b.get(i) != Some(&b'\'') {
                    toks.push(Tok::Word(w.to_lowercase()));
                }
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                code.push(c);
            }
            _ => {
                i += 1;
                code.push(c);
                toks.push(Tok::Punct(c));
            }
        }
        if toks.len() > nt {
            offs.push((cs, code.len()));
        }
    }
    flush(&mut code, &mut toks, &mut offs, &mut out, (from, b.len()));
    (out, line_comment)
}

/// The statements of `sql` as written (for allow-list lookups), one per analysed statement.
pub fn split_statements(sql: &str) -> Vec<&str> {
    split(sql)
        .iter()
        .map(|p| sql.get(p.span.0..p.span.1).unwrap_or(""))
        .collect()
}

/// For text that is exactly one `LOAD DATA|XML … LOCAL INFILE 'name' …` statement: the file
/// name, as the server will ask the client for it.
pub fn local_infile(sql: &str) -> Option<String> {
    let pieces = split(sql);
    let [p] = pieces.as_slice() else {
        return None;
    };
    let t = &p.toks;
    if t.first()?.word() != Some("load") || !matches!(t.get(1)?.word(), Some("data" | "xml")) {
        return None;
    }
    let at = t.iter().position(|x| x.word() == Some("infile"))?;
    if !t[..at].iter().any(|x| x.word() == Some("local")) {
        return None;
    }
    match t.get(at + 1)? {
        Tok::Str(name) => Some(name.clone()),
        _ => None,
    }
}

/// The character sets the text switches the connection to (`SET NAMES x`, `SET CHARACTER
/// SET x`, `SET CHARSET x`, `character_set_client = x`…), lower case; `?` for a value that
/// is not a plain name.
pub fn charset_changes(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in split(sql) {
        let t = &p.toks;
        if t.first().and_then(Tok::word) != Some("set") {
            continue;
        }
        for (i, tok) in t.iter().enumerate().skip(1) {
            // Only where an assignment starts: after SET, a scope word or a comma.
            let assigns = matches!(&t[i - 1], Tok::Punct(b',') | Tok::Word(_))
                && t[i - 1]
                    .word()
                    .is_none_or(|w| matches!(w, "set" | "session" | "global" | "local"));
            if !assigns {
                continue;
            }
            let name = match tok {
                Tok::Word(w) | Tok::Var(w) => w.trim_start_matches('@'),
                _ => continue,
            };
            let name = name
                .strip_prefix("session.")
                .or_else(|| name.strip_prefix("global."))
                .unwrap_or(name);
            let at = match name {
                "names" | "charset" => i + 1,
                "character" if t.get(i + 1).and_then(Tok::word) == Some("set") => i + 2,
                "character_set_client" | "character_set_connection" => {
                    match (t.get(i + 1), t.get(i + 2)) {
                        (Some(Tok::Punct(b'=')), _) => i + 2,
                        (Some(Tok::Punct(b':')), Some(Tok::Punct(b'='))) => i + 3,
                        _ => continue,
                    }
                }
                _ => continue,
            };
            out.push(match t.get(at) {
                Some(Tok::Word(v) | Tok::Quoted(v)) => v.clone(),
                Some(Tok::Str(v)) => v.to_lowercase(),
                _ => "?".into(),
            });
        }
    }
    out
}

/// Whether the text ends in a `#` or `-- ` comment (what an injected tail looks like).
pub fn ends_with_line_comment(sql: &str) -> bool {
    split_lexed(sql).1
}

/// The value of the quoted token opening at `b[start]` with quote `q` (a doubled quote is
/// one), and where it ends (past the closing quote, or the end of the text).
fn quoted(b: &[u8], start: usize, q: u8, backslash: bool) -> (Vec<u8>, usize) {
    let mut value = Vec::new();
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' && i + 1 < b.len() {
            value.push(unescape(b[i + 1]));
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                value.push(q);
                i += 2;
                continue;
            }
            break;
        }
        value.push(b[i]);
        i += 1;
    }
    (value, (i + 1).min(b.len()))
}

fn unescape(c: u8) -> u8 {
    match c {
        b'n' => b'\n',
        b't' => b'\t',
        b'r' => b'\r',
        b'0' => 0,
        b'b' => 8,
        b'Z' => 26,
        other => other,
    }
}

/// What a scan of the words finds, whether or not the statement parses.
fn scan_flags(toks: &[Tok]) -> Flags {
    let mut f = Flags::default();
    for (i, t) in toks.iter().enumerate() {
        let next_paren = toks.get(i + 1) == Some(&Tok::Punct(b'('));
        match t {
            Tok::Word(w) | Tok::Quoted(w) => {
                let w = w.as_str();
                if matches!(t, Tok::Word(_)) && (w == "outfile" || w == "dumpfile" || w == "infile")
                {
                    f.copy_server_file = true;
                }
                if next_paren && w == "load_file" {
                    f.copy_server_file = true;
                }
                if next_paren && PROGRAM_FUNCTIONS.contains(&w) {
                    f.copy_program = true;
                }
                if w == "sql_mode" && changes_lexing(&toks[i + 1..]) {
                    f.lexing = true;
                }
            }
            Tok::Var(v) => {
                let name = v.trim_start_matches('@');
                let name = name
                    .strip_prefix("session.")
                    .or_else(|| name.strip_prefix("global."))
                    .or_else(|| name.strip_prefix("local."))
                    .unwrap_or(name);
                if name == "sql_mode" && changes_lexing(&toks[i + 1..]) {
                    f.lexing = true;
                }
            }
            _ => {}
        }
    }
    if toks.first().and_then(Tok::word) == Some("load")
        && matches!(toks.get(1).and_then(Tok::word), Some("data" | "xml"))
    {
        f.copy_server_file = true;
    }
    f
}

/// sql_mode items that leave the text read as Postern reads it (the rest, and any name not
/// known here, may not: `ANSI_QUOTES`, `NO_BACKSLASH_ESCAPES`, `ORACLE`…).
const SAFE_MODES: &[&str] = &[
    "allow_invalid_dates",
    "empty_string_is_null",
    "error_for_division_by_zero",
    "high_not_precedence",
    "ignore_bad_table_options",
    "ignore_space",
    "no_auto_create_user",
    "no_auto_value_on_zero",
    "no_dir_in_create",
    "no_engine_substitution",
    "no_field_options",
    "no_key_options",
    "no_table_options",
    "no_unsigned_subtraction",
    "no_zero_date",
    "no_zero_in_date",
    "only_full_group_by",
    "pad_char_to_full_length",
    "pipes_as_concat",
    "real_as_float",
    "simultaneous_assignment",
    "strict_all_tables",
    "strict_trans_tables",
    "time_round_fractional",
    "traditional",
];

/// Whether a server running with this `sql_mode` reads text the way this analyser does:
/// every item is one of [`SAFE_MODES`].
pub fn sql_mode_is_safe(v: &str) -> bool {
    safe_modes(v)
}

fn safe_modes(v: &str) -> bool {
    v.split(',')
        .map(|m| m.trim().to_ascii_lowercase())
        .all(|m| m.is_empty() || SAFE_MODES.contains(&m.as_str()))
}

/// After a `sql_mode` word: whether what follows assigns a mode that may change lexing.
/// Passes: `= 'items'`, `= DEFAULT`, and values built only from the current mode and such
/// literals (`CONCAT(@@sql_mode, ',NO_ENGINE_SUBSTITUTION')`, what drivers send).
fn changes_lexing(rest: &[Tok]) -> bool {
    let mut r = rest;
    match r.first() {
        Some(Tok::Punct(b'=')) => r = &r[1..],
        Some(Tok::Punct(b':')) if r.get(1) == Some(&Tok::Punct(b'=')) => r = &r[2..],
        Some(Tok::Word(w)) if w == "to" => r = &r[1..],
        // Read, not assigned (`SELECT @@sql_mode`, `sql_mode,`).
        _ => return false,
    }
    let mut depth = 0usize;
    for t in r {
        match t {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') if depth > 0 => depth -= 1,
            Tok::Punct(b',') if depth == 0 => return false,
            Tok::Punct(b',') => {}
            Tok::Str(v) if safe_modes(v) => {}
            Tok::Var(v)
                if matches!(
                    v.as_str(),
                    "@@sql_mode" | "@@session.sql_mode" | "@@global.sql_mode" | "@@local.sql_mode"
                ) => {}
            Tok::Word(w)
                if matches!(
                    w.as_str(),
                    "select" | "concat" | "concat_ws" | "replace" | "default"
                ) => {}
            // `FOR` of MariaDB's SET STATEMENT … FOR: the value ended.
            Tok::Word(w) if depth == 0 && w == "for" => return false,
            _ => return true,
        }
    }
    false
}

fn unanalysable(command: &str, reason: impl Into<String>, flags: Flags) -> Statement {
    Statement::Unanalysable {
        command: command.to_string(),
        reason: reason.into(),
        flags,
    }
}

fn facts(kind: StatementKind, command: impl Into<String>) -> StatementFacts {
    StatementFacts {
        kind,
        command: command.into(),
        accesses: Vec::new(),
        functions: Vec::new(),
        session: Vec::new(),
        prepared: None,
        flags: Flags::default(),
        flow: Box::default(),
    }
}

/// The command name for messages: the first word, or the first two for definitions.
fn command_of(toks: &[Tok]) -> String {
    let mut words = toks.iter().filter_map(Tok::word);
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "CREATE" | "ALTER" | "DROP" | "SHOW" | "RENAME" | "LOAD" => {
            let mut c = first;
            if let Some(w) = words.next() {
                c.push(' ');
                c.push_str(&w.to_ascii_uppercase());
            }
            c
        }
        _ => first,
    }
}

fn analyse_statement(p: &Piece, depth: u8) -> Statement {
    let flags = scan_flags(&p.toks);
    let command = command_of(&p.toks);
    if p.code.len() > MAX_TEXT {
        return unanalysable(&command, "the statement is too long to analyse", flags);
    }
    let mut st = match special(p, depth) {
        Some(s) => s,
        None => parse(&p.code, &command, &flags),
    };
    // What the scan found holds whatever the grammar made of the text.
    match &mut st {
        Statement::Analysed(f) => {
            f.flags.copy_server_file |= flags.copy_server_file;
            f.flags.copy_program |= flags.copy_program;
            f.flags.lexing |= flags.lexing;
        }
        Statement::Unanalysable { flags: uf, .. } => {
            uf.copy_server_file |= flags.copy_server_file;
            uf.copy_program |= flags.copy_program;
            uf.lexing |= flags.lexing;
            uf.dynamic_sql |= flags.dynamic_sql;
        }
    }
    st
}

fn parse(code: &str, command: &str, flags: &Flags) -> Statement {
    let dialect = MySqlDialect {};
    let parsed = Parser::new(&dialect)
        .with_recursion_limit(MAX_DEPTH)
        .try_with_sql(code)
        .and_then(|mut p| p.parse_statements());
    match parsed {
        Ok(v) if v.len() == 1 => match statement_facts(&v[0], command) {
            Ok(mut f) => {
                f.flow = Box::new(crate::mysql_flow::column_flow(&v[0]));
                Statement::Analysed(f)
            }
            Err(reason) => unanalysable(command, reason, flags.clone()),
        },
        Ok(_) => unanalysable(command, "not one statement", flags.clone()),
        Err(e) => unanalysable(
            command,
            format!("Postern's MySQL grammar does not read it ({e})"),
            flags.clone(),
        ),
    }
}

/// MySQL statements read here rather than by the grammar.
fn special(p: &Piece, depth: u8) -> Option<Statement> {
    let t = &p.toks;
    let w = |i: usize| t.get(i).and_then(Tok::word);
    let first = w(0)?;
    match first {
        "prepare" => {
            let name = t.get(1)?.name()?.to_string();
            if w(2) != Some("from") {
                return None;
            }
            let mut f = facts(StatementKind::Prepare, "PREPARE");
            f.prepared = Some(name);
            match (t.get(3), t.get(4)) {
                (Some(Tok::Str(text)), None) if depth == 0 => {
                    let inner = split(text);
                    match inner.as_slice() {
                        [one] => match analyse_statement(one, depth + 1) {
                            Statement::Analysed(mut inner) => {
                                inner.kind = StatementKind::Prepare;
                                inner.command = "PREPARE".into();
                                inner.prepared = f.prepared.take();
                                return Some(Statement::Analysed(inner));
                            }
                            Statement::Unanalysable {
                                command,
                                reason,
                                flags,
                            } => {
                                return Some(unanalysable(
                                    "PREPARE",
                                    format!("the prepared {command} statement: {reason}"),
                                    flags,
                                ))
                            }
                        },
                        _ => {
                            return Some(unanalysable(
                                "PREPARE",
                                "the prepared text is not one statement",
                                Flags::default(),
                            ))
                        }
                    }
                }
                _ => {
                    // Text from a variable (or built otherwise): not known until it runs.
                    f.flags.dynamic_sql = true;
                }
            }
            Some(Statement::Analysed(f))
        }
        "execute" => {
            let name = t.get(1)?.name()?.to_string();
            if !(t.len() == 2 || w(2) == Some("using")) {
                return None;
            }
            let mut f = facts(StatementKind::Execute, "EXECUTE");
            f.prepared = Some(name);
            Some(Statement::Analysed(f))
        }
        "deallocate" | "drop" if w(1) == Some("prepare") => {
            let name = t.get(2)?.name()?.to_string();
            (t.len() == 3).then(|| {
                let mut f = facts(StatementKind::Deallocate, "DEALLOCATE");
                f.prepared = Some(name);
                Statement::Analysed(f)
            })
        }
        "handler" => {
            let mut f = facts(StatementKind::Select, "HANDLER");
            // `HANDLER t OPEN [AS a]` reads t; READ and CLOSE act on what was opened.
            let (name, rest) = object_tokens(&t[1..])?;
            if rest.first().and_then(Tok::word) == Some("open") {
                f.accesses.push(Access {
                    object: name,
                    action: Action::Select,
                });
            }
            Some(Statement::Analysed(f))
        }
        "use" => {
            let db = t.get(1)?.name()?.to_string();
            (t.len() == 2).then(|| {
                let mut f = facts(StatementKind::Session, "USE");
                f.session.push(SessionEffect::UseDatabase(db));
                Statement::Analysed(f)
            })
        }
        "table" => {
            // `TABLE t …` is `SELECT * FROM t …`.
            let rest = p.code.trim_start();
            let rewritten = format!("SELECT * FROM {}", rest.get(5..).unwrap_or(""));
            Some(parse(&rewritten, "TABLE", &Flags::default()))
        }
        "do" => {
            let rest = p.code.trim_start();
            let rewritten = format!("SELECT {}", rest.get(2..).unwrap_or(""));
            Some(match parse(&rewritten, "DO", &Flags::default()) {
                Statement::Analysed(mut f) => {
                    f.command = "DO".into();
                    Statement::Analysed(f)
                }
                other => other,
            })
        }
        "load" if matches!(w(1), Some("data" | "xml")) => {
            // LOAD DATA [LOW_PRIORITY|CONCURRENT] [LOCAL] INFILE 'f' [REPLACE|IGNORE]
            // INTO TABLE t …
            let at = t
                .windows(2)
                .position(|p| p[0].word() == Some("into") && p[1].word() == Some("table"))?;
            let (name, _) = object_tokens(&t[at + 2..])?;
            let mut f = facts(StatementKind::Copy, command_of(t));
            f.accesses.push(Access {
                object: name.clone(),
                action: Action::Insert,
            });
            if t.iter().any(|x| x.word() == Some("replace")) {
                f.accesses.push(Access {
                    object: name,
                    action: Action::Delete,
                });
            }
            f.flags.copy_server_file = true;
            Some(Statement::Analysed(f))
        }
        "describe" | "desc" | "explain"
            if t.get(1).and_then(Tok::name).is_some()
                && !matches!(
                    w(1),
                    Some(
                        "select"
                            | "insert"
                            | "update"
                            | "delete"
                            | "replace"
                            | "with"
                            | "table"
                            | "extended"
                            | "partitions"
                            | "format"
                            | "analyze"
                            | "for"
                    )
                ) =>
        {
            // Column metadata, like SHOW COLUMNS.
            let (_, rest) = object_tokens(&t[1..])?;
            if rest.len() > 1 {
                return None;
            }
            let mut f = facts(StatementKind::Select, "DESCRIBE");
            f.accesses.push(catalog("columns"));
            Some(Statement::Analysed(f))
        }
        "show" => Some(Statement::Analysed(show(t))),
        "set" => Some(set(p, depth)),
        _ => None,
    }
}

/// The code of tokens `from..to` of a piece.
fn code_of(p: &Piece, from: usize, to: usize) -> &str {
    match (
        p.offs.get(from),
        to.checked_sub(1).and_then(|l| p.offs.get(l)),
    ) {
        (Some(a), Some(b)) if a.0 <= b.1 => p.code.get(a.0..b.1).unwrap_or(""),
        _ => "",
    }
}

/// A piece made of tokens `from..` of `p` (what follows `FOR` in SET STATEMENT).
fn tail(p: &Piece, from: usize) -> Piece {
    let start = p.offs.get(from).map_or(p.code.len(), |o| o.0);
    Piece {
        code: p.code.get(start..).unwrap_or("").to_string(),
        toks: p.toks[from.min(p.toks.len())..].to_vec(),
        span: p.span,
        offs: p.offs[from.min(p.offs.len())..]
            .iter()
            .map(|(a, b)| (a - start, b - start))
            .collect(),
    }
}

/// SET, one assignment at a time (the grammar reads neither `NAMES` among others, as
/// drivers send it, nor MariaDB's `SET STATEMENT … FOR statement`).
fn set(p: &Piece, depth: u8) -> Statement {
    let t = &p.toks;
    let mut f = facts(StatementKind::Session, "SET");
    let mut first = 1;
    let statement = t.get(1).and_then(Tok::word) == Some("statement");
    if statement {
        first = 2;
    }
    // Assignments end at a top-level comma (or, in SET STATEMENT, at FOR).
    let mut parts = Vec::new();
    let (mut depth_p, mut at, mut end) = (0usize, first, t.len());
    for (i, tok) in t.iter().enumerate().skip(first) {
        match tok {
            Tok::Punct(b'(') => depth_p += 1,
            Tok::Punct(b')') => depth_p = depth_p.saturating_sub(1),
            Tok::Punct(b',') if depth_p == 0 => {
                parts.push((at, i));
                at = i + 1;
            }
            Tok::Word(w) if statement && depth_p == 0 && w == "for" => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    parts.push((at, end));
    for (a, b) in parts {
        let head = t.get(a).and_then(Tok::word);
        if matches!(head, Some("names" | "charset"))
            || (head == Some("character") && t.get(a + 1).and_then(Tok::word) == Some("set"))
        {
            f.session.push(SessionEffect::Setting("names".into()));
            continue;
        }
        let text = format!("SET {}", code_of(p, a, b));
        match parse(&text, "SET", &Flags::default()) {
            Statement::Analysed(one) => {
                f.accesses.extend(one.accesses);
                f.functions.extend(one.functions);
                f.session.extend(one.session);
                // Values assigned (to variables above all) are copies read later.
                let (flow, from) = (&mut f.flow, *one.flow);
                flow.relations.extend(from.relations);
                for (into, r) in [
                    (&mut flow.copies, from.copies),
                    (&mut flow.filters, from.filters),
                ] {
                    into.names.extend(r.names);
                    into.relations.extend(r.relations);
                    into.functions.extend(r.functions);
                    into.star |= r.star;
                }
            }
            other => return other,
        }
    }
    f.accesses.sort();
    f.accesses.dedup();
    f.functions.sort();
    f.functions.dedup();
    if statement {
        if end == t.len() || depth > 0 {
            return unanalysable(
                "SET STATEMENT",
                "SET STATEMENT without FOR",
                Flags::default(),
            );
        }
        // The statement runs with the settings; its facts are the statement's, plus what the
        // settings' values read.
        return match analyse_statement(&tail(p, end + 1), depth + 1) {
            Statement::Analysed(mut inner) => {
                inner.accesses.extend(f.accesses);
                inner.accesses.sort();
                inner.accesses.dedup();
                inner.functions.extend(f.functions);
                inner.functions.sort();
                inner.functions.dedup();
                inner.command = format!("SET STATEMENT … FOR {}", inner.command);
                inner.flow.relations.extend(f.flow.relations);
                let c = std::mem::take(&mut f.flow.copies);
                inner.flow.copies.names.extend(c.names);
                inner.flow.copies.relations.extend(c.relations);
                Statement::Analysed(inner)
            }
            other => other,
        };
    }
    Statement::Analysed(f)
}

/// `name` or `db.name` at the start of `t`, and the tokens after it.
fn object_tokens(t: &[Tok]) -> Option<(ObjectName, &[Tok])> {
    let first = t.first()?.name()?;
    if t.get(1) == Some(&Tok::Punct(b'.')) {
        let second = t.get(2)?.name()?;
        return Some((ObjectName::qualified(first, second), &t[3..]));
    }
    Some((ObjectName::bare(first), &t[1..]))
}

/// A read of a table of `information_schema` (SHOW and DESCRIBE read the catalog).
fn catalog(table: &str) -> Access {
    Access {
        object: ObjectName::qualified("information_schema", table),
        action: Action::Select,
    }
}

/// SHOW: a catalog read, except the forms that reveal other sessions' data or the server's
/// logs, which are administration.
fn show(t: &[Tok]) -> StatementFacts {
    let words: Vec<&str> = t.iter().skip(1).filter_map(Tok::word).collect();
    let mut f = facts(StatementKind::Select, command_of(t));
    let table = match words.first().copied() {
        Some("full") | Some("extended") => words.get(1).copied(),
        other => other,
    };
    let admin = matches!(
        table,
        Some(
            "binlog"
                | "binary"
                | "relaylog"
                | "master"
                | "slave"
                | "replica"
                | "engine"
                | "engines"
                | "profile"
                | "profiles"
        )
    );
    if admin {
        f.accesses.push(Access {
            object: ObjectName::whole_database(),
            action: Action::Ddl,
        });
        return f;
    }
    let cat = match table {
        Some("tables") | Some("table") | Some("open") => "tables",
        Some("columns") | Some("fields") => "columns",
        Some("index") | Some("indexes") | Some("keys") => "statistics",
        Some("databases") | Some("schemas") => "schemata",
        Some("processlist") => "processlist",
        Some("grants") | Some("privileges") => "user_privileges",
        Some("create") => match words.get(1).copied() {
            Some("database") | Some("schema") => "schemata",
            Some("view") => "views",
            Some("procedure") | Some("function") => "routines",
            Some("trigger") => "triggers",
            Some("event") => "events",
            Some("user") => "user_privileges",
            _ => "tables",
        },
        Some("triggers") => "triggers",
        Some("events") => "events",
        Some("variables") => "system_variables",
        Some("status") | Some("global") | Some("session") => "global_status",
        Some("collation") => "collations",
        Some("charset") | Some("character") => "character_sets",
        Some("plugins") => "plugins",
        Some("procedure") | Some("function") => "routines",
        Some(other) => other,
        None => "tables",
    };
    f.accesses.push(catalog(cat));
    f
}

/// An identifier as MySQL names are compared here: lower case.
pub(crate) fn fold(i: &ast::Ident) -> String {
    i.value.to_lowercase()
}

/// A table name as the statement writes it. `None` for forms MySQL does not have.
pub(crate) fn object_name(n: &ast::ObjectName) -> Option<ObjectName> {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(fold(i)),
                ObjectNamePart::Function(_) => None,
            })
            .collect::<Option<_>>()?;
    match parts.as_slice() {
        [t] => Some(ObjectName::bare(t.clone())),
        [d, t] => Some(ObjectName::qualified(d.clone(), t.clone())),
        _ => None,
    }
}

/// Relations, functions and firewall shapes of everything below a statement.
#[derive(Default)]
struct Walk {
    /// Relations read, one entry per mention.
    reads: Vec<ObjectName>,
    functions: Vec<ObjectName>,
    /// CTE names visible at each query level (innermost last).
    scopes: Vec<Vec<String>>,
    /// Queries that are CTE bodies, by address: the frame of their WITH, the names visible
    /// to them, and, for the last one, every name (what the query's body then sees).
    ctes: Vec<CteBody>,
    tautology: bool,
    bad: Option<String>,
}

struct CteBody {
    addr: usize,
    frame: usize,
    visible: Vec<String>,
    then: Option<Vec<String>>,
}

fn addr(q: &Query) -> usize {
    q as *const Query as usize
}

impl Walk {
    fn is_cte(&self, n: &ObjectName) -> bool {
        n.schema.is_none() && self.scopes.iter().any(|s| s.contains(&n.name))
    }
}

impl Visitor for Walk {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // A CTE body sees the CTEs before it (all of them when RECURSIVE).
        if let Some(c) = self.ctes.iter().find(|c| c.addr == addr(q)) {
            if let Some(s) = self.scopes.get_mut(c.frame) {
                *s = c.visible.clone();
            }
        }
        let frame = self.scopes.len();
        self.scopes.push(Vec::new());
        if let Some(with) = &q.with {
            let names: Vec<String> = with
                .cte_tables
                .iter()
                .map(|c| fold(&c.alias.name))
                .collect();
            let n = names.len();
            for (i, c) in with.cte_tables.iter().enumerate() {
                let visible = if with.recursive {
                    names.clone()
                } else {
                    names[..i].to_vec()
                };
                self.ctes.push(CteBody {
                    addr: addr(&c.query),
                    frame,
                    visible,
                    then: (i + 1 == n).then(|| names.clone()),
                });
            }
            if n == 0 || with.recursive {
                self.scopes[frame] = names;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        // After the last CTE body, the query's own body sees every CTE.
        if let Some(pos) = self.ctes.iter().position(|c| c.addr == addr(q)) {
            let c = self.ctes.remove(pos);
            if let (Some(all), Some(s)) = (c.then, self.scopes.get_mut(c.frame)) {
                *s = all;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } = tf {
            match object_name(name) {
                Some(o) if self.is_cte(&o) => {}
                Some(o) => self.reads.push(o),
                None => self.bad = Some(format!("table name {name} is not db.table")),
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => match object_name(&f.name) {
                Some(o) => self.functions.push(o),
                None => self.bad = Some(format!("function name {} is not db.name", f.name)),
            },
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Or,
                right,
            } if always_true(left) || always_true(right) => self.tautology = true,
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `1`, `true`, `'a' = 'a'`, `1 = 1`, `x = x` with the same literal on both sides.
fn always_true(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => always_true(inner),
        Expr::Value(v) => match &v.value {
            ast::Value::Boolean(b) => *b,
            ast::Value::Number(n, _) => n.parse::<f64>().is_ok_and(|x| x != 0.0),
            _ => false,
        },
        Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Eq | ast::BinaryOperator::Spaceship,
            right,
        } => {
            matches!((left.as_ref(), right.as_ref()), (Expr::Value(a), Expr::Value(b)) if a.value == b.value)
        }
        _ => false,
    }
}

fn push(out: &mut Vec<Access>, object: ObjectName, action: Action) {
    out.push(Access { object, action });
}

/// Removes one read of `o` (the mention that names a statement's target).
fn take_read(reads: &mut Vec<ObjectName>, o: &ObjectName) {
    if let Some(i) = reads.iter().position(|r| r == o) {
        reads.remove(i);
    }
}

fn names(v: &[ast::ObjectName]) -> Result<Vec<ObjectName>, String> {
    v.iter()
        .map(|n| object_name(n).ok_or_else(|| format!("{n} is not db.name")))
        .collect()
}

/// Tables an UPDATE or DELETE names in its table list, with their aliases.
fn table_list(t: &ast::TableWithJoins, out: &mut Vec<(ObjectName, Option<String>)>) {
    let mut one = |f: &TableFactor| {
        if let TableFactor::Table { name, alias, .. } = f {
            if let Some(o) = object_name(name) {
                out.push((o, alias.as_ref().map(|a| fold(&a.name))));
            }
        }
    };
    one(&t.relation);
    for j in &t.joins {
        one(&j.relation);
    }
}

/// The facts of one parsed statement; `Err` names what is not understood.
fn statement_facts(st: &ast::Statement, command: &str) -> Result<StatementFacts, String> {
    use ast::Statement as S;
    let mut walk = Walk::default();
    let _ = st.visit(&mut walk);
    if let Some(bad) = walk.bad.take() {
        return Err(bad);
    }
    let mut reads = std::mem::take(&mut walk.reads);
    let mut targets: Vec<Access> = Vec::new();
    let whole_db = ObjectName::whole_database;
    let kind = match st {
        S::Query(q) => {
            for l in &q.locks {
                let _ = l;
                for r in &reads {
                    push(&mut targets, r.clone(), Action::Lock);
                }
            }
            StatementKind::Select
        }
        S::Insert(ins) => {
            let TableObject::TableName(n) = &ins.table else {
                return Err("INSERT into a table function".into());
            };
            let o = object_name(n).ok_or("INSERT target is not db.table")?;
            take_read(&mut reads, &o);
            push(&mut targets, o.clone(), Action::Insert);
            if ins.replace_into {
                push(&mut targets, o.clone(), Action::Delete);
            }
            if ins.on.is_some() {
                push(&mut targets, o.clone(), Action::Update);
                push(&mut targets, o, Action::Select);
            }
            StatementKind::Insert
        }
        S::Update(u) => {
            let mut tables = Vec::new();
            table_list(&u.table, &mut tables);
            // The tables whose columns are assigned; unqualified columns with several
            // tables may belong to any of them.
            let mut hit: HashSet<usize> = HashSet::new();
            for a in &u.assignments {
                let qualifier = match &a.target {
                    ast::AssignmentTarget::ColumnName(n) if n.0.len() >= 2 => {
                        n.0.get(n.0.len() - 2).and_then(|p| match p {
                            ObjectNamePart::Identifier(i) => Some(fold(i)),
                            ObjectNamePart::Function(_) => None,
                        })
                    }
                    _ => None,
                };
                match qualifier {
                    Some(q) => {
                        let found: Vec<usize> = tables
                            .iter()
                            .enumerate()
                            .filter(|(_, (o, a))| {
                                a.as_deref() == Some(&q) || (a.is_none() && o.name == q)
                            })
                            .map(|(i, _)| i)
                            .collect();
                        if found.is_empty() {
                            hit.extend(0..tables.len());
                        }
                        hit.extend(found);
                    }
                    None => hit.extend(0..tables.len()),
                }
            }
            for (i, (o, _)) in tables.iter().enumerate() {
                if hit.contains(&i) {
                    // Naming the target is no read; a WHERE is.
                    if u.selection.is_none() {
                        take_read(&mut reads, o);
                    }
                    push(&mut targets, o.clone(), Action::Update);
                }
            }
            StatementKind::Update
        }
        S::Delete(d) => {
            let from = match &d.from {
                FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
            };
            let mut tables = Vec::new();
            for t in from {
                table_list(t, &mut tables);
            }
            if d.tables.is_empty() {
                if let Some((o, _)) = tables.first() {
                    if d.selection.is_none() {
                        take_read(&mut reads, o);
                    }
                    push(&mut targets, o.clone(), Action::Delete);
                }
            } else {
                // `DELETE a, b FROM …`: names or aliases of tables in the FROM list.
                for n in names(&d.tables)? {
                    let t = tables
                        .iter()
                        .find(|(_, a)| n.schema.is_none() && a.as_deref() == Some(n.name.as_str()))
                        .map(|(o, _)| o.clone())
                        .unwrap_or(n);
                    push(&mut targets, t, Action::Delete);
                }
            }
            StatementKind::Delete
        }
        S::CreateView(v) => {
            let o = object_name(&v.name).ok_or("view name is not db.name")?;
            take_read(&mut reads, &o);
            push(&mut targets, o, Action::Ddl);
            StatementKind::Ddl
        }
        S::CreateTable(c) => {
            let o = object_name(&c.name).ok_or("table name is not db.name")?;
            take_read(&mut reads, &o);
            push(&mut targets, o, Action::Ddl);
            if let Some(
                ast::CreateTableLikeKind::Parenthesized(l) | ast::CreateTableLikeKind::Plain(l),
            ) = &c.like
            {
                reads.extend(object_name(&l.name));
            }
            StatementKind::Ddl
        }
        S::AlterTable(a) => {
            let o = object_name(&a.name).ok_or("table name is not db.name")?;
            take_read(&mut reads, &o);
            push(&mut targets, o, Action::Ddl);
            StatementKind::Ddl
        }
        S::CreateIndex(c) => {
            let o = object_name(&c.table_name).ok_or("table name is not db.name")?;
            take_read(&mut reads, &o);
            push(&mut targets, o, Action::Ddl);
            StatementKind::Ddl
        }
        S::Drop {
            object_type,
            names: n,
            table,
            ..
        } => {
            match object_type {
                ast::ObjectType::Table | ast::ObjectType::View => {
                    for o in names(n)? {
                        push(&mut targets, o, Action::Ddl);
                    }
                }
                ast::ObjectType::Index => {
                    let t = table.as_ref().ok_or("DROP INDEX without ON table")?;
                    let o = object_name(t).ok_or("table name is not db.name")?;
                    take_read(&mut reads, &o);
                    push(&mut targets, o, Action::Ddl);
                }
                _ => push(&mut targets, whole_db(), Action::Ddl),
            }
            StatementKind::Ddl
        }
        S::Truncate(t) => {
            for n in &t.table_names {
                let o = object_name(&n.name).ok_or("table name is not db.name")?;
                take_read(&mut reads, &o);
                push(&mut targets, o, Action::Truncate);
            }
            StatementKind::Truncate
        }
        S::RenameTable(v) => {
            for r in v {
                for n in [&r.old_name, &r.new_name] {
                    let o = object_name(n).ok_or("table name is not db.name")?;
                    push(&mut targets, o, Action::Ddl);
                }
            }
            StatementKind::Ddl
        }
        S::Call(f) => {
            let o = object_name(&f.name).ok_or("procedure name is not db.name")?;
            // The visitor saw the procedure as a function; it is a CALL.
            if let Some(i) = walk.functions.iter().position(|x| *x == o) {
                walk.functions.remove(i);
            }
            push(&mut targets, o, Action::Call);
            StatementKind::Call
        }
        S::LockTables { tables } => {
            for t in tables {
                push(&mut targets, ObjectName::bare(fold(&t.table)), Action::Lock);
            }
            StatementKind::Lock
        }
        S::UnlockTables => StatementKind::Session,
        S::StartTransaction { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::Savepoint { .. }
        | S::ReleaseSavepoint { .. } => StatementKind::Transaction,
        S::Set(s) => {
            let mut f = facts(StatementKind::Session, command);
            set_effects(s, &mut f)?;
            return Ok(finish(f, reads, targets, walk));
        }
        S::Explain { statement, .. } => {
            let mut inner = statement_facts(statement, command)?;
            inner.kind = StatementKind::Explain;
            inner.command = command.to_string();
            return Ok(inner);
        }
        S::ExplainTable { .. } => {
            reads.clear();
            targets.push(catalog("columns"));
            StatementKind::Select
        }
        S::Kill { .. } => StatementKind::Session,
        S::Analyze(_) => {
            for r in std::mem::take(&mut reads) {
                push(&mut targets, r, Action::Ddl);
            }
            StatementKind::Maintenance
        }
        S::CreateDatabase { .. }
        | S::CreateSchema { .. }
        | S::Grant(_)
        | S::Revoke(_)
        | S::CreateUser(_)
        | S::AlterUser(_)
        | S::CreateRole(_)
        | S::Flush { .. } => {
            push(&mut targets, whole_db(), Action::Ddl);
            StatementKind::Ddl
        }
        other => {
            let name = format!("{other:?}");
            let name = name
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or("")
                .to_string();
            return Err(format!("{name} statements are not analysed"));
        }
    };
    let mut f = facts(kind, command);
    if let S::Update(u) = st {
        f.flags.modifies_without_where = u.selection.is_none();
    }
    if let S::Delete(d) = st {
        f.flags.modifies_without_where = d.selection.is_none();
    }
    if let S::Drop { .. } = st {
        f.flags.drops = true;
    }
    Ok(finish(f, reads, targets, walk))
}

fn finish(
    mut f: StatementFacts,
    reads: Vec<ObjectName>,
    targets: Vec<Access>,
    walk: Walk,
) -> StatementFacts {
    f.accesses.extend(targets);
    for r in reads {
        push(&mut f.accesses, r, Action::Select);
    }
    f.accesses.sort();
    f.accesses.dedup();
    f.functions = walk.functions;
    f.functions.sort();
    f.functions.dedup();
    f.flags.tautology |= walk.tautology;
    f
}

fn variable_name(n: &ast::ObjectName) -> String {
    let s = n.to_string().to_lowercase();
    let s = s.trim_start_matches('@');
    s.strip_prefix("session.")
        .or_else(|| s.strip_prefix("global."))
        .or_else(|| s.strip_prefix("local."))
        .unwrap_or(s)
        .to_string()
}

fn is_global(scope: Option<&ast::ContextModifier>) -> bool {
    scope.is_some_and(|s| format!("{s:?}").eq_ignore_ascii_case("global"))
}

/// Session effects of SET; user variables (`@x`) are no setting of the server.
fn set_effects(s: &ast::Set, f: &mut StatementFacts) -> Result<(), String> {
    use ast::Set;
    let setting = |n: &ast::ObjectName, global: bool, f: &mut StatementFacts| {
        let written = n.to_string().to_lowercase();
        if !written.starts_with('@') || written.starts_with("@@") {
            let name = variable_name(n);
            // The server's own settings (and passwords) are administration.
            if name == "password" || global || written.starts_with("@@global.") {
                f.accesses.push(Access {
                    object: ObjectName::whole_database(),
                    action: Action::Ddl,
                });
            }
            f.session.push(SessionEffect::Setting(name));
        }
    };
    match s {
        Set::SingleAssignment {
            variable, scope, ..
        } => setting(variable, is_global(scope.as_ref()), f),
        Set::ParenthesizedAssignments { variables, .. } => {
            for v in variables {
                setting(v, false, f);
            }
        }
        Set::MultipleAssignments { assignments } => {
            for a in assignments {
                setting(&a.name, is_global(a.scope.as_ref()), f);
            }
        }
        Set::SetRole { role_name, .. } => f
            .session
            .push(SessionEffect::SetRole(role_name.as_ref().map(fold))),
        Set::SetNames { .. } | Set::SetNamesDefault {} => {
            f.session.push(SessionEffect::Setting("names".into()))
        }
        Set::SetTransaction { .. } => f.session.push(SessionEffect::Setting("transaction".into())),
        other => {
            return Err(format!("SET form not analysed: {other}"));
        }
    }
    Ok(())
}
