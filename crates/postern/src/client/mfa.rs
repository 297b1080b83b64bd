//! `postern mfa …` (second factor) and `postern approve` (approve a waiting login).

use std::process::ExitCode;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::api::Api;
use super::conn::ConnArgs;
use super::resources::{api, seg};
use super::{input, ClientError, CmdResult};

/// `postern mfa …`
#[derive(clap::Subcommand, Debug)]
pub enum MfaCommand {
    /// Enrol a TOTP authenticator app: shows a QR code and an otpauth:// URI, asks for a
    /// first code, and prints single-use recovery codes. Replaces an existing factor.
    Enroll(EnrollArgs),
    /// Whether you have a second factor, and how many recovery codes are left.
    Status(StatusArgs),
    /// Remove a user's second factor (admin): they enrol again at their next sign-in.
    Reset(ResetArgs),
}

/// `postern mfa enroll`
#[derive(clap::Args, Debug)]
pub struct EnrollArgs {
    /// Do not draw the QR code (print the URI and the secret only).
    #[arg(long)]
    no_qr: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern mfa status`
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern mfa reset`
#[derive(clap::Args, Debug)]
pub struct ResetArgs {
    /// User whose factor to remove.
    name: String,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern approve`
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The id the waiting client shows (`postern approve <id>`); without it, lists your
    /// logins waiting for approval (needs `postern admin login`).
    id: Option<String>,
    /// The TOTP code (or a recovery code); asked when interactive, else read from stdin.
    #[arg(long)]
    code: Option<String>,
    /// Refuse the login instead of approving it.
    #[arg(long)]
    deny: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Deserialize)]
struct Enrolment {
    secret: Zeroizing<String>,
    uri: Zeroizing<String>,
}

/// What `mfa/confirm` answers.
#[derive(Deserialize)]
pub(crate) struct Confirmed {
    recovery_codes: Vec<String>,
    pub token: Option<String>,
    pub expires_at: Option<String>,
}

/// Runs an mfa command.
pub async fn run(cmd: MfaCommand) -> CmdResult {
    match cmd {
        MfaCommand::Enroll(a) => {
            let api = api(&a.conn)?;
            enroll(&api, !a.no_qr).await?;
            Ok(ExitCode::SUCCESS)
        }
        MfaCommand::Status(a) => {
            let api = api(&a.conn)?;
            let v = api.call(Method::GET, "/api/v1/mfa", &[], None).await?;
            let enrolled = v["enrolled"].as_bool().unwrap_or(false);
            if enrolled {
                println!(
                    "TOTP enrolled; {} recovery codes left",
                    v["recovery_codes_left"].as_u64().unwrap_or(0)
                );
            } else {
                println!("no second factor: enrol one with `postern mfa enroll`");
            }
            Ok(ExitCode::SUCCESS)
        }
        MfaCommand::Reset(a) => {
            let api = api(&a.conn)?;
            api.call(
                Method::DELETE,
                &format!("/api/v1/users/{}/mfa", seg(&a.name)),
                &[],
                None,
            )
            .await?;
            println!(
                "second factor of {} removed; they enrol again at their next sign-in",
                a.name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a code: from `given`, a prompt on a terminal, or the next line of stdin.
fn code(given: Option<String>, prompt: &str) -> Result<Zeroizing<String>, ClientError> {
    match given {
        Some(c) => Ok(Zeroizing::new(c)),
        None if input::interactive() => Ok(Zeroizing::new(input::prompt_line(prompt)?)),
        None => input::stdin_line("the code"),
    }
}

/// Enrols a TOTP factor with `api` (whose token may be enrolment-only); returns what the
/// server confirmed (a full token when the old one was enrolment-only).
pub(crate) async fn enroll(api: &Api, qr: bool) -> Result<Confirmed, ClientError> {
    let v = api
        .call(Method::POST, "/api/v1/mfa/enroll", &[], Some(&json!({})))
        .await?;
    let e: Enrolment = serde_json::from_value(v)
        .map_err(|e| ClientError::Failed(format!("unexpected enrolment answer: {e}")))?;
    println!("Scan this with your authenticator app (or type the secret in):");
    if qr {
        match qrcode::QrCode::new(e.uri.as_bytes()) {
            Ok(q) => {
                let art = q
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .dark_color(qrcode::render::unicode::Dense1x2::Light)
                    .light_color(qrcode::render::unicode::Dense1x2::Dark)
                    .quiet_zone(true)
                    .build();
                println!("{art}");
            }
            Err(err) => eprintln!("(cannot draw the QR code: {err})"),
        }
    }
    println!("uri: {}", e.uri.as_str());
    println!("secret: {}", e.secret.as_str());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let c = code(None, "Code shown by the app: ")?;
    let v = api
        .call(
            Method::POST,
            "/api/v1/mfa/confirm",
            &[],
            Some(&json!({ "code": c.as_str() })),
        )
        .await?;
    let done: Confirmed = serde_json::from_value(v)
        .map_err(|e| ClientError::Failed(format!("unexpected confirmation answer: {e}")))?;
    println!("Second factor enrolled. Recovery codes (each works once; keep them safe):");
    for c in &done.recovery_codes {
        println!("  {c}");
    }
    Ok(done)
}

/// `postern approve`
pub async fn approve(a: ApproveArgs) -> CmdResult {
    let Some(id) = a.id else {
        let api = api(&a.conn)?;
        let v = api
            .call(Method::GET, "/api/v1/approvals", &[], None)
            .await?;
        let list = v.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("no login of yours is waiting for approval");
        }
        for p in list {
            println!(
                "{}  {} from {} ({}s left): postern approve {}",
                p["id"].as_str().unwrap_or(""),
                p["target"].as_str().unwrap_or(""),
                p["source"].as_str().unwrap_or(""),
                p["expires_in"].as_u64().unwrap_or(0),
                p["id"].as_str().unwrap_or("")
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let saved = super::profile::load()?;
    let conn = a.conn.resolve(saved.as_ref())?;
    let api = Api::new(conn)?;
    let path = format!("/api/v1/approvals/{}", seg(&id));
    let view = api.call_anonymous_get(&path).await?;
    eprintln!(
        "Login of {} to {} from {}",
        view["user"].as_str().unwrap_or("?"),
        view["target"].as_str().unwrap_or("?"),
        view["source"].as_str().unwrap_or("?")
    );
    let c = code(a.code, "TOTP code: ")?;
    api.call_anonymous(&path, &json!({ "code": c.as_str(), "approve": !a.deny }))
        .await?;
    println!(
        "{}",
        if a.deny {
            "login refused"
        } else {
            "login approved"
        }
    );
    Ok(ExitCode::SUCCESS)
}
