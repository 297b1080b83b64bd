//! argon2id password hashes (PHC strings).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// Why a password could not be set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Too short.
    #[error("a password must be at least {0} characters long")]
    TooShort(usize),
    /// Too long (bounded so hashing cost stays bounded).
    #[error("a password must be at most {0} bytes long")]
    TooLong(usize),
    /// Contains a NUL byte, which no wire protocol can carry.
    #[error("a password must not contain a NUL character")]
    Nul,
    /// Hashing failed.
    #[error("password hashing failed")]
    Hash,
}

/// Minimum password length in characters.
pub const MIN_LEN: usize = 8;
/// Maximum password length in bytes.
pub const MAX_LEN: usize = 1024;

/// Checks that a new password is acceptable.
pub fn check_password_policy(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort(MIN_LEN));
    }
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong(MAX_LEN));
    }
    if password.contains('\0') {
        return Err(PasswordError::Nul);
    }
    Ok(())
}

/// Hashes a password with argon2id and a random salt. Slow by design (tens of ms).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Verifies a password against a PHC string. Malformed hashes never verify.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "garbage"));
    }

    #[test]
    fn policy() {
        assert_eq!(
            check_password_policy("short"),
            Err(PasswordError::TooShort(8))
        );
        assert_eq!(check_password_policy("abc\0defgh"), Err(PasswordError::Nul));
        assert!(check_password_policy(&"x".repeat(2000)).is_err());
        assert!(check_password_policy("long enough").is_ok());
    }
}
