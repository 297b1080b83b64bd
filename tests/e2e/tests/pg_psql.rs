//! psql and pgbench through Postern against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postern_e2e::{pg, unique, Postern};
use postern_store::AuditFilter;

fn psql_output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_query_describe_and_refusals() {
    let pg = pg();
    let up = pg.upstream(None).await;
    up.superuser()
        .await
        .batch_execute(&format!(
            "CREATE TABLE customers (id int primary key, name text NOT NULL, email text);
             INSERT INTO customers SELECT g, 'name' || g, 'u' || g || '@example.com' FROM generate_series(1, 5) g;
             ALTER TABLE customers OWNER TO {};",
            up.role
        ))
        .await
        .unwrap();
    let postern = Postern::start().await;
    let alias = unique("shop");
    let user = unique("alice");
    postern
        .grant(&up, &alias, &user, "alice-password-1", "disable")
        .await;
    let port = postern.pg_port().to_string();

    // A query returns the right rows.
    let out = postern
        .psql(&user, "alice-password-1", &alias)
        .args(["-At", "-c"])
        .arg("SELECT id, name FROM customers WHERE id <= 3 ORDER BY id")
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", psql_output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1|name1\n2|name2\n3|name3\n"
    );

    // \d works (catalog queries through the proxy).
    let out = postern
        .psql(&user, "alice-password-1", &alias)
        .args(["-c", "\\d customers"])
        .output()
        .unwrap();
    let text = psql_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("email") && text.contains("customers_pkey"),
        "{text}"
    );

    // A client in LATIN1 (PASSTHROUGH): non-UTF-8 statement text is relayed, converted by
    // the server, and audited as well as it can be.
    use std::os::unix::ffi::OsStrExt;
    let out = postern
        .psql(&user, "alice-password-1", &alias)
        .args(["-At", "-c"])
        .arg(std::ffi::OsStr::from_bytes(
            b"SELECT count(*) FROM customers WHERE name <> '\xe9t\xe9'",
        ))
        .env("PGCLIENTENCODING", "LATIN1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", psql_output(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");

    // A statement that sets a password never leaves the secret in the audit trail, in
    // either form, in the store or in the JSON-lines file.
    let out = postern
        .psql(&user, "alice-password-1", &alias)
        .args(["-c"])
        .arg("ALTER ROLE postern_no_such_role_x PASSWORD 'hunter2-secret-pw'")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", psql_output(&out));
    let is_alter = |e: &postern_audit::AuditEvent| {
        e.statement
            .as_deref()
            .is_some_and(|s| s.starts_with("ALTER ROLE postern_no_such_role_x"))
    };
    // Waits for this event itself: under load, two equal reads can come before it lands.
    let events = postern
        .audit_until(
            AuditFilter {
                user: Some(user.clone()),
                kind: Some("statement".into()),
                ..Default::default()
            },
            is_alter,
        )
        .await;
    let alter = events
        .iter()
        .find(|e| {
            e.statement
                .as_deref()
                .is_some_and(|s| s.starts_with("ALTER ROLE postern_no_such_role_x"))
        })
        .expect("the ALTER ROLE is audited");
    assert_eq!(
        alter.statement.as_deref(),
        Some("ALTER ROLE postern_no_such_role_x PASSWORD ?")
    );
    assert!(alter.error.is_some());
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("hunter2-secret-pw"), "{all}");
    let jsonl = std::fs::read_to_string(postern.dir.path().join("data/audit.jsonl")).unwrap();
    assert!(jsonl.contains("postern_no_such_role_x"));
    assert!(!jsonl.contains("hunter2-secret-pw"));

    // user@alias works as the user name, without a database field.
    let out = pg
        .tool("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user={user}@{alias} sslmode=disable"
        ))
        .args(["-At", "-c", "select current_user"])
        .env("PGPASSWORD", "alice-password-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", psql_output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        up.role,
        "runs as the credential's role"
    );

    // The audit trail holds the statement with identity, datasource and upstream user.
    let events = postern
        .audit(AuditFilter {
            user: Some(user.clone()),
            kind: Some("statement".into()),
            ..Default::default()
        })
        .await;
    let ev = events
        .iter()
        .find(|e| {
            e.statement_clear.as_deref()
                == Some("SELECT id, name FROM customers WHERE id <= 3 ORDER BY id")
        })
        .expect("statement audited");
    // Literals are masked in the default form of the statement.
    assert_eq!(
        ev.statement.as_deref(),
        Some("SELECT id, name FROM customers WHERE id <= ? ORDER BY id")
    );
    assert_eq!(ev.datasource.as_deref(), Some(alias.as_str()));
    assert_eq!(ev.db_user.as_deref(), Some(up.role.as_str()));
    assert_eq!(ev.rows, Some(3));
    assert_eq!(ev.command_tag.as_deref(), Some("SELECT 3"));
    assert!(ev
        .client_addr
        .as_deref()
        .unwrap_or("")
        .starts_with("127.0.0.1:"));

    // Wrong password: 28P01, audited.
    let err = postern
        .connect(&user, "wrong-password", &alias)
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");
    let fails = postern
        .audit(AuditFilter {
            user: Some(user.clone()),
            kind: Some("login_failure".into()),
            ..Default::default()
        })
        .await;
    assert!(
        fails
            .iter()
            .any(|e| e.error.as_deref() == Some("wrong password")),
        "{fails:?}"
    );

    // Unknown user: same answer as a wrong password (no enumeration), real reason audited.
    let ghost = unique("ghost");
    let err = postern
        .connect(&ghost, "whatever-pass", &alias)
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"));

    // Unknown alias: clear error after authentication.
    let err = postern
        .connect(&user, "alice-password-1", "no_such_alias")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"));
    let msg = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("no_such_alias"), "{msg}");

    // A user with no grant: 42501 naming the datasource, audited.
    let bob = unique("bob");
    postern
        .apply_yaml(&format!("user:\n  - name: {bob}\n"))
        .await;
    postern
        .handle
        .store
        .set_password(&bob, "bob-password-1")
        .await
        .unwrap();
    let err = postern
        .connect(&bob, "bob-password-1", &alias)
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
    let db_err = err.as_db_error().expect("server error");
    assert!(db_err.message().contains(&alias), "{}", db_err.message());
    let fails = postern
        .audit(AuditFilter {
            user: Some(bob.clone()),
            kind: Some("login_failure".into()),
            ..Default::default()
        })
        .await;
    assert!(
        fails.iter().any(|e| e.sqlstate.as_deref() == Some("42501")),
        "{fails:?}"
    );

    postern.stop().await;
    up.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_over_tls_require_and_verify_full() {
    let pg = pg();
    let up = pg.upstream(None).await;
    let postern = Postern::start().await;
    let alias = unique("tlsds");
    let user = unique("tess");
    postern
        .grant(&up, &alias, &user, "tess-password-1", "disable")
        .await;
    let port = postern.pg_port().to_string();
    let ca = postern.handle.ca_path.display().to_string();
    for conn in [
        format!("host=127.0.0.1 port={port} dbname={alias} user={user} sslmode=require"),
        format!("host=localhost port={port} dbname={alias} user={user} sslmode=verify-full sslrootcert={ca}"),
    ] {
        let out = pg
            .tool("psql")
            .arg(&conn)
            .args(["-At", "-c", "select 40 + 2"])
            .env("PGPASSWORD", "tess-password-1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{conn}: {}", psql_output(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
        // psql prints the TLS details with \conninfo: check the session really is encrypted.
        let out = pg
            .tool("psql")
            .arg(&conn)
            .args(["-c", "\\conninfo"])
            .env("PGPASSWORD", "tess-password-1")
            .output()
            .unwrap();
        assert!(psql_output(&out).contains("SSL connection"), "{}", psql_output(&out));
    }
    // verify-full against a different CA fails.
    let out = pg
        .tool("psql")
        .arg(format!(
            "host=localhost port={port} dbname={alias} user={user} sslmode=verify-full sslrootcert={}",
            pg.ca.display()
        ))
        .args(["-c", "select 1"])
        .env("PGPASSWORD", "tess-password-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    postern.stop().await;

    // Cleartext passwords, when enabled, are asked for over TLS only; without TLS the
    // same server still uses SCRAM. The login_success event records the method.
    let postern = Postern::start_with(|c| c.postgres.allow_cleartext_password = true).await;
    postern
        .grant(&up, &alias, &user, "tess-password-1", "disable")
        .await;
    let port = postern.pg_port().to_string();
    for sslmode in ["require", "disable"] {
        let out = pg
            .tool("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} dbname={alias} user={user} sslmode={sslmode}"
            ))
            .args(["-At", "-c", "select 'cleartext'"])
            .env("PGPASSWORD", "tess-password-1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sslmode={sslmode}: {}",
            psql_output(&out)
        );
    }
    let logins = postern
        .audit(AuditFilter {
            user: Some(user.clone()),
            kind: Some("login_success".into()),
            ..Default::default()
        })
        .await;
    let methods: Vec<(String, bool)> = logins
        .iter()
        .filter_map(|e| e.detail.as_ref())
        .map(|d| {
            (
                d["auth"].as_str().unwrap_or("").to_string(),
                d["tls"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert!(
        methods.contains(&("password".to_string(), true)),
        "{methods:?}"
    );
    assert!(
        methods.contains(&("scram-sha-256".to_string(), false)),
        "{methods:?}"
    );
    assert!(
        !methods.contains(&("password".to_string(), false)),
        "{methods:?}"
    );
    postern.stop().await;
    up.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pgbench_init_and_select_only() {
    let pg = pg();
    let up = pg.upstream(None).await;
    let postern = Postern::start().await;
    let alias = unique("bench");
    let user = unique("ben");
    postern
        .grant(&up, &alias, &user, "ben-password-1", "disable")
        .await;
    let port = postern.pg_port().to_string();
    let base = ["-h", "127.0.0.1", "-p", &port, "-U", &user];
    let out = pg
        .tool("pgbench")
        .args(base)
        .args(["-i", "-s", "1", &alias])
        .env("PGPASSWORD", "ben-password-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", psql_output(&out));
    for mode in ["simple", "prepared"] {
        let out = pg
            .tool("pgbench")
            .args(base)
            .args(["-S", "-T", "2", "-c", "4", "-j", "2", "-M", mode, &alias])
            .env("PGPASSWORD", "ben-password-1")
            .output()
            .unwrap();
        let text = psql_output(&out);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("number of failed transactions: 0"), "{text}");
        let tps: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("tps line");
        assert!(tps > 10.0, "{text}");
    }
    postern.stop().await;
    up.drop_all().await;
}
