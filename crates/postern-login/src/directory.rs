//! Directory logins (I1): people whose password lives in LDAP or Active Directory.
//!
//! Postern binds with its service account, finds the person by a configurable filter,
//! checks the password by binding as them, reads their groups and maps group names to
//! Postern roles. No password is stored: each login asks the directory again. An
//! unreachable directory refuses the login (fail closed); it never falls back to anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

/// LDAP result code of a bind with a wrong password (or an unknown DN).
const INVALID_CREDENTIALS: u32 = 49;

/// How Postern reaches and reads the directory (`[ldap]`).
#[derive(Clone)]
pub struct LdapSettings {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// CA certificates (PEM) trusted for the directory's TLS certificate; required for
    /// `ldaps://` and StartTLS (no public roots: directories rarely have public certificates).
    pub ca_pem: Option<Vec<u8>>,
    /// The service account.
    pub bind_dn: String,
    /// Its password.
    pub bind_password: zeroize::Zeroizing<String>,
    /// Where people are searched.
    pub base_dn: String,
    /// Filter finding one person; `{user}` is replaced by the escaped login name.
    pub user_filter: String,
    /// Where groups are searched.
    pub group_base_dn: String,
    /// Filter finding a person's groups; `{dn}` is the person's DN, `{user}` the name.
    pub group_filter: String,
    /// Attribute holding a group's name.
    pub group_name_attribute: String,
    /// Group name (case-insensitive) → Postern roles.
    pub group_roles: BTreeMap<String, Vec<String>>,
    /// Time a whole login may take in the directory.
    pub timeout: Duration,
}

impl std::fmt::Debug for LdapSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSettings")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .finish_non_exhaustive()
    }
}

/// A person the directory vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Their DN.
    pub dn: String,
    /// Names of their groups.
    pub groups: Vec<String>,
    /// The Postern roles those groups map to (sorted, unique).
    pub roles: Vec<String>,
}

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Connection, TLS, the service account's bind, a search: the message says which.
    #[error("the directory failed: {0}")]
    Failed(String),
    /// It took longer than `timeout`.
    #[error("the directory did not answer within {0:?}")]
    Timeout(Duration),
}

/// The answer for one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryAnswer {
    /// Password right.
    Valid(DirectoryUser),
    /// No such person, several matches, or a wrong password (the reason is for the audit
    /// trail only).
    Invalid(&'static str),
}

/// A directory to check passwords against.
#[derive(Debug, Clone)]
pub struct LdapDirectory {
    cfg: Arc<LdapSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl LdapDirectory {
    /// A directory per `cfg`; fails when the CA file holds no usable certificate.
    pub fn new(cfg: LdapSettings) -> Result<Self, DirectoryError> {
        let tls_wanted = cfg.url.starts_with("ldaps://") || cfg.starttls;
        let tls = if tls_wanted {
            let mut roots = rustls::RootCertStore::empty();
            match &cfg.ca_pem {
                Some(pem) => {
                    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                        let c = c.map_err(|e| DirectoryError::Failed(format!("ldap.ca: {e}")))?;
                        roots
                            .add(c)
                            .map_err(|e| DirectoryError::Failed(format!("ldap.ca: {e}")))?;
                    }
                    if roots.is_empty() {
                        return Err(DirectoryError::Failed(
                            "ldap.ca holds no PEM certificate".into(),
                        ));
                    }
                }
                None => {
                    return Err(DirectoryError::Failed(
                        "ldap.ca is needed for ldaps:// and StartTLS (the directory's CA certificate, PEM)".into(),
                    ))
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| DirectoryError::Failed(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(tls))
        } else {
            None
        };
        Ok(Self {
            cfg: Arc::new(cfg),
            tls,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &LdapSettings {
        &self.cfg
    }

    /// Checks `user`'s `password` in the directory and reads their groups.
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> Result<DirectoryAnswer, DirectoryError> {
        // An empty password would make the bind "unauthenticated" and succeed (RFC 4513).
        if password.is_empty() {
            return Ok(DirectoryAnswer::Invalid("empty password"));
        }
        if user.is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
            return Ok(DirectoryAnswer::Invalid("unusable user name"));
        }
        let timeout = self.cfg.timeout;
        tokio::time::timeout(timeout, self.run(user, password))
            .await
            .map_err(|_| DirectoryError::Timeout(timeout))?
    }

    async fn run(&self, user: &str, password: &str) -> Result<DirectoryAnswer, DirectoryError> {
        let cfg = &self.cfg;
        let failed =
            |what: &str, e: ldap3::LdapError| DirectoryError::Failed(format!("{what}: {e}"));
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(cfg.timeout)
            .set_starttls(cfg.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
            .await
            .map_err(|e| failed(&format!("cannot connect to {}", cfg.url), e))?;
        ldap3::drive!(conn);

        ldap.simple_bind(&cfg.bind_dn, &cfg.bind_password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| failed("the service account (ldap.bind_dn) cannot bind", e))?;
        let filter = cfg.user_filter.replace("{user}", &ldap_escape(user));
        let (found, _) = ldap
            .search(&cfg.base_dn, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| failed("searching people", e))?;
        let dn = match found.as_slice() {
            [one] => SearchEntry::construct(one.clone()).dn,
            [] => {
                let _ = ldap.unbind().await;
                return Ok(DirectoryAnswer::Invalid("not in the directory"));
            }
            _ => {
                let _ = ldap.unbind().await;
                return Ok(DirectoryAnswer::Invalid(
                    "several directory entries match the user filter",
                ));
            }
        };

        // The password: bind as the person.
        let bound = ldap
            .simple_bind(&dn, password)
            .await
            .map_err(|e| failed("binding as the user", e))?;
        if bound.rc == INVALID_CREDENTIALS {
            let _ = ldap.unbind().await;
            return Ok(DirectoryAnswer::Invalid("wrong directory password"));
        }
        bound
            .success()
            .map_err(|e| failed("binding as the user", e))?;

        // Groups, read as the service account (people may not read them).
        ldap.simple_bind(&cfg.bind_dn, &cfg.bind_password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| failed("the service account (ldap.bind_dn) cannot bind", e))?;
        let filter = cfg
            .group_filter
            .replace("{dn}", &ldap_escape(dn.as_str()))
            .replace("{user}", &ldap_escape(user));
        let attr = cfg.group_name_attribute.as_str();
        let (entries, _) = ldap
            .search(&cfg.group_base_dn, Scope::Subtree, &filter, vec![attr])
            .await
            .and_then(|r| r.success())
            .map_err(|e| failed("searching groups", e))?;
        let _ = ldap.unbind().await;
        let mut groups: Vec<String> = entries
            .into_iter()
            .flat_map(|e| {
                let mut e = SearchEntry::construct(e);
                e.attrs.remove(attr).unwrap_or_default()
            })
            .collect();
        groups.sort();
        groups.dedup();
        let roles = map_roles(&cfg.group_roles, &groups);
        Ok(DirectoryAnswer::Valid(DirectoryUser { dn, groups, roles }))
    }
}

/// The roles `groups` map to: group names compare case-insensitively, as LDAP does.
pub fn map_roles(map: &BTreeMap<String, Vec<String>>, groups: &[String]) -> Vec<String> {
    let mut roles: Vec<String> = map
        .iter()
        .filter(|(g, _)| groups.iter().any(|have| have.eq_ignore_ascii_case(g)))
        .flat_map(|(_, r)| r.iter().cloned())
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_roles_case_insensitively() {
        let mut map = BTreeMap::new();
        map.insert(
            "DBAs".to_string(),
            vec!["dba".to_string(), "audit".to_string()],
        );
        map.insert("analysts".to_string(), vec!["analyst".to_string()]);
        map.insert("ops".to_string(), vec!["dba".to_string()]);
        let roles = map_roles(&map, &["dbas".into(), "ops".into(), "other".into()]);
        assert_eq!(roles, ["audit", "dba"]);
        assert!(map_roles(&map, &[]).is_empty());
    }

    #[tokio::test]
    async fn empty_passwords_never_reach_the_directory() {
        // Port 9 (discard) on loopback: nothing listens, and nothing is asked.
        let d = LdapDirectory::new(LdapSettings {
            url: "ldap://127.0.0.1:9".into(),
            starttls: false,
            ca_pem: None,
            bind_dn: "cn=x".into(),
            bind_password: zeroize::Zeroizing::new("x".into()),
            base_dn: "dc=x".into(),
            user_filter: "(uid={user})".into(),
            group_base_dn: "dc=x".into(),
            group_filter: "(member={dn})".into(),
            group_name_attribute: "cn".into(),
            group_roles: BTreeMap::new(),
            timeout: Duration::from_secs(2),
        })
        .unwrap();
        assert_eq!(
            d.authenticate("alice", "").await.unwrap(),
            DirectoryAnswer::Invalid("empty password")
        );
        // A real attempt fails closed with an error, not a yes.
        assert!(d.authenticate("alice", "pw").await.is_err());
    }
}
