//! An in-process fake of the part of the Kubernetes API Gofer uses, built from the API reference and k8s-openapi's
//! types: pods (create, read, list and watch with label and field selectors, merge patch, delete with a grace
//! period, log with follow), secrets and services, and `/version`. Its "kubelet" runs each ungated pod as a
//! container on the real Docker engine, so exit codes, output, limits and OOM kills are real.
//!
//! It also does, on demand, what clusters do to clients: bookmarks on every watch, `410 Gone` for a watch from a
//! version it no longer keeps, watches that end early, log streams that break, pods stuck in
//! `ContainerCreating`, image pull back-off and evictions.

// Handlers answer with a response either way (axum's idiom); its size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use gofer_scheduler::cluster::produced;
use gofer_scheduler::{ContainerSpec, Mount, Resources, Scheduler};
use gofer_scheduler_docker::DockerScheduler;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodStatus, Secret, Service,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// What the fake cluster does to its clients, beyond answering.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Each pod's first followed log stream breaks after this many bytes.
    pub cut_logs_after: Option<usize>,
    /// Pods with this image never get past `ContainerCreating`.
    pub stuck_image: Option<String>,
    /// Every watch ends after this many events (bookmarks included).
    pub close_watches_after: Option<usize>,
}

struct Stored {
    version: u64,
    pods: BTreeMap<String, Pod>,
    /// Pod name → its Docker container.
    containers: BTreeMap<String, String>,
    secrets: BTreeMap<String, Value>,
    services: BTreeMap<String, Value>,
    /// Every pod event with its version, for watches that start from an older version.
    history: Vec<(u64, &'static str, Pod)>,
    /// Watches from a version below this get `410 Gone`.
    compacted_below: u64,
    /// Pods whose first log stream was cut already.
    logs_cut: Vec<String>,
    evicted: Vec<String>,
    /// `410 Gone` answers given.
    expired_watches: usize,
    /// Watches started before this generation changed end.
    watch_generation: u64,
    /// Pods ever created.
    created: usize,
}

struct Shared {
    stored: Mutex<Stored>,
    events: broadcast::Sender<(u64, &'static str, Pod)>,
    docker: DockerScheduler,
    /// Persistent volume claim → host directory.
    claims: BTreeMap<String, String>,
    faults: Mutex<Faults>,
    /// Distinguishes this fake's Docker containers.
    tag: String,
}

/// A running fake cluster; dropping it removes its containers.
pub struct FakeCluster {
    pub url: String,
    shared: Arc<Shared>,
}

type Answer = Result<Response, Response>;

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    });
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status(404, "NotFound", format!("{kind} \"{name}\" not found"))
}

fn to_json<T: k8s_openapi::serde::Serialize>(value: &T) -> Response {
    axum::Json(serde_json::to_value(value).unwrap_or_default()).into_response()
}

/// RFC 7386: `patch` merged into `target` (null deletes).
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Whether a pod carries every `key=value` of a label selector and matches a `metadata.name=` field selector.
fn selected(pod: &Pod, labels: Option<&String>, fields: Option<&String>) -> bool {
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let labels_match = labels.is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|pair| match pair.split_once('=') {
            Some((k, v)) => pod_labels.get(k).map(String::as_str) == Some(v),
            None => pod_labels.contains_key(pair),
        })
    });
    let fields_match = fields.is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|pair| match pair.split_once('=') {
            Some(("metadata.name", name)) => pod.metadata.name.as_deref() == Some(name),
            _ => false,
        })
    });
    labels_match && fields_match
}

/// What a kubelet makes of a command, an argument or a variable's value: `$(NAME)` is the variable's value when it
/// is defined, `$$` is `$`.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')'))
            && let Some(defined) = env.get(name)
        {
            out.push_str(defined);
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn container_status(state: ContainerState, image_id: &str) -> ContainerStatus {
    ContainerStatus {
        name: "task".into(),
        image: "busybox:latest".into(),
        image_id: image_id.into(),
        state: Some(state),
        ..Default::default()
    }
}

impl Shared {
    /// Stores a changed pod under a new version and tells the watches.
    fn commit(&self, stored: &mut Stored, kind: &'static str, mut pod: Pod) {
        stored.version += 1;
        pod.metadata.resource_version = Some(stored.version.to_string());
        let name = pod.metadata.name.clone().unwrap_or_default();
        if kind == "DELETED" {
            stored.pods.remove(&name);
        } else {
            stored.pods.insert(name, pod.clone());
        }
        stored.history.push((stored.version, kind, pod.clone()));
        let _ = self.events.send((stored.version, kind, pod));
    }

    /// Changes a stored pod's status, if it is still there.
    fn set_status(&self, name: &str, change: impl FnOnce(&mut PodStatus)) {
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut pod) = stored.pods.get(name).cloned() else { return };
        let mut status = pod.status.take().unwrap_or_default();
        change(&mut status);
        pod.status = Some(status);
        self.commit(&mut stored, "MODIFIED", pod);
    }

    /// The kubelet's part for one ungated pod: make its container, run it, report every state.
    async fn run_pod(self: Arc<Self>, name: String) {
        let Some(pod) = self.stored.lock().unwrap_or_else(|e| e.into_inner()).pods.get(&name).cloned() else { return };
        let spec = pod.spec.clone().unwrap_or_default();
        let container = spec.containers.first().cloned().unwrap_or_default();
        let image = container.image.clone().unwrap_or_default();
        let waiting = |reason: &str, message: &str| {
            let state = ContainerState {
                waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: Some(message.into()) }),
                ..Default::default()
            };
            move |status: &mut PodStatus| {
                status.phase = Some("Pending".into());
                status.conditions = Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    ..Default::default()
                }]);
                status.container_statuses = Some(vec![container_status(state, "")]);
            }
        };
        self.set_status(&name, waiting("ContainerCreating", ""));
        if self.faults.lock().unwrap_or_else(|e| e.into_inner()).stuck_image.as_deref() == Some(image.as_str()) {
            return;
        }
        let limits = container.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
        let context = container.security_context.clone().unwrap_or_default();
        let mut mounts = Vec::new();
        for volume in spec.volumes.iter().flatten() {
            let Some(claim) = &volume.persistent_volume_claim else { continue };
            let Some(path) = self.claims.get(&claim.claim_name) else {
                let words = format!("persistentvolumeclaim \"{}\" not found", claim.claim_name);
                return self.set_status(&name, waiting("ContainerCreating", &words));
            };
            let target = container.volume_mounts.iter().flatten().find(|m| m.name == volume.name);
            if let Some(target) = target {
                let read_only = target.read_only.unwrap_or(false);
                mounts.push(Mount { source: path.clone(), target: target.mount_path.clone(), read_only });
            }
        }
        let env: BTreeMap<String, String> =
            container.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
        let expand_all =
            |list: &Option<Vec<String>>| list.as_ref().map(|l| l.iter().map(|a| expand(a, &env)).collect());
        let docker_spec = ContainerSpec {
            name: format!("fakekube-{}-{name}", self.tag),
            image: image.clone(),
            always_pull: false,
            registry_auth: None,
            env: env.iter().map(|(k, v)| (k.clone(), expand(v, &env))).collect(),
            entrypoint: expand_all(&container.command),
            command: expand_all(&container.args),
            labels: BTreeMap::from([
                (gofer_scheduler::labels::MANAGED.to_string(), "true".to_string()),
                ("dev.gofer.fakekube".to_string(), self.tag.clone()),
            ]),
            expose_port: None,
            shared_network: None,
            resources: Resources {
                cpu_millicores: limits.get("cpu").and_then(|q| q.0.trim_end_matches('m').parse().ok()),
                memory_bytes: limits.get("memory").and_then(|q| q.0.parse().ok()),
                working_dir: container.working_dir.clone(),
                user: context.run_as_user.map(|uid| match context.run_as_group {
                    Some(gid) => format!("{uid}:{gid}"),
                    None => uid.to_string(),
                }),
                mounts,
            },
        };
        let id = match self.docker.create(&docker_spec).await {
            Ok(id) => id,
            Err(e) => {
                let words = format!("Failed to pull image \"{image}\": {e}");
                self.set_status(&name, waiting("ErrImagePull", &words));
                tokio::time::sleep(Duration::from_millis(100)).await;
                return self
                    .set_status(&name, waiting("ImagePullBackOff", &format!("Back-off pulling image \"{image}\"")));
            }
        };
        self.stored.lock().unwrap_or_else(|e| e.into_inner()).containers.insert(name.clone(), id.clone());
        let started = match self.docker.start(&id).await {
            Ok(started) => started,
            Err(e) => {
                // As a kubelet reports a container that cannot start when the pod never restarts.
                let mut words = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    words = format!("{words}: {cause}");
                    source = cause.source();
                }
                let failed = ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 128,
                        reason: Some("StartError".into()),
                        message: Some(words),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                return self.set_status(&name, move |status| {
                    status.phase = Some("Failed".into());
                    status.container_statuses = Some(vec![container_status(failed, "")]);
                });
            }
        };
        drop(started.output);
        let digest = self.docker.inspect(&id).await.ok().and_then(|i| i.image_digest).unwrap_or_default();
        let image_id = format!("docker-pullable://busybox@{digest}");
        let running = ContainerState { running: Some(ContainerStateRunning::default()), ..Default::default() };
        let running_id = image_id.clone();
        self.set_status(&name, move |status| {
            status.phase = Some("Running".into());
            status.container_statuses = Some(vec![container_status(running, &running_id)]);
        });
        let code = self.docker.wait(&id).await.unwrap_or(-1);
        let oom = self.docker.inspect(&id).await.map(|i| i.oom_killed).unwrap_or(false);
        let evicted = self.stored.lock().unwrap_or_else(|e| e.into_inner()).evicted.contains(&name);
        let reason = if oom {
            "OOMKilled"
        } else if code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let ended = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: i32::try_from(code).unwrap_or(-1),
                reason: Some(reason.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.set_status(&name, move |status| {
            status.phase = Some(if code == 0 && !evicted { "Succeeded" } else { "Failed" }.into());
            if evicted {
                status.reason = Some("Evicted".into());
                status.message = Some("The node was low on resource: memory.".into());
            }
            status.container_statuses = Some(vec![container_status(ended, &image_id)]);
        });
    }

    /// Deletes a pod: at once when nothing of it runs, else after its container was stopped within the grace.
    async fn delete_pod(self: Arc<Self>, name: String, grace: Duration) {
        let container = self.stored.lock().unwrap_or_else(|e| e.into_inner()).containers.get(&name).cloned();
        if let Some(id) = &container {
            let _ = self.docker.stop(id, grace).await;
            // The kubelet reports the end before the pod goes.
            let mut events = self.events.subscribe();
            let ended = |pod: &Pod| {
                pod.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some())))
            };
            let done = self.stored.lock().unwrap_or_else(|e| e.into_inner()).pods.get(&name).is_none_or(ended);
            if !done {
                let _ = tokio::time::timeout(Duration::from_secs(30), async {
                    while let Ok((_, _, pod)) = events.recv().await {
                        if pod.metadata.name.as_deref() == Some(&name) && ended(&pod) {
                            return;
                        }
                    }
                })
                .await;
            }
            let _ = self.docker.remove(id).await;
        }
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        stored.containers.remove(&name);
        if let Some(pod) = stored.pods.get(&name).cloned() {
            // Objects the pod owns go with it.
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            stored.secrets.retain(|_, secret| {
                !secret["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
            });
            self.commit(&mut stored, "DELETED", pod);
        }
    }
}

impl FakeCluster {
    /// Starts the fake on a free local port. `claims` maps persistent volume claims to host directories.
    pub async fn start(claims: BTreeMap<String, String>) -> FakeCluster {
        let docker = DockerScheduler::connect().await.expect("a running Docker engine");
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            stored: Mutex::new(Stored {
                version: 1,
                pods: BTreeMap::new(),
                containers: BTreeMap::new(),
                secrets: BTreeMap::new(),
                services: BTreeMap::new(),
                history: Vec::new(),
                compacted_below: 0,
                logs_cut: Vec::new(),
                evicted: Vec::new(),
                expired_watches: 0,
                watch_generation: 0,
                created: 0,
            }),
            events,
            docker,
            claims,
            faults: Mutex::new(Faults::default()),
            tag: format!("{}-{}", std::process::id(), rand_suffix()),
        });
        let namespaced = "/api/v1/namespaces/{namespace}";
        let app = Router::new()
            .route("/version", get(version))
            .route(&format!("{namespaced}/pods"), get(list_or_watch).post(create_pod))
            .route(&format!("{namespaced}/pods/{{name}}"), get(get_pod).patch(patch_pod).delete(delete_pod))
            .route(&format!("{namespaced}/pods/{{name}}/log"), get(pod_log))
            .route(&format!("{namespaced}/secrets"), get(list_secrets).post(create_secret))
            .route(&format!("{namespaced}/secrets/{{name}}"), get(get_secret).patch(patch_secret).delete(delete_secret))
            .route(&format!("{namespaced}/services"), get(list_services).post(create_service))
            .route(&format!("{namespaced}/services/{{name}}"), get(get_service).delete(delete_service))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeCluster { url, shared }
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Forgets the history: every watch resuming from an older version gets `410 Gone`.
    pub fn compact(&self) {
        let mut stored = self.shared.stored.lock().unwrap_or_else(|e| e.into_inner());
        stored.compacted_below = stored.version + 1;
        stored.history.clear();
    }

    /// Ends every open watch, as an API server that restarts does.
    pub fn close_watches(&self) {
        self.shared.stored.lock().unwrap_or_else(|e| e.into_inner()).watch_generation += 1;
    }

    /// Evicts a running pod, as a node under memory pressure does.
    pub async fn evict(&self, pod: &str) {
        let container = {
            let mut stored = self.shared.stored.lock().unwrap_or_else(|e| e.into_inner());
            stored.evicted.push(pod.to_string());
            stored.containers.get(pod).cloned()
        };
        if let Some(id) = container {
            let _ = self.shared.docker.stop(&id, Duration::ZERO).await;
        }
    }

    /// How many watches were answered `410 Gone`, and how many log streams were cut.
    pub fn faults_served(&self) -> (usize, usize) {
        let stored = self.shared.stored.lock().unwrap_or_else(|e| e.into_inner());
        (stored.expired_watches, stored.logs_cut.len())
    }

    /// Drops a pod from the store without deleting what it owns, as a crash between creating a pull secret and its
    /// pod leaves that secret.
    pub fn forget_pod(&self, name: &str) {
        self.shared.stored.lock().unwrap_or_else(|e| e.into_inner()).pods.remove(name);
    }

    /// How many pods were ever created.
    pub fn pods_created(&self) -> usize {
        self.shared.stored.lock().unwrap_or_else(|e| e.into_inner()).created
    }

    /// The pods the cluster holds.
    pub fn pod_names(&self) -> Vec<String> {
        self.shared.stored.lock().unwrap_or_else(|e| e.into_inner()).pods.keys().cloned().collect()
    }

    /// The stored pod, as the API would give it.
    pub fn pod(&self, name: &str) -> Option<Pod> {
        self.shared.stored.lock().unwrap_or_else(|e| e.into_inner()).pods.get(name).cloned()
    }

    pub fn secret(&self, name: &str) -> Option<Value> {
        self.shared.stored.lock().unwrap_or_else(|e| e.into_inner()).secrets.get(name).cloned()
    }

    pub fn service(&self, name: &str) -> Option<Value> {
        self.shared.stored.lock().unwrap_or_else(|e| e.into_inner()).services.get(name).cloned()
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let filter = format!("label=dev.gofer.fakekube={}", self.shared.tag);
        let ids = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output();
        if let Ok(out) = ids {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output();
            }
        }
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{nanos:x}")
}

async fn version() -> Response {
    to_json(&json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "", "gitTreeState": "",
        "buildDate": "", "goVersion": "", "compiler": "", "platform": "linux/amd64" }))
}

async fn list_or_watch(State(shared): State<Arc<Shared>>, Query(query): Query<BTreeMap<String, String>>) -> Answer {
    let (labels, fields) = (query.get("labelSelector"), query.get("fieldSelector"));
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return Ok(watch(shared, &query));
    }
    let stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    let items: Vec<&Pod> = stored.pods.values().filter(|p| selected(p, labels, fields)).collect();
    Ok(to_json(&json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": { "resourceVersion": stored.version.to_string() },
        "items": items
    })))
}

/// A watch: events after the version asked for (or `410 Gone` when that version is compacted away), then live
/// ones, with a bookmark after each quiet 200 ms.
fn watch(shared: Arc<Shared>, query: &BTreeMap<String, String>) -> Response {
    let (labels, fields) = (query.get("labelSelector").cloned(), query.get("fieldSelector").cloned());
    let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout = Duration::from_secs(query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(290));
    let close_after = shared.faults.lock().unwrap_or_else(|e| e.into_inner()).close_watches_after;
    let mut live = shared.events.subscribe();
    let (replay, gone, now) = {
        let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
        let replay: Vec<(u64, &'static str, Pod)> =
            stored.history.iter().filter(|(v, _, _)| *v > from).cloned().collect();
        let gone = from != 0 && from < stored.compacted_below;
        stored.expired_watches += usize::from(gone);
        (replay, gone, stored.version)
    };
    let generation = shared.stored.lock().unwrap_or_else(|e| e.into_inner()).watch_generation;
    let line = |value: Value| Ok::<Bytes, std::io::Error>(Bytes::from(format!("{value}\n")));
    if gone {
        let expired = json!({ "type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({now})"), "reason": "Expired", "code": 410 } });
        return Body::from_stream(futures::stream::iter([line(expired)])).into_response();
    }
    let stream = produced(16, move |sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>| async move {
        let mut sent = 0usize;
        let mut last = from;
        let matches = |pod: &Pod| selected(pod, labels.as_ref(), fields.as_ref());
        let deadline = tokio::time::Instant::now() + timeout;
        for (version, kind, pod) in replay {
            if matches(&pod) {
                last = version;
                if sender.send(line(json!({ "type": kind, "object": pod }))).await.is_err() {
                    return;
                }
                sent += 1;
            }
        }
        loop {
            let closed = shared.stored.lock().unwrap_or_else(|e| e.into_inner()).watch_generation != generation;
            if closed || close_after.is_some_and(|n| sent >= n) {
                return;
            }
            let next = tokio::time::timeout(Duration::from_millis(200), live.recv());
            let event = tokio::select! {
                event = next => event,
                () = tokio::time::sleep_until(deadline) => return,
            };
            let out = match event {
                Ok(Ok((version, kind, pod))) if version > last && matches(&pod) => {
                    last = version;
                    json!({ "type": kind, "object": pod })
                }
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return,
                Err(_) => {
                    let version = shared.stored.lock().unwrap_or_else(|e| e.into_inner()).version;
                    json!({ "type": "BOOKMARK", "object": { "kind": "Pod", "apiVersion": "v1",
                        "metadata": { "resourceVersion": version.to_string() } } })
                }
            };
            if sender.send(line(out)).await.is_err() {
                return;
            }
            sent += 1;
        }
    });
    Body::from_stream(stream).into_response()
}

async fn create_pod(State(shared): State<Arc<Shared>>, axum::Json(mut pod): axum::Json<Pod>) -> Answer {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        return Err(status(422, "Invalid", format!("Pod \"{name}\" is invalid: metadata.name: Invalid value")));
    }
    for (key, value) in pod.metadata.labels.iter().flatten() {
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let ok = value.is_empty()
            || (value.len() <= 63 && edge(value.chars().next()) && edge(value.chars().last()))
                && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(status(422, "Invalid", format!("metadata.labels: Invalid value: \"{value}\" ({key})")));
        }
    }
    let gated = {
        let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
        if stored.pods.contains_key(&name) {
            return Err(status(409, "AlreadyExists", format!("pods \"{name}\" already exists")));
        }
        pod.metadata.uid = Some(format!("uid-{name}-{}", stored.version));
        stored.created += 1;
        pod.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
        let gated = pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty());
        if gated {
            let condition = PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("SchedulingGated".into()),
                ..Default::default()
            };
            pod.status = Some(PodStatus {
                phase: Some("Pending".into()),
                conditions: Some(vec![condition]),
                ..Default::default()
            });
        }
        shared.commit(&mut stored, "ADDED", pod);
        gated
    };
    if !gated {
        tokio::spawn(shared.clone().run_pod(name.clone()));
    }
    let stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    Ok((StatusCode::CREATED, axum::Json(stored.pods.get(&name).cloned())).into_response())
}

async fn get_pod(State(shared): State<Arc<Shared>>, Path((_, name)): Path<(String, String)>) -> Answer {
    let stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    stored.pods.get(&name).map(to_json).ok_or_else(|| not_found("pods", &name))
}

async fn patch_pod(
    State(shared): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    axum::Json(patch): axum::Json<Value>,
) -> Answer {
    let ungated = {
        let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
        let pod = stored.pods.get(&name).cloned().ok_or_else(|| not_found("pods", &name))?;
        let gates = |p: &Pod| p.spec.as_ref().and_then(|s| s.scheduling_gates.clone()).unwrap_or_default();
        let mut value = serde_json::to_value(&pod).unwrap_or_default();
        merge_patch(&mut value, &patch);
        let mut patched: Pod = serde_json::from_value(value)
            .map_err(|e| status(422, "Invalid", format!("the patch does not make a pod: {e}")))?;
        if gates(&patched).iter().any(|g| !gates(&pod).contains(g)) {
            return Err(status(422, "Invalid", "spec.schedulingGates: only deletion is allowed".into()));
        }
        let ungated = !gates(&pod).is_empty() && gates(&patched).is_empty();
        if ungated {
            patched.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
        }
        shared.commit(&mut stored, "MODIFIED", patched);
        ungated
    };
    if ungated {
        tokio::spawn(shared.clone().run_pod(name.clone()));
    }
    let stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    Ok(to_json(&stored.pods.get(&name).cloned()))
}

async fn delete_pod(
    State(shared): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Answer {
    let pod = shared.stored.lock().unwrap_or_else(|e| e.into_inner()).pods.get(&name).cloned();
    let pod = pod.ok_or_else(|| not_found("pods", &name))?;
    // DeleteOptions come as the body (what kube sends) or in the query.
    let options: Value = serde_json::from_slice(&body).unwrap_or_default();
    let grace = options["gracePeriodSeconds"]
        .as_u64()
        .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()))
        .unwrap_or(30);
    tokio::spawn(shared.clone().delete_pod(name, Duration::from_secs(grace)));
    Ok(to_json(&pod))
}

async fn pod_log(
    State(shared): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Answer {
    let follow = query.get("follow").is_some_and(|f| f == "true");
    let (container, cut) = {
        let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
        if !stored.pods.contains_key(&name) {
            return Err(not_found("pods", &name));
        }
        let container = stored.containers.get(&name).cloned();
        let cut_after = shared.faults.lock().unwrap_or_else(|e| e.into_inner()).cut_logs_after;
        let cut = match cut_after {
            Some(n) if follow && !stored.logs_cut.contains(&name) => {
                stored.logs_cut.push(name.clone());
                Some(n)
            }
            _ => None,
        };
        (container, cut)
    };
    let Some(container) = container else {
        return Err(status(400, "BadRequest", format!("container \"task\" in pod \"{name}\" is waiting to start")));
    };
    let logs = shared.docker.logs(&container, follow).await.map_err(|e| status(500, "InternalError", e.to_string()))?;
    let mut budget = cut;
    let stream = logs.flat_map(move |chunk| {
        let items: Vec<Result<Bytes, std::io::Error>> = match (chunk, budget.as_mut()) {
            (Err(e), _) => vec![Err(std::io::Error::other(e.to_string()))],
            (Ok(bytes), None) => vec![Ok(bytes)],
            (Ok(_), Some(0)) => vec![Err(std::io::Error::other("cut"))],
            (Ok(bytes), Some(left)) if bytes.len() <= *left => {
                *left -= bytes.len();
                vec![Ok(bytes)]
            }
            (Ok(bytes), Some(left)) => {
                let head = bytes.slice(..*left);
                *left = 0;
                // The connection breaks mid-stream, as a proxy or an API server restart breaks it.
                vec![Ok(head), Err(std::io::Error::other("the log stream was cut"))]
            }
        };
        futures::stream::iter(items)
    });
    Ok(Body::from_stream(stream).into_response())
}

fn stored_object(map: &mut BTreeMap<String, Value>, name: &str, kind: &str) -> Result<Value, Response> {
    map.get(name).cloned().ok_or_else(|| not_found(kind, name))
}

/// The stored objects carrying every `key=value` (or `key`) of a label selector, as a list of `kind`.
fn list_of(objects: &BTreeMap<String, Value>, kind: &str, selector: Option<&String>) -> Response {
    let matches = |object: &Value| {
        selector.is_none_or(|selector| {
            selector.split(',').filter(|s| !s.is_empty()).all(|pair| {
                let labels = &object["metadata"]["labels"];
                match pair.split_once('=') {
                    Some((k, v)) => labels[k].as_str() == Some(v),
                    None => !labels[pair].is_null(),
                }
            })
        })
    };
    let items: Vec<&Value> = objects.values().filter(|o| matches(o)).collect();
    to_json(&json!({ "apiVersion": "v1", "kind": kind, "metadata": {}, "items": items }))
}

async fn list_secrets(State(shared): State<Arc<Shared>>, Query(query): Query<BTreeMap<String, String>>) -> Answer {
    let stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    Ok(list_of(&stored.secrets, "SecretList", query.get("labelSelector")))
}

async fn list_services(State(shared): State<Arc<Shared>>, Query(query): Query<BTreeMap<String, String>>) -> Answer {
    let stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    Ok(list_of(&stored.services, "ServiceList", query.get("labelSelector")))
}

async fn create_secret(State(shared): State<Arc<Shared>>, axum::Json(secret): axum::Json<Secret>) -> Answer {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    if stored.secrets.contains_key(&name) {
        return Err(status(409, "AlreadyExists", format!("secrets \"{name}\" already exists")));
    }
    let mut value = serde_json::to_value(&secret).unwrap_or_default();
    value["metadata"]["creationTimestamp"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
    stored.secrets.insert(name, value.clone());
    Ok((StatusCode::CREATED, axum::Json(value)).into_response())
}

async fn get_secret(State(shared): State<Arc<Shared>>, Path((_, name)): Path<(String, String)>) -> Answer {
    let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    Ok(axum::Json(stored_object(&mut stored.secrets, &name, "secrets")?).into_response())
}

async fn patch_secret(
    State(shared): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    axum::Json(patch): axum::Json<Value>,
) -> Answer {
    let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    let mut value = stored_object(&mut stored.secrets, &name, "secrets")?;
    merge_patch(&mut value, &patch);
    stored.secrets.insert(name, value.clone());
    Ok(axum::Json(value).into_response())
}

async fn delete_secret(State(shared): State<Arc<Shared>>, Path((_, name)): Path<(String, String)>) -> Answer {
    let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    let value = stored.secrets.remove(&name).ok_or_else(|| not_found("secrets", &name))?;
    Ok(axum::Json(value).into_response())
}

async fn create_service(State(shared): State<Arc<Shared>>, axum::Json(service): axum::Json<Service>) -> Answer {
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    if stored.services.contains_key(&name) {
        return Err(status(409, "AlreadyExists", format!("services \"{name}\" already exists")));
    }
    let mut value = serde_json::to_value(&service).unwrap_or_default();
    value["metadata"]["creationTimestamp"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
    stored.services.insert(name, value.clone());
    Ok((StatusCode::CREATED, axum::Json(value)).into_response())
}

async fn get_service(State(shared): State<Arc<Shared>>, Path((_, name)): Path<(String, String)>) -> Answer {
    let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    Ok(axum::Json(stored_object(&mut stored.services, &name, "services")?).into_response())
}

async fn delete_service(State(shared): State<Arc<Shared>>, Path((_, name)): Path<(String, String)>) -> Answer {
    let mut stored = shared.stored.lock().unwrap_or_else(|e| e.into_inner());
    let value = stored.services.remove(&name).ok_or_else(|| not_found("services", &name))?;
    Ok(axum::Json(value).into_response())
}
