//! How a client names itself and its target.

/// The Postern user and the datasource alias a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginTarget {
    /// The Postern user name.
    pub user: String,
    /// The datasource alias.
    pub alias: String,
}

/// Splits what a client sent into (Postern user, datasource alias).
///
/// Tools without a database field send `user@alias` as the user name; it takes precedence
/// over the database field because libpq fills the database with the user name by default.
/// Returns `None` when no alias can be found.
pub fn split_login(user_field: &str, database_field: Option<&str>) -> Option<LoginTarget> {
    if let Some((user, alias)) = user_field.rsplit_once('@') {
        if !user.is_empty() && !alias.is_empty() {
            return Some(LoginTarget {
                user: user.to_string(),
                alias: alias.to_string(),
            });
        }
        return None;
    }
    let alias = database_field.filter(|d| !d.is_empty())?;
    if user_field.is_empty() {
        return None;
    }
    Some(LoginTarget {
        user: user_field.to_string(),
        alias: alias.to_string(),
    })
}

/// Whether `name` is acceptable as a resource name (users, roles, datasources, credentials).
///
/// Names appear in wire protocols (`user@alias`), URLs and audit events, so they are kept to
/// a conservative alphabet: ASCII letters, digits, `_`, `-` and `.`, 1 to 63 characters,
/// starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    let ok_len = (1..=63).contains(&name.len());
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    ok_len
        && first_ok
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cases() {
        let t = |u, d| split_login(u, d).map(|t| (t.user, t.alias));
        assert_eq!(
            t("alice", Some("shop")),
            Some(("alice".into(), "shop".into()))
        );
        assert_eq!(
            t("alice@shop", Some("alice@shop")),
            Some(("alice".into(), "shop".into()))
        );
        assert_eq!(t("alice@shop", None), Some(("alice".into(), "shop".into())));
        assert_eq!(
            t("alice@shop", Some("other")),
            Some(("alice".into(), "shop".into()))
        );
        assert_eq!(t("alice", None), None);
        assert_eq!(t("alice", Some("")), None);
        assert_eq!(t("@shop", None), None);
        assert_eq!(t("alice@", None), None);
        assert_eq!(t("", Some("shop")), None);
    }

    #[test]
    fn names() {
        assert!(valid_name("shop"));
        assert!(valid_name("shop-rw.1_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a@b"));
        assert!(!valid_name(&"a".repeat(64)));
    }
}
