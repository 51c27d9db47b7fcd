//! Server configuration: built-in defaults, a TOML file, `GOFER_*` environment variables, then flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gofer_scheduler_kubernetes::names;
use serde::{Deserialize, Serialize};

/// The defaults, as shipped. A test proves they equal [`Config::default`].
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

/// The top-level sections; only environment variables naming one of them are read.
const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "scheduler",
    "development",
    "runs",
    "extensions",
    "external_events",
    "secrets",
    "objects",
    "events",
    "log",
    "ui",
    "metrics",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub scheduler: SchedulerConfig,
    pub development: DevelopmentConfig,
    pub runs: RunsConfig,
    pub extensions: ExtensionsConfig,
    pub external_events: ExternalEventsConfig,
    pub secrets: SecretsConfig,
    pub objects: ObjectsConfig,
    pub events: EventsConfig,
    pub log: LogConfig,
    pub ui: UiConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub bind_address: SocketAddr,
    /// Empty means the per-user data dir.
    pub data_dir: PathBuf,
    /// Empty means `http://172.17.0.1:<port>`.
    pub task_api_url: String,
    /// Seconds a request may take until its answer starts (object uploads excepted).
    pub request_timeout_seconds: u64,
    /// Seconds requests in flight get to finish once the server is told to stop; followed streams end at once.
    pub shutdown_grace_seconds: u64,
    /// PEM certificate chain and private key: with both, the API speaks HTTPS only.
    pub tls_cert_path: PathBuf,
    pub tls_key_path: PathBuf,
}

/// Where Gofer keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite` (a file in the data dir; one server) or `postgres` (a PostgreSQL database several servers share).
    pub kind: String,
    /// For `postgres`: `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
    pub url: String,
    /// For `postgres`: connections each server keeps open at most.
    pub pool_size: u64,
    /// For `postgres`: seconds a server may miss its heartbeats before another adopts its runs.
    pub lease_seconds: u64,
}

impl StorageConfig {
    /// Whether the state is in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.kind == "postgres"
    }
}

/// Where task containers run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// `docker`: the Docker engine of this host (or `docker.host`); `kubernetes`: pods in a cluster.
    pub kind: String,
    pub docker: DockerConfig,
    pub kubernetes: KubernetesConfig,
    pub nomad: NomadConfig,
    /// Volumes tasks may mount, by name; none unless the operator declares them.
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeConfig>,
}

/// The Docker engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// `unix:///path/to/docker.sock`, `tcp://host:2375` or `http://host:2375`; empty: `DOCKER_HOST`, else the
    /// local socket.
    pub host: String,
    /// The tasks of a run that have parents share one network namespace, made ahead (as a pod's containers do), so
    /// starting them costs no network setup; false: every task container has its own.
    pub share_run_network: bool,
}

/// A Kubernetes cluster: one pod per task attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file; empty: `KUBECONFIG` or `~/.kube/config`, else the in-cluster service account.
    pub kubeconfig: PathBuf,
    /// The kubeconfig's context; empty: its current one.
    pub context: String,
    /// An API address that needs no credentials (`kubectl proxy`), used instead of a kubeconfig when set.
    pub api_url: String,
    /// The namespace of Gofer's pods.
    pub namespace: String,
    /// The service account pods run as; empty: the namespace's default, with no API token mounted.
    pub service_account: String,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Pull secrets in the namespace that every pod may use.
    #[serde(default)]
    pub image_pull_secrets: Vec<String>,
    /// Seconds a started pod may wait for a node, its image and its volumes before its task fails.
    pub start_timeout_seconds: u64,
}

impl KubernetesConfig {
    /// How to reach the cluster.
    pub fn connection(&self) -> gofer_scheduler_kubernetes::Connection {
        let set = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        match set(&self.api_url) {
            Some(url) => gofer_scheduler_kubernetes::Connection::Url(url),
            None => gofer_scheduler_kubernetes::Connection::Infer {
                kubeconfig: Some(self.kubeconfig.clone()).filter(|p| !p.as_os_str().is_empty()),
                context: set(&self.context),
            },
        }
    }

    /// Where and how pods run.
    pub fn settings(&self) -> gofer_scheduler_kubernetes::Settings {
        gofer_scheduler_kubernetes::Settings {
            namespace: self.namespace.clone(),
            service_account: Some(self.service_account.trim().to_string()).filter(|s| !s.is_empty()),
            node_selector: self.node_selector.clone(),
            image_pull_secrets: self.image_pull_secrets.clone(),
            start_timeout: std::time::Duration::from_secs(self.start_timeout_seconds),
        }
    }
}

/// A Nomad cluster: one dispatched batch job per task attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NomadConfig {
    /// The agent's HTTP address.
    pub address: String,
    /// An ACL token; prefer GOFER_SCHEDULER__NOMAD__TOKEN. Shown redacted.
    pub token: String,
    pub namespace: String,
    /// Empty: the agent's region.
    pub region: String,
    /// Empty: every datacenter.
    #[serde(default)]
    pub datacenters: Vec<String>,
    /// A task's CPU limit becomes this many MHz per core (a hard limit).
    pub mhz_per_core: u32,
    /// Memory, in MiB, of a task that sets no limit (Nomad always limits memory).
    pub default_memory_mb: u64,
    /// Seconds a dispatched job may wait for a node and its image before its task fails.
    pub start_timeout_seconds: u64,
    /// PEM files for TLS: the agents' CA, and Gofer's client certificate and key.
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl NomadConfig {
    /// Where and how jobs run; `stop_grace` becomes each task's kill timeout.
    pub fn settings(&self, stop_grace: std::time::Duration) -> gofer_scheduler_nomad::Settings {
        let set = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let path = |p: &PathBuf| Some(p.clone()).filter(|p| !p.as_os_str().is_empty());
        gofer_scheduler_nomad::Settings {
            address: self.address.trim().to_string(),
            token: set(&self.token),
            namespace: self.namespace.clone(),
            region: set(&self.region),
            datacenters: self.datacenters.clone(),
            mhz_per_core: self.mhz_per_core,
            default_memory_mb: self.default_memory_mb,
            kill_timeout: stop_grace,
            start_timeout: std::time::Duration::from_secs(self.start_timeout_seconds),
            ca_cert: path(&self.ca_cert),
            client_cert: path(&self.client_cert),
            client_key: path(&self.client_key),
        }
    }
}

/// A volume tasks may mount (`Task::volume(name, path)` in the SDK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// For Docker: an absolute host path (bind mount) or the name of a Docker volume.
    pub source: String,
    /// Every task mounts it read-only.
    #[serde(default)]
    pub read_only: bool,
    /// The namespaces whose tasks may mount it; empty: every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

impl SchedulerConfig {
    /// The volumes, as the orchestrator takes them.
    pub fn volumes(&self) -> BTreeMap<String, gofer_core::orchestrator::Volume> {
        self.volumes
            .iter()
            .map(|(name, v)| {
                let volume = gofer_core::orchestrator::Volume {
                    source: v.source.clone(),
                    read_only: v.read_only,
                    namespaces: v.namespaces.clone(),
                };
                (name.clone(), volume)
            })
            .collect()
    }

    fn check(&self) -> Result<(), Error> {
        match self.kind.as_str() {
            "docker" | "kubernetes" | "nomad" => {}
            other => {
                return Err(Error::OutOfRange {
                    field: "scheduler.kind",
                    problem: format!("'{other}' is not a scheduler; use \"docker\", \"kubernetes\" or \"nomad\""),
                });
            }
        }
        let nomad = &self.nomad;
        let address = nomad.address.trim();
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(Error::OutOfRange {
                field: "scheduler.nomad.address",
                problem: format!("'{address}' is not an http:// or https:// address (e.g. http://127.0.0.1:4646)"),
            });
        }
        for (field, value) in [
            ("scheduler.nomad.mhz_per_core", u64::from(nomad.mhz_per_core)),
            ("scheduler.nomad.default_memory_mb", nomad.default_memory_mb),
        ] {
            if value == 0 {
                return Err(Error::OutOfRange { field, problem: "must be at least 1".into() });
            }
        }
        if nomad.client_cert.as_os_str().is_empty() != nomad.client_key.as_os_str().is_empty() {
            return Err(Error::OutOfRange {
                field: "scheduler.nomad.client_cert and scheduler.nomad.client_key",
                problem: "must be given together".into(),
            });
        }
        let kubernetes = &self.kubernetes;
        if !names::is_dns_label(&kubernetes.namespace) {
            return Err(Error::OutOfRange {
                field: "scheduler.kubernetes.namespace",
                problem: format!(
                    "'{}' is not a namespace name (lowercase letters, digits and -)",
                    kubernetes.namespace
                ),
            });
        }
        for (field, seconds) in [
            ("scheduler.kubernetes.start_timeout_seconds", kubernetes.start_timeout_seconds),
            ("scheduler.nomad.start_timeout_seconds", self.nomad.start_timeout_seconds),
        ] {
            if !(1..=7 * 86_400).contains(&seconds) {
                return Err(Error::OutOfRange { field, problem: "must be from 1 to 604800 (a week)".into() });
            }
        }
        let url = kubernetes.api_url.trim();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::OutOfRange {
                field: "scheduler.kubernetes.api_url",
                problem: format!("'{url}' is not an http:// or https:// address"),
            });
        }
        let host = self.docker.host.trim();
        if !host.is_empty() && !["unix:///", "tcp://", "http://"].iter().any(|scheme| host.starts_with(scheme)) {
            return Err(Error::OutOfRange {
                field: "scheduler.docker.host",
                problem: format!(
                    "'{host}' is not an engine address; give unix:///var/run/docker.sock, tcp://HOST:2375 or \
                     http://HOST:2375, or leave it empty for DOCKER_HOST"
                ),
            });
        }
        for (name, volume) in &self.volumes {
            let problem = if let Err(e) = gofer_api::config::validate_identifier("volume name", name) {
                Some(e.to_string())
            } else if volume.source.trim().is_empty() {
                Some(format!("volume '{name}' has no source; give a host path or a volume name"))
            } else if volume.source.starts_with('.') || volume.source.contains("/../") {
                Some(format!("volume '{name}': source '{}' must be an absolute path or a volume name", volume.source))
            } else {
                volume.namespaces.iter().find_map(|namespace| {
                    gofer_api::config::validate_identifier("namespace", namespace)
                        .err()
                        .map(|e| format!("volume '{name}': {e}"))
                })
            };
            if let Some(problem) = problem {
                return Err(Error::OutOfRange { field: "scheduler.volumes", problem });
            }
        }
        Ok(())
    }
}

/// Development mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevelopmentConfig {
    /// Let requests without a token in (a token that is presented is still checked). False: production mode.
    pub bypass_auth: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsConfig {
    pub stop_grace_seconds: u64,
    pub global_limit: u64,
    pub pipeline_limit: u64,
    pub max_timeout_seconds: u64,
    pub keep_containers_seconds: u64,
    pub log_retention_runs: u64,
    /// Create a task's container while its parents run, so that its start is all its DAG edge costs.
    pub create_ahead: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionsConfig {
    /// Seconds a container extension gets to answer `/api/health` after it started.
    pub start_timeout_seconds: u64,
    /// Seconds between health checks of a running container extension.
    pub health_interval_seconds: u64,
    /// Seconds a container extension gets to stop before it is killed.
    pub stop_grace_seconds: u64,
    pub interval: IntervalConfig,
    pub github: GitHubConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// The secret GitHub signs webhooks with; empty leaves the built-in github extension uninstalled.
    pub webhook_secret: String,
}

/// The listener for requests from the outside world (webhooks), apart from the API so that it alone can face
/// the internet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalEventsConfig {
    pub enabled: bool,
    pub bind_address: SocketAddr,
    /// Larger bodies are refused with 413.
    pub max_body_bytes: u64,
    /// PEM certificate chain and private key: with both, the listener speaks HTTPS only.
    pub tls_cert_path: PathBuf,
    pub tls_key_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalConfig {
    /// A duration such as `1m` or `30s`.
    pub min_interval: String,
}

/// The secret store's key and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The 32-byte key as base64 (`openssl rand -base64 32`); prefer `key_file` or GOFER_SECRETS__KEY.
    pub key: String,
    /// A file holding the key as base64.
    pub key_file: PathBuf,
    /// Larger secret values are refused with 413.
    pub max_value_bytes: u64,
}

/// Where object bytes live and how many are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    /// `filesystem` or `s3`.
    pub store: String,
    /// For `filesystem`: the folder; empty means `<data_dir>/objects`.
    pub path: PathBuf,
    pub max_object_bytes: u64,
    pub pipeline_objects: u64,
    pub run_objects_runs: u64,
    pub s3: S3Config,
}

/// An S3-compatible store (AWS, MinIO, Ceph, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Empty: AWS itself; else the server's URL, e.g. `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow an `http://` endpoint.
    pub allow_http: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    pub retention_days: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `info`, or filters by target: `info,gofer_core=debug,hyper=warn` (`RUST_LOG`, when set, wins).
    pub level: String,
    /// `text` for people, `json` (one object per line) for log pipelines.
    pub format: String,
}

/// The levels a log filter may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log filter: comma-separated levels and `target=level` pairs.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    for part in filter.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = part.rsplit_once('=').map_or(part, |(target, level)| if target.is_empty() { "" } else { level });
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "'{part}' is not a level or target=level; levels are {} (e.g. \"info,gofer_core=debug\")",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// The web UI served at `/` by the API listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the web UI; `false` leaves only the API (`/api`).
    pub enabled: bool,
    /// How long a login to the web UI lasts (production mode), at most the token's own expiry.
    pub session_hours: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                bind_address: SocketAddr::from(([127, 0, 0, 1], 8080)),
                data_dir: PathBuf::new(),
                task_api_url: String::new(),
                request_timeout_seconds: 60,
                shutdown_grace_seconds: 10,
                tls_cert_path: PathBuf::new(),
                tls_key_path: PathBuf::new(),
            },
            storage: StorageConfig { kind: "sqlite".into(), url: String::new(), pool_size: 16, lease_seconds: 15 },
            scheduler: SchedulerConfig {
                kind: "docker".into(),
                docker: DockerConfig { host: String::new(), share_run_network: true },
                kubernetes: KubernetesConfig {
                    kubeconfig: PathBuf::new(),
                    context: String::new(),
                    api_url: String::new(),
                    namespace: "gofer".into(),
                    service_account: String::new(),
                    node_selector: BTreeMap::new(),
                    image_pull_secrets: Vec::new(),
                    start_timeout_seconds: 600,
                },
                nomad: NomadConfig {
                    address: "http://127.0.0.1:4646".into(),
                    token: String::new(),
                    namespace: "default".into(),
                    region: String::new(),
                    datacenters: Vec::new(),
                    mhz_per_core: 1000,
                    default_memory_mb: 1024,
                    start_timeout_seconds: 600,
                    ca_cert: PathBuf::new(),
                    client_cert: PathBuf::new(),
                    client_key: PathBuf::new(),
                },
                volumes: BTreeMap::new(),
            },
            development: DevelopmentConfig { bypass_auth: true },
            runs: RunsConfig {
                stop_grace_seconds: 10,
                global_limit: 200,
                pipeline_limit: 20,
                max_timeout_seconds: 86_400,
                keep_containers_seconds: 0,
                log_retention_runs: 50,
                create_ahead: true,
            },
            extensions: ExtensionsConfig {
                start_timeout_seconds: 30,
                health_interval_seconds: 10,
                stop_grace_seconds: 10,
                interval: IntervalConfig { min_interval: "1m".into() },
                github: GitHubConfig { webhook_secret: String::new() },
            },
            external_events: ExternalEventsConfig {
                enabled: true,
                bind_address: SocketAddr::from(([127, 0, 0, 1], 8081)),
                max_body_bytes: 25 * 1024 * 1024,
                tls_cert_path: PathBuf::new(),
                tls_key_path: PathBuf::new(),
            },
            secrets: SecretsConfig { key: String::new(), key_file: PathBuf::new(), max_value_bytes: 64 * 1024 },
            objects: ObjectsConfig {
                store: "filesystem".into(),
                path: PathBuf::new(),
                max_object_bytes: 10 * 1024 * 1024 * 1024,
                pipeline_objects: 50,
                run_objects_runs: 10,
                s3: S3Config {
                    endpoint: String::new(),
                    bucket: String::new(),
                    region: "us-east-1".into(),
                    access_key_id: String::new(),
                    secret_access_key: String::new(),
                    allow_http: false,
                },
            },
            events: EventsConfig { retention_days: 30 },
            log: LogConfig { level: "info".into(), format: "text".into() },
            ui: UiConfig { enabled: true, session_hours: 12 },
            metrics: MetricsConfig { enabled: true, bind_address: String::new(), public: false },
        }
    }
}

/// The Prometheus metrics at `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`.
    pub enabled: bool,
    /// Empty serves `/metrics` on the API's listener; an address (`0.0.0.0:9090`) serves it there instead.
    pub bind_address: String,
    /// Let anyone scrape without a token; otherwise (in production mode) a token with `system:read` is needed.
    pub public: bool,
}

impl MetricsConfig {
    /// The address of the metrics' own listener, when they have one.
    pub fn own_address(&self) -> Result<Option<SocketAddr>, Error> {
        if !self.enabled || self.bind_address.trim().is_empty() {
            return Ok(None);
        }
        self.bind_address.trim().parse().map(Some).map_err(|_| Error::OutOfRange {
            field: "metrics.bind_address",
            problem: format!(
                "'{}' is not an address; give host:port (e.g. \"0.0.0.0:9090\") or leave it empty for the API's \
                 listener",
                self.bind_address
            ),
        })
    }
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bind_address: Option<SocketAddr>,
    pub external_bind_address: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration (check the file given with --config and GOFER_* variables)")]
    Invalid(#[source] Box<figment::Error>),
    #[error("invalid configuration: {field} {problem}")]
    OutOfRange { field: &'static str, problem: String },
}

impl Config {
    /// Loads the layers in order of precedence: defaults < file < environment < flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Error::MissingFile { path: path.to_path_buf() });
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("GOFER_")
                .filter(|key| {
                    let key = key.as_str().to_ascii_lowercase();
                    SECTIONS.iter().any(|s| key.starts_with(&format!("{s}__")))
                })
                .split("__"),
        );
        let mut config: Config = figment.extract().map_err(|e| Error::Invalid(Box::new(e)))?;
        if let Some(addr) = overrides.bind_address {
            config.server.bind_address = addr;
        }
        if let Some(addr) = overrides.external_bind_address {
            config.external_events.bind_address = addr;
        }
        if let Some(dir) = &overrides.data_dir {
            config.server.data_dir = dir.clone();
        }
        config.check()?;
        Ok(config)
    }

    /// Refuses values that cannot work, naming the field.
    fn check(&self) -> Result<(), Error> {
        let positive = [
            ("runs.global_limit", self.runs.global_limit),
            ("storage.lease_seconds", self.storage.lease_seconds),
            ("runs.pipeline_limit", self.runs.pipeline_limit),
            ("runs.max_timeout_seconds", self.runs.max_timeout_seconds),
            ("events.retention_days", self.events.retention_days),
            ("server.request_timeout_seconds", self.server.request_timeout_seconds),
            ("server.shutdown_grace_seconds", self.server.shutdown_grace_seconds),
            ("extensions.start_timeout_seconds", self.extensions.start_timeout_seconds),
            ("extensions.health_interval_seconds", self.extensions.health_interval_seconds),
            ("external_events.max_body_bytes", self.external_events.max_body_bytes),
            ("secrets.max_value_bytes", self.secrets.max_value_bytes),
            ("ui.session_hours", self.ui.session_hours),
            ("objects.max_object_bytes", self.objects.max_object_bytes),
            ("objects.pipeline_objects", self.objects.pipeline_objects),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::OutOfRange { field, problem: "must be at least 1".into() });
            }
        }
        self.min_interval()?;
        self.scheduler.check()?;
        if self.scheduler.kind != "docker" && self.server.task_api_url.trim().is_empty() {
            return Err(Error::OutOfRange {
                field: "server.task_api_url",
                problem: format!(
                    "is required with scheduler.kind = \"{}\": the address tasks reach Gofer's API at \
                     (e.g. http://gofer.example.internal:8080)",
                    self.scheduler.kind
                ),
            });
        }
        for (field, cert, key) in [
            ("server.tls_cert_path and server.tls_key_path", &self.server.tls_cert_path, &self.server.tls_key_path),
            (
                "external_events.tls_cert_path and external_events.tls_key_path",
                &self.external_events.tls_cert_path,
                &self.external_events.tls_key_path,
            ),
        ] {
            if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
                return Err(Error::OutOfRange { field, problem: "must be given together".into() });
            }
        }
        match self.storage.kind.as_str() {
            "sqlite" => {}
            "postgres" if self.storage.url.trim().is_empty() => {
                return Err(Error::OutOfRange {
                    field: "storage.url",
                    problem: "is required with kind = \"postgres\" (postgres://USER:PASSWORD@HOST:PORT/DATABASE)"
                        .into(),
                });
            }
            "postgres" if self.storage.pool_size == 0 => {
                return Err(Error::OutOfRange { field: "storage.pool_size", problem: "must be at least 1".into() });
            }
            "postgres" => {}
            other => {
                return Err(Error::OutOfRange {
                    field: "storage.kind",
                    problem: format!("'{other}' is not a storage kind; use \"sqlite\" or \"postgres\""),
                });
            }
        }
        match self.objects.store.as_str() {
            "filesystem" => {}
            "s3" if self.objects.s3.bucket.is_empty() => {
                return Err(Error::OutOfRange {
                    field: "objects.s3.bucket",
                    problem: "is required with store = \"s3\"".into(),
                });
            }
            "s3" => {}
            other => {
                return Err(Error::OutOfRange {
                    field: "objects.store",
                    problem: format!("'{other}' is not a store; use \"filesystem\" or \"s3\""),
                });
            }
        }
        if self.runs.max_timeout_seconds > 366 * 86_400 {
            return Err(Error::OutOfRange {
                field: "runs.max_timeout_seconds",
                problem: "must be at most a year".into(),
            });
        }
        check_log_filter(&self.log.level).map_err(|problem| Error::OutOfRange { field: "log.level", problem })?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(Error::OutOfRange {
                field: "log.format",
                problem: format!("'{}' is not a format; use \"text\" or \"json\"", self.log.format),
            });
        }
        self.metrics.own_address()?;
        if self.ui.session_hours > 30 * 24 {
            return Err(Error::OutOfRange {
                field: "ui.session_hours",
                problem: "must be at most 720 (30 days)".into(),
            });
        }
        Ok(())
    }

    /// `extensions.interval.min_interval` as a duration.
    pub fn min_interval(&self) -> Result<std::time::Duration, Error> {
        let parsed = gofer_core::extensions::parse_duration(&self.extensions.interval.min_interval)
            .map_err(|problem| Error::OutOfRange { field: "extensions.interval.min_interval", problem })?;
        if parsed.is_zero() {
            return Err(Error::OutOfRange {
                field: "extensions.interval.min_interval",
                problem: "must be longer than zero".into(),
            });
        }
        Ok(parsed)
    }

    /// The data dir, resolving the empty default to the per-user data dir.
    pub fn data_dir(&self) -> PathBuf {
        if !self.server.data_dir.as_os_str().is_empty() {
            return self.server.data_dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("gofer");
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/share/gofer"),
            None => PathBuf::from("gofer-data"),
        }
    }

    /// The API address task containers are told about.
    pub fn task_api_url(&self) -> String {
        if self.server.task_api_url.is_empty() {
            let scheme = if self.server.tls_cert_path.as_os_str().is_empty() { "http" } else { "https" };
            format!("{scheme}://172.17.0.1:{}", self.server.bind_address.port())
        } else {
            self.server.task_api_url.clone()
        }
    }

    /// The effective configuration as TOML, for `gofer service config`, with secrets redacted.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for secret in [
            &mut shown.extensions.github.webhook_secret,
            &mut shown.secrets.key,
            &mut shown.objects.s3.secret_access_key,
            &mut shown.scheduler.nomad.token,
        ] {
            if !secret.is_empty() {
                *secret = "(redacted)".into();
            }
        }
        shown.storage.url = redact_password(&shown.storage.url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# could not render the configuration: {e}\n"))
    }
}

/// A database URL without its password: `postgres://gofer:(redacted)@host/db`, and `password=(redacted)` in a
/// query string or the key=value form.
pub fn redact_password(url: &str) -> String {
    let mut shown = url.to_string();
    if let Some(start) = shown.find("://").map(|i| i + 3) {
        let authority_end = shown[start..].find(['/', '?']).map_or(shown.len(), |e| start + e);
        if let Some(at) = shown[start..authority_end].rfind('@').map(|a| start + a)
            && let Some(colon) = shown[start..at].find(':').map(|c| start + c)
        {
            shown.replace_range(colon + 1..at, "(redacted)");
        }
    }
    if let Some(key) = shown.find("password=") {
        let value = key + "password=".len();
        let end = shown[value..].find(['&', ' ']).map_or(shown.len(), |e| value + e);
        shown.replace_range(value..end, "(redacted)");
    }
    shown
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn log_filters_and_formats_are_checked() {
        for good in ["info", "DEBUG", "info,gofer_core=debug", "warn,hyper=off,gofer_server::api=trace", ""] {
            assert!(check_log_filter(good).is_ok(), "{good}");
        }
        for bad in ["loud", "gofer_core=verbose", "=debug", "info,,nope"] {
            let problem = check_log_filter(bad).unwrap_err();
            assert!(problem.contains("levels are"), "{bad}: {problem}");
        }
        let mut config = Config::default();
        config.log.format = "xml".into();
        let e = config.check().unwrap_err().to_string();
        assert!(e.contains("log.format") && e.contains("\"json\""), "{e}");
        config.log.format = "json".into();
        config.log.level = "gofer=loud".into();
        assert!(config.check().unwrap_err().to_string().contains("log.level"));
    }

    #[test]
    fn the_shipped_file_parses_to_the_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gofer.toml");
        std::fs::write(&path, "[server]\nbind_address = \"0.0.0.0:9000\"\n[runs]\nstop_grace_seconds = 3\n").unwrap();
        let config = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(config.server.bind_address.port(), 9000);
        assert_eq!(config.runs.stop_grace_seconds, 3);
        let overrides = Overrides {
            bind_address: Some("127.0.0.1:7000".parse().unwrap()),
            data_dir: None,
            external_bind_address: None,
        };
        assert_eq!(Config::load(Some(&path), &overrides).unwrap().server.bind_address.port(), 7000);
    }

    #[test]
    fn limits_of_zero_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gofer.toml");
        std::fs::write(&path, "[runs]\nglobal_limit = 0\n").unwrap();
        let err = Config::load(Some(&path), &Overrides::default()).unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: runs.global_limit must be at least 1");
        std::fs::write(&path, "[runs]\npipeline_limit = -3\n").unwrap();
        let err = Config::load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(format!("{err:?}").contains("pipeline_limit"), "{err:?}");
    }

    #[test]
    fn scheduler_settings_are_checked_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gofer.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), &Overrides::default())
        };
        let config = load(
            "[scheduler.docker]\nhost = \"tcp://10.0.0.5:2375\"\n[scheduler.volumes.cache]\nsource = \"/srv/cache\"\n\
             namespaces = [\"builds\"]\n",
        )
        .unwrap();
        assert_eq!(config.scheduler.docker.host, "tcp://10.0.0.5:2375");
        let volumes = config.scheduler.volumes();
        assert_eq!(volumes["cache"].source, "/srv/cache");
        assert_eq!((volumes["cache"].read_only, volumes["cache"].namespaces.clone()), (false, vec!["builds".into()]));
        assert!(config.to_toml().contains("[scheduler.volumes.cache]"), "{}", config.to_toml());
        for (text, words) in [
            ("[scheduler]\nkind = \"podman\"\n", "scheduler.kind 'podman' is not a scheduler"),
            ("[scheduler]\nkind = \"nomad\"\n", "server.task_api_url is required with scheduler.kind = \"nomad\""),
            ("[scheduler.nomad]\naddress = \"nomad:4646\"\n", "scheduler.nomad.address 'nomad:4646'"),
            ("[scheduler.nomad]\nmhz_per_core = 0\n", "scheduler.nomad.mhz_per_core must be at least 1"),
            ("[scheduler.nomad]\nstart_timeout_seconds = 999999999\n", "scheduler.nomad.start_timeout_seconds must be"),
            (
                "[scheduler.nomad]\nclient_cert = \"/c.pem\"\n",
                "client_cert and scheduler.nomad.client_key must be given",
            ),
            (
                "[scheduler]\nkind = \"kubernetes\"\n",
                "server.task_api_url is required with scheduler.kind = \"kubernetes\"",
            ),
            ("[scheduler.kubernetes]\nnamespace = \"Gofer_NS\"\n", "scheduler.kubernetes.namespace 'Gofer_NS'"),
            ("[scheduler.kubernetes]\napi_url = \"localhost:8001\"\n", "scheduler.kubernetes.api_url 'localhost:8001'"),
            ("[scheduler.kubernetes]\nstart_timeout_seconds = 0\n", "scheduler.kubernetes.start_timeout_seconds"),
            ("[scheduler.docker]\nhost = \"/var/run/docker.sock\"\n", "scheduler.docker.host '/var/run/docker.sock'"),
            ("[scheduler.volumes.\"bad name\"]\nsource = \"/x\"\n", "invalid volume name 'bad name'"),
            ("[scheduler.volumes.cache]\nsource = \" \"\n", "volume 'cache' has no source"),
            ("[scheduler.volumes.cache]\nsource = \"./rel\"\n", "must be an absolute path or a volume name"),
            ("[scheduler.volumes.cache]\nsource = \"/x\"\nnamespaces = [\"a b\"]\n", "invalid namespace 'a b'"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(words), "{text}: {err}");
        }
        let err = format!("{:?}", load("[scheduler.volumes.cache]\nsource = \"/x\"\nmode = \"rw\"\n").unwrap_err());
        assert!(err.contains("mode"), "{err}");
        let config = load(
            "[server]\ntask_api_url = \"http://gofer.ci.svc:8080\"\n[scheduler]\nkind = \"kubernetes\"\n\
             [scheduler.kubernetes]\nkubeconfig = \"/etc/gofer/kubeconfig\"\ncontext = \"prod\"\nnamespace = \"ci\"\n\
             node_selector = { pool = \"batch\" }\nservice_account = \"gofer-task\"\n",
        )
        .unwrap();
        let kubernetes = &config.scheduler.kubernetes;
        assert_eq!(
            kubernetes.connection(),
            gofer_scheduler_kubernetes::Connection::Infer {
                kubeconfig: Some("/etc/gofer/kubeconfig".into()),
                context: Some("prod".into())
            }
        );
        let settings = kubernetes.settings();
        assert_eq!((settings.namespace.as_str(), settings.service_account.as_deref()), ("ci", Some("gofer-task")));
        assert_eq!(settings.node_selector["pool"], "batch");
        let nomad = load(
            "[server]\ntask_api_url = \"http://10.0.0.2:8080\"\n[scheduler]\nkind = \"nomad\"\n[scheduler.nomad]\n\
             address = \"https://nomad.internal:4646\"\ntoken = \"s3cr3t-token\"\ndatacenters = [\"dc1\"]\n\
             ca_cert = \"/etc/gofer/nomad-ca.pem\"\n",
        )
        .unwrap();
        let settings = nomad.scheduler.nomad.settings(std::time::Duration::from_secs(7));
        assert_eq!((settings.token.as_deref(), settings.kill_timeout.as_secs()), (Some("s3cr3t-token"), 7));
        assert_eq!((settings.region, settings.datacenters), (None, vec!["dc1".to_string()]));
        assert_eq!(settings.ca_cert, Some("/etc/gofer/nomad-ca.pem".into()));
        assert!(!nomad.to_toml().contains("s3cr3t-token"), "the token is redacted");
        let proxied = load("[scheduler.kubernetes]\napi_url = \"http://127.0.0.1:8001\"\n").unwrap();
        assert_eq!(
            proxied.scheduler.kubernetes.connection(),
            gofer_scheduler_kubernetes::Connection::Url("http://127.0.0.1:8001".into())
        );
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let mut config = Config::default();
        config.extensions.github.webhook_secret = "hunter2".into();
        config.secrets.key = "c2VjcmV0LWtleQ==".into();
        let shown = config.to_toml();
        assert!(!shown.contains("hunter2") && !shown.contains("c2VjcmV0LWtleQ=="), "{shown}");
        assert!(shown.contains("webhook_secret = \"(redacted)\""), "{shown}");

        for (url, expected) in [
            ("postgres://gofer:hunter2@db:5432/gofer", "postgres://gofer:(redacted)@db:5432/gofer"),
            (
                "postgres://gofer:p%40ss@db/gofer?sslmode=disable",
                "postgres://gofer:(redacted)@db/gofer?sslmode=disable",
            ),
            ("postgres://gofer@db/gofer?password=hunter2&x=1", "postgres://gofer@db/gofer?password=(redacted)&x=1"),
            ("host=db user=gofer password=hunter2 dbname=gofer", "host=db user=gofer password=(redacted) dbname=gofer"),
            ("postgres://db/gofer", "postgres://db/gofer"),
        ] {
            assert_eq!(redact_password(url), expected);
        }
        config.storage.url = "postgres://gofer:hunter2@db/gofer".into();
        assert!(!config.to_toml().contains("hunter2"));
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gofer.toml");
        std::fs::write(&path, "[server]\nbind_adress = \"0.0.0.0:9000\"\n").unwrap();
        let err = Config::load(Some(&path), &Overrides::default()).unwrap_err();
        let chain = format!("{:?}", err);
        assert!(chain.contains("bind_adress"), "{chain}");
        assert!(matches!(
            Config::load(Some(&dir.path().join("nope.toml")), &Overrides::default()),
            Err(Error::MissingFile { .. })
        ));
    }
}
