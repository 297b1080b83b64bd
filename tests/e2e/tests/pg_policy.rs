//! Statement-level control through the real proxy: a role with SELECT on
//! `<alias>.*.public.products` only must not read or change anything else, whatever it
//! sends, in MASKED and PROTECTED modes — with psql and with a Rust client, over the simple
//! and the extended protocol. Every refusal is checked twice: the client gets 42501, and
//! the upstream's own statement log never shows the attempted text (each attempt carries a
//! unique marker; allowed statements' markers must show up, so the check can fail).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postern_audit::Decision;
use postern_e2e::{pg, unique, Postern, Upstream};
use postern_store::AuditFilter;

/// (setup messages run first in the same session, the attempt). `M` in the attempt is
/// replaced by a unique marker, `DB` by the database name.
const REFUSED: &[(&[&str], &str)] = &[
    (&[], "select * from orders /*M*/"),
    (
        &[],
        "select /*M*/ * from products where id in (select product_id from orders)",
    ),
    (&[], "with o as (select * from orders) select /*M*/ * from o"),
    (
        &[],
        "with x as (delete from orders returning *) select /*M*/ * from products",
    ),
    (
        &[],
        "select name /*M*/ from products union select note from orders",
    ),
    (&[], "select /*M*/ * from v_orders"),
    (&[], "select /*M*/ leak()"),
    (&[], "copy orders to stdout /*M*/"),
    (&[], "copy (select * from orders) to stdout /*M*/"),
    (&[], "copy products from program 'id' /*M*/"),
    (&[], "do $$begin perform * from orders; end$$ /*M*/"),
    (&[], "prepare p /*M*/ as select * from orders"),
    (
        &["prepare q as select * from products; set search_path = secret"],
        "execute q /*M*/",
    ),
    (&[], "select * from products; select * from orders /*M*/"),
    (&[], "select * from products /*M*/ ; select * from secret.products"),
    (&[], "select * from \"Orders\" /*M*/"),
    (&[], "select * from public . orders /*M*/"),
    (&[], "select * from U&\"\\006Frders\" /*M*/"),
    (&[], "select * from DB.public.orders /*M*/"),
    (&["set search_path = secret"], "select * from products /*M*/"),
    (
        &["select set_config('search_path', 'secret', false)"],
        "select * from products /*M*/",
    ),
    (&[], "set search_path = secret; select * from products /*M*/"),
    (&[], "set role postgres /*M*/"),
    (&[], "set session authorization postgres /*M*/"),
    (
        &[],
        "select /*M*/ (select note from orders limit 1) from products",
    ),
    (&[], "table orders /*M*/"),
    (
        &[],
        "select * from products p join orders o on o.product_id = p.id /*M*/",
    ),
    (
        &[],
        "select * from products, lateral (select * from orders) o /*M*/",
    ),
    (&[], "values ((select note from orders limit 1)) /*M*/"),
    (&[], "explain analyze select * from orders /*M*/"),
    (&[], "insert into products values (99, 'x', 1) /*M*/"),
    (&[], "update products set price = 0 /*M*/"),
    (&[], "delete from products /*M*/"),
    (&[], "truncate orders /*M*/"),
    (&[], "select * from products for update /*M*/"),
    (&[], "select pg_read_file('/etc/passwd') /*M*/"),
    (&[], "select /*M*/ query_to_xml('select * from orders', true, true, '')"),
    (&[], "select /*M*/ row_to_json(o) from orders o"),
    (&[], "create table stolen as select * from products /*M*/"),
    (&[], "create or replace view v2 as select * from orders /*M*/"),
    (&[], "alter table orders add column x int /*M*/"),
    (&[], "lock table orders /*M*/"),
    (
        &[],
        "merge into orders o using products p on o.product_id = p.id when matched then delete /*M*/",
    ),
    (
        &[],
        "begin; declare c cursor for select * from orders; fetch all from c; commit /*M*/",
    ),
];

/// Statements the role may run; their markers must reach the upstream's log.
const ALLOWED: &[&str] = &[
    "select * from products /*M*/",
    "select count(*) /*M*/ from public.products",
    "with c as (select * from products) select /*M*/ * from c order by id",
    "select * from \"products\" where price > 1 /*M*/",
];

struct Fixture {
    up: Upstream,
    postern: Postern,
    alias: String,
    user: String,
    run: String,
    /// Length of the test cluster's log when the fixture was made: the log checks read
    /// only what came after.
    log_start: u64,
}

const PASSWORD: &str = "policy-password-1";

async fn fixture(mode: &str, extra_roles: serde_json::Value) -> Fixture {
    let pg = pg();
    let log_start = std::fs::metadata(&pg.log).map(|m| m.len()).unwrap_or(0);
    let up = pg.upstream(None).await;
    let su = up.superuser().await;
    // Everything is owned by the upstream role: the database would hand it all over, so
    // only Postern stands between the person and the data.
    su.batch_execute(&format!(
        "SET ROLE {role};
         CREATE TABLE products (id int PRIMARY KEY, name text, price numeric);
         INSERT INTO products VALUES (1, 'pen', 2), (2, 'ink', 5);
         CREATE TABLE orders (id int, product_id int, note text);
         INSERT INTO orders VALUES (1, 1, 'secret note');
         CREATE TABLE \"Orders\" (id int);
         CREATE VIEW v_orders AS SELECT * FROM orders;
         CREATE FUNCTION leak() RETURNS SETOF text LANGUAGE sql AS $$ SELECT note FROM orders $$;
         CREATE SCHEMA secret;
         CREATE TABLE secret.products (id int PRIMARY KEY, name text, price numeric);
         INSERT INTO secret.products VALUES (1, 'classified', 0);
         RESET ROLE;
         ALTER ROLE {role} SET log_statement = 'all';
         ALTER ROLE {role} SET log_min_duration_statement = 0;",
        role = up.role
    ))
    .await
    .unwrap();
    let postern = Postern::start().await;
    let alias = unique("shop");
    let user = unique("pol");
    let mut role = serde_json::json!({
        "modes": { &alias: mode },
        "privileges": [{ "allow": ["SELECT"], "on": format!("{alias}.*.public.products") }],
    });
    if let (Some(r), Some(extra)) = (role.as_object_mut(), extra_roles.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    postern
        .grant_role(&up, &alias, &user, PASSWORD, "disable", role)
        .await;
    Fixture {
        up,
        postern,
        alias,
        user,
        run: unique("mk"),
        log_start,
    }
}

impl Fixture {
    fn text(&self, sql: &str, marker: &str) -> String {
        sql.replace("/*M*/", &format!("/*{marker}*/"))
            .replace("DB.", &format!("{}.", self.up.db))
    }

    fn psql(&self, commands: &[String]) -> std::process::Output {
        let commands: Vec<std::ffi::OsString> = commands.iter().map(Into::into).collect();
        self.psql_raw(&commands, "UTF8")
    }

    fn psql_raw(&self, commands: &[std::ffi::OsString], encoding: &str) -> std::process::Output {
        let mut cmd = self.postern.psql(&self.user, PASSWORD, &self.alias);
        cmd.args(["-At", "-v", "VERBOSITY=verbose"]);
        for c in commands {
            cmd.arg("-c").arg(c);
        }
        cmd.env("PGSSLMODE", "disable")
            .env("PGCLIENTENCODING", encoding)
            .output()
            .unwrap()
    }

    async fn client(&self) -> tokio_postgres::Client {
        self.postern
            .connect(&self.user, PASSWORD, &self.alias)
            .await
            .expect("connects through Postern")
    }

    /// What the test cluster logged since the fixture was made.
    fn upstream_log(&self) -> String {
        let log = std::fs::read(pg().log).expect("test cluster log");
        let from = usize::try_from(self.log_start).unwrap_or(0).min(log.len());
        String::from_utf8_lossy(&log[from..]).into_owned()
    }

    async fn finish(self) {
        self.postern.stop().await;
        self.up.drop_all().await;
    }
}

fn is_refusal(e: &tokio_postgres::Error) -> bool {
    e.code().map(|c| c.code()) == Some("42501")
        && e.as_db_error()
            .is_some_and(|d| d.message().starts_with("Postern refused"))
}

/// Runs every attempt with psql, tokio-postgres' simple protocol and (for single
/// statements) its extended protocol; returns the markers that must never reach the
/// upstream and those that must.
async fn bypass_suite(f: &Fixture, tag: &str) -> (Vec<String>, Vec<String>) {
    let mut never = Vec::new();
    let mut seen = Vec::new();
    for (i, (setup, attempt)) in REFUSED.iter().enumerate() {
        let setup: Vec<String> = setup.iter().map(|s| s.to_string()).collect();
        // psql: one Query message per -c, in one session.
        let marker = format!("{}_{tag}_psql_{i}", f.run);
        let mut commands = setup.clone();
        commands.push(f.text(attempt, &marker));
        let out = f.psql(&commands);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("ERROR:  42501: Postern refused"),
            "{attempt}: {stderr}"
        );
        assert_eq!(stderr.matches("ERROR").count(), 1, "{attempt}: {stderr}");
        never.push(marker);

        // tokio-postgres, simple protocol.
        let c = f.client().await;
        for s in &setup {
            c.batch_execute(s)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        let marker = format!("{}_{tag}_simple_{i}", f.run);
        let e = c
            .simple_query(&f.text(attempt, &marker))
            .await
            .expect_err(attempt);
        assert!(is_refusal(&e), "{attempt}: {e:?}");
        never.push(marker);
        // The session stays usable (qualified: a setup may have moved the search_path).
        let rows = c.query("select count(*) from public.products", &[]).await;
        if attempt.starts_with("begin") {
            // The refused statement was the transaction's first: nothing is open.
            assert!(rows.is_ok(), "{rows:?}");
        } else {
            assert_eq!(rows.unwrap()[0].get::<_, i64>(0), 2);
        }

        // tokio-postgres, extended protocol: refused at Parse.
        if !attempt.contains(';') && setup.is_empty() {
            let marker = format!("{}_{tag}_ext_{i}", f.run);
            let e = c
                .query(&f.text(attempt, &marker), &[])
                .await
                .expect_err(attempt);
            assert!(is_refusal(&e), "{attempt}: {e:?}");
            never.push(marker);
        }
    }
    let c = f.client().await;
    for (i, sql) in ALLOWED.iter().enumerate() {
        let marker = format!("{}_{tag}_ok_{i}", f.run);
        c.simple_query(&f.text(sql, &marker))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        seen.push(marker);
        let marker = format!("{}_{tag}_okext_{i}", f.run);
        c.query(&f.text(sql, &marker), &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        seen.push(marker);
    }
    let out = f.psql(&[f.text(ALLOWED[0], &format!("{}_{tag}_okpsql", f.run))]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1|pen|2\n2|ink|5\n");
    seen.push(format!("{}_{tag}_okpsql", f.run));
    (never, seen)
}

fn assert_upstream_log(f: &Fixture, never: &[String], seen: &[String]) {
    // The server writes its log asynchronously to our reads: give it a moment.
    let mut log = f.upstream_log();
    for _ in 0..50 {
        if seen.iter().all(|m| log.contains(m.as_str())) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = f.upstream_log();
    }
    for m in seen {
        assert!(
            log.contains(m.as_str()),
            "allowed statement {m} missing from the upstream log"
        );
    }
    for m in never {
        assert!(
            !log.contains(m.as_str()),
            "refused statement {m} reached the upstream"
        );
    }
    assert!(
        log.contains("postern_refused_"),
        "refusals reach the server as Postern's replacement statement (since this test began)"
    );
}

async fn extended_protocol_corners(f: &Fixture) {
    let c = f.client().await;
    // Pipelining: three queries in flight, the middle one refused; the others are fine.
    let (a, b, d) = tokio::join!(
        c.query("select id from products order by id", &[]),
        c.query("select * from orders", &[]),
        c.query("select count(*) from products", &[]),
    );
    assert_eq!(a.unwrap().len(), 2);
    assert!(is_refusal(&b.unwrap_err()));
    assert_eq!(d.unwrap()[0].get::<_, i64>(0), 2);

    // Transactions: a refused statement fails the transaction like any failed statement.
    c.batch_execute("begin").await.unwrap();
    c.query("select * from products", &[]).await.unwrap();
    assert!(is_refusal(
        &c.query("select * from orders", &[]).await.unwrap_err()
    ));
    let e = c.query("select 1", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"), "{e:?}");
    c.batch_execute("rollback").await.unwrap();
    assert_eq!(
        c.query("select count(*) from products", &[]).await.unwrap()[0].get::<_, i64>(0),
        2
    );

    // A statement prepared under one search_path is judged again when bound under another
    // (the server would re-resolve `products` to secret.products).
    let st = c
        .prepare("select name from products where id = $1")
        .await
        .unwrap();
    let rows = c.query(&st, &[&1i32]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "pen");
    c.batch_execute("set search_path = secret, public")
        .await
        .unwrap();
    assert!(is_refusal(&c.query(&st, &[&1i32]).await.unwrap_err()));
    c.batch_execute("set search_path = public").await.unwrap();
    let rows = c.query(&st, &[&1i32]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "pen");
}

async fn refusals_are_audited(f: &Fixture) {
    let events = f
        .postern
        .audit(AuditFilter {
            user: Some(f.user.clone()),
            kind: Some("statement".into()),
            limit: Some(10_000),
            ..AuditFilter::default()
        })
        .await;
    let denied: Vec<_> = events
        .iter()
        .filter(|e| e.decision == Some(Decision::Deny))
        .collect();
    assert!(denied.len() >= REFUSED.len() * 2, "{}", denied.len());
    let e = denied
        .iter()
        .find(|e| {
            e.statement
                .as_deref()
                .is_some_and(|s| s.starts_with("select * from orders /*"))
        })
        .expect("the refused statement is on record with its own text");
    assert_eq!(e.sqlstate.as_deref(), Some("42501"));
    assert!(
        e.reason.as_deref().unwrap_or("").contains("public.orders"),
        "{e:?}"
    );
    assert!(events
        .iter()
        .any(|e| e.decision == Some(Decision::Allow) && e.error.is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn bypass_suite_masked_mode() {
    let f = fixture("masked", serde_json::json!({})).await;
    let (never, seen) = bypass_suite(&f, "masked").await;
    extended_protocol_corners(&f).await;
    assert_upstream_log(&f, &never, &seen);
    refusals_are_audited(&f).await;
    // A client in LATIN1: ASCII statements are read as the server reads them and pass;
    // non-ASCII text would be converted by the server first, so it is refused (the session
    // goes on).
    use std::os::unix::ffi::OsStrExt;
    let latin1 = |sql: &[u8]| std::ffi::OsStr::from_bytes(sql).to_os_string();
    let out = f.psql_raw(
        &[
            latin1(b"select name from products where name <> '\xe9' order by id"),
            latin1(b"select count(*) from products"),
        ],
        "LATIN1",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR:  22021: Postern refused"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n", "{stderr}");

    // Fast-path function calls (libpq's large-object functions, here psql's \lo_import)
    // name the function by OID, which Postern cannot check: refused.
    let file = f.postern.dir.path().join("lo.txt");
    std::fs::write(&file, "large object").unwrap();
    let out = f.psql(&[format!("\\lo_import {}", file.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("fast-path function call"), "{stderr}");

    // MASKED lets through what it cannot analyse.
    let c = f.client().await;
    c.batch_execute("begin; set constraints all deferred; commit")
        .await
        .unwrap();
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bypass_suite_protected_mode() {
    let f = fixture("protected", serde_json::json!({})).await;
    let (mut never, seen) = bypass_suite(&f, "protected").await;
    extended_protocol_corners(&f).await;

    // psql's own catalog queries work (\d, \dt, \df, \l): reading the catalogs needs no grant.
    for meta in [
        "\\d products",
        "\\dt",
        "\\dv",
        "\\df",
        "\\dn",
        "\\l",
        "\\du",
    ] {
        let out = f.psql(&[meta.to_string()]);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{meta}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // PROTECTED refuses what it cannot analyse, and text that does not parse (with the
    // parser's own message), before the server sees either.
    let c = f.client().await;
    let marker = format!("{}_unanalysable", f.run);
    let e = c
        .simple_query(&format!("set constraints all deferred /*{marker}*/"))
        .await
        .unwrap_err();
    assert!(is_refusal(&e), "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("allow-list"));
    never.push(marker);
    let marker = format!("{}_syntax", f.run);
    let e = c
        .simple_query(&format!("selec * from orders /*{marker}*/"))
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42601"), "{e:?}");
    never.push(marker);
    assert_upstream_log(&f, &never, &seen);
    refusals_are_audited(&f).await;

    // …unless an admin puts its exact text on the datasource's allow-list.
    let ds = f
        .postern
        .handle
        .store
        .datasource(&f.alias)
        .await
        .unwrap()
        .unwrap();
    let mut doc: postern_core::ApplyDocument = serde_json::from_value(serde_json::json!({
        "datasource": [ds]
    }))
    .unwrap();
    doc.datasource[0].allow_list = vec!["set constraints all deferred".into()];
    f.postern.handle.store.apply(&doc).await.unwrap();
    let c = f.client().await;
    c.batch_execute("begin").await.unwrap();
    c.batch_execute("set constraints all deferred;")
        .await
        .unwrap();
    c.batch_execute("commit").await.unwrap();
    f.finish().await;
}

fn firewall_rule(name: &str, action: &str, when: &[&str]) -> serde_json::Value {
    serde_json::json!({ "name": name, "action": action, "when": when })
}

#[tokio::test(flavor = "multi_thread")]
async fn firewall_rules_fire_through_the_proxy() {
    let f = fixture(
        "masked",
        serde_json::json!({
            "privileges": [{ "allow": ["SELECT", "UPDATE", "DELETE"], "on": "*.*.public.products" }],
        }),
    )
    .await;
    let ds = f
        .postern
        .handle
        .store
        .datasource(&f.alias)
        .await
        .unwrap()
        .unwrap();
    let mut doc: postern_core::ApplyDocument =
        serde_json::from_value(serde_json::json!({ "datasource": [ds] })).unwrap();
    doc.datasource[0].firewall = serde_json::from_value(serde_json::json!([
        firewall_rule("no-blind-writes", "deny", &["modify-without-where"]),
        firewall_rule("quiet-multi", "deny-silently", &["multi-statement"]),
        firewall_rule("watch-tautologies", "allow-and-alert", &["tautology"]),
    ]))
    .unwrap();
    f.postern.handle.store.apply(&doc).await.unwrap();
    let c = f.client().await;

    // modify-without-where: fires on a blind UPDATE, silent with a WHERE.
    let e = c
        .simple_query("update products set price = price")
        .await
        .unwrap_err();
    assert!(is_refusal(&e));
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("no-blind-writes"));
    c.simple_query("update products set price = price where id = 1")
        .await
        .unwrap();
    // deny-silently: refused without naming the rule; a single statement passes.
    let e = c
        .simple_query("select 1 from products; select 2 from products")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"));
    assert!(!e.as_db_error().unwrap().message().contains("quiet-multi"));
    c.simple_query("select 1 from products").await.unwrap();
    // allow-and-alert: runs, and the audit event carries the alert.
    let rows = c
        .query("select id from products where id = 1 or 1 = 1", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    c.query("select id from products where id = 1 or id = 2", &[])
        .await
        .unwrap();

    let events = f
        .postern
        .audit(AuditFilter {
            user: Some(f.user.clone()),
            kind: Some("statement".into()),
            limit: Some(1000),
            ..AuditFilter::default()
        })
        .await;
    let by_text = |prefix: &str| {
        events
            .iter()
            .find(|e| {
                e.statement
                    .as_deref()
                    .is_some_and(|s| s.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("no event for {prefix}: {events:#?}"))
    };
    let quiet = by_text("select ? from products; select ?");
    assert_eq!(quiet.decision, Some(Decision::Deny));
    assert_eq!(quiet.rule.as_deref(), Some("firewall: quiet-multi"));
    let alerted = by_text("select id from products where id = ? or ? = ?");
    assert!(alerted.alert, "{alerted:?}");
    assert_eq!(alerted.rule.as_deref(), Some("firewall: watch-tautologies"));
    let near_miss = by_text("select id from products where id = ? or id = ?");
    assert!(
        !near_miss.alert && near_miss.rule.is_none(),
        "{near_miss:?}"
    );
    f.finish().await;
}

/// What an admin changes reaches sessions already open: a revoked privilege refuses the next
/// statement (prepared ones too), a disabled user's sessions end — also in PASSTHROUGH mode.
#[tokio::test(flavor = "multi_thread")]
async fn policy_changes_reach_live_sessions() {
    let f = fixture("masked", serde_json::json!({})).await;
    let role = format!("{}-role", f.alias);
    let apply = |doc: serde_json::Value| async {
        let doc: postern_core::ApplyDocument = serde_json::from_value(doc).unwrap();
        f.postern.handle.store.apply(&doc).await.unwrap();
    };
    let c = f.client().await;
    let st = c
        .prepare("select name from products where id = $1")
        .await
        .unwrap();
    assert_eq!(c.query(&st, &[&1i32]).await.unwrap().len(), 1);

    // The role loses its SELECT: the same session is refused at once.
    apply(serde_json::json!({ "role": [{
        "name": role, "credentials": [format!("{}-cred", f.alias)],
        "modes": { &f.alias: "masked" }, "privileges": [],
    }]}))
    .await;
    assert!(is_refusal(
        &c.query("select count(*) from products", &[])
            .await
            .unwrap_err()
    ));
    assert!(is_refusal(&c.query(&st, &[&1i32]).await.unwrap_err()));

    // PASSTHROUGH given back: everything passes again, unchecked.
    apply(serde_json::json!({ "role": [{
        "name": role, "credentials": [format!("{}-cred", f.alias)],
        "modes": { &f.alias: "passthrough" },
    }]}))
    .await;
    assert_eq!(
        c.query("select count(*) from orders", &[]).await.unwrap()[0].get::<_, i64>(0),
        1
    );

    // The user is disabled: the session ends with a message saying why.
    apply(serde_json::json!({ "user": [{ "name": f.user, "roles": [role], "disabled": true }] }))
        .await;
    let e = c.simple_query("select 1").await.unwrap_err();
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("a FATAL from Postern, not {e:?}"));
    assert_eq!(db.code().code(), "57P01", "{e:?}");
    assert!(db.message().contains("disabled"), "{}", db.message());
    assert!(c.is_closed() || c.simple_query("select 1").await.is_err());
    f.finish().await;
}
