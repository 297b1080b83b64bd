//! Masking policies (A4): named, prioritised groups of masking rules that roles grant, and
//! the REVEAL exemptions (`policy/rule`) roles give from single rules.

use std::collections::{BTreeMap, HashSet};

use postern_core::names::valid_name;
use postern_core::{MaskingPolicySpec, MaskingRuleSpec};
use postern_policy::{compile_masking_policy, MaskingPolicy};
use sqlx::SqliteConnection;

use crate::{Store, StoreError};

impl Store {
    /// Masking policies as the API shows them, by name; only `name` when given.
    pub(crate) async fn masking_policy_views(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<MaskingPolicySpec>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        fetch_all(&mut conn, name).await
    }

    /// The masking side of `user`'s policy: the masking policies any of their roles grant
    /// (each once, ordered by name, compiled) and the union of the rules their roles reveal
    /// (`policy/rule`).
    ///
    /// A role naming a policy the store does not hold is an error, not an empty policy:
    /// the proxies must not show data unmasked because a reference broke.
    pub(crate) async fn masking_of(
        &self,
        user: &str,
    ) -> Result<(Vec<MaskingPolicy>, HashSet<String>), StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT r.name, r.masking, r.reveal FROM user_roles ur \
             JOIN roles r ON r.name = ur.role WHERE ur.user = ? ORDER BY r.name",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        // Policy name -> a role granting it (for the error below).
        let mut granted = BTreeMap::new();
        let mut revealed = HashSet::new();
        for (role, masking, reveal) in rows {
            for p in parse_names(&role, "masking", &masking)? {
                granted.entry(p).or_insert_with(|| role.clone());
            }
            revealed.extend(parse_names(&role, "reveal", &reveal)?);
        }
        if granted.is_empty() {
            return Ok((Vec::new(), revealed));
        }
        let mut conn = self.pool.acquire().await?;
        let mut policies = Vec::with_capacity(granted.len());
        for (name, role) in granted {
            let Some(spec) = fetch_all(&mut conn, Some(&name)).await?.pop() else {
                return Err(StoreError::Internal(format!(
                    "role {role} grants masking-policy {name}, which the store does not hold \
                     (was the database edited by hand?); apply the policy again, or remove it \
                     from the role's masking list"
                )));
            };
            policies.push(compile_masking_policy(&spec).map_err(|e| {
                StoreError::corrupt(format_args!("the rules of masking-policy {name} ({e})"))
            })?);
        }
        Ok((policies, revealed))
    }
}

/// Masking policies by name; only `name` when given.
pub(crate) async fn fetch_all(
    conn: &mut SqliteConnection,
    name: Option<&str>,
) -> Result<Vec<MaskingPolicySpec>, StoreError> {
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT name, description, priority, rules FROM masking_policies \
         WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
    )
    .bind(name)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(name, description, priority, rules)| {
            let priority = i32::try_from(priority).map_err(|_| {
                StoreError::corrupt(format_args!("the priority of masking-policy {name}"))
            })?;
            let rules = serde_json::from_str(&rules).map_err(|e| {
                StoreError::corrupt(format_args!("the rules of masking-policy {name} ({e})"))
            })?;
            Ok(MaskingPolicySpec {
                name,
                description,
                priority,
                rules,
            })
        })
        .collect()
}

/// The form a policy is stored and compared in: `on` and `function` without surrounding
/// blanks.
pub(crate) fn canonical(spec: &MaskingPolicySpec) -> MaskingPolicySpec {
    MaskingPolicySpec {
        name: spec.name.clone(),
        description: spec.description.clone(),
        priority: spec.priority,
        rules: spec
            .rules
            .iter()
            .map(|r| MaskingRuleSpec {
                name: r.name.clone(),
                on: r.on.trim().to_string(),
                function: r.function.trim().to_string(),
                allow_filter: r.allow_filter,
            })
            .collect(),
    }
}

/// Splits a REVEAL entry `policy/rule`; `None` unless both halves are valid names.
pub(crate) fn split_reveal(entry: &str) -> Option<(&str, &str)> {
    entry
        .split_once('/')
        .filter(|(p, r)| valid_name(p) && valid_name(r))
}

/// A role's stored list of names (`masking` or `reveal`, a JSON array).
pub(crate) fn parse_names(role: &str, field: &str, s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::corrupt(format_args!("the {field} list of role {role} ({e})")))
}

/// Every role's `masking` and `reveal` lists, by role name.
pub(crate) async fn role_references(
    conn: &mut SqliteConnection,
) -> Result<Vec<(String, Vec<String>, Vec<String>)>, StoreError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT name, masking, reveal FROM roles \
         WHERE masking <> '[]' OR reveal <> '[]' ORDER BY name",
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(role, masking, reveal)| {
            let masking = parse_names(&role, "masking", &masking)?;
            let reveal = parse_names(&role, "reveal", &reveal)?;
            Ok((role, masking, reveal))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_entries() {
        assert_eq!(split_reveal("pii/ssn"), Some(("pii", "ssn")));
        assert_eq!(split_reveal("pii"), None);
        assert_eq!(split_reveal("pii/"), None);
        assert_eq!(split_reveal("/ssn"), None);
        assert_eq!(split_reveal("pii/ssn/x"), None);
        assert_eq!(split_reveal("pii/*"), None);
    }
}
