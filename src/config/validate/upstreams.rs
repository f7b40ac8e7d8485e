//! `upstream` and `upstreams`: URLs, timeouts, and the TLS files of `https://` upstreams, read
//! and checked here so that a bad file is a load error naming its field.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use http::Uri;
use rustls::pki_types::ServerName;

use super::{
    env, is_label_name, nonzero, positive, raw, Ctx, Problems, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_MAX_IDLE_PER_HOST, DEFAULT_RESPONSE_TIMEOUT,
};
use crate::config::{ClientIdentity, ConfigError, Route, UpstreamProtocol, UpstreamSettings, UpstreamTls, WrittenTls};
use crate::tls::load;

/// `upstream`, the default for routes that name none; `section` is `upstream` or
/// `upstreams.<name>`.
pub(super) fn upstream(ctx: &Ctx<'_>, section: &str, raw: raw::RawUpstream) -> Result<UpstreamSettings, ConfigError> {
    let field = |key: &str| format!("{section}.{key}");
    let Some(url) = raw.url.clone() else {
        let message = if section == "upstream" {
            format!(
                "is required: set upstream.url in the config file or {} (e.g. http://127.0.0.1:8081), or \
                 only {} to run the decision service alone",
                env::UPSTREAM,
                env::DECISION_LISTEN
            )
        } else {
            "is required (e.g. http://127.0.0.1:8081)".to_owned()
        };
        return Err(ctx.err(field("url"), message));
    };
    let bad = |what: &str| {
        ctx.err(
            field("url"),
            format!("{url:?} {what}; expected http://, https:// or h2c://host:port with no path or query"),
        )
    };
    let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    let protocol = match uri.scheme_str() {
        Some("http") => UpstreamProtocol::Http1,
        Some("https") => UpstreamProtocol::Tls,
        Some("h2c") => UpstreamProtocol::H2c,
        _ => return Err(bad("has an unsupported scheme")),
    };
    let Some(authority) = uri.authority() else {
        return Err(bad("has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("must not contain user info"));
    }
    if authority.host().is_empty() {
        return Err(bad("has no host"));
    }
    if uri.path() != "/" {
        return Err(bad("has a path"));
    }
    if uri.query().is_some() {
        return Err(bad("has a query"));
    }
    let scheme = uri.scheme_str().unwrap_or("http");
    let uri: Uri = format!("{scheme}://{authority}").parse().map_err(|_| bad("is not a URL"))?;
    let tls = match protocol {
        UpstreamProtocol::Tls => Some(tls(ctx, section, &raw, authority.host())?),
        _ => {
            let stray = [("ca", raw.ca.is_some()), ("server_name", raw.server_name.is_some())]
                .into_iter()
                .chain([("client_cert", raw.client_cert.is_some()), ("client_key", raw.client_key.is_some())]);
            if let Some((key, _)) = stray.into_iter().find(|(_, set)| *set) {
                return Err(ctx.err(field(key), format!("is only used with an https:// upstream (this one is {url})")));
            }
            None
        }
    };
    Ok(UpstreamSettings {
        uri,
        protocol,
        tls,
        connect_timeout: positive(
            ctx,
            &field("connect_timeout"),
            raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        )?,
        response_timeout: positive(
            ctx,
            &field("response_timeout"),
            raw.response_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT),
        )?,
        pool_idle_timeout: raw.pool_idle_timeout.unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT),
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(DEFAULT_POOL_MAX_IDLE_PER_HOST),
        max_in_flight: nonzero(ctx, &field("max_in_flight"), raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT))?,
    })
}

fn tls(ctx: &Ctx<'_>, section: &str, raw: &raw::RawUpstream, host: &str) -> Result<UpstreamTls, ConfigError> {
    let field = |key: &str| format!("{section}.{key}");
    let roots = match &raw.ca {
        None => None,
        Some(path) => {
            let certs = load::read_certificates(Path::new(path)).map_err(|e| ctx.err(field("ca"), e.to_string()))?;
            let mut store = rustls::RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(certs.iter().cloned());
            if added == 0 {
                return Err(ctx.err(field("ca"), format!("{path}: no usable CA certificate in it")));
            }
            Some(Arc::from(certs))
        }
    };
    let (name_field, name) = match &raw.server_name {
        Some(name) => (field("server_name"), name.as_str()),
        // `host()` keeps an IPv6 literal's brackets.
        None => (field("url"), host.trim_start_matches('[').trim_end_matches(']')),
    };
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|_| ctx.err(name_field, format!("{name:?} is not a DNS name or IP address")))?;
    let client_identity = match (&raw.client_cert, &raw.client_key) {
        (None, None) => None,
        (Some(_), None) => return Err(ctx.err(field("client_key"), "is required with client_cert")),
        (None, Some(_)) => return Err(ctx.err(field("client_cert"), "is required with client_key")),
        (Some(cert), Some(key)) => {
            // Read and checked as the listener's pairs are: the key must be the leaf's.
            let (chain, key) = load::read_pair(Path::new(cert), Path::new(key)).map_err(|e| {
                let which = if e.is_about_key(Path::new(key)) { "client_key" } else { "client_cert" };
                ctx.err(field(which), e.to_string())
            })?;
            Some(ClientIdentity { chain, key })
        }
    };
    let written = WrittenTls {
        ca: raw.ca.clone(),
        server_name: raw.server_name.clone(),
        client_cert: raw.client_cert.clone(),
        client_key: raw.client_key.clone(),
    };
    Ok(UpstreamTls { roots, server_name, client_identity, written })
}

/// `upstreams`: each checked like `upstream`.
pub(super) fn named(
    ctx: &Ctx<'_>,
    raw: Option<BTreeMap<String, raw::RawUpstream>>,
) -> Result<Vec<(String, UpstreamSettings)>, ConfigError> {
    let mut problems = Problems::default();
    let mut out = Vec::new();
    for (name, settings) in raw.unwrap_or_default() {
        let section = format!("upstreams.{name}");
        if !is_label_name(&name) {
            problems.add(ctx.err(section, format!("the name {name:?} must match [A-Za-z0-9_.-]+")));
            continue;
        }
        if let Some(s) = problems.take(upstream(ctx, &section, settings)) {
            out.push((name, s));
        }
    }
    problems.finish()?;
    Ok(out)
}

/// Every route's `upstream` names one of `upstreams`; a route that names none needs the
/// default `upstream` (when the proxy runs at all).
pub(super) fn check_routes(
    ctx: &Ctx<'_>,
    routes: &[Route],
    named: &[(String, UpstreamSettings)],
    default_is_set: bool,
) -> Result<(), ConfigError> {
    let mut problems = Problems::default();
    for (i, route) in routes.iter().enumerate() {
        match &route.upstream {
            Some(name) if !named.iter().any(|(n, _)| n == name) => {
                let known: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
                let known = if known.is_empty() { "no upstreams are configured".to_owned() } else { known.join(", ") };
                problems.add(ctx.err(
                    format!("routes[{i}].upstream"),
                    format!("{name:?} is not a key of upstreams (known: {known})"),
                ));
            }
            None if !default_is_set => problems.add(ctx.err(
                format!("routes[{i}].upstream"),
                "is required: this route names no upstream and there is no default upstream.url",
            )),
            _ => {}
        }
    }
    problems.finish()
}
