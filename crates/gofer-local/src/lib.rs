//! `gofer run local DIR`: builds a pipeline program and runs its DAG on the local container engine with no server
//! process and no listening port. The runtime is the one the server builds (`gofer_runtime::build`: the same
//! orchestrator, DAG rules, secret resolution, masking and log handling), on a data dir of its own (a temporary one
//! unless `--data-dir` is given); the run is driven through the same services the API calls.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use gofer_api::config::{self, RequiredParentStatus, Strategy};
use gofer_api::models::{EventKind, Initiator, RunStatus, TaskState};
use gofer_api::requests::{DeployRequest, PutSecretRequest};
use gofer_cli::output::{self, Format};
use gofer_cli::views::RunWithTasks;
use gofer_cli::{GlobalArgs, LocalArgs};
use gofer_core::Gofer;
use gofer_core::objects::ObjectScope;
use gofer_runtime::config::{Config, Overrides};
use gofer_storage::EventFilter;
use tokio::task::JoinSet;

const NAMESPACE: &str = "default";
/// How long finished containers stay with `--keep-containers`: they outlive the process, which ends first.
const KEEP_CONTAINERS: Duration = Duration::from_secs(7 * 86_400);
/// Exit code for a program that does not build or a config that does not validate.
const BAD_INPUT: u8 = 2;

/// Runs `gofer run local`; the exit code is 0 for a successful run, 1 for a failed or cancelled one (or trouble
/// running it), 2 for a program or config that cannot be run.
pub async fn run(global: &GlobalArgs, args: LocalArgs) -> ExitCode {
    let format = global.resolve().map(|s| s.output).unwrap_or(Format::Table);
    let prepared = match prepare(&args).await {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let data_dir = match &args.data_dir {
        Some(dir) => DataDir::Kept(dir.clone()),
        None => match tempfile::Builder::new().prefix("gofer-local-").tempdir() {
            Ok(dir) => DataDir::Temporary(dir),
            Err(e) => {
                eprintln!("error: could not make a temporary data dir: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match run_locally(prepared, &args, data_dir.path(), format).await {
        Ok(RunStatus::Successful) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum DataDir {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            Self::Kept(path) => path,
            Self::Temporary(dir) => dir.path(),
        }
    }
}

/// What the command line asks to run, checked before anything starts.
struct Prepared {
    config: config::Pipeline,
    variables: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    objects: Vec<(String, Bytes)>,
    notes: Vec<String>,
}

async fn prepare(args: &LocalArgs) -> anyhow::Result<Prepared> {
    let mut config = gofer_cli::build_config(&args.dir).await?;
    config.validate().context("the pipeline config does not validate")?;
    // Nothing triggers runs locally, and there is nothing to roll out.
    config.subscriptions.clear();
    config.deploy_strategy = None;
    let notes = select(&mut config, &args.only)?;
    config.validate().context("the pipeline config does not validate")?;
    let secrets = secrets(args)?;
    let mut variables = match &args.event {
        Some(file) => recorded_variables(file)?,
        None => BTreeMap::new(),
    };
    variables.extend(args.variables.iter().cloned());
    let mut objects = Vec::new();
    for (key, file) in &args.objects {
        let bytes = tokio::fs::read(file).await.with_context(|| format!("--object {key}: could not read {file}"))?;
        objects.push((key.clone(), Bytes::from(bytes)));
    }
    Ok(Prepared { config, variables, secrets, objects, notes })
}

/// The variables of a recorded run (`gofer run get --output json`, or `run local --output json`'s `run`).
fn recorded_variables(file: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("--event: could not read {}", file.display()))?;
    let mut json: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!("--event {}: not JSON; save a run with `gofer run get … --output json`", file.display())
    })?;
    if let Some(run) = json.get_mut("run") {
        json = run.take();
    }
    let run: gofer_api::models::Run = serde_json::from_value(json).with_context(|| {
        format!("--event {}: not a run as `gofer run get … --output json` prints it", file.display())
    })?;
    Ok(gofer_cli::replayed_variables(&run))
}

/// `gofer run replay PIPELINE RUN --local DIR`: the run's variables from the server, the program from `dir`.
pub async fn replay(global: &GlobalArgs, pipeline: &str, run: u64, dir: PathBuf) -> ExitCode {
    let earlier = match gofer_cli::connect(global).await {
        Ok((client, _)) => client.get_run(pipeline, run).await.map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    let earlier = match earlier {
        Ok(earlier) => earlier,
        Err(e) => {
            eprintln!("error: could not read run {run} of '{pipeline}' from the server: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("replaying run {run} of '{pipeline}' locally with its variables");
    let args = LocalArgs {
        dir,
        variables: gofer_cli::replayed_variables(&earlier).into_iter().collect(),
        secrets: Vec::new(),
        secrets_file: None,
        secret_from_env: Vec::new(),
        objects: Vec::new(),
        only: Vec::new(),
        keep_containers: false,
        data_dir: None,
        event: None,
    };
    self::run(global, args).await
}

/// Keeps only the tasks `only` names; edges from tasks left out are taken as met (their parents as successful).
/// Returns what it did, to be said.
fn select(config: &mut config::Pipeline, only: &[String]) -> anyhow::Result<Vec<String>> {
    if only.is_empty() {
        return Ok(Vec::new());
    }
    let known: HashSet<&str> = config.tasks.iter().map(|t| t.id.as_str()).collect();
    if let Some(unknown) = only.iter().find(|id| !known.contains(id.as_str())) {
        let mut ids: Vec<&str> = known.into_iter().collect();
        ids.sort_unstable();
        bail!("--only {unknown}: the pipeline has no such task (its tasks: {})", ids.join(", "));
    }
    let chosen: HashSet<&str> = only.iter().map(String::as_str).collect();
    let mut notes = Vec::new();
    config.tasks.retain(|t| chosen.contains(t.id.as_str()));
    for task in &mut config.tasks {
        let left_out: Vec<(String, RequiredParentStatus)> = task
            .depends_on
            .iter()
            .filter(|(p, _)| !chosen.contains(p.as_str()))
            .map(|(p, s)| (p.clone(), *s))
            .collect();
        for (parent, status) in left_out {
            if status == RequiredParentStatus::Failure {
                bail!(
                    "--only {}: it runs only when '{parent}' fails, and a task left out is taken as successful; add \
                     --only {parent}",
                    task.id
                );
            }
            task.depends_on.remove(&parent);
            notes.push(format!("task '{}': parent '{parent}' is not run and is taken as successful", task.id));
        }
    }
    Ok(notes)
}

/// The secrets from `--secret`, `--secrets-file` and `--secret-from-env` (later sources win).
fn secrets(args: &LocalArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut secrets = BTreeMap::new();
    if let Some(file) = &args.secrets_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--secrets-file: could not read {}", file.display()))?;
        secrets.extend(dotenv(&text).with_context(|| format!("--secrets-file {}", file.display()))?);
    }
    for key in &args.secret_from_env {
        let value = std::env::var(key)
            .with_context(|| format!("--secret-from-env {key}: the environment has no such variable (or not UTF-8)"))?;
        secrets.insert(key.clone(), value);
    }
    secrets.extend(args.secrets.iter().cloned());
    Ok(secrets)
}

/// KEY=VALUE lines; blank lines and `#` comments skipped, `export ` allowed, values optionally in matching quotes.
fn dotenv(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE", n + 1);
        };
        let key = key.trim();
        if key.is_empty() {
            bail!("line {}: the key is empty", n + 1);
        }
        let value = value.trim();
        let unquoted =
            ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value);
        pairs.push((key.to_string(), unquoted.to_string()));
    }
    Ok(pairs)
}

async fn run_locally(
    prepared: Prepared,
    args: &LocalArgs,
    data_dir: &Path,
    format: Format,
) -> anyhow::Result<RunStatus> {
    let overrides = Overrides { data_dir: Some(data_dir.to_path_buf()), ..Default::default() };
    let mut settings = Config::load(None, &overrides)?;
    if args.keep_containers {
        settings.runs.keep_containers_seconds = KEEP_CONTAINERS.as_secs();
    }
    let runtime = gofer_runtime::build(&settings).await?;
    runtime.start().await?;
    let gofer = runtime.gofer().clone();
    let result = drive(&gofer, prepared, args, format).await;
    if !args.keep_containers {
        // Nothing is left behind, whatever happened: the run's containers are removed before the process ends.
        gofer.orchestrator().remove_finished_containers().await;
    }
    runtime.shutdown(Duration::from_secs(5)).await;
    result
}

/// Registers the config with its secrets and objects, starts the run and shows it until it completes.
async fn drive(gofer: &Gofer, prepared: Prepared, args: &LocalArgs, format: Format) -> anyhow::Result<RunStatus> {
    let Prepared { config, variables, secrets, objects, notes } = prepared;
    let pipeline = config.id.clone();
    let initiator = Initiator { kind: "user".into(), name: "local".into() };
    let order: Vec<String> = config.tasks.iter().map(|t| t.id.clone()).collect();
    for task in config.tasks.iter().filter(|t| t.inject_api_token) {
        eprintln!(
            "note: task '{}' asks for an API token; a local run has no Gofer API, so nothing answers at its \
             GOFER_API_BASE_URL (run it on a server to use the API)",
            task.id
        );
    }
    let registered = gofer.register_config(NAMESPACE, &pipeline, config).await?;
    for (key, value) in &secrets {
        let pipeline_secret = PutSecretRequest { value: value.clone(), namespaces: Vec::new() };
        gofer.put_pipeline_secret(NAMESPACE, &pipeline, key, pipeline_secret).await?;
        let global_secret = PutSecretRequest { value: value.clone(), namespaces: vec!["*".into()] };
        gofer.put_global_secret(key, global_secret).await?;
    }
    let scope = ObjectScope::Pipeline { namespace_id: NAMESPACE.into(), pipeline_id: pipeline.clone() };
    for (key, bytes) in objects {
        gofer.put_object(&scope, &key, futures::stream::iter([Ok::<_, std::io::Error>(bytes)])).await?;
    }
    let immediate = DeployRequest { strategy: Some(Strategy::Immediate), force: true };
    gofer.deploy(NAMESPACE, &pipeline, registered.config.version, immediate, initiator.clone()).await?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    let run = gofer.start_run(NAMESPACE, &pipeline, variables, None, initiator).await?;
    let run_id = run.run_id;
    eprintln!("run {run_id} of '{pipeline}' started locally");

    let filter = EventFilter {
        after: 0,
        namespace_id: Some(NAMESPACE.into()),
        pipeline_id: Some(pipeline.clone()),
        run_id: Some(run_id),
    };
    let mut events = std::pin::pin!(gofer.events(filter, true)?);
    let prefixes = Prefixes::new(&order);
    let mut followers = JoinSet::new();
    let mut following = HashSet::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut cancelling = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => match event.kind {
                    EventKind::TaskChanged { task_id, attempt, state, status, status_reason, exit_code, .. } => {
                        let mut line = format!("[{task_id}] {state}");
                        if state == TaskState::Complete {
                            line.push_str(&format!(" {status}"));
                            if let Some(code) = exit_code {
                                line.push_str(&format!(" (exit {code})"));
                            }
                            if let Some(reason) = status_reason {
                                line.push_str(&format!(": {}", reason.description));
                            }
                        }
                        eprintln!("{line}");
                        if state == TaskState::Running && following.insert((task_id.clone(), attempt)) {
                            let logs = gofer.task_logs(NAMESPACE, &pipeline, run_id, &task_id, Some(attempt), true).await;
                            match logs {
                                Ok(stream) => {
                                    followers.spawn(print_lines(stream, prefixes.of(&task_id)));
                                }
                                Err(e) => eprintln!("[{task_id}] could not follow its log: {e}"),
                            }
                        }
                    }
                    EventKind::RunCompleted { .. } => break,
                    _ => {}
                },
                Some(Err(e)) => return Err(e).context("could not follow the run's events"),
                None => break,
            },
            _ = &mut ctrl_c, if !cancelling => {
                cancelling = true;
                eprintln!("cancelling the run (Ctrl-C): stopping its containers…");
                gofer.cancel_run(NAMESPACE, &pipeline, run_id).await?;
            }
        }
    }
    while followers.join_next().await.is_some() {}
    let run = gofer.get_run(NAMESPACE, &pipeline, run_id).await?;
    let tasks = gofer.list_task_executions(NAMESPACE, &pipeline, run_id).await?;
    if args.keep_containers {
        for task in &tasks {
            if let Some(container) = &task.container_id {
                eprintln!("kept container of task '{}': {container} (docker exec -it {container} sh)", task.task_id);
            }
        }
    }
    let status = run.status;
    match format {
        Format::Json => {
            let json = serde_json::json!({ "run": run, "tasks": tasks });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Format::Table => output::print(format, &RunWithTasks { run, tasks })?,
    }
    Ok(status)
}

/// Each task's line prefix: its id padded to the longest, coloured when stdout is a terminal and `NO_COLOR` is
/// not set.
struct Prefixes {
    width: usize,
    colour: bool,
    order: Vec<String>,
}

impl Prefixes {
    fn new(order: &[String]) -> Self {
        let colour = gofer_cli::term::colour_stdout();
        Self { width: order.iter().map(String::len).max().unwrap_or(0), colour, order: order.to_vec() }
    }

    fn of(&self, task: &str) -> String {
        let padded = format!("{task:>width$} | ", width = self.width);
        if !self.colour {
            return padded;
        }
        const COLOURS: [u8; 6] = [36, 33, 35, 32, 34, 31];
        let index = self.order.iter().position(|t| t == task).unwrap_or(0);
        format!("\x1b[{}m{padded}\x1b[0m", COLOURS[index % COLOURS.len()])
    }
}

/// Prints a log stream line by line under `prefix` (a last line without a newline is printed too).
async fn print_lines(mut stream: gofer_storage::LogStream, prefix: String) {
    let mut pending: Vec<u8> = Vec::new();
    let print = |line: &[u8]| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(prefix.as_bytes());
        let _ = out.write_all(line);
        let _ = out.write_all(b"\n");
    };
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            print(&pending[..end]);
            pending.drain(..=end);
        }
    }
    if !pending.is_empty() {
        print(&pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_reads_comments_exports_and_quotes() {
        let pairs = dotenv("# db\nexport DB_PASSWORD=\"hunter 2\"\n\nTOKEN='abc'\nPLAIN=x=y\n").unwrap();
        let expected = [("DB_PASSWORD", "hunter 2"), ("TOKEN", "abc"), ("PLAIN", "x=y")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_string(), v.to_string())));
        assert!(dotenv("NOPE\n").unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn only_keeps_the_chosen_tasks_and_takes_left_out_parents_as_successful() {
        let task = |id: &str| config::Task::new(id, "busybox:latest");
        let mut pipeline = config::Pipeline::new("p", "p").tasks(vec![
            task("build"),
            task("test").depends_on("build", RequiredParentStatus::Success),
            task("alert").depends_on("test", RequiredParentStatus::Failure),
        ]);
        let notes = select(&mut pipeline, &["test".into()]).unwrap();
        assert_eq!(pipeline.tasks.len(), 1);
        assert!(pipeline.tasks[0].depends_on.is_empty());
        assert_eq!(notes, ["task 'test': parent 'build' is not run and is taken as successful"]);
        let mut pipeline = config::Pipeline::new("p", "p")
            .tasks(vec![task("test"), task("alert").depends_on("test", RequiredParentStatus::Failure)]);
        let err = select(&mut pipeline, &["alert".into()]).unwrap_err().to_string();
        assert!(err.contains("runs only when 'test' fails"), "{err}");
        let err = select(&mut pipeline, &["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("no such task"), "{err}");
    }
}
