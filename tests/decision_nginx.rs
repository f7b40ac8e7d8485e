//! tokengate as the `auth_request` service of a real nginx (Debian's package), configured with
//! the snippets under `config/nginx/` exactly as documented: nginx forwards, tokengate decides.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use support::*;

/// nginx in the foreground, one process, stopped when dropped.
struct Nginx {
    addr: String,
    _daemon: Daemon,
}

impl Nginx {
    /// nginx on a free loopback port, asking `decision` and forwarding to `upstream`.
    async fn start(nginx: &Path, decision: std::net::SocketAddr, upstream: std::net::SocketAddr) -> Nginx {
        let dir = Daemon::scratch("nginx", decision.port());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let snippets = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nginx");
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             upstream tokengate_decision {{ server {decision}; keepalive 4; }}\n  \
             upstream app {{ server {upstream}; }}\n  \
             server {{\n    listen 127.0.0.1:{port};\n    include {s}/tokengate-decision.conf;\n    \
             location / {{\n      include {s}/tokengate-protect.conf;\n      proxy_pass http://app;\n    }}\n  }}\n}}\n",
            s = snippets.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut daemon = Daemon::spawn(&mut command, dir);
        let addr = format!("127.0.0.1:{port}");
        // Ready when it accepts connections.
        let connect = || async { tokio::net::TcpStream::connect(&addr).await.ok().map(drop) };
        daemon.wait_until("nginx did not start", "error.log", connect).await;
        Nginx { addr, _daemon: daemon }
    }
}

/// Valid token → 200, and the upstream sees tokengate's identity headers; bad token → 401 with
/// tokengate's challenge; missing scope → 403; a client-sent identity header never reaches the
/// upstream, on a protected route or a public one.
#[tokio::test]
async fn nginx_auth_request_with_the_documented_snippets() {
    let Some(nginx) = require_tool("nginx", "Debian's nginx-light (apt-get install nginx-light)") else { return };
    let routes = vec![public_route("public", "/public"), required_route("api", "/api", &["read"])];
    let env = DecisionEnv::start(routes, "127.0.0.0/8").await;
    let up = &env.up;
    let nginx = Nginx::start(&nginx, env.gw.decision_addr.unwrap(), up.addr).await;
    let url = |path: &str| format!("http://{}{path}", nginx.addr);
    let c = client(false);
    let token = |scope: &str| env.token_with(scope, json!({"client_id": "cli"}));

    let resp = c
        .post(url("/api/orders?id=7"))
        .bearer_auth(token("read"))
        .header("x-auth-subject", "mallory")
        .header("x-auth-claims", "{\"admin\":true}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/api/orders?id=7"));
    assert_eq!(seen.headers["x-auth-subject"], "alice");
    assert_eq!(seen.headers["x-auth-scopes"], "read");
    assert_eq!(seen.headers["x-auth-client-id"], "cli");
    assert!(!seen.headers["x-auth-claims"].to_str().unwrap().contains("admin"), "tokengate's claims, not the client's");

    let before = up.count();
    let resp = c.get(url("/api/orders")).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer realm=\"test\", error=\"invalid_token\""), "{challenge}");
    let resp = c.get(url("/api/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"test\"");

    let resp = c.get(url("/api/orders")).bearer_auth(token("write")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"read\""), "{challenge}");
    assert_eq!(up.count(), before, "nothing refused reached the upstream");

    // A client describing another request in the headers nginx passes on to tokengate still
    // has its own request decided: /api without a token is 401, not /public's 200.
    let smuggled = c
        .get(url("/api/orders"))
        .header("x-original-url", format!("http://{}/public/x", nginx.addr))
        .header("x-forwarded-uri", "/public/x")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(smuggled.status(), 401);
    assert_eq!(up.count(), before, "nothing refused reached the upstream");

    // A public route: no token needed, and forged identity headers are removed all the same.
    assert_forged_identity_never_forwarded(&url("/public/x"), up, &[]).await;

    // A path nginx would forward in another spelling is refused, not decided on another form:
    // nginx turns the 400 of its auth subrequest into a 500.
    for target in ["/public/%2e%2e/api/orders", "/public//api/orders"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(nginx.addr.parse().unwrap(), request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{target}: {answer}");
    }
    assert_eq!(up.count(), before + 1);
}
