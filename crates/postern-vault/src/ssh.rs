//! SSH keys: the ed25519 keys Postern generates for SSH logins, imported private keys, and
//! the fingerprints people's public keys are known by.

use rand::RngCore;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// Postern's own SSH host key (what people's `known_hosts` pin): loaded from
/// `ssh_host_ed25519.key.sealed` in `dir` (sealed with the master key), or generated and
/// written there on first start. Returns the OpenSSH PEM and whether it was created.
pub fn load_or_create_host_key(
    dir: &std::path::Path,
    master: &crate::MasterKey,
) -> Result<(Zeroizing<String>, bool), BadSshKey> {
    const CONTEXT: &str = "ssh-host-key";
    let path = dir.join("ssh_host_ed25519.key.sealed");
    if path.exists() {
        let sealed = std::fs::read(&path)
            .map_err(|e| BadSshKey(format!("cannot read {}: {e}", path.display())))?;
        let pem = master.open_string(CONTEXT, &sealed).map_err(|e| {
            BadSshKey(format!(
                "{} cannot be decrypted ({e}); is this the master key it was sealed with? \
                 Remove the file to make a new host key (clients will warn that it changed)",
                path.display()
            ))
        })?;
        return Ok((pem, false));
    }
    let pem = generate_ed25519("postern-host")?;
    crate::key::write_private(&path, &master.seal(CONTEXT, pem.as_bytes()))
        .map_err(|e| BadSshKey(format!("cannot write {}: {e}", path.display())))?;
    Ok((pem, true))
}

/// A key that cannot be used, in words for the admin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadSshKey(pub String);

/// A fresh ed25519 private key in OpenSSH PEM form, commented `comment`.
pub fn generate_ed25519(comment: &str) -> Result<Zeroizing<String>, BadSshKey> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(seed.as_mut());
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let mut key = PrivateKey::from(pair);
    key.set_comment(comment);
    key.to_openssh(LineEnding::LF)
        .map_err(|e| BadSshKey(format!("cannot encode the generated key: {e}")))
}

/// Checks an OpenSSH private key an admin imports; returns its public half
/// (`ssh-ed25519 AAAA… comment`). Encrypted keys are refused: Postern seals secrets itself.
pub fn check_private_key(pem: &str) -> Result<String, BadSshKey> {
    let key = PrivateKey::from_openssh(pem.trim().as_bytes()).map_err(|e| {
        BadSshKey(format!(
            "private_key is not an OpenSSH private key ({e}); paste the whole \
             -----BEGIN OPENSSH PRIVATE KEY----- block (convert other formats with \
             `ssh-keygen -p -f FILE`)"
        ))
    })?;
    if key.is_encrypted() {
        return Err(BadSshKey(
            "private_key is protected by a passphrase; remove it with `ssh-keygen -p -N '' -f FILE` \
             before importing (Postern encrypts it at rest)"
                .into(),
        ));
    }
    public_line(key.public_key())
}

/// The public half of a stored private key, as an `authorized_keys` line.
pub fn public_of_private(pem: &str) -> Result<String, BadSshKey> {
    let key = PrivateKey::from_openssh(pem.trim().as_bytes())
        .map_err(|e| BadSshKey(format!("stored private key unreadable: {e}")))?;
    public_line(key.public_key())
}

fn public_line(key: &PublicKey) -> Result<String, BadSshKey> {
    key.to_openssh()
        .map_err(|e| BadSshKey(format!("cannot encode the public key: {e}")))
}

/// A person's public key, parsed from an `authorized_keys`-style line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPublicKey {
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …
    pub algorithm: String,
    /// `algorithm base64` (the comment dropped).
    pub key: String,
    /// The comment, if any.
    pub comment: String,
}

/// Parses one public key line (`ssh-ed25519 AAAA… comment`). Options before the key (as in
/// `authorized_keys`) are refused: Postern decides what a session may do.
pub fn parse_public_key(line: &str) -> Result<ParsedPublicKey, BadSshKey> {
    let line = line.trim();
    if line.is_empty() {
        return Err(BadSshKey(
            "the public key is empty; give the contents of a .pub file (ssh-ed25519 AAAA…)".into(),
        ));
    }
    let key = PublicKey::from_openssh(line).map_err(|e| {
        BadSshKey(format!(
            "not an OpenSSH public key ({e}); give one line of a .pub file, such as \
             `ssh-ed25519 AAAA… you@host`"
        ))
    })?;
    let algorithm = key.algorithm();
    let allowed = matches!(
        algorithm,
        ssh_key::Algorithm::Ed25519
            | ssh_key::Algorithm::Ecdsa { .. }
            | ssh_key::Algorithm::Rsa { .. }
    );
    if !allowed {
        return Err(BadSshKey(format!(
            "{} keys are not accepted; use ed25519, ecdsa or rsa",
            algorithm.as_str()
        )));
    }
    if let ssh_key::public::KeyData::Rsa(rsa) = key.key_data() {
        if rsa.key_size() < 2048 {
            return Err(BadSshKey(format!(
                "this RSA key has {} bits; use at least 2048 (or ed25519)",
                rsa.key_size()
            )));
        }
    }
    let comment = key.comment().as_str_lossy().to_string();
    let mut bare = key.clone();
    bare.set_comment("");
    let bare = bare
        .to_openssh()
        .map_err(|e| BadSshKey(format!("cannot encode the public key: {e}")))?;
    Ok(ParsedPublicKey {
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        algorithm: algorithm.as_str().to_string(),
        key: bare.trim().to_string(),
        comment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip() {
        let pem = generate_ed25519("postern:web").unwrap();
        assert!(pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let public = check_private_key(&pem).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        assert!(public.ends_with(" postern:web"), "{public}");
        assert_eq!(public_of_private(&pem).unwrap(), public);
        let parsed = parse_public_key(&public).unwrap();
        assert!(parsed.fingerprint.starts_with("SHA256:"));
        assert_eq!(parsed.algorithm, "ssh-ed25519");
        assert_eq!(parsed.comment, "postern:web");
        assert!(!parsed.key.contains("postern:web"));
        // Two generated keys differ.
        assert_ne!(
            check_private_key(&generate_ed25519("x").unwrap()).unwrap(),
            public
        );
    }

    #[test]
    fn bad_keys_are_explained() {
        assert!(parse_public_key("").is_err());
        assert!(parse_public_key("ssh-ed25519 notbase64!!").is_err());
        let e = check_private_key("-----BEGIN RSA PRIVATE KEY-----\nabc\n").unwrap_err();
        assert!(e.0.contains("OpenSSH private key"), "{e}");
        // A key line with authorized_keys options in front is not a key.
        let pem = generate_ed25519("c").unwrap();
        let public = public_of_private(&pem).unwrap();
        assert!(parse_public_key(&format!("no-pty {public}")).is_err());
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // A key made by ssh-keygen; `ssh-keygen -lf` printed this fingerprint.
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMVsvMgYBSo5HQic4kf1xAvUVveoh1jTgxXMVcyaOJgS test";
        let p = parse_public_key(line).unwrap();
        assert_eq!(
            p.fingerprint,
            "SHA256:Ps3a2yGOTnSkXAme2vXSveUdn6YcvQDkKQAUf7Vg58g"
        );
        assert_eq!(p.comment, "test");
        assert_eq!(
            p.key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMVsvMgYBSo5HQic4kf1xAvUVveoh1jTgxXMVcyaOJgS"
        );
    }
}
