//! A per-session cache of analyses, keyed so that statements differing only in their
//! literals (`… WHERE id = 1`, `… WHERE id = 2`) share one entry.
//!
//! What a statement touches does not depend on the values of its literals, with one
//! exception: session changes (`SET search_path = 'x'`, `set_config('role', …)`) take
//! their values from literals. Analyses with session effects are therefore cached under
//! the exact text only.

use std::collections::HashMap;
use std::sync::Arc;

use crate::analysis::{Analysis, Statement, SyntaxError};
use crate::mask::{log_text, LogText};
use crate::pg::{analyse, LexSettings};

/// An analysis as cached: shared, since a session may hold it for a prepared statement.
pub type Cached = Arc<Result<Analysis, SyntaxError>>;

#[derive(Hash, PartialEq, Eq)]
struct Key {
    /// MySQL text (else PostgreSQL).
    mysql: bool,
    standard_conforming_strings: bool,
    /// Exact text (statements with session effects) or literal-masked text.
    exact: bool,
    text: Box<str>,
}

/// A bounded cache; when full it starts over (cheap, and a session's working set of
/// statement shapes is small).
pub struct AnalysisCache {
    map: HashMap<Key, Cached>,
    capacity: usize,
    hits: u64,
    misses: u64,
}

impl std::fmt::Debug for AnalysisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalysisCache")
            .field("entries", &self.map.len())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

fn has_session_effects(a: &Result<Analysis, SyntaxError>) -> bool {
    match a {
        Ok(a) => a.statements.iter().any(|s| match s {
            Statement::Analysed(f) => !f.session.is_empty(),
            Statement::Unanalysable { .. } => false,
        }),
        Err(_) => false,
    }
}

fn has_literal_statement(a: &Result<Analysis, SyntaxError>) -> bool {
    match a {
        Ok(a) => a.statements.iter().any(|s| match s {
            Statement::Analysed(f) => f.kind == crate::StatementKind::Prepare,
            Statement::Unanalysable { command, .. } => command == "PREPARE",
        }),
        Err(_) => false,
    }
}

impl AnalysisCache {
    /// A cache holding up to `capacity` analyses.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
            hits: 0,
            misses: 0,
        }
    }

    /// The analysis of `sql` and its audit-log forms.
    pub fn analyse<'s>(&mut self, sql: &'s str, lex: LexSettings) -> (Cached, LogText<'s>) {
        let log = log_text(sql, lex);
        let a = self.lookup(sql, &log, false, lex.standard_conforming_strings, |s| {
            analyse(s, lex)
        });
        (a, log)
    }

    /// The analysis of MySQL text ([`crate::mysql::analyse`]) and its audit-log forms.
    pub fn analyse_mysql<'s>(&mut self, sql: &'s str) -> (Cached, LogText<'s>) {
        let log = crate::mysql_mask::mysql_log_text(sql);
        let a = self.lookup(sql, &log, true, true, crate::mysql::analyse);
        (a, log)
    }

    fn lookup(
        &mut self,
        sql: &str,
        log: &LogText<'_>,
        mysql: bool,
        standard_conforming_strings: bool,
        analyse: impl FnOnce(&str) -> Result<Analysis, SyntaxError>,
    ) -> Cached {
        let key = |exact: bool, text: &str| Key {
            mysql,
            standard_conforming_strings,
            exact,
            text: text.into(),
        };
        let exact = key(true, sql);
        if let Some(a) = self.map.get(&exact) {
            self.hits += 1;
            return a.clone();
        }
        let masked = key(false, &log.masked);
        if let Some(a) = self.map.get(&masked) {
            self.hits += 1;
            return a.clone();
        }
        self.misses += 1;
        let a: Cached = Arc::new(analyse(sql));
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        // Analyses that depend on a literal's value are kept under the exact text: session
        // changes, MySQL's PREPARE … FROM 'text', and anything naming sql_mode
        // (`SET STATEMENT sql_mode = '…' FOR`).
        let names_sql_mode = mysql
            && sql
                .as_bytes()
                .windows(8)
                .any(|w| w.eq_ignore_ascii_case(b"sql_mode"));
        let literal_bound =
            has_session_effects(&a) || (mysql && has_literal_statement(&a)) || names_sql_mode;
        self.map
            .insert(if literal_bound { exact } else { masked }, a.clone());
        a
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::SessionEffect;

    fn effects(c: &Cached) -> Vec<SessionEffect> {
        match c.as_ref() {
            Ok(a) => a
                .statements
                .iter()
                .flat_map(|s| match s {
                    Statement::Analysed(f) => f.session.clone(),
                    Statement::Unanalysable { .. } => vec![],
                })
                .collect(),
            Err(_) => vec![],
        }
    }

    #[test]
    fn literals_share_entries_but_session_values_do_not() {
        let mut c = AnalysisCache::new(100);
        let lex = LexSettings::default();
        let (a1, l1) = c.analyse("select * from t where id = 1", lex);
        let (a2, l2) = c.analyse("select * from t where id = 2", lex);
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(l1.masked, l2.masked);
        assert_ne!(l1.clear, l2.clear);
        assert_eq!(c.stats(), (1, 1));
        let (x, _) = c.analyse("set search_path = 'x'", lex);
        let (y, _) = c.analyse("set search_path = 'y'", lex);
        assert_eq!(effects(&x), [SessionEffect::SearchPath(vec!["x".into()])]);
        assert_eq!(effects(&y), [SessionEffect::SearchPath(vec!["y".into()])]);
        let (r, _) = c.analyse("select set_config('role', 'admin', false)", lex);
        let (s, _) = c.analyse("select set_config('role', 'other', false)", lex);
        assert_ne!(effects(&r), effects(&s));
        // The same exact text does hit.
        let (y2, _) = c.analyse("set search_path = 'y'", lex);
        assert!(Arc::ptr_eq(&y, &y2));
        // Lexing mode is part of the key.
        let (o, _) = c.analyse(
            "select * from t where id = 1",
            LexSettings {
                standard_conforming_strings: false,
            },
        );
        assert!(!Arc::ptr_eq(&a1, &o));
    }

    #[test]
    fn bounded() {
        let mut c = AnalysisCache::new(3);
        for i in 0..10 {
            c.analyse(&format!("select c{i} from t"), LexSettings::default());
            assert!(c.map.len() <= 3);
        }
    }
}
