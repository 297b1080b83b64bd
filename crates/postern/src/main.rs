//! The `postern` command.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use postern::config::{Config, LogFormat};

/// Postern: a privileged-access gateway for databases and servers.
///
/// People connect through Postern with their own identity; Postern holds the real database
/// credentials, decides what each person may do, and keeps an audit trail of everything.
#[derive(Parser, Debug)]
#[command(name = "postern", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Postern server (API on 7443, PostgreSQL on 7432 by default).
    Server(ServerArgs),
    #[command(flatten)]
    Client(postern::client::ClientCommand),
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// Configuration file (TOML). Every key is optional.
    #[arg(short, long, env = "POSTERN_CONFIG")]
    config: Option<PathBuf>,
    /// Log format (overrides `log.format`).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this is called,
/// not when the future is first polled, so a signal sent right after start-up is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut t), Some(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run_server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let cfg = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    init_tracing(args.log_format.unwrap_or(cfg.log.format), &cfg.log.level);
    let signal = shutdown_signal();
    let handle = postern::server::start(cfg).await?;
    // stdout may be closed (a supervisor that stopped reading): never panic over a banner.
    let mut out = std::io::stdout().lock();
    macro_rules! say {
        ($w:expr, $($arg:tt)*) => {{
            let _ = writeln!($w, $($arg)*);
        }};
    }
    if let Some(pw) = &handle.bootstrap_password {
        // Printed once, on stdout only: never through the log pipeline.
        say!(out, "Postern created the bootstrap admin.");
        say!(out, "bootstrap admin password: {pw}");
        say!(
            out,
            "Sign in with: postern admin login --server https://127.0.0.1:{} --ca {} --user admin",
            handle.api_addr.port(),
            handle.ca_path.display()
        );
        say!(out, "then change it with: postern user passwd admin");
    }
    say!(out, "API (HTTPS) listening on {}", handle.api_addr);
    if let Some(a) = handle.pg_addr {
        say!(out, "PostgreSQL listening on {a}");
    }
    if let Some(a) = handle.mysql_addr {
        say!(out, "MySQL listening on {a}");
    }
    if let Some(a) = handle.ssh_addr {
        say!(out, "SSH listening on {a}");
    }
    say!(out, "CA certificate: {}", handle.ca_path.display());
    let _ = out.flush();
    drop(out);
    tracing::info!(api = %handle.api_addr, postgres = ?handle.pg_addr, "Postern is ready");
    signal.await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Server(args) => run_server(args).await,
            Command::Client(cmd) => postern::client::run(cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
