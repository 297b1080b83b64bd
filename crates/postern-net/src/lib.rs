//! Transport shared by the wire-protocol crates (PostgreSQL, MySQL): [`serve`], the accept
//! loop with its connection limit and graceful shutdown; [`Stream`], a TCP stream that may
//! have been upgraded to TLS on either side of the proxy; [`upstream_tls_config`], the rustls
//! client settings for a datasource's TLS mode; [`linger_close`].

mod listener;
mod stream;
mod tls;

pub use listener::serve;
pub use stream::Stream;
pub use tls::upstream_tls_config;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Ends a connection after Postern's last word (an error saying why the session ends):
/// closes the sending side, then reads and drops what the client still sends, for up to
/// `wait`. Closing a socket with unread input makes the kernel reset the connection, and a
/// reset may reach the client before it has read that last error.
pub async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, wait: std::time::Duration) {
    let _ = s.shutdown().await;
    let drain = async {
        let mut scratch = [0u8; 4096];
        while let Ok(n) = s.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(wait, drain).await;
}
