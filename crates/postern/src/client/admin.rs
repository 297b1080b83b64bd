//! `postern admin login` and `postern admin logout`.

use std::process::ExitCode;

use serde::Deserialize;

use super::api::Api;
use super::conn::{absolute, ConnArgs};
use super::profile::{self, Profile};
use super::{input, ClientError, CmdResult};

/// `postern admin …`
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Sign in and save the server, CA and token in the profile (~/.postern/profile.toml).
    ///
    /// The password is asked at a hidden prompt, or read from stdin when stdin is not a
    /// terminal (`echo "$PW" | postern admin login --user admin`).
    Login(LoginArgs),
    /// Revoke the saved token and forget it.
    Logout(LogoutArgs),
}

/// `postern admin login`
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// User to sign in as [default: the profile's; asked when interactive]
    #[arg(long, short)]
    user: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern admin logout`
#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
    expires_at: String,
    user: String,
}

/// Runs an admin command.
pub async fn run(cmd: AdminCommand) -> CmdResult {
    match cmd {
        AdminCommand::Login(a) => login(a).await,
        AdminCommand::Logout(a) => logout(a).await,
    }
}

async fn login(args: LoginArgs) -> CmdResult {
    let saved = profile::load()?;
    let mut conn = args.conn.resolve(saved.as_ref())?;
    conn.token = None;
    let user = match args
        .user
        .or_else(|| saved.as_ref().and_then(|p| p.user.clone()))
    {
        Some(u) => u,
        None if input::interactive() => input::prompt_line("User: ")?,
        None => return Err(ClientError::Usage("give the user name with --user".into())),
    };
    if user.is_empty() {
        return Err(ClientError::Usage("give the user name with --user".into()));
    }
    let password = input::secret(&format!("Password for {user}: "), "the password", false)?;
    let api = Api::new(conn)?;
    let body = serde_json::json!({ "user": user, "password": password.as_str() });
    let answer = api.call_anonymous("/api/v1/auth/login", &body).await?;
    let answer: LoginAnswer = serde_json::from_value(answer)
        .map_err(|e| ClientError::Failed(format!("unexpected sign-in answer: {e}")))?;
    let conn = api.conn();
    let p = Profile {
        server: conn.server.clone(),
        ca: conn.ca.as_deref().map(absolute),
        user: Some(answer.user.clone()),
        token: Some(answer.token),
    };
    let path = profile::save(&p)?;
    println!(
        "Signed in to {} as {} (token valid until {}); profile saved in {}",
        p.server,
        answer.user,
        answer.expires_at,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn logout(args: LogoutArgs) -> CmdResult {
    let saved = profile::load()?;
    let conn = args.conn.resolve(saved.as_ref())?;
    let Some(_) = conn.token else {
        println!("Not signed in to {}.", conn.server);
        return Ok(ExitCode::SUCCESS);
    };
    let server = conn.server.clone();
    let api = Api::new(conn)?;
    match api
        .call(reqwest::Method::POST, "/api/v1/auth/logout", &[], None)
        .await
    {
        // An expired or already revoked token is as good as revoked.
        Ok(_) | Err(ClientError::NotLoggedIn(_)) => {}
        Err(e) => return Err(e),
    }
    if let Some(mut p) = saved {
        if p.server == server {
            p.token = None;
            profile::save(&p)?;
        }
    }
    println!("Signed out of {server}.");
    Ok(ExitCode::SUCCESS)
}
