//! What makes the gateway reload, and what a reload may not change.
//!
//! SIGHUP reloads; so does a change of the config file's content, polled every second (a
//! Kubernetes ConfigMap update swaps a symlink to a new directory: no event on the file itself
//! is reliable, reading it through its path is). A config that fails to load or to validate is
//! refused with its file, line and problem in the log and `tokengate_config_reloads_total
//! {result="failure"}`; the old one keeps serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Running;
use crate::config::{Config, ConfigError};

/// How often the config file is read for a change.
const POLL: Duration = Duration::from_secs(1);

/// A config file larger than this is not read for changes (a reload reports it).
const MAX_WATCHED_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("`{setting}` changed: it takes effect only after a restart; the running configuration is kept")]
    NeedsRestart { setting: &'static str },
    #[error(
        "issuer {issuer}: no key set could be fetched (see the JWKS error above); the running configuration is kept"
    )]
    NoKeys { issuer: String },
}

/// Settings bound at start-up (listening sockets, the runtime): a reload cannot apply them.
pub(super) fn needs_restart(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let refuse = |setting| Err(ReloadError::NeedsRestart { setting });
    if old.proxies() != new.proxies() {
        // The proxy listener runs exactly when an upstream is configured.
        return refuse("upstream");
    }
    if old.proxies() && old.listen != new.listen {
        return refuse("listen");
    }
    if old.tls.is_some() != new.tls.is_some() {
        // The proxy listener speaks TLS or it does not; its files may change, its protocol not.
        return refuse("tls");
    }
    if old.plain_listen != new.plain_listen {
        return refuse("plain_listen");
    }
    if old.admin_listen != new.admin_listen {
        return refuse("admin_listen");
    }
    if old.decision.as_ref().map(|d| d.listen) != new.decision.as_ref().map(|d| d.listen) {
        return refuse("decision.listen");
    }
    if old.server.worker_threads != new.server.worker_threads {
        return refuse("server.worker_threads");
    }
    Ok(())
}

/// Why the process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM (Kubernetes, systemd): drain with the configured delay.
    Terminate,
    /// SIGINT (a terminal's Ctrl-C): stop without the delay.
    Interrupt,
}

/// The process's SIGTERM and SIGHUP handlers, installed before anything announces that the
/// gateway listens: until a handler is installed, a signal has its default action, and a
/// SIGHUP sent as soon as "tokengate listening" is logged would end the process.
pub struct Signals {
    #[cfg(unix)]
    handlers: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Needs a Tokio runtime.
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let handlers = match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
                (Ok(term), Ok(hup)) => Some((term, hup)),
                _ => None,
            };
            Signals { handlers }
        }
        #[cfg(not(unix))]
        Signals {}
    }
}

/// Serve until SIGTERM or SIGINT, reloading with `load` on SIGHUP and whenever the content of
/// `watched` (the `--config` file, if any) changes.
pub async fn run_until_stopped(
    running: &Running,
    signals: Signals,
    load: impl Fn() -> Result<Config, ConfigError>,
    watched: Option<&Path>,
) -> Stop {
    let reload = async |why: &'static str| {
        let result = match load() {
            Ok(config) => running.reload(config).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            running.metrics.reload_failed();
            tracing::error!(trigger = why, "configuration reload refused: {e}");
        }
    };
    let watched = watched.map(|path| Watched::new(path.to_owned()));
    let on_hup = async || {
        tracing::info!("SIGHUP: reloading the configuration");
        reload("SIGHUP").await
    };
    let on_change = async || {
        tracing::info!("the configuration file changed: reloading");
        reload("file").await
    };
    until_stopped(signals, on_hup, watched, on_change).await
}

/// Resolves on SIGTERM or SIGINT, for the commands that have nothing to reload (`demo`,
/// `dev-issuer`): SIGHUP, which would otherwise end the process, is logged and ignored.
pub async fn shutdown_signal() -> Stop {
    until_stopped(Signals::install(), async || tracing::info!("SIGHUP: nothing to reload"), None, async || {}).await
}

async fn until_stopped(
    signals: Signals,
    on_hup: impl AsyncFn(),
    mut watched: Option<Watched>,
    on_change: impl AsyncFn(),
) -> Stop {
    #[cfg(unix)]
    {
        let Some((mut term, mut hup)) = signals.handlers else {
            let _ = tokio::signal::ctrl_c().await;
            return Stop::Interrupt;
        };
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: shutting down");
                    return Stop::Terminate;
                }
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("SIGINT: shutting down");
                    return Stop::Interrupt;
                }
                _ = hup.recv() => {
                    // What SIGHUP loads is what the next poll compares with.
                    if let Some(w) = watched.as_mut() {
                        w.changed();
                    }
                    on_hup().await;
                }
                _ = poll.tick(), if watched.is_some() => {
                    if watched.as_mut().is_some_and(Watched::changed) {
                        on_change().await;
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (signals, on_hup, &mut watched, on_change);
        let _ = tokio::signal::ctrl_c().await;
        Stop::Interrupt
    }
}

/// The config file's content as last seen.
struct Watched {
    path: PathBuf,
    seen: Option<Vec<u8>>,
}

impl Watched {
    fn new(path: PathBuf) -> Watched {
        let seen = read(&path);
        Watched { path, seen }
    }

    /// Whether the content differs from what was seen last, which becomes what is seen. An
    /// unreadable file (mid-swap, deleted) is not a change: the next poll looks again.
    fn changed(&mut self) -> bool {
        let Some(now) = read(&self.path) else { return false };
        if self.seen.as_ref() == Some(&now) {
            return false;
        }
        self.seen = Some(now);
        true
    }
}

fn read(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_WATCHED_BYTES {
        return None;
    }
    std::fs::read(path).ok()
}
