//! `gofer task`: a run's task executions, one task's details, cancelling one task, its logs.

use super::copy_to_stdout;
use crate::TaskCommand;
use crate::client::Client;
use crate::output::{self, Format};

pub(super) async fn command(client: &Client, format: Format, command: TaskCommand) -> anyhow::Result<()> {
    match command {
        TaskCommand::List { pipeline, run } => {
            output::print(format, &client.list_tasks(&pipeline, run).await?.task_executions)
        }
        TaskCommand::Get { pipeline, run, task } => {
            output::print(format, &client.get_task(&pipeline, run, &task).await?)
        }
        TaskCommand::Exec { pipeline, run, task, command } => {
            let answer = client.exec(&pipeline, run, &task, command).await?;
            if format == Format::Json {
                return output::json(&answer);
            }
            print!("{}", answer.output);
            if answer.truncated {
                eprintln!("(output truncated: the server returns at most 1 MiB)");
            }
            match u8::try_from(answer.exit_code) {
                Ok(0) => Ok(()),
                Ok(code) => Err(crate::ExitWith(code).into()),
                Err(_) => Err(crate::ExitWith(1).into()),
            }
        }
        TaskCommand::Cancel { pipeline, run, task } => {
            let cancelled = client.cancel_task(&pipeline, run, &task).await?;
            eprintln!("cancelling task '{task}' of run {run}");
            match format {
                Format::Json => output::json(&cancelled),
                Format::Table => output::print(format, &vec![cancelled]),
            }
        }
        TaskCommand::Logs { pipeline, run, task, follow, attempt } => {
            copy_to_stdout(client.task_logs(&pipeline, run, &task, attempt, follow).await?).await
        }
    }
}
