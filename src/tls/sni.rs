//! Which certificate a handshake gets: the client's SNI name looked up exactly, then as a
//! wildcard (`*.example.com` covers `api.example.com`, one label only), then the first
//! certificate configured (clients without SNI, or asking for a name no certificate has).
//! Where a name has both an ECDSA and an RSA certificate, the first whose key can sign with one
//! of the client's signature schemes wins (ECDSA is listed first when both exist).
//!
//! The table is immutable; rotation builds a new one and swaps it in (`ArcSwap`): a handshake
//! reads it without a lock.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{SignatureAlgorithm, SignatureScheme};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Certificates by the names they are for.
#[derive(Debug, Default)]
pub struct SniTable {
    /// Lower-case DNS names (SANs, else the CN) → candidates, ECDSA before RSA.
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// Every certificate, in configured order: the first suits any client without a match.
    all: Vec<Arc<CertifiedKey>>,
}

impl SniTable {
    /// The table for `keys`, in configured order.
    pub fn new(keys: Vec<Arc<CertifiedKey>>) -> SniTable {
        let mut table = SniTable::default();
        for key in &keys {
            for name in dns_names(key) {
                let slot = match name.strip_prefix("*.") {
                    Some(parent) => table.wildcard.entry(parent.to_owned()).or_default(),
                    None => table.exact.entry(name).or_default(),
                };
                slot.push(key.clone());
            }
        }
        for list in table.exact.values_mut().chain(table.wildcard.values_mut()) {
            // Stable: configured order within each key type.
            list.sort_by_key(|k| k.key.algorithm() != SignatureAlgorithm::ECDSA);
        }
        table.all = keys;
        table
    }

    /// The certificate for `sni` that can sign with one of `schemes`.
    pub fn pick(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let fits =
            |list: &Vec<Arc<CertifiedKey>>| list.iter().find(|k| k.key.choose_scheme(schemes).is_some()).cloned();
        if let Some(name) = sni.map(str::to_ascii_lowercase) {
            let name = name.trim_end_matches('.');
            if let Some(k) = self.exact.get(name).and_then(fits) {
                return Some(k);
            }
            let parent = name.split_once('.').map(|(_, p)| p);
            if let Some(k) = parent.and_then(|p| self.wildcard.get(p)).and_then(fits) {
                return Some(k);
            }
        }
        // The first configured certificate the client can use; else the first (the handshake
        // then fails with a clear alert rather than no certificate at all).
        fits(&self.all).or_else(|| self.all.first().cloned())
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// DNS names of a leaf: its DNS SANs, else its subject CN (lower-case).
fn dns_names(key: &CertifiedKey) -> Vec<String> {
    let Some(leaf) = key.cert.first() else { return Vec::new() };
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else { return Vec::new() };
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase));
    }
    names
}

/// The listener's certificate resolver: rotation swaps `table`; handshakes only load it.
#[derive(Debug)]
pub struct SniResolver {
    pub table: ArcSwap<SniTable>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.table.load().pick(hello.server_name(), hello.signature_schemes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::load::provider;
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    fn key(names: &[&str], rsa: bool) -> Arc<CertifiedKey> {
        let alg = if rsa { &PKCS_RSA_SHA256 } else { &PKCS_ECDSA_P256_SHA256 };
        let pair = KeyPair::generate_for(alg).unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&pair).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.serialize_der()));
        Arc::new(CertifiedKey::from_der(vec![cert.der().clone()], der, &provider()).unwrap())
    }

    const ECDSA: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];
    const RSA: &[SignatureScheme] = &[SignatureScheme::RSA_PSS_SHA256, SignatureScheme::RSA_PKCS1_SHA256];
    const BOTH: &[SignatureScheme] =
        &[SignatureScheme::ECDSA_NISTP256_SHA256, SignatureScheme::RSA_PSS_SHA256, SignatureScheme::RSA_PKCS1_SHA256];

    /// Exact name first, then a one-label wildcard, then the first certificate.
    #[test]
    fn exact_then_wildcard_then_default() {
        let (a, b, w) = (key(&["a.example"], false), key(&["b.example"], false), key(&["*.w.example"], false));
        let table = SniTable::new(vec![a.clone(), b.clone(), w.clone()]);
        let pick = |sni| table.pick(sni, BOTH).unwrap();
        assert!(Arc::ptr_eq(&pick(Some("b.example")), &b));
        assert!(Arc::ptr_eq(&pick(Some("B.Example.")), &b), "case and trailing dot");
        assert!(Arc::ptr_eq(&pick(Some("x.w.example")), &w));
        assert!(Arc::ptr_eq(&pick(Some("y.x.w.example")), &a), "a wildcard covers one label only");
        assert!(Arc::ptr_eq(&pick(Some("w.example")), &a), "a wildcard does not cover its parent");
        assert!(Arc::ptr_eq(&pick(Some("other.example")), &a));
        assert!(Arc::ptr_eq(&pick(None), &a));
    }

    /// With an ECDSA and an RSA certificate for one name, the client's schemes choose.
    #[test]
    fn key_type_by_signature_schemes() {
        let (rsa, ec) = (key(&["api.example"], true), key(&["api.example"], false));
        let table = SniTable::new(vec![rsa.clone(), ec.clone()]);
        assert!(Arc::ptr_eq(&table.pick(Some("api.example"), BOTH).unwrap(), &ec), "ECDSA preferred");
        assert!(Arc::ptr_eq(&table.pick(Some("api.example"), RSA).unwrap(), &rsa));
        assert!(Arc::ptr_eq(&table.pick(Some("api.example"), ECDSA).unwrap(), &ec));
        assert!(Arc::ptr_eq(&table.pick(None, RSA).unwrap(), &rsa), "default also by schemes");
    }
}
