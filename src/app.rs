//! Wiring only: build the shared state, bind both listeners, start the JWKS refreshers, swap
//! in a reloaded configuration (`reload`), and own the shutdown sequence (mark draining → stop
//! accepting → drain in-flight, bounded → close the admin port).

mod reload;

pub use reload::{run_until_stopped, shutdown_signal, ReloadError, Signals, Stop};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::auth::jwks::JwksCache;
use crate::clock::Clock;
use crate::config::{Config, TlsSettings};
use crate::decision::Decision;
use crate::metrics::{Metrics, LISTENER_ADMIN, LISTENER_DECISION, LISTENER_PROXY};
use crate::proxy::{self, Gateway, Live, State};
use crate::server::{self, Limits, Peer};
use crate::tls::Tls;

/// Total time for one IdP call is set per request; this bounds connection setup.
const IDP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({setting}): {source}; choose another address with {flag}")]
    Bind { addr: SocketAddr, setting: &'static str, flag: &'static str, source: std::io::Error },
    #[error("cannot build the HTTP client for identity providers: {0}")]
    Http(#[from] reqwest::Error),
    #[error("nothing to serve: neither an upstream nor a decision listener is configured")]
    NothingToServe,
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::LoadError),
}

/// A running gateway. Dropping it does not stop it: call `shutdown`.
pub struct Running {
    /// The proxy listener's address; when only the decision service runs (no upstream), the
    /// decision service's.
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The decision service's address, when `decision.listen` is set.
    pub decision_addr: Option<SocketAddr>,
    /// The cleartext proxy listener's address, when `plain_listen` is set beside TLS.
    pub plain_addr: Option<SocketAddr>,
    /// The proxy listener's TLS, when configured.
    pub tls: Option<Arc<Tls>>,
    /// The configuration being served (`state()` reads it); `reload` replaces it.
    pub live: Arc<Live>,
    /// Shared by every configuration.
    pub metrics: Metrics,
    http: reqwest::Client,
    clock: Clock,
    limits: watch::Sender<Limits>,
    /// One refresher task per key set in use; held while a reload builds and swaps, so two
    /// reloads never interleave.
    refreshers: Mutex<Vec<Refresher>>,
    draining: Arc<AtomicBool>,
    stop_proxy: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    /// `None` when only the decision service runs.
    proxy: Option<JoinHandle<()>>,
    /// Stopped with the proxy listener (by `stop_proxy`).
    decision: Option<JoinHandle<()>>,
    /// The cleartext proxy listener beside TLS; stopped with the proxy listener.
    plain: Option<JoinHandle<()>>,
    /// A config reload hands the TLS file watcher its files (and makes it look at once).
    tls_settings: Option<watch::Sender<TlsSettings>>,
    tls_watch: Option<JoinHandle<()>>,
    admin: JoinHandle<()>,
}

/// A key set and the task that keeps it fresh.
struct Refresher {
    jwks: Arc<JwksCache>,
    task: JoinHandle<()>,
}

impl Refresher {
    fn start(jwks: &Arc<JwksCache>) -> Refresher {
        Refresher { jwks: jwks.clone(), task: tokio::spawn(jwks.clone().run()) }
    }
}

/// Bind the listeners and start serving. Returns once both ports accept connections.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with_clock(config, Clock::system()).await
}

/// `start`, with the wall clock that authentication reads (token `exp`/`nbf`, cache lifetimes)
/// given in code: tests pass a `ManualClock`'s clock to move time instead of waiting for it.
/// Not reachable from the config file or the environment.
pub async fn start_with_clock(config: Config, clock: Clock) -> Result<Running, StartError> {
    let http = reqwest::Client::builder()
        .user_agent(concat!("tokengate/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(IDP_CONNECT_TIMEOUT)
        .timeout(config.jwks.fetch_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // No upstream: the decision service runs alone, and no proxy listener is opened.
    let proxy_listener = match config.proxies() {
        true => Some(bind(config.listen, Listener::Proxy).await?),
        false => None,
    };
    let (admin_listener, admin_addr) = bind(config.admin_listen, Listener::Admin).await?;
    let plain_listener = match (config.proxies(), config.plain_listen) {
        (true, Some(addr)) => Some(bind(addr, Listener::Plain).await?),
        _ => None,
    };
    let plain_addr = plain_listener.as_ref().map(|(_, addr)| *addr);
    let decision_listener = match &config.decision {
        Some(d) => Some(bind(d.listen, Listener::Decision).await?),
        None => None,
    };
    let decision_addr = decision_listener.as_ref().map(|(_, addr)| *addr);
    let addr = proxy_listener.as_ref().map(|(_, addr)| *addr).or(decision_addr).ok_or(StartError::NothingToServe)?;
    let (limits, limits_rx) = watch::channel(Limits::new(&config.server));
    let metrics = Metrics::new();
    let tls = match &config.tls {
        Some(settings) => Some(Tls::new(settings, &metrics)?),
        None => None,
    };
    let (tls_settings, tls_watch) = match (&tls, &config.tls) {
        (Some(tls), Some(settings)) => {
            let (tx, rx) = watch::channel(settings.clone());
            (Some(tx), Some(tokio::spawn(tls.clone().watch(rx))))
        }
        _ => (None, None),
    };
    let state = proxy::state(config, metrics.clone(), &http, clock.clone());
    let refreshers = state.auth.issuers().iter().map(|i| Refresher::start(&i.jwks)).collect();
    let live = Arc::new(Live::from_pointee(state));
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_proxy, proxy_stopped) = watch::channel(false);
    let decision_stopped = proxy_stopped.clone();
    let plain_stopped = proxy_stopped.clone();
    let (stop_admin, admin_stopped) = watch::channel(false);

    let proxy_task = proxy_listener.map(|(listener, _)| {
        let live = live.clone();
        tokio::spawn(server::serve(
            listener,
            move |peer: Peer, hold| Gateway::new(live.clone(), peer, Some(hold)).into_service(),
            tls.clone(),
            limits_rx.clone(),
            metrics.listener(LISTENER_PROXY),
            proxy_stopped,
        ))
    });
    // Counted with the proxy listener: the same service, in cleartext.
    let plain_task = plain_listener.map(|(listener, _)| {
        let live = live.clone();
        tokio::spawn(server::serve(
            listener,
            move |peer: Peer, hold| Gateway::new(live.clone(), peer, Some(hold)).into_service(),
            None,
            limits_rx.clone(),
            metrics.listener(LISTENER_PROXY),
            plain_stopped,
        ))
    });
    let decision_task = decision_listener.map(|(listener, _)| {
        let live = live.clone();
        tokio::spawn(server::serve(
            listener,
            move |peer: Peer, _| Decision::new(live.clone(), peer.remote).into_service(),
            None,
            limits_rx.clone(),
            metrics.listener(LISTENER_DECISION),
            decision_stopped,
        ))
    });
    let admin = Admin { live: live.clone(), draining: draining.clone() };
    let admin_task = tokio::spawn(server::serve(
        admin_listener,
        move |_: Peer, _| {
            let admin = admin.clone();
            hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { admin.handle(req).await }
            })
        },
        None,
        limits_rx,
        metrics.listener(LISTENER_ADMIN),
        admin_stopped,
    ));
    let decision = decision_addr.map(|a| a.to_string());
    let plain = plain_addr.map(|a| a.to_string());
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, plain_addr = plain.as_deref(), %admin_addr, decision_addr = decision.as_deref(), "tokengate listening");
    Ok(Running {
        addr,
        admin_addr,
        decision_addr,
        plain_addr,
        tls,
        live,
        metrics,
        http,
        clock,
        limits,
        refreshers: Mutex::new(refreshers),
        draining,
        stop_proxy,
        stop_admin,
        proxy: proxy_task,
        decision: decision_task,
        plain: plain_task,
        tls_settings,
        tls_watch,
        admin: admin_task,
    })
}

/// Which listener a bind error is about, so that the message names its setting.
#[derive(Clone, Copy)]
enum Listener {
    Proxy,
    Plain,
    Admin,
    Decision,
}

/// A listener on `addr`, and the address it got (the port, when `addr` asks for port 0).
async fn bind(addr: SocketAddr, which: Listener) -> Result<(TcpListener, SocketAddr), StartError> {
    let (setting, flag) = match which {
        Listener::Proxy => ("listen", "TOKENGATE_LISTEN or `listen:` in the config file"),
        Listener::Plain => ("plain_listen", "TOKENGATE_PLAIN_LISTEN or `plain_listen:` in the config file"),
        Listener::Admin => ("admin_listen", "TOKENGATE_ADMIN_LISTEN or `admin_listen:` in the config file"),
        Listener::Decision => {
            ("decision.listen", "TOKENGATE_DECISION_LISTEN or `decision: {listen}` in the config file")
        }
    };
    let error = |source| StartError::Bind { addr, setting, flag, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

impl Running {
    /// The configuration being served now.
    pub fn state(&self) -> Arc<State> {
        self.live.load_full()
    }

    /// Serve `config` from now on: requests that started keep the configuration they started
    /// with, new ones see the new one, atomically. Key sets, caches and upstream connections
    /// that `config` did not change carry over (`proxy::state_after`). A new key set is
    /// fetched first (within `jwks.fetch_timeout`): one that cannot be fetched refuses the
    /// reload, rather than serving an issuer that can verify nothing and turning `/readyz` 503
    /// on every replica at once. Key sets no longer used stop refreshing. Listener addresses
    /// and worker threads cannot change without a restart: such a config is refused too. A
    /// refused config changes nothing. Returns the new configuration's epoch.
    pub async fn reload(&self, config: Config) -> Result<u64, ReloadError> {
        let mut refreshers = self.refreshers.lock().await;
        let old = self.live.load_full();
        reload::needs_restart(&old.config, &config)?;
        let limits = Limits::new(&config.server);
        let tls_settings = config.tls.clone();
        let fetch_timeout = config.jwks.fetch_timeout;
        let new = proxy::state_after(Some(&old), config, self.metrics.clone(), &self.http, self.clock.clone());
        let is_new = |jwks: &Arc<JwksCache>| !refreshers.iter().any(|r| Arc::ptr_eq(&r.jwks, jwks));
        let fresh: Vec<_> = new.auth.issuers().iter().filter(|i| is_new(&i.jwks)).cloned().collect();
        for issuer in &fresh {
            let _ = tokio::time::timeout(fetch_timeout, issuer.jwks.refresh_for_unknown_kid()).await;
            if !issuer.is_ready() {
                return Err(ReloadError::NoKeys { issuer: issuer.config.issuer.clone() });
            }
        }
        let in_use = |jwks: &Arc<JwksCache>| new.auth.issuers().iter().any(|i| Arc::ptr_eq(&i.jwks, jwks));
        let (kept, dropped): (Vec<_>, Vec<_>) = refreshers.drain(..).partition(|r| in_use(&r.jwks));
        let started: Vec<_> = fresh.iter().map(|i| Refresher::start(&i.jwks)).collect();
        let (epoch, issuers, fresh) = (new.epoch, new.auth.issuers().len(), started.len());
        self.live.store(Arc::new(new));
        for r in dropped {
            r.task.abort();
        }
        refreshers.extend(kept);
        refreshers.extend(started);
        self.limits.send_replace(limits);
        // The TLS files are read again now (SIGHUP), from the paths the new config names.
        if let (Some(tx), Some(settings)) = (&self.tls_settings, tls_settings) {
            tx.send_replace(settings);
        }
        self.metrics.reload_succeeded();
        tracing::info!(epoch, issuers, new_key_sets = fresh, "configuration reloaded");
        Ok(epoch)
    }

    /// Stop at once (tests, SIGINT): `drain` with no delay.
    pub async fn shutdown(self) {
        self.drain(Duration::ZERO).await
    }

    /// The SIGTERM sequence: `/readyz` answers 503 at once while the listeners keep accepting
    /// for `delay` (load balancers and Kubernetes endpoints stop sending meanwhile), then they
    /// stop accepting and in-flight requests finish (bounded by the configured grace), then the
    /// refreshers stop. The admin port stays open until the proxy has drained: probes must see
    /// `/readyz` 503 (and `/livez` 200) while it drains, not a refused connection.
    pub async fn drain(self, delay: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        if !delay.is_zero() {
            tracing::info!(drain_delay = %humantime::format_duration(delay), "draining: /readyz is 503, still accepting");
            tokio::time::sleep(delay).await;
        }
        tracing::info!("draining: no longer accepting, waiting for in-flight requests");
        let _ = self.stop_proxy.send(true);
        if let Some(proxy) = self.proxy {
            let _ = proxy.await;
        }
        if let Some(decision) = self.decision {
            let _ = decision.await;
        }
        if let Some(plain) = self.plain {
            let _ = plain.await;
        }
        if let Some(watch) = self.tls_watch {
            watch.abort();
        }
        let _ = self.stop_admin.send(true);
        let _ = self.admin.await;
        for r in self.refreshers.into_inner() {
            r.task.abort();
        }
        tracing::info!("tokengate stopped");
    }
}
