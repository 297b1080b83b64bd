//! Postern's persistent store: an embedded SQLite database, schema managed by migrations.
//!
//! It holds the resources an admin manages (datasources, credentials, masking policies,
//! roles, users), API tokens and the audit log. Secrets never leave it in a readable form
//! except through [`Store::upstream_credential`], which the proxies call to log in upstream:
//!
//! * credential passwords are sealed with the master key (context `credential:<name>`);
//! * user passwords are kept only as an argon2id hash, a SCRAM-SHA-256 verifier and a MySQL
//!   verifier (sealed, context `mysql-verifier:<user>`);
//! * API tokens are kept only as their SHA-256.
//!
//! Every multi-statement write runs in one `BEGIN IMMEDIATE` transaction, so concurrent
//! writers queue on SQLite's lock (bounded by the busy timeout) instead of failing halfway.

mod admin;
mod apply;
mod audit;
mod certs;
mod credentials;
mod datasources;
mod error;
mod masking;
mod mfa;
mod roles;
mod ssh;
mod tokens;
mod users;

#[cfg(test)]
mod testutil;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use postern_vault::MasterKey;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

pub use audit::{AuditFilter, StoreAuditSink};
pub use certs::CertRecord;
pub use credentials::UpstreamCredential;
pub use datasources::allow_list_form;
pub use error::StoreError;
pub use mfa::MfaStatus;
pub use ssh::{SshAccess, SshRecording, SshRights, SshSecret, SshTarget};
pub use tokens::TokenScope;
pub use users::LoginInfo;

/// How long a connection waits for SQLite's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the pool (readers run in parallel under WAL; writers take turns).
const MAX_CONNECTIONS: u32 = 8;

/// The store. Cheap to clone: clones share one connection pool and the master key.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// How the pool connects; the audit sink opens its own connection with these.
    opts: SqliteConnectOptions,
    key: Arc<MasterKey>,
    /// Bumped after every committed change to resources (see [`Store::policy_epoch`]).
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// The key of keyed-hash masking on datasource `alias`: derived from the master key,
    /// so masked values stay the same across sessions and restarts.
    pub fn masking_key(&self, alias: &str) -> zeroize::Zeroizing<[u8; 32]> {
        self.key.derive(&format!("masking-hash:{alias}"))
    }

    /// Opens (creating if needed, readable by its owner only) the SQLite file at `path`,
    /// with WAL journaling, foreign keys on and `synchronous=NORMAL`, and applies pending
    /// migrations.
    pub async fn open(path: &Path, key: Arc<MasterKey>) -> Result<Store, StoreError> {
        create_private_file(path)?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!().run(&pool).await.map_err(|e| {
            StoreError::Internal(format!(
                "cannot migrate the store at {}: {e} (is it from a newer Postern version?)",
                path.display()
            ))
        })?;
        Ok(Store {
            pool,
            opts,
            key,
            epoch: Arc::default(),
        })
    }

    /// A counter bumped after every committed change to users, roles, masking policies,
    /// credentials or datasources: live sessions compare it (a relaxed atomic load per
    /// statement) to learn that their policy or access may have changed.
    pub fn policy_epoch(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.epoch.clone()
    }

    fn changed(&self) {
        self.epoch
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// A write transaction that holds SQLite's write lock from its first statement, so a
    /// read-then-write sequence cannot fail on a concurrent writer.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Creates `path` with mode 0600 when it does not exist yet, so the database (and the WAL
/// and shared-memory files SQLite derives from it, which copy its mode) is private.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Internal(format!(
            "cannot create the store file {}: {e} (check that its directory exists and is writable)",
            path.display()
        ))),
    }
}

/// Formats a UTC time like audit events do: RFC 3339 with microseconds, sortable as text.
fn fmt_ts(t: time::OffsetDateTime) -> String {
    postern_audit::format_ts(t)
}

/// The current UTC time, formatted by [`fmt_ts`].
fn now() -> String {
    fmt_ts(time::OffsetDateTime::now_utc())
}

/// Sorted, de-duplicated copy of a list of names (set semantics for role/credential lists).
fn name_set(names: &[String]) -> Vec<String> {
    let mut v = names.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Serializes a view for the API.
fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(v).map_err(|e| StoreError::Internal(format!("cannot serialize: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::open_temp;

    #[tokio::test]
    async fn open_creates_private_file_and_reopens() {
        let (dir, store) = open_temp().await;
        let path = dir.path().join("postern.db");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            store.apply(&crate::testutil::sample_doc()).await.unwrap();
            for suffix in ["", "-wal", "-shm"] {
                let p = dir.path().join(format!("postern.db{suffix}"));
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
        }
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        store.pool.close().await;
        // Re-opening applies no migration twice.
        let again = Store::open(&path, Arc::new(MasterKey::generate())).await;
        assert!(again.is_ok());
    }

    #[test]
    fn ts_format_sorts() {
        let a = fmt_ts(time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(a, "1970-01-01T00:00:00.000000Z");
        assert!(now() > a);
        assert_eq!(now().len(), 27);
    }
}
