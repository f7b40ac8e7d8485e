//! The framing scanner: a table of refusals and acceptances, then properties: read boundaries
//! never change a verdict, valid request streams (bodies with any bytes) are followed from head
//! to head, and wherever hyper's parser (httparse, hyper's body rules) accepts a head, the
//! scanner either refuses it or agrees on its end and its body length.

use proptest::prelude::*;

use super::*;

const MAX_LINE: usize = 64 * 1024;

fn scan_all(bytes: &[u8]) -> (Scanner, Result<(), Refusal>) {
    let mut s = Scanner::new(MAX_LINE);
    let r = s.scan(bytes);
    (s, r)
}

fn refused(bytes: &[u8]) -> Option<Reason> {
    scan_all(bytes).1.err().map(|r| r.reason)
}

/// Each smuggling-prone head is refused, for the reason given.
#[test]
fn refusals() {
    let cases: &[(&str, Reason)] = &[
        ("GET / HTTP/1.1\nHost: x\r\n\r\n", Reason::BareLf),
        ("GET / HTTP/1.1\r\nHost: x\n\r\n", Reason::BareLf),
        ("GET / HTTP/1.1\r\nHost: x\r\n\n", Reason::BareLf),
        ("\nGET / HTTP/1.1\r\n\r\n", Reason::BareLf),
        ("GET / HTTP/1.1\r\nHost: x\ry: z\r\n\r\n", Reason::BareCr),
        ("GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n", Reason::Nul),
        ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", Reason::ObsFold),
        ("GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n\r\n", Reason::ObsFold),
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", Reason::SpaceBeforeColon),
        ("GET / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n", Reason::SpaceBeforeColon),
        ("GET / HTTP/1.1\r\nno colon here\r\n\r\n", Reason::MalformedField),
        ("GET / HTTP/1.1\r\n: empty name\r\n\r\n", Reason::MalformedField),
        (
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Reason::ContentLengthAndTransferEncoding,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 0\r\n\r\n",
            Reason::ContentLengthAndTransferEncoding,
        ),
        ("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Reason::DifferingContentLengths),
        ("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", Reason::InvalidContentLength),
        ("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", Reason::InvalidContentLength),
        ("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", Reason::InvalidContentLength),
        ("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", Reason::InvalidContentLength),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", Reason::TransferEncodingNotChunked),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Reason::TransferEncodingNotChunked),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            Reason::TransferEncodingNotChunked,
        ),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Reason::UnsupportedTransferCoding),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            Reason::UnsupportedTransferCoding,
        ),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Reason::TransferEncodingInHttp10),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Reason::InvalidChunk),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n", Reason::InvalidChunk),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", Reason::InvalidChunk),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY", Reason::InvalidChunk),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\rX", Reason::InvalidChunk),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\n", Reason::BareLf),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\nY: b\r\n\r\n", Reason::BareLf),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded\r\n\r\n", Reason::ObsFold),
        // Smuggled in the body of an accepted request: found at the next head.
        ("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\nHost: x\r\n\r\n", Reason::BareLf),
    ];
    for (head, reason) in cases {
        assert_eq!(refused(head.as_bytes()), Some(*reason), "{head:?}");
    }
}

/// Ordinary requests, pipelined, with bodies that hold bare LF and CR bytes, pass.
#[test]
fn acceptances() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:x\r\nX-Empty:\r\nX-Ws: \t a b \t\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\na\nb\rc",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length:5 \r\n\r\n\n\n\n\n\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTRANSFER-ENCODING:  Chunked \r\n\r\n3\r\na\nb\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\n\0\n\r\r\n1 \t;x\r\n\n\r\n0\r\nTrailer: v\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ];
    for case in cases {
        let (s, r) = scan_all(case);
        let text = String::from_utf8_lossy(case);
        assert_eq!(r, Ok(()), "{text:?}");
        assert!(matches!(s.state, State::RequestLine), "{text:?} ends in {:?}", s.state);
    }
}

/// The cut lands on the LF that completes the refused line, so hyper has the whole line but
/// for that byte; a bare CR is cut right after the CR.
#[test]
fn cut_positions() {
    let head = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(scan_all(head).1, Err(Refusal { at: head.len() - 1, reason: Reason::ContentLengthAndTransferEncoding }));
    assert_eq!(scan_all(b"GET / HTTP/1.1\r\nA: b\nC: d").1.unwrap_err().at, 20);
    assert_eq!(scan_all(b"GET / HTTP/1.1\r\nA: b\rc").1.unwrap_err().at, 21);
}

/// After a refusal nothing more is accepted.
#[test]
fn refusal_is_final() {
    let (mut s, r) = scan_all(b"GET / HTTP/1.1\nHost: x\r\n\r\n");
    assert!(r.is_err() && s.is_refused());
    assert_eq!(s.scan(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().at, 0);
}

/// The HTTP/2 preface, however it is split, switches inspection off; anything else that starts
/// like it is HTTP/1 from its first byte.
#[test]
fn http2_preface() {
    for split in 0..=H2_PREFACE.len() {
        let mut s = Scanner::new(MAX_LINE);
        s.scan(&H2_PREFACE[..split]).unwrap();
        s.scan(&H2_PREFACE[split..]).unwrap();
        assert!(s.is_http2(), "split at {split}");
        // Frames are binary: bare LF, NUL and all.
        s.scan(b"\0\0\n\x04\0\0\0\0\0\n\r\r").unwrap();
    }
    let mut s = Scanner::new(MAX_LINE);
    s.scan(b"P").unwrap();
    s.scan(b"OST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx").unwrap();
    assert_eq!(s.state, State::RequestLine);
    let mut s = Scanner::new(MAX_LINE);
    s.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n").unwrap();
    assert_eq!(s.scan(b"\n").unwrap_err().reason, Reason::BareLf);
}

/// The part of a line kept across reads is bounded, and so is a line that arrives whole.
#[test]
fn long_lines_refused() {
    let mut s = Scanner::new(100);
    s.scan(b"GET / HTTP/1.1\r\nX: ").unwrap();
    let err = s.scan(&[b'a'; 200]).unwrap_err();
    assert_eq!((err.reason, err.at), (Reason::LineTooLong, 199));
    let mut s = Scanner::new(100);
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(200));
    assert_eq!(s.scan(long.as_bytes()).unwrap_err().reason, Reason::LineTooLong);
}

/// A carry that grew large is not kept once its line is done.
#[test]
fn large_carry_is_freed() {
    let mut s = Scanner::new(MAX_LINE);
    s.scan(b"GET / HTTP/1.1\r\nX: ").unwrap();
    s.scan(&[b'a'; 10_000]).unwrap();
    s.scan(b"\r\n").unwrap();
    assert_eq!(s.carry.capacity(), 0);
}

/// After an HTTP/1.1 upgrade head without a body, the new protocol's bytes (here a WebSocket
/// frame with NUL and LF in it) pass unchecked; a head missing any part of the upgrade is
/// followed as before.
#[test]
fn upgrade_heads_pass_the_rest_through() {
    let frame = b"\x81\x85\0\n\r\0hello";
    for head in [
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET /ws HTTP/1.1\r\nupgrade: websocket\r\nconnection: keep-alive , UPGRADE\r\n\r\n",
        "GET /ws HTTP/1.1\r\nConnection: keep-alive\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
    ] {
        let mut stream = head.as_bytes().to_vec();
        stream.extend_from_slice(frame);
        let (s, r) = scan_all(&stream);
        assert_eq!(r, Ok(()), "{head:?}");
        assert!(s.is_upgrade(), "{head:?}");
        for split in 1..stream.len() {
            assert_eq!(scan_split(&stream, &[split]).1, Ok(()), "{head:?} split at {split}");
        }
    }
    for head in [
        // No Connection: upgrade, no Upgrade, HTTP/1.0, a body, a lookalike option.
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        "GET /ws HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
        "GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET /ws HTTP/1.1\r\nConnection: upgraded\r\nUpgrade: websocket\r\n\r\n",
    ] {
        let mut stream = head.as_bytes().to_vec();
        stream.extend_from_slice(frame);
        assert_eq!(refused(&stream), Some(Reason::Nul), "{head:?}");
    }
    let with_body = b"POST /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nok";
    let (s, r) = scan_all(with_body);
    assert_eq!((r, s.state), (Ok(()), State::RequestLine), "a body is followed, not tunnelled");
}

// === properties ===

/// Scan `bytes` in the pieces given by `cuts` (sorted positions).
fn scan_split(bytes: &[u8], cuts: &[usize]) -> (Scanner, Result<(), Refusal>) {
    let mut s = Scanner::new(MAX_LINE);
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(start, bytes.len());
        if let Err(r) = s.scan(&bytes[start..cut]) {
            return (s, Err(Refusal { at: start + r.at, reason: r.reason }));
        }
        start = cut;
    }
    (s, Ok(()))
}

/// Bytes that look like HTTP/1 heads and bodies, with the troublemakers over-represented.
fn headish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"GET / HTTP/1.1\r\n".to_vec()),
        Just(b"POST /x HTTP/1.0\r\n".to_vec()),
        Just(b"Content-Length: 3\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Host: a\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"3\r\nabc\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b" ".to_vec()),
        Just(b":".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// A request head built from field lines hyper and the scanner may see differently.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let name = prop::sample::select(vec![
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "TRANSFER-encoding",
        "Host",
        "X-A",
        "Content-Length ",
        "Transfer-Encoding\t",
        " Transfer-Encoding",
        "Upgrade",
        "Connection",
    ]);
    let value = prop::sample::select(vec![
        "0",
        "3",
        "03",
        " 3 ",
        "3, 3",
        "+3",
        "",
        "chunked",
        " Chunked ",
        "gzip, chunked",
        "chunked, gzip",
        "gzip",
        "chunked,",
        "x\ty",
        "websocket",
        "keep-alive, Upgrade",
    ]);
    let eol = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n"]);
    let line = (name, value, eol).prop_map(|(n, v, e)| format!("{n}:{v}{e}"));
    let start = prop::sample::select(vec!["GET / HTTP/1.1\r\n", "POST / HTTP/1.0\r\n", "\r\nPUT / HTTP/1.1\r\n"]);
    let end = prop::sample::select(vec!["\r\n", "\n"]);
    (start, prop::collection::vec(line, 0..5), end)
        .prop_map(|(s, lines, e)| format!("{s}{}{e}", lines.concat()).into_bytes())
}

/// A valid request: head with Content-Length or chunked framing, body of any bytes.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let body = prop::collection::vec(any::<u8>(), 0..64);
    let chunks = prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..4);
    prop_oneof![
        body.prop_map(|b| {
            let mut r = format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", b.len()).into_bytes();
            r.extend(b);
            r
        }),
        (chunks, any::<bool>()).prop_map(|(chunks, trailer)| {
            let mut r = b"PUT /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for c in chunks {
                r.extend(format!("{:x};e=1\r\n", c.len()).into_bytes());
                r.extend(c);
                r.extend(b"\r\n");
            }
            r.extend(if trailer { &b"0\r\nX-T: 1\r\n\r\n"[..] } else { &b"0\r\n\r\n"[..] });
            r
        }),
        Just(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ]
}

/// hyper's decision for a head httparse accepted: `Some(body)` when it would serve it (and
/// `Upgrade` when the gateway may tunnel what follows).
fn hyper_body(req: &httparse::Request<'_, '_>) -> Option<State> {
    let http11 = req.version == Some(1);
    let (mut length, mut chunked, mut te) = (None, false, false);
    let (mut upgrade, mut connection_upgrade) = (false, false);
    for h in req.headers.iter() {
        upgrade |= h.name.eq_ignore_ascii_case("upgrade");
        connection_upgrade |= h.name.eq_ignore_ascii_case("connection")
            && h.value.split(|&b| b == b',').any(|o| o.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return None;
            }
            te = true;
            let last = std::str::from_utf8(h.value).ok()?.rsplit(',').next()?.trim();
            chunked = last.eq_ignore_ascii_case("chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") && !te {
            let n = decimal(h.value)?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    match (te, chunked, length) {
        (true, false, _) => None,
        (true, true, _) => Some(State::ChunkSize),
        (false, _, Some(n)) if n > 0 => Some(State::Body(n)),
        _ if http11 && upgrade && connection_upgrade => Some(State::Upgrade),
        _ => Some(State::RequestLine),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Where reads split the stream never changes the verdict or where the cut lands.
    #[test]
    fn read_boundaries_do_not_matter(bytes in headish(), cuts in prop::collection::vec(0usize..400, 0..8)) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (whole, whole_result) = scan_all(&bytes);
        let (split, split_result) = scan_split(&bytes, &cuts);
        prop_assert_eq!(whole_result, split_result);
        if whole_result.is_ok() {
            prop_assert_eq!(whole.state, split.state);
        }
    }

    /// Any stream of valid requests, however it is read, is followed to its end.
    #[test]
    fn valid_streams_are_followed(reqs in prop::collection::vec(request(), 1..5), cuts in prop::collection::vec(0usize..600, 0..10)) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (s, r) = scan_split(&reqs.concat(), &cuts);
        prop_assert_eq!(r, Ok(()));
        prop_assert_eq!(s.state, State::RequestLine);
    }

    /// Wherever httparse and hyper's body rules accept a head, the scanner refuses it or agrees
    /// on where it ends and how long its body is: it never sees a head where hyper sees a body.
    #[test]
    fn agrees_with_hyper(bytes in prop_oneof![head(), headish()]) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(end)) = req.parse(&bytes) {
            if let Some(body) = hyper_body(&req) {
                let (s, r) = scan_all(&bytes[..end]);
                if r.is_ok() {
                    prop_assert_eq!(s.state, body, "{:?}", String::from_utf8_lossy(&bytes[..end]));
                }
            }
        }
    }

    /// No input makes it panic, and a refusal always points into the bytes just scanned.
    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), cuts in prop::collection::vec(0usize..512, 0..6)) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (_, r) = scan_split(&bytes, &cuts);
        if let Err(r) = r {
            prop_assert!(r.at < bytes.len());
        }
    }
}
