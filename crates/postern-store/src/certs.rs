//! Client certificates issued to people: the record that makes one acceptable, and its
//! revocation. The certificate itself (public) is not kept; its serial is the key.

use serde::Serialize;

use crate::{fmt_ts, now, Store, StoreError};

/// What the store knows of one issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertRecord {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// The person it was issued to.
    pub user: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Where the request came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// When it was revoked, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Who revoked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn record(r: Row) -> CertRecord {
    CertRecord {
        serial: r.0,
        user: r.1,
        issued_at: r.2,
        not_after: r.3,
        client_addr: r.4,
        revoked_at: r.5,
        revoked_by: r.6,
    }
}

const COLUMNS: &str =
    "serial, user, issued_at, not_after, client_addr, revoked_at, revoked_by FROM user_certs";

impl Store {
    /// Records a certificate issued to `user`; from now on it is accepted until `not_after`
    /// unless revoked. Records of certificates expired for a day are purged on the way.
    pub async fn record_cert(
        &self,
        serial: &str,
        user: &str,
        not_after: time::OffsetDateTime,
        client_addr: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let purge_before = fmt_ts(time::OffsetDateTime::now_utc() - time::Duration::days(1));
        sqlx::query("DELETE FROM user_certs WHERE not_after < ?")
            .bind(purge_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO user_certs (serial, user, issued_at, not_after, client_addr) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(serial)
        .bind(user)
        .bind(now())
        .bind(fmt_ts(not_after))
        .bind(client_addr)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The record of the certificate with `serial`, if the store issued it.
    pub async fn cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} WHERE serial = ?"))
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(record))
    }

    /// Certificates not yet expired (of `user`, or everyone's), newest first; revoked
    /// ones included.
    pub async fn list_certs(&self, user: Option<&str>) -> Result<Vec<CertRecord>, StoreError> {
        let since = now();
        let rows: Vec<Row> = match user {
            Some(u) => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} WHERE user = ? AND not_after > ? ORDER BY issued_at DESC"
                ))
                .bind(u)
                .bind(since)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} WHERE not_after > ? ORDER BY issued_at DESC"
                ))
                .bind(since)
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(record).collect())
    }

    /// Revokes the certificate `serial` (when `owner` is given, only if it belongs to that
    /// user). Returns its record, or `None` when there is no such certificate. Live sessions
    /// opened with it end at their next access check.
    pub async fn revoke_cert(
        &self,
        serial: &str,
        owner: Option<&str>,
        by: &str,
    ) -> Result<Option<CertRecord>, StoreError> {
        let done = sqlx::query(
            "UPDATE user_certs SET revoked_at = COALESCE(revoked_at, ?), revoked_by = COALESCE(revoked_by, ?) \
             WHERE serial = ? AND (? IS NULL OR user = ?)",
        )
        .bind(now())
        .bind(by)
        .bind(serial)
        .bind(owner)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.changed();
        self.cert(serial).await
    }

    /// Revokes every unexpired certificate of `user`; returns how many were revoked now.
    pub async fn revoke_user_certs(&self, user: &str, by: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE user_certs SET revoked_at = ?, revoked_by = ? \
             WHERE user = ? AND revoked_at IS NULL AND not_after > ?",
        )
        .bind(now())
        .bind(by)
        .bind(user)
        .bind(now())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            self.changed();
        }
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{open_temp, sample_doc};

    #[tokio::test]
    async fn record_list_revoke() {
        let (_dir, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        let later = time::OffsetDateTime::now_utc() + time::Duration::hours(8);
        store
            .record_cert("4a01", "alice", later, Some("127.0.0.1"))
            .await
            .unwrap();
        store
            .record_cert("4a02", "alice", later, None)
            .await
            .unwrap();
        // Unknown users cannot hold certificates.
        assert!(store
            .record_cert("4a03", "nobody", later, None)
            .await
            .is_err());
        let c = store.cert("4a01").await.unwrap().unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.revoked_at, None);
        assert_eq!(store.list_certs(Some("alice")).await.unwrap().len(), 2);
        assert_eq!(store.list_certs(Some("bob")).await.unwrap().len(), 0);

        let epoch = store.policy_epoch();
        let before = epoch.load(std::sync::atomic::Ordering::Acquire);
        // Someone else's certificate is not theirs to revoke.
        assert_eq!(
            store.revoke_cert("4a01", Some("bob"), "bob").await.unwrap(),
            None
        );
        let r = store
            .revoke_cert("4a01", Some("alice"), "alice")
            .await
            .unwrap()
            .unwrap();
        assert!(r.revoked_at.is_some());
        assert_eq!(r.revoked_by.as_deref(), Some("alice"));
        assert!(epoch.load(std::sync::atomic::Ordering::Acquire) > before);
        assert_eq!(
            store.revoke_cert("ffff", None, "admin").await.unwrap(),
            None
        );
        assert_eq!(store.revoke_user_certs("alice", "admin").await.unwrap(), 1);
        assert_eq!(store.revoke_user_certs("alice", "admin").await.unwrap(), 0);
        // Deleting the user deletes their records.
        store
            .delete(postern_core::Kind::User, "alice")
            .await
            .unwrap();
        assert_eq!(store.cert("4a02").await.unwrap(), None);
    }
}
