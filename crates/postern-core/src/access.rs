//! Which upstream credential a user reaches a datasource with.

use std::collections::BTreeSet;

/// What one role held by a user grants, as far as datasource access goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrants {
    /// Role name.
    pub role: String,
    /// Credentials the role may use: (credential name, datasource alias it belongs to).
    pub credentials: Vec<(String, String)>,
}

/// Why access was refused. The message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    /// The user holds no role at all.
    #[error("user {user} holds no role; an admin must grant one that carries a credential for datasource {alias}")]
    NoRoles { user: String, alias: String },
    /// None of the user's roles carries a credential for the datasource.
    #[error("no role of {user} grants a credential for datasource {alias} (roles: {roles})")]
    NoCredential {
        user: String,
        alias: String,
        roles: String,
    },
}

/// Chooses the credential `user` reaches `alias` with, given the grants of the user's roles.
///
/// When several roles grant credentials for the datasource, the choice is deterministic (the
/// lexically smallest credential name), so that the same person always lands on the same
/// database account.
pub fn choose_credential(
    user: &str,
    alias: &str,
    roles: &[RoleGrants],
) -> Result<String, AccessDenied> {
    if roles.is_empty() {
        return Err(AccessDenied::NoRoles {
            user: user.to_string(),
            alias: alias.to_string(),
        });
    }
    let candidates: BTreeSet<&str> = roles
        .iter()
        .flat_map(|r| r.credentials.iter())
        .filter(|(_, ds)| ds == alias)
        .map(|(c, _)| c.as_str())
        .collect();
    match candidates.into_iter().next() {
        Some(c) => Ok(c.to_string()),
        None => Err(AccessDenied::NoCredential {
            user: user.to_string(),
            alias: alias.to_string(),
            roles: roles
                .iter()
                .map(|r| r.role.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, creds: &[(&str, &str)]) -> RoleGrants {
        RoleGrants {
            role: name.into(),
            credentials: creds
                .iter()
                .map(|(c, d)| (c.to_string(), d.to_string()))
                .collect(),
        }
    }

    #[test]
    fn no_roles() {
        let e = choose_credential("alice", "shop", &[]).unwrap_err();
        assert!(matches!(e, AccessDenied::NoRoles { .. }));
        assert!(e.to_string().contains("shop"));
    }

    #[test]
    fn no_credential_names_roles() {
        let roles = [role("dev", &[("crm-ro", "crm")])];
        let e = choose_credential("alice", "shop", &roles).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no role of alice grants a credential for datasource shop (roles: dev)"
        );
    }

    #[test]
    fn deterministic_choice() {
        let roles = [
            role("b", &[("shop-z", "shop"), ("crm", "crm")]),
            role("a", &[("shop-a", "shop")]),
        ];
        assert_eq!(
            choose_credential("alice", "shop", &roles).unwrap(),
            "shop-a"
        );
        assert_eq!(choose_credential("alice", "crm", &roles).unwrap(), "crm");
    }
}
