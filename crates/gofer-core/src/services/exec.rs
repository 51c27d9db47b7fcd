//! Running a command in a task's running container (`gofer task exec`), for debugging: only while the task runs,
//! told as an event, its output bounded.

use bytes::BytesMut;
use futures::StreamExt;
use gofer_api::models::{EventKind, Initiator, TaskState};
use gofer_api::requests::{AttachRequest, ExecResponse};
use std::sync::Arc;

use gofer_scheduler::Scheduler;
use tokio::io::AsyncWriteExt;

use crate::Gofer;
use crate::error::{Error, Result};

/// The most output an exec returns; the rest is read (so the command can finish) and dropped.
pub const MAX_EXEC_OUTPUT: usize = 1 << 20;
/// The most arguments a command may have.
const MAX_ARGS: usize = 256;

/// An interactive command in a task's container (`gofer task attach`): its output and input, and the controls for
/// its terminal size and exit code.
pub struct Session {
    pub controls: Controls,
    /// Its stdout and stderr (one stream with a TTY); ends when it exits.
    pub output: futures::stream::BoxStream<'static, gofer_scheduler::Result<bytes::Bytes>>,
    /// Its stdin; shutting it down sends end-of-file.
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("exec_id", &self.controls.exec_id).finish_non_exhaustive()
    }
}

/// What can be asked of a running session's command besides its input and output.
#[derive(Clone)]
pub struct Controls {
    scheduler: Arc<dyn Scheduler>,
    exec_id: String,
}

impl Controls {
    pub async fn resize(&self, columns: u16, rows: u16) -> Result<()> {
        let resized = self.scheduler.resize_exec(&self.exec_id, columns, rows).await;
        resized.map_err(|e| Error::Unavailable { message: crate::error::error_chain(&e) })
    }

    /// The command's exit code; ask once its output ended (the engine may take a moment to record it).
    pub async fn exit_code(&self) -> Result<i64> {
        exit_code(self.scheduler.as_ref(), &self.exec_id).await
    }
}

async fn exit_code(scheduler: &dyn Scheduler, exec_id: &str) -> Result<i64> {
    for _ in 0..50 {
        let code = scheduler.exec_exit_code(exec_id).await;
        match code.map_err(|e| Error::Unavailable { message: crate::error::error_chain(&e) })? {
            Some(code) => return Ok(code),
            None => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    Err(Error::Unavailable { message: "the command's output ended but the engine reports no exit code".into() })
}

impl Gofer {
    /// Starts a command in a task's running container for a user to talk to (with a TTY of the given size when
    /// asked).
    pub async fn attach_to_task(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
        request: AttachRequest,
        by: &Initiator,
    ) -> Result<Session> {
        let size = request.columns.zip(request.rows).filter(|_| request.tty);
        let exec = self.start_exec(namespace_id, pipeline_id, run_id, task_id, request, by).await?;
        let controls = Controls { scheduler: self.orchestrator.scheduler().clone(), exec_id: exec.exec_id };
        if let Some((columns, rows)) = size {
            // A terminal of the wrong size only wraps oddly; the session goes on.
            let _ = controls.resize(columns, rows).await;
        }
        Ok(Session { controls, output: exec.output, input: exec.input })
    }

    /// Runs `command` in the running container of a task and returns its output and exit code.
    pub async fn exec_in_task(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
        command: Vec<String>,
        by: &Initiator,
    ) -> Result<ExecResponse> {
        let request = AttachRequest { command, tty: false, columns: None, rows: None };
        let mut exec = self.start_exec(namespace_id, pipeline_id, run_id, task_id, request, by).await?;
        // No input: the command sees end-of-file at once.
        let _ = exec.input.shutdown().await;
        let mut output = BytesMut::new();
        let mut truncated = false;
        while let Some(chunk) = exec.output.next().await {
            let Ok(chunk) = chunk else { break };
            let room = MAX_EXEC_OUTPUT.saturating_sub(output.len());
            truncated |= chunk.len() > room;
            output.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        // The output ends when the command exits.
        let exit_code = exit_code(self.orchestrator.scheduler().as_ref(), &exec.exec_id).await?;
        Ok(ExecResponse { exit_code, output: String::from_utf8_lossy(&output).into_owned(), truncated })
    }

    /// Checks the command and the task, tells the event, and starts the command.
    async fn start_exec(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
        request: AttachRequest,
        by: &Initiator,
    ) -> Result<gofer_scheduler::Exec> {
        let AttachRequest { command, tty, .. } = request;
        if command.is_empty() || command.len() > MAX_ARGS {
            return Err(Error::invalid(format!(
                "command must have 1 to {MAX_ARGS} arguments (the program first), got {}",
                command.len()
            )));
        }
        if command[0].is_empty() || command.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid("command: the program must be named and no argument may contain a NUL byte"));
        }
        let execution = self.get_task_execution(namespace_id, pipeline_id, run_id, task_id).await?;
        let not_running = || {
            Error::conflict(format!(
                "task '{task_id}' of run {run_id} is {}, not running, and keeps no debug container; exec works in a \
                 running task's container, or in a failed one's kept by the pipeline's keep_failed_containers",
                execution.state
            ))
        };
        let container = execution.container_id.clone().ok_or_else(not_running)?;
        if execution.state != TaskState::Running {
            // A failed task's debug container, while it is kept.
            let info = self.orchestrator.scheduler().inspect(&container).await;
            if !info.is_ok_and(|info| info.is_running()) {
                return Err(not_running());
            }
        }
        self.events
            .publish(EventKind::TaskExecStarted {
                namespace_id: namespace_id.into(),
                pipeline_id: pipeline_id.into(),
                run_id,
                task_id: task_id.into(),
                command: command.clone(),
                by: format!("{} {}", by.kind, by.name),
            })
            .await;
        self.orchestrator.scheduler().exec(&container, &command, tty).await.map_err(|e| match e {
            gofer_scheduler::Error::NoSuchContainer { .. } => {
                Error::conflict(format!("task '{task_id}' of run {run_id} ended; its container is gone"))
            }
            other => Error::Unavailable {
                message: format!("could not run the command: {}", crate::error::error_chain(&other)),
            },
        })
    }
}
