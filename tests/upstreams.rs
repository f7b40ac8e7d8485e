//! Upstreams (issue 10): named upstreams chosen by route, `https://` upstreams with a private CA
//! (and refused without it), mTLS to the upstream, an SNI override, ALPN choosing HTTP/2 or
//! HTTP/1.1, cleartext HTTP/2 (`h2c://`), cookies translated between HTTP/1.1 and HTTP/2, and
//! gRPC end to end: a real tonic client calling a real tonic server through the gateway, and
//! refused with the right `grpc-status`. Certificates are made here with rcgen. The gateway is
//! configured from YAML, as a deployment would be.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, COOKIE, UPGRADE};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::pki::Ca;
use support::*;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A private CA (`support::pki`), and its files under a directory of the test's own.
struct Pki {
    ca: Ca,
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let ca = Ca::new(&format!("tokengate test CA {tag}"));
        let dir = std::env::temp_dir().join(format!("tokengate-upstreams-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        Pki { ca, dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A certificate for `names` signed by the CA, written as `<name>.pem` and `<name>.key`.
    fn leaf(&self, name: &str, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let leaf = self.ca.leaf(names, false, None);
        std::fs::write(self.dir.join(format!("{name}.pem")), &leaf.cert_pem).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), &leaf.key_pem).unwrap();
        (vec![leaf.der.clone()], leaf.key())
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Answers every request with what it saw: protocol version, cookies, authority, the identity
/// subject, whether the client presented a certificate.
async fn echo(mut req: Request<Incoming>, client_cert: bool) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(protocol) = req.headers().get(UPGRADE).cloned() {
        // An upgrade to anything: 101, then every byte echoed back.
        let version = format!("{:?}", req.version());
        let upgraded = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgraded.await else { return };
            let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut read, &mut write).await;
        });
        return Ok(Response::builder()
            .status(101)
            .header(UPGRADE, protocol)
            .header(CONNECTION, "upgrade")
            .header("x-seen-version", version)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let cookies: Vec<&str> = req.headers().get_all(COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    let authority = req.uri().authority().map(|a| a.to_string()).unwrap_or_else(|| header("host"));
    Ok(Response::builder()
        .header("x-seen-version", format!("{:?}", req.version()))
        .header("x-seen-cookies", cookies.join(" | "))
        .header("x-seen-authority", authority)
        .header("x-seen-subject", header("x-auth-subject"))
        .header("x-seen-client-cert", client_cert.to_string())
        .header("x-seen-path", req.uri().path())
        .body(Full::new(Bytes::from_static(b"ok")))
        .unwrap())
}

/// An upstream speaking HTTP/1.1 and HTTP/2 (by ALPN over TLS, by preface in cleartext).
async fn serve(tls: Option<TlsAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let service = hyper::service::service_fn(|req| echo(req, false));
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await;
                    }
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(tcp).await else { return };
                        let cert = stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                        let service = hyper::service::service_fn(move |req| echo(req, cert));
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    addr
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS upstream with a certificate for `names` from `pki`, offering `alpn`; with `client_ca`
/// it requires a client certificate from that CA.
async fn tls_upstream(pki: &Pki, names: &[&str], alpn: &[&[u8]], client_ca: bool) -> SocketAddr {
    let (chain, key) = pki.leaf("upstream", names);
    let builder =
        rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let builder = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.der.clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    serve(Some(TlsAcceptor::from(Arc::new(config)))).await
}

/// The gateway from YAML: `upstreams` is the text of the `upstream`/`upstreams` sections and
/// `routes` of the `routes` list; the dev issuer signs (audience `api`).
async fn gateway_yaml(
    idp: &tokengate::dev_issuer::DevIssuer,
    upstreams: &str,
    routes: &str,
) -> tokengate::app::Running {
    let text = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n{upstreams}\nissuers:\n  - issuer: {}\n    jwks_uri: {}\n    audiences: [api]\nroutes:\n{routes}",
        idp.issuer(),
        idp.jwks_uri()
    );
    let config = tokengate::config::load_text(Path::new("upstreams-test.yaml"), &text, &Default::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    gateway(config).await
}

fn token(idp: &tokengate::dev_issuer::DevIssuer, scope: &str) -> String {
    idp.mint(serde_json::json!({"sub": "alice", "aud": "api", "scope": scope}))
}

async fn get(url: &str, token: &str) -> reqwest::Response {
    client(false).get(url).bearer_auth(token).send().await.unwrap()
}

fn seen<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(format!("x-seen-{name}")).map_or("", |v| v.to_str().unwrap())
}

/// `config/upstreams.yaml` loads through the real loader once its files exist, each route
/// bound to the upstream it names.
#[test]
fn shipped_example_loads() {
    let pki = Pki::new("example");
    pki.leaf("gateway-client", &["tokengate"]);
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/upstreams.yaml"))
        .unwrap()
        .replace("/etc/tokengate/internal-ca.pem", &pki.path("ca.pem"))
        .replace("/etc/tokengate/gateway-client.pem", &pki.path("gateway-client.pem"))
        .replace("/etc/tokengate/gateway-client.key", &pki.path("gateway-client.key"));
    let c = tokengate::config::load_text(Path::new("config/upstreams.yaml"), &text, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let bound: Vec<(&str, Option<&str>)> = c.routes.iter().map(|r| (r.id.as_str(), r.upstream.as_deref())).collect();
    assert_eq!(
        bound,
        [("health", None), ("billing", Some("billing")), ("orders", Some("orders-grpc")), ("legacy", None)]
    );
    let billing = &c.upstreams.iter().find(|(n, _)| n == "billing").unwrap().1;
    assert!(billing.tls.as_ref().unwrap().client_identity.is_some());
    // Without its files the example is refused, naming the key.
    let err = tokengate::config::load_text(
        Path::new("u.yaml"),
        &text.replace(&pki.path("ca.pem"), "/nonexistent/ca.pem"),
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("upstreams.billing.ca"), "{err}");
    // A client key that is not the client certificate's is refused, naming the key.
    pki.leaf("other", &["other"]);
    let mismatched = text.replace(&pki.path("gateway-client.key"), &pki.path("other.key"));
    let err = tokengate::config::load_text(Path::new("u.yaml"), &mismatched, &Default::default()).unwrap_err();
    assert_eq!(err.field(), Some("upstreams.billing.client_key"), "{err}");
    assert!(err.to_string().contains("does not match the certificate"), "{err}");
}

/// Two upstreams, each route forwarding to its own; the default takes routes that name none.
#[tokio::test]
async fn routes_choose_their_upstream() {
    let idp = dev_issuer("k").await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gw = gateway_yaml(
        &idp,
        &format!("upstream: {{url: '{}'}}\nupstreams:\n  billing: {{url: '{}'}}", a.url(), b.url()),
        "  - {id: billing, path_prefix: /billing, upstream: billing}\n  - {id: rest, path_prefix: /}\n",
    )
    .await;
    let t = token(&idp, "");
    assert_eq!(get(&format!("http://{}/billing/x", gw.addr), &t).await.status(), 200);
    assert_eq!(get(&format!("http://{}/other", gw.addr), &t).await.status(), 200);
    assert_eq!(b.seen().iter().map(|s| s.target.as_str()).collect::<Vec<_>>(), ["/billing/x"]);
    assert_eq!(a.seen().iter().map(|s| s.target.as_str()).collect::<Vec<_>>(), ["/other"]);
    // Counted per upstream: the named one by its name, the default by its URL.
    let m = &gw.metrics;
    assert_eq!(m.upstream_responses.with_label_values(&["billing", "2xx"]).get(), 1);
    assert_eq!(m.upstream_responses.with_label_values(&[&a.url(), "2xx"]).get(), 1);
    // Refused requests reach neither.
    assert_eq!(client(false).get(format!("http://{}/billing/y", gw.addr)).send().await.unwrap().status(), 401);
    assert_eq!(b.count(), 1);
}

/// An https upstream whose certificate chains to a private CA: trusted with `ca`, over HTTP/2
/// when its ALPN offers h2 and HTTP/1.1 when it does not; refused (502) without the CA.
#[tokio::test]
async fn https_upstream_with_a_private_ca() {
    let idp = dev_issuer("k").await;
    let pki = Pki::new("ca");
    let h2 = tls_upstream(&pki, &["localhost"], &[b"h2", b"http/1.1"], false).await;
    let h1 = tls_upstream(&pki, &["localhost"], &[b"http/1.1"], false).await;
    let untrusted = tls_upstream(&pki, &["localhost"], &[b"h2"], false).await;
    let ca = pki.path("ca.pem");
    let gw = gateway_yaml(
        &idp,
        &format!(
            "upstream: {{url: 'https://localhost:{}', ca: '{ca}'}}\nupstreams:\n  h1: {{url: 'https://localhost:{}', ca: '{ca}'}}\n  public-roots: {{url: 'https://localhost:{}'}}",
            h2.port(),
            h1.port(),
            untrusted.port()
        ),
        "  - {id: h1, path_prefix: /h1, upstream: h1}\n  - {id: nope, path_prefix: /untrusted, upstream: public-roots}\n  - {id: rest, path_prefix: /}\n",
    )
    .await;
    let t = token(&idp, "");
    let opened = gw.metrics.upstream_connections.get();
    for _ in 0..3 {
        let r = get(&format!("http://{}/x", gw.addr), &t).await;
        assert_eq!(r.status(), 200);
        assert_eq!(seen(&r, "version"), "HTTP/2.0");
        assert_eq!(seen(&r, "subject"), "alice");
        assert_eq!(seen(&r, "path"), "/x");
    }
    assert_eq!(gw.metrics.upstream_connections.get() - opened, 1, "one HTTP/2 connection carried the three");
    let r = get(&format!("http://{}/h1/y", gw.addr), &t).await;
    assert_eq!((r.status().as_u16(), seen(&r, "version")), (200, "HTTP/1.1"));
    // The webpki roots do not know the private CA: the handshake fails, nothing is sent.
    let r = get(&format!("http://{}/untrusted/z", gw.addr), &t).await;
    assert_eq!(r.status(), 502);
    assert!(seen(&r, "path").is_empty());
    let m = &gw.metrics;
    let default = format!("https://localhost:{}", h2.port());
    assert_eq!(m.upstream_responses.with_label_values(&[&default, "2xx"]).get(), 3);
    assert_eq!(m.upstream_errors.with_label_values(&["public-roots", "connect"]).get(), 1);
}

/// An h2c upstream that answers one request per connection, then sends GOAWAY and closes it;
/// `closed` counts the connections it has closed.
async fn one_request_per_connection(closed: Arc<tokio::sync::watch::Sender<usize>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let (answered, first) = tokio::sync::oneshot::channel::<()>();
                let answered = std::sync::Mutex::new(Some(answered));
                let service = hyper::service::service_fn(move |req| {
                    answered.lock().unwrap().take().map(|a| a.send(()));
                    echo(req, false)
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = first => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
                closed.send_modify(|n| *n += 1);
            });
        }
    });
    addr
}

/// The shared HTTP/2 connection is replaced when the upstream closes it (GOAWAY): no request
/// fails, and a request that found it closed goes out again on a fresh one.
#[tokio::test]
async fn h2_connection_closed_by_the_upstream_is_replaced() {
    let idp = dev_issuer("k").await;
    let closed = Arc::new(tokio::sync::watch::Sender::new(0));
    let up = one_request_per_connection(closed.clone()).await;
    let gw = gateway_yaml(&idp, &format!("upstream: {{url: 'h2c://{up}'}}"), "  - {id: rest, path_prefix: /}\n").await;
    let t = token(&idp, "");
    for i in 0..4 {
        let r = get(&format!("http://{}/n{i}", gw.addr), &t).await;
        assert_eq!((r.status().as_u16(), seen(&r, "path")), (200, format!("/n{i}").as_str()), "request {i}");
        // The upstream closed the connection this request used.
        let mut seen_closed = closed.subscribe();
        tokio::time::timeout(WAIT, seen_closed.wait_for(|n| *n > i)).await.expect("the upstream closes").unwrap();
    }
    assert_eq!(gw.metrics.upstream_connections.get(), 4);
    assert_eq!(gw.metrics.upstream_errors.with_label_values(&[&format!("h2c://{up}"), "broken"]).get(), 0);
}

/// An upgrade to an https upstream whose ALPN prefers h2 goes over an HTTP/1.1 connection of
/// its own (upgrades are HTTP/1.1 only), and its bytes flow both ways; ordinary requests keep
/// using HTTP/2.
#[tokio::test]
async fn upgrade_through_an_https_upstream_that_prefers_h2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idp = dev_issuer("k").await;
    let pki = Pki::new("upgrade");
    let up = tls_upstream(&pki, &["localhost"], &[b"h2", b"http/1.1"], false).await;
    let gw = gateway_yaml(
        &idp,
        &format!("upstream: {{url: 'https://localhost:{}', ca: '{}'}}", up.port(), pki.path("ca.pem")),
        "  - {id: rest, path_prefix: /}\n",
    )
    .await;
    let t = token(&idp, "");
    let r = get(&format!("http://{}/x", gw.addr), &t).await;
    assert_eq!(seen(&r, "version"), "HTTP/2.0");

    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\nAuthorization: Bearer {t}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&got).to_lowercase();
    assert!(answer.starts_with("http/1.1 101"), "{answer}");
    assert!(answer.contains("x-seen-version: http/1.1"), "{answer}");
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    tokio::time::timeout(WAIT, s.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(echoed, b"ping through the tunnel");
}

/// A certificate for another name than the URL's host is accepted under `server_name`, and
/// refused without it.
#[tokio::test]
async fn https_upstream_server_name_override() {
    let idp = dev_issuer("k").await;
    let pki = Pki::new("sni");
    let up = tls_upstream(&pki, &["api.internal"], &[b"http/1.1"], false).await;
    let ca = pki.path("ca.pem");
    let gw = gateway_yaml(
        &idp,
        &format!(
            "upstream: {{url: 'https://127.0.0.1:{0}', ca: '{ca}', server_name: api.internal}}\nupstreams:\n  by-ip: {{url: 'https://127.0.0.1:{0}', ca: '{ca}'}}",
            up.port()
        ),
        "  - {id: ip, path_prefix: /ip, upstream: by-ip}\n  - {id: rest, path_prefix: /}\n",
    )
    .await;
    let t = token(&idp, "");
    let r = get(&format!("http://{}/x", gw.addr), &t).await;
    assert_eq!(r.status(), 200);
    // The certificate names api.internal, not 127.0.0.1.
    assert_eq!(get(&format!("http://{}/ip", gw.addr), &t).await.status(), 502);
}

/// An upstream that requires a client certificate gets the configured one; without it the
/// handshake fails and the client gets 502.
#[tokio::test]
async fn https_upstream_mtls() {
    let idp = dev_issuer("k").await;
    let pki = Pki::new("mtls");
    let up = tls_upstream(&pki, &["localhost"], &[b"h2", b"http/1.1"], true).await;
    pki.leaf("gateway-client", &["tokengate"]);
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("gateway-client.pem"), pki.path("gateway-client.key"));
    let gw = gateway_yaml(
        &idp,
        &format!(
            "upstream: {{url: 'https://localhost:{0}', ca: '{ca}', client_cert: '{cert}', client_key: '{key}'}}\nupstreams:\n  anonymous: {{url: 'https://localhost:{0}', ca: '{ca}'}}",
            up.port()
        ),
        "  - {id: anon, path_prefix: /anon, upstream: anonymous}\n  - {id: rest, path_prefix: /}\n",
    )
    .await;
    let t = token(&idp, "");
    let r = get(&format!("http://{}/x", gw.addr), &t).await;
    assert_eq!((r.status().as_u16(), seen(&r, "client-cert")), (200, "true"));
    assert_eq!(get(&format!("http://{}/anon", gw.addr), &t).await.status(), 502);
}

/// `h2c://`: cleartext HTTP/2 to the upstream. An HTTP/1.1 client's cookie goes as separate
/// fields, an HTTP/2 client's separate cookies reach an HTTP/1.1 upstream as one (RFC 9113
/// §8.2.3), and the upstream sees the client's host as `:authority`.
#[tokio::test]
async fn h2c_upstream_and_cookie_translation() {
    let idp = dev_issuer("k").await;
    let h2c = serve(None).await;
    let h1 = Upstream::start().await;
    let gw = gateway_yaml(
        &idp,
        &format!("upstream: {{url: '{}'}}\nupstreams:\n  h2: {{url: 'h2c://{h2c}'}}", h1.url()),
        "  - {id: h2, path_prefix: /h2, upstream: h2}\n  - {id: rest, path_prefix: /}\n",
    )
    .await;
    let t = token(&idp, "");
    let r = client(false)
        .get(format!("http://{}/h2/x", gw.addr))
        .bearer_auth(&t)
        .header("host", "API.example.com")
        .header(COOKIE, "a=1; b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(seen(&r, "version"), "HTTP/2.0");
    assert_eq!(seen(&r, "cookies"), "a=1 | b=2");
    assert_eq!(seen(&r, "authority"), "api.example.com");

    let r = client(true)
        .get(format!("http://{}/y", gw.addr))
        .bearer_auth(&t)
        .header(COOKIE, "a=1")
        .header(COOKIE, "b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> =
        h1.last().headers.get_all(COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(cookies, ["a=1; b=2"]);
}

mod grpc {
    //! A real gRPC service upstream (Envoy's `Authorization`, for its generated tonic code) and
    //! a real tonic client, through the gateway.

    use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::authorization_server::{Authorization, AuthorizationServer};
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    use tonic::{Code, Status};

    use super::*;

    struct Service;

    #[tonic::async_trait]
    impl Authorization for Service {
        async fn check(&self, request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, Status> {
            let subject = request.metadata().get("x-auth-subject").and_then(|v| v.to_str().ok()).map(str::to_owned);
            if request.metadata().get("authorization").is_some() {
                return Err(Status::failed_precondition("the token reached the upstream"));
            }
            let Some(subject) = subject else { return Err(Status::failed_precondition("no identity header")) };
            if request.metadata().get("x-fail").is_some() {
                // The status travels in trailers, after the headers.
                return Err(Status::not_found(format!("nothing for {subject}")));
            }
            let status = RpcStatus { code: 0, message: format!("hello {subject}"), details: vec![] };
            Ok(tonic::Response::new(CheckResponse { status: Some(status), ..Default::default() }))
        }
    }

    async fn start_upstream() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = AuthorizationServer::new(Service);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let server = server.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let mut server = server.clone();
                    async move { tonic::codegen::Service::call(&mut server, req).await }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        addr
    }

    async fn call(gw: SocketAddr, token: Option<&str>, fail: bool) -> Result<CheckResponse, Status> {
        let mut client = AuthorizationClient::connect(format!("http://{gw}")).await.unwrap();
        let mut request = tonic::Request::new(CheckRequest::default());
        if let Some(t) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        if fail {
            request.metadata_mut().insert("x-fail", "1".parse().unwrap());
        }
        client.check(request).await.map(tonic::Response::into_inner)
    }

    /// A tonic client calls a tonic server through the gateway: answered with the identity,
    /// the upstream's error status carried back, and refusals as gRPC statuses 16 and 7 with
    /// the RFC 6750 challenge in `www-authenticate`.
    #[tokio::test]
    async fn tonic_through_the_gateway() {
        let idp = dev_issuer("k").await;
        let up = start_upstream().await;
        let rest = Upstream::start().await;
        let gw = gateway_yaml(
            &idp,
            &format!("upstream: {{url: '{}'}}\nupstreams:\n  grpc: {{url: 'h2c://{up}'}}\nidentity: {{forward_authorization: false}}", rest.url()),
            "  - {id: grpc, path_prefix: /envoy.service.auth.v3.Authorization/, upstream: grpc, scopes: [grpc]}\n  - {id: rest, path_prefix: /}\n",
        )
        .await;

        let ok = call(gw.addr, Some(&token(&idp, "grpc")), false).await.expect("answered");
        assert_eq!(ok.status.unwrap().message, "hello alice");
        let err = call(gw.addr, Some(&token(&idp, "grpc")), true).await.unwrap_err();
        assert_eq!((err.code(), err.message()), (Code::NotFound, "nothing for alice"));

        let missing = call(gw.addr, None, false).await.unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
        assert_eq!(missing.message(), "a bearer token is required");
        let challenge = missing.metadata().get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm=\"tokengate\""), "{challenge}");

        let forged = call(gw.addr, Some("not-a-jwt"), false).await.unwrap_err();
        assert_eq!(forged.code(), Code::Unauthenticated);
        assert!(forged.metadata().get("www-authenticate").unwrap().to_str().unwrap().contains("invalid_token"));

        let scopeless = call(gw.addr, Some(&token(&idp, "other")), false).await.unwrap_err();
        assert_eq!(scopeless.code(), Code::PermissionDenied, "{scopeless:?}");
        assert_eq!(scopeless.message(), "token lacks a required scope");
        let challenge = scopeless.metadata().get("www-authenticate").unwrap().to_str().unwrap();
        assert!(
            challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"grpc\""),
            "{challenge}"
        );
        assert_eq!(rest.count(), 0, "no gRPC call went to the other upstream");
    }
}
