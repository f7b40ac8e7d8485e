//! Resource limits over real sockets: no slow or flooding client holds the gateway. Each test
//! fails if its limit is removed (the client would be served, or left waiting until WAIT).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokengate::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn public(upstream: &str) -> Config {
    config(upstream, vec![], vec![public_route("pub", "/")])
}

/// A TCP upstream that accepts connections and never answers.
struct Silent {
    url: String,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Silent { url, accepted, task }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wait (bounded) until `ready` holds.
async fn eventually(what: &str, ready: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ready() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Read until the server closes the connection (bounded by WAIT).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection was not closed within WAIT; got {:?}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out).into_owned()
}

/// One keep-alive request on `stream`; returns the response head.
async fn keep_alive_get(stream: &mut TcpStream, path: &str) -> String {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // Our upstream answers "ok <n>" with a Content-Length: read to the end of that body.
    while !String::from_utf8_lossy(&got).contains("\r\n\r\nok ") || !got.ends_with(b"0") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("response within WAIT").unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

// === connections ===

/// server.max_connections: the connection over the limit is answered 503 and closed at once,
/// counted; once one closes, a new one is served again.
#[tokio::test]
async fn connections_beyond_the_limit_get_503_at_once() {
    let up = Upstream::start().await;
    let mut cfg = public(&up.url());
    cfg.server.max_connections = 2;
    cfg.server.header_read_timeout = Duration::from_secs(30);
    let gw = gateway(cfg).await;
    let open = gw.metrics.open_connections.with_label_values(&["proxy"]);
    let refused = gw.metrics.refused_connections.with_label_values(&["proxy"]);

    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    assert!(keep_alive_get(&mut first, "/1").await.starts_with("HTTP/1.1 200"));
    assert!(keep_alive_get(&mut second, "/2").await.starts_with("HTTP/1.1 200"));
    assert_eq!(open.get(), 2);

    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let _ = third.write_all(b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(refused.get(), 1);
    assert_eq!(up.count(), 2, "the refused request reached the upstream");

    drop(first);
    eventually("the closed connection to leave the count", || open.get() == 1).await;
    let mut fourth = TcpStream::connect(gw.addr).await.unwrap();
    assert!(keep_alive_get(&mut fourth, "/4").await.starts_with("HTTP/1.1 200"));
    drop(second);
}

/// The admin listener has its own count: a full proxy listener does not lock out probes.
#[tokio::test]
async fn admin_listener_is_counted_apart() {
    let up = Upstream::start().await;
    let mut cfg = public(&up.url());
    cfg.server.max_connections = 1;
    cfg.server.header_read_timeout = Duration::from_secs(30);
    let gw = gateway(cfg).await;
    let mut held = TcpStream::connect(gw.addr).await.unwrap();
    assert!(keep_alive_get(&mut held, "/1").await.starts_with("HTTP/1.1 200"));
    let probe = raw(gw.admin_addr, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
}

// === first request and idle timeouts ===

/// A connection must deliver its first request head within the header-read timeout, whatever
/// the protocol: silence, half an HTTP/2 preface, and an HTTP/2 handshake with no request are
/// all closed (hyper alone waits forever for each).
#[tokio::test]
async fn first_request_deadline_covers_http2_and_silence() {
    let up = Upstream::start().await;
    let mut cfg = public(&up.url());
    cfg.server.header_read_timeout = Duration::from_millis(300);
    cfg.server.idle_timeout = Duration::from_secs(60);
    let gw = gateway(cfg).await;
    let preface_and_settings = [&tokengate::framing::H2_PREFACE[..], &h2::settings()].concat();
    for opening in [&b""[..], b"PRI * HT", &preface_and_settings] {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(opening).await.unwrap();
        read_to_close(&mut stream).await;
    }
}

/// An idle HTTP/1.1 keep-alive connection is closed (by hyper's header-read timer, which
/// validation keeps no longer than idle_timeout).
#[tokio::test]
async fn idle_http1_connection_closed() {
    let up = Upstream::start().await;
    let mut cfg = public(&up.url());
    cfg.server.header_read_timeout = Duration::from_millis(300);
    cfg.server.idle_timeout = Duration::from_millis(300);
    let gw = gateway(cfg).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    assert!(keep_alive_get(&mut stream, "/1").await.starts_with("HTTP/1.1 200"));
    read_to_close(&mut stream).await;
}

/// An HTTP/2 connection with no stream in flight for idle_timeout gets a GOAWAY and is closed.
#[tokio::test]
async fn idle_http2_connection_closed() {
    let up = Upstream::start().await;
    let mut cfg = public(&up.url());
    cfg.server.header_read_timeout = Duration::from_millis(300);
    cfg.server.idle_timeout = Duration::from_millis(300);
    cfg.server.http2_keep_alive_interval = Duration::from_secs(3600);
    let gw = gateway(cfg).await;
    let mut h2 = h2::Client::connect(gw.addr).await;
    h2.get(1, "/a").await;
    h2.wait_for(|f| f.kind == h2::DATA && f.end_stream() && f.stream == 1).await;
    h2.wait_for(|f| f.kind == h2::GOAWAY).await;
    h2.until_closed().await;
}

/// An HTTP/2 stream in flight keeps its connection open past idle_timeout: idle means idle.
#[tokio::test]
async fn http2_stream_in_flight_is_not_idle() {
    let up = Upstream::start().await;
    let mut cfg = public(&up.url());
    cfg.server.header_read_timeout = Duration::from_millis(200);
    cfg.server.idle_timeout = Duration::from_millis(200);
    cfg.server.http2_keep_alive_interval = Duration::from_secs(3600);
    cfg.upstream.as_mut().unwrap().response_timeout = Duration::from_secs(30);
    let gw = gateway(cfg).await;
    let mut h2 = h2::Client::connect(gw.addr).await;
    h2.get(1, "/stream-out").await;
    h2.wait_for(|f| f.kind == h2::DATA && f.stream == 1).await;
    // Three idle timeouts with the response body still streaming: no GOAWAY.
    let quiet = tokio::time::timeout(Duration::from_millis(600), h2.wait_for(|f| f.kind == h2::GOAWAY)).await;
    assert!(quiet.is_err(), "GOAWAY while a stream was in flight");
    up.release_out();
    h2.wait_for(|f| f.kind == h2::DATA && f.end_stream() && f.stream == 1).await;
    h2.wait_for(|f| f.kind == h2::GOAWAY).await;
}

/// HTTP/2 keep-alive: a client that stops answering PINGs is disconnected.
#[tokio::test]
async fn http2_unanswered_ping_closes_the_connection() {
    let up = Upstream::start().await;
    let mut cfg = public(&up.url());
    cfg.server.http2_keep_alive_interval = Duration::from_millis(200);
    cfg.server.http2_keep_alive_timeout = Duration::from_millis(200);
    let gw = gateway(cfg).await;
    let mut h2 = h2::Client::connect(gw.addr).await;
    h2.get(1, "/a").await;
    h2.wait_for(|f| f.kind == h2::DATA && f.end_stream() && f.stream == 1).await;
    h2.wait_for(|f| f.kind == h2::PING && f.flags & h2::ACK == 0).await;
    h2.until_closed().await;
}

// === HTTP/2 concurrent streams ===

/// server.http2_max_concurrent_streams is advertised and enforced: a client opening more
/// streams than that gets REFUSED_STREAM for the extra one, which never reaches the upstream.
#[tokio::test]
async fn http2_streams_beyond_the_bound_are_refused() {
    let silent = Silent::start().await;
    let mut cfg = public(&silent.url);
    cfg.server.http2_max_concurrent_streams = 2;
    cfg.upstream.as_mut().unwrap().response_timeout = Duration::from_secs(30);
    let gw = gateway(cfg).await;
    let mut h2 = h2::Client::connect(gw.addr).await;
    assert_eq!(h2.max_concurrent_streams, Some(2));
    for stream in [1, 3, 5] {
        h2.get(stream, "/held").await;
    }
    let reset = h2.wait_for(|f| f.kind == h2::RST_STREAM).await;
    assert_eq!((reset.stream, reset.payload.as_slice()), (5, &h2::REFUSED_STREAM[..]));
    eventually("the two admitted streams to reach the upstream", || silent.accepted() == 2).await;
    assert_eq!(silent.accepted(), 2);
}

// === upstream in flight ===

/// upstream.max_in_flight: with the upstream not answering, the request over the cap is answered
/// 503 at once (not queued behind the first), counted, and the count goes back down after.
#[tokio::test]
async fn upstream_in_flight_cap_answers_503_at_once() {
    let silent = Silent::start().await;
    let mut cfg = public(&silent.url);
    cfg.upstream.as_mut().unwrap().max_in_flight = 1;
    cfg.upstream.as_mut().unwrap().response_timeout = Duration::from_secs(1);
    let gw = gateway(cfg).await;
    let url = format!("http://{}/x", gw.addr);
    let first = tokio::spawn(client(false).get(&url).send());
    eventually("the first request to reach the upstream", || silent.accepted() == 1).await;

    let second = client(false).get(&url).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    assert!(!first.is_finished(), "the second request waited for the first");
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"], "upstream_overloaded");

    assert_eq!(first.await.unwrap().unwrap().status(), 504);
    let metrics = &gw.metrics;
    assert_eq!(metrics.upstream_refused.get(), 1);
    let in_flight = metrics.upstream_in_flight.with_label_values(&[silent.url.trim_end_matches('/')]);
    eventually("the in-flight count to drop", || in_flight.get() == 0).await;
    assert_eq!(client(false).get(&url).send().await.unwrap().status(), 504, "admitted again");
    assert_eq!(silent.accepted(), 2);
}

/// A request stays in flight until its response body has been sent: a streaming response holds
/// its place, and frees it when it ends.
#[tokio::test]
async fn upstream_in_flight_spans_the_response_body() {
    let up = Upstream::start().await;
    let mut cfg = public(&up.url());
    cfg.upstream.as_mut().unwrap().max_in_flight = 1;
    let gw = gateway(cfg).await;
    let streaming = client(false).get(format!("http://{}/stream-out", gw.addr)).send().await.unwrap();
    assert_eq!(streaming.status(), 200);
    let refused = client(false).get(format!("http://{}/x", gw.addr)).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    up.release_out();
    assert_eq!(streaming.text().await.unwrap(), "first;second");
    let in_flight = gw.metrics.upstream_in_flight.with_label_values(&[up.url().trim_end_matches('/')]);
    eventually("the in-flight count to drop", || in_flight.get() == 0).await;
    assert_eq!(client(false).get(format!("http://{}/x", gw.addr)).send().await.unwrap().status(), 200);
}

// === body read timeout ===

/// server.body_read_timeout: a form body (read for its access_token) that trickles is cut: 408,
/// connection closed, nothing forwarded.
#[tokio::test]
async fn trickling_form_body_is_cut() {
    let up = Upstream::start().await;
    let issuer = issuer("http://127.0.0.1:9/", "http://127.0.0.1:9/jwks", &["api"]);
    let mut cfg = config(&up.url(), vec![issuer], vec![required_route("api", "/", &[])]);
    cfg.tokens.allow_form_body = true;
    cfg.server.body_read_timeout = Duration::from_millis(300);
    let gw = gateway(cfg).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\naccess_token=ab",
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(up.count(), 0);
    let decisions = gw.metrics.requests.with_label_values(&["api", "body_timeout", "408"]).get();
    assert_eq!(decisions, 1);
}

/// Just enough HTTP/2 to open streams and watch frames: what no client library lets a test do
/// (ignore SETTINGS_MAX_CONCURRENT_STREAMS, leave PINGs unanswered).
mod h2 {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::WAIT;

    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const ACK: u8 = 0x1;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    /// RFC 9113 §7: REFUSED_STREAM.
    pub const REFUSED_STREAM: [u8; 4] = [0, 0, 0, 7];

    #[derive(Debug)]
    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    impl Frame {
        pub fn end_stream(&self) -> bool {
            self.flags & END_STREAM != 0
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An empty SETTINGS frame.
    pub fn settings() -> Vec<u8> {
        frame(SETTINGS, 0, 0, &[])
    }

    pub struct Client {
        stream: TcpStream,
        /// SETTINGS_MAX_CONCURRENT_STREAMS the server announced.
        pub max_concurrent_streams: Option<u32>,
    }

    impl Client {
        /// Preface, SETTINGS, the server's SETTINGS read and acknowledged.
        pub async fn connect(addr: SocketAddr) -> Client {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&[&tokengate::framing::H2_PREFACE[..], &settings()].concat()).await.unwrap();
            let mut client = Client { stream, max_concurrent_streams: None };
            let settings = client.wait_for(|f| f.kind == SETTINGS && f.flags & ACK == 0).await;
            for setting in settings.payload.chunks_exact(6) {
                if setting[..2] == [0, 3] {
                    client.max_concurrent_streams = Some(u32::from_be_bytes(setting[2..].try_into().unwrap()));
                }
            }
            client.stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            client
        }

        /// GET `path` on `stream` (HPACK: static-table names, literal values, no indexing).
        pub async fn get(&mut self, stream: u32, path: &str) {
            let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
            block.extend_from_slice(path.as_bytes());
            block.extend_from_slice(&[0x01, 0x01, b'x']);
            self.stream.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)).await.unwrap();
        }

        /// The next frame, or `None` when the server closed the connection.
        pub async fn next(&mut self) -> Option<Frame> {
            let mut head = [0u8; 9];
            let read =
                tokio::time::timeout(WAIT, self.stream.read_exact(&mut head)).await.expect("a frame within WAIT");
            read.ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await.ok()?;
            let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
            Some(Frame { kind: head[3], flags: head[4], stream, payload })
        }

        /// Read frames until one matches (bounded by WAIT per frame; panics on close).
        pub async fn wait_for(&mut self, wanted: impl Fn(&Frame) -> bool) -> Frame {
            loop {
                let frame = self.next().await.expect("connection closed before the frame came");
                if wanted(&frame) {
                    return frame;
                }
            }
        }

        /// Read frames until the server closes the connection.
        pub async fn until_closed(&mut self) {
            for _ in 0..1000 {
                if self.next().await.is_none() {
                    return;
                }
            }
            panic!("the connection was not closed");
        }
    }
}
