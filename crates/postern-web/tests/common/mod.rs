//! A router over a real store in a temporary directory, and a helper to call it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use postern_audit::{AuditLog, AuditSink, AuditWriter};
use postern_store::Store;
use postern_vault::MasterKey;
use postern_web::{router, ApiState};
use serde_json::Value;
use tower::ServiceExt;

/// One test's world.
pub struct Env {
    pub _dir: tempfile::TempDir,
    pub store: Store,
    pub audit: AuditLog,
    pub app: Router,
    /// The bootstrap admin's password.
    pub admin_pw: String,
}

/// The state every test uses (store, audit writer running, bootstrap admin created).
pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("postern.db"),
        Arc::new(MasterKey::generate()),
    )
    .await
    .unwrap();
    let head = store.audit_head().await.unwrap();
    let sinks: Vec<Box<dyn AuditSink>> = vec![Box::new(store.audit_sink())];
    let (audit, writer) = AuditWriter::new(256, sinks, head);
    tokio::spawn(writer.with_group_commit_window(Duration::ZERO).run());
    let admin_pw = store.bootstrap_admin().await.unwrap().unwrap();
    let app = router(state(&store, &audit));
    Env {
        _dir: dir,
        store,
        audit,
        app,
        admin_pw,
    }
}

/// API state over `store` and `audit`.
pub fn state(store: &Store, audit: &AuditLog) -> ApiState {
    ApiState {
        store: store.clone(),
        audit: audit.clone(),
        metrics: Arc::new(prometheus_client::registry::Registry::default()),
        token_ttl: Duration::from_secs(3600),
        login: Arc::new(postern_login::LoginFlow::new(
            store.clone(),
            audit.clone(),
            postern_login::LoginConfig {
                require_2fa: false,
                ..postern_login::LoginConfig::default()
            },
        )),
        certs: None,
        listeners: postern_web::Listeners::default(),
        masking_probe: None,
    }
}

impl Env {
    /// Sends one request; returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&b).unwrap())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    /// Signs in and returns the token.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({ "user": user, "password": password })),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// The bootstrap admin's token.
    pub async fn admin(&self) -> String {
        self.login("admin", &self.admin_pw.clone()).await
    }
}

/// A datasource `shop`, credential `shop-rw`, role `dba`, user `alice`, as JSON.
pub const UPSTREAM_PW: &str = "Upstream-Secret-7f3a9c";
/// Alice's initial password in [`sample_doc`].
pub const ALICE_PW: &str = "alice-initial-pw-5521";

/// The sample apply document.
pub fn sample_doc() -> Value {
    serde_json::json!({
        "datasource": [{ "name": "shop", "host": "db.internal", "port": 5432, "database": "shop" }],
        "credential": [{ "name": "shop-rw", "datasource": "shop", "username": "shop_app", "password": UPSTREAM_PW }],
        "role": [{ "name": "dba", "description": "database admins", "credentials": ["shop-rw"] }],
        "user": [{ "name": "alice", "roles": ["dba"], "password": ALICE_PW }]
    })
}
