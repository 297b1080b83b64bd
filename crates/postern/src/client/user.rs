//! `postern user add` and `postern user passwd`.

use std::process::ExitCode;

use postern_core::Permission;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::conn::ConnArgs;
use super::resources::{api, seg};
use super::{input, ClientError, CmdResult};

/// `postern user …`
#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user.
    ///
    /// The password is typed twice at a hidden prompt, or read as one line from stdin with
    /// --password-stdin.
    Add(AddArgs),
    /// Set a user's password (an admin: anyone's; others: their own, giving the current one).
    ///
    /// With --password-stdin the new password is the first line of stdin; a user who is not
    /// an admin gives the current password on the first line and the new one on the second.
    Passwd(PasswdArgs),
    /// Lock a user (admin): their logins are refused, their live sessions end within
    /// seconds and their API tokens and client certificates are revoked; until `postern
    /// user unlock`.
    Lock(NameArgs),
    /// Unlock a user (admin): lifts the admin lock and any lockout from failed logins.
    Unlock(NameArgs),
}

/// `postern user lock|unlock`
#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// User name.
    name: String,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern user add`
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// User name.
    name: String,
    /// Role to hold (repeat for several).
    #[arg(long = "role", short = 'r', value_name = "ROLE")]
    roles: Vec<String>,
    /// Read the password from stdin (one line) instead of prompting.
    #[arg(long, conflicts_with = "no_password")]
    password_stdin: bool,
    /// Create the user without a password (they cannot sign in until one is set).
    #[arg(long)]
    no_password: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern user passwd`
#[derive(clap::Args, Debug)]
pub struct PasswdArgs {
    /// User name [default: the signed-in user]
    name: Option<String>,
    /// Read the password(s) from stdin instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Deserialize)]
struct WhoAmI {
    user: String,
    permissions: Vec<Permission>,
}

/// Runs a user command.
pub async fn run(cmd: UserCommand) -> CmdResult {
    match cmd {
        UserCommand::Add(a) => add(a).await,
        UserCommand::Passwd(a) => passwd(a).await,
        UserCommand::Lock(a) => lock(a, true).await,
        UserCommand::Unlock(a) => lock(a, false).await,
    }
}

async fn lock(a: NameArgs, locked: bool) -> CmdResult {
    let api = api(&a.conn)?;
    let verb = if locked { "lock" } else { "unlock" };
    let path = format!("/api/v1/users/{}/{verb}", seg(&a.name));
    api.call(Method::POST, &path, &[], Some(&json!({}))).await?;
    println!("user {} {verb}ed", a.name);
    Ok(ExitCode::SUCCESS)
}

async fn add(a: AddArgs) -> CmdResult {
    let api = api(&a.conn)?;
    let path = format!("/api/v1/users/{}", seg(&a.name));
    // PUT would update an existing user; `add` must not touch one.
    if api.get_optional(&path).await?.is_some() {
        return Err(ClientError::Failed(format!(
            "user {} already exists; change it with `postern apply` or `postern user passwd {}`",
            a.name, a.name
        )));
    }
    let password = if a.no_password {
        None
    } else {
        Some(input::new_password(a.password_stdin)?)
    };
    let mut body = json!({ "roles": a.roles });
    if let Some(p) = &password {
        body["password"] = json!(p.as_str());
    }
    api.call(Method::PUT, &path, &[], Some(&body)).await?;
    println!("created user {}", a.name);
    Ok(ExitCode::SUCCESS)
}

async fn passwd(a: PasswdArgs) -> CmdResult {
    let api = api(&a.conn)?;
    let me: WhoAmI = api.get("/api/v1/whoami", &[]).await?;
    let name = a.name.unwrap_or_else(|| me.user.clone());
    let needs_current = !me.permissions.contains(&Permission::Admin);
    if needs_current && name != me.user {
        return Err(ClientError::Failed(format!(
            "only an admin can change another user's password (you are {})",
            me.user
        )));
    }
    let current = if !needs_current {
        None
    } else if a.password_stdin {
        Some(input::stdin_line("the current password")?)
    } else if input::interactive() {
        Some(input::prompt_secret("Current password: ")?)
    } else {
        return Err(ClientError::Usage(
            "stdin is not a terminal: pass --password-stdin and pipe the current and the new password, one per line".into(),
        ));
    };
    let new = input::new_password(a.password_stdin)?;
    let mut body = json!({ "password": new.as_str() });
    if let Some(c) = &current {
        body["current_password"] = json!(c.as_str());
    }
    let path = format!("/api/v1/users/{}/password", seg(&name));
    api.call(Method::POST, &path, &[], Some(&body)).await?;
    println!("password of {name} changed");
    Ok(ExitCode::SUCCESS)
}
