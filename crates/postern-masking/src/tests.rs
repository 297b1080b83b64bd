use super::*;

const KEY: &[u8] = b"test-key";

fn m(spec: &str, value: &str, class: ColumnClass) -> Option<String> {
    MaskFn::parse(spec)
        .unwrap_or_else(|e| panic!("{e}"))
        .apply_text(value, class, KEY)
}

#[test]
fn each_function_on_text() {
    use ColumnClass::Text;
    assert_eq!(m("full", "secret", Text).as_deref(), Some("****"));
    assert_eq!(m("null", "secret", Text), None);
    assert_eq!(
        m("partial(2, 3)", "4111222233334444", Text).as_deref(),
        Some("41***********444")
    );
    assert_eq!(
        m("partial(4,4)", "12345678", Text).as_deref(),
        Some("********")
    );
    assert_eq!(
        m("email", "jane.doe@example.com", Text).as_deref(),
        Some("j***@example.com")
    );
    assert_eq!(m("email", "not an address", Text).as_deref(), Some("****"));
    assert_eq!(
        m("credit_card", "4111 2222 3333 4444", Text).as_deref(),
        Some("**** **** **** 4444")
    );
    assert_eq!(m("credit-card", "123", Text).as_deref(), Some("123"));
    assert_eq!(
        m(
            r"regex('(\d{3})-\d{2}-(\d{4})', '$1-**-$2')",
            "123-45-6789",
            Text
        )
        .as_deref(),
        Some("123-**-6789")
    );
    assert_eq!(
        m("regex('it''s', 'x')", "it's here", Text).as_deref(),
        Some("x here")
    );
    assert_eq!(
        m("date_year_only", "1990-05-17", Text).as_deref(),
        Some("1990-01-01")
    );
    assert_eq!(m("date_year_only", "May 17", Text).as_deref(), Some("****"));
}

#[test]
fn hash_is_stable_keyed_and_type_valid() {
    use ColumnClass::*;
    let a = m("hash", "jane@example.com", Text).unwrap();
    assert_eq!(a, m("hash", "jane@example.com", Text).unwrap());
    assert_ne!(a, m("hash", "john@example.com", Text).unwrap());
    let other_key = MaskFn::Hash.apply_text("jane@example.com", Text, b"other");
    assert_ne!(Some(a), other_key);
    let i2: i64 = m("hash", "7", Int2).unwrap().parse().unwrap();
    assert!((0..=i64::from(i16::MAX)).contains(&i2));
    let i4: i64 = m("hash", "7", Int4).unwrap().parse().unwrap();
    assert!((0..=i64::from(i32::MAX)).contains(&i4));
    let i8: i64 = m("hash", "7", Int8).unwrap().parse().unwrap();
    assert!(i8 >= 0);
    let u = m("hash", "7", Uuid).unwrap();
    assert_eq!(u.len(), 36);
    assert_eq!(u.matches('-').count(), 4);
    assert!(m("hash", "x", Json).unwrap().starts_with('"'));
    assert_eq!(m("hash", "2020-01-01", Date).as_deref(), Some("1970-01-01"));
}

#[test]
fn replacements_are_valid_for_the_column_type() {
    use ColumnClass::*;
    for (class, want) in [
        (Int4, Some("0")),
        (Numeric, Some("0")),
        (Date, Some("1970-01-01")),
        (Timestamp, Some("1970-01-01 00:00:00")),
        (Uuid, Some("00000000-0000-0000-0000-000000000000")),
        (Bool, Some("f")),
        (Json, Some("\"****\"")),
        (Bytea, Some("\\x")),
        (Other, None),
    ] {
        assert_eq!(m("full", "whatever", class).as_deref(), want, "{class:?}");
        // Text-only functions fall back to the full replacement on other types.
        assert_eq!(m("email", "whatever", class).as_deref(), want, "{class:?}");
        assert_eq!(
            m("partial(1,1)", "whatever", class).as_deref(),
            want,
            "{class:?}"
        );
    }
    assert_eq!(
        m("date_year_only", "1990-05-17", Date).as_deref(),
        Some("1990-01-01")
    );
    assert_eq!(
        m("date_year_only", "1990-05-17 10:11:12.5+02", Timestamp).as_deref(),
        Some("1990-01-01 00:00:00+02")
    );
    assert_eq!(
        m("date_year_only", "1990-05-17 10:11:12", Timestamp).as_deref(),
        Some("1990-01-01 00:00:00")
    );
}

#[test]
fn column_classes_from_type_oids() {
    assert_eq!(ColumnClass::of_pg_type(25), ColumnClass::Text);
    assert_eq!(ColumnClass::of_pg_type(1043), ColumnClass::Text);
    assert_eq!(ColumnClass::of_pg_type(23), ColumnClass::Int4);
    assert_eq!(ColumnClass::of_pg_type(1700), ColumnClass::Numeric);
    assert_eq!(ColumnClass::of_pg_type(2950), ColumnClass::Uuid);
    assert_eq!(ColumnClass::of_pg_type(1184), ColumnClass::Timestamp);
    assert_eq!(ColumnClass::of_pg_type(600), ColumnClass::Other);
    // Classes that mask alike in text but differ in binary format.
    assert_eq!(ColumnClass::of_pg_type(700), ColumnClass::Float4);
    assert_eq!(ColumnClass::of_pg_type(701), ColumnClass::Float8);
    assert_eq!(ColumnClass::of_pg_type(114), ColumnClass::Json);
    assert_eq!(ColumnClass::of_pg_type(3802), ColumnClass::Jsonb);
    for (class, like) in [
        (ColumnClass::Float4, ColumnClass::Numeric),
        (ColumnClass::Float8, ColumnClass::Numeric),
        (ColumnClass::Jsonb, ColumnClass::Json),
    ] {
        for f in ["full", "hash", "partial(1,1)", "date_year_only"] {
            assert_eq!(m(f, "1.5", class), m(f, "1.5", like), "{f} {class:?}");
        }
    }
}

#[test]
fn year_only_keeps_the_era() {
    use ColumnClass::*;
    assert_eq!(
        m("date_year_only", "0044-03-15 BC", Date).as_deref(),
        Some("0044-01-01 BC")
    );
    assert_eq!(
        m("date_year_only", "0044-03-15 10:11:12 BC", Timestamp).as_deref(),
        Some("0044-01-01 00:00:00 BC")
    );
    assert_eq!(
        m(
            "date_year_only",
            "0044-03-15 09:53:28+00:53:28 BC",
            Timestamp
        )
        .as_deref(),
        Some("0044-01-01 00:00:00+00:53:28 BC")
    );
    // January 1st, 4714 BC is before PostgreSQL's first date.
    assert_eq!(
        m("date_year_only", "4714-11-24 BC", Date).as_deref(),
        Some("1970-01-01")
    );
    assert_eq!(
        m("date_year_only", "4713-11-24 BC", Date).as_deref(),
        Some("4713-01-01 BC")
    );
}

#[test]
fn bad_specs_say_how_to_write_them() {
    for (spec, want) in [
        ("partial(2)", "partial(keep_first, keep_last)"),
        ("partial(a, 1)", "not a number"),
        ("partial(1, 1", "closing parenthesis"),
        ("hash(1)", "takes no arguments"),
        ("regex(x, 'y')", "single quotes"),
        ("regex('(', 'y')", "bad pattern"),
        ("regex('a', 'b') x", "closing parenthesis"),
        ("scramble", "functions are"),
    ] {
        let e = MaskFn::parse(spec).unwrap_err().to_string();
        assert!(e.contains(want), "{spec}: {e}");
    }
}

proptest::proptest! {
    /// Masking never panics, and what it keeps of a text value is bounded by the rule.
    #[test]
    fn never_panics_and_keeps_what_it_says(value in "\\PC{0,40}", first in 0usize..6, last in 0usize..6) {
        for class in [ColumnClass::Text, ColumnClass::Int2, ColumnClass::Timestamp, ColumnClass::Uuid, ColumnClass::Other] {
            for f in ["full", "hash", "null", "email", "credit_card", "date_year_only", "regex('.', 'x')"] {
                let _ = MaskFn::parse(f).unwrap().apply_text(&value, class, KEY);
            }
        }
        let p = MaskFn::Partial { keep_first: first, keep_last: last }
            .apply_text(&value, ColumnClass::Text, KEY)
            .unwrap();
        let n = value.chars().count();
        proptest::prop_assert_eq!(p.chars().count(), n.max(1));
        let kept = p.chars().zip(value.chars()).filter(|(a, b)| a == b && *a != '*').count();
        proptest::prop_assert!(kept <= first + last);
    }
}

#[test]
fn display_reads_back_as_the_same_function() {
    for spec in [
        "full",
        "partial(2, 4)",
        "hash",
        "null",
        "email",
        "credit_card",
        "regex('it''s (\\d+)', '#$1''')",
        "date_year_only",
    ] {
        let f = MaskFn::parse(spec).unwrap();
        assert_eq!(f.to_string(), spec);
        let again = MaskFn::parse(&f.to_string()).unwrap();
        assert_eq!(again.to_string(), spec);
        assert_eq!(
            again.apply_text("it's 42", ColumnClass::Text, b"k"),
            f.apply_text("it's 42", ColumnClass::Text, b"k")
        );
    }
}
