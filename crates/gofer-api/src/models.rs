//! The resources Gofer keeps: namespaces, pipelines, config versions, runs and task executions.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config;

/// The namespace that always exists.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A partition of pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Namespace {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Epoch milliseconds.
    pub created: u64,
    /// Epoch milliseconds.
    pub modified: u64,
}

/// Whether a pipeline takes new runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PipelineState {
    Active,
    Disabled,
}

/// A pipeline: its identity, state and which config version new runs use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pipeline {
    pub namespace_id: String,
    pub pipeline_id: String,
    /// Name from the live config version.
    pub name: String,
    pub description: Option<String>,
    pub state: PipelineState,
    /// The config version new runs use; `None` until a version is deployed.
    pub live_version: Option<u64>,
    /// The newest registered config version.
    pub latest_version: u64,
    /// The deployment in progress, if one is.
    #[serde(default)]
    pub running_deployment: Option<u64>,
    pub created: u64,
    pub modified: u64,
}

/// Where a config version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConfigState {
    /// Registered, never deployed.
    Unreleased,
    /// The version new runs use.
    Live,
    /// Was live once, replaced since.
    Deprecated,
    /// The candidate of the deployment in progress: it takes the runs the deployment routes to it.
    Candidate,
    /// The candidate of a deployment that was rolled back or aborted.
    RolledBack,
}

/// One immutable, registered version of a pipeline's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineConfig {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub version: u64,
    pub state: ConfigState,
    /// SHA-256 of the canonical JSON of `config`; equal hashes mean identical configs.
    pub hash: String,
    pub registered: u64,
    pub config: config::Pipeline,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Pending,
    Running,
    Complete,
}

/// How a run ended; `unknown` until it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Unknown,
    Successful,
    Failed,
    Cancelled,
}

/// Why a run or task ended the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StatusReasonKind {
    /// A container exited non-zero.
    AbnormalExit,
    /// The container engine refused or failed the request.
    SchedulerError,
    /// Something the task needed was missing (a parent's outcome, a secret, an object).
    FailedPrecondition,
    /// A user asked for it to be cancelled.
    UserCancelled,
    /// It ran longer than allowed.
    Timeout,
    /// The server lost track of it (for example after a crash).
    Orphaned,
    /// Its output could not be stored (a full disk, for example), so it was stopped: a task whose log is lost
    /// cannot be trusted to have done what it printed.
    LogWriteFailed,
    /// The container needed more memory than the task's limit, and the engine killed it.
    OutOfMemory,
}

/// A status reason with a human-readable description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusReason {
    pub reason: StatusReasonKind,
    pub description: String,
}

/// Where a variable came from; later sources override earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VariableSource {
    System,
    PipelineConfig,
    RunOptions,
    Extension,
}

/// One environment variable with its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Variable {
    pub key: String,
    pub value: String,
    pub source: VariableSource,
}

/// Who or what started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Initiator {
    /// `user`, `extension` or `system`.
    pub kind: String,
    /// The user or extension name.
    pub name: String,
}

/// One execution of a pipeline config version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    pub namespace_id: String,
    pub pipeline_id: String,
    /// 1, 2, 3… per pipeline.
    pub run_id: u64,
    /// The config version this run executes.
    pub version: u64,
    pub state: RunState,
    pub status: RunStatus,
    pub status_reason: Option<StatusReason>,
    /// When the run was requested.
    pub created: u64,
    /// When its first task was started; 0 until then.
    pub started: u64,
    /// When it completed; 0 until then.
    pub ended: u64,
    pub initiator: Initiator,
    /// Variables given when the run was started.
    pub variables: Vec<Variable>,
    /// How a deployment in progress chose this run's version; `None` when no deployment routed it (nothing was
    /// being deployed, or the version was asked for explicitly).
    #[serde(default)]
    pub routing: Option<Routing>,
}

/// Which version a deployment gave a run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Routing {
    pub deployment_id: u64,
    /// The deployment's stage when the run was routed (canary stages count from 0).
    pub stage: u32,
    /// Whether the run went to the candidate rather than the live version.
    pub candidate: bool,
    /// Why, in words: e.g. `canary stage 1 (20 %): routed run 5 → candidate (run 1 of 1 due so far)`.
    pub reason: String,
}

/// Where a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Routing runs and judging them; at most one per pipeline.
    Running,
    /// The candidate became the live version.
    Promoted,
    /// The candidate failed its judgement; the version live before stayed live.
    RolledBack,
    /// Stopped by a user (or replaced by a forced deploy); the version live before stayed live.
    Aborted,
}

/// One change of a pipeline's live version, with how it was rolled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    pub namespace_id: String,
    pub pipeline_id: String,
    /// 1, 2, 3… per pipeline.
    pub deployment_id: u64,
    /// The version live when it started; `None` if none was.
    pub from_version: Option<u64>,
    /// The candidate.
    pub to_version: u64,
    pub strategy: config::Strategy,
    pub state: DeploymentState,
    /// Why it is in its state, with the counts that decided it.
    pub reason: String,
    pub started: u64,
    /// 0 while running.
    pub ended: u64,
    /// The stage in progress (a canary's stages count from 0; other strategies have one).
    pub stage: u32,
    /// When the stage in progress began.
    pub stage_started: u64,
    /// Who started it.
    pub initiator: Initiator,
    /// The runs it routed, by version and stage.
    pub counts: Vec<RunCounts>,
    /// What happened to it, oldest first.
    pub timeline: Vec<DeploymentStep>,
}

impl Deployment {
    pub fn is_running(&self) -> bool {
        self.state == DeploymentState::Running
    }
}

/// How many runs a deployment routed to one version in one stage, and how they ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunCounts {
    pub version: u64,
    pub stage: u32,
    pub started: u64,
    pub successful: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// One entry of a deployment's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentStep {
    pub at: u64,
    pub message: String,
}

impl Run {
    pub fn is_complete(&self) -> bool {
        self.state == RunState::Complete
    }
}

/// Where a task execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Being prepared (variables, image).
    Processing,
    /// Waiting for its parents.
    Waiting,
    /// Its container is running.
    Running,
    Complete,
}

/// How a task execution ended; `unknown` until it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Unknown,
    Successful,
    Failed,
    Cancelled,
    /// Never started because a parent did not end the way this task required.
    Skipped,
}

/// One task of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskExecution {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub run_id: u64,
    pub task_id: String,
    pub created: u64,
    /// When its container started; 0 until then.
    pub started: u64,
    /// When it completed; 0 until then.
    pub ended: u64,
    pub state: TaskState,
    pub status: TaskStatus,
    pub status_reason: Option<StatusReason>,
    /// The container's exit code, once it exited.
    pub exit_code: Option<i64>,
    /// The image id (content digest) the engine actually ran.
    pub image_digest: Option<String>,
    /// The engine's id for the container, while Gofer knows it.
    pub container_id: Option<String>,
    /// The environment handed to the container, before interpolation.
    pub variables: Vec<Variable>,
    /// The task's config as registered.
    pub task: config::Task,
    /// The current (or last) attempt, from 1; the fields above describe it.
    pub attempt: u32,
    /// Earlier attempts that failed and were retried, oldest first.
    pub attempts: Vec<Attempt>,
    /// The logs were removed by retention.
    pub logs_expired: bool,
}

/// One earlier attempt of a task that was retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    pub attempt: u32,
    pub started: u64,
    pub ended: u64,
    pub status: TaskStatus,
    pub status_reason: Option<StatusReason>,
    pub exit_code: Option<i64>,
    pub image_digest: Option<String>,
}

/// A pipeline's subscription to an extension: the extension starts runs of the pipeline as its settings say.
///
/// Written out with two more fields that extensions of the earlier Gofer read when they restore their
/// subscriptions (`GET /api/extensions/{id}/subscriptions`): `subscription_id` (the label) and `status`
/// (`active`, or `disabled`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscription {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub extension_id: String,
    /// Names this subscription among the pipeline's subscriptions to the same extension.
    pub label: String,
    pub settings: std::collections::BTreeMap<String, String>,
    /// A disabled subscription triggers nothing.
    pub enabled: bool,
    pub created: u64,
    /// When it last started a run (epoch milliseconds); 0 if never.
    pub last_fired: u64,
    /// Declared in the pipeline's code (and so managed by deploys) rather than made through the API.
    #[serde(default)]
    pub declared: bool,
    /// When the extension will next start a run (epoch milliseconds), where it knows in advance (interval, cron);
    /// shown in listings, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<u64>,
}

impl Serialize for Subscription {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = 11 + usize::from(self.next_fire.is_some());
        let mut out = serializer.serialize_struct("Subscription", fields)?;
        out.serialize_field("namespace_id", &self.namespace_id)?;
        out.serialize_field("pipeline_id", &self.pipeline_id)?;
        out.serialize_field("extension_id", &self.extension_id)?;
        out.serialize_field("label", &self.label)?;
        out.serialize_field("settings", &self.settings)?;
        out.serialize_field("enabled", &self.enabled)?;
        out.serialize_field("created", &self.created)?;
        out.serialize_field("last_fired", &self.last_fired)?;
        out.serialize_field("declared", &self.declared)?;
        if let Some(next_fire) = self.next_fire {
            out.serialize_field("next_fire", &next_fire)?;
        }
        // What the earlier Gofer called them.
        out.serialize_field("subscription_id", &self.label)?;
        out.serialize_field("status", if self.enabled { "active" } else { "disabled" })?;
        out.end()
    }
}

/// How an extension is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExtensionKind {
    /// Compiled into Gofer and run in-process.
    Builtin,
    /// An image speaking the extension protocol, run on the scheduler.
    Container,
}

/// One setting an extension understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExtensionParameter {
    pub key: String,
    pub required: bool,
    pub documentation: String,
}

/// A stored object's key, size and last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub modified: u64,
}

/// A secret's metadata, and its value only when asked for with `include_secret=true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Secret {
    pub key: String,
    /// Global secrets: the namespace patterns (`*` and `?` wildcards, matching whole ids) that may use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    pub created: u64,
    pub modified: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A container extension as installed: what Gofer needs to start it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExtensionRegistration {
    pub id: String,
    pub image: String,
    /// The operator's settings, passed to the container as environment variables.
    pub settings: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<crate::config::RegistryAuth>,
    pub created: u64,
}

/// Where an extension is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExtensionState {
    /// Its container is starting and Gofer waits for it to answer `/api/health`.
    Starting,
    /// It answers and takes subscriptions.
    Running,
    /// It died or stopped answering; Gofer starts it again after a back-off.
    Restarting,
    /// Disabled, or Gofer is shutting down: not running.
    Stopped,
}

/// An installed extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Extension {
    pub id: String,
    pub kind: ExtensionKind,
    /// The image of a container extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A disabled extension triggers nothing; its subscriptions are kept.
    pub enabled: bool,
    pub state: ExtensionState,
    /// How often Gofer had to start it again since it was installed or Gofer started.
    #[serde(default)]
    pub restarts: u32,
    /// The last problem Gofer saw (why it restarted, what it answered), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What the extension does, in its own words.
    pub documentation: String,
    /// The settings the operator gives at install (passed to the extension as environment variables).
    #[serde(default)]
    pub config_params: Vec<ExtensionParameter>,
    /// The settings a subscription may give.
    pub subscription_params: Vec<ExtensionParameter>,
}

/// Server-wide switches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemSettings {
    /// When set, new runs are refused (runs in flight and queued runs go on).
    pub maintenance: bool,
}

/// A Gofer server, as the servers sharing one database see each other (a server on SQLite is alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Server {
    /// `<hostname>-<random>`: new at every start.
    pub id: String,
    pub hostname: String,
    /// Where its API listens, as configured.
    pub address: String,
    pub version: String,
    /// Epoch milliseconds.
    pub started: u64,
    /// Epoch milliseconds of its last heartbeat.
    pub heartbeat: u64,
    /// The server that answered this request.
    pub this: bool,
    /// Whether its heartbeat is recent (within the lease); another server adopts the runs of one that is not.
    pub alive: bool,
    /// Whether it leads: the live server that joined first judges deployments and runs container extensions.
    pub leading: bool,
    /// The runs in flight it drives.
    pub runs: Vec<ServerRun>,
}

/// A run in flight, as the server driving it lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerRun {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub run_id: u64,
}

/// Something that happened, in order; `id` grows by one per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: u64,
    /// Epoch milliseconds.
    pub emitted: u64,
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    ConfigRegistered {
        namespace_id: String,
        pipeline_id: String,
        version: u64,
    },
    ConfigDeleted {
        namespace_id: String,
        pipeline_id: String,
        version: u64,
    },
    DeploymentStarted {
        namespace_id: String,
        pipeline_id: String,
        deployment_id: u64,
        from_version: Option<u64>,
        to_version: u64,
        strategy: String,
    },
    DeploymentStageChanged {
        namespace_id: String,
        pipeline_id: String,
        deployment_id: u64,
        stage: u32,
        weight: u8,
    },
    /// The deployment ended; when `promoted`, its candidate is now the live version.
    DeploymentEnded {
        namespace_id: String,
        pipeline_id: String,
        deployment_id: u64,
        state: DeploymentState,
        live_version: Option<u64>,
        reason: String,
    },
    PipelineStateChanged {
        namespace_id: String,
        pipeline_id: String,
        state: PipelineState,
    },
    PipelineDeleted {
        namespace_id: String,
        pipeline_id: String,
    },
    NamespaceDeleted {
        namespace_id: String,
    },
    RunQueued {
        namespace_id: String,
        pipeline_id: String,
        run_id: u64,
    },
    RunStarted {
        namespace_id: String,
        pipeline_id: String,
        run_id: u64,
    },
    RunCancelRequested {
        namespace_id: String,
        pipeline_id: String,
        run_id: u64,
        task_id: Option<String>,
    },
    RunCompleted {
        namespace_id: String,
        pipeline_id: String,
        run_id: u64,
        status: RunStatus,
        status_reason: Option<StatusReason>,
    },
    TaskChanged {
        namespace_id: String,
        pipeline_id: String,
        run_id: u64,
        task_id: String,
        attempt: u32,
        state: TaskState,
        status: TaskStatus,
        status_reason: Option<StatusReason>,
        exit_code: Option<i64>,
    },
    /// Someone ran a command in a task's running container (`gofer task exec`).
    TaskExecStarted {
        namespace_id: String,
        pipeline_id: String,
        run_id: u64,
        task_id: String,
        command: Vec<String>,
        by: String,
    },
    MaintenanceChanged {
        maintenance: bool,
    },
    ExtensionInstalled {
        extension_id: String,
        image: String,
    },
    ExtensionUninstalled {
        extension_id: String,
    },
    ExtensionStateChanged {
        extension_id: String,
        state: ExtensionState,
        problem: Option<String>,
    },
}

impl EventKind {
    /// The run an event is about, if any: `(namespace, pipeline, run)`.
    pub fn run(&self) -> Option<(&str, &str, u64)> {
        match self {
            Self::RunQueued { namespace_id, pipeline_id, run_id }
            | Self::RunStarted { namespace_id, pipeline_id, run_id }
            | Self::RunCancelRequested { namespace_id, pipeline_id, run_id, .. }
            | Self::RunCompleted { namespace_id, pipeline_id, run_id, .. }
            | Self::TaskChanged { namespace_id, pipeline_id, run_id, .. }
            | Self::TaskExecStarted { namespace_id, pipeline_id, run_id, .. } => {
                Some((namespace_id, pipeline_id, *run_id))
            }
            _ => None,
        }
    }

    /// The pipeline an event is about, if any: `(namespace, pipeline)`.
    pub fn pipeline(&self) -> Option<(&str, &str)> {
        match self {
            Self::ConfigRegistered { namespace_id, pipeline_id, .. }
            | Self::ConfigDeleted { namespace_id, pipeline_id, .. }
            | Self::DeploymentStarted { namespace_id, pipeline_id, .. }
            | Self::DeploymentStageChanged { namespace_id, pipeline_id, .. }
            | Self::DeploymentEnded { namespace_id, pipeline_id, .. }
            | Self::PipelineStateChanged { namespace_id, pipeline_id, .. }
            | Self::PipelineDeleted { namespace_id, pipeline_id } => Some((namespace_id, pipeline_id)),
            other => other.run().map(|(ns, p, _)| (ns, p)),
        }
    }
}

impl TaskExecution {
    pub fn is_complete(&self) -> bool {
        self.state == TaskState::Complete
    }
}

macro_rules! display_as_serde {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let value = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(value.as_str().unwrap_or_default())
            }
        }
    )*};
}

display_as_serde!(
    PipelineState,
    ConfigState,
    DeploymentState,
    RunState,
    RunStatus,
    StatusReasonKind,
    TaskState,
    TaskStatus,
    VariableSource,
    ExtensionKind,
    ExtensionState
);
