//! Authentication primitives shared by every protocol: argon2id password hashes and the
//! SCRAM-SHA-256 server and client sides, MySQL's native and caching_sha2 exchanges. No I/O here; callers run the slow hashes off async threads.

pub mod mysql;
pub mod password;
pub mod scram;
pub mod scram_client;

pub use mysql::MysqlVerifier;
pub use password::{check_password_policy, hash_password, verify_password, PasswordError};
pub use scram::{ScramError, ScramServer, ScramVerifier};
pub use scram_client::{salted_password, SaltedPasswordCache, ScramClient, ServerParams};
