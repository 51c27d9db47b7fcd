//! Gofer's composition root: the server configuration (defaults < file < `GOFER_*` environment < flags) and the
//! backends it names — SQLite in the data dir, the Docker engine, the object store, the secret key — built into
//! one [`gofer_core::runtime::Runtime`]. `gofer service start` uses it; so will a local run without a server.

pub mod config;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gofer_core::extensions::container::ContainerOptions;
use gofer_core::objects::ObjectLimits;
use gofer_core::orchestrator;
use gofer_core::runtime::{Backends, Options, Runtime};
use gofer_core::secrets::SecretKey;

pub use crate::config::{Config, Overrides};

/// A random id for this data dir, created once and kept, so two Gofers can share one container engine.
pub fn installation_id(data_dir: &Path) -> anyhow::Result<String> {
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
pub enum KeySource {
    Config,
    File(PathBuf),
    /// Made by Gofer in the data dir (development mode).
    DataDir(PathBuf),
}

pub fn read_key_file(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the secret key file {}", path.display()))?;
    SecretKey::from_base64(&text).map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))
}

/// Writes a key file readable by its owner only, replacing any other atomically.
pub fn write_key_file(path: &Path, key: &SecretKey) -> anyhow::Result<()> {
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
pub fn secret_key(config: &Config, data_dir: &Path, create: bool) -> anyhow::Result<(SecretKey, KeySource)> {
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

/// The object store the configuration names.
fn object_store(config: &Config, data_dir: &Path) -> anyhow::Result<Arc<dyn object_store::ObjectStore>> {
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
    Ok(store)
}

/// The parts' options, as the configuration gives them.
pub fn options(config: &Config, installation_id: &str) -> anyhow::Result<Options> {
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(Options {
        orchestrator: orchestrator::Options {
            installation_id: installation_id.to_string(),
            api_base_url: config.task_api_url(),
            stop_grace: Duration::from_secs(config.runs.stop_grace_seconds),
            global_limit: count(config.runs.global_limit),
            pipeline_limit: count(config.runs.pipeline_limit),
            max_timeout: Duration::from_secs(config.runs.max_timeout_seconds),
            log_retention_runs: config.runs.log_retention_runs,
            keep_containers_for: Duration::from_secs(config.runs.keep_containers_seconds),
            volumes: config.scheduler.volumes(),
            create_ahead: config.runs.create_ahead,
        },
        objects: ObjectLimits {
            max_object_bytes: config.objects.max_object_bytes,
            pipeline_objects: count(config.objects.pipeline_objects),
            run_objects_runs: config.objects.run_objects_runs,
        },
        max_secret_bytes: count(config.secrets.max_value_bytes),
        event_retention: Duration::from_secs(config.events.retention_days.saturating_mul(86_400)),
        min_interval: config.min_interval()?,
        github_webhook_secret: Some(config.extensions.github.webhook_secret.clone()).filter(|s| !s.is_empty()),
        container_extensions: Some(ContainerOptions {
            installation_id: installation_id.to_string(),
            gofer_host: config.task_api_url(),
            log_level: config.log.level.clone(),
            start_timeout: Duration::from_secs(config.extensions.start_timeout_seconds),
            health_interval: Duration::from_secs(config.extensions.health_interval_seconds),
            stop_grace: Duration::from_secs(config.extensions.stop_grace_seconds),
        }),
    })
}

/// Builds the runtime the configuration describes: the data dir and its installation id, the database (SQLite in
/// the data dir, or PostgreSQL with its shared event bus), the Docker engine (which must answer), the object store
/// and the secret key (made in the data dir in development mode, when none is configured). Nothing runs until [`Runtime::start`].
pub async fn build(config: &Config) -> anyhow::Result<Runtime> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir).with_context(|| {
        format!("could not create the data dir {}; choose another with --data-dir", data_dir.display())
    })?;
    let mut installation_id = installation_id(&data_dir)?;
    let metrics = gofer_core::metrics::Metrics::default();
    let me = gofer_core::cluster::this_server(&config.server.bind_address.to_string(), env!("CARGO_PKG_VERSION"));
    let (storage, bus, cluster) = match open_state(config, &data_dir).await? {
        State::Sqlite(sqlite) => {
            let storage: Arc<dyn gofer_storage::Storage> = Arc::new(sqlite.observed_by(Arc::new(metrics.clone())));
            // One server: its events are followed in its own process.
            let bus: Arc<dyn gofer_storage::EventBus> = Arc::new(gofer_storage::LocalBus::default());
            (storage, bus, gofer_core::cluster::Cluster::alone(me))
        }
        State::Postgres(postgres) => {
            // Its writes to runs are fenced: once another server adopted a run, this one records nothing of it.
            let postgres = postgres.observed_by(Arc::new(metrics.clone())).as_server(&me.id);
            // Several servers: every server's followers see every server's events, from the database.
            let bus = gofer_storage_postgres::PostgresBus::start(&postgres);
            bus.listening().await;
            let shared: Arc<dyn gofer_storage::ClusterStore> = Arc::new(postgres.clone());
            // The servers label their containers alike, so any of them finds a run's containers.
            installation_id = shared.installation_id(&installation_id).await?;
            tracing::info!(server = %me.id, installation = %installation_id, "this server shares its state with others");
            if config.objects.store == "filesystem" && config.objects.path.as_os_str().is_empty() {
                tracing::warn!(
                    path = %data_dir.join("objects").display(),
                    "objects and task logs are kept in this server's data dir, which other servers cannot read: \
                     set objects.path to a folder every server mounts, or objects.store = \"s3\" \
                     (docs/high-availability.md)"
                );
            }
            let cluster = gofer_core::cluster::Cluster {
                me,
                store: Some(shared),
                lease: Duration::from_secs(config.storage.lease_seconds),
            };
            let storage: Arc<dyn gofer_storage::Storage> = Arc::new(postgres);
            let bus: Arc<dyn gofer_storage::EventBus> = Arc::new(bus);
            (storage, bus, cluster)
        }
    };
    let scheduler = scheduler(config).await?;
    let (secret_key, source) = secret_key(config, &data_dir, true)?;
    if let KeySource::DataDir(path) = &source {
        tracing::warn!(
            path = %path.display(),
            "DEVELOPMENT MODE: secrets are sealed with a key Gofer made and keeps in the data dir; whoever can read \
             the data dir can read the secrets. Set secrets.key_file for production."
        );
    }
    let object_store = object_store(config, &data_dir)?;
    let local_logs = gofer_storage::FileLogStore::new(data_dir.join("logs"));
    let logs: Arc<dyn gofer_storage::LogStore> = if cluster.store.is_some() {
        // Any server answers for any run: logs are copied to the object store the servers share as they grow.
        Arc::new(gofer_core::shared_logs::SharedLogStore::new(local_logs, object_store.clone(), LOG_UPLOAD_EVERY))
    } else {
        Arc::new(local_logs)
    };
    let backends = Backends {
        storage,
        bus,
        scheduler,
        object_store,
        secret_key,
        logs,
        clock: Arc::new(gofer_core::clock::SystemClock),
        metrics,
        cluster,
    };
    Ok(Runtime::build(backends, options(config, &installation_id)?).await?)
}

/// How often a server sharing its state copies what a running task's log gained to the object store (the delay
/// of a follower on another server).
const LOG_UPLOAD_EVERY: Duration = Duration::from_secs(1);

/// The storage backend a configuration names, opened and migrated.
enum State {
    Sqlite(gofer_storage_sqlite::SqliteStorage),
    Postgres(gofer_storage_postgres::PostgresStorage),
}

async fn open_state(config: &Config, data_dir: &Path) -> anyhow::Result<State> {
    if config.storage.is_postgres() {
        let pool_size = usize::try_from(config.storage.pool_size).unwrap_or(usize::MAX);
        let postgres = gofer_storage_postgres::PostgresStorage::connect(&config.storage.url, pool_size).await?;
        tracing::info!(database = %postgres.endpoint(), "state is in PostgreSQL");
        Ok(State::Postgres(postgres))
    } else {
        Ok(State::Sqlite(gofer_storage_sqlite::SqliteStorage::open(&data_dir.join("gofer.db"))?))
    }
}

/// The configured storage, for maintenance commands that run without a server (key rotation).
pub async fn open_storage(config: &Config) -> anyhow::Result<Arc<dyn gofer_storage::Storage>> {
    Ok(match open_state(config, &config.data_dir()).await? {
        State::Sqlite(sqlite) => Arc::new(sqlite),
        State::Postgres(postgres) => Arc::new(postgres),
    })
}

/// The scheduler `scheduler.kind` names, connected (it must answer).
async fn scheduler(config: &Config) -> anyhow::Result<Arc<dyn gofer_scheduler::Scheduler>> {
    Ok(match config.scheduler.kind.as_str() {
        "kubernetes" => {
            let kubernetes = &config.scheduler.kubernetes;
            Arc::new(
                gofer_scheduler_kubernetes::KubernetesScheduler::connect(
                    &kubernetes.connection(),
                    kubernetes.settings(),
                )
                .await?,
            )
        }
        "nomad" => {
            let stop_grace = Duration::from_secs(config.runs.stop_grace_seconds);
            Arc::new(gofer_scheduler_nomad::NomadScheduler::connect(config.scheduler.nomad.settings(stop_grace)).await?)
        }
        _ => Arc::new(
            gofer_scheduler_docker::DockerScheduler::connect_to(docker_host(config))
                .await?
                .sharing_networks(config.scheduler.docker.share_run_network),
        ),
    })
}

/// The configured Docker engine address; `None` leaves it to `DOCKER_HOST` and the local socket.
fn docker_host(config: &Config) -> Option<&str> {
    Some(config.scheduler.docker.host.trim()).filter(|host| !host.is_empty())
}
