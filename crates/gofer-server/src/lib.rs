//! The Gofer server: configuration, the HTTP API and the `gofer service` commands that start it.
//!
//! This crate wires storage, scheduler and core together and exposes them over HTTP. It holds no business
//! logic: handlers call `gofer_core::Gofer`.

pub mod api;
pub mod config;
pub mod external;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use gofer_core::Gofer;
use gofer_core::events::Events;
use gofer_core::logs::LogStore;
use gofer_core::orchestrator::{self, Orchestrator};

use crate::config::{Config, Overrides};

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
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level: LevelFilter = config.log.level.parse().unwrap_or(LevelFilter::INFO);
    let filter = Targets::new().with_default(LevelFilter::WARN).with_target("gofer", level);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(!no_color))
        .with(filter)
        .try_init();
}

/// A random id for this data dir, created once and kept, so two Gofers can share one container engine.
fn installation_id(data_dir: &Path) -> anyhow::Result<String> {
    use std::hash::{BuildHasher, Hasher};
    let path = data_dir.join("installation_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.write_u32(std::process::id());
    let id = format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff);
    std::fs::write(&path, &id).with_context(|| format!("could not write {}", path.display()))?;
    Ok(id)
}

/// Starts the server and serves until SIGINT or SIGTERM.
pub async fn start(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    if !config.server.dev_mode {
        anyhow::bail!(
            "production mode (server.dev_mode = false) needs authentication, which this version of Gofer does not \
             have yet; start in development mode and keep the API on a trusted address"
        );
    }
    tracing::warn!(
        "DEVELOPMENT MODE: authentication is off and anyone who can reach {} controls this Gofer. Production mode \
         (server.dev_mode = false) arrives with authentication.",
        config.server.bind_address
    );

    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir).with_context(|| {
        format!("could not create the data dir {}; choose another with --data-dir", data_dir.display())
    })?;
    let installation_id = installation_id(&data_dir)?;
    let storage = gofer_storage_sqlite::SqliteStorage::open(&data_dir.join("gofer.db"))?;
    let scheduler: Arc<dyn gofer_scheduler::Scheduler> =
        Arc::new(gofer_scheduler_docker::DockerScheduler::connect().await?);

    let storage: Arc<dyn gofer_storage::Storage> = Arc::new(storage);
    let events = Events::new(storage.clone());
    let orchestrator = Orchestrator::new(
        orchestrator::Options {
            installation_id: installation_id.clone(),
            api_base_url: config.task_api_url(),
            stop_grace: Duration::from_secs(config.runs.stop_grace_seconds),
            global_limit: usize::try_from(config.runs.global_limit).unwrap_or(usize::MAX),
            pipeline_limit: usize::try_from(config.runs.pipeline_limit).unwrap_or(usize::MAX),
            max_timeout: Duration::from_secs(config.runs.max_timeout_seconds),
            log_retention_runs: config.runs.log_retention_runs,
            keep_containers_for: Duration::from_secs(config.runs.keep_containers_seconds),
        },
        storage.clone(),
        scheduler.clone(),
        LogStore::new(data_dir.join("logs")),
        events.clone(),
    );
    let mut builtin: Vec<Arc<dyn gofer_core::extensions::Extension>> = vec![
        Arc::new(gofer_core::extensions::Interval::new(config.min_interval()?)),
        Arc::new(gofer_core::extensions::Cron::default()),
    ];
    if !config.extensions.github.webhook_secret.is_empty() {
        builtin.push(Arc::new(gofer_core::extensions::github::GitHub::new(&config.extensions.github.webhook_secret)));
    }
    let containers = gofer_core::extensions::container::ContainerHost {
        options: Arc::new(gofer_core::extensions::container::ContainerOptions {
            installation_id,
            gofer_host: config.task_api_url(),
            log_level: config.log.level.clone(),
            start_timeout: Duration::from_secs(config.extensions.start_timeout_seconds),
            health_interval: Duration::from_secs(config.extensions.health_interval_seconds),
            stop_grace: Duration::from_secs(config.extensions.stop_grace_seconds),
        }),
        scheduler,
        storage: storage.clone(),
        events: events.clone(),
    };
    let extensions = gofer_core::extensions::Extensions::new(storage.clone(), builtin).with_containers(containers);
    let gofer = Gofer::new(storage, orchestrator.clone(), events.clone(), extensions);
    gofer.ensure_default_namespace().await?;
    gofer.orchestrator().recover().await?;
    gofer.restore_subscriptions().await?;
    let stop_pruning = tokio_util::sync::CancellationToken::new();
    tokio::spawn(events.prune(
        Duration::from_secs(config.events.retention_days * 86_400),
        Duration::from_secs(3600),
        stop_pruning.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(config.server.bind_address).await.with_context(|| {
        format!("could not listen on {}; choose another address with --bind-address", config.server.bind_address)
    })?;
    let external = if config.external_events.enabled {
        let address = config.external_events.bind_address;
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
            format!(
                "could not listen for external events on {address}; choose another address with \
                 --external-bind-address (or external_events.enabled = false)"
            )
        })?;
        let max_body = usize::try_from(config.external_events.max_body_bytes).unwrap_or(usize::MAX);
        let app = external::router(gofer.clone(), max_body);
        tracing::info!(%address, "listening for external events (webhooks) at POST /api/external/<extension>");
        Some(tokio::spawn(async move { axum::serve(listener, app).await }))
    } else {
        None
    };
    let app = api::router(api::AppState { gofer: gofer.clone(), dev_mode: config.server.dev_mode });
    tracing::info!(
        address = %config.server.bind_address,
        data_dir = %data_dir.display(),
        "Gofer is ready"
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("the HTTP server failed")?;
    if let Some(external) = external {
        external.abort();
    }
    gofer.shutdown_extensions().await;
    orchestrator.shutdown();
    stop_pruning.cancel();
    tracing::info!("Gofer stopped; unfinished runs are resolved at the next start");
    Ok(())
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
