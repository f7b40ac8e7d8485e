use serde_json::{json, Value};

use super::*;
use crate::telemetry::Format;

fn entry(settings: AccessLogSettings) -> Entry {
    let Value::Object(claims) = json!({"sub": "alice", "client_id": "billing", "scope": "read"}) else {
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("12"));
    let mut e = *Entry::new(
        &settings,
        "proxy",
        &HeaderValue::from_static("req-1"),
        "192.0.2.7".parse().unwrap(),
        Instant::now(),
    );
    let host = HeaderValue::from_static("api.example.com");
    e.request(&Method::POST, Some(&host), "/orders/7?access_token=SECRET&page=2", &headers);
    e.route = Some(Arc::from("orders"));
    e.status = 200;
    e.principal =
        Some(Arc::new(Principal::from_claims(0, Arc::from("https://idp.example"), claims, &Default::default())));
    e.upstream = Some(Arc::from("http://127.0.0.1:8081"));
    e.upstream_status = Some(200);
    e.upstream_duration = Some(Duration::from_micros(1500));
    e.bytes_out = 34;
    e
}

fn render(e: &Entry, format: Format) -> String {
    let mut out = String::new();
    let mut line = Line::start(&mut out, format);
    line.str("time", "t").unwrap();
    e.write(&mut line).unwrap();
    line.end().unwrap();
    out
}

fn json_line(e: &Entry) -> serde_json::Map<String, Value> {
    let Value::Object(map) = serde_json::from_str(&render(e, Format::Json)).unwrap() else { panic!("not an object") };
    map
}

/// Every interface key, with the values the request had.
#[test]
fn json_line_has_every_key() {
    let line = json_line(&entry(AccessLogSettings::default()));
    for (key, value) in [
        ("request_id", json!("req-1")),
        ("door", json!("proxy")),
        ("client", json!("192.0.2.7")),
        ("method", json!("POST")),
        ("host", json!("api.example.com")),
        ("path", json!("/orders/7")),
        ("route", json!("orders")),
        ("decision", json!("allowed")),
        ("reason", Value::Null),
        ("status", json!(200)),
        ("subject", json!("alice")),
        ("client_id", json!("billing")),
        ("issuer", json!("https://idp.example")),
        ("upstream", json!("http://127.0.0.1:8081")),
        ("upstream_status", json!(200)),
        ("bytes_in", json!(12)),
        ("bytes_out", json!(34)),
        ("upstream_duration_ms", json!(1.5)),
    ] {
        assert_eq!(line.get(key), Some(&value), "{key} in {line:?}");
    }
    assert!(line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{line:?}");
    assert!(!line.contains_key("query"), "the query is off by default: {line:?}");
}

/// With subject logging off, `subject` and `client_id` are present as null.
#[test]
fn subjects_can_be_kept_out() {
    let settings = AccessLogSettings { subjects: false, ..Default::default() };
    let line = json_line(&entry(settings));
    assert_eq!(line.get("subject"), Some(&Value::Null));
    assert_eq!(line.get("client_id"), Some(&Value::Null));
    assert_eq!(line["issuer"], "https://idp.example");
    let text = render(&entry(settings), Format::Text);
    assert!(text.contains(" subject= client_id= "), "{text}");
    assert!(!text.contains("alice") && !text.contains("billing"), "{text}");
}

/// The query, when logged, never carries the token.
#[test]
fn query_is_logged_without_access_token() {
    let settings = AccessLogSettings { query: true, ..Default::default() };
    let e = entry(settings);
    let line = json_line(&e);
    assert_eq!(line["query"], "page=2");
    for format in [Format::Json, Format::Text] {
        let out = render(&e, format);
        assert!(!out.contains("SECRET"), "{out}");
    }
    let mut e = entry(settings);
    e.target = "/x?access_token=SECRET".into();
    assert_eq!(json_line(&e)["query"], Value::Null);
}

#[test]
fn refusals_are_denied_or_error() {
    use crate::auth::AuthError;
    use crate::respond::UpstreamError;
    let mut e = entry(AccessLogSettings::default());
    e.refused(&Denial::Auth(AuthError::MissingToken));
    assert_eq!((e.decision, e.reason), ("denied", Some("missing_token")));
    for denial in [Denial::Auth(AuthError::Unavailable("x")), Denial::Upstream(UpstreamError::Timeout)] {
        e.refused(&denial);
        assert_eq!((e.decision, e.reason), ("error", Some(denial.reason())));
    }
    e.refused(&Denial::NoRoute);
    assert_eq!((e.decision, e.reason), ("denied", Some("no_route")));
}

/// Text is logfmt: `key=value` pairs, quoted where needed, nothing else.
#[test]
fn text_line_is_logfmt() {
    let mut e = entry(AccessLogSettings::default());
    e.host = Some(HeaderValue::from_static("evil\" injected=1"));
    let out = render(&e, Format::Text);
    assert!(out.starts_with("time=t request_id=req-1 door=proxy client=192.0.2.7 method=POST "), "{out}");
    assert!(out.contains(r#" host="evil\" injected=1" "#), "{out}");
    assert!(out.contains(" upstream_duration_ms=1.500"), "{out}");
}

#[test]
fn request_ids() {
    let mut headers = HeaderMap::new();
    let a = request_id(&headers, true);
    let b = request_id(&headers, true);
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
    assert_eq!(request_id(&headers, true), "abc-123");
    // Not from an untrusted peer.
    assert_ne!(request_id(&headers, false), "abc-123");
    // Not two values, not an odd one.
    headers.append(&X_REQUEST_ID, HeaderValue::from_static("def"));
    assert_eq!(request_id(&headers, true).len(), 32);
    for odd in ["with space", "quote\"", &"x".repeat(MAX_REQUEST_ID + 1)] {
        headers.insert(&X_REQUEST_ID, HeaderValue::from_str(odd).unwrap());
        assert_eq!(request_id(&headers, true).len(), 32, "{odd}");
    }
    headers.insert(&X_REQUEST_ID, HeaderValue::from_str(&"x".repeat(MAX_REQUEST_ID)).unwrap());
    assert_eq!(request_id(&headers, true).len(), MAX_REQUEST_ID);
}

#[test]
fn millis() {
    assert_eq!(Millis(Duration::from_micros(0)).to_string(), "0.000");
    assert_eq!(Millis(Duration::from_micros(12_345_678)).to_string(), "12345.678");
}
