//! MySQL packets, free of I/O: framing (3-byte length, sequence id, 16 MiB continuation),
//! length-encoded integers and strings, and the packets of the connection phase and of
//! command responses that Postern reads or writes. Every length is checked against the
//! bytes present before it is used.

use bytes::{BufMut, BytesMut};

/// Largest payload of one physical packet; a payload of exactly this size continues in the
/// next packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Longest connection-phase packet Postern accepts (handshake response, auth data).
pub const MAX_HANDSHAKE_PACKET: usize = 64 * 1024;

// Capability flags.
pub const CLIENT_LONG_PASSWORD: u32 = 1;
pub const CLIENT_FOUND_ROWS: u32 = 1 << 1;
pub const CLIENT_LONG_FLAG: u32 = 1 << 2;
pub const CLIENT_CONNECT_WITH_DB: u32 = 1 << 3;
pub const CLIENT_NO_SCHEMA: u32 = 1 << 4;
pub const CLIENT_COMPRESS: u32 = 1 << 5;
pub const CLIENT_ODBC: u32 = 1 << 6;
pub const CLIENT_LOCAL_FILES: u32 = 1 << 7;
pub const CLIENT_IGNORE_SPACE: u32 = 1 << 8;
pub const CLIENT_PROTOCOL_41: u32 = 1 << 9;
pub const CLIENT_INTERACTIVE: u32 = 1 << 10;
pub const CLIENT_SSL: u32 = 1 << 11;
pub const CLIENT_IGNORE_SIGPIPE: u32 = 1 << 12;
pub const CLIENT_TRANSACTIONS: u32 = 1 << 13;
pub const CLIENT_RESERVED: u32 = 1 << 14;
pub const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
pub const CLIENT_MULTI_STATEMENTS: u32 = 1 << 16;
pub const CLIENT_MULTI_RESULTS: u32 = 1 << 17;
pub const CLIENT_PS_MULTI_RESULTS: u32 = 1 << 18;
pub const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
pub const CLIENT_CONNECT_ATTRS: u32 = 1 << 20;
pub const CLIENT_PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
pub const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
pub const CLIENT_SESSION_TRACK: u32 = 1 << 23;
pub const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;

/// What Postern offers clients (and passes on upstream, intersected with what the client
/// and the server have). Not offered: compression (the relay reads packets), LOCAL INFILE
/// (the client would send files at the server's request), NO_SCHEMA (the server would read
/// `db.table` as `table` of the current database, not the table Postern judged), query
/// attributes, zstd.
pub const OFFERED: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_ODBC
    | CLIENT_IGNORE_SPACE
    | CLIENT_PROTOCOL_41
    | CLIENT_INTERACTIVE
    | CLIENT_IGNORE_SIGPIPE
    | CLIENT_TRANSACTIONS
    | CLIENT_RESERVED
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_DATA
    | CLIENT_SESSION_TRACK
    | CLIENT_DEPRECATE_EOF;

/// Capabilities whose presence changes how responses are framed: client and upstream must
/// agree on them, or the relay would pass on packets the client cannot read.
pub const FRAMING: u32 = CLIENT_PROTOCOL_41 | CLIENT_DEPRECATE_EOF | CLIENT_SESSION_TRACK;

// Server status flags.
pub const SERVER_STATUS_IN_TRANS: u16 = 1;
pub const SERVER_STATUS_AUTOCOMMIT: u16 = 2;
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 8;

// Commands.
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_KILL: u8 = 0x0c;
pub const COM_PING: u8 = 0x0e;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1a;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_RESET_CONNECTION: u8 = 0x1f;

/// The auth plugins Postern speaks.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";
pub const CLEAR_PASSWORD: &str = "mysql_clear_password";

/// A packet that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A declared length larger than Postern accepts here.
    #[error("packet of {0} bytes is larger than allowed ({1})")]
    TooLong(usize, usize),
    /// A field runs past the end of its packet, or a value is invalid.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A sequence id other than the expected one.
    #[error("packet out of order (sequence id {got}, expected {want})")]
    Sequence { got: u8, want: u8 },
}

/// Header of a physical packet at the start of `buf`: (payload length, sequence id).
pub fn header(buf: &[u8]) -> Option<(usize, u8)> {
    if buf.len() < 4 {
        return None;
    }
    let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
    Some((len, buf[3]))
}

/// If `buf` starts with a complete logical packet (physical packets joined while their
/// payload is 16 MiB - 1), returns (total bytes on the wire, payload length, first
/// sequence id, last sequence id). Errors when the payload would exceed `max`.
pub fn complete_packet(
    buf: &[u8],
    max: usize,
) -> Result<Option<(usize, usize, u8, u8)>, CodecError> {
    let mut at = 0;
    let mut payload = 0usize;
    let mut first = None;
    loop {
        let Some((len, seq)) = header(&buf[at..]) else {
            return Ok(None);
        };
        payload += len;
        if payload > max {
            return Err(CodecError::TooLong(payload, max));
        }
        first.get_or_insert(seq);
        if buf.len() < at + 4 + len {
            return Ok(None);
        }
        at += 4 + len;
        if len < MAX_PAYLOAD {
            return Ok(Some((at, payload, first.unwrap_or(seq), seq)));
        }
    }
}

/// Joins the payloads of a complete logical packet (`wire` as found by [`complete_packet`]).
pub fn join_payload(wire: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(wire.len());
    let mut at = 0;
    while let Some((len, _)) = header(&wire[at..]) {
        let end = (at + 4 + len).min(wire.len());
        out.extend_from_slice(&wire[at + 4..end]);
        at = end;
        if len < MAX_PAYLOAD {
            break;
        }
    }
    out
}

/// Appends `payload` as packets starting at sequence id `seq` (split at 16 MiB - 1, with an
/// empty packet after an exact multiple); returns the next sequence id.
pub fn put_packet(out: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        out.reserve(4 + n);
        out.put_uint_le(n as u64, 3);
        out.put_u8(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// A cursor over a payload that never reads past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, naming it `what` in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }
    fn bad(&self) -> CodecError {
        CodecError::Malformed(self.what)
    }
    /// Bytes left.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(self.bad());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A NUL-terminated string (without the NUL).
    pub fn cstr(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.bad())?;
        let s = &self.buf[..n];
        self.buf = &self.buf[n + 1..];
        Ok(s)
    }
    /// A NUL-terminated string, or the rest when there is no NUL (some clients omit the last
    /// one).
    pub fn cstr_or_rest(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(n) => {
                let s = &self.buf[..n];
                self.buf = &self.buf[n + 1..];
                s
            }
            None => std::mem::take(&mut self.buf),
        }
    }
    /// A length-encoded integer (`None` for the NULL marker 0xFB).
    pub fn lenenc(&mut self) -> Result<Option<u64>, CodecError> {
        let first = self.u8()?;
        Ok(Some(match first {
            0xfb => return Ok(None),
            0xfc => u64::from(self.u16()?),
            0xfd => {
                let b = self.take(3)?;
                u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16
            }
            0xfe => {
                let b = self.take(8)?;
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
            0xff => return Err(self.bad()),
            n => u64::from(n),
        }))
    }
    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.lenenc()?.ok_or_else(|| self.bad())?;
        let n = usize::try_from(n).map_err(|_| self.bad())?;
        self.take(n)
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc(out: &mut BytesMut, n: u64) {
    match n {
        0..=250 => out.put_u8(n as u8),
        251..=0xffff => {
            out.put_u8(0xfc);
            out.put_u16_le(n as u16);
        }
        0x1_0000..=0xff_ffff => {
            out.put_u8(0xfd);
            out.put_uint_le(n, 3);
        }
        _ => {
            out.put_u8(0xfe);
            out.put_u64_le(n);
        }
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_bytes(out: &mut BytesMut, b: &[u8]) {
    put_lenenc(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The server greeting Postern sends (HandshakeV10 payload).
pub fn greeting(
    version: &str,
    connection_id: u32,
    nonce: &[u8; 20],
    capabilities: u32,
    plugin: &str,
) -> BytesMut {
    let mut p = BytesMut::with_capacity(96 + version.len());
    p.put_u8(10);
    p.extend_from_slice(version.as_bytes());
    p.put_u8(0);
    p.put_u32_le(connection_id);
    p.extend_from_slice(&nonce[..8]);
    p.put_u8(0);
    p.put_u16_le(capabilities as u16);
    p.put_u8(45); // utf8mb4_general_ci
    p.put_u16_le(SERVER_STATUS_AUTOCOMMIT);
    p.put_u16_le((capabilities >> 16) as u16);
    p.put_u8(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&nonce[8..]);
    p.put_u8(0);
    p.extend_from_slice(plugin.as_bytes());
    p.put_u8(0);
    p
}

/// The greeting of an upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: String,
    pub connection_id: u32,
    pub nonce: Vec<u8>,
    pub capabilities: u32,
    pub charset: u8,
    pub plugin: String,
}

/// Reads an upstream greeting (an ERR packet instead is reported by the caller).
pub fn parse_greeting(payload: &[u8]) -> Result<Greeting, CodecError> {
    let mut r = Reader::new(payload, "server greeting");
    if r.u8()? != 10 {
        return Err(CodecError::Malformed(
            "server greeting (protocol version is not 10)",
        ));
    }
    let version = String::from_utf8_lossy(r.cstr()?).into_owned();
    let connection_id = r.u32()?;
    let mut nonce = r.take(8)?.to_vec();
    r.u8()?;
    let low = u32::from(r.u16()?);
    let mut g = Greeting {
        version,
        connection_id,
        nonce: Vec::new(),
        capabilities: low,
        charset: 0,
        plugin: NATIVE_PASSWORD.into(),
    };
    if r.is_empty() {
        g.nonce = nonce;
        return Ok(g);
    }
    g.charset = r.u8()?;
    r.u16()?;
    g.capabilities |= u32::from(r.u16()?) << 16;
    let data_len = usize::from(r.u8()?);
    r.take(10)?;
    if g.capabilities & CLIENT_SECURE_CONNECTION != 0 {
        let n = data_len.saturating_sub(8).max(13);
        let part2 = r.take(n.min(r.rest().len()))?;
        // The second part ends with a NUL that is not part of the nonce.
        let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
        nonce.extend_from_slice(part2);
    }
    if g.capabilities & CLIENT_PLUGIN_AUTH != 0 {
        g.plugin = String::from_utf8_lossy(r.cstr_or_rest()).into_owned();
    }
    g.nonce = nonce;
    Ok(g)
}

/// A client's HandshakeResponse41.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: String,
    pub auth: Vec<u8>,
    pub database: Option<String>,
    pub plugin: Option<String>,
    /// Connection attributes (program name, client version…), for the audit trail.
    pub attrs: Vec<(String, String)>,
}

/// Whether a client's first packet is an SSLRequest (the short form of the response that
/// asks for TLS before anything else is said).
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == 32
        && u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) & CLIENT_SSL != 0
}

/// Reads a HandshakeResponse41 (protocol 4.1 clients only).
pub fn parse_handshake_response(payload: &[u8]) -> Result<HandshakeResponse, CodecError> {
    let mut r = Reader::new(payload, "handshake response");
    let capabilities = r.u32()?;
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Err(CodecError::Malformed(
            "handshake response (clients older than protocol 4.1 are not supported)",
        ));
    }
    let max_packet = r.u32()?;
    let charset = r.u8()?;
    r.take(23)?;
    let user = String::from_utf8(r.cstr()?.to_vec())
        .map_err(|_| CodecError::Malformed("handshake response (user name is not UTF-8)"))?;
    let auth = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_DATA != 0 {
        r.lenenc_bytes()?.to_vec()
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        let n = usize::from(r.u8()?);
        r.take(n)?.to_vec()
    } else {
        r.cstr()?.to_vec()
    };
    let mut h = HandshakeResponse {
        capabilities,
        max_packet,
        charset,
        user,
        auth,
        ..Default::default()
    };
    if capabilities & CLIENT_CONNECT_WITH_DB != 0 && !r.is_empty() {
        let db = r.cstr_or_rest();
        if !db.is_empty() {
            h.database = Some(String::from_utf8(db.to_vec()).map_err(|_| {
                CodecError::Malformed("handshake response (database name is not UTF-8)")
            })?);
        }
    }
    if capabilities & CLIENT_PLUGIN_AUTH != 0 && !r.is_empty() {
        h.plugin = Some(String::from_utf8_lossy(r.cstr_or_rest()).into_owned());
    }
    if capabilities & CLIENT_CONNECT_ATTRS != 0 && !r.is_empty() {
        let all = r.lenenc_bytes()?;
        let mut a = Reader::new(all, "connection attributes");
        while !a.is_empty() && h.attrs.len() < 64 {
            let k = String::from_utf8_lossy(a.lenenc_bytes()?).into_owned();
            let v = String::from_utf8_lossy(a.lenenc_bytes()?).into_owned();
            h.attrs.push((k, v));
        }
    }
    Ok(h)
}

/// Builds the HandshakeResponse41 Postern sends upstream.
pub fn handshake_response(
    capabilities: u32,
    charset: u8,
    user: &str,
    auth: &[u8],
    database: Option<&str>,
    plugin: &str,
) -> BytesMut {
    let mut p = BytesMut::with_capacity(128 + user.len());
    ssl_request_into(&mut p, capabilities, charset);
    p.extend_from_slice(user.as_bytes());
    p.put_u8(0);
    if capabilities & CLIENT_PLUGIN_AUTH_LENENC_DATA != 0 {
        put_lenenc_bytes(&mut p, auth);
    } else {
        p.put_u8(auth.len() as u8);
        p.extend_from_slice(auth);
    }
    if capabilities & CLIENT_CONNECT_WITH_DB != 0 {
        p.extend_from_slice(database.unwrap_or("").as_bytes());
        p.put_u8(0);
    }
    if capabilities & CLIENT_PLUGIN_AUTH != 0 {
        p.extend_from_slice(plugin.as_bytes());
        p.put_u8(0);
    }
    if capabilities & CLIENT_CONNECT_ATTRS != 0 {
        let mut attrs = BytesMut::new();
        put_lenenc_bytes(&mut attrs, b"program_name");
        put_lenenc_bytes(&mut attrs, b"postern");
        put_lenenc_bytes(&mut p, &attrs);
    }
    p
}

/// The SSLRequest payload (the first 32 bytes of a handshake response).
pub fn ssl_request(capabilities: u32, charset: u8) -> BytesMut {
    let mut p = BytesMut::with_capacity(32);
    ssl_request_into(&mut p, capabilities, charset);
    p
}

fn ssl_request_into(p: &mut BytesMut, capabilities: u32, charset: u8) {
    p.put_u32_le(capabilities);
    p.put_u32_le(MAX_PAYLOAD as u32 + 1);
    p.put_u8(charset);
    p.extend_from_slice(&[0; 23]);
}

/// An OK packet payload.
pub fn ok(affected: u64, status: u16, info: &str) -> BytesMut {
    let mut p = BytesMut::with_capacity(16 + info.len());
    p.put_u8(0);
    put_lenenc(&mut p, affected);
    put_lenenc(&mut p, 0);
    p.put_u16_le(status);
    p.put_u16_le(0);
    p.extend_from_slice(info.as_bytes());
    p
}

/// An ERR packet payload (protocol 4.1 form with SQLSTATE).
pub fn err(code: u16, sqlstate: &str, message: &str) -> BytesMut {
    let mut p = BytesMut::with_capacity(16 + message.len());
    p.put_u8(0xff);
    p.put_u16_le(code);
    p.put_u8(b'#');
    let mut state = [b'H', b'Y', b'0', b'0', b'0'];
    for (i, b) in sqlstate.bytes().take(5).enumerate() {
        state[i] = b;
    }
    p.extend_from_slice(&state);
    p.extend_from_slice(message.as_bytes());
    p
}

/// An AuthSwitchRequest payload.
pub fn auth_switch(plugin: &str, data: &[u8]) -> BytesMut {
    let mut p = BytesMut::with_capacity(24 + plugin.len() + data.len());
    p.put_u8(0xfe);
    p.extend_from_slice(plugin.as_bytes());
    p.put_u8(0);
    p.extend_from_slice(data);
    p
}

/// A server error read from an ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

/// Reads an ERR packet payload (starting with 0xFF).
pub fn parse_err(payload: &[u8]) -> Result<ServerError, CodecError> {
    let mut r = Reader::new(payload, "ERR packet");
    if r.u8()? != 0xff {
        return Err(CodecError::Malformed("ERR packet"));
    }
    let code = r.u16()?;
    let mut sqlstate = String::new();
    if r.rest().first() == Some(&b'#') {
        r.u8()?;
        sqlstate = String::from_utf8_lossy(r.take(5)?).into_owned();
    }
    Ok(ServerError {
        code,
        sqlstate,
        message: String::from_utf8_lossy(r.rest()).into_owned(),
    })
}

/// What an OK (or DEPRECATE_EOF end-of-rows) packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OkInfo {
    pub affected: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

/// Reads an OK packet payload (header 0x00 or 0xFE).
pub fn parse_ok(payload: &[u8]) -> Result<OkInfo, CodecError> {
    let mut r = Reader::new(payload, "OK packet");
    r.u8()?;
    let affected = r.lenenc()?.unwrap_or(0);
    let last_insert_id = r.lenenc()?.unwrap_or(0);
    let status = r.u16()?;
    let warnings = r.u16()?;
    Ok(OkInfo {
        affected,
        last_insert_id,
        status,
        warnings,
    })
}

/// Reads a classic EOF packet payload (0xFE, fewer than 9 bytes): its status flags.
pub fn parse_eof(payload: &[u8]) -> Result<u16, CodecError> {
    let mut r = Reader::new(payload, "EOF packet");
    r.u8()?;
    r.u16()?;
    r.u16()
}

/// Whether a response packet is an EOF marker (classic EOF, or the OK packet that replaces it
/// under DEPRECATE_EOF) rather than a row that starts with 0xFE.
pub fn is_eof(payload: &[u8], deprecate_eof: bool) -> bool {
    payload.first() == Some(&0xfe)
        && if deprecate_eof {
            payload.len() < MAX_PAYLOAD
        } else {
            payload.len() < 9
        }
}

/// Longest parameter value kept for the audit trail (characters; longer ones are cut).
pub const MAX_PARAM_TEXT: usize = 1024;

/// Reads the parameter values of a COM_STMT_EXECUTE payload (starting with the command
/// byte) for a statement of `count` parameters, as text for the audit trail. `types` holds
/// the parameter types (type, flags) bound by an earlier execution and is updated when this
/// one binds new ones; `long_data` marks parameters sent with COM_STMT_SEND_LONG_DATA,
/// whose values are not in this packet.
pub fn execute_params(
    payload: &[u8],
    count: usize,
    types: &mut Vec<(u8, u8)>,
    long_data: &[bool],
) -> Result<Vec<Option<String>>, CodecError> {
    let mut r = Reader::new(payload, "COM_STMT_EXECUTE");
    r.take(1 + 4 + 1 + 4)?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let bitmap = r.take(count.div_ceil(8))?;
    if r.u8()? == 1 {
        types.clear();
        for _ in 0..count {
            let t = r.take(2)?;
            types.push((t[0], t[1]));
        }
    }
    if types.len() != count {
        return Err(CodecError::Malformed(
            "COM_STMT_EXECUTE (parameters without types)",
        ));
    }
    let mut out = Vec::with_capacity(count);
    for (i, &(ty, flags)) in types.iter().enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 || ty == 6 {
            out.push(None);
            continue;
        }
        if long_data.get(i).copied().unwrap_or(false) {
            out.push(Some("<long data>".into()));
            continue;
        }
        let unsigned = flags & 0x80 != 0;
        let v = match ty {
            1 => {
                let b = r.u8()?;
                if unsigned {
                    b.to_string()
                } else {
                    (b as i8).to_string()
                }
            }
            2 | 13 => {
                let v = r.u16()?;
                if unsigned {
                    v.to_string()
                } else {
                    (v as i16).to_string()
                }
            }
            3 | 9 => {
                let v = r.u32()?;
                if unsigned {
                    v.to_string()
                } else {
                    (v as i32).to_string()
                }
            }
            8 => {
                let b = r.take(8)?;
                let v = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                if unsigned {
                    v.to_string()
                } else {
                    (v as i64).to_string()
                }
            }
            4 => f32::from_le_bytes(r.u32()?.to_le_bytes()).to_string(),
            5 => {
                let b = r.take(8)?;
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]).to_string()
            }
            7 | 10 | 12 => {
                let n = usize::from(r.u8()?);
                datetime_text(r.take(n)?)
            }
            11 => {
                let n = usize::from(r.u8()?);
                time_text(r.take(n)?)
            }
            _ => value_text(r.lenenc_bytes()?),
        };
        out.push(Some(v));
    }
    Ok(out)
}

/// A string or blob value as audit text: UTF-8 as is, anything else as hex; cut at
/// [`MAX_PARAM_TEXT`].
fn value_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if s.chars().count() <= MAX_PARAM_TEXT => s.to_string(),
        Ok(s) => {
            let mut t: String = s.chars().take(MAX_PARAM_TEXT).collect();
            t.push('…');
            t
        }
        Err(_) => {
            let mut t = String::from("0x");
            for x in b.iter().take(MAX_PARAM_TEXT / 2) {
                t.push_str(&format!("{x:02x}"));
            }
            if b.len() > MAX_PARAM_TEXT / 2 {
                t.push('…');
            }
            t
        }
    }
}

/// A binary DATE / DATETIME / TIMESTAMP (0, 4, 7 or 11 bytes).
fn datetime_text(b: &[u8]) -> String {
    let g = |i: usize| b.get(i).copied().unwrap_or(0);
    let year = u16::from_le_bytes([g(0), g(1)]);
    let mut s = format!("{year:04}-{:02}-{:02}", g(2), g(3));
    if b.len() >= 7 {
        s.push_str(&format!(" {:02}:{:02}:{:02}", g(4), g(5), g(6)));
    }
    if b.len() >= 11 {
        let us = u32::from_le_bytes([g(7), g(8), g(9), g(10)]);
        s.push_str(&format!(".{us:06}"));
    }
    s
}

/// A binary TIME (0, 8 or 12 bytes).
fn time_text(b: &[u8]) -> String {
    let g = |i: usize| b.get(i).copied().unwrap_or(0);
    let days = u32::from_le_bytes([g(1), g(2), g(3), g(4)]);
    let hours = u64::from(days) * 24 + u64::from(g(5));
    let mut s = format!(
        "{}{hours:02}:{:02}:{:02}",
        if g(0) == 1 { "-" } else { "" },
        g(6),
        g(7)
    );
    if b.len() >= 12 {
        let us = u32::from_le_bytes([g(8), g(9), g(10), g(11)]);
        s.push_str(&format!(".{us:06}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn capabilities_that_change_what_the_server_reads_are_never_offered() {
        // NO_SCHEMA: `db.t` read as `t`; LOCAL_FILES: files sent at the server's request;
        // COMPRESS: packets the relay could not read.
        for cap in [
            CLIENT_NO_SCHEMA,
            CLIENT_LOCAL_FILES,
            CLIENT_COMPRESS,
            CLIENT_SSL,
        ] {
            assert_eq!(OFFERED & cap, 0, "{cap:#x}");
        }
    }

    #[test]
    fn greeting_round_trips() {
        let nonce = *b"abcdefghijklmnopqrst";
        let caps = OFFERED | CLIENT_SSL;
        let p = greeting("10.11.6-MariaDB", 42, &nonce, caps, CACHING_SHA2);
        let g = parse_greeting(&p).unwrap();
        assert_eq!(g.version, "10.11.6-MariaDB");
        assert_eq!(g.connection_id, 42);
        assert_eq!(g.nonce, nonce);
        assert_eq!(g.capabilities, caps);
        assert_eq!(g.plugin, CACHING_SHA2);
    }

    #[test]
    fn handshake_response_round_trips() {
        let caps = OFFERED & !CLIENT_CONNECT_ATTRS;
        let p = handshake_response(
            caps,
            45,
            "alice@shop",
            &[1, 2, 3],
            Some("shop"),
            NATIVE_PASSWORD,
        );
        let h = parse_handshake_response(&p).unwrap();
        assert_eq!(h.user, "alice@shop");
        assert_eq!(h.auth, vec![1, 2, 3]);
        assert_eq!(h.database.as_deref(), Some("shop"));
        assert_eq!(h.plugin.as_deref(), Some(NATIVE_PASSWORD));
        let with_attrs = handshake_response(OFFERED, 45, "bob", &[9; 20], None, CACHING_SHA2);
        let h = parse_handshake_response(&with_attrs).unwrap();
        assert_eq!(
            h.attrs,
            vec![("program_name".to_string(), "postern".to_string())]
        );
        assert!(!is_ssl_request(&with_attrs));
        assert!(is_ssl_request(&ssl_request(OFFERED | CLIENT_SSL, 45)));
    }

    #[test]
    fn truncated_handshake_responses_are_errors() {
        let p = handshake_response(OFFERED, 45, "alice", &[7; 32], Some("shop"), CACHING_SHA2);
        for n in 0..40 {
            assert!(parse_handshake_response(&p[..n]).is_err(), "prefix {n}");
        }
        // A giant auth length is refused, not allocated.
        let mut bad = BytesMut::new();
        ssl_request_into(&mut bad, OFFERED, 45);
        bad.extend_from_slice(b"u\0");
        bad.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(parse_handshake_response(&bad).is_err());
    }

    #[test]
    fn packets_split_at_16_mib_and_join_again() {
        let payload = vec![7u8; MAX_PAYLOAD * 2 + 5];
        let mut out = BytesMut::new();
        let next = put_packet(&mut out, 3, &payload);
        assert_eq!(next, 6);
        let (total, len, first, last) = complete_packet(&out, usize::MAX).unwrap().unwrap();
        assert_eq!((total, len, first, last), (out.len(), payload.len(), 3, 5));
        assert_eq!(&join_payload(&out)[..], &payload[..]);
        // An exact multiple ends with an empty packet.
        let mut out = BytesMut::new();
        assert_eq!(put_packet(&mut out, 0, &vec![1u8; MAX_PAYLOAD]), 2);
        assert_eq!(out.len(), MAX_PAYLOAD + 8);
        assert!(matches!(
            complete_packet(&out, 1000),
            Err(CodecError::TooLong(_, 1000))
        ));
        assert_eq!(
            complete_packet(&out[..out.len() - 1], usize::MAX).unwrap(),
            None
        );
    }

    #[test]
    fn err_and_ok_round_trip() {
        let e = parse_err(&err(1045, "28000", "Access denied")).unwrap();
        assert_eq!(
            (e.code, e.sqlstate.as_str(), e.message.as_str()),
            (1045, "28000", "Access denied")
        );
        let o = parse_ok(&ok(300, SERVER_MORE_RESULTS_EXISTS, "")).unwrap();
        assert_eq!((o.affected, o.status), (300, SERVER_MORE_RESULTS_EXISTS));
    }

    #[test]
    fn execute_parameters_as_text() {
        let mut p = vec![COM_STMT_EXECUTE];
        p.extend_from_slice(&7u32.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(0b0000_0100); // the third of five is NULL
        p.push(1);
        for t in [(8u8, 0u8), (253, 0), (6, 0), (12, 0), (1, 0x80)] {
            p.extend_from_slice(&[t.0, t.1]);
        }
        p.extend_from_slice(&(-5i64).to_le_bytes());
        p.extend_from_slice(&[3, b'c', b'a', b't']);
        p.extend_from_slice(&[7, 0xe8, 0x07, 11, 23, 13, 5, 9]);
        p.push(200);
        let mut types = Vec::new();
        let v = execute_params(&p, 5, &mut types, &[]).unwrap();
        assert_eq!(
            v,
            vec![
                Some("-5".into()),
                Some("cat".into()),
                None,
                Some("2024-11-23 13:05:09".into()),
                Some("200".into())
            ]
        );
        // A later execution without new types reuses them; long data is named, not read.
        let mut q = p[..11].to_vec();
        q.push(0);
        q.extend_from_slice(&9i64.to_le_bytes());
        q.extend_from_slice(&[7, 0xe8, 0x07, 1, 2, 3, 4, 5]);
        q.push(1);
        let v = execute_params(&q, 5, &mut types, &[false, true]).unwrap();
        assert_eq!(v[0].as_deref(), Some("9"));
        assert_eq!(v[1].as_deref(), Some("<long data>"));
        assert_eq!(v[4].as_deref(), Some("1"));
        // Truncated: an error, not a panic.
        assert!(execute_params(&p[..p.len() - 3], 5, &mut Vec::new(), &[]).is_err());
        assert!(execute_params(&q, 5, &mut Vec::new(), &[]).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = execute_params(&b, 3, &mut Vec::new(), &[]);
            let _ = parse_handshake_response(&b);
            let _ = parse_greeting(&b);
            let _ = parse_err(&b);
            let _ = parse_ok(&b);
            let _ = complete_packet(&b, 1 << 20);
        }

        #[test]
        fn lenenc_round_trips(n in any::<u64>()) {
            let mut out = BytesMut::new();
            put_lenenc(&mut out, n);
            prop_assert_eq!(Reader::new(&out, "x").lenenc().unwrap(), Some(n));
        }
    }
}
