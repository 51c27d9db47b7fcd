//! The narrow boundary of Gofer's shared state: the storage traits, the event bus, the task log store, one error
//! type, one conformance suite.
//!
//! Backends (SQLite, PostgreSQL) live in their own crates and must pass [`conformance::run_all`] (and
//! [`conformance::event_bus`] for their bus, [`conformance::log_store`] for their task logs). The traits speak in
//! API models; they know nothing of HTTP or containers, and their callers never see SQL.

pub mod bus;
pub mod cluster;
pub mod conformance;
pub mod logs;

pub use bus::{EventBus, Live, LocalBus};
pub use cluster::{Claim, ClusterStore, ExtensionEndpoint, Limits, OwnedRun, ServerRecord};
pub use logs::{FileLogStore, LogKey, LogSink, LogStore, LogStream};

use async_trait::async_trait;
use gofer_api::config;
use gofer_api::models::{
    Deployment, Event, EventKind, ExtensionRegistration, Initiator, Namespace, Pipeline, PipelineConfig, PipelineState,
    Routing, Run, Subscription, SystemSettings, TaskExecution, Variable,
};
use gofer_api::permissions::{Role, Token};

/// What a storage call did, as a backend reports it to a [`QueryObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    /// A transaction that changes state, timed from the call (waiting for the writer included) to its commit.
    Write,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
        }
    }
}

/// Told how long each storage call took (the server's metrics). Called on the hot path: it must be cheap.
pub trait QueryObserver: Send + Sync {
    fn observe(&self, operation: Operation, elapsed: std::time::Duration);
}

/// What can go wrong in a storage call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    Exists { what: String },
    /// The stored state refuses the change (a deployment already running, a version still in use); `message` says
    /// why and what to do.
    #[error("{message}")]
    Conflict { message: String },
    /// The store cannot take this now (its disk is full, it is busy or unreachable); the same call may work later.
    #[error("storage is unavailable while trying to {context}")]
    Unavailable {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("storage failed while trying to {context}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request to cancel a run, or one task of it: stored, so that whichever server drives the run sees it and a
/// cancel survives a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub run_id: u64,
    /// One task; the whole run when `None`.
    pub task_id: Option<String>,
    pub reason: gofer_api::models::StatusReason,
    pub requested: u64,
}

impl CancelRequest {
    /// Its `run_cancel_requested` event (emitted at `requested`).
    pub fn event(&self) -> NewEvent {
        let kind = EventKind::RunCancelRequested {
            namespace_id: self.namespace_id.clone(),
            pipeline_id: self.pipeline_id.clone(),
            run_id: self.run_id,
            task_id: self.task_id.clone(),
        };
        NewEvent { emitted: self.requested, kind }
    }
}

/// An event to append with the state change it tells of: both are stored in one transaction, so the event log
/// never tells of a change that was not stored, nor misses one that was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Epoch milliseconds.
    pub emitted: u64,
    pub kind: EventKind,
}

/// What recording a subscription's firing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// This call recorded it.
    Yes,
    /// Another firing was recorded first; this is the `last_fired` it left.
    Already { last_fired: u64 },
}

/// Which items a list may show: all of them, or those whose id matches one of the patterns (`*` any run of
/// characters, `?` one; whole ids). Lists filter in the query, so pages come back full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    All,
    Matching(Vec<String>),
}

impl Visible {
    /// Whether an id is visible (for backends that filter outside their query).
    pub fn shows(&self, id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Matching(patterns) => patterns.iter().any(|p| gofer_api::permissions::pattern_matches(p, id)),
        }
    }
}

/// A page of a list, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
}

impl Page {
    pub const fn new(limit: u64, offset: u64) -> Self {
        Self { limit, offset }
    }

    /// Everything; for internal callers that must see all rows.
    pub const ALL: Page = Page { limit: u64::MAX >> 1, offset: 0 };
}

/// Which runs a listing shows: those in `state` and ended with `status`, where given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub state: Option<gofer_api::models::RunState>,
    pub status: Option<gofer_api::models::RunStatus>,
}

/// A run about to be stored; storage allocates its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub version: u64,
    pub created: u64,
    pub initiator: Initiator,
    pub variables: Vec<Variable>,
    /// How a deployment in progress chose `version`, if one did.
    pub routing: Option<Routing>,
}

impl NewRun {
    /// The run as stored with `run_id`: pending, not started, and its `run_queued` event (emitted at `created`).
    pub fn pending(self, run_id: u64) -> (Run, NewEvent) {
        let run = Run {
            namespace_id: self.namespace_id,
            pipeline_id: self.pipeline_id,
            run_id,
            version: self.version,
            state: gofer_api::models::RunState::Pending,
            status: gofer_api::models::RunStatus::Unknown,
            status_reason: None,
            created: self.created,
            started: 0,
            ended: 0,
            initiator: self.initiator,
            variables: self.variables,
            routing: self.routing,
        };
        let queued = EventKind::RunQueued {
            namespace_id: run.namespace_id.clone(),
            pipeline_id: run.pipeline_id.clone(),
            run_id,
        };
        let event = NewEvent { emitted: run.created, kind: queued };
        (run, event)
    }
}

/// A deployment about to be stored; storage allocates its id. It starts `running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub from_version: Option<u64>,
    pub to_version: u64,
    pub strategy: config::Strategy,
    pub started: u64,
    pub initiator: Initiator,
    /// The first entry of its timeline.
    pub message: String,
}

impl NewDeployment {
    /// The deployment as stored with `deployment_id`: running, at stage 0, its timeline the first message; and its
    /// `deployment_started` event (emitted at `started`).
    pub fn running(&self, deployment_id: u64) -> (Deployment, NewEvent) {
        let deployment = Deployment {
            namespace_id: self.namespace_id.clone(),
            pipeline_id: self.pipeline_id.clone(),
            deployment_id,
            from_version: self.from_version,
            to_version: self.to_version,
            strategy: self.strategy.clone(),
            state: gofer_api::models::DeploymentState::Running,
            reason: self.message.clone(),
            started: self.started,
            ended: 0,
            stage: 0,
            stage_started: self.started,
            initiator: self.initiator.clone(),
            counts: Vec::new(),
            timeline: vec![gofer_api::models::DeploymentStep { at: self.started, message: self.message.clone() }],
        };
        let started = EventKind::DeploymentStarted {
            namespace_id: self.namespace_id.clone(),
            pipeline_id: self.pipeline_id.clone(),
            deployment_id,
            from_version: self.from_version,
            to_version: self.to_version,
            strategy: self.strategy.name().into(),
        };
        (deployment, NewEvent { emitted: self.started, kind: started })
    }
}

/// What registering a config did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub config: PipelineConfig,
    /// False when the config equalled the latest version and nothing was stored.
    pub created: bool,
    /// The `config_registered` event, when a version was stored.
    pub event: Option<Event>,
}

/// Where a secret lives: with one pipeline, or global (usable by the namespaces its patterns match).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretScope {
    Pipeline { namespace_id: String, pipeline_id: String },
    Global,
}

impl std::fmt::Display for SecretScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pipeline { namespace_id, pipeline_id } => write!(f, "pipeline {namespace_id}/{pipeline_id}"),
            Self::Global => f.write_str("global"),
        }
    }
}

/// A secret as stored: its value sealed (encrypted and authenticated); storage never sees the plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub scope: SecretScope,
    pub key: String,
    pub sealed: Vec<u8>,
    /// Global secrets: the namespace patterns that may use it. Empty for pipeline secrets.
    pub namespaces: Vec<String>,
    pub created: u64,
    pub modified: u64,
}

/// Names one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionKey {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub extension_id: String,
    pub label: String,
}

impl SubscriptionKey {
    pub fn of(subscription: &Subscription) -> Self {
        Self {
            namespace_id: subscription.namespace_id.clone(),
            pipeline_id: subscription.pipeline_id.clone(),
            extension_id: subscription.extension_id.clone(),
            label: subscription.label.clone(),
        }
    }
}

impl std::fmt::Display for SubscriptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "subscription '{}' of pipeline '{}' to extension '{}' in namespace '{}'",
            self.label, self.pipeline_id, self.extension_id, self.namespace_id
        )
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events with a greater id.
    pub after: u64,
    pub namespace_id: Option<String>,
    pub pipeline_id: Option<String>,
    pub run_id: Option<u64>,
}

impl EventFilter {
    /// Whether an event passes the filter (for live events that did not come from storage).
    pub fn matches(&self, event: &Event) -> bool {
        if event.id <= self.after {
            return false;
        }
        let pipeline = event.kind.pipeline();
        if let Some(ns) = &self.namespace_id
            && pipeline.map(|(n, _)| n) != Some(ns.as_str())
        {
            return false;
        }
        if let Some(p) = &self.pipeline_id
            && pipeline.map(|(_, p)| p) != Some(p.as_str())
        {
            return false;
        }
        if let Some(run) = self.run_id
            && event.kind.run().map(|(_, _, r)| r) != Some(run)
        {
            return false;
        }
        true
    }
}

/// Everything Gofer stores, as one trait object: the aggregate stores below, each implemented by every backend (in
/// one module per aggregate). Every call is one transaction.
pub trait Storage:
    NamespaceStore
    + PipelineStore
    + DeploymentStore
    + RunStore
    + SystemStore
    + EventStore
    + ExtensionStore
    + SubscriptionStore
    + TokenStore
    + RoleStore
    + SecretStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Storage for T where
    T: NamespaceStore
        + PipelineStore
        + DeploymentStore
        + RunStore
        + SystemStore
        + EventStore
        + ExtensionStore
        + SubscriptionStore
        + TokenStore
        + RoleStore
        + SecretStore
        + Send
        + Sync
        + 'static
{
}

/// Namespaces.
#[async_trait]
pub trait NamespaceStore: Send + Sync {
    async fn create_namespace(&self, namespace: &Namespace) -> Result<()>;
    async fn get_namespace(&self, id: &str) -> Result<Namespace>;
    /// Writes a namespace's name, description and `modified`; `NotFound` if it does not exist.
    async fn update_namespace(&self, namespace: &Namespace) -> Result<()>;
    /// The namespaces `visible` shows, newest first.
    async fn list_namespaces(&self, page: Page, visible: &Visible) -> Result<Vec<Namespace>>;
    /// Deletes a namespace with everything in it (pipelines and all that is theirs) and appends `event`.
    async fn delete_namespace(&self, namespace_id: &str, event: &NewEvent) -> Result<Event>;
}

/// Pipelines and their config versions.
#[async_trait]
pub trait PipelineStore: Send + Sync {
    /// Stores `config` as version latest+1 of its pipeline, creating the pipeline (active) when it is new, and
    /// appends its `config_registered` event (emitted at `now`). When the latest version has the same hash nothing
    /// is stored and the latest version is returned.
    async fn register_config(
        &self,
        namespace_id: &str,
        config: &config::Pipeline,
        hash: &str,
        now: u64,
    ) -> Result<Registered>;
    /// Deletes a config version and appends `event`. `Conflict` when the version is live, is used by the deployment
    /// in progress, or is run by a run not yet complete; `NotFound` when there is no such version. Version numbers
    /// are never given again.
    async fn delete_config(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        version: u64,
        event: &NewEvent,
    ) -> Result<Event>;
    async fn get_config(&self, namespace_id: &str, pipeline_id: &str, version: u64) -> Result<PipelineConfig>;
    async fn list_configs(&self, namespace_id: &str, pipeline_id: &str, page: Page) -> Result<Vec<PipelineConfig>>;
    async fn get_pipeline(&self, namespace_id: &str, pipeline_id: &str) -> Result<Pipeline>;
    /// The pipelines of a namespace that `visible` shows (by pipeline id), newest first.
    async fn list_pipelines(&self, namespace_id: &str, page: Page, visible: &Visible) -> Result<Vec<Pipeline>>;
    /// Sets a pipeline's state (`modified` becomes the event's `emitted`) and appends `event`.
    async fn set_pipeline_state(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        state: PipelineState,
        event: &NewEvent,
    ) -> Result<Event>;
    /// Deletes the pipeline with its configs, runs and task executions, and appends `event`.
    async fn delete_pipeline(&self, namespace_id: &str, pipeline_id: &str, event: &NewEvent) -> Result<Event>;
}

/// Deployments: changes of a pipeline's live version, with their strategy and the runs they routed.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Stores a running deployment with the next deployment id of its pipeline, marks its candidate `candidate`
    /// (unless it is the live version) and the pipeline's running deployment, and appends `deployment_started`
    /// (emitted at `started`), in one transaction. `Conflict` naming the running one if the pipeline has one;
    /// `NotFound` if the version (or pipeline) does not exist.
    async fn insert_deployment(&self, new: &NewDeployment) -> Result<(Deployment, Event)>;
    /// Writes a running deployment's state, reason, ended, stage, stage start and timeline, and appends `event`,
    /// in one transaction. Ending it (any state but `running`) clears the pipeline's running deployment; `promoted`
    /// also makes the candidate live (the previous live version deprecated, the pipeline's name and description
    /// following the candidate), `rolled_back` and `aborted` mark the candidate `rolled_back` unless it is live.
    /// `Conflict` if the stored deployment is no longer running.
    async fn update_deployment(&self, deployment: &Deployment, event: &NewEvent) -> Result<Event>;
    /// A deployment with its run counts.
    async fn get_deployment(&self, namespace_id: &str, pipeline_id: &str, deployment_id: u64) -> Result<Deployment>;
    /// A pipeline's deployments with their run counts, newest first.
    async fn list_deployments(&self, namespace_id: &str, pipeline_id: &str, page: Page) -> Result<Vec<Deployment>>;
    /// Every running deployment, across pipelines, oldest first.
    async fn list_running_deployments(&self) -> Result<Vec<Deployment>>;
}

/// Runs and their task executions.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a pending run with the next run id of its pipeline and appends its `run_queued` event (emitted at the
    /// run's `created`), in one transaction.
    async fn insert_run(&self, run: NewRun) -> Result<(Run, Event)>;
    async fn get_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> Result<Run>;
    /// A pipeline's runs passing `filter`, newest first.
    async fn list_runs(&self, namespace_id: &str, pipeline_id: &str, filter: RunFilter, page: Page)
    -> Result<Vec<Run>>;
    /// Writes the mutable fields of a run (state, status, reason, times) and appends `event`, in one transaction.
    async fn update_run(&self, run: &Run, event: &NewEvent) -> Result<Event>;
    /// Runs that are not complete, oldest first, across all pipelines.
    async fn list_unfinished_runs(&self) -> Result<Vec<Run>>;
    /// Stores a task execution and appends `event`, in one transaction.
    async fn insert_task_execution(&self, execution: &TaskExecution, event: &NewEvent) -> Result<Event>;
    /// Writes the mutable fields of a task execution and appends `event`, in one transaction.
    async fn update_task_execution(&self, execution: &TaskExecution, event: &NewEvent) -> Result<Event>;
    async fn get_task_execution(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
    ) -> Result<TaskExecution>;
    /// The task executions of a run, ordered by task id.
    async fn list_task_executions(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
    ) -> Result<Vec<TaskExecution>>;
    /// Stores a request to cancel a run or one of its tasks and appends its `run_cancel_requested` event (emitted at
    /// `requested`), in one transaction; `NotFound` if the run does not exist. The requests go with their run.
    async fn request_cancel(&self, request: &CancelRequest) -> Result<Event>;
    /// The cancel requests of a run, oldest first.
    async fn list_cancel_requests(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
    ) -> Result<Vec<CancelRequest>>;
    /// Marks the logs of every task execution of runs up to `up_to_run_id` as expired; returns the run ids that
    /// had logs not yet expired.
    async fn expire_logs(&self, namespace_id: &str, pipeline_id: &str, up_to_run_id: u64) -> Result<Vec<u64>>;
}

/// Server-wide settings.
#[async_trait]
pub trait SystemStore: Send + Sync {
    async fn get_system(&self) -> Result<SystemSettings>;
    /// Stores the settings and appends `event`.
    async fn set_system(&self, settings: &SystemSettings, event: &NewEvent) -> Result<Event>;
}

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends an event; ids grow by one per event.
    async fn insert_event(&self, emitted: u64, kind: &EventKind) -> Result<Event>;
    /// Events passing `filter`, oldest first, at most `limit`.
    async fn list_events(&self, filter: &EventFilter, limit: u64) -> Result<Vec<Event>>;
    /// The id of the newest event stored; 0 when none is.
    async fn latest_event_id(&self) -> Result<u64>;
    /// Deletes events emitted before `emitted`; returns how many.
    async fn delete_events_before(&self, emitted: u64) -> Result<u64>;
}

/// Extensions: switches and container extension registrations.
#[async_trait]
pub trait ExtensionStore: Send + Sync {
    /// Whether an extension is enabled; `None` if it was never switched (enabled by default).
    async fn get_extension_enabled(&self, extension_id: &str) -> Result<Option<bool>>;
    async fn set_extension_enabled(&self, extension_id: &str, enabled: bool, now: u64) -> Result<()>;
    /// Stores a container extension with its role and token, in one transaction; `Exists` if the id is taken.
    async fn insert_extension(
        &self,
        registration: &ExtensionRegistration,
        role: &Role,
        token: &Token,
        event: &NewEvent,
    ) -> Result<Event>;
    async fn list_extensions(&self) -> Result<Vec<ExtensionRegistration>>;
    /// Deletes a container extension with its subscriptions, switch, role and tokens (those whose user is
    /// `extension:<id>`), and appends `event`, in one transaction; `NotFound` if it is not installed.
    async fn delete_extension(&self, extension_id: &str, event: &NewEvent) -> Result<Event>;
}

/// Subscriptions of pipelines to extensions.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<()>;
    async fn get_subscription(&self, key: &SubscriptionKey) -> Result<Subscription>;
    /// A pipeline's subscriptions, by extension and label.
    async fn list_subscriptions(&self, namespace_id: &str, pipeline_id: &str) -> Result<Vec<Subscription>>;
    /// Every subscription to an extension, across pipelines.
    async fn list_extension_subscriptions(&self, extension_id: &str) -> Result<Vec<Subscription>>;
    async fn set_subscription_enabled(&self, key: &SubscriptionKey, enabled: bool) -> Result<()>;
    /// Records that the subscription fired at `at`. With `expected`, only if the recorded `last_fired` still is
    /// that value (compare-and-set: of the servers or processes that fire the same tick, exactly one records it).
    /// `NotFound` if there is no such subscription.
    async fn record_subscription_fired(
        &self,
        key: &SubscriptionKey,
        expected: Option<u64>,
        at: u64,
    ) -> Result<Recorded>;
    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()>;
}

/// API tokens (only their hashes).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a token, replacing one with the same id.
    async fn put_token(&self, token: &Token) -> Result<()>;
    async fn get_token_by_hash(&self, hash: &str) -> Result<Token>;
    async fn get_token(&self, id: &str) -> Result<Token>;
    /// Every token, by id.
    async fn list_tokens(&self) -> Result<Vec<Token>>;
    async fn delete_token(&self, id: &str) -> Result<()>;
    /// Stores the bootstrap token, once ever: `Exists` after the first time, even if that token was deleted.
    async fn insert_bootstrap_token(&self, token: &Token) -> Result<()>;
    /// The distinct holders of tokens whose name starts with `prefix`.
    async fn token_users(&self, prefix: &str) -> Result<Vec<String>>;
    /// Deletes every token held by `user`; returns how many.
    async fn delete_tokens_of_user(&self, user: &str) -> Result<u64>;
}

/// Custom and extension roles.
#[async_trait]
pub trait RoleStore: Send + Sync {
    async fn get_role(&self, role_id: &str) -> Result<Role>;
    /// Stores a new role; `Exists` if the id is taken.
    async fn insert_role(&self, role: &Role) -> Result<()>;
    /// Every stored role, by id.
    async fn list_roles(&self) -> Result<Vec<Role>>;
    /// Replaces a stored role's description and grants; `NotFound` if there is none.
    async fn update_role(&self, role: &Role) -> Result<()>;
    /// Deletes a role and, in the same transaction, takes it from every token that holds it.
    async fn delete_role(&self, role_id: &str) -> Result<()>;
}

/// Sealed secrets and the key check.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores a secret, replacing the value (and patterns) of one with the same scope and key but keeping its
    /// `created`. `NotFound` if its pipeline does not exist.
    async fn put_secret(&self, secret: &SealedSecret) -> Result<()>;
    async fn get_secret(&self, scope: &SecretScope, key: &str) -> Result<SealedSecret>;
    /// The secrets of a scope, by key.
    async fn list_secrets(&self, scope: &SecretScope) -> Result<Vec<SealedSecret>>;
    async fn delete_secret(&self, scope: &SecretScope, key: &str) -> Result<()>;
    /// Every secret, for re-sealing with a new key.
    async fn all_secrets(&self) -> Result<Vec<SealedSecret>>;
    /// Replaces the sealed values of the given secrets and the key check in one transaction (key rotation).
    async fn reseal_secrets(&self, secrets: &[SealedSecret], key_check: &[u8]) -> Result<()>;
    /// A known value sealed with the secret key, if one was stored.
    async fn get_secret_key_check(&self) -> Result<Option<Vec<u8>>>;
    async fn set_secret_key_check(&self, sealed: &[u8]) -> Result<()>;
}
