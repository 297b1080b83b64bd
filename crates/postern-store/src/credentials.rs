//! Credentials: upstream accounts whose passwords are sealed with the master key.

use postern_core::CredentialView;
use postern_vault::MasterKey;
use zeroize::Zeroizing;

use crate::{Store, StoreError};

/// An upstream account, opened for logging in to its datasource. Keep it only as long as
/// the upstream login takes; the password is wiped when dropped and never printed.
#[derive(Clone)]
pub struct UpstreamCredential {
    /// Credential name.
    pub name: String,
    /// Alias of the datasource it opens.
    pub datasource: String,
    /// Database user name on the upstream server.
    pub username: String,
    /// The clear upstream password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field("name", &self.name)
            .field("datasource", &self.datasource)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The associated data a credential's password is sealed under: a sealed value copied onto
/// another credential's row does not open.
pub(crate) fn seal_context(name: &str) -> String {
    format!("credential:{name}")
}

/// Seals a credential password.
pub(crate) fn seal(key: &MasterKey, name: &str, password: &str) -> Vec<u8> {
    key.seal(&seal_context(name), password.as_bytes())
}

/// Opens a credential password.
pub(crate) fn open(
    key: &MasterKey,
    name: &str,
    sealed: &[u8],
) -> Result<Zeroizing<String>, StoreError> {
    key.open_string(&seal_context(name), sealed).map_err(|e| {
        StoreError::Internal(format!(
            "the password of credential {name} cannot be decrypted: {e} \
             (is this the master key the store was created with? otherwise re-apply the credential with its password)"
        ))
    })
}

impl Store {
    /// The credential `user` would log in to datasource `alias` with (the same choice a
    /// session makes), its password opened. Errors are for people.
    pub async fn credential_for(
        &self,
        user: &str,
        alias: &str,
    ) -> Result<UpstreamCredential, String> {
        let grants = self.role_grants(user).await.map_err(|e| e.to_string())?;
        let name =
            postern_core::choose_credential(user, alias, &grants).map_err(|e| e.to_string())?;
        self.upstream_credential(&name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("credential {name} no longer exists"))
    }

    /// The credential `name` with its password opened, for an upstream login.
    pub async fn upstream_credential(
        &self,
        name: &str,
    ) -> Result<Option<UpstreamCredential>, StoreError> {
        let row: Option<(String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT name, datasource, username, password FROM credentials WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some((name, datasource, username, sealed)) = row else {
            return Ok(None);
        };
        let password = open(&self.key, &name, &sealed)?;
        Ok(Some(UpstreamCredential {
            name,
            datasource,
            username,
            password,
        }))
    }

    /// Credentials as the API shows them (never the password), by name; only `name` when
    /// given.
    pub(crate) async fn credential_views(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<CredentialView>, StoreError> {
        let rows: Vec<(String, String, String, bool)> = sqlx::query_as(
            "SELECT name, datasource, username, length(password) > 0 FROM credentials \
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(name, datasource, username, has_password)| CredentialView {
                    name,
                    datasource,
                    username,
                    has_password,
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{open_temp, sample_doc, UPSTREAM_PW, USER_PW};
    use postern_core::Kind;

    #[tokio::test]
    async fn upstream_credential_opens_and_debug_redacts() {
        let (_d, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        let c = store.upstream_credential("shop-rw").await.unwrap().unwrap();
        assert_eq!(c.datasource, "shop");
        assert_eq!(c.username, "shop_app");
        assert_eq!(c.password.as_str(), UPSTREAM_PW);
        assert!(!format!("{c:?}").contains(UPSTREAM_PW));
        assert!(store.upstream_credential("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn secrets_absent_from_database_files() {
        let (dir, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        store
            .set_password("alice", "second-user-pw-8812")
            .await
            .unwrap();
        let mut seen = 0;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            for secret in [UPSTREAM_PW, USER_PW, "second-user-pw-8812"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} found in {}",
                    path.display()
                );
            }
            // Sanity: the file does hold the credential row (in the main file or the WAL).
            if bytes.windows(8).any(|w| w == b"shop_app") {
                seen += 1;
            }
        }
        assert!(seen > 0, "the credential row was not found on disk at all");
    }

    #[tokio::test]
    async fn secrets_absent_from_list_and_get() {
        let (_d, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        for kind in Kind::ALL {
            let all = serde_json::to_string(&store.list(kind).await.unwrap()).unwrap();
            assert!(
                !all.contains(UPSTREAM_PW) && !all.contains(USER_PW),
                "{all}"
            );
            assert!(!all.contains("argon2") && !all.contains("SCRAM"), "{all}");
        }
        let c = store
            .get(Kind::Credential, "shop-rw")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            serde_json::json!({"name": "shop-rw", "datasource": "shop", "username": "shop_app", "has_password": true})
        );
        let u = store.get(Kind::User, "alice").await.unwrap().unwrap();
        assert_eq!(
            u,
            serde_json::json!({"name": "alice", "roles": ["dba"], "disabled": false, "has_password": true})
        );
    }
}
