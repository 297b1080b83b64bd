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
    /// The MySQL / MariaDB front door.
    pub mysql: MysqlConfig,
    /// The SSH front door.
    pub ssh: SshConfig,
    /// TLS certificate of Postern's listeners.
    pub tls: TlsConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Logins: second factor, approvals, lockouts.
    pub auth: AuthConfig,
    /// A directory (LDAP / Active Directory) that checks people's passwords; absent: none.
    pub ldap: Option<LdapConfig>,
    /// An OpenID Connect provider for single sign-on (`postern login --sso`); absent: none.
    pub oidc: Option<OidcConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("postern-data"),
            log: LogConfig::default(),
            api: ApiConfig::default(),
            postgres: PostgresConfig::default(),
            mysql: MysqlConfig::default(),
            ssh: SshConfig::default(),
            tls: TlsConfig::default(),
            audit: AuditConfig::default(),
            auth: AuthConfig::default(),
            ldap: None,
            oidc: None,
        }
    }
}

/// `[oidc]`: single sign-on through an OpenID Connect provider. Register Postern there as a
/// public native client (no secret; PKCE; redirect URI `http://127.0.0.1/callback` on any
/// port; the device grant for hosts without a browser).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (https; http only on a loopback address).
    pub issuer: String,
    /// Postern's client id at the provider.
    pub client_id: String,
    /// Scopes asked for.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token claim holding the Postern user name.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The ID-token claim holding the person's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The provider's CA certificate (PEM), when not a public one.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Time a request to the provider may take.
    #[serde(default = "default_oidc_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Group → Postern roles, applied at every sign-in.
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, Vec<String>>,
}

/// The PEM file a `*.ca` key names, read at start-up.
fn read_ca(key: &str, path: Option<&Path>) -> anyhow::Result<Option<Vec<u8>>> {
    use anyhow::Context;
    path.map(|p| std::fs::read(p).with_context(|| format!("{key}: cannot read {}", p.display())))
        .transpose()
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_oidc_timeout() -> Duration {
    Duration::from_secs(10)
}

impl OidcConfig {
    /// The verifier's settings, reading the CA file.
    pub fn to_settings(&self) -> anyhow::Result<postern_login::OidcSettings> {
        let ca_pem = read_ca("oidc.ca", self.ca.as_deref())?;
        Ok(postern_login::OidcSettings {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
            username_claim: self.username_claim.clone(),
            groups_claim: self.groups_claim.clone(),
            group_roles: self.group_roles.clone(),
            ca_pem,
            timeout: self.timeout,
        })
    }
}

/// `[ldap]`: people whose password the directory checks (no password is stored here).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host:636`, or `ldap://host:389` (with `starttls`, or on a trusted network).
    pub url: String,
    /// Upgrade `ldap://` with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// The directory's CA certificate (PEM), needed for `ldaps://` and StartTLS.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Postern's service account.
    pub bind_dn: String,
    /// A file holding the service account's password (first line).
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Or an environment variable holding it.
    #[serde(default)]
    pub bind_password_env: Option<String>,
    /// Where people are searched.
    pub base_dn: String,
    /// Finds one person; `{user}` is the login name, escaped. Active Directory:
    /// `(&(objectClass=user)(sAMAccountName={user}))`.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Where groups are searched [default: base_dn].
    #[serde(default)]
    pub group_base_dn: Option<String>,
    /// Finds a person's groups; `{dn}` is their DN, `{user}` their name.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The attribute naming a group.
    #[serde(default = "default_group_name_attribute")]
    pub group_name_attribute: String,
    /// Time one login may spend in the directory.
    #[serde(default = "default_ldap_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Group name → Postern roles (`dbas = ["dba"]`). Directory users get exactly the
    /// roles their groups map to, at every login.
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, Vec<String>>,
}

fn default_user_filter() -> String {
    "(&(objectClass=inetOrgPerson)(uid={user}))".into()
}
fn default_group_filter() -> String {
    "(|(member={dn})(uniqueMember={dn})(memberUid={user}))".into()
}
fn default_group_name_attribute() -> String {
    "cn".into()
}
fn default_ldap_timeout() -> Duration {
    Duration::from_secs(5)
}

impl LdapConfig {
    /// The directory settings, reading the password and CA files.
    pub fn to_settings(&self) -> anyhow::Result<postern_login::LdapSettings> {
        use anyhow::Context;
        let password = match (&self.bind_password_file, &self.bind_password_env) {
            (Some(f), None) => std::fs::read_to_string(f)
                .with_context(|| format!("ldap.bind_password_file: cannot read {}", f.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, Some(v)) => std::env::var(v).with_context(|| {
                format!("ldap.bind_password_env: the variable {v} is not set")
            })?,
            _ => anyhow::bail!(
                "ldap: give the service account's password with exactly one of bind_password_file or bind_password_env"
            ),
        };
        let ca_pem = read_ca("ldap.ca", self.ca.as_deref())?;
        Ok(postern_login::LdapSettings {
            url: self.url.clone(),
            starttls: self.starttls,
            ca_pem,
            bind_dn: self.bind_dn.clone(),
            bind_password: zeroize::Zeroizing::new(password),
            base_dn: self.base_dn.clone(),
            user_filter: self.user_filter.clone(),
            group_base_dn: self
                .group_base_dn
                .clone()
                .unwrap_or_else(|| self.base_dn.clone()),
            group_filter: self.group_filter.clone(),
            group_name_attribute: self.group_name_attribute.clone(),
            group_roles: self.group_roles.clone(),
            timeout: self.timeout,
        })
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

/// `[mysql]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    /// Whether the MySQL port is open.
    pub enabled: bool,
    /// Listen address.
    pub listen: String,
    /// Time a client has to finish TLS and authentication.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time an upstream has to accept Postern's login.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
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
    /// Largest command a client may send, in bytes (like the server's max_allowed_packet).
    pub max_packet: usize,
    /// Server version announced until a MySQL datasource has been reached (then: the version
    /// that server announces, which drivers rely on).
    pub server_version: String,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        let d = postern_mysql::MysqlConfig::default();
        Self {
            enabled: true,
            listen: "0.0.0.0:7306".into(),
            handshake_timeout: d.handshake_timeout,
            upstream_timeout: d.upstream_timeout,
            require_tls: d.require_tls,
            max_connections: d.max_connections,
            login_failure_delay: d.login_failure_delay,
            shutdown_grace: d.shutdown_grace,
            max_packet: d.max_packet,
            server_version: d.server_version,
        }
    }
}

impl MysqlConfig {
    /// The proxy's settings.
    pub fn to_mysql(&self) -> postern_mysql::MysqlConfig {
        postern_mysql::MysqlConfig {
            handshake_timeout: self.handshake_timeout,
            upstream_timeout: self.upstream_timeout,
            require_tls: self.require_tls,
            max_connections: self.max_connections,
            login_failure_delay: self.login_failure_delay,
            shutdown_grace: self.shutdown_grace,
            max_packet: self.max_packet,
            server_version: self.server_version.clone(),
        }
    }
}

/// `[ssh]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// Whether the SSH port is open.
    pub enabled: bool,
    /// Listen address.
    pub listen: String,
    /// Time a client has to sign in (second factor included).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time a target has to accept Postern's login.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Time live sessions get to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where recordings of interactive sessions go (default: `recordings` in the data
    /// directory).
    pub recordings_dir: Option<PathBuf>,
    /// Record what people type as well as what they see (off: typed passwords would be kept).
    pub record_input: bool,
}

impl Default for SshConfig {
    fn default() -> Self {
        let d = postern_ssh::SshSettings::default();
        Self {
            enabled: true,
            listen: "0.0.0.0:7022".into(),
            handshake_timeout: d.handshake_timeout,
            upstream_timeout: d.upstream_timeout,
            max_connections: d.max_connections,
            shutdown_grace: d.shutdown_grace,
            recordings_dir: None,
            record_input: false,
        }
    }
}

impl SshConfig {
    /// The proxy's settings; recordings under `data_dir` unless configured.
    pub fn to_ssh(&self, data_dir: &Path) -> postern_ssh::SshSettings {
        postern_ssh::SshSettings {
            handshake_timeout: self.handshake_timeout,
            upstream_timeout: self.upstream_timeout,
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
            recordings_dir: self
                .recordings_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("recordings")),
            record_input: self.record_input,
            ..Default::default()
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
    /// Lifetime of the client certificate `postern login` gets when it asks for none.
    #[serde(with = "humantime_serde")]
    pub cert_ttl: Duration,
    /// The longest lifetime a client certificate may be issued for (`postern login --ttl`).
    #[serde(with = "humantime_serde")]
    pub cert_max_ttl: Duration,
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
            cert_ttl: Duration::from_secs(8 * 3600),
            cert_max_ttl: Duration::from_secs(12 * 3600),
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
        cfg.check(origin)?;
        Ok(cfg)
    }

    /// Settings that parse but contradict each other.
    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let a = &self.auth;
        if a.cert_ttl.is_zero() || a.cert_ttl > a.cert_max_ttl {
            return Err(ConfigError::Invalid {
                path: format!("{origin}: key `auth.cert_ttl`"),
                message: format!(
                    "must be more than 0 and at most auth.cert_max_ttl ({}); raise cert_max_ttl or lower cert_ttl",
                    humantime::format_duration(a.cert_max_ttl)
                ),
            });
        }
        if let Some(o) = &self.oidc {
            if !postern_login::sso::acceptable_issuer(&o.issuer) {
                return Err(ConfigError::Invalid {
                    path: format!("{origin}: key `oidc.issuer`"),
                    message: "must be an https:// URL (http:// only on a loopback address)".into(),
                });
            }
            if !o.scopes.iter().any(|s| s == "openid") {
                return Err(ConfigError::Invalid {
                    path: format!("{origin}: key `oidc.scopes`"),
                    message: "must include \"openid\"".into(),
                });
            }
        }
        if let Some(l) = &self.ldap {
            let bad = |key: &str, message: String| ConfigError::Invalid {
                path: format!("{origin}: key `ldap.{key}`"),
                message,
            };
            if !l.url.starts_with("ldap://") && !l.url.starts_with("ldaps://") {
                return Err(bad("url", "must start with ldap:// or ldaps://".into()));
            }
            if !l.user_filter.contains("{user}") {
                return Err(bad(
                    "user_filter",
                    "must contain {user} (e.g. \"(uid={user})\")".into(),
                ));
            }
            if l.bind_password_file.is_some() == l.bind_password_env.is_some() {
                return Err(bad(
                    "bind_password_file",
                    "give exactly one of bind_password_file or bind_password_env".into(),
                ));
            }
        }
        Ok(())
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
    fn certificate_lifetimes_must_agree() {
        let c = Config::parse("[auth]\ncert_ttl = \"2h\"\n", "t.toml").unwrap();
        assert_eq!(c.auth.cert_ttl, Duration::from_secs(7200));
        let e = Config::parse(
            "[auth]\ncert_ttl = \"1d\"\ncert_max_ttl = \"12h\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("auth.cert_ttl") && e.contains("cert_max_ttl"),
            "{e}"
        );
    }

    #[test]
    fn ldap_section() {
        let c = Config::parse(
            "[ldap]\nurl = \"ldap://dir:389\"\nbind_dn = \"cn=p\"\nbind_password_env = \"X\"\nbase_dn = \"dc=x\"\n[ldap.group_roles]\ndbas = [\"dba\"]\n",
            "t.toml",
        )
        .unwrap();
        let l = c.ldap.unwrap();
        assert_eq!(l.group_roles["dbas"], ["dba"]);
        assert!(l.user_filter.contains("{user}"));
        let e = Config::parse(
            "[ldap]\nurl = \"ldap://dir\"\nbind_dn = \"cn=p\"\nbase_dn = \"dc=x\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bind_password"), "{e}");
        let e = Config::parse(
            "[ldap]\nurl = \"ldap://dir\"\nbind_dn = \"cn=p\"\nbind_password_env = \"X\"\nbase_dn = \"dc=x\"\nuser_filter = \"(uid=alice)\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ldap.user_filter"), "{e}");
        assert!(Config::parse("[ldap]\nurl = \"x\"\n", "t.toml").is_err());
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
