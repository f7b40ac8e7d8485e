//! Baseline for benches/load.sh: a bare hyper 1 reverse proxy with no auth and no header work,
//! forwarding through tokengate's own upstream client (`proxy::forward`) on one current-thread
//! runtime, so the load table shows what tokengate's request pipeline costs on top of the same
//! server and client.
//!
//! `cargo run --release --example passthrough -- LISTEN UPSTREAM` e.g. 127.0.0.1:8090 127.0.0.1:8081

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokengate::coalesce::Coalesce;
use tokengate::config::UpstreamSettings;
use tokengate::proxy::forward::Forwarder;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().expect("usage: passthrough LISTEN UPSTREAM");
    let upstream = args.next().expect("usage: passthrough LISTEN UPSTREAM");
    let settings = UpstreamSettings {
        uri: format!("http://{upstream}").parse().expect("UPSTREAM is host:port"),
        protocol: tokengate::config::UpstreamProtocol::Http1,
        tls: None,
        connect_timeout: std::time::Duration::from_secs(5),
        response_timeout: std::time::Duration::from_secs(30),
        pool_idle_timeout: std::time::Duration::from_secs(90),
        pool_max_idle_per_host: 64,
        max_in_flight: 1 << 20,
    };
    let forwarder = Arc::new(Forwarder::new(&settings, "upstream", &tokengate::metrics::Metrics::new()));
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let forwarder = forwarder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let forwarder = forwarder.clone();
                async move {
                    let response = forwarder.send(req.map(http_body_util::Either::Left)).await;
                    Ok::<_, Infallible>(response.expect("the upstream answers"))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(Coalesce(stream)), service)
                .await;
        });
    }
}
