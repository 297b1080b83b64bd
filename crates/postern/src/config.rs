//! `postern.toml`: every key optional, unknown keys rejected with their dotted path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store, keys, certificates and audit file live. `POSTERN_DATA_DIR` overrides.
    pub data_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// The HTTPS API.
    pub api: ApiConfig,
    /// The PostgreSQL front door.
    pub postgres: PostgresConfig,
    /// TLS certificate of Postern's listeners.
    pub tls: TlsConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Logins: second factor, approvals, lockouts.
    pub auth: AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("postern-data"),
            log: LogConfig::default(),
            api: ApiConfig::default(),
            postgres: PostgresConfig::default(),
            tls: TlsConfig::default(),
            audit: AuditConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `postern_pg=debug,info`. `RUST_LOG` overrides.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address of the HTTPS API.
    pub listen: String,
    /// Lifetime of an API session token.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:7443".into(),
            token_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// `[postgres]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Whether the PostgreSQL port is open.
    pub enabled: bool,
    /// Listen address.
    pub listen: String,
    /// Time a client has to finish TLS, startup and authentication.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time an upstream has to accept Postern's login.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Accept cleartext passwords over TLS for clients without SCRAM support.
    pub allow_cleartext_password: bool,
    /// Refuse clients that do not use TLS.
    pub require_tls: bool,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Pause before answering a failed login.
    #[serde(with = "humantime_serde")]
    pub login_failure_delay: Duration,
    /// Time live sessions get to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Longest a session with masking rules keeps one snapshot of the upstream catalog
    /// before reading it again (tables or columns created by others are masked from then).
    #[serde(with = "humantime_serde")]
    pub masking_catalog_max_age: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        let d = postern_pg::PgConfig::default();
        Self {
            enabled: true,
            listen: "0.0.0.0:7432".into(),
            handshake_timeout: d.handshake_timeout,
            upstream_timeout: d.upstream_timeout,
            allow_cleartext_password: d.allow_cleartext_password,
            require_tls: d.require_tls,
            max_connections: d.max_connections,
            login_failure_delay: d.login_failure_delay,
            shutdown_grace: d.shutdown_grace,
            masking_catalog_max_age: d.masking_catalog_max_age,
        }
    }
}

impl PostgresConfig {
    /// The proxy's settings.
    pub fn to_pg(&self) -> postern_pg::PgConfig {
        postern_pg::PgConfig {
            handshake_timeout: self.handshake_timeout,
            upstream_timeout: self.upstream_timeout,
            allow_cleartext_password: self.allow_cleartext_password,
            require_tls: self.require_tls,
            max_connections: self.max_connections,
            login_failure_delay: self.login_failure_delay,
            shutdown_grace: self.shutdown_grace,
            masking_catalog_max_age: self.masking_catalog_max_age,
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain to serve instead of the one Postern issues itself.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Names (DNS or IP) in the certificate Postern issues itself.
    pub server_names: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            server_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSON-lines copy of the audit trail (relative paths are under `data_dir`).
    pub file: PathBuf,
    /// Events that may wait in memory before sessions are slowed down.
    pub queue: usize,
    /// Group commit: after the first event of a batch, wait this long for more before
    /// writing the batch (fewer writes and fsyncs per event; denials wait this much longer).
    #[serde(with = "humantime_serde")]
    pub group_commit_window: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("audit.jsonl"),
            queue: 8192,
            group_commit_window: Duration::from_millis(10),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Every login needs a second factor (TOTP code, or an approval for native tools).
    /// On by default; turn it off only for labs and tests.
    pub require_2fa: bool,
    /// How long a native-tool login waits for its approval (`postern approve`).
    #[serde(with = "humantime_serde")]
    pub approval_timeout: Duration,
    /// An approval also covers later logins of the same user from the same address until
    /// it has gone unused this long.
    #[serde(with = "humantime_serde")]
    pub approval_cache_idle: Duration,
    /// TOTP steps (30 s) accepted either side of now, for clock drift.
    pub totp_skew_steps: u64,
    /// Failed logins of one user from one address before that pair is locked out.
    pub max_failures: u32,
    /// Failed logins from one address (any user) before the address is locked out.
    pub max_failures_per_address: u32,
    /// Failed logins of one user (any address) before the user is locked out.
    pub max_failures_per_user: u32,
    /// The first lockout; each further one doubles, up to `max_lockout`.
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// The longest lockout.
    #[serde(with = "humantime_serde")]
    pub max_lockout: Duration,
    /// Failures older than this are forgotten.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let l = postern_login::LoginConfig::default();
        Self {
            require_2fa: l.require_2fa,
            approval_timeout: l.approval_timeout,
            approval_cache_idle: l.approval_cache_idle,
            totp_skew_steps: l.totp_skew_steps,
            max_failures: l.throttle.max_failures,
            max_failures_per_address: l.throttle.max_failures_per_ip,
            max_failures_per_user: l.throttle.max_failures_per_user,
            lockout: l.throttle.lockout,
            max_lockout: l.throttle.max_lockout,
            failure_window: l.throttle.window,
        }
    }
}

impl AuthConfig {
    /// The login flow's settings.
    pub fn to_login(&self) -> postern_login::LoginConfig {
        postern_login::LoginConfig {
            require_2fa: self.require_2fa,
            approval_timeout: self.approval_timeout,
            approval_cache_idle: self.approval_cache_idle,
            totp_skew_steps: self.totp_skew_steps,
            throttle: postern_login::ThrottleConfig {
                max_failures: self.max_failures.max(1),
                max_failures_per_ip: self.max_failures_per_address.max(1),
                max_failures_per_user: self.max_failures_per_user.max(1),
                window: self.failure_window,
                lockout: self.lockout,
                max_lockout: self.max_lockout.max(self.lockout),
            },
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A key is unknown or a value has the wrong type.
    #[error("{path}: {message}")]
    Invalid {
        /// File and dotted key path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().to_string();
            ConfigError::Invalid {
                path: if key == "." || key.is_empty() {
                    origin.to_string()
                } else {
                    format!("{origin}: key `{key}`")
                },
                message,
            }
        })?;
        cfg.apply_env();
        Ok(cfg)
    }

    /// Loads `path`, or the defaults when no file is given.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())
            }
            None => {
                let mut c = Self::default();
                c.apply_env();
                Ok(c)
            }
        }
    }

    fn apply_env(&mut self) {
        if let Ok(d) = std::env::var("POSTERN_DATA_DIR") {
            if !d.is_empty() {
                self.data_dir = PathBuf::from(d);
            }
        }
    }

    /// The audit file's full path.
    pub fn audit_file(&self) -> PathBuf {
        if self.audit.file.is_absolute() {
            self.audit.file.clone()
        } else {
            self.data_dir.join(&self.audit.file)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.postgres.listen, "0.0.0.0:7432");
        assert_eq!(c.api.listen, "0.0.0.0:7443");
        assert_eq!(c.postgres.handshake_timeout, Duration::from_secs(30));
    }

    #[test]
    fn values_and_durations() {
        let c = Config::parse(
            "data_dir = \"/tmp/x\"\n[postgres]\nlisten = \"127.0.0.1:1\"\nhandshake_timeout = \"5s\"\n[log]\nformat = \"json\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.postgres.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_key_reported_with_dotted_path() {
        let e = Config::parse("[postgres]\nlistn = \"x\"\n", "postern.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("postgres"), "{s}");
        assert!(s.contains("listn"), "{s}");
        let e = Config::parse("[postgres]\nhandshake_timeout = 5\n", "postern.toml").unwrap_err();
        assert!(e.to_string().contains("postgres.handshake_timeout"), "{e}");
        let e = Config::parse("nonsense = 1\n", "postern.toml").unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
    }
}
