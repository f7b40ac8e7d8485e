//! What a TLS connection tells about its client, computed once after the handshake and kept
//! with the connection (`proxy::Connection`): the negotiated protocol, and the verified client
//! certificate's subject and SHA-256 thumbprint (RFC 8705 `x5t#S256`), for identity headers
//! now and certificate-bound tokens later.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use super::load::hash;

/// The TLS side of one accepted connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The SNI name the client asked for, if any.
    pub sni: Option<String>,
    /// `h2` or `http/1.1` when ALPN chose one.
    pub alpn: Option<Vec<u8>>,
    /// The client certificate, when the client sent one and the verifier accepted it.
    pub client_cert: Option<ClientCert>,
}

/// A verified client certificate (its leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// RFC 4514 string of the leaf's subject, e.g. `CN=client-a,O=Example`.
    pub subject: String,
    /// SHA-256 of the leaf's DER.
    pub sha256: [u8; 32],
    /// `sha256` as base64url without padding: the RFC 8705 `x5t#S256` confirmation value.
    pub x5t_s256: String,
}

impl ClientCert {
    /// From the leaf's DER. A leaf the verifier accepted always parses; were it not to, the
    /// subject is empty (never a guess).
    pub fn from_der(leaf: &CertificateDer<'_>) -> ClientCert {
        let sha256 = hash(leaf.as_ref());
        let subject = X509Certificate::from_der(leaf.as_ref()).map(|(_, c)| rfc4514(c.subject())).unwrap_or_default();
        ClientCert { subject, sha256, x5t_s256: URL_SAFE_NO_PAD.encode(sha256) }
    }
}

/// A certificate's notAfter as Unix seconds, when it parses.
pub(crate) fn not_after(der: &CertificateDer<'_>) -> Option<i64> {
    X509Certificate::from_der(der.as_ref()).ok().map(|(_, c)| c.validity().not_after.timestamp())
}

/// RFC 4514 §2: RDNs in reverse order, joined by `,`; multi-valued ones by `+`; the short names
/// of §3 (others as dotted OIDs), string values escaped (§2.4); a non-string value as `#` and
/// the hex of its content octets (RFC 4514 wants its whole BER encoding: tag and length too).
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let key = short_name(&oid).map_or(oid.clone(), str::to_owned);
                    match atv.as_str() {
                        Ok(text) => format!("{key}={}", escape(text)),
                        Err(_) => format!("{key}=#{}", hex(atv.attr_value().data)),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 4514 §3.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 §2.4: `"+,;<>\` and NUL anywhere, a leading space or `#`, a trailing space;
/// control characters as `\XX` so the result is always a valid header value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '#' if i == 0 => out.push_str("\\#"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Special characters are escaped; leading `#` and edge spaces too.
    #[test]
    fn escapes() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" #x "), "\\ #x\\ ");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("a\nb"), "a\\0Ab");
        assert_eq!(escape("plain name"), "plain name");
    }
}
