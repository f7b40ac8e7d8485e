//! Baseline for benches/load.sh: a bare hyper 1 reverse proxy with no auth and no header work,
//! forwarding through tokengate's own upstream client (`proxy::forward`) on one current-thread
//! runtime, so the load table shows what tokengate's request pipeline costs on top of the same
//! server and client.
//!
//! `cargo run --release --example passthrough -- LISTEN UPSTREAM [legacy]`, e.g.
//! `127.0.0.1:8090 127.0.0.1:8081`, or `h2c://127.0.0.1:8082` for cleartext HTTP/2 upstream.
//! With `legacy`, hyper-util's pooled `Client` forwards instead (HTTP/1.1, or `http2_only` for
//! h2c): benches/upstream_client.sh compares the two in one run (issue 10's choice of client).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{PathAndQuery, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokengate::coalesce::Coalesce;
use tokengate::config::{UpstreamProtocol, UpstreamSettings};
use tokengate::proxy::forward::Forwarder;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: passthrough LISTEN UPSTREAM [legacy]";
    let listen = args.next().expect(usage);
    let upstream = args.next().expect(usage);
    let legacy = args.next().as_deref() == Some("legacy");
    let (protocol, address) = match upstream.strip_prefix("h2c://") {
        Some(a) => (UpstreamProtocol::H2c, a.to_owned()),
        None => (UpstreamProtocol::Http1, upstream.trim_start_matches("http://").to_owned()),
    };
    let settings = UpstreamSettings {
        uri: format!("{}://{address}", if protocol == UpstreamProtocol::H2c { "h2c" } else { "http" })
            .parse()
            .expect("UPSTREAM is host:port"),
        protocol,
        tls: None,
        connect_timeout: std::time::Duration::from_secs(5),
        response_timeout: std::time::Duration::from_secs(30),
        pool_idle_timeout: std::time::Duration::from_secs(90),
        pool_max_idle_per_host: 64,
        max_in_flight: 1 << 20,
    };
    let forwarder = Arc::new(Forwarder::new(&settings, "upstream", &tokengate::metrics::Metrics::new()));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .http2_only(protocol == UpstreamProtocol::H2c)
        .build(connector);
    let base = format!("http://{address}");
    let h2c = protocol == UpstreamProtocol::H2c;
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let (forwarder, client, base) = (forwarder.clone(), client.clone(), base.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (forwarder, client, base) = (forwarder.clone(), client.clone(), base.clone());
                async move {
                    if legacy {
                        let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
                        *req.uri_mut() = format!("{base}{path}").parse::<Uri>().expect("a valid URI");
                        if h2c {
                            // HTTP/2 carries the host in `:authority` (from the URI), as ours does.
                            req.headers_mut().remove(http::header::HOST);
                        }
                        let response = client.request(req).await.expect("the upstream answers");
                        return Ok::<_, Infallible>(response.map(Body::Legacy));
                    }
                    let response = forwarder.send(req.map(Either::Left)).await;
                    Ok(response.expect("the upstream answers").map(Body::Ours))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(Coalesce(stream)), service)
                .await;
        });
    }
}

/// Either client's response body.
enum Body {
    Ours(tokengate::proxy::pool::PooledBody),
    Legacy(Incoming),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Ours(b) => std::pin::Pin::new(b).poll_frame(cx),
            Body::Legacy(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }
}
