//! Pure header edits on the way to the upstream and back.
//!
//! Order matters and is fixed by `proxy::Gateway`: hop-by-hop headers go first (so a name
//! listed in `Connection` can only remove what the client sent), then every identity header the
//! gateway may set — in any `-`/`_` spelling — is removed from the client's request on every
//! route, and only then are the gateway's own identity headers added.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::forwarded;
use crate::auth::{AuthError, Principal};
use crate::config::{Identity, IdentityValue};

/// RFC 9110 §7.6.1 connection-specific fields, plus the de-facto ones proxies also drop.
const HOP_BY_HOP_LEN: usize = 9;
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_LEN] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// Remove the fields named in `Connection` and the fixed hop-by-hop set (RFC 9110 §7.6.1:
/// a proxy MUST remove them before forwarding).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names: most requests carry none of them, most responses only
    // `Connection` (often `keep-alive`), and a field named in `Connection` can only be present
    // if `Connection` is. Only the names present are removed: each removal hashes the name.
    let mut present = [false; HOP_BY_HOP_LEN];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // Names listed in `Connection` beyond the fixed set; usually none, so nothing is allocated.
    // Read as bytes: a value with one non-ASCII byte still has its valid names honoured.
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|name| !HOP_BY_HOP.iter().any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(name)))
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    // `TE: trailers` alone survives (RFC 9113 §8.2.2 allows it on HTTP/2): gRPC servers want it.
    let trailers = present[TE_INDEX] && asks_for_trailers(headers);
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, present)| *present) {
        headers.remove(name);
    }
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

const TE_INDEX: usize = 3;

/// Some `TE` element is `trailers` (RFC 9110 §10.1.4; elements may carry parameters).
fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|element| element.split(|&b| b == b';').next().unwrap_or_default().trim_ascii())
        .any(|name| name.eq_ignore_ascii_case(b"trailers"))
}

/// RFC 9113 §8.2.3: the `cookie` fields an HTTP/2 client may send separately are joined with
/// "; " into one before they go to an HTTP/1.1 upstream.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else { return };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// RFC 9113 §8.2.3: to an HTTP/2 upstream each cookie-pair may go as its own field (better
/// header compression); `a=1; b=2` becomes `a=1` and `b=2`.
pub fn split_cookies(headers: &mut HeaderMap) {
    if !headers.get_all(COOKIE).iter().any(|v| v.as_bytes().windows(2).any(|w| w == b"; ")) {
        return;
    }
    let pairs: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| HeaderValue::from_bytes(pair).ok())
        .collect();
    headers.remove(COOKIE);
    for pair in pairs {
        headers.append(COOKIE, pair);
    }
}

/// `strip_hop_by_hop` for an upgrade the gateway tunnels (`proxy::upgrade`), on the request and
/// on its 101: everything goes as usual except `Upgrade` and the `upgrade` option of
/// `Connection`, which the next hop needs to switch protocols (RFC 9110 §7.8). No other name
/// the client listed in `Connection` survives: `Connection` is rewritten as just `upgrade`.
pub fn strip_hop_by_hop_keeping_upgrade(headers: &mut HeaderMap) {
    let upgrade: Vec<HeaderValue> = headers.get_all(UPGRADE).iter().cloned().collect();
    strip_hop_by_hop(headers);
    // An upgrade is HTTP/1.1 only, where `TE: trailers` is not forwarded either.
    headers.remove(TE);
    if upgrade.is_empty() {
        return;
    }
    for value in upgrade {
        headers.append(UPGRADE, value);
    }
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Lower-case names the gateway sets itself; incoming copies are removed in any spelling.
#[derive(Debug, Clone)]
pub struct IdentityNames(Vec<HeaderName>);

impl IdentityNames {
    pub fn new(identity: &Identity) -> IdentityNames {
        let mut names: Vec<HeaderName> = identity.headers.iter().map(|h| h.name.clone()).collect();
        names.extend(identity.claims_header.clone());
        IdentityNames(names)
    }

    /// The names, as configured (lower-case).
    pub fn names(&self) -> &[HeaderName] {
        &self.0
    }

    /// Whether `name` is one of ours once `_` is read as `-` (CGI-style frameworks treat
    /// `X_Auth_Subject` and `X-Auth-Subject` as the same variable).
    fn covers(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        self.0.iter().any(|ours| {
            let ours = ours.as_str().as_bytes();
            ours.len() == name.len() && ours.iter().zip(name).all(|(&a, &b)| a == if b == b'_' { b'-' } else { b })
        })
    }
}

/// Which client headers, besides copies of the identity headers, never reach the upstream
/// (see `forwarded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Untrusted {
    /// `X-Forwarded-*`, `Forwarded`, `X-Real-IP`: the peer is not a trusted proxy.
    pub forwarding: bool,
    /// `X-HTTP-Method-Override` and kin: some route matches by method.
    pub method_override: bool,
}

/// Remove every incoming header that could be mistaken for a gateway identity header, every
/// path-override header, and the forwarding and method-override headers `untrusted` names. One
/// pass over the names; nothing is allocated when there is nothing to remove.
pub fn strip_client(headers: &mut HeaderMap, names: &IdentityNames, untrusted: Untrusted) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            names.covers(n)
                || forwarded::is_path_override(n)
                || (untrusted.forwarding && forwarded::is_forwarding(n))
                || (untrusted.method_override && forwarded::is_method_override(n))
        })
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// A principal's identity headers, rendered once: a connection that sends the same token
/// again reuses them (see `proxy::Gateway`), so the hot path only clones shared values.
#[derive(Debug)]
pub struct IdentityValues {
    values: Vec<(HeaderName, HeaderValue)>,
    drop_authorization: bool,
}

impl IdentityValues {
    /// The identity headers for a verified principal. A claim value that cannot be a header
    /// value (CR, LF, other control characters) rejects the request rather than being copied.
    pub fn render(principal: &Principal, identity: &Identity) -> Result<IdentityValues, AuthError> {
        // Every value goes into one buffer: a few allocations for the whole set, and a request
        // that reuses it shares that one buffer.
        let mut text = Vec::with_capacity(256);
        let mut spans = Vec::with_capacity(identity.headers.len() + 1);
        for h in &identity.headers {
            let start = text.len();
            let mut put = |value: &str| text.extend_from_slice(value.as_bytes());
            let present = match &h.value {
                IdentityValue::Subject => principal.subject.as_deref().map(put).is_some(),
                IdentityValue::Scopes => {
                    for (i, scope) in principal.scopes.iter().enumerate() {
                        put(if i == 0 { "" } else { " " });
                        put(scope);
                    }
                    true
                }
                IdentityValue::ClientId => principal.client_id.as_deref().map(put).is_some(),
                IdentityValue::Issuer => {
                    put(&principal.issuer_id);
                    true
                }
                IdentityValue::Roles => {
                    for (i, role) in principal.roles.iter().enumerate() {
                        put(if i == 0 { "" } else { " " });
                        put(role);
                    }
                    true
                }
                IdentityValue::Claim(path) => path.get(&principal.claims).map(|v| put(&claim_text(v))).is_some(),
                // From the connection, set by the proxy (`proxy::ClientCertValues`), not the token.
                IdentityValue::ClientCertSubject | IdentityValue::ClientCertSha256 => false,
            };
            if present {
                spans.push((h.name.clone(), start..text.len()));
            }
        }
        if let Some(name) = &identity.claims_header {
            let start = text.len();
            let json = serde_json::to_vec(&principal.claims).unwrap_or_default();
            text.extend_from_slice(URL_SAFE_NO_PAD.encode(json).as_bytes());
            spans.push((name.clone(), start..text.len()));
        }
        let text = Bytes::from(text);
        let values = spans
            .into_iter()
            .map(|(name, span)| {
                let value = HeaderValue::from_maybe_shared(text.slice(span))
                    .map_err(|_| AuthError::InvalidToken("a claim cannot be sent as a header value"))?;
                Ok((name, value))
            })
            .collect::<Result<_, AuthError>>()?;
        Ok(IdentityValues { values, drop_authorization: !identity.forward_authorization })
    }

    /// Set the identity headers (after `strip_identity` removed the client's copies).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.values {
            headers.insert(name.clone(), value.clone());
        }
        if self.drop_authorization {
            headers.remove(AUTHORIZATION);
        }
    }
}

/// Strings as they are; an array of strings none of which holds a comma as its items joined by
/// `,` (an HTTP list, RFC 9110 §5.6.1); anything else as JSON text.
fn claim_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Array(items) if items.iter().all(|i| i.as_str().is_some_and(|s| !s.contains(','))) => {
            Cow::Owned(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        }
        other => Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdentityHeader;
    use serde_json::json;
    use std::sync::Arc;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn identity() -> Identity {
        Identity {
            headers: Identity::default_headers(),
            claims_header: Some(HeaderName::from_static("x-auth-claims")),
            forward_authorization: true,
        }
    }

    fn principal(claims: Value) -> Principal {
        let Value::Object(map) = claims else { unreachable!() };
        Principal::from_claims(0, Arc::from("https://idp"), map, &Default::default())
    }

    fn set_identity(headers: &mut HeaderMap, principal: &Principal, identity: &Identity) -> Result<(), AuthError> {
        IdentityValues::render(principal, identity).map(|values| values.apply(headers))
    }

    /// `TE: trailers` is the one hop-by-hop value forwarded (gRPC needs it); any other TE goes.
    #[test]
    fn te_trailers_alone_survives() {
        for (te, kept) in [
            ("trailers", true),
            ("Trailers", true),
            ("gzip, trailers;q=1", true),
            ("gzip", false),
            ("trailersx", false),
        ] {
            let mut h = map(&[("te", te), ("connection", "te")]);
            strip_hop_by_hop(&mut h);
            let expected: Vec<&str> = if kept { vec!["trailers"] } else { vec![] };
            let got: Vec<&str> = h.get_all(TE).iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(got, expected, "TE: {te}");
            assert!(h.get(CONNECTION).is_none());
        }
    }

    /// RFC 9113 §8.2.3: separate cookie fields become one for HTTP/1.1, and back for HTTP/2.
    #[test]
    fn cookies_are_joined_for_h1_and_split_for_h2() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2; c=3"), ("x", "y")]);
        join_cookies(&mut h);
        let got: Vec<&str> = h.get_all(COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(got, ["a=1; b=2; c=3"]);
        split_cookies(&mut h);
        let got: Vec<&str> = h.get_all(COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(got, ["a=1", "b=2", "c=3"]);
        assert_eq!(h["x"], "y");
        // One field: nothing to join; no "; " (RFC 6265's delimiter): nothing to split.
        for cookie in ["a=1", "a=1;b=2"] {
            let mut one = map(&[("cookie", cookie)]);
            join_cookies(&mut one);
            split_cookies(&mut one);
            let got: Vec<&str> = one.get_all(COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(got, [cookie]);
        }
    }

    /// The names the gateway sets: every identity header, then the claims header.
    #[test]
    fn identity_names_are_the_configured_ones() {
        let names = IdentityNames::new(&identity());
        let names: Vec<&str> = names.names().iter().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-auth-subject", "x-auth-scopes", "x-auth-client-id", "x-auth-issuer", "x-auth-claims"]);
    }

    /// Hop-by-hop fields and the fields named in Connection are removed.
    #[test]
    fn hop_by_hop() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    /// An upgrade keeps `Upgrade` and `Connection: upgrade`, and nothing else hop-by-hop: not
    /// the other names `Connection` lists (which could name an identity header), not
    /// `Keep-Alive`, `TE` or `Proxy-Authorization`.
    #[test]
    fn upgrade_keeps_only_upgrade() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade, X-Secret, x-auth-subject"),
            ("upgrade", "websocket"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-auth-subject", "spoof"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop_keeping_upgrade(&mut h);
        let mut left: Vec<_> = h.iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap())).collect();
        left.sort();
        assert_eq!(
            left,
            ["connection: upgrade", "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==", "upgrade: websocket", "x-kept: 1"]
        );

        // A 101 with hop-by-hop fields of its own.
        let mut h = map(&[("connection", "Upgrade, keep-alive"), ("upgrade", "WebSocket"), ("keep-alive", "5")]);
        strip_hop_by_hop_keeping_upgrade(&mut h);
        assert_eq!(
            (h.len(), h[CONNECTION].to_str().unwrap(), h[UPGRADE].to_str().unwrap()),
            (2, "upgrade", "WebSocket")
        );

        // Without `Upgrade` there is nothing to keep, `Connection` included.
        let mut h = map(&[("connection", "upgrade"), ("x-kept", "1")]);
        strip_hop_by_hop_keeping_upgrade(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    /// A `Connection` value with a non-ASCII byte still removes the valid names it lists.
    #[test]
    fn connection_with_non_ascii_byte() {
        let mut h = map(&[("x-secret", "1"), ("x-kept", "1")]);
        h.append(CONNECTION, HeaderValue::from_bytes(b"x-secret, caf\xe9").unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    /// Spoofed identity headers are removed in every dash/underscore spelling; others stay.
    #[test]
    fn spoofed_identity_removed() {
        let mut h = map(&[
            ("x-auth-subject", "admin"),
            ("x_auth_subject", "admin"),
            ("X_Auth-Scopes", "admin"),
            ("x-auth-claims", "e30"),
            ("x-auth-subjects", "kept"),
            ("x-other", "kept"),
        ]);
        strip_client(&mut h, &IdentityNames::new(&identity()), NONE);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["x-auth-subjects", "x-other"]);
    }

    /// A Connection-listed identity name cannot remove the header the gateway sets afterwards.
    #[test]
    fn connection_cannot_remove_gateway_identity() {
        let mut h = map(&[("connection", "x-auth-subject"), ("x-auth-subject", "spoof")]);
        strip_hop_by_hop(&mut h);
        strip_client(&mut h, &IdentityNames::new(&identity()), NONE);
        set_identity(&mut h, &principal(json!({"sub": "alice"})), &identity()).unwrap();
        assert_eq!(h["x-auth-subject"], "alice");
        assert!(h.get(CONNECTION).is_none());
    }

    /// Identity headers carry subject, scopes, client id, issuer and the claims as base64url JSON.
    #[test]
    fn identity_values() {
        let mut h = HeaderMap::new();
        let p = principal(json!({"sub": "alice", "scope": "a b", "azp": "cli"}));
        set_identity(&mut h, &p, &identity()).unwrap();
        assert_eq!(h["x-auth-subject"], "alice");
        assert_eq!(h["x-auth-scopes"], "a b");
        assert_eq!(h["x-auth-client-id"], "cli");
        assert_eq!(h["x-auth-issuer"], "https://idp");
        let claims = URL_SAFE_NO_PAD.decode(h["x-auth-claims"].as_bytes()).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&claims).unwrap()["sub"], "alice");
    }

    /// Claim values with CR, LF or control characters reject the request.
    #[test]
    fn control_characters_rejected() {
        for bad in ["alice\r\nX-Admin: 1", "a\nb", "a\u{0}b", "a\u{7f}"] {
            let mut h = HeaderMap::new();
            let r = set_identity(&mut h, &principal(json!({"sub": bad})), &identity());
            assert!(matches!(r, Err(AuthError::InvalidToken(_))), "{bad:?}");
        }
        let mut with_claim = identity();
        with_claim.headers.push(IdentityHeader {
            name: HeaderName::from_static("x-tenant"),
            value: IdentityValue::Claim(crate::config::ClaimPath::top("tenant")),
        });
        let mut h = HeaderMap::new();
        set_identity(&mut h, &principal(json!({"tenant": 42})), &with_claim).unwrap();
        assert_eq!(h["x-tenant"], "42");
    }

    /// Roles space-separated; nested claims by path; arrays of strings joined with `,` unless an
    /// item holds a comma (then JSON text, which cannot be misread as a list).
    #[test]
    fn roles_and_claim_paths() {
        let header = |name: &'static str, value| IdentityHeader { name: HeaderName::from_static(name), value };
        let path = |p: &str| IdentityValue::Claim(crate::config::ClaimPath::parse(p).unwrap());
        let identity = Identity {
            headers: vec![
                header("x-roles", IdentityValue::Roles),
                header("x-realm", path("realm_access.roles")),
                header("x-team", path(r"https://x\.example/team")),
                header("x-odd", path("odd")),
                header("x-missing", path("realm_access.missing")),
            ],
            claims_header: None,
            forward_authorization: true,
        };
        let claims = json!({
            "realm_access": {"roles": ["admin", "ops"]},
            "https://x.example/team": "blue",
            "odd": ["a,b", "c"],
        });
        let mut p = principal(claims);
        p.roles = vec!["admin".into(), "reader".into()];
        let mut h = HeaderMap::new();
        set_identity(&mut h, &p, &identity).unwrap();
        assert_eq!(h["x-roles"], "admin reader");
        assert_eq!(h["x-realm"], "admin,ops");
        assert_eq!(h["x-team"], "blue");
        assert_eq!(h["x-odd"], r#"["a,b","c"]"#);
        assert!(!h.contains_key("x-missing"));
        // No roles: an empty header, as for scopes.
        let mut h = HeaderMap::new();
        set_identity(&mut h, &principal(json!({})), &identity).unwrap();
        assert_eq!(h["x-roles"], "");
    }

    /// Authorization is forwarded unless configured otherwise.
    #[test]
    fn authorization_forwarding() {
        let mut no_auth = identity();
        no_auth.forward_authorization = false;
        let mut h = map(&[("authorization", "Bearer x")]);
        set_identity(&mut h, &principal(json!({})), &no_auth).unwrap();
        assert!(h.get(AUTHORIZATION).is_none());
        let mut h = map(&[("authorization", "Bearer x")]);
        set_identity(&mut h, &principal(json!({})), &identity()).unwrap();
        assert!(h.get(AUTHORIZATION).is_some());
    }

    /// Forwarding headers go unless the peer is trusted, method overrides when asked, path
    /// overrides always.
    #[test]
    fn untrusted_client_headers() {
        let sent = || {
            map(&[
                ("x-forwarded-for", "10.0.0.1"),
                ("X-Forwarded-Host", "evil.example"),
                ("forwarded", "for=1.2.3.4"),
                ("x-real-ip", "1.2.3.4"),
                ("x-http-method-override", "DELETE"),
                ("x-original-url", "/admin"),
                ("x-kept", "1"),
            ])
        };
        let names = IdentityNames::new(&identity());
        let left = |h: &HeaderMap| {
            let mut k: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
            k.sort();
            k
        };
        let mut h = sent();
        strip_client(&mut h, &names, Untrusted { forwarding: true, method_override: true });
        assert_eq!(left(&h), ["x-kept"]);
        let mut h = sent();
        strip_client(&mut h, &names, NONE);
        assert_eq!(
            left(&h),
            ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-http-method-override", "x-kept", "x-real-ip"]
        );
    }

    const NONE: Untrusted = Untrusted { forwarding: false, method_override: false };
}
