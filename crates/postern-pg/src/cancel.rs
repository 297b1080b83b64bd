//! Routing CancelRequests to the right upstream backend.
//!
//! Clients are given Postern's own (pid, secret) pair, never the upstream's: a client that
//! could name upstream backends could cancel other people's queries. The registry maps the
//! pair Postern handed out to the upstream backend it stands for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::BytesMut;
use rand::Rng;
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

use crate::codec::{request, CANCEL_REQUEST};

/// The upstream backend a client-facing key stands for.
#[derive(Debug, Clone, Copy)]
struct Target {
    secret: i32,
    upstream: SocketAddr,
    upstream_pid: i32,
    upstream_secret: i32,
}

/// The registry of live sessions' cancel keys. Touched at session start and end and on
/// cancel requests only, never per message.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<i32, Target>>,
}

/// Removes its key from the registry when the session ends.
pub struct CancelGuard<'a> {
    registry: &'a CancelRegistry,
    pid: i32,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.registry.map.lock() {
            m.remove(&self.pid);
        }
    }
}

impl CancelRegistry {
    /// Registers a session; returns the (pid, secret) to give the client and a guard.
    pub fn register(
        &self,
        upstream: SocketAddr,
        upstream_key: (i32, i32),
    ) -> ((i32, i32), CancelGuard<'_>) {
        let mut rng = rand::thread_rng();
        let secret: i32 = rng.gen();
        let mut pid;
        {
            let mut m = match self.map.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            loop {
                pid = rng.gen_range(1..i32::MAX);
                if !m.contains_key(&pid) {
                    break;
                }
            }
            m.insert(
                pid,
                Target {
                    secret,
                    upstream,
                    upstream_pid: upstream_key.0,
                    upstream_secret: upstream_key.1,
                },
            );
        }
        (
            (pid, secret),
            CancelGuard {
                registry: self,
                pid,
            },
        )
    }

    /// Forwards a cancel request when (pid, secret) matches a live session. Returns whether
    /// one was sent. Unknown or wrong keys are ignored silently, as PostgreSQL does.
    pub async fn cancel(&self, pid: i32, secret: i32) -> bool {
        let target = {
            let m = match self.map.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            m.get(&pid).copied()
        };
        let Some(t) = target else { return false };
        if !bool::from(t.secret.to_be_bytes().ct_eq(&secret.to_be_bytes())) {
            return false;
        }
        let mut msg = BytesMut::with_capacity(16);
        request(
            &mut msg,
            CANCEL_REQUEST,
            &[t.upstream_pid, t.upstream_secret],
        );
        match tokio::net::TcpStream::connect(t.upstream).await {
            Ok(mut s) => s.write_all(&msg).await.is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, upstream = %t.upstream, "could not forward a cancel request");
                false
            }
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrong_secret_is_ignored_and_guard_unregisters() {
        let reg = CancelRegistry::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let ((pid, secret), guard) = reg.register(addr, (1, 2));
        assert_eq!(reg.len(), 1);
        assert!(!reg.cancel(pid, secret.wrapping_add(1)).await);
        assert!(!reg.cancel(pid.wrapping_add(1), secret).await);
        drop(guard);
        assert!(reg.is_empty());
        assert!(!reg.cancel(pid, secret).await);
    }
}
