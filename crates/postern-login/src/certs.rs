//! Short-lived client certificates as a login (I3): what the TLS layer lets through, and
//! the check that turns a presented certificate into a person or a clear refusal.
//!
//! The TLS handshake accepts any client certificate whose private key the client proves it
//! holds ([`CertVerifiers::tls`]); the protocol session then runs [`CertVerifiers::check`]
//! (chain to the user CA, validity, client-auth usage) and the flow looks the serial up in
//! the store (issued here, not revoked). Checking after the handshake rather than in it is
//! what lets an expired or foreign certificate be refused in the client's own protocol,
//! with a message saying to run `postern login`, instead of a bare TLS alert. Every session
//! that sees a certificate must run the check and refuse on failure; none falls back to a
//! password.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use time::OffsetDateTime;

use crate::flow::{Denial, DenialKind};

/// A certificate that passed [`CertVerifiers::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCert {
    /// The Postern user it names (its common name).
    pub user: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// The verifiers built from the user CA.
#[derive(Debug, Clone)]
pub struct CertVerifiers {
    strict: Arc<dyn ClientCertVerifier>,
    tls: Arc<dyn ClientCertVerifier>,
}

/// Why the user CA could not be loaded as a trust anchor.
#[derive(Debug, thiserror::Error)]
#[error("the user CA certificate is unusable: {0}")]
pub struct BadUserCa(String);

impl CertVerifiers {
    /// Verifiers trusting `user_ca_der` (and nothing else).
    pub fn new(user_ca_der: Vec<u8>) -> Result<Self, BadUserCa> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(user_ca_der))
            .map_err(|e| BadUserCa(e.to_string()))?;
        let hints = roots.subjects();
        let roots = Arc::new(roots);
        let strict =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| BadUserCa(e.to_string()))?;
        let tls = Arc::new(ProofOfPossession {
            hints,
            algs: provider.signature_verification_algorithms,
        });
        Ok(Self { strict, tls })
    }

    /// For the TLS server configuration of a front door: asks for a client certificate
    /// (optional), checks only that the client holds its key. The session must then call
    /// [`CertVerifiers::check`].
    pub fn tls(&self) -> Arc<dyn ClientCertVerifier> {
        self.tls.clone()
    }

    /// Checks a presented chain (end entity first) at `now`: issued by the user CA, for
    /// client authentication, valid now. Pure: the store's record is the flow's business.
    pub fn check(
        &self,
        chain: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Result<PresentedCert, Denial> {
        let Some((end, intermediates)) = chain.split_first() else {
            return Err(invalid("no certificate in the chain"));
        };
        let (_, cert) = x509_parser::parse_x509_certificate(end)
            .map_err(|e| invalid(&format!("unparsable certificate: {e}")))?;
        let not_after = cert.validity().not_after.to_datetime();
        let expired = || {
            Denial::new(
                DenialKind::Certificate,
                format!(
                    "your Postern certificate expired at {}",
                    crate::flow::fmt_time(not_after)
                ),
                "client certificate expired",
            )
            .hint("run `postern login` to get a new one")
        };
        // The verifier below sees whole seconds; open sessions end at the exact instant
        // (`now >= not_after`), so a login in that last second must be refused too.
        if now >= not_after {
            return Err(expired());
        }
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now.unix_timestamp()).unwrap_or(0),
        ));
        if let Err(e) = self.strict.verify_client_cert(end, intermediates, at) {
            return Err(match e {
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => expired(),
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
                ) => Denial::new(
                    DenialKind::Certificate,
                    "your Postern certificate is not valid yet",
                    "client certificate not valid yet",
                )
                .hint("check this machine's clock, then run `postern login`"),
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => Denial::new(
                    DenialKind::Certificate,
                    format!(
                        "the client certificate was not issued by this Postern (issuer: {})",
                        cert.issuer()
                    ),
                    "client certificate from another CA",
                )
                .hint(
                    "run `postern login` against this server, or remove the certificate \
                     (sslcert, ~/.postgresql/postgresql.crt) to sign in with a password",
                ),
                other => invalid(&other.to_string()),
            });
        }
        let user = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| invalid("the certificate names no user"))?;
        Ok(PresentedCert {
            user: user.to_string(),
            serial: hex::encode(cert.raw_serial()),
            not_after,
        })
    }
}

fn invalid(why: &str) -> Denial {
    Denial::new(
        DenialKind::Certificate,
        "the client certificate is not acceptable",
        format!("client certificate refused: {why}"),
    )
    .hint("run `postern login` to get a new one")
}

/// Accepts any client certificate at the TLS layer, but only from a client that signs the
/// handshake with its key.
#[derive(Debug)]
struct ProofOfPossession {
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ProofOfPossession {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Deliberately lenient: see the module documentation.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };

    struct TestCa {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    fn leaf(ca: &TestCa, cn: &str, from: OffsetDateTime, until: OffsetDateTime) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x41, 0x02]));
        p.not_before = from;
        p.not_after = until;
        p.signed_by(&key, &ca.cert, &ca.key).unwrap().der().to_vec()
    }

    #[test]
    fn checks_issuer_validity_and_names() {
        let ours = ca("Postern user CA");
        let theirs = ca("Someone else");
        let v = CertVerifiers::new(ours.cert.der().to_vec()).unwrap();
        let now = OffsetDateTime::now_utc();
        let hour = time::Duration::hours(1);

        let good = leaf(&ours, "alice", now - hour, now + hour);
        let p = v.check(&[good.clone().into()], now).unwrap();
        assert_eq!(p.user, "alice");
        assert_eq!(p.serial, "4102");

        // The same certificate two hours later: expired, and the message says what to do.
        let d = v.check(&[good.into()], now + 2 * hour).unwrap_err();
        assert_eq!(d.kind, DenialKind::Certificate);
        assert!(d.message.contains("expired"), "{}", d.message);
        assert!(d.hint.as_deref().unwrap().contains("postern login"));

        // Within the last second of its validity the whole-second verifier would still
        // accept it; open sessions end at the exact instant, so logins are refused too.
        let until = now.replace_nanosecond(0).unwrap() + hour;
        let edge = leaf(&ours, "alice", now - hour, until);
        let d = v
            .check(&[edge.into()], until + time::Duration::milliseconds(300))
            .unwrap_err();
        assert!(d.message.contains("expired"), "{}", d.message);

        let early = leaf(&ours, "alice", now + hour, now + 2 * hour);
        let d = v.check(&[early.into()], now).unwrap_err();
        assert!(d.message.contains("not valid yet"), "{}", d.message);

        let foreign = leaf(&theirs, "alice", now - hour, now + hour);
        let d = v.check(&[foreign.into()], now).unwrap_err();
        assert!(
            d.message.contains("not issued by this Postern"),
            "{}",
            d.message
        );
        assert!(d.message.contains("Someone else"), "{}", d.message);

        let nameless = leaf(&ours, "", now - hour, now + hour);
        assert!(v.check(&[nameless.into()], now).is_err());
        assert!(v.check(&[], now).is_err());
        assert!(v.check(&[vec![0x30, 0x03, 1, 2, 3].into()], now).is_err());
    }
}
