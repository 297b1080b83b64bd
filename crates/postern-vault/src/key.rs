//! The master key and sealed secrets.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

/// Environment variable that, when set, holds the master key (base64 of 32 bytes).
pub const ENV_KEY: &str = "POSTERN_ENCRYPTION_KEY";

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Errors of the vault. None of them carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key given by environment or file is not 32 bytes of base64.
    #[error("the master key must be 32 bytes encoded in base64 (generate one with `openssl rand -base64 32`)")]
    BadKey,
    /// A sealed value failed authentication: wrong key, wrong context or tampering.
    #[error("a sealed secret could not be opened: wrong master key, or the data was altered")]
    Open,
    /// A sealed value is too short or has an unknown version.
    #[error("a sealed secret is malformed")]
    Malformed,
    /// Reading or writing the key file failed.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate: {0}")]
    Pki(#[from] rcgen::Error),
}

/// The 256-bit key that seals every secret Postern keeps at rest.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self { key }
    }

    /// A key for one purpose, derived from this one (HMAC-SHA-256 of `context`): stable
    /// for the life of the master key, and revealing nothing of it.
    pub fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        use hmac::Mac;
        let mut out = Zeroizing::new([0u8; 32]);
        // HMAC takes keys of any length: this cannot fail.
        if let Ok(mut m) = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(self.key.as_ref()) {
            m.update(context.as_bytes());
            out.copy_from_slice(&m.finalize().into_bytes());
        }
        out
    }

    /// Parses base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, VaultError> {
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| VaultError::BadKey)?;
        if raw.len() != 32 {
            raw.zeroize();
            return Err(VaultError::BadKey);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&raw);
        raw.zeroize();
        Ok(Self { key })
    }

    /// Base64 form, for writing the key file.
    fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.key.as_ref()))
    }

    /// The key from `POSTERN_ENCRYPTION_KEY` if set, else from `path`, else a new key
    /// written to `path` with mode 0600. Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), VaultError> {
        if let Ok(v) = std::env::var(ENV_KEY) {
            if !v.trim().is_empty() {
                return Ok((Self::from_base64(&v)?, false));
            }
        }
        let io = |source| VaultError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(s) => Ok((Self::from_base64(&s)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(path, key.to_base64().as_bytes()).map_err(io)?;
                Ok((key, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Encrypts `plaintext`, bound to `context`. Output: version ‖ nonce ‖ ciphertext+tag.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(self.key.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            // AES-GCM encryption fails only past 64 GiB of plaintext.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a value made by [`seal`](Self::seal) with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(VaultError::Malformed);
        }
        let cipher = Aes256Gcm::new(self.key.as_ref().into());
        let nonce = Nonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Open)
    }

    /// Opens a sealed UTF-8 string.
    pub fn open_string(
        &self,
        context: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<String>, VaultError> {
        let bytes = self.open(context, sealed)?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Malformed)
    }
}

/// Writes a file readable by its owner only (created with mode 0600, never widened).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_context_binding() {
        let k = MasterKey::generate();
        let s = k.seal("credential:a", b"hunter2");
        assert!(!s.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.open("credential:a", &s).unwrap().as_slice(), b"hunter2");
        assert!(matches!(k.open("credential:b", &s), Err(VaultError::Open)));
        let other = MasterKey::generate();
        assert!(matches!(
            other.open("credential:a", &s),
            Err(VaultError::Open)
        ));
        let mut tampered = s.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(k.open("credential:a", &tampered).is_err());
        assert!(matches!(k.open("x", &[1, 2]), Err(VaultError::Malformed)));
    }

    #[test]
    fn key_file_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        let (k1, created) = MasterKey::load_or_create(&p).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (k2, created) = MasterKey::load_or_create(&p).unwrap();
        assert!(!created);
        let s = k1.seal("c", b"x");
        assert_eq!(k2.open("c", &s).unwrap().as_slice(), b"x");
    }

    #[test]
    fn bad_keys() {
        assert!(MasterKey::from_base64("short").is_err());
        assert!(MasterKey::from_base64("AAAA").is_err());
        let ok = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(MasterKey::from_base64(&ok).is_ok());
    }
}
