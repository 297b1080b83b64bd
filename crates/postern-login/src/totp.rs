//! TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps — what every authenticator app
//! speaks) and recovery codes. No I/O; the time is passed in.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

/// Seconds per TOTP step.
pub const STEP: u64 = 30;
/// Bytes of a TOTP secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// A new random TOTP secret.
pub fn new_secret() -> Zeroizing<Vec<u8>> {
    let mut s = Zeroizing::new(vec![0u8; SECRET_LEN]);
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

/// The secret in base32 (no padding), as authenticator apps take it.
pub fn secret_base32(secret: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(data_encoding::BASE32_NOPAD.encode(secret))
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(secret: &[u8], user: &str, issuer: &str) -> Zeroizing<String> {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    Zeroizing::new(format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP}",
        enc(issuer),
        enc(user),
        secret_base32(secret).as_str(),
        enc(issuer)
    ))
}

fn totp(secret: &[u8]) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, 6, 0, STEP, secret.to_vec())
}

/// The code for the step containing `unix_time` (used by tests and `postern approve`'s
/// own checks).
pub fn code_at(secret: &[u8], unix_time: u64) -> String {
    totp(secret).generate(unix_time)
}

/// Whether `code` is valid at `unix_time`, allowing `skew` steps either side for clock
/// drift; returns the step it belongs to. The caller accepts it only if the step is newer
/// than the last one used (no replay).
pub fn verify(secret: &[u8], code: &str, unix_time: u64, skew: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret);
    let now = unix_time / STEP;
    let mut found = None;
    // Every candidate is compared, in constant time, so timing tells nothing.
    for step in now.saturating_sub(skew)..=now.saturating_add(skew) {
        let expected = t.generate(step * STEP);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

/// New recovery codes (`xxxxx-xxxxx`, base32, 50 bits each) and their stored hashes.
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut raw = [0u8; 7];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let s = data_encoding::BASE32_NOPAD
            .encode(&raw)
            .to_ascii_lowercase();
        codes.push(format!("{}-{}", &s[..5], &s[5..10]));
    }
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// The stored form of a recovery code (they are random, so a fast hash is enough).
pub fn recovery_hash(code: &str) -> String {
    let norm: String = code
        .trim()
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(norm.as_bytes()))
}

/// Whether `code` looks like a recovery code rather than a TOTP code.
pub fn is_recovery_code(code: &str) -> bool {
    let c = code.trim();
    c.len() == 11 && c.as_bytes().get(5) == Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector() {
        // RFC 6238 appendix B, SHA-1 seed, T = 59 s: 94287082 (8 digits) → 287082.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59), "287082");
        assert_eq!(verify(secret, "287082", 59, 0), Some(1));
    }

    #[test]
    fn skew_window() {
        let s = new_secret();
        let t = 1_700_000_000;
        let prev = code_at(&s, t - STEP);
        let next = code_at(&s, t + STEP);
        let far = code_at(&s, t - 3 * STEP);
        assert_eq!(verify(&s, &prev, t, 1), Some(t / STEP - 1));
        assert_eq!(verify(&s, &next, t, 1), Some(t / STEP + 1));
        assert_eq!(verify(&s, &prev, t, 0), None);
        assert_eq!(verify(&s, &far, t, 1), None);
        assert_eq!(verify(&s, "12345", t, 1), None);
        assert_eq!(verify(&s, "abcdef", t, 1), None);
    }

    #[test]
    fn uri_and_recovery_codes() {
        let s = new_secret();
        let uri = otpauth_uri(&s, "alice@corp", "Postern");
        assert!(uri.starts_with("otpauth://totp/Postern:alice%40corp?secret="));
        assert!(uri.contains(secret_base32(&s).as_str()));
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for (c, h) in codes.iter().zip(&hashes) {
            assert!(is_recovery_code(c), "{c}");
            assert_eq!(&recovery_hash(&c.to_uppercase()), h);
        }
    }
}
