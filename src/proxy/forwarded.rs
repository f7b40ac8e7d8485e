//! What the upstream is told about the client, and which client headers could tell it otherwise.
//!
//! By default tokengate is the first trusted hop: `X-Forwarded-*`, `Forwarded` and `X-Real-IP`
//! from the client are dropped and the gateway writes its own `X-Forwarded-For/-Proto/-Host`, so
//! a framework that trusts the first value gets the real client and the canonical host. Only a
//! peer in `trusted_proxies` keeps its chain. Headers that make frameworks serve another path
//! (`X-Original-URL`, `X-Rewrite-URL`) are always dropped: the route was decided on the path.
//! Method-override headers are dropped when any route matches by method: a route chosen for
//! POST must not be served as DELETE.

use std::net::IpAddr;

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether the connection's peer may pass on forwarding headers.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&peer))
}

/// Client-sent headers that describe the client or the hop: dropped unless the peer is trusted.
pub fn is_forwarding(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-forwarded-") || name == "forwarded" || name == "x-real-ip"
}

/// Headers some frameworks read in place of the request's path (Symfony, IIS URL Rewrite).
pub fn is_path_override(name: &HeaderName) -> bool {
    matches!(name.as_str(), "x-original-url" | "x-rewrite-url")
}

/// Headers that frameworks (Rails, Laravel, Express method-override, Spring's filter) read in
/// place of the request's method.
pub fn is_method_override(name: &HeaderName) -> bool {
    matches!(name.as_str(), "x-http-method-override" | "x-http-method" | "x-method-override")
}

/// Write this hop's `X-Forwarded-For`, `-Proto` and `-Host`. From an untrusted peer the client's
/// copies are already gone and ours are the only values; a trusted peer's `X-Forwarded-For`
/// chain gets its address appended, and its `-Proto` and `-Host` are kept.
pub fn add(headers: &mut HeaderMap, client_ip: &HeaderValue, proto: &HeaderValue, host: Option<&HeaderValue>) {
    append_list(headers, &X_FORWARDED_FOR, client_ip);
    if let Entry::Vacant(v) = headers.entry(&X_FORWARDED_PROTO) {
        v.insert(proto.clone());
    }
    if let Some(host) = host {
        if let Entry::Vacant(v) = headers.entry(&X_FORWARDED_HOST) {
            v.insert(host.clone());
        }
    }
}

fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    // One lookup (one hash of the name) whether the header is there or not.
    let mut entry = match headers.entry(name) {
        Entry::Vacant(vacant) => {
            vacant.insert(value.clone());
            return;
        }
        Entry::Occupied(entry) => entry,
    };
    let mut joined = Vec::new();
    for existing in entry.iter() {
        joined.extend_from_slice(existing.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        entry.insert(v);
    }
}

/// `query` (or a form body) without its `access_token` parameters, in any spelling of the name;
/// `None` when it has none. The other parameters keep their bytes.
pub fn without_access_token(query: &[u8]) -> Option<Vec<u8>> {
    let is_token = |pair: &[u8]| {
        let name = pair.split(|&b| b == b'=').next().unwrap_or(pair);
        // `access_token` is 12 bytes; escapes only make a spelling longer.
        name.len() >= 12 && form_urlencoded::parse(name).next().is_some_and(|(k, _)| k == "access_token")
    };
    let pairs = || query.split(|&b| b == b'&');
    if !pairs().any(is_token) {
        return None;
    }
    let mut out = Vec::with_capacity(query.len());
    for pair in pairs().filter(|p| !p.is_empty() && !is_token(p)) {
        if !out.is_empty() {
            out.push(b'&');
        }
        out.extend_from_slice(pair);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    /// Trusted peers are matched by network, IPv4-mapped IPv6 included.
    #[test]
    fn trust() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("fd00::1".parse().unwrap(), &nets));
        assert!(!is_trusted("11.0.0.1".parse().unwrap(), &nets));
        assert!(!is_trusted("127.0.0.1".parse().unwrap(), &[]));
    }

    /// Forwarding, path-override and method-override names are recognised exactly.
    #[test]
    fn names() {
        let n = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap();
        for f in
            ["x-forwarded-for", "X-Forwarded-Host", "x-forwarded-proto", "x-forwarded-port", "forwarded", "x-real-ip"]
        {
            assert!(is_forwarding(&n(f)), "{f}");
        }
        assert!(!is_forwarding(&n("x-forwarded")));
        assert!(is_path_override(&n("X-Original-URL")) && is_path_override(&n("x-rewrite-url")));
        assert!(is_method_override(&n("X-HTTP-Method-Override")) && is_method_override(&n("x-http-method")));
        assert!(!is_method_override(&n("x-method")));
    }

    /// Our values are set; a trusted chain gets our hop appended and keeps its proto and host.
    #[test]
    fn add_values() {
        let mut h = HeaderMap::new();
        add(&mut h, &v("127.0.0.1"), &v("http"), Some(&v("api.example")));
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example");
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, v("203.0.113.9"));
        h.append(&X_FORWARDED_FOR, v("10.0.0.2"));
        h.insert(&X_FORWARDED_PROTO, v("https"));
        h.insert(&X_FORWARDED_HOST, v("public.example"));
        add(&mut h, &v("10.0.0.1"), &v("http"), Some(&v("api.example")));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.2, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "public.example");
    }

    /// `access_token` goes in every spelling; other parameters keep their bytes and order.
    #[test]
    fn access_token_removed() {
        let f = |q: &str| without_access_token(q.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(f("a=1&b=%20"), None);
        assert_eq!(f("access_token=x"), Some(String::new()));
        assert_eq!(f("a=1&access_token=x&b=2"), Some("a=1&b=2".into()));
        assert_eq!(f("access%5Ftoken=x&a=%41"), Some("a=%41".into()));
        assert_eq!(f("access_token&a"), Some("a".into()));
        assert_eq!(f("a=access_token"), None);
        assert_eq!(f("access_tokens=1"), None);
    }
}
