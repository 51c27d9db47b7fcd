//! Container extensions: any image that speaks the extension protocol (`gofer_api::protocol`). Gofer starts it on
//! the scheduler with the `GOFER_EXTENSION_SYSTEM_*` variables and the operator's settings, waits for
//! `/api/health`, reads `/api/info`, then supervises it: a container that exits, or misses three health checks in
//! a row, is started again after a back-off (1 s, doubling to a minute), with a new token, and its enabled
//! subscriptions are sent to it again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use gofer_api::epoch_millis;
use gofer_api::models::{EventKind, ExtensionKind, ExtensionRegistration, ExtensionState, Subscription};
use gofer_api::permissions::Token;
use gofer_api::protocol::{self, Documentation};
use gofer_scheduler::{ContainerSpec, RegistryAuth, Scheduler, labels};
use gofer_storage::{Storage, SubscriptionKey};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::{Error, Extension, ExternalEvent, ExternalResponse, Status, Trigger};
use crate::background::Background;
use crate::events::Events;
use crate::orchestrator::error_chain;
use crate::tokens::new_secret;
pub use crate::tokens::token_hash;

/// How Gofer runs container extensions.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    /// Names and labels containers, so several Gofers can share one engine.
    pub installation_id: String,
    /// The API address extensions are told to call (`GOFER_EXTENSION_SYSTEM_GOFER_HOST`).
    pub gofer_host: String,
    pub log_level: String,
    /// How long a new container gets to answer `/api/health`.
    pub start_timeout: Duration,
    /// Time between health checks of a running extension.
    pub health_interval: Duration,
    /// How long a container gets to stop before it is killed.
    pub stop_grace: Duration,
}

/// What every container extension shares: where and how they run.
#[derive(Clone)]
pub struct ContainerHost {
    pub options: Arc<ContainerOptions>,
    pub scheduler: Arc<dyn Scheduler>,
    pub storage: Arc<dyn Storage>,
    pub events: Events,
    /// Where supervisors and output readers run.
    pub background: Background,
    /// Counts restarts.
    pub metrics: crate::metrics::Metrics,
    /// On servers sharing their state: where the supervising server records each extension's endpoint, so that
    /// every server can call it.
    pub shared: Option<SharedHost>,
}

/// What a container extension needs on servers that share their state: one server (the leader) supervises it and
/// records where it answers; the others call it there.
#[derive(Clone)]
pub struct SharedHost {
    pub store: Arc<dyn gofer_storage::ClusterStore>,
    /// Seals the extension's bearer secret in the store (the servers share the key).
    pub secrets: crate::secrets::Secrets,
    /// This server and the cluster: a supervisor starts the extension only while this server leads.
    pub cluster: crate::cluster::Cluster,
}

impl ContainerHost {
    /// The extension for a registration, not started yet.
    pub fn extension(&self, registration: ExtensionRegistration) -> ContainerExtension {
        ContainerExtension {
            inner: Arc::new(Inner {
                registration,
                host: self.clone(),
                http: reqwest::Client::new(),
                runtime: Mutex::default(),
                supervisor: tokio::sync::Mutex::default(),
                remote: Mutex::default(),
            }),
        }
    }
}

/// The last bytes a container wrote, kept for error messages, and how many of their lines a message shows.
const TAIL_BYTES: usize = 4096;
const TAIL_LINES: usize = 5;
/// Back-off between restarts: from the first to the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// Health checks missed in a row before the extension is restarted.
const MISSED_CHECKS: u32 = 3;
/// How long a call to an extension may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Runtime {
    state: Option<ExtensionState>,
    container_id: Option<String>,
    /// `http://host:port` of the running container.
    base_url: Option<String>,
    secret: String,
    documentation: Documentation,
    restarts: u32,
    problem: Option<String>,
    tail: Arc<Mutex<VecDeque<u8>>>,
}

struct Inner {
    registration: ExtensionRegistration,
    host: ContainerHost,
    http: reqwest::Client,
    runtime: Mutex<Runtime>,
    /// The supervising task while there is one.
    supervisor: tokio::sync::Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    /// On a server that shares its state but does not supervise the extension: where it answers, as last read.
    remote: Mutex<Option<Remote>>,
}

/// An extension another server supervises, as this one calls it.
#[derive(Clone)]
struct Remote {
    base_url: String,
    secret: String,
    container_id: String,
    documentation: Documentation,
}

/// A container extension. Cheap to clone.
#[derive(Clone)]
pub struct ContainerExtension {
    inner: Arc<Inner>,
}

/// The token an extension's container carries.
fn token_for(extension_id: &str, secret: &str) -> Token {
    let user = format!("extension:{extension_id}");
    Token {
        id: user.clone(),
        hash: token_hash(secret),
        user,
        roles: vec![gofer_api::permissions::extension_role(extension_id).id],
        created: epoch_millis(),
        expires: 0,
        disabled: false,
        metadata: Default::default(),
    }
}

/// What an extension answered when it refused a call: its message, else its body.
fn refusal(status: u16, body: &[u8]) -> Error {
    let message = match serde_json::from_slice::<protocol::ErrorResponse>(body) {
        Ok(error) if !error.message.is_empty() => error.message,
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("it answered {status}")
            } else {
                format!("it answered {status}: {}", text.chars().take(500).collect::<String>())
            }
        }
    };
    Error::Refused { status, message }
}

/// The extension did not start: why, in words, with the engine's error when there is one.
fn not_started(reason: impl Into<String>, source: Option<gofer_scheduler::Error>) -> Error {
    Error::NotStarted { reason: reason.into(), source }
}

impl Inner {
    fn id(&self) -> &str {
        &self.registration.id
    }

    fn runtime(&self) -> std::sync::MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tail(&self) -> String {
        let tail = self.runtime().tail.clone();
        let bytes: Vec<u8> = tail.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.trim().lines().collect();
        let last = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        if last.is_empty() { String::new() } else { format!("; its last output: {last}") }
    }

    async fn set_state(&self, state: ExtensionState, problem: Option<String>) {
        {
            let mut runtime = self.runtime();
            if runtime.state == Some(state) && problem.is_none() {
                return;
            }
            runtime.state = Some(state);
            if problem.is_some() {
                runtime.problem = problem.clone();
            }
        }
        self.host
            .events
            .publish(EventKind::ExtensionStateChanged { extension_id: self.id().into(), state, problem })
            .await;
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::INSTALLATION.to_string(), self.host.options.installation_id.clone()),
            (labels::EXTENSION.to_string(), self.id().to_string()),
        ])
    }

    /// Removes this extension's containers, running or not (left by a crash, or by the previous start).
    async fn remove_containers(&self) {
        match self.host.scheduler.find(&self.labels()).await {
            Ok(found) => {
                for container in found {
                    if let Err(e) = self.host.scheduler.remove(&container.id).await {
                        tracing::warn!(extension = self.id(), error = %e, "could not remove an old extension container");
                    }
                }
            }
            Err(e) => tracing::warn!(extension = self.id(), error = %e, "could not look for old extension containers"),
        }
    }

    fn spec(&self, secret: &str) -> ContainerSpec {
        let options = &self.host.options;
        let bind = format!("0.0.0.0:{}", protocol::DEFAULT_PORT);
        let mut env: Vec<(String, String)> = vec![
            (protocol::env::ID.into(), self.id().into()),
            (protocol::env::SECRET.into(), secret.into()),
            // host:port, as the earlier Gofer passed it (its extension SDKs add the scheme themselves), and the
            // whole URL for extensions that know it (this Gofer's SDK; an https API).
            (protocol::env::GOFER_HOST.into(), protocol::host_of(&options.gofer_host).into()),
            (protocol::env::GOFER_URL.into(), options.gofer_host.clone()),
            (protocol::env::BIND_ADDRESS.into(), bind),
            (protocol::env::LOG_LEVEL.into(), options.log_level.clone()),
            (protocol::env::USE_TLS.into(), "false".into()),
        ];
        // The operator's settings, under their own names (upper-cased), as the earlier Gofer passed them.
        env.extend(self.registration.settings.iter().map(|(k, v)| (k.to_ascii_uppercase(), v.clone())));
        ContainerSpec {
            name: format!("gofer-{}-extension-{}", options.installation_id, self.id()),
            image: self.registration.image.clone(),
            always_pull: false,
            registry_auth: self
                .registration
                .registry_auth
                .as_ref()
                .map(|a| RegistryAuth { user: a.user.clone(), pass: a.pass.clone() }),
            env,
            entrypoint: None,
            command: None,
            labels: self.labels(),
            expose_port: Some(protocol::DEFAULT_PORT),
            shared_network: None,
            resources: Default::default(),
        }
    }

    /// Starts the container and waits until it answers `/api/health`, then reads `/api/info`. Returns the token
    /// it carries. On failure nothing is left running, and the message says why, with the container's last output.
    /// Its new token is stored before the container starts, so an extension that calls the API as it boots (to
    /// restore its subscriptions, as the earlier Gofer's extensions do) is let in; when the launch fails, the token
    /// goes with the container.
    async fn launch(&self) -> Result<Token, Error> {
        self.set_state(ExtensionState::Starting, None).await;
        let secret = new_secret().map_err(|reason| not_started(reason, None))?;
        let token = token_for(self.id(), &secret);
        // The token first: a server that cannot store it (the database is away) removes nobody's container.
        self.host
            .storage
            .put_token(&token)
            .await
            .map_err(|e| not_started(format!("its token could not be stored: {}", error_chain(&e)), None))?;
        self.remove_containers().await;
        let launched = self.start_container(secret).await;
        if launched.is_err() {
            self.forget_endpoint().await;
            // Only its own token: another launch (another server's) may have stored one since.
            let ours = self.host.storage.get_token(&token.id).await.is_ok_and(|stored| stored.hash == token.hash);
            if ours && let Err(e) = self.host.storage.delete_token(&token.id).await {
                tracing::warn!(extension = self.id(), error = %e, "could not remove the token of a failed start");
            }
        }
        launched.map(|()| token)
    }

    /// On servers sharing their state: forgets where this server's container of the extension answered (it died,
    /// did not start, or was stopped).
    async fn forget_endpoint(&self) {
        if let Some(shared) = &self.host.shared
            && let Err(e) = shared.store.delete_extension_endpoint(self.id(), &shared.cluster.me.id).await
        {
            tracing::warn!(extension = self.id(), error = %e, "could not forget where an extension answered");
        }
    }

    /// On servers sharing their state: whether this server may start the extension (it leads).
    async fn may_start(&self) -> bool {
        match &self.host.shared {
            Some(shared) => shared.cluster.leads().await,
            None => true,
        }
    }

    /// On the leading server: records where its running container answers again when the record is missing or
    /// names another server (an install records it only once the registration is stored).
    async fn ensure_recorded(&self) {
        let Some(shared) = &self.host.shared else { return };
        let (container_id, secret, documentation) = {
            let runtime = self.runtime();
            match (&runtime.container_id, &runtime.base_url) {
                (Some(id), Some(_)) => (id.clone(), runtime.secret.clone(), runtime.documentation.clone()),
                _ => return,
            }
        };
        let recorded = shared.store.get_extension_endpoint(self.id()).await;
        if matches!(&recorded, Ok(Some(e)) if e.server == shared.cluster.me.id && e.container_id == container_id) {
            return;
        }
        self.record_endpoint(&container_id, &secret, &documentation).await;
    }

    /// Starts the container with `secret` and waits until it answers `/api/health`, then reads `/api/info`.
    async fn start_container(&self, secret: String) -> Result<(), Error> {
        let started = self
            .host
            .scheduler
            .run(&self.spec(&secret))
            .await
            .map_err(|e| not_started("its container could not be started", Some(e)))?;
        let container_id = started.container_id.clone();
        let tail: Arc<Mutex<VecDeque<u8>>> = Arc::default();
        self.host.background.spawn(keep_tail(started.output, tail.clone()));
        {
            let mut runtime = self.runtime();
            runtime.container_id = Some(container_id.clone());
            runtime.base_url = None;
            runtime.secret = secret.clone();
            runtime.tail = tail;
        }
        if let Err(problem) = self.await_health(&container_id).await {
            let problem = match problem {
                Error::NotStarted { reason, source } => not_started(format!("{reason}{}", self.tail()), source),
                other => other,
            };
            self.discard(&container_id).await;
            return Err(problem);
        }
        match self.call::<(), protocol::InfoResponse>(Method::GET, "/api/info", None).await {
            Ok(info) => {
                self.record_endpoint(&container_id, &secret, &info.documentation).await;
                self.runtime().documentation = info.documentation;
            }
            Err(problem) => {
                let problem = format!("GET /api/info failed: {}{}", error_chain(&problem), self.tail());
                self.discard(&container_id).await;
                return Err(not_started(problem, None));
            }
        }
        self.set_state(ExtensionState::Running, None).await;
        Ok(())
    }

    /// Removes a container that failed to start properly.
    async fn discard(&self, container_id: &str) {
        let _ = self.host.scheduler.remove(container_id).await;
        let mut runtime = self.runtime();
        runtime.container_id = None;
        runtime.base_url = None;
    }

    /// On servers sharing their state: records where this (supervised) extension answers, for the others.
    async fn record_endpoint(&self, container_id: &str, secret: &str, documentation: &Documentation) {
        let Some(shared) = &self.host.shared else { return };
        let Some(base_url) = self.runtime().base_url.clone() else { return };
        let sealed = match shared.secrets.seal_internal(&format!("extension:{}", self.id()), secret.as_bytes()) {
            Ok(sealed) => sealed,
            Err(e) => return tracing::warn!(extension = self.id(), error = %e, "could not seal an extension's secret"),
        };
        let endpoint = gofer_storage::ExtensionEndpoint {
            extension_id: self.id().into(),
            server: shared.cluster.me.id.clone(),
            base_url,
            sealed_secret: sealed,
            container_id: container_id.into(),
            documentation: serde_json::to_string(documentation).unwrap_or_else(|_| "{}".into()),
        };
        if let Err(e) = shared.store.put_extension_endpoint(&endpoint).await {
            tracing::warn!(extension = self.id(), error = %e, "could not record where an extension answers");
        }
    }

    /// On servers sharing their state: reads where the extension another server supervises answers.
    async fn refresh_remote(&self) -> Option<Remote> {
        let shared = self.host.shared.as_ref()?;
        let remote = match shared.store.get_extension_endpoint(self.id()).await {
            Ok(Some(endpoint)) => {
                let context = format!("extension:{}", self.id());
                let secret = shared.secrets.open_internal(&context, &endpoint.sealed_secret);
                if secret.is_none() {
                    tracing::warn!(
                        extension = self.id(),
                        "the recorded secret of an extension does not open with this key"
                    );
                }
                secret.map(|secret| Remote {
                    base_url: endpoint.base_url,
                    secret: String::from_utf8_lossy(&secret).into_owned(),
                    container_id: endpoint.container_id,
                    documentation: serde_json::from_str(&endpoint.documentation).unwrap_or_default(),
                })
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(extension = self.id(), error = %e, "could not read where an extension answers");
                None
            }
        };
        *self.remote.lock().unwrap_or_else(|p| p.into_inner()) = remote.clone();
        remote
    }

    fn supervised_here(&self) -> bool {
        self.runtime().container_id.is_some()
    }

    /// Waits for the container's port and its `/api/health` to answer, within the start timeout.
    async fn await_health(&self, container_id: &str) -> Result<(), Error> {
        let timeout = self.host.options.start_timeout;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let info = self
                .host
                .scheduler
                .inspect(container_id)
                .await
                .map_err(|e| not_started("its container could not be inspected", Some(e)))?;
            if !info.is_running() {
                let code = info.exit_code.map(|c| format!(" with code {c}")).unwrap_or_default();
                return Err(not_started(format!("the container exited{code} before answering GET /api/health"), None));
            }
            if let Some(endpoint) = info.endpoint {
                let base = format!("http://{endpoint}");
                if self.healthy(&base).await {
                    self.runtime().base_url = Some(base);
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(not_started(
                    format!(
                        "it did not answer GET /api/health on port {} within {}s (extensions.start_timeout_seconds); \
                     is the image an extension that listens on GOFER_EXTENSION_SYSTEM_BIND_ADDRESS?",
                        protocol::DEFAULT_PORT,
                        timeout.as_secs()
                    ),
                    None,
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    async fn healthy(&self, base: &str) -> bool {
        let request = self.http.get(format!("{base}/api/health")).timeout(Duration::from_secs(2));
        matches!(request.send().await, Ok(response) if response.status().is_success())
    }

    /// Where to call the extension and with which secret: its container here, else (servers sharing their state)
    /// where the server supervising it recorded it.
    async fn address(&self) -> (Option<String>, String, Option<ExtensionState>) {
        let (base, secret, state) = {
            let runtime = self.runtime();
            (runtime.base_url.clone(), runtime.secret.clone(), runtime.state)
        };
        if base.is_some() || self.supervised_here() || self.host.shared.is_none() {
            return (base, secret, state);
        }
        match self.refresh_remote().await {
            Some(remote) => (Some(remote.base_url), remote.secret, Some(ExtensionState::Running)),
            None => (None, secret, state),
        }
    }

    /// Calls the running extension with its bearer secret; a non-2xx answer is an error with its message.
    async fn call_raw<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<Bytes, Error> {
        let (base, secret, state) = self.address().await;
        let Some(base) = base else {
            let state = state.map(|s| s.to_string()).unwrap_or_else(|| "stopped".into());
            return Err(Error::NotRunning { extension: self.id().into(), state });
        };
        let mut request = self.http.request(method, format!("{base}{path}")).bearer_auth(secret).timeout(CALL_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source| Error::Unreachable { extension: self.id().into(), source };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status.is_success() { Ok(bytes) } else { Err(refusal(status.as_u16(), &bytes)) }
    }

    async fn call<B: Serialize, T: DeserializeOwned + Default>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Error> {
        let bytes = self.call_raw(method, path, body).await?;
        if bytes.is_empty() {
            return Ok(T::default());
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Protocol {
            extension: self.id().into(),
            path: path.into(),
            source,
        })
    }

    async fn subscribe(&self, subscription: &Subscription) -> Result<(), Error> {
        let request = protocol::SubscribeRequest {
            namespace_id: subscription.namespace_id.clone(),
            pipeline_id: subscription.pipeline_id.clone(),
            pipeline_subscription_id: subscription.label.clone(),
            pipeline_subscription_params: subscription.settings.clone(),
        };
        self.call_raw(Method::POST, "/api/subscribe", Some(&request)).await.map(drop)
    }

    /// Sends every enabled subscription to the (re)started extension.
    async fn restore(&self) {
        let subscriptions = match self.host.storage.list_extension_subscriptions(self.id()).await {
            Ok(subscriptions) => subscriptions,
            Err(e) => {
                tracing::error!(extension = self.id(), error = %e, "could not read subscriptions to restore");
                return;
            }
        };
        for subscription in subscriptions.iter().filter(|s| s.enabled) {
            if let Err(e) = self.subscribe(subscription).await {
                let key = SubscriptionKey::of(subscription);
                tracing::warn!(%key, error = %error_chain(&e), "the extension refused a subscription it is restored with");
            }
        }
    }

    /// Watches a running extension until it dies or stops answering (the reason), or `stop` (None).
    async fn watch(&self, stop: &CancellationToken) -> Option<String> {
        let Some(container_id) = self.runtime().container_id.clone() else {
            return Some("it has no container".into());
        };
        let base = self.runtime().base_url.clone().unwrap_or_default();
        let wait = self.host.scheduler.wait(&container_id);
        tokio::pin!(wait);
        let mut checks = tokio::time::interval(self.host.options.health_interval);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checks.tick().await;
        let mut missed = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                exit = &mut wait => {
                    let reason = match exit {
                        Ok(code) => format!("the container exited with code {code}"),
                        Err(e) => format!("the container was lost: {e}"),
                    };
                    return Some(format!("{reason}{}", self.tail()));
                }
                _ = checks.tick() => {
                    if self.healthy(&base).await {
                        missed = 0;
                    } else {
                        missed += 1;
                        if missed >= MISSED_CHECKS {
                            return Some(format!("it missed {MISSED_CHECKS} health checks in a row{}", self.tail()));
                        }
                    }
                }
            }
        }
    }

    /// Keeps the extension running until `stop`: watches it, and starts it again with back-off when it dies.
    /// With `running` false it starts the extension first.
    async fn supervise(self: Arc<Self>, stop: CancellationToken, mut running: bool) {
        let mut backoff = BACKOFF.0;
        loop {
            if !running {
                if !self.may_start().await {
                    // Another server leads now (servers sharing their state): it runs the extension.
                    return;
                }
                let launched = tokio::select! {
                    launched = self.launch() => launched,
                    () = stop.cancelled() => return,
                };
                match launched {
                    Ok(_) => self.restore().await,
                    Err(problem) => {
                        let problem = error_chain(&problem);
                        tracing::warn!(extension = self.id(), %problem, retry_in = ?backoff, "extension did not start");
                        self.host.metrics.extension_restarted(self.id());
                        self.set_state(ExtensionState::Restarting, Some(problem)).await;
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = stop.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(BACKOFF.1);
                        continue;
                    }
                }
            }
            let since = Instant::now();
            let Some(problem) = self.watch(&stop).await else { return };
            self.forget_endpoint().await;
            tracing::warn!(extension = self.id(), %problem, "extension died; starting it again");
            self.runtime().restarts += 1;
            self.host.metrics.extension_restarted(self.id());
            self.runtime().base_url = None;
            self.set_state(ExtensionState::Restarting, Some(problem)).await;
            if since.elapsed() > BACKOFF.1 {
                backoff = BACKOFF.0;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF.1);
            running = false;
        }
    }

    /// Stops supervising, asks the extension to shut down, then stops and removes its container.
    async fn stop(&self) {
        if let Some((stop, task)) = self.supervisor.lock().await.take() {
            stop.cancel();
            let _ = task.await;
        }
        if self.runtime().base_url.is_some() {
            let shutdown = self.call_raw::<()>(Method::POST, "/api/shutdown", None);
            if let Ok(Err(problem)) = tokio::time::timeout(Duration::from_secs(2), shutdown).await {
                tracing::debug!(extension = self.id(), error = %error_chain(&problem), "extension did not take the shutdown call");
            }
        }
        let container_id = self.runtime().container_id.take();
        if let Some(container_id) = container_id {
            let _ = self.host.scheduler.stop(&container_id, self.host.options.stop_grace).await;
            let _ = self.host.scheduler.remove(&container_id).await;
            self.forget_endpoint().await;
        }
        self.runtime().base_url = None;
        self.set_state(ExtensionState::Stopped, None).await;
    }
}

/// Keeps the last `TAIL_BYTES` of a container's output.
async fn keep_tail(mut output: BoxStream<'static, gofer_scheduler::Result<Bytes>>, tail: Arc<Mutex<VecDeque<u8>>>) {
    while let Some(Ok(chunk)) = output.next().await {
        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend(chunk.iter().copied());
        let excess = tail.len().saturating_sub(TAIL_BYTES);
        tail.drain(..excess);
    }
}

impl ContainerExtension {
    pub fn registration(&self) -> &ExtensionRegistration {
        &self.inner.registration
    }

    /// Starts the container and waits for it to be healthy (install). Returns the token to store with it; on
    /// failure nothing is left running.
    pub async fn launch(&self) -> Result<Token, Error> {
        self.inner.launch().await
    }

    /// Supervises the extension; with `running` false it is started first (at Gofer's start), retrying with
    /// back-off until it comes up.
    pub async fn supervise(&self, running: bool) {
        let mut supervisor = self.inner.supervisor.lock().await;
        if supervisor.as_ref().is_some_and(|(_, task)| !task.is_finished()) {
            return;
        }
        let stop = CancellationToken::new();
        let task = self.inner.host.background.spawn(self.inner.clone().supervise(stop.clone(), running));
        *supervisor = Some((stop, task));
    }

    /// Whether this server supervises the extension now.
    pub async fn is_supervised(&self) -> bool {
        self.inner.supervisor.lock().await.as_ref().is_some_and(|(_, task)| !task.is_finished())
    }

    /// On the leading server: records where the extension answers if the record is missing (see
    /// `Inner::ensure_recorded`).
    pub async fn ensure_recorded(&self) {
        self.inner.ensure_recorded().await;
    }

    /// Removes the extension's containers (left running by a server that supervised it before).
    pub async fn remove_leftovers(&self) {
        self.inner.remove_containers().await;
    }

    /// Reads again where the extension answers when another server supervises it (servers sharing their state).
    pub async fn refresh(&self) {
        if !self.inner.supervised_here() {
            self.inner.refresh_remote().await;
        }
    }

    /// The container's output as the engine kept it; with `follow`, live until it exits.
    pub async fn logs(&self, follow: bool) -> Result<BoxStream<'static, gofer_scheduler::Result<Bytes>>, Error> {
        let local = self.inner.runtime().container_id.clone();
        // Supervised by another server sharing the state: its container is on the engine they share.
        let container_id = match local {
            Some(id) => Some(id),
            None => self.inner.refresh_remote().await.map(|remote| remote.container_id),
        };
        let Some(container_id) = container_id else {
            let state = self.inner.runtime().state.map(|s| s.to_string()).unwrap_or_else(|| "stopped".into());
            return Err(Error::NotRunning { extension: self.inner.id().into(), state });
        };
        self.inner
            .host
            .scheduler
            .logs(&container_id, follow)
            .await
            .map_err(|e| not_started("its container's output could not be read", Some(e)))
    }
}

#[async_trait]
impl Extension for ContainerExtension {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn kind(&self) -> ExtensionKind {
        ExtensionKind::Container
    }

    fn documentation(&self) -> Documentation {
        if !self.inner.supervised_here()
            && let Some(remote) = self.inner.remote.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
        {
            return remote.documentation.clone();
        }
        self.inner.runtime().documentation.clone()
    }

    fn status(&self) -> Status {
        let remote = self.inner.remote.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        let runtime = self.inner.runtime();
        // Supervised by another server (sharing the state), it runs as far as that server last recorded.
        let here = runtime.state.filter(|s| *s != ExtensionState::Stopped || !remote);
        Status {
            state: here.unwrap_or(if remote { ExtensionState::Running } else { ExtensionState::Stopped }),
            image: Some(self.inner.registration.image.clone()),
            restarts: runtime.restarts,
            problem: runtime.problem.clone(),
        }
    }

    async fn subscribe(&self, subscription: Subscription, _trigger: Arc<dyn Trigger>) -> Result<(), Error> {
        self.inner.subscribe(&subscription).await
    }

    async fn unsubscribe(&self, key: &SubscriptionKey) {
        let request = protocol::UnsubscribeRequest {
            namespace_id: key.namespace_id.clone(),
            pipeline_id: key.pipeline_id.clone(),
            pipeline_subscription_id: key.label.clone(),
        };
        if let Err(e) = self.inner.call_raw(Method::DELETE, "/api/subscribe", Some(&request)).await {
            tracing::warn!(%key, error = %error_chain(&e), "the extension did not take an unsubscribe");
        }
    }

    async fn external_event(&self, event: ExternalEvent, _trigger: Arc<dyn Trigger>) -> ExternalResponse {
        let request = protocol::ExternalEventRequest { headers: event.headers, body: event.body.to_vec() };
        let (base, secret, _) = self.inner.address().await;
        let Some(base) = base else {
            return ExternalResponse::new(503, format!("extension '{}' is not running; try again later", self.id()));
        };
        let sent = self
            .inner
            .http
            .post(format!("{base}/api/external-event"))
            .bearer_auth(secret)
            .timeout(CALL_TIMEOUT)
            .json(&request)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                let message = match serde_json::from_slice::<protocol::ErrorResponse>(&body) {
                    Ok(answer) => answer.message,
                    Err(_) => String::from_utf8_lossy(&body).trim().chars().take(1000).collect(),
                };
                ExternalResponse::new(status, message)
            }
            Err(e) => ExternalResponse::new(502, format!("could not reach extension '{}': {e}", self.id())),
        }
    }

    async fn debug(&self) -> Result<String, Error> {
        let answer: protocol::DebugResponse = self.inner.call::<(), _>(Method::GET, "/api/debug", None).await?;
        Ok(answer.info)
    }

    /// Starts the extension now; if it does not come up, the supervisor keeps trying with back-off (it is
    /// enabled after all) and the problem is returned.
    async fn resume(&self) -> Result<(), Error> {
        match self.inner.launch().await {
            Ok(_) => {
                self.inner.restore().await;
                self.supervise(true).await;
                Ok(())
            }
            Err(problem) => {
                self.inner.set_state(ExtensionState::Restarting, Some(error_chain(&problem))).await;
                self.supervise(false).await;
                Err(problem)
            }
        }
    }

    async fn shutdown(&self) {
        self.inner.stop().await;
    }
}
