//! A typed client of Gofer's HTTP API, on the same request and response types the server uses (`gofer-api`): the
//! client the `gofer` CLI itself is built on. Every method is one API call; a failed call is an [`Error`] carrying
//! the server's own error (its stable `code`, message and, for a 500, the request id to find in the server's log).
//!
//! ```no_run
//! # async fn example() -> Result<(), gofer_client::Error> {
//! let gofer = gofer_client::Client::new("http://127.0.0.1:8080", "default", Some("my-token"), None)?;
//! let run = gofer.start_run("nightly", Default::default(), None).await?;
//! println!("started run {} of {}", run.run_id, run.pipeline_id);
//! for task in gofer.list_tasks("nightly", run.run_id).await?.task_executions {
//!     println!("{}: {}", task.task_id, task.state);
//! }
//! # Ok(()) }
//! ```
//!
//! Inside a task that asked for an API token (`inject_api_token`), [`Client::from_task_env`] builds a client from
//! the variables Gofer gives the container, scoped to the task's run. `examples/runs.rs` lists and starts runs.

use std::collections::BTreeMap;

/// The request and response types (`gofer-api`), for callers that name them.
pub use gofer_api as api;
/// The HTTP client library some calls take or give (`reqwest::Body` uploads, `StatusCode`), at the version used here.
pub use reqwest;

use bytes::Bytes;
use futures::Stream;
use gofer_api::config;
use gofer_api::error::ApiError;
use gofer_api::models::{
    Deployment, Event, Extension, Namespace, ObjectInfo, Pipeline, PipelineConfig, PipelineState, Run, Secret,
    Subscription, SystemSettings, TaskExecution,
};
use gofer_api::permissions::{Role, Token};
use gofer_api::requests::{
    CreateNamespaceRequest, ExtensionDebugResponse, InstallExtensionRequest, ListExtensionsResponse,
    ListNamespacesResponse, ListObjectsResponse, ListPipelinesResponse, ListRunsResponse, ListSecretsResponse,
    ListSubscriptionsResponse, ListTaskExecutionsResponse, PutSecretRequest, RegisterConfigRequest,
    RegisterConfigResponse, SetEnabledRequest, StartRunRequest, SubscribeRequest, UpdatePipelineRequest,
    UpdateSystemRequest,
};
use gofer_api::requests::{
    CreateTokenRequest, CreatedToken, DeployRequest, ListConfigsResponse, ListDeploymentsResponse, ListRolesResponse,
    ListTokensResponse, RollbackRequest, UpdateTokenRequest,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call failed: the server's own error, or no answer at all.
#[derive(Debug)]
pub enum Error {
    Api {
        status: StatusCode,
        error: ApiError,
    },
    Transport {
        url: String,
        source: reqwest::Error,
    },
    /// The token cannot be sent in a header.
    BadToken,
    /// The CA certificate is not PEM.
    BadCaCert,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Api { error, .. } => f.write_str(&error.message),
            Self::Transport { url, source } if source.is_connect() => {
                // The innermost cause says what went wrong (refused, certificate not trusted, ...).
                let mut cause: &dyn std::error::Error = source;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                write!(
                    f,
                    "cannot reach Gofer at {url} ({cause}): is the server running there, at that address? (With the \
                     gofer CLI: --api-url or GOFER_API_URL; for https with a private certificate, --ca-cert.)"
                )
            }
            Self::Transport { url, source } => write!(f, "request to {url} failed: {source}"),
            Self::BadToken => f.write_str("the API token contains characters an HTTP header cannot hold"),
            Self::BadCaCert => f.write_str("the CA certificate is not a PEM certificate"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Transport { .. } | Self::BadToken | Self::BadCaCert => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An API client bound to one server and namespace.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    namespace: String,
}

/// Percent-encodes one path segment (ids are validated server-side, but user input reaches here first).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// The client a task container gets from its environment: `GOFER_API_BASE_URL`, `GOFER_NAMESPACE_ID` and the
    /// run-scoped `GOFER_TOKEN` (given when the task has `inject_api_token`). `None` when they are not set.
    pub fn from_task_env() -> Option<Result<Self>> {
        let url = std::env::var("GOFER_API_BASE_URL").ok().filter(|v| !v.is_empty())?;
        let namespace = std::env::var("GOFER_NAMESPACE_ID").unwrap_or_else(|_| "default".into());
        let token = std::env::var("GOFER_TOKEN").ok().filter(|v| !v.is_empty());
        Some(Self::new(&url, &namespace, token.as_deref(), None))
    }

    /// The namespace every pipeline-scoped call works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// This client, working in another namespace (same server, same token).
    pub fn in_namespace(&self, namespace: &str) -> Self {
        Self { namespace: namespace.to_string(), ..self.clone() }
    }

    /// A client of the API at `api_url`; with a token, every request carries it as a bearer token; with a CA
    /// certificate (PEM), an https:// server signed by it is trusted.
    pub fn new(api_url: &str, namespace: &str, token: Option<&str>, ca_cert: Option<&[u8]>) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::BadToken)?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder().default_headers(headers);
        if let Some(pem) = ca_cert {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem).map_err(|_| Error::BadCaCert)?);
        }
        let http = builder.build().map_err(|source| Error::Transport { url: api_url.to_string(), source })?;
        Ok(Self { http, base: api_url.trim_end_matches('/').to_string(), namespace: namespace.into() })
    }

    fn pipeline_url(&self, pipeline: &str) -> String {
        format!("{}/api/namespaces/{}/pipelines/{}", self.base, segment(&self.namespace), segment(pipeline))
    }

    fn run_url(&self, pipeline: &str, run: u64) -> String {
        format!("{}/runs/{run}", self.pipeline_url(pipeline))
    }

    async fn send(&self, method: Method, url: String, body: Option<&impl Serialize>) -> Result<reqwest::Response> {
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(request, url).await
    }

    /// Sends a request and turns a failed answer into the API's error.
    async fn finish(&self, request: reqwest::RequestBuilder, url: String) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|source| Error::Transport { url: url.clone(), source })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    /// Starts `gofer task attach`'s session: the connection, switched to the `gofer-attach` framing.
    pub async fn attach(
        &self,
        pipeline: &str,
        run: u64,
        task: &str,
        request: &gofer_api::requests::AttachRequest,
    ) -> Result<reqwest::Upgraded> {
        let url = format!("{}/tasks/{}/attach", self.run_url(pipeline, run), segment(task));
        let response = self
            .http
            .post(&url)
            .header(reqwest::header::CONNECTION, "Upgrade")
            .header(reqwest::header::UPGRADE, gofer_api::attach::UPGRADE)
            .json(request)
            .send()
            .await
            .map_err(|source| Error::Transport { url: url.clone(), source })?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(api_error(response).await);
        }
        response.upgrade().await.map_err(|source| Error::Transport { url, source })
    }

    async fn json<T: DeserializeOwned>(&self, method: Method, url: String, body: Option<&impl Serialize>) -> Result<T> {
        let response = self.send(method, url.clone(), body).await?;
        response.json().await.map_err(|source| Error::Transport { url, source })
    }

    pub async fn list_extensions(&self) -> Result<ListExtensionsResponse> {
        self.json(Method::GET, format!("{}/api/extensions", self.base), None::<&()>).await
    }

    pub async fn get_extension(&self, id: &str) -> Result<Extension> {
        self.json(Method::GET, format!("{}/api/extensions/{}", self.base, segment(id)), None::<&()>).await
    }

    pub async fn set_extension_enabled(&self, id: &str, enabled: bool) -> Result<Extension> {
        let url = format!("{}/api/extensions/{}", self.base, segment(id));
        self.json(Method::PATCH, url, Some(&SetEnabledRequest { enabled })).await
    }

    fn object_url(&self, target: ObjectTarget<'_>, key: Option<&str>) -> String {
        let base = match target {
            ObjectTarget::Pipeline(pipeline) => format!("{}/objects", self.pipeline_url(pipeline)),
            ObjectTarget::Run(pipeline, run) => format!("{}/objects", self.run_url(pipeline, run)),
        };
        match key {
            Some(key) => format!("{base}/{}", segment(key)),
            None => base,
        }
    }

    /// Uploads an object, streaming `body`.
    pub async fn put_object(&self, target: ObjectTarget<'_>, key: &str, body: reqwest::Body) -> Result<ObjectInfo> {
        let url = self.object_url(target, Some(key));
        let request = self.http.put(&url).header("content-type", "application/octet-stream").body(body);
        let response = self.finish(request, url.clone()).await?;
        response.json().await.map_err(|source| Error::Transport { url, source })
    }

    /// An object's bytes as a stream.
    pub async fn get_object(
        &self,
        target: ObjectTarget<'_>,
        key: &str,
    ) -> Result<impl Stream<Item = reqwest::Result<Bytes>> + use<>> {
        Ok(self.send(Method::GET, self.object_url(target, Some(key)), None::<&()>).await?.bytes_stream())
    }

    pub async fn list_objects(&self, target: ObjectTarget<'_>) -> Result<ListObjectsResponse> {
        self.json(Method::GET, self.object_url(target, None), None::<&()>).await
    }

    pub async fn delete_object(&self, target: ObjectTarget<'_>, key: &str) -> Result<()> {
        self.send(Method::DELETE, self.object_url(target, Some(key)), None::<&()>).await.map(drop)
    }

    fn secret_url(&self, pipeline: Option<&str>, key: Option<&str>) -> String {
        let base = match pipeline {
            Some(pipeline) => format!("{}/secrets", self.pipeline_url(pipeline)),
            None => format!("{}/api/secrets", self.base),
        };
        match key {
            Some(key) => format!("{base}/{}", segment(key)),
            None => base,
        }
    }

    /// Stores a secret: a pipeline's when `pipeline` is given, else a global one.
    pub async fn put_secret(&self, pipeline: Option<&str>, key: &str, request: &PutSecretRequest) -> Result<Secret> {
        self.json(Method::PUT, self.secret_url(pipeline, Some(key)), Some(request)).await
    }

    pub async fn get_secret(&self, pipeline: Option<&str>, key: &str, include_secret: bool) -> Result<Secret> {
        let url = format!("{}?include_secret={include_secret}", self.secret_url(pipeline, Some(key)));
        self.json(Method::GET, url, None::<&()>).await
    }

    pub async fn list_secrets(&self, pipeline: Option<&str>) -> Result<ListSecretsResponse> {
        self.json(Method::GET, self.secret_url(pipeline, None), None::<&()>).await
    }

    pub async fn delete_secret(&self, pipeline: Option<&str>, key: &str) -> Result<()> {
        self.send(Method::DELETE, self.secret_url(pipeline, Some(key)), None::<&()>).await.map(drop)
    }

    pub async fn install_extension(&self, request: &InstallExtensionRequest) -> Result<Extension> {
        self.json(Method::POST, format!("{}/api/extensions", self.base), Some(request)).await
    }

    pub async fn uninstall_extension(&self, id: &str) -> Result<()> {
        let url = format!("{}/api/extensions/{}", self.base, segment(id));
        self.send(Method::DELETE, url, None::<&()>).await.map(drop)
    }

    pub async fn debug_extension(&self, id: &str) -> Result<ExtensionDebugResponse> {
        self.json(Method::GET, format!("{}/api/extensions/{}/debug", self.base, segment(id)), None::<&()>).await
    }

    /// A container extension's output; with `follow`, until its container exits.
    pub async fn extension_logs(
        &self,
        id: &str,
        follow: bool,
    ) -> Result<impl Stream<Item = reqwest::Result<Bytes>> + use<>> {
        let url = format!("{}/api/extensions/{}/logs?follow={follow}", self.base, segment(id));
        Ok(self.send(Method::GET, url, None::<&()>).await?.bytes_stream())
    }

    pub async fn list_subscriptions(&self, pipeline: &str) -> Result<ListSubscriptionsResponse> {
        self.json(Method::GET, format!("{}/subscriptions", self.pipeline_url(pipeline)), None::<&()>).await
    }

    pub async fn subscribe(&self, pipeline: &str, request: &SubscribeRequest) -> Result<Subscription> {
        self.json(Method::POST, format!("{}/subscriptions", self.pipeline_url(pipeline)), Some(request)).await
    }

    pub async fn unsubscribe(&self, pipeline: &str, extension: &str, label: &str) -> Result<()> {
        let url = format!("{}/subscriptions/{}/{}", self.pipeline_url(pipeline), segment(extension), segment(label));
        self.send(Method::DELETE, url, None::<&()>).await.map(drop)
    }

    pub async fn list_namespaces(&self) -> Result<ListNamespacesResponse> {
        self.json(Method::GET, format!("{}/api/namespaces?limit=1000", self.base), None::<&()>).await
    }

    pub async fn get_namespace(&self, id: &str) -> Result<Namespace> {
        self.json(Method::GET, format!("{}/api/namespaces/{}", self.base, segment(id)), None::<&()>).await
    }

    pub async fn create_namespace(&self, request: &CreateNamespaceRequest) -> Result<Namespace> {
        self.json(Method::POST, format!("{}/api/namespaces", self.base), Some(request)).await
    }

    pub async fn bootstrap_token(&self) -> Result<CreatedToken> {
        self.json(Method::POST, format!("{}/api/tokens/bootstrap", self.base), None::<&()>).await
    }

    pub async fn create_token(&self, request: &CreateTokenRequest) -> Result<CreatedToken> {
        self.json(Method::POST, format!("{}/api/tokens", self.base), Some(request)).await
    }

    pub async fn list_tokens(&self) -> Result<ListTokensResponse> {
        self.json(Method::GET, format!("{}/api/tokens", self.base), None::<&()>).await
    }

    pub async fn get_token(&self, id: &str) -> Result<Token> {
        self.json(Method::GET, format!("{}/api/tokens/{}", self.base, segment(id)), None::<&()>).await
    }

    pub async fn set_token_disabled(&self, id: &str, disabled: bool) -> Result<Token> {
        let url = format!("{}/api/tokens/{}", self.base, segment(id));
        self.json(Method::PATCH, url, Some(&UpdateTokenRequest { disabled })).await
    }

    pub async fn delete_token(&self, id: &str) -> Result<()> {
        self.send(Method::DELETE, format!("{}/api/tokens/{}", self.base, segment(id)), None::<&()>).await.map(drop)
    }

    pub async fn list_roles(&self) -> Result<ListRolesResponse> {
        self.json(Method::GET, format!("{}/api/roles", self.base), None::<&()>).await
    }

    pub async fn get_role(&self, id: &str) -> Result<Role> {
        self.json(Method::GET, format!("{}/api/roles/{}", self.base, segment(id)), None::<&()>).await
    }

    pub async fn create_role(&self, role: &Role) -> Result<Role> {
        self.json(Method::POST, format!("{}/api/roles", self.base), Some(role)).await
    }

    pub async fn delete_role(&self, id: &str) -> Result<()> {
        self.send(Method::DELETE, format!("{}/api/roles/{}", self.base, segment(id)), None::<&()>).await.map(drop)
    }

    pub async fn whoami(&self) -> Result<Token> {
        self.json(Method::GET, format!("{}/api/tokens/whoami", self.base), None::<&()>).await
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn update_namespace(
        &self,
        id: &str,
        request: &gofer_api::requests::UpdateNamespaceRequest,
    ) -> Result<Namespace> {
        self.json(Method::PATCH, format!("{}/api/namespaces/{}", self.base, segment(id)), Some(request)).await
    }

    pub async fn delete_namespace(&self, id: &str) -> Result<()> {
        self.send(Method::DELETE, format!("{}/api/namespaces/{}", self.base, segment(id)), None::<&()>).await.map(drop)
    }

    pub async fn list_pipelines(&self) -> Result<ListPipelinesResponse> {
        let url = format!("{}/api/namespaces/{}/pipelines?limit=1000", self.base, segment(&self.namespace));
        self.json(Method::GET, url, None::<&()>).await
    }

    pub async fn get_pipeline(&self, pipeline: &str) -> Result<Pipeline> {
        self.json(Method::GET, self.pipeline_url(pipeline), None::<&()>).await
    }

    pub async fn set_pipeline_state(&self, pipeline: &str, state: PipelineState) -> Result<Pipeline> {
        self.json(Method::PATCH, self.pipeline_url(pipeline), Some(&UpdatePipelineRequest { state })).await
    }

    pub async fn delete_pipeline(&self, pipeline: &str) -> Result<()> {
        self.send(Method::DELETE, self.pipeline_url(pipeline), None::<&()>).await.map(drop)
    }

    pub async fn register_config(&self, config: config::Pipeline) -> Result<RegisterConfigResponse> {
        let url = format!("{}/configs", self.pipeline_url(&config.id));
        self.json(Method::POST, url, Some(&RegisterConfigRequest { config })).await
    }

    pub async fn get_config(&self, pipeline: &str, version: u64) -> Result<PipelineConfig> {
        self.json(Method::GET, format!("{}/configs/{version}", self.pipeline_url(pipeline)), None::<&()>).await
    }

    pub async fn list_configs(&self, pipeline: &str, limit: u64, offset: u64) -> Result<ListConfigsResponse> {
        let url = format!("{}/configs?limit={limit}&offset={offset}", self.pipeline_url(pipeline));
        self.json(Method::GET, url, None::<&()>).await
    }

    pub async fn delete_config(&self, pipeline: &str, version: u64) -> Result<()> {
        let url = format!("{}/configs/{version}", self.pipeline_url(pipeline));
        self.send(Method::DELETE, url, None::<&()>).await.map(drop)
    }

    pub async fn deploy_config(&self, pipeline: &str, version: u64, request: &DeployRequest) -> Result<Deployment> {
        let url = format!("{}/configs/{version}/deploy", self.pipeline_url(pipeline));
        self.json(Method::POST, url, Some(request)).await
    }

    pub async fn rollback(&self, pipeline: &str, request: &RollbackRequest) -> Result<Deployment> {
        self.json(Method::POST, format!("{}/rollback", self.pipeline_url(pipeline)), Some(request)).await
    }

    pub async fn list_deployments(&self, pipeline: &str, limit: u64, offset: u64) -> Result<ListDeploymentsResponse> {
        let url = format!("{}/deployments?limit={limit}&offset={offset}", self.pipeline_url(pipeline));
        self.json(Method::GET, url, None::<&()>).await
    }

    pub async fn get_deployment(&self, pipeline: &str, deployment: u64) -> Result<Deployment> {
        let url = format!("{}/deployments/{deployment}", self.pipeline_url(pipeline));
        self.json(Method::GET, url, None::<&()>).await
    }

    pub async fn promote_deployment(&self, pipeline: &str, deployment: u64) -> Result<Deployment> {
        let url = format!("{}/deployments/{deployment}/promote", self.pipeline_url(pipeline));
        self.json(Method::POST, url, None::<&()>).await
    }

    pub async fn abort_deployment(&self, pipeline: &str, deployment: u64) -> Result<Deployment> {
        let url = format!("{}/deployments/{deployment}/abort", self.pipeline_url(pipeline));
        self.json(Method::POST, url, None::<&()>).await
    }

    pub async fn start_run(
        &self,
        pipeline: &str,
        variables: BTreeMap<String, String>,
        version: Option<u64>,
    ) -> Result<Run> {
        let url = format!("{}/runs", self.pipeline_url(pipeline));
        self.json(Method::POST, url, Some(&StartRunRequest { variables, version })).await
    }

    /// A page of a pipeline's runs, newest first; only those in `state` and with `status` when given.
    pub async fn list_runs(
        &self,
        pipeline: &str,
        limit: u64,
        offset: u64,
        state: Option<&str>,
        status: Option<&str>,
    ) -> Result<ListRunsResponse> {
        let mut url = format!("{}/runs?limit={limit}&offset={offset}", self.pipeline_url(pipeline));
        for (name, value) in [("state", state), ("status", status)] {
            if let Some(value) = value {
                url.push_str(&format!("&{name}={}", segment(value)));
            }
        }
        self.json(Method::GET, url, None::<&()>).await
    }

    pub async fn get_run(&self, pipeline: &str, run: u64) -> Result<Run> {
        self.json(Method::GET, self.run_url(pipeline, run), None::<&()>).await
    }

    pub async fn cancel_run(&self, pipeline: &str, run: u64) -> Result<Run> {
        self.json(Method::POST, format!("{}/cancel", self.run_url(pipeline, run)), None::<&()>).await
    }

    pub async fn list_tasks(&self, pipeline: &str, run: u64) -> Result<ListTaskExecutionsResponse> {
        self.json(Method::GET, format!("{}/tasks", self.run_url(pipeline, run)), None::<&()>).await
    }

    pub async fn get_task(&self, pipeline: &str, run: u64, task: &str) -> Result<TaskExecution> {
        let url = format!("{}/tasks/{}", self.run_url(pipeline, run), segment(task));
        self.json(Method::GET, url, None::<&()>).await
    }

    pub async fn exec(
        &self,
        pipeline: &str,
        run: u64,
        task: &str,
        command: Vec<String>,
    ) -> Result<gofer_api::requests::ExecResponse> {
        let url = format!("{}/tasks/{}/exec", self.run_url(pipeline, run), segment(task));
        self.json(Method::POST, url, Some(&gofer_api::requests::ExecRequest { command })).await
    }

    pub async fn cancel_task(&self, pipeline: &str, run: u64, task: &str) -> Result<TaskExecution> {
        let url = format!("{}/tasks/{}/cancel", self.run_url(pipeline, run), segment(task));
        self.json(Method::POST, url, None::<&()>).await
    }

    /// The server's address, as given.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn health(&self) -> Result<gofer_api::requests::Health> {
        self.json(Method::GET, format!("{}/api/health", self.base), None::<&()>).await
    }

    pub async fn get_system(&self) -> Result<SystemSettings> {
        self.json(Method::GET, format!("{}/api/system", self.base), None::<&()>).await
    }

    /// The servers sharing the state, with their heartbeats and the runs each drives.
    pub async fn list_servers(&self) -> Result<gofer_api::requests::ListServersResponse> {
        self.json(Method::GET, format!("{}/api/system/servers", self.base), None::<&()>).await
    }

    pub async fn set_maintenance(&self, maintenance: bool) -> Result<SystemSettings> {
        let url = format!("{}/api/system", self.base);
        self.json(Method::PATCH, url, Some(&UpdateSystemRequest { maintenance })).await
    }

    /// Events, oldest first, optionally of one run; with `follow`, live until interrupted.
    pub async fn events(
        &self,
        run: Option<(&str, u64)>,
        after: u64,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Event>> + use<>> {
        let mut url = format!("{}/api/events?after={after}&follow={follow}", self.base);
        if let Some(tail) = tail {
            url.push_str(&format!("&tail={tail}"));
        }
        if let Some((pipeline, run)) = run {
            url.push_str(&format!("&namespace={}&pipeline={}&run={run}", segment(&self.namespace), segment(pipeline)));
        }
        let bytes = self.send(Method::GET, url.clone(), None::<&()>).await?.bytes_stream();
        Ok(ndjson::<Event>(bytes, url))
    }

    /// The task's log bytes (of the latest attempt unless one is named); with `follow`, until the task completes.
    pub async fn task_logs(
        &self,
        pipeline: &str,
        run: u64,
        task: &str,
        attempt: Option<u32>,
        follow: bool,
    ) -> Result<impl Stream<Item = reqwest::Result<Bytes>> + use<>> {
        let mut url = format!("{}/tasks/{}/logs?follow={follow}", self.run_url(pipeline, run), segment(task));
        if let Some(attempt) = attempt {
            url.push_str(&format!("&attempt={attempt}"));
        }
        Ok(self.send(Method::GET, url, None::<&()>).await?.bytes_stream())
    }
}

/// Whose objects a call is about.
#[derive(Debug, Clone, Copy)]
pub enum ObjectTarget<'a> {
    Pipeline(&'a str),
    Run(&'a str, u64),
}

/// Splits a byte stream of newline-delimited JSON into values.
fn ndjson<T: DeserializeOwned>(
    bytes: impl Stream<Item = reqwest::Result<Bytes>> + Unpin,
    url: String,
) -> impl Stream<Item = Result<T>> {
    use futures::StreamExt;
    futures::stream::unfold((bytes, Vec::<u8>::new(), url), |(mut bytes, mut buffer, url)| async move {
        loop {
            if let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let item = serde_json::from_slice::<T>(&line).map_err(|e| Error::Api {
                    status: StatusCode::OK,
                    error: ApiError {
                        code: gofer_api::error::ErrorCode::Internal,
                        message: format!("the server sent an event this client cannot read: {e}"),
                        request_id: None,
                    },
                });
                return Some((item, (bytes, buffer, url)));
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(source)) => {
                    return Some((Err(Error::Transport { url: url.clone(), source }), (bytes, buffer, url)));
                }
                None => return None,
            }
        }
    })
}

/// The API's error in a failed answer (or the status and text, for an answer that is not one).
async fn api_error(response: reqwest::Response) -> Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let error = serde_json::from_str::<ApiError>(&text).unwrap_or(ApiError {
        code: gofer_api::error::ErrorCode::Internal,
        message: format!("server answered {status}: {}", text.trim()),
        request_id: None,
    });
    Error::Api { status, error }
}
