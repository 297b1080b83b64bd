//! Statement checks on the MySQL port, end to end: object privileges, modes, the firewall and
//! the bypass suite in MySQL syntax, through the real `mariadb` client and sqlx to MariaDB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postern_audit::Decision;
use postern_e2e::{my, MyUpstream, Postern};
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{Connection, Row};

const PW: &str = "Correct-Horse-42";

fn opts(p: &Postern, user: &str, alias: &str) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(p.mysql_port())
        .username(user)
        .password(PW)
        .database(alias)
        .ssl_mode(MySqlSslMode::Disabled)
}

fn tables(up: &MyUpstream) {
    up.root_sql(
        "CREATE TABLE products (id INT PRIMARY KEY, name TEXT); \
         INSERT INTO products VALUES (1, 'lamp'), (2, 'desk'); \
         CREATE TABLE secrets (id INT PRIMARY KEY, secret TEXT); \
         INSERT INTO secrets VALUES (1, 'the-crown-jewels');",
    );
}

/// Runs `sql` with the mariadb client; (success, stdout, stderr).
fn run(p: &Postern, user: &str, alias: &str, sql: &str) -> (bool, String, String) {
    let out = p
        .mysql(user, PW, alias)
        .args(["-N", "-B", "-e", sql])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn refused(r: (bool, String, String), needle: &str) {
    let (ok, out, err) = r;
    assert!(
        !ok && err.contains("ERROR 1142 (42000)") && err.contains(needle),
        "expected Postern's refusal naming {needle:?}; out {out:?} err {err:?}"
    );
    assert!(!out.contains("the-crown-jewels"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn privileges_and_the_bypass_suite_in_mysql_syntax() {
    let my = my();
    let up = my.upstream();
    tables(&up);
    let p = Postern::start().await;
    let alias = "mshop";
    let db = up.db.clone();
    p.grant_mysql(
        &up,
        alias,
        "alice",
        PW,
        serde_json::json!({
            "privileges": [{ "allow": ["SELECT"], "on": format!("{alias}.{db}.{db}.products") }],
        }),
    )
    .await;

    // Allowed: the granted table, in any of its spellings; catalog reads.
    let (ok, out, err) = run(&p, "alice", alias, "SELECT name FROM products ORDER BY id");
    assert!(ok && out == "lamp\ndesk\n", "{out} {err}");
    for sql in [
        format!("SELECT name FROM `{db}`.`products` WHERE id = 1"),
        "SELECT name FROM products WHERE id = 1 # a comment".to_string(),
        "SHOW TABLES".to_string(),
        "DESCRIBE products".to_string(),
        "PREPARE s FROM 'SELECT name FROM products WHERE id = ?'; SET @i = 1; EXECUTE s USING @i"
            .to_string(),
        "SELECT CONCAT(name, '!') FROM products WHERE id = 2".to_string(),
    ] {
        let (ok, out, err) = run(&p, "alice", alias, &sql);
        assert!(ok, "{sql}: {out} {err}");
    }

    // Refused, however the text hides the other table.
    for (sql, needle) in [
        ("SELECT * FROM secrets", "secrets"),
        ("SELECT * FROM `secrets`", "secrets"),
        ("SELECT * FROM SECRETS", "secrets"),
        ("SELECT * FROM secrets\\G", "secrets"),
        (
            "SELECT name FROM products /*! UNION SELECT secret FROM secrets */",
            "secrets",
        ),
        (
            "SELECT name FROM products /*!50000 UNION SELECT secret FROM secrets */",
            "secrets",
        ),
        (
            "SELECT name FROM products /*M!100100 UNION SELECT secret FROM secrets */",
            "secrets",
        ),
        ("SELECT 1 --x\n FROM secrets", "secrets"),
        ("SELECT 1 # hidden\n FROM secrets", "secrets"),
        ("TABLE secrets", "secrets"),
        ("HANDLER secrets OPEN", "secrets"),
        ("SELECT secret INTO @v FROM secrets", "secrets"),
        ("SELECT (SELECT secret FROM secrets LIMIT 1)", "secrets"),
        (
            "WITH products AS (SELECT secret AS name FROM secrets) SELECT * FROM products",
            "secrets",
        ),
        ("PREPARE s FROM 'SELECT * FROM secrets'", "secrets"),
        (
            "SET @q = 'SELECT * FROM secrets'; PREPARE s FROM @q",
            "SQL built at run time",
        ),
        // The client sends these one by one; the first runs, the second is refused.
        ("SELECT 1; SELECT * FROM secrets", "secrets"),
        ("USE mysql", "database mysql"),
        ("SELECT * FROM mysql.user", "mysql.mysql.user"),
        (
            "SELECT name FROM products INTO OUTFILE '/tmp/postern-x'",
            "file on the database server",
        ),
        (
            "SELECT LOAD_FILE('/etc/passwd')",
            "file on the database server",
        ),
        ("SELECT sys_exec('id')", "run a program"),
        ("SET sql_mode = 'ANSI_QUOTES'", "sql_mode"),
        (
            "SET STATEMENT sql_mode = 'ANSI_QUOTES' FOR SELECT 1",
            "sql_mode",
        ),
        ("UPDATE products SET name = 'x'", "UPDATE"),
        ("DROP TABLE products", "DDL"),
        (
            "SELECT 1 FROM products LOCK IN SHARE MODE",
            "cannot analyse",
        ),
    ] {
        refused(run(&p, "alice", alias, sql), needle);
    }
    // The server never saw them: the table is intact.
    assert_eq!(
        up.root_sql("SELECT COUNT(*) FROM products").trim(),
        "2",
        "products changed"
    );

    // A connection in GBK (where a trailing byte may be a backslash): non-ASCII text is
    // refused, ASCII is judged as usual.
    let gbk = |sql: &str| {
        p.mysql("alice", PW, alias)
            .args(["--default-character-set=gbk", "-N", "-B", "-e", sql])
            .output()
            .unwrap()
    };
    let out = gbk("SELECT name FROM products WHERE name = '\u{4e2d}'");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("character set"),
        "{err}"
    );
    assert!(gbk("SELECT name FROM products").status.success());

    // COM_INIT_DB (the client's `-D`) is the same decision as USE.
    let out = p
        .mysql("alice", PW, alias)
        .args(["-N", "-B", "-e", "USE mysql"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // The refusal is audited with the reason naming the object.
    let e = p
        .audit_expect(
            Postern::filter("alice", "statement"),
            "of the refused SELECT",
            |e| {
                e.decision == Some(Decision::Deny)
                    && e.statement.as_deref() == Some("SELECT * FROM secrets")
            },
        )
        .await;
    assert!(
        e.reason.as_deref().unwrap_or("").contains("secrets"),
        "{:?}",
        e.reason
    );
    p.stop().await;
    up.drop_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn masked_mode_firewall_prepared_statements_and_live_policy_changes() {
    let my = my();
    let up = my.upstream();
    tables(&up);
    let p = Postern::start().await;
    let alias = "mfw";
    let db = up.db.clone();
    let role = format!("{alias}-role");
    let privileges = serde_json::json!([{ "allow": ["SELECT", "UPDATE"], "on": format!("{alias}.*.*.products") }]);
    p.grant_mysql_on(
        &up,
        alias,
        "bob",
        PW,
        serde_json::json!({ "privileges": privileges, "modes": { alias: "masked" } }),
        serde_json::json!({ "firewall": [
            { "name": "no-blind-writes", "action": "deny", "when": ["modify-without-where"] },
            { "name": "watch-sleep", "action": "allow-and-alert", "regex": "(?i)sleep\\(" },
        ]}),
    )
    .await;

    // MASKED mode lets unanalysable text through, but not a firewall hit.
    let (ok, _, err) = run(
        &p,
        "bob",
        alias,
        "SELECT 1 FROM products LOCK IN SHARE MODE",
    );
    assert!(ok, "{err}");
    refused(
        run(&p, "bob", alias, "UPDATE products SET name = 'x'"),
        "no-blind-writes",
    );
    let (ok, _, err) = run(&p, "bob", alias, "SELECT SLEEP(0)");
    assert!(ok, "{err}");
    p.audit_expect(
        Postern::filter("bob", "statement"),
        "of the alerted SLEEP",
        |e| e.alert && e.rule.as_deref() == Some("firewall: watch-sleep"),
    )
    .await;

    // sqlx: prepared statements are judged at prepare, refused ones never reach the server.
    let mut c = sqlx::MySqlConnection::connect_with(&opts(&p, "bob", alias))
        .await
        .unwrap();
    let name: String = sqlx::query("SELECT name FROM products WHERE id = ?")
        .bind(1)
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "lamp");
    let err = sqlx::query("SELECT secret FROM secrets WHERE id = ?")
        .bind(1)
        .fetch_one(&mut c)
        .await
        .unwrap_err();
    let dbe = err.as_database_error().expect("a server error");
    assert_eq!(dbe.code().as_deref(), Some("42000"), "{dbe}");
    assert!(dbe.message().contains("secrets"), "{dbe}");
    // Several statements in one COM_QUERY: refused whole, naming the one at fault.
    let err = sqlx::raw_sql("SELECT 1; SELECT secret FROM secrets")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("statement 2 of 2"), "{err}");
    // The connection carries on after a refusal.
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM products")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    sqlx::query("UPDATE products SET name = ? WHERE id = ?")
        .bind("lamp")
        .bind(1)
        .execute(&mut c)
        .await
        .unwrap();

    // The role loses UPDATE: the same connection's prepared UPDATE is refused at once.
    let doc = serde_json::json!({ "role": [{
        "name": role, "credentials": [format!("{alias}-cred")], "modes": { alias: "masked" },
        "privileges": [{ "allow": ["SELECT"], "on": format!("{alias}.{db}.{db}.products") }],
    }]});
    p.handle
        .store
        .apply(&serde_json::from_value(doc).unwrap())
        .await
        .unwrap();
    let err = sqlx::query("UPDATE products SET name = ? WHERE id = ?")
        .bind("lamp")
        .bind(1)
        .execute(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("UPDATE") && err.to_string().contains("products"),
        "{err}"
    );
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM products")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    c.close().await.unwrap();
    p.stop().await;
    up.drop_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn results_are_masked_in_text_and_binary_rows() {
    let my = my();
    let up = my.upstream();
    up.root_sql(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), email VARCHAR(80), \
           ssn VARCHAR(11), salary INT, birth DATE); \
         INSERT INTO customers VALUES \
           (1, 'Ada', 'ada@example.org', '123-45-6789', 91000, '1990-05-17'), \
           (2, 'Bob', 'bob@example.org', '987-65-4321', 72000, '1985-11-02'); \
         CREATE VIEW contacts AS SELECT id, UPPER(email) AS mail, RIGHT(ssn, 4) AS tail FROM customers;",
    );
    let p = Postern::start().await;
    let alias = "mmask";
    let db = up.db.clone();
    p.apply_yaml(&format!(
        r#"
masking-policy:
  - name: pii
    priority: 10
    rules:
      - {{ name: emails, on: "{alias}.*.*.*.*email*", function: email }}
      - {{ name: ssn, on: "{alias}.{db}.{db}.customers.ssn", function: "partial(0, 4)" }}
      - {{ name: salary, on: "{alias}.*.*.customers.salary", function: full }}
      - {{ name: birth, on: "{alias}.*.*.customers.birth", function: date_year_only }}
"#
    ))
    .await;
    p.grant_mysql(
        &up,
        alias,
        "carol",
        PW,
        serde_json::json!({
            "modes": { alias: "masked" },
            "privileges": [{ "allow": ["ALL"], "on": format!("{alias}.{db}.{db}.*") }],
            "masking": ["pii"],
        }),
    )
    .await;

    // Text protocol (the mariadb client): direct columns, computed columns, views.
    let (ok, out, err) = run(
        &p,
        "carol",
        alias,
        "SELECT id, name, email, ssn, salary, birth FROM customers ORDER BY id",
    );
    assert!(ok, "{err}");
    let first = out.lines().next().unwrap_or_default();
    let cols: Vec<&str> = first.split('\t').collect();
    assert_eq!(cols[0], "1");
    assert_eq!(cols[1], "Ada");
    assert_ne!(cols[2], "ada@example.org");
    assert!(
        cols[2].ends_with("@example.org") || !cols[2].contains("ada"),
        "{first}"
    );
    assert_eq!(cols[3], "*******6789");
    assert_eq!(cols[4], "0");
    assert_eq!(cols[5], "1990-01-01");
    for clear in ["123-45-6789", "91000", "1990-05-17", "ada@example.org"] {
        assert!(!out.contains(clear), "{clear} in {out}");
    }
    let (ok, out, err) = run(
        &p,
        "carol",
        alias,
        "SELECT CONCAT(name, ':', ssn) FROM customers",
    );
    assert!(ok, "{err}");
    assert!(!out.contains("6789") && !out.contains("123-45"), "{out}");
    let (ok, out, err) = run(
        &p,
        "carol",
        alias,
        "SELECT mail, tail FROM contacts ORDER BY id",
    );
    assert!(ok, "{err}");
    assert!(
        !out.contains("ADA@EXAMPLE.ORG") && !out.contains("6789"),
        "{out}"
    );

    // The inference guard: a masked column may not choose rows.
    refused(
        run(
            &p,
            "carol",
            alias,
            "SELECT id FROM customers WHERE ssn LIKE '123%'",
        ),
        "ssn",
    );

    // Binary protocol (sqlx prepared statements).
    let mut c = sqlx::MySqlConnection::connect_with(&opts(&p, "carol", alias))
        .await
        .unwrap();
    let row = sqlx::query("SELECT ssn, salary, birth, name FROM customers WHERE id = ?")
        .bind(2)
        .fetch_one(&mut c)
        .await
        .unwrap();
    let ssn: String = row.get(0);
    let salary: i32 = row.get(1);
    let birth: time::Date = row.get(2);
    let name: String = row.get(3);
    assert_eq!(ssn, "*******4321");
    assert_eq!(salary, 0);
    assert_eq!(birth.to_string(), "1985-01-01");
    assert_eq!(name, "Bob");
    // A table another session creates after this one read its catalog: the rules' patterns
    // mask it at once.
    up.root_sql(
        "CREATE TABLE late (id INT, email VARCHAR(80)); INSERT INTO late VALUES (1, 'late@corp.example');",
    );
    let late: String = sqlx::query("SELECT email FROM late WHERE id = ?")
        .bind(1)
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_ne!(late, "late@corp.example");
    c.close().await.unwrap();

    // `postern policy check` shows the same plan, read from the MySQL catalog.
    let cli = postern_e2e::Cli::admin(&p);
    let out = cli.run(
        &[
            "policy",
            "check",
            "--user",
            "carol",
            "--datasource",
            alias,
            "SELECT id, email, UPPER(ssn) FROM customers",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("masks result column #2 with email (rule pii/emails)"),
        "{text}"
    );
    assert!(text.contains("rule pii/ssn (computed)"), "{text}");
    assert!(!text.contains("column #1 "), "{text}");
    let out = cli.run(
        &[
            "policy",
            "check",
            "--user",
            "carol",
            "--datasource",
            alias,
            "SELECT id FROM customers WHERE ssn LIKE '1%'",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));

    // Schema changes made in the session are seen: a new table's masked column.
    let (ok, out, err) = run(
        &p,
        "carol",
        alias,
        "CREATE TABLE staff (id INT, email VARCHAR(80)); \
         INSERT INTO staff VALUES (1, 'zed@corp.example'); SELECT email FROM staff",
    );
    assert!(ok, "{err}");
    assert!(!out.contains("zed@corp.example"), "{out}");
    p.stop().await;
    up.drop_all();
}

/// Clear values of the masked columns of the bypass suite.
const CLEAR: &[&str] = &[
    "123-45-6789",
    "123456789",
    "91000",
    "1990-05-17",
    "ada@example.org",
    "ADA@EXAMPLE.ORG",
    "ada@",
];

/// Attempts to see masked values in MySQL syntax, and whether Postern refuses them (else they
/// run, masked).
const BYPASS: &[(&str, bool)] = &[
    ("SELECT email AS x, ssn AS y FROM customers", false),
    ("SELECT * FROM customers", false),
    ("SELECT * FROM contacts", false),
    ("SELECT `ssn` FROM `customers`", false),
    ("SELECT /*! ssn, */ id FROM customers", false),
    ("WITH c AS (SELECT * FROM customers) SELECT * FROM c", false),
    // A CTE that shadows the table's name, with an unmasked column's name.
    ("WITH customers AS (SELECT ssn AS name, email AS id FROM customers) SELECT name, id FROM customers", false),
    ("SELECT name FROM (SELECT ssn AS name FROM customers) customers", false),
    ("SELECT x FROM (SELECT ssn AS x FROM customers) s", false),
    ("SELECT (SELECT ssn FROM customers LIMIT 1)", false),
    ("SELECT name FROM customers UNION ALL SELECT ssn FROM customers", false),
    (
        "SELECT CONCAT(ssn, ''), UPPER(email), SUBSTR(ssn, 1, 9), LEFT(ssn, 3), CAST(ssn AS CHAR), \
         CAST(salary AS CHAR), CAST(birth AS CHAR), REPLACE(ssn, '-', '') FROM customers",
        false,
    ),
    ("SELECT JSON_OBJECT('s', ssn, 'e', email) FROM customers", false),
    ("SELECT GROUP_CONCAT(ssn), JSON_ARRAYAGG(email) FROM customers", false),
    ("SELECT IF(ssn LIKE '1%', 1, 0) FROM customers", false),
    ("HANDLER customers OPEN; HANDLER customers READ FIRST; HANDLER customers CLOSE", false),
    ("PREPARE p FROM 'SELECT ssn, email FROM customers'; EXECUTE p", false),
    ("SELECT name FROM customers UNION SELECT email FROM customers", true),
    ("SELECT id FROM customers WHERE ssn LIKE '1%'", true),
    ("SELECT id FROM customers ORDER BY ssn", true),
    ("SELECT COUNT(*) FROM customers GROUP BY email", true),
    ("SELECT a.id FROM customers a JOIN customers b ON a.ssn = b.ssn", true),
    ("SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM customers c WHERE c.ssn LIKE '1%')", true),
    ("UPDATE customers SET name = ssn", true),
    ("CREATE TABLE stolen AS SELECT email FROM customers", true),
    ("INSERT INTO notes SELECT id, ssn FROM customers", true),
    ("SET @s = (SELECT ssn FROM customers LIMIT 1)", true),
    ("SELECT @s := ssn FROM customers", true),
    ("SELECT ssn INTO @s FROM customers LOCK IN SHARE MODE", true),
    ("SET @q = 'SELECT ssn INTO @s FROM customers'; PREPARE p FROM @q", true),
    ("SELECT * FROM mysql.column_stats", true),
    ("SELECT CAST(ssn AS SIGNED) FROM customers; SHOW WARNINGS", false),
    ("SELECT ssn INTO @s FROM customers LIMIT 1", true),
];

#[tokio::test(flavor = "multi_thread")]
async fn masking_bypass_attempts_in_mysql_syntax() {
    let my = my();
    let up = my.upstream();
    up.root_sql(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), email VARCHAR(80), \
           ssn VARCHAR(11), salary INT, birth DATE); \
         INSERT INTO customers VALUES (1, 'Ada', 'ada@example.org', '123-45-6789', 91000, '1990-05-17'); \
         CREATE TABLE notes (id INT, body TEXT); \
         CREATE VIEW contacts AS SELECT id, UPPER(email) AS mail, RIGHT(ssn, 4) AS tail, ssn FROM customers;",
    );
    let p = Postern::start().await;
    let alias = "mbyp";
    p.apply_yaml(&format!(
        r#"
masking-policy:
  - name: pii
    priority: 10
    rules:
      - {{ name: emails, on: "{alias}.*.*.*.*email*", function: email }}
      - {{ name: ssn, on: "{alias}.*.*.customers.ssn", function: "partial(0, 4)" }}
      - {{ name: salary, on: "{alias}.*.*.customers.salary", function: full }}
      - {{ name: birth, on: "{alias}.*.*.customers.birth", function: date_year_only }}
"#
    ))
    .await;
    p.grant_mysql(
        &up,
        alias,
        "dave",
        PW,
        serde_json::json!({
            "modes": { alias: "masked" },
            "privileges": [{ "allow": ["ALL"], "on": format!("{alias}.*.*.*") }],
            "masking": ["pii"],
        }),
    )
    .await;
    for (sql, refused) in BYPASS {
        let (ok, out, err) = run(&p, "dave", alias, sql);
        for clear in CLEAR {
            assert!(
                !out.contains(clear) && !err.contains(clear),
                "{sql}: {clear} shown: {out} {err}"
            );
        }
        if *refused {
            assert!(
                !ok && err.contains("Postern refused"),
                "{sql}: should be refused: {out} {err}"
            );
        } else {
            assert!(ok, "{sql}: should run (masked): {err}");
        }
    }
    // Even with file privileges, INTO OUTFILE (which Postern's grammar does not read) is
    // refused where masking applies: it would copy values out unmasked.
    let (ok, out, err) = run(
        &p,
        "dave",
        alias,
        "SELECT ssn FROM customers INTO OUTFILE '/tmp/postern-stolen'",
    );
    assert!(
        !ok && !out.contains("123-45") && err.contains("masking rules apply"),
        "{err}"
    );
    // Nothing was changed or copied by the attempts.
    assert_eq!(up.root_sql("SELECT COUNT(*) FROM notes").trim(), "0");
    assert_eq!(
        up.root_sql("SELECT ssn FROM customers").trim(),
        "123-45-6789"
    );
    p.stop().await;
    up.drop_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn load_data_local_infile_only_when_granted() {
    let my = my();
    let up = my.upstream();
    up.root_sql("CREATE TABLE imports (id INT, label VARCHAR(20));");
    let p = Postern::start().await;
    let alias = "mload";
    let db = up.db.clone();
    let file = std::env::temp_dir().join(format!("postern-load-{db}.csv"));
    std::fs::write(&file, "1,one\n2,two\n3,three\n").unwrap();
    // frank may load files (COPY FILE on the datasource); grace may only insert.
    p.grant_mysql(
        &up,
        alias,
        "frank",
        PW,
        serde_json::json!({
            "modes": { alias: "masked" },
            "privileges": [
                { "allow": ["SELECT", "INSERT"], "on": format!("{alias}.{db}.{db}.imports") },
                { "allow": ["COPY FILE"], "on": format!("{alias}.*.*.*") },
            ],
        }),
    )
    .await;
    p.apply_yaml(&format!(
        "role:\n  - name: loader-lite\n    credentials: [{alias}-cred]\n    modes: {{ {alias}: masked }}\n    privileges: [{{ allow: [SELECT, INSERT], on: \"{alias}.{db}.{db}.imports\" }}]\nuser:\n  - name: grace\n    roles: [loader-lite]\n"
    ))
    .await;
    p.handle.store.set_password("grace", PW).await.unwrap();
    let load = format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE imports FIELDS TERMINATED BY ','",
        file.display()
    );
    let run_local = |user: &str| {
        let out = p
            .mysql(user, PW, alias)
            .args(["--local-infile=1", "-N", "-B", "-e", &load])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run_local("frank");
    assert!(ok, "{err}");
    assert_eq!(up.root_sql("SELECT COUNT(*) FROM imports").trim(), "3");
    // The session goes on after the file: a query on the same connection works.
    let out = p
        .mysql("frank", PW, alias)
        .args([
            "--local-infile=1",
            "-N",
            "-B",
            "-e",
            &format!("{load}; SELECT COUNT(*) FROM imports"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6");
    let (ok, err) = run_local("grace");
    assert!(
        !ok && err.contains("ERROR 1142") && err.contains("file"),
        "{err}"
    );
    assert_eq!(up.root_sql("SELECT COUNT(*) FROM imports").trim(), "6");
    let _ = std::fs::remove_file(&file);
    p.stop().await;
    up.drop_all();
}
