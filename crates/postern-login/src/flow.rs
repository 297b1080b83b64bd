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
    fn new(kind: DenialKind, message: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            reason: reason.into(),
        }
    }

    fn hint(mut self, h: impl Into<String>) -> Self {
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
}

impl SecondFactor {
    /// As recorded in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::NotRequired => "not required",
            SecondFactor::Code => "code",
            SecondFactor::Cached => "cached approval",
            SecondFactor::Approved => "approved",
        }
    }
}

/// How a protocol tells a waiting client what to do.
pub trait Prompt {
    /// Shows `text` to the person (a notice, a banner line).
    fn tell(&mut self, text: &str)
        -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// The login flow of one server.
pub struct LoginFlow {
    store: Store,
    audit: AuditLog,
    cfg: LoginConfig,
    throttle: Mutex<Throttle>,
    /// Pending approvals and the approval cache.
    pub approvals: Approvals,
}

impl std::fmt::Debug for LoginFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFlow").finish_non_exhaustive()
    }
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
    /// A flow over `store`, recording to `audit`.
    pub fn new(store: Store, audit: AuditLog, cfg: LoginConfig) -> Self {
        let throttle = Mutex::new(Throttle::new(cfg.throttle.clone()));
        Self {
            store,
            audit,
            cfg,
            throttle,
            approvals: Approvals::default(),
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
        let outcome = tokio::time::timeout(timeout, rx).await;
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
