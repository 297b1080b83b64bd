//! SCRAM-SHA-256 client side (RFC 5802, RFC 7677), for logging in to an upstream server
//! with a stored credential.
//!
//! The expensive step, PBKDF2 over the password ([`salted_password`]), is separate from the
//! message exchange so the caller can run it off the async threads and reuse its result:
//! a server keeps one salt and iteration count per role, so every later login of the same
//! credential needs only a few HMACs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::scram::{hmac, normalize, ScramError};

/// Largest iteration count accepted from a server: the count drives a PBKDF2 loop, so an
/// impersonating server could otherwise make every login burn CPU (PostgreSQL's default is
/// 4096; drivers cap it at 100 000 for the same reason).
pub const MAX_ITERATIONS: u32 = 100_000;
/// Largest salt accepted from a server, in bytes.
const MAX_SALT: usize = 1024;

/// PBKDF2-HMAC-SHA-256 of the (SASLprepped) password: the `SaltedPassword` of RFC 5802.
/// Slow by design; call it off async threads.
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let pw = Zeroizing::new(normalize(password));
    pbkdf2::pbkdf2_hmac::<Sha256>(&pw, salt, iterations, &mut *out);
    out
}

/// The salt and iteration count a server asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerParams {
    /// Salt (decoded).
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

enum State {
    Initial,
    GotFirst { server_first: String, nonce: String },
    SentFinal { server_signature: [u8; 32] },
    Done,
}

/// One client exchange: [`client_first`](Self::client_first) →
/// [`server_first`](Self::server_first) → [`client_final`](Self::client_final) →
/// [`server_final`](Self::server_final).
pub struct ScramClient {
    /// `n=` of the bare message: empty, as PostgreSQL takes the user from the startup
    /// packet (set only by the RFC test vector).
    user: String,
    client_nonce: String,
    state: State,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramClient")
    }
}

impl Default for ScramClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ScramClient {
    /// A new exchange with a random nonce.
    pub fn new() -> Self {
        let mut raw = [0u8; 18];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        Self::with_nonce(B64.encode(raw))
    }

    fn with_nonce(client_nonce: String) -> Self {
        Self {
            user: String::new(),
            client_nonce,
            state: State::Initial,
        }
    }

    fn client_first_bare(&self) -> String {
        format!("n={},r={}", self.user, self.client_nonce)
    }

    /// The client-first message (no channel binding, no authorization identity).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare())
    }

    /// Reads the server-first message; returns the salt and iteration count to derive the
    /// salted password with.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<ServerParams, ScramError> {
        if !matches!(self.state, State::Initial) || msg.len() > crate::scram::MAX_MESSAGE {
            return Err(ScramError::Malformed);
        }
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
        let mut parts = msg.split(',');
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(ScramError::Malformed)?;
        let salt = parts
            .next()
            .and_then(|p| p.strip_prefix("s="))
            .ok_or(ScramError::Malformed)?;
        let iterations = parts
            .next()
            .and_then(|p| p.strip_prefix("i="))
            .ok_or(ScramError::Malformed)?;
        // The server's nonce must extend ours, with printable characters and no comma.
        if nonce.len() <= self.client_nonce.len()
            || !nonce.starts_with(&self.client_nonce)
            || !nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(ScramError::Nonce);
        }
        if salt.len() > MAX_SALT * 4 / 3 + 4 {
            return Err(ScramError::Malformed);
        }
        let salt = B64.decode(salt).map_err(|_| ScramError::Malformed)?;
        let iterations: u32 = iterations.parse().map_err(|_| ScramError::Malformed)?;
        if salt.is_empty() || iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(ScramError::Malformed);
        }
        self.state = State::GotFirst {
            server_first: msg.to_string(),
            nonce: nonce.to_string(),
        };
        Ok(ServerParams { salt, iterations })
    }

    /// The client-final message, proving knowledge of the password through its salted form
    /// (derived with the parameters [`server_first`](Self::server_first) returned).
    pub fn client_final(&mut self, salted: &[u8; 32]) -> Result<String, ScramError> {
        let State::GotFirst {
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed);
        };
        // c=biws is base64("n,,"): no channel binding.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!(
            "{},{server_first},{without_proof}",
            self.client_first_bare()
        );
        let client_key = Zeroizing::new(hmac(salted, b"Client Key"));
        let stored_key: [u8; 32] = Sha256::digest(*client_key).into();
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = [0u8; 32];
        for (p, (k, s)) in proof
            .iter_mut()
            .zip(client_key.iter().zip(client_signature.iter()))
        {
            *p = k ^ s;
        }
        let server_key = Zeroizing::new(hmac(salted, b"Server Key"));
        self.state = State::SentFinal {
            server_signature: hmac(&*server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message: the server proves it knows the password too.
    pub fn server_final(&mut self, msg: &[u8]) -> Result<(), ScramError> {
        let State::SentFinal { server_signature } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed);
        };
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
        if msg.starts_with("e=") {
            return Err(ScramError::BadProof);
        }
        let v = msg
            .split(',')
            .next()
            .and_then(|p| p.strip_prefix("v="))
            .ok_or(ScramError::Malformed)?;
        let v = B64.decode(v).map_err(|_| ScramError::Malformed)?;
        if v.len() != 32 || !bool::from(v.as_slice().ct_eq(&server_signature)) {
            return Err(ScramError::ServerSignature);
        }
        Ok(())
    }
}

/// Salted passwords of upstream credentials already derived, so that only the first login
/// of a credential pays for PBKDF2.
///
/// Entries are keyed by an HMAC (under a per-process random key) of password, salt and
/// iteration count: a changed password or a new salt simply misses. The values are as
/// sensitive as the passwords themselves and live only in this process's memory, zeroed
/// when dropped. At most `capacity` entries are kept (the map is emptied when full).
pub struct SaltedPasswordCache {
    key: Zeroizing<[u8; 32]>,
    capacity: usize,
    map: std::sync::Mutex<std::collections::HashMap<[u8; 32], Zeroizing<[u8; 32]>>>,
}

impl std::fmt::Debug for SaltedPasswordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaltedPasswordCache")
    }
}

impl SaltedPasswordCache {
    /// An empty cache holding up to `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        Self {
            key,
            capacity: capacity.max(1),
            map: Default::default(),
        }
    }

    fn slot(&self, password: &str, p: &ServerParams) -> [u8; 32] {
        let mut msg = Zeroizing::new(Vec::with_capacity(password.len() + p.salt.len() + 16));
        // Length-prefixed fields: no two inputs share an encoding.
        msg.extend_from_slice(&(password.len() as u64).to_be_bytes());
        msg.extend_from_slice(password.as_bytes());
        msg.extend_from_slice(&(p.salt.len() as u64).to_be_bytes());
        msg.extend_from_slice(&p.salt);
        msg.extend_from_slice(&p.iterations.to_be_bytes());
        hmac(&*self.key, &msg)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], Zeroizing<[u8; 32]>>> {
        // A panic while holding the lock leaves only a map of complete entries behind.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The salted password for these parameters, when derived before.
    pub fn get(&self, password: &str, p: &ServerParams) -> Option<Zeroizing<[u8; 32]>> {
        let slot = self.slot(password, p);
        self.lock().get(&slot).cloned()
    }

    /// Remembers a salted password.
    pub fn insert(&self, password: &str, p: &ServerParams, salted: &[u8; 32]) {
        let slot = self.slot(password, p);
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(slot, Zeroizing::new(*salted));
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::{ScramServer, ScramVerifier};

    /// Our client against our server, which is itself checked against a real client.
    fn exchange(stored_pw: &str, client_pw: &str) -> Result<(), ScramError> {
        let v = ScramVerifier::derive(stored_pw, 4096);
        let mut server = ScramServer::new(v);
        let mut client = ScramClient::new();
        let first = server.client_first(client.client_first().as_bytes())?;
        let params = client.server_first(first.as_bytes())?;
        let salted = salted_password(client_pw, &params.salt, params.iterations);
        let fin = server.client_final(client.client_final(&salted)?.as_bytes())?;
        client.server_final(fin.as_bytes())
    }

    #[test]
    fn logs_in_and_wrong_password_fails() {
        exchange("upstream-secret", "upstream-secret").unwrap();
        exchange("pässwörd ünïcode", "pässwörd ünïcode").unwrap();
        assert_eq!(
            exchange("upstream-secret", "upstream-secreT"),
            Err(ScramError::BadProof)
        );
    }

    /// RFC 7677's example exchange, byte for byte.
    #[test]
    fn rfc7677_vector() {
        let mut c = ScramClient::with_nonce("rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(c.client_first(), "n,,n=,r=rOprNGfwEbeRWgbNEkqO");
        c.user = "user".into();
        let first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let p = c.server_first(first.as_bytes()).unwrap();
        assert_eq!(p.iterations, 4096);
        let salted = salted_password("pencil", &p.salt, p.iterations);
        assert_eq!(
            c.client_final(&salted).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    #[test]
    fn cache_hits_only_on_same_password_salt_and_iterations() {
        let cache = SaltedPasswordCache::new(2);
        let p = ServerParams {
            salt: b"salt".to_vec(),
            iterations: 16,
        };
        assert!(cache.get("pw", &p).is_none());
        let salted = salted_password("pw", &p.salt, p.iterations);
        cache.insert("pw", &p, &salted);
        assert_eq!(cache.get("pw", &p).as_deref(), Some(&*salted));
        assert!(cache.get("pw2", &p).is_none());
        let other_salt = ServerParams {
            salt: b"salt2".to_vec(),
            ..p.clone()
        };
        assert!(cache.get("pw", &other_salt).is_none());
        let other_iter = ServerParams {
            iterations: 17,
            ..p.clone()
        };
        assert!(cache.get("pw", &other_iter).is_none());
        cache.insert("a", &p, &[1; 32]);
        assert_eq!(cache.len(), 2);
        // Full: emptied before the next insert.
        cache.insert("b", &p, &[2; 32]);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("pw", &p).is_none());
        assert_eq!(cache.get("b", &p).map(|v| v[0]), Some(2));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_server_messages_never_panic(first in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                                                 last in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut c = ScramClient::with_nonce("abc".into());
            let mut prefixed = b"r=abc".to_vec();
            prefixed.extend_from_slice(&first);
            for m in [&first, &prefixed] {
                if let Ok(p) = c.server_first(m) {
                    let salted = salted_password("pw", &p.salt, 1);
                    let _ = c.client_final(&salted);
                    let _ = c.server_final(&last);
                }
            }
        }
    }

    #[test]
    fn hostile_server_messages_are_refused() {
        let nonce = "abcdefghijklmnop";
        let bad: &[&str] = &[
            "",
            "r=abcdefghijklmnop,s=c2FsdA==,i=4096", // nonce not extended
            "r=zzzz,s=c2FsdA==,i=4096",             // not our nonce
            "r=abcdefghijklmnopXY,s=,i=4096",       // empty salt
            "r=abcdefghijklmnopXY,s=!!,i=4096",     // salt not base64
            "r=abcdefghijklmnopXY,s=c2FsdA==,i=0",
            "r=abcdefghijklmnopXY,s=c2FsdA==,i=100001", // PBKDF2 bomb
            "r=abcdefghijklmnopXY,s=c2FsdA==,i=-1",
            "r=abcdefghijklmnopXY,s=c2FsdA==",
            "s=c2FsdA==,r=abcdefghijklmnopXY,i=4096",
        ];
        for m in bad {
            let mut c = ScramClient::with_nonce(nonce.into());
            assert!(c.server_first(m.as_bytes()).is_err(), "{m}");
        }
        // Out-of-order calls and a forged server signature.
        let mut c = ScramClient::with_nonce(nonce.into());
        assert!(c.client_final(&[0; 32]).is_err());
        let mut c = ScramClient::with_nonce(nonce.into());
        c.server_first(b"r=abcdefghijklmnopXY,s=c2FsdA==,i=16")
            .unwrap();
        let salted = salted_password("pw", b"salt", 16);
        c.client_final(&salted).unwrap();
        let forged = format!("v={}", B64.encode([7u8; 32]));
        assert_eq!(
            c.server_final(forged.as_bytes()),
            Err(ScramError::ServerSignature)
        );
    }
}
