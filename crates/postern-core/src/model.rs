//! Resources an admin manages, as they travel between the CLI, the API and the store.
//!
//! `*Spec` types are what an admin writes (in `postern apply` files or API bodies); secrets
//! appear in them only as input. `*View` types are what the API returns: they never carry
//! a secret.

use serde::{Deserialize, Serialize};

/// The kinds of resources, in the order `postern apply` creates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A real database behind an alias.
    Datasource,
    /// An upstream account (user + encrypted password) for one datasource.
    Credential,
    /// A target account on an SSH server, with the secret Postern signs in with.
    SshLogin,
    /// A named, prioritised group of data-masking rules (granted to roles).
    MaskingPolicy,
    /// A named set of grants.
    Role,
    /// A person.
    User,
}

impl Kind {
    /// All kinds, in dependency order.
    pub const ALL: [Kind; 6] = [
        Kind::Datasource,
        Kind::Credential,
        Kind::SshLogin,
        Kind::MaskingPolicy,
        Kind::Role,
        Kind::User,
    ];

    /// The plural path segment used by the API (`/api/v1/users`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Datasource => "datasources",
            Kind::Credential => "credentials",
            Kind::SshLogin => "ssh-logins",
            Kind::MaskingPolicy => "masking-policies",
            Kind::Role => "roles",
            Kind::User => "users",
        }
    }

    /// Parses a kind as a person types it: singular or plural, any case.
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.to_ascii_lowercase().replace('_', "-");
        if matches!(
            s.as_str(),
            "masking-policy" | "masking-policies" | "maskingpolicy" | "maskingpolicies" | "mp"
        ) {
            return Some(Kind::MaskingPolicy);
        }
        if matches!(
            s.as_str(),
            "ssh-login" | "ssh-logins" | "sshlogin" | "sshlogins" | "ssh"
        ) {
            return Some(Kind::SshLogin);
        }
        let s = s.strip_suffix('s').unwrap_or(&s);
        match s {
            "datasource" | "ds" => Some(Kind::Datasource),
            "credential" | "cred" => Some(Kind::Credential),
            "role" => Some(Kind::Role),
            "user" => Some(Kind::User),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Datasource => "datasource",
            Kind::Credential => "credential",
            Kind::SshLogin => "ssh-login",
            Kind::MaskingPolicy => "masking-policy",
            Kind::Role => "role",
            Kind::User => "user",
        })
    }
}

/// The database engine behind a datasource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatasourceType {
    /// PostgreSQL or any PostgreSQL-wire database.
    #[default]
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl DatasourceType {
    /// Lower-case name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasourceType::Postgres => "postgres",
            DatasourceType::Mysql => "mysql",
        }
    }
    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "postgres" | "postgresql" | "pg" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::Mysql),
            _ => None,
        }
    }
}

/// How Postern protects the hop to the real database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS if the server offers it, without verification; plain otherwise.
    Prefer,
    /// TLS required, certificate not verified.
    Require,
    /// TLS required, certificate chain verified against `tls_ca` (or the system roots).
    VerifyCa,
    /// As `verify-ca`, and the host name must match the certificate.
    VerifyFull,
}

impl UpstreamTls {
    /// Kebab-case name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamTls::Disable => "disable",
            UpstreamTls::Prefer => "prefer",
            UpstreamTls::Require => "require",
            UpstreamTls::VerifyCa => "verify-ca",
            UpstreamTls::VerifyFull => "verify-full",
        }
    }
    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// A datasource: a real database reached under an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasourceSpec {
    /// The alias clients use (`dbname=<alias>`).
    pub name: String,
    /// Engine.
    #[serde(default, rename = "type")]
    pub kind: DatasourceType,
    /// Upstream host name or address.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Database name on the upstream server.
    pub database: String,
    /// TLS mode of the upstream hop.
    #[serde(default)]
    pub tls: UpstreamTls,
    /// PEM bundle of CAs trusted for `verify-ca` / `verify-full` (system roots when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
    /// SQL firewall rules, in order: the first that applies decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall: Vec<FirewallRuleSpec>,
    /// Statements PROTECTED PASSTHROUGH mode lets through although Postern cannot analyse
    /// them, by exact text (surrounding whitespace and a final `;` ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_list: Vec<String>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirewallAction {
    /// Let it through (later rules are not consulted; privileges still apply).
    Allow,
    /// Let it through and raise an alert in the audit log.
    AllowAndAlert,
    /// Refuse, naming the rule to the client.
    Deny,
    /// Refuse with a generic message that does not reveal the rule (still audited).
    DenySilently,
}

/// A rule as written in admin files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallRuleSpec {
    /// Named in errors and audit events.
    pub name: String,
    /// allow | allow-and-alert | deny | deny-silently.
    pub action: FirewallAction,
    /// Conditions on the statement, all of which must hold: any, modify-without-where,
    /// drop, truncate, alter, ddl, multi-statement, tautology, comment-terminated,
    /// dangerous-function, copy-program.
    #[serde(default)]
    pub when: Vec<String>,
    /// A regular expression the statement text must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Datasource aliases the rule applies to (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasources: Vec<String>,
    /// Roles the rule applies to: a user holding any of them (everyone when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Client networks (CIDR) the rule applies to (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// Time of day the rule applies, UTC, `HH:MM-HH:MM` (may wrap past midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// Days the rule applies (mon … sun; all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
}

/// An upstream account for one datasource. The password is input only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// Credential name.
    pub name: String,
    /// Alias of the datasource it opens.
    pub datasource: String,
    /// Database user name on the upstream server.
    pub username: String,
    /// The upstream password. Required on creation; absent means "keep the stored one".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A credential as the API shows it: never with its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialView {
    /// Credential name.
    pub name: String,
    /// Alias of the datasource it opens.
    pub datasource: String,
    /// Database user name on the upstream server.
    pub username: String,
    /// Always true for a stored credential: there is an encrypted secret, which is never shown.
    pub has_password: bool,
}

/// A role: what its members may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Role name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Credentials members may reach datasources with.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// Portal/API permissions (`admin`, …).
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Statement-level privileges on datasource objects, in order (deny rules override
    /// allow rules wherever they are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileges: Vec<PrivilegeSpec>,
    /// Passthrough mode per datasource alias: `passthrough`, `masked` or `protected`.
    /// Members without a mode on a datasource get `protected`; a user with several roles
    /// gets the most restrictive of their modes.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub modes: std::collections::BTreeMap<String, String>,
    /// Masking policies whose rules apply to members (in MASKED and PROTECTED modes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masking: Vec<String>,
    /// Masking rules members are exempt from, as `policy/rule`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reveal: Vec<String>,
    /// SSH logins members may use, and what their sessions may do.
    #[serde(default, skip_serializing_if = "SshGrantSpec::is_empty")]
    pub ssh: SshGrantSpec,
}

/// What a role grants on SSH: the logins, the channel kinds beyond a shell/exec/file
/// transfer (all refused unless granted), and session limits. A user whose roles grant the
/// same login gets the union of the channel kinds and the shortest of the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SshGrantSpec {
    /// SSH logins members may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<String>,
    /// Local (`ssh -L`), dynamic (`ssh -D`) and remote (`ssh -R`) port forwarding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub port_forwarding: bool,
    /// Agent forwarding (`ssh -A`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent_forwarding: bool,
    /// X11 forwarding (`ssh -X`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub x11_forwarding: bool,
    /// A session with no input or output for this long is closed (`15m`, `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// A session is closed when it has lasted this long (`8h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session: Option<String>,
}

impl SshGrantSpec {
    /// Whether it grants nothing (and is left out of documents).
    pub fn is_empty(&self) -> bool {
        *self == SshGrantSpec::default()
    }
}

/// A target account on an SSH server. Secrets are input only: give `private_key` (an
/// OpenSSH private key to import) or `password`; with neither, Postern generates an
/// ed25519 key when the login is created (`postern sshlogin pubkey NAME` prints its public
/// half for the target's `authorized_keys`) and keeps the stored secret on later applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshLoginSpec {
    /// The name people connect to (`ssh -p 7022 NAME@postern`).
    pub name: String,
    /// Target host name or address.
    pub host: String,
    /// Target port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Account on the target.
    pub user: String,
    /// An OpenSSH private key to sign in with (unencrypted PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// A password to sign in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The target's host key (`ssh-ed25519 AAAA…`, as in `known_hosts` without the host
    /// name). Without it, the key the target shows first is pinned (trust on first use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

fn default_ssh_port() -> u16 {
    22
}

/// How Postern signs in to an SSH target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SshAuthKind {
    /// A key Postern generated (its public half is shown).
    GeneratedKey,
    /// A private key an admin imported.
    ImportedKey,
    /// A password.
    Password,
}

impl SshAuthKind {
    /// Kebab-case name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SshAuthKind::GeneratedKey => "generated-key",
            SshAuthKind::ImportedKey => "imported-key",
            SshAuthKind::Password => "password",
        }
    }
    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "generated-key" => Some(Self::GeneratedKey),
            "imported-key" => Some(Self::ImportedKey),
            "password" => Some(Self::Password),
            _ => None,
        }
    }
}

/// An SSH login as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshLoginView {
    /// Login name.
    pub name: String,
    /// Target host.
    pub host: String,
    /// Target port.
    pub port: u16,
    /// Account on the target.
    pub user: String,
    /// How Postern signs in.
    pub auth: SshAuthKind,
    /// The public half of the key Postern signs in with (for `authorized_keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The pinned host key, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// `configured`, or `first-use` when the key was pinned on the first connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_pinned: Option<String>,
}

/// A person's SSH public key, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKeyView {
    /// Owner.
    pub user: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// Algorithm (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`).
    pub algorithm: String,
    /// The key's comment.
    pub comment: String,
    /// When it was added.
    pub created_at: String,
}

/// A masking policy: rules that say what values of which columns become, with a priority
/// (when policies a user holds both cover a column, the higher priority decides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MaskingPolicySpec {
    /// Policy name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Higher wins.
    #[serde(default)]
    pub priority: i32,
    /// Rules, in order: the first that covers a column is this policy's answer.
    #[serde(default)]
    pub rules: Vec<MaskingRuleSpec>,
}

/// One masking rule as written in admin files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MaskingRuleSpec {
    /// Rule name (REVEAL grants name it as `policy/rule`).
    pub name: String,
    /// Columns covered: `datasource.database.schema.table.column`, each level a name or a
    /// glob (`*.*.*.*.*email*`).
    pub on: String,
    /// `full`, `partial(keep_first, keep_last)`, `hash`, `null`, `email`, `credit_card`,
    /// `regex('pattern', 'replacement')` or `date_year_only`.
    pub function: String,
    /// Whether the columns may be used in WHERE / JOIN / ORDER BY / GROUP BY / HAVING /
    /// window clauses (filtering on a masked column can reveal it by bisection).
    #[serde(default)]
    pub allow_filter: bool,
}

/// One privilege rule of a role: `allow` or `deny` some privileges `on` objects.
///
/// Privileges: `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`, `DDL`, `EXECUTE`,
/// `EXECUTE SQL BLOCK`, `EXECUTE DYNAMIC SQL`, `SET ROLE`, `COPY PROGRAM`, `COPY FILE`, or
/// `ALL`. Objects: `datasource.database.schema.object`, each level a name or a glob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrivilegeSpec {
    /// Privileges granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Privileges refused (overriding any allow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Object pattern.
    pub on: String,
}

/// Permissions on Postern itself (as opposed to data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Manage every resource and read the audit log.
    Admin,
    /// Read the audit log.
    AuditRead,
    /// See statements in the audit log as sent (literals in clear; passwords never).
    ViewClearSqlLog,
}

impl Permission {
    /// Kebab-case name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::AuditRead => "audit-read",
            Permission::ViewClearSqlLog => "view-clear-sql-log",
        }
    }
    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "audit-read" => Some(Self::AuditRead),
            "view-clear-sql-log" => Some(Self::ViewClearSqlLog),
            _ => None,
        }
    }
}

/// A person. The password is input only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// User name (what they type as `user=` in psql).
    pub name: String,
    /// Roles held.
    #[serde(default)]
    pub roles: Vec<String>,
    /// A disabled user cannot sign in anywhere.
    #[serde(default)]
    pub disabled: bool,
    /// Initial password. Applied only when the user is created (use `postern user passwd`
    /// to change it later), so that re-applying a file never resets a changed password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// User name.
    pub name: String,
    /// Roles held.
    pub roles: Vec<String>,
    /// Whether sign-in is refused.
    pub disabled: bool,
    /// Whether a password is set.
    pub has_password: bool,
}

/// What `postern apply` did to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    /// It did not exist.
    Created,
    /// It existed and differed.
    Updated,
    /// It existed as described.
    Unchanged,
}

/// A declarative document: every resource an admin wants to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApplyDocument {
    /// Datasources.
    #[serde(default, alias = "datasources")]
    pub datasource: Vec<DatasourceSpec>,
    /// Credentials.
    #[serde(default, alias = "credentials")]
    pub credential: Vec<CredentialSpec>,
    /// SSH logins.
    #[serde(
        default,
        rename = "ssh-login",
        alias = "ssh_login",
        alias = "ssh-logins",
        alias = "ssh_logins"
    )]
    pub ssh_login: Vec<SshLoginSpec>,
    /// Masking policies.
    #[serde(
        default,
        rename = "masking-policy",
        alias = "masking_policy",
        alias = "masking-policies",
        alias = "masking_policies"
    )]
    pub masking_policy: Vec<MaskingPolicySpec>,
    /// Roles.
    #[serde(default, alias = "roles")]
    pub role: Vec<RoleSpec>,
    /// Users.
    #[serde(default, alias = "users")]
    pub user: Vec<UserSpec>,
}

/// One line of an apply report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyChange {
    /// Resource kind.
    pub kind: Kind,
    /// Resource name.
    pub name: String,
    /// What happened.
    pub outcome: ApplyOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_parse() {
        assert_eq!(Kind::parse("users"), Some(Kind::User));
        assert_eq!(Kind::parse("Datasource"), Some(Kind::Datasource));
        assert_eq!(Kind::parse("creds"), Some(Kind::Credential));
        assert_eq!(Kind::parse("tables"), None);
        for s in [
            "masking-policy",
            "masking-policies",
            "Masking_Policies",
            "mp",
        ] {
            assert_eq!(Kind::parse(s), Some(Kind::MaskingPolicy), "{s}");
        }
        assert_eq!(Kind::MaskingPolicy.to_string(), "masking-policy");
        assert_eq!(Kind::MaskingPolicy.plural(), "masking-policies");
        assert_eq!(
            serde_json::to_value(Kind::MaskingPolicy).unwrap(),
            "masking-policy"
        );
        for k in Kind::ALL {
            assert_eq!(Kind::parse(&k.to_string()), Some(k));
            assert_eq!(Kind::parse(k.plural()), Some(k));
        }
    }

    #[test]
    fn masking_policies_in_documents() {
        let doc: ApplyDocument = serde_json::from_str(
            r#"{"masking-policy": [{"name": "pii", "priority": 10, "rules": [
                   {"name": "ssn", "on": "*.*.*.*.ssn", "function": "partial(0, 4)"}]}],
                "role": [{"name": "r", "masking": ["pii"], "reveal": ["pii/ssn"]}]}"#,
        )
        .unwrap();
        assert_eq!(doc.masking_policy[0].rules[0].name, "ssn");
        assert!(!doc.masking_policy[0].rules[0].allow_filter);
        assert_eq!(doc.role[0].reveal, ["pii/ssn"]);
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["masking-policy"][0]["priority"], 10);
        let again: ApplyDocument = serde_json::from_value(v).unwrap();
        assert_eq!(again, doc);
        let r: Result<MaskingRuleSpec, _> =
            serde_json::from_str(r#"{"name": "a", "on": "x", "function": "null", "fn": 1}"#);
        assert!(r.is_err());
    }

    #[test]
    fn unknown_fields_rejected() {
        let r: Result<UserSpec, _> = serde_json::from_str(r#"{"name":"a","rolez":[]}"#);
        assert!(r.is_err());
    }

    #[test]
    fn view_has_no_secret_field() {
        let v = CredentialView {
            name: "c".into(),
            datasource: "d".into(),
            username: "u".into(),
            has_password: true,
        };
        let s = serde_json::to_string(&v).unwrap();
        assert!(!s.contains("\"password\""));
    }
}
