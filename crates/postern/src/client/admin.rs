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
    /// The TOTP (or recovery) code; asked when needed, or read from the next line of stdin.
    #[arg(long)]
    code: Option<String>,
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
    token: Option<String>,
    expires_at: Option<String>,
    user: String,
    next: Option<String>,
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
    let mut api = Api::new(conn)?;
    let mut body = serde_json::json!({ "user": user, "password": password.as_str() });
    if let Some(c) = &args.code {
        body["code"] = serde_json::json!(c);
    }
    let parse = |v: serde_json::Value| -> Result<LoginAnswer, ClientError> {
        serde_json::from_value(v)
            .map_err(|e| ClientError::Failed(format!("unexpected sign-in answer: {e}")))
    };
    let mut answer = parse(api.call_anonymous("/api/v1/auth/login", &body).await?)?;
    if answer.next.as_deref() == Some("totp") {
        let code = if input::interactive() {
            zeroize::Zeroizing::new(input::prompt_line("TOTP code (or a recovery code): ")?)
        } else {
            input::stdin_line("the TOTP code")?
        };
        body["code"] = serde_json::json!(code.as_str());
        answer = parse(api.call_anonymous("/api/v1/auth/login", &body).await?)?;
    }
    let (mut token, mut expires) = (answer.token.clone(), answer.expires_at.clone());
    if answer.next.as_deref() == Some("enroll") {
        println!("A second factor is required and {user} has none yet: enrolling one now.");
        let mut conn = api.conn().clone();
        conn.token = token.clone();
        api = Api::new(conn)?;
        let done = super::mfa::enroll(&api, true).await?;
        token = done.token;
        expires = done.expires_at;
    }
    let Some(token) = token else {
        return Err(ClientError::Failed(
            "the server did not issue a token (a second-factor code is needed: pass --code)".into(),
        ));
    };
    let conn = api.conn();
    let p = Profile {
        server: conn.server.clone(),
        ca: conn.ca.as_deref().map(absolute),
        user: Some(answer.user.clone()),
        token: Some(token),
    };
    let path = profile::save(&p)?;
    println!(
        "Signed in to {} as {} (token valid until {}); profile saved in {}",
        p.server,
        answer.user,
        expires.unwrap_or_default(),
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
