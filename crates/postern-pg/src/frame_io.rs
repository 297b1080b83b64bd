//! Reading whole messages during the handshakes (the relay streams instead).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::codec::{complete_frame, first_packet_len, CodecError};

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// The peer sent something that is not a valid message.
    #[error("{0}")]
    Codec(#[from] CodecError),
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Result<(), ReadError> {
    buf.reserve(4096);
    if s.read_buf(buf).await? == 0 {
        return Err(ReadError::Eof);
    }
    Ok(())
}

/// Reads one typed message of at most `max` bytes; returns (type, whole message).
/// Bytes after it stay in `buf`.
pub async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(u8, BytesMut), ReadError> {
    loop {
        if let Some((ty, total)) = complete_frame(buf, max)? {
            return Ok((ty, buf.split_to(total)));
        }
        fill(s, buf).await?;
    }
}

/// Reads the untyped first packet of a client (startup, SSL/GSS/cancel request).
pub async fn read_first_packet<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<BytesMut, ReadError> {
    loop {
        if let Some(total) = first_packet_len(buf)? {
            return Ok(buf.split_to(total));
        }
        fill(s, buf).await?;
    }
}
