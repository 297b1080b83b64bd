//! The PostgreSQL listener: accepts connections and runs one session task per client.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use postern_audit::AuditLog;
use postern_store::Store;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rand::RngCore;
use tokio::net::TcpListener;

use crate::cancel::CancelRegistry;

/// Settings of the PostgreSQL front door.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Time a client has to complete startup and authentication.
    pub handshake_timeout: Duration,
    /// Time the upstream has to accept Postern's login.
    pub upstream_timeout: Duration,
    /// Accept a cleartext password (only ever over TLS) for clients that cannot do SCRAM.
    pub allow_cleartext_password: bool,
    /// Refuse clients that do not use TLS.
    pub require_tls: bool,
    /// Concurrent client connections; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// Pause before answering a failed login (slows down password guessing).
    pub login_failure_delay: Duration,
    /// Time live sessions get to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Longest a session masks with the same snapshot of the upstream catalog (tables,
    /// columns and views its masking rules cover) before reading it again; a session
    /// reads it again sooner after its own schema changes.
    pub masking_catalog_max_age: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(10),
            allow_cleartext_password: false,
            require_tls: false,
            max_connections: 10_000,
            login_failure_delay: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
            masking_catalog_max_age: Duration::from_secs(60),
        }
    }
}

/// Counters exported on `/metrics`.
#[derive(Clone, Default)]
pub(crate) struct PgMetrics {
    pub connections: Counter,
    pub active: Gauge,
    pub login_failures: Counter,
    pub statements: Counter,
    pub refusals: Counter,
    pub alerts: Counter,
}

pub(crate) struct Inner {
    pub cfg: PgConfig,
    pub store: Store,
    pub audit: AuditLog,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub cancel: CancelRegistry,
    pub metrics: PgMetrics,
    /// Key for the decoy SCRAM salts of unknown users (stable for the process lifetime).
    pub decoy_key: [u8; 32],
    /// Upstream SCRAM salted passwords, so repeat logins skip PBKDF2.
    pub salted: postern_auth::SaltedPasswordCache,
    /// The login flow shared with the other front doors (lockouts, second factor).
    pub login: Arc<postern_login::LoginFlow>,
}

/// The PostgreSQL proxy.
#[derive(Clone)]
pub struct PgProxy {
    inner: Arc<Inner>,
}

impl PgProxy {
    /// Builds the proxy and registers its metrics in `registry`.
    pub fn new(
        cfg: PgConfig,
        store: Store,
        audit: AuditLog,
        tls: Option<Arc<rustls::ServerConfig>>,
        login: Arc<postern_login::LoginFlow>,
        registry: &mut Registry,
    ) -> Self {
        let metrics = PgMetrics::default();
        registry.register(
            "postern_pg_connections",
            "Client connections accepted on the PostgreSQL port",
            metrics.connections.clone(),
        );
        registry.register(
            "postern_pg_sessions_active",
            "PostgreSQL client connections currently open",
            metrics.active.clone(),
        );
        registry.register(
            "postern_pg_login_failures",
            "Refused PostgreSQL logins",
            metrics.login_failures.clone(),
        );
        registry.register(
            "postern_pg_statements",
            "Statements relayed and audited on the PostgreSQL port",
            metrics.statements.clone(),
        );
        registry.register(
            "postern_pg_statements_refused",
            "Statements refused by Postern's policy (privileges, mode, firewall)",
            metrics.refusals.clone(),
        );
        registry.register(
            "postern_pg_statements_alerted",
            "Statements let through by an allow-and-alert firewall rule",
            metrics.alerts.clone(),
        );
        let mut decoy_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut decoy_key);
        Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                audit,
                tls: tls.map(tokio_rustls::TlsAcceptor::from),
                cancel: CancelRegistry::default(),
                metrics,
                decoy_key,
                salted: postern_auth::SaltedPasswordCache::new(4096),
                login,
            }),
        }
    }

    /// Accepts clients until `shutdown` resolves, then gives live sessions
    /// `shutdown_grace` to finish before closing them.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let cfg = &self.inner.cfg;
        postern_net::serve(
            listener,
            shutdown,
            cfg.max_connections,
            cfg.shutdown_grace,
            "PostgreSQL",
            |tcp, peer, admitted| {
                let inner = self.inner.clone();
                inner.metrics.connections.inc();
                async move {
                    inner.metrics.active.inc();
                    crate::session::run(inner.clone(), tcp, peer, admitted).await;
                    inner.metrics.active.dec();
                }
            },
        )
        .await
    }

    /// Sessions currently registered for cancellation (i.e. past login).
    pub fn live_sessions(&self) -> usize {
        self.inner.cancel.len()
    }
}
