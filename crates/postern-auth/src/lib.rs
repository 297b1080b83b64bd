//! Authentication primitives shared by every protocol: argon2id password hashes and the
//! SCRAM-SHA-256 server side. No I/O here; callers run the slow hashes off async threads.

pub mod password;
pub mod scram;

pub use password::{check_password_policy, hash_password, verify_password, PasswordError};
pub use scram::{ScramError, ScramServer, ScramVerifier};
