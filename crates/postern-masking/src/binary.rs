//! PostgreSQL's binary ("send"/"recv") formats of the column classes, as far as masking
//! needs them: [`decode`] turns a binary value into the text PostgreSQL's output function
//! would give for it (ISO `DateStyle`, time zone UTC, shortest-exact floats), [`encode`]
//! turns a text value back into the binary format, and [`full`] is the binary form of each
//! class's full-mask replacement.
//!
//! Everything here reads wire data, so nothing may panic: lengths are checked before every
//! read, and a value that is not well formed decodes to `None` (the caller then uses the
//! full replacement, never the input).

use crate::ColumnClass;

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_UNIX_DAYS: i64 = 10_957;
/// Microseconds in a day.
const USECS_PER_DAY: i64 = 86_400_000_000;
/// First valid date, 4714-11-24 BC, in days since 2000-01-01 (Julian day 0).
const DATE_MIN: i64 = -2_451_545;
/// End (exclusive) of the valid dates, 5874898-01-01, in days since 2000-01-01.
const DATE_END: i64 = 2_147_483_494 - 2_451_545;
/// First valid timestamp, 4714-11-24 00:00:00 BC, in microseconds since 2000-01-01.
const TIMESTAMP_MIN: i64 = -211_813_488_000_000_000;
/// End (exclusive) of the valid timestamps, 294277-01-01 00:00:00.
const TIMESTAMP_END: i64 = 9_223_371_331_200_000_000;

/// Numeric sign words.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
/// Largest display scale a numeric can carry.
const NUMERIC_DSCALE_MAX: u16 = 0x3FFF;
/// Most base-10000 digits `numeric_recv` accepts (NUMERIC_MAX_PRECISION +
/// NUMERIC_MAX_RESULT_SCALE).
const NUMERIC_MAX_DIGITS: usize = 3000;
/// Base of a numeric's digits.
const NBASE: i16 = 10_000;

/// The binary form of the full-mask replacement of `class` (the same value as the text
/// replacement); `None` (NULL) for [`ColumnClass::Other`].
pub(crate) fn full(class: ColumnClass) -> Option<Vec<u8>> {
    Some(match class {
        ColumnClass::Text => b"****".to_vec(),
        ColumnClass::Int2 => 0i16.to_be_bytes().to_vec(),
        ColumnClass::Int4 => 0i32.to_be_bytes().to_vec(),
        ColumnClass::Int8 => 0i64.to_be_bytes().to_vec(),
        // Zero: no digits, weight 0, positive, scale 0.
        ColumnClass::Numeric => vec![0; 8],
        ColumnClass::Float4 => 0f32.to_be_bytes().to_vec(),
        ColumnClass::Float8 => 0f64.to_be_bytes().to_vec(),
        // 1970-01-01.
        ColumnClass::Date => (-(PG_EPOCH_UNIX_DAYS as i32)).to_be_bytes().to_vec(),
        // 1970-01-01 00:00:00.
        ColumnClass::Timestamp => (-PG_EPOCH_UNIX_DAYS * USECS_PER_DAY).to_be_bytes().to_vec(),
        ColumnClass::Uuid => vec![0; 16],
        ColumnClass::Bool => vec![0],
        ColumnClass::Json => b"\"****\"".to_vec(),
        ColumnClass::Jsonb => b"\x01\"****\"".to_vec(),
        ColumnClass::Bytea => Vec::new(),
        ColumnClass::Other => return None,
    })
}

/// The text PostgreSQL would output for the binary value `v` of class `class`, or `None`
/// if `v` is not a well-formed binary value of the class.
pub(crate) fn decode(v: &[u8], class: ColumnClass) -> Option<String> {
    match class {
        ColumnClass::Text | ColumnClass::Json => std::str::from_utf8(v).ok().map(str::to_owned),
        ColumnClass::Jsonb => match v.split_first() {
            Some((1, rest)) => std::str::from_utf8(rest).ok().map(str::to_owned),
            _ => None,
        },
        ColumnClass::Int2 => Some(i16::from_be_bytes(v.try_into().ok()?).to_string()),
        ColumnClass::Int4 => Some(i32::from_be_bytes(v.try_into().ok()?).to_string()),
        ColumnClass::Int8 => Some(i64::from_be_bytes(v.try_into().ok()?).to_string()),
        ColumnClass::Numeric => decode_numeric(v),
        ColumnClass::Float4 => {
            let x = f32::from_be_bytes(v.try_into().ok()?);
            float_text(x.is_nan(), x.is_infinite(), &format!("{x:e}"), 6)
        }
        ColumnClass::Float8 => {
            let x = f64::from_be_bytes(v.try_into().ok()?);
            float_text(x.is_nan(), x.is_infinite(), &format!("{x:e}"), 15)
        }
        ColumnClass::Date => date_text(i32::from_be_bytes(v.try_into().ok()?)),
        ColumnClass::Timestamp => timestamp_text(i64::from_be_bytes(v.try_into().ok()?)),
        ColumnClass::Uuid => Some(uuid_text(v.try_into().ok()?)),
        ColumnClass::Bool => match v {
            [0] => Some("f".into()),
            // boolrecv takes any non-zero byte as true.
            [_] => Some("t".into()),
            _ => None,
        },
        ColumnClass::Bytea => Some(format!("\\x{}", hex(v))),
        ColumnClass::Other => None,
    }
}

/// The binary form of the text value `s` of class `class`, or `None` if `s` is not a
/// value of the class (as masking functions produce them).
pub(crate) fn encode(s: &str, class: ColumnClass) -> Option<Vec<u8>> {
    match class {
        ColumnClass::Text | ColumnClass::Json => Some(s.as_bytes().to_vec()),
        ColumnClass::Jsonb => {
            let mut out = Vec::with_capacity(s.len() + 1);
            out.push(1);
            out.extend_from_slice(s.as_bytes());
            Some(out)
        }
        ColumnClass::Int2 => Some(s.parse::<i16>().ok()?.to_be_bytes().to_vec()),
        ColumnClass::Int4 => Some(s.parse::<i32>().ok()?.to_be_bytes().to_vec()),
        ColumnClass::Int8 => Some(s.parse::<i64>().ok()?.to_be_bytes().to_vec()),
        ColumnClass::Numeric => encode_numeric(s),
        ColumnClass::Float4 => Some(s.parse::<f32>().ok()?.to_be_bytes().to_vec()),
        ColumnClass::Float8 => Some(s.parse::<f64>().ok()?.to_be_bytes().to_vec()),
        ColumnClass::Date => Some(parse_date(s)?.to_be_bytes().to_vec()),
        ColumnClass::Timestamp => Some(parse_timestamp(s)?.to_be_bytes().to_vec()),
        ColumnClass::Uuid => parse_uuid(s).map(|b| b.to_vec()),
        ColumnClass::Bool => match s {
            "t" | "true" => Some(vec![1]),
            "f" | "false" => Some(vec![0]),
            _ => None,
        },
        ColumnClass::Bytea => unhex(s.strip_prefix("\\x")?),
        ColumnClass::Other => None,
    }
}

fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &byte in b {
        s.push(char::from(DIGITS[usize::from(byte >> 4)]));
        s.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|pair| match pair {
            [hi, lo] => Some(nibble(*hi)? << 4 | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A UUID in its canonical text form (`8-4-4-4-12` lowercase hex digits).
pub(crate) fn uuid_text(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(b"0123456789abcdef"[usize::from(x >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(x & 15)]));
    }
    s
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    unhex(&digits)?.try_into().ok()
}

// --- numeric -------------------------------------------------------------------------------

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// `numeric_out` of a binary numeric (`numeric_recv`'s checks, then digits past the
/// display scale truncated, as `numeric_recv` does).
fn decode_numeric(v: &[u8]) -> Option<String> {
    let ndigits = usize::try_from(be_i16(v, 0)?).ok()?;
    let weight = i64::from(be_i16(v, 2)?);
    let sign = be_u16(v, 4)?;
    let dscale = be_u16(v, 6)?;
    if ndigits > NUMERIC_MAX_DIGITS || v.len() != 8 + 2 * ndigits || dscale > NUMERIC_DSCALE_MAX {
        return None;
    }
    let digits = v
        .get(8..)?
        .chunks(2)
        .map(|d| match d {
            [hi, lo] => Some(i16::from_be_bytes([*hi, *lo])).filter(|d| (0..NBASE).contains(d)),
            _ => None,
        })
        .collect::<Option<Vec<i16>>>()?;
    match sign {
        NUMERIC_NAN => return Some("NaN".into()),
        NUMERIC_PINF => return Some("Infinity".into()),
        NUMERIC_NINF => return Some("-Infinity".into()),
        NUMERIC_POS | NUMERIC_NEG => {}
        _ => return None,
    }
    // The digit whose place value is 10000^(weight - i) is digits[i]; absent ones are 0.
    let digit = |i: i64| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut int_part = String::new();
    for i in 0..=weight {
        int_part.push_str(&format!("{:04}", digit(i)));
    }
    let int_part = match int_part.trim_start_matches('0') {
        "" => "0".to_string(),
        t => t.to_string(),
    };
    let dscale = usize::from(dscale);
    let mut frac = String::with_capacity(dscale + 4);
    let mut i = weight + 1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", digit(i)));
        i += 1;
    }
    frac.truncate(dscale);
    let zero = int_part == "0" && frac.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(int_part.len() + frac.len() + 2);
    if sign == NUMERIC_NEG && !zero {
        out.push('-');
    }
    out.push_str(&int_part);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

/// `numeric_send` of a plain decimal (`-12.340`), `NaN` or `±Infinity`.
fn encode_numeric(s: &str) -> Option<Vec<u8>> {
    let header = |ndigits: i16, weight: i16, sign: u16, dscale: u16| {
        let mut out = Vec::with_capacity(8 + 2 * usize::try_from(ndigits).unwrap_or(0));
        out.extend_from_slice(&ndigits.to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
        out
    };
    match s {
        "NaN" => return Some(header(0, 0, NUMERIC_NAN, 0)),
        "Infinity" => return Some(header(0, 0, NUMERIC_PINF, 0)),
        "-Infinity" => return Some(header(0, 0, NUMERIC_NINF, 0)),
        _ => {}
    }
    let (negative, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int_part.is_empty() && frac.is_empty())
        || !int_part
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let dscale = u16::try_from(frac.len())
        .ok()
        .filter(|d| *d <= NUMERIC_DSCALE_MAX)?;
    let int_part = int_part.trim_start_matches('0');
    // Align both parts on base-10000 digit boundaries around the decimal point.
    let mut all = "0".repeat((4 - int_part.len() % 4) % 4);
    all.push_str(int_part);
    let int_groups = all.len() / 4;
    all.push_str(frac);
    all.push_str(&"0".repeat((4 - frac.len() % 4) % 4));
    let mut groups = all
        .as_bytes()
        .chunks(4)
        .map(|c| {
            c.iter()
                .fold(0i16, |acc, d| acc * 10 + i16::from(d.wrapping_sub(b'0')))
        })
        .collect::<Vec<i16>>();
    let mut weight = i64::try_from(int_groups).ok()? - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= i64::try_from(leading).ok()?;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        return Some(header(0, 0, NUMERIC_POS, dscale));
    }
    if groups.len() > NUMERIC_MAX_DIGITS {
        return None;
    }
    let sign = if negative { NUMERIC_NEG } else { NUMERIC_POS };
    let mut out = header(
        i16::try_from(groups.len()).ok()?,
        i16::try_from(weight).ok()?,
        sign,
        dscale,
    );
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

// --- floats --------------------------------------------------------------------------------

/// `float4out`/`float8out` (shortest exact digits, as with the default
/// `extra_float_digits`): fixed notation for decimal exponents from -4 up to
/// `fixed_below` (exclusive), else `1.5e+06` style. `sci` is Rust's shortest `{:e}` form.
fn float_text(nan: bool, infinite: bool, sci: &str, fixed_below: i32) -> Option<String> {
    if nan {
        return Some("NaN".into());
    }
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci),
    };
    if infinite {
        return Some(if negative { "-Infinity" } else { "Infinity" }.into());
    }
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if (-4..fixed_below).contains(&exp) {
        if exp >= 0 {
            let int_len = usize::try_from(exp).ok()? + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.push_str(&"0".repeat(int_len - digits.len()));
            } else {
                let (int_digits, frac) = digits.split_at(int_len);
                out.push_str(int_digits);
                out.push('.');
                out.push_str(frac);
            }
        } else {
            out.push_str("0.");
            out.push_str(&"0".repeat(usize::try_from(-exp - 1).ok()?));
            out.push_str(&digits);
        }
    } else {
        let mut chars = digits.chars();
        out.push(chars.next()?);
        let rest = chars.as_str();
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    Some(out)
}

// --- dates and timestamps ------------------------------------------------------------------

/// Year (astronomical: 0 is 1 BC), month, day of a day count since 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`). Exact for any `i64`
/// whose magnitude leaves room for the arithmetic; callers pass at most a few billion.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in small ranges by construction.
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year), the inverse of
/// [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DD` (ISO), with ` BC` for years before 1 AD, of days since 2000-01-01.
fn ymd_text(pg_days: i64) -> (String, &'static str) {
    let (year, month, day) = civil_from_days(pg_days + PG_EPOCH_UNIX_DAYS);
    let (year, era) = if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    };
    (format!("{year:04}-{month:02}-{day:02}"), era)
}

/// `date_out` of a binary date (days since 2000-01-01).
fn date_text(days: i32) -> Option<String> {
    match days {
        i32::MIN => Some("-infinity".into()),
        i32::MAX => Some("infinity".into()),
        d if (DATE_MIN..DATE_END).contains(&i64::from(d)) => {
            let (ymd, era) = ymd_text(i64::from(d));
            Some(format!("{ymd}{era}"))
        }
        _ => None,
    }
}

/// `timestamp_out` of a binary timestamp (microseconds since 2000-01-01 00:00:00); for a
/// timestamptz this is the UTC time, without an offset.
fn timestamp_text(us: i64) -> Option<String> {
    match us {
        i64::MIN => Some("-infinity".into()),
        i64::MAX => Some("infinity".into()),
        t if (TIMESTAMP_MIN..TIMESTAMP_END).contains(&t) => {
            let (ymd, era) = ymd_text(t.div_euclid(USECS_PER_DAY));
            let time = t.rem_euclid(USECS_PER_DAY);
            let (secs, micros) = (time / 1_000_000, time % 1_000_000);
            let mut out = format!(
                "{ymd} {:02}:{:02}:{:02}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            );
            if micros != 0 {
                let frac = format!("{micros:06}");
                out.push('.');
                out.push_str(frac.trim_end_matches('0'));
            }
            out.push_str(era);
            Some(out)
        }
        _ => None,
    }
}

/// A run of ASCII digits as a number (at most 9 digits, so it fits).
fn number(s: &str, max_len: usize) -> Option<i64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days since 2000-01-01 of `YYYY-MM-DD` (year of 1 to 9 digits, 1 or more), with an
/// optional ` BC`.
fn parse_ymd(s: &str, bc: bool) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let year = number(parts.next()?, 9)?;
    let month = u32::try_from(number(parts.next()?, 2)?).ok()?;
    let day = u32::try_from(number(parts.next()?, 2)?).ok()?;
    if year < 1 || !(1..=12).contains(&month) {
        return None;
    }
    let year = if bc { 1 - year } else { year };
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) - PG_EPOCH_UNIX_DAYS)
}

/// The binary date of `YYYY-MM-DD[ BC]` or `±infinity`.
fn parse_date(s: &str) -> Option<i32> {
    match s {
        "infinity" => return Some(i32::MAX),
        "-infinity" => return Some(i32::MIN),
        _ => {}
    }
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(s) => (s, true),
        None => (s, false),
    };
    let days = parse_ymd(s, bc).filter(|d| (DATE_MIN..DATE_END).contains(d))?;
    i32::try_from(days).ok()
}

/// The binary timestamp of `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]` or `±infinity` (no time
/// zone offset).
fn parse_timestamp(s: &str) -> Option<i64> {
    match s {
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(s) => (s, true),
        None => (s, false),
    };
    let (date, time) = s.split_once(' ')?;
    let days = parse_ymd(date, bc)?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.splitn(3, ':');
    let h = number(parts.next()?, 2)?;
    let m = number(parts.next()?, 2)?;
    let sec = number(parts.next()?, 2)?;
    if h > 23 || m > 59 || sec > 59 || frac.len() > 6 {
        return None;
    }
    let micros = if frac.is_empty() {
        0
    } else {
        number(frac, 6)? * 10i64.pow(6 - frac.len() as u32)
    };
    let t = days
        .checked_mul(USECS_PER_DAY)?
        .checked_add(((h * 60 + m) * 60 + sec) * 1_000_000 + micros)?;
    (TIMESTAMP_MIN..TIMESTAMP_END).contains(&t).then_some(t)
}

#[cfg(test)]
mod tests;
