//! The upstream side: connect to the MySQL / MariaDB server, TLS per datasource mode, and
//! log in with the stored credential (mysql_native_password or caching_sha2_password,
//! following auth switches).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postern_core::UpstreamTls;
use postern_net::Stream;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::codec::{self, Greeting, CLIENT_CONNECT_WITH_DB, CLIENT_SSL};
use crate::io::{read_packet, write_packet, ReadError};

/// Where and as whom to log in.
pub struct UpstreamTarget<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub tls: UpstreamTls,
    pub tls_ca: Option<&'a str>,
    pub username: &'a str,
    pub password: &'a str,
    /// Capabilities the client and Postern agreed on.
    pub client_capabilities: u32,
    pub charset: u8,
}

/// Why the upstream login failed (no secret in any variant).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server error {code} ({sqlstate}): {message}")]
    Server {
        code: u16,
        sqlstate: String,
        message: String,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("{0}")]
    Unsupported(String),
}

impl From<ReadError> for UpstreamError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => UpstreamError::Io(e),
            ReadError::Eof => UpstreamError::Protocol("the server closed the connection".into()),
            ReadError::Codec(c) => UpstreamError::Protocol(c.to_string()),
        }
    }
}

/// A logged-in upstream connection.
pub struct Upstream {
    pub stream: Stream,
    /// Bytes read past the login.
    pub leftover: BytesMut,
    pub greeting: Greeting,
    /// Capabilities in force on this connection.
    pub capabilities: u32,
}

/// Connects and logs in, all within `timeout`.
pub async fn connect(
    target: &UpstreamTarget<'_>,
    timeout: Duration,
) -> Result<Upstream, UpstreamError> {
    tokio::time::timeout(timeout, connect_inner(target))
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))?
}

fn server_error(payload: &[u8]) -> UpstreamError {
    match codec::parse_err(payload) {
        Ok(e) => UpstreamError::Server {
            code: e.code,
            sqlstate: e.sqlstate,
            message: e.message,
        },
        Err(c) => UpstreamError::Protocol(c.to_string()),
    }
}

/// Reads only the greeting of the server at `host:port` (its version, for Postern's own
/// greeting), then hangs up.
pub async fn probe_version(host: &str, port: u16, timeout: Duration) -> Option<String> {
    let probe = async {
        let mut tcp = TcpStream::connect((host, port)).await.ok()?;
        let mut buf = BytesMut::with_capacity(256);
        let (p, _, _) = read_packet(&mut tcp, &mut buf, codec::MAX_HANDSHAKE_PACKET)
            .await
            .ok()?;
        codec::parse_greeting(&p).ok().map(|g| g.version)
    };
    tokio::time::timeout(timeout, probe).await.ok().flatten()
}

async fn connect_inner(target: &UpstreamTarget<'_>) -> Result<Upstream, UpstreamError> {
    let tcp = TcpStream::connect((target.host, target.port)).await?;
    let _ = tcp.set_nodelay(true);
    let mut stream = Stream::Plain(tcp);
    let mut buf = BytesMut::with_capacity(8192);
    let (p, _, seq) = read_packet(&mut stream, &mut buf, codec::MAX_HANDSHAKE_PACKET).await?;
    if p.first() == Some(&0xff) {
        return Err(server_error(&p));
    }
    let greeting = codec::parse_greeting(&p).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let server_tls = greeting.capabilities & CLIENT_SSL != 0;
    let use_tls = match target.tls {
        UpstreamTls::Disable => false,
        UpstreamTls::Prefer => server_tls,
        _ if server_tls => true,
        _ => {
            return Err(UpstreamError::Tls(
                "the server does not accept TLS, but the datasource requires it (set tls = \"disable\" or \"prefer\" on the datasource, or enable TLS on the server)".into(),
            ))
        }
    };
    // LOCAL INFILE only when the session asked for it (see the session's checks).
    let mut caps = target.client_capabilities
        & greeting.capabilities
        & (codec::OFFERED | codec::CLIENT_LOCAL_FILES);
    caps |= CLIENT_CONNECT_WITH_DB & greeting.capabilities;
    if use_tls {
        caps |= CLIENT_SSL;
    }
    let mut seq = seq.wrapping_add(1);
    if use_tls {
        seq = write_packet(&mut stream, seq, &codec::ssl_request(caps, target.charset)).await?;
        let Stream::Plain(tcp) = stream else {
            return Err(UpstreamError::Protocol("TLS requested twice".into()));
        };
        let config = postern_net::upstream_tls_config(target.tls, target.tls_ca)
            .map_err(UpstreamError::Tls)?;
        let name = ServerName::try_from(target.host.to_string()).map_err(|_| {
            UpstreamError::Tls(format!("{} is not a valid server name", target.host))
        })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| UpstreamError::Tls(e.to_string()))?;
        stream = Stream::ClientTls(Box::new(tls));
    }
    let nonce = greeting.nonce.get(..20).unwrap_or(&greeting.nonce).to_vec();
    let (plugin, answer) = answer_for(&greeting.plugin, &nonce, target.password, use_tls)?;
    let response = codec::handshake_response(
        caps,
        target.charset,
        target.username,
        &answer,
        Some(target.database),
        plugin,
    );
    write_packet(&mut stream, seq, &response).await?;
    let mut plugin = plugin.to_string();
    loop {
        let (p, _, last) = read_packet(&mut stream, &mut buf, codec::MAX_HANDSHAKE_PACKET).await?;
        let seq = last.wrapping_add(1);
        match p.first() {
            Some(0x00) => break,
            Some(0xff) => return Err(server_error(&p)),
            Some(0xfe) => {
                // Auth switch: another plugin, a fresh nonce.
                let mut r = codec::Reader::new(&p[1..], "auth switch request");
                plugin = String::from_utf8_lossy(r.cstr_or_rest()).into_owned();
                let data = r.rest();
                let nonce = data.strip_suffix(&[0]).unwrap_or(data);
                let (_, answer) = answer_for(&plugin, nonce, target.password, use_tls)?;
                write_packet(&mut stream, seq, &answer).await?;
            }
            Some(0x01) if plugin == codec::CACHING_SHA2 => match p.get(1) {
                Some(3) => {} // fast auth success: the OK follows
                Some(4) if use_tls => {
                    let mut pw = zeroize::Zeroizing::new(target.password.as_bytes().to_vec());
                    pw.push(0);
                    write_packet(&mut stream, seq, &pw).await?;
                }
                Some(4) => {
                    return Err(UpstreamError::Unsupported(
                        "the server wants a full caching_sha2_password exchange, which Postern does only over TLS (set tls = \"require\" or stricter on the datasource)".into(),
                    ))
                }
                _ => return Err(UpstreamError::Protocol("unexpected caching_sha2 data".into())),
            },
            _ => {
                return Err(UpstreamError::Protocol(
                    "unexpected packet during login".into(),
                ))
            }
        }
    }
    Ok(Upstream {
        stream,
        leftover: buf,
        greeting,
        capabilities: caps,
    })
}

/// The answer to `plugin`'s challenge.
fn answer_for(
    plugin: &str,
    nonce: &[u8],
    password: &str,
    tls: bool,
) -> Result<(&'static str, zeroize::Zeroizing<Vec<u8>>), UpstreamError> {
    use postern_auth::mysql;
    let answer = |plugin, bytes: Vec<u8>| Ok((plugin, zeroize::Zeroizing::new(bytes)));
    match plugin {
        codec::CACHING_SHA2 => answer(codec::CACHING_SHA2, mysql::sha2_answer(nonce, password.as_bytes())),
        codec::CLEAR_PASSWORD if tls => {
            let mut v = password.as_bytes().to_vec();
            v.push(0);
            answer(codec::CLEAR_PASSWORD, v)
        }
        codec::CLEAR_PASSWORD => Err(UpstreamError::Unsupported(
            "the server asks for the password in clear, which Postern sends only over TLS (set tls = \"require\" or stricter on the datasource)".into(),
        )),
        codec::NATIVE_PASSWORD | "" => answer(codec::NATIVE_PASSWORD, mysql::native_answer(nonce, password.as_bytes())),
        other => Err(UpstreamError::Unsupported(format!(
            "the server asks for auth plugin {other}; Postern logs in with mysql_native_password or caching_sha2_password"
        ))),
    }
}

/// The session's `sql_mode` as the server reports it (one query, before anything is
/// relayed): it decides whether the server reads text the way Postern's analyser does.
pub async fn sql_mode(up: &mut Upstream, timeout: Duration) -> Result<String, UpstreamError> {
    let caps = up.capabilities;
    let rows = query_rows(
        &mut up.stream,
        &mut up.leftover,
        caps,
        "SELECT @@SESSION.sql_mode",
        1,
        timeout,
    )
    .await?;
    match rows.as_slice() {
        [row] if row.len() == 1 => Ok(row[0].clone().unwrap_or_default()),
        _ => Err(UpstreamError::Protocol(
            "reading @@sql_mode: not one value".into(),
        )),
    }
}

/// Tables, views and columns the masking rules may cover, and the stored functions
/// (whose results Postern cannot follow): what [`postern_policy::SessionMasking`] needs.
/// `stream`, `buf` and `capabilities` are those of a logged-in connection with nothing
/// in flight.
pub async fn mask_catalog(
    stream: &mut Stream,
    buf: &mut BytesMut,
    capabilities: u32,
    database: &str,
    timeout: Duration,
) -> Result<postern_policy::MaskCatalog, UpstreamError> {
    const MAX_COLUMNS: usize = 500_000;
    let rows = query_rows(
        stream,
        buf,
        capabilities,
        "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, t.TABLE_TYPE, c.ORDINAL_POSITION, c.COLUMN_NAME, \
         v.VIEW_DEFINITION \
         FROM information_schema.COLUMNS c \
         JOIN information_schema.TABLES t \
           ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         LEFT JOIN information_schema.VIEWS v \
           ON v.TABLE_SCHEMA = c.TABLE_SCHEMA AND v.TABLE_NAME = c.TABLE_NAME \
         WHERE c.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
         ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION",
        MAX_COLUMNS,
        timeout,
    )
    .await?;
    let mut catalog = postern_policy::MaskCatalog {
        search_path: if database.is_empty() {
            Vec::new()
        } else {
            vec![database.to_lowercase()]
        },
        mysql: true,
        ..Default::default()
    };
    let bad = |what: &str| UpstreamError::Protocol(format!("unexpected catalog row: {what}"));
    for row in rows {
        let [Some(schema), Some(table), Some(kind), Some(pos), Some(col), def] = row.as_slice()
        else {
            return Err(bad("shape"));
        };
        let (schema, table) = (schema.to_lowercase(), table.to_lowercase());
        let attnum: i16 = pos.parse().map_err(|_| bad("ordinal position"))?;
        let same = catalog
            .relations
            .last()
            .is_some_and(|r| r.schema == schema && r.name == table);
        if !same {
            let oid = u32::try_from(catalog.relations.len() + 1).map_err(|_| bad("count"))?;
            let view = kind.eq_ignore_ascii_case("VIEW");
            catalog.relations.push(postern_policy::CatalogRelation {
                oid,
                schema: schema.clone(),
                name: table,
                kind: if view { 'v' } else { 'r' },
                columns: Vec::new(),
                // A view whose definition is hidden from this account is not followed.
                definition: view.then(|| def.clone().unwrap_or_default()),
                database: Some(schema),
            });
        }
        if let Some(r) = catalog.relations.last_mut() {
            r.columns.push((attnum, col.to_lowercase()));
        }
    }
    let functions = query_rows(
        stream,
        buf,
        capabilities,
        "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION'",
        MAX_COLUMNS,
        timeout,
    )
    .await?;
    for f in functions {
        if let Some(Some(name)) = f.first() {
            catalog.user_functions.insert(name.to_lowercase());
        }
    }
    Ok(catalog)
}

/// Runs one query of Postern's own on the login connection (before anything is relayed)
/// and reads its rows as text, at most `max_rows` of them.
async fn query_rows(
    stream: &mut Stream,
    buf: &mut BytesMut,
    capabilities: u32,
    sql: &str,
    max_rows: usize,
    timeout: Duration,
) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
    tokio::time::timeout(
        timeout,
        query_rows_inner(stream, buf, capabilities, sql, max_rows),
    )
    .await
    .map_err(|_| UpstreamError::Timeout(timeout))?
}

async fn query_rows_inner(
    stream: &mut Stream,
    buf: &mut BytesMut,
    capabilities: u32,
    sql: &str,
    max_rows: usize,
) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
    const MAX: usize = 16 << 20;
    let bad = |what: &str| UpstreamError::Protocol(format!("Postern's own query: {what}"));
    let mut q = vec![codec::COM_QUERY];
    q.extend_from_slice(sql.as_bytes());
    write_packet(stream, 0, &q).await?;
    let (p, _, _) = read_packet(stream, buf, MAX).await?;
    if p.first() == Some(&0xff) {
        return Err(server_error(&p));
    }
    let n = codec::Reader::new(&p, "column count")
        .lenenc()
        .map_err(|e| bad(&e.to_string()))?
        .ok_or_else(|| bad("column count"))?;
    for _ in 0..n {
        read_packet(stream, buf, MAX).await?;
    }
    let deprecate_eof = capabilities & codec::CLIENT_DEPRECATE_EOF != 0;
    if !deprecate_eof {
        read_packet(stream, buf, MAX).await?;
    }
    let mut rows = Vec::new();
    loop {
        let (row, _, _) = read_packet(stream, buf, MAX).await?;
        if row.first() == Some(&0xff) {
            return Err(server_error(&row));
        }
        if codec::is_eof(&row, deprecate_eof) {
            break;
        }
        if rows.len() >= max_rows {
            return Err(bad(&format!("more than {max_rows} rows")));
        }
        let mut r = codec::Reader::new(&row, "row");
        let mut values = Vec::new();
        for _ in 0..n {
            if r.rest().first() == Some(&0xfb) {
                r.u8().map_err(|e| bad(&e.to_string()))?;
                values.push(None);
            } else {
                let v = r.lenenc_bytes().map_err(|e| bad(&e.to_string()))?;
                values.push(Some(String::from_utf8_lossy(v).into_owned()));
            }
        }
        rows.push(values);
    }
    Ok(rows)
}
