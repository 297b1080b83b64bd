//! PostgreSQL wire framing and the few messages Postern reads or writes itself.
//!
//! No I/O: functions look at byte slices and append to `BytesMut`. Every length read from
//! the wire is checked against a bound before anything is allocated for it.

use bytes::{BufMut, BytesMut};

/// Protocol version 3.0 as sent in a StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
/// Request code of SSLRequest.
pub const SSL_REQUEST: i32 = 80_877_103;
/// Request code of GSSENCRequest.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// Request code of CancelRequest.
pub const CANCEL_REQUEST: i32 = 80_877_102;
/// Largest startup packet accepted (PostgreSQL's own limit).
pub const MAX_STARTUP_LEN: usize = 10_000;
/// Largest message accepted during authentication.
pub const MAX_AUTH_MESSAGE: usize = 10_000;
/// Largest message accepted once the session runs (PostgreSQL's own limit: 1 GiB - 1).
pub const MAX_MESSAGE: usize = 0x3fff_ffff;

/// A framing or content error in what a peer sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// A length field is below its minimum or above the bound for this phase.
    #[error("invalid message length {len} (allowed {min}..={max})")]
    Length {
        /// Declared length.
        len: i64,
        /// Minimum.
        min: usize,
        /// Maximum.
        max: usize,
    },
    /// A message body does not follow its grammar.
    #[error("malformed {0} message")]
    Malformed(&'static str),
}

/// The first packet a client sends (it has no type byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstPacket {
    /// Asks for TLS.
    SslRequest,
    /// Asks for GSSAPI encryption (refused).
    GssEncRequest,
    /// Cancels a running query on another connection.
    Cancel {
        /// Process id the client was told.
        pid: i32,
        /// Secret key the client was told.
        secret: i32,
    },
    /// Starts a session.
    Startup {
        /// Protocol version requested.
        version: i32,
        /// Parameters in order (user, database, options, …).
        params: Vec<(String, String)>,
    },
}

/// If `buf` starts with a complete first packet, returns its total length.
pub fn first_packet_len(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as i64;
    if len < 8 || len as usize > MAX_STARTUP_LEN {
        return Err(CodecError::Length {
            len,
            min: 8,
            max: MAX_STARTUP_LEN,
        });
    }
    Ok((buf.len() >= len as usize).then_some(len as usize))
}

/// Parses a complete first packet (length prefix included).
pub fn parse_first_packet(pkt: &[u8]) -> Result<FirstPacket, CodecError> {
    if pkt.len() < 8 {
        return Err(CodecError::Malformed("startup"));
    }
    let code = i32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
    let body = &pkt[8..];
    match code {
        SSL_REQUEST if body.is_empty() => Ok(FirstPacket::SslRequest),
        GSSENC_REQUEST if body.is_empty() => Ok(FirstPacket::GssEncRequest),
        CANCEL_REQUEST if body.len() == 8 => Ok(FirstPacket::Cancel {
            pid: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            secret: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        }),
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => Err(CodecError::Malformed("request")),
        v if v >> 16 == 3 => {
            let mut params = Vec::new();
            let mut rest = body;
            loop {
                let (key, r) = cstr(rest).ok_or(CodecError::Malformed("startup"))?;
                if key.is_empty() {
                    if !r.is_empty() {
                        return Err(CodecError::Malformed("startup"));
                    }
                    break;
                }
                let (val, r) = cstr(r).ok_or(CodecError::Malformed("startup"))?;
                params.push((key.to_string(), val.to_string()));
                rest = r;
            }
            Ok(FirstPacket::Startup { version: v, params })
        }
        _ => Err(CodecError::Malformed(
            "startup (unsupported protocol version)",
        )),
    }
}

/// Splits a NUL-terminated UTF-8 string off the front of `b`.
pub fn cstr(b: &[u8]) -> Option<(&str, &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    let s = std::str::from_utf8(&b[..nul]).ok()?;
    Some((s, &b[nul + 1..]))
}

/// Splits a NUL-terminated string off the front of `b`, as bytes (no encoding assumed).
pub fn cstr_bytes(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    Some((&b[..nul], &b[nul + 1..]))
}

/// Whether text in this `client_encoding` means to the server's lexer what its bytes mean
/// as UTF-8. In the other encodings (LATIN1, SJIS…) the server converts the text first;
/// in some (SJIS, BIG5, GBK…) a `\` byte can even be half of a character.
pub fn encoding_reads_as_utf8(client_encoding: &str) -> bool {
    client_encoding.eq_ignore_ascii_case("UTF8")
        || client_encoding.eq_ignore_ascii_case("SQL_ASCII")
}

/// The header of a typed message: (type byte, total length including the type byte).
/// `None` when fewer than 5 bytes are available.
pub fn frame_header(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, CodecError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as i64;
    if len < 4 || len as usize > max {
        return Err(CodecError::Length { len, min: 4, max });
    }
    Ok(Some((buf[0], 1 + len as usize)))
}

/// If `buf` starts with a complete typed message, returns (type, body length, total length).
pub fn complete_frame(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, CodecError> {
    Ok(frame_header(buf, max)?.filter(|&(_, total)| buf.len() >= total))
}

fn begin(out: &mut BytesMut, ty: u8) -> usize {
    out.put_u8(ty);
    let at = out.len();
    out.put_i32(0);
    at
}

fn finish(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    put_cbytes(out, s.as_bytes());
}

fn put_cbytes(out: &mut BytesMut, s: &[u8]) {
    // A NUL inside would end the string early on the peer's side; drop it.
    for &b in s.iter().filter(|&&b| b != 0) {
        out.put_u8(b);
    }
    out.put_u8(0);
}

/// Severity of an ErrorResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The session ends.
    Fatal,
    /// The statement failed; the session goes on.
    Error,
}

/// Appends an ErrorResponse.
pub fn error_response(
    out: &mut BytesMut,
    severity: Severity,
    sqlstate: &str,
    message: &str,
    hint: Option<&str>,
) {
    let at = begin(out, b'E');
    let sev = match severity {
        Severity::Fatal => "FATAL",
        Severity::Error => "ERROR",
    };
    out.put_u8(b'S');
    put_cstr(out, sev);
    out.put_u8(b'V');
    put_cstr(out, sev);
    out.put_u8(b'C');
    put_cstr(out, sqlstate);
    out.put_u8(b'M');
    put_cstr(out, message);
    if let Some(h) = hint {
        out.put_u8(b'H');
        put_cstr(out, h);
    }
    out.put_u8(0);
    finish(out, at);
}

/// Appends a NoticeResponse (severity NOTICE, SQLSTATE 00000) with `message`.
pub fn notice_response(out: &mut BytesMut, message: &str) {
    let at = begin(out, b'N');
    for (field, value) in [
        (b'S', "NOTICE"),
        (b'V', "NOTICE"),
        (b'C', "00000"),
        (b'M', message),
    ] {
        out.put_u8(field);
        put_cstr(out, value);
    }
    out.put_u8(0);
    finish(out, at);
}

/// An ErrorResponse or NoticeResponse (`ty`, `body`) rewritten with `message` as its text
/// and without the fields that may quote data (detail, hint, context, internal query); its
/// severity, SQLSTATE, position and the names of the objects involved are kept. `None`
/// when the fields cannot be read.
pub fn rewrite_notice(ty: u8, body: &[u8], message: &str) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(body.len().min(512) + message.len() + 8);
    let at = begin(&mut out, ty);
    let mut rest = body;
    loop {
        let (&field, after) = rest.split_first()?;
        if field == 0 {
            break;
        }
        let (value, after) = cstr_bytes(after)?;
        rest = after;
        match field {
            b'M' => {
                out.put_u8(b'M');
                put_cstr(&mut out, message);
            }
            // Severity, SQLSTATE, position, source location, object names.
            b'S' | b'V' | b'C' | b'P' | b'F' | b'L' | b'R' | b's' | b't' | b'c' | b'd' | b'n' => {
                out.put_u8(field);
                out.put_slice(value);
                out.put_u8(0);
            }
            _ => {}
        }
    }
    out.put_u8(0);
    finish(&mut out, at);
    Some(out)
}

/// Appends an Authentication message with `code` and `data`.
pub fn authentication(out: &mut BytesMut, code: i32, data: &[u8]) {
    let at = begin(out, b'R');
    out.put_i32(code);
    out.put_slice(data);
    finish(out, at);
}

/// Appends BackendKeyData.
pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    let at = begin(out, b'K');
    out.put_i32(pid);
    out.put_i32(secret);
    finish(out, at);
}

/// Appends NegotiateProtocolVersion (newest minor supported, unrecognised options).
pub fn negotiate_protocol_version(out: &mut BytesMut, minor: i32, unrecognised: &[&str]) {
    let at = begin(out, b'v');
    out.put_i32(minor);
    out.put_i32(unrecognised.len() as i32);
    for o in unrecognised {
        put_cstr(out, o);
    }
    finish(out, at);
}

/// Appends a StartupMessage (protocol 3.0) with `params`.
pub fn startup_message(out: &mut BytesMut, params: &[(&str, &str)]) {
    let at = out.len();
    out.put_i32(0);
    out.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(out, k);
        put_cstr(out, v);
    }
    out.put_u8(0);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a simple Query.
pub fn query(out: &mut BytesMut, sql: &str) {
    let at = begin(out, b'Q');
    put_cstr(out, sql);
    finish(out, at);
}

/// Appends a Parse of `sql` under statement `name` (raw bytes, as the client sent them),
/// declaring no parameter types.
pub fn parse(out: &mut BytesMut, name: &[u8], sql: &str) {
    let at = begin(out, b'P');
    put_cbytes(out, name);
    put_cstr(out, sql);
    out.put_i16(0);
    finish(out, at);
}

/// Appends a Bind of `statement` to `portal` (raw bytes) without parameters, all results
/// in text.
pub fn bind(out: &mut BytesMut, portal: &[u8], statement: &str) {
    let at = begin(out, b'B');
    put_cbytes(out, portal);
    put_cstr(out, statement);
    out.put_i16(0);
    out.put_i16(0);
    out.put_i16(0);
    finish(out, at);
}

/// The columns of a text-format DataRow body (`None` for NULL); `None` when malformed.
pub fn data_row_texts(body: &[u8]) -> Option<Vec<Option<&str>>> {
    let n = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    let mut rest = &body[2..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        if len < 0 {
            out.push(None);
        } else {
            let len = len as usize;
            out.push(Some(std::str::from_utf8(rest.get(..len)?).ok()?));
            rest = &rest[len..];
        }
    }
    Some(out)
}

/// Appends a request packet (SSLRequest or CancelRequest) with an optional body.
pub fn request(out: &mut BytesMut, code: i32, body: &[i32]) {
    out.put_i32(8 + 4 * body.len() as i32);
    out.put_i32(code);
    for v in body {
        out.put_i32(*v);
    }
}

/// Appends a PasswordMessage / SASL message (`p`) with a raw body.
pub fn password_message(out: &mut BytesMut, body: &[u8]) {
    let at = begin(out, b'p');
    out.put_slice(body);
    finish(out, at);
}

/// Appends a SASLInitialResponse for `mechanism` with `data`.
pub fn sasl_initial_response(out: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(out, b'p');
    put_cstr(out, mechanism);
    out.put_i32(data.len() as i32);
    out.put_slice(data);
    finish(out, at);
}

/// Parses a SASLInitialResponse body into (mechanism, data).
pub fn parse_sasl_initial(body: &[u8]) -> Result<(&str, &[u8]), CodecError> {
    let (mech, rest) = cstr(body).ok_or(CodecError::Malformed("SASLInitialResponse"))?;
    if rest.len() < 4 {
        return Err(CodecError::Malformed("SASLInitialResponse"));
    }
    let n = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let data = &rest[4..];
    if n == -1 {
        return Ok((mech, &[]));
    }
    if n < 0 || n as usize != data.len() {
        return Err(CodecError::Malformed("SASLInitialResponse"));
    }
    Ok((mech, data))
}

/// The fields of an ErrorResponse / NoticeResponse body, as (code, value) pairs.
pub fn error_fields(body: &[u8]) -> impl Iterator<Item = (u8, &str)> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let (&code, r) = rest.split_first()?;
        if code == 0 {
            return None;
        }
        let (val, r) = cstr(r)?;
        rest = r;
        Some((code, val))
    })
}

/// SQLSTATE and message of an ErrorResponse body.
pub fn error_summary(body: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut msg = String::new();
    for (k, v) in error_fields(body) {
        match k {
            b'C' => code = v.to_string(),
            b'M' => msg = v.to_string(),
            _ => {}
        }
    }
    (code, msg)
}

/// Rows counted by a command tag: the last number of `SELECT 5`, `INSERT 0 5`, `COPY 5`…
pub fn rows_of_tag(tag: &str) -> Option<u64> {
    let last = tag.rsplit(' ').next()?;
    if tag.contains(' ') {
        last.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_roundtrip() {
        let mut b = BytesMut::new();
        startup_message(&mut b, &[("user", "alice"), ("database", "shop")]);
        let len = first_packet_len(&b).unwrap().unwrap();
        assert_eq!(len, b.len());
        match parse_first_packet(&b).unwrap() {
            FirstPacket::Startup { version, params } => {
                assert_eq!(version, PROTOCOL_3_0);
                assert_eq!(
                    params,
                    vec![
                        ("user".into(), "alice".into()),
                        ("database".into(), "shop".into())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests() {
        let mut b = BytesMut::new();
        request(&mut b, SSL_REQUEST, &[]);
        assert_eq!(parse_first_packet(&b).unwrap(), FirstPacket::SslRequest);
        b.clear();
        request(&mut b, CANCEL_REQUEST, &[7, -9]);
        assert_eq!(
            parse_first_packet(&b).unwrap(),
            FirstPacket::Cancel { pid: 7, secret: -9 }
        );
        b.clear();
        request(&mut b, GSSENC_REQUEST, &[]);
        assert_eq!(parse_first_packet(&b).unwrap(), FirstPacket::GssEncRequest);
    }

    #[test]
    fn bounds() {
        assert!(first_packet_len(&[0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(first_packet_len(&[0, 0, 0, 4]).is_err());
        assert_eq!(first_packet_len(&[0, 0, 0, 9, 1]).unwrap(), None);
        assert!(frame_header(&[b'Q', 0, 0, 0, 3], MAX_MESSAGE).is_err());
        assert!(frame_header(&[b'Q', 0x7f, 0xff, 0xff, 0xff], 100).is_err());
        assert_eq!(
            frame_header(&[b'Q', 0, 0, 0, 9], 100).unwrap(),
            Some((b'Q', 10))
        );
        assert_eq!(complete_frame(&[b'Q', 0, 0, 0, 9], 100).unwrap(), None);
        // Startup body without the final terminator.
        let pkt = [0, 0, 0, 13, 0, 3, 0, 0, b'u', 0, b'a', 0, b'x'];
        assert!(parse_first_packet(&pkt).is_err());
        let pkt = [0, 0, 0, 8, 0, 9, 0, 0];
        assert!(parse_first_packet(&pkt).is_err());
    }

    #[test]
    fn error_response_fields() {
        let mut b = BytesMut::new();
        error_response(
            &mut b,
            Severity::Error,
            "42501",
            "no role of alice",
            Some("ask"),
        );
        let (ty, total) = complete_frame(&b, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(ty, b'E');
        assert_eq!(total, b.len());
        let (code, msg) = error_summary(&b[5..]);
        assert_eq!(code, "42501");
        assert_eq!(msg, "no role of alice");
    }

    #[test]
    fn sasl_initial() {
        let mut b = BytesMut::new();
        sasl_initial_response(&mut b, "SCRAM-SHA-256", b"n,,n=,r=abc");
        let (mech, data) = parse_sasl_initial(&b[5..]).unwrap();
        assert_eq!(mech, "SCRAM-SHA-256");
        assert_eq!(data, b"n,,n=,r=abc");
        assert!(parse_sasl_initial(b"SCRAM\0\0\0\0\x09ab").is_err());
    }

    #[test]
    fn tags() {
        assert_eq!(rows_of_tag("SELECT 5"), Some(5));
        assert_eq!(rows_of_tag("INSERT 0 7"), Some(7));
        assert_eq!(rows_of_tag("BEGIN"), None);
        assert_eq!(rows_of_tag("CREATE TABLE"), None);
    }

    proptest::proptest! {
        #[test]
        fn first_packet_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(Some(n)) = first_packet_len(&data) {
                let _ = parse_first_packet(&data[..n]);
            }
            let _ = parse_first_packet(&data);
            let _ = frame_header(&data, 1000);
            let _ = error_summary(&data);
            let _ = parse_sasl_initial(&data);
        }
    }
}
