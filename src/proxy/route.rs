//! Route matching: (host, path, method) → the first configured route that matches. Pure.
//!
//! Deny by default: no match means no forwarding. Paths with dot-segments (literal or
//! percent-encoded) are refused before matching, since an upstream that normalises
//! `/public/../admin` would otherwise serve a route the gateway never authorized.

use http::Method;

use crate::config::{Route, RouteAuth};

/// A route prepared for matching, plus what the response path needs pre-built.
#[derive(Debug)]
pub struct CompiledRoute {
    /// Position in the table (and in `proxy::State::route_metrics`).
    pub index: usize,
    pub route: Route,
    /// The `scope` attribute of an `insufficient_scope` challenge, pre-quoted.
    pub challenge_scope: Option<String>,
}

#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> RouteTable {
        let routes = routes
            .iter()
            .enumerate()
            .map(|(index, route)| {
                let challenge_scope = match &route.auth {
                    RouteAuth::Required(p) if !p.scopes.is_empty() => Some(crate::respond::quote(&p.scopes.join(" "))),
                    _ => None,
                };
                CompiledRoute { index, route: route.clone(), challenge_scope }
            })
            .collect();
        RouteTable { routes }
    }

    /// First route whose host, path prefix and method all match. `host` may carry a port.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Option<&CompiledRoute> {
        let host = host.map(strip_port);
        self.routes.iter().find(|c| {
            let r = &c.route;
            r.host.as_deref().is_none_or(|want| host.is_some_and(|h| h.eq_ignore_ascii_case(want)))
                && prefix_matches(&r.path_prefix, path)
                && r.methods.as_ref().is_none_or(|m| m.contains(method))
        })
    }

    pub fn routes(&self) -> impl Iterator<Item = &CompiledRoute> {
        self.routes.iter()
    }
}

/// `/api` matches `/api`, `/api/…` but not `/apix`; a prefix ending in `/` matches as written.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// True when a path segment is `.` or `..`, literally or percent-encoded (`%2e`), or when the
/// path hides a separator (`%2f`, `%5c`, `\`) that an upstream might decode into one.
pub fn has_dot_segment(path: &str) -> bool {
    let bytes = path.as_bytes();
    // The common path has neither dots nor escapes nor backslashes: one scan, no allocation.
    if !bytes.iter().any(|&b| matches!(b, b'.' | b'%' | b'\\')) {
        return false;
    }
    if bytes.contains(&b'\\') || has_escape(bytes, b'2', b'f') || has_escape(bytes, b'5', b'c') {
        return true;
    }
    bytes.split(|&b| b == b'/').any(is_dot_segment)
}

/// `%` followed by `hi` and `lo` (hex digits, any case): `%2f` is an encoded slash, `%5c` a backslash.
fn has_escape(bytes: &[u8], hi: u8, lo: u8) -> bool {
    bytes.windows(3).any(|w| w[0] == b'%' && w[1] == hi && w[2].eq_ignore_ascii_case(&lo))
}

/// A segment made of one or two dots, each written `.` or `%2e` (any case).
fn is_dot_segment(segment: &[u8]) -> bool {
    let (mut i, mut dots) = (0, 0);
    while i < segment.len() {
        if segment[i] == b'.' {
            i += 1;
        } else if segment[i..].len() >= 3
            && segment[i] == b'%'
            && segment[i + 1] == b'2'
            && segment[i + 2].eq_ignore_ascii_case(&b'e')
        {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;

    fn route(id: &str, host: Option<&str>, prefix: &str, methods: Option<Vec<Method>>) -> Route {
        Route {
            id: id.into(),
            host: host.map(str::to_owned),
            path_prefix: prefix.into(),
            methods,
            auth: RouteAuth::Required(Policy::default()),
        }
    }

    fn id<'a>(t: &'a RouteTable, host: Option<&str>, path: &str, m: Method) -> Option<&'a str> {
        t.find(host, path, &m).map(|c| c.route.id.as_str())
    }

    /// First match wins; host, prefix and method must all match; no match is None.
    #[test]
    fn first_match_wins() {
        let t = RouteTable::new(&[
            route("a-get", Some("a.example"), "/api", Some(vec![Method::GET])),
            route("api", None, "/api", None),
            route("root", None, "/", None),
        ]);
        assert_eq!(id(&t, Some("A.example:8080"), "/api/x", Method::GET), Some("a-get"));
        assert_eq!(id(&t, Some("a.example"), "/api/x", Method::POST), Some("api"));
        assert_eq!(id(&t, Some("b.example"), "/api", Method::GET), Some("api"));
        assert_eq!(id(&t, None, "/apix", Method::GET), Some("root"));
        let t = RouteTable::new(&[route("api", None, "/api", None)]);
        assert_eq!(id(&t, None, "/other", Method::GET), None);
    }

    /// Prefixes match at segment boundaries unless they end with a slash.
    #[test]
    fn prefix_boundaries() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apiv1"));
        assert!(prefix_matches("/api/", "/api/v1"));
        assert!(!prefix_matches("/api/", "/api"));
        assert!(prefix_matches("/", "/anything"));
    }

    /// Dot segments, encoded or not, and encoded separators are detected.
    #[test]
    fn dot_segments() {
        for bad in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/a/.%2E/b",
            "/./x",
            "/a%2Fb",
            "/a\\b",
            "/..",
            "/a/%2E%2E",
            "/x%5C",
        ] {
            assert!(has_dot_segment(bad), "{bad}");
        }
        for ok in ["/", "/a/b", "/a..b/c", "/.well-known/x", "/a/...", "/a%20b", "/a/.%2e%2e", "/a%2", "/%"] {
            assert!(!has_dot_segment(ok), "{ok}");
        }
    }

    /// Host matching ignores the port and case; IPv6 literals keep their brackets.
    #[test]
    fn host_ports() {
        assert_eq!(strip_port("a.example:80"), "a.example");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.example"), "a.example");
    }
}
