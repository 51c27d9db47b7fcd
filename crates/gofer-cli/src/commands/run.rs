//! `gofer run`: start, list, show (live with `--follow`, as a timeline with `--timeline`) and cancel runs.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use futures::StreamExt;
use gofer_api::models::{EventKind, TaskState, TaskStatus};

use crate::RunCommand;
use crate::client::Client;
use crate::output::{self, Format};
use crate::views::{RunWithTasks, Timeline};

pub(super) async fn command(client: &Client, format: Format, command: RunCommand) -> anyhow::Result<()> {
    match command {
        RunCommand::Start { pipeline, variables, version } => {
            let run = client.start_run(&pipeline, variables.into_iter().collect::<BTreeMap<_, _>>(), version).await?;
            output::print(format, &run)?;
            if format == Format::Table {
                eprintln!("follow it with `gofer run get {pipeline} {} --follow`", run.run_id);
            }
            Ok(())
        }
        RunCommand::Local(_) | RunCommand::Replay { local: Some(_), .. } => {
            anyhow::bail!("`gofer run local` runs without a server; the gofer binary handles it")
        }
        RunCommand::Debug { pipeline, run, lines } => debug(client, format, &pipeline, run, lines).await,
        RunCommand::Replay { pipeline, run, version, local: None } => {
            let earlier = client.get_run(&pipeline, run).await?;
            let replay = client.start_run(&pipeline, crate::replayed_variables(&earlier), version).await?;
            eprintln!("run {} replays run {run} with its variables", replay.run_id);
            output::print(format, &replay)
        }
        RunCommand::List { pipeline, limit, offset, state, status } => {
            let list = client.list_runs(&pipeline, limit, offset, state.as_deref(), status.as_deref()).await?;
            output::print(format, &list.runs)?;
            if let (Format::Table, Some(next)) = (format, list.next_offset) {
                eprintln!("more runs: --offset {next}");
            }
            Ok(())
        }
        RunCommand::Get { pipeline, run, follow, timeline } => {
            if follow {
                follow_run(client, &pipeline, run, if timeline { Format::Json } else { format }).await?;
            }
            if timeline {
                let events = client.events(Some((&pipeline, run)), 0, false, None).await?;
                let all: Vec<_> = events.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
                return output::print(format, &Timeline(all));
            }
            let shown = client.get_run(&pipeline, run).await?;
            let tasks = client.list_tasks(&pipeline, run).await?.task_executions;
            output::print(format, &RunWithTasks { run: shown, tasks })
        }
        RunCommand::Object(command) => super::object::run(client, format, command).await,
        RunCommand::Cancel { pipeline, run } => {
            let cancelled = client.cancel_run(&pipeline, run).await?;
            eprintln!("cancelling run {run} of '{pipeline}'");
            output::print(format, &cancelled)
        }
    }
}

/// What a task change looks like on the follow line: its state, or how it ended.
fn change(state: TaskState, status: TaskStatus, exit_code: Option<i64>) -> String {
    if state == TaskState::Complete {
        let exit = exit_code.map_or(String::new(), |c| format!(" (exit {c})"));
        format!("{status}{exit}")
    } else {
        state.to_string()
    }
}

/// Prints each task's state changes and its log lines, prefixed with the task id, until the run completes. The
/// server pushes both (the run's event stream and each task's log stream); nothing is polled.
async fn follow_run(client: &Client, pipeline: &str, run: u64, format: Format) -> anyhow::Result<()> {
    let show = format == Format::Table;
    let mut followers = tokio::task::JoinSet::new();
    let mut following: HashSet<String> = HashSet::new();
    let mut follow_logs = |task_id: &str| {
        if show && following.insert(task_id.to_string()) {
            let (client, pipeline, task) = (client.clone(), pipeline.to_string(), task_id.to_string());
            followers.spawn(async move { print_prefixed_logs(&client, &pipeline, run, &task).await });
        }
    };
    // The history of the run first (from its first event), then what happens live, until it completes.
    let mut events = Box::pin(client.events(Some((pipeline, run)), 0, true, None).await?);
    let mut completed = client.get_run(pipeline, run).await?.is_complete();
    if completed {
        // Events of an old run may have gone with retention: show its tasks as they are.
        for task in client.list_tasks(pipeline, run).await?.task_executions {
            if show {
                eprintln!("[{}] {}", task.task_id, change(task.state, task.status, task.exit_code));
            }
            if task.started > 0 {
                follow_logs(&task.task_id);
            }
        }
    }
    while !completed && let Some(event) = events.next().await {
        match event?.kind {
            EventKind::TaskChanged { task_id, state, status, exit_code, .. } => {
                if show {
                    eprintln!("[{task_id}] {}", change(state, status, exit_code));
                }
                if matches!(state, TaskState::Running | TaskState::Complete) {
                    follow_logs(&task_id);
                }
            }
            EventKind::RunCompleted { .. } => completed = true,
            _ => {}
        }
    }
    while let Some(result) = followers.join_next().await {
        if let Ok(Err(e)) = result {
            eprintln!("warning: could not follow a task's logs: {e}");
        }
    }
    Ok(())
}

async fn print_prefixed_logs(client: &Client, pipeline: &str, run: u64, task: &str) -> anyhow::Result<()> {
    let mut stream = client.task_logs(pipeline, run, task, None, true).await?;
    let mut pending: Vec<u8> = Vec::new();
    let emit = |line: &[u8]| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{task} | {}", String::from_utf8_lossy(line).trim_end_matches('\r'));
    };
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            emit(&pending[..pos]);
            pending.drain(..=pos);
        }
    }
    if !pending.is_empty() {
        emit(&pending);
    }
    Ok(())
}

/// The last `lines` lines of a task's log (of its latest attempt).
async fn log_tail(client: &Client, pipeline: &str, run: u64, task: &str, lines: usize) -> anyhow::Result<String> {
    let stream = client.task_logs(pipeline, run, task, None, false).await?;
    let chunks: Vec<_> = stream.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
    let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

/// `gofer run debug`: everything about a run a bug ticket needs, in one report.
async fn debug(client: &Client, format: Format, pipeline: &str, run: u64, lines: usize) -> anyhow::Result<()> {
    let health = client.health().await?;
    let shown = client.get_run(pipeline, run).await?;
    let tasks = client.list_tasks(pipeline, run).await?.task_executions;
    let events = client.events(Some((pipeline, run)), 0, false, None).await?;
    let events: Vec<_> = events.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
    let mut tails = BTreeMap::new();
    for task in tasks.iter().filter(|t| t.status == TaskStatus::Failed && !t.logs_expired) {
        let tail = log_tail(client, pipeline, run, &task.task_id, lines).await;
        tails.insert(task.task_id.clone(), tail.unwrap_or_else(|e| format!("(log not readable: {e})")));
    }
    if format == Format::Json {
        let report = serde_json::json!({
            "server": health, "run": shown, "tasks": tasks, "events": events, "failed_task_logs": tails,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "# Gofer run report: pipeline '{pipeline}', run {run}")?;
    writeln!(out, "server: {} (version {}, development mode: {})", client.base_url(), health.version, health.dev_mode)?;
    writeln!(out, "scheduler: {}", health.scheduler)?;
    writeln!(out)?;
    drop(out);
    output::print(format, &RunWithTasks { run: shown.clone(), tasks: tasks.clone() })?;
    let mut out = std::io::stdout().lock();
    let variables: Vec<String> = shown.variables.iter().map(|v| format!("{} ({})", v.key, v.source)).collect();
    writeln!(
        out,
        "\nrun variables (names only): {}",
        if variables.is_empty() { "none".into() } else { variables.join(", ") }
    )?;
    writeln!(out, "initiator: {} {}", shown.initiator.kind, shown.initiator.name)?;
    writeln!(out, "\n## Tasks in detail")?;
    for t in &tasks {
        writeln!(
            out,
            "- {}: {} {}, attempt {}, exit {}, image {} (digest {}), container {}{}",
            t.task_id,
            t.state,
            t.status,
            t.attempt,
            t.exit_code.map_or("-".into(), |c| c.to_string()),
            t.task.image,
            t.image_digest.as_deref().unwrap_or("-"),
            t.container_id.as_deref().unwrap_or("-"),
            t.status_reason.as_ref().map(|r| format!("; {}: {}", r.reason, r.description)).unwrap_or_default()
        )?;
        for a in &t.attempts {
            writeln!(
                out,
                "    earlier attempt {}: {} exit {}{}",
                a.attempt,
                a.status,
                a.exit_code.map_or("-".into(), |c| c.to_string()),
                a.status_reason.as_ref().map(|r| format!(" ({})", r.description)).unwrap_or_default()
            )?;
        }
    }
    writeln!(out, "\n## Timeline")?;
    drop(out);
    output::print(format, &Timeline(events))?;
    let mut out = std::io::stdout().lock();
    for (task, tail) in &tails {
        writeln!(out, "\n## Last {lines} log lines of failed task '{task}'\n{tail}")?;
    }
    Ok(())
}
