use super::*;

fn ask(method: &str, target: &str, headers: &[(&str, &str)]) -> (Method, Uri, HeaderMap) {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    (method.parse().unwrap(), target.parse().unwrap(), map)
}

fn described(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<(Door, Method, Option<String>, String), Option<&'static str>> {
    let (m, u, h) = ask(method, target, headers);
    describe(&m, &u, &h).map(|o| (o.door, o.method, o.host.map(str::to_owned), o.target.to_owned()))
}

/// nginx `auth_request` with our snippet: X-Original-URI, X-Original-Method, X-Forwarded-Host;
/// the subrequest's own Host and method are not the original's.
#[test]
fn nginx_snippet() {
    let got = described(
        "GET",
        "/verify",
        &[
            ("host", "tokengate"),
            ("x-original-uri", "/api/orders?id=7"),
            ("x-original-method", "DELETE"),
            ("x-forwarded-host", "shop.example.com"),
        ],
    );
    assert_eq!(
        got,
        Ok((Door::AuthRequest, Method::DELETE, Some("shop.example.com".into()), "/api/orders?id=7".into()))
    );
}

/// ingress-nginx `auth-url`: X-Original-URL carries scheme, host, path and query.
#[test]
fn ingress_nginx() {
    let headers = [
        ("host", "tokengate.auth.svc"),
        ("x-original-url", "https://Shop.example.com:8443/a/b?c=d"),
        ("x-original-method", "POST"),
    ];
    let got = described("GET", "/verify", &headers);
    assert_eq!(got, Ok((Door::AuthRequest, Method::POST, Some("Shop.example.com:8443".into()), "/a/b?c=d".into())));
    let got =
        described("GET", "/verify", &[("x-original-url", "https://shop.example.com?x"), ("x-original-method", "GET")]);
    assert_eq!(got, Err(Some("X-Original-URL is not an absolute http(s) URL")));
    for bad in ["/a/b", "ftp://h/a", "https:///a", "https://h"] {
        let got = described("GET", "/verify", &[("x-original-url", bad), ("x-original-method", "GET")]);
        assert_eq!(got, Err(Some("X-Original-URL is not an absolute http(s) URL")), "{bad}");
    }
}

/// Traefik ForwardAuth: X-Forwarded-Method, -Host, -Uri.
#[test]
fn traefik() {
    let headers = [
        ("x-forwarded-method", "PUT"),
        ("x-forwarded-host", "api.example.com"),
        ("x-forwarded-uri", "/v1/x"),
        ("x-forwarded-proto", "https"),
    ];
    let got = described("GET", "/verify", &headers);
    assert_eq!(got, Ok((Door::ForwardAuth, Method::PUT, Some("api.example.com".into()), "/v1/x".into())));
}

/// Envoy's HTTP ext_authz: the original path after the prefix; method and Host are the request's own.
#[test]
fn envoy_http() {
    let got = described("PATCH", "/ext-authz/api/x?y=1", &[("host", "api.example.com")]);
    assert_eq!(got, Ok((Door::ExtAuthzHttp, Method::PATCH, Some("api.example.com".into()), "/api/x?y=1".into())));
    assert_eq!(described("GET", "/ext-authz/", &[]).unwrap().3, "/");
    assert_eq!(described("GET", "/ext-authz", &[]), Err(Some("no original path after /ext-authz")));
    assert_eq!(described("GET", "/ext-authzz/a", &[]), Err(None));
}

/// Fail closed on a missing, doubled or malformed description; other paths are no door at all.
#[test]
fn refusals() {
    assert_eq!(described("GET", "/", &[]), Err(None));
    assert_eq!(described("GET", "/verify/x", &[]), Err(None));
    let no_method = described("GET", "/verify", &[("x-original-uri", "/a")]);
    assert_eq!(no_method, Err(Some("the original method is not described (X-Original-Method)")));
    let no_method = described("GET", "/verify", &[("x-forwarded-uri", "/a")]);
    assert_eq!(no_method, Err(Some("the original method is not described (X-Forwarded-Method)")));
    let nothing = described("GET", "/verify", &[("x-original-method", "GET")]);
    assert_eq!(
        nothing,
        Err(Some("the original request is not described (X-Original-URI, X-Original-URL or X-Forwarded-Uri)"))
    );
    let twice = described(
        "GET",
        "/verify",
        &[("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-original-uri", "/admin")],
    );
    assert_eq!(twice, Err(Some("a header describing the original request appears more than once")));
    let bad_method = described("GET", "/verify", &[("x-original-method", "G T"), ("x-original-uri", "/a")]);
    assert_eq!(bad_method, Err(Some("the original method is not a method")));
    let (m, u, mut h) = ask("GET", "/verify", &[("x-original-method", "GET")]);
    h.insert("x-original-uri", HeaderValue::from_bytes(b"/caf\xe9").unwrap());
    assert_eq!(describe(&m, &u, &h), Err(Some("a header describing the original request is not visible ASCII")));
}

#[test]
fn urls() {
    assert_eq!(split_url("http://h/p"), Some(("h", "/p")));
    assert_eq!(split_url("https://h:1/?q"), Some(("h:1", "/?q")));
    assert_eq!(split_url("https://h:1/p?q"), Some(("h:1", "/p?q")));
}

/// An ingress passes the client's headers on to /verify and sets only its own: a second
/// description, or a method in the other ingress's vocabulary, may be the client's and is
/// refused (a client behind Traefik adding `X-Original-URI: /public` must not have its request
/// to /api decided as /public; one behind nginx adding `X-Original-URL` or `X-Forwarded-Uri`
/// likewise).
#[test]
fn smuggled_descriptions_are_refused() {
    let twice = Err(Some("the original request is described more than once"));
    let traefik = [("x-forwarded-method", "GET"), ("x-forwarded-host", "a"), ("x-forwarded-uri", "/api")];
    let with = |extra: (&'static str, &'static str)| {
        let mut h = traefik.to_vec();
        h.push(extra);
        h
    };
    assert_eq!(described("GET", "/verify", &with(("x-original-uri", "/public"))), twice);
    assert_eq!(described("GET", "/verify", &with(("x-original-url", "http://a/public"))), twice);
    let method = Err(Some("the original method is described in another ingress's header"));
    assert_eq!(described("GET", "/verify", &with(("x-original-method", "GET"))), method);

    let nginx = [("x-original-method", "DELETE"), ("x-original-uri", "/api"), ("x-forwarded-host", "a")];
    let with = |extra: (&'static str, &'static str)| {
        let mut h = nginx.to_vec();
        h.push(extra);
        h
    };
    assert_eq!(described("GET", "/verify", &with(("x-original-url", "http://a/public"))), twice);
    assert_eq!(described("GET", "/verify", &with(("x-forwarded-uri", "/public"))), twice);
    assert_eq!(described("GET", "/verify", &with(("x-forwarded-method", "GET"))), method);
    assert!(described("GET", "/verify", &nginx).is_ok());
}
