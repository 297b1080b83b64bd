//! The login flow every front door runs (PostgreSQL, MySQL, SSH, the API): lockout check,
//! password accounting, second factor (a TOTP code given with the login, a cached
//! approval, or an approval the person gives elsewhere while the connection waits), audit.
//! Each protocol supplies only its transport: how to tell the waiting client what to do.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postern_audit::{AuditEvent, AuditLog, EventKind, Protocol};
use postern_store::{Store, StoreError};

use crate::approvals::{Approvals, Outcome};
use crate::certs::{BadUserCa, CertVerifiers, PresentedCert};
use crate::directory::{DirectoryAnswer, LdapDirectory};
use crate::sso::{Oidc, SsoError, SsoIdentity};

use crate::throttle::{Throttle, ThrottleConfig};
use crate::totp;

/// Settings of the flow (`[auth]` in postern.toml).
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Every login needs a second factor.
    pub require_2fa: bool,
    /// How long a native-tool login waits for its approval.
    pub approval_timeout: Duration,
    /// An approval covers further logins of the same user from the same address until
    /// it has been unused this long.
    pub approval_cache_idle: Duration,
    /// TOTP steps accepted either side of now (clock drift).
    pub totp_skew_steps: u64,
    /// Brute-force accounting.
    pub throttle: ThrottleConfig,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            require_2fa: true,
            approval_timeout: Duration::from_secs(180),
            approval_cache_idle: Duration::from_secs(15 * 60),
            totp_skew_steps: 1,
            throttle: ThrottleConfig::default(),
        }
    }
}

/// What kind of refusal (each protocol maps it to its own error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    /// Wrong password or code, unknown user.
    Credentials,
    /// Locked out (failures, or an admin lock).
    Locked,
    /// The second factor is missing, was denied or timed out.
    SecondFactor,
    /// A client certificate that is expired, revoked, foreign or for someone else.
    Certificate,
    /// Postern could not decide (store unreadable).
    Internal,
}

/// A refused login, in words the client sees, and the reason the audit trail keeps.
#[derive(Debug, Clone)]
pub struct Denial {
    /// Kind.
    pub kind: DenialKind,
    /// For the client.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// For the audit trail.
    pub reason: String,
}

impl Denial {
    pub(crate) fn new(
        kind: DenialKind,
        message: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }

    fn internal(e: &StoreError) -> Self {
        Self::new(
            DenialKind::Internal,
            "Postern could not read its store; try again later",
            format!("store error: {e}"),
        )
    }
}

/// How the second factor was satisfied (recorded with the login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    /// Not required by the server's settings.
    NotRequired,
    /// A TOTP or recovery code came with the login.
    Code,
    /// An earlier approval from the same address still holds.
    Cached,
    /// Approved while the connection waited.
    Approved,
    /// A client certificate, obtained with a full login (`postern login`).
    Certificate,
}

impl SecondFactor {
    /// As recorded in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::NotRequired => "not required",
            SecondFactor::Code => "code",
            SecondFactor::Cached => "cached approval",
            SecondFactor::Approved => "approved",
            SecondFactor::Certificate => "certificate",
        }
    }
}

/// How a protocol tells a waiting client what to do.
pub trait Prompt {
    /// Shows `text` to the person (a notice, a banner line).
    fn tell(&mut self, text: &str)
        -> impl std::future::Future<Output = std::io::Result<()>> + Send;

    /// Resolves when the waiting client has gone away (so its pending approval is dropped
    /// at once instead of at the timeout). Never resolves by default.
    fn gone(&mut self) -> impl std::future::Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// The login flow of one server.
pub struct LoginFlow {
    store: Store,
    audit: AuditLog,
    cfg: LoginConfig,
    throttle: Mutex<Throttle>,
    /// Pending approvals and the approval cache.
    pub approvals: Approvals,
    certs: Option<CertVerifiers>,
    directory: Option<LdapDirectory>,
    sso: Option<Oidc>,
}

impl std::fmt::Debug for LoginFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFlow").finish_non_exhaustive()
    }
}

/// A time as people read it in messages: `2026-11-23 17:04:05 UTC`.
pub(crate) fn fmt_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Splits a login name that carries a TOTP code (`alice:123456`): the scripts' form of
/// the second factor for tools that cannot wait for an approval.
pub fn split_code(user: &str) -> (&str, Option<&str>) {
    match user.rsplit_once(':') {
        Some((name, code)) if !name.is_empty() && (code.len() == 6 || code.len() == 11) => {
            (name, Some(code))
        }
        _ => (user, None),
    }
}

impl LoginFlow {
    /// The store the flow reads.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// A flow over `store`, recording to `audit`.
    pub fn new(store: Store, audit: AuditLog, cfg: LoginConfig) -> Self {
        let throttle = Mutex::new(Throttle::new(cfg.throttle.clone()));
        Self {
            store,
            audit,
            cfg,
            throttle,
            approvals: Approvals::default(),
            certs: None,
            directory: None,
            sso: None,
        }
    }

    /// Accepts ID tokens of the OpenID Connect provider `sso`.
    pub fn with_sso(mut self, sso: Oidc) -> Self {
        self.sso = Some(sso);
        self
    }

    /// The single sign-on provider, when configured.
    pub fn sso(&self) -> Option<&Oidc> {
        self.sso.as_ref()
    }

    /// A sign-in with an ID token of the provider: checks it, records the user and the
    /// roles their groups map to, then refuses a user disabled or locked here. The provider
    /// stands for both factors.
    pub async fn sso_login(&self, id_token: &str) -> Result<SsoIdentity, Denial> {
        let Some(sso) = &self.sso else {
            return Err(Denial::new(
                DenialKind::Credentials,
                "single sign-on is not configured on this Postern",
                "no [oidc] configured",
            ));
        };
        let who = match sso.verify(id_token).await {
            Ok(w) => w,
            Err(SsoError::Rejected(why)) => {
                return Err(Denial::new(
                    DenialKind::Credentials,
                    format!("the identity provider's token was not accepted: {why}"),
                    why,
                ))
            }
            Err(e @ SsoError::Unreachable(_)) => {
                return Err(Denial::new(
                    DenialKind::Internal,
                    e.to_string(),
                    e.to_string(),
                ))
            }
        };
        // The store refuses a claim that cannot be a user name (Invalid → refused here).
        self.adopt(&who.user, "oidc", &who.roles, &who.groups, |m| {
            m.to_string()
        })
        .await?;
        Ok(who)
    }

    /// Checks passwords of directory users against `directory`.
    pub fn with_directory(mut self, directory: LdapDirectory) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Whether the directory checks the password of a user whose stored login facts are
    /// `info`: a directory is configured, and the user is unknown here, came from the
    /// directory, or has no password here.
    pub fn directory_checks(&self, info: Option<&postern_store::LoginInfo>) -> bool {
        self.directory.is_some()
            && match info {
                None => true,
                Some(i) => i.source == "ldap" || (i.source == "local" && i.scram.is_none()),
            }
    }

    /// Checks `user`'s `password` in the directory; on success records the user and the
    /// roles their groups map to, then refuses a user disabled or locked here.
    pub async fn directory_password(&self, user: &str, password: &str) -> Result<(), Denial> {
        let Some(dir) = &self.directory else {
            return Err(Denial::new(
                DenialKind::Credentials,
                format!("password authentication failed for user \"{user}\""),
                "no directory configured",
            ));
        };
        let found = match dir.authenticate(user, password).await {
            Ok(DirectoryAnswer::Valid(u)) => u,
            Ok(DirectoryAnswer::Invalid(why)) => {
                return Err(Denial::new(
                    DenialKind::Credentials,
                    format!("password authentication failed for user \"{user}\""),
                    why,
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "directory login failed");
                return Err(Denial::new(
                    DenialKind::Internal,
                    "Postern could not reach its user directory; try again later",
                    e.to_string(),
                ));
            }
        };
        self.adopt(user, "ldap", &found.roles, &found.groups, |_| {
            format!("password authentication failed for user \"{user}\"")
        })
        .await
    }

    /// Records a person that `source` (`ldap`, `oidc`) vouched for, with the roles their
    /// `groups` map to, then refuses them if disabled or locked here. A user this source may
    /// not sign in (a password here, another source, an unusable name) is refused with the
    /// message `refusal` makes of the store's reason.
    async fn adopt(
        &self,
        user: &str,
        source: &str,
        roles: &[String],
        groups: &[String],
        refusal: impl Fn(&str) -> String,
    ) -> Result<(), Denial> {
        match self.store.sync_external_user(user, source, roles).await {
            Ok(unknown) => {
                if !unknown.is_empty() {
                    tracing::warn!(user, source, roles = ?unknown, groups = ?groups, "group_roles names roles that do not exist");
                }
            }
            Err(StoreError::Conflict(m)) | Err(StoreError::Invalid(m)) => {
                return Err(Denial::new(DenialKind::Credentials, refusal(&m), m))
            }
            Err(e) => return Err(Denial::internal(&e)),
        }
        self.usable(user, &format!("a user of {source} vanished during login"))
            .await
    }

    /// Whether `user` may still be signed in: refused when disabled, locked by an admin or
    /// removed. Open sessions ask again when the store changes.
    pub async fn user_usable(&self, user: &str) -> Result<(), Denial> {
        self.usable(user, "user removed").await
    }

    /// Refuses `user` when disabled, locked by an admin or (saying `gone`) not there.
    async fn usable(&self, user: &str, gone: &str) -> Result<(), Denial> {
        match self
            .store
            .login_info(user)
            .await
            .map_err(|e| Denial::internal(&e))?
        {
            None => Err(Denial::new(
                DenialKind::Credentials,
                format!("user \"{user}\" does not exist"),
                gone,
            )),
            Some(i) if i.disabled => Err(Denial::new(
                DenialKind::Locked,
                format!("user \"{user}\" is disabled"),
                "user is disabled",
            )),
            Some(i) if i.locked => Err(Denial::new(
                DenialKind::Locked,
                format!("user \"{user}\" is locked by an admin"),
                "user is locked by an admin",
            )
            .hint(format!("ask an admin to run `postern user unlock {user}`"))),
            Some(_) => Ok(()),
        }
    }

    /// Accepts client certificates issued by the user CA `user_ca_der`.
    pub fn with_user_ca(mut self, user_ca_der: Vec<u8>) -> Result<Self, BadUserCa> {
        self.certs = Some(CertVerifiers::new(user_ca_der)?);
        Ok(self)
    }

    /// The TLS-layer verifier for front doors that accept client certificates (`None`
    /// without a user CA).
    pub fn tls_client_verifier(
        &self,
    ) -> Option<std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>> {
        self.certs.as_ref().map(CertVerifiers::tls)
    }

    /// A login by client certificate (`chain`, end entity first, as the TLS handshake got
    /// it) for `wanted_user` (the name the client asked for; empty: the certificate's).
    /// Checks the chain and validity, then the store: the certificate was issued here and
    /// not revoked, its user exists and is neither disabled nor locked. The certificate
    /// stands for both factors (it was issued after a full login), so the password and
    /// second-factor steps do not apply, nor do password lockouts.
    pub async fn certificate(
        &self,
        chain: &[rustls::pki_types::CertificateDer<'_>],
        wanted_user: &str,
    ) -> Result<PresentedCert, Denial> {
        let Some(certs) = &self.certs else {
            return Err(Denial::new(
                DenialKind::Certificate,
                "this Postern does not accept client certificates",
                "no user CA configured",
            ));
        };
        let now = time::OffsetDateTime::now_utc();
        let presented = certs.check(chain, now)?;
        let user = presented.user.as_str();
        if !wanted_user.is_empty() && wanted_user != user {
            return Err(Denial::new(
                DenialKind::Certificate,
                format!("the client certificate is for user \"{user}\", not \"{wanted_user}\""),
                format!("certificate of {user} presented for {wanted_user}"),
            )
            .hint(format!(
                "connect as user {user}, or run `postern login` as {wanted_user}"
            )));
        }
        self.certificate_current(&presented).await?;
        self.usable(user, "certificate of a removed user").await?;
        Ok(presented)
    }

    /// Whether a certificate (accepted at login, or now) still stands in the store: issued
    /// here to the user it names, and not revoked. Sessions opened with it call this again
    /// when the store changes.
    pub async fn certificate_current(&self, presented: &PresentedCert) -> Result<(), Denial> {
        let user = presented.user.as_str();
        let record = self
            .store
            .cert(&presented.serial)
            .await
            .map_err(|e| Denial::internal(&e))?;
        match record {
            None => Err(Denial::new(
                DenialKind::Certificate,
                "this client certificate is not one Postern issued (or its record is gone)",
                format!("unknown certificate serial {}", presented.serial),
            )
            .hint("run `postern login` to get a new one")),
            Some(r) if r.user != user => Err(Denial::new(
                DenialKind::Certificate,
                "the client certificate is not acceptable",
                format!(
                    "certificate serial {} names {user} but was issued to {}",
                    presented.serial, r.user
                ),
            )),
            Some(r) if r.revoked_at.is_some() => Err(Denial::new(
                DenialKind::Certificate,
                format!(
                    "your Postern certificate (serial {}) was revoked",
                    presented.serial
                ),
                format!(
                    "certificate revoked by {}",
                    r.revoked_by.unwrap_or_default()
                ),
            )
            .hint("run `postern login` to get a new one, or ask an admin why it was revoked")),
            Some(_) => Ok(()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LoginConfig {
        &self.cfg
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step 1: may `user` try to log in from `ip` now? Refused while locked out.
    pub fn admit(&self, user: &str, ip: IpAddr) -> Result<(), Denial> {
        match self.throttle().check(user, ip, Instant::now()) {
            None => Ok(()),
            Some(l) => Err(Denial::new(
                DenialKind::Locked,
                format!(
                    "too many failed logins: this {} is locked for {} more seconds",
                    l.scope.as_str(),
                    l.remaining.as_secs().max(1)
                ),
                format!("locked out ({})", l.scope.as_str()),
            )
            .hint(format!(
                "wait, or ask an admin to run `postern user unlock {user}`"
            ))),
        }
    }

    /// A failed password or code: counted, and a lockout it starts is audited.
    pub async fn failed(&self, user: &str, ip: IpAddr, protocol: Protocol) {
        let started = self.throttle().failure(user, ip, Instant::now());
        for l in started {
            let mut e = AuditEvent::new(EventKind::Lockout);
            e.protocol = Some(protocol);
            e.user = Some(user.chars().take(128).collect::<String>().into());
            e.client_addr = Some(ip.to_string().into());
            e.detail = Some(serde_json::json!({
                "scope": l.scope.as_str(),
                "seconds": l.length.as_secs(),
            }));
            tracing::warn!(user = %user.chars().take(128).collect::<String>(), %ip, scope = l.scope.as_str(), seconds = l.length.as_secs(), "login lockout");
            let _ = self.audit.record_durable(e).await;
        }
    }

    /// A correct password.
    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        self.throttle().success(user, ip);
    }

    /// Lifts `user`'s lockouts (`postern user unlock`).
    pub fn unlock_user(&self, user: &str) {
        self.throttle().unlock_user(user);
    }

    /// Whether `code` (TOTP, or a recovery code) is a valid second factor of `user` now;
    /// a valid code is used up.
    pub async fn check_code(&self, user: &str, code: &str) -> Result<bool, StoreError> {
        if totp::is_recovery_code(code) {
            return self
                .store
                .mfa_use_recovery(user, &totp::recovery_hash(code))
                .await;
        }
        let Some(secret) = self.store.mfa_secret(user).await? else {
            return Ok(false);
        };
        match totp::verify(&secret, code, unix_now(), self.cfg.totp_skew_steps) {
            Some(step) => self.store.mfa_use_step(user, step).await,
            None => Ok(false),
        }
    }

    /// Whether an open session of `user` may go on using `credential` on `alias`: the
    /// certificate it logged in with (if any) still stands, the user is not disabled, locked
    /// or removed, the datasource is there and a role of theirs still grants the credential.
    /// The datasource when so; when not, the reason in words.
    pub async fn session_still_allowed(
        &self,
        user: &str,
        alias: &str,
        credential: &str,
        cert: Option<&PresentedCert>,
    ) -> Result<postern_core::DatasourceSpec, String> {
        let failed = |e: StoreError| format!("Postern could not read its store ({e})");
        if let Some(c) = cert {
            self.certificate_current(c).await.map_err(|d| d.message)?;
        }
        self.user_usable(user).await.map_err(|d| d.message)?;
        let Some(ds) = self.store.datasource(alias).await.map_err(failed)? else {
            return Err(format!("datasource {alias} was removed"));
        };
        let grants = self.store.role_grants(user).await.map_err(failed)?;
        let granted = grants.iter().any(|g| {
            g.credentials
                .iter()
                .any(|(c, d)| c == credential && d == alias)
        });
        if !granted {
            return Err(format!(
                "no role of yours grants credential {credential} on datasource {alias} any more"
            ));
        }
        Ok(ds)
    }

    /// Step 3 (after the password): the second factor. `code` came with the login
    /// ([`split_code`]); without one, an approval cached for this address is used, or the
    /// connection waits (telling the person through `prompt`) until the login is approved,
    /// denied or times out. `target` says what the login is for (`postgres: prod`).
    pub async fn second_factor<P: Prompt>(
        &self,
        user: &str,
        ip: IpAddr,
        code: Option<&str>,
        target: &str,
        protocol: Protocol,
        prompt: &mut P,
    ) -> Result<SecondFactor, Denial> {
        if !self.cfg.require_2fa {
            return Ok(SecondFactor::NotRequired);
        }
        let status = self
            .store
            .mfa_status(user)
            .await
            .map_err(|e| Denial::internal(&e))?;
        if !status.enrolled {
            return Err(Denial::new(
                DenialKind::SecondFactor,
                format!("user \"{user}\" must enrol a second factor before connecting"),
                "no second factor enrolled",
            )
            .hint("run `postern admin login` (or `postern mfa enroll`) to enrol a TOTP app"));
        }
        if let Some(code) = code {
            return match self.check_code(user, code).await {
                Ok(true) => {
                    self.approvals.remember(user, ip);
                    Ok(SecondFactor::Code)
                }
                Ok(false) => {
                    self.failed(user, ip, protocol).await;
                    Err(Denial::new(
                        DenialKind::Credentials,
                        "the second-factor code is wrong, expired or already used",
                        "wrong second-factor code",
                    )
                    .hint("use the current code of your authenticator app, once"))
                }
                Err(e) => Err(Denial::internal(&e)),
            };
        }
        if self
            .approvals
            .cached(user, ip, self.cfg.approval_cache_idle)
        {
            return Ok(SecondFactor::Cached);
        }
        let timeout = self.cfg.approval_timeout;
        let Some((id, rx)) = self.approvals.open(user, ip, target, timeout) else {
            return Err(Denial::new(
                DenialKind::SecondFactor,
                "too many logins are waiting for approval; try again later",
                "approval queue full",
            ));
        };
        self.record_second_factor(user, ip, protocol, "approval requested", &id)
            .await;
        let text = format!(
            "Postern: approve this login with `postern approve {id}` (your TOTP code); \
             waiting up to {} s. Scripts can log in as {user}:<TOTP code> instead.",
            timeout.as_secs()
        );
        if let Err(e) = prompt.tell(&text).await {
            self.approvals.close(&id);
            return Err(Denial::new(
                DenialKind::SecondFactor,
                "the client left while its login waited for approval",
                format!("client gone: {e}"),
            ));
        }
        let outcome = tokio::select! {
            o = tokio::time::timeout(timeout, rx) => o,
            _ = prompt.gone() => {
                self.approvals.close(&id);
                self.record_second_factor(user, ip, protocol, "client left while waiting", &id)
                    .await;
                return Err(Denial::new(
                    DenialKind::SecondFactor,
                    "the client left while its login waited for approval",
                    "client left while waiting for approval",
                ));
            }
        };
        self.approvals.close(&id);
        match outcome {
            Ok(Ok(Outcome::Approved)) => Ok(SecondFactor::Approved),
            Ok(Ok(Outcome::Denied(why))) => Err(Denial::new(
                DenialKind::SecondFactor,
                format!("the login was not approved: {why}"),
                format!("approval denied: {why}"),
            )
            .hint("connect again and approve with `postern approve <id>` and a current code")),
            Ok(Err(_)) | Err(_) => {
                self.record_second_factor(user, ip, protocol, "approval timed out", &id)
                    .await;
                Err(Denial::new(
                    DenialKind::SecondFactor,
                    format!("the login was not approved within {} s", timeout.as_secs()),
                    "approval timed out",
                )
                .hint(format!(
                    "run `postern approve <id>` with your TOTP code while the connection waits, \
                     or log in as {user}:<TOTP code>"
                )))
            }
        }
    }

    async fn record_second_factor(
        &self,
        user: &str,
        ip: IpAddr,
        protocol: Protocol,
        what: &str,
        id: &str,
    ) {
        let mut e = AuditEvent::new(EventKind::SecondFactor);
        e.protocol = Some(protocol);
        e.user = Some(user.into());
        e.client_addr = Some(ip.to_string().into());
        e.detail = Some(serde_json::json!({ "action": what, "approval": id }));
        let _ = self.audit.record(e).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_in_login_names() {
        assert_eq!(split_code("alice:123456"), ("alice", Some("123456")));
        assert_eq!(
            split_code("alice:abcde-fghij"),
            ("alice", Some("abcde-fghij"))
        );
        assert_eq!(split_code("alice"), ("alice", None));
        assert_eq!(split_code("alice:12"), ("alice:12", None));
        assert_eq!(split_code(":123456"), (":123456", None));
    }
}
