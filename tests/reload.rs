//! Configuration reload as operators trigger it: the real binary reading a config file laid out
//! as Kubernetes mounts a ConfigMap (`tokengate.yaml -> ..data/tokengate.yaml`, `..data ->
//! ..<version>`, an update swaps `..data`), a real issuer and upstream, traffic throughout.
//! And, in process, what a reload must never let through: rules remembered on a keep-alive
//! connection from before the reload.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderName;
use serde_json::json;
use support::process::GatewayProcess;
use support::*;
use tokengate::config::{ClaimRule, ClaimTest, Config, IdentityHeader, IdentityValue, RouteAuth};
use tokengate::dev_issuer::DevIssuer;

/// A ConfigMap-style directory holding the config file.
struct Mounted {
    dir: PathBuf,
    versions: usize,
}

impl Mounted {
    fn new(yaml: &str) -> Mounted {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tokengate-reload-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut mounted = Mounted { dir, versions: 0 };
        mounted.update(yaml);
        std::os::unix::fs::symlink("..data/tokengate.yaml", mounted.path()).unwrap();
        mounted
    }

    fn path(&self) -> PathBuf {
        self.dir.join("tokengate.yaml")
    }

    /// What the kubelet does: write the new version into a directory of its own, then swap the
    /// `..data` symlink to it in one rename.
    fn update(&mut self, yaml: &str) {
        self.versions += 1;
        let version = format!("..v{}", self.versions);
        std::fs::create_dir(self.dir.join(&version)).unwrap();
        std::fs::write(self.dir.join(&version).join("tokengate.yaml"), yaml).unwrap();
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Env {
    idp: DevIssuer,
    up: Upstream,
}

impl Env {
    async fn new() -> Env {
        Env { idp: dev_issuer("k").await, up: Upstream::start().await }
    }

    /// `/orders` needs a token; `routes` come first.
    fn config(&self, routes: &str) -> String {
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: {{ url: {} }}\n\
             issuers:\n  - id: dev\n    issuer: {}\n    audiences: [api]\n\
             routes:\n{routes}  - {{ id: orders, path_prefix: /orders, auth: required }}\n",
            self.up.url(),
            self.idp.issuer(),
        )
    }

    fn token(&self) -> String {
        self.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read"}))
    }
}

/// The value of the sample `series` (name and labels as exposed) on the admin port.
async fn metric(gw: &GatewayProcess, series: &str) -> f64 {
    let body =
        client(false).get(format!("http://{}/metrics", gw.admin_addr)).send().await.unwrap().text().await.unwrap();
    let line = body.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '));
    line.map_or(0.0, |l| l[series.len() + 1..].trim().parse().unwrap())
}

const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "configuration reload refused";
const SUCCESSES: &str = "tokengate_config_reloads_total{result=\"success\"}";
const FAILURES: &str = "tokengate_config_reloads_total{result=\"failure\"}";

/// Routes change under steady traffic on kept and new connections: not one request fails or
/// gets an answer that neither config gives, every request after the swap sees the new route,
/// and the issuer's key set and the verified-token cache carry over (no fetch, no miss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_swap_under_load_without_a_failed_request() {
    let env = Env::new().await;
    let mut mount = Mounted::new(&env.config(""));
    let mut gw = GatewayProcess::start_with(&[], Some(&mount.path())).await;
    let token = env.token();
    let orders = gw.url("/orders/1");
    let beta = gw.url("/beta/1");
    // Warm: the key set is fetched and the token verified once.
    let response = client(false).get(&orders).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let fetches = "tokengate_jwks_fetches_total{issuer=\"".to_owned() + env.idp.issuer() + "\",outcome=\"success\"}";
    assert_eq!(metric(&gw, &fetches).await, 1.0);
    let misses = "tokengate_token_cache_lookups_total{cache=\"jwt\",result=\"miss\"}";
    let misses_before = metric(&gw, misses).await;

    // Each worker alternates `/orders` (200 under both configs) and `/beta` (no route, 404,
    // before; public, 200, after) until told to stop, recording what it got and whether the
    // reload had been logged when it sent the request.
    let reloaded = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (orders, beta, token) = (orders.clone(), beta.clone(), token.clone());
        let (reloaded, stop, seen) = (reloaded.clone(), stop.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            // Workers 0 and 1 keep their connection; 2 and 3 open one per request.
            let kept = client(worker % 2 == 1);
            let mut after = 0;
            while after < 50 {
                let fresh = client(false);
                let http = if worker < 2 { &kept } else { &fresh };
                let was_reloaded = reloaded.load(Ordering::SeqCst);
                let a = http.get(&orders).bearer_auth(&token).send().await.map(|r| r.status().as_u16());
                let b = http.get(&beta).send().await.map(|r| r.status().as_u16());
                seen.lock().unwrap().push((was_reloaded, a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string())));
                if was_reloaded && stop.load(Ordering::SeqCst) {
                    after += 1;
                }
            }
        }));
    }
    // Let the workers get going, then swap the config under them.
    while seen.lock().unwrap().len() < 40 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    mount.update(&env.config("  - { id: beta, path_prefix: /beta, auth: none }\n"));
    gw.wait_for(|l| l.contains(RELOADED)).await;
    reloaded.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let (mut before, mut after) = (0, 0);
    for (was_reloaded, orders, beta) in seen.iter() {
        assert_eq!(orders, &Ok(200), "a request failed or was refused during the reload");
        match (was_reloaded, beta) {
            (false, Ok(404)) => before += 1,
            (_, Ok(200)) => after += 1,
            other => panic!("an answer neither config gives, or one from the old config after the reload: {other:?}"),
        }
    }
    assert!(before >= 40 && after >= 200, "{before} before, {after} after");
    assert_eq!(env.up.seen().iter().filter(|s| s.target.starts_with("/beta")).count(), after);
    assert_eq!(metric(&gw, SUCCESSES).await, 1.0);
    assert!(metric(&gw, "tokengate_config_last_reload_success_timestamp_seconds").await > 1.7e9);
    assert_eq!(metric(&gw, &fetches).await, 1.0, "the unchanged issuer's key set was fetched again");
    assert_eq!(metric(&gw, misses).await, misses_before, "the verified-token cache went cold");
    assert_eq!(gw.count(|l| l.contains("installed new JWKS key set")), 1);
}

/// A broken config and one that needs a restart are both refused, each with a log line and a
/// failure count, while the config before them keeps serving; a good one afterwards applies.
#[tokio::test]
async fn invalid_reloads_are_refused_and_the_old_config_serves() {
    let env = Env::new().await;
    let mut mount = Mounted::new(&env.config(""));
    let mut gw = GatewayProcess::start_with(&[], Some(&mount.path())).await;
    let token = env.token();
    let http = client(false);
    let serving_v1 = async |gw: &GatewayProcess| {
        assert_eq!(http.get(gw.url("/orders/1")).bearer_auth(&token).send().await.unwrap().status(), 200);
        assert_eq!(http.get(gw.url("/orders/1")).send().await.unwrap().status(), 401);
        assert_eq!(http.get(gw.url("/beta/1")).send().await.unwrap().status(), 404);
    };
    serving_v1(&gw).await;

    // Line 9 of the new file names an auth mode that does not exist.
    let broken = env.config("  - { id: beta, path_prefix: /beta, auth: nobody }\n");
    assert!(broken.lines().nth(8).unwrap().contains("nobody"));
    mount.update(&broken);
    let line = gw.wait_for(|l| l.contains(REFUSED)).await;
    let path = mount.path().display().to_string();
    assert!(line.contains(&format!("{path}:9:")), "no file and line in: {line}");
    assert!(line.contains("nobody") || line.contains("auth"), "the problem is not named: {line}");
    assert!(line.contains("\"level\":\"ERROR\"") || line.contains("\"level\":\"error\""), "{line}");
    assert_eq!(metric(&gw, FAILURES).await, 1.0);
    assert_eq!(metric(&gw, SUCCESSES).await, 0.0);
    serving_v1(&gw).await;

    // Valid, but it moves the admin listener: that needs a restart.
    let moved = env
        .config("  - { id: beta, path_prefix: /beta, auth: none }\n")
        .replace("admin_listen: 127.0.0.1:0", "admin_listen: 127.0.0.1:1");
    mount.update(&moved);
    let line = gw.wait_for_nth(2, |l| l.contains(REFUSED)).await;
    assert!(line.contains("admin_listen") && line.contains("restart"), "{line}");
    assert_eq!(metric(&gw, FAILURES).await, 2.0);
    serving_v1(&gw).await;

    mount.update(&env.config("  - { id: beta, path_prefix: /beta, auth: none }\n"));
    gw.wait_for(|l| l.contains(RELOADED)).await;
    assert_eq!(http.get(gw.url("/beta/1")).send().await.unwrap().status(), 200);
    assert_eq!(metric(&gw, SUCCESSES).await, 1.0);
}

/// SIGHUP reloads even when the file did not change (secrets read from `_FILE` variables may
/// have); the process neither exits nor stops serving.
#[tokio::test]
async fn sighup_reloads() {
    let env = Env::new().await;
    let mount = Mounted::new(&env.config(""));
    let mut gw = GatewayProcess::start_with(&[], Some(&mount.path())).await;
    gw.signal("HUP");
    gw.wait_for(|l| l.contains(RELOADED)).await;
    gw.signal("HUP");
    gw.wait_for_nth(2, |l| l.contains(RELOADED)).await;
    assert_eq!(metric(&gw, SUCCESSES).await, 2.0);
    let response = client(false).get(gw.url("/orders/1")).bearer_auth(env.token()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(gw.count(|l| l.contains("the configuration file changed")), 0, "the poll saw no change");
}

// === in process: what a keep-alive connection remembered must not outlive the rules ===

struct Inproc {
    idp: DevIssuer,
    up: Upstream,
    gw: tokengate::app::Running,
    cfg: Config,
    /// One kept connection across the reload.
    kept: reqwest::Client,
}

impl Inproc {
    async fn new() -> Inproc {
        let idp = dev_issuer("k").await;
        let up = Upstream::start().await;
        let mut cfg = config(
            &up.url(),
            vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])],
            vec![required_route("orders", "/orders", &["read"])],
        );
        // Principals keep only the claims something reads: none, until a reload adds a rule.
        cfg.identity.claims_header = None;
        let gw = gateway(cfg.clone()).await;
        wait_ready(&gw).await;
        Inproc { idp, up, gw, cfg, kept: client(false) }
    }

    async fn get(&self, token: &str, headers: &[(&str, &str)]) -> u16 {
        let mut request = self.kept.get(format!("http://{}/orders/1", self.gw.addr)).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap().status().as_u16()
    }

    async fn reload(&self, tweak: impl FnOnce(&mut Config)) -> u64 {
        let mut cfg = self.cfg.clone();
        tweak(&mut cfg);
        self.gw.reload(cfg).await.expect("the reload applies")
    }
}

/// The same token on the same kept connection is judged by the new route policy at once, with
/// a principal verified under the new config: the one the connection remembered kept no
/// claims, and the new claim rule reads one.
#[tokio::test]
async fn a_kept_connection_meets_the_new_policy() {
    let env = Inproc::new().await;
    let token = env.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read", "dept": "ops"}));
    assert_eq!(env.get(&token, &[]).await, 200);
    assert_eq!(env.get(&token, &[]).await, 200, "remembered by the connection");
    let with_rule = |dept: &str| {
        let mut route = required_route("orders", "/orders", &["read"]);
        if let RouteAuth::Required(policy) = &mut route.auth {
            policy.claims = vec![ClaimRule {
                claim: tokengate::config::ClaimPath::top("dept"),
                test: ClaimTest::Equals(json!(dept)),
            }];
        }
        vec![route]
    };
    assert_eq!(env.reload(|c| c.routes = with_rule("ops")).await, 1);
    assert_eq!(env.get(&token, &[]).await, 200, "judged on a principal that kept no `dept`");
    assert_eq!(env.reload(|c| c.routes = with_rule("sales")).await, 2);
    assert_eq!(env.get(&token, &[]).await, 403, "the old policy answered on a kept connection");
    assert_eq!(env.reload(|c| c.routes = vec![required_route("orders", "/orders", &["admin"])]).await, 3);
    assert_eq!(env.get(&token, &[]).await, 403);
    assert_eq!(env.up.count(), 3);
    let fetches = env.gw.metrics.jwks_fetches.with_label_values(&[env.idp.issuer(), "success"]);
    assert_eq!(fetches.get(), 1, "the unchanged issuer's key set was fetched again");
}

/// An issuer's audience changes: tokens verified (and cached) for the old audience are refused,
/// on the kept connection and from the shared cache alike; its key set is fetched once more.
#[tokio::test]
async fn a_changed_issuer_forgets_what_it_verified() {
    let env = Inproc::new().await;
    let token = env.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read"}));
    assert_eq!(env.get(&token, &[]).await, 200);
    let issuer = env.idp.issuer().to_owned();
    let fetches = env.gw.metrics.jwks_fetches.with_label_values(&[issuer.as_str(), "success"]);
    assert_eq!(fetches.get(), 1);
    env.reload(|c| c.issuers[0].audiences = vec!["other".into()]).await;
    assert_eq!(env.get(&token, &[]).await, 401);
    let fresh = client(false).get(format!("http://{}/orders/1", env.gw.addr)).bearer_auth(&token);
    assert_eq!(fresh.send().await.unwrap().status(), 401);
    assert_eq!(fetches.get(), 2, "the changed issuer has a key set of its own");
    assert_eq!(env.up.count(), 1);
}

/// A reload that stops trusting the client's proxy: its `X-Forwarded-For` is replaced again on
/// the same connection, and the identity headers follow the new mapping.
#[tokio::test]
async fn a_kept_connection_meets_the_new_trust_and_headers() {
    let env = Inproc::new().await;
    let token = env.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read"}));
    let spoof = [("x-forwarded-for", "203.0.113.7"), ("x-user", "mallory")];
    env.reload(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    assert_eq!(env.get(&token, &spoof).await, 200);
    let seen = env.up.last();
    assert!(seen.headers["x-forwarded-for"].to_str().unwrap().starts_with("203.0.113.7"));
    env.reload(|c| {
        c.trusted_proxies = Vec::new();
        c.identity.headers =
            vec![IdentityHeader { name: HeaderName::from_static("x-user"), value: IdentityValue::Subject }];
    })
    .await;
    assert_eq!(env.get(&token, &spoof).await, 200);
    let seen = env.up.last();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1", "a no longer trusted chain was kept");
    assert_eq!(seen.headers["x-user"], "alice", "the new identity mapping was not applied");
    assert_eq!(seen.headers.get_all("x-user").iter().count(), 1);
}

/// Settings bound at start-up are refused by `reload` itself, whoever calls it.
#[tokio::test]
async fn listener_changes_need_a_restart() {
    let env = Inproc::new().await;
    let mut cfg = env.cfg.clone();
    cfg.admin_listen = "127.0.0.1:1".parse().unwrap();
    let error = env.gw.reload(cfg).await.unwrap_err().to_string();
    assert!(error.contains("admin_listen") && error.contains("restart"), "{error}");
    assert_eq!(env.gw.state().epoch, 0);
}

/// The decision service's kept connection, likewise: after a reload the trusted peers and the
/// claim rules are the new ones, on the connection the ingress keeps open.
#[tokio::test]
async fn the_decision_service_meets_the_new_config() {
    let env = DecisionEnv::with(vec![required_route("api", "/api", &["read"])], "127.0.0.1/32", |c| {
        c.identity.claims_header = None;
    })
    .await;
    wait_ready(&env.gw).await;
    let kept = client(false);
    let url = format!("http://{}/verify", env.gw.decision_addr.unwrap());
    let token = env.token_with("read", json!({"dept": "ops"}));
    let ask =
        || kept.get(&url).header("x-original-uri", "/api/1").header("x-original-method", "GET").bearer_auth(&token);
    assert_eq!(ask().send().await.unwrap().status(), 200);
    assert_eq!(ask().send().await.unwrap().status(), 200, "remembered by the connection");

    let mut cfg = env.gw.state().config.clone();
    let mut route = required_route("api", "/api", &["read"]);
    if let RouteAuth::Required(policy) = &mut route.auth {
        policy.claims =
            vec![ClaimRule { claim: tokengate::config::ClaimPath::top("dept"), test: ClaimTest::Equals(json!("ops")) }];
    }
    cfg.routes = vec![route];
    env.gw.reload(cfg.clone()).await.unwrap();
    assert_eq!(ask().send().await.unwrap().status(), 200, "judged on a principal that kept no `dept`");

    // No longer a trusted peer: its description of a request is not believed.
    cfg.decision.as_mut().unwrap().trusted_peers = vec!["192.0.2.0/24".parse().unwrap()];
    env.gw.reload(cfg).await.unwrap();
    let status = ask().send().await.unwrap().status();
    assert!(status.is_client_error() && status != 404, "an untrusted peer was believed: {status}");
}

/// A reload that adds an issuer whose key set cannot be fetched is refused: the old config keeps
/// serving and `/readyz` stays 200 (every replica taking the same file would otherwise leave
/// the Service without endpoints).
#[tokio::test]
async fn an_issuer_without_keys_is_refused() {
    let env = Inproc::new().await;
    let mut cfg = env.cfg.clone();
    cfg.jwks.fetch_timeout = Duration::from_millis(500);
    cfg.issuers.push(issuer("https://unreachable.test", "http://127.0.0.1:9/jwks", &["api"]));
    let error = env.gw.reload(cfg).await.unwrap_err().to_string();
    assert!(error.contains("https://unreachable.test") && error.contains("no key set"), "{error}");
    assert_eq!(env.gw.state().epoch, 0);
    let ready = client(false).get(format!("http://{}/readyz", env.gw.admin_addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let token = env.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read"}));
    assert_eq!(env.get(&token, &[]).await, 200);
}

/// The upstream's pooled connections carry over a reload that leaves the upstream alone; a
/// reload that names another upstream sends the next request there.
#[tokio::test]
async fn the_upstream_pool_carries_over_and_a_new_upstream_takes_over() {
    let env = Inproc::new().await;
    let token = env.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read"}));
    assert_eq!(env.get(&token, &[]).await, 200);
    assert_eq!(env.get(&token, &[]).await, 200);
    assert_eq!(env.up.connections(), 1);
    env.reload(|c| c.routes.push(public_route("beta", "/beta"))).await;
    assert_eq!(env.get(&token, &[]).await, 200);
    assert_eq!(env.up.connections(), 1, "the reload dropped the upstream's pooled connection");

    let second = Upstream::start().await;
    env.reload(|c| c.upstream.as_mut().unwrap().uri = second.url().parse().unwrap()).await;
    assert_eq!(env.get(&token, &[]).await, 200);
    assert_eq!((env.up.count(), second.count()), (3, 1), "the old upstream got the request");
}

/// Listener limits reload too, for connections accepted afterwards: with `max_connections`
/// lowered to 1 while one connection is open, the next is answered 503; raised again, served.
#[tokio::test]
async fn listener_limits_apply_to_new_connections() {
    let env = Inproc::new().await;
    let token = env.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read"}));
    assert_eq!(env.get(&token, &[]).await, 200);
    let another = || async {
        let request =
            format!("GET /orders/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
        let answer = raw(env.gw.addr, request.as_bytes()).await;
        answer[9..12].parse::<u16>().unwrap()
    };
    env.reload(|c| c.server.max_connections = 1).await;
    assert_eq!(another().await, 503, "the lowered limit was not applied");
    assert_eq!(env.get(&token, &[]).await, 200, "the open connection is still served");
    env.reload(|c| c.server.max_connections = 10).await;
    assert_eq!(another().await, 200);
}

/// A reload that removes an issuer moves the next one up a position, while the verified-token
/// cache (same kept claims) carries over: a token cached under the old position must be
/// verified again, not answered with a panic or judged as another issuer's.
#[tokio::test]
async fn an_issuer_removed_before_a_cached_one() {
    let env = Inproc::new().await;
    let second = dev_issuer("k2").await;
    let two = issuer(second.issuer(), &second.jwks_uri(), &["api"]);
    env.reload(|c| c.issuers.push(two.clone())).await;
    let token = second.mint(json!({"sub": "bob", "aud": "api", "scope": "read"}));
    let fresh = || client(false).get(format!("http://{}/orders/1", env.gw.addr)).bearer_auth(&token);
    assert_eq!(fresh().send().await.unwrap().status(), 200, "verified, and cached as issuer #2");
    assert_eq!(fresh().send().await.unwrap().status(), 200);

    env.reload(|c| c.issuers = vec![two.clone()]).await;
    assert_eq!(fresh().send().await.unwrap().status(), 200, "the cached verdict of a position now gone");
    assert_eq!(env.up.last().headers["x-auth-subject"], "bob");
    assert_eq!(env.up.last().headers["x-auth-issuer"], second.issuer());
    let first = env.idp.mint(json!({"sub": "alice", "aud": "api", "scope": "read"}));
    let refused = client(false).get(format!("http://{}/orders/1", env.gw.addr)).bearer_auth(&first);
    assert_eq!(refused.send().await.unwrap().status(), 401, "the removed issuer's token");
}
