//! One run's driver: it starts each task whose parents ended as it needs, skips those that can no longer run,
//! and records the run's outcome.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gofer_api::config::Task;
use gofer_api::epoch_millis;
use gofer_api::models::{
    EventKind, Run, RunState, RunStatus, StatusReason, StatusReasonKind, TaskExecution, TaskState, TaskStatus,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::dag::{self, Decision};
use crate::error::{Error, Result};
use crate::logs::LogWriter;
use crate::tokens;

use super::ahead::{Preparing, may_prepare};
use super::attempt::Attempting;
use super::environment::task_variables;
use super::queue::Queued;
use super::{Inner, RunControl, reason};

/// A task's id and how it ended, as its attempts' task yields them.
type TaskOutcome = (String, TaskStatus, Option<StatusReason>);

/// What an attempt tells its run's driver as it goes: its container started (so its children's containers can be
/// made ahead).
pub(super) type StartedSender = mpsc::UnboundedSender<String>;

impl Inner {
    pub(super) async fn drive(self: Arc<Self>, queued: Queued, resume: bool) -> Result<()> {
        let Queued { mut run, config, control } = queued;
        if !resume {
            run.state = RunState::Running;
            run.started = epoch_millis();
            let started = EventKind::RunStarted {
                namespace_id: run.namespace_id.clone(),
                pipeline_id: run.pipeline_id.clone(),
                run_id: run.run_id,
            };
            self.save_run("record that a run started", &run, started).await?;
            self.metrics.run_started(&run);
        }
        let run_timeout = self.effective_timeout(config.timeout_seconds);
        let keep_failed = config.keep_failed_seconds.map(Duration::from_secs);
        let deadline = deadline_from(run.started, run_timeout);
        // The tasks that have parents share a network the engine makes now, while the first tasks start.
        let network =
            config.tasks.iter().any(|t| !t.depends_on.is_empty()).then(|| {
                (self.shared_network_key(&run.namespace_id, &run.pipeline_id, run.run_id), self.run_labels(&run))
            });
        let network_made = network.clone().map(|(key, labels)| {
            let scheduler = self.scheduler.clone();
            self.background.spawn(async move { scheduler.prepare_shared_network(&key, &labels).await })
        });

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
        let mut running: JoinSet<TaskOutcome> = JoinSet::new();
        // Tasks whose container started (or that ended), and containers being made ahead of their task's start.
        let (started_tx, mut started_rx) = mpsc::unbounded_channel::<String>();
        let mut under_way: HashSet<String> = HashSet::new();
        let mut preparing: HashMap<String, Preparing> = HashMap::new();
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
                    under_way.insert(task.id.clone());
                    let writer = self.create_log(&execution).await;
                    let attempt = Attempting { execution, writer, resume: true, keep_failed, prepared: None };
                    self.spawn_task(&mut running, &control, &started_tx, attempt);
                }
                Some(execution) => {
                    // A container made ahead by the previous process goes: it is made again when its time comes.
                    self.remove_made_ahead(&execution).await;
                    let writer = self.create_log(&execution).await;
                    pending.insert(task.id.clone(), (task.clone(), execution, writer));
                }
                None => {
                    let execution = self.new_execution(&run, task);
                    self.insert_task(&execution).await?;
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
                if let Some(made) = preparing.remove(&id) {
                    self.discard_prepared(made, &id);
                }
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
                            let prepared = preparing.remove(&id);
                            let attempt = Attempting { execution, writer, resume: false, keep_failed, prepared };
                            self.spawn_task(&mut running, &control, &started_tx, attempt);
                        }
                        Decision::Skip { description } => {
                            if let Some(made) = preparing.remove(&id) {
                                self.discard_prepared(made, &id);
                            }
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
            // Containers of tasks whose parents all started are made while the parents run.
            if self.options.create_ahead && !control.cancel.is_cancelled() {
                for (id, (task, execution, _)) in &pending {
                    let parents_under_way =
                        task.depends_on.keys().all(|p| under_way.contains(p) || finished.contains_key(p));
                    if parents_under_way && !preparing.contains_key(id) && may_prepare(execution) {
                        preparing.insert(id.clone(), self.prepare(execution.clone()));
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
                Some(id) = started_rx.recv() => {
                    under_way.insert(id);
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

        for (id, made) in preparing.drain() {
            self.discard_prepared(made, &id);
        }
        if let Some((key, _)) = network {
            let scheduler = self.scheduler.clone();
            self.background.spawn(async move {
                // A run quicker than making its network releases it only once it was made.
                if let Some(made) = network_made {
                    let _ = made.await;
                }
                scheduler.release_shared_network(&key).await
            });
        }
        let (status, mut status_reason) = dag::run_outcome(&outcomes);
        if status == RunStatus::Cancelled
            && let Some(why) = control.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
        {
            status_reason = Some(why);
        }
        self.finish_run(run, status, status_reason).await
    }

    /// Runs a task (all its attempts) on `running`, in a span naming it; the set yields its id and outcome, and
    /// `started` hears when its container started.
    fn spawn_task(
        self: &Arc<Self>,
        running: &mut JoinSet<TaskOutcome>,
        control: &Arc<RunControl>,
        started: &StartedSender,
        task: Attempting,
    ) {
        let id = task.execution.task_id.clone();
        let token = control.task_token(&id);
        let (inner, control, started) = (self.clone(), control.clone(), started.clone());
        let span = tracing::info_span!("task", task = %id);
        let work = async move {
            let (status, reason) = inner.execute(task, token, control, started).await;
            (id, status, reason)
        };
        running.spawn(work.instrument(span));
    }

    pub(super) async fn finish_run(
        &self,
        mut run: Run,
        status: RunStatus,
        status_reason: Option<StatusReason>,
    ) -> Result<()> {
        run.state = RunState::Complete;
        run.status = status;
        run.status_reason = status_reason.clone();
        run.ended = epoch_millis();
        let completed = EventKind::RunCompleted {
            namespace_id: run.namespace_id.clone(),
            pipeline_id: run.pipeline_id.clone(),
            run_id: run.run_id,
            status,
            status_reason,
        };
        self.save_run("record a run's outcome", &run, completed).await?;
        self.metrics.run_completed(&run);
        tracing::info!(pipeline = %run.pipeline_id, run = run.run_id, status = %run.status, "run complete");
        // The tokens handed to the run's tasks end with it.
        let holder = tokens::run_token_user(&run.namespace_id, &run.pipeline_id, run.run_id);
        if let Err(e) = self.storage.delete_tokens_of_user(&holder).await {
            tracing::warn!(run = run.run_id, error = %e, "could not revoke the tokens of a finished run");
        }
        self.expire_logs(&run).await;
        Ok(())
    }

    pub(super) fn effective_timeout(&self, requested: Option<u64>) -> Duration {
        match requested {
            Some(secs) => Duration::from_secs(secs).min(self.options.max_timeout),
            None => self.options.max_timeout,
        }
    }

    pub(super) fn new_execution(&self, run: &Run, task: &Task) -> TaskExecution {
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
}

/// The tokio instant matching `started_ms + timeout` (epoch milliseconds), or now + timeout when not started.
pub(super) fn deadline_from(started_ms: u64, timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if started_ms == 0 {
        return now + timeout;
    }
    let elapsed = Duration::from_millis(epoch_millis().saturating_sub(started_ms));
    now + timeout.saturating_sub(elapsed)
}

pub(super) async fn sleep_until_deadline(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gofer_api::epoch_millis;

    use super::deadline_from;

    #[test]
    fn deadlines_count_from_the_recorded_start() {
        let now = tokio::time::Instant::now();
        let fresh = deadline_from(0, Duration::from_secs(10));
        assert!(fresh >= now + Duration::from_secs(9));
        let long_ago = deadline_from(epoch_millis() - 60_000, Duration::from_secs(10));
        assert!(long_ago <= tokio::time::Instant::now(), "a run started a minute ago with 10 s is already late");
    }
}
