//! TLS on the proxy listener, over real sockets with certificates made here (rcgen): protocol
//! versions and ALPN, ECDSA and RSA, SNI, rotation under an open connection, a broken pair
//! refused, client certificates (required and optional) as identity headers, the cleartext
//! listener beside TLS, and config errors. Waits poll with a deadline; none sleeps blindly.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use support::pki::{Ca, Leaf};
use support::*;
use tokengate::config::{CertificatePaths, ClientAuth, Config, IdentityHeader, IdentityValue, TlsSettings};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

// === certificates ===

/// A fresh directory under the system temp dir.
fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tokengate-tls-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `leaf` written as `<name>.crt` and `<name>.key` in `dir`.
fn write_pair(dir: &Path, name: &str, leaf: &Leaf) -> CertificatePaths {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    CertificatePaths { cert, key }
}

/// A Kubernetes Secret volume: `tls.crt` and `tls.key` are links into `..data`, itself a link to
/// a timestamped directory; an update writes a new directory and renames a new `..data` over
/// the old one (one atomic step).
struct SecretVolume {
    dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    fn new(leaf: &Leaf) -> SecretVolume {
        let dir = scratch("secret");
        let mut volume = SecretVolume { dir, version: 0 };
        volume.update(&leaf.cert_pem, &leaf.key_pem);
        std::os::unix::fs::symlink("..data/tls.crt", volume.dir.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", volume.dir.join("tls.key")).unwrap();
        volume
    }

    fn paths(&self) -> CertificatePaths {
        CertificatePaths { cert: self.dir.join("tls.crt"), key: self.dir.join("tls.key") }
    }

    fn update(&mut self, cert_pem: &str, key_pem: &str) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let data = self.dir.join(&version);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), cert_pem).unwrap();
        std::fs::write(data.join("tls.key"), key_pem).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

// === gateway and client ===

fn tls_config(upstream: &Upstream, certificates: Vec<CertificatePaths>) -> Config {
    let mut cfg = config(&upstream.url(), vec![], vec![public_route("pub", "/")]);
    cfg.tls = Some(TlsSettings { certificates, client_ca: None, client_auth: None });
    cfg.identity.headers.push(IdentityHeader {
        name: HeaderName::from_static("x-client-subject"),
        value: IdentityValue::ClientCertSubject,
    });
    cfg.identity.headers.push(IdentityHeader {
        name: HeaderName::from_static("x-client-sha256"),
        value: IdentityValue::ClientCertSha256,
    });
    cfg
}

struct Client {
    roots: Vec<CertificateDer<'static>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    alpn: Vec<Vec<u8>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Client {
    fn new(ca: &Ca) -> Client {
        Client {
            roots: vec![ca.der.clone()],
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            alpn: vec![b"http/1.1".to_vec()],
            identity: None,
        }
    }

    fn config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for r in &self.roots {
            roots.add(r.clone()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key()).unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Arc::new(config)
    }

    async fn connect(&self, addr: std::net::SocketAddr, sni: &str) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        TlsConnector::from(self.config()).connect(name, tcp).await
    }
}

/// The certificate the server presented.
fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// An HTTP/1.1 keep-alive connection over `stream`.
async fn http1(stream: TlsStream<TcpStream>) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

async fn get1(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, path: &str) -> hyper::Result<u16> {
    let req = Request::get(path).header("host", "localhost").body(Empty::new()).unwrap();
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// Until `check` holds, polling every 20 ms, at most `WAIT`.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(gw: &tokengate::app::Running, name: &str, label: &str) -> u64 {
    match name {
        "handshakes" => gw.metrics.tls_handshakes.with_label_values(&[label]).get(),
        _ => gw.metrics.tls_reloads.with_label_values(&[label]).get(),
    }
}

// === tests ===

/// TLS 1.3 with ALPN h2 from a real client: the request reaches the upstream over HTTP/2 with
/// `X-Forwarded-Proto: https`; the handshake is counted.
#[tokio::test]
async fn tls13_h2_reaches_upstream_as_https() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let dir = scratch("h2");
    let leaf = ca.leaf(&["localhost"], false, None);
    let gw = gateway(tls_config(&up, vec![write_pair(&dir, "ec", &leaf)])).await;
    let mut client = Client::new(&ca);
    client.versions = vec![&rustls::version::TLS13];
    client.alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = client.connect(gw.addr, "localhost").await.unwrap();
    let conn = stream.get_ref().1;
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(served(&stream), leaf.der);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/h2").body(Empty::<Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.target, "/h2");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert!(seen.headers.get("x-client-subject").is_none(), "no client certificate, no header");
    assert_eq!(metric(&gw, "handshakes", "success"), 1);
}

/// A TLS 1.2-only client is served, over HTTP/1.1.
#[tokio::test]
async fn tls12_client_is_served() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let dir = scratch("tls12");
    let gw = gateway(tls_config(&up, vec![write_pair(&dir, "ec", &ca.leaf(&["localhost"], false, None))])).await;
    let mut client = Client::new(&ca);
    client.versions = vec![&rustls::version::TLS12];
    let stream = client.connect(gw.addr, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut sender = http1(stream).await;
    assert_eq!(get1(&mut sender, "/v12").await.unwrap(), 200);
    assert_eq!(up.last().headers["x-forwarded-proto"], "https");
}

/// An RSA certificate serves TLS 1.3 and 1.2 clients.
#[tokio::test]
async fn rsa_certificate() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let dir = scratch("rsa");
    let leaf = ca.leaf(&["localhost"], true, None);
    let gw = gateway(tls_config(&up, vec![write_pair(&dir, "rsa", &leaf)])).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut client = Client::new(&ca);
        client.versions = vec![version];
        let stream = client.connect(gw.addr, "localhost").await.unwrap();
        assert_eq!(served(&stream), leaf.der);
        assert_eq!(get1(&mut http1(stream).await, "/rsa").await.unwrap(), 200);
    }
}

/// Of two certificates, SNI picks the one for the name; an unknown name gets the first.
#[tokio::test]
async fn sni_picks_the_certificate() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let dir = scratch("sni");
    let (a, b) = (ca.leaf(&["a.test"], false, None), ca.leaf(&["b.test", "*.b.test"], true, None));
    let gw = gateway(tls_config(&up, vec![write_pair(&dir, "a", &a), write_pair(&dir, "b", &b)])).await;
    let client = Client::new(&ca);
    assert_eq!(served(&client.connect(gw.addr, "b.test").await.unwrap()), b.der);
    assert_eq!(served(&client.connect(gw.addr, "x.b.test").await.unwrap()), b.der);
    assert_eq!(served(&client.connect(gw.addr, "a.test").await.unwrap()), a.der);
    // The client refuses a certificate for another name, but sees which one it got.
    assert!(client.connect(gw.addr, "other.test").await.is_err());
}

/// A Secret-style symlink swap: an open keep-alive connection keeps working, new handshakes
/// get the new certificate within the poll interval, and the reload is counted.
#[tokio::test]
async fn rotation_under_an_open_connection() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let (old, new) = (ca.leaf(&["localhost"], false, None), ca.leaf(&["localhost"], false, None));
    let mut volume = SecretVolume::new(&old);
    let gw = gateway(tls_config(&up, vec![volume.paths()])).await;
    let client = Client::new(&ca);
    let stream = client.connect(gw.addr, "localhost").await.unwrap();
    assert_eq!(served(&stream), old.der);
    let mut open = http1(stream).await;
    assert_eq!(get1(&mut open, "/before").await.unwrap(), 200);

    volume.update(&new.cert_pem, &new.key_pem);
    let (c, addr, want) = (&client, gw.addr, &new.der);
    eventually("a new handshake gets the new certificate", || async move {
        served(&c.connect(addr, "localhost").await.unwrap()) == *want
    })
    .await;
    // The same client connection (a hyper sender is bound to one) still works.
    assert_eq!(get1(&mut open, "/after").await.unwrap(), 200, "the open connection was dropped");
    assert_eq!(metric(&gw, "reloads", "success"), 1);
    assert_eq!(metric(&gw, "reloads", "failure"), 0);
}

/// A new pair whose key is not the leaf's is refused: counted as a failure, and the old
/// certificate keeps serving.
#[tokio::test]
async fn broken_pair_is_refused() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let (old, other) = (ca.leaf(&["localhost"], false, None), ca.leaf(&["localhost"], false, None));
    let mut volume = SecretVolume::new(&old);
    let gw = gateway(tls_config(&up, vec![volume.paths()])).await;
    volume.update(&other.cert_pem, &old.key_pem);
    let g = &gw;
    eventually("the mismatched pair is refused", || async move { metric(g, "reloads", "failure") == 1 }).await;
    let client = Client::new(&ca);
    let stream = client.connect(gw.addr, "localhost").await.unwrap();
    assert_eq!(served(&stream), old.der);
    assert_eq!(get1(&mut http1(stream).await, "/still").await.unwrap(), 200);
    // Not PEM at all: refused too.
    volume.update("not a certificate", &old.key_pem);
    eventually("the unparsable pair is refused", || async move { metric(g, "reloads", "failure") == 2 }).await;
    assert_eq!(served(&client.connect(gw.addr, "localhost").await.unwrap()), old.der);
    assert_eq!(metric(&gw, "reloads", "success"), 0);
}

/// mTLS-configured gateway with one server certificate and a client CA.
async fn mtls(up: &Upstream, ca: &Ca, mode: Option<ClientAuth>) -> tokengate::app::Running {
    let dir = scratch("mtls");
    std::fs::write(dir.join("clients.pem"), &ca.pem).unwrap();
    let mut cfg = tls_config(up, vec![write_pair(&dir, "server", &ca.leaf(&["localhost"], false, None))]);
    let tls = cfg.tls.as_mut().unwrap();
    tls.client_ca = Some(dir.join("clients.pem"));
    tls.client_auth = mode;
    gateway(cfg).await
}

fn x5t_s256(der: &CertificateDer<'_>) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()))
}

/// Client certificate required: without one there is no exchange (the handshake failure is
/// counted); with one the upstream gets its subject (RFC 4514) and `x5t#S256` thumbprint.
#[tokio::test]
async fn mtls_required() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let gw = mtls(&up, &ca, Some(ClientAuth::Required)).await;
    // TLS 1.3: the client's side of the handshake completes before the server reads its
    // (empty) certificate, so the refusal shows on the first request.
    let refused = match Client::new(&ca).connect(gw.addr, "localhost").await {
        Err(_) => true,
        Ok(stream) => get1(&mut http1(stream).await, "/no-cert").await.is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    assert_eq!(up.count(), 0);
    let g = &gw;
    eventually("the failed handshake is counted", || async move { metric(g, "handshakes", "failure") == 1 }).await;

    let leaf = ca.leaf(&["client-a"], false, Some(("Example, Inc.", "client-a")));
    let mut client = Client::new(&ca);
    client.identity = Some((vec![leaf.der.clone()], leaf.key()));
    let stream = client.connect(gw.addr, "localhost").await.unwrap();
    let mut sender = http1(stream).await;
    let req = Request::get("/with-cert")
        .header("host", "localhost")
        .header("x-client-subject", "CN=admin")
        .body(Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    let h = up.last().headers;
    assert_eq!(h["x-client-subject"], "CN=client-a,O=Example\\, Inc.");
    assert_eq!(h["x-client-sha256"], x5t_s256(&leaf.der).as_str());
    assert_eq!(h.get_all("x-client-subject").iter().count(), 1, "the client's copy was not removed");
}

/// Client certificate optional: both kinds of client are served; a client without one gets
/// no certificate headers, and a client-sent copy never reaches the upstream.
#[tokio::test]
async fn mtls_optional() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let gw = mtls(&up, &ca, Some(ClientAuth::Optional)).await;
    let mut sender = http1(Client::new(&ca).connect(gw.addr, "localhost").await.unwrap()).await;
    let req = Request::get("/anon")
        .header("host", "localhost")
        .header("x-client-subject", "CN=admin")
        .header("X_Client_Sha256", "forged")
        .body(Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    let h = up.last().headers;
    assert!(h.get("x-client-subject").is_none(), "spoofed subject forwarded");
    assert!(h.get("x-client-sha256").is_none() && h.get("x_client_sha256").is_none(), "spoofed thumbprint forwarded");

    let leaf = ca.leaf(&["client-b"], true, Some(("Example", "client-b")));
    let mut client = Client::new(&ca);
    client.identity = Some((vec![leaf.der.clone()], leaf.key()));
    let mut sender = http1(client.connect(gw.addr, "localhost").await.unwrap()).await;
    assert_eq!(get1(&mut sender, "/cert").await.unwrap(), 200);
    let h = up.last().headers;
    assert_eq!(h["x-client-subject"], "CN=client-b,O=Example");
    assert_eq!(h["x-client-sha256"], x5t_s256(&leaf.der).as_str());

    // A certificate from another CA is refused even though one is optional.
    let stranger = Ca::new("other CA").leaf(&["client-c"], false, None);
    let mut client = Client::new(&ca);
    client.identity = Some((vec![stranger.der.clone()], stranger.key()));
    let refused = match client.connect(gw.addr, "localhost").await {
        Err(_) => true,
        Ok(stream) => get1(&mut http1(stream).await, "/stranger").await.is_err(),
    };
    assert!(refused, "a certificate from an unknown CA was accepted");
}

/// `plain_listen` serves cleartext beside TLS, with `X-Forwarded-Proto: http`.
#[tokio::test]
async fn plain_listener_beside_tls() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let dir = scratch("plain");
    let mut cfg = tls_config(&up, vec![write_pair(&dir, "ec", &ca.leaf(&["localhost"], false, None))]);
    cfg.plain_listen = Some("127.0.0.1:0".parse().unwrap());
    let gw = gateway(cfg).await;
    let plain = gw.plain_addr.expect("the plain listener runs");
    let resp = client(false).get(format!("http://{plain}/plain")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().headers["x-forwarded-proto"], "http");
    let stream = Client::new(&ca).connect(gw.addr, "localhost").await.unwrap();
    assert_eq!(get1(&mut http1(stream).await, "/tls").await.unwrap(), 200);
    assert_eq!(up.last().headers["x-forwarded-proto"], "https");
}

/// Only named upstreams (no default `upstream`) still run the proxy listeners, the cleartext
/// one included.
#[tokio::test]
async fn plain_listener_with_named_upstreams_only() {
    let (up, ca) = (Upstream::start().await, Ca::new("test CA"));
    let dir = scratch("plain-named");
    let mut cfg = tls_config(&up, vec![write_pair(&dir, "ec", &ca.leaf(&["localhost"], false, None))]);
    let default = cfg.upstream.take().unwrap();
    cfg.upstreams = vec![("app".into(), default)];
    cfg.routes[0].upstream = Some("app".into());
    cfg.plain_listen = Some("127.0.0.1:0".parse().unwrap());
    let gw = gateway(cfg).await;
    let plain = gw.plain_addr.expect("the plain listener runs");
    assert_eq!(client(false).get(format!("http://{plain}/plain")).send().await.unwrap().status(), 200);
    assert_eq!(up.last().headers["x-forwarded-proto"], "http");
}

/// Bad TLS settings stop the load with the file, the key and what is wrong.
#[test]
fn bad_config_is_a_clear_error() {
    let ca = Ca::new("test CA");
    let dir = scratch("config");
    let good = write_pair(&dir, "good", &ca.leaf(&["localhost"], false, None));
    let other = write_pair(&dir, "other", &ca.leaf(&["localhost"], false, None));
    std::fs::write(dir.join("empty.pem"), "# nothing here\n").unwrap();
    let base = "upstream: {url: http://127.0.0.1:1}\nissuers: [{issuer: https://idp.example, jwks_uri: https://idp.example/jwks, audiences: [api]}]\n";
    let load = |tls: String| {
        let text = format!("{base}{tls}");
        tokengate::config::load_text(Path::new("gw.yaml"), &text, &Default::default()).unwrap_err().to_string()
    };
    let (cert, key) = (good.cert.display(), good.key.display());
    let missing = dir.join("missing.crt");
    let e = load(format!("tls:\n  certificates:\n    - {{cert: {}, key: {key}}}\n", missing.display()));
    assert!(
        e.starts_with("gw.yaml:") && e.contains("tls.certificates[0].cert") && e.contains("missing.crt: cannot read"),
        "{e}"
    );
    let e = load(format!("tls:\n  certificates:\n    - {{cert: {cert}, key: {}}}\n", other.key.display()));
    assert!(e.contains("tls.certificates[0].key") && e.contains("does not match the certificate"), "{e}");
    let e = load(format!("tls:\n  certificates:\n    - {{cert: {}, key: {key}}}\n", dir.join("empty.pem").display()));
    assert!(e.contains("no PEM CERTIFICATE"), "{e}");
    let e = load(format!("tls:\n  certificates:\n    - {{cert: {cert}, key: {key}}}\n  client_auth: optional\n"));
    assert!(e.contains("tls.client_auth") && e.contains("needs tls.client_ca"), "{e}");
    let e = load(format!("listen: 127.0.0.1:8443\nplain_listen: 127.0.0.1:8443\ntls: {{cert: {cert}, key: {key}}}\n"));
    assert!(e.contains("plain_listen") && e.contains("overlaps listen"), "{e}");
    let e = load("plain_listen: 127.0.0.1:8081\n".into());
    assert!(e.contains("plain_listen") && e.contains("needs tls"), "{e}");
    // The environment's single pair, named by its variable.
    let env = [("TOKENGATE_TLS_CERT".to_string(), cert.to_string())].into_iter().collect();
    let e = tokengate::config::load_text(Path::new("gw.yaml"), base, &env).unwrap_err().to_string();
    assert!(e.contains("tls.key") && e.contains("is required"), "{e}");
    let env = [("TOKENGATE_TLS_CERT", cert.to_string()), ("TOKENGATE_TLS_KEY", key.to_string())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let c = tokengate::config::load_text(Path::new("gw.yaml"), base, &env).unwrap();
    assert_eq!(c.tls.unwrap().certificates, vec![good]);
}
