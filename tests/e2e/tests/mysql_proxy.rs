//! The MySQL front door end to end: the real `mariadb` client and sqlx (a Rust driver)
//! through Postern to a real MariaDB server; raw sockets for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use postern_e2e::{my, Postern};
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{Connection, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PW: &str = "Correct-Horse-42";

fn passthrough(alias: &str) -> serde_json::Value {
    serde_json::json!({ "modes": { alias: "passthrough" } })
}

fn opts(p: &Postern, user: &str, pw: &str, alias: &str) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(p.mysql_port())
        .username(user)
        .password(pw)
        .database(alias)
        .ssl_mode(MySqlSslMode::Disabled)
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_cli_queries_and_refusals() {
    let up = my().upstream();
    up.root_sql(
        "CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(100)); \
         INSERT INTO customers VALUES (1, 'ann@example.com'), (2, 'bob@example.com');",
    );
    let p = Postern::start().await;
    p.grant_mysql(&up, "shopmy", "alice", PW, passthrough("shopmy"))
        .await;

    // Queries, SHOW TABLES, several statements in one call.
    let out = p
        .mysql("alice", PW, "shopmy")
        .args([
            "-N",
            "-B",
            "-e",
            "SHOW TABLES; SELECT email FROM customers WHERE id = 2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("customers") && stdout.contains("bob@example.com"),
        "{stdout}"
    );

    // `user@alias` names the datasource without a database argument; TLS with the CA.
    let out = postern_e2e::mysql_cli()
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &p.mysql_port().to_string(),
            "-u",
            "alice@shopmy",
        ])
        .arg(format!("-p{PW}"))
        .arg("--ssl")
        .arg(format!("--ssl-ca={}", p.handle.ca_path.display()))
        .args(["-N", "-B", "-e", "SELECT COUNT(*) FROM customers"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("2\n"), "{stdout}");
    p.audit_expect(Postern::filter("alice", "login_success"), "over TLS", |e| {
        e.detail.as_ref().and_then(|d| d.get("tls")) == Some(&serde_json::json!(true))
    })
    .await;

    // A wrong password.
    let out = p
        .mysql("alice", "wrong-password-1", "shopmy")
        .args(["-e", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1045") && err.contains("Access denied"),
        "{err}"
    );

    // A user without a grant for the datasource.
    p.apply_yaml("user:\n  - name: bob\n").await;
    p.handle.store.set_password("bob", PW).await.unwrap();
    let out = p
        .mysql("bob", PW, "shopmy")
        .args(["-e", "SELECT 1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("1044") && err.contains("grant"),
        "{err}"
    );

    // An unknown datasource.
    let out = p
        .mysql("alice", PW, "nosuch")
        .args(["-e", "SELECT 1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Unknown database"),
        "{err}"
    );

    // Outside passthrough mode statements are checked: no privilege, no SELECT.
    p.grant_mysql(&up, "shopmy2", "carol", PW, serde_json::json!({}))
        .await;
    let out = p
        .mysql("carol", PW, "shopmy2")
        .args(["-e", "SELECT email FROM customers"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ERROR 1142") && err.contains("customers"),
        "{err}"
    );

    // The audit trail: statements with literals masked, the failed login, the upstream user.
    let stmt = p
        .audit_expect(
            Postern::filter("alice", "statement"),
            "of the SELECT",
            |e| e.statement.as_deref() == Some("SELECT email FROM customers WHERE id = ?"),
        )
        .await;
    assert_eq!(stmt.db_user.as_deref(), Some(up.user.as_str()));
    assert_eq!(stmt.rows, Some(1));
    assert_eq!(
        serde_json::to_value(stmt.protocol).unwrap(),
        serde_json::json!("mysql")
    );
    p.audit_expect(
        Postern::filter("alice", "login_failure"),
        "of the wrong password",
        |e| e.error.as_deref() == Some("wrong password"),
    )
    .await;
    p.stop().await;
    up.drop_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_driver_prepared_transactions_big_results_and_kill() {
    let up = my().upstream();
    up.root_sql(
        "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(40), balance DECIMAL(10,2)); \
         INSERT INTO accounts VALUES (1, 'ann', 10.50), (2, 'bob', 20.00);",
    );
    let p = Postern::start().await;
    p.grant_mysql(&up, "bank", "alice", PW, passthrough("bank"))
        .await;
    let mut c = sqlx::MySqlConnection::connect_with(&opts(&p, "alice", PW, "bank"))
        .await
        .unwrap();

    // Prepared statements with parameters; binary-protocol rows.
    // A statement that may carry a password keeps its parameter values out of the audit.
    let said: String = sqlx::query_scalar("SELECT CONCAT('x', ?) AS password")
        .bind("hunter2-secret")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(said, "xhunter2-secret");
    let row = sqlx::query("SELECT owner, balance, id FROM accounts WHERE id = ?")
        .bind(2)
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "bob");
    assert_eq!(row.get::<i32, _>(2), 2);

    // Transactions: a rollback leaves nothing, a commit stays.
    let mut tx = c.begin().await.unwrap();
    sqlx::query("INSERT INTO accounts VALUES (?, ?, ?)")
        .bind(3)
        .bind("cat")
        .bind(1.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = c.begin().await.unwrap();
    sqlx::query("INSERT INTO accounts VALUES (4, 'dan', 2.5)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let owners: Vec<String> = sqlx::query_scalar("SELECT owner FROM accounts ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(owners, ["ann", "bob", "dan"]);

    // A result of 100 000 rows, prepared (binary) and as plain text.
    let seqs: Vec<u64> = sqlx::query_scalar("SELECT seq FROM seq_1_to_100000")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(seqs.len(), 100_000);
    assert_eq!(seqs.iter().sum::<u64>(), 100_000 * 100_001 / 2);
    let out = p
        .mysql("alice", PW, "bank")
        .args([
            "-N",
            "-B",
            "-e",
            "SELECT seq, REPEAT('x', 200) FROM seq_1_to_100000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        100_000
    );

    // A long query killed from another connection (by the server's thread id).
    let thread: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r: Result<i64, _> = sqlx::query_scalar("SELECT SLEEP(30)")
            .fetch_one(&mut c)
            .await;
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut killer = sqlx::MySqlConnection::connect_with(&opts(&p, "alice", PW, "bank"))
        .await
        .unwrap();
    sqlx::raw_sql(&format!("KILL QUERY {thread}"))
        .execute(&mut killer)
        .await
        .unwrap();
    let (r, mut c) = tokio::time::timeout(Duration::from_secs(15), sleeper)
        .await
        .expect("the killed query returns")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    // MariaDB ends an interrupted SLEEP early with 1 (or an interruption error).
    assert!(matches!(r, Ok(1) | Err(_)), "{r:?}");
    // The session goes on.
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(one, 1);
    // Another user may not kill alice's queries.
    p.grant_mysql(&up, "bank2", "eve", PW, passthrough("bank2"))
        .await;
    let mut eve = sqlx::MySqlConnection::connect_with(&opts(&p, "eve", PW, "bank2"))
        .await
        .unwrap();
    let e = sqlx::raw_sql(&format!("KILL QUERY {thread}"))
        .execute(&mut eve)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not owner"), "{e}");

    // Audit: the big result's row count, the prepared statement's text, the kill.
    p.audit_expect(
        Postern::filter("alice", "statement"),
        "of the big result",
        |e| {
            e.rows == Some(100_000)
                && e.statement.as_deref() == Some("SELECT seq FROM seq_1_to_100000")
        },
    )
    .await;
    p.audit_expect(
        Postern::filter("alice", "statement"),
        "of the prepared SELECT",
        |e| {
            e.command_tag.as_deref() == Some("execute")
                && e.statement.as_deref()
                    == Some("SELECT owner, balance, id FROM accounts WHERE id = ?")
                && e.parameters == [Some("2".to_string())]
        },
    )
    .await;
    p.audit_expect(
        Postern::filter("alice", "statement"),
        "of the rolled-back INSERT",
        |e| {
            e.command_tag.as_deref() == Some("execute")
                && e.parameters
                    == [
                        Some("3".to_string()),
                        Some("cat".to_string()),
                        Some("1".to_string()),
                    ]
        },
    )
    .await;
    let secret = p
        .audit_expect(
            Postern::filter("alice", "statement"),
            "of the password-like SELECT",
            |e| e.statement.as_deref() == Some("SELECT CONCAT(?, ?) AS password"),
        )
        .await;
    assert_eq!(secret.parameters, [Some("?".to_string())]);
    p.audit_expect(
        Postern::filter("eve", "statement"),
        "of the refused kill",
        |e| e.decision.is_some() && e.reason.as_deref().is_some_and(|r| r.contains("not owner")),
    )
    .await;
    drop(eve);
    drop(killer);
    drop(c);
    p.stop().await;
    up.drop_all();
}

/// Reads one packet: (sequence id, payload).
async fn packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await.ok()?;
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((h[3], body))
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

/// The error message of an ERR packet.
fn err_text(p: &[u8]) -> String {
    assert_eq!(p.first(), Some(&0xff), "an ERR packet: {p:?}");
    String::from_utf8_lossy(&p[9..]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_on_the_mysql_port() {
    let up = my().upstream();
    let p = Postern::start_with(|c| c.mysql.handshake_timeout = Duration::from_secs(2)).await;
    p.grant_mysql(&up, "raw", "alice", PW, passthrough("raw"))
        .await;
    let addr = ("127.0.0.1", p.mysql_port());

    // A handshake response with the wrong sequence id.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (seq, greeting) = packet(&mut s).await.unwrap();
    assert_eq!((seq, greeting[0]), (0, 10));
    let mut resp = vec![0u8; 32];
    resp[..4].copy_from_slice(&(0x0200u32 | 0x8000).to_le_bytes());
    resp.extend_from_slice(b"alice\0");
    s.write_all(&frame(5, &resp)).await.unwrap();
    let (_, e) = packet(&mut s).await.unwrap();
    assert!(err_text(&e).contains("out of order"), "{}", err_text(&e));
    assert!(packet(&mut s).await.is_none(), "closed after the error");

    // A giant length: refused before anything is allocated.
    let mut s = TcpStream::connect(addr).await.unwrap();
    packet(&mut s).await.unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 1, 0, 0]).await.unwrap();
    let (_, e) = packet(&mut s).await.unwrap();
    assert!(
        err_text(&e).contains("larger than allowed"),
        "{}",
        err_text(&e)
    );

    // A truncated handshake response.
    let mut s = TcpStream::connect(addr).await.unwrap();
    packet(&mut s).await.unwrap();
    s.write_all(&frame(1, &[0x00, 0x82, 0, 0, 1, 2]))
        .await
        .unwrap();
    let (_, e) = packet(&mut s).await.unwrap();
    assert!(err_text(&e).contains("Bad handshake"), "{}", err_text(&e));

    // A client that connects and leaves without a word (a port probe) tried no login.
    let mut s = TcpStream::connect(addr).await.unwrap();
    packet(&mut s).await.unwrap();
    drop(s);

    // A client that never answers the greeting is cut off at the handshake timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    packet(&mut s).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("Postern hangs up")
        .unwrap_or(0);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    let mut c = sqlx::MySqlConnection::connect_with(&opts(&p, "alice", PW, "raw"))
        .await
        .unwrap();
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut c)
        .await
        .unwrap();
    drop(c);
    // The greeting now carries the upstream's own version (drivers rely on it).
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (_, greeting) = packet(&mut s).await.unwrap();
    let announced =
        String::from_utf8_lossy(&greeting[1..greeting.iter().position(|&b| b == 0).unwrap()])
            .into_owned();
    assert!(
        announced.ends_with(&version) || announced.contains(version.split('-').next().unwrap()),
        "{announced} vs {version}"
    );

    p.audit_expect(
        postern_store::AuditFilter {
            kind: Some("login_failure".into()),
            ..Default::default()
        },
        "of the silent client",
        |e| {
            e.error
                .as_deref()
                .is_some_and(|r| r.contains("not completed"))
        },
    )
    .await;
    let failures = p
        .audit(postern_store::AuditFilter {
            kind: Some("login_failure".into()),
            ..Default::default()
        })
        .await;
    assert!(
        !failures.iter().any(|e| e
            .error
            .as_deref()
            .is_some_and(|r| r.contains("left during the handshake"))),
        "the probe is no failed login: {failures:?}"
    );
    p.stop().await;
    up.drop_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn pymysql_through_postern() {
    let up = my().upstream();
    up.root_sql("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20)); INSERT INTO items VALUES (1, 'pen'), (2, 'ink');");
    let p = Postern::start().await;
    p.grant_mysql(&up, "pyds", "alice", PW, passthrough("pyds"))
        .await;
    let pylib = std::env::var("POSTERN_TEST_PYLIB")
        .expect("POSTERN_TEST_PYLIB is set by scripts/test.sh (scripts/ensure-pylibs.sh)");
    // Parameters, a transaction rolled back, TLS with Postern's CA.
    let script = r#"
import sys, pymysql
port, pw, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for ssl in (None, {"ca": ca}):
    c = pymysql.connect(host="127.0.0.1", port=port, user="alice", password=pw, database="pyds", ssl=ssl)
    with c.cursor() as cur:
        cur.execute("SELECT name FROM items WHERE id = %s", (2,))
        print(cur.fetchone()[0])
        cur.execute("INSERT INTO items VALUES (3, 'cap')")
        c.rollback()
        cur.execute("SELECT COUNT(*) FROM items")
        print(cur.fetchone()[0])
    c.close()
"#;
    let out = std::process::Command::new("python3")
        .env("PYTHONPATH", &pylib)
        .args(["-c", script, &p.mysql_port().to_string(), PW])
        .arg(&p.handle.ca_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ink\n2\nink\n2\n");
    let logins = p.audit_of("alice", "login_success").await;
    let tls: Vec<bool> = logins
        .iter()
        .filter_map(|e| e.detail.as_ref()?.get("tls")?.as_bool())
        .collect();
    assert!(tls.contains(&true) && tls.contains(&false), "{tls:?}");
    p.stop().await;
    up.drop_all();
}

/// The nonce of a server greeting (8 bytes, then 12 after the capability and status fields).
fn greeting_nonce(g: &[u8]) -> Vec<u8> {
    let v = g[1..].iter().position(|&b| b == 0).unwrap() + 2;
    let mut n = g[v + 4..v + 12].to_vec();
    let part2 = v + 12 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    n.extend_from_slice(&g[part2..part2 + 12]);
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_waits_for_the_servers_plugin_choice_is_asked_again() {
    // libmariadb sometimes sends no answer in its handshake response and waits for the
    // server to name the plugin (seen under sysbench's concurrent connects).
    let up = my().upstream();
    let p = Postern::start().await;
    p.grant_mysql(&up, "sw", "alice", PW, passthrough("sw"))
        .await;
    let mut s = TcpStream::connect(("127.0.0.1", p.mysql_port()))
        .await
        .unwrap();
    let (_, g) = packet(&mut s).await.unwrap();
    let nonce = greeting_nonce(&g);
    let caps: u32 = 0x0200 | 0x8000 | 0x0008 | 0x0008_0000; // 4.1, secure conn, with db, plugin auth
    let mut resp = caps.to_le_bytes().to_vec();
    resp.extend_from_slice(&(1u32 << 24).to_le_bytes());
    resp.push(45);
    resp.extend_from_slice(&[0; 23]);
    resp.extend_from_slice(b"alice\0");
    resp.push(0); // no answer yet
    resp.extend_from_slice(b"sw\0caching_sha2_password\0");
    s.write_all(&frame(1, &resp)).await.unwrap();
    let (seq, switch) = packet(&mut s).await.unwrap();
    assert_eq!(switch[0], 0xfe, "an auth switch request: {switch:?}");
    assert!(
        switch.starts_with(b"\xfecaching_sha2_password\0"),
        "{switch:?}"
    );
    assert_eq!(&switch[23..43], &nonce[..]);
    let answer = postern_auth::mysql::sha2_answer(&nonce, PW.as_bytes());
    s.write_all(&frame(seq + 1, &answer)).await.unwrap();
    let (_, fast) = packet(&mut s).await.unwrap();
    assert_eq!(fast, [0x01, 0x03], "fast authentication succeeded");
    let (_, ok) = packet(&mut s).await.unwrap();
    assert_eq!(ok[0], 0x00, "OK: {ok:?}");
    // Logged in: a command with a wrong sequence id ends the session with an error.
    s.write_all(&frame(3, b"\x03SELECT 1")).await.unwrap();
    let (_, e) = packet(&mut s).await.unwrap();
    assert!(err_text(&e).contains("out of order"), "{}", err_text(&e));
    assert!(packet(&mut s).await.is_none(), "closed after the error");
    p.stop().await;
    up.drop_all();
}
