//! Roles: named sets of credentials and permissions.

use std::collections::BTreeMap;

use postern_core::RoleSpec;

use crate::users::parse_permissions;
use crate::{Store, StoreError};

impl Store {
    /// Roles as the API shows them (a role holds no secret), by name; only `name` when
    /// given.
    pub(crate) async fn role_views(&self, name: Option<&str>) -> Result<Vec<RoleSpec>, StoreError> {
        let roles: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT name, description, permissions FROM roles \
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let grants: Vec<(String, String)> = sqlx::query_as(
            "SELECT role, credential FROM role_credentials \
             WHERE ?1 IS NULL OR role = ?1 ORDER BY role, credential",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut creds: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (r, c) in grants {
            creds.entry(r).or_default().push(c);
        }
        Ok(roles
            .into_iter()
            .map(|(name, description, permissions)| RoleSpec {
                credentials: creds.remove(&name).unwrap_or_default(),
                permissions: parse_permissions(&permissions),
                name,
                description,
            })
            .collect())
    }
}
