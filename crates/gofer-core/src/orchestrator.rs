//! The orchestrator: drives each run's DAG on the scheduler, records every state change in storage and stores
//! task logs. It is a library: it needs storage, a scheduler and a log directory, never the HTTP server.
//!
//! One tokio task drives each run. It starts every task whose parents have finished the way it needs, skips the
//! ones whose conditions can no longer be met, and learns of each container's exit from the scheduler's wait call,
//! so a DAG edge costs no more than a channel message.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gofer_api::config::Task;
use gofer_api::epoch_millis;
use gofer_api::models::{
    Run, RunState, RunStatus, StatusReason, StatusReasonKind, TaskExecution, TaskState, TaskStatus,
    Variable, VariableSource,
};
use gofer_scheduler::{ContainerSpec, RegistryAuth, Scheduler, labels};
use gofer_storage::Storage;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dag::{self, Decision};
use crate::error::{Error, Result};
use crate::logs::{LogKey, LogStore, LogWriter};

/// How long to wait for a container's log stream to end after the container exited.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the orchestrator.
#[derive(Debug, Clone)]
pub struct Options {
    /// Identifies this installation in container names and labels, so two Gofers can share one engine.
    pub installation_id: String,
    /// Handed to every task as `GOFER_API_BASE_URL`.
    pub api_base_url: String,
    /// How long a cancelled container gets to stop before it is killed.
    pub stop_grace: Duration,
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
        Self {
            namespace_id: run.namespace_id.clone(),
            pipeline_id: run.pipeline_id.clone(),
            run_id: run.run_id,
        }
    }
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
    options: Options,
    active: Mutex<HashMap<RunKey, CancellationToken>>,
    tracker: TaskTracker,
}

impl Orchestrator {
    pub fn new(
        options: Options,
        storage: Arc<dyn Storage>,
        scheduler: Arc<dyn Scheduler>,
        logs: LogStore,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                scheduler,
                logs,
                options,
                active: Mutex::default(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    pub fn logs(&self) -> &LogStore {
        &self.inner.logs
    }

    /// Starts driving a stored, pending run in the background.
    pub fn launch(&self, run: Run) {
        let cancel = CancellationToken::new();
        self.inner.active().insert(RunKey::of(&run), cancel.clone());
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            let key = RunKey::of(&run);
            if let Err(e) = inner.drive(run, cancel).await {
                tracing::error!(run = ?key, error = %error_chain(&e), "run could not be driven to completion");
            }
            inner.active().remove(&key);
        });
    }

    /// Asks a run to stop: tasks not started are cancelled, running containers are stopped.
    pub async fn cancel(&self, key: &RunKey) -> Result<()> {
        let token = self.inner.active().get(key).cloned();
        match token {
            Some(token) => {
                token.cancel();
                Ok(())
            }
            None => {
                let run = self
                    .inner
                    .storage
                    .get_run(&key.namespace_id, &key.pipeline_id, key.run_id)
                    .await?;
                Err(Error::conflict(format!(
                    "run {} of pipeline '{}' is already finished ({})",
                    run.run_id, run.pipeline_id, run.status
                )))
            }
        }
    }

    /// Picks up runs a previous server process left unfinished. Pending runs are started. Runs that were
    /// mid-flight are marked orphaned and the containers Gofer had started for them are removed.
    pub async fn recover(&self) -> Result<()> {
        for run in self.inner.storage.list_unfinished_runs().await? {
            match run.state {
                RunState::Pending => {
                    tracing::info!(pipeline = %run.pipeline_id, run = run.run_id, "starting run left pending");
                    self.launch(run);
                }
                _ => self.inner.orphan(run).await?,
            }
        }
        Ok(())
    }

    /// Stops accepting work. Containers are left running: the next start finds the runs they belong to.
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

impl Inner {
    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<RunKey, CancellationToken>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn drive(self: &Arc<Self>, mut run: Run, cancel: CancellationToken) -> Result<()> {
        let config = self
            .storage
            .get_config(&run.namespace_id, &run.pipeline_id, run.version)
            .await?
            .config;
        run.state = RunState::Running;
        run.started = epoch_millis();
        self.storage.update_run(&run).await?;

        // Every task gets its execution record and its (empty) log up front, so followers can wait on it.
        let mut pending: BTreeMap<String, (Task, TaskExecution, LogWriter)> = BTreeMap::new();
        for task in &config.tasks {
            let execution = self.new_execution(&run, task);
            self.storage.insert_task_execution(&execution).await?;
            let writer =
                self.logs.create(log_key(&execution)).await.map_err(|e| {
                    Error::internal(format!("create the log of task '{}'", task.id), e)
                })?;
            pending.insert(task.id.clone(), (task.clone(), execution, writer));
        }

        let mut finished: HashMap<String, TaskStatus> = HashMap::new();
        let mut outcomes: HashMap<String, (TaskStatus, Option<StatusReason>)> = HashMap::new();
        let mut running: JoinSet<(String, TaskStatus, Option<StatusReason>)> = JoinSet::new();
        loop {
            if cancel.is_cancelled() {
                for (id, (_, mut execution, writer)) in std::mem::take(&mut pending) {
                    let reason = reason(
                        StatusReasonKind::UserCancelled,
                        "the run was cancelled before this task started",
                    );
                    self.complete(
                        &mut execution,
                        TaskStatus::Cancelled,
                        Some(reason.clone()),
                        None,
                    )
                    .await?;
                    drop(writer);
                    finished.insert(id.clone(), TaskStatus::Cancelled);
                    outcomes.insert(id, (TaskStatus::Cancelled, Some(reason)));
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
                            let Some((task, execution, writer)) = pending.remove(&id) else {
                                continue;
                            };
                            let inner = self.clone();
                            let cancel = cancel.clone();
                            running.spawn(async move {
                                let (status, reason) =
                                    inner.execute(task, execution, writer, cancel).await;
                                (id, status, reason)
                            });
                        }
                        Decision::Skip { description } => {
                            let Some((_, mut execution, writer)) = pending.remove(&id) else {
                                continue;
                            };
                            let reason = reason(StatusReasonKind::FailedPrecondition, &description);
                            self.complete(
                                &mut execution,
                                TaskStatus::Skipped,
                                Some(reason.clone()),
                                None,
                            )
                            .await?;
                            drop(writer);
                            finished.insert(id.clone(), TaskStatus::Skipped);
                            outcomes.insert(id, (TaskStatus::Skipped, Some(reason)));
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
                    let (id, status, reason) = joined.map_err(|e| Error::internal("finish a task", e))?;
                    finished.insert(id.clone(), status);
                    outcomes.insert(id, (status, reason));
                }
                () = cancel.cancelled(), if !pending.is_empty() => {}
            }
        }

        let (status, status_reason) = dag::run_outcome(&outcomes);
        run.state = RunState::Complete;
        run.status = status;
        run.status_reason = status_reason;
        run.ended = epoch_millis();
        self.storage.update_run(&run).await?;
        tracing::info!(pipeline = %run.pipeline_id, run = run.run_id, status = %run.status, "run complete");
        Ok(())
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
        }
    }

    fn container_spec(&self, execution: &TaskExecution) -> ContainerSpec {
        let task = &execution.task;
        let labels = BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (
                labels::INSTALLATION.to_string(),
                self.options.installation_id.clone(),
            ),
            (
                labels::NAMESPACE.to_string(),
                execution.namespace_id.clone(),
            ),
            (labels::PIPELINE.to_string(), execution.pipeline_id.clone()),
            (labels::RUN.to_string(), execution.run_id.to_string()),
            (labels::TASK.to_string(), execution.task_id.clone()),
        ]);
        ContainerSpec {
            name: format!(
                "gofer-{}-{}-{}-{}-{}",
                self.options.installation_id,
                execution.namespace_id,
                execution.pipeline_id,
                execution.run_id,
                execution.task_id
            ),
            image: task.image.clone(),
            always_pull: task.always_pull_newest_image,
            registry_auth: task.registry_auth.as_ref().map(|a| RegistryAuth {
                user: a.user.clone(),
                pass: a.pass.clone(),
            }),
            env: execution
                .variables
                .iter()
                .map(|v| (v.key.clone(), v.value.clone()))
                .collect(),
            entrypoint: task.entrypoint.clone(),
            command: task.command.clone(),
            labels,
        }
    }

    /// Runs one task's container to its end and records the outcome. Never fails: every problem becomes the
    /// task's status and reason.
    async fn execute(
        self: Arc<Self>,
        task: Task,
        mut execution: TaskExecution,
        mut writer: LogWriter,
        cancel: CancellationToken,
    ) -> (TaskStatus, Option<StatusReason>) {
        let outcome = self
            .run_container(&task, &mut execution, &mut writer, &cancel)
            .await;
        let (status, reason, exit_code) = match outcome {
            Ok((status, reason, exit_code)) => (status, reason, exit_code),
            Err(e) => (
                TaskStatus::Failed,
                Some(reason(StatusReasonKind::SchedulerError, &e.to_string())),
                None,
            ),
        };
        if let Err(e) = writer.finish().await {
            tracing::warn!(task = %task.id, error = %e, "could not flush a task log");
        }
        if let Err(e) = self
            .complete(&mut execution, status, reason.clone(), exit_code)
            .await
        {
            tracing::error!(task = %task.id, error = %error_chain(&e), "could not record a task's end");
        }
        if let Some(id) = &execution.container_id
            && let Err(e) = self.scheduler.remove(id).await
        {
            tracing::warn!(task = %task.id, container = %id, error = %e, "could not remove a finished container");
        }
        (status, reason)
    }

    async fn run_container(
        &self,
        task: &Task,
        execution: &mut TaskExecution,
        writer: &mut LogWriter,
        cancel: &CancellationToken,
    ) -> Result<(TaskStatus, Option<StatusReason>, Option<i64>), gofer_scheduler::Error> {
        if cancel.is_cancelled() {
            let reason = reason(
                StatusReasonKind::UserCancelled,
                "the run was cancelled before this task started",
            );
            return Ok((TaskStatus::Cancelled, Some(reason), None));
        }
        execution.state = TaskState::Processing;
        self.record(execution).await;

        let started = self.scheduler.start(self.container_spec(execution)).await?;
        execution.state = TaskState::Running;
        execution.started = epoch_millis();
        execution.container_id = Some(started.container_id.clone());
        execution.image_digest = started.image_digest;
        self.record(execution).await;

        let id = started.container_id;
        let mut logs = started.output;
        let mut cancelled = false;
        let mut exit: Option<Result<i64, gofer_scheduler::Error>> = None;
        let mut logs_open = true;
        let wait = self.scheduler.wait(&id);
        tokio::pin!(wait);
        // Copy logs while waiting for the exit; after the exit, drain what the engine still has.
        while exit.is_none() || logs_open {
            tokio::select! {
                chunk = logs.next(), if logs_open => match chunk {
                    Some(Ok(bytes)) => {
                        if let Err(e) = writer.write(&bytes).await {
                            tracing::warn!(task = %task.id, error = %e, "could not write a task log");
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(task = %task.id, error = %e, "task log stream failed");
                        logs_open = false;
                    }
                    None => logs_open = false,
                },
                code = &mut wait, if exit.is_none() => exit = Some(code),
                () = cancel.cancelled(), if !cancelled && exit.is_none() => {
                    cancelled = true;
                    if let Err(e) = self.scheduler.stop(&id, self.options.stop_grace).await {
                        tracing::warn!(task = %task.id, error = %e, "could not stop a cancelled container");
                    }
                }
                () = tokio::time::sleep(LOG_DRAIN_TIMEOUT), if exit.is_some() => {
                    tracing::warn!(task = %task.id, "log stream did not end after the container exited");
                    logs_open = false;
                }
            }
        }
        let code = exit.unwrap_or(Ok(-1))?;
        if cancelled {
            let reason = reason(
                StatusReasonKind::UserCancelled,
                "the run was cancelled while this task ran",
            );
            return Ok((TaskStatus::Cancelled, Some(reason), Some(code)));
        }
        if code == 0 {
            Ok((TaskStatus::Successful, None, Some(code)))
        } else {
            let reason = reason(
                StatusReasonKind::AbnormalExit,
                &format!("the container exited with code {code}"),
            );
            Ok((TaskStatus::Failed, Some(reason), Some(code)))
        }
    }

    /// Stores a task execution's progress; a failure here is logged, the task goes on.
    async fn record(&self, execution: &TaskExecution) {
        if let Err(e) = self.storage.update_task_execution(execution).await {
            tracing::error!(task = %execution.task_id, error = %e, "could not record task progress");
        }
    }

    async fn complete(
        &self,
        execution: &mut TaskExecution,
        status: TaskStatus,
        reason: Option<StatusReason>,
        exit_code: Option<i64>,
    ) -> Result<()> {
        execution.state = TaskState::Complete;
        execution.status = status;
        execution.status_reason = reason;
        execution.exit_code = exit_code;
        execution.ended = epoch_millis();
        self.storage.update_task_execution(execution).await?;
        Ok(())
    }

    async fn orphan(&self, mut run: Run) -> Result<()> {
        let description = "the server stopped while this was in flight; it was not resumed";
        for mut execution in self
            .storage
            .list_task_executions(&run.namespace_id, &run.pipeline_id, run.run_id)
            .await?
        {
            if execution.is_complete() {
                continue;
            }
            if let Some(id) = &execution.container_id
                && let Err(e) = self.scheduler.remove(id).await
            {
                tracing::warn!(container = %id, error = %e, "could not remove an orphaned container");
            }
            self.complete(
                &mut execution,
                TaskStatus::Cancelled,
                Some(reason(StatusReasonKind::Orphaned, description)),
                None,
            )
            .await?;
        }
        run.state = RunState::Complete;
        run.status = RunStatus::Cancelled;
        run.status_reason = Some(reason(StatusReasonKind::Orphaned, description));
        run.ended = epoch_millis();
        self.storage.update_run(&run).await?;
        tracing::warn!(pipeline = %run.pipeline_id, run = run.run_id, "marked an interrupted run as orphaned");
        Ok(())
    }
}

fn reason(kind: StatusReasonKind, description: &str) -> StatusReason {
    StatusReason {
        reason: kind,
        description: description.to_string(),
    }
}

fn log_key(execution: &TaskExecution) -> LogKey {
    LogKey {
        namespace_id: execution.namespace_id.clone(),
        pipeline_id: execution.pipeline_id.clone(),
        run_id: execution.run_id,
        task_id: execution.task_id.clone(),
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
        .chain(
            task.variables
                .iter()
                .map(|(k, v)| (k.clone(), v.clone(), VariableSource::PipelineConfig)),
        )
        .chain(
            run.variables
                .iter()
                .map(|v| (v.key.clone(), v.value.clone(), v.source)),
        );
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
            initiator: Initiator {
                kind: "user".into(),
                name: "u".into(),
            },
            variables: vec![Variable {
                key: "B".into(),
                value: "run".into(),
                source: VariableSource::RunOptions,
            }],
        };
        let task = Task::new("t", "img").variables([
            ("A", "config"),
            ("B", "config"),
            ("GOFER_RUN_ID", "override"),
        ]);
        let vars: BTreeMap<String, (String, VariableSource)> =
            task_variables(&run, &task, "http://gofer")
                .into_iter()
                .map(|v| (v.key, (v.value, v.source)))
                .collect();
        assert_eq!(
            vars["GOFER_NAMESPACE_ID"],
            ("ns".into(), VariableSource::System)
        );
        assert_eq!(
            vars["GOFER_TASK_IMAGE"],
            ("img".into(), VariableSource::System)
        );
        assert_eq!(
            vars["GOFER_API_BASE_URL"],
            ("http://gofer".into(), VariableSource::System)
        );
        assert_eq!(
            vars["GOFER_RUN_ID"],
            ("override".into(), VariableSource::PipelineConfig)
        );
        assert_eq!(vars["A"], ("config".into(), VariableSource::PipelineConfig));
        assert_eq!(vars["B"], ("run".into(), VariableSource::RunOptions));
    }
}
