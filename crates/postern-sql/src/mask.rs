//! Statement text for the audit log (L1): literals replaced by placeholders, and secrets
//! (passwords) removed even from the clear form.
//!
//! Works on PostgreSQL's own lexer tokens, so a literal is exactly what the server reads as
//! one: quotes inside comments, dollar quoting, `E'…'` escapes and `U&'…'` are handled as
//! the server handles them.

use std::borrow::Cow;

use pg_query::protobuf::Token;

use crate::pg::LexSettings;

/// The placeholder written in place of a literal.
pub const PLACEHOLDER: &str = "?";

/// The two forms of a statement kept in the audit log. Each borrows the statement when it
/// is the statement unchanged (no literal to mask, no secret to remove), so the common
/// case allocates only what differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogText<'a> {
    /// Every string, number, bit-string literal replaced by [`PLACEHOLDER`]: what anyone
    /// allowed to read the audit log sees.
    pub masked: Cow<'a, str>,
    /// The statement as sent, except that literals that may hold a secret (any literal of a
    /// statement that sets a `PASSWORD`, any literal mentioning a password, such as a
    /// connection string) are masked: what viewers with the clear-log permission see.
    pub clear: Cow<'a, str>,
    /// Whether `clear` had secrets removed.
    pub redacted: bool,
}

fn is_literal(t: i32) -> bool {
    [
        Token::Sconst,
        Token::Usconst,
        Token::Fconst,
        Token::Iconst,
        Token::Bconst,
        Token::Xconst,
    ]
    .iter()
    .any(|k| *k as i32 == t)
}

/// Whether a literal mentions a password (case-insensitive, without allocating).
fn mentions_password(lit: &str) -> bool {
    lit.as_bytes()
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"password"))
}

/// Both forms masked from the first quote, dollar or digit on: for text the lexer rejects
/// or whose tokens do not fit it — better an unreadable log line than a leaked secret.
fn coarse(sql: &str) -> LogText<'_> {
    let cut = sql
        .find(|c: char| c == '\'' || c == '$' || c.is_ascii_digit())
        .unwrap_or(sql.len());
    if cut == sql.len() {
        return LogText {
            masked: Cow::Borrowed(sql),
            clear: Cow::Borrowed(sql),
            redacted: false,
        };
    }
    let masked = format!("{}{PLACEHOLDER}", &sql[..cut]);
    LogText {
        clear: Cow::Owned(masked.clone()),
        masked: Cow::Owned(masked),
        redacted: true,
    }
}

/// Both log forms of `sql`. Text the lexer rejects (an unterminated quote…) is masked
/// coarsely, in both forms (see [`coarse`]).
pub fn log_text(sql: &str, lex: LexSettings) -> LogText<'_> {
    if sql.trim().is_empty() {
        // No tokens at all, and the lexer binding mishandles an empty token list.
        return LogText {
            masked: Cow::Borrowed(sql),
            clear: Cow::Borrowed(sql),
            redacted: false,
        };
    }
    // The lexer reads strings as with standard_conforming_strings on; with it off a
    // backslash may end or continue a literal differently, so be coarse.
    if !lex.standard_conforming_strings && sql.contains('\\') {
        return coarse(sql);
    }
    let Ok(tokens) = pg_query::scan_tokens(sql) else {
        return coarse(sql);
    };
    let sets_password = tokens.iter().any(|t| t.token == Token::Password as i32);
    let mut masked: Option<String> = None;
    // Built only once a secret literal shows up: until then the clear form is `sql` itself.
    let mut clear: Option<String> = None;
    let mut pos = 0usize;
    for t in tokens.iter().filter(|t| is_literal(t.token)) {
        let span = usize::try_from(t.start)
            .ok()
            .zip(usize::try_from(t.end).ok())
            .and_then(|(start, end)| {
                Some((start, sql.get(pos..start)?, sql.get(start..end)?, end))
            });
        // Tokens that do not fit the text would leave a literal unmasked: refuse to guess.
        let Some((start, before, lit, end)) = span else {
            return coarse(sql);
        };
        let m = masked.get_or_insert_with(|| String::with_capacity(sql.len()));
        m.push_str(before);
        m.push_str(PLACEHOLDER);
        let secret = sets_password || mentions_password(lit);
        match (&mut clear, secret) {
            (Some(c), _) => {
                c.push_str(before);
                c.push_str(if secret { PLACEHOLDER } else { lit });
            }
            (None, true) => {
                let mut c = String::with_capacity(sql.len());
                c.push_str(&sql[..start]);
                c.push_str(PLACEHOLDER);
                clear = Some(c);
            }
            (None, false) => {}
        }
        pos = end;
    }
    let rest = sql.get(pos..).unwrap_or("");
    let redacted = clear.is_some();
    LogText {
        masked: match masked {
            Some(mut m) => {
                m.push_str(rest);
                Cow::Owned(m)
            }
            None => Cow::Borrowed(sql),
        },
        clear: match clear {
            Some(mut c) => {
                c.push_str(rest);
                Cow::Owned(c)
            }
            None => Cow::Borrowed(sql),
        },
        redacted,
    }
}

/// Whether the text ends in a `--` comment: the shape of an injection that cuts off the
/// rest of a statement (`… WHERE name = 'x' --' AND …`). Comments inside, and `/* */`
/// comments at the end (which ORMs add as trace tags), do not count.
pub fn ends_with_line_comment(sql: &str) -> bool {
    if sql.trim().is_empty() {
        return false;
    }
    match pg_query::scan_tokens(sql) {
        Ok(tokens) => tokens
            .last()
            .is_some_and(|t| t.token == Token::SqlComment as i32),
        // Unlexable (an unterminated quote): a comment cannot be told apart; say no.
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(sql: &str) -> LogText<'_> {
        log_text(sql, LexSettings::default())
    }

    #[test]
    fn literals_are_masked() {
        let cases = [
            (
                "select * from t where a = 'x' and b = 42",
                "select * from t where a = ? and b = ?",
            ),
            ("select 1.5e3, -7, x'ff', b'101'", "select ?, -?, ?, ?"),
            ("select E'it\\'s', U&'d\\0061ta'", "select ?, ?"),
            ("select $$dollar 'quoted'$$, $tag$x$tag$", "select ?, ?"),
            (
                "select 'a' -- 'comment' stays\n",
                "select ? -- 'comment' stays\n",
            ),
            ("select /* '1' */ col from t", "select /* '1' */ col from t"),
            ("select $1, $2 from t", "select $1, $2 from t"),
            (
                "select \"quoted ident\" from t",
                "select \"quoted ident\" from t",
            ),
            ("select 'a''b'", "select ?"),
            (
                "insert into t values ('ünïcödé', 3)",
                "insert into t values (?, ?)",
            ),
            ("", ""),
        ];
        for (sql, want) in cases {
            let l = lt(sql);
            assert_eq!(l.masked, want, "{sql}");
            assert_eq!(l.clear, sql, "{sql}");
            assert!(!l.redacted, "{sql}");
        }
    }

    #[test]
    fn passwords_never_reach_the_clear_form() {
        for sql in [
            "alter role bob password 'hunter2'",
            "ALTER USER bob WITH PASSWORD 'hunter2' VALID UNTIL '2030-01-01'",
            "create role bob login password 'hunter2'",
            "create user bob with encrypted password 'hunter2'",
            "select dblink_connect('host=x user=y password=hunter2')",
            "create user mapping for bob server s options (user 'bob', password 'hunter2')",
        ] {
            let l = lt(sql);
            assert!(!l.clear.contains("hunter2"), "{sql}: {}", l.clear);
            assert!(!l.masked.contains("hunter2"), "{sql}");
            assert!(l.redacted, "{sql}");
        }
        // Other literals stay readable in the clear form.
        let l = lt("select dblink_connect('host=x password=p'), 'visible'");
        assert!(l.clear.contains("'visible'") && !l.clear.contains("password=p"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_grows(s in "\\PC{0,120}") {
            let l = lt(&s);
            let _ = log_text(&s, LexSettings { standard_conforming_strings: false });
            // Masking only ever shortens literals to one placeholder.
            proptest::prop_assert!(l.masked.len() <= s.len() + 1);
        }
    }

    #[test]
    fn line_comment_at_the_end() {
        assert!(ends_with_line_comment(
            "select * from t where a = 'x' --' and b = 1"
        ));
        assert!(ends_with_line_comment(
            "delete from t where id = 1 -- trailing"
        ));
        assert!(!ends_with_line_comment("select 1 -- note\n from t"));
        assert!(!ends_with_line_comment("select '--' from t"));
        assert!(!ends_with_line_comment("select 1 /* trace=abc */"));
        assert!(!ends_with_line_comment(""));
        assert!(!ends_with_line_comment("select 'open"));
    }

    #[test]
    fn unlexable_text_is_masked_coarsely() {
        let l = lt("select 'unterminated secret");
        assert_eq!(l.masked, "select ?");
        assert_eq!(l.clear, "select ?");
        let l = log_text(
            "select 'a\\' , 'secret'",
            LexSettings {
                standard_conforming_strings: false,
            },
        );
        assert!(!l.masked.contains("secret") && !l.clear.contains("secret"));
    }
}
