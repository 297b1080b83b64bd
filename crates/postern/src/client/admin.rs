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
    sso: SsoArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

/// Single sign-on switches of the sign-in commands.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct SsoArgs {
    /// Sign in at the identity provider (single sign-on) instead of with a password: a
    /// browser opens (or the address is printed).
    #[arg(long, conflicts_with_all = ["user", "code"])]
    pub sso: bool,
    /// With --sso on a host without a browser: show a code to enter on another device.
    #[arg(long, requires = "sso")]
    pub device: bool,
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
    let signed = sign_in(args.user, args.code, args.sso, &args.conn).await?;
    println!(
        "Signed in to {} as {} (token valid until {}); profile saved in {}",
        signed.profile.server,
        signed.user,
        signed.expires_at,
        signed.profile_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A completed sign-in: the profile is saved, `api` carries the new token.
pub(crate) struct SignedIn {
    /// A client for the server, with the token.
    pub api: Api,
    /// The user signed in as.
    pub user: String,
    /// When the token expires.
    pub expires_at: String,
    /// The saved profile.
    pub profile: Profile,
    /// Where it was saved.
    pub profile_path: std::path::PathBuf,
}

/// Signs in with password and, when needed, a second factor (asked for, or `code`),
/// enrolling one on the spot when the server requires it and the user has none; or, with
/// `sso`, at the identity provider. Saves the server, CA and token in the profile.
pub(crate) async fn sign_in(
    user: Option<String>,
    code: Option<String>,
    sso: SsoArgs,
    conn: &ConnArgs,
) -> Result<SignedIn, ClientError> {
    let saved = profile::load()?;
    let mut conn = conn.resolve(saved.as_ref())?;
    conn.token = None;
    if sso.sso {
        let api = Api::new(conn)?;
        let id_token = zeroize::Zeroizing::new(super::sso::id_token(&api, sso.device).await?);
        let answer: LoginAnswer = serde_json::from_value(
            api.call_anonymous(
                "/api/v1/auth/oidc",
                &serde_json::json!({ "id_token": id_token.as_str() }),
            )
            .await?,
        )
        .map_err(|e| ClientError::Failed(format!("unexpected sign-in answer: {e}")))?;
        return finish(api, answer.user, answer.token, answer.expires_at);
    }
    let user = match user.or_else(|| saved.as_ref().and_then(|p| p.user.clone())) {
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
    if let Some(c) = &code {
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
    finish(api, answer.user, token, expires)
}

/// Saves the profile of a completed sign-in.
fn finish(
    api: Api,
    user: String,
    token: Option<String>,
    expires: Option<String>,
) -> Result<SignedIn, ClientError> {
    let Some(token) = token else {
        return Err(ClientError::Failed(
            "the server did not issue a token (a second-factor code is needed: pass --code)".into(),
        ));
    };
    let mut conn = api.conn().clone();
    conn.token = Some(token.clone());
    let api = Api::new(conn)?;
    let p = Profile {
        server: api.conn().server.clone(),
        ca: api.conn().ca.as_deref().map(absolute),
        user: Some(user.clone()),
        token: Some(token),
    };
    let profile_path = profile::save(&p)?;
    Ok(SignedIn {
        api,
        user,
        expires_at: expires.unwrap_or_default(),
        profile: p,
        profile_path,
    })
}

async fn logout(args: LogoutArgs) -> CmdResult {
    sign_out(&args.conn).await
}

/// Revokes the profile's token and forgets it.
pub(crate) async fn sign_out(conn: &ConnArgs) -> CmdResult {
    let saved = profile::load()?;
    let conn = conn.resolve(saved.as_ref())?;
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
