//! Opening a session on the real database with the stored credential.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postern_auth::{SaltedPasswordCache, ScramClient};
use postern_core::UpstreamTls;
use postgres_protocol::authentication::md5_hash;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::{self, cstr, error_summary, MAX_AUTH_MESSAGE, SSL_REQUEST};
use crate::frame_io::{read_frame, ReadError};
use crate::stream::PgStream;

/// Where and as whom to connect.
pub struct UpstreamTarget<'a> {
    /// Host name or address.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Database name on the server.
    pub database: &'a str,
    /// TLS mode.
    pub tls: UpstreamTls,
    /// PEM CAs for verify-ca / verify-full.
    pub tls_ca: Option<&'a str>,
    /// Database user.
    pub username: &'a str,
    /// Its password. Never logged, never sent to the client.
    pub password: &'a str,
    /// Salted forms of upstream passwords already derived (SCRAM).
    pub salted: &'a SaltedPasswordCache,
}

/// A logged-in upstream session, ready for queries.
pub struct UpstreamSession {
    /// The stream.
    pub stream: PgStream,
    /// The server's ParameterStatus messages, verbatim, to replay to the client.
    pub parameter_status: BytesMut,
    /// The server's `standard_conforming_strings` at start-up.
    pub standard_conforming_strings: bool,
    /// The session's `client_encoding` at start-up.
    pub client_encoding: String,
    /// The server's (pid, secret) for cancel requests.
    pub backend_key: Option<(i32, i32)>,
    /// Transaction status byte of the first ReadyForQuery.
    pub ready_status: u8,
    /// Bytes read past the first ReadyForQuery.
    pub leftover: BytesMut,
    /// The address connected to (for cancel requests).
    pub addr: SocketAddr,
}

/// Why the upstream session could not be opened. Messages never contain the password.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The whole exchange took too long.
    #[error("the upstream server did not complete the login within {0:?}")]
    Timeout(Duration),
    /// TLS failed or was refused.
    #[error("TLS to the upstream failed: {0}")]
    Tls(String),
    /// The server refused the login or the session.
    #[error("{message}")]
    Server {
        /// SQLSTATE from the server.
        sqlstate: String,
        /// Message from the server.
        message: String,
    },
    /// The server asked for an authentication method Postern does not speak.
    #[error("the upstream asked for an unsupported authentication method ({0})")]
    UnsupportedAuth(String),
    /// The server broke the protocol or closed the connection.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

impl From<ReadError> for UpstreamError {
    fn from(e: ReadError) -> Self {
        UpstreamError::Protocol(e.to_string())
    }
}

impl From<std::io::Error> for UpstreamError {
    fn from(e: std::io::Error) -> Self {
        UpstreamError::Protocol(e.to_string())
    }
}

/// Parameters forwarded from the client's startup packet to the upstream. Anything else
/// (notably `options`, which can set arbitrary GUCs such as `role`) is dropped.
pub const FORWARDED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "extra_float_digits",
    "IntervalStyle",
    "search_path",
];

/// Connects, negotiates TLS, logs in, and reads up to the first ReadyForQuery.
pub async fn connect(
    target: &UpstreamTarget<'_>,
    client_params: &[(String, String)],
    timeout: Duration,
) -> Result<UpstreamSession, UpstreamError> {
    tokio::time::timeout(timeout, connect_inner(target, client_params))
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))?
}

async fn connect_inner(
    target: &UpstreamTarget<'_>,
    client_params: &[(String, String)],
) -> Result<UpstreamSession, UpstreamError> {
    let addr_s = format!("{}:{}", target.host, target.port);
    let tcp = TcpStream::connect((target.host, target.port))
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr_s.clone(),
            source,
        })?;
    let addr = tcp.peer_addr()?;
    let _ = tcp.set_nodelay(true);
    let mut stream = negotiate_tls(tcp, target).await?;

    let mut out = BytesMut::with_capacity(256);
    let mut params: Vec<(&str, &str)> =
        vec![("user", target.username), ("database", target.database)];
    for (k, v) in client_params {
        if FORWARDED_PARAMS.contains(&k.as_str()) {
            params.push((k, v));
        }
    }
    codec::startup_message(&mut out, &params);
    stream.write_all(&out).await?;
    stream.flush().await?;

    let mut buf = BytesMut::with_capacity(8192);
    authenticate(&mut stream, &mut buf, target).await?;

    let mut parameter_status = BytesMut::new();
    let mut standard_conforming_strings = true;
    let mut client_encoding = String::from("UTF8");
    let mut backend_key = None;
    loop {
        let (ty, msg) = read_frame(&mut stream, &mut buf, MAX_AUTH_MESSAGE).await?;
        let body = &msg[5..];
        match ty {
            b'S' => {
                match cstr(body) {
                    Some(("standard_conforming_strings", rest)) => {
                        standard_conforming_strings = cstr(rest).is_some_and(|(v, _)| v == "on");
                    }
                    Some(("client_encoding", rest)) => {
                        if let Some((v, _)) = cstr(rest) {
                            client_encoding = v.to_string();
                        }
                    }
                    _ => {}
                }
                parameter_status.extend_from_slice(&msg)
            }
            b'K' if body.len() == 8 => {
                backend_key = Some((
                    i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                ))
            }
            b'N' => {}
            b'Z' => {
                return Ok(UpstreamSession {
                    stream,
                    parameter_status,
                    standard_conforming_strings,
                    client_encoding,
                    backend_key,
                    ready_status: body.first().copied().unwrap_or(b'I'),
                    leftover: buf,
                    addr,
                })
            }
            b'E' => return Err(server_error(body)),
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message '{}' before ReadyForQuery",
                    other as char
                )))
            }
        }
    }
}

fn server_error(body: &[u8]) -> UpstreamError {
    let (sqlstate, message) = error_summary(body);
    UpstreamError::Server { sqlstate, message }
}

async fn negotiate_tls(
    mut tcp: TcpStream,
    target: &UpstreamTarget<'_>,
) -> Result<PgStream, UpstreamError> {
    if target.tls == UpstreamTls::Disable {
        return Ok(PgStream::Plain(tcp));
    }
    let mut req = BytesMut::new();
    codec::request(&mut req, SSL_REQUEST, &[]);
    tcp.write_all(&req).await?;
    let answer = tcp.read_u8().await?;
    match answer {
        b'S' => {}
        b'N' if target.tls == UpstreamTls::Prefer => return Ok(PgStream::Plain(tcp)),
        b'N' => {
            return Err(UpstreamError::Tls(
                "the server does not accept TLS, but the datasource requires it (set tls = \"disable\" or \"prefer\" on the datasource, or enable ssl on the server)".into(),
            ))
        }
        _ => return Err(UpstreamError::Protocol("bad answer to SSLRequest".into())),
    }
    let config = client_config(target)?;
    let name = ServerName::try_from(target.host.to_string())
        .map_err(|_| UpstreamError::Tls(format!("{} is not a valid server name", target.host)))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Tls(e.to_string()))?;
    Ok(PgStream::ClientTls(Box::new(tls)))
}

fn client_config(target: &UpstreamTarget<'_>) -> Result<rustls::ClientConfig, UpstreamError> {
    postern_net::upstream_tls_config(target.tls, target.tls_ca).map_err(UpstreamError::Tls)
}

async fn authenticate(
    stream: &mut PgStream,
    buf: &mut BytesMut,
    target: &UpstreamTarget<'_>,
) -> Result<(), UpstreamError> {
    let mut out = BytesMut::with_capacity(256);
    let mut scram: Option<ScramClient> = None;
    loop {
        let (ty, msg) = read_frame(stream, buf, MAX_AUTH_MESSAGE).await?;
        let body = &msg[5..];
        match ty {
            b'E' => return Err(server_error(body)),
            b'R' => {}
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message '{}' during authentication",
                    other as char
                )))
            }
        }
        if body.len() < 4 {
            return Err(UpstreamError::Protocol(
                "short authentication message".into(),
            ));
        }
        let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let data = &body[4..];
        out.clear();
        match code {
            0 => return Ok(()),
            3 => {
                if !stream.is_tls() {
                    tracing::warn!(
                        host = target.host,
                        "upstream asked for a cleartext password over an unencrypted connection"
                    );
                }
                let mut pw = target.password.as_bytes().to_vec();
                pw.push(0);
                codec::password_message(&mut out, &pw);
                zeroize::Zeroize::zeroize(&mut pw);
            }
            5 => {
                let salt: [u8; 4] = data
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| UpstreamError::Protocol("short MD5 salt".into()))?;
                let mut h = md5_hash(target.username.as_bytes(), target.password.as_bytes(), salt)
                    .into_bytes();
                h.push(0);
                codec::password_message(&mut out, &h);
            }
            10 => {
                let mut mechs = Vec::new();
                let mut rest = data;
                while let Some((m, r)) = cstr(rest) {
                    if m.is_empty() {
                        break;
                    }
                    mechs.push(m);
                    rest = r;
                }
                if !mechs.contains(&"SCRAM-SHA-256") {
                    return Err(UpstreamError::UnsupportedAuth(mechs.join(", ")));
                }
                let s = ScramClient::new();
                codec::sasl_initial_response(
                    &mut out,
                    "SCRAM-SHA-256",
                    s.client_first().as_bytes(),
                );
                scram = Some(s);
            }
            11 => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Protocol("SASLContinue before SASL".into()))?;
                let params = s
                    .server_first(data)
                    .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                let salted = match target.salted.get(target.password, &params) {
                    Some(v) => v,
                    None => {
                        // PBKDF2 takes milliseconds: not on an async thread.
                        let pw = zeroize::Zeroizing::new(target.password.to_string());
                        let (salt, iterations) = (params.salt.clone(), params.iterations);
                        let v = tokio::task::spawn_blocking(move || {
                            postern_auth::salted_password(&pw, &salt, iterations)
                        })
                        .await
                        .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                        target.salted.insert(target.password, &params, &v);
                        v
                    }
                };
                let fin = s
                    .client_final(&salted)
                    .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                codec::password_message(&mut out, fin.as_bytes());
            }
            12 => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| UpstreamError::Protocol("SASLFinal before SASL".into()))?;
                // Verifies the server's signature: the upstream proves it knows the password too.
                s.server_final(data)
                    .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?;
                continue;
            }
            other => {
                return Err(UpstreamError::UnsupportedAuth(format!(
                    "authentication code {other}"
                )))
            }
        }
        stream.write_all(&out).await?;
        stream.flush().await?;
    }
}

/// What the statement decisions need to know of a fresh upstream session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFacts {
    /// The effective search_path: existing schemas, in order (`current_schemas(false)`).
    pub search_path: Vec<String>,
    /// The upstream user's own schema, when one exists (what `$user` means).
    pub user_schema: Option<String>,
}

/// One query, answered before the client's first byte reaches the upstream. Ordered so the
/// search_path rows come first and in path order.
const SESSION_FACTS_QUERY: &str = "SELECT k, v FROM (\
     SELECT 1 AS k, n::text AS v, i FROM unnest(current_schemas(false)) WITH ORDINALITY AS t(n, i) \
     UNION ALL SELECT 2, nspname::text, 0 FROM pg_catalog.pg_namespace WHERE nspname = current_user\
     ) q ORDER BY k, i";

/// Asks the upstream for [`SessionFacts`] on the freshly opened session (before relaying).
pub async fn session_facts(
    up: &mut UpstreamSession,
    timeout: Duration,
) -> Result<SessionFacts, UpstreamError> {
    tokio::time::timeout(timeout, session_facts_inner(up))
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))?
}

async fn session_facts_inner(up: &mut UpstreamSession) -> Result<SessionFacts, UpstreamError> {
    let mut facts = SessionFacts::default();
    own_query(up, SESSION_FACTS_QUERY, MAX_AUTH_MESSAGE, |cols| {
        match cols {
            [Some("1"), Some(v)] => facts.search_path.push(v.to_string()),
            [Some("2"), Some(v)] => facts.user_schema = Some(v.to_string()),
            _ => return Err("unexpected row in the session query".into()),
        }
        Ok(())
    })
    .await?;
    Ok(facts)
}

/// Runs one of Postern's own queries on the session before relaying, handing each row
/// (text columns) to `row`: a row it rejects, a malformed row or frame longer than
/// `max_frame`, or a server error fails the whole query.
async fn own_query(
    up: &mut UpstreamSession,
    sql: &str,
    max_frame: usize,
    row: impl FnMut(&[Option<&str>]) -> Result<(), String>,
) -> Result<(), UpstreamError> {
    up.ready_status = own_query_on(&mut up.stream, &mut up.leftover, sql, max_frame, row).await?;
    Ok(())
}

/// [`own_query`] on any stream, `leftover` holding bytes already read from it; returns the
/// transaction status of the closing ReadyForQuery.
async fn own_query_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    leftover: &mut BytesMut,
    sql: &str,
    max_frame: usize,
    mut row: impl FnMut(&[Option<&str>]) -> Result<(), String>,
) -> Result<u8, UpstreamError> {
    let mut out = BytesMut::with_capacity(sql.len() + 8);
    codec::query(&mut out, sql);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut failure = None;
    loop {
        let (ty, msg) = read_frame(stream, leftover, max_frame).await?;
        let body = &msg[5..];
        match ty {
            b'D' => {
                let cols = codec::data_row_texts(body).ok_or_else(|| {
                    UpstreamError::Protocol("malformed DataRow in Postern's own query".into())
                })?;
                if failure.is_none() {
                    if let Err(m) = row(&cols) {
                        failure = Some(UpstreamError::Protocol(m));
                    }
                }
            }
            b'E' => {
                let (sqlstate, message) = error_summary(body);
                failure = Some(UpstreamError::Server { sqlstate, message });
            }
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                return failure.map_or(Ok(status), Err);
            }
            // RowDescription, CommandComplete, notices, parameter changes.
            _ => {}
        }
    }
}

/// Largest catalog row Postern reads (a view definition can be long).
const MAX_CATALOG_ROW: usize = 16 << 20;

/// `E'…'`: a string literal that reads the same whatever `standard_conforming_strings` is.
fn e_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The catalog query for masking: relations with a column some rule may cover (`levels`:
/// schema, table and column regular expressions per rule, all `~`-matched), the views
/// built on them (through any number of views), and the names of functions defined
/// outside the system schemas.
fn mask_catalog_query(levels: &[[String; 3]]) -> String {
    let conds = if levels.is_empty() {
        "false".to_string()
    } else {
        levels
            .iter()
            .map(|[s, t, c]| {
                format!(
                    "(n.nspname ~ {} AND c.relname ~ {} AND a.attname ~ {})",
                    e_literal(s),
                    e_literal(t),
                    e_literal(c)
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    format!(
        "WITH RECURSIVE base AS (\
           SELECT DISTINCT c.oid FROM pg_catalog.pg_attribute a \
           JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','f','m','v') \
           AND n.nspname NOT IN ('pg_catalog','information_schema') AND ({conds})), \
         views(oid) AS (\
           SELECT r.ev_class FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
           WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
           AND d.refobjid IN (SELECT oid FROM base) AND r.ev_class <> d.refobjid \
           UNION \
           SELECT r.ev_class FROM views v JOIN pg_catalog.pg_depend d ON d.refobjid = v.oid \
           JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
           WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND r.ev_class <> v.oid), \
         rels AS (SELECT oid FROM base UNION SELECT oid FROM views) \
         SELECT 'r', c.oid::text, n.nspname::text, c.relname::text, c.relkind::text, \
           CASE WHEN c.relkind IN ('v','m') THEN pg_catalog.pg_get_viewdef(c.oid) END, \
           (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(a.attnum, a.attname) \
              ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text \
         FROM rels JOIN pg_catalog.pg_class c ON c.oid = rels.oid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         UNION ALL \
         SELECT 'f', p.proname::text, NULL, NULL, NULL, NULL, NULL FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname NOT IN ('pg_catalog','information_schema') GROUP BY p.proname"
    )
}

/// Loads what masking needs from the upstream catalog (see [`mask_catalog_query`]).
/// `search_path` is the session's, in effect while view definitions are printed.
pub async fn mask_catalog(
    up: &mut UpstreamSession,
    levels: &[[String; 3]],
    search_path: Vec<String>,
    timeout: Duration,
) -> Result<postern_policy::MaskCatalog, UpstreamError> {
    mask_catalog_on(
        &mut up.stream,
        &mut up.leftover,
        levels,
        search_path,
        timeout,
    )
    .await
}

/// [`mask_catalog`] on a relayed session's upstream while it is idle (no statement open,
/// no transaction block): `leftover` is the relay's (empty) buffer of upstream bytes.
pub async fn mask_catalog_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    leftover: &mut BytesMut,
    levels: &[[String; 3]],
    search_path: Vec<String>,
    timeout: Duration,
) -> Result<postern_policy::MaskCatalog, UpstreamError> {
    tokio::time::timeout(
        timeout,
        mask_catalog_inner(stream, leftover, levels, search_path),
    )
    .await
    .map_err(|_| UpstreamError::Timeout(timeout))?
}

async fn mask_catalog_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    leftover: &mut BytesMut,
    levels: &[[String; 3]],
    search_path: Vec<String>,
) -> Result<postern_policy::MaskCatalog, UpstreamError> {
    let mut catalog = postern_policy::MaskCatalog {
        search_path,
        ..Default::default()
    };
    let bad = |what: &str| format!("unexpected catalog row: {what}");
    own_query_on(
        stream,
        leftover,
        &mask_catalog_query(levels),
        MAX_CATALOG_ROW,
        |cols| {
            match cols {
                [Some("f"), Some(name), ..] => {
                    catalog.user_functions.insert(name.to_string());
                }
                [Some("r"), Some(oid), Some(schema), Some(name), Some(kind), def, Some(cols)] => {
                    let columns: Vec<(i16, String)> =
                        serde_json::from_str(cols).map_err(|_| bad("columns"))?;
                    catalog.relations.push(postern_policy::CatalogRelation {
                        oid: oid.parse().map_err(|_| bad("oid"))?,
                        schema: schema.to_string(),
                        name: name.to_string(),
                        kind: kind.chars().next().unwrap_or('r'),
                        columns,
                        definition: def.map(str::to_string),
                        database: None,
                    });
                }
                _ => return Err(bad("shape")),
            }
            Ok(())
        },
    )
    .await?;
    Ok(catalog)
}
