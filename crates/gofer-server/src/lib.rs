//! The Gofer server: configuration, the HTTP API and the `gofer service` commands that start it.
//!
//! This crate wires storage, scheduler and core together and exposes them over HTTP. It holds no business
//! logic: handlers call `gofer_core::Gofer`.

pub mod api;
pub mod config;
pub mod external;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use gofer_core::Gofer;
use gofer_core::events::Events;
use gofer_core::logs::LogStore;
use gofer_core::orchestrator::{self, Orchestrator};
use gofer_core::secrets::SecretKey;

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
        ServiceCommand::RotateSecretKey(args) => rotate_secret_key(args.config.load()?, &args.new_key_file).await,
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

/// Where the secret key came from.
#[derive(Debug, PartialEq, Eq)]
enum KeySource {
    Config,
    File(PathBuf),
    /// Made by Gofer in the data dir (development mode).
    DataDir(PathBuf),
}

fn read_key_file(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the secret key file {}", path.display()))?;
    SecretKey::from_base64(&text).map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))
}

/// Writes a key file readable by its owner only, replacing any other atomically.
fn write_key_file(path: &Path, key: &SecretKey) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("key.new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&temporary).with_context(|| format!("could not write {}", temporary.display()))?;
    file.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

/// The secret key: `secrets.key`, else `secrets.key_file`, else (development mode) the one Gofer keeps in the data
/// dir, made on the first start when `create` is set.
fn secret_key(config: &Config, data_dir: &Path, create: bool) -> anyhow::Result<(SecretKey, KeySource)> {
    if !config.secrets.key.is_empty() {
        let key = SecretKey::from_base64(&config.secrets.key).map_err(|p| anyhow::anyhow!("secrets.key: {p}"))?;
        return Ok((key, KeySource::Config));
    }
    if !config.secrets.key_file.as_os_str().is_empty() {
        let path = config.secrets.key_file.clone();
        return Ok((read_key_file(&path)?, KeySource::File(path)));
    }
    if !config.development.bypass_auth {
        anyhow::bail!(
            "no secret key: outside development mode set secrets.key_file (or GOFER_SECRETS__KEY) to a key made with \
             `openssl rand -base64 32`"
        );
    }
    let path = data_dir.join("secret.key");
    if path.exists() {
        return Ok((read_key_file(&path)?, KeySource::DataDir(path)));
    }
    if !create {
        anyhow::bail!("no secret key is configured and {} does not exist", path.display());
    }
    let key = SecretKey::generate()?;
    write_key_file(&path, &key)?;
    Ok((key, KeySource::DataDir(path)))
}

async fn rotate_secret_key(config: Config, new_key_file: &Path) -> anyhow::Result<()> {
    init_logging(&config);
    let data_dir = config.data_dir();
    let (old, source) = secret_key(&config, &data_dir, false)?;
    let new = read_key_file(new_key_file)?;
    let storage: Arc<dyn gofer_storage::Storage> =
        Arc::new(gofer_storage_sqlite::SqliteStorage::open(&data_dir.join("gofer.db"))?);
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

/// The object store the configuration names.
fn object_store(config: &Config, data_dir: &Path) -> anyhow::Result<gofer_core::objects::Objects> {
    let settings = &config.objects;
    let store: Arc<dyn object_store::ObjectStore> = match settings.store.as_str() {
        "s3" => {
            let s3 = &settings.s3;
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_allow_http(s3.allow_http);
            if !s3.endpoint.is_empty() {
                // S3-compatible servers address buckets by path, not by host name.
                builder = builder.with_endpoint(&s3.endpoint).with_virtual_hosted_style_request(false);
            }
            if !s3.access_key_id.is_empty() {
                builder = builder.with_access_key_id(&s3.access_key_id).with_secret_access_key(&s3.secret_access_key);
            }
            Arc::new(builder.build().context("invalid [objects.s3] settings")?)
        }
        _ => {
            let path =
                if settings.path.as_os_str().is_empty() { data_dir.join("objects") } else { settings.path.clone() };
            std::fs::create_dir_all(&path).with_context(|| format!("could not create {}", path.display()))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
                .with_context(|| format!("could not use {} for objects", path.display()))?;
            Arc::new(store)
        }
    };
    let limits = gofer_core::objects::ObjectLimits {
        max_object_bytes: settings.max_object_bytes,
        pipeline_objects: usize::try_from(settings.pipeline_objects).unwrap_or(usize::MAX),
        run_objects_runs: settings.run_objects_runs,
    };
    Ok(gofer_core::objects::Objects::new(store, limits))
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
    let (key, source) = secret_key(&config, &data_dir, true)?;
    if let KeySource::DataDir(path) = &source {
        tracing::warn!(
            path = %path.display(),
            "DEVELOPMENT MODE: secrets are sealed with a key Gofer made and keeps in the data dir; whoever can read \
             the data dir can read the secrets. Set secrets.key_file for production."
        );
    }
    let max_secret = usize::try_from(config.secrets.max_value_bytes).unwrap_or(usize::MAX);
    let secrets = gofer_core::secrets::Secrets::open(storage.clone(), &key, max_secret).await?;
    let objects = object_store(&config, &data_dir)?;
    let gofer = Gofer::new(storage, orchestrator.clone(), events.clone(), extensions)
        .with_secrets(secrets)
        .with_objects(objects);
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
        let tls = tls_of(&config.external_events.tls_cert_path, &config.external_events.tls_key_path)?;
        tracing::info!(%address, tls = tls.is_some(), "listening for external events at POST /api/external/<extension>");
        Some(tokio::spawn(async move {
            match tls {
                Some(acceptor) => tls::serve(listener, app, acceptor, std::future::pending()).await,
                None => axum::serve(listener, app).await.context("the external-events listener failed"),
            }
        }))
    } else {
        None
    };
    let timeout = Duration::from_secs(config.server.request_timeout_seconds);
    let state = api::AppState::new(gofer.clone(), config.development.bypass_auth, timeout);
    let shutdown = state.shutdown.clone();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let app = api::router(state);
    tracing::info!(
        address = %config.server.bind_address,
        data_dir = %data_dir.display(),
        "Gofer is ready"
    );
    let tls = tls_of(&config.server.tls_cert_path, &config.server.tls_key_path)?;
    let serve = async {
        match tls {
            Some(acceptor) => tls::serve(listener, app, acceptor, shutdown.clone().cancelled_owned()).await,
            None => {
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                let served =
                    axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await;
                served.context("the HTTP server failed")
            }
        }
    };
    tokio::pin!(serve);
    // Stopping: no new connections; followed streams end at once; other requests in flight get the grace time.
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    tokio::select! {
        served = &mut serve => served?,
        () = shutdown.cancelled() => match tokio::time::timeout(grace, &mut serve).await {
            Ok(served) => served?,
            Err(_) => tracing::warn!(
                seconds = grace.as_secs(),
                "requests still in flight after the shutdown grace time (server.shutdown_grace_seconds); closing them"
            ),
        },
    }
    if let Some(external) = external {
        external.abort();
    }
    if tokio::time::timeout(grace, gofer.shutdown_extensions()).await.is_err() {
        tracing::warn!("extensions did not stop within the shutdown grace time; leaving them");
    }
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
