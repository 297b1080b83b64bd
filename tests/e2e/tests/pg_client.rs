//! A Rust client (tokio-postgres) through Postern: prepared statements, binary parameters,
//! transactions, COPY both ways, a large result, LISTEN/NOTIFY, cancellation, upstream
//! md5 and TLS logins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use postern_e2e::{pg, unique, Postern};
use postern_store::AuditFilter;

#[tokio::test(flavor = "multi_thread")]
async fn rust_client_full_protocol() {
    let pg = pg();
    let up = pg.upstream(None).await;
    let postern = Postern::start().await;
    let alias = unique("app");
    let user = unique("carol");
    postern
        .grant(&up, &alias, &user, "carol-password-1", "disable")
        .await;
    let c = postern
        .connect(&user, "carol-password-1", &alias)
        .await
        .unwrap();

    // Prepared statement with binary parameters and results.
    c.batch_execute(
        "CREATE TABLE items (id bigint primary key, label text, price numeric, data bytea)",
    )
    .await
    .unwrap();
    let ins = c
        .prepare("INSERT INTO items (id, label, data) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    for i in 0..10i64 {
        c.execute(&ins, &[&i, &format!("item {i}"), &vec![i as u8; 3]])
            .await
            .unwrap();
    }
    let row = c
        .query_one("SELECT label, data FROM items WHERE id = $1", &[&7i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "item 7");
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![7u8; 3]);

    // Transactions: rollback leaves nothing, commit persists.
    let mut c = c;
    {
        let tx = c.transaction().await.unwrap();
        tx.execute("DELETE FROM items", &[]).await.unwrap();
        tx.rollback().await.unwrap();
    }
    assert_eq!(
        c.query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        10
    );
    {
        let tx = c.transaction().await.unwrap();
        tx.execute("DELETE FROM items WHERE id >= 5", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(
        c.query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        5
    );

    // An error inside the extended protocol does not derail the session.
    let err = c.query("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22012"));
    assert_eq!(
        c.query_one("SELECT 1::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    // COPY FROM STDIN and TO STDOUT.
    let sink = c
        .copy_in("COPY items (id, label) FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    let mut data = String::new();
    for i in 100..1100 {
        data.push_str(&format!("{i},copied {i}\n"));
    }
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data)).await.unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 1000);
    let out = c
        .copy_out("COPY (SELECT id FROM items WHERE id >= 100 ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    let text: Vec<u8> = chunks.concat();
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.lines().count(), 1000);
    assert_eq!(text.lines().next(), Some("100"));

    // A large result (≥ 100k rows) arrives complete and in order.
    let rows = c
        .query(
            "SELECT g, repeat('x', 50) FROM generate_series(1, 150000) g",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 150_000);
    assert_eq!(rows[149_999].get::<_, i32>(0), 150_000);

    // LISTEN/NOTIFY across two sessions through Postern.
    let (listener, mut conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(postern.pg_port())
        .user(&user)
        .password("carol-password-1")
        .dbname(&alias)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener.batch_execute("LISTEN postern_test").await.unwrap();
    c.batch_execute("NOTIFY postern_test, 'hello through postern'")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("notification arrives")
        .unwrap();
    assert_eq!(
        got,
        (
            "postern_test".to_string(),
            "hello through postern".to_string()
        )
    );

    // Cancel a running pg_sleep: the request is routed to the right upstream backend.
    let token = c.cancel_token();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = c.simple_query("SELECT pg_sleep(30)").await;
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, c) = sleeper.await.unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // The session survives the cancel.
    assert_eq!(
        c.query_one("SELECT 2::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );

    // Every Execute is audited with the prepared statement's text.
    drop(c);
    let events = postern
        .audit(AuditFilter {
            user: Some(user.clone()),
            kind: Some("statement".into()),
            limit: Some(10_000),
            ..Default::default()
        })
        .await;
    let inserts = events
        .iter()
        .filter(|e| {
            e.statement.as_deref()
                == Some("INSERT INTO items (id, label, data) VALUES ($1, $2, $3)")
        })
        .count();
    assert_eq!(inserts, 10);
    assert!(events
        .iter()
        .any(|e| e.statement.as_deref() == Some("SELECT ?/?")
            && e.statement_clear.as_deref() == Some("SELECT 1/0")
            && e.sqlstate.as_deref() == Some("22012")));
    assert!(events
        .iter()
        .any(|e| e.command_tag.as_deref() == Some("COPY 1000")));
    let sleeps: Vec<_> = events
        .iter()
        .filter(|e| e.statement_clear.as_deref() == Some("SELECT pg_sleep(30)"))
        .collect();
    assert!(
        sleeps
            .iter()
            .any(|e| e.sqlstate.as_deref() == Some("57014")),
        "{sleeps:?}"
    );

    drop(listener);
    postern.stop().await;
    up.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_md5_and_tls_logins() {
    let pg = pg();
    let postern = Postern::start().await;

    // md5 upstream authentication.
    let md5 = pg.upstream(Some("pt_md5_users")).await;
    let alias = unique("md5ds");
    let user = unique("dave");
    postern
        .grant(&md5, &alias, &user, "dave-password-1", "disable")
        .await;
    let c = postern
        .connect(&user, "dave-password-1", &alias)
        .await
        .unwrap();
    let who: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, md5.role);

    // An upstream that only accepts TLS: verify-full against the cluster's CA.
    let tls = pg.upstream(Some("pt_tls_users")).await;
    let alias2 = unique("tlsup");
    postern
        .grant(&tls, &alias2, &user, "dave-password-1", "verify-full")
        .await;
    let c = postern
        .connect(&user, "dave-password-1", &alias2)
        .await
        .unwrap();
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "upstream hop is encrypted");

    // The same upstream with TLS disabled on the datasource is refused by the server,
    // and the client gets a clear 08001.
    let alias3 = unique("notls");
    postern
        .grant(&tls, &alias3, &user, "dave-password-1", "disable")
        .await;
    let err = postern
        .connect(&user, "dave-password-1", &alias3)
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("08001"), "{err}");
    let msg = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains(&alias3), "{msg}");

    postern.stop().await;
    md5.drop_all().await;
    tls.drop_all().await;
}
