//! SSH: target logins (their secrets sealed with the master key, their pinned host keys),
//! what roles grant on them, and people's public keys.

use std::collections::BTreeMap;
use std::time::Duration;

use postern_core::{Kind, SshAuthKind, SshGrantSpec, SshLoginSpec, SshLoginView, UserKeyView};
use postern_vault::ssh as keys;
use postern_vault::MasterKey;
use sqlx::SqliteConnection;
use zeroize::Zeroizing;

use crate::{name_set, now, Store, StoreError};

/// How Postern signs in to a target: opened from the vault for one upstream login.
#[derive(Clone)]
pub enum SshSecret {
    /// An OpenSSH private key (PEM).
    Key(Zeroizing<String>),
    /// A password.
    Password(Zeroizing<String>),
}

impl std::fmt::Debug for SshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SshSecret::Key(_) => "Key(<redacted>)",
            SshSecret::Password(_) => "Password(<redacted>)",
        })
    }
}

/// An SSH login opened for connecting: where, as whom, with what, and the pinned host key.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Login name.
    pub name: String,
    /// Target host.
    pub host: String,
    /// Target port.
    pub port: u16,
    /// Account on the target.
    pub user: String,
    /// The secret.
    pub secret: SshSecret,
    /// The pinned host key (`algorithm base64`), if any.
    pub host_key: Option<String>,
}

/// What a user may do on an SSH login: the union of the channel kinds and the shortest
/// limits of the roles of theirs that grant it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshRights {
    /// The roles that grant the login.
    pub roles: Vec<String>,
    /// `ssh -L`, `-D`, `-R`.
    pub port_forwarding: bool,
    /// `ssh -A`.
    pub agent_forwarding: bool,
    /// `ssh -X`.
    pub x11_forwarding: bool,
    /// Close after this long without traffic.
    pub idle_timeout: Option<Duration>,
    /// Close after this long.
    pub max_session: Option<Duration>,
}

/// The answer to "may this user use this SSH login".
#[derive(Debug)]
pub enum SshAccess {
    /// Yes: the target (secret opened) and the rights.
    Granted(Box<SshTarget>, SshRights),
    /// There is no such login.
    UnknownLogin,
    /// No role of the user grants it.
    NotGranted,
}

/// Role options as stored in `roles.ssh` (the logins live in `role_ssh_logins`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct StoredOptions {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    port_forwarding: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    agent_forwarding: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    x11_forwarding: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_session: Option<String>,
}

fn seal_context(name: &str) -> String {
    format!("ssh-login:{name}")
}

fn open_secret(
    key: &MasterKey,
    name: &str,
    sealed: &[u8],
) -> Result<Zeroizing<String>, StoreError> {
    key.open_string(&seal_context(name), sealed).map_err(|e| {
        StoreError::Internal(format!(
            "the secret of ssh-login {name} cannot be decrypted: {e} (is this the master key \
             the store was created with? otherwise re-apply the login with its key or password)"
        ))
    })
}

/// Parses a duration as admins write it (`15m`, `8h`), for a message about `what`.
pub(crate) fn parse_limit(what: &str, s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{what} {s:?} is not a duration ({e}); write it like 15m or 8h"))?;
    if d < Duration::from_secs(1) {
        return Err(format!("{what} {s:?} is shorter than a second"));
    }
    Ok(d)
}

/// Checks what can be checked without the store.
pub(crate) fn validate_login(l: &SshLoginSpec) -> Result<(), StoreError> {
    let bad = |m: String| Err(StoreError::Invalid(format!("ssh-login {}: {m}", l.name)));
    if l.host.trim().is_empty() {
        return bad("host is empty; give the target's host name or address".into());
    }
    if l.port == 0 {
        return bad("port 0 is not a valid port; give the target's SSH port (22)".into());
    }
    if l.user.trim().is_empty() || l.user.contains(['\0', '\n', '\r']) {
        return bad(
            "user is empty or not a valid account name; give the account on the target".into(),
        );
    }
    if l.private_key.is_some() && l.password.is_some() {
        return bad("give either private_key or password, not both".into());
    }
    if let Some(pem) = &l.private_key {
        keys::check_private_key(pem)
            .map_err(|e| StoreError::Invalid(format!("ssh-login {}: {e}", l.name)))?;
    }
    if let Some(hk) = &l.host_key {
        keys::parse_public_key(hk)
            .map_err(|e| StoreError::Invalid(format!("ssh-login {}: host_key: {e}", l.name)))?;
    }
    Ok(())
}

/// Checks a role's SSH options.
pub(crate) fn validate_grant(role: &str, g: &SshGrantSpec) -> Result<(), StoreError> {
    for (what, v) in [
        ("idle_timeout", &g.idle_timeout),
        ("max_session", &g.max_session),
    ] {
        if let Some(s) = v {
            parse_limit(what, s)
                .map_err(|e| StoreError::Invalid(format!("role {role}: ssh {e}")))?;
        }
    }
    Ok(())
}

/// The stored form of a role's options and whether they match `stored`.
pub(crate) fn options_json(g: &SshGrantSpec) -> Result<String, StoreError> {
    let o = StoredOptions {
        port_forwarding: g.port_forwarding,
        agent_forwarding: g.agent_forwarding,
        x11_forwarding: g.x11_forwarding,
        idle_timeout: g.idle_timeout.as_ref().map(|s| s.trim().to_string()),
        max_session: g.max_session.as_ref().map(|s| s.trim().to_string()),
    };
    serde_json::to_string(&o).map_err(|e| StoreError::Internal(format!("cannot serialize: {e}")))
}

fn parse_options(role: &str, s: &str) -> Result<StoredOptions, StoreError> {
    serde_json::from_str(s).map_err(|e| {
        StoreError::Internal(format!("role {role}: stored ssh options unreadable: {e}"))
    })
}

/// A role's SSH grant as the API shows it.
pub(crate) fn grant_view(
    role: &str,
    options: &str,
    logins: Vec<String>,
) -> Result<SshGrantSpec, StoreError> {
    let o = parse_options(role, options)?;
    Ok(SshGrantSpec {
        logins,
        port_forwarding: o.port_forwarding,
        agent_forwarding: o.agent_forwarding,
        x11_forwarding: o.x11_forwarding,
        idle_timeout: o.idle_timeout,
        max_session: o.max_session,
    })
}

pub(crate) const ROLE_SSH_LOGINS: crate::apply::Link = ("role_ssh_logins", "role", "login");

/// Creates or updates one SSH login (inside `apply`'s transaction).
pub(crate) async fn apply_login(
    conn: &mut SqliteConnection,
    key: &MasterKey,
    l: &SshLoginSpec,
) -> Result<postern_core::ApplyOutcome, StoreError> {
    use postern_core::ApplyOutcome;
    type Row = (
        String,
        i64,
        String,
        String,
        Vec<u8>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let stored: Option<Row> = sqlx::query_as(
        "SELECT host, port, user, auth, secret, public_key, host_key, host_key_source \
         FROM ssh_logins WHERE name = ?",
    )
    .bind(&l.name)
    .fetch_optional(&mut *conn)
    .await?;
    let configured = match &l.host_key {
        Some(hk) => Some(
            keys::parse_public_key(hk)
                .map_err(|e| StoreError::Invalid(format!("ssh-login {}: host_key: {e}", l.name)))?
                .key,
        ),
        None => None,
    };
    // The secret the document gives, if any: (auth, clear secret, public key).
    let given: Option<(SshAuthKind, Zeroizing<String>, Option<String>)> =
        match (&l.private_key, &l.password) {
            (Some(pem), _) => {
                let public = keys::check_private_key(pem)
                    .map_err(|e| StoreError::Invalid(format!("ssh-login {}: {e}", l.name)))?;
                Some((
                    SshAuthKind::ImportedKey,
                    Zeroizing::new(pem.trim().to_string() + "\n"),
                    Some(public),
                ))
            }
            (None, Some(pw)) => Some((SshAuthKind::Password, Zeroizing::new(pw.clone()), None)),
            (None, None) => None,
        };
    let Some((host, port, user, auth, sealed, public_key, host_key, source)) = stored else {
        let (auth, secret, public) = match given {
            Some(g) => g,
            None => {
                let pem = keys::generate_ed25519(&format!("postern:{}", l.name))
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                let public = keys::public_of_private(&pem)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                (SshAuthKind::GeneratedKey, pem, Some(public))
            }
        };
        sqlx::query(
            "INSERT INTO ssh_logins (name, host, port, user, auth, secret, public_key, host_key, \
             host_key_source, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        )
        .bind(&l.name)
        .bind(l.host.trim())
        .bind(i64::from(l.port))
        .bind(&l.user)
        .bind(auth.as_str())
        .bind(key.seal(&seal_context(&l.name), secret.as_bytes()))
        .bind(public)
        .bind(&configured)
        .bind(configured.as_ref().map(|_| "configured"))
        .bind(now())
        .execute(conn)
        .await?;
        return Ok(ApplyOutcome::Created);
    };
    let same_place = host == l.host.trim() && port == i64::from(l.port);
    // A configured key replaces any pin; without one, a key pinned on first use stays while
    // the login points at the same place (a different target is met afresh).
    let (new_host_key, new_source) = match (&configured, source.as_deref()) {
        (Some(k), _) => (Some(k.clone()), Some("configured".to_string())),
        (None, Some("first-use")) if same_place => (host_key.clone(), source.clone()),
        (None, _) => (None, None),
    };
    let secret_change = match &given {
        Some((kind, secret, _)) => {
            let old = open_secret(key, &l.name, &sealed).ok();
            auth != kind.as_str() || old.as_deref().map(|s| s.as_str()) != Some(secret.as_str())
        }
        None => false,
    };
    if same_place
        && user == l.user
        && new_host_key == host_key
        && new_source == source
        && !secret_change
    {
        return Ok(ApplyOutcome::Unchanged);
    }
    let (auth, sealed, public_key) = match (secret_change, given) {
        (true, Some((kind, secret, public))) => (
            kind.as_str().to_string(),
            key.seal(&seal_context(&l.name), secret.as_bytes()),
            public,
        ),
        _ => (auth, sealed, public_key),
    };
    sqlx::query(
        "UPDATE ssh_logins SET host = ?2, port = ?3, user = ?4, auth = ?5, secret = ?6, \
         public_key = ?7, host_key = ?8, host_key_source = ?9, updated_at = ?10 WHERE name = ?1",
    )
    .bind(&l.name)
    .bind(l.host.trim())
    .bind(i64::from(l.port))
    .bind(&l.user)
    .bind(auth)
    .bind(sealed)
    .bind(public_key)
    .bind(new_host_key)
    .bind(new_source)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(ApplyOutcome::Updated)
}

impl Store {
    /// SSH logins as the API shows them (never the secret), by name; only `name` when given.
    pub(crate) async fn ssh_login_views(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<SshLoginView>, StoreError> {
        type Row = (
            String,
            String,
            i64,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT name, host, port, user, auth, public_key, host_key, host_key_source \
             FROM ssh_logins WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(name, host, port, user, auth, public_key, host_key, pinned)| {
                    Ok(SshLoginView {
                        auth: SshAuthKind::parse(&auth).ok_or_else(|| {
                            StoreError::Internal(format!("ssh-login {name}: unknown auth {auth:?}"))
                        })?,
                        port: u16::try_from(port).unwrap_or(22),
                        name,
                        host,
                        user,
                        public_key,
                        host_key,
                        host_key_pinned: pinned,
                    })
                },
            )
            .collect()
    }

    /// May `user` use SSH login `login`, and with what rights? The secret is opened only
    /// when the answer is yes.
    pub async fn ssh_access(&self, user: &str, login: &str) -> Result<SshAccess, StoreError> {
        type Row = (String, i64, String, String, Vec<u8>, Option<String>);
        let target: Option<Row> = sqlx::query_as(
            "SELECT host, port, user, auth, secret, host_key FROM ssh_logins WHERE name = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        let Some((host, port, remote_user, auth, sealed, host_key)) = target else {
            return Ok(SshAccess::UnknownLogin);
        };
        let roles: Vec<(String, String)> = sqlx::query_as(
            "SELECT r.name, r.ssh FROM user_roles ur JOIN roles r ON r.name = ur.role \
             JOIN role_ssh_logins rl ON rl.role = ur.role \
             WHERE ur.user = ?1 AND rl.login = ?2 ORDER BY r.name",
        )
        .bind(user)
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        if roles.is_empty() {
            return Ok(SshAccess::NotGranted);
        }
        let mut rights = SshRights::default();
        let shortest = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (role, options) in roles {
            let o = parse_options(&role, &options)?;
            rights.port_forwarding |= o.port_forwarding;
            rights.agent_forwarding |= o.agent_forwarding;
            rights.x11_forwarding |= o.x11_forwarding;
            let limit = |s: &Option<String>, what: &str| -> Result<Option<Duration>, StoreError> {
                s.as_deref()
                    .map(|s| {
                        parse_limit(what, s)
                            .map_err(|e| StoreError::Internal(format!("role {role}: {e}")))
                    })
                    .transpose()
            };
            rights.idle_timeout =
                shortest(rights.idle_timeout, limit(&o.idle_timeout, "idle_timeout")?);
            rights.max_session =
                shortest(rights.max_session, limit(&o.max_session, "max_session")?);
            rights.roles.push(role);
        }
        let clear = open_secret(&self.key, login, &sealed)?;
        let secret = match SshAuthKind::parse(&auth) {
            Some(SshAuthKind::Password) => SshSecret::Password(clear),
            Some(_) => SshSecret::Key(clear),
            None => {
                return Err(StoreError::Internal(format!(
                    "ssh-login {login}: unknown auth {auth:?}"
                )))
            }
        };
        Ok(SshAccess::Granted(
            Box::new(SshTarget {
                name: login.to_string(),
                host,
                port: u16::try_from(port).unwrap_or(22),
                user: remote_user,
                secret,
                host_key,
            }),
            rights,
        ))
    }

    /// Pins `host_key` for `login` when nothing is pinned yet (trust on first use). False
    /// when a key was pinned meanwhile (the caller compares again).
    pub async fn pin_ssh_host_key(&self, login: &str, host_key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE ssh_logins SET host_key = ?2, host_key_source = 'first-use', updated_at = ?3 \
             WHERE name = ?1 AND host_key IS NULL",
        )
        .bind(login)
        .bind(host_key)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets the host key pinned for `login` (`postern sshlogin forget-host-key`): the next
    /// connection pins what the target shows. False when the login does not exist.
    pub async fn forget_ssh_host_key(&self, login: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE ssh_logins SET host_key = NULL, host_key_source = NULL, updated_at = ?2 WHERE name = ?1",
        )
        .bind(login)
        .bind(now())
        .execute(&self.pool)
        .await?;
        let found = done.rows_affected() > 0;
        if found {
            self.changed();
        }
        Ok(found)
    }

    /// The person a public key belongs to (by its `SHA256:` fingerprint), if any.
    pub async fn user_of_ssh_key(&self, fingerprint: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT user FROM user_ssh_keys WHERE fingerprint = ?")
                .bind(fingerprint)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(u,)| u))
    }

    /// Registers a public key (one line of a `.pub` file) for `user`. A key may belong to
    /// one person only: adding a key someone else holds is a conflict; adding one's own key
    /// again changes nothing.
    pub async fn add_user_key(&self, user: &str, line: &str) -> Result<UserKeyView, StoreError> {
        let k = keys::parse_public_key(line).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        let exists: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM users WHERE name = ?")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found(Kind::User, user));
        }
        let holder: Option<(String,)> =
            sqlx::query_as("SELECT user FROM user_ssh_keys WHERE fingerprint = ?")
                .bind(&k.fingerprint)
                .fetch_optional(&mut *tx)
                .await?;
        match holder {
            Some((u,)) if u == user => {}
            Some(_) => {
                return Err(StoreError::Conflict(format!(
                    "the key {} already belongs to another user; a key identifies one person — \
                     make a new key with `ssh-keygen -t ed25519`",
                    k.fingerprint
                )))
            }
            None => {
                sqlx::query(
                    "INSERT INTO user_ssh_keys (fingerprint, user, algorithm, key, comment, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind(&k.fingerprint)
                .bind(user)
                .bind(&k.algorithm)
                .bind(&k.key)
                .bind(&k.comment)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.changed();
        self.user_keys(Some(user))
            .await?
            .into_iter()
            .find(|v| v.fingerprint == k.fingerprint)
            .ok_or_else(|| StoreError::Internal("the key vanished after it was added".into()))
    }

    /// Registered keys, of `user` or of everyone.
    pub async fn user_keys(&self, user: Option<&str>) -> Result<Vec<UserKeyView>, StoreError> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT user, fingerprint, algorithm, comment, created_at FROM user_ssh_keys \
             WHERE ?1 IS NULL OR user = ?1 ORDER BY user, created_at",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(user, fingerprint, algorithm, comment, created_at)| UserKeyView {
                    user,
                    fingerprint,
                    algorithm,
                    comment,
                    created_at,
                },
            )
            .collect())
    }

    /// Removes `user`'s key `fingerprint`; false when they hold no such key. Live sessions
    /// opened with it are ended (the store's change counter moves).
    pub async fn delete_user_key(&self, user: &str, fingerprint: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM user_ssh_keys WHERE user = ?1 AND fingerprint = ?2")
            .bind(user)
            .bind(fingerprint)
            .execute(&self.pool)
            .await?;
        let found = done.rows_affected() > 0;
        if found {
            self.changed();
        }
        Ok(found)
    }
}

/// The SSH logins each role grants, by role (for the API's role views).
pub(crate) async fn role_logins(
    pool: &sqlx::SqlitePool,
    role: Option<&str>,
) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT role, login FROM role_ssh_logins WHERE ?1 IS NULL OR role = ?1 ORDER BY role, login",
    )
    .bind(role)
    .fetch_all(pool)
    .await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (r, l) in rows {
        out.entry(r).or_default().push(l);
    }
    Ok(out)
}

/// Sorted logins of a grant.
pub(crate) fn grant_logins(g: &SshGrantSpec) -> Vec<String> {
    name_set(&g.logins)
}

/// A recording of an interactive SSH channel, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SshRecording {
    /// `<session>-<channel>`.
    pub id: String,
    /// The SSH session.
    pub session: String,
    /// The person.
    pub user: String,
    /// The SSH login.
    pub login: String,
    /// The account on the target.
    pub remote_user: String,
    /// `ip:port` of the person.
    pub client_addr: String,
    /// `shell`, or `exec` for a command run with a terminal.
    pub kind: String,
    /// The command, for `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// When it started.
    pub started_at: String,
    /// When it ended (absent while open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// The file's path on the server.
    pub file: String,
    /// Size of the finished file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// SHA-256 (hex) of the finished file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Store {
    /// Records that a recording started.
    pub async fn ssh_recording_started(&self, r: &SshRecording) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ssh_recordings (id, session, user, login, remote_user, client_addr, kind, \
             command, started_at, file) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(&r.id)
        .bind(&r.session)
        .bind(&r.user)
        .bind(&r.login)
        .bind(&r.remote_user)
        .bind(&r.client_addr)
        .bind(&r.kind)
        .bind(&r.command)
        .bind(&r.started_at)
        .bind(&r.file)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a recording ended, with its file's size and hash.
    pub async fn ssh_recording_ended(
        &self,
        id: &str,
        bytes: u64,
        sha256: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE ssh_recordings SET ended_at = ?2, bytes = ?3, sha256 = ?4 WHERE id = ?1",
        )
        .bind(id)
        .bind(now())
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Recordings, newest first: of `user` when given, at most `limit`.
    pub async fn ssh_recordings(
        &self,
        user: Option<&str>,
        login: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SshRecording>, StoreError> {
        self.recordings_where(user, login, Some(limit), None).await
    }

    /// One recording by id.
    pub async fn ssh_recording(&self, id: &str) -> Result<Option<SshRecording>, StoreError> {
        Ok(self
            .recordings_where(None, None, None, Some(id))
            .await?
            .pop())
    }

    async fn recordings_where(
        &self,
        user: Option<&str>,
        login: Option<&str>,
        limit: Option<u32>,
        id: Option<&str>,
    ) -> Result<Vec<SshRecording>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            Option<String>,
            String,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, session, user, login, remote_user, client_addr, kind, command, started_at, \
             ended_at, file, bytes, sha256 FROM ssh_recordings \
             WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR login = ?2) \
             AND (?4 IS NULL OR id = ?4) ORDER BY started_at DESC LIMIT coalesce(?3, -1)",
        )
        .bind(user)
        .bind(login)
        .bind(limit.map(i64::from))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    session,
                    user,
                    login,
                    remote_user,
                    client_addr,
                    kind,
                    command,
                    started_at,
                    ended_at,
                    file,
                    bytes,
                    sha256,
                )| {
                    SshRecording {
                        id,
                        session,
                        user,
                        login,
                        remote_user,
                        client_addr,
                        kind,
                        command,
                        started_at,
                        ended_at,
                        file,
                        bytes: bytes.and_then(|b| u64::try_from(b).ok()),
                        sha256,
                    }
                },
            )
            .collect())
    }
}
