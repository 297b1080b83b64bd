//! One client session: TLS negotiation, authentication of the person, the grant check,
//! the upstream login with the stored credential, then the audited relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use postern_audit::{AuditEvent, Decision, EventKind, Protocol};
use postern_auth::{ScramServer, ScramVerifier};
use postern_core::{split_login, DatasourceType};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::codec::{
    self, parse_first_packet, parse_sasl_initial, FirstPacket, Severity, MAX_AUTH_MESSAGE,
};
use crate::frame_io::{read_first_packet, read_frame, ReadError};
use crate::gate::Gate;
use crate::proxy::Inner;
use crate::relay::{Relay, RelayEnd, Step};
use crate::stream::PgStream;
use crate::upstream::{self, UpstreamTarget};

/// Identity fields shared by every audit event of a session.
type Ident = postern_audit::SessionIdent;

/// The audit-log forms of statement texts, remembering the last one: a prepared statement
/// executed again and again is masked once.
#[derive(Default)]
struct LogTexts {
    /// (text as sent, standard_conforming_strings, masked and clear forms).
    last: Option<(Arc<str>, bool, LogPair)>,
}

/// A statement's masked form and, when it differs, its clear form.
type LogPair = (Arc<str>, Option<Arc<str>>);

impl LogTexts {
    /// (masked, clear when it differs).
    fn of(&mut self, text: &Arc<str>, standard_conforming_strings: bool) -> LogPair {
        if let Some((k, scs, pair)) = &self.last {
            if Arc::ptr_eq(k, text) && *scs == standard_conforming_strings {
                return pair.clone();
            }
        }
        let lex = postern_sql::pg::LexSettings {
            standard_conforming_strings,
        };
        let lt = postern_sql::mask::log_text(text, lex);
        let masked: Arc<str> = if lt.masked == **text {
            text.clone()
        } else {
            (*lt.masked).into()
        };
        let clear: Option<Arc<str>> = if lt.clear == lt.masked {
            None
        } else if lt.clear == **text {
            Some(text.clone())
        } else {
            Some((*lt.clear).into())
        };
        self.last = Some((
            text.clone(),
            standard_conforming_strings,
            (masked.clone(), clear.clone()),
        ));
        (masked, clear)
    }
}

/// A refusal to send to the client (and to audit).
struct Refusal {
    sqlstate: &'static str,
    /// What the client is told.
    message: String,
    /// What the audit log records, when it differs (e.g. the real reason of a login failure).
    audit_reason: Option<String>,
    hint: Option<std::borrow::Cow<'static, str>>,
    /// Whether this is a failed login (as opposed to a session that could not start).
    login: bool,
}

impl Refusal {
    fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Self {
            sqlstate,
            message: message.into(),
            audit_reason: None,
            hint: None,
            login: true,
        }
    }
    fn hint(mut self, h: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.hint = Some(h.into());
        self
    }

    /// A refusal of the shared login flow, in PostgreSQL's terms.
    fn from_denial(d: postern_login::Denial) -> Self {
        let sqlstate = match d.kind {
            postern_login::DenialKind::Credentials => "28P01",
            postern_login::DenialKind::Locked
            | postern_login::DenialKind::SecondFactor
            | postern_login::DenialKind::Certificate => "28000",
            postern_login::DenialKind::Internal => "58000",
        };
        let mut r = Refusal::new(sqlstate, d.message).reason(d.reason);
        r.hint = d.hint.map(Into::into);
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
}

/// Tells a psql (or any libpq) client waiting for its login approval what to do. The
/// notice can only come after AuthenticationOk (libpq takes nothing else while it waits for
/// authentication), so that is sent first; the session still relays nothing until the login
/// is approved.
struct ApprovalPrompt<'s> {
    stream: &'s mut PgStream,
    /// Authentication messages not sent yet (SASLFinal).
    out: &'s mut BytesMut,
    /// The client's input buffer: anything it sends while waiting is kept for the relay.
    input: &'s mut BytesMut,
    authenticated: bool,
}

/// Most a client may send while its login waits for approval (a well-behaved one sends
/// nothing until ReadyForQuery).
const MAX_WAITING_INPUT: usize = 64 * 1024;

impl postern_login::Prompt for ApprovalPrompt<'_> {
    async fn tell(&mut self, text: &str) -> std::io::Result<()> {
        if !self.authenticated {
            codec::authentication(self.out, 0, &[]);
            self.authenticated = true;
        }
        codec::notice_response(self.out, text);
        self.stream.write_all(self.out).await?;
        self.stream.flush().await?;
        self.out.clear();
        Ok(())
    }

    async fn gone(&mut self) {
        use tokio::io::AsyncReadExt;
        loop {
            match self.stream.read_buf(self.input).await {
                Ok(0) | Err(_) => return,
                Ok(_) if self.input.len() > MAX_WAITING_INPUT => return,
                Ok(_) => {}
            }
        }
    }
}

/// What the handshake produced when the client is ready to relay.
struct Established<'a> {
    client: PgStream,
    client_buf: BytesMut,
    upstream: upstream::UpstreamSession,
    /// The statement gate.
    gate: Option<Gate>,
    /// Result masking, when the session masks anything.
    masker: Option<crate::masker::Masker>,
    /// The credential the upstream session was opened with.
    credential: String,
    /// The client certificate the person logged in with: the session ends when it expires
    /// or is revoked.
    cert: Option<postern_login::PresentedCert>,
    /// Keeps the cancel key routable exactly as long as the session lives.
    _cancel: Option<crate::cancel::CancelGuard<'a>>,
}

/// Runs a session to its end. Never panics on client input; every outcome is audited.
pub(crate) async fn run(inner: Arc<Inner>, tcp: TcpStream, peer: SocketAddr, admitted: bool) {
    let session: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    let span = tracing::info_span!("pg_session", session = %session, client = %peer, user = tracing::field::Empty, datasource = tracing::field::Empty);
    let mut ident = Ident::new(Protocol::Postgres, session, peer);
    let established =
        async {
            let mut stream = PgStream::Plain(tcp);
            if !admitted {
                let _ = refuse(
                    &mut stream,
                    "53300",
                    "too many connections to Postern; try again later",
                    None,
                )
                .await;
                return None;
            }
            let timeout = inner.cfg.handshake_timeout;
            let deadline = tokio::time::Instant::now() + timeout;
            // A login waiting for its approval may take longer than the handshake itself.
            let outer = if inner.login.config().require_2fa {
                timeout + inner.login.config().approval_timeout
            } else {
                timeout
            };
            let established =
                match tokio::time::timeout(outer, handshake(&inner, stream, &mut ident, deadline))
                    .await
                {
                    Ok(Some(e)) => e,
                    Ok(None) => return None,
                    Err(_) => {
                        tracing::info!("client did not complete the handshake in time");
                        let mut e = ident.event(EventKind::LoginFailure);
                        e.error = Some(format!("handshake not completed within {timeout:?}"));
                        let _ = inner.audit.record(e).await;
                        return None;
                    }
                };
            Some(established)
        }
        .instrument(span.clone())
        .await;
    // The relay runs outside the span (its logs name it as parent): entering and leaving
    // a span on every poll was a measurable part of the per-statement cost.
    if let Some(established) = established {
        relay(&inner, established, &ident, &span).await;
    }
}

async fn refuse(
    stream: &mut PgStream,
    sqlstate: &str,
    message: &str,
    hint: Option<&str>,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(128 + message.len());
    codec::error_response(&mut out, Severity::Fatal, sqlstate, message, hint);
    stream.write_all(&out).await?;
    stream.flush().await
}

/// Audits a refusal durably, then tells the client.
async fn deny(inner: &Inner, stream: &mut PgStream, ident: &Ident, r: Refusal) {
    let error = r.audit_reason.clone().unwrap_or_else(|| r.message.clone());
    let e = ident.refusal(r.login, error, r.sqlstate);
    if r.login {
        inner.metrics.login_failures.inc();
    }
    if inner.audit.record_durable(e).await.is_err() {
        let _ = refuse(
            stream,
            "58000",
            "Postern cannot write its audit log; nothing was done",
            None,
        )
        .await;
        return;
    }
    tracing::info!(sqlstate = r.sqlstate, reason = %r.audit_reason.as_deref().unwrap_or(&r.message), "session refused");
    let _ = refuse(stream, r.sqlstate, &r.message, r.hint.as_deref()).await;
}

async fn handshake<'a>(
    inner: &'a Inner,
    stream: PgStream,
    ident: &mut Ident,
    deadline: tokio::time::Instant,
) -> Option<Established<'a>> {
    let mut stream = stream;
    let mut buf = BytesMut::with_capacity(1024);
    // Up to two negotiation requests (SSL, GSS) may precede the startup packet.
    let mut params = None;
    for _ in 0..3 {
        let pkt = match tokio::time::timeout_at(deadline, read_first_packet(&mut stream, &mut buf))
            .await
        {
            Ok(Ok(p)) => p,
            Err(_) => {
                let mut e = ident.event(EventKind::LoginFailure);
                e.error = Some("startup not completed in time".into());
                let _ = inner.audit.record(e).await;
                return None;
            }
            Ok(Err(e)) => {
                bad_input(inner, &mut stream, ident, &e).await;
                return None;
            }
        };
        match parse_first_packet(&pkt) {
            Ok(FirstPacket::SslRequest) => {
                if !buf.is_empty() {
                    // Bytes sent after SSLRequest but before our answer would be read as if
                    // they came through TLS (CVE-2021-23214): refuse.
                    bad_input(
                        inner,
                        &mut stream,
                        ident,
                        &ReadError::Codec(codec::CodecError::Malformed(
                            "SSLRequest (data after request)",
                        )),
                    )
                    .await;
                    return None;
                }
                stream = match (stream, &inner.tls) {
                    (PgStream::Plain(mut tcp), Some(acceptor)) => {
                        if tcp.write_all(b"S").await.is_err() {
                            return None;
                        }
                        match acceptor.accept(tcp).await {
                            Ok(tls) => PgStream::ServerTls(Box::new(tls)),
                            Err(e) => {
                                let mut ev = ident.event(EventKind::LoginFailure);
                                ev.error = Some(format!("TLS handshake failed: {e}"));
                                let _ = inner.audit.record(ev).await;
                                return None;
                            }
                        }
                    }
                    (mut s, _) => {
                        if s.write_all(b"N").await.is_err() {
                            return None;
                        }
                        s
                    }
                };
            }
            Ok(FirstPacket::GssEncRequest) => {
                if stream.write_all(b"N").await.is_err() {
                    return None;
                }
            }
            Ok(FirstPacket::Cancel { pid, secret }) => {
                let sent = inner.cancel.cancel(pid, secret).await;
                tracing::debug!(forwarded = sent, "cancel request");
                return None;
            }
            Ok(FirstPacket::Startup { version, params: p }) => {
                params = Some((version, p));
                break;
            }
            Err(e) => {
                bad_input(inner, &mut stream, ident, &ReadError::Codec(e)).await;
                return None;
            }
        }
    }
    let Some((version, params)) = params else {
        bad_input(
            inner,
            &mut stream,
            ident,
            &ReadError::Codec(codec::CodecError::Malformed("startup (too many requests)")),
        )
        .await;
        return None;
    };
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };

    // Newer protocol minors and _pq_ options: answer as PostgreSQL does, with what we speak.
    let unknown: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    let mut out = BytesMut::with_capacity(512);
    if version != codec::PROTOCOL_3_0 || !unknown.is_empty() {
        codec::negotiate_protocol_version(&mut out, 0, &unknown);
    }

    let user_field = param("user").unwrap_or("");
    if let Some(name) = user_field.split('@').next().filter(|s| !s.is_empty()) {
        // A TOTP code given with the name (`alice:123456`) stays out of logs and audit.
        let name = postern_login::split_code(name).0;
        ident.user = Some(name.into());
        tracing::Span::current().record("user", name);
    }
    if inner.cfg.require_tls && !stream.is_tls() {
        deny(
            inner,
            &mut stream,
            ident,
            Refusal::new("28000", "Postern requires TLS on this port")
                .hint("connect with sslmode=require (or verify-full with Postern's CA)"),
        )
        .await;
        return None;
    }
    if param("replication").is_some_and(|v| v != "false" && v != "0" && v != "off") {
        deny(
            inner,
            &mut stream,
            ident,
            Refusal::new(
                "0A000",
                "replication connections are not supported through Postern",
            ),
        )
        .await;
        return None;
    }
    let Some(mut target) = split_login(user_field, param("database")) else {
        let r = if user_field.is_empty() {
            Refusal::new("28000", "no user name given")
        } else {
            Refusal::new("3D000", "no datasource given")
                .hint("connect with dbname=<datasource alias>, or user=<you>@<alias>")
        };
        deny(inner, &mut stream, ident, r).await;
        return None;
    };
    ident.datasource = Some(target.alias.as_str().into());
    tracing::Span::current().record("datasource", target.alias.as_str());

    let Authenticated {
        mut stream,
        buf,
        mut out,
        method,
        factor,
        auth_ok_sent,
        cert,
    } = authenticate_person(inner, stream, buf, out, ident, &mut target, deadline).await?;

    // Authorise: the datasource and a credential for it (the checks every front door shares).
    let grant = match inner
        .login
        .grant(&target.user, &target.alias, DatasourceType::Postgres)
        .await
    {
        Ok(g) => g,
        Err(refused) => {
            deny(
                inner,
                &mut stream,
                ident,
                grant_refusal(refused, &target.alias),
            )
            .await;
            return None;
        }
    };
    let postern_login::Grant {
        datasource: ds,
        credential_name: cred_name,
        credential: cred,
        policy,
        epoch: loaded,
    } = grant;
    let policy = Arc::new(policy);
    let epoch = inner.store.policy_epoch();
    ident.db_user = Some(cred.username.as_str().into());
    let mut success = ident.event(EventKind::LoginSuccess);
    let mut detail = serde_json::json!({
        "auth": method,
        "second_factor": factor.as_str(),
        "tls": stream.is_tls(),
    });
    if let Some(c) = &cert {
        detail["certificate"] = serde_json::json!(c.serial);
    }
    success.detail = Some(detail);
    let _ = inner.audit.record(success).await;

    // Open the upstream session with the stored credential.
    let up_target = UpstreamTarget {
        host: &ds.host,
        port: ds.port,
        database: &ds.database,
        tls: ds.tls,
        tls_ca: ds.tls_ca.as_deref(),
        username: &cred.username,
        password: &cred.password,
        salted: &inner.salted,
    };
    let opened = async {
        let mut up = upstream::connect(&up_target, &params, inner.cfg.upstream_timeout).await?;
        // Statements are checked: learn what unqualified names resolve to first.
        let (path, user_schema) = if policy.mode == postern_policy::Mode::Passthrough {
            (None, None)
        } else {
            let facts = upstream::session_facts(&mut up, inner.cfg.upstream_timeout).await?;
            (Some(facts.search_path), facts.user_schema)
        };
        let mut gate = Gate::new(
            policy.clone(),
            (epoch, loaded),
            path.clone(),
            user_schema,
            ident.ip,
        );
        // Masking rules that may cover something here: ask the catalog what they cover.
        let levels = crate::probe::masking_levels(&policy);
        let mut masker = None;
        if !levels.is_empty() {
            let catalog = upstream::mask_catalog(
                &mut up,
                &levels,
                path.unwrap_or_default(),
                inner.cfg.upstream_timeout,
            )
            .await?;
            let masking = postern_policy::SessionMasking::new(
                &policy.masking,
                &policy.revealed,
                &policy.datasource,
                &policy.database,
                &catalog,
            )
            .map(Arc::new);
            if let Some(m) = &masking {
                masker = Some(crate::masker::Masker::new(
                    m.clone(),
                    inner.store.masking_key(&policy.datasource),
                ));
            }
            gate.set_masking(masking, Some(inner.cfg.masking_catalog_max_age));
        }
        Ok::<_, upstream::UpstreamError>((up, Some(gate), masker))
    };
    let (upstream, gate, masker) = match opened.await {
        Ok(u) => u,
        Err(e) => {
            let r = Refusal::new(
                "08001",
                format!(
                    "Postern could not open datasource \"{}\": {e}",
                    target.alias
                ),
            )
            .not_login();
            deny(inner, &mut stream, ident, r).await;
            return None;
        }
    };
    drop(cred);

    // Tell the client: authenticated, the server's parameters, our cancel key, ready.
    let (key, guard) = match upstream.backend_key {
        Some(k) => {
            let (ours, guard) = inner.cancel.register(upstream.addr, k);
            (ours, Some(guard))
        }
        None => ((0, 0), None),
    };
    if !auth_ok_sent {
        codec::authentication(&mut out, 0, &[]);
    }
    out.extend_from_slice(&upstream.parameter_status);
    codec::backend_key_data(&mut out, key.0, key.1);
    out.extend_from_slice(&[b'Z', 0, 0, 0, 5, upstream.ready_status]);
    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
        return None;
    }
    Some(Established {
        client: stream,
        client_buf: buf,
        upstream,
        gate,
        masker,
        credential: cred_name,
        cert,
        _cancel: guard,
    })
}

/// A refused grant check, in PostgreSQL's terms.
fn grant_refusal(refused: postern_login::GrantRefusal, alias: &str) -> Refusal {
    use postern_login::GrantRefusal as G;
    match refused {
        G::UnknownDatasource => {
            Refusal::new("3D000", format!("datasource \"{alias}\" does not exist")).hint(
                "list the datasources you may use with `postern get datasources`, or ask an admin",
            )
        }
        G::WrongType(kind) => Refusal::new(
            "3D000",
            format!(
                "datasource \"{alias}\" is a {} database; connect to Postern's {} port instead",
                kind.as_str(),
                kind.as_str()
            ),
        ),
        G::NotGranted(denied) => Refusal::new("42501", denied.to_string())
            .hint("ask an admin to grant you a role that carries a credential for this datasource"),
        G::CredentialGone(name) => Refusal::new(
            "42501",
            format!("credential {name} granted to you no longer exists"),
        )
        .not_login(),
        G::Store(e) => Refusal::new("58000", "Postern could not read its store; try again later")
            .reason(format!("store error: {e}")),
    }
}

/// A person whose identity the handshake established, before the grant check.
struct Authenticated {
    stream: PgStream,
    buf: BytesMut,
    /// Authentication messages not sent yet.
    out: BytesMut,
    method: &'static str,
    factor: postern_login::SecondFactor,
    /// Whether AuthenticationOk went out already (a login held for approval).
    auth_ok_sent: bool,
    /// The client certificate the person logged in with.
    cert: Option<postern_login::PresentedCert>,
}

/// Authenticates the person on `stream` for `target` ([`Authenticated`], or `None` once the
/// client has been refused). A code in the user name (`alice:123456`) is removed from
/// `target`.
async fn authenticate_person(
    inner: &Inner,
    mut stream: PgStream,
    mut buf: BytesMut,
    mut out: BytesMut,
    ident: &mut Ident,
    target: &mut postern_core::LoginTarget,
    deadline: tokio::time::Instant,
) -> Option<Authenticated> {
    // A TOTP code given with the name (`alice:123456`) is taken off it.
    let code = {
        let (name, code) = postern_login::split_code(&target.user);
        let code = code.map(|c| zeroize::Zeroizing::new(c.to_string()));
        target.user = name.to_string();
        code
    };

    // Authenticate the person: a client certificate from `postern login`, or lockouts
    // first, then the password, then the second factor.
    let flow = &inner.login;
    if let Some(chain) = stream.client_certificates() {
        return match flow.certificate(&chain, &target.user).await {
            Ok(cert) => Some(Authenticated {
                stream,
                buf,
                out,
                method: "certificate",
                factor: postern_login::SecondFactor::Certificate,
                auth_ok_sent: false,
                cert: Some(cert),
            }),
            Err(d) => {
                deny(inner, &mut stream, ident, Refusal::from_denial(d)).await;
                None
            }
        };
    }
    if let Err(d) = flow.admit(&target.user, ident.ip) {
        deny(inner, &mut stream, ident, Refusal::from_denial(d)).await;
        return None;
    }
    let auth = tokio::time::timeout_at(
        deadline,
        authenticate(inner, &mut stream, &mut buf, &mut out, &target.user),
    )
    .await
    .unwrap_or_else(|_| {
        Err(
            Refusal::new("08006", "authentication not completed in time").reason(format!(
                "handshake not completed within {:?}",
                inner.cfg.handshake_timeout
            )),
        )
    });
    let method = match auth {
        Ok(m) => m,
        Err(r) => {
            if r.sqlstate == "28P01" {
                flow.failed(&target.user, ident.ip, Protocol::Postgres)
                    .await;
            }
            tokio::time::sleep(inner.cfg.login_failure_delay).await;
            deny(inner, &mut stream, ident, r).await;
            return None;
        }
    };
    flow.succeeded(&target.user, ident.ip);
    let mut prompt = ApprovalPrompt {
        stream: &mut stream,
        out: &mut out,
        input: &mut buf,
        authenticated: false,
    };
    let factor = flow
        .second_factor(
            &target.user,
            ident.ip,
            code.as_ref().map(|c| c.as_str()),
            &format!("postgres: {}", target.alias),
            Protocol::Postgres,
            &mut prompt,
        )
        .await;
    let auth_ok_sent = prompt.authenticated;
    match factor {
        Ok(factor) => Some(Authenticated {
            stream,
            buf,
            out,
            method,
            factor,
            auth_ok_sent,
            cert: None,
        }),
        Err(d) => {
            deny(inner, &mut stream, ident, Refusal::from_denial(d)).await;
            None
        }
    }
}

async fn bad_input(inner: &Inner, stream: &mut PgStream, ident: &Ident, e: &ReadError) {
    match e {
        ReadError::Eof | ReadError::Io(_) => {
            tracing::debug!(error = %e, "client went away during the handshake");
        }
        ReadError::Codec(c) => {
            let r = Refusal::new("08P01", format!("invalid startup sequence: {c}"));
            deny(inner, stream, ident, r).await;
        }
    }
}

/// Authenticates the Postern user on `stream` (SCRAM-SHA-256, or cleartext over TLS when
/// enabled) and returns the method used. `out` holds bytes to send before the first
/// authentication request.
async fn authenticate(
    inner: &Inner,
    stream: &mut PgStream,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    user: &str,
) -> Result<&'static str, Refusal> {
    let failed = || {
        Refusal::new(
            "28P01",
            format!("password authentication failed for user \"{user}\""),
        )
    };
    let info = inner.store.login_info(user).await.map_err(|e| {
        Refusal::new("58000", "Postern could not read its store; try again later")
            .reason(format!("store error: {e}"))
    })?;
    let (verifier, reason) = match &info {
        None => (None, "unknown user"),
        Some(i) if i.disabled => (None, "user is disabled"),
        Some(i) if i.locked => (None, "user is locked by an admin"),
        Some(i) => match &i.scram {
            Some(v) => (Some(v.clone()), ""),
            None => (None, "user has no password set"),
        },
    };
    let io_fail =
        |e: std::io::Error| failed().reason(format!("connection lost during authentication: {e}"));

    // A directory user: the directory checks the password, which must come in clear
    // (only ever over TLS).
    let flow = &inner.login;
    if flow.directory_checks(info.as_ref())
        && !info.as_ref().is_some_and(|i| i.disabled || i.locked)
    {
        if !stream.is_tls() {
            return Err(Refusal::new(
                "28000",
                format!("user \"{user}\" signs in with a directory password, which Postern accepts only over TLS"),
            )
            .hint("connect with sslmode=require (or verify-full with Postern's CA)")
            .reason("directory login without TLS"));
        }
        let pw = read_cleartext_password(stream, buf, out)
            .await
            .map_err(|e| match e {
                Some(r) => r,
                None => failed().reason("client left during authentication"),
            })?;
        return match flow.directory_password(user, &pw).await {
            Ok(()) => Ok("ldap"),
            Err(d) => Err(Refusal::from_denial(d)),
        };
    }

    if inner.cfg.allow_cleartext_password && stream.is_tls() {
        codec::authentication(out, 3, &[]);
        stream.write_all(out).await.map_err(io_fail)?;
        stream.flush().await.map_err(io_fail)?;
        out.clear();
        let (ty, msg) = read_frame(stream, buf, MAX_AUTH_MESSAGE)
            .await
            .map_err(|e| failed().reason(e.to_string()))?;
        if ty != b'p' {
            return Err(Refusal::new("08P01", "expected a password message"));
        }
        let pw = codec::cstr(&msg[5..])
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        let pw = zeroize::Zeroizing::new(pw);
        if verifier.is_none() {
            return Err(failed().reason(reason));
        }
        return match inner.store.verify_password(user, &pw).await {
            Ok(true) => Ok("password"),
            Ok(false) => Err(failed().reason("wrong password")),
            Err(e) => Err(failed().reason(format!("store error: {e}"))),
        };
    }

    let known = verifier.is_some();
    let verifier = verifier.unwrap_or_else(|| ScramVerifier::decoy(user, &inner.decoy_key));
    let mut scram = ScramServer::new(verifier);
    codec::authentication(out, 10, b"SCRAM-SHA-256\0\0");
    stream.write_all(out).await.map_err(io_fail)?;
    stream.flush().await.map_err(io_fail)?;
    out.clear();

    let read = |e: ReadError| match e {
        ReadError::Codec(c) => {
            Refusal::new("08P01", format!("invalid authentication message: {c}"))
        }
        other => failed().reason(format!("client left during authentication: {other}")),
    };
    let (ty, msg) = read_frame(stream, buf, MAX_AUTH_MESSAGE)
        .await
        .map_err(read)?;
    if ty != b'p' {
        return Err(Refusal::new(
            "08P01",
            "expected a SASLInitialResponse message",
        ));
    }
    let (mech, data) =
        parse_sasl_initial(&msg[5..]).map_err(|c| Refusal::new("08P01", c.to_string()))?;
    if mech != "SCRAM-SHA-256" {
        return Err(Refusal::new(
            "28000",
            format!("SASL mechanism {mech} is not supported; use SCRAM-SHA-256"),
        ));
    }
    let first = scram
        .client_first(data)
        .map_err(|e| Refusal::new("08P01", e.to_string()))?;
    codec::authentication(out, 11, first.as_bytes());
    stream.write_all(out).await.map_err(io_fail)?;
    stream.flush().await.map_err(io_fail)?;
    out.clear();

    let (ty, msg) = read_frame(stream, buf, MAX_AUTH_MESSAGE)
        .await
        .map_err(read)?;
    if ty != b'p' {
        return Err(Refusal::new("08P01", "expected a SASLResponse message"));
    }
    let fin = match scram.client_final(&msg[5..]) {
        Ok(f) if known => f,
        Ok(_) => return Err(failed().reason(reason)),
        Err(postern_auth::ScramError::BadProof) => {
            return Err(failed().reason(if known { "wrong password" } else { reason }))
        }
        Err(e) => return Err(Refusal::new("08P01", e.to_string())),
    };
    codec::authentication(out, 12, fin.as_bytes());
    // Sent together with AuthenticationOk once the upstream session is open.
    Ok("scram-sha-256")
}

/// Asks for the password in clear (AuthenticationCleartextPassword) and reads it. `Err(None)`:
/// the client left; `Err(Some(_))`: what to tell it.
async fn read_cleartext_password(
    stream: &mut PgStream,
    buf: &mut BytesMut,
    out: &mut BytesMut,
) -> Result<zeroize::Zeroizing<String>, Option<Refusal>> {
    codec::authentication(out, 3, &[]);
    stream.write_all(out).await.map_err(|_| None)?;
    stream.flush().await.map_err(|_| None)?;
    out.clear();
    let (ty, msg) = read_frame(stream, buf, MAX_AUTH_MESSAGE)
        .await
        .map_err(|e| match e {
            ReadError::Codec(c) => Some(Refusal::new(
                "08P01",
                format!("invalid authentication message: {c}"),
            )),
            _ => None,
        })?;
    if ty != b'p' {
        return Err(Some(Refusal::new("08P01", "expected a password message")));
    }
    let pw = codec::cstr(&msg[5..])
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    Ok(zeroize::Zeroizing::new(pw))
}

async fn relay(inner: &Inner, est: Established<'_>, ident: &Ident, span: &tracing::Span) {
    let Established {
        mut client,
        client_buf,
        upstream,
        gate,
        masker,
        credential,
        cert,
        _cancel,
    } = est;
    let mut up_stream = upstream.stream;
    let started = Instant::now();
    let _ = inner
        .audit
        .record(ident.event(EventKind::SessionOpen))
        .await;
    tracing::info!(parent: span, "session open");
    let mut statements: u64 = 0;
    let mut texts = LogTexts::default();
    let mut relay = Relay::new(&mut client, &mut up_stream, client_buf, upstream.leftover);
    relay.tracker.standard_conforming_strings = upstream.standard_conforming_strings;
    relay.tracker.utf8_client = crate::codec::encoding_reads_as_utf8(&upstream.client_encoding);
    relay.gate = gate;
    relay.masker = masker;
    // An idle session learns within ACCESS_CHECK that its user was disabled, locked or lost
    // the grant: the store's change counter is compared on every tick, the store read only
    // when it moved.
    let epoch = inner.store.policy_epoch();
    let mut seen = epoch.load(std::sync::atomic::Ordering::Acquire);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + ACCESS_CHECK, ACCESS_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end: Result<RelayEnd, Stop> = loop {
        // `step` keeps its state in the relay, so it may be dropped at a tick and resumed.
        let step = tokio::select! {
            step = relay.step() => step,
            _ = ticks.tick() => {
                if let Some(c) = &cert {
                    if time::OffsetDateTime::now_utc() >= c.not_after {
                        break Err(Stop::Expired);
                    }
                }
                let now = epoch.load(std::sync::atomic::Ordering::Acquire);
                if now != seen {
                    seen = now;
                    if let (Some(user), Some(alias)) = (ident.user.as_deref(), ident.datasource.as_deref()) {
                        if let Err(why) = inner.login.session_still_allowed(user, alias, &credential, cert.as_ref()).await {
                            break Err(Stop::Revoked(why));
                        }
                    }
                }
                continue;
            }
        };
        match step {
            Ok(Step::Statements) => {
                let mut closed = false;
                for done in relay.tracker.completed.drain(..) {
                    statements += 1;
                    inner.metrics.statements.inc();
                    let e = statement_event(inner, ident, &mut texts, done);
                    if inner.audit.record(e).await.is_err() {
                        closed = true;
                        break;
                    }
                }
                if closed {
                    // Fail closed: no more statements without an audit trail.
                    break Err(Stop::Failed("audit log closed".into()));
                }
            }
            Ok(Step::Reload) => {
                let Some(g) = relay.gate.as_mut() else {
                    continue;
                };
                let mut changed = false;
                if !g.policy_current() {
                    match reload(inner, ident, &credential, cert.as_ref()).await {
                        Ok((policy, epoch)) => {
                            let was = g.mode();
                            g.set_policy(policy, epoch);
                            changed = true;
                            if g.mode() != was {
                                tracing::info!(parent: span, mode = g.mode().name(), "policy changed");
                            }
                        }
                        Err(why) => break Err(Stop::Revoked(why)),
                    }
                }
                if changed || g.catalog_due() {
                    if let Err(why) = refresh_masking(inner, &mut relay, span).await {
                        break Err(Stop::Failed(why));
                    }
                }
            }
            Ok(Step::Done(end)) => break Ok(end),
            Err(e @ crate::relay::RelayError::ClientProtocol(_)) => {
                break Err(Stop::Protocol(e.to_string()))
            }
            Err(e) => break Err(Stop::Failed(e.to_string())),
        }
    };
    for done in relay.tracker.drain_unfinished() {
        let e = statement_event(inner, ident, &mut texts, done);
        let _ = inner.audit.record(e).await;
    }
    drop(relay);
    match &end {
        Err(Stop::Protocol(reason)) => {
            let _ = refuse(&mut client, "08P01", reason, None).await;
        }
        Err(Stop::Revoked(why)) => {
            let msg = format!("Postern ended this session: {why}");
            let hint = Some("ask an admin for access, then reconnect");
            let _ = refuse(&mut client, "57P01", &msg, hint).await;
        }
        Err(Stop::Expired) => {
            let msg = "Postern ended this session: your Postern certificate expired";
            let hint = Some("run `postern login` to get a new one, then reconnect");
            let _ = refuse(&mut client, "57P01", msg, hint).await;
        }
        _ => {}
    }
    if end.is_err() {
        postern_net::linger_close(&mut client, std::time::Duration::from_millis(500)).await;
    }
    let mut e = ident.event(EventKind::SessionClose);
    e.duration_us = Some(started.elapsed().as_micros() as u64);
    e.rows = None;
    e.detail = Some(serde_json_detail(statements, &end));
    if let Err(r) = &end {
        e.error = Some(r.to_string());
    }
    let _ = inner.audit.record(e).await;
    tracing::info!(parent: span, statements, end = ?end, "session closed");
}

/// How often an open session checks that its user may still use it.
const ACCESS_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the masking catalog again (after the policy or the schema changed, or the
/// snapshot aged) and installs the masking built from it. Postern's query runs only while
/// the upstream is idle outside a transaction block; when it is busy the refresh waits
/// for a later statement. An error ends the session: masking on a catalog Postern could
/// not read would be a guess. Masking rules that changed while the upstream is busy mask
/// every value until the catalog is read ([`postern_policy::SessionMasking::blind`]): the
/// old rules may no longer be enough.
async fn refresh_masking(
    inner: &Inner,
    relay: &mut Relay<'_, PgStream, PgStream>,
    span: &tracing::Span,
) -> Result<(), String> {
    let max_age = inner.cfg.masking_catalog_max_age;
    let Some(g) = relay.gate.as_ref() else {
        return Ok(());
    };
    let policy = g.policy().clone();
    let path = g.search_path().map(<[String]>::to_vec).unwrap_or_default();
    let levels = crate::probe::masking_levels(&policy);
    if levels.is_empty() {
        if let Some(g) = relay.gate.as_mut() {
            g.set_masking(None, None);
        }
        relay.masker = None;
        return Ok(());
    }
    let Some((up, buf)) = relay.idle_upstream() else {
        let blind = relay.gate.as_ref().is_some_and(|g| !g.masking_current());
        if blind {
            tracing::info!(parent: span, "masking rules changed inside a transaction block: every value masked until it ends");
            let m = Arc::new(postern_policy::SessionMasking::blind());
            install_masker(inner, relay, Some(&m), &policy.datasource);
            if let Some(g) = relay.gate.as_mut() {
                g.set_masking(Some(m), Some(max_age));
                g.schema_changed();
            }
        }
        if let Some(g) = relay.gate.as_mut() {
            g.catalog_deferred(max_age);
        }
        return Ok(());
    };
    let catalog = upstream::mask_catalog_on(up, buf, &levels, path, inner.cfg.upstream_timeout)
        .await
        .map_err(|e| format!("Postern could not read the masking catalog again: {e}"))?;
    let masking = postern_policy::SessionMasking::new(
        &policy.masking,
        &policy.revealed,
        &policy.datasource,
        &policy.database,
        &catalog,
    )
    .map(Arc::new);
    install_masker(inner, relay, masking.as_ref(), &policy.datasource);
    if let Some(g) = relay.gate.as_mut() {
        g.set_masking(masking, Some(max_age));
    }
    Ok(())
}

/// Makes the relay's masker mask with `masking` (none: no masker).
fn install_masker(
    inner: &Inner,
    relay: &mut Relay<'_, PgStream, PgStream>,
    masking: Option<&Arc<postern_policy::SessionMasking>>,
    datasource: &str,
) {
    match (masking, relay.masker.as_mut()) {
        (Some(m), Some(masker)) => masker.set_masking(m.clone()),
        (Some(m), None) => {
            relay.masker = Some(crate::masker::Masker::new(
                m.clone(),
                inner.store.masking_key(datasource),
            ))
        }
        (None, _) => relay.masker = None,
    }
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

/// Puts Postern's ruling on a statement into its audit event.
fn rule_on(inner: &Inner, e: &mut AuditEvent, r: &crate::gate::Ruling) {
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
        tracing::warn!(session = %e.session.as_deref().unwrap_or(""), user = %e.user.as_deref().unwrap_or(""), rule = %r.rule.as_deref().unwrap_or(""), "statement let through by an allow-and-alert firewall rule");
    }
    if !r.allowed {
        inner.metrics.refusals.inc();
    }
}

/// Why a relayed session ended, when it was not a peer closing its side.
#[derive(Debug)]
enum Stop {
    /// The client broke the protocol (it is told so).
    Protocol(String),
    /// The user's access went away while the session was open (they are told why).
    Revoked(String),
    /// The client certificate the session was opened with expired.
    Expired,
    /// Anything else: I/O, the audit log closing.
    Failed(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Protocol(m) | Stop::Failed(m) => f.write_str(m),
            Stop::Revoked(why) => write!(f, "access revoked: {why}"),
            Stop::Expired => f.write_str("client certificate expired"),
        }
    }
}

/// The audit event of a statement whose outcome is known (or that the session's end cut off).
fn statement_event(
    inner: &Inner,
    ident: &Ident,
    texts: &mut LogTexts,
    done: crate::tracker::Completed,
) -> AuditEvent {
    let mut e = ident.event(EventKind::Statement);
    // The gate lexed checked statements already; the rest are masked here.
    let (masked, clear) = match done.ruling.as_ref().and_then(|r| r.log.clone()) {
        Some(forms) => forms,
        None => texts.of(&done.statement, done.standard_conforming_strings),
    };
    e.statement = Some(masked);
    e.statement_clear = clear;
    if !done.tags.is_empty() {
        e.command_tag = Some(done.tags);
    }
    e.rows = done.rows;
    e.masked = done.masked;
    e.duration_us = Some(done.duration.as_micros() as u64);
    if let Some(r) = &done.ruling {
        rule_on(inner, &mut e, r);
    }
    if let Some((code, msg)) = done.error {
        if !code.is_empty() {
            e.sqlstate = Some(code);
        }
        e.error = Some(msg);
    }
    e
}

fn serde_json_detail(statements: u64, end: &Result<RelayEnd, Stop>) -> serde_json::Value {
    let ended_by = match end {
        Ok(RelayEnd::ClientClosed) => "client",
        Ok(RelayEnd::UpstreamClosed) => "upstream",
        Err(_) => "error",
    };
    serde_json::json!({ "statements": statements, "ended_by": ended_by })
}
