//! The OAuth 2.0 endpoints of the development issuer: token (RFC 6749 §4.4 client credentials,
//! RFC 8707 resource indicators, RFC 9068 JWT access tokens or opaque tokens), introspection
//! (RFC 7662) and revocation (RFC 7009). Pure request → response functions over [`State`]; the
//! HTTP plumbing (methods, body limits, failure modes) lives in `server`.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::Validation;
use serde_json::{json, Map, Value};

use super::clients::{parse_basic, DevClient, TokenFormat};
use super::server::{json_response, State};
use crate::secret::Digest;

/// `realm` of the `WWW-Authenticate: Basic` challenge sent with `invalid_client`.
pub const REALM: &str = "tokengate-dev-issuer";

/// Claims of an issued token, as introspection reports them.
type Claims = Map<String, Value>;

/// Server-side token state: opaque tokens with their claims, and the `jti`s of revoked JWTs.
#[derive(Default)]
pub(crate) struct TokenStore {
    /// SHA-256(token) → claims (including `exp` and `client_id`).
    opaque: HashMap<Digest, Claims>,
    /// Revoked JWT `jti` → its `exp`, kept until then.
    revoked_jtis: HashMap<String, u64>,
}

impl TokenStore {
    fn prune(&mut self, now: u64) {
        self.opaque.retain(|_, claims| exp_of(claims).is_some_and(|exp| exp > now));
        self.revoked_jtis.retain(|_, exp| *exp > now);
    }
}

fn exp_of(claims: &Claims) -> Option<u64> {
    claims.get("exp").and_then(Value::as_u64)
}

fn digest(token: &str) -> Digest {
    Digest::of(token)
}

/// An RFC 6749 §5.2 error response.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError { status, code, description: description.into() }
    }

    fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Always 401 with a Basic challenge: RFC 6749 §5.2 requires it when the client used Basic,
    /// and RFC 9110 §15.5.2 requires a challenge on every 401.
    fn invalid_client(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response =
            json_response(self.status, &json!({ "error": self.code, "error_description": self.description }));
        no_store(&mut response);
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")).expect("static realm");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn no_store(response: &mut Response<Full<Bytes>>) {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A parsed `application/x-www-form-urlencoded` request body.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// RFC 6749 §3.2 (the body must be form-encoded) and §3.1 (a parameter without a value is
    /// treated as omitted).
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Form, OAuthError> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
        }
        let params =
            form_urlencoded::parse(body).filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.into_owned(), v.into_owned()));
        Ok(Form(params.collect()))
    }

    /// A parameter that may appear at most once (RFC 6749 §3.2).
    fn single(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        match self.all(name)[..] {
            [] => Ok(None),
            [value] => Ok(Some(value)),
            _ => Err(OAuthError::invalid_request(format!("parameter {name} is repeated"))),
        }
    }

    fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.single(name)?.ok_or_else(|| OAuthError::invalid_request(format!("parameter {name} is required")))
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Client authentication (RFC 6749 §2.3.1): `client_secret_basic` or `client_secret_post`,
/// never both.
fn authenticate<'s>(state: &'s State, headers: &HeaderMap, form: &Form) -> Result<&'s DevClient, OAuthError> {
    let body_id = form.single("client_id")?;
    let body_secret = form.single("client_secret")?;
    let (id, secret) = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let Some((id, secret)) = value.to_str().ok().and_then(parse_basic) else {
                return Err(OAuthError::invalid_client("the Authorization header is not valid Basic credentials"));
            };
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request("more than one client authentication method (RFC 6749 §2.3)"));
            }
            if body_id.is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::invalid_request("client_id does not match the Basic credentials"));
            }
            (id, secret)
        }
        None => match (body_id, body_secret) {
            (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            (Some(_), None) => return Err(OAuthError::invalid_client("client_secret is required")),
            (None, _) => return Err(OAuthError::invalid_client("client authentication is required")),
        },
    };
    state.clients.authenticate(&id, &secret).ok_or_else(|| OAuthError::invalid_client("client authentication failed"))
}

/// `POST /token`: the client credentials grant (RFC 6749 §4.4).
pub(crate) fn token(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Response<Full<Bytes>>, OAuthError> {
    let form = Form::parse(headers, body)?;
    let client = authenticate(state, headers, &form)?;
    match form.required("grant_type")? {
        "client_credentials" => {}
        other => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; only client_credentials"),
            ))
        }
    }
    let scopes = granted_scopes(client, form.single("scope")?)?;
    let audiences = granted_audiences(client, form.all("resource"))?;
    let now = state.now();
    let lifetime = client.token_lifetime.as_secs();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).expect("random jti");
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(state.issuer));
    claims.insert("sub".into(), json!(client.client_id));
    claims.insert("aud".into(), if audiences.len() == 1 { json!(audiences[0]) } else { json!(audiences) });
    claims.insert("client_id".into(), json!(client.client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + lifetime));
    claims.insert("jti".into(), json!(URL_SAFE_NO_PAD.encode(jti)));
    let scope = scopes.join(" ");
    if !scope.is_empty() {
        claims.insert("scope".into(), json!(scope));
    }
    let access_token = match client.token_format {
        TokenFormat::Jwt => {
            let keys = state.keys.load();
            let Some(key) = keys.first() else {
                return Err(OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "no signing key"));
            };
            let header = json!({ "alg": key.alg, "kid": key.kid, "typ": "at+jwt" });
            key.sign_raw(&header, &Value::Object(claims))
        }
        TokenFormat::Opaque => {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).expect("random token");
            let token = URL_SAFE_NO_PAD.encode(bytes);
            let mut store = state.tokens.lock().expect("token store lock");
            store.prune(now);
            store.opaque.insert(digest(&token), claims);
            token
        }
    };
    let mut body = json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": lifetime });
    if !scope.is_empty() {
        body["scope"] = json!(scope);
    }
    let mut response = json_response(StatusCode::OK, &body);
    no_store(&mut response);
    Ok(response)
}

/// The requested scopes (RFC 6749 §3.3), each one the client's; all of the client's by default.
fn granted_scopes(client: &DevClient, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else { return Ok(client.scopes.clone()) };
    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !client.scopes.iter().any(|allowed| allowed == scope) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("scope {scope:?} is not allowed for this client"),
            ));
        }
        if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_owned());
        }
    }
    if granted.is_empty() {
        return Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", "scope is empty"));
    }
    Ok(granted)
}

/// The requested resources (RFC 8707 §2), each one of the client's audiences; the client's first
/// audience by default.
fn granted_audiences(client: &DevClient, requested: Vec<&str>) -> Result<Vec<String>, OAuthError> {
    let mut granted: Vec<String> = Vec::new();
    for resource in requested {
        if !client.audiences.iter().any(|a| a == resource) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                format!("resource {resource:?} is not available to this client"),
            ));
        }
        if !granted.iter().any(|g| g == resource) {
            granted.push(resource.to_owned());
        }
    }
    if granted.is_empty() {
        granted.push(client.audiences[0].clone());
    }
    Ok(granted)
}

/// `POST /introspect` (RFC 7662 §2): any registered client may ask about any token.
pub(crate) fn introspect(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Response<Full<Bytes>>, OAuthError> {
    let form = Form::parse(headers, body)?;
    authenticate(state, headers, &form)?;
    let token = form.required("token")?;
    // token_type_hint is optional and only an optimisation (RFC 7662 §2.1): ignored.
    let _ = form.single("token_type_hint")?;
    let now = state.now();
    let body = match active_claims(state, token, now) {
        Some(claims) => {
            let mut answer = Map::new();
            answer.insert("active".into(), json!(true));
            for name in ["scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti"] {
                if let Some(value) = claims.get(name) {
                    answer.insert(name.into(), value.clone());
                }
            }
            answer.insert("token_type".into(), json!("Bearer"));
            Value::Object(answer)
        }
        None => json!({ "active": false }),
    };
    let mut response = json_response(StatusCode::OK, &body);
    no_store(&mut response);
    Ok(response)
}

/// `POST /revoke` (RFC 7009 §2): the token stops introspecting as active. Unknown, invalid and
/// expired tokens are answered 200 too (§2.2); a token issued to another client is refused.
pub(crate) fn revoke(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Response<Full<Bytes>>, OAuthError> {
    let form = Form::parse(headers, body)?;
    let client = authenticate(state, headers, &form)?;
    let token = form.required("token")?;
    let _ = form.single("token_type_hint")?;
    let now = state.now();
    if let Some(claims) = active_claims(state, token, now) {
        if claims.get("client_id").and_then(Value::as_str) != Some(client.client_id.as_str()) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "the token was not issued to this client (RFC 7009 §2.1)",
            ));
        }
        let mut store = state.tokens.lock().expect("token store lock");
        store.prune(now);
        if store.opaque.remove(&digest(token)).is_none() {
            if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
                store.revoked_jtis.insert(jti.to_owned(), exp_of(&claims).unwrap_or(now));
            }
        }
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    no_store(&mut response);
    Ok(response)
}

/// The claims of a live token this issuer issued: an opaque token in the store, or a JWT that
/// verifies against a published key (header `typ: at+jwt`, our `iss`), not expired, not yet
/// valid (`nbf`) or revoked. `None` for anything else.
fn active_claims(state: &State, token: &str, now: u64) -> Option<Claims> {
    {
        let store = state.tokens.lock().expect("token store lock");
        if let Some(claims) = store.opaque.get(&digest(token)) {
            return exp_of(claims).is_some_and(|exp| exp > now).then(|| claims.clone());
        }
    }
    let claims = verify_jwt(state, token)?;
    if exp_of(&claims).is_none_or(|exp| exp <= now) {
        return None;
    }
    if claims.get("nbf").is_some_and(|nbf| nbf.as_u64().is_none_or(|nbf| nbf > now)) {
        return None;
    }
    if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
        if state.tokens.lock().expect("token store lock").revoked_jtis.contains_key(jti) {
            return None;
        }
    }
    Some(claims)
}

/// Signature, `typ` and `iss` of a JWT against the currently published keys (time is checked by
/// the caller, on the issuer's clock).
fn verify_jwt(state: &State, token: &str) -> Option<Claims> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if !header.typ.as_deref().is_some_and(|typ| typ.eq_ignore_ascii_case("at+jwt")) {
        return None;
    }
    let kid = header.kid?;
    let keys = state.keys.load();
    let key = keys.iter().find(|k| k.kid == kid)?;
    let mut validation = Validation::new(key.alg);
    validation.set_issuer(&[&state.issuer]);
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Claims>(token, key.decoding_key(), &validation).ok()?;
    Some(data.claims)
}
