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
const SERVER_CONTEXT: &str = "pki:server-key";

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
    /// Returns the CA and whether it was created.
    pub fn load_or_create(dir: &Path, master: &MasterKey) -> Result<(Self, bool), VaultError> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key.sealed");
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
            let sealed = std::fs::read(&key_path).map_err(io_err(&key_path))?;
            let key_pem = master.open_string(CA_CONTEXT, &sealed)?;
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
        let ca = Self::generate("Postern CA")?;
        std::fs::write(&cert_path, &ca.cert_pem).map_err(io_err(&cert_path))?;
        let sealed = master.seal(CA_CONTEXT, ca.key.serialize_pem().as_bytes());
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

    fn rustls_pem_der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }
}
