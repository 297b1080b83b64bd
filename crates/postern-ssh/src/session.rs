//! The person's side of one SSH connection: who they are (a registered public key, then a
//! TOTP code by keyboard-interactive unless an approval is cached), whether they may use
//! the login they named, and which channels they may open.
//!
//! Refusals during sign-in are shown to the person as keyboard-interactive instructions
//! (OpenSSH prints them) before the authentication fails, so "no grant" or "the target's
//! host key changed" reads as such instead of a bare "Permission denied".

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use postern_audit::{EventKind, Protocol, SessionIdent};
use postern_store::{SshAccess, SshRights, SshTarget};
use russh::keys::HashAlg;
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::relay::{self, SessionChannel};
use crate::upstream::{self, Bridge, Upstream};
use crate::Shared;

/// Where sign-in stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// No registered key proved yet.
    Start,
    /// Key proved; waiting for the TOTP code (`wrong`: codes refused so far).
    NeedCode { wrong: u8 },
    /// Refused: the message is shown once by keyboard-interactive, then sign-in fails.
    Refused(String),
    /// The refusal was shown (or nothing more can be done): every attempt fails.
    Over,
    /// Signed in.
    Done,
}

/// What the supervising task learns from the handler.
#[derive(Default)]
struct Live {
    /// Signed in and connected upstream.
    authed: Notify,
    state: Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    signed_in: Option<SignedIn>,
    /// Fingerprints of unregistered keys offered.
    unknown_keys: Vec<String>,
    /// The client tried to sign in at all (a bare key exchange — a scanner, `ssh-keyscan` —
    /// is not a failed login).
    attempted: bool,
    /// The last refusal, for the audit trail when the connection ends unsigned.
    refused: Option<String>,
}

#[derive(Clone)]
struct SignedIn {
    user: String,
    fingerprint: String,
    login: String,
    bridge: Arc<Bridge>,
    upstream: Arc<russh::client::Handle<Upstream>>,
    ident: SessionIdent,
}

/// The russh server handler of one connection.
pub struct Person {
    shared: Arc<Shared>,
    ident: SessionIdent,
    live: Arc<Live>,
    stage: Stage,
    user: Option<String>,
    fingerprint: Option<String>,
    access: Option<(Box<SshTarget>, SshRights)>,
    upstream: Option<Arc<russh::client::Handle<Upstream>>>,
    bridge: Arc<Bridge>,
    second_factor: &'static str,
}

fn kbd_only() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
        partial_success: true,
    }
}

/// Wrong codes accepted in one sign-in before it fails.
const MAX_CODE_TRIES: u8 = 3;

/// The TOTP prompt (`again`: the last code was refused).
fn code_prompt(user: &str, again: bool) -> Auth {
    let instructions = if again {
        "Postern: that code is wrong, expired or already used; enter the current one."
    } else {
        ""
    };
    Auth::Partial {
        name: "".into(),
        instructions: instructions.into(),
        prompts: vec![(format!("Postern TOTP code for {user}: ").into(), false)].into(),
    }
}

fn message(text: String) -> Auth {
    Auth::Partial {
        name: "".into(),
        instructions: text.into(),
        prompts: Vec::new().into(),
    }
}

impl Person {
    fn new(shared: Arc<Shared>, ident: SessionIdent, live: Arc<Live>) -> Self {
        Self {
            shared,
            ident,
            live,
            stage: Stage::Start,
            user: None,
            fingerprint: None,
            access: None,
            upstream: None,
            bridge: Arc::new(Bridge::default()),
            second_factor: "not required",
        }
    }

    fn ip(&self) -> std::net::IpAddr {
        self.ident.ip
    }

    /// Records a refusal (durably: it is on record before the person learns of it) and
    /// moves to showing it.
    async fn refuse(&mut self, text: String, reason: &str) -> Auth {
        self.shared.metrics.login_failures.inc();
        let mut e = self.ident.event(EventKind::LoginFailure);
        e.error = Some(text.clone());
        e.reason = Some(reason.to_string());
        e.detail = Some(serde_json::json!({ "auth": "publickey", "key": self.fingerprint }));
        let _ = self.shared.audit.record_durable(e).await;
        if let Ok(mut s) = self.live.state.lock() {
            s.refused = Some(reason.to_string());
        }
        tracing::info!(client = %self.ident.client, user = ?self.user, login = ?self.ident.datasource, reason, "SSH login refused");
        self.stage = Stage::Refused(format!("Postern: {text}"));
        kbd_only()
    }

    /// [`Person::refuse`] from inside a keyboard-interactive exchange: the message is shown
    /// at once, and the next answer ends sign-in.
    async fn refuse_now(&mut self, text: String, reason: &str) -> Auth {
        self.refuse(text, reason).await;
        match &self.stage {
            Stage::Refused(t) => message(t.clone()),
            _ => Auth::reject(),
        }
    }

    /// After both factors: connect to the target, then the person is in.
    async fn finish(&mut self) -> Auth {
        let Some((target, rights)) = self.access.clone() else {
            return self
                .refuse("internal error: no grant recorded".into(), "no grant")
                .await;
        };
        if let Ok(mut r) = self.bridge.rights.lock() {
            *r = rights.clone();
        }
        let connected = upstream::connect(
            &target,
            self.shared.store.clone(),
            self.bridge.clone(),
            self.shared.settings.upstream_timeout,
        )
        .await;
        let handle = match connected {
            Ok(h) => Arc::new(h),
            Err(e) => {
                let reason = match &e {
                    upstream::UpstreamError::HostKeyChanged { .. } => "target host key changed",
                    upstream::UpstreamError::Refused { .. } => "target refused the stored secret",
                    upstream::UpstreamError::Timeout { .. } => "target timed out",
                    upstream::UpstreamError::Unreachable { .. } => "target unreachable",
                    upstream::UpstreamError::Store(_) => "store error",
                };
                tracing::warn!(login = %target.name, error = %e, "SSH upstream failed");
                return self.refuse(e.to_string(), reason).await;
            }
        };
        self.upstream = Some(handle);
        self.stage = Stage::Done;
        let user = self.user.clone().unwrap_or_default();
        self.shared.login.succeeded(&user, self.ip());
        let mut e = self.ident.event(EventKind::LoginSuccess);
        e.detail = Some(serde_json::json!({
            "auth": "publickey",
            "key": self.fingerprint,
            "second_factor": self.second_factor,
            "roles": rights.roles,
        }));
        let _ = self.shared.audit.record(e).await;
        let mut e = self.ident.event(EventKind::SessionOpen);
        e.detail = Some(serde_json::json!({
            "host": target.host,
            "port": target.port,
            "port_forwarding": rights.port_forwarding,
            "agent_forwarding": rights.agent_forwarding,
            "x11_forwarding": rights.x11_forwarding,
        }));
        let _ = self.shared.audit.record(e).await;
        Auth::Accept
    }

    /// Checks a second-factor code (given with the login or typed at the prompt): a right
    /// one is remembered as an approval from this address, a wrong one counts as a failed
    /// login. `Err` carries the reason for the audit when the store cannot be read.
    async fn code_is_right(&mut self, user: &str, code: &str) -> Result<bool, String> {
        match self.shared.login.check_code(user, code).await {
            Ok(true) => {
                self.shared.login.approvals.remember(user, self.ip());
                self.second_factor = "code";
                Ok(true)
            }
            Ok(false) => {
                self.shared
                    .login
                    .failed(user, self.ip(), Protocol::Ssh)
                    .await;
                Ok(false)
            }
            Err(e) => Err(format!("store error: {e}")),
        }
    }

    /// Whether a second factor is still needed; refuses when one is required but the person
    /// has none.
    async fn needs_code(&mut self, user: &str) -> Result<bool, Auth> {
        if !self.shared.login.config().require_2fa {
            self.second_factor = "not required";
            return Ok(false);
        }
        match self.shared.store.mfa_status(user).await {
            Ok(s) if !s.enrolled => Err(self
                .refuse(
                    format!(
                        "user \"{user}\" must enrol a second factor before connecting: run \
                         `postern admin login` (or `postern mfa enroll`)"
                    ),
                    "no second factor enrolled",
                )
                .await),
            Ok(_) => {
                let idle = self.shared.login.config().approval_cache_idle;
                if self.shared.login.approvals.cached(user, self.ip(), idle) {
                    self.second_factor = "cached approval";
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
            Err(e) => Err(self
                .refuse(
                    "Postern could not read its store; try again later".into(),
                    &format!("store error: {e}"),
                )
                .await),
        }
    }

    fn signed_in(&self) -> Option<(Arc<russh::client::Handle<Upstream>>, SshRights)> {
        Some((self.upstream.clone()?, self.bridge.rights()))
    }

    /// Audits a channel event; `false` when the audit log no longer takes events — then a
    /// channel about to start must not (fail closed).
    async fn audit_channel(&self, detail: serde_json::Value) -> bool {
        match detail["action"].as_str() {
            Some("refused") => self.shared.metrics.refusals.inc(),
            Some("start") => self.shared.metrics.channels.inc(),
            _ => 0,
        };
        let mut e = self.ident.event(EventKind::SshChannel);
        e.detail = Some(detail);
        self.shared.audit.record(e).await.is_ok()
    }

    fn login_name(&self) -> String {
        self.ident
            .datasource
            .as_deref()
            .unwrap_or_default()
            .to_string()
    }

    fn not_granted(&self, what: &str) -> ChannelOpenFailure {
        ChannelOpenFailure::Other {
            code: 1,
            reason: format!(
                "Postern: {what} is not granted to you on ssh login {}",
                self.login_name()
            ),
        }
    }
}

/// Why a channel may not start while the audit log takes no events.
fn audit_closed() -> ChannelOpenFailure {
    ChannelOpenFailure::Other {
        code: 1,
        reason: AUDIT_CLOSED.into(),
    }
}

/// What the person is told when the audit log takes no events (Postern is shutting down).
pub(crate) const AUDIT_CLOSED: &str =
    "Postern: the audit log is not accepting events, so this channel may not start";

impl server::Handler for Person {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        if let Ok(mut s) = self.live.state.lock() {
            s.attempted = true;
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        _login: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        if let Ok(mut s) = self.live.state.lock() {
            s.attempted = true;
        }
        match self.shared.store.user_of_ssh_key(&fp).await {
            Ok(Some(_)) => Ok(Auth::Accept),
            Ok(None) => {
                if let Ok(mut s) = self.live.state.lock() {
                    if s.unknown_keys.len() < 16 && !s.unknown_keys.contains(&fp) {
                        s.unknown_keys.push(fp);
                    }
                }
                Ok(Auth::reject())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read SSH keys from the store");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_publickey(
        &mut self,
        login: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.stage != Stage::Start {
            return Ok(Auth::reject());
        }
        let fp = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let user = match self.shared.store.user_of_ssh_key(&fp).await {
            Ok(Some(u)) => u,
            _ => return Ok(Auth::reject()),
        };
        let login: String = login.chars().take(128).collect();
        // Scripts that cannot answer a prompt give the code with the login (`web:123456`),
        // as on the database ports.
        let (login, code) = match postern_login::split_code(&login) {
            (l, Some(c)) => (l.to_string(), Some(c.to_string())),
            (l, None) => (l.to_string(), None),
        };
        self.ident.user = Some(user.as_str().into());
        self.ident.datasource = Some(login.as_str().into());
        self.user = Some(user.clone());
        self.fingerprint = Some(fp);
        if let Err(d) = self.shared.login.admit(&user, self.ip()) {
            let text = match d.hint {
                Some(h) => format!("{} ({h})", d.message),
                None => d.message,
            };
            return Ok(self.refuse(text, &d.reason).await);
        }
        if let Err(d) = self.shared.login.user_usable(&user).await {
            return Ok(self.refuse(d.message, &d.reason).await);
        }
        match self.shared.store.ssh_access(&user, &login).await {
            Ok(SshAccess::Granted(target, rights)) => {
                self.ident.db_user = Some(target.user.as_str().into());
                self.access = Some((target, rights));
            }
            Ok(SshAccess::UnknownLogin) => {
                return Ok(self
                    .refuse(
                        format!(
                            "there is no ssh login \"{login}\"; connect as LOGIN@host with a login \
                             a role of yours grants (an admin lists them with `postern get ssh-logins`)"
                        ),
                        "unknown ssh login",
                    )
                    .await)
            }
            Ok(SshAccess::NotGranted) => {
                return Ok(self
                    .refuse(
                        format!(
                            "no role of {user} grants ssh login {login}; ask an admin to add it to \
                             one of your roles (role.ssh.logins)"
                        ),
                        "no grant",
                    )
                    .await)
            }
            Err(e) => {
                return Ok(self
                    .refuse(
                        "Postern could not read its store; try again later".into(),
                        &format!("store error: {e}"),
                    )
                    .await)
            }
        }
        match self.needs_code(&user).await {
            Ok(true) => match code {
                Some(code) => match self.code_is_right(&user, &code).await {
                    Ok(true) => Ok(self.finish().await),
                    Ok(false) => Ok(self
                        .refuse(
                            "the second-factor code given with the login is wrong, expired or \
                                 already used"
                                .into(),
                            "wrong second-factor code",
                        )
                        .await),
                    Err(why) => Ok(self
                        .refuse(
                            "Postern could not read its store; try again later".into(),
                            &why,
                        )
                        .await),
                },
                None => {
                    self.stage = Stage::NeedCode { wrong: 0 };
                    Ok(kbd_only())
                }
            },
            Ok(false) => Ok(match self.finish().await {
                Auth::Accept => Auth::Accept,
                other => other,
            }),
            Err(refused) => Ok(refused),
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _login: &str,
        _submethods: &str,
        response: Option<server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        match self.stage.clone() {
            Stage::Start => {
                if response.is_some() {
                    self.stage = Stage::Over;
                    return Ok(Auth::Reject {
                        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
                        partial_success: false,
                    });
                }
                let offered = self
                    .live
                    .state
                    .lock()
                    .map(|s| s.unknown_keys.clone())
                    .unwrap_or_default();
                let text = if offered.is_empty() {
                    "Postern: sign in with your SSH key; register it first with \
                     `postern key add ~/.ssh/id_ed25519.pub`"
                        .to_string()
                } else {
                    format!(
                        "Postern: none of the keys offered is registered ({}); register yours \
                         with `postern key add ~/.ssh/id_ed25519.pub`",
                        offered.join(", ")
                    )
                };
                Ok(message(text))
            }
            Stage::Refused(text) => {
                if response.is_some() {
                    self.stage = Stage::Over;
                    return Ok(Auth::Reject {
                        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
                        partial_success: false,
                    });
                }
                Ok(message(text))
            }
            Stage::NeedCode { wrong } => {
                let user = self.user.clone().unwrap_or_default();
                let Some(mut answers) = response else {
                    return Ok(code_prompt(&user, wrong > 0));
                };
                let code = answers
                    .next()
                    .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                    .unwrap_or_default();
                if let Err(d) = self.shared.login.admit(&user, self.ip()) {
                    return Ok(self.refuse_now(d.message, &d.reason).await);
                }
                match self.code_is_right(&user, &code).await {
                    Ok(true) => {
                        match self.finish().await {
                            Auth::Accept => Ok(Auth::Accept),
                            // The refusal is shown at once, within this exchange.
                            _ => match &self.stage {
                                Stage::Refused(text) => Ok(message(text.clone())),
                                _ => Ok(Auth::reject()),
                            },
                        }
                    }
                    Ok(false) => {
                        let mut e = self.ident.event(EventKind::LoginFailure);
                        e.error = Some("the second-factor code is wrong".into());
                        e.reason = Some("wrong second-factor code".into());
                        e.detail = Some(
                            serde_json::json!({ "auth": "publickey", "key": self.fingerprint }),
                        );
                        let _ = self.shared.audit.record_durable(e).await;
                        self.shared.metrics.login_failures.inc();
                        let wrong = wrong.saturating_add(1);
                        if wrong >= MAX_CODE_TRIES {
                            return Ok(self
                                .refuse_now(
                                    format!(
                                        "the second-factor code was wrong {wrong} times; use the \
                                         current code of your authenticator app (or a recovery code)"
                                    ),
                                    "wrong second-factor code",
                                )
                                .await);
                        }
                        // Asked again within the same exchange, saying why.
                        self.stage = Stage::NeedCode { wrong };
                        Ok(code_prompt(&user, true))
                    }
                    Err(why) => Ok(self
                        .refuse_now(
                            "Postern could not read its store; try again later".into(),
                            &why,
                        )
                        .await),
                }
            }
            Stage::Over | Stage::Done => Ok(Auth::reject()),
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let _ = self.bridge.client.set(session.handle());
        if let (Some(user), Some(fp), Some(up)) = (
            self.user.clone(),
            self.fingerprint.clone(),
            self.upstream.clone(),
        ) {
            if let Ok(mut s) = self.live.state.lock() {
                s.signed_in = Some(SignedIn {
                    user,
                    fingerprint: fp,
                    login: self.login_name(),
                    bridge: self.bridge.clone(),
                    upstream: up,
                    ident: self.ident.clone(),
                });
            }
            self.live.authed.notify_one();
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((up, _)) = self.signed_in() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        match up.channel_open_session().await {
            Ok(target) => {
                reply.accept().await;
                self.shared.metrics.channels.inc();
                relay::spawn_session(
                    channel,
                    target,
                    SessionChannel {
                        ident: self.ident.clone(),
                        audit: self.shared.audit.clone(),
                        store: self.shared.store.clone(),
                        recordings: self.shared.recordings.clone(),
                        number: self.bridge.channels.fetch_add(1, Ordering::Relaxed),
                        bridge: self.bridge.clone(),
                        person: session.handle(),
                        recorder: std::sync::OnceLock::new(),
                        transfer: std::sync::OnceLock::new(),
                    },
                );
            }
            Err(e) => {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 2,
                        reason: format!("Postern: the target refused a session channel: {e}"),
                    })
                    .await;
            }
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let target = format!("{host_to_connect}:{port_to_connect}");
        let Some((up, rights)) = self.signed_in() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if !rights.port_forwarding {
            self.audit_channel(serde_json::json!({
                "action": "refused", "channel": "direct-tcpip", "to": target,
                "reason": "port forwarding not granted",
            }))
            .await;
            reply.reject(self.not_granted("port forwarding")).await;
            return Ok(());
        }
        match up
            .channel_open_direct_tcpip(
                host_to_connect,
                port_to_connect,
                originator_address,
                originator_port,
            )
            .await
        {
            Ok(t) => {
                let audited = self
                    .audit_channel(serde_json::json!({
                        "action": "start", "channel": "direct-tcpip", "to": target,
                    }))
                    .await;
                if !audited {
                    let _ = t.close().await;
                    reply.reject(audit_closed()).await;
                    return Ok(());
                }
                reply.accept().await;
                relay::spawn_pipe(channel, t, self.bridge.activity.clone());
            }
            Err(e) => {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 2,
                        reason: format!("Postern: the target could not open {target}: {e}"),
                    })
                    .await
            }
        }
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.audit_channel(serde_json::json!({
            "action": "refused", "channel": "direct-streamlocal", "to": socket_path,
            "reason": "Unix-socket forwarding is not supported",
        }))
        .await;
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: "Postern: Unix-socket forwarding is not supported".into(),
            })
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only servers open X11 channels.
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only servers open forwarded channels.
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some((up, rights)) = self.signed_in() else {
            return Ok(false);
        };
        let what = format!("{address}:{port}");
        if !rights.port_forwarding {
            self.audit_channel(serde_json::json!({
                "action": "refused", "channel": "tcpip-forward", "listen": what,
                "reason": "port forwarding not granted",
            }))
            .await;
            return Ok(false);
        }
        // Known before the target is asked: its first forwarded connection may arrive before
        // the answer does. A request for port 0 admits the port the target picks.
        let key = (address.to_string(), *port);
        if let Ok(mut f) = self.bridge.remote_forwards.lock() {
            f.insert(key.clone());
        }
        match up.tcpip_forward(address, *port).await {
            Ok(bound) => {
                if *port == 0 {
                    *port = bound;
                    if let Ok(mut f) = self.bridge.remote_forwards.lock() {
                        f.remove(&key);
                        f.insert((address.to_string(), bound));
                    }
                }
                let audited = self
                    .audit_channel(serde_json::json!({
                        "action": "start", "channel": "tcpip-forward", "listen": format!("{address}:{port}"),
                    }))
                    .await;
                if !audited {
                    let _ = up.cancel_tcpip_forward(address, *port).await;
                    if let Ok(mut f) = self.bridge.remote_forwards.lock() {
                        f.remove(&(address.to_string(), *port));
                    }
                    return Ok(false);
                }
                Ok(true)
            }
            Err(e) => {
                if let Ok(mut f) = self.bridge.remote_forwards.lock() {
                    f.remove(&key);
                }
                tracing::info!(error = %e, listen = %what, "the target refused a remote forward");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some((up, _)) = self.signed_in() else {
            return Ok(false);
        };
        if let Ok(mut f) = self.bridge.remote_forwards.lock() {
            f.remove(&(address.to_string(), port));
        }
        Ok(up.cancel_tcpip_forward(address, port).await.is_ok())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.bridge.rights().x11_forwarding {
            self.bridge.x11.store(true, Ordering::Release);
            session.channel_success(channel)
        } else {
            self.audit_channel(serde_json::json!({
                "action": "refused", "channel": "x11", "reason": "X11 forwarding not granted",
            }))
            .await;
            session.channel_failure(channel)
        }
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if self.bridge.rights().agent_forwarding {
            let audited = self
                .audit_channel(serde_json::json!({ "action": "start", "channel": "agent" }))
                .await;
            self.bridge.agent.store(audited, Ordering::Release);
            Ok(audited)
        } else {
            self.audit_channel(serde_json::json!({
                "action": "refused", "channel": "agent", "reason": "agent forwarding not granted",
            }))
            .await;
            Ok(false)
        }
    }
}

/// Runs one SSH connection: sign-in within the handshake timeout, then the session under
/// watch — ended when its person loses access (checked when the store changes), when idle
/// or when it reaches its maximum length.
pub async fn run(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
    let ident = SessionIdent::new(Protocol::Ssh, id, peer);
    let live = Arc::new(Live::default());
    let handler = Person::new(shared.clone(), ident.clone(), live.clone());
    let handshake = shared.settings.handshake_timeout;
    let started = Instant::now();
    let running = match tokio::time::timeout(
        handshake,
        server::run_stream(shared.server_config.clone(), tcp, handler),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "SSH connection failed before key exchange");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "SSH client sent no version within the handshake timeout");
            return;
        }
    };
    let handle = running.handle();
    // russh runs the connection in its own task: when this one is stopped (server shutdown
    // past its grace period), the connection must end with it.
    let _end = EndOnDrop(Some(handle.clone()));
    tokio::pin!(running);
    let deadline = tokio::time::sleep(handshake.saturating_sub(started.elapsed()));
    tokio::pin!(deadline);
    let ended_unsigned = tokio::select! {
        _ = &mut running => true,
        _ = live.authed.notified() => false,
        _ = &mut deadline => {
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "Postern: sign-in took too long".into(),
                    "en".into(),
                )
                .await;
            if let Ok(mut s) = live.state.lock() {
                s.refused.get_or_insert_with(|| "sign-in timed out".into());
            }
            true
        }
    };
    let signed = live.state.lock().ok().and_then(|s| s.signed_in.clone());
    let Some(signed) = signed.filter(|_| !ended_unsigned) else {
        let (unknown, refused, attempted) = live
            .state
            .lock()
            .map(|s| (s.unknown_keys.clone(), s.refused.clone(), s.attempted))
            .unwrap_or_default();
        // Refusals after a registered key were recorded as they happened; a connection that
        // never showed one is recorded here.
        if attempted && refused.as_deref().is_none_or(|r| r == "sign-in timed out") {
            shared.metrics.login_failures.inc();
            let mut e = ident.event(EventKind::LoginFailure);
            e.reason = Some(refused.unwrap_or_else(|| {
                if unknown.is_empty() {
                    "no registered key offered".into()
                } else {
                    "unknown key".into()
                }
            }));
            e.detail = Some(serde_json::json!({ "auth": "publickey", "unknown_keys": unknown }));
            let _ = shared.audit.record(e).await;
        }
        return;
    };
    shared.metrics.active.inc();
    let ended_by = supervise(&shared, &signed, &handle, &mut running).await;
    shared.metrics.active.dec();
    let moved = signed.bridge.activity.bytes_in.load(Ordering::Relaxed)
        + signed.bridge.activity.bytes_out.load(Ordering::Relaxed);
    shared.metrics.bytes.inc_by(moved);
    let _ = signed
        .upstream
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    let mut e = signed.ident.event(EventKind::SessionClose);
    e.duration_us = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    e.detail = Some(serde_json::json!({
        "ended_by": ended_by,
        "bytes_in": signed.bridge.activity.bytes_in.load(Ordering::Relaxed),
        "bytes_out": signed.bridge.activity.bytes_out.load(Ordering::Relaxed),
    }));
    let _ = shared.audit.record(e).await;
}

/// Disconnects the client when dropped.
struct EndOnDrop(Option<server::Handle>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = h
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "Postern: the session ended".into(),
                            "en".into(),
                        )
                        .await;
                });
            }
        }
    }
}

/// Watches a signed-in session until it ends; returns what ended it.
async fn supervise<F>(
    shared: &Shared,
    s: &SignedIn,
    handle: &server::Handle,
    running: &mut std::pin::Pin<&mut F>,
) -> String
where
    F: std::future::Future,
{
    let epoch = shared.store.policy_epoch();
    let mut seen = epoch.load(Ordering::Acquire);
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(shared.settings.recheck_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = running.as_mut() => return "client".into(),
            _ = tick.tick() => {}
        }
        let rights = s.bridge.rights();
        let mut cut: Option<(String, String)> = None;
        let now = epoch.load(Ordering::Acquire);
        if now != seen {
            seen = now;
            if let Err(why) = still_allowed(shared, s).await {
                cut = Some((why.clone(), format!("access revoked: {why}")));
            }
        }
        if cut.is_none() {
            if let Some(max) = rights.max_session {
                if started.elapsed() >= max {
                    cut = Some((
                        format!("the session reached its maximum length ({})", humanize(max)),
                        "max_session".into(),
                    ));
                }
            }
        }
        if cut.is_none() {
            if let Some(idle) = rights.idle_timeout {
                if s.bridge.activity.idle_for() >= idle {
                    cut = Some((
                        format!("the session was idle for {}", humanize(idle)),
                        "idle_timeout".into(),
                    ));
                }
            }
        }
        if let Some((text, ended_by)) = cut {
            tracing::info!(user = %s.user, login = %s.login, reason = %ended_by, "ending SSH session");
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    format!("Postern: {text}"),
                    "en".into(),
                )
                .await;
            // Give the disconnect a moment to reach the client, then stop regardless.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), running.as_mut()).await;
            return ended_by;
        }
    }
}

/// Whether the person may still use the login: not disabled or locked, the key still
/// theirs, a role still granting it (rights refreshed). The reason in words when not.
async fn still_allowed(shared: &Shared, s: &SignedIn) -> Result<(), String> {
    shared
        .login
        .user_usable(&s.user)
        .await
        .map_err(|d| d.message)?;
    match shared.store.user_of_ssh_key(&s.fingerprint).await {
        Ok(Some(u)) if u == s.user => {}
        Ok(_) => {
            return Err(format!(
                "the key {} is no longer registered to {}",
                s.fingerprint, s.user
            ))
        }
        Err(e) => return Err(format!("Postern could not read its store ({e})")),
    }
    match shared.store.ssh_access(&s.user, &s.login).await {
        Ok(SshAccess::Granted(_, rights)) => {
            if let Ok(mut r) = s.bridge.rights.lock() {
                *r = rights;
            }
            Ok(())
        }
        Ok(SshAccess::UnknownLogin) => Err(format!("ssh login {} was removed", s.login)),
        Ok(SshAccess::NotGranted) => Err(format!(
            "no role of {} grants ssh login {} any more",
            s.user, s.login
        )),
        Err(e) => Err(format!("Postern could not read its store ({e})")),
    }
}

fn humanize(d: std::time::Duration) -> String {
    humantime_like(d.as_secs())
}

fn humantime_like(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(humantime_like(7200), "2 h");
        assert_eq!(humantime_like(900), "15 min");
        assert_eq!(humantime_like(61), "61 s");
    }
}
