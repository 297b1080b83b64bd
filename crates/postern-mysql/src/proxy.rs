//! The MySQL listener: accepts connections and runs one session task per client.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use postern_audit::AuditLog;
use postern_store::Store;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Settings of the MySQL front door (`[mysql]` in postern.toml).
#[derive(Debug, Clone)]
pub struct MysqlConfig {
    /// Time a client has to complete the handshake and authentication.
    pub handshake_timeout: Duration,
    /// Time the upstream has to accept Postern's login.
    pub upstream_timeout: Duration,
    /// Refuse clients that do not use TLS.
    pub require_tls: bool,
    /// Concurrent client connections; more are refused (ER_CON_COUNT_ERROR).
    pub max_connections: usize,
    /// Pause before answering a failed login.
    pub login_failure_delay: Duration,
    /// Time live sessions get to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Largest command a client may send (bytes; MySQL's max_allowed_packet).
    pub max_packet: usize,
    /// Server version announced before the datasource is known, when no MySQL datasource
    /// has been reached yet (afterwards: the version the upstream itself announced).
    pub server_version: String,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(10),
            require_tls: false,
            max_connections: 10_000,
            login_failure_delay: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
            max_packet: 64 * 1024 * 1024,
            server_version: "8.0.40".into(),
        }
    }
}

/// Counters exported on `/metrics`.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    pub connections: Counter,
    pub active: Gauge,
    pub login_failures: Counter,
    pub statements: Counter,
    pub refusals: Counter,
    pub alerts: Counter,
}

/// A live session, for KILL routing: which upstream connection a Postern connection id is.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub user: Arc<str>,
    pub upstream: SocketAddr,
    pub thread_id: u32,
}

pub(crate) struct Inner {
    pub cfg: MysqlConfig,
    pub store: Store,
    pub audit: AuditLog,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub metrics: Metrics,
    pub login: Arc<postern_login::LoginFlow>,
    /// The version announced in greetings: the last one an upstream announced.
    pub version: RwLock<Arc<str>>,
    next_id: AtomicU32,
    /// Postern connection id → upstream connection.
    pub live: Mutex<HashMap<u32, Live>>,
}

impl Inner {
    /// A fresh connection id (never 0).
    pub fn connection_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    pub fn version(&self) -> Arc<str> {
        self.version
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn seen_version(&self, v: &str) {
        if *self.version() != *v {
            if let Ok(mut w) = self.version.write() {
                *w = v.into();
            }
        }
    }
}

/// Removes a session from the KILL table when it ends.
pub(crate) struct LiveGuard<'a> {
    pub inner: &'a Inner,
    pub id: u32,
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.inner.live.lock() {
            m.remove(&self.id);
        }
    }
}

/// The MySQL proxy.
#[derive(Clone)]
pub struct MysqlProxy {
    inner: Arc<Inner>,
}

impl MysqlProxy {
    /// Builds the proxy and registers its metrics in `registry`.
    pub fn new(
        cfg: MysqlConfig,
        store: Store,
        audit: AuditLog,
        tls: Option<Arc<rustls::ServerConfig>>,
        login: Arc<postern_login::LoginFlow>,
        registry: &mut Registry,
    ) -> Self {
        let metrics = Metrics::default();
        registry.register(
            "postern_mysql_connections",
            "Client connections accepted on the MySQL port",
            metrics.connections.clone(),
        );
        registry.register(
            "postern_mysql_sessions_active",
            "MySQL client connections currently open",
            metrics.active.clone(),
        );
        registry.register(
            "postern_mysql_login_failures",
            "Refused MySQL logins",
            metrics.login_failures.clone(),
        );
        registry.register(
            "postern_mysql_statements",
            "Commands relayed and audited on the MySQL port",
            metrics.statements.clone(),
        );
        registry.register(
            "postern_mysql_statements_refused",
            "Commands refused by Postern on the MySQL port",
            metrics.refusals.clone(),
        );
        registry.register(
            "postern_mysql_statements_alerted",
            "Commands let through on the MySQL port by an allow-and-alert firewall rule",
            metrics.alerts.clone(),
        );
        let version = cfg.server_version.clone();
        let first_id = rand::random::<u32>() % 1_000_000 + 1;
        Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                audit,
                tls: tls.map(tokio_rustls::TlsAcceptor::from),
                metrics,
                login,
                version: RwLock::new(version.into()),
                next_id: AtomicU32::new(first_id),
                live: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Learns the version to announce from the first MySQL datasource that answers (so the
    /// very first greeting already carries a real server version). Takes at most the
    /// upstream timeout in all, however many datasources do not answer.
    pub async fn learn_version(&self) {
        let _ = tokio::time::timeout(self.inner.cfg.upstream_timeout, self.probe_versions()).await;
    }

    async fn probe_versions(&self) {
        let Ok(all) = self.inner.store.mysql_datasources().await else {
            return;
        };
        for ds in all {
            if let Some(v) =
                crate::upstream::probe_version(&ds.host, ds.port, self.inner.cfg.upstream_timeout)
                    .await
            {
                self.inner.seen_version(&v);
                return;
            }
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
            "MySQL",
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
}
