//! `postern login` / `postern logout`: a short-lived client certificate from the user CA,
//! kept under `~/.postern/certs/`, that the database clients present instead of a password;
//! and `postern cert ls|revoke`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use super::admin;
use super::api::Api;
use super::conn::ConnArgs;
use super::profile::{self, create_private_dir, write_file};
use super::table::{self, Output};
use super::{ClientError, CmdResult};

/// `postern login`: with a password and a second factor, or `--sso`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// User to sign in as [default: the profile's; asked when interactive]
    #[arg(long, short)]
    user: Option<String>,
    /// The TOTP (or recovery) code; asked when needed, or read from the next line of stdin.
    #[arg(long)]
    code: Option<String>,
    /// How long the certificate should last, e.g. `8h`, `30m` [default: the server's
    /// auth.cert_ttl; at most its auth.cert_max_ttl]
    #[arg(long, value_name = "DURATION")]
    ttl: Option<humantime::Duration>,
    #[command(flatten)]
    sso: admin::SsoArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern logout`
#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern cert …`
#[derive(clap::Subcommand, Debug)]
pub enum CertCommand {
    /// List unexpired client certificates (yours; admins: everyone's, or --user's).
    Ls(CertLsArgs),
    /// Revoke a certificate by serial, or every certificate of a user. Sessions opened with
    /// them end within seconds.
    Revoke(RevokeArgs),
}

/// `postern cert ls`
#[derive(clap::Args, Debug)]
pub struct CertLsArgs {
    /// Only this user's certificates.
    #[arg(long)]
    user: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern cert revoke`
#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// Serial number (hex, as `postern cert ls` shows it).
    #[arg(required_unless_present = "user", conflicts_with = "user")]
    serial: Option<String>,
    /// Revoke every certificate of this user instead.
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

/// What `postern login` saved: the certificate and where it is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// API URL the certificate came from.
    pub server: String,
    /// The user it names.
    pub user: String,
    /// Its serial (hex).
    pub serial: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
}

/// Files of the saved identity.
pub struct IdentityFiles {
    /// The directory.
    pub dir: PathBuf,
}

impl IdentityFiles {
    /// `$POSTERN_HOME/certs` (else `~/.postern/certs`).
    pub fn locate() -> Result<Self, ClientError> {
        Ok(Self {
            dir: profile::dir()?.join("certs"),
        })
    }
    /// The private key (PKCS#8 PEM, mode 0600).
    pub fn key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    /// The certificate (PEM).
    pub fn cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }
    /// The CA that signed Postern's server certificate, when one was given at sign-in.
    pub fn server_ca(&self) -> PathBuf {
        self.dir.join("server-ca.crt")
    }
    fn meta(&self) -> PathBuf {
        self.dir.join("identity.toml")
    }

    /// The saved identity, if any.
    pub fn load(&self) -> Result<Option<Identity>, ClientError> {
        let path = self.meta();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ClientError::Failed(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        toml::from_str(&text).map(Some).map_err(|e| {
            ClientError::Failed(format!(
                "{} is unreadable ({e}); run `postern login` again",
                path.display()
            ))
        })
    }

    /// The saved identity, still valid: else an error saying to run `postern login`.
    pub fn current(&self) -> Result<Identity, ClientError> {
        let Some(id) = self.load()? else {
            return Err(ClientError::NotLoggedIn(
                "no Postern certificate on this machine: run `postern login` first".into(),
            ));
        };
        let expired = time::OffsetDateTime::parse(
            &id.not_after,
            &time::format_description::well_known::Rfc3339,
        )
        // The certificate itself holds whole seconds, and Postern refuses it from that
        // instant: so does the check here.
        .map(|t| t.replace_nanosecond(0).unwrap_or(t) <= time::OffsetDateTime::now_utc())
        .unwrap_or(true);
        if expired || !self.cert().is_file() || !self.key().is_file() {
            return Err(ClientError::NotLoggedIn(format!(
                "your Postern certificate {}: run `postern login` to get a new one",
                if expired {
                    format!("expired at {}", id.not_after)
                } else {
                    "files are missing".to_string()
                }
            )));
        }
        Ok(id)
    }

    fn remove(&self) -> std::io::Result<bool> {
        let mut any = false;
        for p in [self.meta(), self.cert(), self.key(), self.server_ca()] {
            match std::fs::remove_file(&p) {
                Ok(()) => any = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(any)
    }
}

#[derive(Deserialize)]
struct IssuedCert {
    user: String,
    serial: String,
    certificate: String,
    not_after: String,
}

/// `postern login`: signs in (password, second factor) and gets a client certificate.
pub async fn login(args: LoginArgs) -> CmdResult {
    let signed = admin::sign_in(args.user, args.code, args.sso, &args.conn).await?;
    // The key is made here and never leaves this machine: the server signs a request.
    let key = rcgen::KeyPair::generate()
        .map_err(|e| ClientError::Failed(format!("cannot generate a key: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, signed.user.as_str());
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| ClientError::Failed(format!("cannot make a certificate request: {e}")))?;
    let mut body = serde_json::json!({ "csr": csr });
    if let Some(ttl) = args.ttl {
        body["ttl_seconds"] = serde_json::json!(std::time::Duration::from(ttl).as_secs().max(1));
    }
    let answer = signed
        .api
        .call(reqwest::Method::POST, "/api/v1/certs", &[], Some(&body))
        .await?;
    let issued: IssuedCert = serde_json::from_value(answer)
        .map_err(|e| ClientError::Failed(format!("unexpected answer for a certificate: {e}")))?;

    let files = IdentityFiles::locate()?;
    create_private_dir(&files.dir)?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    write_file(&files.key(), key_pem.as_bytes(), 0o600)?;
    write_file(&files.cert(), issued.certificate.as_bytes(), 0o644)?;
    match &signed.api.conn().ca {
        Some(ca) => {
            let pem = std::fs::read(ca).map_err(|e| {
                ClientError::Failed(format!("cannot read the CA file {}: {e}", ca.display()))
            })?;
            write_file(&files.server_ca(), &pem, 0o644)?;
        }
        None => {
            let _ = std::fs::remove_file(files.server_ca());
        }
    }
    let id = Identity {
        server: signed.profile.server.clone(),
        user: issued.user,
        serial: issued.serial,
        not_after: issued.not_after,
    };
    let meta = toml::to_string(&id)
        .map_err(|e| ClientError::Failed(format!("cannot encode the identity: {e}")))?;
    write_file(&files.meta(), meta.as_bytes(), 0o600)?;
    println!(
        "Signed in to {} as {}; certificate {} valid until {}, saved in {}",
        id.server,
        id.user,
        id.serial,
        id.not_after,
        files.dir.display()
    );
    println!(
        "Next: `postern db ls`, then `postern db login ALIAS` (or `postern db connect ALIAS`)."
    );
    Ok(ExitCode::SUCCESS)
}

/// `postern logout`: revokes and removes the certificate, and signs out of the API.
pub async fn logout(args: LogoutArgs) -> CmdResult {
    let files = IdentityFiles::locate()?;
    if let Some(id) = files.load()? {
        let saved = profile::load()?;
        let conn = args.conn.resolve(saved.as_ref())?;
        if conn.token.is_some() {
            let api = Api::new(conn)?;
            let body = serde_json::json!({ "serial": id.serial });
            match api
                .call(
                    reqwest::Method::POST,
                    "/api/v1/certs/revoke",
                    &[],
                    Some(&body),
                )
                .await
            {
                Ok(_) => println!("Revoked certificate {}.", id.serial),
                // Expired, or the token is gone: the certificate dies on its own soon.
                Err(e) => eprintln!(
                    "warning: could not revoke certificate {} ({e}); it stays valid until {}",
                    id.serial, id.not_after
                ),
            }
        }
    }
    match files.remove() {
        Ok(true) => println!("Removed the certificate from {}.", files.dir.display()),
        Ok(false) => {}
        Err(e) => {
            return Err(ClientError::Failed(format!(
                "cannot remove the certificate in {}: {e}",
                files.dir.display()
            )))
        }
    }
    admin::sign_out(&args.conn).await
}

/// Runs `postern cert …`.
pub async fn run(cmd: CertCommand) -> CmdResult {
    match cmd {
        CertCommand::Ls(a) => list(a).await,
        CertCommand::Revoke(a) => revoke(a).await,
    }
}

async fn list(a: CertLsArgs) -> CmdResult {
    let api = Api::new(a.conn.resolve(profile::load()?.as_ref())?)?;
    let query: Vec<(&str, String)> = a.user.iter().map(|u| ("user", u.clone())).collect();
    let v = api
        .call(reqwest::Method::GET, "/api/v1/certs", &query, None)
        .await?;
    if a.output != Output::Table {
        table::print_structured(&v, a.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let revoked = c.get("revoked_at").map(|r| table::cell(r, 40));
                    vec![
                        table::cell(&c["serial"], 40),
                        table::cell(&c["user"], 40),
                        table::cell(&c["issued_at"], 40),
                        table::cell(&c["not_after"], 40),
                        revoked.unwrap_or_default(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        table::render(&["SERIAL", "USER", "ISSUED", "NOT AFTER", "REVOKED"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

async fn revoke(a: RevokeArgs) -> CmdResult {
    let api = Api::new(a.conn.resolve(profile::load()?.as_ref())?)?;
    let body = match (&a.serial, &a.user) {
        (Some(s), _) => serde_json::json!({ "serial": s }),
        (None, Some(u)) => serde_json::json!({ "user": u }),
        (None, None) => return Err(ClientError::Usage("give a serial or --user".into())),
    };
    let v = api
        .call(
            reqwest::Method::POST,
            "/api/v1/certs/revoke",
            &[],
            Some(&body),
        )
        .await?;
    let n = v
        .get("revoked")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    println!("Revoked {n} certificate{}.", if n == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}
