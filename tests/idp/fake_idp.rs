//! A fake identity provider on an ephemeral loopback port: JSON documents (discovery, JWKS) at
//! the paths the real IdP uses, with its cache headers, and optionally Google's tokeninfo
//! endpoint. Every request is recorded, so tests can check what the gateway sent and where.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Google's answer to a token it does not know (or no longer does): HTTP 400 with this body.
pub const TOKENINFO_INVALID: &str = r#"{"error":"invalid_token","error_description":"Invalid Value"}"#;

/// One request the fake IdP received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    pub authorization: Option<String>,
    pub body: String,
}

struct Document {
    body: String,
    headers: Vec<(String, String)>,
}

/// Google's tokeninfo endpoint: known tokens and their 200 answers; anything else is 400.
#[derive(Default)]
struct Tokeninfo {
    path: String,
    tokens: HashMap<String, Value>,
    /// Answer every call with this status instead (Google having a bad day).
    status: Option<u16>,
}

#[derive(Default)]
struct State {
    documents: HashMap<String, Document>,
    tokeninfo: Option<Tokeninfo>,
    received: Vec<Received>,
}

pub struct FakeIdp {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIdp {
    pub async fn start() -> FakeIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(req, &state).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeIdp { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve `doc` as JSON at `path` (GET).
    pub fn serve(&self, path: &str, doc: &Value) {
        self.serve_with(path, doc, &[]);
    }

    /// The same with extra response headers (`Cache-Control` as the IdP sends it).
    pub fn serve_with(&self, path: &str, doc: &Value, headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let document = Document { body: doc.to_string(), headers };
        self.state.lock().unwrap().documents.insert(path.to_owned(), document);
    }

    /// Answer Google's tokeninfo protocol at `path`.
    pub fn tokeninfo_at(&self, path: &str) {
        self.state.lock().unwrap().tokeninfo = Some(Tokeninfo { path: path.to_owned(), ..Tokeninfo::default() });
    }

    /// tokeninfo answers 200 with `answer` for `token`.
    pub fn tokeninfo_knows(&self, token: &str, answer: Value) {
        let mut state = self.state.lock().unwrap();
        state.tokeninfo.as_mut().expect("tokeninfo_at first").tokens.insert(token.to_owned(), answer);
    }

    /// tokeninfo answers every call with `status` (`None`: normally again).
    pub fn tokeninfo_fails(&self, status: Option<u16>) {
        self.state.lock().unwrap().tokeninfo.as_mut().expect("tokeninfo_at first").status = status;
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The requests whose path (the target without its query) is `path`.
    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.target.split('?').next() == Some(path)).collect()
    }
}

async fn answer(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let path = req.uri().path().to_owned();
    let authorization = req.headers().get("authorization").map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut state = state.lock().unwrap();
    state.received.push(Received {
        method: method.clone(),
        target,
        authorization: authorization.clone(),
        body: body.clone(),
    });
    if let Some(tokeninfo) = state.tokeninfo.as_ref().filter(|t| t.path == path) {
        return tokeninfo_answer(tokeninfo, authorization.as_deref(), &body);
    }
    match state.documents.get(&path).filter(|_| method == "GET") {
        Some(doc) => {
            let mut response = reply(200, doc.body.clone());
            for (name, value) in &doc.headers {
                response
                    .headers_mut()
                    .insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
            }
            response
        }
        None => reply(404, json!({"error": "not_found"}).to_string()),
    }
}

/// Google accepts the access token as `Authorization: Bearer` (what its client library sends) or
/// as a form field `access_token` (its documentation's form; also in a query string, which
/// the tests check the gateway never uses).
fn tokeninfo_answer(tokeninfo: &Tokeninfo, authorization: Option<&str>, body: &str) -> Response<Full<Bytes>> {
    if let Some(status) = tokeninfo.status {
        return reply(status, json!({"error": "internal_failure"}).to_string());
    }
    let from_form =
        form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned());
    let token = authorization.and_then(|a| a.strip_prefix("Bearer ")).map(str::to_owned).or(from_form);
    match token.and_then(|t| tokeninfo.tokens.get(&t)) {
        Some(claims) => reply(200, claims.to_string()),
        None => reply(400, TOKENINFO_INVALID.to_owned()),
    }
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::from(body))
        .unwrap()
}
