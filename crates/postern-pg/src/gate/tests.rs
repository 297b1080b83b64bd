use std::collections::HashSet;

use postern_core::PrivilegeSpec;
use postern_policy::{compile_rules, FirewallAction, FirewallRule, FirewallRuleSpec, Mode};

use std::sync::atomic::AtomicU64;

use super::*;
use crate::codec::error_summary;

fn policy(mode: Mode, firewall: &[FirewallRuleSpec]) -> Arc<Policy> {
    let specs = vec![PrivilegeSpec {
        allow: vec!["SELECT".into()],
        deny: vec![],
        on: "shop.*.public.products".into(),
    }];
    Arc::new(Policy {
        datasource: "shop".into(),
        database: "shopdb".into(),
        mode,
        rules: compile_rules("reader", &specs).unwrap(),
        firewall: firewall
            .iter()
            .map(|s| FirewallRule::compile(s).unwrap())
            .collect(),
        roles: vec!["reader".into()],
        allow_list: HashSet::new(),
        catalog_read: true,
        masking: Vec::new(),
        revealed: Default::default(),
        dialect: postern_core::DatasourceType::Postgres,
    })
}

fn gate(mode: Mode) -> Gate {
    Gate::new(
        policy(mode, &[]),
        (Arc::default(), 0),
        Some(vec!["public".into()]),
        None,
        IpAddr::from([127, 0, 0, 1]),
    )
}

fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut v = z(name);
    v.extend(z(sql));
    v.extend([0, 0]);
    v
}

fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    let mut v = z(portal);
    v.extend(z(stmt));
    v.extend([0, 0, 0, 0, 0, 0]);
    v
}

/// The server's error for a statement or column named `name`.
fn server_error(code: &str, msg: &str) -> Vec<u8> {
    let mut v = vec![b'S'];
    v.extend(z("ERROR"));
    v.push(b'C');
    v.extend(z(code));
    v.push(b'M');
    v.extend(z(msg));
    v.push(0);
    v
}

const UTF8: Lexing = Lexing {
    standard_conforming_strings: true,
    utf8_client: true,
};

fn send(g: &mut Gate, ty: u8, body: &[u8]) -> GateOut {
    g.client_message(ty, body, UTF8).unwrap()
}

fn allowed(out: &GateOut) -> bool {
    matches!(out, GateOut::Forward(r) if r.as_ref().is_none_or(|r| r.allowed))
}

/// The replacement's text and the token inside it.
fn replaced(out: GateOut) -> (u8, String, Arc<Ruling>) {
    match out {
        GateOut::Replace(b, r) => (b[0], String::from_utf8_lossy(&b[5..]).into_owned(), r),
        GateOut::Forward(_) | GateOut::Stale => panic!("not refused"),
    }
}

fn token_of(text: &str) -> String {
    let at = text.find("postern_refused_").expect("token");
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn refused_query_is_replaced_and_its_error_rewritten() {
    let mut g = gate(Mode::Protected);
    assert!(allowed(&send(&mut g, b'Q', &z("select * from products"))));
    let (ty, text, ruling) = replaced(send(&mut g, b'Q', &z("select * from orders")));
    assert_eq!(ty, b'Q');
    assert!(
        !text.contains("orders"),
        "the upstream must not see it: {text}"
    );
    assert!(!ruling.allowed);
    assert!(ruling.reason.as_deref().unwrap().contains("orders"));
    let token = token_of(&text);
    // The server's error for the replacement comes back as Postern's refusal…
    let err = server_error("42703", &format!("column \"{token}\" does not exist"));
    let ours = g.server_message(b'E', &err).expect("rewritten");
    let (code, msg) = error_summary(&ours[5..]);
    assert_eq!(code, "42501");
    assert!(msg.contains("shop.shopdb.public.orders"), "{msg}");
    // …once; other errors pass untouched.
    assert!(g.server_message(b'E', &err).is_none());
    assert!(g
        .server_message(b'E', &server_error("22012", "division by zero"))
        .is_none());
}

#[test]
fn unanalysable_statements_pass_in_masked_mode_only() {
    let mut g = gate(Mode::Masked);
    assert!(allowed(&send(
        &mut g,
        b'Q',
        &z("set constraints all deferred")
    )));
    let mut g = gate(Mode::Protected);
    let (_, _, r) = replaced(send(&mut g, b'Q', &z("set constraints all deferred")));
    assert!(r.reason.as_deref().unwrap().contains("cannot analyse"));
}

#[test]
fn refused_parse_keeps_its_name_and_fails_at_parse() {
    let mut g = gate(Mode::Masked);
    let (ty, text, _) = replaced(send(&mut g, b'P', &parse("s1", "select * from orders")));
    assert_eq!(ty, b'P');
    assert!(
        text.starts_with("s1\0SELECT \"postern_refused_"),
        "{text:?}"
    );
    // A Bind of it is refused too (the server has no such statement either).
    let (ty, text, _) = replaced(send(&mut g, b'B', &bind("", "s1")));
    assert_eq!(ty, b'B');
    assert!(text.starts_with("\0postern_refused_"), "{text:?}");
}

#[test]
fn prepared_statements_are_judged_again_after_search_path_changes() {
    let mut g = gate(Mode::Masked);
    assert!(allowed(&send(
        &mut g,
        b'P',
        &parse("s", "select * from products")
    )));
    assert!(allowed(&send(&mut g, b'B', &bind("", "s"))));
    // A SET widens the path to old + new until the server confirms it.
    let set = send(&mut g, b'Q', &z("set search_path = secret"));
    let GateOut::Forward(Some(set)) = set else {
        panic!("{set:?}")
    };
    assert_eq!(
        g.search_path(),
        Some(&["public".to_string(), "secret".to_string()][..])
    );
    let (_, _, r) = replaced(send(&mut g, b'B', &bind("", "s")));
    assert!(r.reason.as_deref().unwrap().contains("secret.products"));
    // Two SETs in flight: confirming the first must not forget the second.
    let back = send(&mut g, b'Q', &z("set search_path = public"));
    let GateOut::Forward(Some(back)) = back else {
        panic!("{back:?}")
    };
    let (p1, at1) = set.search_path.clone().unwrap();
    g.confirm_search_path(&p1, at1);
    assert_eq!(g.search_path().map(<[String]>::len), Some(2));
    let (p2, at2) = back.search_path.clone().unwrap();
    g.confirm_search_path(&p2, at2);
    assert_eq!(g.search_path(), Some(&["public".to_string()][..]));
    assert!(allowed(&send(&mut g, b'B', &bind("", "s"))));
    // Not a lone SET: no confirmation offered.
    match send(&mut g, b'Q', &z("set search_path = secret; select 1")) {
        GateOut::Forward(Some(r)) => assert!(r.search_path.is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sql_prepare_bound_through_the_protocol_is_judged_too() {
    let mut g = gate(Mode::Protected);
    assert!(allowed(&send(
        &mut g,
        b'Q',
        &z("prepare p as select * from products")
    )));
    assert!(allowed(&send(&mut g, b'Q', &z("execute p"))));
    assert!(allowed(&send(&mut g, b'B', &bind("", "p"))));
    g.client_message(b'Q', &z("set search_path = secret, public"), UTF8)
        .unwrap();
    replaced(send(&mut g, b'B', &bind("", "p")));
    replaced(send(&mut g, b'Q', &z("execute p")));
    // Names the protocol prepared are visible to SQL EXECUTE, and judged there.
    let mut g = gate(Mode::Protected);
    assert!(allowed(&send(
        &mut g,
        b'P',
        &parse("q", "select * from products")
    )));
    assert!(allowed(&send(&mut g, b'Q', &z("execute q"))));
    send(&mut g, b'C', b"Sq\0");
    replaced(send(&mut g, b'Q', &z("execute q")));
}

#[test]
fn a_name_parsed_twice_is_judged_for_every_text() {
    let mut g = gate(Mode::Masked);
    assert!(allowed(&send(
        &mut g,
        b'P',
        &parse("s", "select * from products")
    )));
    // The server refuses this one (name in use); Postern cannot tell which text won.
    assert!(allowed(&send(&mut g, b'P', &parse("s", "select 1"))));
    g.client_message(b'Q', &z("set search_path = secret"), UTF8)
        .unwrap();
    replaced(send(&mut g, b'B', &bind("", "s")));
}

#[test]
fn fast_path_calls_are_refused() {
    let mut g = gate(Mode::Masked);
    let (ty, _, r) = replaced(send(&mut g, b'F', &[0, 0, 0x0b, 0xb8, 0, 0, 0, 0, 0, 0]));
    assert_eq!(ty, b'Q');
    assert!(r.reason.as_deref().unwrap().contains("fast-path"));
}

#[test]
fn firewall_rulings_reach_the_audit() {
    let rule = |name: &str, action, when: &str| FirewallRuleSpec {
        name: name.into(),
        action,
        when: vec![when.into()],
        regex: None,
        datasources: vec![],
        roles: vec![],
        source: vec![],
        hours: None,
        days: vec![],
    };
    let p = policy(
        Mode::Masked,
        &[
            rule("watch-or", FirewallAction::AllowAndAlert, "tautology"),
            rule(
                "quiet-multi",
                FirewallAction::DenySilently,
                "multi-statement",
            ),
        ],
    );
    let mut g = Gate::new(
        p,
        (Arc::default(), 0),
        Some(vec!["public".into()]),
        None,
        IpAddr::from([10, 0, 0, 1]),
    );
    match send(
        &mut g,
        b'Q',
        &z("select * from products where id = 1 or 1=1"),
    ) {
        GateOut::Forward(Some(r)) => {
            assert!(r.allowed && r.alert);
            assert_eq!(r.rule.as_deref(), Some("firewall: watch-or"));
        }
        other => panic!("{other:?}"),
    }
    let (_, text, r) = replaced(send(
        &mut g,
        b'Q',
        &z("select * from products; select * from products"),
    ));
    assert_eq!(r.rule.as_deref(), Some("firewall: quiet-multi"));
    let err = server_error(
        "42703",
        &format!("column \"{}\" does not exist", token_of(&text)),
    );
    let ours = g.server_message(b'E', &err).unwrap();
    let (_, msg) = error_summary(&ours[5..]);
    assert!(
        !msg.contains("quiet-multi"),
        "deny-silently must not name the rule: {msg}"
    );
}

#[test]
fn text_read_differently_by_the_server_is_refused() {
    let mut g = gate(Mode::Masked);
    // Not UTF-8 at all: refused, the session goes on.
    let (ty, _, r) = replaced(send(&mut g, b'Q', b"select '\xe9' from products\0"));
    assert_eq!(ty, b'Q');
    assert!(r.reason.as_deref().unwrap().contains("UTF-8"));
    // In SJIS, the bytes of "ぁ\" end a string literal UTF-8 says goes on.
    let sjis = Lexing {
        standard_conforming_strings: true,
        utf8_client: false,
    };
    let sql = z("select E'ぁ\\' ; select * from orders; --' from products");
    let out = g.client_message(b'Q', &sql, sjis).unwrap();
    let (_, _, r) = replaced(out);
    assert!(r.reason.as_deref().unwrap().contains("client_encoding"));
    // ASCII means the same in every client encoding.
    let out = g
        .client_message(b'Q', &z("select * from products"), sjis)
        .unwrap();
    assert!(allowed(&out));
    // A Parse whose name is not UTF-8 is refused under that name.
    let mut body = b"s\xff\0".to_vec();
    body.extend(z("select * from products"));
    body.extend([0, 0]);
    let (ty, text, _) = replaced(send(&mut g, b'P', &body));
    assert_eq!(ty, b'P');
    assert!(text.contains("postern_refused_"));
}

#[test]
fn pending_refusals_are_bounded() {
    let mut g = gate(Mode::Masked);
    for _ in 0..(MAX_PENDING_REFUSALS + 10) {
        replaced(send(&mut g, b'Q', &z("select * from orders")));
    }
    assert_eq!(g.refusals.len(), MAX_PENDING_REFUSALS);
}

#[test]
fn a_store_change_holds_statements_until_the_policy_is_reloaded() {
    let epoch = Arc::new(AtomicU64::new(7));
    let mut g = Gate::new(
        policy(Mode::Passthrough, &[]),
        (epoch.clone(), 7),
        None,
        None,
        IpAddr::from([127, 0, 0, 1]),
    );
    // PASSTHROUGH: nothing checked, nothing remembered.
    assert!(matches!(
        send(&mut g, b'Q', &z("select * from orders")),
        GateOut::Forward(None)
    ));
    assert!(allowed(&send(
        &mut g,
        b'P',
        &parse("s", "select * from orders")
    )));
    epoch.store(8, Ordering::Release);
    assert!(matches!(send(&mut g, b'Q', &z("select 1")), GateOut::Stale));
    assert!(matches!(send(&mut g, b'B', &bind("", "s")), GateOut::Stale));
    // Other messages (Execute, Sync, Describe) are not held.
    assert!(matches!(send(&mut g, b'S', &[]), GateOut::Forward(None)));
    g.set_policy(policy(Mode::Masked, &[]), 8);
    // Now checked; the search_path was never learnt, so unqualified names are refused…
    let (_, _, r) = replaced(send(&mut g, b'Q', &z("select * from products")));
    assert!(
        r.reason.as_deref().unwrap().contains("search_path"),
        "{r:?}"
    );
    assert!(allowed(&send(
        &mut g,
        b'Q',
        &z("select * from public.products")
    )));
    // …and a statement prepared while unchecked is unknown, so its Bind is refused.
    replaced(send(&mut g, b'B', &bind("", "s")));
}

#[test]
fn a_reported_search_path_is_taken_as_exact() {
    let mut g = gate(Mode::Masked);
    assert!(allowed(&send(
        &mut g,
        b'P',
        &parse("s", "select * from products")
    )));
    // As PostgreSQL 18 reports it after a function changed it behind Postern's back.
    let mut status = z("search_path");
    status.extend(z("\"$user\", secret"));
    assert!(g.server_message(b'S', &status).is_none());
    assert_eq!(g.search_path(), Some(&["secret".to_string()][..]));
    let (_, _, r) = replaced(send(&mut g, b'B', &bind("", "s")));
    assert!(r.reason.as_deref().unwrap().contains("secret.products"));
    // Other parameters change nothing.
    let mut other = z("TimeZone");
    other.extend(z("UTC"));
    g.server_message(b'S', &other);
    assert_eq!(g.search_path(), Some(&["secret".to_string()][..]));
    // A report Postern cannot read makes the path unknown, not stale.
    let mut bad = z("search_path");
    bad.extend(b"\xff\0");
    g.server_message(b'S', &bad);
    assert_eq!(g.search_path(), None);
    let (_, _, r) = replaced(send(
        &mut g,
        b'Q',
        &z("select * from public.products; select * from products"),
    ));
    assert!(
        r.reason.as_deref().unwrap().contains("search_path"),
        "{r:?}"
    );
}
