//! Reading and writing whole packets during the connection phase (the relay streams instead).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{complete_packet, join_payload, put_packet, CodecError};

/// Why a packet could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// The peer sent something that is not a valid packet.
    #[error("{0}")]
    Codec(#[from] CodecError),
}

/// Reads one logical packet of at most `max` payload bytes: (payload, first sequence id,
/// last sequence id). Bytes after it stay in `buf`.
pub async fn read_packet<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(BytesMut, u8, u8), ReadError> {
    loop {
        if let Some((total, _, first, last)) = complete_packet(buf, max)? {
            let wire = buf.split_to(total);
            return Ok((join_payload(&wire), first, last));
        }
        buf.reserve(4096);
        if s.read_buf(buf).await? == 0 {
            return Err(ReadError::Eof);
        }
    }
}

/// Reads one physical packet of at most `max` bytes without reading past it: a client's
/// first packet, which may be an SSLRequest followed at once by the TLS handshake (bytes
/// that belong to TLS, not to this reader). Returns (payload, sequence id).
pub async fn read_packet_exact<S: AsyncRead + Unpin>(
    s: &mut S,
    max: usize,
) -> Result<(BytesMut, u8), ReadError> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await.map_err(eof)?;
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    if len > max {
        return Err(CodecError::TooLong(len, max).into());
    }
    let mut p = BytesMut::zeroed(len);
    s.read_exact(&mut p).await.map_err(eof)?;
    Ok((p, h[3]))
}

fn eof(e: std::io::Error) -> ReadError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ReadError::Eof
    } else {
        ReadError::Io(e)
    }
}

/// Writes `payload` as packets starting at `seq` and flushes; returns the next sequence id.
pub async fn write_packet<S: AsyncWrite + Unpin>(
    s: &mut S,
    seq: u8,
    payload: &[u8],
) -> std::io::Result<u8> {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    let next = put_packet(&mut out, seq, payload);
    s.write_all(&out).await?;
    s.flush().await?;
    Ok(next)
}
