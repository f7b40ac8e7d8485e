//! The environment of one IdP test: its fake IdP, an upstream that records what reached it, and
//! the gateway started from YAML text through the real loader (`config::load_text`), ready.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tokengate::config::{Config, ConfigError};

use crate::fake_idp::FakeIdp;
use crate::support::{assert_refused, client, gateway, wait_ready, Seen, Upstream};

/// The refusal of a token for another API (and of an ID token, whose `aud` is a client).
pub const WRONG_AUDIENCE: &str = "token is not intended for this audience";
/// An `iss` that is none of the configured issuers' spellings (with its `tid`, for templates).
pub const UNKNOWN_ISSUER: &str = "unknown issuer";
/// The issuer's `required_claims` refused it: Cognito's and Keycloak's ID tokens.
pub const NOT_AN_ACCESS_TOKEN: &str = "token is not an access token of this issuer (a required claim does not match)";
pub const LACKS_ROLE: &str = "token lacks a required role";

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `yaml` behind a head of ephemeral loopback ports and realm `test`, `${NAME}` taken from
/// `vars`, through the loader a user's file goes through.
pub fn try_load(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let head = "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nrealm: test\n";
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokengate::config::load_text(Path::new("idp.yaml"), &format!("{head}{yaml}"), &env)
}

pub fn load(yaml: &str, vars: &[(&str, &str)]) -> Config {
    try_load(yaml, vars).unwrap_or_else(|e| panic!("{e}"))
}

pub struct Env {
    pub idp: FakeIdp,
    pub up: Upstream,
    pub gw: tokengate::app::Running,
}

impl Env {
    /// The gateway for `yaml`, which may name `${IDP}` (the fake IdP's base URL), `${UP}` (the
    /// upstream's) and `vars`; returns once every issuer's keys are loaded (`/readyz`).
    pub async fn start(idp: FakeIdp, yaml: &str, vars: &[(&str, &str)]) -> Env {
        let up = Upstream::start().await;
        let (base, up_url) = (idp.base(), up.url());
        let mut all = vec![("IDP", base.as_str()), ("UP", up_url.as_str())];
        all.extend_from_slice(vars);
        let gw = gateway(load(yaml, &all)).await;
        wait_ready(&gw).await;
        Env { idp, up, gw }
    }

    fn request(&self, method: &str, path: &str, token: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        client(false).request(method, format!("http://{}{path}", self.gw.addr)).bearer_auth(token)
    }

    /// GET `path` with `token` is forwarded; what the upstream saw of it.
    pub async fn admitted(&self, path: &str, token: &str) -> Seen {
        self.admitted_as("GET", path, token).await
    }

    pub async fn admitted_as(&self, method: &str, path: &str, token: &str) -> Seen {
        let before = self.up.count();
        let resp = self.request(method, path, token).send().await.unwrap();
        let status = resp.status();
        assert_eq!(status, 200, "{method} {path}: {}", resp.text().await.unwrap());
        assert_eq!(self.up.count(), before + 1);
        let seen = self.up.last();
        assert_eq!((seen.method.as_str(), seen.target.as_str()), (method, path));
        seen
    }

    /// GET `path` with `token` is 401 invalid_token for exactly `reason`, nothing forwarded.
    pub async fn refused(&self, path: &str, token: &str, reason: &str) {
        assert_refused(&self.up, self.request("GET", path, token), 401, Some("invalid_token"), reason).await;
    }

    /// GET `path` with `token` is 403 insufficient_scope for a missing role; the route asks for
    /// no scope, so the challenge names none.
    pub async fn lacks_role(&self, path: &str, token: &str) {
        let rest =
            assert_refused(&self.up, self.request("GET", path, token), 403, Some("insufficient_scope"), LACKS_ROLE)
                .await;
        assert_eq!(rest, "", "a roles-only route has no scope to name in the challenge");
    }

    /// GET `path` with `token` is 503 for `reason` (the gateway could not decide).
    pub async fn unavailable(&self, path: &str, token: &str, reason: &str) {
        assert_refused(&self.up, self.request("GET", path, token), 503, None, reason).await;
    }
}

/// The upstream saw exactly these identity header values.
pub fn assert_identity(seen: &Seen, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        let got = seen.headers.get(*name).map(|v| v.to_str().unwrap());
        assert_eq!(got, Some(*value), "{name} in {:?}", seen.headers);
    }
}

/// The upstream saw no such header.
pub fn assert_no_header(seen: &Seen, name: &str) {
    assert!(!seen.headers.contains_key(name), "{name} reached the upstream: {:?}", seen.headers);
}
