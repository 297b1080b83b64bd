//! PostgreSQL front door of Postern.
//!
//! * [`codec`] — framing and the messages Postern builds or reads itself (pure, no I/O).
//! * [`gate`] — decides every statement before it goes upstream; refusals replaced (pure).
//! * [`tracker`] — follows statements through the relay for the audit trail (pure).
//! * [`relay`] — the zero-copy, write-coalescing bidirectional relay.
//! * [`upstream`] — logs in to the real database with the stored credential.
//! * `session` — one client: TLS, SCRAM, grant check, upstream login, audited relay.
//! * [`proxy`] — the listener.

pub mod cancel;
pub mod codec;
pub mod frame_io;
pub mod gate;
pub mod masker;
pub mod probe;
pub mod proxy;
pub mod relay;
mod session;
pub mod stream;
pub mod tracker;
pub mod upstream;

pub use proxy::{PgConfig, PgProxy};
