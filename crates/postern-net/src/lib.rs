//! Transport shared by the wire-protocol crates (PostgreSQL, MySQL): [`Stream`], a TCP
//! stream that may have been upgraded to TLS on either side of the proxy, and
//! [`upstream_tls_config`], the rustls client settings for a datasource's TLS mode.

mod stream;
mod tls;

pub use stream::Stream;
pub use tls::upstream_tls_config;
