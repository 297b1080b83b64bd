//! Data masking on the wire (A4), through the real proxy: a user subject to a masking
//! policy sees masked values in psql (text format) and in a Rust client (binary format),
//! whatever SQL they write; a user whose role REVEALs the rules sees clear values. Every
//! bypass attempt asserts that no clear value appears in anything the client receives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postern_e2e::{pg, unique, Cli, Postern, Upstream};
use postern_store::AuditFilter;
use tokio_postgres::types::{FromSql, Type};

const EMAIL: &str = "alice@corp.example";
const CARD: &str = "4111-1111-1111-1234";
const SSN: &str = "123-45-6789";
const SALARY: &str = "98765.43";
const BIRTH: &str = "1987-06-15";
const UID: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
/// Every clear value of the masked columns (the uuid also without dashes, as a hex dump
/// would show it).
const CLEAR: &[&str] = &[
    EMAIL,
    CARD,
    SSN,
    SALARY,
    BIRTH,
    UID,
    "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    "alice@",
    "123456789",
];

struct Fixture {
    postern: Postern,
    up: Upstream,
    alias: String,
}

async fn setup(mode: &str) -> Fixture {
    setup_with(mode, |_| {}).await
}

async fn setup_with(mode: &str, tweak: impl FnOnce(&mut postern::config::Config)) -> Fixture {
    let up = pg().upstream(None).await;
    let su = up.superuser().await;
    su.batch_execute(&format!(
        "CREATE TABLE customers (id int primary key, name text, email text, card text, \
           ssn text, salary numeric(10,2), birth date, uid uuid);
         INSERT INTO customers VALUES (1, 'Alice', '{EMAIL}', '{CARD}', '{SSN}', {SALARY}, \
           '{BIRTH}', '{UID}');
         CREATE TABLE notes (id int, body text);
         INSERT INTO notes VALUES (1, 'hello');
         CREATE VIEW v_customers AS SELECT id, ssn, upper(email) AS e FROM customers;
         CREATE FUNCTION get_ssn(i int) RETURNS text LANGUAGE sql AS \
           'SELECT ssn FROM customers WHERE id = i';
         ALTER TABLE customers OWNER TO {role}; ALTER TABLE notes OWNER TO {role};
         ALTER VIEW v_customers OWNER TO {role}; ALTER FUNCTION get_ssn(int) OWNER TO {role};",
        role = up.role
    ))
    .await
    .unwrap();
    let postern = Postern::start_with(tweak).await;
    let alias = unique("mask");
    postern
        .apply_yaml(
            r#"
masking-policy:
  - name: pii
    priority: 10
    rules:
      - { name: emails, on: "*.*.*.*.*email*", function: email }
      - { name: cards, on: "*.*.public.customers.card", function: credit_card }
      - { name: ssn, on: "*.*.public.customers.ssn", function: "partial(0, 4)" }
      - { name: salary, on: "*.*.public.customers.salary", function: full }
      - { name: birth, on: "*.*.public.customers.birth", function: date_year_only }
      - { name: uid, on: "*.*.public.customers.uid", function: hash }
"#,
        )
        .await;
    let role = serde_json::json!({
        "modes": { &alias: mode },
        "privileges": [{"allow": ["ALL"], "on": format!("{alias}.*.public.*")}],
        "masking": ["pii"],
    });
    postern
        .grant_role(&up, &alias, "analyst", "analyst-pw", "disable", role)
        .await;
    // An exempt user: a second role on the same credential that REVEALs every rule.
    let reveal: Vec<String> = ["emails", "cards", "ssn", "salary", "birth", "uid"]
        .iter()
        .map(|r| format!("pii/{r}"))
        .collect();
    postern
        .apply_yaml(&format!(
            "role:\n  - name: auditors\n    credentials: [{alias}-cred]\n    modes: {{ {alias}: {mode} }}\n    privileges: [{{ allow: [ALL], on: \"{alias}.*.public.*\" }}]\n    masking: [pii]\n    reveal: {reveal:?}\nuser:\n  - name: auditor\n    roles: [auditors]\n"
        ))
        .await;
    postern
        .handle
        .store
        .set_password("auditor", "auditor-pw")
        .await
        .unwrap();
    Fixture { postern, up, alias }
}

impl Fixture {
    /// Runs `sql` in psql as `user`: (exit ok, stdout + stderr).
    fn psql(&self, user: &str, sql: &str) -> (bool, String) {
        let out = self
            .postern
            .psql(user, &format!("{user}-pw"), &self.alias)
            .env("PGSSLMODE", "disable")
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    async fn done(self) {
        self.postern.stop().await;
        self.up.drop_all().await;
    }
}

fn assert_no_clear(sql: &str, text: &str) {
    for c in CLEAR {
        assert!(!text.contains(c), "{sql}: clear value {c:?} in {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_in_text_and_binary_clear_for_exempt() {
    let f = setup("masked").await;
    let (ok, out) = f.psql(
        "analyst",
        "select id, name, email, card, ssn, salary, birth, uid from customers",
    );
    assert!(ok, "{out}");
    assert_no_clear("select", &out);
    let cols: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(cols[0], "1");
    assert_eq!(cols[1], "Alice", "unmasked columns stay clear");
    assert_eq!(cols[2], "a***@corp.example");
    assert_eq!(cols[3], "****-****-****-1234");
    assert_eq!(cols[4], "*******6789");
    assert_eq!(cols[5], "0");
    assert_eq!(cols[6], "1987-01-01");
    assert_eq!(cols[7].len(), 36, "a valid uuid: {}", cols[7]);
    let masked_uid = cols[7].to_string();
    // Hash masking is stable across sessions.
    let (_, again) = f.psql("analyst", "select uid from customers");
    assert_eq!(again.trim(), masked_uid);

    let (ok, out) = f.psql("analyst", "select upper(email) as shout from customers");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "****");

    // A result far larger than one read: every row masked, none lost or mis-framed.
    let (ok, out) = f.psql(
        "analyst",
        "select c.ssn, g, c.name from customers c, generate_series(1, 20000) g order by g",
    );
    assert!(ok, "{}", &out[..out.len().min(500)]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 20000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("*******6789|{}|Alice", i + 1));
    }

    // The exempt user sees everything in clear.
    let (ok, clear) = f.psql(
        "auditor",
        "select email, card, ssn, salary, birth, uid from customers",
    );
    assert!(ok, "{clear}");
    assert_eq!(
        clear.trim(),
        format!("{EMAIL}|{CARD}|{SSN}|{SALARY}|{BIRTH}|{UID}")
    );

    // A Rust client asks for binary results: values stay valid for their types.
    let c = f
        .postern
        .connect("analyst", "analyst-pw", &f.alias)
        .await
        .unwrap();
    let row = c
        .query_one(
            "select email, ssn, salary, birth, uid, name from customers where id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    let email: String = row.get(0);
    assert_eq!(email, "a***@corp.example");
    let ssn: String = row.get(1);
    assert_eq!(ssn, "*******6789");
    let salary: Raw = row.get(2);
    assert_eq!(salary.0, vec![0, 0, 0, 0, 0, 0, 0, 0], "numeric zero");
    let birth: Raw = row.get(3);
    // 1987-01-01 is 4748 days before 2000-01-01.
    assert_eq!(birth.0, (-4748i32).to_be_bytes().to_vec());
    let uid: Raw = row.get(4);
    assert_eq!(uid.0.len(), 16);
    let hex: String = uid.0.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        masked_uid.replace('-', ""),
        "same hash in binary and text"
    );
    let name: String = row.get(5);
    assert_eq!(name, "Alice");
    // Prepared once, executed again without a new Describe.
    let st = c.prepare("select ssn, uid from customers").await.unwrap();
    for _ in 0..2 {
        let r = c.query_one(&st, &[]).await.unwrap();
        let ssn: String = r.get(0);
        assert_eq!(ssn, "*******6789");
    }

    // The audit trail says which columns were masked by which rule.
    let events = f
        .postern
        .audit(AuditFilter {
            user: Some("analyst".into()),
            kind: Some("statement".into()),
            limit: Some(1000),
            ..AuditFilter::default()
        })
        .await;
    let of = |prefix: &str| {
        events
            .iter()
            .find(|e| {
                e.statement
                    .as_deref()
                    .is_some_and(|s| s.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("no event for {prefix}"))
    };
    let masked = |e: &postern_audit::AuditEvent| -> Vec<(String, String, String)> {
        e.masked
            .iter()
            .map(|m| (m.column.clone(), m.rule.clone(), m.function.clone()))
            .collect()
    };
    let t = |c: &str, r: &str, f: &str| (c.to_string(), r.to_string(), f.to_string());
    // Simple query (psql).
    assert_eq!(
        masked(of("select id, name, email, card, ssn")),
        vec![
            t("email", "pii/emails", "email"),
            t("card", "pii/cards", "credit_card"),
            t("ssn", "pii/ssn", "partial(0, 4)"),
            t("salary", "pii/salary", "full"),
            t("birth", "pii/birth", "date_year_only"),
            t("uid", "pii/uid", "hash"),
        ]
    );
    // Extended protocol, and a computed column.
    assert_eq!(
        masked(of("select ssn, uid from customers")),
        vec![
            t("ssn", "pii/ssn", "partial(0, 4)"),
            t("uid", "pii/uid", "hash")
        ]
    );
    assert_eq!(
        masked(of("select upper(email) as shout")),
        vec![t("shout", "pii/emails (computed)", "full")]
    );
    let e = of("select email, ssn, salary, birth, uid, name from customers where id = $1");
    assert_eq!(masked(e).len(), 5, "{e:?}");
    f.done().await;
}

/// The value of any column, as sent.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// (SQL, whether Postern must refuse it). Allowed ones must come back masked.
const BYPASS: &[(&str, bool)] = &[
    ("select email as x, ssn as y from customers", false),
    ("select * from customers", false),
    ("select * from v_customers", false),
    ("with c as (select * from customers) select * from c", false),
    ("select x from (select ssn as x from customers) s", false),
    ("select (select ssn from customers limit 1)", false),
    (
        "select body from notes union all select ssn from customers",
        false,
    ),
    (
        "select body from notes union select email from customers",
        true,
    ),
    (
        "select concat(ssn, ''), upper(email), substr(card, 1, 9), left(ssn, 3), \
         ssn::varchar, salary::text, birth::text, uid::text from customers",
        false,
    ),
    ("select row_to_json(c) from customers c", false),
    (
        "select array_agg(ssn), string_agg(email, ','), json_agg(c) from customers c",
        false,
    ),
    ("copy (select ssn from customers) to stdout", true),
    ("copy customers to stdout", true),
    (
        "update customers set name = name returning ssn, email, upper(card)",
        false,
    ),
    (
        "prepare p as select ssn, email from customers; execute p",
        false,
    ),
    ("select id from customers where ssn like '1%'", true),
    ("select id from customers order by ssn", true),
    (
        "select a.id from customers a join customers b on a.ssn = b.ssn",
        true,
    ),
    ("select get_ssn(1)", false),
    ("select id from customers where get_ssn(id) like '1%'", true),
    ("create table stolen2 as select get_ssn(1) as s", true),
    (
        "do $$ begin raise notice '%', (select ssn from customers limit 1); end $$",
        true,
    ),
    ("update customers set name = ssn", true),
    ("create table stolen as select email from customers", true),
    ("select * from pg_stats where tablename = 'customers'", true),
    ("select count(*) from customers group by email", true),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_attempts_never_show_clear_values() {
    let f = setup("masked").await;
    for (sql, refused) in BYPASS {
        let (ok, out) = f.psql("analyst", sql);
        assert_no_clear(sql, &out);
        if *refused {
            assert!(!ok, "{sql}: should be refused: {out}");
            assert!(out.contains("Postern refused"), "{sql}: {out}");
        } else {
            assert!(ok, "{sql}: should run (masked): {out}");
        }
    }
    // The table still holds the clear values (nothing was changed by the attempts).
    let su = f.up.superuser().await;
    let r = su
        .query_one("select ssn, name from customers", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), SSN);
    assert_eq!(r.get::<_, String>(1), "Alice");
    f.done().await;
}

/// Statements the server rejects or comments on with text that would quote a masked value,
/// with the SQLSTATE the client must still get.
const LEAKY_ERRORS: &[(&str, &str)] = &[
    ("select ssn::int from customers", "22P02"),
    ("select email::int, name from customers", "22P02"),
    ("select uid::text::numeric from customers", "22P02"),
    ("select birth::text::int from customers", "22P02"),
    (
        "select x::int from (select ssn as x from customers) s",
        "22P02",
    ),
    ("select e::int from v_customers", "22P02"),
    // A violated check constraint's detail shows the failing row.
    ("update customers set name = 'Bob', salary = -1", "23514"),
    // A function that raises with its argument (RAISE EXCEPTION and NOTICE).
    ("select boom(ssn) from customers", "P0001"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_notices_never_quote_masked_values() {
    let f = setup("masked").await;
    let su = f.up.superuser().await;
    su.batch_execute(&format!(
        "ALTER TABLE customers ADD CONSTRAINT salary_positive CHECK (salary >= 0);
         CREATE FUNCTION boom(t text) RETURNS text LANGUAGE plpgsql AS \
           'BEGIN RAISE NOTICE ''saw %'', t; RAISE EXCEPTION ''bad %'', t \
            USING DETAIL = t, HINT = t; END';
         CREATE FUNCTION shout(t text) RETURNS text LANGUAGE plpgsql AS \
           'BEGIN RAISE NOTICE ''saw %'', t; RETURN upper(t); END';
         ALTER FUNCTION boom(text) OWNER TO {role}; ALTER FUNCTION shout(text) OWNER TO {role};",
        role = f.up.role
    ))
    .await
    .unwrap();
    // Directly, the server quotes the values: the cases below really would leak.
    let direct = su
        .batch_execute("select ssn::int from customers")
        .await
        .unwrap_err();
    assert!(format!("{direct:?}").contains(SSN), "{direct:?}");

    for (sql, sqlstate) in LEAKY_ERRORS {
        let out = f
            .postern
            .psql("analyst", "analyst-pw", &f.alias)
            .env("PGSSLMODE", "disable")
            .args(["-At", "-v", "VERBOSITY=verbose", "-c", sql])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{sql}: should fail: {text}");
        assert_no_clear(sql, &text);
        assert!(
            text.contains(&format!("ERROR:  {sqlstate}:")),
            "{sql}: SQLSTATE {sqlstate} kept: {text}"
        );
        assert!(text.contains("hidden by Postern"), "{sql}: {text}");
    }
    // A notice from a statement that succeeds.
    let (ok, out) = f.psql("analyst", "select shout(ssn) from customers");
    assert!(ok, "{out}");
    assert_no_clear("shout", &out);
    assert!(
        out.contains("NOTICE:") && out.contains("hidden by Postern"),
        "{out}"
    );
    // Errors of statements that read nothing masked keep their text.
    let (ok, out) = f.psql("analyst", "select body::int from notes");
    assert!(!ok);
    assert!(
        out.contains("invalid input syntax") && out.contains("hello"),
        "{out}"
    );

    // The extended protocol (a Rust client): the same.
    let c = f
        .postern
        .connect("analyst", "analyst-pw", &f.alias)
        .await
        .unwrap();
    let err = c
        .query("select ssn::int from customers where id = $1", &[&1i32])
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22P02");
    assert!(db.message().contains("hidden by Postern"), "{db:?}");
    assert_no_clear("extended", &format!("{db:?}"));
    // The session goes on.
    let r = c.query_one("select ssn from customers", &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), "*******6789");
    // The audit trail records the hidden text too.
    let events = f
        .postern
        .audit(AuditFilter {
            user: Some("analyst".into()),
            kind: Some("statement".into()),
            limit: Some(1000),
            ..AuditFilter::default()
        })
        .await;
    assert!(!events.is_empty());
    for e in &events {
        assert_no_clear("audit", &serde_json::to_string(e).unwrap());
    }
    f.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_mode_refuses_what_it_cannot_follow() {
    let f = setup("protected").await;
    let (ok, out) = f.psql("analyst", "select get_ssn(1)");
    assert!(!ok, "{out}");
    assert!(out.contains("get_ssn"), "{out}");
    assert_no_clear("get_ssn", &out);
    let (ok, out) = f.psql("analyst", "select upper(email) from customers");
    assert!(ok, "{out}");
    assert_no_clear("upper", &out);
    f.done().await;
}

/// `postern policy check` shows the masking plan a session would apply (read from the
/// upstream catalog with the user's credential) and the guards' refusals; for an exempt
/// user it shows none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_shows_the_masking_plan() {
    let f = setup("masked").await;
    let cli = Cli::admin(&f.postern);
    let check = |user: &str, sql: &str| {
        let out = cli.run(
            &[
                "policy",
                "check",
                "--user",
                user,
                "--datasource",
                &f.alias,
                sql,
            ],
            None,
        );
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = check("analyst", "select id, email, upper(ssn) from customers");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("masking rules: pii/emails, pii/cards"),
        "{out}"
    );
    assert!(
        out.contains("masks result column #2 with email (rule pii/emails)"),
        "{out}"
    );
    assert!(
        out.contains("masks result column #3 with full (rule pii/ssn (computed))"),
        "{out}"
    );
    assert!(!out.contains("column #1 "), "id is not masked: {out}");
    // A view, and `*`: the masked columns of what it reads.
    let (_, out) = check("analyst", "select * from v_customers");
    assert!(
        out.contains("masks result column #1 (v_customers.ssn) with partial(0, 4) (rule pii/ssn)"),
        "{out}"
    );
    // The inference guard refuses as the proxy would.
    let (code, out) = check("analyst", "select id from customers where ssn like '1%'");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("DENY: masked column ssn (rule pii/ssn)"),
        "{out}"
    );
    // The exempt user: no masking at all.
    let (code, out) = check("auditor", "select ssn from customers where ssn like '1%'");
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("masks result column"), "{out}");
    // JSON carries the same plan.
    let out = cli.ok(
        &[
            "policy",
            "check",
            "--json",
            "--user",
            "analyst",
            "--datasource",
            &f.alias,
            "select card from customers",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["statements"][0]["masked"][0],
        serde_json::json!({"column": "#1", "rule": "pii/cards", "function": "credit_card"})
    );
    f.done().await;
}

/// The catalog snapshot a session masks by is read again after the session's own schema
/// change (at once) and after others' (once it is older than the configured age), so new
/// tables and columns that rules cover are masked in a session already open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_reach_open_sessions() {
    let f = setup_with("masked", |c| {
        c.postgres.masking_catalog_max_age = std::time::Duration::from_secs(1)
    })
    .await;
    let c = f
        .postern
        .connect("analyst", "analyst-pw", &f.alias)
        .await
        .unwrap();
    // The session's own DDL: a new table with a column the e-mail rule covers.
    c.batch_execute(
        "create table mine (id int, my_email text);          insert into mine values (1, 'bob@home.example')",
    )
    .await
    .unwrap();
    let r = c.query_one("select my_email from mine", &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), "b***@home.example");
    let r = c
        .simple_query("select id, my_email from mine")
        .await
        .unwrap();
    let row = r
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(1).map(str::to_string)),
            _ => None,
        })
        .flatten();
    assert_eq!(row.as_deref(), Some("b***@home.example"));

    // Someone else adds a covered column to a table the session already reads in clear.
    let before: String = c
        .query_one("select body from notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, "hello");
    let su = f.up.superuser().await;
    su.batch_execute(&format!(
        "alter table notes add column backup_email text;          update notes set backup_email = '{EMAIL}'"
    ))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    for _ in 0..2 {
        let r = c
            .query_one("select backup_email, body from notes", &[])
            .await
            .unwrap();
        assert_eq!(r.get::<_, String>(0), "a***@corp.example");
        assert_eq!(r.get::<_, String>(1), "hello");
    }
    let (ok, out) = f.psql("analyst", "select * from notes");
    assert!(ok, "{out}");
    assert_no_clear("select * from notes", &out);
    // Inside a transaction block Postern runs nothing of its own: still masked after it.
    c.batch_execute("begin").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = c
        .query_one("select backup_email from notes", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "a***@corp.example");
    c.batch_execute("commit").await.unwrap();
    let r = c
        .query_one("select backup_email from notes", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "a***@corp.example");
    drop(c);
    f.done().await;
}

/// Masking rules that start to apply in the middle of a transaction block, where Postern
/// runs no query of its own to learn what they cover: every value is masked until the
/// block ends, then the rules mask exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masking_granted_inside_a_transaction_fails_closed() {
    let f = setup("masked").await;
    let c = f
        .postern
        .connect("auditor", "auditor-pw", &f.alias)
        .await
        .unwrap();
    c.batch_execute("begin").await.unwrap();
    let r = c
        .query_one("select ssn, id from customers", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), SSN, "exempt: clear");
    // The admin takes the exemption away while the transaction is open.
    f.postern
        .apply_yaml(&format!(
            "role:\n  - name: auditors\n    credentials: [{alias}-cred]\n    modes: {{ {alias}: masked }}\n    privileges: [{{ allow: [ALL], on: \"{alias}.*.public.*\" }}]\n    masking: [pii]\n    reveal: []\n",
            alias = f.alias
        ))
        .await;
    let r = c
        .query_one("select ssn, name from customers", &[])
        .await
        .unwrap();
    assert_eq!(
        r.get::<_, String>(0),
        "****",
        "unknown coverage: fully masked"
    );
    assert_eq!(
        r.get::<_, String>(1),
        "****",
        "every value, not only covered ones"
    );
    let err = c
        .simple_query("copy (select name from customers) to stdout")
        .await
        .unwrap_err();
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("masking rules changed"), "{err:?}");
    c.batch_execute("rollback").await.unwrap();
    // Outside the block the catalog is read: exact masks again.
    let r = c
        .query_one("select ssn, name from customers", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "*******6789");
    assert_eq!(r.get::<_, String>(1), "Alice");
    drop(c);
    f.done().await;
}
