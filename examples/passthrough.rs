//! Baseline for benches/load.sh: a bare hyper 1 reverse proxy with no auth and no header work,
//! built the way tokengate's forwarder is (pooled legacy client, one current-thread runtime),
//! so the load table can show what tokengate's own work costs on top of the same stack.
//!
//! `cargo run --release --example passthrough -- LISTEN UPSTREAM` e.g. 127.0.0.1:8090 127.0.0.1:8081

use std::convert::Infallible;

use http::uri::Uri;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().expect("usage: passthrough LISTEN UPSTREAM");
    let upstream = args.next().expect("usage: passthrough LISTEN UPSTREAM");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let uri: Uri = format!("http://{upstream}{path}").parse().unwrap();
                *req.uri_mut() = uri;
                async move { Ok::<_, Infallible>(client.request(req).await.unwrap()) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
