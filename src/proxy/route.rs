//! Route matching: (host, path, method) → the first configured route that matches. Pure.
//!
//! Deny by default: no match means no forwarding. Routes are matched against the canonical
//! request (`crate::canon`): the host without case, trailing dot or (unless the route names
//! one) port, and every reading upstream frameworks may take of the path. A path whose
//! `;parameters` or kept encoded slashes make frameworks disagree (`/a;x/b` is `/a/b` to Tomcat,
//! not to Go) must satisfy every route they could serve it as.

use std::sync::Arc;

use http::Method;

use crate::canon::{CanonHost, CanonPath};
use crate::config::{Policy, Route, RouteAuth};

/// The port a request that names none is for (the proxy listener speaks cleartext HTTP).
const DEFAULT_PORT: u16 = 80;

/// A route prepared for matching, plus what the response path needs pre-built.
#[derive(Debug)]
pub struct CompiledRoute {
    /// Position in the table (and in `proxy::State::route_metrics`).
    pub index: usize,
    /// The route's id, shared with each access-log line that names it.
    pub id: Arc<str>,
    pub route: Route,
    /// The `scope` attribute of an `insufficient_scope` challenge, pre-quoted.
    pub challenge_scope: Option<String>,
}

/// `CanonPath` has at most five readings (parameters kept, or removed up to the next separator
/// or the next literal slash × encoded separators as separators or not, where distinct).
const MAX_READINGS: usize = 5;

/// The routes some reading of a request's path chooses, distinct; `primary` is the route the
/// request is named after (metrics, logs). A request is admitted only if it satisfies all of them.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'s> {
    primary: &'s CompiledRoute,
    others: [Option<&'s CompiledRoute>; MAX_READINGS - 1],
}

impl<'s> Candidates<'s> {
    /// The route of the strict reading (Tomcat's and Spring's).
    pub fn primary(&self) -> &'s CompiledRoute {
        self.primary
    }

    /// Every candidate, `primary` first.
    pub fn iter(&self) -> impl Iterator<Item = &'s CompiledRoute> + '_ {
        std::iter::once(self.primary).chain(self.others.iter().flatten().copied())
    }

    /// The candidates that require a token, with their policies, in order.
    pub fn required(&self) -> impl Iterator<Item = (&'s CompiledRoute, &'s Policy)> + '_ {
        self.iter().filter_map(|r| match &r.route.auth {
            RouteAuth::Required(policy) => Some((r, policy)),
            RouteAuth::Public => None,
        })
    }
}

#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    /// Some route matches by method: method-override headers must not reach the upstream.
    pub matches_methods: bool,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> RouteTable {
        let routes: Vec<CompiledRoute> = routes
            .iter()
            .enumerate()
            .map(|(index, route)| {
                let challenge_scope = match &route.auth {
                    RouteAuth::Required(p) if !p.scopes.is_empty() => Some(crate::respond::quote(&p.scopes.join(" "))),
                    _ => None,
                };
                CompiledRoute { index, id: Arc::from(route.id.as_str()), route: route.clone(), challenge_scope }
            })
            .collect();
        let matches_methods = routes.iter().any(|r| r.route.methods.is_some());
        RouteTable { routes, matches_methods }
    }

    /// The routes a request may be served as: for each reading of its path (`CanonPath::readings`)
    /// the first route whose host, path prefix and method match. `None` when some reading
    /// matches no route: an upstream could serve it as something the table never allowed.
    pub fn find(&self, host: Option<&CanonHost<'_>>, path: &CanonPath<'_>, method: &Method) -> Option<Candidates<'_>> {
        let primary = self.find_reading(host, path.strict(), method)?;
        let mut candidates = Candidates { primary, others: [None; MAX_READINGS - 1] };
        for (i, reading) in path.readings().skip(1).enumerate() {
            let route = self.find_reading(host, reading, method)?;
            if !candidates.iter().any(|c| c.index == route.index) {
                // A distinct route needs a slot; `CanonPath` never has more readings than there
                // are slots, but if it ever did, refuse rather than admit on an unchecked route.
                *candidates.others.get_mut(i)? = Some(route);
            }
        }
        Some(candidates)
    }

    /// First route for one decoded reading of a path (`CanonPath::strict` or `literal`, or an
    /// upstream framework's reading in tests): `;` ends a prefix's last segment.
    pub fn find_reading(&self, host: Option<&CanonHost<'_>>, path: &[u8], method: &Method) -> Option<&CompiledRoute> {
        self.routes.iter().find(|c| {
            let r = &c.route;
            host_matches(r, host)
                && prefix_matches(r.path_prefix.as_bytes(), path, r.case_insensitive)
                && r.methods.as_ref().is_none_or(|m| m.contains(method))
        })
    }

    pub fn routes(&self) -> impl Iterator<Item = &CompiledRoute> {
        self.routes.iter()
    }
}

/// Both sides are canonical (lower-case, no trailing dot); the port counts only when the route
/// names one.
fn host_matches(route: &Route, host: Option<&CanonHost<'_>>) -> bool {
    let Some(want) = &route.host else { return true };
    host.is_some_and(|h| h.name() == want && route.port.is_none_or(|p| h.port.unwrap_or(DEFAULT_PORT) == p))
}

/// `/api` matches `/api`, `/api/…` and `/api;v=1` but not `/apix`; a prefix ending in `/`
/// matches as written.
fn prefix_matches(prefix: &[u8], path: &[u8], case_insensitive: bool) -> bool {
    if path.len() < prefix.len() {
        return false;
    }
    let (head, rest) = path.split_at(prefix.len());
    let same = if case_insensitive { head.eq_ignore_ascii_case(prefix) } else { head == prefix };
    same && (prefix.ends_with(b"/") || rest.is_empty() || rest[0] == b'/' || rest[0] == b';')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::{self, PathOptions};
    use crate::config::Policy;

    fn route(id: &str, host: Option<&str>, prefix: &str, methods: Option<Vec<Method>>) -> Route {
        Route {
            id: id.into(),
            host: host.map(str::to_owned),
            port: None,
            path_prefix: prefix.into(),
            case_insensitive: false,
            methods,
            auth: RouteAuth::Required(Policy::default()),
            upstream: None,
        }
    }

    /// Every candidate's id, primary first.
    fn find<'a>(t: &'a RouteTable, host: Option<&str>, path: &str, m: Method) -> Option<Vec<&'a str>> {
        let host = host.map(|h| canon::host(h.as_bytes()).unwrap());
        let path = canon::path(path, &PathOptions { keep_encoded_slashes: true }).unwrap();
        t.find(host.as_ref(), &path, &m).map(|c| c.iter().map(|r| r.route.id.as_str()).collect())
    }

    /// The single route a path with one reading gets.
    fn id<'a>(t: &'a RouteTable, host: Option<&str>, path: &str, m: Method) -> Option<&'a str> {
        let ids = find(t, host, path, m)?;
        assert_eq!(ids.len(), 1, "{path}: {ids:?}");
        Some(ids[0])
    }

    /// First match wins; host, prefix and method must all match; no match is None.
    #[test]
    fn first_match_wins() {
        let t = RouteTable::new(&[
            route("a-get", Some("a.example"), "/api", Some(vec![Method::GET])),
            route("api", None, "/api", None),
            route("root", None, "/", None),
        ]);
        assert!(t.matches_methods);
        assert_eq!(id(&t, Some("A.example:8080"), "/api/x", Method::GET), Some("a-get"));
        assert_eq!(id(&t, Some("a.example."), "/api/x", Method::GET), Some("a-get"));
        assert_eq!(id(&t, Some("a.example"), "/api/x", Method::POST), Some("api"));
        assert_eq!(id(&t, Some("b.example"), "/api", Method::GET), Some("api"));
        assert_eq!(id(&t, None, "/apix", Method::GET), Some("root"));
        let t = RouteTable::new(&[route("api", None, "/api", None)]);
        assert!(!t.matches_methods);
        assert_eq!(id(&t, None, "/other", Method::GET), None);
    }

    /// A route that names a port matches only that port; a request without one is for port 80.
    #[test]
    fn host_ports() {
        let mut admin = route("admin", Some("a.example"), "/", None);
        admin.port = Some(8443);
        let mut plain = route("plain", Some("a.example"), "/", None);
        plain.port = Some(80);
        let t = RouteTable::new(&[admin, plain]);
        assert_eq!(id(&t, Some("a.example:8443"), "/", Method::GET), Some("admin"));
        assert_eq!(id(&t, Some("a.example"), "/", Method::GET), Some("plain"));
        assert_eq!(id(&t, Some("a.example:8080"), "/", Method::GET), None);
        assert_eq!(id(&t, None, "/", Method::GET), None);
    }

    /// Prefixes match at segment boundaries (`/` or `;`) unless they end with a slash.
    #[test]
    fn prefix_boundaries() {
        let m = |p: &str, path: &str| prefix_matches(p.as_bytes(), path.as_bytes(), false);
        assert!(m("/api", "/api"));
        assert!(m("/api", "/api/v1"));
        assert!(m("/api", "/api;v=1"));
        assert!(!m("/api", "/apiv1"));
        assert!(m("/api/", "/api/v1"));
        assert!(!m("/api/", "/api"));
        assert!(m("/", "/anything"));
        assert!(!m("/API", "/api"));
        assert!(prefix_matches(b"/API", b"/api/x", true));
        assert!(!prefix_matches(b"/API", b"/apix", true));
    }

    /// Spellings of `/admin` are matched as `/admin`; a path that frameworks read as different
    /// routes gets all of them, and none when one reading has no route.
    #[test]
    fn canonical_spellings() {
        let t = RouteTable::new(&[route("admin", None, "/admin", None), route("root", None, "/", None)]);
        for p in ["/%61dmin", "//admin", "/admin;x", "/admin;x/y", "/adm%69n/"] {
            assert_eq!(id(&t, None, p, Method::GET), Some("admin"), "{p}");
        }
        for p in ["/adminx", "/x/admin", "/admin%20"] {
            assert_eq!(id(&t, None, p, Method::GET), Some("root"), "{p}");
        }
        // Go 1.22's ServeMux reads `/admin%2Fx` as one segment, so it is also `/`'s.
        assert_eq!(find(&t, None, "/admin%2Fx", Method::GET), Some(vec!["admin", "root"]));
        let t = RouteTable::new(&[route("ab", None, "/a/b", None), route("root", None, "/", None)]);
        assert_eq!(find(&t, None, "/a;x/b", Method::GET), Some(vec!["ab", "root"]));
        assert_eq!(id(&t, None, "/a/b;x", Method::GET), Some("ab"));
        let t = RouteTable::new(&[route("ab", None, "/a/b", None)]);
        assert_eq!(find(&t, None, "/a;x/b", Method::GET), None);
    }
}
