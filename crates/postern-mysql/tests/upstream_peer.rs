//! Postern's upstream login against a scripted server speaking caching_sha2_password: MariaDB
//! (what the other tests use) has no server side of that plugin, so the exchanges are played
//! here — fast path, full path over TLS (the password in clear, only inside TLS), refused
//! full path without TLS, an auth switch to mysql_native_password, and a wrong password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postern_auth::MysqlVerifier;
use postern_core::UpstreamTls;
use postern_mysql::codec::*;
use postern_mysql::io::{read_packet, read_packet_exact, write_packet};
use postern_mysql::upstream::{connect, UpstreamError, UpstreamTarget};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

const PASSWORD: &str = "upstream-Secret-9";
const NONCE: [u8; 20] = *b"abcdefghij0123456789";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    /// The server has the password hash cached: 0x01 0x03, then OK.
    FastPath,
    /// Cache miss: 0x01 0x04, then the password in clear (only acceptable inside TLS).
    FullPath,
    /// Switch to mysql_native_password with a fresh nonce.
    SwitchToNative,
    /// The server refuses whatever the scramble: ERR 1045.
    Wrong,
}

/// What the peer saw, for the test to check.
#[derive(Debug, Default)]
struct Seen {
    tls: bool,
    user: String,
    database: Option<String>,
    clear_password: Option<String>,
}

fn tls_pair() -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "scripted peer CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (Arc::new(config), ca_cert.pem())
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    first: BytesMut,
    seq: u8,
    script: Script,
    seen: &mut Seen,
) -> Result<(), String> {
    let resp = parse_handshake_response(&first).map_err(io)?;
    seen.user.clone_from(&resp.user);
    seen.database.clone_from(&resp.database);
    if resp.plugin.as_deref() != Some(CACHING_SHA2) {
        return Err(format!("client answered with plugin {:?}", resp.plugin));
    }
    let v = MysqlVerifier::derive(PASSWORD);
    let mut seq = seq.wrapping_add(1);
    if script == Script::Wrong || !v.check_sha2(&NONCE, &resp.auth) {
        write_packet(s, seq, &err(1045, "28000", "Access denied for user"))
            .await
            .map_err(io)?;
        return Ok(());
    }
    match script {
        Script::FastPath => {
            seq = write_packet(s, seq, &[0x01, 0x03]).await.map_err(io)?;
        }
        Script::FullPath => {
            write_packet(s, seq, &[0x01, 0x04]).await.map_err(io)?;
            let (p, _, last) = read_packet(s, buf, 1024).await.map_err(io)?;
            seq = last.wrapping_add(1);
            let pw = p.strip_suffix(&[0]).unwrap_or(&p);
            seen.clear_password = Some(String::from_utf8_lossy(pw).into_owned());
            if pw != PASSWORD.as_bytes() {
                write_packet(s, seq, &err(1045, "28000", "Access denied for user"))
                    .await
                    .map_err(io)?;
                return Ok(());
            }
        }
        Script::SwitchToNative => {
            let fresh = *b"ZYXWVUTSRQ9876543210";
            let mut sw = vec![0xfe];
            sw.extend_from_slice(NATIVE_PASSWORD.as_bytes());
            sw.push(0);
            sw.extend_from_slice(&fresh);
            sw.push(0);
            write_packet(s, seq, &sw).await.map_err(io)?;
            let (p, _, last) = read_packet(s, buf, 1024).await.map_err(io)?;
            seq = last.wrapping_add(1);
            if !v.check_native(&fresh, &p) {
                write_packet(s, seq, &err(1045, "28000", "Access denied (native)"))
                    .await
                    .map_err(io)?;
                return Ok(());
            }
        }
        Script::Wrong => return Err("unreachable".into()),
    }
    write_packet(s, seq, &ok(0, SERVER_STATUS_AUTOCOMMIT, ""))
        .await
        .map_err(io)?;
    Ok(())
}

/// Serves one login by `script`; returns what it saw.
async fn peer(
    listener: TcpListener,
    script: Script,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Seen, String> {
    let (mut tcp, _) = listener.accept().await.map_err(io)?;
    let mut caps = OFFERED | CLIENT_PLUGIN_AUTH | CLIENT_SECURE_CONNECTION | CLIENT_PROTOCOL_41;
    if tls.is_some() {
        caps |= CLIENT_SSL;
    }
    let g = greeting("8.0.40-scripted", 7, &NONCE, caps, CACHING_SHA2);
    write_packet(&mut tcp, 0, &g).await.map_err(io)?;
    let mut buf = BytesMut::new();
    // Read exactly the first packet: after an SSLRequest the TLS handshake follows at once.
    let (p, seq) = read_packet_exact(&mut tcp, 64 * 1024).await.map_err(io)?;
    let mut seen = Seen::default();
    if is_ssl_request(&p) {
        let cfg = tls.ok_or("client asked for TLS the server did not offer")?;
        let mut s = tokio_rustls::TlsAcceptor::from(cfg)
            .accept(tcp)
            .await
            .map_err(io)?;
        seen.tls = true;
        let mut buf = BytesMut::new();
        let (p, _, seq) = read_packet(&mut s, &mut buf, 64 * 1024).await.map_err(io)?;
        auth(&mut s, &mut buf, p, seq, script, &mut seen).await?;
    } else {
        auth(&mut tcp, &mut buf, p, seq, script, &mut seen).await?;
    }
    Ok(seen)
}

async fn login(
    script: Script,
    tls_mode: UpstreamTls,
    server_tls: bool,
    password: &str,
) -> (Result<(), UpstreamError>, Result<Seen, String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cfg, ca) = tls_pair();
    let server = tokio::spawn(peer(listener, script, server_tls.then_some(cfg)));
    let target = UpstreamTarget {
        host: if server_tls { "localhost" } else { "127.0.0.1" },
        port,
        database: "appdb",
        tls: tls_mode,
        tls_ca: Some(&ca),
        username: "app",
        password,
        client_capabilities: OFFERED,
        charset: 45,
    };
    let client = connect(&target, Duration::from_secs(5)).await.map(|_| ());
    let seen = match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("peer timed out".to_string()),
    };
    (client, seen)
}

#[tokio::test]
async fn fast_path_without_tls() {
    let (client, seen) = login(Script::FastPath, UpstreamTls::Disable, false, PASSWORD).await;
    client.expect("fast path login");
    let seen = seen.unwrap();
    assert!(!seen.tls);
    assert_eq!(seen.user, "app");
    assert_eq!(seen.database.as_deref(), Some("appdb"));
    assert_eq!(seen.clear_password, None);
}

#[tokio::test]
async fn full_path_sends_the_password_only_inside_tls() {
    let (client, seen) = login(Script::FullPath, UpstreamTls::VerifyFull, true, PASSWORD).await;
    client.expect("full path over TLS");
    let seen = seen.unwrap();
    assert!(seen.tls);
    assert_eq!(seen.clear_password.as_deref(), Some(PASSWORD));

    // Without TLS the same request is refused, and the password never leaves Postern.
    let (client, seen) = login(Script::FullPath, UpstreamTls::Disable, false, PASSWORD).await;
    let e = client.expect_err("full path without TLS");
    assert!(e.to_string().contains("only over TLS"), "{e}");
    assert_eq!(seen.ok().and_then(|s| s.clear_password), None);
}

#[tokio::test]
async fn auth_switch_to_native() {
    let (client, seen) = login(
        Script::SwitchToNative,
        UpstreamTls::Disable,
        false,
        PASSWORD,
    )
    .await;
    client.expect("native after the switch");
    seen.expect("the peer accepted the native answer");
}

#[tokio::test]
async fn refusals_are_the_servers_error() {
    // A wrong password fails the scramble check.
    let (client, _) = login(Script::FastPath, UpstreamTls::Disable, false, "not-it").await;
    match client {
        Err(UpstreamError::Server { code, sqlstate, .. }) => {
            assert_eq!((code, sqlstate.as_str()), (1045, "28000"));
        }
        other => panic!("{other:?}"),
    }
    let (client, _) = login(Script::Wrong, UpstreamTls::Disable, false, PASSWORD).await;
    assert!(matches!(
        client,
        Err(UpstreamError::Server { code: 1045, .. })
    ));
}
