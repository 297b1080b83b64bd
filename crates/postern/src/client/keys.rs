//! `postern key …` (people's SSH public keys) and `postern sshlogin …` (the public half of
//! an SSH login's key, its pinned host key).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use postern_core::UserKeyView;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::conn::ConnArgs;
use super::resources::{api, seg};
use super::table::render;
use super::{ClientError, CmdResult};

/// `postern key …`
#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Register an SSH public key, so `ssh -p 7022 LOGIN@postern` knows you by it.
    Add(AddArgs),
    /// List registered keys (yours; anyone's or everyone's for an admin).
    Ls(LsArgs),
    /// Remove a key; sessions opened with it end.
    Rm(RmArgs),
}

/// `postern key add`
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// A .pub file, or `-` for stdin (default: ~/.ssh/id_ed25519.pub, or stdin when piped).
    file: Option<PathBuf>,
    /// Whose key it is (default: you; another user needs admin).
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern key ls`
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Whose keys (default: yours).
    #[arg(long, conflicts_with = "all")]
    user: Option<String>,
    /// Everyone's keys (admin).
    #[arg(long)]
    all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern key rm`
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// The key's fingerprint, `SHA256:…` (from `postern key ls`).
    fingerprint: String,
    /// Whose key it is (default: you).
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern sshlogin …`
#[derive(clap::Subcommand, Debug)]
pub enum SshLoginCommand {
    /// Print the public key Postern signs in with, for the target's authorized_keys:
    /// `postern sshlogin pubkey web | ssh admin@web 'cat >> ~/.ssh/authorized_keys'`.
    Pubkey(NameArgs),
    /// Forget the target's pinned host key (after a legitimate re-install): the next
    /// connection pins the key the target shows.
    ForgetHostKey(NameArgs),
}

/// An SSH login's name.
#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// The SSH login.
    name: String,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Deserialize)]
struct WhoAmI {
    user: String,
}

/// Runs a key command.
pub async fn run(cmd: KeyCommand) -> CmdResult {
    match cmd {
        KeyCommand::Add(a) => add(a).await,
        KeyCommand::Ls(a) => ls(a).await,
        KeyCommand::Rm(a) => rm(a).await,
    }
}

/// Runs an sshlogin command.
pub async fn run_login(cmd: SshLoginCommand) -> CmdResult {
    match cmd {
        SshLoginCommand::Pubkey(a) => {
            let api = api(&a.conn)?;
            let v = api
                .call(
                    Method::GET,
                    &format!("/api/v1/ssh-logins/{}/public-key", seg(&a.name)),
                    &[],
                    None,
                )
                .await?;
            let key = v["public_key"]
                .as_str()
                .ok_or_else(|| ClientError::Failed("the server sent no public key".into()))?;
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
        SshLoginCommand::ForgetHostKey(a) => {
            let api = api(&a.conn)?;
            api.call(
                Method::POST,
                &format!("/api/v1/ssh-logins/{}/forget-host-key", seg(&a.name)),
                &[],
                None,
            )
            .await?;
            println!(
                "forgot the host key of ssh login {}; the next connection pins the key the target shows",
                a.name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn who(api: &super::api::Api, user: Option<String>) -> Result<String, ClientError> {
    match user {
        Some(u) => Ok(u),
        None => Ok(api.get::<WhoAmI>("/api/v1/whoami", &[]).await?.user),
    }
}

/// The key line to register: from FILE, stdin (`-`, or piped with no FILE), or the usual
/// default key (also when piped stdin turns out empty, as under cron or CI).
fn read_key(file: Option<PathBuf>) -> Result<String, ClientError> {
    let from_stdin = || -> Result<String, ClientError> {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| ClientError::Usage(format!("cannot read the key from stdin: {e}")))?;
        Ok(s)
    };
    let default_file = || -> Result<String, ClientError> {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let p = home.join(".ssh").join("id_ed25519.pub");
        std::fs::read_to_string(&p).map_err(|e| {
            ClientError::Usage(format!(
                "cannot read {} ({e}); name a .pub file (postern key add FILE) or pipe one in \
                 (postern key add - < FILE)",
                p.display()
            ))
        })
    };
    let text = match file {
        Some(p) if p.as_os_str() == "-" => from_stdin()?,
        Some(p) => std::fs::read_to_string(&p)
            .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", p.display())))?,
        None if !std::io::stdin().is_terminal() => {
            let piped = from_stdin()?;
            if piped.trim().is_empty() {
                default_file()?
            } else {
                piped
            }
        }
        None => default_file()?,
    };
    if text.contains("PRIVATE KEY") {
        return Err(ClientError::Usage(
            "that is a private key: give the .pub file (never send a private key anywhere)".into(),
        ));
    }
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| ClientError::Usage("no public key found in the input".into()))?;
    Ok(line.to_string())
}

async fn add(a: AddArgs) -> CmdResult {
    let line = read_key(a.file)?;
    let api = api(&a.conn)?;
    let user = who(&api, a.user).await?;
    let v = api
        .call(
            Method::POST,
            &format!("/api/v1/users/{}/ssh-keys", seg(&user)),
            &[],
            Some(&json!({ "public_key": line })),
        )
        .await?;
    let view: UserKeyView = serde_json::from_value(v)
        .map_err(|e| ClientError::Failed(format!("unexpected answer: {e}")))?;
    println!(
        "registered {} key {} for {}",
        view.algorithm, view.fingerprint, view.user
    );
    Ok(ExitCode::SUCCESS)
}

async fn ls(a: LsArgs) -> CmdResult {
    let api = api(&a.conn)?;
    let keys: Vec<UserKeyView> = if a.all {
        api.get("/api/v1/ssh-keys", &[]).await?
    } else {
        let user = who(&api, a.user).await?;
        api.get(&format!("/api/v1/users/{}/ssh-keys", seg(&user)), &[])
            .await?
    };
    if a.json {
        let text = serde_json::to_string_pretty(&keys)
            .map_err(|e| ClientError::Failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.user.clone(),
                k.fingerprint.clone(),
                k.algorithm.clone(),
                k.comment.clone(),
                k.created_at.get(..19).unwrap_or(&k.created_at).to_string() + "Z",
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &["USER", "FINGERPRINT", "ALGORITHM", "COMMENT", "ADDED"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

async fn rm(a: RmArgs) -> CmdResult {
    let api = api(&a.conn)?;
    let user = who(&api, a.user).await?;
    api.call(
        Method::DELETE,
        &format!(
            "/api/v1/users/{}/ssh-keys/{}",
            seg(&user),
            seg(&a.fingerprint)
        ),
        &[],
        None,
    )
    .await?;
    println!("removed key {} of {user}", a.fingerprint);
    Ok(ExitCode::SUCCESS)
}
