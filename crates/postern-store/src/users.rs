//! Users: what logins read (verifier, grants, permissions), passwords, the bootstrap admin.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use postern_auth::scram::DEFAULT_ITERATIONS;
use postern_auth::{check_password_policy, hash_password, MysqlVerifier, ScramVerifier};
use postern_core::{Kind, Permission, RoleGrants, UserView};
use postern_vault::MasterKey;
use rand::Rng;
use zeroize::Zeroizing;

use crate::{now, Store, StoreError};

/// What a proxy needs to authenticate a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginInfo {
    /// User name.
    pub name: String,
    /// A disabled user must be refused.
    pub disabled: bool,
    /// An admin lock (`postern user lock`): refused like a disabled user.
    pub locked: bool,
    /// The SCRAM-SHA-256 verifier; `None` until a password is set.
    pub scram: Option<ScramVerifier>,
    /// Where the user came from: `local` (made by an admin), `ldap` or `oidc` (made at their
    /// first login there; roles follow their groups).
    pub source: String,
}

/// The two stored forms of a user password.
pub(crate) struct PasswordHashes {
    /// argon2id PHC string.
    pub phc: String,
    /// SCRAM verifier, PostgreSQL text form.
    pub scram: String,
    /// MySQL verifier ([`postern_auth::MysqlVerifier`]), sealed for this user.
    pub mysql: Vec<u8>,
}

/// Seal context of a user's MySQL verifier.
fn mysql_context(user: &str) -> String {
    format!("mysql-verifier:{user}")
}

/// Checks the password policy, then derives both stored forms off the async threads
/// (argon2id and PBKDF2 take tens of milliseconds each).
pub(crate) async fn hash_both(
    key: &MasterKey,
    user: &str,
    password: &str,
) -> Result<PasswordHashes, StoreError> {
    check_password_policy(password)?;
    let pw = Zeroizing::new(password.to_string());
    let (phc, scram, mysql) = tokio::task::spawn_blocking(move || {
        let phc = hash_password(&pw)?;
        let scram = ScramVerifier::derive(&pw, DEFAULT_ITERATIONS).to_pg_string();
        let mysql = Zeroizing::new(MysqlVerifier::derive(&pw).to_bytes());
        Ok::<_, StoreError>((phc, scram, mysql))
    })
    .await??;
    let mysql = key.seal(&mysql_context(user), &mysql);
    Ok(PasswordHashes { phc, scram, mysql })
}

/// A valid argon2id hash of a throw-away password, verified against when the user is
/// unknown so that probing names costs the same time as probing passwords.
fn decoy_phc() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let pw: String = random_password();
        hash_password(&pw).unwrap_or_default()
    })
}

/// 24 random ASCII letters and digits (about 143 bits).
pub(crate) fn random_password() -> String {
    rand::rngs::OsRng
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Parses the stored comma-separated permission list, skipping (and logging) names this
/// version does not know.
pub(crate) fn parse_permissions(s: &str) -> Vec<Permission> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let parsed = Permission::parse(p);
            if parsed.is_none() {
                tracing::warn!(permission = p, "ignoring an unknown stored permission");
            }
            parsed
        })
        .collect()
}

/// The stored form of a permission list: sorted, de-duplicated, comma-separated.
pub(crate) fn format_permissions(perms: &[Permission]) -> String {
    let mut v = perms.to_vec();
    v.sort();
    v.dedup();
    v.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

impl Store {
    /// Records a login of `user` vouched for by `source` (`ldap` or `oidc`) whose groups map
    /// to `roles`: creates the user (no password) on the first one, and sets the roles of a
    /// user from that source to exactly `roles` (those that exist; the others are returned,
    /// for a warning). An admin-made user without a password keeps the roles the admin gave;
    /// one with a password here, or from the other source, is refused.
    pub async fn sync_external_user(
        &self,
        user: &str,
        source: &str,
        roles: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if !matches!(source, "ldap" | "oidc") {
            return Err(StoreError::Invalid(format!("unknown user source {source}")));
        }
        if !postern_core::names::valid_name(user) {
            return Err(StoreError::Invalid(format!(
                "{user:?} cannot be a Postern user name (letters, digits, _ - . only)"
            )));
        }
        let mut tx = self.write_tx().await?;
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT source, password_hash FROM users WHERE name = ?")
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        match row {
            Some((_, Some(_))) => {
                return Err(StoreError::Conflict(format!(
                    "user {user} has a password in Postern; the directory cannot sign them in"
                )))
            }
            Some((had, None)) if had == "local" => return Ok(Vec::new()),
            Some((had, None)) if had != source => {
                return Err(StoreError::Conflict(format!(
                    "user {user} signs in through {had}, not {source}"
                )))
            }
            Some(_) => {}
            None => {
                let t = now();
                sqlx::query(
                    "INSERT INTO users (name, source, created_at, updated_at) VALUES (?, ?, ?, ?)",
                )
                .bind(user)
                .bind(source)
                .bind(&t)
                .bind(&t)
                .execute(&mut *tx)
                .await?;
            }
        }
        let held: Vec<(String,)> =
            sqlx::query_as("SELECT role FROM user_roles WHERE user = ? ORDER BY role")
                .bind(user)
                .fetch_all(&mut *tx)
                .await?;
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for r in crate::name_set(roles) {
            let exists: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM roles WHERE name = ?")
                .bind(&r)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                known.push(r);
            } else {
                unknown.push(r);
            }
        }
        let held: Vec<String> = held.into_iter().map(|(r,)| r).collect();
        if held != known {
            sqlx::query("DELETE FROM user_roles WHERE user = ?")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            for r in &known {
                sqlx::query("INSERT INTO user_roles (user, role) VALUES (?, ?)")
                    .bind(user)
                    .bind(r)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            self.changed();
        } else {
            tx.commit().await?;
        }
        Ok(unknown)
    }

    /// What a proxy needs to authenticate `user`; `None` when there is no such user.
    /// The MySQL verifier of `user` (`None`: unknown user, or no password set since Postern
    /// learnt MySQL — setting the password again derives it).
    pub async fn mysql_verifier(&self, user: &str) -> Result<Option<MysqlVerifier>, StoreError> {
        let row: Option<(Option<Vec<u8>>,)> =
            sqlx::query_as("SELECT mysql_verifier FROM users WHERE name = ?")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        let Some((Some(sealed),)) = row else {
            return Ok(None);
        };
        let opened = self.key.open(&mysql_context(user), &sealed).map_err(|_| {
            StoreError::corrupt(format_args!(
                "the MySQL verifier of user {user} (reset it with `postern user passwd {user}`)"
            ))
        })?;
        MysqlVerifier::from_bytes(&opened).map(Some).ok_or_else(|| {
            StoreError::corrupt(format_args!(
                "the MySQL verifier of user {user} (reset it with `postern user passwd {user}`)"
            ))
        })
    }

    pub async fn login_info(&self, user: &str) -> Result<Option<LoginInfo>, StoreError> {
        let row: Option<(String, bool, bool, Option<String>, String)> = sqlx::query_as(
            "SELECT name, disabled, locked, scram, source FROM users WHERE name = ?",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        let Some((name, disabled, locked, scram, source)) = row else {
            return Ok(None);
        };
        let scram = match scram {
            Some(s) => Some(ScramVerifier::parse(&s).map_err(|_| {
                StoreError::corrupt(format_args!(
                    "the SCRAM verifier of user {name} (reset it with `postern user passwd {name}`)"
                ))
            })?),
            None => None,
        };
        Ok(Some(LoginInfo {
            name,
            disabled,
            locked,
            scram,
            source,
        }))
    }

    /// What each role held by `user` grants: (credential, datasource) pairs per role,
    /// roles and credentials in name order. Empty when the user holds no role (or does
    /// not exist).
    pub async fn role_grants(&self, user: &str) -> Result<Vec<RoleGrants>, StoreError> {
        let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT ur.role, c.name, c.datasource FROM user_roles ur \
             LEFT JOIN role_credentials rc ON rc.role = ur.role \
             LEFT JOIN credentials c ON c.name = rc.credential \
             WHERE ur.user = ? ORDER BY ur.role, c.name",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<RoleGrants> = Vec::new();
        for (role, cred, ds) in rows {
            if out.last().map(|g| &g.role) != Some(&role) {
                out.push(RoleGrants {
                    role,
                    credentials: Vec::new(),
                });
            }
            if let (Some(c), Some(d), Some(g)) = (cred, ds, out.last_mut()) {
                g.credentials.push((c, d));
            }
        }
        Ok(out)
    }

    /// Sets `user`'s password: checks the policy, then stores an argon2id hash (API login)
    /// and a SCRAM-SHA-256 verifier (PostgreSQL login).
    pub async fn set_password(&self, user: &str, password: &str) -> Result<(), StoreError> {
        let h = hash_both(&self.key, user, password).await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = ?, scram = ?, mysql_verifier = ?, updated_at = ? WHERE name = ?",
        )
        .bind(&h.phc)
        .bind(&h.scram)
        .bind(&h.mysql)
        .bind(now())
        .bind(user)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(Kind::User, user));
        }
        Ok(())
    }

    /// Checks `password` against `user`'s argon2id hash (API login). False for unknown
    /// users, users without a password and disabled users; the time taken does not reveal
    /// which.
    pub async fn verify_password(&self, user: &str, password: &str) -> Result<bool, StoreError> {
        let row: Option<(Option<String>, bool)> =
            sqlx::query_as("SELECT password_hash, disabled FROM users WHERE name = ?")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        let (phc, usable) = match row {
            Some((Some(phc), disabled)) => (phc, !disabled),
            _ => (String::new(), false),
        };
        let pw = Zeroizing::new(password.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            let phc = if phc.is_empty() { decoy_phc() } else { &phc };
            postern_auth::verify_password(&pw, phc)
        })
        .await?;
        Ok(ok && usable)
    }

    /// Portal/API permissions of `user`: the union over their roles, sorted. Empty for a
    /// disabled or unknown user.
    pub async fn permissions(&self, user: &str) -> Result<Vec<Permission>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT r.permissions FROM user_roles ur \
             JOIN roles r ON r.name = ur.role \
             JOIN users u ON u.name = ur.user \
             WHERE ur.user = ? AND u.disabled = 0",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let mut perms: Vec<Permission> =
            rows.iter().flat_map(|(p,)| parse_permissions(p)).collect();
        perms.sort();
        perms.dedup();
        Ok(perms)
    }

    /// When no user exists: creates role `admin` (permission `admin`) and user `admin`
    /// holding it, with a random 24-character password, and returns that password (to be
    /// shown once). Otherwise `None`.
    pub async fn bootstrap_admin(&self) -> Result<Option<String>, StoreError> {
        if self.user_count().await? > 0 {
            return Ok(None);
        }
        let password = random_password();
        let h = hash_both(&self.key, "admin", &password).await?;
        let mut tx = self.write_tx().await?;
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(&mut *tx)
            .await?;
        if count > 0 {
            return Ok(None);
        }
        let ts = now();
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT permissions FROM roles WHERE name = 'admin'")
                .fetch_optional(&mut *tx)
                .await?;
        match existing {
            None => {
                sqlx::query(
                    "INSERT INTO roles (name, description, permissions, created_at, updated_at) \
                     VALUES ('admin', 'Full administration (created at first start)', 'admin', ?, ?)",
                )
                .bind(&ts)
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
            }
            Some((perms,)) => {
                let mut p = parse_permissions(&perms);
                if !p.contains(&Permission::Admin) {
                    p.push(Permission::Admin);
                    sqlx::query(
                        "UPDATE roles SET permissions = ?, updated_at = ? WHERE name = 'admin'",
                    )
                    .bind(format_permissions(&p))
                    .bind(&ts)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        sqlx::query(
            "INSERT INTO users (name, password_hash, scram, mysql_verifier, disabled, created_at, updated_at) \
             VALUES ('admin', ?, ?, ?, 0, ?, ?)",
        )
        .bind(&h.phc)
        .bind(&h.scram)
        .bind(&h.mysql)
        .bind(&ts)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO user_roles (user, role) VALUES ('admin', 'admin')")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(password))
    }

    async fn user_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Users as the API shows them, by name; only `name` when given.
    pub(crate) async fn user_views(&self, name: Option<&str>) -> Result<Vec<UserView>, StoreError> {
        let users: Vec<(String, bool, bool)> = sqlx::query_as(
            "SELECT name, disabled, password_hash IS NOT NULL FROM users \
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let memberships: Vec<(String, String)> = sqlx::query_as(
            "SELECT user, role FROM user_roles WHERE ?1 IS NULL OR user = ?1 ORDER BY user, role",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (u, r) in memberships {
            roles.entry(u).or_default().push(r);
        }
        Ok(users
            .into_iter()
            .map(|(name, disabled, has_password)| UserView {
                roles: roles.remove(&name).unwrap_or_default(),
                name,
                disabled,
                has_password,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{open_temp, sample_doc, USER_PW};
    use postern_auth::ScramServer;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn scram_exchange(v: ScramVerifier, password: &str) -> bool {
        let mut server = ScramServer::new(v);
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let Ok(first) = server.client_first(client.message()) else {
            return false;
        };
        if client.update(first.as_bytes()).is_err() {
            return false;
        }
        let Ok(fin) = server.client_final(client.message()) else {
            return false;
        };
        client.finish(fin.as_bytes()).is_ok()
    }

    #[tokio::test]
    async fn set_password_gives_a_working_scram_verifier() {
        let (_d, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        store
            .set_password("alice", "new password 123")
            .await
            .unwrap();
        let info = store.login_info("alice").await.unwrap().unwrap();
        assert_eq!(info.name, "alice");
        assert!(!info.disabled);
        let v = info.scram.unwrap();
        assert_eq!(v.iterations, 4096);
        assert!(scram_exchange(v.clone(), "new password 123"));
        assert!(!scram_exchange(v, USER_PW));
        assert!(store
            .verify_password("alice", "new password 123")
            .await
            .unwrap());
        assert!(!store.verify_password("alice", USER_PW).await.unwrap());
        assert!(!store.verify_password("nobody", USER_PW).await.unwrap());
        assert!(store.login_info("nobody").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn mysql_verifier_follows_the_password() {
        let (_d, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        let n = postern_auth::mysql::nonce();
        let answer = |pw: &str| postern_auth::mysql::sha2_answer(&n, pw.as_bytes());
        // Created by apply with a password: a verifier right away.
        let v = store.mysql_verifier("alice").await.unwrap().unwrap();
        assert!(v.check_sha2(&n, &answer(USER_PW)));
        store
            .set_password("alice", "new password 123")
            .await
            .unwrap();
        let v = store.mysql_verifier("alice").await.unwrap().unwrap();
        assert!(v.check_sha2(&n, &answer("new password 123")));
        assert!(!v.check_sha2(&n, &answer(USER_PW)));
        let native = postern_auth::mysql::native_answer(&n, b"new password 123");
        assert!(v.check_native(&n, &native));
        assert!(store.mysql_verifier("nobody").await.unwrap().is_none());
        // Sealed for its user: moved to another row, it does not open.
        sqlx::query(
            "INSERT INTO users (name, disabled, created_at, updated_at, mysql_verifier) \
             SELECT 'mallory', 0, created_at, updated_at, mysql_verifier FROM users WHERE name = 'alice'",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        assert!(store.mysql_verifier("mallory").await.is_err());
    }

    #[tokio::test]
    async fn set_password_checks_policy_and_user() {
        let (_d, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        let e = store.set_password("alice", "short").await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("at least 8"));
        let e = store
            .set_password("bob", "long enough pw")
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            StoreError::NotFound {
                kind: Kind::User,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "user bob does not exist; list them with `postern get users`"
        );
    }

    #[tokio::test]
    async fn apply_password_works_for_login_and_disabled_refused() {
        let (_d, store) = open_temp().await;
        let mut doc = sample_doc();
        store.apply(&doc).await.unwrap();
        let v = store.login_info("alice").await.unwrap().unwrap().scram;
        assert!(scram_exchange(v.unwrap(), USER_PW));
        assert!(store.verify_password("alice", USER_PW).await.unwrap());
        doc.user[0].disabled = true;
        store.apply(&doc).await.unwrap();
        assert!(store.login_info("alice").await.unwrap().unwrap().disabled);
        assert!(!store.verify_password("alice", USER_PW).await.unwrap());
        assert!(store.permissions("alice").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn user_without_password_has_no_verifier() {
        let (_d, store) = open_temp().await;
        let mut doc = sample_doc();
        doc.user[0].password = None;
        store.apply(&doc).await.unwrap();
        let info = store.login_info("alice").await.unwrap().unwrap();
        assert!(info.scram.is_none());
        assert!(!store.verify_password("alice", "").await.unwrap());
    }

    #[tokio::test]
    async fn role_grants_feed_choose_credential() {
        let (_d, store) = open_temp().await;
        let mut doc = sample_doc();
        doc.credential.push(postern_core::CredentialSpec {
            name: "shop-ro".into(),
            datasource: "shop".into(),
            username: "shop_reader".into(),
            password: Some("pw".into()),
        });
        doc.role.push(postern_core::RoleSpec {
            name: "analyst".into(),
            credentials: vec!["shop-ro".into()],
            ..Default::default()
        });
        doc.role.push(postern_core::RoleSpec {
            name: "empty".into(),
            ..Default::default()
        });
        doc.user[0].roles = vec!["empty".into(), "dba".into(), "analyst".into()];
        store.apply(&doc).await.unwrap();
        let grants = store.role_grants("alice").await.unwrap();
        assert_eq!(
            grants,
            vec![
                RoleGrants {
                    role: "analyst".into(),
                    credentials: vec![("shop-ro".into(), "shop".into())]
                },
                RoleGrants {
                    role: "dba".into(),
                    credentials: vec![("shop-rw".into(), "shop".into())]
                },
                RoleGrants {
                    role: "empty".into(),
                    credentials: vec![]
                },
            ]
        );
        let chosen = postern_core::choose_credential("alice", "shop", &grants).unwrap();
        assert_eq!(chosen, "shop-ro");
        let cred = store.upstream_credential(&chosen).await.unwrap().unwrap();
        assert_eq!(cred.username, "shop_reader");
        assert_eq!(cred.password.as_str(), "pw");
        assert!(postern_core::choose_credential("alice", "crm", &grants).is_err());
        assert!(store.role_grants("nobody").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn bootstrap_admin_once() {
        let (_d, store) = open_temp().await;
        let pw = store.bootstrap_admin().await.unwrap().unwrap();
        assert_eq!(pw.len(), 24);
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(store.verify_password("admin", &pw).await.unwrap());
        assert_eq!(
            store.permissions("admin").await.unwrap(),
            vec![Permission::Admin]
        );
        assert!(store.bootstrap_admin().await.unwrap().is_none());
        let (_d2, other) = open_temp().await;
        other.apply(&sample_doc()).await.unwrap();
        assert!(other.bootstrap_admin().await.unwrap().is_none());
    }

    #[test]
    fn permission_list_roundtrip() {
        let s = format_permissions(&[Permission::AuditRead, Permission::Admin, Permission::Admin]);
        assert_eq!(s, "admin,audit-read");
        assert_eq!(
            parse_permissions("admin,bogus,audit-read"),
            vec![Permission::Admin, Permission::AuditRead]
        );
        assert!(parse_permissions("").is_empty());
    }

    #[tokio::test]
    async fn directory_users_follow_their_groups() {
        let (_dir, store) = open_temp().await;
        store.apply(&sample_doc()).await.unwrap();
        // First login: created without a password, roles from the groups.
        let unknown = store
            .sync_external_user("dora", "ldap", &["dba".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(unknown, ["nope"]);
        let info = store.login_info("dora").await.unwrap().unwrap();
        assert!(info.source == "ldap" && info.scram.is_none());
        assert_eq!(store.role_grants("dora").await.unwrap().len(), 1);
        // Groups changed in the directory: roles follow at the next login.
        let epoch = store.policy_epoch();
        let before = epoch.load(std::sync::atomic::Ordering::Acquire);
        store.sync_external_user("dora", "ldap", &[]).await.unwrap();
        assert!(store.role_grants("dora").await.unwrap().is_empty());
        assert!(epoch.load(std::sync::atomic::Ordering::Acquire) > before);
        // Nothing changed: no bump.
        let now = epoch.load(std::sync::atomic::Ordering::Acquire);
        store.sync_external_user("dora", "ldap", &[]).await.unwrap();
        assert_eq!(epoch.load(std::sync::atomic::Ordering::Acquire), now);
        // A local user with a password is not the directory's.
        assert!(store
            .sync_external_user("alice", "ldap", &[])
            .await
            .is_err());
        assert!(store
            .sync_external_user("bad name", "ldap", &[])
            .await
            .is_err());
        // One person, one source.
        assert!(store.sync_external_user("dora", "oidc", &[]).await.is_err());
        store.sync_external_user("olga", "oidc", &[]).await.unwrap();
        assert_eq!(
            store.login_info("olga").await.unwrap().unwrap().source,
            "oidc"
        );
    }
}
