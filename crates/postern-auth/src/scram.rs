//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, server side (the client
//! side is in [`crate::scram_client`]).
//!
//! Postern keeps, per user, only the verifier (salt, iterations, StoredKey, ServerKey):
//! enough to check a client's proof and prove itself back, never enough to log in as the
//! user elsewhere. Channel binding (`-PLUS`) is not offered, so a client that sends the
//! `p=` flag is refused and `y` is accepted (the client merely supports binding).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Default PBKDF2 iteration count (PostgreSQL's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Upper bound on an attribute message from the client.
pub const MAX_MESSAGE: usize = 2048;

/// Why a SCRAM exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// The message does not follow the grammar.
    #[error("malformed SCRAM message")]
    Malformed,
    /// The client asked for channel binding, which was not offered.
    #[error("SCRAM channel binding is not supported by this server")]
    ChannelBinding,
    /// The nonce in the final message is not the one agreed on.
    #[error("SCRAM nonce mismatch")]
    Nonce,
    /// The proof is wrong: wrong password or unknown user.
    #[error("password authentication failed")]
    BadProof,
    /// A stored verifier could not be parsed.
    #[error("stored SCRAM verifier is malformed")]
    BadVerifier,
    /// The server's final signature is wrong: it does not know the password (client side).
    #[error("the server's SCRAM signature is wrong (is it the server you meant to reach?)")]
    ServerSignature,
}

/// What is stored per user: PostgreSQL's `SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramVerifier(iterations={})", self.iterations)
    }
}

pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// SASLprep of a password as PostgreSQL does: the prepared form when it is valid, the raw
/// bytes otherwise.
pub(crate) fn normalize(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.as_bytes().to_vec(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

impl ScramVerifier {
    /// Derives a verifier from a password with a random 16-byte salt.
    pub fn derive(password: &str, iterations: u32) -> Self {
        let mut salt = vec![0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self::derive_with_salt(password, salt, iterations)
    }

    /// Derives a verifier from a password and a given salt.
    pub fn derive_with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(&normalize(password), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        zeroize::Zeroize::zeroize(&mut salted);
        Self {
            iterations,
            salt,
            stored_key,
            server_key,
        }
    }

    /// PostgreSQL's text form.
    pub fn to_pg_string(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Parses PostgreSQL's text form.
    pub fn parse(s: &str) -> Result<Self, ScramError> {
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::BadVerifier)?;
        let (params, keys) = rest.split_once('$').ok_or(ScramError::BadVerifier)?;
        let (iter, salt) = params.split_once(':').ok_or(ScramError::BadVerifier)?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::BadVerifier)?;
        let key32 = |k: &str| -> Result<[u8; 32], ScramError> {
            B64.decode(k)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(ScramError::BadVerifier)
        };
        Ok(Self {
            iterations: iter.parse().map_err(|_| ScramError::BadVerifier)?,
            salt: B64.decode(salt).map_err(|_| ScramError::BadVerifier)?,
            stored_key: key32(stored)?,
            server_key: key32(server)?,
        })
    }

    /// A verifier that no password matches, with a salt stable per `name`, so that probing
    /// an unknown user looks like probing a known one.
    pub fn decoy(name: &str, secret: &[u8]) -> Self {
        let salt = hmac(secret, name.as_bytes())[..16].to_vec();
        let mut stored_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut stored_key);
        Self {
            iterations: DEFAULT_ITERATIONS,
            salt,
            stored_key,
            server_key: [0; 32],
        }
    }
}

/// The server side of one exchange.
pub struct ScramServer {
    verifier: ScramVerifier,
    state: State,
}

enum State {
    Initial,
    SentFirst {
        client_first_bare: String,
        server_first: String,
        nonce: String,
        gs2_header: String,
    },
    Done,
}

impl ScramServer {
    /// Starts an exchange against `verifier`.
    pub fn new(verifier: ScramVerifier) -> Self {
        Self {
            verifier,
            state: State::Initial,
        }
    }

    /// Consumes the client-first message; returns the server-first message.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let mut raw = [0u8; 18];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        self.client_first_with_nonce(msg, &B64.encode(raw))
    }

    fn client_first_with_nonce(
        &mut self,
        msg: &[u8],
        server_nonce: &str,
    ) -> Result<String, ScramError> {
        if !matches!(self.state, State::Initial) || msg.len() > MAX_MESSAGE {
            return Err(ScramError::Malformed);
        }
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg.split_once(',').ok_or(ScramError::Malformed)?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed)?;
        if !authzid.is_empty() {
            // PostgreSQL does not support authorization identities either.
            return Err(ScramError::Malformed);
        }
        let gs2_header = format!("{flag},{authzid},");
        let mut client_nonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match (i, attr.split_once('=')) {
                (0, Some(("n", _))) => {}
                (1, Some(("r", n))) => client_nonce = Some(n),
                (0, _) | (1, _) => return Err(ScramError::Malformed),
                _ => {}
            }
        }
        let client_nonce = client_nonce.ok_or(ScramError::Malformed)?;
        if client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(ScramError::Malformed);
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::SentFirst {
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            gs2_header,
        };
        Ok(server_first)
    }

    /// Consumes the client-final message; returns the server-final message when the
    /// client's proof is right.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let State::SentFirst {
            client_first_bare,
            server_first,
            nonce,
            gs2_header,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed);
        };
        if msg.len() > MAX_MESSAGE {
            return Err(ScramError::Malformed);
        }
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof_b64) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut cbind = None;
        let mut r = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) => cbind = Some(v),
                Some(("r", v)) => r = Some(v),
                Some(_) => {}
                None => return Err(ScramError::Malformed),
            }
        }
        let cbind = B64
            .decode(cbind.ok_or(ScramError::Malformed)?)
            .map_err(|_| ScramError::Malformed)?;
        if cbind != gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        if r != Some(nonce.as_str()) {
            return Err(ScramError::Nonce);
        }
        let proof: [u8; 32] = B64
            .decode(proof_b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(ScramError::Malformed)?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(computed.ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn exchange(stored_pw: &str, client_pw: &str) -> Result<(), ScramError> {
        let v = ScramVerifier::derive(stored_pw, 4096);
        let mut server = ScramServer::new(v);
        let mut client = ScramSha256::new(client_pw.as_bytes(), ChannelBinding::unsupported());
        let first = server.client_first(client.message())?;
        client
            .update(first.as_bytes())
            .map_err(|_| ScramError::Malformed)?;
        let fin = server.client_final(client.message())?;
        client
            .finish(fin.as_bytes())
            .map_err(|_| ScramError::Malformed)?;
        Ok(())
    }

    #[test]
    fn real_client_succeeds_and_wrong_password_fails() {
        exchange("s3cret-pass", "s3cret-pass").unwrap();
        assert_eq!(
            exchange("s3cret-pass", "s3cret-pasS"),
            Err(ScramError::BadProof)
        );
        exchange("pässwörd ünïcode", "pässwörd ünïcode").unwrap();
    }

    #[test]
    fn pg_string_roundtrip() {
        let v = ScramVerifier::derive("pw", 4096);
        let s = v.to_pg_string();
        assert_eq!(ScramVerifier::parse(&s).unwrap(), v);
        assert!(ScramVerifier::parse("md5abc").is_err());
    }

    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = ScramVerifier::derive_with_salt("pencil", salt, 4096);
        let mut s = ScramServer::new(v);
        let first = s
            .client_first_with_nonce(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .unwrap();
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = s
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn channel_binding_and_malformed() {
        let mut s = ScramServer::new(ScramVerifier::derive("pw", 4096));
        assert_eq!(
            s.client_first(b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::ChannelBinding)
        );
        let mut s = ScramServer::new(ScramVerifier::derive("pw", 4096));
        assert_eq!(s.client_first(b"garbage"), Err(ScramError::Malformed));
        let mut s = ScramServer::new(ScramVerifier::derive("pw", 4096));
        assert_eq!(
            s.client_final(b"c=biws,r=x,p=AAAA"),
            Err(ScramError::Malformed)
        );
        let mut s = ScramServer::new(ScramVerifier::derive("pw", 4096));
        s.client_first(b"n,,n=,r=abc").unwrap();
        assert_eq!(
            s.client_final(b"c=biws,r=abcWRONG,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::Nonce)
        );
    }

    #[test]
    fn decoy_never_matches() {
        let d = ScramVerifier::decoy("ghost", b"k");
        assert_eq!(d.salt, ScramVerifier::decoy("ghost", b"k").salt);
        let mut server = ScramServer::new(d);
        let mut client = ScramSha256::new(b"anything", ChannelBinding::unsupported());
        let first = server.client_first(client.message()).unwrap();
        client.update(first.as_bytes()).unwrap();
        assert_eq!(
            server.client_final(client.message()),
            Err(ScramError::BadProof)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_messages_never_panic(a in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                                          b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut s = ScramServer::new(ScramVerifier::derive_with_salt("pw", vec![1;16], 1));
            let _ = s.client_first(&a);
            let _ = s.client_final(&b);
        }
    }
}
