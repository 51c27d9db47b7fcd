//! The Nomad scheduler: one parameterized batch job per task attempt, dispatched to start it, through Nomad's HTTP
//! API.
//!
//! A registered parameterized job runs nothing; `start` dispatches it (with the job's id as the idempotency token, so
//! a retried start never runs it twice). Completion is learned from blocking queries on the dispatched job's
//! allocations, never by polling; the exit code and OOM kill come from the task's `Terminated` event, an image pull
//! failure from its `Driver Failure` event. Output is the allocation's stdout and stderr logs, followed from byte
//! offsets (a broken stream resumes where it stopped); Nomad never ends a followed log, so once the allocation is
//! finished the rest is read unfollowed. Only jobs carrying Gofer's meta are found.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use gofer_scheduler::cluster::{Progress, Update, Wait, produced};
use gofer_scheduler::{ContainerInfo, ContainerSpec, ContainerState, Error, Result, Scheduler, Started};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

#[cfg(feature = "fake")]
pub mod fake;
pub mod job;

pub use job::Settings;

use job::{NAME_META, PORT_LABEL, TASK, job_id};

/// What to do when the API does not answer.
const HINT: &str = "check scheduler.nomad (address, token, TLS files) and that the Nomad agent is up";
/// How long calls may fail in a row before a wait gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// How long one blocking query waits for a change.
const BLOCK_FOR: &str = "60s";

/// The Nomad backend. Cheap to clone.
#[derive(Clone)]
pub struct NomadScheduler {
    api: Arc<Api>,
    settings: Arc<Settings>,
    description: String,
}

impl std::fmt::Debug for NomadScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NomadScheduler").field("description", &self.description).finish_non_exhaustive()
    }
}

/// A failed call: the API's answer, or no answer.
#[derive(Debug)]
enum Failure {
    Status(u16, String),
    Transport(reqwest::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(code, body) => write!(f, "Nomad answered {code}: {}", body.trim()),
            Failure::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    fn status(&self) -> Option<u16> {
        match self {
            Failure::Status(code, _) => Some(*code),
            Failure::Transport(_) => None,
        }
    }
}

/// Nomad's HTTP API, in the configured namespace and region.
struct Api {
    http: reqwest::Client,
    base: reqwest::Url,
    settings: Arc<Settings>,
}

impl Api {
    /// The address of `segments` (each escaped, so a dispatched job's `/` stays in its segment) with `query`.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("namespace", &self.settings.namespace);
            if let Some(region) = &self.settings.region {
                pairs.append_pair("region", region);
            }
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.settings.token {
            request = request.header("X-Nomad-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(Failure::Transport)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status().as_u16();
        Err(Failure::Status(code, response.text().await.unwrap_or_default()))
    }

    /// A read, with the index of what it read (`X-Nomad-Index`) for blocking queries.
    async fn get<T: DeserializeOwned>(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<(T, u64), Failure> {
        let response = self.send(reqwest::Method::GET, self.url(segments, query), None).await?;
        let index = response
            .headers()
            .get("X-Nomad-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((response.json().await.map_err(Failure::Transport)?, index))
    }

    async fn write(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let response = self.send(method, self.url(segments, query), body).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct JobStub {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ParentID")]
    parent_id: String,
    meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TaskEvent {
    #[serde(rename = "Type")]
    kind: String,
    display_message: String,
    message: String,
    details: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TaskState {
    state: String,
    failed: bool,
    events: Vec<TaskEvent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct AllocStub {
    #[serde(rename = "ID")]
    id: String,
    client_status: String,
    client_description: String,
    task_states: Option<BTreeMap<String, TaskState>>,
    create_index: u64,
}

/// What Gofer knows of one container (a registered job): its dispatched run and that run's allocation, if any.
#[derive(Debug, Clone, Default)]
struct View {
    job: String,
    meta: BTreeMap<String, String>,
    image: String,
    dispatched: Option<String>,
    alloc: Option<AllocStub>,
    /// The dispatched run (or the service) was deregistered.
    stopped: bool,
    /// Why Nomad could not place it yet, from its evaluations.
    unplaced: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Registered, not dispatched: nothing runs.
    Gated,
    /// Dispatched, not running yet (no node, pulling the image…), with the last thing Nomad said.
    Pending(String),
    Running,
    Terminated {
        code: i64,
        oom_killed: bool,
    },
    ImageError(String),
    /// The task failed without running (the driver refused it) or its node was lost.
    Failed(String),
}

impl View {
    fn task(&self) -> Option<&TaskState> {
        self.alloc.as_ref()?.task_states.as_ref()?.get(TASK)
    }

    fn phase(&self) -> Phase {
        if self.dispatched.is_none() {
            return Phase::Gated;
        }
        let Some(alloc) = &self.alloc else {
            if self.stopped {
                return Phase::Failed("it was stopped before Nomad placed it".into());
            }
            let why = self.unplaced.clone().unwrap_or_else(|| "waiting for Nomad to place it".into());
            return Phase::Pending(why);
        };
        let task = self.task().cloned().unwrap_or_default();
        let said = |e: &TaskEvent| {
            let words = if e.display_message.is_empty() { &e.message } else { &e.display_message };
            format!("{}: {words}", e.kind)
        };
        if let Some(ended) = task.events.iter().rev().find(|e| e.kind == "Terminated") {
            let code = ended.details.get("exit_code").and_then(|c| c.parse().ok()).unwrap_or(-1);
            let oom_killed = ended.details.get("oom_killed").is_some_and(|o| o == "true");
            return Phase::Terminated { code, oom_killed };
        }
        if let Some(failure) = task.events.iter().rev().find(|e| e.kind == "Driver Failure") {
            let error = failure.details.get("driver_error").cloned().unwrap_or_else(|| said(failure));
            if error.contains("Failed to pull") || error.contains("Failed to find docker auth") {
                return Phase::ImageError(error);
            }
            if task.state == "dead" || task.failed {
                return Phase::Failed(error);
            }
        }
        if alloc.client_status == "lost" {
            return Phase::Failed(format!("the allocation's node was lost: {}", alloc.client_description));
        }
        match task.state.as_str() {
            _ if self.stopped && task.state != "running" => Phase::Failed("it was stopped before its task ran".into()),
            "running" => Phase::Running,
            "dead" => Phase::Failed(task.events.last().map_or_else(|| alloc.client_description.clone(), said)),
            _ if matches!(alloc.client_status.as_str(), "failed" | "complete") => {
                Phase::Failed(format!("the allocation ended {}: {}", alloc.client_status, alloc.client_description))
            }
            _ => Phase::Pending(task.events.last().map_or_else(|| "pending".to_string(), said)),
        }
    }
}

impl View {
    /// The phase as the wait for the end takes it.
    fn progress(&self) -> Progress {
        match self.phase() {
            Phase::Gated => Progress::Created,
            Phase::Pending(words) => Progress::Pending(words),
            Phase::Running => Progress::Running,
            Phase::Terminated { code, .. } => Progress::Ended(code),
            Phase::ImageError(words) => {
                Progress::Failed(Error::Image { image: self.image.clone(), source: Error::cause(words) })
            }
            Phase::Failed(words) => {
                Progress::Failed(Error::Engine { action: format!("run job {}", self.job), source: Error::cause(words) })
            }
        }
    }
}

impl NomadScheduler {
    /// Connects to the agent, checks that it answers and that Gofer may list jobs in its namespace.
    pub async fn connect(settings: Settings) -> Result<Self> {
        let endpoint = settings.address.clone();
        let unreachable = |e: Box<dyn std::error::Error + Send + Sync>| Error::Unreachable {
            endpoint: endpoint.clone(),
            hint: HINT.into(),
            source: e,
        };
        let base = settings.address.parse::<reqwest::Url>().map_err(|e| unreachable(Box::new(e)))?;
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(path) = &settings.ca_cert {
            let pem = std::fs::read(path).map_err(|e| unreachable(Box::new(e)))?;
            http =
                http.add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| unreachable(Box::new(e)))?);
        }
        if let (Some(cert), Some(key)) = (&settings.client_cert, &settings.client_key) {
            let mut pem = std::fs::read(cert).map_err(|e| unreachable(Box::new(e)))?;
            pem.extend(std::fs::read(key).map_err(|e| unreachable(Box::new(e)))?);
            http = http.identity(reqwest::Identity::from_pem(&pem).map_err(|e| unreachable(Box::new(e)))?);
        }
        let http = http.build().map_err(|e| unreachable(Box::new(e)))?;
        let settings = Arc::new(settings);
        let api = Arc::new(Api { http, base, settings: settings.clone() });
        let (leader, _) = api.get::<String>(&["status", "leader"], &[]).await.map_err(|e| match e {
            Failure::Transport(_) => unreachable(Box::new(e)),
            Failure::Status(..) => Error::Engine { action: "ask Nomad for its leader".into(), source: Box::new(e) },
        })?;
        api.get::<Vec<JobStub>>(&["jobs"], &[("prefix", "gofer-"), ("per_page", "1")]).await.map_err(|e| {
            Error::Engine {
                action: format!(
                    "list jobs in namespace {} (give Gofer's token the policy in docs/schedulers.md)",
                    settings.namespace
                ),
                source: Box::new(e),
            }
        })?;
        Ok(Self {
            description: format!("nomad at {} (leader {leader}), namespace {}", settings.address, settings.namespace),
            api,
            settings,
        })
    }

    fn engine(&self, action: impl Into<String>) -> impl FnOnce(Failure) -> Error {
        let (action, endpoint) = (action.into(), self.settings.address.clone());
        move |e| match e {
            Failure::Transport(_) => Error::Unreachable { endpoint, hint: HINT.into(), source: Box::new(e) },
            Failure::Status(..) => Error::Engine { action, source: Box::new(e) },
        }
    }

    fn job_error(&self, job: &str, action: &str) -> impl FnOnce(Failure) -> Error {
        let (job, engine) = (job.to_string(), self.engine(format!("{action} job {job}")));
        move |e| {
            if e.status() == Some(404) {
                Error::NoSuchContainer { container: job, source: Box::new(e) }
            } else {
                engine(e)
            }
        }
    }

    /// The registered job and its dispatched run's allocation now; `None` when the job is gone.
    async fn view(&self, job: &str) -> Result<Option<View>, Failure> {
        let registered: Value = match self.api.get(&["job", job], &[]).await {
            Ok((registered, _)) => registered,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta: BTreeMap<String, String> = serde_json::from_value(registered["Meta"].clone()).unwrap_or_default();
        let image = registered["TaskGroups"][0]["Tasks"][0]["Config"]["image"].as_str().unwrap_or_default().to_string();
        let dispatched = if registered["Type"] == "service" {
            // A service (an extension) runs as itself once registered running, and stays started once stopped.
            Some(job.to_string())
        } else {
            let prefix = format!("{job}/dispatch-");
            let (children, _) = self.api.get::<Vec<JobStub>>(&["jobs"], &[("prefix", &prefix)]).await?;
            children.into_iter().map(|c| c.id).min()
        };
        let alloc = match &dispatched {
            Some(child) => {
                let (allocs, _) = self.api.get::<Vec<AllocStub>>(&["job", child, "allocations"], &[]).await?;
                allocs.into_iter().max_by_key(|a| a.create_index)
            }
            None => None,
        };
        // A service registered stopped that never ran is only created.
        let never_ran = registered["Type"] == "service" && registered["Stop"] == true && alloc.is_none();
        let dispatched = dispatched.filter(|_| !never_ran);
        let stopped = match &dispatched {
            Some(run) if run == job => registered["Stop"] == true,
            Some(run) => match self.api.get::<Value>(&["job", run], &[]).await {
                Ok((run, _)) => run["Stop"] == true,
                Err(e) if e.status() == Some(404) => true,
                Err(e) => return Err(e),
            },
            None => false,
        };
        let unplaced = match (&dispatched, &alloc) {
            (Some(run), None) => self.placement_failure(run).await?,
            _ => None,
        };
        Ok(Some(View { job: job.to_string(), meta, image, dispatched, alloc, stopped, unplaced }))
    }

    /// Why Nomad placed no allocation of `job`, from its latest evaluation that failed to place one: how many nodes
    /// it looked at, and which constraints and resources ruled them out.
    async fn placement_failure(&self, job: &str) -> Result<Option<String>, Failure> {
        let (evaluations, _) = self.api.get::<Vec<Value>>(&["job", job, "evaluations"], &[]).await?;
        let failed = evaluations
            .iter()
            .filter(|e| e["FailedTGAllocs"].as_object().is_some_and(|f| !f.is_empty()))
            .max_by_key(|e| e["CreateIndex"].as_u64().unwrap_or(0));
        let Some(metric) = failed.and_then(|e| e["FailedTGAllocs"][TASK].as_object()) else { return Ok(None) };
        let count = |key: &str| metric.get(key).and_then(Value::as_u64).unwrap_or(0);
        let mut words = vec![format!(
            "no node fits ({} evaluated, {} filtered, {} exhausted)",
            count("NodesEvaluated"),
            count("NodesFiltered"),
            count("NodesExhausted")
        )];
        for (key, what) in [("ConstraintFiltered", "filtered by"), ("DimensionExhausted", "exhausted:")] {
            for (name, nodes) in metric.get(key).and_then(Value::as_object).into_iter().flatten() {
                words.push(format!("{} node(s) {what} {name}", nodes.as_u64().unwrap_or(0)));
            }
        }
        Ok(Some(words.join("; ")))
    }

    /// The container's views as they change, from blocking queries: now, then after each change, until it is gone.
    fn updates(&self, job: &str) -> BoxStream<'static, Result<Update<View>>> {
        let (this, job) = (self.clone(), job.to_string());
        produced(8, move |sender| async move { this.watch_job(&job, &sender).await })
    }

    async fn watch_job(&self, job: &str, sender: &mpsc::Sender<Result<Update<View>>>) {
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut index = 0u64;
        loop {
            let view = match self.view(job).await {
                Ok(Some(view)) => view,
                Ok(None) => {
                    let _ = sender.send(Ok(Update::Gone)).await;
                    return;
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() > GIVE_UP_AFTER {
                        let _ = sender.send(Err(self.engine(format!("follow job {job}"))(e))).await;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            failing_since = None;
            let child = view.dispatched.clone();
            if sender.send(Ok(Update::Seen(Box::new(view)))).await.is_err() {
                return;
            }
            // Block until something changes: the dispatched run's allocations, or (before a dispatch) the jobs.
            let index_text = index.to_string();
            let query = [("index", index_text.as_str()), ("wait", BLOCK_FOR)];
            let blocked = match &child {
                Some(child) => self.api.get::<Value>(&["job", child, "allocations"], &query).await,
                None => self.api.get::<Value>(&["jobs"], &[&[("prefix", job)][..], &query].concat()).await,
            };
            match blocked {
                Ok((_, seen)) => index = seen.max(index),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// The task's output: once it runs, its stdout and stderr logs followed from byte offsets, merged as they come;
    /// once the allocation finished, the rest read unfollowed (Nomad never ends a followed log).
    fn output(&self, job: &str, follow: bool) -> BoxStream<'static, Result<Bytes>> {
        let (this, job) = (self.clone(), job.to_string());
        produced(16, move |sender| async move { this.copy_output(&job, follow, &sender).await })
    }

    async fn copy_output(&self, job: &str, follow: bool, sender: &mpsc::Sender<Result<Bytes>>) {
        let mut updates = self.updates(job);
        let (alloc, finished) = loop {
            match updates.next().await {
                Some(Ok(Update::Seen(view))) => match view.phase() {
                    Phase::Running => break (view.alloc.map(|a| a.id).unwrap_or_default(), false),
                    Phase::Terminated { .. } => break (view.alloc.map(|a| a.id).unwrap_or_default(), true),
                    // Not followed, the log of a task not running yet is empty now.
                    Phase::Gated | Phase::Pending(_) if !follow => return,
                    Phase::Gated | Phase::Pending(_) => {}
                    Phase::ImageError(_) | Phase::Failed(_) => return,
                },
                Some(Ok(Update::Gone)) | None => return,
                Some(Err(e)) => {
                    let _ = sender.send(Err(e)).await;
                    return;
                }
            }
        };
        let offsets = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        if follow && !finished {
            let (stop, stopped) = watch::channel(false);
            let readers: Vec<_> = ["stdout", "stderr"]
                .into_iter()
                .zip(&offsets)
                .map(|(kind, offset)| self.follow_log(&alloc, kind, offset.clone(), sender.clone(), stopped.clone()))
                .collect();
            let readers = futures::future::join_all(readers);
            let ended = async {
                while let Some(update) = updates.next().await {
                    match update {
                        Ok(Update::Seen(view)) if matches!(view.phase(), Phase::Running | Phase::Pending(_)) => {}
                        _ => return,
                    }
                }
            };
            tokio::pin!(readers);
            tokio::select! {
                _ = &mut readers => {}
                () = ended => {
                    let _ = stop.send(true);
                    readers.await;
                }
            }
        }
        drop(updates);
        // What the followers did not get (or everything, unfollowed): read to the end from where they stopped.
        for (kind, offset) in ["stdout", "stderr"].into_iter().zip(&offsets) {
            if let Err(e) = self.read_log(&alloc, kind, offset, false, sender, None).await {
                if e.status() != Some(404) {
                    let _ = sender.send(Err(self.engine(format!("read the {kind} of allocation {alloc}"))(e))).await;
                }
                return;
            }
        }
    }

    /// Follows one log from its offset until told to stop, resuming after broken streams.
    async fn follow_log(
        &self,
        alloc: &str,
        kind: &'static str,
        offset: Arc<AtomicU64>,
        sender: mpsc::Sender<Result<Bytes>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            let read = self.read_log(alloc, kind, &offset, true, &sender, Some(&mut stop));
            match read.await {
                Ok(()) if *stop.borrow() => return,
                Ok(()) => {}
                Err(e) => tracing::debug!(alloc, kind, error = %e, "a followed Nomad log broke; resuming"),
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// Reads one log from `offset` (plain bytes), advancing it by what was delivered; with `stop`, until told.
    async fn read_log(
        &self,
        alloc: &str,
        kind: &str,
        offset: &AtomicU64,
        follow: bool,
        sender: &mpsc::Sender<Result<Bytes>>,
        mut stop: Option<&mut watch::Receiver<bool>>,
    ) -> Result<(), Failure> {
        let from = offset.load(Ordering::SeqCst).to_string();
        let follow_text = follow.to_string();
        let query = [
            ("task", TASK),
            ("type", kind),
            ("origin", "start"),
            ("offset", from.as_str()),
            ("plain", "true"),
            ("follow", follow_text.as_str()),
        ];
        let url = self.api.url(&["client", "fs", "logs", alloc], &query);
        let response = self.api.send(reqwest::Method::GET, url, None).await?;
        let mut body = response.bytes_stream();
        loop {
            let next = match stop.as_deref_mut() {
                Some(stop) => tokio::select! {
                    next = body.next() => next,
                    _ = stop.changed() => return Ok(()),
                },
                None => body.next().await,
            };
            match next {
                Some(Ok(chunk)) => {
                    offset.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    if sender.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(Failure::Transport(e)),
                None => return Ok(()),
            }
        }
    }

    /// The endpoint of an extension's port: the allocation's host address and port for the label.
    async fn endpoint(&self, alloc: &str) -> Option<String> {
        let (full, _) = self.api.get::<Value>(&["allocation", alloc], &[]).await.ok()?;
        let ports = full["AllocatedResources"]["Shared"]["Ports"].as_array()?;
        let port = ports.iter().find(|p| p["Label"] == PORT_LABEL)?;
        Some(format!("{}:{}", port["HostIP"].as_str()?, port["Value"].as_u64()?))
    }

    async fn info(&self, view: &View) -> ContainerInfo {
        let phase = view.phase();
        let state = match phase {
            Phase::Gated => ContainerState::Created,
            Phase::Terminated { .. } | Phase::Failed(_) => ContainerState::Exited,
            Phase::Pending(_) | Phase::Running | Phase::ImageError(_) => ContainerState::Running,
        };
        let (exit_code, oom_killed) = match phase {
            Phase::Terminated { code, oom_killed } => (Some(code), oom_killed),
            _ => (None, false),
        };
        let endpoint = match (&phase, &view.alloc) {
            (Phase::Running, Some(alloc)) => self.endpoint(&alloc.id).await,
            _ => None,
        };
        ContainerInfo {
            id: view.job.clone(),
            name: view.meta.get(NAME_META).cloned().unwrap_or_else(|| view.job.clone()),
            state,
            exit_code,
            // Nomad does not report the digest of the image a task ran.
            image_digest: None,
            labels: view
                .meta
                .iter()
                .filter(|(k, _)| k.as_str() != NAME_META)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            endpoint,
            oom_killed,
            // Nomad's exit message repeats the code ("Docker container exited with non-zero exit code: 3").
            exit_message: None,
        }
    }

    async fn deregister(&self, job: &str, purge: bool) -> Result<(), Failure> {
        let purge = purge.to_string();
        self.api.write(reqwest::Method::DELETE, &["job", job], &[("purge", &purge)], None).await.map(|_| ())
    }
}

#[async_trait]
impl Scheduler for NomadScheduler {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let id = job_id(&spec.name);
        let body = job::job(spec, &self.settings);
        self.api
            .write(reqwest::Method::PUT, &["jobs"], &[], Some(&body))
            .await
            .map_err(self.engine(format!("register job {id}")))?;
        Ok(id)
    }

    async fn start(&self, container_id: &str) -> Result<Started> {
        let registered = match self.api.get::<Value>(&["job", container_id], &[]).await {
            Ok((registered, _)) => registered,
            Err(e) => return Err(self.job_error(container_id, "start")(e)),
        };
        let dispatched = if registered["Type"] == "service" {
            let mut running = registered;
            running["Stop"] = json!(false);
            self.api.write(reqwest::Method::PUT, &["jobs"], &[], Some(&json!({ "Job": running }))).await
        } else {
            // The job's id as the idempotency token: a start that is tried again finds the run it made.
            let token = [("idempotency_token", container_id)];
            self.api.write(reqwest::Method::POST, &["job", container_id, "dispatch"], &token, Some(&json!({}))).await
        };
        if let Err(e) = dispatched {
            let failed = self.job_error(container_id, "dispatch")(e);
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
            kind: "job",
            container: container_id,
            start_timeout: self.settings.start_timeout,
            timeout_setting: "scheduler.nomad.start_timeout_seconds",
        };
        let states = self.updates(container_id).map(|update| update.map(|update| update.progress(View::progress)));
        wait.until_ended(states).await
    }

    async fn output_since_start(&self, container_id: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.inspect(container_id).await?;
        Ok(self.output(container_id, true))
    }

    async fn logs(&self, container_id: &str, follow: bool) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.inspect(container_id).await?;
        Ok(self.output(container_id, follow))
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerInfo> {
        match self.view(container_id).await {
            Ok(Some(view)) => Ok(self.info(&view).await),
            Ok(None) => Err(Error::NoSuchContainer {
                container: container_id.into(),
                source: Error::cause("Nomad has no such job"),
            }),
            Err(e) => Err(self.job_error(container_id, "read")(e)),
        }
    }

    async fn find(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>> {
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut filter: Vec<String> =
            labels.iter().map(|(k, v)| format!("Meta[\"{}\"] == \"{}\"", quote(k), quote(v))).collect();
        filter.push("ParentID is empty".into());
        let (stubs, _) = self
            .api
            .get::<Vec<JobStub>>(&["jobs"], &[("filter", &filter.join(" and ")), ("meta", "true")])
            .await
            .map_err(self.engine("list jobs"))?;
        let mut found = Vec::new();
        for stub in stubs.into_iter().filter(|s| s.parent_id.is_empty()) {
            // Older agents send no meta in stubs: the filter matched on the whole job already.
            if stub.meta.as_ref().is_some_and(|meta| labels.iter().any(|(k, v)| meta.get(k) != Some(v))) {
                continue;
            }
            match self.view(&stub.id).await {
                Ok(Some(view)) => found.push(self.info(&view).await),
                Ok(None) => {}
                Err(e) => return Err(self.engine(format!("read job {}", stub.id))(e)),
            }
        }
        Ok(found)
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> Result<()> {
        // The grace is the task's kill_timeout, set when the job was registered.
        let _ = grace;
        let view = self.view(container_id).await.map_err(self.job_error(container_id, "stop"))?;
        let Some(view) = view else {
            return Err(Error::NoSuchContainer {
                container: container_id.into(),
                source: Error::cause("Nomad has no such job"),
            });
        };
        let target = view.dispatched.unwrap_or_else(|| container_id.to_string());
        self.deregister(&target, false).await.map_err(self.job_error(&target, "stop"))
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        let prefix = format!("{container_id}/dispatch-");
        let children = match self.api.get::<Vec<JobStub>>(&["jobs"], &[("prefix", &prefix)]).await {
            Ok((children, _)) => children,
            Err(e) => return Err(self.engine(format!("list the runs of job {container_id}"))(e)),
        };
        for job in children.iter().map(|c| c.id.as_str()).chain([container_id]) {
            match self.deregister(job, true).await {
                Ok(()) => {}
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(self.engine(format!("remove job {job}"))(e)),
            }
        }
        Ok(())
    }
}
