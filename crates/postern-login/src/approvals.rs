//! Approvals of native-tool logins: a client that proved its password but has no second
//! factor is held while its person approves the login elsewhere (`postern approve`, the
//! portal). Pending approvals live in memory: they last at most the approval timeout.
//! Approved (user, source address) pairs are remembered for an idle period.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::oneshot;

/// How a pending approval ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The person approved it.
    Approved,
    /// The person (or an admin) denied it, or too many wrong codes were tried.
    Denied(String),
}

/// What the approval endpoint may show about a pending approval.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingView {
    /// Its id (what `postern approve` takes).
    pub id: String,
    /// Whose login it is.
    pub user: String,
    /// Where the login came from.
    pub source: String,
    /// What it is for (`postgres: prod`).
    pub target: String,
    /// Seconds until it times out.
    pub expires_in: u64,
}

struct Pending {
    user: String,
    source: IpAddr,
    target: String,
    deadline: Instant,
    wrong_codes: u32,
    tx: Option<oneshot::Sender<Outcome>>,
}

impl Pending {
    fn view(&self, id: &str, now: Instant) -> PendingView {
        PendingView {
            id: id.to_string(),
            user: self.user.clone(),
            source: self.source.to_string(),
            target: self.target.clone(),
            expires_in: self.deadline.saturating_duration_since(now).as_secs(),
        }
    }
}

/// Wrong codes tried against one approval before it is denied.
pub const MAX_WRONG_CODES: u32 = 5;
/// Pending approvals at once (a flood of held logins cannot grow memory without bound).
const MAX_PENDING: usize = 10_000;

/// Pending approvals and the approval cache.
#[derive(Default)]
pub struct Approvals {
    pending: Mutex<HashMap<String, Pending>>,
    cache: Mutex<HashMap<(String, IpAddr), Instant>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

/// A pending approval's id: 10 characters a person can type (about 50 bits; the code it
/// needs is the real secret, and wrong codes are limited).
fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..10)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

impl Approvals {
    /// Opens a pending approval for `user` logging in from `source` to `target`, valid
    /// until `timeout` from now; returns its id and where its outcome arrives. `None` when
    /// too many are pending.
    pub fn open(
        &self,
        user: &str,
        source: IpAddr,
        target: &str,
        timeout: Duration,
    ) -> Option<(String, oneshot::Receiver<Outcome>)> {
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|_, x| x.deadline > now && x.tx.as_ref().is_some_and(|t| !t.is_closed()));
        if p.len() >= MAX_PENDING {
            return None;
        }
        let id = new_id();
        p.insert(
            id.clone(),
            Pending {
                user: user.to_string(),
                source,
                target: target.to_string(),
                deadline: now + timeout,
                wrong_codes: 0,
                tx: Some(tx),
            },
        );
        Some((id, rx))
    }

    /// Forgets a pending approval (the login ended).
    pub fn close(&self, id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// The user a live pending approval belongs to, with its view.
    pub fn get(&self, id: &str) -> Option<PendingView> {
        let now = Instant::now();
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.get(id)
            .filter(|x| x.deadline > now)
            .map(|x| x.view(id, now))
    }

    /// The live pending approvals of `user`.
    pub fn of_user(&self, user: &str) -> Vec<PendingView> {
        let now = Instant::now();
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.iter()
            .filter(|(_, x)| x.user == user && x.deadline > now)
            .map(|(id, x)| x.view(id, now))
            .collect()
    }

    /// Ends a pending approval with `outcome`; when approved, the (user, source) pair is
    /// remembered. Returns false when there is no such live approval.
    pub fn resolve(&self, id: &str, outcome: Outcome) -> bool {
        let Some(mut x) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        else {
            return false;
        };
        if x.deadline <= Instant::now() {
            return false;
        }
        if outcome == Outcome::Approved {
            self.remember(&x.user, x.source);
        }
        x.tx.take().is_some_and(|tx| tx.send(outcome).is_ok())
    }

    /// Counts a wrong code against a pending approval; past [`MAX_WRONG_CODES`] it is
    /// denied. Returns whether it was denied now.
    pub fn wrong_code(&self, id: &str) -> bool {
        let deny = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match p.get_mut(id) {
                Some(x) => {
                    x.wrong_codes += 1;
                    x.wrong_codes >= MAX_WRONG_CODES
                }
                None => false,
            }
        };
        if deny {
            self.resolve(id, Outcome::Denied("too many wrong codes".into()));
        }
        deny
    }

    /// Remembers that `user` passed a second factor from `source` now.
    pub fn remember(&self, user: &str, source: IpAddr) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() > 100_000 {
            c.clear();
        }
        c.insert((user.to_string(), source), Instant::now());
    }

    /// Whether `user` passed a second factor from `source` less than `idle` ago; if so the
    /// idle time starts again.
    pub fn cached(&self, user: &str, source: IpAddr, idle: Duration) -> bool {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_string(), source);
        match c.get_mut(&key) {
            Some(at) if at.elapsed() < idle => {
                *at = Instant::now();
                true
            }
            Some(_) => {
                c.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Forgets every cached approval of `user` and denies their pending ones (disabled,
    /// locked, factor reset).
    pub fn forget_user(&self, user: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(u, _), _| u != user);
        let ids: Vec<String> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, x)| x.user == user)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.resolve(&id, Outcome::Denied("the user's access changed".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn approve_wakes_the_waiting_login_and_is_cached() {
        let a = Approvals::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (id, rx) = a
            .open("alice", ip, "postgres: prod", Duration::from_secs(60))
            .unwrap();
        assert_eq!(a.get(&id).unwrap().user, "alice");
        assert_eq!(a.of_user("alice").len(), 1);
        assert!(!a.cached("alice", ip, Duration::from_secs(60)));
        assert!(a.resolve(&id, Outcome::Approved));
        assert_eq!(rx.await.unwrap(), Outcome::Approved);
        assert!(a.cached("alice", ip, Duration::from_secs(60)));
        assert!(!a.cached(
            "alice",
            IpAddr::from([10, 0, 0, 1]),
            Duration::from_secs(60)
        ));
        assert!(!a.resolve(&id, Outcome::Approved), "used once");
        a.forget_user("alice");
        assert!(!a.cached("alice", ip, Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn too_many_wrong_codes_deny() {
        let a = Approvals::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (id, rx) = a.open("bob", ip, "x", Duration::from_secs(60)).unwrap();
        for _ in 0..MAX_WRONG_CODES - 1 {
            assert!(!a.wrong_code(&id));
        }
        assert!(a.wrong_code(&id));
        assert!(matches!(rx.await.unwrap(), Outcome::Denied(_)));
        assert!(a.get(&id).is_none());
    }
}
