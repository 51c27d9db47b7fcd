//! Running a command in a task's running container (`gofer task exec`), for debugging: only while the task runs,
//! told as an event, its output bounded.

use bytes::BytesMut;
use futures::StreamExt;
use gofer_api::models::{EventKind, Initiator, TaskState};
use gofer_api::requests::ExecResponse;
use tokio::io::AsyncWriteExt;

use crate::Gofer;
use crate::error::{Error, Result};

/// The most output an exec returns; the rest is read (so the command can finish) and dropped.
pub const MAX_EXEC_OUTPUT: usize = 1 << 20;
/// The most arguments a command may have.
const MAX_ARGS: usize = 256;

impl Gofer {
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
        let container = match (&execution.state, &execution.container_id) {
            (TaskState::Running, Some(container)) => container.clone(),
            (state, _) => {
                return Err(Error::conflict(format!(
                    "task '{task_id}' of run {run_id} is {state}, not running; exec works in a running task's \
                     container"
                )));
            }
        };
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
        let scheduler = self.orchestrator.scheduler();
        let ended = |e: gofer_scheduler::Error| match e {
            gofer_scheduler::Error::NoSuchContainer { .. } => {
                Error::conflict(format!("task '{task_id}' of run {run_id} ended; its container is gone"))
            }
            other => Error::Unavailable {
                message: format!("could not run the command: {}", crate::error::error_chain(&other)),
            },
        };
        let mut exec = scheduler.exec(&container, &command, false).await.map_err(ended)?;
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
        // The output ends when the command exits; the engine may take a moment to record its exit code.
        let mut exit_code = None;
        for _ in 0..50 {
            exit_code = scheduler.exec_exit_code(&exec.exec_id).await.map_err(ended)?;
            if exit_code.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let Some(exit_code) = exit_code else {
            return Err(Error::Unavailable {
                message: "the command's output ended but the engine reports no exit code".into(),
            });
        };
        Ok(ExecResponse { exit_code, output: String::from_utf8_lossy(&output).into_owned(), truncated })
    }
}
