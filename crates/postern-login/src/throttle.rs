//! Brute-force accounting (no I/O, time passed in): failed logins are counted per
//! (user, source address), per source address and per user; past a threshold the key is
//! locked for a while, twice as long at each new lockout (capped). A success clears the
//! (user, source) count only, so a guesser spraying many users from one address, or one
//! user from many addresses, is still stopped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Thresholds and durations.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures of one user from one address before that pair is locked.
    pub max_failures: u32,
    /// Failures from one address (any user) before the address is locked.
    pub max_failures_per_ip: u32,
    /// Failures of one user (any address) before the user is locked.
    pub max_failures_per_user: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// The first lockout; each further one doubles it.
    pub lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            max_failures_per_ip: 30,
            max_failures_per_user: 20,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
        }
    }
}

/// What is locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// This user from this address.
    UserFromAddress,
    /// Every login from this address.
    Address,
    /// This user from everywhere.
    User,
}

impl Scope {
    /// In words, for messages and audit events.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::UserFromAddress => "user from this address",
            Scope::Address => "address",
            Scope::User => "user",
        }
    }
}

/// A lockout in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// What is locked.
    pub scope: Scope,
    /// Time left.
    pub remaining: Duration,
}

#[derive(Debug, Clone, Default)]
struct Counter {
    failures: u32,
    last: Option<Instant>,
    /// Lockouts so far (each doubles the next).
    lockouts: u32,
    until: Option<Instant>,
}

impl Counter {
    fn locked(&self, now: Instant) -> Option<Duration> {
        self.until
            .and_then(|u| u.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Counts a failure; returns the new lockout's length when one begins.
    fn fail(&mut self, now: Instant, max: u32, cfg: &ThrottleConfig) -> Option<Duration> {
        if self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) > cfg.window)
        {
            self.failures = 0;
        }
        self.last = Some(now);
        self.failures = self.failures.saturating_add(1);
        if self.failures < max || self.locked(now).is_some() {
            return None;
        }
        let factor = 1u32.checked_shl(self.lockouts.min(16)).unwrap_or(u32::MAX);
        let length = cfg.lockout.saturating_mul(factor).min(cfg.max_lockout);
        self.lockouts = self.lockouts.saturating_add(1);
        self.failures = 0;
        self.until = Some(now + length);
        Some(length)
    }

    /// Whether this counter can be forgotten.
    fn idle(&self, now: Instant, cfg: &ThrottleConfig) -> bool {
        self.locked(now).is_none()
            && self
                .last
                .is_none_or(|l| now.saturating_duration_since(l) > cfg.max_lockout.max(cfg.window))
    }
}

/// Keys kept before idle ones are swept.
const SWEEP_AT: usize = 50_000;

/// The failure counts of one server.
#[derive(Debug, Default)]
pub struct Throttle {
    cfg: ThrottleConfig,
    pairs: HashMap<(String, IpAddr), Counter>,
    addresses: HashMap<IpAddr, Counter>,
    users: HashMap<String, Counter>,
}

/// A lockout that just began (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    /// What was locked.
    pub scope: Scope,
    /// For how long.
    pub length: Duration,
}

impl Throttle {
    /// Counts with `cfg`.
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// The lockout that stops `user` logging in from `ip` now, if any.
    pub fn check(&self, user: &str, ip: IpAddr, now: Instant) -> Option<Locked> {
        let pair = self.pairs.get(&(user.to_string(), ip));
        [
            (pair, Scope::UserFromAddress),
            (self.addresses.get(&ip), Scope::Address),
            (self.users.get(user), Scope::User),
        ]
        .into_iter()
        .filter_map(|(c, scope)| {
            c.and_then(|c| c.locked(now))
                .map(|remaining| Locked { scope, remaining })
        })
        .max_by_key(|l| l.remaining)
    }

    /// Counts a failed login; returns the lockouts it starts.
    pub fn failure(&mut self, user: &str, ip: IpAddr, now: Instant) -> Vec<Lockout> {
        if self.pairs.len() + self.addresses.len() + self.users.len() > SWEEP_AT {
            self.sweep(now);
        }
        let cfg = &self.cfg;
        let mut out = Vec::new();
        let pair = self.pairs.entry((user.to_string(), ip)).or_default();
        if let Some(length) = pair.fail(now, cfg.max_failures, cfg) {
            out.push(Lockout {
                scope: Scope::UserFromAddress,
                length,
            });
        }
        let addr = self.addresses.entry(ip).or_default();
        if let Some(length) = addr.fail(now, cfg.max_failures_per_ip, cfg) {
            out.push(Lockout {
                scope: Scope::Address,
                length,
            });
        }
        let u = self.users.entry(user.to_string()).or_default();
        if let Some(length) = u.fail(now, cfg.max_failures_per_user, cfg) {
            out.push(Lockout {
                scope: Scope::User,
                length,
            });
        }
        out
    }

    /// A successful login: the (user, address) count starts again. Back-off history stays.
    pub fn success(&mut self, user: &str, ip: IpAddr) {
        if let Some(c) = self.pairs.get_mut(&(user.to_string(), ip)) {
            c.failures = 0;
        }
    }

    /// Lifts every lockout of `user` and forgets their failures (`postern user unlock`).
    pub fn unlock_user(&mut self, user: &str) {
        self.users.remove(user);
        self.pairs.retain(|(u, _), _| u != user);
    }

    fn sweep(&mut self, now: Instant) {
        let cfg = self.cfg.clone();
        self.pairs.retain(|_, c| !c.idle(now, &cfg));
        self.addresses.retain(|_, c| !c.idle(now, &cfg));
        self.users.retain(|_, c| !c.idle(now, &cfg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn locks_the_pair_after_max_failures_and_backs_off() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let now = Instant::now();
        for _ in 0..4 {
            assert!(t.failure("alice", ip(1), now).is_empty());
        }
        assert!(t.check("alice", ip(1), now).is_none());
        let l = t.failure("alice", ip(1), now);
        assert_eq!(
            l,
            vec![Lockout {
                scope: Scope::UserFromAddress,
                length: Duration::from_secs(60)
            }]
        );
        let locked = t.check("alice", ip(1), now).unwrap();
        assert_eq!(locked.scope, Scope::UserFromAddress);
        // Others are not affected: another user from the same address, the same user
        // from elsewhere.
        assert!(t.check("bob", ip(1), now).is_none());
        assert!(t.check("alice", ip(2), now).is_none());
        // After it expires, the next lockout is twice as long.
        let later = now + Duration::from_secs(61);
        assert!(t.check("alice", ip(1), later).is_none());
        for _ in 0..4 {
            t.failure("alice", ip(1), later);
        }
        let l = t.failure("alice", ip(1), later);
        assert_eq!(l[0].length, Duration::from_secs(120));
        t.unlock_user("alice");
        assert!(t.check("alice", ip(1), later).is_none());
    }

    #[test]
    fn spraying_from_one_address_locks_the_address() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let now = Instant::now();
        let mut started = Vec::new();
        for i in 0..30 {
            started.extend(t.failure(&format!("u{i}"), ip(9), now));
        }
        assert!(started.iter().any(|l| l.scope == Scope::Address));
        assert_eq!(
            t.check("someone", ip(9), now).map(|l| l.scope),
            Some(Scope::Address)
        );
        assert!(t.check("someone", ip(8), now).is_none());
    }

    #[test]
    fn old_failures_are_forgotten_and_success_resets_the_pair() {
        let cfg = ThrottleConfig::default();
        let mut t = Throttle::new(cfg.clone());
        let now = Instant::now();
        for _ in 0..4 {
            t.failure("alice", ip(1), now);
        }
        let later = now + cfg.window + Duration::from_secs(1);
        assert!(t.failure("alice", ip(1), later).is_empty());
        for _ in 0..3 {
            t.failure("alice", ip(1), later);
        }
        t.success("alice", ip(1));
        assert!(t.failure("alice", ip(1), later).is_empty());
    }

    #[test]
    fn lockouts_are_capped() {
        let cfg = ThrottleConfig {
            max_failures: 1,
            ..ThrottleConfig::default()
        };
        let mut t = Throttle::new(cfg.clone());
        let mut now = Instant::now();
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            if let Some(l) = t.failure("a", ip(1), now).first() {
                last = l.length;
            }
            now += cfg.max_lockout + Duration::from_secs(1);
        }
        assert_eq!(last, cfg.max_lockout);
    }
}
