//! `bench-relay`: a plain TCP relay, the floor any proxy hop is compared against.
//!
//! ```text
//! bench-relay --listen 127.0.0.1:6432 --upstream 127.0.0.1:5432
//! ```
//!
//! One task per connection, `copy_bidirectional` between the client and a fresh upstream
//! connection, `TCP_NODELAY` on both sides. Prints `listening on ADDR` on stdout once the
//! listener is bound (the address is the real one, so `--listen 127.0.0.1:0` works).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: bench-relay --listen ADDR:PORT --upstream HOST:PORT";

struct Args {
    listen: String,
    upstream: String,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        let slot = match key.as_str() {
            "--listen" => &mut listen,
            "--upstream" => &mut upstream,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .ok_or_else(|| format!("{key} needs a value\n{USAGE}"))?,
        };
        *slot = Some(value);
    }
    Ok(Args {
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        upstream: upstream.ok_or_else(|| format!("--upstream is required\n{USAGE}"))?,
    })
}

async fn relay(mut client: TcpStream, upstream: &str) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

async fn run(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(&args.listen).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", listener.local_addr()?)?;
        stdout.flush()?;
    }
    let upstream: std::sync::Arc<str> = args.upstream.into();
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("bench-relay: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, &upstream).await {
                // Resets at the end of a benchmark are normal; report them briefly.
                if e.kind() != std::io::ErrorKind::ConnectionReset {
                    eprintln!("bench-relay: {peer}: {e}");
                }
            }
        });
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-relay: {e}");
            ExitCode::FAILURE
        }
    }
}
