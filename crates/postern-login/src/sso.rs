//! OpenID Connect single sign-on (I1): Postern checks ID tokens that its command-line
//! client obtained from the identity provider (authorization code with PKCE on a loopback
//! redirect, or the device flow), then maps a claim to the user name and another to roles.
//!
//! What makes a token acceptable: a signature by a key of the provider's JWKS (asymmetric
//! algorithms only), the configured issuer, Postern's client id as audience, not expired, and
//! a nonce that this Postern handed out within the last ten minutes and that no token used
//! before (so a token captured elsewhere cannot be replayed here). The device flow (RFC 8628)
//! has no nonce, so a token without one must instead be fresh (issued within the last five
//! minutes) and is accepted once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use sha2::Digest;

use crate::directory::map_roles;

/// How long a nonce handed out for a sign-in stays usable.
const NONCE_TTL: Duration = Duration::from_secs(600);
/// Most nonces outstanding at once (each sign-in attempt takes one).
const MAX_NONCES: usize = 10_000;
/// Most nonces outstanding for one client address, so one address cannot use them all up.
const MAX_NONCES_PER_ADDRESS: usize = 20;
/// The provider's keys are fetched again at most this often when a token names an
/// unknown key (key rotation), so garbage tokens cannot make Postern hammer the provider.
const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// Largest ID token looked at.
const MAX_TOKEN: usize = 16 * 1024;
/// A token without a nonce (device flow) must have been issued this recently.
const FRESH: i64 = 300;

/// `[oidc]` settings.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The provider's issuer URL (https, or http on a loopback address).
    pub issuer: String,
    /// Postern's client id at the provider (a public client: PKCE, no secret).
    pub client_id: String,
    /// Scopes the client asks for.
    pub scopes: Vec<String>,
    /// The claim holding the Postern user name.
    pub username_claim: String,
    /// The claim holding the person's groups.
    pub groups_claim: String,
    /// Group → Postern roles.
    pub group_roles: BTreeMap<String, Vec<String>>,
    /// CA certificates (PEM) for the provider's TLS certificate; the web roots otherwise.
    pub ca_pem: Option<Vec<u8>>,
    /// Time a request to the provider may take.
    pub timeout: Duration,
}

/// A person the provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoIdentity {
    /// Postern user name (from `username_claim`).
    pub user: String,
    /// The token's subject.
    pub subject: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// The roles those map to.
    pub roles: Vec<String>,
}

/// Why a token was not accepted (the text is safe to show: no secrets).
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The token itself: signature, issuer, audience, expiry, nonce, claims.
    #[error("{0}")]
    Rejected(String),
    /// The provider could not be asked (discovery, keys).
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The verifier of one provider.
pub struct Oidc {
    cfg: OidcSettings,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<Option<(JwkSet, Instant)>>,
    nonces: Mutex<HashMap<String, (Instant, std::net::IpAddr)>>,
    /// SHA-256 of nonce-less tokens already used, with their expiry (unix seconds).
    used: Mutex<HashMap<[u8; 32], i64>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

/// Whether `url` is https, or http to a loopback address (a provider on the same host).
pub fn acceptable_issuer(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => true,
        "http" => {
            matches!(
                u.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            ) || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                || u.host_str() == Some("localhost")
        }
        _ => false,
    }
}

impl Oidc {
    /// A verifier for the provider of `cfg`.
    pub fn new(cfg: OidcSettings) -> Result<Self, SsoError> {
        if !acceptable_issuer(&cfg.issuer) {
            return Err(SsoError::Rejected(format!(
                "oidc.issuer {} must be an https:// URL (http only on a loopback address)",
                cfg.issuer
            )));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &cfg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| SsoError::Rejected(format!("oidc.ca: {e}")))?;
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| SsoError::Unreachable(e.to_string()))?;
        Ok(Self {
            cfg,
            http,
            keys: tokio::sync::Mutex::new(None),
            nonces: Mutex::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.cfg
    }

    /// A fresh single-use nonce for one sign-in from `ip`.
    pub fn issue_nonce(&self, ip: std::net::IpAddr) -> Result<String, SsoError> {
        let mut raw = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut n = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        n.retain(|_, (at, _)| now.duration_since(*at) < NONCE_TTL);
        let busy = || {
            SsoError::Unreachable(
                "too many sign-ins in progress; try again in a few minutes".into(),
            )
        };
        if n.len() >= MAX_NONCES {
            return Err(busy());
        }
        if n.values().filter(|(_, from)| *from == ip).count() >= MAX_NONCES_PER_ADDRESS {
            return Err(busy());
        }
        n.insert(nonce.clone(), (now, ip));
        Ok(nonce)
    }

    fn take_nonce(&self, nonce: &str) -> bool {
        let mut n = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        match n.remove(nonce) {
            Some((at, _)) => at.elapsed() < NONCE_TTL,
            None => false,
        }
    }

    async fn fetch_keys(&self) -> Result<JwkSet, SsoError> {
        let issuer = self.cfg.issuer.trim_end_matches('/');
        let unreachable = |e: reqwest::Error| SsoError::Unreachable(e.to_string());
        let d: Discovery = self
            .http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        if d.issuer.trim_end_matches('/') != issuer {
            return Err(SsoError::Unreachable(format!(
                "the provider calls itself {}, not {issuer} (check oidc.issuer)",
                d.issuer
            )));
        }
        self.http
            .get(&d.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)
    }

    /// The key `kid` names (fetching the provider's keys when unknown, at most once a minute).
    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, SsoError> {
        let mut keys = self.keys.lock().await;
        let find = |set: &JwkSet| -> Option<jsonwebtoken::jwk::Jwk> {
            match kid {
                Some(k) => set.find(k).cloned(),
                None if set.keys.len() == 1 => set.keys.first().cloned(),
                None => None,
            }
        };
        if let Some((set, _)) = keys.as_ref() {
            if let Some(k) = find(set) {
                return Ok(k);
            }
        }
        let stale = !matches!(keys.as_ref(), Some((_, at)) if at.elapsed() < JWKS_REFRESH);
        if stale {
            let set = self.fetch_keys().await?;
            *keys = Some((set, Instant::now()));
        }
        keys.as_ref().and_then(|(set, _)| find(set)).ok_or_else(|| {
            SsoError::Rejected(
                "the token is signed with a key the provider does not publish".into(),
            )
        })
    }

    /// A token without a nonce: issued within [`FRESH`] seconds, and never seen before.
    fn once_fresh(
        &self,
        id_token: &str,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), SsoError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let iat = claims.get("iat").and_then(|v| v.as_i64()).unwrap_or(0);
        let exp = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(0);
        if iat < now - FRESH || iat > now + 60 {
            return Err(SsoError::Rejected(
                "a token without a nonce must be fresh (sign in again)".into(),
            ));
        }
        let digest: [u8; 32] = sha2::Sha256::digest(id_token.as_bytes()).into();
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, until| *until + 60 > now);
        if used.len() >= MAX_NONCES {
            return Err(SsoError::Unreachable(
                "too many sign-ins in progress; try again in a few minutes".into(),
            ));
        }
        if used.insert(digest, exp.max(iat + FRESH)).is_some() {
            return Err(SsoError::Rejected(
                "this token was used already (sign in again)".into(),
            ));
        }
        Ok(())
    }

    /// Checks an ID token; on success the person it names.
    pub async fn verify(&self, id_token: &str) -> Result<SsoIdentity, SsoError> {
        let rejected = |m: &str| SsoError::Rejected(m.to_string());
        if id_token.len() > MAX_TOKEN {
            return Err(rejected("the token is too long"));
        }
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| SsoError::Rejected(format!("not a signed JWT: {e}")))?;
        // Asymmetric signatures only: an HMAC "signed" with the public key, or none, is not
        // the provider's.
        let alg = header.alg;
        if !matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(SsoError::Rejected(format!(
                "signature algorithm {alg:?} is not accepted"
            )));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| SsoError::Rejected(format!("unusable provider key: {e}")))?;
        let mut v = Validation::new(alg);
        v.set_issuer(&[
            self.cfg.issuer.trim_end_matches('/'),
            self.cfg.issuer.as_str(),
        ]);
        v.set_audience(&[self.cfg.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 60;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(id_token, &key, &v)
                .map_err(|e| SsoError::Rejected(format!("the token is not valid: {e}")))?;
        let claims = data.claims;
        match claims.get("nonce").and_then(|n| n.as_str()) {
            Some(n) => {
                if !self.take_nonce(n) {
                    return Err(rejected(
                        "the token's nonce was not issued by this Postern or was used already (sign in again)",
                    ));
                }
            }
            None => self.once_fresh(id_token, &claims)?,
        }
        let subject = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string();
        let user = claims
            .get(&self.cfg.username_claim)
            .and_then(|u| u.as_str())
            .ok_or_else(|| {
                SsoError::Rejected(format!(
                    "the token has no {} claim (oidc.username_claim)",
                    self.cfg.username_claim
                ))
            })?
            .to_string();
        let groups: Vec<String> = match claims.get(&self.cfg.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let roles = map_roles(&self.cfg.group_roles, &groups);
        Ok(SsoIdentity {
            user,
            subject,
            groups,
            roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_must_be_https_or_loopback() {
        assert!(acceptable_issuer("https://login.example.org/realms/x"));
        assert!(acceptable_issuer("http://127.0.0.1:9400"));
        assert!(acceptable_issuer("http://[::1]:9400"));
        assert!(acceptable_issuer("http://localhost:9400"));
        assert!(!acceptable_issuer("http://login.example.org"));
        assert!(!acceptable_issuer("ftp://127.0.0.1"));
        assert!(!acceptable_issuer("nonsense"));
    }

    fn oidc() -> Oidc {
        Oidc::new(OidcSettings {
            issuer: "http://127.0.0.1:9".into(),
            client_id: "postern".into(),
            scopes: vec!["openid".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            group_roles: BTreeMap::new(),
            ca_pem: None,
            timeout: Duration::from_secs(2),
        })
        .unwrap()
    }

    #[test]
    fn nonces_are_single_use_and_bounded_per_address() {
        let o = oidc();
        let here = std::net::IpAddr::from([10, 0, 0, 1]);
        let a = o.issue_nonce(here).unwrap();
        let b = o.issue_nonce(here).unwrap();
        assert_ne!(a, b);
        assert!(o.take_nonce(&a));
        assert!(!o.take_nonce(&a));
        assert!(!o.take_nonce("made-up"));
        assert!(o.take_nonce(&b));
        for _ in 0..MAX_NONCES_PER_ADDRESS {
            o.issue_nonce(here).unwrap();
        }
        assert!(o.issue_nonce(here).is_err());
        // Another address is not affected.
        assert!(o.issue_nonce(std::net::IpAddr::from([10, 0, 0, 2])).is_ok());
    }

    #[test]
    fn tokens_without_a_nonce_must_be_fresh_and_are_used_once() {
        let o = oidc();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = |iat: i64| {
            let v = serde_json::json!({ "iat": iat, "exp": iat + 600 });
            v.as_object().unwrap().clone()
        };
        assert!(o.once_fresh("token-a", &claims(now - 10)).is_ok());
        let again = o.once_fresh("token-a", &claims(now - 10)).unwrap_err();
        assert!(again.to_string().contains("used already"), "{again}");
        assert!(o.once_fresh("token-b", &claims(now - 10)).is_ok());
        let old = o
            .once_fresh("token-c", &claims(now - FRESH - 5))
            .unwrap_err();
        assert!(old.to_string().contains("fresh"), "{old}");
        assert!(o.once_fresh("token-d", &claims(now + 3600)).is_err());
    }

    #[tokio::test]
    async fn unsigned_and_symmetric_tokens_are_refused_before_any_fetch() {
        let o = oidc();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"x"}"#));
        assert!(matches!(o.verify(&none).await, Err(SsoError::Rejected(_))));
        let hs = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64(r#"{"sub":"x"}"#)
        );
        let e = o.verify(&hs).await.unwrap_err().to_string();
        assert!(e.contains("not accepted"), "{e}");
        assert!(o.verify("garbage").await.is_err());
    }
}
