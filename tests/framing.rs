//! Request framing (RFC 9112): every head that request smuggling is made of is refused with 400
//! and the connection closed before anything reaches the upstream, also after a good request
//! on the same connection; request bodies stay opaque bytes; HTTP/2 is untouched.
//!
//! These tests speak raw bytes: no HTTP client produces bare LF or CL+TE.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup() -> (Upstream, tokengate::app::Running) {
    let upstream = Upstream::start().await;
    let gw = gateway(config(&upstream.url(), vec![], vec![public_route("pub", "/")])).await;
    (upstream, gw)
}

/// The status codes of the responses in `raw`, in order.
fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ").filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok()).collect()
}

fn refusals(gw: &tokengate::app::Running, reason: &str) -> u64 {
    gw.metrics.framing_refusals.with_label_values(&["proxy", reason]).get()
}

/// Sends `request` and expects one 400, then the connection closed (`raw` reads to EOF within
/// WAIT), and nothing at the upstream.
async fn assert_refused(gw: &tokengate::app::Running, up: &Upstream, request: &str) {
    let before = up.count();
    let response = raw(gw.addr, request.as_bytes()).await;
    assert_eq!(statuses(&response), [400], "{request:?} got {response:?}");
    assert_eq!(up.count(), before, "{request:?} reached the upstream");
}

/// Content-Length with Transfer-Encoding, in either order and any case: 400, closed, nothing
/// forwarded (hyper alone would forward it chunked, dropping the Content-Length).
#[tokio::test]
async fn content_length_with_transfer_encoding_refused() {
    let (up, gw) = setup().await;
    for head in [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        // CL.TE: a front end using the length would take "0\r\n\r\nG" as this body...
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        // ...TE.CL: one using the chunks would find a second request in the first's body.
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\nGPOST /smuggled HTTP/1.1\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
    ] {
        assert_refused(&gw, &up, head).await;
    }
    assert_eq!(refusals(&gw, "content_length_and_transfer_encoding"), 4);
}

/// A LF without its CR ends no line, anywhere in the head: 400, closed, nothing forwarded.
#[tokio::test]
async fn bare_lf_refused() {
    let (up, gw) = setup().await;
    for head in [
        "GET / HTTP/1.1\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\nX-Smuggled: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: 0123456789abcdef0123456789\n\n",
    ] {
        assert_refused(&gw, &up, head).await;
    }
    assert_eq!(refusals(&gw, "bare_lf"), 4);
}

/// A bare LF in a chunked body's trailer section: the head was fine and the body was already
/// streaming upstream, so the request is aborted (hyper fails the body, the gateway answers
/// 502) and the connection closed; the trailer never reaches the upstream as fields.
#[tokio::test]
async fn bare_lf_in_trailer_aborts_the_request() {
    let (up, gw) = setup().await;
    let request = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   3\r\nabc\r\n0\r\nX-Trailer: a\nHost: y\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    let response = raw(gw.addr, request.as_bytes()).await;
    let statuses = statuses(&response);
    assert!(matches!(statuses[..], [400] | [502]), "{response}");
    assert_eq!(refusals(&gw, "bare_lf"), 1);
    assert!(up.seen().iter().all(|s| s.target != "/next" && s.headers.get("x-trailer").is_none()));
}

/// The rest of RFC 9112's framing rules: each refused with 400, closed, nothing forwarded. (hyper
/// itself refuses some of these; a padding field puts the bad line past the first bytes hyper
/// reads, so the count shows the framing check got there first.)
#[tokio::test]
async fn malformed_framing_refused() {
    let (up, gw) = setup().await;
    let cases = [
        ("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n", "obs_fold"),
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", "space_before_colon"),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "space_before_colon"),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "transfer_encoding_not_chunked"),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "transfer_encoding_not_chunked"),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "unsupported_transfer_coding",
        ),
        ("POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "transfer_encoding_in_http10"),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "differing_content_lengths"),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\na", "invalid_content_length"),
        ("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", "nul"),
        ("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", "bare_cr"),
    ];
    for (head, reason) in cases {
        let head = head.replacen("\r\n", "\r\nX-Pad: 0123456789abcdef\r\n", 1);
        let head = head.as_str();
        let before = refusals(&gw, reason);
        assert_refused(&gw, &up, head).await;
        assert_eq!(refusals(&gw, reason), before + 1, "{head:?} not counted as {reason}");
    }
}

/// Pipelined: the good request is answered, the smuggled one after it refused, then the
/// connection closes; the upstream sees only the first.
#[tokio::test]
async fn smuggled_request_after_a_good_one() {
    let (up, gw) = setup().await;
    let stream = "GET /first HTTP/1.1\r\nHost: x\r\n\r\n\
                  POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                  GET /third HTTP/1.1\r\nHost: x\r\n\r\n";
    let response = raw(gw.addr, stream.as_bytes()).await;
    assert_eq!(statuses(&response), [200, 400], "{response}");
    let seen: Vec<String> = up.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(seen, ["/first"]);
}

/// A bad head that arrives a byte at a time is refused all the same.
#[tokio::test]
async fn refused_when_split_across_reads() {
    let (up, gw) = setup().await;
    for head in [
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    ] {
        let before = up.count();
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        for byte in head.as_bytes() {
            stream.write_all(std::slice::from_ref(byte)).await.unwrap();
            stream.flush().await.unwrap();
        }
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await.expect("closed within WAIT").unwrap();
        let response = String::from_utf8_lossy(&out);
        assert_eq!(statuses(&response), [200, 400], "{head:?} got {response}");
        assert_eq!(up.count(), before + 1, "only /a is forwarded");
    }
}

/// Bodies are opaque: bare LF, CR and NUL in Content-Length and chunked bodies, a request line
/// inside a body, chunk extensions and trailers: all forwarded, and the requests after them on
/// the same connection are found and answered.
#[tokio::test]
async fn bodies_are_opaque() {
    let (up, gw) = setup().await;
    let stream = "POST /length HTTP/1.1\r\nHost: x\r\nContent-Length: 37\r\n\r\n\
                  a\nb\rc\0d\nGET /not-a-request HTTP/1.1\n\n\
                  POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5;ext=1\r\na\nb\rc\r\n3\r\n\n\n\n\r\n0\r\nX-Trailer: yes\r\n\r\n\
                  GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let response = raw(gw.addr, stream.as_bytes()).await;
    assert_eq!(statuses(&response), [200, 200, 200], "{response}");
    let seen: Vec<(String, usize)> = up.seen().into_iter().map(|s| (s.target, s.body_len)).collect();
    assert_eq!(seen, [("/length".to_string(), 37), ("/chunked".to_string(), 8), ("/last".to_string(), 0)]);
    assert_eq!(gw.metrics.framing_refusals.get_metric_with_label_values(&["proxy", "bare_lf"]).unwrap().get(), 0);
}

/// HTTP/2 with prior knowledge is passed through untouched, binary frames and all.
#[tokio::test]
async fn http2_prior_knowledge_unaffected() {
    let (up, gw) = setup().await;
    let body = b"line one\nline two\r\nbare cr\r\0".to_vec();
    for _ in 0..3 {
        let resp = client(true).post(format!("http://{}/h2", gw.addr)).body(body.clone()).send().await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(up.count(), 3);
    assert_eq!(up.last().body_len, body.len());
}

/// The admin listener is behind the same check.
#[tokio::test]
async fn admin_listener_refuses_too() {
    let (_up, gw) = setup().await;
    let response = raw(gw.admin_addr, b"GET /livez HTTP/1.1\r\nHost: x\nX: y\r\n\r\n").await;
    assert_eq!(statuses(&response), [400], "{response}");
    let refused = gw.metrics.framing_refusals.with_label_values(&["admin", "bare_lf"]).get();
    assert_eq!(refused, 1);
    // A good request still works there.
    let resp = client(false).get(format!("http://{}/livez", gw.admin_addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// A request that does not end in time is not held open by the framing check: hyper's
/// header-read timeout still closes it (no deadlock between the two).
#[tokio::test]
async fn partial_head_still_times_out() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(), vec![], vec![public_route("pub", "/")]);
    cfg.server.header_read_timeout = Duration::from_millis(300);
    cfg.server.idle_timeout = Duration::from_millis(300);
    let gw = gateway(cfg).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ab").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await.expect("closed within WAIT").unwrap();
    assert_eq!(upstream.count(), 0);
}
