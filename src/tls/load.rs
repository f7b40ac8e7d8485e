//! Reading certificate, key and CA files: PEM in, checked rustls values out. Used by config
//! validation (so a bad file stops start-up with exit 64) and by the reloader (so a bad file on
//! disk keeps the old pair serving). Errors name the file and say what is wrong; they never
//! quote file contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Certificate, key or CA files larger than this are refused (a chain is a few kilobytes).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: no PEM CERTIFICATE block in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not valid PEM: {reason}", path.display())]
    BadPem { path: PathBuf, reason: String },
    #[error("{}: no PEM private key in the file (PKCS#8, PKCS#1 or SEC1 expected)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: the private key is not usable: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{} does not match the certificate in {}: the key is not the leaf certificate's", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: not a usable certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
}

impl LoadError {
    /// The error is the key file's (as config errors name it): a key that cannot be read or
    /// parsed, or one that is not the leaf's. Everything else is the certificate file's.
    pub fn is_about_key(&self, key: &Path) -> bool {
        match self {
            LoadError::Unreadable { path, .. }
            | LoadError::BadPem { path, .. }
            | LoadError::NoKey { path }
            | LoadError::BadKey { path, .. } => path == key,
            LoadError::KeyMismatch { .. } => true,
            _ => false,
        }
    }
}

/// File contents, read once: what is hashed is exactly what is parsed.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    let unreadable = |reason: String| LoadError::Unreadable { path: path.to_owned(), reason };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(unreadable(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    std::fs::read(path).map_err(|e| unreadable(e.to_string()))
}

/// SHA-256 of some file contents: the reloader compares these, never mtimes.
pub(crate) fn hash(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// Every CERTIFICATE block of `pem`, leaf first.
pub(crate) fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| LoadError::BadPem { path: path.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(LoadError::NoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

pub(crate) fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, LoadError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => LoadError::NoKey { path: path.to_owned() },
        e => LoadError::BadPem { path: path.to_owned(), reason: e.to_string() },
    })
}

/// A leaf (with its chain) and its key, parsed and checked against each other: the key must be
/// the one the leaf certifies (`CertifiedKey::from_der`).
pub(crate) fn certified_key(
    provider: &CryptoProvider,
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, LoadError> {
    let chain = certificates(cert_path, cert_pem)?;
    let key = private_key(key_path, key_pem)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            LoadError::KeyMismatch { cert: cert_path.to_owned(), key: key_path.to_owned() }
        }
        rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_) => {
            LoadError::BadCertificate { path: cert_path.to_owned(), reason: e.to_string() }
        }
        e => LoadError::BadKey { path: key_path.to_owned(), reason: e.to_string() },
    })
}

/// The trust anchors of `client_ca`: every certificate in the file.
pub(crate) fn roots(path: &Path, pem: &[u8]) -> Result<Arc<RootCertStore>, LoadError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path, pem)? {
        store.add(cert).map_err(|e| LoadError::BadCertificate { path: path.to_owned(), reason: e.to_string() })?;
    }
    Ok(Arc::new(store))
}

/// The provider every TLS object of the gateway is built with, whatever the process default is.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Check a certificate pair on disk (config validation).
pub fn check_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, LoadError> {
    certified_key(&provider(), cert, &read(cert)?, key, &read(key)?)
}

/// A certificate chain and its key on disk, checked against each other like `check_pair`, as
/// DER (an upstream's client certificate, handed to a rustls `ClientConfig`).
pub fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), LoadError> {
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    certified_key(&provider(), cert, &cert_pem, key, &key_pem)?;
    Ok((certificates(cert, &cert_pem)?, private_key(key, &key_pem)?))
}

/// Every certificate in a PEM file on disk (an upstream's `ca`).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    certificates(path, &read(path)?)
}

/// Check a client CA file on disk (config validation).
pub fn check_roots(ca: &Path) -> Result<(), LoadError> {
    roots(ca, &read(ca)?).map(drop)
}
