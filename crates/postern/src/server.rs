//! Starting and stopping a Postern server: data directory, keys, store, CA, audit writer,
//! and the listeners. Tests start it in-process on port 0 through [`start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use postern_audit::{AuditEvent, AuditSink, AuditWriter, EventKind, JsonlSink};
use postern_store::Store;
use postern_vault::pki::{load_or_issue_server, CertAndKey};
use postern_vault::{pki::Ca, MasterKey};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;

/// A running server.
pub struct ServerHandle {
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where the PostgreSQL port listens (None when disabled).
    pub pg_addr: Option<SocketAddr>,
    /// Where the MySQL port listens (None when disabled).
    pub mysql_addr: Option<SocketAddr>,
    /// Where the SSH port listens (None when disabled).
    pub ssh_addr: Option<SocketAddr>,
    /// The bootstrap admin password, on the first start only.
    pub bootstrap_password: Option<String>,
    /// Postern's CA certificate (PEM): what clients trust.
    pub ca_pem: String,
    /// Path of the CA certificate file.
    pub ca_path: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The store (for tests and embedding).
    pub store: Store,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    audit_task: postern_audit::AuditThread,
}

/// How much lower than the sessions' the audit writer's CPU priority is.
const AUDIT_WRITER_NICE: i32 = 10;

impl ServerHandle {
    /// Stops accepting, lets sessions finish (within their grace period), flushes the audit
    /// trail, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // Every audit handle is gone once the listeners have stopped: the writer drains.
        if tokio::time::timeout(Duration::from_secs(30), self.audit_task.join())
            .await
            .is_err()
        {
            tracing::error!("audit writer did not finish within 30 s");
        }
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn tls_config(
    ck: &CertAndKey,
    alpn: &[&[u8]],
    client_certs: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut ck.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("server certificate is not valid PEM")?;
    let key = rustls_pemfile::private_key(&mut ck.key_pem.as_bytes())
        .context("server key is not valid PEM")?
        .context("no private key found in the server key file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let builder = match client_certs {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("server certificate and key do not match")?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Starts a server per `cfg`. Listeners bind before this returns, so port 0 works.
pub async fn start(cfg: Config) -> anyhow::Result<ServerHandle> {
    let data_dir = cfg.data_dir.clone();
    create_private_dir(&data_dir)?;
    let key_path = data_dir.join("master.key");
    let env_key = std::env::var(postern_vault::ENV_KEY).is_ok_and(|v| !v.trim().is_empty());
    if !env_key && !key_path.exists() && data_dir.join("ca.key.sealed").exists() {
        // Never mint a new key over secrets sealed with another one: they would be lost.
        anyhow::bail!(
            "the master key is missing: {} does not exist and {} is not set, but {} holds secrets sealed with a master key; restore master.key or set {}",
            key_path.display(),
            postern_vault::ENV_KEY,
            data_dir.display(),
            postern_vault::ENV_KEY
        );
    }
    let (key, key_created) = MasterKey::load_or_create(&key_path)?;
    if key_created {
        tracing::info!(path = %key_path.display(), "generated a new master key");
    }
    let key = Arc::new(key);
    let store = Store::open(&data_dir.join("postern.db"), key.clone())
        .await
        .context("cannot open the store")?;
    let (ca, ca_created) = Ca::load_or_create(&data_dir, &key)?;
    if ca_created {
        tracing::info!(path = %data_dir.join("ca.crt").display(), "created Postern's certificate authority");
    }
    let server_cert = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => CertAndKey {
            cert_pem: std::fs::read_to_string(c)
                .with_context(|| format!("tls.cert: cannot read {}", c.display()))?,
            key_pem: std::fs::read_to_string(k)
                .with_context(|| format!("tls.key: cannot read {}", k.display()))?,
        },
        (None, None) => load_or_issue_server(&data_dir, &ca, &key, &cfg.tls.server_names)?,
        _ => anyhow::bail!("tls.cert and tls.key must be given together"),
    };
    let (user_ca, user_ca_created) = Ca::load_or_create_user(&data_dir, &key)?;
    if user_ca_created {
        tracing::info!(path = %data_dir.join("user-ca.crt").display(), "created Postern's user CA (signs the short-lived certificates of `postern login`)");
    }

    // Audit: the store and the JSON-lines file, continuing the store's chain.
    let head = store
        .audit_head()
        .await
        .context("cannot read the audit chain head")?;
    let sinks: Vec<Box<dyn AuditSink>> = vec![
        Box::new(store.audit_sink()),
        Box::new(JsonlSink::new(&cfg.audit_file())),
    ];
    let (audit, writer) = AuditWriter::new(cfg.audit.queue, sinks, head);
    let writer = writer.with_group_commit_window(cfg.audit.group_commit_window);
    // Statements first: the writer runs on its own thread, niceness +10 (see spawn_thread).
    let audit_task = writer
        .spawn_thread(AUDIT_WRITER_NICE)
        .context("cannot start the audit writer thread")?;

    let bootstrap_password = store
        .bootstrap_admin()
        .await
        .context("cannot create the bootstrap admin")?;
    let mut start_event = AuditEvent::new(EventKind::ServerStart);
    start_event.detail = Some(
        serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "bootstrap_admin_created": bootstrap_password.is_some() }),
    );
    audit.record(start_event).await?;

    let mut login =
        postern_login::LoginFlow::new(store.clone(), audit.clone(), cfg.auth.to_login())
            .with_user_ca(user_ca.cert_der())?;
    if let Some(l) = &cfg.ldap {
        let dir = postern_login::LdapDirectory::new(l.to_settings()?)
            .map_err(|e| anyhow::anyhow!("ldap: {e}"))?;
        tracing::info!(url = %l.url, "directory logins enabled");
        login = login.with_directory(dir);
    }
    if let Some(o) = &cfg.oidc {
        let sso =
            postern_login::Oidc::new(o.to_settings()?).map_err(|e| anyhow::anyhow!("oidc: {e}"))?;
        tracing::info!(issuer = %o.issuer, "single sign-on enabled");
        login = login.with_sso(sso);
    }
    let login = Arc::new(login);
    let api_tls = tls_config(&server_cert, &[b"h2", b"http/1.1"], None)?;
    // The database ports take the client certificates of `postern login`.
    let pg_tls = tls_config(&server_cert, &[], login.tls_client_verifier())?;
    if !cfg.auth.require_2fa {
        tracing::warn!("auth.require_2fa is off: a password alone opens every door");
    }

    let (stop, stopped) = watch::channel(false);
    let shutdown = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let mut tasks = Vec::new();

    let pg_addr = if cfg.postgres.enabled {
        let listener = TcpListener::bind(&cfg.postgres.listen)
            .await
            .with_context(|| {
                format!("postgres.listen: cannot listen on {}", cfg.postgres.listen)
            })?;
        let addr = listener.local_addr()?;
        let proxy = postern_pg::PgProxy::new(
            cfg.postgres.to_pg(),
            store.clone(),
            audit.clone(),
            Some(pg_tls.clone()),
            login.clone(),
            &mut registry,
        );
        let sd = shutdown(stopped.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = proxy.serve(listener, sd).await {
                tracing::error!(error = %e, "PostgreSQL listener failed");
            }
        }));
        Some(addr)
    } else {
        None
    };

    let mysql_addr = if cfg.mysql.enabled {
        let listener = TcpListener::bind(&cfg.mysql.listen)
            .await
            .with_context(|| format!("mysql.listen: cannot listen on {}", cfg.mysql.listen))?;
        let addr = listener.local_addr()?;
        let proxy = postern_mysql::MysqlProxy::new(
            cfg.mysql.to_mysql(),
            store.clone(),
            audit.clone(),
            Some(pg_tls),
            login.clone(),
            &mut registry,
        );
        let sd = shutdown(stopped.clone());
        tasks.push(tokio::spawn(async move {
            // The first greeting should carry a real server version: learn one first.
            proxy.learn_version().await;
            if let Err(e) = proxy.serve(listener, sd).await {
                tracing::error!(error = %e, "MySQL listener failed");
            }
        }));
        Some(addr)
    } else {
        None
    };

    let ssh_addr = if cfg.ssh.enabled {
        let listener = TcpListener::bind(&cfg.ssh.listen)
            .await
            .with_context(|| format!("ssh.listen: cannot listen on {}", cfg.ssh.listen))?;
        let addr = listener.local_addr()?;
        let (host_key, created) = postern_vault::ssh::load_or_create_host_key(&data_dir, &key)
            .map_err(|e| anyhow::anyhow!("ssh host key: {e}"))?;
        if created {
            tracing::info!(path = %data_dir.join("ssh_host_ed25519.key.sealed").display(), "generated Postern's SSH host key");
        }
        let proxy = postern_ssh::SshProxy::new(
            cfg.ssh.to_ssh(&data_dir),
            store.clone(),
            audit.clone(),
            login.clone(),
            &host_key,
            &mut registry,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let sd = shutdown(stopped.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = proxy.serve(listener, sd).await {
                tracing::error!(error = %e, "SSH listener failed");
            }
        }));
        Some(addr)
    } else {
        None
    };

    let api_listener = TcpListener::bind(&cfg.api.listen)
        .await
        .with_context(|| format!("api.listen: cannot listen on {}", cfg.api.listen))?;
    let api_addr = api_listener.local_addr()?;
    let state = postern_web::ApiState {
        store: store.clone(),
        audit: audit.clone(),
        metrics: Arc::new(registry),
        token_ttl: cfg.api.token_ttl,
        login: login.clone(),
        certs: Some(Arc::new(postern_web::CertIssuer {
            ca: user_ca,
            default_ttl: cfg.auth.cert_ttl,
            max_ttl: cfg.auth.cert_max_ttl,
        })),
        listeners: postern_web::Listeners {
            postgres: pg_addr.map(|a| a.port()),
            mysql: mysql_addr.map(|a| a.port()),
        },
        masking_probe: Some(Arc::new(PgMaskingProbe {
            store: store.clone(),
            timeout: cfg.postgres.upstream_timeout,
        })),
    };
    let sd = shutdown(stopped.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = postern_web::serve(api_listener, api_tls, state, sd).await {
            tracing::error!(error = %e, "API listener failed");
        }
    }));
    drop(audit);

    Ok(ServerHandle {
        api_addr,
        pg_addr,
        mysql_addr,
        ssh_addr,
        bootstrap_password,
        ca_pem: ca.cert_pem.clone(),
        ca_path: data_dir.join("ca.crt"),
        data_dir,
        store,
        stop,
        tasks,
        audit_task,
    })
}

/// `policy check`'s view of masking: what a PostgreSQL or MySQL session would read and plan.
struct PgMaskingProbe {
    store: postern_store::Store,
    timeout: std::time::Duration,
}

#[async_trait::async_trait]
impl postern_web::policy_routes::MaskingProbe for PgMaskingProbe {
    async fn session_masking(
        &self,
        user: &str,
        ds: &postern_core::DatasourceSpec,
        policy: &postern_policy::Policy,
    ) -> Result<Option<(Option<postern_policy::SessionMasking>, Vec<String>)>, String> {
        if ds.kind == postern_core::DatasourceType::Mysql {
            return postern_mysql::probe::session_masking(
                &self.store,
                user,
                ds,
                policy,
                self.timeout,
            )
            .await;
        }
        Ok(
            postern_pg::probe::session_masking(&self.store, user, ds, policy, self.timeout)
                .await?
                .map(|v| (v.masking, v.search_path)),
        )
    }
}
