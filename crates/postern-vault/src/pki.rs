//! Postern's certificate authority and the certificates it issues.
//!
//! The CA key never lies in clear on disk: it is sealed with the master key. The CA
//! certificate (`ca.crt`) is public and is what clients pin (`sslrootcert=`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::key::{write_private, MasterKey, VaultError};

const CA_CONTEXT: &str = "pki:ca-key";
const USER_CA_CONTEXT: &str = "pki:user-ca-key";
const SERVER_CONTEXT: &str = "pki:server-key";

/// A client certificate issued to a person (`postern login`).
#[derive(Debug, Clone)]
pub struct IssuedClientCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Serial number, lower-case hex (what the store and revocation use).
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct CertAndKey {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey").finish_non_exhaustive()
    }
}

/// Postern's certificate authority.
pub struct Ca {
    /// The CA as rcgen needs it to sign (re-created from its parameters when loaded; the
    /// issuer name and key are what matter for the certificates it signs).
    issuer: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca(..)")
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Ca {
    /// A new self-signed CA valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, VaultError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Postern");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: cert,
            key,
        })
    }

    /// Loads the CA from `dir` (`ca.crt`, `ca.key.sealed`), or creates and writes it.
    /// Returns the CA and whether it was created. This CA signs Postern's server
    /// certificates: what clients trust.
    pub fn load_or_create(dir: &Path, master: &MasterKey) -> Result<(Self, bool), VaultError> {
        Self::load_or_create_named(dir, master, "ca", CA_CONTEXT, "Postern CA")
    }

    /// Loads or creates the user CA (`user-ca.crt`, `user-ca.key.sealed`), which signs only
    /// the short-lived client certificates of people. Kept apart from the server CA so that
    /// trusting one never means trusting the other.
    pub fn load_or_create_user(dir: &Path, master: &MasterKey) -> Result<(Self, bool), VaultError> {
        Self::load_or_create_named(dir, master, "user-ca", USER_CA_CONTEXT, "Postern user CA")
    }

    fn load_or_create_named(
        dir: &Path,
        master: &MasterKey,
        stem: &str,
        context: &str,
        common_name: &str,
    ) -> Result<(Self, bool), VaultError> {
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key.sealed"));
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
            let sealed = std::fs::read(&key_path).map_err(io_err(&key_path))?;
            let key_pem = master.open_string(context, &sealed)?;
            let key = KeyPair::from_pem(&key_pem)?;
            let issuer = CertificateParams::from_ca_cert_pem(&cert_pem)?.self_signed(&key)?;
            return Ok((
                Self {
                    issuer,
                    key,
                    cert_pem,
                },
                false,
            ));
        }
        let ca = Self::generate(common_name)?;
        std::fs::write(&cert_path, &ca.cert_pem).map_err(io_err(&cert_path))?;
        let sealed = master.seal(context, ca.key.serialize_pem().as_bytes());
        write_private(&key_path, &sealed).map_err(io_err(&key_path))?;
        Ok((ca, true))
    }

    /// Issues a TLS server certificate for `names` (DNS names or IP addresses).
    pub fn issue_server(
        &self,
        names: &[String],
        valid_days: i64,
    ) -> Result<CertAndKey, VaultError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("postern"),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(valid_days);
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Ca {
    /// The CA certificate, DER (a trust anchor for verifiers).
    pub fn cert_der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// Issues a client certificate for `user` over the public key of `csr_pem` (whose
    /// signature proves the requester holds the private key), valid from now until
    /// `not_after`. Everything else the request asks for (names, extensions) is ignored:
    /// the certificate says what Postern decided, with a random 128-bit serial.
    pub fn issue_client(
        &self,
        user: &str,
        csr_pem: &str,
        not_after: OffsetDateTime,
    ) -> Result<IssuedClientCert, VaultError> {
        // X.509 times are whole seconds: what Postern records and reports must be the same.
        let not_after = not_after.replace_nanosecond(0).unwrap_or(not_after);
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
        serial[0] &= 0x7f; // positive, as DER integers must be
        serial[0] |= 0x40; // and 16 bytes long, so the hex form is stable
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        dn.push(DnType::OrganizationName, "Postern");
        params.distinguished_name = dn;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // A minute back for clocks a little behind; never past the end.
        let now = OffsetDateTime::now_utc();
        params.not_before = (now - Duration::minutes(1)).min(not_after);
        params.not_after = not_after;
        csr.params = params;
        let (not_before, not_after) = (csr.params.not_before, csr.params.not_after);
        let cert = csr.signed_by(&self.issuer, &self.key)?;
        Ok(IssuedClientCert {
            cert_pem: cert.pem(),
            serial: hex::encode(serial),
            not_before,
            not_after,
        })
    }
}

/// Paths of the server certificate Postern made for itself.
pub fn server_cert_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("server.crt"), dir.join("server.key.sealed"))
}

/// Loads the server certificate from `dir`, or issues one from `ca` for `names` and writes it.
pub fn load_or_issue_server(
    dir: &Path,
    ca: &Ca,
    master: &MasterKey,
    names: &[String],
) -> Result<CertAndKey, VaultError> {
    let (cert_path, key_path) = server_cert_paths(dir);
    if cert_path.exists() && key_path.exists() {
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let sealed = std::fs::read(&key_path).map_err(io_err(&key_path))?;
        let key_pem = master.open_string(SERVER_CONTEXT, &sealed)?;
        return Ok(CertAndKey {
            cert_pem,
            key_pem: key_pem.to_string(),
        });
    }
    let ck = ca.issue_server(names, 825)?;
    std::fs::write(&cert_path, &ck.cert_pem).map_err(io_err(&cert_path))?;
    let sealed = master.seal(SERVER_CONTEXT, ck.key_pem.as_bytes());
    write_private(&key_path, &sealed).map_err(io_err(&key_path))?;
    Ok(ck)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_issues() {
        let dir = tempfile::tempdir().unwrap();
        let mk = MasterKey::generate();
        let (ca, created) = Ca::load_or_create(dir.path(), &mk).unwrap();
        assert!(created);
        let sealed = std::fs::read(dir.path().join("ca.key.sealed")).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
        let (ca2, created) = Ca::load_or_create(dir.path(), &mk).unwrap();
        assert!(!created);
        assert_eq!(ca.cert_pem, ca2.cert_pem);
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let srv = load_or_issue_server(dir.path(), &ca2, &mk, &names).unwrap();
        let der = rustls_pem_der(&srv.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ca_der = rustls_pem_der(&ca.cert_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        let again = load_or_issue_server(dir.path(), &ca2, &mk, &names).unwrap();
        assert_eq!(again.cert_pem, srv.cert_pem);
        // A different master key cannot open the CA key.
        assert!(Ca::load_or_create(dir.path(), &MasterKey::generate()).is_err());
    }

    #[test]
    fn user_ca_issues_client_certificates_from_requests() {
        let dir = tempfile::tempdir().unwrap();
        let mk = MasterKey::generate();
        let (server_ca, _) = Ca::load_or_create(dir.path(), &mk).unwrap();
        let (user_ca, created) = Ca::load_or_create_user(dir.path(), &mk).unwrap();
        assert!(created);
        assert_ne!(server_ca.cert_pem, user_ca.cert_pem);
        let (again, created) = Ca::load_or_create_user(dir.path(), &mk).unwrap();
        assert!(!created);
        assert_eq!(again.cert_pem, user_ca.cert_pem);

        let key = KeyPair::generate().unwrap();
        let mut req = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        req.distinguished_name.push(DnType::CommonName, "admin");
        let csr = req.serialize_request(&key).unwrap().pem().unwrap();
        let until = OffsetDateTime::now_utc() + Duration::hours(8);
        let issued = again.issue_client("alice", &csr, until).unwrap();
        assert_eq!(issued.serial.len(), 32);
        let der = rustls_pem_der(&issued.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        // The name is Postern's decision, not the request's.
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["alice"]);
        assert!(cert.subject_alternative_name().unwrap().is_none());
        // What Postern reports as the end is the certificate's own (whole seconds).
        assert_eq!(issued.not_after.nanosecond(), 0);
        assert_eq!(
            cert.validity().not_after.timestamp(),
            issued.not_after.unix_timestamp()
        );
        assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());
        assert_eq!(hex::encode(cert.raw_serial()), issued.serial);
        assert_eq!(
            cert.validity().not_after.timestamp(),
            until.unix_timestamp()
        );
        let ca_der = rustls_pem_der(&user_ca.cert_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        // Not signed by the server CA.
        let srv_der = rustls_pem_der(&server_ca.cert_pem);
        let (_, srv) = x509_parser::parse_x509_certificate(&srv_der).unwrap();
        assert!(cert.verify_signature(Some(srv.public_key())).is_err());

        // A request whose signature does not match its key is refused.
        let mut bad = rustls_pem_der(&csr);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let bad_pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bad)
        );
        assert!(again.issue_client("alice", &bad_pem, until).is_err());
        assert!(again.issue_client("alice", "not a csr", until).is_err());
    }

    fn rustls_pem_der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }
}
