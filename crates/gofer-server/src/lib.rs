//! The Gofer server: the HTTP API over a built runtime, and the `gofer service` commands.
//!
//! `gofer service start` builds the runtime (`gofer_runtime::build`), starts it, and serves it on its listeners
//! until SIGTERM or SIGINT ([`serve`]); then stops it. This crate holds no business logic: handlers call
//! `gofer_core::Gofer`.

pub mod api;
pub mod external;
pub mod tls;
pub mod ui;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use gofer_core::runtime::Runtime;
use gofer_runtime::{Config, KeySource, Overrides, read_key_file, secret_key, write_key_file};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use gofer_core::metrics::BuildInfo;
pub use gofer_runtime::config;

/// `gofer service ...`: run and inspect the server.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Start the Gofer server (development mode by default: no auth, local SQLite, local Docker).
    Start(StartArgs),
    /// Print the effective server configuration as TOML.
    Config(ConfigArgs),
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Print the JSON Schema of pipeline configs.
    ConfigSchema,
    /// Re-seal every secret with a new key, in one transaction. Stop the server first; then start it with the new
    /// key (when the old key was the one Gofer made in the data dir, that file is replaced).
    RotateSecretKey(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// A file holding the new key as base64 (`openssl rand -base64 32 > new.key`).
    #[arg(long)]
    pub new_key_file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// A TOML configuration file layered over the defaults.
    #[arg(long, env = "GOFER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for the HTTP API, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub bind_address: Option<std::net::SocketAddr>,
    /// Address for the external-events listener (webhooks), e.g. 0.0.0.0:8081.
    #[arg(long)]
    pub external_bind_address: Option<std::net::SocketAddr>,
    /// Directory for the database, logs and the installation id.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Check the configuration (every layer, the secret key, TLS files) and exit without starting: 0 when it is
    /// valid, 1 naming the first problem.
    #[arg(long)]
    pub check_config: bool,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            bind_address: self.bind_address,
            external_bind_address: self.external_bind_address,
            data_dir: self.data_dir.clone(),
        };
        Ok(Config::load(self.config.as_deref(), &overrides)?)
    }
}

/// Runs a `gofer service` command.
pub async fn run(command: ServiceCommand) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Start(args) if args.check_config => check_config(&args.config.load()?),
        ServiceCommand::Start(args) => start(args.config.load()?).await,
        ServiceCommand::Config(args) => {
            print!("{}", args.load()?.to_toml());
            Ok(())
        }
        ServiceCommand::Openapi => {
            print!("{}", api::openapi_json());
            Ok(())
        }
        ServiceCommand::ConfigSchema => {
            print!("{}", api::pipeline_config_schema_json());
            Ok(())
        }
        ServiceCommand::RotateSecretKey(args) => rotate_secret_key(args.config.load()?, &args.new_key_file).await,
    }
}

/// Logs to stderr as text or JSON (`log.format`), filtered by `log.level` or, when set, `RUST_LOG`. A bare level
/// applies to Gofer's own crates (others log warnings and errors); `target=level` pairs filter exactly.
fn init_logging(config: &Config) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let rust_log = std::env::var("RUST_LOG").ok().filter(|f| !f.trim().is_empty());
    let refused = rust_log.as_deref().and_then(|f| gofer_runtime::config::check_log_filter(f).err());
    let from_env = rust_log.clone().filter(|_| refused.is_none());
    let directives = from_env.unwrap_or_else(|| config.log.level.clone());
    let filter = match directives.trim().parse::<LevelFilter>() {
        Ok(level) => Targets::new().with_default(LevelFilter::WARN).with_target("gofer", level),
        Err(_) => directives.parse::<Targets>().unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO)),
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = if config.log.format == "json" {
        layer.json().flatten_event(true).with_current_span(false).with_span_list(true).boxed()
    } else {
        // Colour for a person at a terminal; never in a file, a journal or `docker logs` (nor with NO_COLOR).
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        layer.with_ansi(!no_color && std::io::IsTerminal::is_terminal(&std::io::stderr())).boxed()
    };
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
    if let (Some(rust_log), Some(problem)) = (rust_log, refused) {
        tracing::warn!(%rust_log, %problem, "RUST_LOG is not a valid filter; using log.level instead");
    }
}

/// What `start` would refuse, found without starting: the configuration's layers and ranges (checked by loading),
/// the secret key, and the TLS certificates and keys. Ports, the container engine and the database are not
/// touched.
fn check_config(config: &Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir();
    let configured = !config.secrets.key.is_empty() || !config.secrets.key_file.as_os_str().is_empty();
    match secret_key(config, &data_dir, false) {
        Ok(_) => {}
        // Development mode makes its key in the data dir at the first start, when none is configured.
        Err(_) if config.development.bypass_auth && !configured && !data_dir.join("secret.key").exists() => {}
        Err(e) => return Err(e),
    }
    tls_of(&config.server.tls_cert_path, &config.server.tls_key_path).context("server TLS")?;
    if config.external_events.enabled {
        tls_of(&config.external_events.tls_cert_path, &config.external_events.tls_key_path)
            .context("external events TLS")?;
    }
    let mode = if config.development.bypass_auth { "development (no auth)" } else { "production" };
    println!(
        "configuration is valid: {mode} mode, API on {}, data in {}",
        config.server.bind_address,
        data_dir.display()
    );
    Ok(())
}

async fn rotate_secret_key(config: Config, new_key_file: &Path) -> anyhow::Result<()> {
    init_logging(&config);
    let data_dir = config.data_dir();
    let (old, source) = secret_key(&config, &data_dir, false)?;
    let new = read_key_file(new_key_file)?;
    let storage = gofer_runtime::open_storage(&config).await?;
    let count = gofer_core::secrets::Secrets::rotate(storage, &old, &new).await?;
    eprintln!("Re-sealed {count} secret(s) with the new key.");
    match source {
        KeySource::DataDir(path) => {
            write_key_file(&path, &new)?;
            eprintln!("{} now holds the new key.", path.display());
        }
        KeySource::Config | KeySource::File(_) => eprintln!(
            "Start Gofer with the new key: secrets.key_file = \"{}\" (or GOFER_SECRETS__KEY).",
            new_key_file.display()
        ),
    }
    Ok(())
}

/// The TLS acceptor for a certificate and key, when both are configured.
fn tls_of(cert: &Path, key: &Path) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    if cert.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(tls::acceptor(cert, key)?))
}

/// The listeners a server serves on, bound before anything else starts (an address in use fails start-up).
pub struct Listeners {
    pub api: TcpListener,
    pub api_tls: Option<tokio_rustls::TlsAcceptor>,
    /// The external-events listener, unless turned off.
    pub external: Option<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    /// The metrics' own listener, when `metrics.bind_address` names one.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses the configuration names and loads their certificates.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let address = config.server.bind_address;
        let api = TcpListener::bind(address)
            .await
            .with_context(|| format!("could not listen on {address}; choose another address with --bind-address"))?;
        let api_tls = tls_of(&config.server.tls_cert_path, &config.server.tls_key_path)?;
        let external = if config.external_events.enabled {
            let address = config.external_events.bind_address;
            let listener = TcpListener::bind(address).await.with_context(|| {
                format!(
                    "could not listen for external events on {address}; choose another address with \
                     --external-bind-address (or external_events.enabled = false)"
                )
            })?;
            let tls = tls_of(&config.external_events.tls_cert_path, &config.external_events.tls_key_path)?;
            Some((listener, tls))
        } else {
            None
        };
        let metrics = match config.metrics.own_address()? {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
                format!("could not listen for metrics on {address}; choose another metrics.bind_address")
            })?),
            None => None,
        };
        Ok(Self { api, api_tls, external, metrics })
    }
}

/// Starts the server and serves until SIGINT or SIGTERM.
pub async fn start(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    if config.development.bypass_auth {
        tracing::warn!(
            "DEVELOPMENT MODE: requests without a token are let in, so anyone who can reach {} controls this Gofer. \
             For production set development.bypass_auth = false (GOFER_DEVELOPMENT__BYPASS_AUTH=false) and make the \
             first token with `gofer token bootstrap`.",
            config.server.bind_address
        );
    } else {
        tracing::info!("production mode: every API route needs a token (start with `gofer token bootstrap`)");
    }
    let listeners = Listeners::bind(&config).await?;
    let runtime = gofer_runtime::build(&config).await?;
    runtime.start().await?;
    let shutdown = CancellationToken::new();
    runtime.background().spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    tracing::info!(
        address = %config.server.bind_address,
        data_dir = %config.data_dir().display(),
        "Gofer is ready"
    );
    let served = serve(&runtime, listeners, &config, shutdown).await;
    runtime.shutdown(Duration::from_secs(config.server.shutdown_grace_seconds)).await;
    served?;
    tracing::info!("Gofer stopped; unfinished runs are resolved at the next start");
    Ok(())
}

/// Serves a built runtime on its listeners until `shutdown`: then no new connections are taken, followed streams
/// (events, logs) end at once, and requests still in flight get `server.shutdown_grace_seconds`.
pub async fn serve(
    runtime: &Runtime,
    listeners: Listeners,
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let gofer = runtime.gofer().clone();
    if let Some((listener, tls)) = listeners.external {
        let address = listener.local_addr().ok();
        let max_body = usize::try_from(config.external_events.max_body_bytes).unwrap_or(usize::MAX);
        let app = external::router(gofer.clone(), max_body);
        tracing::info!(
            ?address,
            tls = tls.is_some(),
            "listening for external events at POST /api/external/<extension>"
        );
        let stop = shutdown.clone();
        let connections = runtime.background();
        runtime.background().spawn(async move {
            let served = match tls {
                Some(acceptor) => tls::serve(listener, app, acceptor, stop.cancelled_owned(), &connections).await,
                None => axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                    .context("the external-events listener failed"),
            };
            if let Err(e) = served {
                tracing::error!(error = %format!("{e:#}"), "the external-events listener stopped");
            }
        });
    }
    let timeout = Duration::from_secs(config.server.request_timeout_seconds);
    let mut state = api::AppState::new(gofer, config.development.bypass_auth, timeout, shutdown.clone());
    let own_metrics = config.metrics.own_address()?;
    state.metrics =
        api::MetricsAccess { served: config.metrics.enabled && own_metrics.is_none(), public: config.metrics.public };
    if let Some(listener) = listeners.metrics {
        let address = listener.local_addr().ok();
        tracing::info!(?address, public = config.metrics.public, "serving Prometheus metrics at /metrics");
        let app = api::metrics_router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stop = shutdown.clone();
        runtime.background().spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let ui = config.ui.enabled.then(|| ui::Settings {
        secure_cookies: listeners.api_tls.is_some(),
        session_ttl: Duration::from_secs(config.ui.session_hours * 3600),
    });
    let app = api::app(state, ui);
    let serving = async {
        match listeners.api_tls {
            Some(acceptor) => {
                let connections = runtime.background();
                tls::serve(listeners.api, app, acceptor, shutdown.clone().cancelled_owned(), &connections).await
            }
            None => {
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                let served =
                    axum::serve(listeners.api, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await;
                served.context("the HTTP server failed")
            }
        }
    };
    tokio::pin!(serving);
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    tokio::select! {
        served = &mut serving => served,
        () = shutdown.cancelled() => match tokio::time::timeout(grace, &mut serving).await {
            Ok(served) => served,
            Err(_) => {
                tracing::warn!(
                    seconds = grace.as_secs(),
                    "requests still in flight after the shutdown grace time (server.shutdown_grace_seconds); closing them"
                );
                Ok(())
            }
        },
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("interrupted; shutting down"),
        () = terminate => tracing::info!("terminated; shutting down"),
    }
}
