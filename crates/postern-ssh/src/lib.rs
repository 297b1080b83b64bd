//! The SSH front door (S1, S2).
//!
//! `ssh -p 7022 LOGIN@postern`: the person is known by their registered public key, proves
//! the second factor by keyboard-interactive (a TOTP code) unless an approval from the same
//! address is cached, and must hold a role granting the SSH login `LOGIN`. Postern then
//! signs in to the target with the login's stored secret (the person never sees it),
//! checking the target's host key against the pinned one, and relays the channels the
//! person opens: shells with a PTY, commands, `scp`, the `sftp` subsystem. Port, agent and
//! X11 forwarding are refused unless a role grants them.
//!
//! * [`session`]: the person's side (russh server handler): authentication, channel
//!   decisions, audit.
//! * [`upstream`]: the target's side (russh client): host-key pinning, the stored secret,
//!   channels the target opens towards the person (remote forwards, agent, X11).
//! * [`relay`]: moves one channel's messages both ways.

pub mod recording;
pub mod relay;
pub mod session;
pub mod transfer;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_audit::AuditLog;
use postern_login::LoginFlow;
use postern_store::Store;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use russh::keys::PrivateKey;
use tokio::net::TcpListener;

/// Settings of the SSH port (`[ssh]` in postern.toml).
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// Most simultaneous connections; more are turned away.
    pub max_connections: usize,
    /// A client must finish signing in (second factor included) within this.
    pub handshake_timeout: Duration,
    /// Connecting and signing in to a target must finish within this.
    pub upstream_timeout: Duration,
    /// Sessions still open at shutdown get this long to finish.
    pub shutdown_grace: Duration,
    /// How often an open session checks that its person may still use the login.
    pub recheck_interval: Duration,
    /// Where recordings of interactive sessions go.
    pub recordings_dir: std::path::PathBuf,
    /// Record what people type too (passwords typed at prompts included).
    pub record_input: bool,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            handshake_timeout: Duration::from_secs(120),
            upstream_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            recheck_interval: Duration::from_secs(2),
            recordings_dir: std::path::PathBuf::from("postern-data/recordings"),
            record_input: false,
        }
    }
}

/// Counters exported on `/metrics`.
#[derive(Clone, Default)]
pub struct Metrics {
    /// Connections accepted.
    pub connections: Counter,
    /// Signed-in sessions open now.
    pub active: Gauge,
    /// Sign-ins refused (after a registered key, or for an unregistered one).
    pub login_failures: Counter,
    /// Channels opened (shells, commands, transfers, forwards).
    pub channels: Counter,
    /// Channels or requests refused for want of a grant (forwarding, agent, X11). A channel
    /// refused because it cannot be recorded is audited but not counted here.
    pub refusals: Counter,
    /// Bytes relayed between people and targets, both ways.
    pub bytes: Counter,
}

impl Metrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "postern_ssh_connections",
            "Client connections accepted on the SSH port",
            self.connections.clone(),
        );
        registry.register(
            "postern_ssh_sessions_active",
            "Signed-in SSH sessions currently open",
            self.active.clone(),
        );
        registry.register(
            "postern_ssh_login_failures",
            "Refused SSH sign-ins",
            self.login_failures.clone(),
        );
        registry.register(
            "postern_ssh_channels",
            "SSH channels opened (shells, commands, transfers, forwards)",
            self.channels.clone(),
        );
        registry.register(
            "postern_ssh_refusals",
            "SSH channels and requests refused by Postern",
            self.refusals.clone(),
        );
        registry.register(
            "postern_ssh_bytes",
            "Bytes relayed on the SSH port, both directions",
            self.bytes.clone(),
        );
    }
}

/// What every SSH session shares.
pub struct Shared {
    /// Settings.
    pub settings: SshSettings,
    /// The store.
    pub store: Store,
    /// The audit log.
    pub audit: AuditLog,
    /// The login flow (lockouts, second factor, approvals).
    pub login: Arc<LoginFlow>,
    /// russh's server settings (host key, algorithms, limits).
    pub server_config: Arc<russh::server::Config>,
    /// Where session recordings go.
    pub recordings: Arc<recording::RecordingSettings>,
    /// Counters on `/metrics`.
    pub metrics: Metrics,
}

/// The SSH listener.
pub struct SshProxy {
    shared: Arc<Shared>,
}

impl SshProxy {
    /// A proxy answering with host key `host_key` (OpenSSH PEM); its metrics go into
    /// `registry`.
    pub fn new(
        settings: SshSettings,
        store: Store,
        audit: AuditLog,
        login: Arc<LoginFlow>,
        host_key_pem: &str,
        registry: &mut Registry,
    ) -> Result<Self, String> {
        let host_key = PrivateKey::from_openssh(host_key_pem)
            .map_err(|e| format!("the SSH host key is unreadable: {e}"))?;
        let server_config = russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-Postern".into()),
            methods: russh::MethodSet::from(
                &[
                    russh::MethodKind::PublicKey,
                    russh::MethodKind::KeyboardInteractive,
                ][..],
            ),
            // Keys are not secrets to guess: a short constant delay is enough, and agents
            // offering several keys should not wait a second per key.
            auth_rejection_time: Duration::from_millis(100),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![host_key],
            max_auth_attempts: 12,
            // Idle and session limits are Postern's own (per role); keepalives notice dead
            // peers.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 4,
            nodelay: true,
            ..Default::default()
        };
        let recordings = Arc::new(recording::RecordingSettings {
            dir: settings.recordings_dir.clone(),
            record_input: settings.record_input,
        });
        let metrics = Metrics::default();
        metrics.register(registry);
        Ok(Self {
            shared: Arc::new(Shared {
                metrics,
                recordings,
                settings,
                store,
                audit,
                login,
                server_config: Arc::new(server_config),
            }),
        })
    }

    /// Accepts clients until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let shared = self.shared;
        let max = shared.settings.max_connections;
        let grace = shared.settings.shutdown_grace;
        postern_net::serve(
            listener,
            shutdown,
            max,
            grace,
            "ssh",
            move |tcp, peer: SocketAddr, admitted| {
                let shared = shared.clone();
                async move {
                    shared.metrics.connections.inc();
                    if admitted {
                        session::run(shared, tcp, peer).await;
                    } else {
                        tracing::warn!(%peer, "too many SSH connections; refusing");
                        drop(tcp);
                    }
                }
            },
        )
        .await
    }
}
