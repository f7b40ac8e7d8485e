//! Load-benchmark fixture (used by benches/load.sh): starts the development issuer on loopback
//! with one RS256 key and writes token files for the three workloads, then serves the JWKS
//! until killed.
//!
//! `cargo run --release --example bench_issuer -- OUT_DIR COLD_TOKENS`
//! writes OUT_DIR/issuer (URL), OUT_DIR/hot.txt (one token), OUT_DIR/cold.txt (COLD_TOKENS
//! distinct tokens) and OUT_DIR/reject.txt (tokens with a valid shape and kid but a forged
//! signature) and OUT_DIR/opaque.txt (one opaque token, for the introspection workload; the
//! gateway introspects it as client "bench-gateway" / "bench-secret"), then prints "ready".

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::json;
use tokengate::dev_issuer::{DevClient, DevIssuer, SigningKey, TokenFormat};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().expect("usage: bench_issuer OUT_DIR COLD_TOKENS"));
    let cold: usize = args.next().map_or(10_000, |n| n.parse().expect("COLD_TOKENS is a number"));
    let key = Arc::new(SigningKey::rsa("bench-rs256", Algorithm::RS256));
    let idp = DevIssuer::builder()
        .keys(vec![key.clone()])
        .client(
            DevClient::new("bench-opaque", "bench-secret")
                .with_scopes(&["read"])
                .with_audiences(&["bench"])
                .with_format(TokenFormat::Opaque)
                .with_lifetime(std::time::Duration::from_secs(7200)),
        )
        .client(DevClient::new("bench-gateway", "bench-secret").with_audiences(&["bench"]))
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let issuer = idp.issuer().to_owned();
    let forger = Arc::new(SigningKey::rsa("bench-rs256", Algorithm::RS256));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("issuer"), &issuer).unwrap();
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 7200;
    let token = |key: &SigningKey, n: usize| {
        key.sign_raw(
            &json!({"alg": "RS256", "kid": "bench-rs256", "typ": "at+jwt"}),
            &json!({"iss": issuer, "sub": format!("user-{n}"), "aud": "bench", "scope": "read",
                    "client_id": "bench", "exp": exp, "jti": format!("jti-{n}")}),
        )
    };
    std::fs::write(out.join("hot.txt"), token(&key, 0) + "\n").unwrap();
    // Signing is the slow part: split it over the machine's cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (key, token) = (&key, &token);
                s.spawn(move || (t..cold).step_by(threads).map(|n| token(key, n + 1)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut file = std::io::BufWriter::new(std::fs::File::create(out.join("cold.txt")).unwrap());
    for t in chunks.iter().flatten() {
        writeln!(file, "{t}").unwrap();
    }
    file.flush().unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out.join("reject.txt")).unwrap());
    for n in 0..1000 {
        writeln!(file, "{}", token(&forger, n)).unwrap();
    }
    file.flush().unwrap();
    let opaque = idp.client_credentials("bench-opaque", "bench-secret", &[("resource", "bench")]).await;
    std::fs::write(out.join("opaque.txt"), format!("{opaque}\n")).unwrap();
    println!("ready {issuer}");
    std::future::pending::<()>().await;
}
