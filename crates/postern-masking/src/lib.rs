//! Data masking (A4), the pure part: the masking functions an admin names in a rule, and
//! what a value becomes under each, for each kind of column — always a value the column's
//! type accepts (so clients and drivers keep working), or NULL where no valid masked value
//! exists.
//!
//! This crate knows nothing of rules' targets, roles or connections; the proxies decide
//! which output columns a rule covers and call [`MaskFn::apply_text`] on their values, or
//! [`MaskFn::apply_binary`] on values PostgreSQL sent in binary format (or [`MaskFn::apply`],
//! which picks one). Binary values are decoded to the text PostgreSQL would have sent, masked
//! as text, and encoded back, so a rule masks a value the same way in either format.

use hmac::{Hmac, Mac};
use regex::Regex;
use sha2::Sha256;

/// Largest compiled size of a masking rule's regular expression.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What kind of values a column holds, as far as masking cares (from its type OID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    /// text, varchar, char(n), name, citext…
    Text,
    /// smallint.
    Int2,
    /// integer.
    Int4,
    /// bigint.
    Int8,
    /// numeric.
    Numeric,
    /// real. Masked as [`ColumnClass::Numeric`]; only its binary format differs.
    Float4,
    /// double precision. Masked as [`ColumnClass::Numeric`]; only its binary format differs.
    Float8,
    /// date.
    Date,
    /// timestamp, timestamptz.
    Timestamp,
    /// uuid.
    Uuid,
    /// boolean.
    Bool,
    /// json.
    Json,
    /// jsonb. Masked as [`ColumnClass::Json`]; its binary format has a version byte.
    Jsonb,
    /// bytea.
    Bytea,
    /// Anything else: masked to NULL.
    Other,
}

impl ColumnClass {
    /// The class of a PostgreSQL type OID (built-in types; others are [`ColumnClass::Other`],
    /// except that the proxies may map domains and extension types such as citext first).
    pub fn of_pg_type(oid: u32) -> ColumnClass {
        match oid {
            25 | 1043 | 1042 | 19 | 18 => ColumnClass::Text,
            21 => ColumnClass::Int2,
            23 => ColumnClass::Int4,
            20 => ColumnClass::Int8,
            1700 => ColumnClass::Numeric,
            700 => ColumnClass::Float4,
            701 => ColumnClass::Float8,
            1082 => ColumnClass::Date,
            1114 | 1184 => ColumnClass::Timestamp,
            2950 => ColumnClass::Uuid,
            16 => ColumnClass::Bool,
            114 => ColumnClass::Json,
            3802 => ColumnClass::Jsonb,
            17 => ColumnClass::Bytea,
            _ => ColumnClass::Other,
        }
    }

    /// The class whose text-format masking this class shares (the classes that differ only
    /// in binary format: real and double precision mask as numeric, jsonb as json).
    fn text_class(self) -> ColumnClass {
        match self {
            ColumnClass::Float4 | ColumnClass::Float8 => ColumnClass::Numeric,
            ColumnClass::Jsonb => ColumnClass::Json,
            c => c,
        }
    }
}

/// A masking function, as named in a rule.
#[derive(Debug, Clone)]
pub enum MaskFn {
    /// A fixed replacement valid for the column's type.
    Full,
    /// Keep the first and last characters, star the rest.
    Partial {
        /// Characters kept at the start.
        keep_first: usize,
        /// Characters kept at the end.
        keep_last: usize,
    },
    /// A keyed hash: the same value always masks the same way (joins still match), and the
    /// value cannot be recovered without the key.
    Hash,
    /// NULL.
    Null,
    /// `j***@example.com`: first character of the local part, the domain.
    Email,
    /// Every digit but the last four starred, separators kept.
    CreditCard,
    /// A regular-expression replacement (`$1` refers to groups).
    Regex {
        /// Compiled pattern.
        pattern: Regex,
        /// Replacement text.
        replacement: String,
    },
    /// Dates and timestamps keep their year only (January 1st, midnight).
    DateYearOnly,
}

/// The function as [`MaskFn::parse`] reads it back (quotes in a regex doubled).
impl std::fmt::Display for MaskFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaskFn::Full => f.write_str("full"),
            MaskFn::Partial {
                keep_first,
                keep_last,
            } => write!(f, "partial({keep_first}, {keep_last})"),
            MaskFn::Hash => f.write_str("hash"),
            MaskFn::Null => f.write_str("null"),
            MaskFn::Email => f.write_str("email"),
            MaskFn::CreditCard => f.write_str("credit_card"),
            MaskFn::Regex {
                pattern,
                replacement,
            } => write!(
                f,
                "regex('{}', '{}')",
                pattern.as_str().replace('\'', "''"),
                replacement.replace('\'', "''")
            ),
            MaskFn::DateYearOnly => f.write_str("date_year_only"),
        }
    }
}

/// A masking function that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("masking function {spec:?}: {message}")]
pub struct MaskFnError {
    /// What was written.
    pub spec: String,
    /// What is wrong, and how to write it.
    pub message: String,
}

/// The names accepted by [`MaskFn::parse`], for error messages and docs.
pub const FUNCTIONS: &str = "full, partial(keep_first, keep_last), hash, null, email, \
                             credit_card, regex('pattern', 'replacement'), date_year_only";

impl MaskFn {
    /// Reads a function as admins write it: `full`, `partial(2, 4)`, `hash`, `null`,
    /// `email`, `credit_card`, `regex('\d', '#')` (quotes doubled inside), `date_year_only`.
    pub fn parse(spec: &str) -> Result<MaskFn, MaskFnError> {
        let err = |m: String| MaskFnError {
            spec: spec.to_string(),
            message: m,
        };
        let s = spec.trim();
        let (name, args) = match s.find('(') {
            Some(i) => {
                let inner = s[i + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| err("missing the closing parenthesis".into()))?;
                (s[..i].trim(), Some(inner))
            }
            None => (s, None),
        };
        let name = name.to_ascii_lowercase().replace('-', "_");
        let no_args = |f: MaskFn| match args {
            None => Ok(f),
            Some(_) => Err(err(format!("{name} takes no arguments"))),
        };
        match name.as_str() {
            "full" => no_args(MaskFn::Full),
            "hash" => no_args(MaskFn::Hash),
            "null" => no_args(MaskFn::Null),
            "email" => no_args(MaskFn::Email),
            "credit_card" => no_args(MaskFn::CreditCard),
            "date_year_only" => no_args(MaskFn::DateYearOnly),
            "partial" => {
                let args =
                    args.ok_or_else(|| err("write partial(keep_first, keep_last)".into()))?;
                let nums: Vec<&str> = args.split(',').map(str::trim).collect();
                let [a, b] = nums.as_slice() else {
                    return Err(err("write partial(keep_first, keep_last)".into()));
                };
                let n = |v: &str| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n <= 64)
                        .ok_or_else(|| err(format!("{v:?} is not a number from 0 to 64")))
                };
                Ok(MaskFn::Partial {
                    keep_first: n(a)?,
                    keep_last: n(b)?,
                })
            }
            "regex" => {
                let args =
                    args.ok_or_else(|| err("write regex('pattern', 'replacement')".into()))?;
                let (pattern, rest) = quoted(args.trim()).ok_or_else(|| {
                    err("the pattern must be in single quotes (double a quote inside)".into())
                })?;
                let rest = rest
                    .trim_start()
                    .strip_prefix(',')
                    .ok_or_else(|| err("write regex('pattern', 'replacement')".into()))?;
                let (replacement, rest) = quoted(rest.trim()).ok_or_else(|| {
                    err("the replacement must be in single quotes (double a quote inside)".into())
                })?;
                if !rest.trim().is_empty() {
                    return Err(err("unexpected text after the replacement".into()));
                }
                let pattern = regex::RegexBuilder::new(&pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| err(format!("bad pattern: {e}")))?;
                Ok(MaskFn::Regex {
                    pattern,
                    replacement,
                })
            }
            _ => Err(err(format!("unknown function; functions are {FUNCTIONS}"))),
        }
    }

    /// The masked form of `value` (text format) in a column of class `class`; `None` is
    /// NULL. `key` keys [`MaskFn::Hash`].
    pub fn apply_text(&self, value: &str, class: ColumnClass, key: &[u8]) -> Option<String> {
        let class = class.text_class();
        match self {
            MaskFn::Null => None,
            MaskFn::Full => full(class),
            MaskFn::Partial {
                keep_first,
                keep_last,
            } => match class {
                ColumnClass::Text => Some(partial(value, *keep_first, *keep_last)),
                _ => full(class),
            },
            MaskFn::Hash => hash(value, class, key),
            MaskFn::Email => match class {
                ColumnClass::Text => Some(email(value)),
                _ => full(class),
            },
            MaskFn::CreditCard => match class {
                ColumnClass::Text => Some(credit_card(value)),
                _ => full(class),
            },
            MaskFn::Regex {
                pattern,
                replacement,
            } => match class {
                ColumnClass::Text => Some(
                    pattern
                        .replace_all(value, replacement.as_str())
                        .into_owned(),
                ),
                _ => full(class),
            },
            MaskFn::DateYearOnly => year_only(value, class),
        }
    }

    /// The masked form of `value` in PostgreSQL's binary format for a column of class
    /// `class`, also in binary format; `None` is NULL. `key` keys [`MaskFn::Hash`].
    ///
    /// The value is decoded to the text PostgreSQL would have sent for it in text format
    /// (ISO dates, timestamps in UTC without an offset, shortest-exact floats), masked by
    /// [`MaskFn::apply_text`] and encoded back, so both formats mask alike. A value that is
    /// not well formed for the class (wrong length, bad header or version byte, digits or
    /// dates out of range, text that is not UTF-8) masks to the class's full replacement,
    /// never to anything taken from the input. Columns of class [`ColumnClass::Other`]
    /// mask to NULL.
    pub fn apply_binary(&self, value: &[u8], class: ColumnClass, key: &[u8]) -> Option<Vec<u8>> {
        match self {
            MaskFn::Null => return None,
            // The replacement does not depend on the value: skip decoding it.
            MaskFn::Full => return binary::full(class),
            _ => {}
        }
        let Some(text) = binary::decode(value, class) else {
            return binary::full(class);
        };
        let masked = self.apply_text(&text, class, key)?;
        binary::encode(&masked, class).or_else(|| binary::full(class))
    }

    /// The masked form of a column value as it travels in a DataRow: in binary format if
    /// `binary` (see [`MaskFn::apply_binary`]), else in text format (see
    /// [`MaskFn::apply_text`]; bytes that are not UTF-8 are read lossily), the result in
    /// the same format; `None` is NULL.
    pub fn apply(
        &self,
        value: &[u8],
        binary: bool,
        class: ColumnClass,
        key: &[u8],
    ) -> Option<Vec<u8>> {
        if binary {
            self.apply_binary(value, class, key)
        } else {
            // Strict UTF-8 check first: much faster than the lossy decoder on clean text.
            let text = match std::str::from_utf8(value) {
                Ok(s) => std::borrow::Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(value),
            };
            self.apply_text(&text, class, key).map(String::into_bytes)
        }
    }
}

/// `'it''s', rest` → ("it's", ", rest").
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut rest = s.strip_prefix('\'')?;
    let mut out = String::new();
    loop {
        let i = rest.find('\'')?;
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        match rest.strip_prefix('\'') {
            Some(r) => {
                out.push('\'');
                rest = r;
            }
            None => return Some((out, rest)),
        }
    }
}

/// The fixed replacement of a column class.
fn full(class: ColumnClass) -> Option<String> {
    Some(
        match class {
            ColumnClass::Text => "****",
            ColumnClass::Int2
            | ColumnClass::Int4
            | ColumnClass::Int8
            | ColumnClass::Numeric
            | ColumnClass::Float4
            | ColumnClass::Float8 => "0",
            ColumnClass::Date => "1970-01-01",
            ColumnClass::Timestamp => "1970-01-01 00:00:00",
            ColumnClass::Uuid => "00000000-0000-0000-0000-000000000000",
            ColumnClass::Bool => "f",
            ColumnClass::Json | ColumnClass::Jsonb => "\"****\"",
            ColumnClass::Bytea => "\\x",
            ColumnClass::Other => return None,
        }
        .to_string(),
    )
}

fn partial(value: &str, keep_first: usize, keep_last: usize) -> String {
    let n = value.chars().count();
    if keep_first + keep_last >= n {
        // Keeping that much would reveal everything: star it all.
        return "*".repeat(n.max(1));
    }
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        out.push(if i < keep_first || i >= n - keep_last {
            c
        } else {
            '*'
        });
    }
    out
}

fn email(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            // Rows stream through here: one allocation of the exact size.
            let first = local.chars().next().map_or(0, char::len_utf8);
            let mut out = String::with_capacity(first + 4 + domain.len());
            out.push_str(&local[..first]);
            out.push_str("***@");
            out.push_str(domain);
            out
        }
        _ => "****".into(),
    }
}

fn credit_card(value: &str) -> String {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let mut seen = 0;
    // Only ASCII digits change, into ASCII '*': the bytes stay valid UTF-8.
    let masked: Vec<u8> = value
        .bytes()
        .map(|b| {
            if b.is_ascii_digit() {
                seen += 1;
                if seen + 4 <= digits {
                    return b'*';
                }
            }
            b
        })
        .collect();
    String::from_utf8(masked).unwrap_or_else(|_| "****".into())
}

fn mac(value: &str, key: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    m.update(value.as_bytes());
    m.finalize().into_bytes().into()
}

fn hash(value: &str, class: ColumnClass, key: &[u8]) -> Option<String> {
    let d = mac(value, key);
    let word = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    Some(match class {
        ColumnClass::Text => d[..8].iter().map(|b| format!("{b:02x}")).collect(),
        ColumnClass::Int2 => (word % 32_768).to_string(),
        ColumnClass::Int4 => (word % 2_147_483_648).to_string(),
        ColumnClass::Int8 | ColumnClass::Numeric | ColumnClass::Float4 | ColumnClass::Float8 => {
            (word >> 1).to_string()
        }
        ColumnClass::Uuid => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&d[..16]);
            binary::uuid_text(&b)
        }
        ColumnClass::Json | ColumnClass::Jsonb => {
            let h: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{h}\"")
        }
        _ => return full(class),
    })
}

/// `YYYY-…` → `YYYY-01-01` (and midnight for timestamps, keeping a time zone suffix; dates
/// and timestamps keep their era, ` BC`).
fn year_only(value: &str, class: ColumnClass) -> Option<String> {
    let year = value.get(..4).filter(|y| {
        y.bytes().all(|b| b.is_ascii_digit()) && value.as_bytes().get(4) == Some(&b'-')
    });
    let (value, era) = match value.strip_suffix(" BC") {
        Some(v) => (v, " BC"),
        None => (value, ""),
    };
    // PostgreSQL's dates begin on 4714-11-24 BC: January 1st of that year does not exist.
    if matches!(class, ColumnClass::Date | ColumnClass::Timestamp)
        && !era.is_empty()
        && year.and_then(|y| y.parse::<u32>().ok()) >= Some(4714)
    {
        return full(class);
    }
    match (class, year) {
        (ColumnClass::Date, Some(y)) => Some(format!("{y}-01-01{era}")),
        (ColumnClass::Timestamp, Some(y)) => {
            // A timestamptz in text form ends in an offset such as +02 or -05:30.
            let zone = value
                .get(19..)
                .and_then(|t| t.find(['+', '-']).map(|i| &t[i..]))
                .unwrap_or("");
            Some(format!("{y}-01-01 00:00:00{zone}{era}"))
        }
        (ColumnClass::Text, Some(y)) => Some(format!("{y}-01-01")),
        _ => full(class),
    }
}

mod binary;

#[cfg(test)]
mod tests;
