//! Recording progress: every state change of a run or task is stored with its event in one write (retried while
//! storage cannot take it), and the event is announced.

use std::time::Duration;

use gofer_api::epoch_millis;
use gofer_api::models::{EventKind, Run, StatusReason, TaskExecution, TaskState, TaskStatus};
use gofer_storage::NewEvent;

use crate::error::Result;

use super::{Inner, RunKey, error_chain};

/// The first wait before storing a run's progress again, doubling up to the most.
const PERSIST_FIRST_DELAY: Duration = Duration::from_millis(100);

const PERSIST_MAX_DELAY: Duration = Duration::from_secs(30);

impl Inner {
    /// Stores a change a run's outcome depends on, retrying with back-off while storage cannot take it (a full
    /// disk, a busy database): a run is never left `running` because one write failed, and its containers are
    /// removed only once their outcome is stored. Errors storage will not get over (a missing row) end the retry.
    pub(super) async fn persist<'a, T, F, Fut>(&'a self, what: &str, mut write: F) -> Result<T>
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
                // A missing row, or a run another server took over (this one lost its lease): no retry helps.
                Err(
                    e @ (gofer_storage::Error::NotFound { .. }
                    | gofer_storage::Error::Exists { .. }
                    | gofer_storage::Error::Conflict { .. }),
                ) => {
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

    /// Stores a task execution's progress with its event; a storage failure is logged, the task goes on. False
    /// when the run is another server's now (this one lost its lease): it must leave the task's container alone.
    pub(super) async fn save_task(&self, execution: &TaskExecution) -> bool {
        let event = task_changed(execution);
        let stored = self
            .persist("record task progress", || {
                self.events.record(|| self.storage.update_task_execution(execution, &event))
            })
            .await;
        match stored {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(task = %execution.task_id, error = %e, "could not record task progress");
                !self.lost_if_refused(&e, &key_of(execution))
            }
        }
    }

    /// When storage refused a write because another server owns the run now: lets the run go here (its driver is
    /// dropped) and says so.
    fn lost_if_refused(&self, error: &crate::error::Error, key: &RunKey) -> bool {
        if !matches!(error, crate::error::Error::Conflict { .. }) {
            return false;
        }
        if let Some(control) = self.slots().controls.get(key) {
            control.lost.cancel();
        }
        true
    }

    /// Stores a new task execution with its event.
    pub(super) async fn insert_task(&self, execution: &TaskExecution) -> Result<()> {
        let event = task_changed(execution);
        let stored = self
            .persist("store a task execution", || {
                self.events.record(|| self.storage.insert_task_execution(execution, &event))
            })
            .await;
        if let Err(e) = &stored {
            self.lost_if_refused(e, &key_of(execution));
        }
        stored.map(drop)
    }

    /// Stores a run's state, times and outcome with `kind`, the event telling of it.
    pub(super) async fn save_run(&self, what: &str, run: &Run, kind: EventKind) -> Result<()> {
        let event = NewEvent { emitted: epoch_millis(), kind };
        let stored = self.persist(what, || self.events.record(|| self.storage.update_run(run, &event))).await;
        if let Err(e) = &stored {
            self.lost_if_refused(e, &RunKey::of(run));
        }
        stored.map(drop)
    }

    /// Records a task's end; false when the run is another server's now (see [`Inner::save_task`]).
    pub(super) async fn complete(
        &self,
        execution: &mut TaskExecution,
        status: TaskStatus,
        status_reason: Option<StatusReason>,
        exit_code: Option<i64>,
    ) -> bool {
        execution.state = TaskState::Complete;
        execution.status = status;
        execution.status_reason = status_reason;
        execution.exit_code = exit_code;
        execution.ended = epoch_millis();
        let kept = self.save_task(execution).await;
        self.metrics.task_completed(execution);
        kept
    }
}

fn key_of(execution: &TaskExecution) -> RunKey {
    RunKey {
        namespace_id: execution.namespace_id.clone(),
        pipeline_id: execution.pipeline_id.clone(),
        run_id: execution.run_id,
    }
}

fn task_changed(execution: &TaskExecution) -> NewEvent {
    NewEvent {
        emitted: epoch_millis(),
        kind: EventKind::TaskChanged {
            namespace_id: execution.namespace_id.clone(),
            pipeline_id: execution.pipeline_id.clone(),
            run_id: execution.run_id,
            task_id: execution.task_id.clone(),
            attempt: execution.attempt,
            state: execution.state,
            status: execution.status,
            status_reason: execution.status_reason.clone(),
            exit_code: execution.exit_code,
        },
    }
}
