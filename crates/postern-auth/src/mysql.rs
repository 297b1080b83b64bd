//! MySQL's two password exchanges, for both sides: `mysql_native_password` (SHA-1) and the
//! fast path of `caching_sha2_password` (SHA-256). Postern keeps, per user, only what the
//! server side needs to check a client's answer (the double hash of the password); the
//! client side (the upstream login) needs the password itself.
//!
//! Both exchanges: the server sends a 20-byte nonce; the client answers
//! `H(pw) XOR H(H(H(pw)) ‖ nonce)` (native: `H(nonce ‖ H(H(pw)))`); the server, holding
//! `H(H(pw))`, recovers the candidate `H(pw)` and hashes it once more to compare.

use rand::Rng;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of the nonce both exchanges use.
pub const NONCE_LEN: usize = 20;

/// What the server side needs to check both exchanges for one password: `SHA1(SHA1(pw))`
/// and `SHA256(SHA256(pw))`. With one observed exchange these give an attacker the
/// password-equivalent first hash, so they are kept sealed at rest.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct MysqlVerifier {
    native: [u8; 20],
    sha2: [u8; 32],
}

impl std::fmt::Debug for MysqlVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MysqlVerifier(..)")
    }
}

/// How a `caching_sha2_password` answer matched (see [`MysqlVerifier::match_sha2`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sha2Match {
    /// MySQL's own order.
    Standard,
    /// Nonce first (some drivers).
    Swapped,
    /// Wrong password.
    No,
}

/// Format tag of [`MysqlVerifier::to_bytes`].
const VERSION: u8 = 1;

impl MysqlVerifier {
    /// Derives both double hashes of `password`.
    pub fn derive(password: &str) -> Self {
        let native: [u8; 20] = Sha1::digest(Sha1::digest(password.as_bytes())).into();
        let sha2: [u8; 32] = Sha256::digest(Sha256::digest(password.as_bytes())).into();
        Self { native, sha2 }
    }

    /// A verifier no answer matches, for unknown users (the exchange then fails the same way
    /// as with a wrong password).
    pub fn decoy() -> Self {
        let mut rng = rand::thread_rng();
        Self {
            native: rng.gen(),
            sha2: rng.gen(),
        }
    }

    /// The stored form (53 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(53);
        v.push(VERSION);
        v.extend_from_slice(&self.native);
        v.extend_from_slice(&self.sha2);
        v
    }

    /// Reads [`to_bytes`](Self::to_bytes); `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 53 || b[0] != VERSION {
            return None;
        }
        let mut v = Self {
            native: [0; 20],
            sha2: [0; 32],
        };
        v.native.copy_from_slice(&b[1..21]);
        v.sha2.copy_from_slice(&b[21..53]);
        Some(v)
    }

    /// Checks a `mysql_native_password` answer to `nonce`.
    pub fn check_native(&self, nonce: &[u8], answer: &[u8]) -> bool {
        if answer.len() != 20 {
            return false;
        }
        let mask = Sha1::new()
            .chain_update(nonce)
            .chain_update(self.native)
            .finalize();
        let mut stage1 = [0u8; 20];
        for (i, b) in stage1.iter_mut().enumerate() {
            *b = answer[i] ^ mask[i];
        }
        let again: [u8; 20] = Sha1::digest(stage1).into();
        again.ct_eq(&self.native).into()
    }

    /// Checks a `caching_sha2_password` fast-path answer to `nonce`.
    pub fn check_sha2(&self, nonce: &[u8], answer: &[u8]) -> bool {
        self.match_sha2(nonce, answer) != Sha2Match::No
    }

    /// Like [`check_sha2`](Self::check_sha2), saying which order the client hashed in.
    ///
    /// The server's and libmariadb's order is `H(H(H(pw)) ‖ nonce)`; some drivers (sqlx)
    /// hash `nonce ‖ H(H(pw))` instead and only ever work against MySQL because its empty
    /// cache sends them down the full path. Both orders prove knowledge of `H(pw)` equally,
    /// so both are accepted; the caller may need to know which (those drivers also take the
    /// fast-auth marker for the end of the login).
    pub fn match_sha2(&self, nonce: &[u8], answer: &[u8]) -> Sha2Match {
        if answer.len() != 32 {
            return Sha2Match::No;
        }
        let standard = Sha256::new()
            .chain_update(self.sha2)
            .chain_update(nonce)
            .finalize();
        if self.unmask_sha2(answer, &standard) {
            return Sha2Match::Standard;
        }
        let swapped = Sha256::new()
            .chain_update(nonce)
            .chain_update(self.sha2)
            .finalize();
        if self.unmask_sha2(answer, &swapped) {
            Sha2Match::Swapped
        } else {
            Sha2Match::No
        }
    }

    fn unmask_sha2(&self, answer: &[u8], mask: &[u8]) -> bool {
        let mut stage1 = [0u8; 32];
        for (i, b) in stage1.iter_mut().enumerate() {
            *b = answer[i] ^ mask[i];
        }
        let again: [u8; 32] = Sha256::digest(stage1).into();
        again.ct_eq(&self.sha2).into()
    }
}

/// A fresh nonce: 20 printable ASCII bytes (the handshake carries it NUL-terminated, and
/// some clients treat it as a string).
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut rng = rand::thread_rng();
    let mut n = [0u8; NONCE_LEN];
    for b in &mut n {
        *b = rng.gen_range(0x21..0x7f);
    }
    n
}

/// The client's `mysql_native_password` answer (empty for an empty password).
pub fn native_answer(nonce: &[u8], password: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mask = Sha1::new()
        .chain_update(nonce)
        .chain_update(stage2)
        .finalize();
    stage1.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

/// The client's `caching_sha2_password` fast-path answer (empty for an empty password).
pub fn sha2_answer(nonce: &[u8], password: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let mask = Sha256::new()
        .chain_update(stage2)
        .chain_update(nonce)
        .finalize();
    stage1.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_native_answer() {
        // SHA1(SHA1("password")) is what MySQL 5.x showed as the hash of "password".
        let v = MysqlVerifier::derive("password");
        assert_eq!(hex(&v.native), "2470c0c06dee42fd1618bb99005adca2ec9d1e19");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn stored_form_round_trips_and_rejects_junk() {
        let v = MysqlVerifier::derive("s3cret pw");
        assert_eq!(MysqlVerifier::from_bytes(&v.to_bytes()), Some(v.clone()));
        assert!(MysqlVerifier::from_bytes(&v.to_bytes()[1..]).is_none());
        let mut other = v.to_bytes();
        other[0] = 9;
        assert!(MysqlVerifier::from_bytes(&other).is_none());
    }

    #[test]
    fn empty_password_gives_empty_answer() {
        assert!(native_answer(&nonce(), b"").is_empty());
        assert!(sha2_answer(&nonce(), b"").is_empty());
        let v = MysqlVerifier::derive("x");
        assert!(!v.check_native(&nonce(), &[]));
        assert!(!v.check_sha2(&nonce(), &[]));
    }

    #[test]
    fn nonces_are_printable() {
        assert!(nonce().iter().all(|b| (0x21..0x7f).contains(b)));
    }

    proptest! {
        #[test]
        fn right_password_passes_wrong_fails(pw in ".{1,40}", other in ".{1,40}", n in proptest::array::uniform20(1u8..)) {
            let v = MysqlVerifier::derive(&pw);
            prop_assert!(v.check_native(&n, &native_answer(&n, pw.as_bytes())));
            prop_assert!(v.check_sha2(&n, &sha2_answer(&n, pw.as_bytes())));
            if other != pw {
                prop_assert!(!v.check_native(&n, &native_answer(&n, other.as_bytes())));
                prop_assert!(!v.check_sha2(&n, &sha2_answer(&n, other.as_bytes())));
            }
            // An answer to another nonce does not replay.
            let mut n2 = n;
            n2[0] = n2[0].wrapping_add(1).max(1);
            if n2 != n {
                prop_assert!(!v.check_sha2(&n2, &sha2_answer(&n, pw.as_bytes())));
                prop_assert!(!v.check_native(&n2, &native_answer(&n, pw.as_bytes())));
            }
            prop_assert!(!MysqlVerifier::decoy().check_sha2(&n, &sha2_answer(&n, pw.as_bytes())));
        }
    }
}
