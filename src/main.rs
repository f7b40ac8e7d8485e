//! The `tokengate` binary: parse the command line, load and validate the configuration before
//! binding anything (exit 64 on a bad config), run until SIGTERM/SIGINT (reloading on SIGHUP
//! and when the config file changes), drain (after `server.drain_delay` on SIGTERM), exit 0.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokengate::config::{self, Sources};

/// Exit status for configuration errors (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "tokengate", version, about = "A reverse proxy that admits only valid OAuth 2.0 bearer tokens")]
struct Cli {
    /// YAML configuration file; TOKENGATE_* environment variables override it.
    #[arg(long, global = true, env = "TOKENGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TOKENGATE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration and print the effective config (secrets redacted).
    CheckConfig,
    /// Print the JSON Schema of the configuration file (config/tokengate.schema.json).
    Schema,
    /// Run a self-contained demo on loopback: dev issuer, echo upstream and the gateway,
    /// and print curl commands with working tokens.
    Demo {
        /// Where the demo gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Run the DEVELOPMENT authorization server (client credentials tokens, introspection,
    /// revocation, JWKS), loopback only by default. Never for production.
    DevIssuer(tokengate::dev_issuer::cli::DevIssuerArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held to the end of `main`: its drop exports the spans and writes the log lines still queued.
    let _log = init_tracing(cli.log_format);
    // One crypto provider for every TLS user in the process (rustls, reqwest).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let sources = Sources { file: cli.config.clone(), env: std::env::vars().collect() };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => match load(&sources, |w| eprintln!("warning: {w}")) {
            Ok(cfg) => {
                print!("{}", config::render_effective(&cfg));
                eprintln!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        },
        Command::Schema => {
            print!("{}", config::schema());
            ExitCode::SUCCESS
        }
        Command::Run => match load(&sources, |w| tracing::warn!("{w}")) {
            Ok(cfg) => run(runtime(cfg.server.worker_threads), async move {
                // Before start logs "listening", so no signal finds the default action.
                let signals = tokengate::app::Signals::install();
                let running = tokengate::app::start(cfg).await?;
                let reload = || load(&sources, |w| tracing::warn!("{w}"));
                let stop = tokengate::app::run_until_stopped(&running, signals, reload, cli.config.as_deref()).await;
                let delay = match stop {
                    // The drain delay of the configuration being served, reloaded or not.
                    tokengate::app::Stop::Terminate => running.state().config.server.drain_delay,
                    tokengate::app::Stop::Interrupt => std::time::Duration::ZERO,
                };
                running.drain(delay).await;
                Ok::<(), tokengate::app::StartError>(())
            }),
            Err(e) => config_error(e),
        },
        Command::Demo { listen } => run(runtime(None), tokengate::demo::run(listen)),
        Command::DevIssuer(args) => match tokengate::dev_issuer::cli::prepare(&args) {
            Ok(dev) => run(runtime(None), tokengate::dev_issuer::cli::run(dev)),
            Err(e) => {
                eprintln!("tokengate dev-issuer: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn run<E: std::fmt::Display>(
    rt: tokio::runtime::Runtime,
    job: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    match rt.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `config::load`, reporting misspelt `TOKENGATE_*` variables first (they often explain the
/// error that follows) and, once loaded, every weakened setting.
fn load(sources: &Sources, warn: impl Fn(&str)) -> Result<config::Config, config::ConfigError> {
    config::env::warnings(&sources.env).iter().for_each(|w| warn(w));
    let cfg = config::load(sources)?;
    config::warnings(&cfg).iter().for_each(|w| warn(w));
    Ok(cfg)
}

fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("tokengate: configuration error: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn runtime(workers: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = match workers {
        // One worker: a current-thread runtime is the honest single-core mode.
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().expect("the tokio runtime starts")
}

fn init_tracing(format: LogFormat) -> tokengate::telemetry::Guard {
    tokengate::telemetry::init(match format {
        LogFormat::Text => tokengate::telemetry::Format::Text,
        LogFormat::Json => tokengate::telemetry::Format::Json,
    })
}
