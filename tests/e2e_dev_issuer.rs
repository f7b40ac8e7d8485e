//! The whole flow against the embedded dev issuer acting as a real authorization server:
//! client_credentials at its token endpoint (JWT and opaque clients), calls through tokengate,
//! RFC 7009 revocation, and key rotation without restarting the gateway. The gateway reads a
//! `ManualClock`, so a cached introspection answer ends when a test moves it, not after a wait.

mod support;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use support::*;
use tokengate::config::{ClientAuthMethod, Introspection, KeySource, TokenMode};
use tokengate::dev_issuer::{basic_authorization, DevClient, DevIssuer, SigningKey, TokenFormat};

const AUD: &str = "orders";
/// The positive-cache TTL. Long, so that only the manual clock ends an entry within a test.
const TTL: Duration = Duration::from_secs(60);

struct Flow {
    idp: DevIssuer,
    up: Upstream,
    gw: tokengate::app::Running,
    clock: ManualClock,
}

impl Flow {
    async fn start() -> Flow {
        let idp = DevIssuer::builder()
            .keys(vec![Arc::new(SigningKey::rsa("r1", Algorithm::RS256))])
            .client(DevClient::new("jwt-app", "jwt-secret").with_scopes(&["read", "write"]).with_audiences(&[AUD]))
            .client(
                DevClient::new("opaque-app", "opaque-secret")
                    .with_scopes(&["read"])
                    .with_audiences(&[AUD])
                    .with_format(TokenFormat::Opaque),
            )
            .client(DevClient::new("gateway", "gateway-secret").with_audiences(&[AUD]))
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let up = Upstream::start().await;
        let mut idp_cfg = issuer(idp.issuer(), "", &[AUD]);
        idp_cfg.keys = KeySource::Discovery;
        idp_cfg.require_at_jwt = true;
        idp_cfg.mode = TokenMode::Auto;
        idp_cfg.introspection = Some(Introspection {
            cache_max_ttl: TTL,
            negative_ttl: Duration::from_secs(5),
            ..introspection("gateway", "gateway-secret", ClientAuthMethod::ClientSecretPost)
        });
        let mut cfg = config(
            &up.url(),
            vec![idp_cfg],
            vec![required_route("write", "/write", &["write"]), required_route("read", "/", &["read"])],
        );
        cfg.jwks.unknown_kid_cooldown = Duration::from_millis(1);
        let clock = ManualClock::starting_now();
        let gw = gateway_with_clock(cfg, &clock).await;
        wait_ready(&gw).await;
        Flow { idp, up, gw, clock }
    }

    /// client_credentials with client_secret_basic, asking for `resource` = the API.
    async fn token(&self, (id, secret): (&str, &str), scope: &str) -> String {
        self.idp.client_credentials(id, secret, &[("scope", scope), ("resource", AUD)]).await
    }

    async fn get(&self, path: &str, token: &str) -> u16 {
        self.request(path, token).send().await.unwrap().status().as_u16()
    }

    /// GET `path` with `token`, ready for `assert_refused`.
    fn request(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        client(false).get(format!("http://{}{path}", self.gw.addr)).bearer_auth(token)
    }
}

/// A JWT from the token endpoint passes with identity headers; scopes are enforced per route.
#[tokio::test]
async fn jwt_client_credentials() {
    let flow = Flow::start().await;
    let token = flow.token(("jwt-app", "jwt-secret"), "read").await;
    assert_eq!(token.split('.').count(), 3);
    assert_eq!(flow.get("/orders", &token).await, 200);
    assert_eq!(flow.up.last().headers["x-auth-client-id"], "jwt-app");
    assert_insufficient(&flow.up, flow.request("/write/orders", &token), LACKS_SCOPE, "write").await;
    let both = flow.token(("jwt-app", "jwt-secret"), "read write").await;
    assert_eq!(flow.get("/write/orders", &both).await, 200);
}

/// An opaque token is introspected; once revoked it is still served from the cache until the
/// positive-cache TTL ends (RFC 7662 §4 trades that freshness for load), and refused from then on.
#[tokio::test]
async fn opaque_client_credentials_and_revocation() {
    let flow = Flow::start().await;
    let token = flow.token(("opaque-app", "opaque-secret"), "read").await;
    assert_ne!(token.split('.').count(), 3);
    assert_eq!(flow.get("/orders", &token).await, 200);
    assert_eq!(flow.up.last().headers["x-auth-client-id"], "opaque-app");
    let calls = flow.idp.introspection_requests();
    assert_eq!(flow.get("/orders", &token).await, 200);
    assert_eq!(flow.idp.introspection_requests(), calls, "the second request was served from the cache");

    let resp = client(false)
        .post(flow.idp.revocation_endpoint())
        .header("authorization", basic_authorization("opaque-app", "opaque-secret"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    flow.clock.advance(TTL - Duration::from_millis(1));
    assert_eq!(flow.get("/orders", &token).await, 200, "the cached answer ended before its TTL");
    assert_eq!(flow.idp.introspection_requests(), calls, "introspected again before the TTL ended");
    flow.clock.advance(Duration::from_millis(1));
    assert_eq!(flow.get("/orders", &token).await, 401, "a revoked token was served past the cache TTL");
    assert_eq!(flow.idp.introspection_requests(), calls + 1);
    assert_token_refused(&flow.gw, &flow.up, &token, "token is not active").await;
}

/// Key rotation at the issuer: new tokens pass at once, old-key tokens are refused, no restart.
#[tokio::test]
async fn rotation_without_restart() {
    let flow = Flow::start().await;
    let old = flow.token(("jwt-app", "jwt-secret"), "read").await;
    assert_eq!(flow.get("/", &old).await, 200);
    flow.idp.set_keys(vec![Arc::new(SigningKey::ec("e2", Algorithm::ES256))]);
    let new = flow.token(("jwt-app", "jwt-secret"), "read").await;
    assert_eq!(flow.get("/", &new).await, 200);
    assert_token_refused(&flow.gw, &flow.up, &old, "unknown signing key").await;
}
