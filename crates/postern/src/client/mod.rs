//! The admin CLI: commands that call a Postern server's HTTPS API.
//!
//! Connection settings come from, in order: the `--server`, `--ca` and `--token` flags, the
//! `POSTERN_SERVER`, `POSTERN_CA` and `POSTERN_TOKEN` variables, and the profile that
//! `postern admin login` saves (`$POSTERN_HOME/profile.toml`, else `~/.postern/profile.toml`).
//!
//! Exit codes: 0 done; 1 the server refused or the command failed; 2 usage; 3 the server
//! cannot be reached or its certificate is not trusted; 4 not signed in (or the token
//! expired).

pub mod admin;
mod api;
pub mod apply;
pub mod audit;
pub mod certs;
mod conn;
pub mod db;
mod input;
pub mod keys;
pub mod mfa;
pub mod policy;
mod profile;
pub mod resources;
pub mod sessions;
mod sso;
mod table;
pub mod user;

use std::process::ExitCode;

pub use conn::ConnArgs;

/// Client subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Sign in to a Postern server (saves a profile) or sign out.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Make the server hold the resources described in a YAML or TOML file.
    Apply(apply::ApplyArgs),
    /// List resources of a kind, or show one.
    Get(resources::GetArgs),
    /// Delete a resource.
    Delete(resources::DeleteArgs),
    /// Add users and set passwords.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Search the audit trail and verify its hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Check what Postern decides for SQL, without running it.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Your second factor (TOTP): enrol, status; admins reset others'.
    #[command(subcommand)]
    Mfa(mfa::MfaCommand),
    /// Approve (or refuse) a login waiting for your second factor, e.g. a psql session.
    Approve(mfa::ApproveArgs),
    /// Sign in and get a short-lived client certificate, so psql connects without a
    /// password (saved in ~/.postern/certs; see `postern db`).
    Login(certs::LoginArgs),
    /// Revoke and remove the certificate of `postern login`, and sign out.
    Logout(certs::LogoutArgs),
    /// Your datasources: list them, and connect with your certificate.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Client certificates issued by this server: list, revoke.
    #[command(subcommand)]
    Cert(certs::CertCommand),
    /// Your SSH public keys: register, list, remove.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// SSH logins: the public key for the target's authorized_keys, the host-key pin.
    #[command(subcommand)]
    Sshlogin(keys::SshLoginCommand),
    /// Recorded SSH sessions: list them, replay one.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
}

/// Why a client command failed; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused, or the command could not do its work (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The command line or an input file is unusable (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The server cannot be reached, or TLS with it fails (exit 3).
    #[error("{0}")]
    Unreachable(String),
    /// No token, or the server no longer accepts it (exit 4).
    #[error("{0}")]
    NotLoggedIn(String),
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Failed(_) => 1,
            ClientError::Usage(_) => 2,
            ClientError::Unreachable(_) => 3,
            ClientError::NotLoggedIn(_) => 4,
        }
    }
}

/// Result of a client command: the exit code to end with.
pub type CmdResult = Result<ExitCode, ClientError>;

/// Runs a client command, printing its error (with the fix) to stderr.
pub async fn run(cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let result = match cmd {
        ClientCommand::Admin(c) => admin::run(c).await,
        ClientCommand::Apply(a) => apply::run(a).await,
        ClientCommand::Get(a) => resources::get(a).await,
        ClientCommand::Delete(a) => resources::delete(a).await,
        ClientCommand::User(c) => user::run(c).await,
        ClientCommand::Audit(c) => audit::run(c).await,
        ClientCommand::Policy(c) => policy::run(c).await,
        ClientCommand::Mfa(c) => mfa::run(c).await,
        ClientCommand::Approve(a) => mfa::approve(a).await,
        ClientCommand::Login(a) => certs::login(a).await,
        ClientCommand::Logout(a) => certs::logout(a).await,
        ClientCommand::Db(c) => db::run(c).await,
        ClientCommand::Cert(c) => certs::run(c).await,
        ClientCommand::Sessions(c) => sessions::run(c).await,
        ClientCommand::Key(c) => keys::run(c).await,
        ClientCommand::Sshlogin(c) => keys::run_login(c).await,
    };
    Ok(match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "postern", "user", "add", "bob", "--role", "a", "-r", "b", "--server", "h:1",
        ])
        .unwrap();
        assert!(matches!(
            c.cmd,
            ClientCommand::User(user::UserCommand::Add(_))
        ));
        assert!(Cli::try_parse_from(["postern", "get", "tables"]).is_err());
        assert!(Cli::try_parse_from([
            "postern",
            "user",
            "add",
            "b",
            "--password-stdin",
            "--no-password"
        ])
        .is_err());
    }
}
