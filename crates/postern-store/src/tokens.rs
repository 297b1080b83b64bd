//! API bearer tokens. Only their SHA-256 is stored, so a copy of the database does not
//! hold a usable token.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use postern_core::Kind;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{fmt_ts, now, Store, StoreError};

/// Every token starts with this, so it is recognisable in a leak scanner.
pub const TOKEN_PREFIX: &str = "pst_";
/// Tokens are `pst_` and 43 characters; anything much longer is not one of ours.
const MAX_TOKEN_LEN: usize = 128;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// Everything its user's permissions allow.
    Full,
    /// Only enrol a second factor (a password-only sign-in while one is required).
    Enroll,
}

impl TokenScope {
    fn as_str(self) -> &'static str {
        match self {
            TokenScope::Full => "full",
            TokenScope::Enroll => "enroll",
        }
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Issues an API token for `user`, valid for `ttl`. Returns the token (shown once);
    /// the store keeps only its SHA-256. Expired tokens of every user are purged on the way.
    pub async fn create_api_token(&self, user: &str, ttl: Duration) -> Result<String, StoreError> {
        self.create_scoped_token(user, ttl, TokenScope::Full).await
    }

    /// [`Store::create_api_token`] with a scope.
    pub async fn create_scoped_token(
        &self,
        user: &str,
        ttl: Duration,
        scope: TokenScope,
    ) -> Result<String, StoreError> {
        let too_long = || {
            StoreError::Invalid(format!(
                "an API token lifetime of {}s is too long; use at most a few years",
                ttl.as_secs()
            ))
        };
        let expires = time::Duration::try_from(ttl)
            .ok()
            .and_then(|d| time::OffsetDateTime::now_utc().checked_add(d))
            .filter(|t| t.year() <= 9999)
            .ok_or_else(too_long)?;
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));

        let mut tx = self.write_tx().await?;
        let row: Option<(bool,)> = sqlx::query_as("SELECT disabled FROM users WHERE name = ?")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
        match row {
            None => return Err(StoreError::not_found(Kind::User, user)),
            Some((true,)) => {
                return Err(StoreError::Conflict(format!(
                    "user {user} is disabled; enable it before issuing an API token"
                )))
            }
            Some((false,)) => {}
        }
        let ts = now();
        sqlx::query("DELETE FROM api_tokens WHERE expires_at <= ?")
            .bind(&ts)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_tokens (token_sha256, user, created_at, expires_at, scope) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash(&token))
        .bind(user)
        .bind(&ts)
        .bind(fmt_ts(expires))
        .bind(scope.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// The user a token belongs to, when the token exists, has not expired and its user is
    /// not disabled.
    pub async fn resolve_api_token(&self, token: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .resolve_scoped_token(token)
            .await?
            .and_then(|(u, s)| (s == TokenScope::Full).then_some(u)))
    }

    /// The user and scope of a valid token (unexpired, user neither disabled nor locked).
    pub async fn resolve_scoped_token(
        &self,
        token: &str,
    ) -> Result<Option<(String, TokenScope)>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT t.user, t.scope FROM api_tokens t JOIN users u ON u.name = t.user \
             WHERE t.token_sha256 = ? AND t.expires_at > ? AND u.disabled = 0 AND u.locked = 0",
        )
        .bind(token_hash(token))
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(u, s)| {
            let scope = if s == "full" {
                TokenScope::Full
            } else {
                TokenScope::Enroll
            };
            (u, scope)
        }))
    }

    /// Revokes every token of `user` (locked, disabled, factor reset).
    pub async fn revoke_user_tokens(&self, user: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM api_tokens WHERE user = ?")
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes a token. Revoking an unknown or expired token is not an error.
    pub async fn revoke_api_token(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM api_tokens WHERE token_sha256 = ?")
            .bind(token_hash(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{open_temp, sample_doc};

    #[tokio::test]
    async fn create_resolve_revoke() {
        let (dir, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        let t = store
            .create_api_token("alice", Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(t.starts_with("pst_"));
        assert_eq!(t.len(), 4 + 43);
        assert_eq!(
            store.resolve_api_token(&t).await.unwrap().as_deref(),
            Some("alice")
        );
        assert!(store.resolve_api_token("pst_nope").await.unwrap().is_none());
        assert!(store.resolve_api_token("").await.unwrap().is_none());
        // Only the hash is on disk.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()));
        }
        store.revoke_api_token(&t).await.unwrap();
        assert!(store.resolve_api_token(&t).await.unwrap().is_none());
        store.revoke_api_token(&t).await.unwrap();
    }

    #[tokio::test]
    async fn expiry_and_disabled_users() {
        let (_d, store) = open_temp().await;
        let mut doc = sample_doc();
        store.apply(&doc).await.unwrap();
        let expired = store
            .create_api_token("alice", Duration::ZERO)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(store.resolve_api_token(&expired).await.unwrap().is_none());

        let t = store
            .create_api_token("alice", Duration::from_secs(60))
            .await
            .unwrap();
        // Issuing purged the expired one.
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM api_tokens")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 1);
        doc.user[0].disabled = true;
        store.apply(&doc).await.unwrap();
        assert!(store.resolve_api_token(&t).await.unwrap().is_none());
        let e = store
            .create_api_token("alice", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)));
        let e = store
            .create_api_token("nobody", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound { .. }));
        let e = store
            .create_api_token("alice", Duration::MAX)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)));
    }
}
