//! Load generator for the decision service's gRPC front door (used by benches/load.sh): keeps
//! `--concurrency` Envoy `ext_authz` `Check` calls in flight over `--connections` HTTP/2
//! connections for `--duration` seconds, each describing `GET <path>` on `<host>` with a bearer
//! token from a file (one per line, cycled), or with `--once` each token at most once, stopping
//! when the file is used up (the cold workload). One current-thread runtime, like `wrk -t1`.
//! The calls go over bare hyper HTTP/2 connections (tonic's `Channel` adds a buffer task and
//! tower layers per call, which made the client, not the decision service, the bottleneck);
//! `--channel` uses tonic's `Channel` instead.
//!
//! `cargo run --release --example check_load -- 127.0.0.1:9191 --tokens hot.txt --duration 8`
//!
//! Prints a summary in wrk's format (the lines benches/load.sh reads): "N requests in Ts",
//! "Requests/sec: R", the latency distribution, and "Non-2xx or 3xx responses: K" for calls
//! answered other than OK (or failed).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::codegen::{Context, Future, Pin, Poll, Service};
use tonic::transport::{Channel, Endpoint};

/// One HTTP/2 connection as the tower service a tonic client calls.
#[derive(Clone)]
struct H2(SendRequest<tonic::body::Body>);

impl Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

#[derive(Clone)]
enum Conn {
    H2(H2),
    Channel(Channel),
}

#[derive(Parser)]
struct Args {
    /// The decision service, host:port.
    addr: String,
    /// Bearer tokens, one per line.
    #[arg(long)]
    tokens: PathBuf,
    /// Send each token at most once and stop when the file is used up.
    #[arg(long)]
    once: bool,
    /// Calls in flight.
    #[arg(short = 'c', long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Seconds to run.
    #[arg(short = 'd', long, default_value_t = 8.0)]
    duration: f64,
    /// The original request's path.
    #[arg(long, default_value = "/bench")]
    path: String,
    /// Use tonic's `Channel` rather than bare hyper HTTP/2 connections.
    #[arg(long)]
    channel: bool,
    /// The original request's host.
    #[arg(long, default_value = "bench.example")]
    host: String,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    denied: u64,
    failed: u64,
    latencies_us: Vec<u32>,
}

fn request(path: &str, host: &str, bearer: &str) -> CheckRequest {
    let http = HttpRequest {
        method: "GET".into(),
        path: path.into(),
        host: host.into(),
        scheme: "http".into(),
        protocol: "HTTP/1.1".into(),
        headers: HashMap::from([("authorization".to_owned(), bearer.to_owned())]),
        ..Default::default()
    };
    let attributes =
        AttributeContext { request: Some(Request { http: Some(http), ..Default::default() }), ..Default::default() };
    CheckRequest { attributes: Some(attributes) }
}

fn fmt_us(us: u32) -> String {
    let us = us as f64;
    if us < 1000.0 {
        format!("{us:.2}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let bearers: Rc<Vec<String>> = Rc::new(
        std::fs::read_to_string(&args.tokens)
            .expect("readable tokens file")
            .lines()
            .filter(|l| !l.is_empty())
            .map(|t| format!("Bearer {t}"))
            .collect(),
    );
    assert!(!bearers.is_empty(), "no tokens in {}", args.tokens.display());

    let origin: http::Uri = format!("http://{}", args.addr).parse().expect("host:port");
    let endpoint = Endpoint::from(origin.clone());
    let mut channels: Vec<Conn> = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(if args.channel {
            Conn::Channel(endpoint.connect().await.expect("connected to the decision service"))
        } else {
            let tcp = tokio::net::TcpStream::connect(&args.addr).await.expect("connected to the decision service");
            tcp.set_nodelay(true).unwrap();
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("HTTP/2 handshake");
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("check_load: connection: {e}");
                }
            });
            Conn::H2(H2(send))
        });
    }

    let next = Rc::new(Cell::new(0usize));
    let tally = Rc::new(RefCell::new(Tally::default()));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let local = tokio::task::LocalSet::new();
    for w in 0..args.concurrency.max(1) {
        let conn = channels[w % channels.len()].clone();
        let origin = origin.clone();
        let (bearers, next, tally) = (bearers.clone(), next.clone(), tally.clone());
        let (path, host, once) = (args.path.clone(), args.host.clone(), args.once);
        local.spawn_local(async move {
            let (mut h2, mut channel) = match conn {
                Conn::H2(c) => (Some(AuthorizationClient::with_origin(c, origin)), None),
                Conn::Channel(c) => (None, Some(AuthorizationClient::new(c))),
            };
            loop {
                let i = next.get();
                if Instant::now() >= deadline || (once && i >= bearers.len()) {
                    break;
                }
                next.set(i + 1);
                let req = request(&path, &host, &bearers[i % bearers.len()]);
                let sent = Instant::now();
                let answer = match (&mut h2, &mut channel) {
                    (Some(c), _) => c.check(req).await,
                    (_, Some(c)) => c.check(req).await,
                    _ => unreachable!(),
                };
                let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let mut t = tally.borrow_mut();
                t.latencies_us.push(us);
                match answer {
                    Ok(r) if r.get_ref().status.as_ref().map_or(0, |s| s.code) == 0 => t.ok += 1,
                    Ok(_) => t.denied += 1,
                    Err(e) => {
                        if t.failed == 0 {
                            eprintln!("check_load: call failed: {e}");
                        }
                        t.failed += 1;
                    }
                }
            }
        });
    }
    local.await;
    let elapsed = start.elapsed().as_secs_f64();

    let mut t = tally.borrow_mut();
    let total = t.ok + t.denied + t.failed;
    t.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let l = &t.latencies_us;
        if l.is_empty() {
            0
        } else {
            l[(((l.len() as f64) * p).ceil() as usize).clamp(1, l.len()) - 1]
        }
    };
    println!("Running {:.0}s test @ grpc://{} envoy.service.auth.v3.Authorization/Check", args.duration, args.addr);
    println!("  {} calls in flight over {} connection(s)", args.concurrency, channels.len());
    println!("  Latency Distribution");
    for (label, p) in [("50%", 0.50), ("75%", 0.75), ("90%", 0.90), ("99%", 0.99)] {
        println!("     {label}  {}", fmt_us(pct(p)));
    }
    println!("  {total} requests in {elapsed:.2}s");
    if t.denied + t.failed > 0 {
        println!("  Non-2xx or 3xx responses: {}", t.denied + t.failed);
    }
    if t.failed > 0 {
        println!("  Failed calls (transport or gRPC error): {}", t.failed);
    }
    println!("Requests/sec: {:.2}", total as f64 / elapsed);
    if total == 0 || t.failed == total {
        std::process::exit(1);
    }
}
