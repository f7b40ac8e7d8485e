//! `tokengate demo`: the whole flow on one machine. Starts the development issuer and a tiny
//! echo upstream on loopback, runs the gateway with the bundled `config/demo.yaml`, and prints
//! curl commands with working tokens. A development aid, never a production mode.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config;
use crate::dev_issuer::{DevIssuer, SigningKey};

const DEMO_CONFIG: &str = include_str!("../config/demo.yaml");

type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// Run the demo until SIGINT/SIGTERM.
pub async fn run(listen: SocketAddr) -> Result<(), DemoError> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let idp = DevIssuer::start(loopback, vec![Arc::new(SigningKey::ec("demo-es256", jsonwebtoken::Algorithm::ES256))])
        .await?;
    let upstream = echo_upstream(loopback).await?;
    let env: HashMap<String, String> = [
        ("DEMO_LISTEN", listen.to_string()),
        ("DEMO_UPSTREAM", format!("http://{upstream}")),
        ("DEMO_ISSUER", idp.issuer().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let cfg = config::load_text(Path::new("config/demo.yaml"), DEMO_CONFIG, &env)?;
    let running = crate::app::start(cfg).await.map_err(|e| -> DemoError {
        match e {
            crate::app::StartError::Bind { addr, source, .. } => format!(
                "cannot listen on {addr}: {source}; pick another address with `tokengate demo --listen 127.0.0.1:8090`"
            )
            .into(),
            e => e.into(),
        }
    })?;
    for _ in 0..500 {
        if running.state().auth.issuers().iter().all(|i| i.is_ready()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let claims = |scope: &str| serde_json::json!({"sub": "demo-user", "aud": "demo-api", "client_id": "demo-client", "scope": scope});
    let read = idp.mint(claims("read"));
    let gw = running.addr;
    println!(
        "tokengate demo (development only): issuer {issuer}, echo upstream http://{upstream}, admin http://{admin}

  # allowed: a valid token with scope \"read\"; the echo shows the X-Auth-* headers tokengate added
  curl -s http://{gw}/hello -H 'Authorization: Bearer {read}'

  # 401: no token
  curl -si http://{gw}/hello

  # 403 insufficient_scope: /admin needs scope \"admin\"
  curl -si http://{gw}/admin -H 'Authorization: Bearer {read}'

  # public route, no token needed; spoofed identity headers are still stripped
  curl -s http://{gw}/public/info -H 'X-Auth-Subject: root'

  # metrics
  curl -s http://{admin}/metrics | grep tokengate_requests_total

Press Ctrl-C to stop.",
        issuer = idp.issuer(),
        admin = running.admin_addr,
    );
    crate::app::shutdown_signal().await;
    running.shutdown().await;
    idp.shutdown().await;
    Ok(())
}

/// Start an upstream that answers every request with a JSON echo of what it received
/// (method, path, headers, body size), so the identity headers the gateway adds are visible.
pub async fn echo_upstream(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(echo);
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(bound)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let size = body.collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned().into()))
        .collect();
    let body = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()),
        "headers": headers,
        "body_bytes": size,
    });
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec_pretty(&body).unwrap_or_default())));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
}
