//! Secrets at rest and Postern's own PKI.
//!
//! * [`MasterKey`] seals and opens secrets with AES-256-GCM. Every sealed value is bound to
//!   a context string (its "associated data", e.g. `credential:shop-rw`) so a ciphertext
//!   copied onto another row fails to open instead of revealing a different secret.
//! * [`pki`] creates Postern's certificate authority and the certificates it issues.
//! * [`ssh`] generates and checks the SSH keys of SSH logins and people.

pub mod key;
pub mod pki;
pub mod ssh;

pub use key::{MasterKey, VaultError, ENV_KEY};
