//! The proxy listener's TLS: one rustls `ServerConfig` (TLS 1.3 and 1.2, ALPN `h2` and
//! `http/1.1`, aws-lc-rs always, whatever the process default), certificates chosen per
//! handshake by `sni::SniResolver`, client certificates verified against `tls.client_ca` when
//! configured.
//!
//! Rotation: `watch` hashes (SHA-256) every certificate, key and CA file every `POLL`, and again
//! at each config reload (SIGHUP). A changed pair is parsed and checked (the key must be the
//! leaf's) and the resolver's table swapped: new handshakes get it, open connections keep
//! theirs. A bad pair is refused with a warning and `tokengate_tls_reloads_total
//! {result="failure"}`; the old pair keeps serving. A changed CA rebuilds the `ServerConfig`,
//! loaded again by every accept. Nothing on the handshake path takes a lock.
//!
//! Never logs file contents or key material; metric labels are file paths.

pub mod load;
pub mod peer;
pub mod sni;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntGaugeVec};
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsSettings};
use crate::metrics::Metrics;
pub use load::LoadError;
pub use peer::{ClientCert, TlsInfo};
use sni::{SniResolver, SniTable};

/// How often certificate, key and CA files are hashed for a change.
pub const POLL: Duration = Duration::from_secs(2);

/// ALPN protocols offered, in preference order.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The listener's TLS state.
pub struct Tls {
    /// Loaded per accept; rebuilt when the client CA or `client_auth` changes.
    config: ArcSwap<ServerConfig>,
    resolver: Arc<SniResolver>,
    provider: Arc<CryptoProvider>,
    /// What was loaded from disk; only the reloader (one task, plus start-up) touches it.
    loaded: Mutex<Loaded>,
    metrics: TlsMetrics,
}

#[derive(Clone)]
struct TlsMetrics {
    reload_success: IntCounter,
    reload_failure: IntCounter,
    not_after: IntGaugeVec,
    handshake_success: IntCounter,
    handshake_failure: IntCounter,
}

/// One configured pair and what was last read of it.
struct Slot {
    cert: PathBuf,
    key: PathBuf,
    /// Hashes of the cert and key files last looked at (good or bad).
    seen: Option<([u8; 32], [u8; 32])>,
    /// The pair serving now, if it ever loaded.
    serving: Option<Arc<CertifiedKey>>,
}

struct Loaded {
    slots: Vec<Slot>,
    client_auth: Option<ClientAuth>,
    client_ca: Option<PathBuf>,
    /// Hash of the CA file last looked at, and the roots serving now.
    ca_seen: Option<[u8; 32]>,
    roots: Option<Arc<RootCertStore>>,
}

impl Tls {
    /// Load every file of `settings`: any problem is an error (start-up; validation already
    /// checked the same files, so only a file changed in between gets here).
    pub fn new(settings: &TlsSettings, metrics: &Metrics) -> Result<Arc<Tls>, LoadError> {
        let provider = load::provider();
        let metrics = TlsMetrics {
            reload_success: metrics.tls_reloads.with_label_values(&["success"]),
            reload_failure: metrics.tls_reloads.with_label_values(&["failure"]),
            not_after: metrics.tls_not_after.clone(),
            handshake_success: metrics.tls_handshakes.with_label_values(&["success"]),
            handshake_failure: metrics.tls_handshakes.with_label_values(&["failure"]),
        };
        let mut loaded = Loaded { slots: Vec::new(), client_auth: None, client_ca: None, ca_seen: None, roots: None };
        loaded.configure(settings);
        let mut keys = Vec::new();
        for slot in &mut loaded.slots {
            let (cert, key) = (load::read(&slot.cert)?, load::read(&slot.key)?);
            let certified = Arc::new(load::certified_key(&provider, &slot.cert, &cert, &slot.key, &key)?);
            set_not_after(&metrics.not_after, slot, &certified);
            slot.seen = Some((load::hash(&cert), load::hash(&key)));
            slot.serving = Some(certified.clone());
            keys.push(certified);
        }
        if let Some(path) = &loaded.client_ca {
            let pem = load::read(path)?;
            loaded.roots = Some(load::roots(path, &pem)?);
            loaded.ca_seen = Some(load::hash(&pem));
        }
        let resolver = Arc::new(SniResolver { table: ArcSwap::from_pointee(SniTable::new(keys)) });
        let config = server_config(&provider, &resolver, &loaded).map_err(|reason| LoadError::BadCertificate {
            path: loaded.client_ca.clone().unwrap_or_default(),
            reason,
        })?;
        Ok(Arc::new(Tls {
            config: ArcSwap::from_pointee(config),
            resolver,
            provider,
            loaded: Mutex::new(loaded),
            metrics,
        }))
    }

    /// The handshake within `timeout`, counted in `tokengate_tls_handshakes_total`; `None`
    /// when it failed or took too long (the connection is then dropped).
    pub async fn handshake(&self, stream: TcpStream, timeout: Duration) -> Option<(TlsStream<TcpStream>, TlsInfo)> {
        match tokio::time::timeout(timeout, self.accept(stream)).await {
            Ok(Ok(done)) => {
                self.metrics.handshake_success.inc();
                Some(done)
            }
            Ok(Err(e)) => {
                self.metrics.handshake_failure.inc();
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                self.metrics.handshake_failure.inc();
                tracing::debug!("TLS handshake not finished within the header-read timeout");
                None
            }
        }
    }

    /// The TLS handshake on an accepted connection, and what it told about the client.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<(TlsStream<TcpStream>, TlsInfo)> {
        let stream = TlsAcceptor::from(self.config.load_full()).accept(stream).await?;
        let (_, conn) = stream.get_ref();
        let info = TlsInfo {
            sni: conn.server_name().map(str::to_owned),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            client_cert: conn.peer_certificates().and_then(<[_]>::first).map(ClientCert::from_der),
        };
        Ok((stream, info))
    }

    /// Read every file again and apply what changed; `settings` replaces the configured files
    /// (a config reload). Blocking file I/O: run off the async workers.
    pub fn refresh(&self, settings: Option<&TlsSettings>) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut rebuild_config = false;
        if let Some(settings) = settings {
            rebuild_config |= loaded.client_auth != settings.client_auth || loaded.client_ca != settings.client_ca;
            let before: Vec<PathBuf> = loaded.slots.iter().map(|s| s.cert.clone()).collect();
            loaded.configure(settings);
            for gone in before.iter().filter(|p| !loaded.slots.iter().any(|s| &&s.cert == p)) {
                let _ = self.metrics.not_after.remove_label_values(&[&gone.display().to_string()]);
            }
        }
        let mut changed = settings.is_some();
        for slot in &mut loaded.slots {
            changed |= self.refresh_slot(slot);
        }
        if let Some(path) = loaded.client_ca.clone() {
            match load::read(&path).map(|pem| (load::hash(&pem), load::roots(&path, &pem))) {
                Ok((hash, _)) if loaded.ca_seen == Some(hash) => {}
                Ok((hash, roots)) => {
                    loaded.ca_seen = Some(hash);
                    match roots {
                        Ok(roots) => {
                            loaded.roots = Some(roots);
                            rebuild_config = true;
                        }
                        Err(e) => self.failed(&e),
                    }
                }
                // Unreadable (mid-swap, or gone): looked at again at the next poll.
                Err(e) => tracing::debug!("client CA not read: {e}"),
            }
        } else {
            loaded.roots = None;
        }
        if changed {
            let keys: Vec<_> = loaded.slots.iter().filter_map(|s| s.serving.clone()).collect();
            if !keys.is_empty() {
                self.resolver.table.store(Arc::new(SniTable::new(keys)));
            }
        }
        if rebuild_config {
            match server_config(&self.provider, &self.resolver, &loaded) {
                Ok(config) => {
                    self.config.store(Arc::new(config));
                    self.metrics.reload_success.inc();
                    tracing::info!("TLS client CA reloaded");
                }
                Err(reason) => {
                    self.metrics.reload_failure.inc();
                    tracing::warn!("TLS client CA not applied, the old one keeps verifying: {reason}");
                }
            }
        }
    }

    /// Look at one pair's files; true when a new pair was loaded.
    fn refresh_slot(&self, slot: &mut Slot) -> bool {
        // A file missing or unreadable now is mid-swap or about to be fixed: keep serving and
        // look again at the next poll (the hashes are not updated).
        let (cert, key) = match (load::read(&slot.cert), load::read(&slot.key)) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("TLS certificate files not read: {e}");
                return false;
            }
        };
        let seen = (load::hash(&cert), load::hash(&key));
        if slot.seen == Some(seen) {
            return false;
        }
        slot.seen = Some(seen);
        match load::certified_key(&self.provider, &slot.cert, &cert, &slot.key, &key) {
            Ok(certified) => {
                let certified = Arc::new(certified);
                set_not_after(&self.metrics.not_after, slot, &certified);
                slot.serving = Some(certified);
                self.metrics.reload_success.inc();
                tracing::info!(cert = %slot.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    fn failed(&self, e: &LoadError) {
        self.metrics.reload_failure.inc();
        tracing::warn!("TLS certificate change refused, the previous one keeps serving: {e}");
    }

    /// Poll the files every `POLL`, and at once whenever `settings` changes (a config reload);
    /// runs until the sender is dropped.
    pub async fn watch(self: Arc<Self>, mut settings: watch::Receiver<TlsSettings>) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let new = tokio::select! {
                _ = poll.tick() => None,
                changed = settings.changed() => match changed {
                    Ok(()) => Some(settings.borrow_and_update().clone()),
                    Err(_) => return,
                },
            };
            let tls = self.clone();
            let _ = tokio::task::spawn_blocking(move || tls.refresh(new.as_ref())).await;
        }
    }
}

impl Loaded {
    /// Take `settings`' files; a pair whose paths did not change keeps what was loaded.
    fn configure(&mut self, settings: &TlsSettings) {
        let mut old = std::mem::take(&mut self.slots);
        self.slots = settings
            .certificates
            .iter()
            .map(|pair| match old.iter().position(|s| s.cert == pair.cert && s.key == pair.key) {
                Some(i) => old.swap_remove(i),
                None => Slot { cert: pair.cert.clone(), key: pair.key.clone(), seen: None, serving: None },
            })
            .collect();
        if self.client_ca != settings.client_ca {
            self.ca_seen = None;
            self.roots = None;
        }
        self.client_ca = settings.client_ca.clone();
        self.client_auth = settings.client_auth;
    }
}

fn set_not_after(gauge: &IntGaugeVec, slot: &Slot, key: &CertifiedKey) {
    if let Some(t) = key.cert.first().and_then(peer::not_after) {
        gauge.with_label_values(&[&slot.cert.display().to_string()]).set(t);
    }
}

/// The `ServerConfig` for the current client-certificate settings. Without client
/// authentication, sessions resume (stateful, in memory); with it, never: a resumed session
/// would skip the client certificate verifier.
fn server_config(
    provider: &Arc<CryptoProvider>,
    resolver: &Arc<SniResolver>,
    loaded: &Loaded,
) -> Result<ServerConfig, String> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let mut config = match (&loaded.roots, loaded.client_auth) {
        (Some(roots), Some(mode)) => {
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            if mode == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| e.to_string())?;
            let mut config = builder.with_client_cert_verifier(verifier).with_cert_resolver(resolver.clone());
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
            config
        }
        _ => builder.with_no_client_auth().with_cert_resolver(resolver.clone()),
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
