//! The Kubernetes scheduler: one pod per task attempt, through the cluster's API (kube-rs).
//!
//! A pod is created behind a scheduling gate (`objects::START_GATE`), so "created" means nothing of it runs, and
//! `start` removes the gate. Completion is learned from a watch of the pod (bookmarks followed, a `410 Gone`
//! answered by reading the pod again), never by polling; the exit code and reason (`OOMKilled`, image pull errors,
//! evictions) come from the container's status. Output comes from the pod's log stream, followed, and a stream that
//! breaks is opened again with the bytes already delivered skipped. Only pods carrying Gofer's labels are found.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::io::{AsyncBufRead, AsyncBufReadExt};
use futures::stream::BoxStream;
use gofer_scheduler::cluster::{Progress, Update, Wait, produced};
use gofer_scheduler::{ContainerInfo, ContainerSpec, ContainerState, Error, Result, Scheduler, Started};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::mpsc;

#[cfg(feature = "fake")]
pub mod fake;
pub mod names;
pub mod objects;

pub use objects::Settings;

use names::{label_value, pod_name};
use objects::{CONTAINER, NAME_ANNOTATION, POD_LABEL};

/// How Gofer finds the cluster's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// A kubeconfig file (`None`: `KUBECONFIG` or `~/.kube/config`, else the in-cluster service account) and one of
    /// its contexts (`None`: its current one).
    Infer { kubeconfig: Option<PathBuf>, context: Option<String> },
    /// An API address that needs no credentials (`kubectl proxy`), e.g. `http://127.0.0.1:8001`.
    Url(String),
}

/// What to do when the API does not answer.
const HINT: &str = "check scheduler.kubernetes (kubeconfig, context or api_url) and that the cluster is up";
/// How old a pull secret or service without its pod must be before a starting server deletes it.
const ORPHAN_AGE: Duration = Duration::from_secs(300);
/// How long calls to the API may fail in a row (it restarts, the network blips) before a wait gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// The image errors a pod does not recover from by itself (a failed pull is retried once before `BackOff`).
const IMAGE_ERRORS: [&str; 3] = ["ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"];
/// The errors of making a container from a spec the node refuses.
const CONFIG_ERRORS: [&str; 3] = ["CreateContainerConfigError", "CreateContainerError", "RunContainerError"];

/// The Kubernetes backend. Cheap to clone.
#[derive(Clone)]
pub struct KubernetesScheduler {
    pods: Api<Pod>,
    secrets: Api<Secret>,
    services: Api<Service>,
    settings: Arc<Settings>,
    description: String,
    endpoint: String,
}

impl std::fmt::Debug for KubernetesScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesScheduler").field("description", &self.description).finish_non_exhaustive()
    }
}

/// The error of a call to the API: what it was doing, with the API's words.
fn api_error(endpoint: &str, action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let (endpoint, action) = (endpoint.to_string(), action.into());
    move |e| match e {
        kube::Error::Api(_) => Error::Engine { action, source: Box::new(e) },
        other => Error::Unreachable { endpoint, hint: HINT.into(), source: Box::new(other) },
    }
}

fn status_of(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The task container's status in a pod.
fn task_status(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|s| s.name == CONTAINER)
}

/// Where a pod is, as Gofer tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Behind the start gate: nothing runs.
    Gated,
    /// Started but not running yet: waiting for a node, its image or its volumes (the reason, as Kubernetes says).
    Pending(String),
    Running,
    Terminated {
        code: i64,
        oom_killed: bool,
        /// The kubelet's words when they say more than the code (`StartError: …`, a termination message).
        said: Option<String>,
    },
    /// Its image cannot be had.
    ImageError(String),
    /// The node could not make the container (a missing config map, a bad spec).
    ConfigError(String),
    /// The node evicted it or it failed without running its container.
    Evicted(String),
}

fn phase(pod: &Pod) -> Phase {
    if pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty()) {
        return Phase::Gated;
    }
    let status = pod.status.clone().unwrap_or_default();
    let said = |reason: Option<&String>, message: Option<&String>| {
        format!("{}: {}", reason.map_or("", String::as_str), message.map_or("", String::as_str))
    };
    if status.reason.as_deref() == Some("Evicted") {
        return Phase::Evicted(said(status.reason.as_ref(), status.message.as_ref()));
    }
    if let Some(state) = task_status(pod).and_then(|s| s.state.as_ref()) {
        if let Some(ended) = &state.terminated {
            let oom_killed = ended.reason.as_deref() == Some("OOMKilled");
            let reason = ended.reason.clone().filter(|r| !["Completed", "Error", "OOMKilled"].contains(&r.as_str()));
            let message = ended.message.clone().map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
            let said = match (reason, message) {
                (Some(reason), Some(message)) => Some(format!("{reason}: {message}")),
                (reason, message) => reason.or(message),
            };
            return Phase::Terminated { code: i64::from(ended.exit_code), oom_killed, said };
        }
        if state.running.is_some() {
            return Phase::Running;
        }
        if let Some(waiting) = &state.waiting {
            let reason = waiting.reason.as_deref().unwrap_or("");
            let words = said(waiting.reason.as_ref(), waiting.message.as_ref());
            if IMAGE_ERRORS.contains(&reason) {
                return Phase::ImageError(words);
            }
            if CONFIG_ERRORS.contains(&reason) {
                return Phase::ConfigError(words);
            }
            return Phase::Pending(words);
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        return Phase::Evicted(said(status.reason.as_ref(), status.message.as_ref()));
    }
    // Not placed yet: the scheduler's condition says why (`Unschedulable: 0/3 nodes are available…`).
    let scheduled = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    Phase::Pending(
        scheduled
            .map_or_else(|| "Pending: waiting for a node".to_string(), |c| said(c.reason.as_ref(), c.message.as_ref())),
    )
}

/// A pod's phase as the wait for its end takes it.
fn progress(pod: &Pod) -> Progress {
    let name = pod.metadata.name.clone().unwrap_or_default();
    match phase(pod) {
        Phase::Gated => Progress::Created,
        Phase::Pending(words) => Progress::Pending(words),
        Phase::Running => Progress::Running,
        Phase::Terminated { code, .. } => Progress::Ended(code),
        Phase::ImageError(words) => {
            let image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone());
            Progress::Failed(Error::Image { image: image.unwrap_or_default(), source: Error::cause(words) })
        }
        Phase::ConfigError(words) => {
            Progress::Failed(Error::Engine { action: format!("start pod {name}"), source: Error::cause(words) })
        }
        Phase::Evicted(words) => Progress::Failed(Error::Engine {
            action: format!("run pod {name}"),
            source: Error::cause(format!("the pod ended without its container ending: {words}")),
        }),
    }
}

impl KubernetesScheduler {
    /// Connects to the cluster, checks that it answers and that Gofer may list pods in its namespace.
    pub async fn connect(connection: &Connection, settings: Settings) -> Result<Self> {
        let unreachable = |endpoint: String| {
            move |e: Box<dyn std::error::Error + Send + Sync>| Error::Unreachable {
                endpoint: endpoint.clone(),
                hint: HINT.into(),
                source: e,
            }
        };
        let mut config = match connection {
            Connection::Url(url) => {
                let uri = url.parse().map_err(|e: http::uri::InvalidUri| unreachable(url.clone())(Box::new(e)))?;
                kube::Config::new(uri)
            }
            Connection::Infer { kubeconfig: Some(path), context } => {
                let where_ = path.display().to_string();
                let file = Kubeconfig::read_from(path).map_err(|e| unreachable(where_.clone())(Box::new(e)))?;
                let options = KubeConfigOptions { context: context.clone(), ..Default::default() };
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| unreachable(where_)(Box::new(e)))?
            }
            Connection::Infer { kubeconfig: None, context: Some(context) } => {
                let options = KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
                kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| unreachable("the kubeconfig".into())(Box::new(e)))?
            }
            Connection::Infer { kubeconfig: None, context: None } => kube::Config::infer()
                .await
                .map_err(|e| unreachable("the kubeconfig or the in-cluster account".into())(Box::new(e)))?,
        };
        config.default_namespace = settings.namespace.clone();
        let endpoint = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| unreachable(endpoint.clone())(Box::new(e)))?;
        let version = client.apiserver_version().await.map_err(api_error(&endpoint, "tell its version"))?;
        let namespace = settings.namespace.as_str();
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        pods.list(&ListParams::default().limit(1)).await.map_err(api_error(
            &endpoint,
            format!("list pods in namespace {namespace} (grant Gofer's account the rules in docs/schedulers.md)"),
        ))?;
        let scheduler = Self {
            pods,
            secrets: Api::namespaced(client.clone(), namespace),
            services: Api::namespaced(client, namespace),
            description: format!("kubernetes {} at {endpoint}, namespace {namespace}", version.git_version),
            settings: Arc::new(settings),
            endpoint,
        };
        let sweeper = scheduler.clone();
        tokio::spawn(async move {
            match sweeper.sweep_orphans(ORPHAN_AGE).await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "deleted pull secrets and services left without their pod"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for pull secrets and services left without their pod")
                }
            }
        });
        Ok(scheduler)
    }

    fn error(&self, action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        api_error(&self.endpoint, action)
    }

    /// The error of a call about one pod: `NoSuchContainer` when it is gone.
    fn pod_error(&self, pod: &str, action: &str) -> impl FnOnce(kube::Error) -> Error {
        let (pod, action, endpoint) = (pod.to_string(), action.to_string(), self.endpoint.clone());
        move |e| {
            if status_of(&e) == Some(404) {
                Error::NoSuchContainer { container: pod, source: Box::new(e) }
            } else {
                api_error(&endpoint, format!("{action} pod {pod}"))(e)
            }
        }
    }

    async fn get(&self, pod: &str) -> Result<Pod> {
        self.pods.get(pod).await.map_err(self.pod_error(pod, "read"))
    }

    /// The pod's states as they change: its state now, then one per change the watch reports, until it is gone.
    /// Bookmarks move the watch on; `410 Gone` (the cluster no longer has the version the watch started from) and
    /// broken streams read the pod again and watch on from there. Calls that fail are retried for a while.
    fn updates(&self, pod: &str) -> BoxStream<'static, Result<Update<Pod>>> {
        let (this, pod) = (self.clone(), pod.to_string());
        produced(8, move |sender| async move { this.watch_pod(&pod, &sender).await })
    }

    async fn watch_pod(&self, pod: &str, sender: &mpsc::Sender<Result<Update<Pod>>>) {
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(200);
        // Retries a failed call for a while; past it, tells the follower.
        macro_rules! failed {
            ($error:expr) => {{
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > GIVE_UP_AFTER {
                    let _ = sender.send(Err($error)).await;
                    return;
                }
                tracing::debug!(pod, "retrying a watch of a pod");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }};
        }
        'read: loop {
            let seen = match self.pods.get_opt(pod).await {
                Ok(Some(seen)) => {
                    // Only calls failing in a row count towards giving up.
                    (failing_since, backoff) = (None, Duration::from_millis(200));
                    seen
                }
                Ok(None) => {
                    let _ = sender.send(Ok(Update::Gone)).await;
                    return;
                }
                Err(e) => {
                    failed!(self.pod_error(pod, "read")(e));
                    continue 'read;
                }
            };
            let mut version = seen.metadata.resource_version.clone().unwrap_or_default();
            if sender.send(Ok(Update::Seen(Box::new(seen)))).await.is_err() {
                return;
            }
            loop {
                let params = WatchParams::default().fields(&format!("metadata.name={pod}")).timeout(290);
                let events = match self.pods.watch(&params, &version).await {
                    Ok(events) => {
                        (failing_since, backoff) = (None, Duration::from_millis(200));
                        events
                    }
                    Err(e) => {
                        failed!(self.pod_error(pod, "watch")(e));
                        continue 'read;
                    }
                };
                let mut events = std::pin::pin!(events);
                while let Some(event) = events.next().await {
                    match event {
                        Ok(WatchEvent::Added(seen) | WatchEvent::Modified(seen)) => {
                            (failing_since, backoff) = (None, Duration::from_millis(200));
                            version = seen.metadata.resource_version.clone().unwrap_or(version);
                            if sender.send(Ok(Update::Seen(Box::new(seen)))).await.is_err() {
                                return;
                            }
                        }
                        Ok(WatchEvent::Deleted(last)) => {
                            let _ = sender.send(Ok(Update::Seen(Box::new(last)))).await;
                            let _ = sender.send(Ok(Update::Gone)).await;
                            return;
                        }
                        Ok(WatchEvent::Bookmark(mark)) => version = mark.metadata.resource_version,
                        Ok(WatchEvent::Error(status)) if status.code == 410 => {
                            tracing::debug!(pod, "the watch's version expired; reading the pod again");
                            continue 'read;
                        }
                        Ok(WatchEvent::Error(status)) => {
                            failed!(self.error(format!("watch pod {pod}"))(kube::Error::Api(status)));
                            continue 'read;
                        }
                        Err(e) => {
                            failed!(self.pod_error(pod, "watch")(e));
                            continue 'read;
                        }
                    }
                }
                // The watch ended (its timeout): on from the last version seen.
            }
        }
    }

    /// The task container's output from its start: waits until it runs (or ends without running: no output), then
    /// follows the log, opening it again past the bytes delivered when the stream breaks, until the container ended
    /// and its log was read to the end.
    fn output(&self, pod: &str, follow: bool) -> BoxStream<'static, Result<Bytes>> {
        let (this, pod) = (self.clone(), pod.to_string());
        produced(16, move |sender| async move { this.copy_output(&pod, follow, &sender).await })
    }

    async fn copy_output(&self, pod: &str, follow: bool, sender: &mpsc::Sender<Result<Bytes>>) {
        let mut updates = self.updates(pod);
        loop {
            match updates.next().await {
                Some(Ok(Update::Seen(seen))) => match phase(&seen) {
                    Phase::Running | Phase::Terminated { .. } => break,
                    // Not followed, the log of a pod not running yet is empty now.
                    Phase::Gated | Phase::Pending(_) if !follow => return,
                    Phase::Gated | Phase::Pending(_) => {}
                    Phase::ImageError(_) | Phase::ConfigError(_) | Phase::Evicted(_) => return,
                },
                Some(Ok(Update::Gone)) | None => return,
                Some(Err(e)) => {
                    let _ = sender.send(Err(e)).await;
                    return;
                }
            }
        }
        drop(updates);
        let mut delivered: usize = 0;
        let mut failures = 0;
        loop {
            let params = LogParams { container: Some(CONTAINER.into()), follow, ..Default::default() };
            let reader = match self.pods.log_stream(pod, &params).await {
                Ok(reader) => reader,
                Err(e) if status_of(&e) == Some(404) || failures >= 20 => {
                    if status_of(&e) != Some(404) {
                        let _ = sender.send(Err(self.pod_error(pod, "read the log of")(e))).await;
                    }
                    return;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(pod, error = %e, "could not open a pod's log; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            let mut reader = std::pin::pin!(reader);
            // Bytes an earlier stream delivered already, skipped in this one.
            let mut skip = delivered;
            let mut read = 0;
            let clean = loop {
                let chunk = match reader.as_mut().fill_buf().await {
                    Ok([]) => break true,
                    Ok(chunk) => Bytes::copy_from_slice(chunk),
                    Err(e) => {
                        tracing::debug!(pod, error = %e, delivered, "a pod's log stream broke; opening it again");
                        break false;
                    }
                };
                let length = chunk.len();
                read += length;
                if skip >= length {
                    skip -= length;
                } else {
                    let fresh = chunk.slice(skip..);
                    delivered += fresh.len();
                    skip = 0;
                    if sender.send(Ok(fresh)).await.is_err() {
                        return;
                    }
                }
                reader.as_mut().consume(length);
            };
            if !follow {
                return;
            }
            if clean && skip > 0 {
                // The log is shorter than what was delivered: the kubelet rotated it meanwhile, and what it now
                // holds cannot be placed. Say so in the output, and go on from the whole of what it holds.
                tracing::warn!(
                    pod,
                    delivered,
                    read,
                    "a pod's log was rotated while Gofer reconnected; output may be missing"
                );
                let marker = "\n[gofer: the cluster rotated this task's log while Gofer reconnected to it; output may be \
                              missing or repeated here]\n";
                if sender.send(Ok(Bytes::from(marker))).await.is_err() {
                    return;
                }
                delivered = 0;
                continue;
            }
            if read > skip {
                // A stream that brought something new: only breaks in a row count.
                failures = 0;
            }
            if clean {
                // The cluster ends a followed log when the container ended; it may also end one early (log
                // rotation): the container's state tells which.
                match self.pods.get_opt(pod).await {
                    Ok(Some(seen)) if matches!(phase(&seen), Phase::Running | Phase::Pending(_)) => {
                        // Its status lags its end: look again in a moment, not at once.
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Ok(_) => return,
                    Err(e) => tracing::debug!(pod, error = %e, "could not read a pod after its log ended"),
                }
            } else {
                failures += 1;
            }
            if failures >= 20 {
                let _ = sender
                    .send(Err(Error::Engine {
                        action: format!("read the log of pod {pod}"),
                        source: Error::cause("the log stream broke twenty times"),
                    }))
                    .await;
                return;
            }
        }
    }

    /// Deletes what a pod came with: its pull secret and its service (gone already is fine).
    async fn remove_companions(&self, pod: &str) -> Result<()> {
        let params = DeleteParams::default();
        for result in [
            self.secrets.delete(&objects::pull_secret_name(pod), &params).await.map(|_| ()),
            self.services.delete(pod, &params).await.map(|_| ()),
        ] {
            match result {
                Ok(()) => {}
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(self.error(format!("delete what came with pod {pod}"))(e)),
            }
        }
        Ok(())
    }

    /// Deletes Gofer's pull secrets and services whose pod is gone and that are older than `older_than` (a crash
    /// between creating one and its pod leaves it behind; a younger one may belong to a pod being made right now).
    /// Returns how many went.
    pub async fn sweep_orphans(&self, older_than: Duration) -> Result<usize> {
        let params = ListParams::default().labels(&format!("{}=true,{POD_LABEL}", gofer_scheduler::labels::MANAGED));
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let old_enough = |meta: &kube::api::ObjectMeta| {
            let age = meta.creation_timestamp.as_ref().map_or(0, |t| now - t.0.as_second());
            u64::try_from(age).is_ok_and(|age| age >= older_than.as_secs())
        };
        let secrets = self.secrets.list(&params).await.map_err(self.error("list pull secrets"))?;
        let services = self.services.list(&params).await.map_err(self.error("list services"))?;
        let candidates = secrets
            .items
            .iter()
            .map(|s| (&s.metadata, "secret"))
            .chain(services.items.iter().map(|s| (&s.metadata, "service")));
        let mut swept = 0;
        for (meta, kind) in candidates.filter(|(meta, _)| old_enough(meta)) {
            let (Some(name), Some(pod)) = (meta.name.as_deref(), meta.labels.as_ref().and_then(|l| l.get(POD_LABEL)))
            else {
                continue;
            };
            if self.pods.get_opt(pod).await.map_err(self.error(format!("read pod {pod}")))?.is_some() {
                continue;
            }
            let deleted = match kind {
                "secret" => self.secrets.delete(name, &DeleteParams::default()).await.map(|_| ()),
                _ => self.services.delete(name, &DeleteParams::default()).await.map(|_| ()),
            };
            match deleted {
                Ok(()) => swept += 1,
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(self.error(format!("delete {kind} {name}"))(e)),
            }
        }
        Ok(swept)
    }

    fn info(&self, pod: &Pod) -> ContainerInfo {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = phase(pod);
        let state = match phase {
            Phase::Gated => ContainerState::Created,
            Phase::Terminated { .. } | Phase::Evicted(_) => ContainerState::Exited,
            Phase::Pending(_) | Phase::Running | Phase::ImageError(_) | Phase::ConfigError(_) => {
                ContainerState::Running
            }
        };
        let (exit_code, oom_killed, exit_message) = match phase.clone() {
            Phase::Terminated { code, oom_killed, said } => (Some(code), oom_killed, said),
            _ => (None, false, None),
        };
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let port = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.ports.as_ref())
            .and_then(|p| p.first())
            .map(|p| p.container_port);
        ContainerInfo {
            id: name.clone(),
            name: annotations.get(NAME_ANNOTATION).cloned().unwrap_or_else(|| name.clone()),
            state,
            exit_code,
            // `docker-pullable://busybox@sha256:…` or `sha256:…`: the digest is what follows the `@`, if any.
            image_digest: task_status(pod)
                .map(|s| s.image_id.clone())
                .filter(|id| !id.is_empty())
                .map(|id| id.rsplit_once('@').map_or(id.clone(), |(_, digest)| digest.to_string())),
            labels: annotations
                .into_iter()
                .filter(|(key, _)| key.starts_with("dev.gofer.") && key != NAME_ANNOTATION)
                .collect(),
            endpoint: port
                .filter(|_| phase == Phase::Running)
                .map(|port| format!("{name}.{}.svc:{port}", self.settings.namespace)),
            oom_killed,
            exit_message,
        }
    }
}

#[async_trait]
impl Scheduler for KubernetesScheduler {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let pod = objects::pod(spec, &self.settings)?;
        let name = pod_name(&spec.name);
        let post = PostParams::default();
        if let Some(auth) = &spec.registry_auth {
            match self.secrets.create(&post, &objects::pull_secret(spec, auth)).await {
                Ok(_) => {}
                // Left by an earlier try of this very pod: the same credentials.
                Err(e) if status_of(&e) == Some(409) => {}
                Err(e) => return Err(self.error(format!("create the pull secret of pod {name}"))(e)),
            }
        }
        let created = match self.pods.create(&post, &pod).await {
            Ok(created) => created,
            Err(e) => {
                let _ = self.remove_companions(&name).await;
                return Err(self.error(format!("create pod {name}"))(e));
            }
        };
        if let Some(port) = spec.expose_port {
            match self.services.create(&post, &objects::service(spec, port)).await {
                Ok(_) => {}
                Err(e) if status_of(&e) == Some(409) => {}
                Err(e) => {
                    let _ = self.remove(&name).await;
                    return Err(self.error(format!("create the service of pod {name}"))(e));
                }
            }
        }
        if spec.registry_auth.is_some() {
            // The cluster deletes the secret with its pod, whoever deletes the pod.
            let owner = serde_json::json!({ "metadata": { "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": name, "uid": created.metadata.uid.unwrap_or_default()
            }] } });
            let secret = objects::pull_secret_name(&name);
            if let Err(e) = self.secrets.patch(&secret, &PatchParams::default(), &Patch::Merge(&owner)).await {
                tracing::warn!(pod = %name, error = %e, "could not make a pull secret belong to its pod; it goes when the pod is removed");
            }
        }
        Ok(name)
    }

    async fn start(&self, container_id: &str) -> Result<Started> {
        let ungate = serde_json::json!({ "spec": { "schedulingGates": null } });
        if let Err(e) = self.pods.patch(container_id, &PatchParams::default(), &Patch::Merge(&ungate)).await {
            let failed = self.pod_error(container_id, "start")(e);
            let _ = self.remove(container_id).await;
            return Err(failed);
        }
        Ok(Started {
            container_id: container_id.to_string(),
            image_digest: None,
            output: self.output(container_id, true),
        })
    }

    async fn wait(&self, container_id: &str) -> Result<i64> {
        let wait = Wait {
            kind: "pod",
            container: container_id,
            start_timeout: self.settings.start_timeout,
            timeout_setting: "scheduler.kubernetes.start_timeout_seconds",
        };
        let states = self.updates(container_id).map(|update| update.map(|update| update.progress(progress)));
        wait.until_ended(states).await
    }

    async fn output_since_start(&self, container_id: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.get(container_id).await?;
        Ok(self.output(container_id, true))
    }

    async fn logs(&self, container_id: &str, follow: bool) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.get(container_id).await?;
        Ok(self.output(container_id, follow))
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerInfo> {
        Ok(self.info(&self.get(container_id).await?))
    }

    async fn find(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>> {
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", label_value(v))).collect();
        let list = self
            .pods
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .map_err(self.error("list pods"))?;
        Ok(list
            .items
            .iter()
            .filter(|pod| {
                // The selector matched shortened values; the annotations hold the exact ones.
                let annotations = pod.metadata.annotations.as_ref();
                labels.iter().all(|(k, v)| annotations.and_then(|a| a.get(k)) == Some(v))
            })
            .filter(|pod| pod.metadata.labels.as_ref().is_some_and(|l| l.contains_key(POD_LABEL)))
            .map(|pod| self.info(pod))
            .collect())
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> Result<()> {
        let params = DeleteParams::default().grace_period(u32::try_from(grace.as_secs()).unwrap_or(u32::MAX));
        self.pods.delete(container_id, &params).await.map_err(self.pod_error(container_id, "stop"))?;
        Ok(())
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        match self.pods.delete(container_id, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(self.pod_error(container_id, "remove")(e)),
        }
        self.remove_companions(container_id).await
    }
}
