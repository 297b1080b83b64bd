//! The store's errors. Each message says what to do about it; none carries a secret.

use postern_core::Kind;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named resource does not exist.
    #[error("{kind} {name} does not exist; list them with `postern get {}`", kind.plural())]
    NotFound {
        /// Resource kind.
        kind: Kind,
        /// Resource name.
        name: String,
    },
    /// The request is not acceptable as given (bad name, bad reference, weak password…).
    /// The message names the offending thing and the fix.
    #[error("{0}")]
    Invalid(String),
    /// The request contradicts what is stored (e.g. deleting a datasource still in use).
    #[error("{0}")]
    Conflict(String),
    /// The database failed (I/O, locking, migration).
    #[error("store database error: {0} (check that the data directory is writable and the disk is not full)")]
    Db(#[from] sqlx::Error),
    /// A sealed secret could not be opened.
    #[error("{0}")]
    Vault(#[from] postern_vault::VaultError),
    /// Something that should not happen: stored data Postern cannot read, or a background
    /// task that died. The message says which.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn not_found(kind: Kind, name: &str) -> Self {
        StoreError::NotFound {
            kind,
            name: name.to_string(),
        }
    }

    /// Stored data that does not parse.
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        StoreError::Internal(format!(
            "{what} in the store is unreadable (was the database edited by hand?)"
        ))
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Internal(format!("a password hashing task failed: {e}"))
    }
}

impl From<postern_auth::PasswordError> for StoreError {
    fn from(e: postern_auth::PasswordError) -> Self {
        match e {
            postern_auth::PasswordError::Hash => StoreError::Internal(e.to_string()),
            other => StoreError::Invalid(other.to_string()),
        }
    }
}
