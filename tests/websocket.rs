//! WebSockets (HTTP/1.1 `Upgrade`) through the gateway, end to end over real sockets: a real
//! WebSocket client (tokio-tungstenite), the real gateway, and a real upstream that answers
//! upgrades with a WebSocket echo (and, on some paths, the wrong answers) and ordinary requests
//! with 200. The upstream records every request head and counts its connections.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use support::*;
use tokengate::dev_issuer::DevIssuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// A real upstream: WebSocket echo on upgrade requests (a text `bye` makes it close the
/// WebSocket), 200 `ok` on anything else. `/wrong-protocol` answers an upgrade with 101 for
/// `foo`; `/no-upgrade` answers it with an ordinary 200.
struct WsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    connections: Arc<AtomicUsize>,
}

impl WsUpstream {
    async fn start() -> WsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, accepted) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let seen = seen2.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(answer(req, &seen)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades(),
                );
            }
        });
        WsUpstream { addr, seen, connections }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<(String, HeaderMap)> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> HeaderMap {
        self.seen().pop().expect("the upstream saw a request").1
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn answer(mut req: Request<Incoming>, seen: &Mutex<Vec<(String, HeaderMap)>>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    seen.lock().unwrap().push((path.clone(), req.headers().clone()));
    let key = req.headers().get("sec-websocket-key").cloned();
    let (Some(key), false) = (key, path == "/no-upgrade") else {
        return Response::new(Full::new(Bytes::from_static(b"ok")));
    };
    let protocol = if path == "/wrong-protocol" { "foo" } else { "websocket" };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Message::Text(t) if t.as_str() == "bye" => {
                    let _ = ws.close(None).await;
                    return;
                }
                m @ (Message::Text(_) | Message::Binary(_)) => {
                    let sent = ws.send(m).await;
                    if sent.is_err() {
                        return;
                    }
                }
                _ => {}
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", protocol)
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

struct Env {
    idp: DevIssuer,
    up: WsUpstream,
    gw: tokengate::app::Running,
}

type Ws = WebSocketStream<TcpStream>;

impl Env {
    /// `/` requires scope `chat`; the token is not forwarded (`identity.forward_authorization`).
    async fn start(tweak: impl FnOnce(&mut tokengate::config::Config)) -> Env {
        let idp = dev_issuer("k").await;
        let up = WsUpstream::start().await;
        let mut cfg = config(
            &up.url(),
            vec![issuer(idp.issuer(), &idp.jwks_uri(), &["api"])],
            vec![public_route("public", "/public"), required_route("chat", "/", &["chat"])],
        );
        cfg.identity.forward_authorization = false;
        tweak(&mut cfg);
        let gw = gateway(cfg).await;
        wait_ready(&gw).await;
        Env { idp, up, gw }
    }

    fn token(&self, scope: &str) -> String {
        self.idp.mint(serde_json::json!({"sub": "alice", "aud": "api", "scope": scope}))
    }

    /// A WebSocket handshake to `path` through the gateway with `headers` added.
    async fn connect(&self, path: &str, headers: &[(&str, &str)]) -> Result<(Ws, Response<Option<Vec<u8>>>), WsError> {
        let mut request = format!("ws://{}{path}", self.gw.addr).into_client_request().unwrap();
        for (name, value) in headers {
            request
                .headers_mut()
                .append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let tcp = TcpStream::connect(self.gw.addr).await.unwrap();
        tokio_tungstenite::client_async(request, tcp).await
    }

    /// A WebSocket to `/ws` with a token that has scope `chat`.
    async fn chat(&self) -> Ws {
        let bearer = format!("Bearer {}", self.token("chat"));
        self.connect("/ws", &[("authorization", &bearer)]).await.expect("the upgrade succeeds").0
    }

    /// Until `tokengate_tunnels_open` on the admin listener's `/metrics` reads `n` (bounded).
    async fn wait_tunnels_open(&self, n: u64) {
        let url = format!("http://{}/metrics", self.gw.admin_addr);
        let deadline = Instant::now() + WAIT;
        loop {
            let text = client(false).get(&url).send().await.unwrap().text().await.unwrap();
            let open =
                text.lines().find_map(|l| l.strip_prefix("tokengate_tunnels_open ")).map(|v| v.trim().to_owned());
            if open.as_deref() == Some(&n.to_string()) {
                return;
            }
            assert!(Instant::now() < deadline, "tokengate_tunnels_open is {open:?}, expected {n}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn closed_by(&self, closer: &str) -> u64 {
        self.gw.metrics.tunnels.with_label_values(&[closer]).get()
    }
}

/// The next data message, within WAIT.
async fn next(ws: &mut Ws) -> Message {
    let message = tokio::time::timeout(WAIT, ws.next()).await.expect("a message within WAIT");
    message.expect("the WebSocket is open").expect("a message")
}

/// The WebSocket ends (a close frame, an error or the end of the stream), within WAIT.
async fn ends(ws: &mut Ws) {
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket did not end within {WAIT:?}");
}

/// Text and binary frames are echoed through the gateway. The upstream saw the upgrade
/// (`Upgrade` and `Connection: upgrade` kept through hop-by-hop stripping), the gateway's
/// identity headers, and no token (`forward_authorization: false`).
#[tokio::test]
async fn echo_through_the_gateway_with_identity_and_without_the_token() {
    let env = Env::start(|_| {}).await;
    let bearer = format!("Bearer {}", env.token("chat"));
    let (mut ws, response) = env.connect("/ws", &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(response.status(), 101);
    assert!(response.headers().contains_key("x-request-id"));
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    let binary = vec![0u8, 1, 2, 0xff, b'\n', b'\r', 0];
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(binary));
    let seen = env.up.last();
    assert_eq!(seen["upgrade"], "websocket");
    assert_eq!(seen["connection"], "upgrade");
    assert!(seen.contains_key("sec-websocket-key"));
    assert_eq!(seen["x-auth-subject"], "alice");
    assert_eq!(seen["x-auth-scopes"], "chat");
    assert!(!seen.contains_key("authorization"), "the token reached the upstream: {seen:?}");
    env.wait_tunnels_open(1).await;
    ws.close(None).await.unwrap();
    ends(&mut ws).await;
    drop(ws);
    env.wait_tunnels_open(0).await;
}

/// Without a token: 401 with the challenge, `Connection: close`, and the upstream never saw a
/// connection. Frames sent right behind the head (before any answer) change nothing, and the
/// connection is closed after the refusal.
#[tokio::test]
async fn refused_without_a_token_nothing_reaches_the_upstream() {
    let env = Env::start(|_| {}).await;
    let Err(WsError::Http(response)) = env.connect("/ws", &[]).await else { panic!("the upgrade was not refused") };
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"test\"");
    assert_eq!(response.headers()["connection"], "close");

    let head = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut request = head.as_bytes().to_vec();
    // A masked text frame, "hello", sent before any answer.
    request.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    let answer = raw(env.gw.addr, &request).await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert_eq!((env.up.connections(), env.up.seen().len()), (0, 0), "the upstream saw the refused upgrade");
    assert_eq!(env.gw.metrics.tunnels_open.get(), 0);
}

/// A token without the route's scope: 403 `insufficient_scope`, nothing upstream.
#[tokio::test]
async fn refused_for_insufficient_scope() {
    let env = Env::start(|_| {}).await;
    let bearer = format!("Bearer {}", env.token("read"));
    let Err(WsError::Http(response)) = env.connect("/ws", &[("authorization", &bearer)]).await else {
        panic!("the upgrade was not refused")
    };
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"chat\""), "{challenge}");
    assert_eq!(env.up.connections(), 0);
}

/// Identity headers the client forges on the upgrade request never reach the upstream, in any
/// spelling, nor can `Connection` name one of them to have the next hop drop the real one.
#[tokio::test]
async fn spoofed_identity_on_an_upgrade_never_reaches_the_upstream() {
    let env = Env::start(|_| {}).await;
    let bearer = format!("Bearer {}", env.token("chat"));
    let forged = [
        ("authorization", bearer.as_str()),
        ("x-auth-subject", "mallory"),
        ("x_auth_subject", "mallory"),
        ("x-auth-claims", "e30"),
        ("connection", "x-auth-scopes, keep-alive"),
        ("keep-alive", "timeout=5"),
    ];
    let (mut ws, _) = env.connect("/ws", &forged).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hi"));
    let seen = env.up.last();
    assert_eq!(seen.get_all("x-auth-subject").iter().collect::<Vec<_>>(), ["alice"]);
    assert!(!seen.contains_key("x_auth_subject"));
    assert_ne!(seen["x-auth-claims"], "e30");
    assert_eq!(seen["x-auth-scopes"], "chat");
    assert_eq!(seen.get_all("connection").iter().collect::<Vec<_>>(), ["upgrade"]);
    assert!(!seen.contains_key("keep-alive"));
}

/// A 101 for a protocol the client did not ask for is the upstream's fault: 502, and the
/// client connection is closed.
#[tokio::test]
async fn switching_to_another_protocol_is_a_bad_gateway() {
    let env = Env::start(|_| {}).await;
    let bearer = format!("Bearer {}", env.token("chat"));
    let Err(WsError::Http(response)) = env.connect("/wrong-protocol", &[("authorization", &bearer)]).await else {
        panic!("a 101 for `foo` was tunnelled")
    };
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(env.gw.metrics.tunnels_open.get(), 0);
    assert_eq!(env.closed_by("error") + env.closed_by("client") + env.closed_by("upstream"), 0, "no tunnel began");
}

/// An upstream that answers an upgrade request with 200 is answered as any request, and the
/// client connection is closed after it.
#[tokio::test]
async fn an_ordinary_answer_to_an_upgrade_is_passed_through() {
    let env = Env::start(|_| {}).await;
    let bearer = format!("Bearer {}", env.token("chat"));
    let Err(WsError::Http(response)) = env.connect("/no-upgrade", &[("authorization", &bearer)]).await else {
        panic!("a 200 was taken for an upgrade")
    };
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(env.up.seen().len(), 1);
}

/// A tunnel with no byte either way for `server.tunnel_idle_timeout` is closed, both sides.
#[tokio::test]
async fn idle_tunnel_is_closed() {
    let idle = Duration::from_millis(300);
    let env = Env::start(|c| c.server.tunnel_idle_timeout = idle).await;
    let mut ws = env.chat().await;
    ws.send(Message::text("once")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("once"));
    let quiet_since = Instant::now();
    ends(&mut ws).await;
    assert!(quiet_since.elapsed() >= idle - Duration::from_millis(50), "closed after {:?}", quiet_since.elapsed());
    env.wait_tunnels_open(0).await;
    assert_eq!(env.closed_by("idle"), 1);
}

/// Either end closing ends the tunnel: the gauge returns to 0 and the end that closed first
/// is counted.
#[tokio::test]
async fn either_side_closing_ends_the_tunnel() {
    let env = Env::start(|_| {}).await;

    // The upstream closes (after `bye`).
    let mut ws = env.chat().await;
    env.wait_tunnels_open(1).await;
    ws.send(Message::text("bye")).await.unwrap();
    ends(&mut ws).await;
    drop(ws);
    env.wait_tunnels_open(0).await;
    assert_eq!(env.closed_by("upstream"), 1);

    // The client goes away without a close frame.
    let mut ws = env.chat().await;
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("x"));
    env.wait_tunnels_open(1).await;
    drop(ws);
    env.wait_tunnels_open(0).await;
    assert_eq!(env.closed_by("client"), 1);
}

/// A pooled connection can carry an upgrade; the connection a tunnel took is never used again
/// for an ordinary request, during or after the tunnel.
#[tokio::test]
async fn tunnel_connection_is_not_reused() {
    let env = Env::start(|_| {}).await;
    let http = client(false);
    let get = |path: &str| http.get(format!("http://{}{path}", env.gw.addr)).send();
    assert_eq!(get("/public/a").await.unwrap().status(), 200);
    assert_eq!(env.up.connections(), 1);
    let mut ws = env.chat().await;
    assert_eq!(env.up.connections(), 1, "the idle pooled connection carried the upgrade");
    assert_eq!(get("/public/b").await.unwrap().status(), 200);
    assert_eq!(env.up.connections(), 2, "the tunnel's connection is not the pool's");
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("still here"));
    ws.close(None).await.unwrap();
    ends(&mut ws).await;
    drop(ws);
    env.wait_tunnels_open(0).await;
    assert_eq!(get("/public/c").await.unwrap().status(), 200);
    assert_eq!(env.up.connections(), 2, "the pooled connection serves again");
    assert_eq!(env.up.seen().iter().filter(|(p, _)| p == "/ws").count(), 1);
}

/// `Upgrade: h2c` is never tunnelled: the request is forwarded as an ordinary one, without its
/// upgrade fields, and the connection is closed after the answer.
#[tokio::test]
async fn h2c_is_not_tunnelled() {
    let env = Env::start(|_| {}).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nAuthorization: Bearer {}\r\n\r\n",
        env.token("chat")
    );
    let answer = raw(env.gw.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    let seen = env.up.last();
    for gone in ["upgrade", "connection", "http2-settings"] {
        assert!(!seen.contains_key(gone), "{gone} reached the upstream: {seen:?}");
    }
    assert_eq!(env.gw.metrics.tunnels_open.get(), 0);
}

/// On shutdown, a tunnel keeps the drain open at most `server.shutdown_grace`, then it is
/// closed.
#[tokio::test]
async fn shutdown_closes_tunnels_after_the_grace() {
    let grace = Duration::from_millis(300);
    let env = Env::start(|c| c.server.shutdown_grace = grace).await;
    let mut ws = env.chat().await;
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("x"));
    let metrics = env.gw.metrics.clone();
    let started = Instant::now();
    tokio::time::timeout(WAIT, env.gw.shutdown()).await.expect("the drain ends");
    ends(&mut ws).await;
    assert!(started.elapsed() < WAIT);
    assert_eq!(metrics.tunnels_open.get(), 0);
    assert_eq!(metrics.tunnels.with_label_values(&["shutdown"]).get(), 1);
}

/// An upgrade request's head is followed by the new protocol's bytes, which the framing check
/// passes through: a binary frame full of NUL, CR and LF bytes is echoed intact.
#[tokio::test]
async fn frames_that_look_like_bad_framing_pass() {
    let env = Env::start(|_| {}).await;
    let mut ws = env.chat().await;
    let nasty: Vec<u8> =
        b"\r\n\0\n\rGET / HTTP/1.1\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".repeat(50);
    ws.send(Message::binary(nasty.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(nasty));
    assert_eq!(env.gw.metrics.framing_refusals.with_label_values(&["proxy", "nul"]).get(), 0);
}

/// The raw exchange of a tunnel works without any WebSocket library: the bytes after the 101
/// are the upstream's.
#[tokio::test]
async fn raw_upgrade_gets_a_101() {
    let env = Env::start(|_| {}).await;
    let mut tcp = TcpStream::connect(env.gw.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        env.token("chat")
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, tcp.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("upgrade: websocket\r\n") && head.contains("connection: upgrade\r\n"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{head}");
}
