//! One MySQL client session: greeting, TLS, authentication of the person through the shared
//! login flow, the grant check, the upstream login with the stored credential, then the
//! audited relay of commands and responses.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use postern_audit::{Decision, EventKind, Protocol};
use postern_auth::MysqlVerifier;
use postern_core::{split_login, DatasourceType};
use postern_net::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::codec::{self, *};
use crate::gate::{self, Gate, Ruling};
use crate::io::{read_packet, write_packet, ReadError};
use crate::masker::{Follow, Masker};
use crate::proxy::{Inner, Live, LiveGuard};
use crate::tracker::{Expect, Outcome, Tracker};
use crate::upstream::{self, UpstreamTarget};

/// How often an open session checks that its user may still use it.
const ACCESS_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Identity fields shared by every audit event of a session.
type Ident = postern_audit::SessionIdent;

/// A refusal: MySQL error code, SQLSTATE, message for the client, reason for the audit.
struct Refusal {
    code: u16,
    sqlstate: &'static str,
    message: String,
    audit_reason: Option<String>,
    /// A login failure (else the session was refused after login).
    login: bool,
    /// Wrong name or password: counted against lockouts.
    bad_credentials: bool,
}

impl Refusal {
    fn new(code: u16, sqlstate: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            sqlstate,
            message: message.into(),
            audit_reason: None,
            login: true,
            bad_credentials: false,
        }
    }
    /// Wrong name or password (the kind of failure lockouts count).
    fn bad_credentials(code: u16, message: impl Into<String>) -> Self {
        let mut r = Self::new(code, "28000", message);
        r.bad_credentials = true;
        r
    }
    fn reason(mut self, r: impl Into<String>) -> Self {
        self.audit_reason = Some(r.into());
        self
    }
    fn not_login(mut self) -> Self {
        self.login = false;
        self
    }
    fn from_denial(d: postern_login::Denial, user: &str) -> Self {
        use postern_login::DenialKind as K;
        let (code, state) = match d.kind {
            K::Credentials | K::Locked | K::SecondFactor | K::Certificate => (1045, "28000"),
            K::Internal => (1105, "HY000"),
        };
        let mut message = format!("Access denied for user '{user}': {}", d.message);
        if let Some(h) = &d.hint {
            message.push_str(&format!(" (hint: {h})"));
        }
        let mut r = Self::new(code, state, message).reason(d.reason);
        r.bad_credentials = d.kind == K::Credentials;
        r
    }
    fn store(e: &dyn std::fmt::Display) -> Self {
        Self::new(
            1105,
            "HY000",
            "Postern could not read its store; try again later",
        )
        .reason(format!("store error: {e}"))
    }
}

/// Runs a session to its end. Never panics on client input; every outcome is audited.
pub(crate) async fn run(inner: Arc<Inner>, tcp: TcpStream, peer: SocketAddr, admitted: bool) {
    let session: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    let span = tracing::info_span!("mysql_session", session = %session, client = %peer);
    let mut ident = Ident::new(Protocol::Mysql, session, peer);
    let established = async {
        let mut stream = Stream::Plain(tcp);
        if !admitted {
            let _ = write_packet(
                &mut stream,
                0,
                &codec::err(
                    1040,
                    "08004",
                    "Too many connections to Postern; try again later",
                ),
            )
            .await;
            return None;
        }
        let id = inner.connection_id();
        let timeout = inner.cfg.handshake_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let outer = if inner.login.config().require_2fa {
            timeout + inner.login.config().approval_timeout
        } else {
            timeout
        };
        let est =
            match tokio::time::timeout(outer, handshake(&inner, stream, &mut ident, id, deadline))
                .await
            {
                Ok(Some(e)) => e,
                Ok(None) => return None,
                Err(_) => {
                    let mut e = ident.event(EventKind::LoginFailure);
                    e.error = Some(format!("handshake not completed within {timeout:?}"));
                    let _ = inner.audit.record(e).await;
                    return None;
                }
            };
        Some((est, id))
    }
    .instrument(span.clone())
    .await;
    // The relay runs outside the span (its logs name it as parent): entering and leaving a
    // span on every poll was a measurable part of the per-statement cost.
    if let Some((est, id)) = established {
        let _guard = LiveGuard { inner: &inner, id };
        relay(&inner, est, &ident, &span).await;
    }
}

/// Audits a refusal durably, then tells the client (ERR at `seq`).
async fn deny(inner: &Inner, stream: &mut Stream, seq: u8, ident: &Ident, r: Refusal) {
    let error = r.audit_reason.clone().unwrap_or_else(|| r.message.clone());
    let e = ident.refusal(r.login, error, r.sqlstate);
    if r.login {
        inner.metrics.login_failures.inc();
    }
    if inner.audit.record_durable(e).await.is_err() {
        let _ = write_packet(
            stream,
            seq,
            &codec::err(
                1105,
                "HY000",
                "Postern cannot write its audit log; nothing was done",
            ),
        )
        .await;
        return;
    }
    tracing::info!(code = r.code, reason = %r.audit_reason.as_deref().unwrap_or(&r.message), "session refused");
    let _ = write_packet(stream, seq, &codec::err(r.code, r.sqlstate, &r.message)).await;
}

async fn bad_input(inner: &Inner, stream: &mut Stream, seq: u8, ident: &Ident, e: &ReadError) {
    match e {
        ReadError::Eof | ReadError::Io(_) => {
            tracing::debug!(error = %e, "client went away during the handshake");
            let mut ev = ident.event(EventKind::LoginFailure);
            ev.error = Some(format!("client left during the handshake: {e}"));
            let _ = inner.audit.record(ev).await;
        }
        ReadError::Codec(c) => {
            let r = Refusal::new(1043, "08S01", format!("Bad handshake: {c}"));
            deny(inner, stream, seq, ident, r).await;
        }
    }
}

/// A session past login, ready to relay.
struct Established {
    client: Stream,
    client_buf: BytesMut,
    upstream: upstream::Upstream,
    credential: String,
    cert: Option<postern_login::PresentedCert>,
    /// The store's change counter as read before the grant check.
    epoch: u64,
    /// The user's policy on the datasource, and the database the session starts in.
    policy: Arc<postern_policy::Policy>,
    database: String,
    /// What results are masked (`None`: nothing).
    masking: Option<Arc<postern_policy::SessionMasking>>,
    /// The collation (character set) the client connected with.
    collation: u8,
}

/// Tells a client whose login waits for approval… nothing: MySQL has no message a client
/// shows before the login ends. The person finds the waiting login with `postern approve`.
struct HeldLogin<'a> {
    stream: &'a mut Stream,
}

impl postern_login::Prompt for HeldLogin<'_> {
    async fn tell(&mut self, _text: &str) -> std::io::Result<()> {
        tracing::info!("login held for approval (postern approve lists it)");
        Ok(())
    }
    async fn gone(&mut self) {
        // The client sends nothing while it waits; end of stream means it left.
        let mut b = [0u8; 64];
        loop {
            match self.stream.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

async fn handshake(
    inner: &Inner,
    mut stream: Stream,
    ident: &mut Ident,
    conn_id: u32,
    deadline: tokio::time::Instant,
) -> Option<Established> {
    let nonce = postern_auth::mysql::nonce();
    // LOCAL INFILE is offered; it reaches the upstream only in the checked modes, where each
    // request is matched to a judged LOAD DATA LOCAL statement.
    let mut offered = OFFERED | CLIENT_LOCAL_FILES;
    if inner.tls.is_some() {
        offered |= CLIENT_SSL;
    }
    let version = inner.version();
    let hello = codec::greeting(&version, conn_id, &nonce, offered, CACHING_SHA2);
    if write_packet(&mut stream, 0, &hello).await.is_err() {
        return None;
    }
    let mut buf = BytesMut::with_capacity(1024);
    let mut first = client_packet(inner, &mut stream, ident, deadline, 1).await?;
    let mut seq = 2;
    if codec::is_ssl_request(&first) {
        let Some(acceptor) = &inner.tls else {
            let r = Refusal::new(1043, "08S01", "Bad handshake: TLS was not offered");
            deny(inner, &mut stream, 2, ident, r).await;
            return None;
        };
        let Stream::Plain(tcp) = stream else {
            return None;
        };
        stream = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Stream::ServerTls(Box::new(tls)),
            Ok(Err(e)) => {
                let mut ev = ident.event(EventKind::LoginFailure);
                ev.error = Some(format!("TLS handshake failed: {e}"));
                let _ = inner.audit.record(ev).await;
                return None;
            }
            Err(_) => {
                let mut ev = ident.event(EventKind::LoginFailure);
                ev.error = Some("TLS handshake not completed in time".into());
                let _ = inner.audit.record(ev).await;
                return None;
            }
        };
        first = client_packet(inner, &mut stream, ident, deadline, 2).await?;
        seq = 3;
    }
    let resp = match codec::parse_handshake_response(&first) {
        Ok(r) => r,
        Err(e) => {
            bad_input(inner, &mut stream, seq, ident, &ReadError::Codec(e)).await;
            return None;
        }
    };
    if let Some(name) = resp.user.split('@').next().filter(|s| !s.is_empty()) {
        ident.user = Some(postern_login::split_code(name).0.into());
    }
    if inner.cfg.require_tls && !stream.is_tls() {
        let r = Refusal::new(
            1045,
            "28000",
            "Postern requires TLS on this port (connect with --ssl / ssl-mode=REQUIRED)",
        );
        deny(inner, &mut stream, seq, ident, r).await;
        return None;
    }
    let Some(mut target) = split_login(&resp.user, resp.database.as_deref()) else {
        let r = if resp.user.is_empty() {
            Refusal::new(1045, "28000", "no user name given")
        } else {
            Refusal::new(
                1046,
                "3D000",
                "no datasource given: connect with the datasource alias as the database, or as <you>@<alias>",
            )
        };
        deny(inner, &mut stream, seq, ident, r).await;
        return None;
    };
    ident.datasource = Some(target.alias.as_str().into());
    let code = {
        let (name, code) = postern_login::split_code(&target.user);
        let code = code.map(|c| zeroize::Zeroizing::new(c.to_string()));
        target.user = name.to_string();
        code
    };
    let user = target.user.clone();

    // Authenticate the person.
    let flow = &inner.login;
    let mut cert = None;
    let (method, factor) = if let Some(chain) = stream.client_certificates() {
        match flow.certificate(&chain, &user).await {
            Ok(c) => {
                cert = Some(c);
                ("certificate", postern_login::SecondFactor::Certificate)
            }
            Err(d) => {
                deny(
                    inner,
                    &mut stream,
                    seq,
                    ident,
                    Refusal::from_denial(d, &user),
                )
                .await;
                return None;
            }
        }
    } else {
        if let Err(d) = flow.admit(&user, ident.ip) {
            deny(
                inner,
                &mut stream,
                seq,
                ident,
                Refusal::from_denial(d, &user),
            )
            .await;
            return None;
        }
        let checked = tokio::time::timeout_at(
            deadline,
            authenticate(inner, &mut stream, &mut buf, &mut seq, &user, &nonce, &resp),
        )
        .await
        .unwrap_or_else(|_| {
            Err(
                Refusal::new(1045, "28000", "authentication not completed in time")
                    .reason("handshake timed out"),
            )
        });
        let method = match checked {
            Ok(m) => m,
            Err(r) => {
                if r.bad_credentials {
                    flow.failed(&user, ident.ip, Protocol::Mysql).await;
                }
                tokio::time::sleep(inner.cfg.login_failure_delay).await;
                deny(inner, &mut stream, seq, ident, r).await;
                return None;
            }
        };
        flow.succeeded(&user, ident.ip);
        let mut prompt = HeldLogin {
            stream: &mut stream,
        };
        let factor = flow
            .second_factor(
                &user,
                ident.ip,
                code.as_ref().map(|c| c.as_str()),
                &format!("mysql: {}", target.alias),
                Protocol::Mysql,
                &mut prompt,
            )
            .await;
        match factor {
            Ok(f) => (method, f),
            Err(d) => {
                deny(
                    inner,
                    &mut stream,
                    seq,
                    ident,
                    Refusal::from_denial(d, &user),
                )
                .await;
                return None;
            }
        }
    };

    // Authorise: the datasource and a credential for it (the checks every front door shares).
    let grant = match inner
        .login
        .grant(&user, &target.alias, DatasourceType::Mysql)
        .await
    {
        Ok(g) => g,
        Err(refused) => {
            let r = grant_refusal(refused, &target.alias);
            deny(inner, &mut stream, seq, ident, r).await;
            return None;
        }
    };
    let postern_login::Grant {
        datasource: ds,
        credential_name: cred_name,
        credential: cred,
        policy,
        epoch,
    } = grant;
    ident.db_user = Some(cred.username.as_str().into());
    let mut success = ident.event(EventKind::LoginSuccess);
    let mut detail = serde_json::json!({
        "auth": method,
        "second_factor": factor.as_str(),
        "tls": stream.is_tls(),
        "connection_id": conn_id,
    });
    if let Some(c) = &cert {
        detail["certificate"] = serde_json::json!(c.serial);
    }
    if let Some((_, prog)) = resp.attrs.iter().find(|(k, _)| k == "program_name") {
        detail["program"] = serde_json::json!(prog);
    }
    success.detail = Some(detail);
    let _ = inner.audit.record(success).await;

    let mut client_caps = resp.capabilities & offered;
    if policy.mode == postern_policy::Mode::Passthrough {
        client_caps &= !CLIENT_LOCAL_FILES;
    }
    let target_up = UpstreamTarget {
        host: &ds.host,
        port: ds.port,
        database: &ds.database,
        tls: ds.tls,
        tls_ca: ds.tls_ca.as_deref(),
        username: &cred.username,
        password: &cred.password,
        client_capabilities: client_caps & !CLIENT_SSL,
        charset: resp.charset,
    };
    let mut up = match upstream::connect(&target_up, inner.cfg.upstream_timeout).await {
        Ok(u) => u,
        Err(e) => {
            let r = Refusal::new(
                1045,
                "08004",
                format!("Postern could not open datasource '{}': {e}", target.alias),
            )
            .not_login();
            deny(inner, &mut stream, seq, ident, r).await;
            return None;
        }
    };
    drop(cred);
    if (up.capabilities ^ client_caps) & FRAMING != 0 {
        let r = Refusal::new(
            1105,
            "08004",
            format!(
                "datasource '{}' and this client disagree on how results are framed (capabilities {:#x} vs {:#x}); Postern cannot relay between them",
                target.alias,
                up.capabilities & FRAMING,
                client_caps & FRAMING
            ),
        )
        .not_login();
        deny(inner, &mut stream, seq, ident, r).await;
        return None;
    }
    if policy.mode != postern_policy::Mode::Passthrough {
        // Statements are checked as the analyser reads them: the server must read them alike.
        let refused = match upstream::sql_mode(&mut up, inner.cfg.upstream_timeout).await {
            Ok(mode) if postern_sql::mysql::sql_mode_is_safe(&mode) => None,
            Ok(mode) => Some(format!(
                "datasource '{}' runs with sql_mode '{mode}', which changes how the server reads SQL text; Postern cannot check statements there (ask an admin to change the server's sql_mode, or for PASSTHROUGH mode)",
                target.alias
            )),
            Err(e) => Some(format!(
                "Postern could not read the sql_mode of datasource '{}': {e}",
                target.alias
            )),
        };
        if let Some(msg) = refused {
            let r = Refusal::new(1105, "HY000", msg).not_login();
            deny(inner, &mut stream, seq, ident, r).await;
            return None;
        }
    }
    // The masking a checked session needs, from the upstream's catalog (fail closed).
    let masking = if policy.mode != postern_policy::Mode::Passthrough
        && policy.masking_rules().next().is_some()
    {
        let caps = up.capabilities;
        match load_masking(
            inner,
            &policy,
            &ds.database,
            &mut up.stream,
            &mut up.leftover,
            caps,
        )
        .await
        {
            Ok(m) => m,
            Err(e) => {
                let msg = format!(
                    "Postern could not read what the masking rules cover on datasource '{}': {e}",
                    target.alias
                );
                let r = Refusal::new(1105, "HY000", msg).not_login();
                deny(inner, &mut stream, seq, ident, r).await;
                return None;
            }
        }
    } else {
        None
    };
    inner.seen_version(&up.greeting.version);
    if let (Ok(mut live), Ok(addr)) = (inner.live.lock(), up_addr(&up)) {
        live.insert(
            conn_id,
            Live {
                user: user.as_str().into(),
                upstream: addr,
                thread_id: up.greeting.connection_id,
            },
        );
    }
    let ok = codec::ok(0, SERVER_STATUS_AUTOCOMMIT, "");
    if write_packet(&mut stream, seq, &ok).await.is_err() {
        return None;
    }
    Some(Established {
        client: stream,
        client_buf: buf,
        upstream: up,
        credential: cred_name,
        cert,
        epoch,
        policy: Arc::new(policy),
        database: ds.database.clone(),
        masking,
        collation: resp.charset,
    })
}

/// A refused grant check, in MySQL's terms.
fn grant_refusal(refused: postern_login::GrantRefusal, alias: &str) -> Refusal {
    use postern_login::GrantRefusal as G;
    match refused {
        G::UnknownDatasource => Refusal::new(
            1049,
            "42000",
            format!("Unknown database '{alias}': no such datasource in Postern (`postern get datasources` lists them)"),
        ),
        G::WrongType(kind) => Refusal::new(
            1049,
            "42000",
            format!(
                "datasource '{alias}' is a {} database; connect to Postern's {} port instead",
                kind.as_str(),
                kind.as_str()
            ),
        ),
        G::NotGranted(denied) => Refusal::new(
            1044,
            "42000",
            format!("{denied} (ask an admin to grant you a role that carries a credential for this datasource)"),
        ),
        G::CredentialGone(name) => Refusal::new(
            1044,
            "42000",
            format!("credential {name} granted to you no longer exists"),
        )
        .not_login(),
        G::Store(e) => Refusal::store(&e),
    }
}

fn up_addr(up: &upstream::Upstream) -> std::io::Result<SocketAddr> {
    match &up.stream {
        Stream::Plain(t) => t.peer_addr(),
        Stream::ClientTls(t) => t.get_ref().0.peer_addr(),
        Stream::ServerTls(t) => t.get_ref().0.peer_addr(),
    }
}

/// Reads the client's next connection-phase packet, which must carry sequence id `want`.
/// Read exactly: an SSLRequest is followed at once by the client's TLS bytes, which must stay
/// in the socket. `None` once the client was refused or left (audited).
async fn client_packet(
    inner: &Inner,
    stream: &mut Stream,
    ident: &Ident,
    deadline: tokio::time::Instant,
    want: u8,
) -> Option<BytesMut> {
    let read = crate::io::read_packet_exact(stream, MAX_HANDSHAKE_PACKET);
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok((p, seq))) if seq == want => Some(p),
        Ok(Ok((_, got))) => {
            let e = ReadError::Codec(CodecError::Sequence { got, want });
            bad_input(inner, stream, got.wrapping_add(1), ident, &e).await;
            None
        }
        // Connected and left without a word (a port check, a load balancer's probe): no
        // login was tried, so none failed.
        Ok(Err(ReadError::Eof)) if want == 1 => {
            tracing::debug!("client left without answering the greeting");
            None
        }
        Ok(Err(e)) => {
            bad_input(inner, stream, want.wrapping_add(1), ident, &e).await;
            None
        }
        Err(_) => {
            let mut e = ident.event(EventKind::LoginFailure);
            e.error = Some("handshake not completed in time".into());
            let _ = inner.audit.record(e).await;
            None
        }
    }
}

/// Checks the person's password: the answer in the handshake response, or after an auth
/// switch; the clear password (TLS only) for directory users. `seq` is the next sequence
/// id to send; on success the fast-auth marker (caching_sha2) has been sent.
async fn authenticate(
    inner: &Inner,
    stream: &mut Stream,
    buf: &mut BytesMut,
    seq: &mut u8,
    user: &str,
    nonce: &[u8; 20],
    resp: &codec::HandshakeResponse,
) -> Result<&'static str, Refusal> {
    let denied = || {
        Refusal::bad_credentials(
            1045,
            format!("Access denied for user '{user}' (using password: YES)"),
        )
    };
    let info = inner
        .store
        .login_info(user)
        .await
        .map_err(|e| Refusal::store(&e))?;
    let io_fail =
        |e: std::io::Error| denied().reason(format!("connection lost during authentication: {e}"));
    let flow = &inner.login;
    if flow.directory_checks(info.as_ref())
        && !info.as_ref().is_some_and(|i| i.disabled || i.locked)
    {
        if !stream.is_tls() {
            return Err(Refusal::new(
                1045,
                "28000",
                format!("user '{user}' signs in with a directory password, which Postern accepts only over TLS (connect with --ssl)"),
            )
            .reason("directory login without TLS"));
        }
        *seq = write_packet(stream, *seq, &codec::auth_switch(CLEAR_PASSWORD, b""))
            .await
            .map_err(io_fail)?;
        let (p, _, last) = read_packet(stream, buf, MAX_HANDSHAKE_PACKET)
            .await
            .map_err(|e| denied().reason(format!("client left during authentication: {e}")))?;
        *seq = last.wrapping_add(1);
        let pw = p.strip_suffix(&[0]).unwrap_or(&p);
        let pw = zeroize::Zeroizing::new(String::from_utf8_lossy(pw).into_owned());
        return match flow.directory_password(user, &pw).await {
            Ok(()) => Ok("ldap"),
            Err(d) => Err(Refusal::from_denial(d, user)),
        };
    }
    let (verifier, reason) = match &info {
        None => (None, "unknown user"),
        Some(i) if i.disabled => (None, "user is disabled"),
        Some(i) if i.locked => (None, "user is locked by an admin"),
        Some(_) => match inner.store.mysql_verifier(user).await.map_err(|e| Refusal::store(&e))? {
            Some(v) => (Some(v), ""),
            None => (None, "no MySQL verifier: password set before Postern spoke MySQL (set it again with `postern user passwd`)"),
        },
    };
    let known = verifier.is_some();
    let verifier = verifier.unwrap_or_else(MysqlVerifier::decoy);
    let plugin = resp.plugin.as_deref().unwrap_or(NATIVE_PASSWORD);
    let (plugin, answer) = match (plugin, resp.auth.len()) {
        (CACHING_SHA2, 32) => (CACHING_SHA2, resp.auth.clone()),
        (NATIVE_PASSWORD, 20) => (NATIVE_PASSWORD, resp.auth.clone()),
        _ => {
            // Another plugin, no answer yet (clients may wait for the server's choice), or a
            // stale one: ask (again) for an answer Postern checks, with the plugin the client
            // named when Postern speaks it.
            let switch_to = if plugin == CACHING_SHA2 {
                CACHING_SHA2
            } else {
                NATIVE_PASSWORD
            };
            let mut data = nonce.to_vec();
            data.push(0);
            *seq = write_packet(stream, *seq, &codec::auth_switch(switch_to, &data))
                .await
                .map_err(io_fail)?;
            let (p, _, last) = read_packet(stream, buf, MAX_HANDSHAKE_PACKET)
                .await
                .map_err(|e| match e {
                    ReadError::Codec(c) => {
                        Refusal::new(1043, "08S01", format!("Bad handshake: {c}"))
                    }
                    other => denied().reason(format!("client left during authentication: {other}")),
                })?;
            *seq = last.wrapping_add(1);
            if p.is_empty() {
                return Err(denied().reason("no password given"));
            }
            (switch_to, p.to_vec())
        }
    };
    use postern_auth::mysql::Sha2Match;
    let sha2 = match plugin {
        CACHING_SHA2 => verifier.match_sha2(nonce, &answer),
        _ => Sha2Match::No,
    };
    let good = match plugin {
        CACHING_SHA2 => sha2 != Sha2Match::No,
        _ => verifier.check_native(nonce, &answer),
    };
    if !good || !known {
        return Err(denied().reason(if known { "wrong password" } else { reason }));
    }
    if sha2 == Sha2Match::Standard {
        // Fast authentication succeeded; the OK follows once the upstream is open. (Drivers
        // that hash in the other order read this marker as the end of the login, so they get
        // the OK alone.)
        *seq = write_packet(stream, *seq, &[0x01, 0x03])
            .await
            .map_err(io_fail)?;
    }
    Ok(if plugin == CACHING_SHA2 {
        "caching_sha2_password"
    } else {
        "mysql_native_password"
    })
}

/// A statement text with its audit-log forms, worked out once per text: a prepared
/// statement executed again and again, or the same query sent in a loop, is masked once.
struct Logged {
    text: Arc<str>,
    masked: Arc<str>,
    /// The clear form, when it differs from `masked`.
    clear: Option<Arc<str>>,
    /// The text may carry a password: its parameter values are not recorded either.
    redacted: bool,
}

/// A statement prepared on the upstream.
struct Prepared {
    log: Arc<Logged>,
    /// Parameter count, from the server's answer to the prepare.
    params: usize,
    /// Parameter types bound by the last execution.
    types: Vec<(u8, u8)>,
    /// Parameters sent with COM_STMT_SEND_LONG_DATA since the last execution.
    long: Vec<bool>,
}

fn logged(text: &str) -> Arc<Logged> {
    logged_from(text, postern_sql::mysql_mask::mysql_log_text(text))
}

/// The audit forms of `text` from its lexed forms.
fn logged_from(text: &str, log: postern_sql::mask::LogText<'_>) -> Arc<Logged> {
    let masked: Arc<str> = log.masked.as_ref().into();
    let clear = (log.clear != log.masked).then(|| Arc::from(log.clear.as_ref()));
    Arc::new(Logged {
        text: text.into(),
        masked,
        clear,
        redacted: log.redacted,
    })
}

/// A command sent upstream (or answered by Postern), waiting for its response.
struct Pending {
    /// The response shape; `None`: Postern answers with `reply` itself.
    expect: Option<Expect>,
    reply: Option<BytesMut>,
    command: &'static str,
    text: Option<Arc<Logged>>,
    /// Parameter values of an execution, as audit text.
    params: Vec<Option<String>>,
    started: Instant,
    /// Why Postern refused it (audited as a denial).
    refused: Option<String>,
    /// The gate's ruling, when statements are checked.
    ruling: Option<Ruling>,
    /// A prepare's analysis, kept for its executions.
    analysis: Option<postern_sql::cache::Cached>,
    /// Masked results: how to follow them.
    follow: Option<Follow>,
    /// The prepared statement an execution or fetch is of.
    stmt: Option<u32>,
    /// A judged `LOAD DATA LOCAL INFILE`: the file the server may ask the client for.
    local_file: Option<Vec<u8>>,
}

enum End {
    Client,
    Upstream,
    Protocol(String),
    Revoked(String),
    Expired,
    Failed(String),
}

impl End {
    fn name(&self) -> &'static str {
        match self {
            End::Client => "client",
            End::Upstream => "upstream",
            End::Protocol(_) => "protocol error",
            End::Revoked(_) | End::Expired => "revoked",
            End::Failed(_) => "error",
        }
    }
}

fn command_name(c: u8) -> &'static str {
    match c {
        COM_QUERY => "query",
        COM_INIT_DB => "init_db",
        COM_STMT_PREPARE => "prepare",
        COM_STMT_EXECUTE => "execute",
        COM_STMT_RESET => "stmt_reset",
        COM_PING => "ping",
        COM_RESET_CONNECTION => "reset_connection",
        COM_STATISTICS => "statistics",
        COM_SET_OPTION => "set_option",
        COM_FIELD_LIST => "field_list",
        COM_STMT_FETCH => "fetch",
        COM_CHANGE_USER => "change_user",
        COM_PROCESS_KILL => "process_kill",
        _ => "other",
    }
}

/// `KILL [QUERY | CONNECTION] <id>` (the forms clients send to stop a running query).
fn parse_kill(text: &str) -> Option<(bool, u64)> {
    let mut words = text.trim().trim_end_matches(';').split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("kill") {
        return None;
    }
    let mut w = words.next()?;
    let mut query = false;
    if w.eq_ignore_ascii_case("query") {
        query = true;
        w = words.next()?;
    } else if w.eq_ignore_ascii_case("connection") {
        w = words.next()?;
    }
    let id = w.parse().ok()?;
    words.next().is_none().then_some((query, id))
}

async fn relay(inner: &Inner, est: Established, ident: &Ident, span: &tracing::Span) {
    let Established {
        mut client,
        client_buf,
        upstream,
        credential,
        cert,
        epoch: granted_at,
        policy,
        database,
        masking,
        collation,
    } = est;
    let masking_key = inner.store.masking_key(&policy.datasource);
    let masker_ds = policy.datasource.clone();
    let mut fingerprint = policy.masking_fingerprint();
    let mut gate = Gate::new(policy, granted_at, &database, ident.ip, collation);
    gate.set_masking(masking);
    let masker = Masker::new(masking_key, &masker_ds);
    // A masked packet's new payload, reused from row to row.
    let mut masked = BytesMut::new();
    // Rows of open cursors (COM_STMT_FETCH), by statement: the columns of their execution.
    let mut cursors: HashMap<u32, Follow> = HashMap::new();
    let deprecate_eof = upstream.capabilities & CLIENT_DEPRECATE_EOF != 0;
    let up_addr = up_addr(&upstream).ok();
    let mut up = upstream.stream;
    let mut ubuf = upstream.leftover;
    let mut cbuf = client_buf;
    let started = Instant::now();
    let _ = inner
        .audit
        .record(ident.event(EventKind::SessionOpen))
        .await;
    tracing::info!(parent: span, "session open");
    let upstream_caps = upstream.capabilities;
    let mut tracker = Tracker::new(deprecate_eof);
    // The client is sending the file of a LOCAL INFILE request.
    let mut sending_file = false;
    tracker.inspect(gate.masking().is_some());
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut prepared: HashMap<u32, Prepared> = HashMap::new();
    let mut last_prepared: Option<Arc<Logged>> = None;
    let mut last_prepared_id: Option<u32> = None;
    let mut last_query: Option<Arc<Logged>> = None;
    let mut statements = 0u64;
    let mut to_client = BytesMut::with_capacity(16 * 1024);
    let mut to_up = BytesMut::with_capacity(16 * 1024);
    let epoch = inner.store.policy_epoch();
    // From the counter read before the grant check: a change committed since is seen at the
    // first tick.
    let mut seen = granted_at;
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + ACCESS_CHECK, ACCESS_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let user = ident.user.clone().unwrap_or_else(|| "".into());

    let end = 'relay: loop {
        tokio::select! {
            r = client.read_buf(&mut cbuf) => {
                match r {
                    Ok(0) | Err(_) => break End::Client,
                    Ok(_) => {}
                }
                // Every complete command: audit bookkeeping, then upstream (or answered here).
                loop {
                    let (total, _, first_seq, _) = match codec::complete_packet(&cbuf, inner.cfg.max_packet) {
                        Ok(Some(x)) => x,
                        Ok(None) => break,
                        Err(CodecError::TooLong(n, max)) => {
                            break 'relay End::Protocol(format!("Got a packet bigger than 'max_allowed_packet' bytes ({n} > {max})"));
                        }
                        Err(e) => break 'relay End::Protocol(e.to_string()),
                    };
                    if sending_file {
                        // A LOCAL INFILE's data: packets as they come, up to an empty one.
                        let wire = cbuf.split_to(total);
                        to_up.extend_from_slice(&wire);
                        if total == 4 {
                            sending_file = false;
                            tracker.local_infile_sent();
                        }
                        continue;
                    }
                    if first_seq != 0 {
                        break 'relay End::Protocol(format!("Got packets out of order (a command with sequence id {first_seq})"));
                    }
                    let wire = cbuf.split_to(total);
                    // One physical packet (nearly always): read it in place.
                    let payload: std::borrow::Cow<'_, [u8]> = if total < codec::MAX_PAYLOAD + 4 {
                        std::borrow::Cow::Borrowed(&wire[4..])
                    } else {
                        std::borrow::Cow::Owned(codec::join_payload(&wire).to_vec())
                    };
                    let Some(&cmd) = payload.first() else {
                        break 'relay End::Protocol("empty command packet".into());
                    };
                    let now = Instant::now();
                    let mut p = Pending { expect: None, reply: None, command: command_name(cmd), text: None, params: Vec::new(), started: now, refused: None, ruling: None, analysis: None, follow: None, stmt: None, local_file: None };
                    let mut forward = true;
                    let refuse = |p: &mut Pending, code: u16, state: &str, msg: String| {
                        let mut out = BytesMut::new();
                        codec::put_packet(&mut out, 1, &codec::err(code, state, &msg));
                        p.reply = Some(out);
                        p.refused = Some(msg);
                    };
                    // Refused by the gate: the client hears the message, the audit the reason.
                    let refuse_by = |p: &mut Pending, r: Ruling| {
                        let mut out = BytesMut::new();
                        let msg = r.message.clone().unwrap_or_default();
                        codec::put_packet(&mut out, 1, &codec::err(gate::ER_REFUSED, gate::SQLSTATE_REFUSED, &msg));
                        p.reply = Some(out);
                        p.expect = None;
                        p.refused = Some(r.reason.clone().unwrap_or(msg));
                        p.ruling = Some(r);
                    };
                    // The store changed: the policy is loaded again before anything is judged.
                    if matches!(cmd, COM_QUERY | COM_INIT_DB | COM_STMT_PREPARE | COM_STMT_EXECUTE)
                        && gate.stale(epoch.load(std::sync::atomic::Ordering::Acquire))
                    {
                        match reload(inner, ident, &credential, cert.as_ref()).await {
                            Ok((policy, at)) => {
                                let masks = policy.mode != postern_policy::Mode::Passthrough && policy.masking_rules().next().is_some();
                                let fp = policy.masking_fingerprint();
                                if !masks {
                                    gate.set_masking(None);
                                } else if fp != fingerprint || gate.masking().is_none() {
                                    // Until the catalog is read again, everything is masked.
                                    gate.set_masking(Some(Arc::new(postern_policy::SessionMasking::blind())));
                                    gate.mark_catalog_stale();
                                }
                                fingerprint = fp;
                                tracker.inspect(gate.masking().is_some());
                                gate.set_policy(policy, at);
                            }
                            Err(why) => break 'relay End::Revoked(why),
                        }
                    }
                    // Other sessions' schema changes: the catalog is read again once it is old,
                    // when nothing is in flight.
                    if pending.is_empty() && !tracker.busy() && gate.catalog_due(MASKING_CATALOG_MAX_AGE) {
                        gate.mark_catalog_stale();
                    }
                    if gate.catalog_stale() {
                        if pending.is_empty() && !tracker.busy() {
                            gate.take_catalog_stale();
                            let m = match reload_masking(inner, &gate, &mut up, &mut ubuf, upstream_caps, &database).await {
                                Ok(m) => m,
                                Err(why) => break 'relay End::Failed(why),
                            };
                            gate.set_masking(m);
                            tracker.inspect(gate.masking().is_some());
                        } else if !gate.masking().is_some_and(|m| m.is_blind()) {
                            // Commands are in flight: mask everything until it can be read.
                            gate.set_masking(Some(Arc::new(postern_policy::SessionMasking::blind())));
                        }
                    }
                    match cmd {
                        COM_QUIT => {
                            let _ = up.write_all(&wire).await;
                            break 'relay End::Client;
                        }
                        COM_QUERY => {
                            let sent = String::from_utf8_lossy(&payload[1..]);
                            let kill = parse_kill(&sent);
                            let (ruling, analysed) = if kill.is_some() {
                                (None, None)
                            } else if let Some(r) = gate.unreadable(&payload[1..]) {
                                (Some(r), None)
                            } else {
                                let (r, a) = gate.query(&sent);
                                (Some(r), a.map(|(_, log)| logged_from(&sent, log)))
                            };
                            let text = match (analysed, &last_query) {
                                (Some(l), _) => l,
                                (None, Some(l)) if *l.text == *sent => l.clone(),
                                _ => {
                                    let l = logged(&sent);
                                    last_query = Some(l.clone());
                                    l
                                }
                            };
                            p.expect = Some(Expect::Results);
                            if let Some(r) = ruling {
                                if r.allowed && !gate.passthrough() {
                                    p.local_file = postern_sql::mysql::local_infile(&sent).map(String::into_bytes);
                                }
                                if r.allowed {
                                    if let (Some(m), Some(plans)) = (gate.masking(), &r.plans) {
                                        p.follow = Some(Follow::new(m.clone(), plans.clone(), false));
                                    }
                                    p.ruling = Some(r);
                                } else {
                                    forward = false;
                                    refuse_by(&mut p, r);
                                }
                            }
                            if let Some((query, id)) = kill {
                                forward = false;
                                match kill_target(inner, &user, id, up_addr) {
                                    Ok(thread) => {
                                        let sql = format!("KILL {}{thread}", if query { "QUERY " } else { "CONNECTION " });
                                        codec::put_packet(&mut to_up, 0, &[&[COM_QUERY][..], sql.as_bytes()].concat());
                                    }
                                    Err(msg) => refuse(&mut p, 1094, "HY000", msg),
                                }
                                if p.reply.is_some() {
                                    p.expect = None;
                                }
                            }
                            p.text = Some(text);
                        }
                        COM_INIT_DB => {
                            let db = String::from_utf8_lossy(&payload[1..]).into_owned();
                            p.expect = Some(Expect::Simple);
                            p.text = Some(logged(&format!("USE `{}`", db.replace('`', "``"))));
                            let r = gate.init_db(&db);
                            if r.allowed {
                                p.ruling = Some(r);
                            } else {
                                forward = false;
                                refuse_by(&mut p, r);
                            }
                        }
                        COM_STMT_PREPARE => {
                            let sent = String::from_utf8_lossy(&payload[1..]);
                            let (r, a) = match gate.unreadable(&payload[1..]) {
                                Some(r) => (r, None),
                                None => gate.query(&sent),
                            };
                            let text = match a {
                                Some((analysis, log)) => {
                                    p.analysis = Some(analysis);
                                    logged_from(&sent, log)
                                }
                                None => logged(&sent),
                            };
                            p.expect = Some(Expect::Prepare);
                            p.text = Some(text.clone());
                            if r.allowed {
                                last_prepared = Some(text);
                                p.ruling = Some(r);
                            } else {
                                forward = false;
                                refuse_by(&mut p, r);
                            }
                        }
                        COM_STMT_EXECUTE => {
                            let id = payload.get(1..5).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                            // "The statement just prepared" (pipelined prepare + execute): a
                            // prepare still in the queue, judged and sent, is that statement.
                            let just_prepared = id == Some(u32::MAX)
                                && pending.iter().rev().find(|q| q.command == "prepare").is_some_and(|q| q.refused.is_none());
                            let id = match id {
                                Some(u32::MAX) => {
                                    p.text = last_prepared.clone();
                                    last_prepared_id
                                }
                                other => other,
                            };
                            p.stmt = id.filter(|i| *i != u32::MAX);
                            if let Some(m) = gate.masking() {
                                // The statement just prepared: its plans are the queued prepare's.
                                let plans = if just_prepared {
                                    pending.iter().rev().find(|q| q.command == "prepare").and_then(|q| q.ruling.as_ref()).and_then(|r| r.plans.clone())
                                } else {
                                    None
                                };
                                let plans = plans.unwrap_or_else(|| vec![crate::masker::StatementPlan::opaque()]);
                                p.follow = Some(Follow::new(m.clone(), plans, true));
                            }
                            let r = if just_prepared {
                                None
                            } else {
                                Some(match id {
                                    Some(id) => gate.execute(id),
                                    None => gate.execute(u32::MAX),
                                })
                            };
                            if let Some(st) = id.and_then(|id| prepared.get_mut(&id)) {
                                p.text = Some(st.log.clone());
                                p.params = match codec::execute_params(&payload, st.params, &mut st.types, &st.long) {
                                    Ok(v) if st.log.redacted => v.iter().map(|_| Some("?".to_string())).collect(),
                                    Ok(v) => v,
                                    Err(_) => vec![Some("<unreadable parameters>".into())],
                                };
                                st.long.iter_mut().for_each(|l| *l = false);
                            }
                            p.expect = Some(Expect::Results);
                            if let Some(r) = r {
                                if r.allowed {
                                    if let (Some(m), Some(plans)) = (gate.masking(), &r.plans) {
                                        p.follow = Some(Follow::new(m.clone(), plans.clone(), true));
                                    }
                                    p.ruling = Some(r);
                                } else {
                                    forward = false;
                                    refuse_by(&mut p, r);
                                }
                            }
                        }
                        COM_STMT_CLOSE => {
                            if let Some(b) = payload.get(1..5) {
                                let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                                prepared.remove(&id);
                                cursors.remove(&id);
                                gate.close(id);
                            }
                        }
                        COM_STMT_SEND_LONG_DATA => {
                            if let (Some(b), Some(n)) = (payload.get(1..5), payload.get(5..7)) {
                                let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                                let n = usize::from(u16::from_le_bytes([n[0], n[1]]));
                                if let Some(slot) = prepared.get_mut(&id).and_then(|st| st.long.get_mut(n)) {
                                    *slot = true;
                                }
                            }
                        }
                        COM_STMT_RESET => {
                            // Long data sent so far is dropped by the server too.
                            if let Some(b) = payload.get(1..5) {
                                if let Some(st) = prepared.get_mut(&u32::from_le_bytes([b[0], b[1], b[2], b[3]])) {
                                    st.long.iter_mut().for_each(|l| *l = false);
                                }
                            }
                            p.expect = Some(Expect::Simple);
                        }
                        COM_PING => p.expect = Some(Expect::Simple),
                        COM_RESET_CONNECTION => {
                            prepared.clear();
                            cursors.clear();
                            gate.reset();
                            p.expect = Some(Expect::Simple);
                        }
                        COM_STATISTICS | COM_SET_OPTION => p.expect = Some(Expect::OnePacket),
                        COM_FIELD_LIST => p.expect = Some(Expect::UntilEof),
                        COM_STMT_FETCH => {
                            p.expect = Some(Expect::Rows);
                            let id = payload.get(1..5).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                            if gate.masking().is_some() {
                                match id.and_then(|i| cursors.get(&i)) {
                                    Some(f) => p.follow = Some(f.for_fetch()),
                                    None => {
                                        forward = false;
                                        refuse(&mut p, gate::ER_REFUSED, gate::SQLSTATE_REFUSED, "Postern refused this fetch: it does not know the columns of that cursor, so it cannot mask its rows".into());
                                        p.expect = None;
                                    }
                                }
                            }
                        }
                        COM_CHANGE_USER => {
                            forward = false;
                            refuse(&mut p, 1045, "28000", "Postern does not change users within a session (COM_CHANGE_USER): connect again as the other user".into());
                        }
                        COM_PROCESS_KILL => {
                            forward = false;
                            refuse(&mut p, 1047, "08S01", "use KILL QUERY <id> or KILL <id> instead of COM_PROCESS_KILL".into());
                        }
                        _ => {
                            forward = false;
                            refuse(&mut p, 1047, "08S01", format!("Unknown command {cmd:#04x} (Postern relays client commands only)"));
                        }
                    }
                    if forward {
                        to_up.extend_from_slice(&wire);
                    }
                    if p.expect.is_some() || p.reply.is_some() {
                        pending.push_back(p);
                    }
                }
                if !to_up.is_empty() {
                    if up.write_all(&to_up).await.is_err() || up.flush().await.is_err() {
                        break End::Upstream;
                    }
                    to_up.clear();
                }
            }
            r = up.read_buf(&mut ubuf) => {
                match r {
                    Ok(0) | Err(_) => {
                        // What the server said before closing (an ERR, say) still reaches the client.
                        if !ubuf.is_empty() {
                            to_client.extend_from_slice(&ubuf);
                            ubuf.clear();
                        }
                        break End::Upstream;
                    }
                    Ok(_) => {}
                }
                let mut at = 0;
                loop {
                    if !tracker.busy() {
                        match pending.front() {
                            Some(Pending { expect: Some(e), local_file, .. }) => {
                                tracker.expect(*e);
                                if let Some(f) = local_file {
                                    tracker.allow_local_infile(f);
                                }
                            }
                            _ => break,
                        }
                    }
                    let fed = match tracker.feed(&ubuf[at..]) {
                        Ok(f) => f,
                        Err(e) => break 'relay End::Failed(format!("the server sent a response Postern cannot follow: {e}")),
                    };
                    let end = at + fed.consumed;
                    if fed.local_infile {
                        sending_file = true;
                    }
                    // Masked rows (and hidden error texts) replace the server's packets.
                    let mut copied = at;
                    if let Some(f) = pending.front_mut().and_then(|p| p.follow.as_mut()) {
                        for ev in tracker.take_events() {
                            let start = at + ev.at;
                            let stop = start + 4 + ev.len;
                            masked.clear();
                            match masker.packet(f, ev.kind, &ubuf[start + 4..stop], &mut masked) {
                                Ok(false) => {}
                                Ok(true) => {
                                    to_client.extend_from_slice(&ubuf[copied..start]);
                                    codec::put_packet(&mut to_client, ubuf[start + 3], &masked);
                                    copied = stop;
                                }
                                Err(e) => break 'relay End::Failed(format!("Postern could not mask a row: {e}")),
                            }
                        }
                    }
                    to_client.extend_from_slice(&ubuf[copied..end]);
                    at = end;
                    let Some(outcome) = fed.done else { break };
                    if let Some(mut p) = pending.pop_front() {
                        if let (Some(id), Some(t)) = (outcome.statement_id, &p.text) {
                            if outcome.error.is_none() {
                                let n = usize::from(outcome.params);
                                prepared.insert(id, Prepared { log: t.clone(), params: n, types: Vec::new(), long: vec![false; n] });
                                last_prepared_id = Some(id);
                                if let Some(a) = p.analysis.take() {
                                    let plans = p.ruling.as_ref().and_then(|r| r.plans.clone());
                                    gate.prepared(id, t.text.clone(), a, plans);
                                }
                            }
                        }
                        if outcome.error.is_none() {
                            if let Some(db) = p.ruling.as_ref().and_then(|r| r.use_database.as_deref()) {
                                gate.confirm_database(db);
                            }
                        }
                        // An execution that opened a cursor: its rows come with COM_STMT_FETCH.
                        if let (Some(id), Some(f)) = (p.stmt, p.follow.take()) {
                            if outcome.status & SERVER_STATUS_CURSOR_EXISTS != 0 && p.command == "execute" {
                                cursors.insert(id, f);
                            }
                        }
                        statements += 1;
                        if finish(inner, ident, p, Some(outcome)).await.is_err() {
                            break 'relay End::Failed("audit log closed".into());
                        }
                    }
                }
                if tracker.busy() || !pending.is_empty() {
                    ubuf.advance(at);
                } else {
                    // Bytes nobody asked for (the server's goodbye): pass them on.
                    to_client.extend_from_slice(&ubuf[at..]);
                    ubuf.clear();
                }
            }
            _ = ticks.tick() => {
                if let Some(c) = &cert {
                    if time::OffsetDateTime::now_utc() >= c.not_after {
                        break End::Expired;
                    }
                }
                let now = epoch.load(std::sync::atomic::Ordering::Acquire);
                if now != seen {
                    seen = now;
                    if let (Some(u), Some(alias)) = (ident.user.as_deref(), ident.datasource.as_deref()) {
                        if let Err(why) = inner.login.session_still_allowed(u, alias, &credential, cert.as_ref()).await {
                            break End::Revoked(why);
                        }
                    }
                }
                continue;
            }
        }
        // Answers Postern gives itself, in their place in the order of responses.
        while pending.front().is_some_and(|p| p.expect.is_none()) && !tracker.busy() {
            if let Some(mut p) = pending.pop_front() {
                if let Some(r) = p.reply.take() {
                    to_client.extend_from_slice(&r);
                }
                inner.metrics.refusals.inc();
                statements += 1;
                if finish(inner, ident, p, None).await.is_err() {
                    break 'relay End::Failed("audit log closed".into());
                }
            }
        }
        if !to_client.is_empty() {
            if client.write_all(&to_client).await.is_err() || client.flush().await.is_err() {
                break End::Client;
            }
            to_client.clear();
        }
    };
    if !to_client.is_empty() {
        let _ = client.write_all(&to_client).await;
    }
    for p in pending.drain(..) {
        let _ = finish(inner, ident, p, None).await;
    }
    let goodbye = match &end {
        End::Protocol(m) => Some((1156, "08S01", m.clone())),
        End::Revoked(why) => Some((1927, "70100", format!("Postern ended this session: {why}; ask an admin for access, then reconnect"))),
        End::Expired => Some((1927, "70100", "Postern ended this session: your Postern certificate expired; run `postern login`, then reconnect".into())),
        End::Failed(why) => Some((1105, "HY000", format!("Postern ended this session: {why}"))),
        _ => None,
    };
    if let Some((code, state, msg)) = goodbye {
        let _ = write_packet(&mut client, 0, &codec::err(code, state, &msg)).await;
        postern_net::linger_close(&mut client, std::time::Duration::from_millis(500)).await;
    }
    let mut e = ident.event(EventKind::SessionClose);
    e.duration_us = Some(started.elapsed().as_micros() as u64);
    e.detail = Some(serde_json::json!({ "statements": statements, "ended_by": end.name() }));
    match &end {
        End::Protocol(m) | End::Revoked(m) | End::Failed(m) => e.error = Some(m.clone()),
        End::Expired => e.error = Some("certificate expired".into()),
        _ => {}
    }
    let _ = inner.audit.record(e).await;
    let _ = up.shutdown().await;
    tracing::info!(parent: span, statements, ended_by = end.name(), "session closed");
}

/// Which upstream thread a `KILL <id>` from `user` means: only their own sessions on the same
/// server. `id` is the connection id Postern gave the client (what `mysql` sends on Ctrl-C),
/// or the server's own thread id of one of the user's sessions (what `CONNECTION_ID()` said).
fn kill_target(
    inner: &Inner,
    user: &str,
    id: u64,
    here: Option<SocketAddr>,
) -> Result<u32, String> {
    let unknown = || format!("Unknown thread id: {id}");
    let id = u32::try_from(id).map_err(|_| unknown())?;
    let live = inner.live.lock().map_err(|_| unknown())?;
    let found = live.get(&id).or_else(|| {
        live.values()
            .find(|l| l.thread_id == id && &*l.user == user && Some(l.upstream) == here)
            .or_else(|| {
                live.values()
                    .find(|l| l.thread_id == id && Some(l.upstream) == here)
            })
    });
    let Some(l) = found else {
        return Err(unknown());
    };
    if &*l.user != user {
        return Err(format!("You are not owner of thread {id}"));
    }
    if Some(l.upstream) != here {
        return Err(format!(
            "thread {id} runs on another datasource; connect to that one to kill it"
        ));
    }
    Ok(l.thread_id)
}

/// Audits a finished (or cut off) command.
async fn finish(
    inner: &Inner,
    ident: &Ident,
    p: Pending,
    outcome: Option<Outcome>,
) -> Result<(), postern_audit::AuditClosed> {
    inner.metrics.statements.inc();
    let mut e = ident.event(EventKind::Statement);
    if let Some(t) = &p.text {
        e.statement = Some(t.masked.clone());
        e.statement_clear = t.clear.clone();
    }
    e.parameters = p.params;
    e.command_tag = Some(p.command.to_string());
    e.duration_us = Some(p.started.elapsed().as_micros() as u64);
    if let Some(r) = &p.ruling {
        e.decision = Some(if r.allowed {
            Decision::Allow
        } else {
            Decision::Deny
        });
        e.rule = r.rule.clone();
        e.reason = r.reason.clone();
        e.alert = r.alert;
        if r.alert {
            inner.metrics.alerts.inc();
            // Outside the session's span (see `run`): the session and user named here.
            tracing::warn!(session = %ident.session, user = %ident.user.as_deref().unwrap_or(""), rule = %r.rule.as_deref().unwrap_or(""), "statement let through by an allow-and-alert firewall rule");
        }
    }
    if let Some(why) = p.refused {
        e.decision = Some(Decision::Deny);
        e.reason = Some(why);
        return inner.audit.record_durable(e).await;
    }
    match outcome {
        Some(o) => {
            e.rows = Some(if o.rows > 0 { o.rows } else { o.affected });
            if let Some(err) = o.error {
                e.sqlstate = Some(err.sqlstate);
                e.error = Some(format!("{}: {}", err.code, err.message));
            }
        }
        None => e.error = Some("the session ended before the response".into()),
    }
    inner.audit.record(e).await
}

/// After the store changed: whether the session may go on, and the user's policy now.
async fn reload(
    inner: &Inner,
    ident: &Ident,
    credential: &str,
    cert: Option<&postern_login::PresentedCert>,
) -> Result<(Arc<postern_policy::Policy>, u64), String> {
    let (Some(user), Some(alias)) = (ident.user.as_deref(), ident.datasource.as_deref()) else {
        return Err("the session has no user".into());
    };
    let (policy, epoch) = inner
        .login
        .reload_policy(user, alias, credential, cert)
        .await?;
    Ok((Arc::new(policy), epoch))
}

/// How old the masking catalog may grow before it is read again (tables and views created
/// by other sessions meanwhile are masked by the rules' patterns until then).
const MASKING_CATALOG_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Cursor open after an execution (rows follow with COM_STMT_FETCH).
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x40;

/// The masking of a session under `policy` from the upstream's catalog (`None` when no
/// rule covers anything there). `up`, `buf` and `caps`: the upstream connection, nothing in
/// flight.
async fn load_masking(
    inner: &Inner,
    policy: &postern_policy::Policy,
    database: &str,
    up: &mut Stream,
    buf: &mut BytesMut,
    caps: u32,
) -> Result<Option<Arc<postern_policy::SessionMasking>>, upstream::UpstreamError> {
    let catalog =
        upstream::mask_catalog(up, buf, caps, database, inner.cfg.upstream_timeout).await?;
    Ok(postern_policy::SessionMasking::new(
        &policy.masking,
        &policy.revealed,
        &policy.datasource,
        database,
        &catalog,
    )
    .map(Arc::new))
}

/// The masking catalog read again mid-session (nothing in flight), under the gate's policy.
async fn reload_masking(
    inner: &Inner,
    gate: &Gate,
    up: &mut Stream,
    buf: &mut BytesMut,
    caps: u32,
    database: &str,
) -> Result<Option<Arc<postern_policy::SessionMasking>>, String> {
    let policy = gate.policy().clone();
    if policy.mode == postern_policy::Mode::Passthrough || policy.masking_rules().next().is_none() {
        return Ok(None);
    }
    load_masking(inner, &policy, database, up, buf, caps)
        .await
        .map_err(|e| format!("Postern could not read what the masking rules cover: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_statements() {
        assert_eq!(parse_kill("KILL QUERY 42"), Some((true, 42)));
        assert_eq!(parse_kill("kill 7;"), Some((false, 7)));
        assert_eq!(parse_kill("KILL CONNECTION 9"), Some((false, 9)));
        assert_eq!(parse_kill("KILL QUERY 4 5"), None);
        assert_eq!(parse_kill("SELECT 1"), None);
        assert_eq!(parse_kill("KILL USER bob"), None);
    }
}
