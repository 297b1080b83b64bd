//! The MySQL / MariaDB front door: `codec` (packets, no I/O), `tracker` (where each
//! response ends and what it said, no I/O), `io` (whole packets during the connection
//! phase), `gate` (every statement judged by the shared policy, no I/O), `masker` (masked
//! values rewritten in result rows, no I/O), `upstream` (login to the real server with the
//! stored credential, Postern's own catalog queries), `session` (the person's login through
//! the shared login flow, the grant, the audited relay), `proxy` (the listener), `probe` (a
//! session's masking for `policy check`).

pub mod codec;
pub mod gate;
pub mod io;
pub mod masker;
pub mod probe;
mod proxy;
mod session;
pub mod tracker;
pub mod upstream;

pub use proxy::{MysqlConfig, MysqlProxy};
