//! The pipeline config: the builder users call and the JSON document the server registers.
//!
//! The builder vocabulary follows the earlier Gofer SDK so that existing pipeline programs keep compiling. The
//! same types are what the server deserializes and validates again, so a config can never be valid on one side
//! and invalid on the other.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dag;
pub use crate::strategy::{BlueGreen, Canary, Strategy};

/// The longest identifier (pipeline id, task id, namespace id) Gofer accepts.
pub const MAX_IDENTIFIER_LEN: usize = 64;

/// The longest name (of a pipeline, namespace, role, ...) Gofer accepts, in characters.
pub const MAX_NAME_LEN: usize = 256;
/// The longest description Gofer accepts, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 8192;

/// Checks free text a person gives (a name, a description): at most `max` characters, and no control characters
/// but line breaks and tabs (which only descriptions may hold). Bounded so that one config cannot make every list
/// of pipelines unreadable.
pub fn validate_text(what: &str, value: &str, max: usize) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidText { what: what.to_string(), reason };
    let length = value.chars().count();
    if length > max {
        return Err(invalid(format!("it is {length} characters long; the most is {max}")));
    }
    let multiline = max > MAX_NAME_LEN;
    if let Some(c) = value.chars().find(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))) {
        return Err(invalid(format!("it contains the control character {:?}", c)));
    }
    Ok(())
}

/// When a child task may run, judged by how its parent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::RequiredParentStatus))]
pub enum RequiredParentStatus {
    /// Kept for compatibility with configs written by the earlier Gofer; treated as `Any`.
    Unknown,
    /// The parent ended in any final state (successful, failed, cancelled or skipped).
    Any,
    /// The parent ended successful.
    Success,
    /// The parent ended failed.
    Failure,
}

impl RequiredParentStatus {
    /// Every status, in the order they are declared.
    pub const ALL: [Self; 4] = [Self::Unknown, Self::Any, Self::Success, Self::Failure];

    /// The name used in configs and by `Display`/`FromStr`: `Unknown`, `Any`, `Success` or `Failure`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Any => "Any",
            Self::Success => "Success",
            Self::Failure => "Failure",
        }
    }
}

/// Prints the status as configs spell it (`Success`), like the earlier SDK did.
impl std::fmt::Display for RequiredParentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not a [`RequiredParentStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseStatusError {
    pub value: String,
}

impl std::fmt::Display for ParseStatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' is not a required parent status; use Any, Success or Failure", self.value)
    }
}

impl std::error::Error for ParseStatusError {}

/// Parses the names `Display` prints (`Any`, `Success`, `Failure`, `Unknown`), exactly as the earlier SDK did.
impl std::str::FromStr for RequiredParentStatus {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| ParseStatusError { value: s.into() })
    }
}

/// Credentials for pulling a task's image from a private registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::RegistryAuth))]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    pub user: String,
    pub pass: String,
}

/// Why a config was refused. Every message names the pipeline or task and the problem.
#[derive(Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// An identifier does not follow the identifier rule.
    InvalidIdentifier { what: String, value: String, reason: String },
    /// Two tasks share an id.
    DuplicateTask { task_id: String },
    /// A task depends on a task that is not in the pipeline.
    UnknownDependency { task_id: String, dependency: String },
    /// The dependencies form a cycle; the path starts and ends with the same task.
    Cycle { path: Vec<String> },
    /// A task field has a value Gofer cannot run.
    InvalidTask { task_id: String, field: String, reason: String },
    /// A pipeline field has a value Gofer cannot run.
    InvalidPipeline { field: String, reason: String },
    /// A name or description is too long or holds control characters.
    InvalidText { what: String, reason: String },
    /// The config could not be written out.
    Output { reason: String },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidIdentifier { what, value, reason } => write!(f, "invalid {what} '{value}': {reason}"),
            Self::DuplicateTask { task_id } => {
                write!(f, "task '{task_id}' is defined more than once; task ids must be unique within a pipeline")
            }
            Self::UnknownDependency { task_id, dependency } => {
                write!(f, "task '{task_id}' depends on task '{dependency}', which is not defined in this pipeline")
            }
            Self::Cycle { path } => write!(
                f,
                "tasks form a dependency cycle ({}); a pipeline must be a directed acyclic graph",
                path.join(" -> ")
            ),
            Self::InvalidTask { task_id, field, reason } => write!(f, "task '{task_id}': invalid {field}: {reason}"),
            Self::InvalidPipeline { field, reason } => {
                write!(f, "invalid pipeline {field}: {reason}")
            }
            Self::InvalidText { what, reason } => write!(f, "invalid {what}: {reason}"),
            Self::Output { reason } => {
                write!(f, "could not write the pipeline config to stdout: {reason}")
            }
        }
    }
}

/// Debug shows the message: pipeline programs end with `.finish().unwrap()`, and a panic should read as the
/// problem, not as a struct.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

/// Checks the identifier rule shared by namespaces, pipelines and tasks: 1 to 64 characters of ASCII letters,
/// digits, `-` and `_`, starting with a letter or a digit. Ids become parts of container names, file paths and
/// URLs, so the rule is deliberately narrow.
pub fn validate_identifier(what: &str, value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidIdentifier {
        what: what.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Err(invalid("it must not be empty"));
    }
    if value.len() > MAX_IDENTIFIER_LEN {
        return Err(invalid(&format!("it is longer than {MAX_IDENTIFIER_LEN} characters")));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("it must start with a letter or a digit"));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(invalid(&format!("it contains '{c}'; only ASCII letters, digits, '-' and '_' are allowed")));
    }
    Ok(())
}

/// A named DAG of tasks. Build it, then call [`Pipeline::finish`].
#[must_use = "complete the pipeline config with the .finish() method"]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::Pipeline))]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Unique identifier within a namespace.
    pub id: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: String,
    /// What the pipeline is for.
    #[serde(default)]
    pub description: Option<String>,
    /// How many runs of this pipeline may be active at once; 0 means the server's limit applies.
    #[serde(default)]
    pub parallelism: i64,
    /// The tasks, in any order; dependencies decide the order they run in.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Longest a whole run may take, in seconds; past it the run is cancelled with reason `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Triggers declared in code; deploying this config makes the pipeline's declared subscriptions equal these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<Subscription>,
    /// How deploying this config replaces the live version when the deploy names no strategy; immediate if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_strategy: Option<Strategy>,
    /// For debugging: when a task fails with an exit code, keep its filesystem this many seconds in a debug
    /// container (`gofer task exec` / `attach` reach it). The server may cap it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_failed_seconds: Option<u64>,
}

/// A subscription declared in the pipeline's code: `extension` starts runs as `settings` say. Deploying the config
/// creates it, changes it when its settings changed, and removes it when the code no longer declares it;
/// subscriptions made through the API or CLI are left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::Subscription))]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub extension: String,
    /// Names it among the pipeline's subscriptions to the same extension.
    pub label: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

impl Pipeline {
    /// Starts a pipeline with an id (unique within a namespace) and a display name.
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            id: id.to_string(),
            name: name.to_string(),
            description: None,
            parallelism: 0,
            tasks: Vec::new(),
            timeout_seconds: None,
            subscriptions: Vec::new(),
            deploy_strategy: None,
            keep_failed_seconds: None,
        }
    }

    /// For debugging: when a task fails with an exit code, its filesystem is kept this long (rounded up to whole
    /// seconds) in a debug container that `gofer task exec` and `gofer task attach` reach.
    pub fn keep_failed_containers(mut self, keep: Duration) -> Self {
        self.keep_failed_seconds = Some(whole_seconds(keep));
        self
    }

    /// How `gofer pipeline deploy` rolls this config out unless told otherwise, e.g.
    /// `.deploy_strategy(Strategy::canary(20, 5, 0.9))`: 20 % of new runs to the new version, promoted once 5 of
    /// them completed with at least 90 % successful.
    pub fn deploy_strategy(mut self, strategy: Strategy) -> Self {
        self.deploy_strategy = Some(strategy);
        self
    }

    /// Declares a trigger, e.g. `.subscribe("interval", "hourly", vec![("every", "1h")])` or
    /// `.subscribe("cron", "nightly", vec![("expression", "0 3 * * *"), ("timezone", "Europe/Berlin")])`.
    /// Deploying the config reconciles the pipeline's declared subscriptions with these.
    pub fn subscribe(mut self, extension: &str, label: &str, settings: Vec<(&str, &str)>) -> Self {
        self.subscriptions.push(Subscription {
            extension: extension.to_string(),
            label: label.to_string(),
            settings: settings.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        });
        self
    }

    /// The longest a whole run may take (rounded up to whole seconds); past it the run is cancelled with reason
    /// `timeout`. The server may cap it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_seconds = Some(whole_seconds(timeout));
        self
    }

    pub fn description(mut self, description: &str) -> Self {
        self.description = Some(description.to_string());
        self
    }

    /// How many runs may be active at once; 0 (the default) leaves it to the server's limit.
    pub fn parallelism(mut self, parallelism: i64) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// Sets the pipeline's tasks, replacing any set before.
    pub fn tasks(mut self, tasks: Vec<Task>) -> Self {
        self.tasks = tasks;
        self
    }

    /// Checks everything the server will check: identifiers, images, variables, duplicate task ids, unknown
    /// dependencies and cycles.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_identifier("pipeline id", &self.id)?;
        validate_text("pipeline name", &self.name, MAX_NAME_LEN)?;
        if let Some(description) = &self.description {
            validate_text("pipeline description", description, MAX_DESCRIPTION_LEN)?;
        }
        if self.parallelism < 0 {
            return Err(ConfigError::InvalidPipeline {
                field: "parallelism".into(),
                reason: format!("{} is negative; use 0 for the server's limit or a positive number", self.parallelism),
            });
        }
        if self.keep_failed_seconds == Some(0) {
            return Err(ConfigError::InvalidPipeline {
                field: "keep_failed_seconds".into(),
                reason: "it must be at least one second; leave it out to keep nothing".into(),
            });
        }
        if self.timeout_seconds == Some(0) {
            return Err(ConfigError::InvalidPipeline {
                field: "timeout".into(),
                reason: "it must be at least one second".into(),
            });
        }
        if self.tasks.is_empty() {
            return Err(ConfigError::InvalidPipeline {
                field: "tasks".into(),
                reason: "a pipeline needs at least one task".into(),
            });
        }
        for task in &self.tasks {
            task.validate()?;
        }
        let mut declared = std::collections::BTreeSet::new();
        for subscription in &self.subscriptions {
            validate_identifier("subscription extension", &subscription.extension)?;
            validate_identifier("subscription label", &subscription.label)?;
            if !declared.insert((&subscription.extension, &subscription.label)) {
                return Err(ConfigError::InvalidPipeline {
                    field: "subscriptions".into(),
                    reason: format!(
                        "'{}' is declared twice for extension '{}'; labels must be unique per extension",
                        subscription.label, subscription.extension
                    ),
                });
            }
        }
        if let Some(strategy) = &self.deploy_strategy {
            strategy.validate()?;
        }
        dag::check(&self.tasks)
    }

    /// Validates the pipeline and prints it as JSON on stdout, where `gofer pipeline deploy` reads it.
    pub fn finish(self) -> Result<(), ConfigError> {
        self.validate()?;
        let json = serde_json::to_string(&self).map_err(|e| ConfigError::Output { reason: e.to_string() })?;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(json.as_bytes())
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .map_err(|e| ConfigError::Output { reason: e.to_string() })
    }
}

/// One unit of work: a container image plus how to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::Task))]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Unique identifier within the pipeline.
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The container image, e.g. `busybox:latest`.
    pub image: String,
    #[serde(default)]
    pub registry_auth: Option<RegistryAuth>,
    /// Parent task id → the parent outcome this task needs before it may run.
    #[serde(default)]
    pub depends_on: BTreeMap<String, RequiredParentStatus>,
    /// Environment variables for the container. Values may be interpolations such as `pipeline_secret{{KEY}}`.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Overrides the image's entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's command.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Hands the task an API token scoped to its run as `GOFER_TOKEN`.
    #[serde(default)]
    pub inject_api_token: bool,
    /// Pull the image before every run, not only when it is missing.
    #[serde(default)]
    pub always_pull_newest_image: bool,
    /// Longest one attempt of the task may take, in seconds; past it the container is stopped and the attempt
    /// fails with reason `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// How many times a failed attempt is retried (0 to 10); every attempt is recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The most CPU the container may use, in thousandths of a core (`1500` is one and a half cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u32>,
    /// The most memory the container may use, in bytes; a task that needs more is killed and fails with reason
    /// `out_of_memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The directory the command starts in (an absolute path), instead of the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The user the command runs as (`name`, `uid`, `name:group` or `uid:gid`), instead of the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Volumes the operator configured (`scheduler.volumes`), mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
}

/// A volume the server's operator configured, mounted into a task's container at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::VolumeMount))]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume's name in the server's configuration (`scheduler.volumes.<name>`).
    pub name: String,
    /// Where it appears in the container (an absolute path).
    pub path: String,
    /// Mounted read-only (the operator may also make a volume read-only for every task).
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A mebibyte, for [`Task::memory`]: `.memory(512 * MIB)`.
pub const MIB: u64 = 1024 * 1024;
/// A gibibyte, for [`Task::memory`]: `.memory(2 * GIB)`.
pub const GIB: u64 = 1024 * MIB;
/// The smallest CPU limit, in thousandths of a core (every engine Gofer drives can hold to a hundredth).
pub const MIN_CPU_MILLICORES: u32 = 10;
/// The largest CPU limit, in thousandths of a core.
pub const MAX_CPU_MILLICORES: u32 = 1024 * 1000;
/// The smallest memory limit (Docker refuses less than 6 MiB).
pub const MIN_MEMORY_BYTES: u64 = 6 * MIB;
/// The largest memory limit (16 TiB).
pub const MAX_MEMORY_BYTES: u64 = 16 * 1024 * GIB;
/// The most volumes one task may mount.
pub const MAX_VOLUMES: usize = 16;
/// The longest path (working dir, mount point) a task may name.
pub const MAX_PATH_LEN: usize = 4096;

/// The most retries a task may ask for.
pub const MAX_RETRIES: u32 = 10;

fn whole_seconds(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 { secs + 1 } else { secs }
}

impl Task {
    /// Starts a task from an id (unique within the pipeline) and an image. Unlike the earlier Gofer, the image is
    /// pulled only when the engine does not have it; ask for [`Task::always_pull_newest_image`] to pull every time.
    pub fn new(id: &str, image: &str) -> Self {
        Self {
            id: id.to_string(),
            description: None,
            image: image.to_string(),
            registry_auth: None,
            depends_on: BTreeMap::new(),
            variables: BTreeMap::new(),
            entrypoint: None,
            command: None,
            inject_api_token: false,
            always_pull_newest_image: false,
            timeout_seconds: None,
            retries: 0,
            cpu_millicores: None,
            memory_bytes: None,
            working_dir: None,
            user: None,
            volumes: Vec::new(),
        }
    }

    /// Limits the CPU the container may use, in cores: `.cpu(0.5)` is half a core, `.cpu(2.0)` two. Kept to a
    /// thousandth of a core; at least 0.01.
    pub fn cpu(mut self, cores: f64) -> Self {
        // A float cast saturates: NaN and negative values become 0 and huge ones the maximum, both refused by
        // validation with the value named.
        self.cpu_millicores = Some((cores * 1000.0).round() as u32);
        self
    }

    /// Limits the memory the container may use, in bytes: `.memory(512 * MIB)`. A task that needs more is killed
    /// and fails with reason `out_of_memory`. At least 6 MiB.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }

    /// Starts the command in `path` (absolute) instead of the image's working directory.
    pub fn working_dir(mut self, path: &str) -> Self {
        self.working_dir = Some(path.to_string());
        self
    }

    /// Runs the command as `user` (`name`, `uid`, `name:group` or `uid:gid`) instead of the image's user.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// Mounts the volume the server's operator configured as `scheduler.volumes.<name>` at `path`.
    pub fn volume(mut self, name: &str, path: &str) -> Self {
        self.volumes.push(VolumeMount { name: name.to_string(), path: path.to_string(), read_only: false });
        self
    }

    /// Mounts a configured volume read-only at `path`; see [`Task::volume`].
    pub fn read_only_volume(mut self, name: &str, path: &str) -> Self {
        self.volumes.push(VolumeMount { name: name.to_string(), path: path.to_string(), read_only: true });
        self
    }

    /// The longest one attempt may take (rounded up to whole seconds); past it the container is stopped and the
    /// attempt fails with reason `timeout`. The server may cap it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_seconds = Some(whole_seconds(timeout));
        self
    }

    /// Retries a failed attempt up to `retries` times (at most 10). Cancelled attempts are not retried.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    pub fn description(mut self, description: &str) -> Self {
        self.description = Some(description.to_string());
        self
    }

    pub fn registry_auth(mut self, user: &str, pass: &str) -> Self {
        self.registry_auth = Some(RegistryAuth { user: user.to_string(), pass: pass.to_string() });
        self
    }

    /// Runs this task only after `task_id` ended in the way `status` asks for; otherwise this task is skipped.
    pub fn depends_on(mut self, task_id: &str, status: RequiredParentStatus) -> Self {
        self.depends_on.insert(task_id.to_string(), status);
        self
    }

    /// Adds several dependencies at once; see [`Task::depends_on`]. Takes the map the earlier SDK took, so
    /// `HashMap::from([("build".into(), RequiredParentStatus::Success)])` infers its key type.
    pub fn depends_on_many(mut self, depends_on: HashMap<String, RequiredParentStatus>) -> Self {
        self.depends_on.extend(depends_on);
        self
    }

    /// Adds environment variables; keys are upper-cased, as in the earlier Gofer SDK. Later calls add to earlier
    /// ones. Takes any list or map of pairs: `vec![("KEY", "value")]`, `HashMap::from([...])`, owned `String`s.
    pub fn variables<K, V, I>(mut self, variables: I) -> Self
    where
        K: Into<String>,
        V: Into<String>,
        I: IntoIterator<Item = (K, V)>,
    {
        self.variables.extend(variables.into_iter().map(|(k, v)| (k.into().to_uppercase(), v.into())));
        self
    }

    /// Replaces the image's entrypoint. Takes `Vec<String>` as the earlier SDK did, so `vec!["sh".into()]` and
    /// `.collect()` infer their types; for string literals write `vec!["sh".to_string()]` or use
    /// [`Task::script`].
    pub fn entrypoint(mut self, entrypoint: Vec<String>) -> Self {
        self.entrypoint = Some(entrypoint);
        self
    }

    /// Replaces the image's command (its arguments, after the entrypoint). Takes `Vec<String>` as the earlier SDK
    /// did: `.command(vec!["echo".into(), "hello".into()])`.
    pub fn command(mut self, command: Vec<String>) -> Self {
        self.command = Some(command);
        self
    }

    /// Runs a shell script: the command becomes `sh -c <script>` (every image with a shell has `sh`, not every
    /// image has `bash`). Takes `&str`, `String` or `&String`, e.g. `.script(format!("echo {greeting}"))`.
    pub fn script(mut self, script: impl AsRef<str>) -> Self {
        self.command = Some(vec!["sh".to_string(), "-c".to_string(), script.as_ref().trim().to_string()]);
        self
    }

    /// Injects an API token scoped to this run as `GOFER_TOKEN`.
    pub fn inject_api_token(mut self, inject: bool) -> Self {
        self.inject_api_token = inject;
        self
    }

    /// Pulls the image before every run, not only when the engine lacks it.
    pub fn always_pull_newest_image(mut self, pull: bool) -> Self {
        self.always_pull_newest_image = pull;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_identifier("task id", &self.id)?;
        if let Some(description) = &self.description {
            validate_text(&format!("description of task '{}'", self.id), description, MAX_DESCRIPTION_LEN)?;
        }
        let invalid = |field: &str, reason: String| ConfigError::InvalidTask {
            task_id: self.id.clone(),
            field: field.to_string(),
            reason,
        };
        if self.image.trim().is_empty() {
            return Err(invalid("image", "it must not be empty; name a container image such as busybox:latest".into()));
        }
        if self.image.chars().any(char::is_whitespace) {
            return Err(invalid("image", format!("'{}' contains whitespace", self.image)));
        }
        for (key, value) in &self.variables {
            if key.is_empty() {
                return Err(invalid("variables", "a variable has an empty name".into()));
            }
            if key.contains('=') || key.contains('\0') {
                return Err(invalid("variables", format!("variable name '{key}' contains '=' or a NUL byte")));
            }
            if value.contains('\0') {
                return Err(invalid("variables", format!("the value of {key} contains a NUL byte")));
            }
            Reference::check(value).map_err(|problem| invalid("variables", format!("{key}: {problem}")))?;
        }
        if let Some(auth) = &self.registry_auth {
            if auth.user.is_empty() {
                return Err(invalid("registry_auth", "the user is empty".into()));
            }
            Reference::check(&auth.pass).map_err(|problem| invalid("registry_auth", problem))?;
            if matches!(Reference::parse(&auth.pass), Some(Reference::PipelineObject(_) | Reference::RunObject(_))) {
                return Err(invalid("registry_auth", "the password may name a secret, not an object".into()));
            }
        }
        for (field, list) in [("entrypoint", &self.entrypoint), ("command", &self.command)] {
            if list.as_ref().is_some_and(|l| l.iter().any(|s| s.contains('\0'))) {
                return Err(invalid(field, "an argument contains a NUL byte".into()));
            }
        }
        if self.timeout_seconds == Some(0) {
            return Err(invalid("timeout", "it must be at least one second".into()));
        }
        if self.retries > MAX_RETRIES {
            return Err(invalid("retries", format!("{} is more than the maximum of {MAX_RETRIES}", self.retries)));
        }
        self.validate_resources()?;
        if self.depends_on.contains_key(&self.id) {
            return Err(ConfigError::Cycle { path: vec![self.id.clone(), self.id.clone()] });
        }
        Ok(())
    }

    /// Checks the limits, working dir, user and volumes.
    fn validate_resources(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::InvalidTask {
            task_id: self.id.clone(),
            field: field.to_string(),
            reason,
        };
        if let Some(millis) = self.cpu_millicores
            && !(MIN_CPU_MILLICORES..=MAX_CPU_MILLICORES).contains(&millis)
        {
            return Err(invalid(
                "cpu",
                format!("{} cores is outside 0.01 to {} cores", f64::from(millis) / 1000.0, MAX_CPU_MILLICORES / 1000),
            ));
        }
        if let Some(bytes) = self.memory_bytes
            && !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&bytes)
        {
            return Err(invalid(
                "memory",
                format!(
                    "{bytes} bytes is outside 6 MiB ({MIN_MEMORY_BYTES} bytes) to 16 TiB ({MAX_MEMORY_BYTES} bytes)"
                ),
            ));
        }
        if let Some(dir) = &self.working_dir {
            check_absolute_path(dir).map_err(|problem| invalid("working_dir", problem))?;
        }
        if let Some(user) = &self.user {
            check_user(user).map_err(|problem| invalid("user", problem))?;
        }
        if self.volumes.len() > MAX_VOLUMES {
            return Err(invalid("volumes", format!("{} volumes is more than {MAX_VOLUMES}", self.volumes.len())));
        }
        let mut paths = std::collections::BTreeSet::new();
        for volume in &self.volumes {
            validate_identifier("volume name", &volume.name).map_err(|e| invalid("volumes", e.to_string()))?;
            check_absolute_path(&volume.path)
                .map_err(|problem| invalid("volumes", format!("volume '{}': {problem}", volume.name)))?;
            if volume.path.trim_end_matches('/').is_empty() {
                return Err(invalid("volumes", format!("volume '{}' cannot be mounted at /", volume.name)));
            }
            if !paths.insert(volume.path.trim_end_matches('/')) {
                return Err(invalid("volumes", format!("two volumes are mounted at {}", volume.path)));
            }
        }
        Ok(())
    }
}

/// A path inside a container: absolute, without NUL bytes or `..`, bounded.
fn check_absolute_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("'{path}' is not an absolute path; start it with /"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!("the path is longer than {MAX_PATH_LEN} bytes"));
    }
    if path.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("'{path}' contains '..'"));
    }
    Ok(())
}

/// A user as engines take it: `name`, `uid`, `name:group` or `uid:gid`, each part letters, digits, `_`, `-`, `.`.
fn check_user(user: &str) -> Result<(), String> {
    let mut parts = user.split(':');
    let (name, group, rest) = (parts.next().unwrap_or_default(), parts.next(), parts.next());
    let part_ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 64
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if rest.is_some() || !part_ok(name) || group.is_some_and(|g| !part_ok(g)) {
        return Err(format!(
            "'{user}' is not a user; give a name or uid, optionally with a group or gid (e.g. \"1000:1000\")"
        ));
    }
    Ok(())
}

/// A variable's value that names a stored value instead of being one: `pipeline_secret{{KEY}}` and friends. The
/// reference must be the whole value (surrounding spaces aside); the kind is matched without regard to case and
/// spaces inside the braces are ignored, as the earlier Gofer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference<'a> {
    PipelineSecret(&'a str),
    GlobalSecret(&'a str),
    PipelineObject(&'a str),
    RunObject(&'a str),
}

const REFERENCE_KINDS: [&str; 4] = ["pipeline_secret", "global_secret", "pipeline_object", "run_object"];

/// The longest object key.
pub const MAX_OBJECT_KEY_LEN: usize = 128;

impl<'a> Reference<'a> {
    /// The reference a value is, if it is one.
    pub fn parse(value: &'a str) -> Option<Self> {
        let (kind, rest) = value.trim().split_once("{{")?;
        let key = rest.strip_suffix("}}")?.trim();
        match kind.to_ascii_lowercase().as_str() {
            "pipeline_secret" => Some(Self::PipelineSecret(key)),
            "global_secret" => Some(Self::GlobalSecret(key)),
            "pipeline_object" => Some(Self::PipelineObject(key)),
            "run_object" => Some(Self::RunObject(key)),
            _ => None,
        }
    }

    /// The key the reference names.
    pub fn key(self) -> &'a str {
        match self {
            Self::PipelineSecret(key) | Self::GlobalSecret(key) | Self::PipelineObject(key) | Self::RunObject(key) => {
                key
            }
        }
    }

    /// Checks a value: a reference must be well formed and name a valid key; any other value is plain text. A value
    /// that starts like a reference but is not one (`pipeline_secret{{KEY` or text after the braces) is refused,
    /// since it would otherwise reach the container as text.
    pub fn check(value: &str) -> Result<(), String> {
        if let Some(reference) = Reference::parse(value) {
            return match reference {
                Reference::PipelineSecret(key) | Reference::GlobalSecret(key) => {
                    validate_identifier("secret key", key).map_err(|e| e.to_string())
                }
                Reference::PipelineObject(key) | Reference::RunObject(key) => validate_object_key(key),
            };
        }
        let lowered = value.trim_start().to_ascii_lowercase();
        match REFERENCE_KINDS.iter().find(|kind| lowered.starts_with(&format!("{kind}{{{{"))) {
            Some(kind) => Err(format!(
                "'{value}' starts like a {kind} reference but is not one: write {kind}{{{{KEY}}}} as the whole value"
            )),
            None => Ok(()),
        }
    }
}

/// Checks an object key: 1 to 128 of letters, digits, `.`, `-` and `_`, and not only dots.
pub fn validate_object_key(key: &str) -> Result<(), String> {
    let problem = if key.is_empty() {
        Some("it is empty".to_string())
    } else if key.len() > MAX_OBJECT_KEY_LEN {
        Some(format!("it is longer than {MAX_OBJECT_KEY_LEN} characters"))
    } else if key.chars().all(|c| c == '.') {
        Some("it is only dots".to_string())
    } else {
        key.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            .map(|c| format!("it contains {c:?}; use letters, digits, '.', '-' and '_'"))
    };
    match problem {
        Some(problem) => Err(format!("invalid object key '{key}': {problem}")),
        None => Ok(()),
    }
}

/// Reads a pipeline secret into a variable: `Task::variables(vec![("PASSWORD", pipeline_secret("db_password"))])`.
pub fn pipeline_secret(key: &str) -> String {
    format!("pipeline_secret{{{{{key}}}}}")
}

/// Reads a global secret into a variable, if the pipeline's namespace may use it.
pub fn global_secret(key: &str) -> String {
    format!("global_secret{{{{{key}}}}}")
}

/// Reads a pipeline object into a variable.
pub fn pipeline_object(key: &str) -> String {
    format!("pipeline_object{{{{{key}}}}}")
}

/// Reads an object of the current run into a variable; a parent task can leave one for its children.
pub fn run_object(key: &str) -> String {
    format!("run_object{{{{{key}}}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> Task {
        Task::new(id, "busybox:latest")
    }

    fn validate(tasks: Vec<Task>) -> Result<(), ConfigError> {
        Pipeline::new("p", "P").tasks(tasks).validate()
    }

    #[test]
    fn identifiers_follow_the_rule() {
        assert!(validate_identifier("task id", "build_and-test-1").is_ok());
        assert!(validate_identifier("task id", "a").is_ok());
        for bad in ["", "-lead", "has space", "dot.ted", "slash/y", &"x".repeat(65)] {
            let err = validate_identifier("task id", bad).expect_err(bad);
            assert!(err.to_string().starts_with(&format!("invalid task id '{bad}'")), "{err}");
        }
    }

    #[test]
    fn declared_subscriptions_are_checked_and_serialized() {
        let pipeline = Pipeline::new("p", "P")
            .tasks(vec![task("a")])
            .subscribe("interval", "hourly", vec![("every", "1h")])
            .subscribe("cron", "hourly", vec![("expression", "0 * * * *")]);
        pipeline.validate().unwrap();
        let json = serde_json::to_value(&pipeline).unwrap();
        assert_eq!(json["subscriptions"][0]["settings"]["every"], "1h");
        let twice = pipeline.clone().subscribe("interval", "hourly", vec![("every", "2h")]);
        assert!(twice.validate().unwrap_err().to_string().contains("'hourly' is declared twice"));
        let bad = Pipeline::new("p", "P").tasks(vec![task("a")]).subscribe("interval", "every hour", vec![]);
        assert!(bad.validate().unwrap_err().to_string().contains("invalid subscription label 'every hour'"));
        let without = serde_json::to_value(Pipeline::new("p", "P").tasks(vec![task("a")])).unwrap();
        assert!(without.get("subscriptions").is_none(), "configs without triggers hash as before");
    }

    #[test]
    fn duplicate_task_ids_are_refused_by_name() {
        let err = validate(vec![task("a"), task("a")]).unwrap_err();
        assert_eq!(err, ConfigError::DuplicateTask { task_id: "a".into() });
        assert!(err.to_string().contains("task 'a' is defined more than once"));
    }

    #[test]
    fn unknown_dependencies_name_both_tasks() {
        let err = validate(vec![task("a").depends_on("ghost", RequiredParentStatus::Success)]).unwrap_err();
        assert_eq!(err.to_string(), "task 'a' depends on task 'ghost', which is not defined in this pipeline");
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let err = validate(vec![
            task("a").depends_on("c", RequiredParentStatus::Any),
            task("b").depends_on("a", RequiredParentStatus::Any),
            task("c").depends_on("b", RequiredParentStatus::Any),
            task("d"),
        ])
        .unwrap_err();
        let ConfigError::Cycle { path } = &err else { panic!("expected a cycle, got {err}") };
        assert_eq!(path.first(), path.last());
        assert_eq!(path.len(), 4, "{path:?}");
        for id in ["a", "b", "c"] {
            assert!(path.contains(&id.to_string()));
        }
        assert!(!path.contains(&"d".to_string()));
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = validate(vec![task("a").depends_on("a", RequiredParentStatus::Any)]).unwrap_err();
        assert_eq!(err, ConfigError::Cycle { path: vec!["a".into(), "a".into()] });
    }

    #[test]
    fn a_diamond_is_a_valid_dag() {
        validate(vec![
            task("root"),
            task("left").depends_on("root", RequiredParentStatus::Success),
            task("right").depends_on("root", RequiredParentStatus::Failure),
            task("join").depends_on_many(HashMap::from([
                ("left".into(), RequiredParentStatus::Any),
                ("right".into(), RequiredParentStatus::Any),
            ])),
        ])
        .unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let err = validate(vec![Task::new("a", " ")]).unwrap_err();
        assert!(err.to_string().starts_with("task 'a': invalid image"), "{err}");
        let err = validate(vec![task("a").variables([("BAD=KEY", "v")])]).unwrap_err();
        assert!(err.to_string().contains("variable name 'BAD=KEY'"), "{err}");
        let err = Pipeline::new("p", "").parallelism(-1).tasks(vec![task("a")]).validate().unwrap_err();
        assert!(err.to_string().contains("parallelism"), "{err}");
        let err = Pipeline::new("p", "").validate().unwrap_err();
        assert!(err.to_string().contains("at least one task"), "{err}");
        let err = Pipeline::new("p", &"n".repeat(MAX_NAME_LEN + 1)).tasks(vec![task("a")]).validate().unwrap_err();
        assert!(err.to_string().starts_with("invalid pipeline name: it is 257 characters long"), "{err}");
        let err = Pipeline::new("p", "two\nlines").tasks(vec![task("a")]).validate().unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
        Pipeline::new("p", "P").description("two\nlines\tand a tab").tasks(vec![task("a")]).validate().unwrap();
        let err = validate(vec![task("a").description(&"d".repeat(MAX_DESCRIPTION_LEN + 1))]).unwrap_err();
        assert!(err.to_string().starts_with("invalid description of task 'a'"), "{err}");
        let err = Pipeline::new("bad id", "").tasks(vec![task("a")]).validate().unwrap_err();
        assert!(err.to_string().starts_with("invalid pipeline id 'bad id'"), "{err}");
    }

    #[test]
    fn builder_matches_the_earlier_sdk_vocabulary() {
        let t = Task::new("t", "img")
            .description("d")
            .variables(vec![("lower", "1")])
            .variables(HashMap::from([("Second".to_string(), "2".to_string())]))
            .entrypoint(vec!["/bin/sh".to_string()])
            .command(vec!["-c".into(), "true".into()])
            .inject_api_token(true)
            .always_pull_newest_image(true)
            .registry_auth("u", "p");
        assert_eq!(t.variables.get("LOWER").map(String::as_str), Some("1"));
        assert_eq!(t.variables.get("SECOND").map(String::as_str), Some("2"));
        assert_eq!(t.command, Some(vec!["-c".to_string(), "true".to_string()]));
        assert_eq!(Task::new("s", "i").script("  echo hi\n").command.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(pipeline_secret("k"), "pipeline_secret{{k}}");
        assert_eq!(global_secret("k"), "global_secret{{k}}");
        assert_eq!(pipeline_object("k"), "pipeline_object{{k}}");
        assert_eq!(run_object("k"), "run_object{{k}}");
    }

    #[test]
    fn timeouts_and_retries_are_validated() {
        let t = task("a").timeout(Duration::from_millis(1500)).retries(2);
        assert_eq!((t.timeout_seconds, t.retries), (Some(2), 2));
        validate(vec![t]).unwrap();
        let err = validate(vec![task("a").retries(11)]).unwrap_err();
        assert!(err.to_string().contains("task 'a': invalid retries"), "{err}");
        let err = validate(vec![task("a").timeout(Duration::ZERO)]).unwrap_err();
        assert!(err.to_string().contains("task 'a': invalid timeout"), "{err}");
        let err = Pipeline::new("p", "").timeout(Duration::ZERO).tasks(vec![task("a")]).validate().unwrap_err();
        assert!(err.to_string().contains("invalid pipeline timeout"), "{err}");
        let json = serde_json::to_string(&task("plain")).unwrap();
        assert!(!json.contains("retries") && !json.contains("timeout"), "defaults stay out of the JSON: {json}");
    }

    #[test]
    fn resources_are_kept_and_validated_naming_the_field() {
        let t = task("a")
            .cpu(1.5)
            .memory(512 * MIB)
            .working_dir("/work")
            .user("1000:1000")
            .volume("cache", "/cache")
            .read_only_volume("ref-data", "/data/");
        assert_eq!((t.cpu_millicores, t.memory_bytes), (Some(1500), Some(536_870_912)));
        validate(vec![t.clone()]).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert!(
            json.ends_with(
                r#""cpu_millicores":1500,"memory_bytes":536870912,"working_dir":"/work","user":"1000:1000","volumes":[{"name":"cache","path":"/cache"},{"name":"ref-data","path":"/data/","read_only":true}]}"#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), t);
        let plain = serde_json::to_string(&task("plain")).unwrap();
        for absent in ["cpu", "memory", "working_dir", "user", "volumes"] {
            assert!(!plain.contains(absent), "defaults stay out of the JSON: {plain}");
        }
        assert_eq!(task("a").cpu(0.0004).cpu_millicores, Some(0));
        assert_eq!(task("a").cpu(f64::NAN).cpu_millicores, Some(0));
        assert_eq!(task("a").cpu(-2.0).cpu_millicores, Some(0));
        assert_eq!(task("a").cpu(f64::INFINITY).cpu_millicores, Some(u32::MAX));
        for (bad, field, words) in [
            (task("a").cpu(0.001), "cpu", "0.001 cores is outside 0.01 to 1024 cores"),
            (task("a").cpu(-1.0), "cpu", "0 cores is outside"),
            (task("a").cpu(5000.0), "cpu", "5000 cores is outside"),
            (task("a").memory(1024), "memory", "1024 bytes is outside 6 MiB"),
            (task("a").memory(u64::MAX), "memory", "is outside"),
            (task("a").working_dir("work"), "working_dir", "'work' is not an absolute path"),
            (task("a").working_dir("/a/../b"), "working_dir", "contains '..'"),
            (task("a").working_dir("/a\0"), "working_dir", "NUL"),
            (task("a").user(""), "user", "is not a user"),
            (task("a").user("a b"), "user", "is not a user"),
            (task("a").user("1:2:3"), "user", "is not a user"),
            (task("a").user("root:"), "user", "is not a user"),
            (task("a").volume("bad name", "/x"), "volumes", "invalid volume name 'bad name'"),
            (task("a").volume("cache", "cache"), "volumes", "volume 'cache': 'cache' is not an absolute path"),
            (task("a").volume("cache", "/"), "volumes", "cannot be mounted at /"),
            (task("a").volume("a", "/x").volume("b", "/x/"), "volumes", "two volumes are mounted at /x/"),
        ] {
            let err = validate(vec![bad]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("task 'a': invalid {field}: ")) && err.contains(words), "{err}");
        }
        let many = (0..=MAX_VOLUMES).fold(task("a"), |t, i| t.volume("v", &format!("/v{i}")));
        assert!(validate(vec![many]).unwrap_err().to_string().contains("17 volumes is more than 16"));
        let unknown = r#"{"id":"a","image":"x","volumes":[{"name":"v","path":"/v","mode":"rw"}]}"#;
        assert!(serde_json::from_str::<Task>(unknown).unwrap_err().to_string().contains("mode"));
    }

    #[test]
    fn statuses_print_and_parse_as_configs_spell_them() {
        for status in RequiredParentStatus::ALL {
            assert_eq!(status.to_string().parse::<RequiredParentStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.to_string());
        }
        let err = "success".parse::<RequiredParentStatus>().unwrap_err();
        assert_eq!(err.to_string(), "'success' is not a required parent status; use Any, Success or Failure");
    }

    #[test]
    fn references_are_whole_values_with_valid_keys() {
        assert_eq!(Reference::parse("pipeline_secret{{DB}}"), Some(Reference::PipelineSecret("DB")));
        assert_eq!(Reference::parse(" Global_Secret{{ slack }} "), Some(Reference::GlobalSecret("slack")));
        assert_eq!(Reference::parse("run_object{{report.txt}}"), Some(Reference::RunObject("report.txt")));
        assert_eq!(Reference::parse("pipeline_object{{cache}}"), Some(Reference::PipelineObject("cache")));
        for plain in ["hello", "x pipeline_secret{{DB}}", "other{{DB}}", "{{DB}}", ""] {
            assert_eq!(Reference::parse(plain), None, "{plain}");
            assert_eq!(Reference::check(plain), Ok(()), "{plain}");
        }
        let bad = validate(vec![task("a").variables([("P", "pipeline_secret{{bad key!}}")])]).unwrap_err();
        assert!(bad.to_string().contains("P: invalid secret key 'bad key!'"), "{bad}");
        let bad = validate(vec![task("a").variables([("P", "run_object{{../x}}")])]).unwrap_err();
        assert!(bad.to_string().contains("invalid object key '../x'"), "{bad}");
        for half in ["pipeline_secret{{DB", "pipeline_secret{{DB}} and more", "RUN_OBJECT{{"] {
            let bad = validate(vec![task("a").variables([("P", half)])]).unwrap_err();
            assert!(bad.to_string().contains("starts like a"), "{half}: {bad}");
        }
        let bad = validate(vec![task("a").registry_auth("u", "pipeline_object{{x}}")]).unwrap_err();
        assert!(bad.to_string().contains("may name a secret, not an object"), "{bad}");
        validate(vec![task("a").registry_auth("u", &pipeline_secret("registry"))]).unwrap();
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let misspelled =
            r#"{"id":"p","tasks":[{"id":"b","image":"i"},{"id":"a","image":"i","dependson":{"b":"Any"}}]}"#;
        let err = serde_json::from_str::<Pipeline>(misspelled).unwrap_err().to_string();
        assert!(err.contains("unknown field `dependson`"), "{err}");
        let err = serde_json::from_str::<Pipeline>(r#"{"id":"p","paralelism":2,"tasks":[]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `paralelism`"), "{err}");
    }

    #[test]
    fn json_round_trips_and_accepts_minimal_documents() {
        let p =
            Pipeline::new("p", "P").tasks(vec![task("a"), task("b").depends_on("a", RequiredParentStatus::Failure)]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Pipeline>(&json).unwrap(), p);
        let minimal: Pipeline = serde_json::from_str(r#"{"id":"p","tasks":[{"id":"a","image":"busybox"}]}"#).unwrap();
        minimal.validate().unwrap();
    }
}
