//! One task to its end: each attempt starts (or, after a restart, finds) its container, copies its output into
//! the attempt's log while awaiting its exit, and stops it on cancellation, timeout or a log that cannot be written.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use gofer_api::epoch_millis;
use gofer_api::models::{Attempt, StatusReason, StatusReasonKind, TaskExecution, TaskState, TaskStatus};
use gofer_scheduler::ContainerState;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::logs::LogWriter;
use crate::mask::Masker;
use gofer_storage::LogKey;

use super::ahead::{Prepared, Preparing};
use super::queue::RunControl;
use super::run::{StartedSender, deadline_from, sleep_until_deadline};
use super::{Inner, error_chain, reason};

/// How long to wait for a container's output stream to end after the container exited.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A task about to run: its execution, its log, whether it resumes after a restart, how long a failed attempt's
/// container is kept, and its container if it was made ahead.
pub(super) struct Attempting {
    pub(super) execution: TaskExecution,
    pub(super) writer: LogWriter,
    pub(super) resume: bool,
    pub(super) keep_failed: Option<Duration>,
    pub(super) prepared: Option<Preparing>,
}

/// How an attempt begins.
pub(super) enum Begin {
    /// With the container a previous server process made for it, if there is one.
    Resume,
    /// With a new container, or the one made ahead.
    New(Option<Preparing>),
}

/// How one attempt of a task ended.
pub(super) struct Outcome {
    pub(super) status: TaskStatus,
    pub(super) reason: Option<StatusReason>,
    pub(super) exit_code: Option<i64>,
}

impl Inner {
    /// The log of an attempt; one that cannot be made (a full disk) fails the attempt before its container starts.
    pub(super) async fn create_log(&self, execution: &TaskExecution) -> LogWriter {
        let writer = LogWriter::create(self.logs.as_ref(), &log_key(execution))
            .await
            .counting(self.metrics.log_bytes(&execution.namespace_id, &execution.pipeline_id));
        if let Some(problem) = writer.problem() {
            tracing::error!(task = %execution.task_id, error = %problem, "could not create a task log");
        }
        writer
    }

    /// Runs a task to its end, retrying failed attempts as configured, and records the outcome. Never fails:
    /// every problem becomes the task's status and reason. With `resume`, the first attempt is the one a previous
    /// server process started. `started` hears when a container of it started.
    pub(super) async fn execute(
        self: Arc<Self>,
        task: Attempting,
        token: CancellationToken,
        control: Arc<RunControl>,
        started: StartedSender,
    ) -> (TaskStatus, Option<StatusReason>) {
        let Attempting { mut execution, mut writer, mut resume, keep_failed, mut prepared } = task;
        loop {
            // Only the first attempt resumes, and only its container is made ahead.
            let begin = if resume { Begin::Resume } else { Begin::New(prepared.take()) };
            let outcome = match self.attempt(&mut execution, &mut writer, &token, &control, begin, &started).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    self.metrics.scheduler_error(&e);
                    // An image that cannot be had is the task's to fix (its name, its registry credentials), not
                    // the engine's.
                    let kind = if is_the_tasks_to_fix(&e) {
                        StatusReasonKind::FailedPrecondition
                    } else {
                        StatusReasonKind::SchedulerError
                    };
                    Outcome {
                        status: TaskStatus::Failed,
                        reason: Some(reason(kind, &error_chain(&e))),
                        exit_code: None,
                    }
                }
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
                let mut reason = outcome.reason.clone();
                if let (Some(keep), TaskStatus::Failed, Some(_), Some(container)) =
                    (keep_failed, outcome.status, outcome.exit_code, &finished_container)
                    && !token.is_cancelled()
                {
                    let kept = self.keep_for_debugging(&execution, container, keep).await;
                    let note = match kept {
                        Ok(debug) => {
                            let note = format!(
                                "; its filesystem is kept {}s in debug container {debug} (gofer task attach {} {} {})",
                                keep.as_secs(),
                                execution.pipeline_id,
                                execution.run_id,
                                execution.task_id
                            );
                            execution.container_id = Some(debug);
                            note
                        }
                        Err(e) => format!("; no debug container could be kept: {}", error_chain(&e)),
                    };
                    if let Some(reason) = reason.as_mut() {
                        reason.description.push_str(&note);
                    }
                }
                if self.complete(&mut execution, outcome.status, reason.clone(), outcome.exit_code).await {
                    self.release_container(finished_container, &execution.task_id);
                }
                return (outcome.status, reason);
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
            if !self.save_task(&execution).await {
                // Another server drives the run now; it finds this attempt's container itself.
                return (TaskStatus::Unknown, None);
            }
            self.release_container(finished_container, &execution.task_id);
        }
    }

    /// Runs one attempt: starts the container (or, resuming, finds the one already started), copies its output
    /// into the log while awaiting its exit, and stops it on cancellation or timeout.
    pub(super) async fn attempt(
        &self,
        execution: &mut TaskExecution,
        writer: &mut LogWriter,
        token: &CancellationToken,
        control: &RunControl,
        begin: Begin,
        started_tell: &StartedSender,
    ) -> Result<Outcome, gofer_scheduler::Error> {
        let task_id = execution.task_id.clone();
        let (resumed, prepared) = match begin {
            Begin::Resume => (self.find_container(execution).await?, None),
            Begin::New(prepared) => (None, prepared),
        };
        let mut masker = Masker::default();
        let (id, output): (String, BoxStream<'static, gofer_scheduler::Result<bytes::Bytes>>) = match resumed {
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
                // The container made ahead, once made (`None` if it could not be: it is made now).
                let prepared = match prepared {
                    Some(preparing) => preparing.await.ok().flatten(),
                    None => None,
                };
                // One that is not started after all goes.
                let unused = |prepared: Option<Prepared>| {
                    if let Some(prepared) = prepared {
                        self.forget_prepared(prepared.container_id, &task_id);
                    }
                };
                if token.is_cancelled() {
                    unused(prepared);
                    let why = control.task_reason(&task_id);
                    let why =
                        StatusReason { description: format!("{} before this task started", why.description), ..why };
                    return Ok(Outcome { status: TaskStatus::Cancelled, reason: Some(why), exit_code: None });
                }
                if let Some(problem) = writer.problem() {
                    unused(prepared);
                    let why = reason(
                        StatusReasonKind::LogWriteFailed,
                        &format!("its log could not be created ({problem}); the container was not started"),
                    );
                    return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: None });
                }
                execution.state = TaskState::Processing;
                self.save_task(execution).await;
                let container_id = match prepared {
                    Some(prepared) => {
                        masker = prepared.masker;
                        prepared.container_id
                    }
                    None => {
                        let resolved = match self.resolve_variables(execution, true).await {
                            Ok(resolved) => resolved,
                            Err(problem) => {
                                let why = reason(StatusReasonKind::FailedPrecondition, &problem);
                                return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: None });
                            }
                        };
                        let mounts = match self.options.mounts(&execution.namespace_id, &execution.task) {
                            Ok(mounts) => mounts,
                            Err(problem) => {
                                let why = reason(StatusReasonKind::FailedPrecondition, &problem);
                                return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: None });
                            }
                        };
                        masker = resolved.masker;
                        let spec = self.container_spec(execution, resolved.env, resolved.registry_auth, mounts);
                        // Created and started in two calls: a crash in between leaves a container that recovery
                        // finds by its labels and starts, instead of one it could mistake for finished.
                        self.scheduler.create(&spec).await?
                    }
                };
                let started = self.scheduler.start(&container_id).await?;
                let _ = started_tell.send(task_id.clone());
                execution.state = TaskState::Running;
                execution.started = epoch_millis();
                execution.container_id = Some(started.container_id.clone());
                execution.image_digest = started.image_digest;
                self.save_task(execution).await;
                (started.container_id, started.output)
            }
        };

        let mut output = coalesced(output);
        let _running = self.metrics.task_running(execution);
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
        // Writes are stored behind the copying: a failure shows here as soon as it happens.
        let log_failed = writer.failed();
        tokio::pin!(log_failed);
        let mut write_error: Option<std::io::Error> = None;
        // Copy output while waiting for the exit; after the exit, drain what is still in flight.
        while exit.is_none() || output_open {
            tokio::select! {
                () = async { if let Some(call) = stop_call.as_mut() { call.await } }, if stop_call.is_some() => {
                    stop_call = None;
                }
                chunk = output.next(), if output_open => match chunk {
                    Some(Ok(bytes)) => {
                        if let Err(e) = writer.write(masker.feed(bytes)).await {
                            write_error = Some(e);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(task = %task_id, error = %e, "task output stream failed");
                        output_open = false;
                    }
                    None => output_open = false,
                },
                () = &mut log_failed, if log_failure.is_none() && write_error.is_none() => {
                    write_error = writer.problem();
                }
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
            if let Some(e) = write_error.take()
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
        let ended = match writer.write(masker.finish()).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = ended
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
        if execution.image_digest.is_none() {
            // A cluster knows the image's digest only once a node pulled it, after the start.
            execution.image_digest = self.scheduler.inspect(&id).await.ok().and_then(|info| info.image_digest);
        }
        let code = match exit {
            Some(Ok(code)) => code,
            Some(Err(_)) if stopping.is_some() && log_failure.is_none() => {
                // It was being stopped, and stopping ended it before its end could be seen (a cluster deletes a pod
                // or a job to stop it): the outcome is the stop's.
                let status = if timed_out { TaskStatus::Failed } else { TaskStatus::Cancelled };
                return Ok(Outcome { status, reason: stopping, exit_code: None });
            }
            Some(Err(e)) => {
                self.metrics.scheduler_error(&e);
                // A workload a cluster could not start (its image, no node in time) must not run later, after its
                // task was recorded as failed: it is stopped.
                self.stop(&task_id, &id).await;
                let why = if is_the_tasks_to_fix(&e) {
                    // A cluster learns that the image cannot be had only once a node tries to pull it.
                    reason(StatusReasonKind::FailedPrecondition, &error_chain(&e))
                } else if matches!(e, gofer_scheduler::Error::Engine { .. }) {
                    let words = format!("the container engine gave up on the container: {}", error_chain(&e));
                    reason(StatusReasonKind::SchedulerError, &words)
                } else {
                    reason(
                        StatusReasonKind::SchedulerError,
                        &format!(
                            "lost track of the container while it ran (the engine may have restarted): {}",
                            error_chain(&e)
                        ),
                    )
                };
                return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: None });
            }
            None => -1,
        };
        execution.exit_code = Some(code);
        if let Some(why) = log_failure {
            return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: Some(code) });
        }
        let (mut oom_killed, mut exit_message) = (false, None);
        if code != 0 && stopping.is_none() {
            match self.scheduler.inspect(&id).await {
                Ok(info) => (oom_killed, exit_message) = (info.oom_killed, info.exit_message),
                Err(e) => {
                    self.metrics.scheduler_error(&e);
                    // The engine answered the wait but cannot be reached now: it is shutting down and stopped the
                    // container itself. That is the engine's doing, not the task's.
                    let why = reason(
                        StatusReasonKind::SchedulerError,
                        &format!(
                            "the container engine stopped the container (exit code {code}) and went away: {}",
                            error_chain(&e)
                        ),
                    );
                    return Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: Some(code) });
                }
            }
        }
        if let Some(why) = stopping {
            let status = if timed_out { TaskStatus::Failed } else { TaskStatus::Cancelled };
            return Ok(Outcome { status, reason: Some(why), exit_code: Some(code) });
        }
        if code == 0 {
            Ok(Outcome { status: TaskStatus::Successful, reason: None, exit_code: Some(code) })
        } else if let Some(description) = out_of_memory(oom_killed, code, execution.task.memory_bytes) {
            let why = reason(StatusReasonKind::OutOfMemory, &description);
            Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: Some(code) })
        } else {
            let said = exit_message.map(|words| format!(": {words}")).unwrap_or_default();
            let why = reason(StatusReasonKind::AbnormalExit, &format!("the container exited with code {code}{said}"));
            Ok(Outcome { status: TaskStatus::Failed, reason: Some(why), exit_code: Some(code) })
        }
    }
}

/// Output chunks that arrived together, as one chunk: a task that writes fast is stored in few large writes, not one
/// per chunk the engine sent (up to 32 KiB each). A failure comes after the chunks before it.
fn coalesced(
    output: BoxStream<'static, gofer_scheduler::Result<bytes::Bytes>>,
) -> BoxStream<'static, gofer_scheduler::Result<bytes::Bytes>> {
    output
        .ready_chunks(64)
        .flat_map(|batch| {
            let mut chunks = Vec::with_capacity(batch.len());
            let mut failure = None;
            for item in batch {
                match item {
                    Ok(chunk) => chunks.push(chunk),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let joined = match chunks.len() {
                0 => None,
                1 => chunks.pop(),
                _ => {
                    let mut joined = bytes::BytesMut::with_capacity(chunks.iter().map(|c| c.len()).sum());
                    chunks.iter().for_each(|c| joined.extend_from_slice(c));
                    Some(joined.freeze())
                }
            };
            futures::stream::iter(joined.map(Ok).into_iter().chain(failure.map(Err)))
        })
        .boxed()
}

pub(super) fn log_key(execution: &TaskExecution) -> LogKey {
    LogKey {
        namespace_id: execution.namespace_id.clone(),
        pipeline_id: execution.pipeline_id.clone(),
        run_id: execution.run_id,
        task_id: execution.task_id.clone(),
        attempt: execution.attempt,
    }
}

/// An image that cannot be had, or a spec the scheduler cannot run: the task's to fix (its image, credentials or
/// settings), not the engine's fault.
fn is_the_tasks_to_fix(e: &gofer_scheduler::Error) -> bool {
    matches!(e, gofer_scheduler::Error::Image { .. } | gofer_scheduler::Error::Unsupported { .. })
}

/// Why a container that exited non-zero ran out of memory, if it did: the engine said so, or — engines miss the
/// kernel's notice now and then when containers end together — it was killed by SIGKILL (exit code 137) while it
/// had a memory limit and Gofer did not stop it.
fn out_of_memory(confirmed: bool, code: i64, limit: Option<u64>) -> Option<String> {
    let limit = limit.map(human_bytes);
    match (confirmed, limit) {
        (true, Some(limit)) => Some(format!(
            "the container needed more than its memory limit of {limit} and was killed (exit code {code})"
        )),
        (true, None) => Some(format!("the container ran out of memory and was killed (exit code {code})")),
        (false, Some(limit)) if code == 137 => Some(format!(
            "the container was killed (exit code 137, SIGKILL) while held to its memory limit of {limit}: most \
             likely it needed more (the engine did not confirm it)"
        )),
        (false, _) => None,
    }
}

/// A byte count as people write memory limits: `2 GiB`, `512 MiB`, `6291457 bytes`.
fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;
    if bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_told_by_the_engine_or_by_a_kill_under_a_limit() {
        let said = out_of_memory(true, 137, Some(16 * 1024 * 1024)).unwrap_or_default();
        assert_eq!(said, "the container needed more than its memory limit of 16 MiB and was killed (exit code 137)");
        assert!(out_of_memory(true, 1, None).is_some_and(|s| s.contains("ran out of memory")));
        let guessed = out_of_memory(false, 137, Some(3 * 1024 * 1024 * 1024)).unwrap_or_default();
        assert!(guessed.contains("memory limit of 3 GiB") && guessed.contains("did not confirm"), "{guessed}");
        assert_eq!(out_of_memory(false, 137, None), None, "a kill without a limit is not taken for one");
        assert_eq!(out_of_memory(false, 1, Some(64 * 1024 * 1024)), None);
        assert_eq!(human_bytes(6 * 1024 * 1024 + 1), "6291457 bytes");
    }
}
