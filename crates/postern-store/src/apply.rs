//! `postern apply`: make the store hold what a document describes, in one transaction.
//!
//! Resources are handled in dependency order (datasources, credentials, masking policies,
//! roles, users), so a document may refer to things it defines itself. Each resource is compared with what is
//! stored and written only when it differs, so applying the same document twice reports
//! every resource `unchanged` the second time. Resources the document does not mention are
//! left alone.

use std::collections::{HashMap, HashSet};

use postern_core::names::valid_name;
use postern_core::{
    ApplyChange, ApplyDocument, ApplyOutcome, CredentialSpec, DatasourceSpec, Kind,
    MaskingPolicySpec, RoleSpec, UserSpec,
};
use postern_vault::MasterKey;
use sqlx::SqliteConnection;

use crate::users::{format_permissions, hash_both, PasswordHashes};
use crate::{credentials, datasources, masking, name_set, now, Store, StoreError};

impl Store {
    /// Creates or updates every resource in `doc`, in one transaction: either all of it is
    /// applied or none. Returns one change per resource, in dependency order.
    ///
    /// A credential's password is required when it is created; when given later it replaces
    /// the stored one (and counts as a change only if it differs). A user's password is used
    /// only when the user is created. Role lists of users and credential lists of roles are
    /// replaced by the document's (order and repetitions do not matter), and so are the
    /// masking and reveal lists of roles. A role may grant only masking policies, and reveal
    /// only rules (`policy/rule`), that exist; a masking policy may not drop a rule some
    /// role still reveals.
    pub async fn apply(&self, doc: &ApplyDocument) -> Result<Vec<ApplyChange>, StoreError> {
        validate(doc)?;
        let hashes = self.hash_new_user_passwords(&doc.user).await?;
        let mut tx = self.write_tx().await?;
        let mut changes = Vec::new();
        let mut push = |kind, name: &str, outcome| {
            changes.push(ApplyChange {
                kind,
                name: name.to_string(),
                outcome,
            })
        };
        for ds in &doc.datasource {
            push(
                Kind::Datasource,
                &ds.name,
                apply_datasource(&mut tx, &self.key, ds).await?,
            );
        }
        for c in &doc.credential {
            push(
                Kind::Credential,
                &c.name,
                apply_credential(&mut tx, &self.key, c).await?,
            );
        }
        for l in &doc.ssh_login {
            push(
                Kind::SshLogin,
                &l.name,
                crate::ssh::apply_login(&mut tx, &self.key, l).await?,
            );
        }
        let mut rules_may_be_gone = false;
        for p in &doc.masking_policy {
            let outcome = apply_masking_policy(&mut tx, p).await?;
            rules_may_be_gone |= outcome == ApplyOutcome::Updated;
            push(Kind::MaskingPolicy, &p.name, outcome);
        }
        for r in &doc.role {
            push(Kind::Role, &r.name, apply_role(&mut tx, r).await?);
        }
        if rules_may_be_gone {
            check_reveals(&mut tx).await?;
        }
        for u in &doc.user {
            let outcome = apply_user(&mut tx, u, hashes.get(&u.name)).await?;
            push(Kind::User, &u.name, outcome);
        }
        tx.commit().await?;
        if changes.iter().any(|c| c.outcome != ApplyOutcome::Unchanged) {
            self.changed();
        }
        Ok(changes)
    }

    /// Hashes the passwords of the users the document creates, before the transaction
    /// starts (hashing is slow and must not hold the write lock).
    async fn hash_new_user_passwords(
        &self,
        users: &[UserSpec],
    ) -> Result<HashMap<String, PasswordHashes>, StoreError> {
        let mut out = HashMap::new();
        for u in users {
            let Some(pw) = &u.password else { continue };
            let exists: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM users WHERE name = ?")
                .bind(&u.name)
                .fetch_optional(&self.pool)
                .await?;
            if exists.is_some() {
                continue;
            }
            let h = hash_both(&self.key, &u.name, pw)
                .await
                .map_err(|e| match e {
                    StoreError::Invalid(m) => StoreError::Invalid(format!("user {}: {m}", u.name)),
                    other => other,
                })?;
            out.insert(u.name.clone(), h);
        }
        Ok(out)
    }
}

/// Checks what can be checked without the database: names, duplicates, required fields.
fn validate(doc: &ApplyDocument) -> Result<(), StoreError> {
    let names = [
        (
            Kind::Datasource,
            doc.datasource.iter().map(|d| &d.name).collect::<Vec<_>>(),
        ),
        (
            Kind::Credential,
            doc.credential.iter().map(|c| &c.name).collect(),
        ),
        (
            Kind::MaskingPolicy,
            doc.masking_policy.iter().map(|p| &p.name).collect(),
        ),
        (
            Kind::SshLogin,
            doc.ssh_login.iter().map(|l| &l.name).collect(),
        ),
        (Kind::Role, doc.role.iter().map(|r| &r.name).collect()),
        (Kind::User, doc.user.iter().map(|u| &u.name).collect()),
    ];
    for (kind, list) in names {
        let mut seen = HashSet::new();
        for name in list {
            if !valid_name(name) {
                return Err(StoreError::Invalid(format!(
                    "{kind} name {name:?} is invalid: use 1 to 63 ASCII letters, digits, '_', '-' \
                     or '.', starting with a letter or digit"
                )));
            }
            if !seen.insert(name) {
                return Err(StoreError::Invalid(format!(
                    "{kind} {name} appears twice in the document; keep one definition"
                )));
            }
        }
    }
    for d in &doc.datasource {
        let bad = |m: &str| Err(StoreError::Invalid(format!("datasource {}: {m}", d.name)));
        if d.host.trim().is_empty() {
            return bad("host is empty; give the upstream server's host name or address");
        }
        if d.port == 0 {
            return bad(
                "port 0 is not a valid port; give the upstream server's port (5432 for PostgreSQL)",
            );
        }
        if d.database.is_empty() {
            return bad("database is empty; give the database name on the upstream server");
        }
        if let Some(ca) = &d.tls_ca {
            if !ca.contains("-----BEGIN CERTIFICATE-----") {
                return bad("tls_ca holds no PEM certificate; paste the CA bundle (-----BEGIN CERTIFICATE----- …) or remove tls_ca to use the system roots");
            }
        }
    }
    for p in &doc.masking_policy {
        postern_policy::compile_masking_policy(p)
            .map_err(|e| StoreError::Invalid(format!("masking-policy {}: {e}", p.name)))?;
    }
    for l in &doc.ssh_login {
        crate::ssh::validate_login(l)?;
    }
    for r in &doc.role {
        crate::ssh::validate_grant(&r.name, &r.ssh)?;
        if let Some(bad) = r.reveal.iter().find(|e| masking::split_reveal(e).is_none()) {
            return Err(StoreError::Invalid(format!(
                "role {}: reveal {bad:?} does not name a masking rule; write it as \
                 policy/rule (for example pii/ssn)",
                r.name
            )));
        }
    }
    for c in &doc.credential {
        if c.username.is_empty() {
            return Err(StoreError::Invalid(format!(
                "credential {}: username is empty; give the database user name on the upstream server",
                c.name
            )));
        }
        if c.password.as_deref().is_some_and(|p| p.contains('\0')) {
            return Err(StoreError::Invalid(format!(
                "credential {}: the password contains a NUL character, which no database protocol can carry",
                c.name
            )));
        }
    }
    Ok(())
}

fn missing(from_kind: Kind, from: &str, kind: Kind, name: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{from_kind} {from} refers to {kind} {name}, which does not exist; \
         define it in the same file or create it first"
    ))
}

/// The error for a REVEAL of a rule its masking policy does not have.
fn missing_rule(role: &str, policy: &MaskingPolicySpec, rule: &str) -> StoreError {
    let rules: Vec<&str> = policy.rules.iter().map(|r| r.name.as_str()).collect();
    StoreError::Invalid(format!(
        "role {role} refers to rule {rule} of {} {}, which does not exist; \
         define it in the same file or create it first (the policy's rules: {})",
        Kind::MaskingPolicy,
        policy.name,
        if rules.is_empty() {
            "none".to_string()
        } else {
            rules.join(", ")
        }
    ))
}

async fn exists(conn: &mut SqliteConnection, sql: &str, name: &str) -> Result<bool, StoreError> {
    let row: Option<(i64,)> = sqlx::query_as(sql).bind(name).fetch_optional(conn).await?;
    Ok(row.is_some())
}

async fn apply_datasource(
    conn: &mut SqliteConnection,
    key: &MasterKey,
    d: &DatasourceSpec,
) -> Result<ApplyOutcome, StoreError> {
    for rule in &d.firewall {
        postern_policy::FirewallRule::compile(rule)
            .map_err(|e| StoreError::Invalid(format!("datasource {}: {e}", d.name)))?;
    }
    let mut d = d.clone();
    d.allow_list = d
        .allow_list
        .iter()
        .map(|s| datasources::allow_list_form(s).to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let stored = datasources::fetch(conn, &d.name).await?;
    let sealed_ok = match &stored {
        Some(_) => {
            datasources::sealed_allow_list(conn, key, &d.name).await? == Some(d.allow_list.clone())
        }
        None => false,
    };
    let (sql, outcome) = match stored {
        Some(s) if s == d && sealed_ok => return Ok(ApplyOutcome::Unchanged),
        Some(_) => (
            "UPDATE datasources SET type = ?2, host = ?3, port = ?4, database = ?5, tls = ?6, \
             tls_ca = ?7, firewall = ?9, allow_list = ?10, allow_list_seal = ?11, \
             updated_at = ?8 WHERE name = ?1",
            ApplyOutcome::Updated,
        ),
        None => (
            "INSERT INTO datasources (name, type, host, port, database, tls, tls_ca, firewall, \
             allow_list, allow_list_seal, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9, ?10, ?11, ?8, ?8)",
            ApplyOutcome::Created,
        ),
    };
    let list_json = to_json_text(&d.allow_list)?;
    let seal = (!d.allow_list.is_empty()).then(|| {
        key.seal(
            &datasources::allow_list_context(&d.name),
            list_json.as_bytes(),
        )
    });
    sqlx::query(sql)
        .bind(&d.name)
        .bind(d.kind.as_str())
        .bind(&d.host)
        .bind(i64::from(d.port))
        .bind(&d.database)
        .bind(d.tls.as_str())
        .bind(&d.tls_ca)
        .bind(now())
        .bind(to_json_text(&d.firewall)?)
        .bind(&list_json)
        .bind(seal)
        .execute(conn)
        .await?;
    Ok(outcome)
}

fn to_json_text<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(format!("cannot serialize: {e}")))
}

async fn apply_credential(
    conn: &mut SqliteConnection,
    key: &MasterKey,
    c: &CredentialSpec,
) -> Result<ApplyOutcome, StoreError> {
    if !exists(
        conn,
        "SELECT 1 FROM datasources WHERE name = ?",
        &c.datasource,
    )
    .await?
    {
        return Err(missing(
            Kind::Credential,
            &c.name,
            Kind::Datasource,
            &c.datasource,
        ));
    }
    let stored: Option<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT datasource, username, password FROM credentials WHERE name = ?")
            .bind(&c.name)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((datasource, username, sealed)) = stored else {
        let Some(pw) = &c.password else {
            return Err(StoreError::Invalid(format!(
                "credential {} has no password; a password is required when a credential is created",
                c.name
            )));
        };
        sqlx::query(
            "INSERT INTO credentials (name, datasource, username, password, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(&c.name)
        .bind(&c.datasource)
        .bind(&c.username)
        .bind(credentials::seal(key, &c.name, pw))
        .bind(now())
        .execute(conn)
        .await?;
        return Ok(ApplyOutcome::Created);
    };
    // A stored password that no longer opens (another master key) is replaced when the
    // document gives one: that is how an admin recovers.
    let new_password = c.password.as_deref().filter(|pw| {
        credentials::open(key, &c.name, &sealed).map_or(true, |old| old.as_str() != *pw)
    });
    if datasource == c.datasource && username == c.username && new_password.is_none() {
        return Ok(ApplyOutcome::Unchanged);
    }
    let sealed = match new_password {
        Some(pw) => credentials::seal(key, &c.name, pw),
        None => sealed,
    };
    sqlx::query(
        "UPDATE credentials SET datasource = ?2, username = ?3, password = ?4, updated_at = ?5 \
         WHERE name = ?1",
    )
    .bind(&c.name)
    .bind(&c.datasource)
    .bind(&c.username)
    .bind(sealed)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(ApplyOutcome::Updated)
}

async fn apply_masking_policy(
    conn: &mut SqliteConnection,
    p: &MaskingPolicySpec,
) -> Result<ApplyOutcome, StoreError> {
    let p = masking::canonical(p);
    let stored = masking::fetch_all(conn, Some(&p.name)).await?.pop();
    let (sql, outcome) = match stored {
        Some(s) if s == p => return Ok(ApplyOutcome::Unchanged),
        Some(_) => (
            "UPDATE masking_policies SET description = ?2, priority = ?3, rules = ?4, \
             updated_at = ?5 WHERE name = ?1",
            ApplyOutcome::Updated,
        ),
        None => (
            "INSERT INTO masking_policies (name, description, priority, rules, created_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            ApplyOutcome::Created,
        ),
    };
    sqlx::query(sql)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.priority)
        .bind(to_json_text(&p.rules)?)
        .bind(now())
        .execute(conn)
        .await?;
    Ok(outcome)
}

/// Checks that every rule a role reveals still exists, after masking policies were
/// updated (a rule may have been dropped or renamed while a role not in the document
/// still reveals it).
async fn check_reveals(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut policies = HashMap::new();
    for (role, _, reveal) in masking::role_references(conn).await? {
        for entry in reveal {
            let Some((policy, rule)) = masking::split_reveal(&entry) else {
                continue;
            };
            if !policies.contains_key(policy) {
                let spec = masking::fetch_all(conn, Some(policy)).await?.pop();
                policies.insert(policy.to_string(), spec);
            }
            let Some(Some(spec)) = policies.get(policy) else {
                continue;
            };
            if !spec.rules.iter().any(|r| r.name == rule) {
                return Err(StoreError::Invalid(format!(
                    "masking-policy {policy} no longer has rule {rule}, which role {role} \
                     reveals; keep the rule, or remove {entry:?} from the role's reveal list \
                     (in the same file)"
                )));
            }
        }
    }
    Ok(())
}

/// A set-valued link between resources: `(table, owner column, member column)`.
pub(crate) type Link = (&'static str, &'static str, &'static str);
const ROLE_CREDENTIALS: Link = ("role_credentials", "role", "credential");
const USER_ROLES: Link = ("user_roles", "user", "role");

/// The members linked to `owner`, sorted (compared with a [`name_set`]).
async fn linked(
    conn: &mut SqliteConnection,
    (table, owner_col, member_col): Link,
    owner: &str,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as(&format!(
        "SELECT {member_col} FROM {table} WHERE {owner_col} = ? ORDER BY {member_col}"
    ))
    .bind(owner)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(m,)| m).collect())
}

/// Makes `members` exactly the members linked to `owner`.
async fn relink(
    conn: &mut SqliteConnection,
    (table, owner_col, member_col): Link,
    owner: &str,
    members: &[String],
) -> Result<(), StoreError> {
    sqlx::query(&format!("DELETE FROM {table} WHERE {owner_col} = ?"))
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    for m in members {
        sqlx::query(&format!(
            "INSERT INTO {table} ({owner_col}, {member_col}) VALUES (?, ?)"
        ))
        .bind(owner)
        .bind(m)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn apply_role(conn: &mut SqliteConnection, r: &RoleSpec) -> Result<ApplyOutcome, StoreError> {
    let creds = name_set(&r.credentials);
    for c in &creds {
        if !exists(conn, "SELECT 1 FROM credentials WHERE name = ?", c).await? {
            return Err(missing(Kind::Role, &r.name, Kind::Credential, c));
        }
    }
    postern_policy::validate_role(r)
        .map_err(|e| StoreError::Invalid(format!("role {}: {e}", r.name)))?;
    for ds in r.modes.keys() {
        if !exists(conn, "SELECT 1 FROM datasources WHERE name = ?", ds).await? {
            return Err(missing(Kind::Role, &r.name, Kind::Datasource, ds));
        }
    }
    let masking_list = name_set(&r.masking);
    for p in &masking_list {
        if !exists(conn, "SELECT 1 FROM masking_policies WHERE name = ?", p).await? {
            return Err(missing(Kind::Role, &r.name, Kind::MaskingPolicy, p));
        }
    }
    let reveal_list = name_set(&r.reveal);
    for entry in &reveal_list {
        // `validate` checked the form.
        let Some((policy, rule)) = masking::split_reveal(entry) else {
            continue;
        };
        let Some(spec) = masking::fetch_all(conn, Some(policy)).await?.pop() else {
            return Err(missing(Kind::Role, &r.name, Kind::MaskingPolicy, policy));
        };
        if !spec.rules.iter().any(|x| x.name == rule) {
            return Err(missing_rule(&r.name, &spec, rule));
        }
    }
    let ssh_logins = crate::ssh::grant_logins(&r.ssh);
    for l in &ssh_logins {
        if !exists(conn, "SELECT 1 FROM ssh_logins WHERE name = ?", l).await? {
            return Err(missing(Kind::Role, &r.name, Kind::SshLogin, l));
        }
    }
    let ssh_json = crate::ssh::options_json(&r.ssh)?;
    let perms = format_permissions(&r.permissions);
    let privileges = crate::roles::privileges_json(&r.privileges)?;
    let modes = crate::roles::modes_json(&r.modes)?;
    let masking_json = to_json_text(&masking_list)?;
    let reveal_json = to_json_text(&reveal_list)?;
    type Row = (String, String, String, String, String, String, String);
    let stored: Option<Row> = sqlx::query_as(
        "SELECT description, permissions, privileges, modes, masking, reveal, ssh FROM roles \
         WHERE name = ?",
    )
    .bind(&r.name)
    .fetch_optional(&mut *conn)
    .await?;
    let outcome = match stored {
        None => {
            sqlx::query(
                "INSERT INTO roles (name, description, permissions, privileges, modes, \
                 masking, reveal, ssh, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?8, ?9, ?6, ?6)",
            )
            .bind(&r.name)
            .bind(&r.description)
            .bind(&perms)
            .bind(&privileges)
            .bind(&modes)
            .bind(now())
            .bind(&masking_json)
            .bind(&reveal_json)
            .bind(&ssh_json)
            .execute(&mut *conn)
            .await?;
            ApplyOutcome::Created
        }
        Some((
            description,
            permissions,
            stored_privileges,
            stored_modes,
            stored_masking,
            stored_reveal,
            stored_ssh,
        )) => {
            let same_creds = linked(conn, ROLE_CREDENTIALS, &r.name).await? == creds;
            let same_logins =
                linked(conn, crate::ssh::ROLE_SSH_LOGINS, &r.name).await? == ssh_logins;
            if description == r.description
                && permissions == perms
                && stored_privileges == privileges
                && stored_modes == modes
                && stored_masking == masking_json
                && stored_reveal == reveal_json
                && stored_ssh == ssh_json
                && same_creds
                && same_logins
            {
                return Ok(ApplyOutcome::Unchanged);
            }
            sqlx::query(
                "UPDATE roles SET description = ?2, permissions = ?3, privileges = ?4, \
                 modes = ?5, masking = ?7, reveal = ?8, ssh = ?9, updated_at = ?6 WHERE name = ?1",
            )
            .bind(&r.name)
            .bind(&r.description)
            .bind(&perms)
            .bind(&privileges)
            .bind(&modes)
            .bind(now())
            .bind(&masking_json)
            .bind(&reveal_json)
            .bind(&ssh_json)
            .execute(&mut *conn)
            .await?;
            ApplyOutcome::Updated
        }
    };
    relink(conn, ROLE_CREDENTIALS, &r.name, &creds).await?;
    relink(conn, crate::ssh::ROLE_SSH_LOGINS, &r.name, &ssh_logins).await?;
    Ok(outcome)
}

async fn apply_user(
    conn: &mut SqliteConnection,
    u: &UserSpec,
    hashes: Option<&PasswordHashes>,
) -> Result<ApplyOutcome, StoreError> {
    let roles = name_set(&u.roles);
    for r in &roles {
        if !exists(conn, "SELECT 1 FROM roles WHERE name = ?", r).await? {
            return Err(missing(Kind::User, &u.name, Kind::Role, r));
        }
    }
    let stored: Option<(bool,)> = sqlx::query_as("SELECT disabled FROM users WHERE name = ?")
        .bind(&u.name)
        .fetch_optional(&mut *conn)
        .await?;
    let outcome = match stored {
        None => {
            if u.password.is_some() && hashes.is_none() {
                // It existed when the passwords were hashed and was deleted since.
                return Err(StoreError::Conflict(format!(
                    "user {} was deleted while this document was being applied; apply it again",
                    u.name
                )));
            }
            sqlx::query(
                "INSERT INTO users (name, password_hash, scram, mysql_verifier, disabled, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?6, ?4, ?5, ?5)",
            )
            .bind(&u.name)
            .bind(hashes.map(|h| &h.phc))
            .bind(hashes.map(|h| &h.scram))
            .bind(u.disabled)
            .bind(now())
            .bind(hashes.map(|h| &h.mysql))
            .execute(&mut *conn)
            .await?;
            ApplyOutcome::Created
        }
        Some((disabled,)) => {
            let same_roles = linked(conn, USER_ROLES, &u.name).await? == roles;
            if disabled == u.disabled && same_roles {
                return Ok(ApplyOutcome::Unchanged);
            }
            sqlx::query("UPDATE users SET disabled = ?2, updated_at = ?3 WHERE name = ?1")
                .bind(&u.name)
                .bind(u.disabled)
                .bind(now())
                .execute(&mut *conn)
                .await?;
            ApplyOutcome::Updated
        }
    };
    relink(conn, USER_ROLES, &u.name, &roles).await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests;
