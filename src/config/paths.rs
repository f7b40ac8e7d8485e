//! Validation of what decides the trust boundary: `paths:`, route hosts and path prefixes, and
//! `trusted_proxies`. A prefix or host that could never equal a canonical request (`crate::canon`)
//! would silently never match, so it is an error here.

use ipnet::IpNet;

use super::raw::{RawEncodedSlashes, RawPaths};
use super::validate::{ConfigError, Ctx};
use super::PathSettings;

pub(super) fn paths(raw: Option<RawPaths>) -> PathSettings {
    let raw = raw.unwrap_or_default();
    PathSettings {
        keep_encoded_slashes: raw.encoded_slashes == Some(RawEncodedSlashes::Keep),
        case_insensitive: raw.case_insensitive.unwrap_or(false),
    }
}

/// A route's `path_prefix`, written as the decoded canonical path it must match: starts with `/`,
/// no `%`, `;`, `\`, `?`, `#`, whitespace or control characters, no `//` and no dot-segment.
pub(super) fn path_prefix(ctx: &Ctx<'_>, field: &str, prefix: &str) -> Result<(), ConfigError> {
    let problem = if !prefix.starts_with('/') {
        Some("must start with '/'")
    } else if prefix.contains(['%', ';', '\\', '?', '#'])
        || prefix.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        Some(
            "must not contain '%', ';', '\\', '?', '#', whitespace or control characters (it is compared \
             with the decoded path, without its ;parameters; write characters as they are, e.g. /café)",
        )
    } else if prefix.contains("//") {
        Some("must not contain '//' (repeated slashes are merged before matching)")
    } else if prefix.split('/').any(|s| s == "." || s == "..") {
        Some("must not contain a '.' or '..' segment (requests with them are refused)")
    } else {
        None
    };
    match problem {
        Some(p) => Err(ctx.err(field, format!("{prefix:?} {p}"))),
        None => Ok(()),
    }
}

/// A route's `host`: a host name or IP literal, optionally with a port the request must be for.
pub(super) fn route_host(ctx: &Ctx<'_>, field: &str, host: &str) -> Result<(String, Option<u16>), ConfigError> {
    let canon = crate::canon::host(host.as_bytes()).map_err(|_| {
        ctx.err(
            field,
            format!(
                "{host:?} is not a valid host; expected a host name such as api.example.com, optionally with :port"
            ),
        )
    })?;
    Ok((canon.name().to_owned(), canon.port))
}

/// `trusted_proxies`: CIDRs (`10.0.0.0/8`) or single addresses.
pub(super) fn trusted_proxies(ctx: &Ctx<'_>, raw: Option<Vec<String>>) -> Result<Vec<IpNet>, ConfigError> {
    networks(ctx, "trusted_proxies", raw.unwrap_or_default())
}

/// A list of CIDRs (`10.0.0.0/8`) or single addresses at `field`.
pub(super) fn networks(ctx: &Ctx<'_>, field: &str, raw: Vec<String>) -> Result<Vec<IpNet>, ConfigError> {
    let mut out = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let entry = entry.trim();
        let net = entry.parse::<IpNet>().or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
            ctx.err(
                format!("{field}[{i}]"),
                format!("{entry:?} is not an IP network; expected a CIDR such as 10.0.0.0/8 or an address such as 10.0.0.7"),
            )
        })?;
        out.push(net.trunc());
    }
    Ok(out)
}
