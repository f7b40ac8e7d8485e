//! `tls:` and `plain_listen`: the files are read and checked here, so a missing file, a PEM
//! without a certificate or a key that is not the leaf's stops start-up (exit 64) with the file
//! and the problem, instead of failing the first handshake.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{overlaps, socket_addr, Ctx};
use crate::config::raw::{RawClientAuth, RawTls};
use crate::config::{CertificatePaths, ClientAuth, ConfigError, TlsSettings};
use crate::tls::load;

pub(super) fn tls(ctx: &Ctx<'_>, raw: RawTls, has_proxy_listener: bool) -> Result<TlsSettings, ConfigError> {
    if !has_proxy_listener {
        return Err(ctx.err("tls", "applies to the proxy listener, which runs only with an upstream"));
    }
    let mut pairs: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    match (raw.cert, raw.key) {
        (None, None) => {}
        (cert, key) => pairs.push(("tls".into(), cert, key)),
    }
    for (i, c) in raw.certificates.unwrap_or_default().into_iter().enumerate() {
        pairs.push((format!("tls.certificates[{i}]"), c.cert, c.key));
    }
    if pairs.is_empty() {
        return Err(ctx.err(
            "tls.certificates",
            "needs at least one certificate: {cert: <chain.pem>, key: <key.pem>} (or TOKENGATE_TLS_CERT and \
             TOKENGATE_TLS_KEY)",
        ));
    }
    let mut certificates = Vec::new();
    for (field, cert, key) in pairs {
        let cert = cert.filter(|c| !c.is_empty()).map(PathBuf::from);
        let key = key.filter(|k| !k.is_empty()).map(PathBuf::from);
        let Some(cert) = cert else {
            return Err(ctx.err(format!("{field}.cert"), "is required: the certificate chain file (PEM)"));
        };
        let Some(key) = key else {
            return Err(ctx.err(format!("{field}.key"), "is required: the private key file (PEM) of the certificate"));
        };
        load::check_pair(&cert, &key).map_err(|e| {
            let which = if e.is_about_key(&key) { "key" } else { "cert" };
            ctx.err(format!("{field}.{which}"), e.to_string())
        })?;
        certificates.push(CertificatePaths { cert, key });
    }
    let client_ca = raw.client_ca.filter(|p| !p.is_empty()).map(PathBuf::from);
    let client_auth = match (&client_ca, raw.client_auth) {
        (None, Some(_)) => {
            return Err(ctx.err(
                "tls.client_auth",
                "needs tls.client_ca: the CA certificates client certificates are verified against",
            ))
        }
        (None, None) => None,
        (Some(_), None | Some(RawClientAuth::Required)) => Some(ClientAuth::Required),
        (Some(_), Some(RawClientAuth::Optional)) => Some(ClientAuth::Optional),
    };
    if let Some(ca) = &client_ca {
        load::check_roots(ca).map_err(|e| ctx.err("tls.client_ca", e.to_string()))?;
    }
    Ok(TlsSettings { certificates, client_ca, client_auth })
}

/// `plain_listen`: only beside a TLS listener, on a port of its own.
pub(super) fn plain_listen(
    ctx: &Ctx<'_>,
    value: &str,
    tls: bool,
    others: &[(SocketAddr, &str)],
) -> Result<SocketAddr, ConfigError> {
    let addr = socket_addr(ctx, "plain_listen", value)?;
    if !tls {
        return Err(ctx.err(
            "plain_listen",
            "is a cleartext listener beside the TLS one: it needs tls (without tls, `listen` is already cleartext)",
        ));
    }
    for (other, name) in others {
        if overlaps(addr, *other) {
            return Err(ctx.err("plain_listen", format!("{addr} overlaps {name} ({other}); it needs its own port")));
        }
    }
    Ok(addr)
}
