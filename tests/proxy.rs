//! Proxying behaviour on public routes: byte-for-byte targets, hop-by-hop stripping, spoofed
//! identity headers, streaming both ways, upstream failures, HTTP/2, keep-alive, shutdown.

mod support;

use std::future::Future as _;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use support::*;

async fn setup() -> (Upstream, tokengate::app::Running) {
    let upstream = Upstream::start().await;
    let gw = gateway(config(&upstream.url(), vec![], vec![public_route("pub", "/")])).await;
    (upstream, gw)
}

/// Path and query reach the upstream byte-for-byte.
#[tokio::test]
async fn target_forwarded_byte_for_byte() {
    let (up, gw) = setup().await;
    let target = "/a%20b/c;p=1?q=1&q=2&x=%zz&empty=&=&%41";
    let resp = raw(gw.addr, format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(up.last().target, target);
}

/// Hop-by-hop request headers, and those named in Connection, never reach the upstream.
#[tokio::test]
async fn hop_by_hop_request_headers_stripped() {
    let (up, gw) = setup().await;
    let req = "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: foo\r\nProxy-Authorization: Basic eA==\r\nX-Kept: yes\r\n\r\n";
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let h = up.last().headers;
    for gone in ["x-private", "keep-alive", "te", "upgrade", "proxy-authorization"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream");
    }
    assert_eq!(h["x-kept"], "yes");
}

/// Hop-by-hop response headers from the upstream never reach the client.
#[tokio::test]
async fn hop_by_hop_response_headers_stripped() {
    let (_up, gw) = setup().await;
    let resp = client(false).get(format!("http://{}/hop", gw.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-upstream-private").is_none());
    assert!(resp.headers().get("keep-alive").is_none());
    assert_eq!(resp.headers()["x-upstream-public"], "fine");
}

/// Spoofed identity headers are removed on public routes too, in every spelling.
#[tokio::test]
async fn spoofed_identity_removed_on_public_route() {
    let (up, gw) = setup().await;
    let req = "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Auth-Subject: admin\r\nX_Auth_Subject: admin\r\nx-auth-scopes: admin\r\nX-Auth-Claims: e30\r\n\r\n";
    raw(gw.addr, req.as_bytes()).await;
    let h = up.last().headers;
    for spoofed in ["x-auth-subject", "x_auth_subject", "x-auth-scopes", "x-auth-claims"] {
        assert!(h.get(spoofed).is_none(), "{spoofed} reached the upstream");
    }
}

/// X-Forwarded-For/-Proto/-Host are the gateway's own: the client's copies are replaced.
#[tokio::test]
async fn forwarded_headers_set() {
    let (up, gw) = setup().await;
    client(false)
        .get(format!("http://{}/x", gw.addr))
        .header("x-forwarded-for", "203.0.113.9")
        .header("host", "api.example")
        .send()
        .await
        .unwrap();
    let h = up.last().headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.example");
    assert_eq!(h["host"], "api.example");
}

/// No matching route: 404 and nothing forwarded (deny by default).
#[tokio::test]
async fn no_route_is_404() {
    let upstream = Upstream::start().await;
    let gw = gateway(config(&upstream.url(), vec![], vec![public_route("pub", "/public")])).await;
    for path in ["/private", "/publicity"] {
        let resp = client(false).get(format!("http://{}{path}", gw.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "not_found", "error_description": "no route matches this request"})
        );
    }
    assert_eq!(upstream.count(), 0);
}

/// Dot-segment paths are refused before routing, so `/public/../admin` cannot use a public route.
#[tokio::test]
async fn dot_segments_refused() {
    let (up, gw) = setup().await;
    for (path, why) in [
        ("/public/../admin", "path contains a dot-segment"),
        ("/public/%2e%2e/admin", "path contains a dot-segment"),
        ("/public%2f..%2fadmin", "path contains an encoded slash or backslash"),
    ] {
        let resp =
            raw(gw.addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        let body = format!(r#"{{"error":"invalid_request","error_description":"{why}"}}"#);
        assert!(resp.ends_with(&body), "{path}: {resp}");
    }
    assert_eq!(up.count(), 0);
}

/// An upstream that refuses connections gives 502 with a JSON body, quickly.
#[tokio::test]
async fn upstream_refused_is_502() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw = gateway(config(&format!("http://127.0.0.1:{port}"), vec![], vec![public_route("pub", "/")])).await;
    let resp = client(false).get(format!("http://{}/x", gw.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    assert_eq!(body["error_description"], "upstream connection failed");
}

/// An upstream slower than the response timeout gives 504.
#[tokio::test]
async fn upstream_timeout_is_504() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(), vec![], vec![public_route("pub", "/")]);
    cfg.upstream.as_mut().unwrap().response_timeout = Duration::from_millis(200);
    let gw = gateway(cfg).await;
    let resp = client(false).get(format!("http://{}/slow/3000", gw.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error_description"], "upstream did not answer in time");
}

/// HTTP/2 with prior knowledge (h2c) is served and forwarded as HTTP/1.1 with a Host header.
#[tokio::test]
async fn http2_prior_knowledge() {
    let (up, gw) = setup().await;
    let resp = client(true).get(format!("http://{}/h2?x=1", gw.addr)).send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.target, "/h2?x=1");
    assert_eq!(seen.headers["host"], gw.addr.to_string());
}

/// Two requests on one client connection (keep-alive) both succeed.
#[tokio::test]
async fn keep_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, gw) = setup().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out)).await.unwrap().unwrap();
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert_eq!(up.seen().iter().map(|s| s.target.as_str()).collect::<Vec<_>>(), ["/one", "/two"]);
}

/// Sequential requests, even from different clients, reuse one upstream connection; the
/// metric counts what was opened.
#[tokio::test]
async fn upstream_connections_are_reused() {
    let (up, gw) = setup().await;
    for i in 0..20 {
        let c = client(i % 2 == 0);
        let resp = c.get(format!("http://{}/r{i}", gw.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok 0");
    }
    assert_eq!(up.count(), 20);
    assert_eq!(up.connections(), 1, "one keep-alive upstream connection serves them all");
    let metrics = client(false).get(format!("http://{}/metrics", gw.admin_addr)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("tokengate_upstream_connections_opened_total 1\n"), "{metrics}");
}

/// An upstream that closes its connection after answering costs a new connection, not an error.
#[tokio::test]
async fn upstream_closing_connections_is_not_an_error() {
    let (up, gw) = setup().await;
    let c = client(false);
    for i in 0..5 {
        let resp = c.get(format!("http://{}/close/{i}", gw.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
    }
    assert_eq!(up.connections(), 5);
}

/// An upstream that closes every connection right after answering, without saying so (no
/// `Connection: close`), costs new connections but never a failed request.
#[tokio::test]
async fn upstream_silently_closing_connections_is_not_an_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                }
            });
        }
    });
    let gw = gateway(config(&url, vec![], vec![public_route("pub", "/")])).await;
    let c = client(false);
    for i in 0..20 {
        let resp = c.get(format!("http://{}/n{i}", gw.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
    }
}

/// Request bodies stream: the upstream sees the first chunk before the client sends the second.
#[tokio::test]
async fn request_body_streams() {
    let (mut up, gw) = setup().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    let body = reqwest::Body::wrap(http_body_util::StreamBody::new(ChannelStream(rx)));
    let send = tokio::spawn(client(false).post(format!("http://{}/stream-in", gw.addr)).body(body).send());
    tx.send(Ok(Frame::data(Bytes::from(vec![b'a'; 64 * 1024])))).await.unwrap();
    let mut received = 0;
    while received < 64 * 1024 {
        received +=
            tokio::time::timeout(WAIT, up.chunks.recv()).await.expect("first chunk arrives unbuffered").unwrap();
    }
    tx.send(Ok(Frame::data(Bytes::from(vec![b'b'; 1024 * 1024])))).await.unwrap();
    drop(tx);
    let resp = send.await.unwrap().unwrap();
    assert_eq!(resp.text().await.unwrap(), format!("ok {}", 64 * 1024 + 1024 * 1024));
}

/// Response bodies stream: the client reads the first chunk before the upstream sends the rest.
#[tokio::test]
async fn response_body_streams() {
    let (up, gw) = setup().await;
    let mut resp = client(false).get(format!("http://{}/stream-out", gw.addr)).send().await.unwrap();
    let first = tokio::time::timeout(WAIT, resp.chunk()).await.expect("first chunk arrives unbuffered").unwrap();
    assert_eq!(first.as_deref(), Some(&b"first;"[..]));
    up.release_out();
    let rest = tokio::time::timeout(WAIT, resp.chunk()).await.unwrap().unwrap();
    assert_eq!(rest.as_deref(), Some(&b"second"[..]));
}

/// A client that never finishes its request head is disconnected after the header-read timeout.
#[tokio::test]
async fn slow_header_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(), vec![], vec![public_route("pub", "/")]);
    cfg.server.header_read_timeout = Duration::from_millis(300);
    let gw = gateway(cfg).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("connection closed by the gateway").ok();
    assert_eq!(upstream.count(), 0);
}

/// On shutdown the gateway stops accepting but finishes the request in flight.
#[tokio::test]
async fn graceful_shutdown_finishes_in_flight() {
    let (up, gw) = setup().await;
    let addr = gw.addr;
    let in_flight = tokio::spawn(client(false).get(format!("http://{addr}/slow/500")).send());
    // Readiness signal: the upstream has received the request.
    up.wait_for_requests(1).await;
    assert_eq!(up.count(), 1);
    let shutdown = tokio::spawn(gw.shutdown());
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}

/// The README's lifecycle promise: once shutdown begins, `/readyz` answers 503 so
/// load balancers stop sending traffic, while the request in flight finishes; `/livez` stays
/// 200, since restarting a draining process would cut the drain short. The admin port closes
/// only after the proxy has drained.
#[tokio::test]
async fn readyz_503_and_livez_200_while_draining() {
    let (up, gw) = setup().await;
    let (addr, admin) = (gw.addr, gw.admin_addr);
    let probe = |path: &'static str| async move {
        let resp = client(false).get(format!("http://{admin}{path}")).send().await.expect("the admin port answers");
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(probe("/readyz").await, (200, "ready\n".to_owned()));
    // Readiness signal: the first chunk of a response the upstream holds open until released.
    let mut in_flight = client(false).get(format!("http://{addr}/stream-out")).send().await.unwrap();
    let first = tokio::time::timeout(WAIT, in_flight.chunk()).await.expect("first chunk").unwrap();
    assert_eq!(first.as_deref(), Some(&b"first;"[..]));

    // One poll starts the shutdown (draining, listeners told to stop); it then waits for the
    // request in flight.
    let mut shutdown = Box::pin(gw.shutdown());
    let started = std::future::poll_fn(|cx| std::task::Poll::Ready(shutdown.as_mut().poll(cx).is_pending())).await;
    assert!(started, "the shutdown waits for the request in flight");
    let shutdown = tokio::spawn(shutdown);
    assert_eq!(probe("/readyz").await, (503, "draining\n".to_owned()));
    assert_eq!(probe("/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(probe("/readyz").await.0, 503, "draining is not undone");

    up.release_out();
    let rest = tokio::time::timeout(WAIT, in_flight.chunk()).await.expect("the rest").unwrap();
    assert_eq!(rest.as_deref(), Some(&b"second"[..]), "the request in flight finished");
    tokio::time::timeout(WAIT, shutdown).await.expect("the drain ends").unwrap();
    assert!(tokio::net::TcpStream::connect(admin).await.is_err(), "the admin port outlived the drain");
}
