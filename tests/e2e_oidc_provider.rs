//! tokengate against a real third-party authorization server: oidc-provider (Node.js, OpenID
//! Certified), run from `tests/e2e/oidc-provider/provider.mjs`. Tokens come from its token
//! endpoint, keys from its discovery document and JWKS; nothing is minted by the test.
//!
//! Needs `node` and `npm`. The first test to run installs the pinned packages (`npm ci`) when
//! `node_modules` is missing. Without node (or npm, when an install is needed) the tests fail,
//! unless `TOKENGATE_TEST_ALLOW_MISSING_TOOLS=1` is set: then they print why and return without
//! running (see `support::require_tool`). The gateway reads a `ManualClock`: a cached
//! introspection answer ends when a test moves it, not after a wait.

mod support;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use support::*;
use tokengate::config::{ClientAuthMethod, Introspection, KeySource, TokenMode};

/// The npm package holding `provider.mjs`.
const PROVIDER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/oidc-provider");
/// The resource indicator (RFC 8707) the provider issues JWT access tokens for; also their `aud`.
const RESOURCE: &str = "https://api.example/";
/// Clients registered in `provider.mjs` (`client_secret_basic`).
const JWT_CLIENT: (&str, &str) = ("jwt-client", "jwt-secret");
const OPAQUE_CLIENT: (&str, &str) = ("opaque-client", "opaque-secret");
const RESOURCE_SERVER: (&str, &str) = ("rs-client", "rs-secret");
/// Bound on node's start-up until it prints `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on waiting for another process's `npm ci`.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How to get node and npm, for the failure message when they are missing.
const NODE_INSTALL: &str = "Node.js 20+ and npm (e.g. the Debian packages `nodejs` and `npm`)";

// === setup: node, npm and the pinned packages ===

/// Whether the provider can run: `Ok` once node is present and the packages are installed,
/// `Err(tool)` when node, or npm while an install is needed, does not run. Computed once per
/// test binary, so parallel tests never run `npm ci` twice.
fn setup() -> Result<(), &'static str> {
    static SETUP: OnceLock<Result<(), &'static str>> = OnceLock::new();
    *SETUP.get_or_init(|| {
        if !runs("node") {
            return Err("node");
        }
        if !installed() {
            if !runs("npm") {
                return Err("npm");
            }
            install();
        }
        Ok(())
    })
}

/// `true` when the provider can run. A missing tool fails the test, unless
/// `TOKENGATE_TEST_ALLOW_MISSING_TOOLS=1`: then `false`, and the test returns without running.
fn available() -> bool {
    match setup() {
        Ok(()) => true,
        Err(tool) => {
            missing_tool(tool, NODE_INSTALL);
            false
        }
    }
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// npm writes `node_modules/.package-lock.json` last, so a half-finished install does not count.
fn installed() -> bool {
    let modules = Path::new(PROVIDER_DIR).join("node_modules");
    modules.join(".package-lock.json").is_file() && modules.join("oidc-provider/package.json").is_file()
}

/// `npm ci`, holding a lock file so that another test process (a second `cargo test`) does not
/// install into the same directory at the same time.
fn install() {
    let _lock = InstallLock::acquire();
    if installed() {
        return; // the other process did it
    }
    eprintln!("installing the oidc-provider test packages: npm ci in {PROVIDER_DIR}");
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(PROVIDER_DIR)
        .stdin(Stdio::null())
        .output()
        .expect("npm runs");
    assert!(
        out.status.success() && installed(),
        "npm ci failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A lock file created exclusively; removed on drop. One left behind by a killed process is
/// taken over once it is older than any install could take.
struct InstallLock(PathBuf);

impl InstallLock {
    fn acquire() -> InstallLock {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-provider-npm-ci.lock");
        let start = Instant::now();
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return InstallLock(path),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let age = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|age| age > INSTALL_TIMEOUT) {
                        let _ = fs::remove_file(&path);
                    }
                    assert!(start.elapsed() < INSTALL_TIMEOUT, "{} is still held; remove it if stale", path.display());
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

// === the provider process ===

/// oidc-provider as the tests see it: an issuer on a fixed loopback port that can be restarted
/// with new keys. Its key files live in a private directory that is removed on drop.
struct Provider {
    process: Option<Process>,
    /// `http://127.0.0.1:PORT`, as printed by the provider.
    issuer: String,
    port: u16,
    dir: PathBuf,
    /// Start count; each start reads a new, not yet existing key file, so the provider
    /// generates fresh keys with new kids.
    generation: usize,
}

/// One `node provider.mjs` process, killed on drop.
struct Process {
    child: Child,
    /// Held open: the provider exits when it closes, also if this test process dies.
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

impl Provider {
    /// Start on a free port with freshly generated keys; `None` when the tests are skipped.
    fn start() -> Option<Provider> {
        if !available() {
            return None;
        }
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "oidc-provider-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut provider = Provider { process: None, issuer: String::new(), port: 0, dir, generation: 0 };
        provider.spawn();
        Some(provider)
    }

    /// Stop the provider and start it again on the same port with a new key set (new kids): a
    /// key rotation as relying parties see it. Tokens issued before are no longer verifiable.
    fn restart_with_new_keys(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
        }
        self.generation += 1;
        self.spawn();
    }

    /// Run `node provider.mjs` and wait, bounded, for its `ready <issuer>` line.
    fn spawn(&mut self) {
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--keys")
            .arg(self.dir.join(format!("jwks-{}.json", self.generation)))
            .current_dir(PROVIDER_DIR)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            // Keep reading after `ready` so the provider never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut process = Process { stdin: child.stdin.take(), child, stderr };
        let deadline = Instant::now() + READY_TIMEOUT;
        let issuer = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => match line.strip_prefix("ready ") {
                    Some(issuer) => break issuer.to_owned(),
                    None => continue,
                },
                Err(_) => {
                    let status = process.child.try_wait().ok().flatten();
                    panic!(
                        "oidc-provider did not print `ready` within {READY_TIMEOUT:?} (exit status: {status:?}); \
                         stderr:\n{}",
                        process.stderr.lock().unwrap()
                    );
                }
            }
        };
        let port = issuer.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the issuer names its port");
        assert!(self.port == 0 || self.port == port, "restarted on port {port}, not {}", self.port);
        self.port = port;
        self.issuer = issuer;
        self.process = Some(process);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// POST a form to one of the provider's endpoints with HTTP Basic client authentication
    /// (`client_secret_basic`); the status and the JSON body (or `null` when there is none).
    async fn post(&self, path: &str, (id, secret): (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
        let resp = client(false).post(self.url(path)).basic_auth(id, Some(secret)).form(form).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A client_credentials access token for `client`, for `resource` when given.
    async fn token(&self, client: (&str, &str), resource: Option<&str>, scope: &str) -> String {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
        form.extend(resource.map(|r| ("resource", r)));
        let (status, body) = self.post("/token", client, &form).await;
        assert_eq!(status, 200, "token endpoint: {body}");
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().expect("an access_token").to_owned()
    }

    /// An RFC 9068 JWT access token of `jwt-client` for [`RESOURCE`].
    async fn jwt_token(&self, scope: &str) -> String {
        self.token(JWT_CLIENT, Some(RESOURCE), scope).await
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Process {
    /// Close stdin, on which the provider exits by itself (`stop` in provider.mjs), and wait
    /// for it; kill it if it lingers. The port is free again afterwards.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === opaque-token flow helpers ===
//
// Reusable pieces for a gateway test with RFC 7662 introspection, to be written once tokengate
// supports opaque tokens (in progress on another branch): obtain an opaque token, introspect
// it as the resource server, revoke it. The test `opaque_token_flow_helpers` below proves them
// against the provider alone. The gateway would introspect at `{issuer}/token/introspection`
// as `RESOURCE_SERVER` (client_secret_basic).

impl Provider {
    /// An opaque access token of `opaque-client` for [`RESOURCE`]: its introspection response
    /// carries `aud` = [`RESOURCE`], `scope` and `client_id` = `opaque-client`.
    async fn opaque_token(&self, scope: &str) -> String {
        self.token(OPAQUE_CLIENT, Some(RESOURCE), scope).await
    }

    /// RFC 7662 introspection of `token` as the resource server; the response document.
    async fn introspect(&self, token: &str) -> Value {
        let (status, body) = self.post("/token/introspection", RESOURCE_SERVER, &[("token", token)]).await;
        assert_eq!(status, 200, "introspection: {body}");
        body
    }

    /// RFC 7009 revocation by the client the token was issued to (the provider's default policy
    /// lets a client revoke only its own tokens).
    async fn revoke(&self, client: (&str, &str), token: &str) {
        let (status, body) =
            self.post("/token/revocation", client, &[("token", token), ("token_type_hint", "access_token")]).await;
        assert_eq!(status, 200, "revocation: {body}");
    }
}

// === the gateway ===

struct Gate {
    up: Upstream,
    gw: tokengate::app::Running,
    /// The gateway's clock: stopped, moved only by a test.
    clock: ManualClock,
}

impl Gate {
    /// tokengate in front of a recording upstream, trusting `provider` through discovery, with
    /// RFC 9068 `typ` required. Routes: `/write` needs scope `write`, everything else `read`.
    async fn start(
        provider: &Provider,
        audiences: &[&str],
        tweak: impl FnOnce(&mut tokengate::config::Config),
    ) -> Gate {
        let up = Upstream::start().await;
        let mut idp = issuer(&provider.issuer, "", audiences);
        idp.keys = KeySource::Discovery;
        idp.require_at_jwt = true;
        let mut cfg = config(
            &up.url(),
            vec![idp],
            vec![required_route("write", "/write", &["write"]), required_route("read", "/", &["read"])],
        );
        tweak(&mut cfg);
        let clock = ManualClock::starting_now();
        let gw = gateway_with_clock(cfg, &clock).await;
        wait_ready(&gw).await;
        Gate { up, gw, clock }
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.request(path, token).send().await.unwrap()
    }

    /// GET `path` with `token`, ready for `assert_refused`.
    fn request(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        client(false).get(format!("http://{}{path}", self.gw.addr)).bearer_auth(token)
    }

    /// Assert a 401 `invalid_token` whose description is exactly `why`, with nothing forwarded.
    async fn assert_invalid(&self, token: &str, why: &str) {
        assert_token_refused(&self.gw, &self.up, token, why).await;
    }
}

/// The decoded JOSE header and claims of a compact JWS (not verified: the gateway does that).
fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS: {token}");
    let decode = |s: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap() };
    (decode(parts[0]), decode(parts[1]))
}

// === tests ===

/// A provider-issued RFC 9068 JWT passes the gateway with identity headers; wrong audience 401, missing scope 403.
#[tokio::test]
async fn jwt_access_token_through_gateway() {
    let Some(provider) = Provider::start() else { return };
    let token = provider.jwt_token("read").await;
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    assert!(header["kid"].is_string(), "{header}");
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["iss"], provider.issuer.as_str());
    assert_eq!(claims["client_id"], JWT_CLIENT.0);

    let gate = Gate::start(&provider, &[RESOURCE], |_| {}).await;
    let resp = gate.get("/orders/1", &token).await;
    assert_eq!(resp.status(), 200);
    let seen = gate.up.last().headers;
    assert_eq!(seen["x-auth-client-id"], JWT_CLIENT.0);
    assert_eq!(seen["x-auth-scopes"], "read");
    assert_eq!(seen["x-auth-subject"], JWT_CLIENT.0, "client_credentials: sub is the client");
    assert_eq!(seen["x-auth-issuer"], provider.issuer.as_str());

    assert_insufficient(&gate.up, gate.request("/write/orders", &token), LACKS_SCOPE, "write").await;
    let both = provider.jwt_token("read write").await;
    assert_eq!(gate.get("/write/orders", &both).await.status(), 200);

    let elsewhere = Gate::start(&provider, &["https://other-api.example/"], |_| {}).await;
    elsewhere.assert_invalid(&token, "token is not intended for this audience").await;
}

/// After each provider restart with new keys, the running gateway refetches on the new kid; old-key tokens get 401.
#[tokio::test]
async fn key_rotation_without_gateway_restart() {
    let Some(mut provider) = Provider::start() else { return };
    let mut old = provider.jwt_token("read").await;
    // Only request-driven refetches start the cooldown, so the first rotation would pass with
    // any cooldown; the second one needs the short cooldown configured here.
    let gate =
        Gate::start(&provider, &[RESOURCE], |cfg| cfg.jwks.unknown_kid_cooldown = Duration::from_millis(1)).await;
    assert_eq!(gate.get("/", &old).await.status(), 200);

    let issuer = provider.issuer.clone();
    let mut kids = vec![jwt_parts(&old).0["kid"].clone()];
    for rotation in 1..=2 {
        provider.restart_with_new_keys();
        assert_eq!(provider.issuer, issuer, "same port, same issuer");
        let new = provider.jwt_token("read").await;
        let kid = jwt_parts(&new).0["kid"].clone();
        assert!(!kids.contains(&kid), "rotation {rotation}: the restarted provider signs with a new key");
        kids.push(kid);

        assert_eq!(gate.get("/", &new).await.status(), 200, "rotation {rotation}: the new kid caused a JWKS refetch");
        gate.assert_invalid(&old, "unknown signing key").await;
        old = new;
    }
}

/// An opaque token introspects active at the provider, and inactive once revoked (helpers for gateway introspection).
#[tokio::test]
async fn opaque_token_flow_helpers() {
    let Some(provider) = Provider::start() else { return };
    let token = provider.opaque_token("read").await;
    assert_ne!(token.split('.').count(), 3, "expected an opaque token, got a JWS");

    let info = provider.introspect(&token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], OPAQUE_CLIENT.0);
    assert_eq!(info["aud"], RESOURCE);
    assert_eq!(info["scope"], "read");
    assert_eq!(info["iss"], provider.issuer.as_str());

    provider.revoke(OPAQUE_CLIENT, &token).await;
    let info = provider.introspect(&token).await;
    assert_eq!(info, serde_json::json!({"active": false}));
}

/// Opaque tokens through the gateway: introspected at the provider (endpoint from discovery),
/// admitted with identity headers, and once revoked served from the cache until the
/// positive-cache TTL ends on the gateway's clock, refused from then on; JWTs from the same
/// issuer keep being validated locally (mode auto).
#[tokio::test]
async fn opaque_token_through_gateway_until_revoked() {
    let Some(provider) = Provider::start() else { return };
    // Long, so that only the gateway's manual clock ends the entry within the test.
    const TTL: Duration = Duration::from_secs(60);
    let gate = Gate::start(&provider, &[RESOURCE], |cfg| {
        let idp = &mut cfg.issuers[0];
        idp.mode = TokenMode::Auto;
        idp.introspection = Some(Introspection {
            cache_max_ttl: TTL,
            negative_ttl: Duration::from_secs(5),
            ..introspection(RESOURCE_SERVER.0, RESOURCE_SERVER.1, ClientAuthMethod::ClientSecretBasic)
        });
    })
    .await;
    let token = provider.opaque_token("read").await;
    assert_eq!(gate.get("/orders", &token).await.status(), 200);
    let seen = gate.up.last().headers;
    assert_eq!(seen["x-auth-client-id"], OPAQUE_CLIENT.0);
    assert_eq!(seen["x-auth-scopes"], "read");
    // Route policy applies to opaque tokens.
    assert_insufficient(&gate.up, gate.request("/write/orders", &token), LACKS_SCOPE, "write").await;

    let jwt = provider.jwt_token("read").await;
    assert_eq!(gate.get("/orders", &jwt).await.status(), 200, "a JWT from the same issuer still validates locally");

    provider.revoke(OPAQUE_CLIENT, &token).await;
    gate.clock.advance(TTL - Duration::from_millis(1));
    assert_eq!(gate.get("/orders", &token).await.status(), 200, "the cached answer ended before its TTL");
    gate.clock.advance(Duration::from_millis(1));
    gate.assert_invalid(&token, "token is not active").await;
}
