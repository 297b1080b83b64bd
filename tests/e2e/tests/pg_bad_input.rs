//! Hostile and broken clients over raw sockets: each gets a clean error or close, nothing
//! panics, and the server keeps serving others. Also: secrets at rest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use postern_e2e::{pg, unique, Postern};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until EOF (or 10 s); returns what the server sent.
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

fn sqlstate(reply: &[u8]) -> Option<String> {
    if reply.first() != Some(&b'E') {
        return None;
    }
    let body = &reply[5..];
    let mut i = 0;
    while i < body.len() && body[i] != 0 {
        let code = body[i];
        let end = body[i + 1..].iter().position(|&b| b == 0)? + i + 1;
        if code == b'C' {
            return Some(String::from_utf8_lossy(&body[i + 1..end]).into_owned());
        }
        i = end + 1;
    }
    None
}

/// Logs in over a raw socket (SCRAM with postgres-protocol's client) up to ReadyForQuery.
async fn raw_login(addr: &str, user: &str, password: &str, db: &str) -> TcpStream {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut startup = Vec::new();
    startup.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 0]);
    for (k, v) in [("user", user), ("database", db)] {
        startup.extend_from_slice(k.as_bytes());
        startup.push(0);
        startup.extend_from_slice(v.as_bytes());
        startup.push(0);
    }
    startup.push(0);
    let len = (startup.len() as i32).to_be_bytes();
    startup[..4].copy_from_slice(&len);
    s.write_all(&startup).await.unwrap();
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    loop {
        let ty = s.read_u8().await.unwrap();
        let len = s.read_i32().await.unwrap() as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await.unwrap();
        match (
            ty,
            body.get(..4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        ) {
            (b'R', Some(10)) => {
                let mut msg = b"SCRAM-SHA-256\0".to_vec();
                msg.extend_from_slice(&(scram.message().len() as i32).to_be_bytes());
                msg.extend_from_slice(scram.message());
                send_p(&mut s, &msg).await;
            }
            (b'R', Some(11)) => {
                scram.update(&body[4..]).unwrap();
                let m = scram.message().to_vec();
                send_p(&mut s, &m).await;
            }
            (b'R', Some(12)) => scram.finish(&body[4..]).unwrap(),
            (b'Z', _) => return s,
            (b'E', _) => panic!("login refused: {body:?}"),
            _ => {}
        }
    }
}

async fn send_p(s: &mut TcpStream, body: &[u8]) {
    let mut m = vec![b'p'];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    s.write_all(&m).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_cleanly() {
    let pg = pg();
    let up = pg.upstream(None).await;
    let postern = Postern::start_with(|c| {
        c.postgres.handshake_timeout = Duration::from_secs(4);
    })
    .await;
    let alias = unique("bad");
    let user = unique("erin");
    postern
        .grant(&up, &alias, &user, "erin-password-1", "disable")
        .await;
    let addr = format!("127.0.0.1:{}", postern.pg_port());

    // Garbage first bytes (an HTTP request).
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = read_all(&mut s).await;
    assert_eq!(sqlstate(&reply).as_deref(), Some("08P01"), "{reply:?}");

    // A startup length of 2^31-1.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])
        .await
        .unwrap();
    let reply = read_all(&mut s).await;
    assert_eq!(sqlstate(&reply).as_deref(), Some("08P01"), "{reply:?}");

    // A startup message truncated mid-way, then the client goes away.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&[0, 0, 0, 40, 0, 3, 0, 0, b'u', b's'])
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let reply = read_all(&mut s).await;
    assert!(reply.is_empty(), "{reply:?}");

    // A client that connects and says nothing is closed after the handshake timeout.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let t = Instant::now();
    let reply = read_all(&mut s).await;
    assert!(reply.is_empty());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );

    // A flood of failed logins, concurrently; a good login still works afterwards.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let port = postern.pg_port();
        let user = user.clone();
        let alias = alias.clone();
        tasks.push(tokio::spawn(async move {
            let r = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(port)
                .user(&user)
                .password(format!("wrong-{i}"))
                .dbname(&alias)
                .connect(tokio_postgres::NoTls)
                .await;
            r.err()
                .map(|e| (e.code().map(|c| c.code().to_string()), e.to_string()))
        }));
    }
    for t in tasks {
        let (code, msg) = t.await.unwrap().expect("a wrong password never logs in");
        // Wrong password, or locked out once the failures passed the limit.
        assert!(matches!(code.as_deref(), Some("28P01" | "28000")), "{msg}");
    }
    // The flood locked this user out from this address, right password or not...
    let e = postern
        .connect(&user, "erin-password-1", &alias)
        .await
        .expect_err("locked out");
    assert!(format!("{e:?}").contains("too many failed logins"), "{e:?}");
    // ...until an admin unlocks them.
    postern_e2e::Cli::admin(&postern).ok(&["user", "unlock", &user], None);
    let c = postern
        .connect(&user, "erin-password-1", &alias)
        .await
        .unwrap();
    assert_eq!(
        c.query_one("SELECT 7::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );

    // SSLRequest followed by bytes before the answer (buffer stuffing) is refused.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut pkt = vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f];
    pkt.extend_from_slice(b"Qstuffed");
    s.write_all(&pkt).await.unwrap();
    let reply = read_all(&mut s).await;
    assert!(
        reply.is_empty() || sqlstate(&reply).as_deref() == Some("08P01"),
        "{reply:?}"
    );

    // TLS garbage after a granted SSLRequest: the handshake fails, the server carries on.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"S");
    s.write_all(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    let _ = read_all(&mut s).await;

    // A protocol violation inside a live session: a message with an absurd length.
    let mut s = raw_login(&addr, &user, "erin-password-1", &alias).await;
    s.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff, b's'])
        .await
        .unwrap();
    let reply = read_all(&mut s).await;
    assert_eq!(sqlstate(&reply).as_deref(), Some("08P01"), "{reply:?}");
    // And a well-formed query on a raw session still works (the raw client is sound).
    let mut s = raw_login(&addr, &user, "erin-password-1", &alias).await;
    s.write_all(b"Q\0\0\0\x0dselect 1\0X\0\0\0\x04")
        .await
        .unwrap();
    let reply = read_all(&mut s).await;
    assert!(reply.windows(8).any(|w| w == b"SELECT 1"), "{reply:?}");

    let c2 = postern
        .connect(&user, "erin-password-1", &alias)
        .await
        .unwrap();
    assert_eq!(
        c2.query_one("SELECT 8::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        8
    );
    assert_eq!(
        c.query_one("SELECT 9::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        9
    );

    postern.stop().await;
    up.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_password_is_encrypted_at_rest() {
    let pg = pg();
    let up = pg.upstream(None).await;
    let postern = Postern::start().await;
    let alias = unique("rest");
    let user = unique("frank");
    postern
        .grant(&up, &alias, &user, "frank-password-1", "disable")
        .await;
    // The credential works…
    let c = postern
        .connect(&user, "frank-password-1", &alias)
        .await
        .unwrap();
    c.simple_query("select 1").await.unwrap();
    drop(c);
    // …yet neither its password nor the user's appears in any file of the data directory.
    let data = postern.handle.data_dir.clone();
    let mut checked = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            for secret in [up.password.as_bytes(), b"frank-password-1".as_slice()] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret),
                    "{} contains a clear secret",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "store, key and audit files checked");
    // Nor does the API's view of the credential.
    let view = postern
        .handle
        .store
        .get(postern_core::Kind::Credential, &format!("{alias}-cred"))
        .await
        .unwrap()
        .unwrap();
    assert!(!view.to_string().contains(&up.password));
    postern.stop().await;
    up.drop_all().await;
}
