//! The accept loop both database front doors run.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Accepts clients until `shutdown` resolves, running `session(tcp, peer, admitted)` as a
/// task for each (`admitted` is false past `max_connections` — the session refuses the
/// client in its protocol); then gives live sessions `grace` to finish before closing them.
/// `name` names the port in logs.
pub async fn serve<S, F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    max_connections: usize,
    grace: Duration,
    name: &'static str,
    session: S,
) -> std::io::Result<()>
where
    S: Fn(TcpStream, SocketAddr, bool) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, port = name, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let permit = limit.clone().try_acquire_owned().ok();
                let run = session(tcp, peer, permit.is_some());
                sessions.spawn(async move {
                    run.await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let grace = tokio::time::sleep(grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            _ = &mut grace => {
                tracing::info!(sessions = sessions.len(), port = name, "closing sessions still open after the grace period");
                sessions.shutdown().await;
                break;
            }
            next = sessions.join_next() => if next.is_none() { break },
        }
    }
    Ok(())
}
