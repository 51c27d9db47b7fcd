//! Request bodies, query parameters and list responses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config;
use crate::models::{Extension, Namespace, Pipeline, PipelineConfig, PipelineState, Run, Subscription, TaskExecution};

/// The default page size of list endpoints.
pub const DEFAULT_PAGE_LIMIT: u64 = 50;
/// The largest page size list endpoints accept.
pub const MAX_PAGE_LIMIT: u64 = 1000;

/// Paging of list endpoints; results come newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// How many items to return (1–1000, default 50).
    pub limit: Option<u64>,
    /// How many items to skip from the newest.
    pub offset: Option<u64>,
}

/// Query of `GET …/runs`: a page, and optionally only runs in a state or with a status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ListRunsQuery {
    /// How many runs to return (1–1000, default 50).
    pub limit: Option<u64>,
    /// How many matching runs to skip from the newest.
    pub offset: Option<u64>,
    /// Only runs in this state: `pending`, `running` or `complete`.
    pub state: Option<crate::models::RunState>,
    /// Only runs that ended so: `successful`, `failed` or `cancelled` (`unknown`: not complete yet).
    pub status: Option<crate::models::RunStatus>,
}

impl ListRunsQuery {
    pub fn page(&self) -> PageQuery {
        PageQuery { limit: self.limit, offset: self.offset }
    }
}

/// Body of `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
    pub dev_mode: bool,
    /// The container engine tasks run on.
    #[serde(default)]
    pub scheduler: String,
}

/// Body of `GET /api/system/servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListServersResponse {
    /// Whether the servers share their state (PostgreSQL); a server on SQLite is alone.
    pub shared: bool,
    /// Seconds a server may miss heartbeats before its runs are adopted.
    pub lease_seconds: u64,
    pub servers: Vec<crate::models::Server>,
}

/// Body of `POST /api/namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateNamespaceRequest {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListNamespacesResponse {
    pub namespaces: Vec<Namespace>,
    /// Offset of the next page, if there is one.
    pub next_offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListPipelinesResponse {
    pub pipelines: Vec<Pipeline>,
    pub next_offset: Option<u64>,
}

/// Body of `PATCH /api/namespaces/{namespace_id}/pipelines/{pipeline_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdatePipelineRequest {
    pub state: PipelineState,
}

/// Body of `POST /api/namespaces/{namespace_id}/pipelines/{pipeline_id}/configs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterConfigRequest {
    /// The JSON a pipeline program printed with `.finish()`.
    pub config: config::Pipeline,
}

/// What registering a config did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterConfigResponse {
    /// The registered version, or the existing latest one when the config was identical to it.
    pub config: PipelineConfig,
    /// False when the config equalled the latest version and nothing was registered.
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListConfigsResponse {
    pub configs: Vec<PipelineConfig>,
    pub next_offset: Option<u64>,
}

/// Body of `POST /api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartRunRequest {
    /// Variables for every task of the run; they override the config's variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Run this registered version instead of the live one (or the one a deployment in progress would pick);
    /// such a run is not counted by a deployment.
    #[serde(default)]
    pub version: Option<u64>,
}

/// Body of `POST /api/namespaces/{namespace_id}/pipelines/{pipeline_id}/configs/{version}/deploy` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// How to roll the version out; the strategy the config declares when absent, else `immediate`.
    #[serde(default)]
    pub strategy: Option<config::Strategy>,
    /// Abort a deployment in progress first instead of refusing.
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /api/namespaces/{namespace_id}/pipelines/{pipeline_id}/rollback` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to go back to; the one live before the live version when absent.
    #[serde(default)]
    pub to_version: Option<u64>,
    /// Abort a deployment in progress first instead of refusing.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListDeploymentsResponse {
    pub deployments: Vec<crate::models::Deployment>,
    /// Offset of the next page, if there is one.
    pub next_offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListRunsResponse {
    pub runs: Vec<Run>,
    pub next_offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListTaskExecutionsResponse {
    pub task_executions: Vec<TaskExecution>,
}

/// Query of the log endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct LogsQuery {
    /// Keep the response open and stream new output until the task completes.
    #[serde(default)]
    pub follow: bool,
    /// Which attempt's log (from 1); the latest by default.
    pub attempt: Option<u32>,
}

/// Body of the PUT routes that store a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutSecretRequest {
    pub value: String,
    /// Global secrets only: the namespace patterns that may use it (`*` and `?` wildcards; whole ids).
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// Query of the secret GET routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct SecretQuery {
    /// Include the value in the answer.
    #[serde(default)]
    pub include_secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListSecretsResponse {
    pub secrets: Vec<crate::models::Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListObjectsResponse {
    pub objects: Vec<crate::models::ObjectInfo>,
}

/// Body of `POST /api/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTokenRequest {
    /// Who holds it (a person, a team, a robot).
    pub user: String,
    /// Role ids: `admin`, `user`, `read_only`, or custom roles.
    pub roles: Vec<String>,
    /// Seconds until it expires; none: never.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
    /// Free-form notes kept with it.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A new token: the secret is shown here once and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: crate::permissions::Token,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListTokensResponse {
    pub tokens: Vec<crate::permissions::Token>,
}

/// Body of `PATCH /api/namespaces/{namespace_id}`: the fields to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateNamespaceRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListRolesResponse {
    pub roles: Vec<crate::permissions::Role>,
}

/// Body of `PATCH /api/roles/{role_id}`: the fields to change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    #[serde(default)]
    pub description: Option<String>,
    /// Replaces every grant of the role.
    #[serde(default)]
    pub grants: Option<Vec<crate::permissions::Grant>>,
}

/// Body of `PATCH /api/tokens/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateTokenRequest {
    pub disabled: bool,
}

/// Query of the extension log endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct FollowQuery {
    /// Keep the response open and stream new output until the container exits.
    #[serde(default)]
    pub follow: bool,
}

/// Body of `POST /api/extensions`: install a container extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallExtensionRequest {
    pub id: String,
    /// An image that speaks the extension protocol.
    pub image: String,
    /// The operator's settings, passed to the container as environment variables (names upper-cased).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    #[serde(default)]
    pub registry_auth: Option<config::RegistryAuth>,
}

/// What `GET /api/extensions/{extension_id}/debug` answers: the extension's own view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExtensionDebugResponse {
    pub info: String,
}

/// Query of the events stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct EventsQuery {
    /// Only events with an id greater than this (history starts after it); 0 for all kept history.
    pub after: Option<u64>,
    /// Keep the response open and stream new events as they happen.
    #[serde(default)]
    pub follow: bool,
    /// Only events of this pipeline (needs `namespace`).
    pub pipeline: Option<String>,
    /// Only events of this namespace.
    pub namespace: Option<String>,
    /// Only events of this run (needs `namespace` and `pipeline`).
    pub run: Option<u64>,
    /// Start at most this many events before the newest one stored (counted before the filters), instead of at
    /// the oldest kept: `tail=100` for recent history, `tail=0` with `follow=true` for new events only.
    pub tail: Option<u64>,
}

/// Body of `PATCH /api/system`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateSystemRequest {
    /// Refuse new runs (true) or take them again (false).
    pub maintenance: bool,
}

/// Body of `POST /api/namespaces/{namespace_id}/pipelines/{pipeline_id}/subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscribeRequest {
    pub extension_id: String,
    pub label: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// Body of the PATCH routes that turn an extension or a subscription on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetEnabledRequest {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListSubscriptionsResponse {
    pub subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListExtensionsResponse {
    pub extensions: Vec<Extension>,
}

/// Body of `POST …/runs/{run_id}/tasks/{task_id}/exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The program and its arguments, e.g. `["sh", "-c", "ls /tmp"]`.
    pub command: Vec<String>,
}

/// What a command run in a task's container printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecResponse {
    pub exit_code: i64,
    /// Its stdout and stderr, merged (invalid UTF-8 replaced).
    pub output: String,
    /// The output was longer than the server returns; the rest was dropped.
    pub truncated: bool,
}

/// Body of `POST …/runs/{run_id}/tasks/{task_id}/attach` (with `Upgrade: gofer-attach`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// The program and its arguments; e.g. `["sh"]`.
    pub command: Vec<String>,
    /// Give the command a terminal (when the client has one).
    #[serde(default)]
    pub tty: bool,
    /// The terminal's size, when `tty`.
    #[serde(default)]
    pub columns: Option<u16>,
    #[serde(default)]
    pub rows: Option<u16>,
}
