//! Roles: named sets of credentials, permissions, statement privileges, modes, and the
//! masking policies they grant and masking rules they reveal.

use std::collections::BTreeMap;

use postern_core::{DatasourceSpec, PrivilegeSpec, RoleSpec};
use postern_policy::{
    allow_list_form, compile_rules, parse_mode, FirewallRule, Mode, Policy, PrivilegeRule,
};

use crate::masking::parse_names;
use crate::users::parse_permissions;
use crate::{Store, StoreError};

impl Store {
    /// Roles as the API shows them (a role holds no secret), by name; only `name` when
    /// given.
    pub(crate) async fn role_views(&self, name: Option<&str>) -> Result<Vec<RoleSpec>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
        );
        let roles: Vec<Row> = sqlx::query_as(
            "SELECT name, description, permissions, privileges, modes, masking, reveal, ssh \
             FROM roles WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
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
        let mut ssh_logins = crate::ssh::role_logins(&self.pool, name).await?;
        roles
            .into_iter()
            .map(
                |(name, description, permissions, privileges, modes, masking, reveal, ssh)| {
                    Ok(RoleSpec {
                        ssh: crate::ssh::grant_view(
                            &name,
                            &ssh,
                            ssh_logins.remove(&name).unwrap_or_default(),
                        )?,
                        credentials: creds.remove(&name).unwrap_or_default(),
                        permissions: parse_permissions(&permissions),
                        privileges: parse_privileges(&name, &privileges)?,
                        modes: parse_modes(&name, &modes)?,
                        masking: parse_names(&name, "masking", &masking)?,
                        reveal: parse_names(&name, "reveal", &reveal)?,
                        name,
                        description,
                    })
                },
            )
            .collect()
    }

    /// The statement policy of `user` on datasource `alias`: the privilege rules of all
    /// their roles, and their effective mode (the most restrictive their roles give on
    /// that datasource; PROTECTED when none does).
    pub async fn statement_policy(
        &self,
        user: &str,
        alias: &str,
    ) -> Result<(Vec<PrivilegeRule>, Mode), StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT r.name, r.privileges, r.modes FROM user_roles ur \
             JOIN roles r ON r.name = ur.role WHERE ur.user = ? ORDER BY r.name",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let mut rules = Vec::new();
        let mut modes = Vec::new();
        for (role, privileges, stored_modes) in rows {
            let specs = parse_privileges(&role, &privileges)?;
            rules.extend(compile_rules(&role, &specs).map_err(|e| {
                StoreError::corrupt(format_args!("the privileges of role {role} ({e})"))
            })?);
            if let Some(m) = parse_modes(&role, &stored_modes)?.get(alias) {
                modes.push(parse_mode(m).map_err(|e| {
                    StoreError::corrupt(format_args!("the modes of role {role} ({e})"))
                })?);
            }
        }
        Ok((rules, Mode::effective(modes)))
    }
}

impl Store {
    /// Everything the statement decisions need about `user` on datasource `ds`: privilege
    /// rules, mode, roles, the datasource's firewall and allow-list, the masking policies
    /// their roles grant (each once) and the masking rules their roles reveal.
    pub async fn session_policy(
        &self,
        user: &str,
        ds: &DatasourceSpec,
    ) -> Result<Policy, StoreError> {
        let (rules, mode) = self.statement_policy(user, &ds.name).await?;
        let (masking, revealed) = self.masking_of(user).await?;
        let roles = self
            .role_grants(user)
            .await?
            .into_iter()
            .map(|g| g.role)
            .collect();
        let firewall = ds
            .firewall
            .iter()
            .map(FirewallRule::compile)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::corrupt(format_args!("datasource {}: {e}", ds.name)))?;
        Ok(Policy {
            datasource: ds.name.clone(),
            database: ds.database.clone(),
            mode,
            rules,
            firewall,
            roles,
            allow_list: self
                .trusted_allow_list(&ds.name)
                .await?
                .iter()
                .map(|s| allow_list_form(s).to_string())
                .collect(),
            catalog_read: true,
            masking,
            revealed,
            dialect: ds.kind,
        })
    }
}

/// Canonical stored form of a role's privilege rules (privilege names normalised).
pub(crate) fn privileges_json(specs: &[PrivilegeSpec]) -> Result<String, StoreError> {
    let canon: Vec<PrivilegeSpec> = specs
        .iter()
        .map(|s| {
            let norm = |v: &[String]| -> Vec<String> {
                v.iter()
                    .map(|p| match postern_policy::Privilege::parse(p) {
                        Some(p) => p.name().to_string(),
                        None => p.trim().to_ascii_uppercase(),
                    })
                    .collect()
            };
            PrivilegeSpec {
                allow: norm(&s.allow),
                deny: norm(&s.deny),
                on: s.on.trim().to_string(),
            }
        })
        .collect();
    serde_json::to_string(&canon).map_err(|e| StoreError::Internal(e.to_string()))
}

/// Canonical stored form of a role's modes (lower-case short names).
pub(crate) fn modes_json(modes: &BTreeMap<String, String>) -> Result<String, StoreError> {
    let canon: BTreeMap<&str, &str> = modes
        .iter()
        .map(|(ds, m)| {
            let short = match parse_mode(m) {
                Ok(Mode::Passthrough) => "passthrough",
                Ok(Mode::Masked) => "masked",
                Ok(Mode::Protected) | Err(_) => "protected",
            };
            (ds.as_str(), short)
        })
        .collect();
    serde_json::to_string(&canon).map_err(|e| StoreError::Internal(e.to_string()))
}

fn parse_privileges(role: &str, s: &str) -> Result<Vec<PrivilegeSpec>, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::corrupt(format_args!("the privileges of role {role} ({e})")))
}

fn parse_modes(role: &str, s: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::corrupt(format_args!("the modes of role {role} ({e})")))
}
