//! Statement text for the audit log, MySQL dialect: the same two forms as [`crate::mask`]
//! (literals masked; the clear form with secrets removed), from a small MySQL lexer:
//! '…' and "…" strings with backslash escapes and doubled quotes, `X'…'`, `B'…'`, `0x…`,
//! `0b…` and numbers; `…` identifiers, `#`, `-- ` and `/* */` comments (the text of a
//! `/*! … */` version comment is code, so literals inside it are masked too).

use std::borrow::Cow;

use crate::mask::{LogText, PLACEHOLDER};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Literal,
    Word,
    Other,
}

/// Splits `sql` into (kind, start, end) tokens; comments and white space are left out.
fn lex(sql: &str) -> Vec<(Tok, usize, usize)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b'\'' | b'"' => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == c {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push((Tok::Literal, start, i));
            }
            b'`' => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'`' {
                        if b.get(i + 1) == Some(&b'`') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push((Tok::Word, start, i));
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let exec = match (b.get(i + 2), b.get(i + 3)) {
                    (Some(b'!' | b'+'), _) => Some(3),
                    // MariaDB's `/*M! … */`.
                    (Some(b'M' | b'm'), Some(b'!')) => Some(4),
                    _ => None,
                };
                if let Some(skip) = exec {
                    // Executable comment: its body is lexed as code; the `*/` that ends it
                    // is skipped below as an operator.
                    i += skip;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    continue;
                }
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
            b'0'..=b'9' | b'.' if c != b'.' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    // 1e-5 / 1E+5
                    if (b[i] == b'e' || b[i] == b'E')
                        && matches!(b.get(i + 1), Some(b'-' | b'+'))
                        && !b[start..i].starts_with(b"0x")
                    {
                        i += 1;
                    }
                    i += 1;
                }
                out.push((Tok::Literal, start, i));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'@' || c >= 0x80 => {
                // X'…' / B'…' / N'…' / _charset'…'
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] == b'@'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                let word = &sql[start..i];
                let prefix = word.eq_ignore_ascii_case("x")
                    || word.eq_ignore_ascii_case("b")
                    || word.eq_ignore_ascii_case("n")
                    || word.starts_with('_');
                if prefix && b.get(i) == Some(&b'\'') {
                    continue; // the string that follows takes the prefix with it
                }
                out.push((Tok::Word, start, i));
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                i += 1;
                out.push((Tok::Other, start, i));
            }
        }
    }
    // A prefix word left out above belongs to the literal after it.
    out
}

/// The audit forms of a MySQL statement.
pub fn mysql_log_text(sql: &str) -> LogText<'_> {
    let toks = lex(sql);
    let secret = toks.iter().any(|&(t, s, e)| {
        t == Tok::Word && {
            let w = &sql[s..e];
            w.eq_ignore_ascii_case("password")
                || w.eq_ignore_ascii_case("identified")
                || w.to_ascii_lowercase().contains("password")
        }
    }) || toks
        .iter()
        .any(|&(t, s, e)| t == Tok::Literal && sql[s..e].to_ascii_lowercase().contains("password"));
    let literals: Vec<(usize, usize)> = toks
        .iter()
        .filter(|t| t.0 == Tok::Literal)
        .map(|&(_, s, e)| (literal_start(sql, s), e))
        .collect();
    if literals.is_empty() {
        return LogText {
            masked: Cow::Borrowed(sql),
            clear: Cow::Borrowed(sql),
            redacted: false,
        };
    }
    let mut masked = String::with_capacity(sql.len());
    let mut at = 0;
    for &(s, e) in &literals {
        masked.push_str(&sql[at..s]);
        masked.push_str(PLACEHOLDER);
        at = e;
    }
    masked.push_str(&sql[at..]);
    if secret {
        let m: Cow<'_, str> = Cow::Owned(masked);
        LogText {
            clear: m.clone(),
            masked: m,
            redacted: true,
        }
    } else {
        LogText {
            masked: Cow::Owned(masked),
            clear: Cow::Borrowed(sql),
            redacted: false,
        }
    }
}

/// Where a literal starts, counting an `X` / `B` / `N` / `_charset` prefix right before it.
fn literal_start(sql: &str, s: usize) -> usize {
    let b = sql.as_bytes();
    if b.get(s) != Some(&b'\'') {
        return s;
    }
    let mut i = s;
    while i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        i -= 1;
    }
    let word = &sql[i..s];
    if word.eq_ignore_ascii_case("x")
        || word.eq_ignore_ascii_case("b")
        || word.eq_ignore_ascii_case("n")
        || word.starts_with('_')
    {
        i
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(sql: &str) -> String {
        mysql_log_text(sql).masked.into_owned()
    }

    #[test]
    fn literals_of_every_form_are_masked() {
        assert_eq!(
            masked("SELECT * FROM `t``x` WHERE a = 'it''s' AND b = \"q\\\"x\" AND c = 42"),
            "SELECT * FROM `t``x` WHERE a = ? AND b = ? AND c = ?"
        );
        assert_eq!(
            masked("select x'0AFF', b'101', 0x1F, 1.5e-3, _utf8mb4'z', N'w'"),
            "select ?, ?, ?, ?, ?, ?"
        );
        assert_eq!(
            masked("SELECT 1 # it's a comment"),
            "SELECT ? # it's a comment"
        );
        assert_eq!(masked("SELECT /*! 'v' */ 2"), "SELECT /*! ? */ ?");
        assert_eq!(
            masked("SELECT 1 /*M!100100 , 'secret' */"),
            "SELECT ? /*M!100100 , ? */"
        );
        assert_eq!(masked("SELECT col1 FROM t2"), "SELECT col1 FROM t2");
        assert!(matches!(
            mysql_log_text("SELECT a FROM t").masked,
            Cow::Borrowed(_)
        ));
        // An unterminated string masks to the end.
        assert_eq!(masked("SELECT 'abc"), "SELECT ?");
    }

    #[test]
    fn secrets_leave_the_clear_form_too() {
        let t = mysql_log_text("CREATE USER bob IDENTIFIED BY 'hunter2'");
        assert!(t.redacted && !t.clear.contains("hunter2"));
        let t = mysql_log_text("SET PASSWORD FOR bob = PASSWORD('x1')");
        assert!(!t.clear.contains("x1"));
        let t = mysql_log_text("SELECT name FROM users WHERE id = 7");
        assert_eq!(t.clear, "SELECT name FROM users WHERE id = 7");
        assert!(!t.redacted);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_shows_a_quoted_value(s in ".{0,80}", v in "[a-z]{6,12}") {
            let _ = mysql_log_text(&s);
            let sql = format!("SELECT * FROM t WHERE c = '{v}'");
            proptest::prop_assert!(!mysql_log_text(&sql).masked.contains(&v));
        }
    }
}
