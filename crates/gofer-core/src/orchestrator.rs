//! The orchestrator: queues runs within their limits, drives each run's DAG on the scheduler, records every state
//! change in storage and the event log, and stores task logs. It is a library: it needs storage, a scheduler and
//! a log directory, never the HTTP server.
//!
//! One tokio task drives each run. It starts every task whose parents have finished the way it needs, skips the
//! ones whose conditions can no longer be met, and learns of each container's exit from the scheduler's wait call,
//! so a DAG edge costs no more than a channel message. After a restart, runs in flight are resumed: containers
//! still running are re-attached, containers that ended meanwhile give their real exit code and output.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use gofer_api::config::{self, Task};
use gofer_api::epoch_millis;
use gofer_api::models::{
    Attempt, EventKind, Run, RunState, RunStatus, StatusReason, StatusReasonKind, TaskExecution, TaskState, TaskStatus,
    Variable, VariableSource,
};
use gofer_api::permissions::Token;
use gofer_scheduler::{ContainerInfo, ContainerSpec, ContainerState, RegistryAuth, Scheduler, labels};
use gofer_storage::Storage;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dag::{self, Decision};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::logs::{LogKey, LogStore, LogWriter};
use crate::mask::Masker;
use crate::objects::{ObjectScope, Objects};
use crate::secrets::{self, Reference, Secrets, Unavailable};
use crate::tokens;

/// The first wait before storing a run's progress again, doubling up to the most.
const PERSIST_FIRST_DELAY: Duration = Duration::from_millis(100);
const PERSIST_MAX_DELAY: Duration = Duration::from_secs(30);
/// How long removing a finished container is retried while the engine cannot be reached.
const REMOVE_RETRY_FOR: Duration = Duration::from_secs(3600);
/// How long to wait for a container's output stream to end after the container exited.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest object a variable can carry (Linux refuses longer environment strings).
const MAX_OBJECT_VARIABLE: usize = 128 * 1024 - 1;

/// Settings of the orchestrator.
#[derive(Debug, Clone)]
pub struct Options {
    /// Identifies this installation in container names and labels, so two Gofers can share one engine.
    pub installation_id: String,
    /// Handed to every task as `GOFER_API_BASE_URL`.
    pub api_base_url: String,
    /// How long a cancelled or timed-out container gets to stop before it is killed.
    pub stop_grace: Duration,
    /// Runs active at once across the server.
    pub global_limit: usize,
    /// Runs active at once per pipeline, for pipelines that set no parallelism of their own.
    pub pipeline_limit: usize,
    /// The longest any run or task attempt may take; configs asking for more are refused.
    pub max_timeout: Duration,
    /// Keep the logs of this many most recent runs per pipeline; 0 keeps all.
    pub log_retention_runs: u64,
    /// Keep finished containers this long for debugging before removing them; zero removes at once.
    pub keep_containers_for: Duration,
}

/// Identifies a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub run_id: u64,
}

impl RunKey {
    pub fn of(run: &Run) -> Self {
        Self { namespace_id: run.namespace_id.clone(), pipeline_id: run.pipeline_id.clone(), run_id: run.run_id }
    }
}

fn reason(kind: StatusReasonKind, description: &str) -> StatusReason {
    StatusReason { reason: kind, description: description.to_string() }
}

/// Cancellation of one run and its tasks, with the reason given first.
struct RunControl {
    cancel: CancellationToken,
    reason: Mutex<Option<StatusReason>>,
    tasks: Mutex<HashMap<String, (CancellationToken, Option<StatusReason>)>>,
}

impl RunControl {
    fn new() -> Arc<Self> {
        Arc::new(Self { cancel: CancellationToken::new(), reason: Mutex::default(), tasks: Mutex::default() })
    }

    fn cancel(&self, why: StatusReason) {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(why);
        self.cancel.cancel();
    }

    fn reason(&self) -> StatusReason {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| reason(StatusReasonKind::UserCancelled, "the run was cancelled"))
    }

    fn task_token(&self, task_id: &str) -> CancellationToken {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.entry(task_id.to_string()).or_insert_with(|| (self.cancel.child_token(), None)).0.clone()
    }

    fn cancel_task(&self, task_id: &str, why: StatusReason) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tasks.entry(task_id.to_string()).or_insert_with(|| (self.cancel.child_token(), None));
        entry.1.get_or_insert(why);
        entry.0.cancel();
    }

    /// Why a task was cancelled: its own reason, else the run's.
    fn task_reason(&self, task_id: &str) -> StatusReason {
        let own = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(task_id).and_then(|t| t.1.clone());
        own.unwrap_or_else(|| self.reason())
    }
}

struct Queued {
    run: Run,
    config: config::Pipeline,
    control: Arc<RunControl>,
}

/// Which runs wait for a slot and how many are active.
#[derive(Default)]
struct Slots {
    queue: VecDeque<Queued>,
    running: HashMap<(String, String), usize>,
    total: usize,
    controls: HashMap<RunKey, Arc<RunControl>>,
}

/// A handle to the orchestrator. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    scheduler: Arc<dyn Scheduler>,
    logs: LogStore,
    events: Events,
    options: Options,
    slots: Mutex<Slots>,
    tracker: TaskTracker,
    /// Where `pipeline_secret{{...}}` and `global_secret{{...}}` are read from.
    secrets: std::sync::OnceLock<Secrets>,
    /// Where `pipeline_object{{...}}` and `run_object{{...}}` are read from; run objects expire with retention.
    objects: std::sync::OnceLock<Objects>,
}

impl Orchestrator {
    pub fn new(
        options: Options,
        storage: Arc<dyn Storage>,
        scheduler: Arc<dyn Scheduler>,
        logs: LogStore,
        events: Events,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                scheduler,
                logs,
                events,
                options,
                slots: Mutex::default(),
                tracker: TaskTracker::new(),
                secrets: std::sync::OnceLock::new(),
                objects: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Lets tasks read objects, and expires run objects.
    pub fn set_objects(&self, objects: Objects) {
        let _ = self.inner.objects.set(objects);
    }

    /// Lets tasks read secrets. Without a secret store, a task that references one fails its precondition.
    pub fn set_secrets(&self, secrets: Secrets) {
        let _ = self.inner.secrets.set(secrets);
    }

    pub fn logs(&self) -> &LogStore {
        &self.inner.logs
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Queues a stored, pending run; it starts as soon as its pipeline's and the server's limits allow, in order.
    pub async fn enqueue(&self, run: Run) -> Result<()> {
        let config = self.inner.storage.get_config(&run.namespace_id, &run.pipeline_id, run.version).await?.config;
        let key = RunKey::of(&run);
        let control = RunControl::new();
        {
            let mut slots = self.inner.slots();
            slots.controls.insert(key.clone(), control.clone());
            slots.queue.push_back(Queued { run, config, control });
        }
        self.inner
            .events
            .publish(EventKind::RunQueued {
                namespace_id: key.namespace_id,
                pipeline_id: key.pipeline_id,
                run_id: key.run_id,
            })
            .await;
        self.inner.admit();
        Ok(())
    }

    /// Asks a run, or one task of it, to stop: what has not started is cancelled, running containers are stopped
    /// (then killed after the grace period). A queued run is cancelled at once.
    pub async fn cancel(&self, key: &RunKey, task_id: Option<&str>) -> Result<()> {
        let why = reason(StatusReasonKind::UserCancelled, "a user cancelled it");
        let (control, queued) = {
            let mut slots = self.inner.slots();
            let control = slots.controls.get(key).cloned();
            let position = slots.queue.iter().position(|q| RunKey::of(&q.run) == *key);
            let queued = match (task_id, position) {
                (None, Some(i)) => {
                    slots.controls.remove(key);
                    slots.queue.remove(i)
                }
                _ => None,
            };
            (control, queued)
        };
        let Some(control) = control else {
            let run = self.inner.storage.get_run(&key.namespace_id, &key.pipeline_id, key.run_id).await?;
            return Err(Error::conflict(format!(
                "run {} of pipeline '{}' is already finished ({})",
                run.run_id, run.pipeline_id, run.status
            )));
        };
        self.inner
            .events
            .publish(EventKind::RunCancelRequested {
                namespace_id: key.namespace_id.clone(),
                pipeline_id: key.pipeline_id.clone(),
                run_id: key.run_id,
                task_id: task_id.map(str::to_string),
            })
            .await;
        if let Some(queued) = queued {
            return self.inner.finish_run(queued.run, RunStatus::Cancelled, Some(why)).await;
        }
        match task_id {
            Some(task) => {
                let execution = self
                    .inner
                    .storage
                    .get_task_execution(&key.namespace_id, &key.pipeline_id, key.run_id, task)
                    .await?;
                if execution.is_complete() {
                    return Err(Error::conflict(format!(
                        "task '{task}' of run {} is already finished ({})",
                        key.run_id, execution.status
                    )));
                }
                control.cancel_task(task, why);
            }
            None => control.cancel(why),
        }
        Ok(())
    }

    /// Picks up what a previous server process left: runs in flight are resumed (their containers re-attached or
    /// their real exit read), queued runs are queued again in order, and finished containers left behind are
    /// removed.
    pub async fn recover(&self) -> Result<()> {
        let unfinished = self.inner.storage.list_unfinished_runs().await?;
        for run in unfinished {
            if run.state == RunState::Pending {
                self.enqueue(run).await?;
                continue;
            }
            let config = self.inner.storage.get_config(&run.namespace_id, &run.pipeline_id, run.version).await?.config;
            tracing::info!(pipeline = %run.pipeline_id, run = run.run_id, "resuming a run left in flight");
            let control = RunControl::new();
            {
                let mut slots = self.inner.slots();
                slots.controls.insert(RunKey::of(&run), control.clone());
                *slots.running.entry((run.namespace_id.clone(), run.pipeline_id.clone())).or_default() += 1;
                slots.total += 1;
            }
            self.inner.spawn_driver(Queued { run, config, control }, true);
        }
        self.inner.sweep_leftover_containers().await;
        Ok(())
    }

    /// Stops accepting work. Containers are left running: the next start resumes the runs they belong to.
    pub fn shutdown(&self) {
        self.inner.tracker.close();
    }

    /// Waits until every run driver has finished (for tests and orderly shutdown).
    pub async fn wait_idle(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

/// Formats an error with its sources, for logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A task's stored values, read right before its container starts.
struct Resolved {
    env: Vec<(String, String)>,
    /// Replaces the secret values among them in the task's output.
    masker: Masker,
    registry_auth: Option<RegistryAuth>,
}

/// How one attempt of a task ended.
struct Outcome {
    status: TaskStatus,
    reason: Option<StatusReason>,
    exit_code: Option<i64>,
}

impl Inner {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pipeline_limit(&self, config: &config::Pipeline) -> usize {
        match usize::try_from(config.parallelism) {
            Ok(n) if n > 0 => n,
            _ => self.options.pipeline_limit,
        }
    }

    /// Starts every queued run that fits, in queue order; a run held back by its pipeline's limit does not hold
    /// back other pipelines' runs.
    fn admit(self: &Arc<Self>) {
        let admitted = {
            let mut slots = self.slots();
            let mut admitted = Vec::new();
            let mut index = 0;
            while index < slots.queue.len() && slots.total < self.options.global_limit {
                let queued = &slots.queue[index];
                let pipeline = (queued.run.namespace_id.clone(), queued.run.pipeline_id.clone());
                let limit = self.pipeline_limit(&queued.config);
                if slots.running.get(&pipeline).copied().unwrap_or(0) >= limit {
                    index += 1;
                    continue;
                }
                if let Some(queued) = slots.queue.remove(index) {
                    *slots.running.entry(pipeline).or_default() += 1;
                    slots.total += 1;
                    admitted.push(queued);
                }
            }
            admitted
        };
        for queued in admitted {
            self.spawn_driver(queued, false);
        }
    }

    fn spawn_driver(self: &Arc<Self>, queued: Queued, resume: bool) {
        let inner = self.clone();
        self.tracker.spawn(async move {
            let key = RunKey::of(&queued.run);
            if let Err(e) = inner.clone().drive(queued, resume).await {
                tracing::error!(run = ?key, error = %error_chain(&e), "run could not be driven to completion");
            }
            {
                let mut slots = inner.slots();
                slots.controls.remove(&key);
                let pipeline = (key.namespace_id.clone(), key.pipeline_id.clone());
                if let Some(count) = slots.running.get_mut(&pipeline) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        slots.running.remove(&pipeline);
                    }
                }
                slots.total = slots.total.saturating_sub(1);
            }
            inner.admit();
        });
    }

    async fn drive(self: Arc<Self>, queued: Queued, resume: bool) -> Result<()> {
        let Queued { mut run, config, control } = queued;
        if !resume {
            run.state = RunState::Running;
            run.started = epoch_millis();
            self.persist("record that a run started", || self.storage.update_run(&run)).await?;
            self.events
                .publish(EventKind::RunStarted {
                    namespace_id: run.namespace_id.clone(),
                    pipeline_id: run.pipeline_id.clone(),
                    run_id: run.run_id,
                })
                .await;
        }
        let run_timeout = self.effective_timeout(config.timeout_seconds);
        let deadline = deadline_from(run.started, run_timeout);

        let mut existing: HashMap<String, TaskExecution> = if resume {
            self.storage
                .list_task_executions(&run.namespace_id, &run.pipeline_id, run.run_id)
                .await?
                .into_iter()
                .map(|t| (t.task_id.clone(), t))
                .collect()
        } else {
            HashMap::new()
        };

        let mut pending: BTreeMap<String, (Task, TaskExecution, LogWriter)> = BTreeMap::new();
        let mut finished: HashMap<String, TaskStatus> = HashMap::new();
        let mut outcomes: HashMap<String, (TaskStatus, Option<StatusReason>)> = HashMap::new();
        let mut running: JoinSet<(String, TaskStatus, Option<StatusReason>)> = JoinSet::new();
        for task in &config.tasks {
            match existing.remove(&task.id) {
                Some(execution) if execution.is_complete() => {
                    // A crash between storing the outcome and removing the container leaves it behind.
                    self.release_container(execution.container_id.clone(), &task.id);
                    finished.insert(task.id.clone(), execution.status);
                    outcomes.insert(task.id.clone(), (execution.status, execution.status_reason));
                }
                Some(execution) if execution.state != TaskState::Waiting => {
                    // It was started before the restart: find its container and carry on from there.
                    let writer = self.create_log(&execution).await;
                    let token = control.task_token(&task.id);
                    let (inner, control, id) = (self.clone(), control.clone(), task.id.clone());
                    running.spawn(async move {
                        let (status, reason) = inner.execute(execution, writer, token, control, true).await;
                        (id, status, reason)
                    });
                }
                Some(execution) => {
                    let writer = self.create_log(&execution).await;
                    pending.insert(task.id.clone(), (task.clone(), execution, writer));
                }
                None => {
                    let execution = self.new_execution(&run, task);
                    self.persist("store a task execution", || self.storage.insert_task_execution(&execution)).await?;
                    self.publish_task(&execution).await;
                    let writer = self.create_log(&execution).await;
                    pending.insert(task.id.clone(), (task.clone(), execution, writer));
                }
            }
        }

        let mut timed_out = false;
        loop {
            // Tasks cancelled before they started, one by one or with the whole run.
            let cancelled: Vec<String> = pending
                .keys()
                .filter(|id| control.cancel.is_cancelled() || control.task_token(id).is_cancelled())
                .cloned()
                .collect();
            for id in cancelled {
                if let Some((_, mut execution, writer)) = pending.remove(&id) {
                    let why = control.task_reason(&id);
                    let why =
                        StatusReason { description: format!("{} before this task started", why.description), ..why };
                    self.complete(&mut execution, TaskStatus::Cancelled, Some(why.clone()), None).await;
                    drop(writer);
                    finished.insert(id.clone(), TaskStatus::Cancelled);
                    outcomes.insert(id, (TaskStatus::Cancelled, Some(why)));
                }
            }
            // Start or skip everything that became decidable; skipping can make more tasks decidable.
            let mut progressed = true;
            while progressed {
                progressed = false;
                let ids: Vec<String> = pending.keys().cloned().collect();
                for id in ids {
                    let decision = dag::decide(&pending[&id].0, &finished);
                    match decision {
                        Decision::Wait => {}
                        Decision::Run => {
                            let Some((_, execution, writer)) = pending.remove(&id) else { continue };
                            let token = control.task_token(&id);
                            let (inner, control) = (self.clone(), control.clone());
                            running.spawn(async move {
                                let (status, reason) = inner.execute(execution, writer, token, control, false).await;
                                (id, status, reason)
                            });
                        }
                        Decision::Skip { description } => {
                            let Some((_, mut execution, writer)) = pending.remove(&id) else { continue };
                            let why = reason(StatusReasonKind::FailedPrecondition, &description);
                            self.complete(&mut execution, TaskStatus::Skipped, Some(why.clone()), None).await;
                            drop(writer);
                            finished.insert(id.clone(), TaskStatus::Skipped);
                            outcomes.insert(id, (TaskStatus::Skipped, Some(why)));
                            progressed = true;
                        }
                    }
                }
            }
            if running.is_empty() && pending.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = running.join_next() => {
                    let (id, status, why) = joined.map_err(|e| Error::internal("finish a task", e))?;
                    finished.insert(id.clone(), status);
                    outcomes.insert(id, (status, why));
                }
                () = control.cancel.cancelled(), if !pending.is_empty() => {}
                () = sleep_until_deadline(deadline), if !timed_out => {
                    timed_out = true;
                    let limit = run_timeout.as_secs();
                    control.cancel(reason(StatusReasonKind::Timeout, &format!("the run took longer than its {limit}s timeout")));
                }
                else => break,
            }
        }

        let (status, mut status_reason) = dag::run_outcome(&outcomes);
        if status == RunStatus::Cancelled
            && let Some(why) = control.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
        {
            status_reason = Some(why);
        }
        self.finish_run(run, status, status_reason).await
    }

    async fn finish_run(&self, mut run: Run, status: RunStatus, status_reason: Option<StatusReason>) -> Result<()> {
        run.state = RunState::Complete;
        run.status = status;
        run.status_reason = status_reason.clone();
        run.ended = epoch_millis();
        self.persist("record a run's outcome", || self.storage.update_run(&run)).await?;
        self.events
            .publish(EventKind::RunCompleted {
                namespace_id: run.namespace_id.clone(),
                pipeline_id: run.pipeline_id.clone(),
                run_id: run.run_id,
                status,
                status_reason,
            })
            .await;
        tracing::info!(pipeline = %run.pipeline_id, run = run.run_id, status = %run.status, "run complete");
        // The tokens handed to the run's tasks end with it.
        let holder = tokens::run_token_user(&run.namespace_id, &run.pipeline_id, run.run_id);
        if let Err(e) = self.storage.delete_tokens_of_user(&holder).await {
            tracing::warn!(run = run.run_id, error = %e, "could not revoke the tokens of a finished run");
        }
        self.expire_logs(&run).await;
        Ok(())
    }

    /// The highest run id of `run`'s pipeline whose logs or objects may go when the last `keep` runs are kept:
    /// never a run still in flight, nor anything after one. None when nothing may go.
    async fn retention_cutoff(&self, run: &Run, keep: u64) -> Option<u64> {
        if keep == 0 || run.run_id <= keep {
            return None;
        }
        let mut cutoff = run.run_id - keep;
        match self.storage.list_unfinished_runs().await {
            Ok(unfinished) => {
                for other in unfinished {
                    if other.namespace_id == run.namespace_id && other.pipeline_id == run.pipeline_id {
                        cutoff = cutoff.min(other.run_id.saturating_sub(1));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not apply retention");
                return None;
            }
        }
        (cutoff > 0).then_some(cutoff)
    }

    /// Removes the logs and run objects of runs beyond the pipeline's retention.
    async fn expire_logs(&self, run: &Run) {
        if let Some(cutoff) = self.retention_cutoff(run, self.options.log_retention_runs).await {
            match self.storage.expire_logs(&run.namespace_id, &run.pipeline_id, cutoff).await {
                Ok(runs) => {
                    for run_id in runs {
                        if let Err(e) = self.logs.remove_run(&run.namespace_id, &run.pipeline_id, run_id).await {
                            tracing::warn!(run = run_id, error = %e, "could not remove expired logs");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not apply log retention"),
            }
        }
        if let Some(objects) = self.objects.get()
            && let Some(cutoff) = self.retention_cutoff(run, objects.limits().run_objects_runs).await
        {
            match objects.expire_runs(&run.namespace_id, &run.pipeline_id, cutoff).await {
                Ok(_) => self.revoke_run_tokens(run, cutoff).await,
                Err(e) => tracing::warn!(error = %error_chain(&e), "could not remove expired run objects"),
            }
        }
    }

    fn effective_timeout(&self, requested: Option<u64>) -> Duration {
        match requested {
            Some(secs) => Duration::from_secs(secs).min(self.options.max_timeout),
            None => self.options.max_timeout,
        }
    }

    fn new_execution(&self, run: &Run, task: &Task) -> TaskExecution {
        TaskExecution {
            namespace_id: run.namespace_id.clone(),
            pipeline_id: run.pipeline_id.clone(),
            run_id: run.run_id,
            task_id: task.id.clone(),
            created: epoch_millis(),
            started: 0,
            ended: 0,
            state: TaskState::Waiting,
            status: TaskStatus::Unknown,
            status_reason: None,
            exit_code: None,
            image_digest: None,
            container_id: None,
            variables: task_variables(run, task, &self.options.api_base_url),
            task: task.clone(),
            attempt: 1,
            attempts: Vec::new(),
            logs_expired: false,
        }
    }

    /// The log of an attempt; one that cannot be made (a full disk) fails the attempt before its container starts.
    async fn create_log(&self, execution: &TaskExecution) -> LogWriter {
        let writer = self.logs.create_or_broken(log_key(execution)).await;
        if let Some(problem) = writer.problem() {
            tracing::error!(task = %execution.task_id, error = %problem, "could not create a task log");
        }
        writer
    }

    /// Stores a change a run's outcome depends on, retrying with back-off while storage cannot take it (a full
    /// disk, a busy database): a run is never left `running` because one write failed, and its containers are
    /// removed only once their outcome is stored. Errors storage will not get over (a missing row) end the retry.
    async fn persist<'a, T, F, Fut>(&'a self, what: &str, mut write: F) -> Result<T>
    where
        F: FnMut() -> Fut + 'a,
        Fut: std::future::Future<Output = gofer_storage::Result<T>> + 'a,
    {
        let mut delay = PERSIST_FIRST_DELAY;
        let mut failures = 0u32;
        loop {
            match write().await {
                Ok(value) => {
                    if failures > 0 {
                        tracing::info!(failures, "could {what} again after storage recovered");
                    }
                    return Ok(value);
                }
                Err(e @ (gofer_storage::Error::NotFound { .. } | gofer_storage::Error::Exists { .. })) => {
                    return Err(e.into());
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || delay == PERSIST_MAX_DELAY {
                        tracing::error!(
                            error = %error_chain(&e),
                            retry_in_ms = delay.as_millis() as u64,
                            "could not {what}; retrying until storage takes it"
                        );
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(PERSIST_MAX_DELAY);
                }
            }
        }
    }

    fn container_labels(&self, execution: &TaskExecution) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::INSTALLATION.to_string(), self.options.installation_id.clone()),
            (labels::NAMESPACE.to_string(), execution.namespace_id.clone()),
            (labels::PIPELINE.to_string(), execution.pipeline_id.clone()),
            (labels::RUN.to_string(), execution.run_id.to_string()),
            (labels::TASK.to_string(), execution.task_id.clone()),
            (labels::ATTEMPT.to_string(), execution.attempt.to_string()),
        ])
    }

    /// The container for an attempt; `env` is the task's variables with references already resolved.
    fn container_spec(
        &self,
        execution: &TaskExecution,
        env: Vec<(String, String)>,
        registry_auth: Option<RegistryAuth>,
    ) -> ContainerSpec {
        let task = &execution.task;
        ContainerSpec {
            name: format!(
                "gofer-{}-{}-{}-{}-{}-{}",
                self.options.installation_id,
                execution.namespace_id,
                execution.pipeline_id,
                execution.run_id,
                execution.task_id,
                execution.attempt
            ),
            image: task.image.clone(),
            always_pull: task.always_pull_newest_image,
            registry_auth,
            env: env.into_iter().chain([("GOFER_TASK_ATTEMPT".to_string(), execution.attempt.to_string())]).collect(),
            entrypoint: task.entrypoint.clone(),
            command: task.command.clone(),
            labels: self.container_labels(execution),
            expose_port: None,
        }
    }

    /// Runs a task to its end, retrying failed attempts as configured, and records the outcome. Never fails:
    /// every problem becomes the task's status and reason. With `resume`, the first attempt is the one a previous
    /// server process started.
    async fn execute(
        self: Arc<Self>,
        mut execution: TaskExecution,
        mut writer: LogWriter,
        token: CancellationToken,
        control: Arc<RunControl>,
        mut resume: bool,
    ) -> (TaskStatus, Option<StatusReason>) {
        loop {
            let outcome = match self.attempt(&mut execution, &mut writer, &token, &control, resume).await {
                Ok(outcome) => outcome,
                Err(e) => Outcome {
                    status: TaskStatus::Failed,
                    reason: Some(reason(StatusReasonKind::SchedulerError, &e.to_string())),
                    exit_code: None,
                },
            };
            resume = false;
            if let Err(e) = writer.finish().await {
                tracing::warn!(task = %execution.task_id, error = %e, "could not flush a task log");
            }
            let retry = outcome.status == TaskStatus::Failed
                && execution.attempt <= execution.task.retries
                && !token.is_cancelled();
            // The container goes only after its outcome is stored: a crash in between must find it again.
            let finished_container = execution.container_id.clone();
            if !retry {
                self.complete(&mut execution, outcome.status, outcome.reason.clone(), outcome.exit_code).await;
                self.release_container(finished_container, &execution.task_id);
                return (outcome.status, outcome.reason);
            }
            execution.attempts.push(Attempt {
                attempt: execution.attempt,
                started: execution.started,
                ended: epoch_millis(),
                status: outcome.status,
                status_reason: outcome.reason,
                exit_code: outcome.exit_code,
                image_digest: execution.image_digest.take(),
            });
            execution.attempt += 1;
            execution.state = TaskState::Processing;
            execution.started = 0;
            execution.exit_code = None;
            execution.container_id = None;
            execution.status_reason = None;
            writer = self.create_log(&execution).await;
            self.save_task(&execution).await;
            self.release_container(finished_container, &execution.task_id);
        }
    }

    /// Runs one attempt: starts the container (or, resuming, finds the one already started), copies its output
    /// into the log while awaiting its exit, and stops it on cancellation or timeout.
    async fn attempt(
        &self,
        execution: &mut TaskExecution,
        writer: &mut LogWriter,
        token: &CancellationToken,
        control: &RunControl,
        resume: bool,
    ) -> Result<Outcome, gofer_scheduler::Error> {
        let task_id = execution.task_id.clone();
        let resumed = if resume { self.find_container(execution).await? } else { None };
        let mut masker = Masker::default();
        let (id, mut output): (String, BoxStream<'static, gofer_scheduler::Result<bytes::Bytes>>) = match resumed {
            Some(info) => {
                // The values are read again to mask them; one that is gone meanwhile cannot be masked.
                if let Ok(resolved) = self.resolve_variables(execution, false).await {
                    masker = resolved.masker;
                }
                execution.container_id = Some(info.id.clone());
                execution.image_digest = execution.image_digest.take().or(info.image_digest);
                let output = if info.state == ContainerState::Created {
                    // Created before the crash but never started: nothing of the task ran, so it starts now (the
                    // engine would answer a wait on it at once with exit code 0, as if it had succeeded).
                    tracing::info!(task = %task_id, container = %info.id, "starting a container created before a restart");
                    self.scheduler.start(&info.id).await?.output
                } else {
                    self.scheduler.output_since_start(&info.id).await?
                };
                if execution.started == 0 {
                    execution.started = epoch_millis();
                }
                execution.state = TaskState::Running;
                self.save_task(execution).await;
                (info.id, output)
            }
            None => {
                if token.is_cancelled() {
                    let why = control.task_reason(&task_id);
                    let why =
                        StatusReason { description: format!("{} before this task started", why.description), ..why };
                    return Ok(Outcome { status: TaskStatus::Cancelled, reason: Some(why), exit_code: None });
                }
                if let Some(problem) = writer.problem() {
                    let why = reason(
                        StatusReasonKind::LogWriteFailed,
                        &format!("its log could not be created ({problem}); the container was not started"),
                    );
                    return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: None });
                }
                execution.state = TaskState::Processing;
                self.save_task(execution).await;
                let resolved = match self.resolve_variables(execution, true).await {
                    Ok(resolved) => resolved,
                    Err(problem) => {
                        let why = reason(StatusReasonKind::FailedPrecondition, &problem);
                        return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: None });
                    }
                };
                masker = resolved.masker;
                let spec = self.container_spec(execution, resolved.env, resolved.registry_auth);
                // Created and started in two calls: a crash in between leaves a container that recovery finds by
                // its labels and starts, instead of one it could mistake for finished.
                let container_id = self.scheduler.create(&spec).await?;
                let started = self.scheduler.start(&container_id).await?;
                execution.state = TaskState::Running;
                execution.started = epoch_millis();
                execution.container_id = Some(started.container_id.clone());
                execution.image_digest = started.image_digest;
                self.save_task(execution).await;
                (started.container_id, started.output)
            }
        };

        let timeout = self.effective_timeout(execution.task.timeout_seconds);
        let deadline = deadline_from(execution.started, timeout);
        let mut stopping: Option<StatusReason> = None;
        let mut timed_out = false;
        // Output that cannot be stored ends the task: its log would not show what it did.
        let mut log_failure: Option<StatusReason> = None;
        let mut exit: Option<gofer_scheduler::Result<i64>> = None;
        let mut output_open = true;
        let wait = self.scheduler.wait(&id);
        tokio::pin!(wait);
        // The image digest is looked up while the container runs, off the start path.
        let mut digest_known = execution.image_digest.is_some();
        let digest = async { self.scheduler.inspect(&id).await.ok().and_then(|info| info.image_digest) };
        tokio::pin!(digest);
        // Stopping goes on beside the copying: the engine reports a container's exit only once its output was
        // read, so waiting for the stop without reading would hold both up until the kill.
        let mut stop_call: Option<futures::future::BoxFuture<'_, ()>> = None;
        let stop = || -> Option<futures::future::BoxFuture<'_, ()>> { Some(Box::pin(self.stop(&task_id, &id))) };
        // Copy output while waiting for the exit; after the exit, drain what is still in flight.
        while exit.is_none() || output_open {
            tokio::select! {
                () = async { if let Some(call) = stop_call.as_mut() { call.await } }, if stop_call.is_some() => {
                    stop_call = None;
                }
                chunk = output.next(), if output_open => match chunk {
                    Some(Ok(bytes)) => {
                        if let Err(e) = writer.write(&masker.feed(&bytes)).await
                            && log_failure.is_none()
                        {
                            tracing::error!(task = %task_id, error = %e, "could not write a task log; stopping the task");
                            let why = reason(
                                StatusReasonKind::LogWriteFailed,
                                &format!("its output could not be stored ({e}); the container was stopped"),
                            );
                            log_failure = Some(why.clone());
                            if stopping.is_none() && exit.is_none() {
                                stopping = Some(why);
                                stop_call = stop();
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(task = %task_id, error = %e, "task output stream failed");
                        output_open = false;
                    }
                    None => output_open = false,
                },
                code = &mut wait, if exit.is_none() => exit = Some(code),
                found = &mut digest, if !digest_known => {
                    digest_known = true;
                    execution.image_digest = found;
                }
                () = token.cancelled(), if stopping.is_none() && exit.is_none() => {
                    stopping = Some(control.task_reason(&task_id));
                    stop_call = stop();
                }
                () = sleep_until_deadline(deadline), if !timed_out && stopping.is_none() && exit.is_none() => {
                    timed_out = true;
                    stopping = Some(reason(
                        StatusReasonKind::Timeout,
                        &format!("the task took longer than its {}s timeout", timeout.as_secs()),
                    ));
                    stop_call = stop();
                }
                () = tokio::time::sleep(LOG_DRAIN_TIMEOUT), if exit.is_some() => {
                    tracing::warn!(task = %task_id, "output stream did not end after the container exited");
                    output_open = false;
                }
            }
        }
        if let Err(e) = writer.write(&masker.finish()).await
            && log_failure.is_none()
        {
            tracing::error!(task = %task_id, error = %e, "could not write the end of a task log");
            log_failure = Some(reason(
                StatusReasonKind::LogWriteFailed,
                &format!("the end of its output could not be stored ({e})"),
            ));
        }
        if !digest_known {
            execution.image_digest = digest.await;
        }
        let code = match exit {
            Some(Ok(code)) => code,
            Some(Err(e)) => {
                let why = reason(
                    StatusReasonKind::SchedulerError,
                    &format!("lost track of the container while it ran (the engine may have restarted): {e}"),
                );
                return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: None });
            }
            None => -1,
        };
        execution.exit_code = Some(code);
        if let Some(why) = log_failure {
            return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: Some(code) });
        }
        if code != 0
            && stopping.is_none()
            && let Err(e) = self.scheduler.inspect(&id).await
        {
            // The engine answered the wait but cannot be reached now: it is shutting down and stopped the
            // container itself. That is the engine's doing, not the task's.
            let why = reason(
                StatusReasonKind::SchedulerError,
                &format!("the container engine stopped the container (exit code {code}) and went away: {e}"),
            );
            return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: Some(code) });
        }
        if let Some(why) = stopping {
            let status = if timed_out { TaskStatus::Failed } else { TaskStatus::Cancelled };
            return Ok(Outcome { status, reason: Some(why), exit_code: Some(code) });
        }
        if code == 0 {
            Ok(Outcome { status: TaskStatus::Successful, reason: None, exit_code: Some(code) })
        } else {
            let why = reason(StatusReasonKind::AbnormalExit, &format!("the container exited with code {code}"));
            Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: Some(code) })
        }
    }

    /// The container's environment with references to stored values replaced by the values, right before the
    /// container starts, and a masker for the secret values among them. A reference that cannot be resolved is the
    /// task's failed precondition; the message names the variable and the key, never a value.
    /// With `starting`, a task that asked for it gets `GOFER_TOKEN`, a new token for this attempt (masked too).
    async fn resolve_variables(&self, execution: &TaskExecution, starting: bool) -> Result<Resolved, String> {
        let (ns, pipeline) = (&execution.namespace_id, &execution.pipeline_id);
        let mut env = Vec::with_capacity(execution.variables.len());
        let mut secret_values = Vec::new();
        for variable in &execution.variables {
            let name = &variable.key;
            let Some(reference) = Reference::parse(&variable.value) else {
                env.push((name.clone(), variable.value.clone()));
                continue;
            };
            if let Reference::PipelineObject(key) | Reference::RunObject(key) = reference {
                let scope = match reference {
                    Reference::RunObject(_) => ObjectScope::Run {
                        namespace_id: ns.clone(),
                        pipeline_id: pipeline.clone(),
                        run_id: execution.run_id,
                    },
                    _ => ObjectScope::Pipeline { namespace_id: ns.clone(), pipeline_id: pipeline.clone() },
                };
                env.push((name.clone(), self.object_variable(name, &scope, key).await?));
                continue;
            }
            let value = self.secret_value(execution, &format!("variable {name}"), reference).await?;
            secret_values.push(value.clone().into_bytes());
            env.push((name.clone(), value));
        }
        let registry_auth = match &execution.task.registry_auth {
            None => None,
            Some(auth) => {
                let what = "registry_auth.pass";
                let pass = match (secrets::sealed_registry_key(&auth.pass), Reference::parse(&auth.pass)) {
                    (Some(key), _) => match self.secrets()?.for_pipeline(ns, pipeline, &key).await {
                        Ok(Ok(pass)) => pass,
                        Ok(Err(_)) => return Err(format!("{what}: the sealed password of this config is gone")),
                        Err(e) => return Err(format!("{what}: could not read the password: {}", error_chain(&e))),
                    },
                    (None, Some(reference)) => self.secret_value(execution, what, reference).await?,
                    (None, None) => auth.pass.clone(),
                };
                Some(RegistryAuth { user: auth.user.clone(), pass })
            }
        };
        if starting && execution.task.inject_api_token {
            let token = self.run_token(execution).await?;
            secret_values.push(token.clone().into_bytes());
            env.retain(|(name, _)| name != "GOFER_TOKEN");
            env.push(("GOFER_TOKEN".into(), token));
        }
        Ok(Resolved { env, masker: Masker::new(secret_values), registry_auth })
    }

    fn secrets(&self) -> Result<&Secrets, String> {
        self.secrets.get().ok_or_else(|| "it refers to a secret, but this Gofer has no secret store".to_string())
    }

    /// The value of a secret `reference` in `what` (a variable, the registry password) of a task; the message says
    /// what is missing or forbidden and how to fix it.
    async fn secret_value(
        &self,
        execution: &TaskExecution,
        what: &str,
        reference: Reference<'_>,
    ) -> Result<String, String> {
        let (ns, pipeline) = (&execution.namespace_id, &execution.pipeline_id);
        let secrets = self.secrets().map_err(|problem| format!("{what}: {problem}"))?;
        let found = match reference {
            Reference::PipelineSecret(key) => secrets.for_pipeline(ns, pipeline, key).await.map(|found| {
                found.map_err(|_| {
                    format!(
                        "{what}: pipeline secret '{key}' does not exist; add it with `gofer secret pipeline put \
                         {pipeline} {key} <value>`"
                    )
                })
            }),
            Reference::GlobalSecret(key) => secrets.for_namespace(ns, key).await.map(|found| {
                found.map_err(|why| match why {
                    Unavailable::Missing => format!(
                        "{what}: global secret '{key}' does not exist; add it with `gofer secret global put {key} \
                         <value> --namespaces <patterns>`"
                    ),
                    Unavailable::NotAllowed => format!(
                        "{what}: global secret '{key}' may not be used in namespace '{ns}' (none of its namespace \
                         patterns matches)"
                    ),
                })
            }),
            Reference::PipelineObject(key) | Reference::RunObject(key) => {
                return Err(format!("{what}: object '{key}' is not a secret"));
            }
        };
        match found {
            Ok(found) => found,
            Err(e) => Err(format!("{what}: could not read the secret: {}", error_chain(&e))),
        }
    }

    /// Deletes the task tokens of the pipeline's runs up to `cutoff`: they go with the objects they were for.
    async fn revoke_run_tokens(&self, run: &Run, cutoff: u64) {
        let prefix = tokens::run_token_prefix(&run.namespace_id, &run.pipeline_id);
        let holders = match self.storage.token_users(&prefix).await {
            Ok(holders) => holders,
            Err(e) => return tracing::warn!(error = %e, "could not list run tokens"),
        };
        for user in holders {
            let expired =
                user.strip_prefix(&prefix).and_then(|id| id.parse::<u64>().ok()).is_some_and(|id| id <= cutoff);
            if expired && let Err(e) = self.storage.delete_tokens_of_user(&user).await {
                tracing::warn!(error = %e, "could not revoke a run's tokens");
            }
        }
    }

    /// A token for one task attempt of a run: its secret goes only into the container; storage keeps the hash.
    /// All tokens of a run are deleted when the run's objects expire.
    async fn run_token(&self, execution: &TaskExecution) -> Result<String, String> {
        let secret = tokens::new_secret()?;
        let user = tokens::run_token_user(&execution.namespace_id, &execution.pipeline_id, execution.run_id);
        let token = Token {
            id: format!("{user}/{}/{}", execution.task_id, execution.attempt),
            hash: tokens::token_hash(&secret),
            user,
            roles: vec![tokens::RUN_TOKEN_ROLE.into()],
            created: epoch_millis(),
            // Revoked when the run ends; in any case no run outlives the longest timeout, nor does its token.
            expires: epoch_millis().saturating_add(self.options.max_timeout.as_millis() as u64),
            disabled: false,
            metadata: Default::default(),
        };
        self.storage.put_token(&token).await.map_err(|e| format!("could not make the task's GOFER_TOKEN: {e}"))?;
        Ok(secret)
    }

    /// An object's bytes as a variable's value (UTF-8 text, small enough for an environment variable).
    async fn object_variable(&self, name: &str, scope: &ObjectScope, key: &str) -> Result<String, String> {
        let Some(objects) = self.objects.get() else {
            return Err(format!("variable {name} refers to object '{key}', but this Gofer has no object store"));
        };
        match objects.read_small(scope, key, MAX_OBJECT_VARIABLE).await {
            Ok(Some(bytes)) => String::from_utf8(bytes.to_vec()).map_err(|_| {
                format!("variable {name}: object '{key}' of {scope} is not UTF-8 text, which a variable must be")
            }),
            Ok(None) => Err(format!("variable {name}: object '{key}' of {scope} does not exist")),
            Err(e) => Err(format!("variable {name}: {}", error_chain(&e))),
        }
    }

    /// The container a previous process made for this attempt, if the engine still has it (by the id recorded,
    /// else by the attempt's labels: a crash right after creating it leaves no id behind). A recorded container that
    /// is gone is an error: the task cannot be finished from it.
    async fn find_container(&self, execution: &TaskExecution) -> Result<Option<ContainerInfo>, gofer_scheduler::Error> {
        if let Some(id) = &execution.container_id {
            match self.scheduler.inspect(id).await {
                Ok(info) => return Ok(Some(info)),
                Err(gofer_scheduler::Error::NoSuchContainer { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let found = self.scheduler.find(&self.container_labels(execution)).await?;
        match found.into_iter().next() {
            Some(info) => Ok(Some(info)),
            None if execution.container_id.is_some() => Err(gofer_scheduler::Error::NoSuchContainer {
                container: execution.container_id.clone().unwrap_or_default(),
                message: "the container disappeared while Gofer was not running".into(),
            }),
            None => Ok(None),
        }
    }

    async fn stop(&self, task_id: &str, container_id: &str) {
        if let Err(e) = self.scheduler.stop(container_id, self.options.stop_grace).await {
            tracing::warn!(task = %task_id, error = %e, "could not stop a container");
        }
    }

    /// Removes a finished container now, or after the configured while for debugging. While the engine cannot be
    /// reached (it restarts), removal is tried again with back-off, for up to an hour; what is still left then is
    /// removed at the next start.
    fn release_container(self: &Arc<Self>, container_id: Option<String>, task_id: &str) {
        let Some(id) = container_id else { return };
        let (scheduler, keep, task) = (self.scheduler.clone(), self.options.keep_containers_for, task_id.to_string());
        self.tracker.spawn(async move {
            if !keep.is_zero() {
                tokio::time::sleep(keep).await;
            }
            let mut delay = Duration::from_secs(1);
            let mut waited = Duration::ZERO;
            loop {
                match scheduler.remove(&id).await {
                    Ok(()) | Err(gofer_scheduler::Error::NoSuchContainer { .. }) => return,
                    Err(e) if waited >= REMOVE_RETRY_FOR => {
                        return tracing::warn!(task = %task, container = %id, error = %e, "could not remove a finished container; it goes at the next start");
                    }
                    Err(e) => {
                        tracing::debug!(task = %task, container = %id, error = %e, "could not remove a finished container yet");
                        tokio::time::sleep(delay).await;
                        waited += delay;
                        delay = (delay * 2).min(Duration::from_secs(60));
                    }
                }
            }
        });
    }

    /// Removes containers of this installation whose task is finished (left behind by a previous process).
    async fn sweep_leftover_containers(&self) {
        let filter = BTreeMap::from([(labels::INSTALLATION.to_string(), self.options.installation_id.clone())]);
        let containers = match self.scheduler.find(&filter).await {
            Ok(containers) => containers,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for leftover containers");
                return;
            }
        };
        let active: Vec<RunKey> = self.slots().controls.keys().cloned().collect();
        for container in containers.into_iter().filter(|c| !c.labels.contains_key(labels::EXTENSION)) {
            let label = |k: &str| container.labels.get(k).cloned().unwrap_or_default();
            let key = RunKey {
                namespace_id: label(labels::NAMESPACE),
                pipeline_id: label(labels::PIPELINE),
                run_id: label(labels::RUN).parse().unwrap_or(0),
            };
            if active.contains(&key) {
                continue;
            }
            if container.is_running() {
                self.stop(&label(labels::TASK), &container.id).await;
            }
            if let Err(e) = self.scheduler.remove(&container.id).await {
                tracing::warn!(container = %container.id, error = %e, "could not remove a leftover container");
            }
        }
    }

    /// Stores a task execution's progress and publishes it; a storage failure is logged, the task goes on.
    async fn save_task(&self, execution: &TaskExecution) {
        let stored = self.persist("record task progress", || self.storage.update_task_execution(execution)).await;
        if let Err(e) = stored {
            tracing::error!(task = %execution.task_id, error = %e, "could not record task progress");
        }
        self.publish_task(execution).await;
    }

    async fn publish_task(&self, execution: &TaskExecution) {
        self.events
            .publish(EventKind::TaskChanged {
                namespace_id: execution.namespace_id.clone(),
                pipeline_id: execution.pipeline_id.clone(),
                run_id: execution.run_id,
                task_id: execution.task_id.clone(),
                attempt: execution.attempt,
                state: execution.state,
                status: execution.status,
                status_reason: execution.status_reason.clone(),
                exit_code: execution.exit_code,
            })
            .await;
    }

    async fn complete(
        &self,
        execution: &mut TaskExecution,
        status: TaskStatus,
        status_reason: Option<StatusReason>,
        exit_code: Option<i64>,
    ) {
        execution.state = TaskState::Complete;
        execution.status = status;
        execution.status_reason = status_reason;
        execution.exit_code = exit_code;
        execution.ended = epoch_millis();
        self.save_task(execution).await;
    }
}

/// The tokio instant matching `started_ms + timeout` (epoch milliseconds), or now + timeout when not started.
fn deadline_from(started_ms: u64, timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if started_ms == 0 {
        return now + timeout;
    }
    let elapsed = Duration::from_millis(epoch_millis().saturating_sub(started_ms));
    now + timeout.saturating_sub(elapsed)
}

async fn sleep_until_deadline(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
}

fn log_key(execution: &TaskExecution) -> LogKey {
    LogKey {
        namespace_id: execution.namespace_id.clone(),
        pipeline_id: execution.pipeline_id.clone(),
        run_id: execution.run_id,
        task_id: execution.task_id.clone(),
        attempt: execution.attempt,
    }
}

/// The environment of a task's container: Gofer's own variables, overridden by the task's config variables,
/// overridden by the run's variables.
pub fn task_variables(run: &Run, task: &Task, api_base_url: &str) -> Vec<Variable> {
    let system = [
        ("GOFER_NAMESPACE_ID", run.namespace_id.clone()),
        ("GOFER_PIPELINE_ID", run.pipeline_id.clone()),
        ("GOFER_RUN_ID", run.run_id.to_string()),
        ("GOFER_TASK_ID", task.id.clone()),
        ("GOFER_TASK_IMAGE", task.image.clone()),
        ("GOFER_API_BASE_URL", api_base_url.to_string()),
    ];
    let mut merged: BTreeMap<String, Variable> = BTreeMap::new();
    let layers = system
        .into_iter()
        .map(|(k, v)| (k.to_string(), v, VariableSource::System))
        .chain(task.variables.iter().map(|(k, v)| (k.clone(), v.clone(), VariableSource::PipelineConfig)))
        .chain(run.variables.iter().map(|v| (v.key.clone(), v.value.clone(), v.source)));
    for (key, value, source) in layers {
        merged.insert(key.clone(), Variable { key, value, source });
    }
    merged.into_values().collect()
}

#[cfg(test)]
mod tests {
    use gofer_api::models::Initiator;

    use super::*;

    #[test]
    fn variables_layer_system_then_config_then_run() {
        let run = Run {
            namespace_id: "ns".into(),
            pipeline_id: "p".into(),
            run_id: 4,
            version: 1,
            state: RunState::Pending,
            status: RunStatus::Unknown,
            status_reason: None,
            created: 0,
            started: 0,
            ended: 0,
            initiator: Initiator { kind: "user".into(), name: "u".into() },
            variables: vec![Variable { key: "B".into(), value: "run".into(), source: VariableSource::RunOptions }],
        };
        let task = Task::new("t", "img").variables([("A", "config"), ("B", "config"), ("GOFER_RUN_ID", "override")]);
        let vars: BTreeMap<String, (String, VariableSource)> =
            task_variables(&run, &task, "http://gofer").into_iter().map(|v| (v.key, (v.value, v.source))).collect();
        assert_eq!(vars["GOFER_NAMESPACE_ID"], ("ns".into(), VariableSource::System));
        assert_eq!(vars["GOFER_TASK_IMAGE"], ("img".into(), VariableSource::System));
        assert_eq!(vars["GOFER_API_BASE_URL"], ("http://gofer".into(), VariableSource::System));
        assert_eq!(vars["GOFER_RUN_ID"], ("override".into(), VariableSource::PipelineConfig));
        assert_eq!(vars["A"], ("config".into(), VariableSource::PipelineConfig));
        assert_eq!(vars["B"], ("run".into(), VariableSource::RunOptions));
    }

    #[test]
    fn deadlines_count_from_the_recorded_start() {
        let now = tokio::time::Instant::now();
        let fresh = deadline_from(0, Duration::from_secs(10));
        assert!(fresh >= now + Duration::from_secs(9));
        let long_ago = deadline_from(epoch_millis() - 60_000, Duration::from_secs(10));
        assert!(long_ago <= tokio::time::Instant::now(), "a run started a minute ago with 10 s is already late");
    }
}
