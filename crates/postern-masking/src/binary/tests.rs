use super::*;
use crate::MaskFn;
use proptest::prelude::*;

const KEY: &[u8] = b"test-key";

fn f(spec: &str) -> MaskFn {
    MaskFn::parse(spec).unwrap_or_else(|e| panic!("{e}"))
}

fn mb(spec: &str, value: &[u8], class: ColumnClass) -> Option<Vec<u8>> {
    f(spec).apply_binary(value, class, KEY)
}

fn num(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&ndigits.to_be_bytes());
    v.extend_from_slice(&weight.to_be_bytes());
    v.extend_from_slice(&sign.to_be_bytes());
    v.extend_from_slice(&dscale.to_be_bytes());
    for d in digits {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

/// PostgreSQL's `date2j` (datetime.c), as an independent reference: Julian day of a
/// proleptic Gregorian date (astronomical year).
fn date2j(y: i64, m: i64, d: i64) -> i64 {
    let (m, y) = if m > 2 {
        (m + 1, y + 4800)
    } else {
        (m + 13, y + 4799)
    };
    let century = y / 100;
    let mut julian = y * 365 - 32167;
    julian += y / 4 - century + century / 4;
    julian += 7834 * m / 256 + d;
    julian
}

/// PostgreSQL's `j2date` (datetime.c), as an independent reference.
fn j2date(jd: i64) -> (i64, u32, u32) {
    let mut julian = u64::try_from(jd).unwrap();
    julian += 32044;
    let mut quad = julian / 146097;
    let extra = (julian - quad * 146097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146097;
    quad = julian / 1461;
    julian -= quad * 1461;
    let mut y = julian * 4 / 1461;
    julian = if y != 0 {
        (julian + 305) % 365
    } else {
        (julian + 306) % 366
    } + 123;
    y += quad * 4;
    let year = i64::try_from(y).unwrap() - 4800;
    quad = julian * 2141 / 65536;
    let day = julian - 7834 * quad / 256;
    let month = (quad + 10) % 12 + 1;
    (year, month as u32, day as u32)
}

/// Days since 2000-01-01 of an astronomical-year date, by PostgreSQL's arithmetic.
fn pg_days(y: i64, m: i64, d: i64) -> i32 {
    i32::try_from(date2j(y, m, d) - 2_451_545).unwrap()
}

/// `date_out` of days since 2000-01-01, by PostgreSQL's arithmetic.
fn ref_date(days: i64) -> String {
    let (y, m, d) = j2date(days + 2_451_545);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn ref_timestamp(us: i64) -> String {
    let date = ref_date(us.div_euclid(USECS_PER_DAY));
    let (date, bc) = match date.strip_suffix(" BC") {
        Some(d) => (d.to_string(), " BC"),
        None => (date, ""),
    };
    let t = us.rem_euclid(USECS_PER_DAY);
    let (h, mi, s, frac) = (
        t / 3_600_000_000,
        t / 60_000_000 % 60,
        t / 1_000_000 % 60,
        t % 1_000_000,
    );
    let mut out = format!("{date} {h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:06}");
        out = format!("{out}.{}", f.trim_end_matches('0'));
    }
    format!("{out}{bc}")
}

/// A numeric `mantissa × 10^-scale` in text and in binary, built independently of the
/// code under test.
fn ref_numeric(mantissa: i64, scale: u16) -> (String, Vec<u8>) {
    let abs = u128::from(mantissa.unsigned_abs());
    let mut text = abs.to_string();
    let scale_us = usize::from(scale);
    if scale_us > 0 {
        if text.len() <= scale_us {
            text = format!("{}{text}", "0".repeat(scale_us + 1 - text.len()));
        }
        text.insert(text.len() - scale_us, '.');
    }
    if mantissa < 0 {
        text.insert(0, '-');
    }
    let frac_groups = scale.div_ceil(4);
    let mut scaled = abs * 10u128.pow(u32::from(frac_groups * 4 - scale));
    let mut digits = Vec::new();
    while scaled > 0 {
        digits.push(i16::try_from(scaled % 10_000).unwrap());
        scaled /= 10_000;
    }
    digits.reverse();
    let mut weight = i16::try_from(digits.len()).unwrap() - i16::try_from(frac_groups).unwrap() - 1;
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let bin = if digits.is_empty() {
        num(0, 0, NUMERIC_POS, scale, &[])
    } else {
        let sign = if mantissa < 0 {
            NUMERIC_NEG
        } else {
            NUMERIC_POS
        };
        num(
            i16::try_from(digits.len()).unwrap(),
            weight,
            sign,
            scale,
            &digits,
        )
    };
    (text, bin)
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

const ALL: [ColumnClass; 15] = [
    ColumnClass::Text,
    ColumnClass::Int2,
    ColumnClass::Int4,
    ColumnClass::Int8,
    ColumnClass::Numeric,
    ColumnClass::Float4,
    ColumnClass::Float8,
    ColumnClass::Date,
    ColumnClass::Timestamp,
    ColumnClass::Uuid,
    ColumnClass::Bool,
    ColumnClass::Json,
    ColumnClass::Jsonb,
    ColumnClass::Bytea,
    ColumnClass::Other,
];

const FUNCTIONS: [&str; 9] = [
    "full",
    "null",
    "hash",
    "partial(1, 2)",
    "partial(0, 4)",
    "email",
    "credit_card",
    "date_year_only",
    r"regex('\d', '#')",
];

#[test]
fn calendar_constants_match_postgresql() {
    assert_eq!(i64::from(pg_days(-4713, 11, 24)), DATE_MIN);
    assert_eq!(
        date2j(5_874_898, 1, 1) - 2_451_545,
        DATE_END,
        "DATE_END_JULIAN"
    );
    assert_eq!(DATE_MIN * USECS_PER_DAY, TIMESTAMP_MIN);
    assert_eq!(
        (date2j(294_277, 1, 1) - 2_451_545) * USECS_PER_DAY,
        TIMESTAMP_END
    );
    for (y, m, d) in [
        (2000, 1, 1),
        (1970, 1, 1),
        (1987, 6, 15),
        (1900, 2, 28),
        (1900, 3, 1),
        (2000, 2, 29),
        (1, 1, 1),
        (0, 12, 31),
        (0, 2, 29),
        (-43, 3, 15),
        (-4713, 11, 24),
        (5_874_897, 12, 31),
        (294_276, 12, 31),
    ] {
        let days = i64::from(pg_days(y, m, d));
        assert_eq!(
            days_from_civil(y, m as u32, d as u32) - PG_EPOCH_UNIX_DAYS,
            days,
            "{y}-{m}-{d}"
        );
        assert_eq!(
            civil_from_days(days + PG_EPOCH_UNIX_DAYS),
            (y, m as u32, d as u32)
        );
    }
    assert_eq!(pg_days(1987, 6, 15), -4583);
    assert_eq!(pg_days(1999, 12, 31), -1);
}

#[test]
fn partial_and_email_on_binary_text() {
    use ColumnClass::Text;
    assert_eq!(
        mb("partial(0,4)", b"4111222233334444", Text).as_deref(),
        Some(&b"************4444"[..])
    );
    assert_eq!(
        mb("email", "jöhn@example.com".as_bytes(), Text).as_deref(),
        Some("j***@example.com".as_bytes())
    );
    // Not UTF-8: nothing of it is kept.
    assert_eq!(
        mb("partial(1,1)", b"a\xffbcdef", Text).as_deref(),
        Some(&b"****"[..])
    );
    assert_eq!(mb("null", b"x", Text), None);
}

#[test]
fn hash_of_a_uuid_agrees_between_formats() {
    let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let bin = parse_uuid(text).unwrap();
    assert_eq!(decode(&bin, ColumnClass::Uuid).as_deref(), Some(text));
    let masked_text = MaskFn::Hash
        .apply_text(text, ColumnClass::Uuid, KEY)
        .unwrap();
    let masked_bin = MaskFn::Hash
        .apply_binary(&bin, ColumnClass::Uuid, KEY)
        .unwrap();
    assert_eq!(masked_bin.len(), 16);
    assert_eq!(
        uuid_text(&masked_bin.clone().try_into().unwrap()),
        masked_text
    );
    assert_ne!(masked_bin, bin.to_vec());
    // Upper-case or braced text input is the same uuid on the wire.
    assert_eq!(
        parse_uuid("{A0EEBC99-9C0B4EF8-BB6D-6BB9BD380A11}"),
        Some(bin)
    );
}

#[test]
fn year_only_on_binary_dates_and_timestamps() {
    use ColumnClass::{Date, Timestamp};
    let d = pg_days(1987, 6, 15).to_be_bytes();
    assert_eq!(
        mb("date_year_only", &d, Date),
        Some(pg_days(1987, 1, 1).to_be_bytes().to_vec())
    );
    assert_eq!(
        mb("date_year_only", &(-4583i32).to_be_bytes(), Date),
        Some((-4748i32).to_be_bytes().to_vec())
    );
    // 1987-06-15 13:45:30.25
    let ts = -395_921_669_750_000i64;
    assert_eq!(
        decode(&ts.to_be_bytes(), Timestamp).as_deref(),
        Some("1987-06-15 13:45:30.25")
    );
    assert_eq!(
        mb("date_year_only", &ts.to_be_bytes(), Timestamp),
        Some((-410_227_200_000_000i64).to_be_bytes().to_vec())
    );
    // Before the epoch of 2000 and before the common era.
    let bc = pg_days(-43, 3, 15);
    assert_eq!(
        decode(&bc.to_be_bytes(), Date).as_deref(),
        Some("0044-03-15 BC")
    );
    assert_eq!(
        mb("date_year_only", &bc.to_be_bytes(), Date),
        Some(pg_days(-43, 1, 1).to_be_bytes().to_vec())
    );
    assert_eq!(
        MaskFn::DateYearOnly
            .apply_text("0044-03-15 BC", Date, KEY)
            .as_deref(),
        Some("0044-01-01 BC")
    );
    let bc_ts = i64::from(bc) * USECS_PER_DAY + 3_600_000_000;
    assert_eq!(
        decode(&bc_ts.to_be_bytes(), Timestamp).as_deref(),
        Some("0044-03-15 01:00:00 BC")
    );
    assert_eq!(
        mb("date_year_only", &bc_ts.to_be_bytes(), Timestamp),
        Some(
            (i64::from(pg_days(-43, 1, 1)) * USECS_PER_DAY)
                .to_be_bytes()
                .to_vec()
        )
    );
    assert_eq!(
        decode(&(-1i32).to_be_bytes(), Date).as_deref(),
        Some("1999-12-31")
    );
    assert_eq!(
        decode(&(-1i64).to_be_bytes(), Timestamp).as_deref(),
        Some("1999-12-31 23:59:59.999999")
    );
    assert_eq!(
        decode(&pg_days(1900, 3, 1).to_be_bytes(), Date).as_deref(),
        Some("1900-03-01")
    );
    // Infinities: year_only has no year to keep, so the full replacement.
    assert_eq!(
        decode(&i32::MAX.to_be_bytes(), Date).as_deref(),
        Some("infinity")
    );
    assert_eq!(
        decode(&i64::MIN.to_be_bytes(), Timestamp).as_deref(),
        Some("-infinity")
    );
    assert_eq!(
        mb("date_year_only", &i32::MAX.to_be_bytes(), Date),
        full(Date)
    );
    // January 1st of PostgreSQL's first year does not exist: the full replacement.
    assert_eq!(
        decode(&(DATE_MIN as i32).to_be_bytes(), Date).as_deref(),
        Some("4714-11-24 BC")
    );
    assert_eq!(
        mb("date_year_only", &(DATE_MIN as i32).to_be_bytes(), Date),
        full(Date)
    );
    assert_eq!(
        mb("date_year_only", &TIMESTAMP_MIN.to_be_bytes(), Timestamp),
        full(Timestamp)
    );
    // Outside PostgreSQL's range: not a date it could have sent.
    assert_eq!(decode(&(DATE_MIN as i32 - 1).to_be_bytes(), Date), None);
    assert_eq!(decode(&(TIMESTAMP_MIN - 1).to_be_bytes(), Timestamp), None);
    assert_eq!(decode(&TIMESTAMP_END.to_be_bytes(), Timestamp), None);
}

#[test]
fn integers() {
    use ColumnClass::*;
    assert_eq!(mb("full", &77i32.to_be_bytes(), Int4), Some(vec![0; 4]));
    assert_eq!(decode(&(-5i16).to_be_bytes(), Int2).as_deref(), Some("-5"));
    assert_eq!(
        decode(&i64::MIN.to_be_bytes(), Int8).as_deref(),
        Some("-9223372036854775808")
    );
    for (class, v) in [
        (Int2, (-7i16).to_be_bytes().to_vec()),
        (Int4, (-7i32).to_be_bytes().to_vec()),
        (Int8, (-7i64).to_be_bytes().to_vec()),
    ] {
        let t = MaskFn::Hash.apply_text("-7", class, KEY).unwrap();
        let b = MaskFn::Hash.apply_binary(&v, class, KEY).unwrap();
        assert_eq!(decode(&b, class), Some(t), "{class:?}");
        assert_eq!(b.len(), v.len());
    }
}

#[test]
fn numerics() {
    use ColumnClass::Numeric;
    let zero = mb("full", &num(1, 0, NUMERIC_POS, 0, &[5]), Numeric).unwrap();
    assert_eq!(zero, vec![0; 8]);
    assert_eq!(decode(&zero, Numeric).as_deref(), Some("0"));

    for (bin, text) in [
        (num(2, 0, NUMERIC_POS, 2, &[12, 3400]), "12.34"),
        (num(2, 0, NUMERIC_NEG, 3, &[12, 3400]), "-12.340"),
        // Digits past the display scale are cut, as numeric_recv does.
        (num(2, 0, NUMERIC_POS, 2, &[1, 2345]), "1.23"),
        (num(1, -2, NUMERIC_POS, 10, &[42]), "0.0000004200"),
        (num(1, 2, NUMERIC_POS, 0, &[1]), "100000000"),
        (num(2, 1, NUMERIC_NEG, 0, &[0, 42]), "-42"),
        (num(1, -1, NUMERIC_NEG, 0, &[5000]), "0"),
        (num(0, 0, NUMERIC_POS, 2, &[]), "0.00"),
        (num(0, 0, NUMERIC_NAN, 0, &[]), "NaN"),
        (num(0, 0, NUMERIC_PINF, 0, &[]), "Infinity"),
        (num(0, 0, NUMERIC_NINF, 0, &[]), "-Infinity"),
    ] {
        assert_eq!(decode(&bin, Numeric).as_deref(), Some(text), "{bin:?}");
    }
    for text in [
        "0",
        "0.00",
        "12.34",
        "-12.340",
        "100000000",
        "0.00001",
        "-0.0000004200",
        "9223372036854775807",
        "NaN",
        "Infinity",
        "-Infinity",
    ] {
        let bin = encode_numeric(text).unwrap();
        assert_eq!(decode(&bin, Numeric).as_deref(), Some(text));
    }
    assert_eq!(encode_numeric("-0"), Some(num(0, 0, NUMERIC_POS, 0, &[])));
    assert_eq!(
        encode_numeric("12.34"),
        Some(num(2, 0, NUMERIC_POS, 2, &[12, 3400]))
    );

    // Hash gives a valid whole number, the one text masking gives.
    let v = num(2, 0, NUMERIC_NEG, 3, &[12, 3400]);
    let h = MaskFn::Hash.apply_binary(&v, Numeric, KEY).unwrap();
    let text = decode(&h, Numeric).unwrap();
    assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text}");
    assert_eq!(be_u16(&h, 6), Some(0), "dscale");
    assert_eq!(Some(text), MaskFn::Hash.apply_text("-12.340", Numeric, KEY));

    // Malformed: the full replacement.
    for bad in [
        num(1, 0, NUMERIC_POS, 0, &[10_000]),
        num(1, 0, NUMERIC_POS, 0, &[-1]),
        num(2, 0, NUMERIC_POS, 0, &[1]),
        num(-1, 0, NUMERIC_POS, 0, &[]),
        num(1, 0, 0x1234, 0, &[1]),
        num(0, 0, NUMERIC_POS, 0x4000, &[]),
        vec![0; 7],
    ] {
        assert_eq!(decode(&bad, Numeric), None, "{bad:?}");
        assert_eq!(mb("hash", &bad, Numeric), Some(vec![0; 8]), "{bad:?}");
    }
}

#[test]
fn floats_print_like_postgresql() {
    for (x, want) in [
        (0.0, "0"),
        (-0.0, "-0"),
        (1.5, "1.5"),
        (-2.0, "-2"),
        (100.0, "100"),
        (1e14, "100000000000000"),
        (123_456_789_012_345.0, "123456789012345"),
        (1e15, "1e+15"),
        (1.5e15, "1.5e+15"),
        (0.0001, "0.0001"),
        (0.00012, "0.00012"),
        (1e-5, "1e-05"),
        (0.1, "0.1"),
        (f64::MAX, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
    ] {
        assert_eq!(
            decode(&x.to_be_bytes(), ColumnClass::Float8).as_deref(),
            Some(want),
            "{x:e}"
        );
    }
    for (x, want) in [
        (0.1f32, "0.1"),
        (100_000f32, "100000"),
        (1e6f32, "1e+06"),
        (1.25e-5f32, "1.25e-05"),
        (f32::MAX, "3.4028235e+38"),
        (-3.5f32, "-3.5"),
    ] {
        assert_eq!(
            decode(&x.to_be_bytes(), ColumnClass::Float4).as_deref(),
            Some(want),
            "{x:e}"
        );
    }
    // Masking: the same as numeric in text, IEEE in binary.
    for class in [ColumnClass::Float4, ColumnClass::Float8] {
        assert_eq!(
            MaskFn::Full.apply_text("1.5", class, KEY).as_deref(),
            Some("0")
        );
        assert_eq!(
            MaskFn::Hash.apply_text("1.5", class, KEY),
            MaskFn::Hash.apply_text("1.5", ColumnClass::Numeric, KEY)
        );
    }
    let h = mb("hash", &1.5f64.to_be_bytes(), ColumnClass::Float8).unwrap();
    let want: f64 = MaskFn::Hash
        .apply_text("1.5", ColumnClass::Float8, KEY)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(h, want.to_be_bytes());
    let h = mb("hash", &1.5f32.to_be_bytes(), ColumnClass::Float4).unwrap();
    assert_eq!(h.len(), 4);
    assert_eq!(
        mb("full", &1.5f32.to_be_bytes(), ColumnClass::Float4),
        Some(vec![0; 4])
    );
}

#[test]
fn json_and_jsonb() {
    use ColumnClass::{Json, Jsonb};
    let doc = br#"{"a": 1}"#;
    let mut jb = vec![1];
    jb.extend_from_slice(doc);
    let t = MaskFn::Hash.apply_text(r#"{"a": 1}"#, Json, KEY).unwrap();
    let b = mb("hash", &jb, Jsonb).unwrap();
    assert_eq!(b.first(), Some(&1));
    assert_eq!(&b[1..], t.as_bytes());
    assert_eq!(mb("hash", doc, Json), Some(t.into_bytes()));
    assert_eq!(
        mb("full", doc, Jsonb).as_deref(),
        Some(&b"\x01\"****\""[..])
    );
    // An unknown version: not readable, so the full replacement.
    let mut v2 = jb.clone();
    v2[0] = 2;
    assert_eq!(mb("hash", &v2, Jsonb), full(Jsonb));
    assert_eq!(mb("hash", b"", Jsonb), full(Jsonb));
}

#[test]
fn other_types_bytea_and_bool() {
    assert_eq!(mb("hash", b"\x01\x02", ColumnClass::Bytea), Some(vec![]));
    assert_eq!(
        decode(b"\x01\xab", ColumnClass::Bytea).as_deref(),
        Some("\\x01ab")
    );
    assert_eq!(encode("\\x01ab", ColumnClass::Bytea), Some(vec![1, 0xab]));
    assert_eq!(mb("hash", b"\x01", ColumnClass::Bool), Some(vec![0]));
    assert_eq!(decode(b"\x07", ColumnClass::Bool).as_deref(), Some("t"));
    for func in FUNCTIONS {
        assert_eq!(mb(func, b"\x00\x01", ColumnClass::Other), None, "{func}");
    }
}

#[test]
fn short_or_garbage_values_mask_to_the_full_replacement() {
    use ColumnClass::*;
    for class in [
        Int2, Int4, Int8, Numeric, Float4, Float8, Date, Timestamp, Uuid, Bool,
    ] {
        for bad in [&b""[..], b"\x01\x02\x03", &[0xff; 17]] {
            for func in ["hash", "partial(1,1)", "date_year_only", "email"] {
                assert_eq!(
                    mb(func, bad, class),
                    full(class),
                    "{class:?} {func} {bad:?}"
                );
            }
        }
    }
    assert_eq!(mb("hash", b"\xc3\x28", Text), full(Text));
    assert_eq!(mb("hash", b"\xc3\x28", Json), full(Json));
}

#[test]
fn full_replacements_agree_between_formats() {
    for class in ALL {
        let text = MaskFn::Full.apply_text("x", class, KEY);
        let bin = full(class);
        assert_eq!(
            bin,
            text.as_deref().and_then(|t| encode(t, class)),
            "{class:?}"
        );
        assert_eq!(
            bin.as_deref().and_then(|b| decode(b, class)),
            text,
            "{class:?}"
        );
    }
}

#[test]
fn apply_dispatches_on_the_format() {
    let f = f("partial(1,1)");
    assert_eq!(
        f.apply(b"secret", false, ColumnClass::Text, KEY).as_deref(),
        Some(&b"s****t"[..])
    );
    assert_eq!(
        f.apply(b"secret", true, ColumnClass::Text, KEY).as_deref(),
        Some(&b"s****t"[..])
    );
    // Text format that is not UTF-8 is read lossily; the output is UTF-8.
    let out = f.apply(b"a\xffb", false, ColumnClass::Text, KEY).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "a*b");
    assert_eq!(
        f.apply(&7i32.to_be_bytes(), true, ColumnClass::Int4, KEY),
        Some(vec![0; 4])
    );
    assert_eq!(
        f.apply(b"7", false, ColumnClass::Int4, KEY).as_deref(),
        Some(&b"0"[..])
    );
}

/// Whether `b` is a value PostgreSQL's binary input function for `class` accepts.
fn valid_binary(class: ColumnClass, b: &[u8]) -> bool {
    let fixed = |n: usize| b.len() == n;
    let structural = match class {
        ColumnClass::Int2 => fixed(2),
        ColumnClass::Int4 | ColumnClass::Float4 => fixed(4),
        ColumnClass::Int8 | ColumnClass::Float8 => fixed(8),
        ColumnClass::Date => b.try_into().map(i32::from_be_bytes).is_ok_and(|d| {
            d == i32::MAX || d == i32::MIN || (DATE_MIN..DATE_END).contains(&i64::from(d))
        }),
        ColumnClass::Timestamp => b.try_into().map(i64::from_be_bytes).is_ok_and(|t| {
            t == i64::MAX || t == i64::MIN || (TIMESTAMP_MIN..TIMESTAMP_END).contains(&t)
        }),
        ColumnClass::Uuid => fixed(16),
        ColumnClass::Bool => b == [0] || b == [1],
        ColumnClass::Text | ColumnClass::Json => std::str::from_utf8(b).is_ok(),
        ColumnClass::Jsonb => b.first() == Some(&1) && std::str::from_utf8(&b[1..]).is_ok(),
        ColumnClass::Bytea => true,
        ColumnClass::Numeric => {
            let (Some(n), Some(sign), Some(dscale)) = (be_i16(b, 0), be_u16(b, 4), be_u16(b, 6))
            else {
                return false;
            };
            n >= 0
                && b.len() == 8 + 2 * n as usize
                && [
                    NUMERIC_POS,
                    NUMERIC_NEG,
                    NUMERIC_NAN,
                    NUMERIC_PINF,
                    NUMERIC_NINF,
                ]
                .contains(&sign)
                && dscale <= NUMERIC_DSCALE_MAX
                && b[8..]
                    .chunks(2)
                    .all(|d| (0..NBASE).contains(&i16::from_be_bytes([d[0], d[1]])))
                // Canonical, as numeric_send writes it: no leading or trailing zero digits.
                && (n == 0
                    || (be_i16(b, 8) != Some(0) && be_i16(b, b.len() - 2) != Some(0)))
        }
        ColumnClass::Other => false,
    };
    structural && decode(b, class).is_some()
}

fn class_strategy() -> impl Strategy<Value = ColumnClass> {
    proptest::sample::select(ALL.to_vec())
}

fn function_strategy() -> impl Strategy<Value = MaskFn> {
    proptest::sample::select(FUNCTIONS.to_vec()).prop_map(f)
}

/// Arbitrary bytes, and bytes shaped like the binary values (right length, numeric
/// headers, jsonb version byte) so that decoding gets past its first checks.
fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::sample::select(vec![1usize, 2, 4, 8, 16])
            .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n)),
        (
            -1i16..5,
            any::<i16>(),
            prop_oneof![
                proptest::sample::select(vec![
                    NUMERIC_POS,
                    NUMERIC_NEG,
                    NUMERIC_NAN,
                    NUMERIC_PINF,
                    NUMERIC_NINF
                ]),
                any::<u16>()
            ],
            prop_oneof![0u16..40, any::<u16>()],
            proptest::collection::vec(prop_oneof![0i16..10_000, any::<i16>()], 0..5),
        )
            .prop_map(|(n, w, s, d, digits)| num(n, w, s, d, &digits)),
        (any::<u8>(), "\\PC{0,20}").prop_map(|(v, s)| {
            let mut b = vec![v % 3];
            b.extend_from_slice(s.as_bytes());
            b
        }),
    ]
}

/// A valid value of a class: its binary form and PostgreSQL's text for it (built
/// independently of the decoder where it can be).
fn value_strategy() -> impl Strategy<Value = (ColumnClass, Vec<u8>, String)> {
    prop_oneof![
        any::<i16>().prop_map(|v| (ColumnClass::Int2, v.to_be_bytes().to_vec(), v.to_string())),
        any::<i32>().prop_map(|v| (ColumnClass::Int4, v.to_be_bytes().to_vec(), v.to_string())),
        any::<i64>().prop_map(|v| (ColumnClass::Int8, v.to_be_bytes().to_vec(), v.to_string())),
        (any::<i64>(), 0u16..24).prop_map(|(m, s)| {
            let (text, bin) = ref_numeric(m, s);
            (ColumnClass::Numeric, bin, text)
        }),
        prop_oneof![
            DATE_MIN..DATE_END,
            -200_000i64..200_000,
            Just(i64::from(i32::MAX)),
            Just(i64::from(i32::MIN))
        ]
        .prop_map(|d| {
            let d = i32::try_from(d).unwrap();
            let text = match d {
                i32::MAX => "infinity".to_string(),
                i32::MIN => "-infinity".to_string(),
                d => ref_date(i64::from(d)),
            };
            (ColumnClass::Date, d.to_be_bytes().to_vec(), text)
        }),
        prop_oneof![
            TIMESTAMP_MIN..TIMESTAMP_END,
            -10_000_000_000_000_000i64..10_000_000_000_000_000,
            (-200_000i64..200_000).prop_map(|d| d * USECS_PER_DAY),
        ]
        .prop_map(|t| (
            ColumnClass::Timestamp,
            t.to_be_bytes().to_vec(),
            ref_timestamp(t)
        )),
        any::<[u8; 16]>().prop_map(|u| (ColumnClass::Uuid, u.to_vec(), uuid_text(&u))),
        any::<bool>().prop_map(|b| (
            ColumnClass::Bool,
            vec![u8::from(b)],
            if b { "t" } else { "f" }.to_string()
        )),
        "\\PC{0,30}".prop_map(|s| (ColumnClass::Text, s.clone().into_bytes(), s)),
        "[a-z0-9]{1,8}@[a-z]{1,8}\\.com".prop_map(|s| (
            ColumnClass::Text,
            s.clone().into_bytes(),
            s
        )),
        "\\PC{0,20}".prop_map(|s| {
            let json = format!("{s:?}");
            let mut b = vec![1];
            b.extend_from_slice(json.as_bytes());
            (ColumnClass::Jsonb, b, json)
        }),
    ]
}

proptest! {
    /// Whatever arrives, masking a binary value neither panics nor produces a value the
    /// column's type would reject.
    #[test]
    fn binary_masking_never_panics_and_is_type_valid(
        class in class_strategy(),
        func in function_strategy(),
        value in bytes_strategy(),
    ) {
        let out = func.apply_binary(&value, class, KEY);
        if let Some(out) = &out {
            prop_assert!(valid_binary(class, out), "{class:?} {func:?} {value:?} -> {out:?}");
        }
        prop_assert_eq!(out.is_none(), matches!(func, MaskFn::Null) || class == ColumnClass::Other);
        // A value that does not decode never shows through.
        if decode(&value, class).is_none() && !matches!(func, MaskFn::Null) {
            prop_assert_eq!(out, full(class));
        }
    }

    /// Binary masking gives the binary form of what text masking gives.
    #[test]
    fn text_and_binary_masking_agree(
        (class, bin, text) in value_strategy(),
        func in function_strategy(),
    ) {
        prop_assert_eq!(decode(&bin, class), Some(text.clone()));
        prop_assert_eq!(encode(&text, class), Some(bin.clone()));
        let t = func.apply_text(&text, class, KEY);
        let b = func.apply_binary(&bin, class, KEY);
        prop_assert_eq!(b.as_ref().map(|b| valid_binary(class, b)), b.as_ref().map(|_| true));
        prop_assert_eq!(&b, &t.as_deref().and_then(|t| encode(t, class)), "{:?} on {}", func, text);
        prop_assert_eq!(b.as_deref().and_then(|b| decode(b, class)), t);
    }

    /// Floats: the text decoded from binary reads back as the same float, and masking
    /// agrees with text masking of that text.
    #[test]
    fn floats_round_trip_and_agree(bits64 in any::<u64>(), bits32 in any::<u32>(), func in function_strategy()) {
        for (class, bin) in [
            (ColumnClass::Float8, f64::from_bits(bits64).to_be_bytes().to_vec()),
            (ColumnClass::Float4, f32::from_bits(bits32).to_be_bytes().to_vec()),
        ] {
            let text = decode(&bin, class).unwrap();
            let back = encode(&text, class).unwrap();
            if class == ColumnClass::Float8 {
                let (a, b) = (f64::from_bits(bits64), f64::from_be_bytes(back.clone().try_into().unwrap()));
                prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{text}");
            } else {
                let (a, b) = (f32::from_bits(bits32), f32::from_be_bytes(back.clone().try_into().unwrap()));
                prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{text}");
            }
            let t = func.apply_text(&text, class, KEY);
            let b = func.apply_binary(&bin, class, KEY);
            prop_assert_eq!(b, t.as_deref().and_then(|t| encode(t, class)));
        }
    }

    /// Numeric text round-trips through the binary encoding exactly.
    #[test]
    fn numeric_text_round_trips(m in any::<i64>(), s in 0u16..40) {
        let (text, bin) = ref_numeric(m, s);
        prop_assert_eq!(encode_numeric(&text), Some(bin.clone()));
        prop_assert_eq!(decode_numeric(&bin), Some(text));
    }
}
