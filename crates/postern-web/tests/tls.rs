//! `serve`: the router over real TLS, client addresses in events, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::env;
use postern_store::AuditFilter;
use postern_vault::pki::Ca;
use tokio::net::TcpListener;

fn server_tls(ca: &Ca) -> Arc<rustls::ServerConfig> {
    let ck = ca.issue_server(&["127.0.0.1".into()], 1).unwrap();
    let certs = rustls_pemfile::certs(&mut ck.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut ck.key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test]
async fn serves_https_and_stops_on_shutdown() {
    let e = env().await;
    let ca = Ca::generate("test CA").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(postern_web::serve(
        listener,
        server_tls(&ca),
        common::state(&e.store, &e.audit),
        async move {
            let _ = stopped.await;
        },
    ));

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", addr.port());
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");

    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "user": "admin", "password": e.admin_pw }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ev = e
        .store
        .audit_search(&AuditFilter {
            kind: Some("login_success".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let client_addr = ev[0].client_addr.as_deref().unwrap();
    assert!(client_addr.starts_with("127.0.0.1:"), "{client_addr}");

    // A client that does not trust the CA is refused at the handshake.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());

    // An idle keep-alive connection does not hold shutdown up.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns promptly after shutdown")
        .unwrap()
        .unwrap();
    assert!(client.get(format!("{base}/healthz")).send().await.is_err());
}
