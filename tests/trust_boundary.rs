//! The trust boundary over real sockets: no spelling of a path or host, and no client-sent
//! forwarding, override or identity header, lets a request reach the upstream under a weaker
//! route than the one the upstream serves it as. The routes are the demo's: `/public` needs
//! nothing, `/admin` needs scope `admin`, everything else needs `read`.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::*;
use tokengate::config::{Config, KeySource, Secret};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const ISSUER: &str = "https://idp.test";

struct Env {
    up: Upstream,
    gw: tokengate::app::Running,
}

impl Env {
    async fn with(tweak: impl FnOnce(&mut Config)) -> Env {
        let up = Upstream::start().await;
        let mut hmac = issuer(ISSUER, "http://unused.invalid/jwks", &["api"]);
        hmac.keys = KeySource::Secret(Secret(SECRET.to_vec()));
        hmac.algorithms = vec![Algorithm::HS256];
        let mut cfg = config(
            &up.url(),
            vec![hmac],
            vec![
                public_route("public", "/public"),
                required_route("admin", "/admin", &["admin"]),
                required_route("api", "/", &["read"]),
            ],
        );
        tweak(&mut cfg);
        let gw = gateway(cfg).await;
        Env { up, gw }
    }

    async fn start() -> Env {
        Env::with(|_| {}).await
    }

    /// One raw HTTP/1.1 request on its own connection: the status code and the whole answer.
    async fn send(&self, head: &str) -> (u16, String) {
        let resp = raw(self.gw.addr, format!("{head}Connection: close\r\n\r\n").as_bytes()).await;
        let status = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, resp)
    }

    async fn get(&self, target: &str, token: Option<&str>) -> (u16, String) {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        self.send(&format!("GET {target} HTTP/1.1\r\nHost: api.example\r\n{auth}")).await
    }
}

/// `resp` is 403 `insufficient_scope` from the route that needs `scope` (RFC 6750 §3.1): which
/// route decided shows in the challenge.
fn assert_needs(resp: &str, scope: &str) {
    let challenge = format!(
        "error=\"insufficient_scope\", error_description=\"token lacks a required scope\", scope=\"{scope}\"\r\n"
    );
    assert!(resp.starts_with("HTTP/1.1 403 ") && resp.contains(&challenge), "expected {challenge:?}: {resp}");
}

/// A token from the test issuer with these scopes.
fn token(scope: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"iss": ISSUER, "sub": "alice", "aud": "api", "scope": scope, "exp": now + 600});
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

/// The review's spellings of `/admin` are decided as `/admin`: a `read` token gets 403 and the
/// upstream sees nothing; the same spellings with an `admin` token reach it in canonical form.
#[tokio::test]
async fn admin_spellings_are_decided_as_admin() {
    let env = Env::start().await;
    let (read, admin) = (token("read"), token("admin"));
    let spellings = [
        ("/%61dmin", "/admin"),
        ("/%41dmin", "/Admin"),
        ("//admin", "/admin"),
        ("///admin//x", "/admin/x"),
        ("/admin;x", "/admin;x"),
        ("/admin;jsessionid=1/x", "/admin;jsessionid=1/x"),
        ("/%61dm%69n/%7euser", "/admin/~user"),
    ];
    for (path, canonical) in spellings {
        let (status, resp) = env.get(path, Some(&read)).await;
        // `/%41dmin` is `/Admin`: another route when routes are case-sensitive.
        if canonical == "/Admin" {
            assert_eq!(status, 200, "{path}: {resp}");
            assert_eq!(env.up.last().target, canonical);
            continue;
        }
        assert_eq!(status, 403, "{path} passed with a read token: {resp}");
        assert_needs(&resp, "admin");
        let before = env.up.count();
        let (status, resp) = env.get(path, Some(&admin)).await;
        assert_eq!(status, 200, "{path}: {resp}");
        assert_eq!(env.up.count(), before + 1);
        assert_eq!(env.up.last().target, canonical, "{path}");
    }
}

/// Dot-segments in every spelling, encoded separators and other ambiguous spellings are 400,
/// with or without a token, and nothing reaches the upstream.
#[tokio::test]
async fn ambiguous_paths_are_refused() {
    let env = Env::start().await;
    let read = token("read");
    const DOTS: &str = "path contains a dot-segment";
    const SLASH: &str = "path contains an encoded slash or backslash";
    const TWICE: &str = "path contains a double-encoded percent-escape";
    let paths = [
        ("/public/../admin", DOTS),
        ("/public/..;/admin", DOTS),
        ("/public/..;x=1/admin", DOTS),
        ("/public/%2e%2e/admin", DOTS),
        ("/public/.%2E/admin", DOTS),
        ("/public/%2E./admin", DOTS),
        ("/public/./../admin", DOTS),
        ("/public%2F..%2Fadmin", SLASH),
        ("/public%2fadmin", SLASH),
        ("/public%5C..%5Cadmin", SLASH),
        ("/public/..%5cadmin", SLASH),
        ("/public\\..\\admin", "path contains a backslash"),
        ("/admin%3Bx", "path contains an encoded semicolon"),
        ("/%252e%252e/admin", TWICE),
        ("/%252%65%252%65/admin", TWICE),
        ("/public/%00/admin", "path contains an encoded control character"),
        ("/public/%zz", "path contains a malformed percent-escape"),
    ];
    for (path, reason) in paths {
        for t in [None, Some(read.as_str())] {
            let (status, resp) = env.get(path, t).await;
            assert_eq!(status, 400, "{path}: {resp}");
            // RFC 6750 §3.1 invalid_request, naming the rule that refused.
            let body = format!("\r\n\r\n{{\"error\":\"invalid_request\",\"error_description\":\"{reason}\"}}");
            assert!(resp.ends_with(&body), "{path}: expected {body:?}: {resp}");
        }
    }
    assert_eq!(env.up.count(), 0, "a refused path reached the upstream");
}

/// `;parameters` that make Tomcat and Go choose different routes must satisfy both routes;
/// where both agree they are forwarded as sent.
#[tokio::test]
async fn parameters_that_split_the_route_need_every_route() {
    let env = Env::with(|c| c.routes.insert(0, public_route("docs", "/docs/public"))).await;
    // Tomcat reads `/docs/public` (public), Go `/docs;x/public`, which only `/` (read) covers.
    let (status, _) = env.get("/docs;x/public", None).await;
    assert_eq!(status, 401);
    assert_eq!(env.up.count(), 0);
    let (status, _) = env.get("/docs;x/public", Some(&token("read"))).await;
    assert_eq!(status, 200);
    assert_eq!(env.up.last().target, "/docs;x/public");
    let (status, _) = env.get("/docs/public;v=1", None).await;
    assert_eq!(status, 200);
    assert_eq!(env.up.last().target, "/docs/public;v=1");
}

/// Routes compare case-sensitively unless the route says otherwise (for ASP.NET and IIS).
#[tokio::test]
async fn case_insensitive_routes() {
    let env = Env::start().await;
    let (status, _) = env.get("/ADMIN", Some(&token("read"))).await;
    assert_eq!(status, 200, "case-sensitive: /ADMIN is not /admin");
    let env = Env::with(|c| c.routes[1].case_insensitive = true).await;
    for path in ["/ADMIN", "/Admin/x", "/%41DMIN"] {
        let (status, resp) = env.get(path, Some(&token("read"))).await;
        assert_eq!(status, 403, "{path}: {resp}");
        assert_needs(&resp, "admin");
    }
    assert_eq!(env.up.count(), 0);
}

/// With `encoded_slashes: keep`, `%2F` is forwarded unchanged and counts as a separator for
/// matching and dot-segment detection; as Go 1.22's ServeMux keeps it inside its segment, the
/// route of that reading must admit the request too.
#[tokio::test]
async fn kept_encoded_slashes() {
    let env = Env::with(|c| c.paths.keep_encoded_slashes = true).await;
    let read = token("read");
    let (status, resp) = env.get("/admin%2Fx", Some(&read)).await;
    assert_eq!(status, 403, "/admin%2Fx is under /admin");
    assert_needs(&resp, "admin");
    let (status, resp) = env.get("/admin%2Fx", Some(&token("admin"))).await;
    assert_eq!(status, 403, "/admin%2Fx is also `/` to Go 1.22, which needs read");
    assert_needs(&resp, "read");
    let (status, _) = env.get("/public%2Fx", None).await;
    assert_eq!(status, 401, "/public%2Fx is `/` to Go 1.22");
    let (status, _) = env.get("/public%2F..%2Fadmin", None).await;
    assert_eq!(status, 400);
    // Tomcat and Spring remove `;%2Fa` (a parameter runs to the next literal `/`) before they
    // decode: they serve /admin/, so a `read` token must not pass (a proptest found it).
    let (status, resp) = env.get("/;%2Fa/admin%2F;", Some(&read)).await;
    assert_eq!(status, 403, "/;%2Fa/admin%2F; is /admin/ to Spring: {resp}");
    assert_needs(&resp, "admin");
    assert_eq!(env.up.count(), 0);
    let (status, _) = env.get("/projects/group%2fname", Some(&read)).await;
    assert_eq!(status, 200);
    assert_eq!(env.up.last().target, "/projects/group%2Fname");
    let (status, _) = env.get("/admin%2Fx", Some(&token("admin read"))).await;
    assert_eq!(status, 200);
    assert_eq!(env.up.last().target, "/admin%2Fx");
}

/// `admin.example.com` needs scope `admin` on every path; other hosts need nothing.
fn admin_host(c: &mut Config) {
    let mut admin = required_route("admin-host", "/", &["admin"]);
    admin.host = Some("admin.example.com".into());
    c.routes.insert(0, admin);
    c.routes.insert(1, public_route("everything", "/"));
}

/// Hosts are compared without case, trailing dot or port; the upstream gets the canonical
/// `Host`; missing, duplicate and contradicting hosts are 400.
#[tokio::test]
async fn host_spellings() {
    let env = Env::with(admin_host).await;
    for host in ["admin.example.com.", "ADMIN.Example.com", "admin.example.com:8080", "Admin.Example.Com.:80"] {
        let (status, resp) = env.send(&format!("GET /x HTTP/1.1\r\nHost: {host}\r\n")).await;
        assert_eq!(status, 401, "Host: {host}: {resp}");
    }
    assert_eq!(env.up.count(), 0);
    let admin = token("admin");
    let (status, _) = env
        .send(&format!("GET /x HTTP/1.1\r\nHost: ADMIN.example.com.:8080\r\nAuthorization: Bearer {admin}\r\n"))
        .await;
    assert_eq!(status, 200);
    let seen = env.up.last().headers;
    assert_eq!(seen["host"], "admin.example.com:8080");
    assert_eq!(seen["x-forwarded-host"], "admin.example.com:8080");

    let refused = [
        "GET /x HTTP/1.1\r\n",
        "GET /x HTTP/1.1\r\nHost: public.example\r\nHost: admin.example.com\r\n",
        "GET http://admin.example.com/x HTTP/1.1\r\nHost: public.example\r\n",
        "GET http://user@public.example/x HTTP/1.1\r\nHost: public.example\r\n",
        "GET /x HTTP/1.1\r\nHost: admin.example.com@public.example\r\n",
        "GET /x HTTP/1.1\r\nHost: public..example\r\n",
    ];
    let before = env.up.count();
    for head in refused {
        let (status, resp) = env.send(head).await;
        assert_eq!(status, 400, "{head:?}: {resp}");
    }
    assert_eq!(env.up.count(), before, "a request with a bad host reached the upstream");
    // An absolute-form target decides the host (RFC 9112 §3.2.2) when Host agrees.
    let (status, _) = env.send("GET http://Admin.example.com./x HTTP/1.1\r\nHost: admin.example.com\r\n").await;
    assert_eq!(status, 401);
    // HTTP/1.0 may omit Host: only host-less routes can match.
    let (status, _) = env.send("GET /x HTTP/1.0\r\n").await;
    assert_eq!(status, 200);
}

/// HTTP/2: `:authority` decides the host; a `Host` header naming another host is 400.
#[tokio::test]
async fn http2_authority() {
    let env = Env::with(admin_host).await;
    let url = format!("http://admin.example.com.:{}/x", env.gw.addr.port());
    let resolve = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("admin.example.com.", env.gw.addr)
        .resolve("public.example", env.gw.addr)
        .build()
        .unwrap();
    let resp = resolve.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let url = format!("http://public.example:{}/x", env.gw.addr.port());
    let resp = resolve.get(&url).header("host", "admin.example.com").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(env.up.count(), 0);
    let resp = resolve.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(env.up.last().headers["host"], format!("public.example:{}", env.gw.addr.port()));
}

/// The gateway is the first trusted hop: client-sent forwarding headers are replaced, and
/// path-override headers never reach the upstream.
#[tokio::test]
async fn forwarding_headers_from_clients_are_replaced() {
    let env = Env::start().await;
    let spoofed = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n\
                   X-Forwarded-Port: 443\r\nForwarded: for=203.0.113.9;host=evil.example\r\nX-Real-IP: 203.0.113.9\r\n\
                   X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\n";
    let (status, _) = env.send(&format!("GET /public/x HTTP/1.1\r\nHost: API.example.\r\n{spoofed}")).await;
    assert_eq!(status, 200);
    let h = env.up.last().headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "api.example");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["host"], "api.example");
    for gone in ["x-forwarded-port", "forwarded", "x-real-ip", "x-original-url", "x-rewrite-url"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream");
    }
}

/// A peer in `trusted_proxies` keeps its chain: our hop is appended, its proto and host kept.
/// Path overrides are dropped even from it.
#[tokio::test]
async fn trusted_proxies_keep_their_chain() {
    let env = Env::with(|c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let head = "GET /public/x HTTP/1.1\r\nHost: api.example\r\nX-Forwarded-For: 203.0.113.9\r\n\
                X-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example\r\nForwarded: for=203.0.113.9\r\n\
                X-Original-URL: /admin\r\n";
    let (status, _) = env.send(head).await;
    assert_eq!(status, 200);
    let h = env.up.last().headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "www.example");
    assert_eq!(h["forwarded"], "for=203.0.113.9");
    assert!(h.get("x-original-url").is_none());
    // Another peer's chain is not trusted.
    let env = Env::with(|c| c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]).await;
    env.send(head).await;
    assert_eq!(env.up.last().headers["x-forwarded-for"], "127.0.0.1");
}

/// When a route matches by method, method-override headers are dropped, so a POST decided
/// under the POST rules cannot be served as DELETE.
#[tokio::test]
async fn method_override_dropped_when_routes_match_methods() {
    let env = Env::with(|c| {
        let mut delete = required_route("delete-admin", "/admin", &["admin"]);
        delete.methods = Some(vec![http::Method::DELETE]);
        c.routes[1] = delete;
    })
    .await;
    let read = token("read");
    let overrides = "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n";
    let head =
        format!("POST /admin HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {read}\r\nContent-Length: 0\r\n{overrides}");
    let (status, _) = env.send(&head).await;
    assert_eq!(status, 200, "POST /admin falls to the read route");
    let seen = env.up.last();
    assert_eq!(seen.method, "POST");
    for gone in ["x-http-method-override", "x-http-method", "x-method-override"] {
        assert!(seen.headers.get(gone).is_none(), "{gone} reached the upstream");
    }
    let (status, _) = env.send(&format!("DELETE /admin HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {read}\r\n")).await;
    assert_eq!(status, 403);
}

/// With `forward_authorization: false` no token reaches the upstream: not in the header, the
/// query string or a form body.
#[tokio::test]
async fn tokens_not_forwarded_anywhere() {
    let env = Env::with(|c| {
        c.identity.forward_authorization = false;
        c.tokens.allow_query = true;
        c.tokens.allow_form_body = true;
    })
    .await;
    let read = token("read");
    let (status, _) = env.get(&format!("/x?a=1&access_token={read}&b=2"), None).await;
    assert_eq!(status, 200);
    assert_eq!(env.up.last().target, "/x?a=1&b=2");
    let (status, _) = env.get(&format!("/public/x?access_token={read}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(env.up.last().target, "/public/x");
    let body = format!("a=1&access_token={read}");
    let head = format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = raw(env.gw.addr, head.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = env.up.last();
    assert_eq!(seen.body_len, 3, "only `a=1` is forwarded");
    assert!(seen.headers.get("authorization").is_none());
}

/// The gateway reads a body only to look for a form token, when form tokens are on: any other
/// body, a form body among them when they are off, streams through whole, past the 64 KiB a
/// form read is capped at.
#[tokio::test]
async fn bodies_are_not_read_unless_form_tokens_are_on() {
    let env = Env::start().await;
    let read = token("read");
    let body = "a=".to_owned() + &"x".repeat(100 * 1024);
    for content_type in ["application/x-www-form-urlencoded", "application/octet-stream"] {
        let head = format!(
            "POST /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: Bearer {read}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let resp = raw(env.gw.addr, head.as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{content_type}: {resp}");
        assert_eq!(env.up.last().body_len, body.len());
    }
}
