//! Decisions on real statements, analysed with PostgreSQL's grammar.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::{HashMap, HashSet};

use postern_policy::{
    decide, Context, Decision, Effect, Mode, ObjectPattern, Privilege, PrivilegeRule,
};
use postern_sql::pg::{analyse, LexSettings};
use postern_sql::{Statement, StatementFacts};

fn rule(effect: Effect, privs: &[Privilege], pattern: &str) -> PrivilegeRule {
    PrivilegeRule {
        effect,
        privileges: privs.to_vec(),
        pattern: ObjectPattern::parse(pattern).unwrap(),
        role: "analyst".into(),
    }
}

struct Setup {
    rules: Vec<PrivilegeRule>,
    path: Option<Vec<String>>,
    existing: Option<HashSet<String>>,
    prepared: HashMap<String, StatementFacts>,
    mode: Mode,
    allow_listed: bool,
}

impl Setup {
    fn new(rules: Vec<PrivilegeRule>) -> Self {
        Setup {
            rules,
            path: Some(vec!["public".into()]),
            existing: None,
            prepared: HashMap::new(),
            mode: Mode::Protected,
            allow_listed: false,
        }
    }

    fn decide_all(&self, sql: &str) -> Vec<Decision> {
        let a = analyse(sql, LexSettings::default()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let cx = Context {
            datasource: "shop",
            database: "shopdb",
            search_path: self.path.as_deref(),
            existing_schemas: self.existing.as_ref(),
            mode: self.mode,
            rules: &self.rules,
            catalog_read: true,
            prepared: &self.prepared,
            allow_listed: self.allow_listed,
            dialect: postern_core::DatasourceType::Postgres,
        };
        a.statements.iter().map(|s| decide(s, &cx)).collect()
    }

    /// Whether every statement of `sql` is allowed.
    fn allows(&self, sql: &str) -> bool {
        self.decide_all(sql).iter().all(Decision::allowed)
    }

    fn reason(&self, sql: &str) -> String {
        self.decide_all(sql)
            .into_iter()
            .find_map(|d| match d {
                Decision::Deny { reason, .. } => Some(reason),
                Decision::Allow { .. } => None,
            })
            .unwrap_or_else(|| panic!("{sql} was allowed"))
    }
}

fn products_reader() -> Setup {
    Setup::new(vec![rule(
        Effect::Allow,
        &[Privilege::Select],
        "shop.shopdb.public.products",
    )])
}

#[test]
fn select_on_one_table_allows_only_that_table() {
    let s = products_reader();
    for ok in [
        "select * from products",
        "select * from public.products",
        "select * from \"products\" where price > 10 order by name limit 5",
        "select count(*), max(price), lower(name) from products group by 3",
        "with p as (select * from products) select * from p",
        "select * from products a join products b on a.id = b.id",
        "select now(), 1 + 1, 'x'",
        "select * from pg_catalog.pg_class",
        "select relname from pg_class",
        "select * from information_schema.tables",
        "begin; select * from products; commit",
        "show search_path",
        "set statement_timeout = 1000",
        // COPY TO is a read.
        "copy products to stdout",
        "copy (select name from products) to stdout",
    ] {
        assert!(s.allows(ok), "{ok}: {:?}", s.decide_all(ok));
    }
    for bad in [
        "select * from orders",
        "select * from public.orders",
        "select * from \"Orders\"",
        "select * from public . orders",
        "select * from U&\"\\006frders\"",
        "select * from products where id in (select product_id from orders)",
        "select (select max(total) from orders) from products",
        "select * from products union select * from orders",
        "with o as (select * from orders) select * from o",
        "select * from (with products as (select * from orders) select * from products) x",
        "select * from products, lateral (select * from orders) o",
        "select * from v_orders",
        "update products set price = 0 where id = 1",
        "insert into products values (1)",
        "delete from products where id = 1",
        "truncate products",
        "select * from products for update",
        "copy (select * from orders) to stdout",
        "copy products from stdin",
        "do $$ begin perform 1; end $$",
        "call archive()",
        "select my_func(id) from products",
        "select public.leak() from products",
        "select pg_read_file('/etc/passwd')",
        "select lo_import('/etc/passwd')",
        "select query_to_xml('select * from orders', true, true, '')",
        "select * from dblink('host=x', 'select 1') as t(a int)",
        "set role admin",
        "set session authorization postgres",
        "select set_config('role', 'admin', false)",
        "select set_config(name, 'x', false) from products",
        "create view v as select * from products",
        "create table t as select * from products",
        "select * into t2 from products",
        "drop table products",
        "grant select on orders to analyst",
        "explain analyze delete from products",
        "select * from products; select * from orders",
        "select * from otherdb.public.products",
        "select * from shopdb.secret.products",
    ] {
        assert!(!s.allows(bad), "{bad} was allowed");
    }
}

#[test]
fn refusals_name_privilege_and_object() {
    let s = products_reader();
    let r = s.reason("select * from orders");
    assert!(r.contains("SELECT on shop.shopdb.public.orders"), "{r}");
    let r = s.reason("update products set price = 0 where id = 1");
    assert!(r.contains("UPDATE on shop.shopdb.public.products"), "{r}");
    let r = s.reason("do $$ begin end $$");
    assert!(r.contains("EXECUTE SQL BLOCK on datasource shop"), "{r}");
    let r = s.reason("select pg_read_file('x')");
    assert!(
        r.contains("EXECUTE on shop.shopdb.pg_catalog.pg_read_file"),
        "{r}"
    );
    let r = s.reason("set role admin");
    assert!(r.contains("SET ROLE") && r.contains("admin"), "{r}");
}

#[test]
fn search_path_resolution() {
    let mut s = products_reader();
    // Unqualified names must be allowed in every schema they may resolve to.
    s.path = Some(vec!["sales".into(), "public".into()]);
    assert!(!s.allows("select * from products"));
    assert!(s.allows("select * from public.products"));
    // ...unless that schema is known not to exist.
    s.existing = Some(["public".to_string()].into_iter().collect());
    assert!(s.allows("select * from products"));
    // An unknown search_path refuses unqualified names, not qualified ones.
    s.path = None;
    let r = s.reason("select * from products");
    assert!(r.contains("search_path"), "{r}");
    assert!(s.allows("select * from public.products"));
    // Catalog names resolve to pg_catalog first.
    s.path = Some(vec!["public".into()]);
    s.existing = None;
    assert!(s.allows("select * from pg_namespace"));
}

#[test]
fn deny_overrides_allow_and_names_the_rule() {
    let s = Setup::new(vec![
        rule(Effect::Allow, &Privilege::ALL, "shop"),
        rule(Effect::Deny, &[Privilege::Select], "shop.*.*.salaries"),
        rule(
            Effect::Deny,
            &[Privilege::Select],
            "shop.*.pg_catalog.pg_authid",
        ),
    ]);
    assert!(
        s.allows("select * from orders; delete from orders where id = 1; create table x (a int)")
    );
    assert!(s.allows("do $$ begin end $$"));
    let d = s.decide_all("select * from orders o join salaries s on true");
    match &d[0] {
        Decision::Deny { reason, rule } => {
            assert!(reason.contains("denied by role analyst"), "{reason}");
            assert_eq!(rule.as_deref(), Some("analyst: shop.*.*.salaries"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!s.allows("select * from pg_authid"));
}

#[test]
fn modes() {
    assert_eq!(Mode::effective([]), Mode::Protected);
    assert_eq!(
        Mode::effective([Mode::Passthrough, Mode::Masked]),
        Mode::Masked
    );
    assert_eq!(Mode::effective([Mode::Passthrough]), Mode::Passthrough);
    assert_eq!(
        Mode::effective([Mode::Masked, Mode::Protected, Mode::Passthrough]),
        Mode::Protected
    );

    let mut s = products_reader();
    let odd = "set constraints all deferred";
    let a = analyse(odd, LexSettings::default()).unwrap();
    assert!(
        matches!(a.statements[0], Statement::Unanalysable { .. }),
        "the example must be outside the analyser for this test to mean anything"
    );
    s.mode = Mode::Passthrough;
    assert!(s.allows("select * from orders; drop table products"));
    assert!(s.allows(odd));
    s.mode = Mode::Masked;
    assert!(!s.allows("select * from orders"));
    assert!(s.allows(odd));
    s.mode = Mode::Protected;
    let r = s.reason(odd);
    assert!(r.contains("allow-list"), "{r}");
    s.allow_listed = true;
    assert!(s.allows(odd));
    // The allow-list admits what cannot be analysed, not what is refused.
    assert!(!s.allows("select * from orders"));
}

#[test]
fn prepared_statements_are_judged_by_what_they_prepared() {
    let mut s = products_reader();
    let prep = |sql: &str| match analyse(sql, LexSettings::default())
        .unwrap()
        .statements
        .remove(0)
    {
        Statement::Analysed(f) => f,
        other => panic!("{other:?}"),
    };
    // PREPARE itself is judged by its query.
    assert!(s.allows("prepare ok as select * from products"));
    assert!(!s.allows("prepare bad as select * from orders"));
    s.prepared
        .insert("ok".into(), prep("prepare ok as select * from products"));
    s.prepared
        .insert("bad".into(), prep("prepare bad as select * from orders"));
    assert!(s.allows("execute ok"));
    assert!(!s.allows("execute bad"));
    assert!(!s.allows("execute ok((select 1 from orders))"));
    let r = s.reason("execute nothing_here");
    assert!(r.contains("no statement named"), "{r}");
}
