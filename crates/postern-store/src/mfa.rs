//! Second factor (TOTP secrets sealed with the master key, single-use recovery codes) and
//! admin locks.

use postern_core::Kind;
use zeroize::Zeroizing;

use crate::{now, Store, StoreError};

fn seal_context(user: &str) -> String {
    format!("totp:{user}")
}

/// A user's second-factor state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MfaStatus {
    /// A confirmed TOTP factor exists.
    pub enrolled: bool,
    /// Recovery codes left.
    pub recovery_codes_left: u32,
}

impl Store {
    async fn user_exists(&self, user: &str) -> Result<(), StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM users WHERE name = ?")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|_| ())
            .ok_or_else(|| StoreError::not_found(Kind::User, user))
    }

    /// Whether `user` has a confirmed TOTP factor, and how many recovery codes are left.
    pub async fn mfa_status(&self, user: &str) -> Result<MfaStatus, StoreError> {
        let row: Option<(bool,)> =
            sqlx::query_as("SELECT secret IS NOT NULL FROM user_totp WHERE user = ?")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        let (left,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM user_recovery_codes WHERE user = ?")
                .bind(user)
                .fetch_one(&self.pool)
                .await?;
        Ok(MfaStatus {
            enrolled: row.is_some_and(|(e,)| e),
            recovery_codes_left: u32::try_from(left).unwrap_or(0),
        })
    }

    /// Starts (or restarts) enrolment: `secret` waits for its first code. A confirmed
    /// factor stays in force until the new one is confirmed.
    pub async fn mfa_begin(&self, user: &str, secret: &[u8]) -> Result<(), StoreError> {
        self.user_exists(user).await?;
        let sealed = self.key.seal(&seal_context(user), secret);
        sqlx::query(
            "INSERT INTO user_totp (user, pending, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (user) DO UPDATE SET pending = excluded.pending, \
             updated_at = excluded.updated_at",
        )
        .bind(user)
        .bind(sealed)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn open_totp(&self, user: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.key.open(&seal_context(user), sealed).map_err(|_| {
            StoreError::corrupt(format_args!(
                "the TOTP secret of user {user} (reset it with `postern mfa reset {user}`)"
            ))
        })
    }

    /// The secret waiting for confirmation, if an enrolment is in progress.
    pub async fn mfa_pending_secret(
        &self,
        user: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        self.sealed_totp(user, "SELECT pending FROM user_totp WHERE user = ?")
            .await
    }

    /// The confirmed secret, if any.
    pub async fn mfa_secret(&self, user: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        self.sealed_totp(user, "SELECT secret FROM user_totp WHERE user = ?")
            .await
    }

    /// Reads one sealed secret column of `user` (`sql` selects it) and opens it.
    async fn sealed_totp(
        &self,
        user: &str,
        sql: &'static str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(sql)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        match row.and_then(|(p,)| p) {
            Some(s) => Ok(Some(self.open_totp(user, &s)?)),
            None => Ok(None),
        }
    }

    /// Makes the pending secret the factor (its first code was valid at `step`) and
    /// replaces the recovery codes with `recovery_hashes`.
    pub async fn mfa_confirm(
        &self,
        user: &str,
        step: u64,
        recovery_hashes: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE user_totp SET secret = pending, pending = NULL, last_step = ?, \
             confirmed_at = ?, updated_at = ? WHERE user = ? AND pending IS NOT NULL",
        )
        .bind(i64::try_from(step).unwrap_or(i64::MAX))
        .bind(now())
        .bind(now())
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "user {user} has no enrolment in progress; start one with `postern mfa enroll`"
            )));
        }
        sqlx::query("DELETE FROM user_recovery_codes WHERE user = ?")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        for h in recovery_hashes {
            sqlx::query(
                "INSERT OR IGNORE INTO user_recovery_codes (user, code_hash) VALUES (?, ?)",
            )
            .bind(user)
            .bind(h)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that a code of `step` was used; false when that step (or a later one) was
    /// already used, so no code works twice.
    pub async fn mfa_use_step(&self, user: &str, step: u64) -> Result<bool, StoreError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "UPDATE user_totp SET last_step = ? WHERE user = ? AND last_step < ? \
             AND secret IS NOT NULL",
        )
        .bind(step)
        .bind(user)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses up a recovery code (by hash); false when it is not one of the user's.
    pub async fn mfa_use_recovery(&self, user: &str, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM user_recovery_codes WHERE user = ? AND code_hash = ?")
            .bind(user)
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a user's factor and recovery codes (admin reset): they enrol again at their
    /// next login.
    pub async fn mfa_reset(&self, user: &str) -> Result<(), StoreError> {
        self.user_exists(user).await?;
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM user_totp WHERE user = ?")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_recovery_codes WHERE user = ?")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.changed();
        Ok(())
    }

    /// Sets or lifts the admin lock of `user`. Live sessions of a locked user end (the
    /// change counter moves).
    pub async fn set_locked(&self, user: &str, locked: bool) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET locked = ?, updated_at = ? WHERE name = ?")
            .bind(locked)
            .bind(now())
            .bind(user)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::not_found(Kind::User, user));
        }
        self.changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{open_temp, sample_doc};

    #[tokio::test]
    async fn enrol_confirm_use_reset() {
        let (dir, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        assert!(!store.mfa_status("alice").await.unwrap().enrolled);
        let secret = b"0123456789abcdefghij";
        store.mfa_begin("alice", secret).await.unwrap();
        assert!(!store.mfa_status("alice").await.unwrap().enrolled);
        assert_eq!(
            store
                .mfa_pending_secret("alice")
                .await
                .unwrap()
                .unwrap()
                .as_slice(),
            secret
        );
        store
            .mfa_confirm("alice", 100, &["h1".into(), "h2".into()])
            .await
            .unwrap();
        let st = store.mfa_status("alice").await.unwrap();
        assert!(st.enrolled);
        assert_eq!(st.recovery_codes_left, 2);
        assert_eq!(
            store.mfa_secret("alice").await.unwrap().unwrap().as_slice(),
            secret
        );
        // Sealed at rest.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
        assert!(
            !store.mfa_use_step("alice", 100).await.unwrap(),
            "no replay"
        );
        assert!(store.mfa_use_step("alice", 101).await.unwrap());
        assert!(store.mfa_use_recovery("alice", "h1").await.unwrap());
        assert!(!store.mfa_use_recovery("alice", "h1").await.unwrap());
        store.mfa_reset("alice").await.unwrap();
        assert!(!store.mfa_status("alice").await.unwrap().enrolled);
        assert!(store.mfa_confirm("alice", 1, &[]).await.is_err());
        assert!(store.mfa_begin("nobody", secret).await.is_err());
    }

    #[tokio::test]
    async fn locks() {
        let (_d, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        store.set_locked("alice", true).await.unwrap();
        assert!(store.login_info("alice").await.unwrap().unwrap().locked);
        store.set_locked("alice", false).await.unwrap();
        assert!(!store.login_info("alice").await.unwrap().unwrap().locked);
        assert!(store.set_locked("nobody", true).await.is_err());
    }
}
