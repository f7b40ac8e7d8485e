//! Canonical request path and host: the one reading of the request that routes are chosen from
//! and that the upstream receives. Pure; see `path` and `host` for exactly what is rewritten and
//! what is refused.

pub mod host;
pub mod path;

use http::header::HOST;
use http::{HeaderMap, Uri, Version};

pub use host::{host, CanonHost};
pub use path::{path, CanonPath, PathOptions};

/// The host the request is for: its `Host` header, or the authority of an absolute-form target
/// or HTTP/2 `:authority`. `Ok(None)` only for HTTP/1.0 requests that name no host.
///
/// Refused: no host in an HTTP/1.1 or HTTP/2 request (RFC 9112 §3.2: a server MUST respond 400
/// to an HTTP/1.1 request that lacks a Host header), more than one `Host` (same section), a
/// `Host` that names another host than the target's authority (RFC 9112 §3.2.2 would have us
/// ignore `Host`; an upstream might not), and user information in the authority (RFC 9110 §4.2.4).
pub fn requested_host<'a>(
    version: Version,
    headers: &'a HeaderMap,
    uri: &'a Uri,
) -> Result<Option<CanonHost<'a>>, &'static str> {
    let mut values = headers.get_all(HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err("more than one Host header");
    }
    let header = header.map(|v| host(v.as_bytes())).transpose()?;
    let Some(authority) = uri.authority() else {
        return match header {
            Some(h) => Ok(Some(h)),
            None if version == Version::HTTP_10 || version == Version::HTTP_09 => Ok(None),
            None => Err("the request names no host"),
        };
    };
    if authority.as_str().contains('@') {
        return Err("the request target carries user information");
    }
    let target = host(authority.as_str().as_bytes())?;
    if let Some(header) = header {
        let default = if uri.scheme_str() == Some("https") { 443 } else { 80 };
        let same = header.name() == target.name() && header.port.unwrap_or(default) == target.port.unwrap_or(default);
        if !same {
            return Err("Host does not match the request target");
        }
    }
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ask(version: Version, hosts: &[&str], target: &str) -> Result<Option<String>, &'static str> {
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(HOST, HeaderValue::from_str(h).unwrap());
        }
        let uri: Uri = target.parse().unwrap();
        requested_host(version, &headers, &uri).map(|h| h.map(|h| h.as_str().to_owned()))
    }

    /// Host comes from the header, or from the target's authority when there is one.
    #[test]
    fn host_sources() {
        assert_eq!(ask(Version::HTTP_11, &["API.example.com."], "/x"), Ok(Some("api.example.com".into())));
        assert_eq!(ask(Version::HTTP_2, &[], "http://api.example.com:8080/x"), Ok(Some("api.example.com:8080".into())));
        assert_eq!(ask(Version::HTTP_11, &["a.example:80"], "http://A.example/x"), Ok(Some("a.example".into())));
        assert_eq!(ask(Version::HTTP_10, &[], "/x"), Ok(None));
    }

    /// Missing, duplicated or contradicting hosts are refused.
    #[test]
    fn host_refusals() {
        assert_eq!(ask(Version::HTTP_11, &[], "/x"), Err("the request names no host"));
        assert_eq!(ask(Version::HTTP_2, &[], "/x"), Err("the request names no host"));
        assert_eq!(ask(Version::HTTP_11, &["a", "a"], "/x"), Err("more than one Host header"));
        assert_eq!(
            ask(Version::HTTP_11, &["public.example"], "http://admin.example/x"),
            Err("Host does not match the request target")
        );
        assert_eq!(
            ask(Version::HTTP_11, &["a.example:8080"], "http://a.example/x"),
            Err("Host does not match the request target")
        );
        assert_eq!(ask(Version::HTTP_2, &["b"], "http://a/x"), Err("Host does not match the request target"));
        assert_eq!(ask(Version::HTTP_11, &[], "http://u@a/x"), Err("the request target carries user information"));
        assert!(ask(Version::HTTP_11, &["a b"], "/x").is_err());
        assert!(ask(Version::HTTP_11, &[""], "/x").is_err());
    }
}
