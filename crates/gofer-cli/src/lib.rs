//! The `gofer` command-line client: every subcommand except `service` talks to a Gofer server over HTTP.
//!
//! Settings come from flags, then `GOFER_*` environment variables, then `~/.config/gofer/config.toml`, then
//! defaults. Results go to stdout (tables for people, JSON with `--output json`); progress and errors to stderr.
//! Exit codes: 0 success, 1 the request failed, 2 the command line was wrong.

/// The typed API client the commands use: the `gofer-client` crate.
pub use gofer_client as client;
mod commands;
pub mod output;
pub mod term;
pub mod views;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Deserialize;

pub use crate::commands::{build_config, connect, run};
use crate::output::Format;

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Address of the Gofer API [default: http://127.0.0.1:8080]
    #[arg(long, global = true, env = "GOFER_API_URL")]
    pub api_url: Option<String>,
    /// Namespace to work in [default: default]
    #[arg(long, global = true, env = "GOFER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format [default: table]
    #[arg(long, global = true, env = "GOFER_OUTPUT", value_enum)]
    pub output: Option<Format>,
    /// API token, sent as a bearer token (tasks with inject_api_token get one in GOFER_TOKEN)
    #[arg(long, global = true, env = "GOFER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM certificate to trust for an https:// API URL (a private CA, or the server's own self-signed one)
    #[arg(long, global = true, env = "GOFER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// The client settings file, `~/.config/gofer/config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    api_url: Option<String>,
    namespace: Option<String>,
    output: Option<Format>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
}

/// Resolved client settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api_url: String,
    pub namespace: String,
    pub output: Format,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
}

fn settings_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir).join("gofer/config.toml"));
    }
    std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config/gofer/config.toml"))
}

impl GlobalArgs {
    /// Flags and environment first, then the settings file, then defaults.
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let file = match settings_path() {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(&path)?;
                toml::from_str::<FileSettings>(&text)
                    .map_err(|e| anyhow::anyhow!("invalid client settings in {}: {e}", path.display()))?
            }
            _ => FileSettings::default(),
        };
        Ok(Settings {
            api_url: self.api_url.clone().or(file.api_url).unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            namespace: self.namespace.clone().or(file.namespace).unwrap_or_else(|| "default".into()),
            output: self.output.or(file.output).unwrap_or(Format::Table),
            token: self.token.clone().or(file.token).filter(|t| !t.is_empty()),
            ca_cert: self.ca_cert.clone().or(file.ca_cert),
        })
    }
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy, inspect, enable, disable and delete pipelines.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Build the pipeline program in DIR, register its config and deploy it (same as `pipeline deploy`).
    Up(DeployArgs),
    /// Deployments: how each change of a pipeline's live version went; promote or abort the one in progress.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Start, list, inspect and cancel runs.
    #[command(subcommand)]
    Run(RunCommand),
    /// Inspect the task executions of a run, read their logs, cancel one.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Install, inspect, enable, disable and uninstall extensions (the things that start runs).
    #[command(subcommand)]
    Extension(ExtensionCommand),
    /// Pipeline and global secrets: sealed at rest, read by tasks through `pipeline_secret{{KEY}}` and
    /// `global_secret{{KEY}}` variables, masked in logs.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// List, inspect and create namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// API tokens: bootstrap the first, create, list, disable, delete, whoami.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Roles: the built-in ones and custom roles made of scoped grants.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Which server, namespace and token this client uses, and who the token belongs to.
    Context,
    /// Server-wide settings: maintenance mode.
    #[command(subcommand)]
    System(SystemCommand),
    /// The event log: every state change, stored and live.
    #[command(subcommand)]
    Event(EventCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExtensionCommand {
    /// List the installed extensions.
    List,
    /// Show an extension and the settings its subscriptions take.
    Get { id: String },
    /// Let an extension trigger runs again.
    Enable { id: String },
    /// Stop an extension from triggering runs (a container extension's container is stopped); its subscriptions
    /// are kept.
    Disable { id: String },
    /// Install a container extension: an image that speaks the extension protocol. Gofer starts it and waits until
    /// it answers; nothing is installed if it does not.
    Install {
        id: String,
        image: String,
        /// A setting for the extension, KEY=VALUE (passed to it as an environment variable); repeatable.
        #[arg(short = 's', long = "setting", value_parser = parse_key_value)]
        settings: Vec<(String, String)>,
        /// Registry credentials for a private image, USER:PASSWORD.
        #[arg(long)]
        registry_auth: Option<String>,
    },
    /// Uninstall a container extension: stop it and delete it with its subscriptions.
    Uninstall { id: String },
    /// Print a container extension's output.
    Logs {
        id: String,
        /// Keep printing new output until the container exits.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print the extension's own view of itself (its subscriptions, its state).
    Debug { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Secrets of one pipeline.
    #[command(subcommand)]
    Pipeline(PipelineSecretCommand),
    /// Secrets shared by the namespaces their patterns match.
    #[command(subcommand)]
    Global(GlobalSecretCommand),
}

#[derive(Debug, Subcommand)]
pub enum PipelineSecretCommand {
    /// Store a secret (replacing its value if the key exists). VALUE `@-` reads it from stdin.
    Put { pipeline: String, key: String, value: String },
    /// Show a secret's metadata; with --include-secret, its value too.
    Get {
        pipeline: String,
        key: String,
        #[arg(long)]
        include_secret: bool,
    },
    /// List a pipeline's secret keys.
    List { pipeline: String },
    /// Delete a secret.
    Delete { pipeline: String, key: String },
}

#[derive(Debug, Subcommand)]
pub enum GlobalSecretCommand {
    /// Store a global secret for the namespaces matching the patterns. VALUE `@-` reads it from stdin.
    Put {
        key: String,
        value: String,
        /// Namespace patterns that may use it, whole ids with `*` and `?` wildcards, e.g. 'team-*'; repeatable.
        #[arg(long = "namespaces", required = true, num_args = 1..)]
        namespaces: Vec<String>,
    },
    /// Show a global secret's metadata; with --include-secret, its value too.
    Get {
        key: String,
        #[arg(long)]
        include_secret: bool,
    },
    /// List the global secrets.
    List,
    /// Delete a global secret.
    Delete { key: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make the first admin token of a Gofer (works once); its secret is printed once.
    Bootstrap,
    /// Make a token; its secret is printed once.
    Create {
        /// Who holds it.
        #[arg(long)]
        user: String,
        /// A role (admin, user, read_only or a custom one); repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Seconds until it expires.
        #[arg(long)]
        expires_in: Option<u64>,
        /// A note kept with it, KEY=VALUE; repeatable.
        #[arg(long = "metadata", value_parser = parse_key_value)]
        metadata: Vec<(String, String)>,
    },
    /// List tokens.
    List,
    /// Show a token.
    Get { id: String },
    /// Let a disabled token in again.
    Enable { id: String },
    /// Refuse a token from now on (401).
    Disable { id: String },
    /// Delete a token.
    Delete { id: String },
    /// Show the token this client uses.
    Whoami,
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List roles.
    List,
    /// Show a role and its grants.
    Get { id: String },
    /// Make a role with one grant (or several, from a JSON file of grants with --grants-file).
    Create {
        id: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A resource it grants (pipelines, runs, secrets, ...); repeatable; none: all resources.
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// read, write or delete; repeatable.
        #[arg(long = "action")]
        actions: Vec<String>,
        /// A namespace pattern (whole ids, * and ? wildcards); repeatable; default *.
        #[arg(long = "namespace-pattern")]
        namespaces: Vec<String>,
        /// A pipeline pattern; repeatable; default *.
        #[arg(long = "pipeline-pattern")]
        pipelines: Vec<String>,
        /// A JSON file holding a list of grants, instead of the flags above.
        #[arg(long)]
        grants_file: Option<PathBuf>,
    },
    /// Delete a custom role.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// List namespaces.
    List,
    /// Show a namespace.
    Get { id: String },
    /// Create a namespace.
    Create {
        id: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change a namespace's name or description.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a namespace with all its pipelines, runs, secrets, logs and objects.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show the server-wide settings.
    Get,
    /// List the servers sharing this server's state (PostgreSQL), with their last heartbeat and the runs each
    /// drives; a server on SQLite lists itself. Same as `gofer service status`.
    Servers,
    /// Refuse new runs (on) or take them again (off); runs in flight and queued runs go on.
    Maintenance {
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Print events, oldest first, as JSON lines.
    List {
        /// Only events after this id.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep printing new events as they happen.
        #[arg(short, long)]
        follow: bool,
        /// Start with only the last N events stored (0 with --follow: only new ones).
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// A pipeline program: a Cargo project (Rust SDK) or a Go module (Go SDK) that builds the pipeline and calls
    /// `.finish()` / `.Finish()`.
    pub dir: PathBuf,
    /// Register the new version without making it live.
    #[arg(long)]
    pub no_deploy: bool,
    #[command(flatten)]
    pub strategy: StrategyArgs,
}

/// How a deployment rolls the new version out. Without `--strategy`, the strategy the config declares, else
/// immediate.
#[derive(Debug, Args, Default)]
pub struct StrategyArgs {
    /// `immediate` (cut over at once), `blue-green` (verification runs first) or `canary` (a share of new runs).
    #[arg(long, value_parser = ["immediate", "blue-green", "canary"])]
    pub strategy: Option<String>,
    /// Blue/green: how many verification runs of the new version must succeed.
    #[arg(long)]
    pub verify_runs: Option<u32>,
    /// Blue/green: a variable for the verification runs, KEY=VALUE; repeatable.
    #[arg(short = 'v', long = "variable", value_parser = parse_key_value)]
    pub variables: Vec<(String, String)>,
    /// Canary: the percentage of new runs the new version takes (1-100).
    #[arg(long)]
    pub weight: Option<u8>,
    /// Canary: rising weights, one per stage, e.g. `10,50,100` (instead of --weight).
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<u8>,
    /// Canary: how many runs of the new version must complete in a stage before it is judged [default: 5].
    #[arg(long)]
    pub min_runs: Option<u32>,
    /// Canary: the share of those runs that must succeed: `0.9` or `90%` [default: 0.9].
    #[arg(long, value_parser = parse_share)]
    pub success_threshold: Option<f64>,
    /// Canary: the least time each stage lasts, e.g. `10m`, `1h30m`, `45s`.
    #[arg(long, value_parser = parse_duration)]
    pub bake: Option<std::time::Duration>,
    /// Abort a deployment of the pipeline that is still running instead of refusing.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// List a pipeline's deployments, newest first.
    List {
        pipeline: String,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Show a deployment: strategy, state, the runs it routed and how they ended, its timeline.
    Get { pipeline: String, deployment: u64 },
    /// Make the new version of a running deployment live now.
    Promote { pipeline: String, deployment: u64 },
    /// Stop a running deployment: new runs go to the previous live version again (runs in flight finish).
    Abort { pipeline: String, deployment: u64 },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List a pipeline's versions: state, when registered, hash; which is live and which is the candidate.
    List {
        pipeline: String,
        #[arg(long, default_value_t = 50)]
        limit: u64,
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Show one version: its tasks, images, dependencies and settings.
    Get { pipeline: String, version: u64 },
    /// What changed from V1 to V2: tasks, images, dependencies, variables (by name, never values), settings.
    Diff { pipeline: String, v1: u64, v2: u64 },
    /// Deploy a registered version (the same strategy flags as `pipeline deploy`).
    Deploy {
        pipeline: String,
        version: u64,
        #[command(flatten)]
        strategy: StrategyArgs,
    },
    /// Delete a version; refused for the live one, one a running deployment uses, and one runs still run.
    Delete { pipeline: String, version: u64 },
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Build the pipeline program in DIR, register its config and deploy it.
    Deploy(DeployArgs),
    /// A pipeline's registered versions: list, show, compare, deploy, delete.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Go back to the version live before the live one (or `--to VERSION`) at once.
    Rollback {
        pipeline: String,
        #[arg(long)]
        to: Option<u64>,
        /// Abort a deployment of the pipeline that is still running instead of refusing.
        #[arg(long)]
        force: bool,
    },
    /// List pipelines.
    List,
    /// Show a pipeline and its live config.
    Get { pipeline: String },
    /// Let a pipeline take new runs again.
    Enable { pipeline: String },
    /// Refuse new runs of a pipeline (runs in flight continue).
    Disable { pipeline: String },
    /// Delete a pipeline with all its versions, runs and logs.
    Delete { pipeline: String },
    /// Let an extension start runs of the pipeline, e.g. `subscribe nightly interval hourly -s every=1h`.
    Subscribe {
        pipeline: String,
        extension: String,
        label: String,
        /// A setting for the extension, KEY=VALUE; repeatable.
        #[arg(short = 's', long = "setting", value_parser = parse_key_value)]
        settings: Vec<(String, String)>,
    },
    /// Stop an extension from starting runs of the pipeline.
    Unsubscribe { pipeline: String, extension: String, label: String },
    /// List the pipeline's subscriptions.
    Subscriptions { pipeline: String },
    /// The pipeline's objects: bytes kept by key (tasks read them through `pipeline_object{{KEY}}`).
    #[command(subcommand)]
    Object(PipelineObjectCommand),
}

#[derive(Debug, Subcommand)]
pub enum PipelineObjectCommand {
    /// Store FILE (or stdin with `-`) as an object, replacing one with the same key.
    Put { pipeline: String, key: String, file: String },
    /// Write an object's bytes to stdout (or to --output-file).
    Get {
        pipeline: String,
        key: String,
        #[arg(long)]
        output_file: Option<std::path::PathBuf>,
    },
    /// List the objects.
    List { pipeline: String },
    /// Delete an object.
    Delete { pipeline: String, key: String },
}

#[derive(Debug, Subcommand)]
pub enum RunObjectCommand {
    /// Store FILE (or stdin with `-`) as an object of the run, replacing one with the same key.
    Put { pipeline: String, run: u64, key: String, file: String },
    /// Write a run object's bytes to stdout (or to --output-file).
    Get {
        pipeline: String,
        run: u64,
        key: String,
        #[arg(long)]
        output_file: Option<std::path::PathBuf>,
    },
    /// List the run's objects.
    List { pipeline: String, run: u64 },
    /// Delete a run object.
    Delete { pipeline: String, run: u64, key: String },
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Start a run of a pipeline's live version (or the one a deployment in progress routes it to).
    Start {
        pipeline: String,
        /// A variable for every task of the run, KEY=VALUE; repeatable.
        #[arg(short = 'v', long = "variable", value_parser = parse_key_value)]
        variables: Vec<(String, String)>,
        /// Run this registered version instead (not counted by a deployment in progress).
        #[arg(long)]
        version: Option<u64>,
    },
    /// List a pipeline's runs, newest first.
    List {
        pipeline: String,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Only runs in this state.
        #[arg(long, value_parser = ["pending", "running", "complete"])]
        state: Option<String>,
        /// Only runs that ended so.
        #[arg(long, value_parser = ["successful", "failed", "cancelled"])]
        status: Option<String>,
    },
    /// Show a run and its tasks.
    Get {
        pipeline: String,
        run: u64,
        /// Follow task states and logs live until the run completes.
        #[arg(short, long)]
        follow: bool,
        /// Show the run's history: every state change of the run and its tasks, in order.
        #[arg(long)]
        timeline: bool,
    },
    /// Cancel a run: stop its containers and skip what has not started.
    Cancel { pipeline: String, run: u64 },
    /// The run's objects: how its tasks hand data to each other (`run_object{{KEY}}`).
    #[command(subcommand)]
    Object(RunObjectCommand),
    /// Build the pipeline program in DIR and run it on the local container engine, with no server: task logs
    /// live, then the task table. Exit code 0 when the run succeeded, 1 when it failed or was cancelled (Ctrl-C),
    /// 2 when the program does not build or its config does not validate.
    Local(LocalArgs),
    /// One report of a run for a bug ticket: the server, the run, its tasks (reasons, exit codes, images and digests,
    /// containers), its timeline and the last lines of each failed task's log.
    Debug {
        pipeline: String,
        run: u64,
        /// How many of the last log lines of each failed task to include.
        #[arg(long, default_value_t = 20)]
        lines: usize,
    },
    /// Start a new run with the variables (and trigger data) of an earlier one: on the server, or with `--local DIR`
    /// as `run local` against a pipeline program being fixed.
    Replay {
        pipeline: String,
        run: u64,
        /// Run this registered version instead of the live one (server only).
        #[arg(long, conflicts_with = "local")]
        version: Option<u64>,
        /// Run the program in DIR locally instead, with no server taking the run.
        #[arg(long)]
        local: Option<PathBuf>,
    },
}

/// `gofer run local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// A pipeline program: a Cargo project (Rust SDK) or a Go module (Go SDK) that builds the pipeline and calls
    /// `.finish()` / `.Finish()`.
    pub dir: PathBuf,
    /// A variable for every task of the run, KEY=VALUE; repeatable.
    #[arg(short = 'v', long = "variable", value_parser = parse_key_value)]
    pub variables: Vec<(String, String)>,
    /// A secret, KEY=VALUE, for `pipeline_secret{{KEY}}` and `global_secret{{KEY}}`; repeatable.
    #[arg(long = "secret", value_parser = parse_key_value)]
    pub secrets: Vec<(String, String)>,
    /// Secrets from a dotenv file (KEY=VALUE lines, `#` comments, optional quotes).
    #[arg(long)]
    pub secrets_file: Option<PathBuf>,
    /// A secret taken from this environment variable of your shell; repeatable.
    #[arg(long = "secret-from-env")]
    pub secret_from_env: Vec<String>,
    /// An object, KEY=FILE, for `pipeline_object{{KEY}}`; repeatable.
    #[arg(long = "object", value_parser = parse_key_value)]
    pub objects: Vec<(String, String)>,
    /// Run only this task (repeatable); the parents of the tasks chosen are taken as successful.
    #[arg(long = "only")]
    pub only: Vec<String>,
    /// Leave the finished containers for inspection and print their ids.
    #[arg(long)]
    pub keep_containers: bool,
    /// Keep the run's state and logs here (default: a temporary directory removed at the end).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replay a recorded run: a file with the run as `gofer run get --output json` prints it; its variables and
    /// trigger data are the run's (`-v` still wins).
    #[arg(long)]
    pub event: Option<PathBuf>,
}

/// The variables a replay of `run` is started with: the ones given when it was started and the ones its trigger
/// set (what the config and the system set comes back by itself).
pub fn replayed_variables(run: &gofer_api::models::Run) -> std::collections::BTreeMap<String, String> {
    use gofer_api::models::VariableSource;
    run.variables
        .iter()
        .filter(|v| matches!(v.source, VariableSource::RunOptions | VariableSource::Extension))
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List the task executions of a run.
    List { pipeline: String, run: u64 },
    /// Show one task execution.
    Get { pipeline: String, run: u64, task: String },
    /// Print a task's logs, raw.
    Logs {
        pipeline: String,
        run: u64,
        task: String,
        /// Keep printing until the task completes.
        #[arg(short, long)]
        follow: bool,
        /// Which attempt (from 1); the latest by default.
        #[arg(long)]
        attempt: Option<u32>,
    },
    /// Cancel one task: stop its container; the rest of the run goes on as the DAG says.
    Cancel { pipeline: String, run: u64, task: String },
    /// Open an interactive session in the task's running container: a shell (`sh`) or `-- CMD ARGS…`, with a
    /// terminal when yours is one; exits with the command's exit code.
    Attach {
        pipeline: String,
        run: u64,
        task: String,
        /// The program and its arguments, after `--` (default: sh).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Run a command in the task's running container, e.g. `gofer task exec dag 3 test -- ls /tmp`; prints its
    /// output and exits with its exit code.
    Exec {
        pipeline: String,
        run: u64,
        task: String,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

/// A command's own exit code, for the process to exit with (after its output was printed).
#[derive(Debug)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the command exited with code {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

/// `0.9`, `90%` or `90 %`: a share from 0 to 1.
fn parse_share(s: &str) -> Result<f64, String> {
    let text = s.trim();
    let (number, scale) = match text.strip_suffix('%') {
        Some(percent) => (percent.trim(), 100.0),
        None => (text, 1.0),
    };
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value / scale <= 1.0 => Ok(value / scale),
        _ => Err(format!(
            "'{s}' is not a share of runs; give a number above 0 and at most 1 (0.9) or a percentage (90%)"
        )),
    }
}

/// `90s`, `10m`, `1h30m`, `2h`, `1d`, or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let refuse = || format!("'{s}' is not a duration; write e.g. 45s, 10m, 1h30m or 3600");
    let text = s.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(refuse()),
        };
        let n: u64 = digits.parse().map_err(|_| refuse())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(refuse)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(refuse());
    }
    Ok(std::time::Duration::from_secs(total))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}
