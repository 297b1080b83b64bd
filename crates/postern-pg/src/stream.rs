//! The client and upstream stream: plain TCP or TLS (shared with the other protocols).

pub use postern_net::Stream as PgStream;
