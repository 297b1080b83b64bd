//! Generic admin operations over every kind: list, get, delete.

use postern_core::Kind;

use crate::{to_json, Store, StoreError};

impl Store {
    /// Every resource of `kind`, by name, as the API shows them: never a secret.
    pub async fn list(&self, kind: Kind) -> Result<Vec<serde_json::Value>, StoreError> {
        self.views(kind, None).await
    }

    /// One resource as the API shows it: never a secret.
    pub async fn get(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self.views(kind, Some(name)).await?.into_iter().next())
    }

    async fn views(
        &self,
        kind: Kind,
        name: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        match kind {
            Kind::Datasource => {
                let all = match name {
                    Some(n) => self.datasource(n).await?.into_iter().collect(),
                    None => self.datasources().await?,
                };
                all.iter().map(to_json).collect()
            }
            Kind::Credential => self
                .credential_views(name)
                .await?
                .iter()
                .map(to_json)
                .collect(),
            Kind::SshLogin => self
                .ssh_login_views(name)
                .await?
                .iter()
                .map(to_json)
                .collect(),
            Kind::MaskingPolicy => self
                .masking_policy_views(name)
                .await?
                .iter()
                .map(to_json)
                .collect(),
            Kind::Role => self.role_views(name).await?.iter().map(to_json).collect(),
            Kind::User => self.user_views(name).await?.iter().map(to_json).collect(),
        }
    }

    /// Deletes a resource; false when it did not exist.
    ///
    /// * A datasource that credentials still open is not deleted (conflict naming them).
    /// * A credential is removed from the roles that granted it; so is an SSH login.
    /// * A masking policy that roles still grant or reveal rules of is not deleted
    ///   (conflict naming them).
    /// * A role is removed from its members.
    /// * A user loses their memberships and API tokens.
    pub async fn delete(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let sql = match kind {
            Kind::Datasource => {
                let users: Vec<(String,)> = sqlx::query_as(
                    "SELECT name FROM credentials WHERE datasource = ? ORDER BY name",
                )
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
                if !users.is_empty() {
                    let names: Vec<&str> = users.iter().map(|(n,)| n.as_str()).collect();
                    return Err(StoreError::Conflict(format!(
                        "datasource {name} is still used by credential{} {}; delete {} first",
                        if names.len() == 1 { "" } else { "s" },
                        names.join(", "),
                        if names.len() == 1 { "it" } else { "them" },
                    )));
                }
                "DELETE FROM datasources WHERE name = ?"
            }
            Kind::Credential => "DELETE FROM credentials WHERE name = ?",
            Kind::SshLogin => "DELETE FROM ssh_logins WHERE name = ?",
            Kind::MaskingPolicy => {
                let users: Vec<String> = crate::masking::role_references(&mut tx)
                    .await?
                    .into_iter()
                    .filter(|(_, masking, reveal)| {
                        masking.iter().any(|p| p == name)
                            || reveal.iter().any(|e| {
                                crate::masking::split_reveal(e).is_some_and(|(p, _)| p == name)
                            })
                    })
                    .map(|(role, _, _)| role)
                    .collect();
                if !users.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "masking-policy {name} is still used by role{} {} (in masking or \
                         reveal); remove it from {} first",
                        if users.len() == 1 { "" } else { "s" },
                        users.join(", "),
                        if users.len() == 1 {
                            "that role"
                        } else {
                            "those roles"
                        },
                    )));
                }
                "DELETE FROM masking_policies WHERE name = ?"
            }
            Kind::Role => "DELETE FROM roles WHERE name = ?",
            Kind::User => "DELETE FROM users WHERE name = ?",
        };
        let done = sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        let deleted = done.rows_affected() > 0;
        if deleted {
            self.changed();
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{open_temp, sample_doc};
    use std::time::Duration;

    #[tokio::test]
    async fn delete_rules() {
        let (_d, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        let token = store
            .create_api_token("alice", Duration::from_secs(60))
            .await
            .unwrap();

        let e = store.delete(Kind::Datasource, "shop").await.unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)));
        assert_eq!(
            e.to_string(),
            "datasource shop is still used by credential shop-rw; delete it first"
        );

        // A credential leaves the roles that granted it.
        assert!(store.delete(Kind::Credential, "shop-rw").await.unwrap());
        let role = store.get(Kind::Role, "dba").await.unwrap().unwrap();
        assert_eq!(role["credentials"], serde_json::json!([]));
        assert!(store.delete(Kind::Datasource, "shop").await.unwrap());
        assert!(!store.delete(Kind::Datasource, "shop").await.unwrap());

        // A role leaves its members.
        assert!(store.delete(Kind::Role, "dba").await.unwrap());
        let user = store.get(Kind::User, "alice").await.unwrap().unwrap();
        assert_eq!(user["roles"], serde_json::json!([]));

        // A user takes their tokens along.
        assert_eq!(
            store.resolve_api_token(&token).await.unwrap().as_deref(),
            Some("alice")
        );
        assert!(store.delete(Kind::User, "alice").await.unwrap());
        assert!(store.resolve_api_token(&token).await.unwrap().is_none());
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM api_tokens")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
        for kind in Kind::ALL {
            assert!(store.list(kind).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn list_and_get_shapes() {
        let (_d, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        let ds = store.list(Kind::Datasource).await.unwrap();
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0]["name"], "shop");
        assert_eq!(ds[0]["type"], "postgres");
        assert_eq!(ds[0]["port"], 5432);
        let role = store.get(Kind::Role, "dba").await.unwrap().unwrap();
        assert_eq!(role["credentials"], serde_json::json!(["shop-rw"]));
        assert_eq!(role["description"], "database admins");
        assert!(store.get(Kind::User, "nobody").await.unwrap().is_none());
        assert!(store.get(Kind::Datasource, "nope").await.unwrap().is_none());
    }
}
