//! gofer-bench: measures Gofer against the same Docker engine used directly (create, start, wait through the
//! engine API, from this process), interleaving the two, and prints medians and ratios.
//!
//! Run it with `bash scripts/bench.sh` (a release build of `gofer` and this tool). It needs a running Docker
//! engine and the `busybox:latest` image (scripts/ensure-docker.sh). Options: `--runs N` (one-task and tick samples,
//! default 20), `--rss-runs N` (runs before the second memory reading, default 1000), `--stored-runs N` (runs in
//! the database for the API latency test, default 100000), `--api-only` (the API latency test alone), `--dag-only`
//! (the chain and fan-out alone, `--repetitions N` times, default 3), `--one-task-only` (one-task runs alone,
//! `--runs` samples, `--repetitions` times), `--logs` (a task writing `--log-mb N` MB to
//! stdout, default 1000, `--repetitions` times; then `--log-tasks N` of them at once, default 20), `--storage`
//! (one-task latency and 50 runs at once on SQLite, on PostgreSQL, and on three servers sharing PostgreSQL, each
//! against the engine used directly; it starts a throwaway PostgreSQL with `initdb`/`pg_ctl`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use gofer_api::models::{Event, EventKind, TaskState};
use serde_json::{Value, json};
use tokio::sync::mpsc;

mod logs;

const IMAGE: &str = "busybox:latest";
const BENCH_LABEL: &str = "dev.gofer.bench";

struct Args {
    runs: usize,
    rss_runs: usize,
    stored_runs: u64,
    api_only: bool,
    dag_only: bool,
    one_task_only: bool,
    logs: bool,
    log_mb: u64,
    log_tasks: usize,
    repetitions: usize,
    storage: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 20,
        rss_runs: 1000,
        stored_runs: 100_000,
        api_only: false,
        dag_only: false,
        one_task_only: false,
        logs: false,
        log_mb: 1000,
        log_tasks: 20,
        repetitions: 3,
        storage: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let switch = match flag.as_str() {
            "--api-only" => Some(&mut args.api_only),
            "--dag-only" => Some(&mut args.dag_only),
            "--one-task-only" => Some(&mut args.one_task_only),
            "--logs" => Some(&mut args.logs),
            "--storage" => Some(&mut args.storage),
            _ => None,
        };
        if let Some(switch) = switch {
            *switch = true;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let parse = || value.parse::<u64>().with_context(|| format!("{flag}: '{value}' is not a number"));
        match flag.as_str() {
            "--runs" => args.runs = parse()? as usize,
            "--rss-runs" => args.rss_runs = parse()? as usize,
            "--stored-runs" => args.stored_runs = parse()?,
            "--repetitions" => args.repetitions = parse()?.max(1) as usize,
            "--log-mb" => args.log_mb = parse()?.max(1),
            "--log-tasks" => args.log_tasks = parse()? as usize,
            other => bail!("unknown option {other}; see the top of crates/gofer-bench/src/main.rs"),
        }
    }
    Ok(args)
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One line of the report.
struct Line {
    metric: String,
    gofer: String,
    direct: String,
    ratio: String,
    target: String,
}

fn line(metric: &str, gofer: String, direct: String, ratio: String, target: &str) -> Line {
    Line { metric: metric.into(), gofer, direct, ratio, target: target.into() }
}

/// One line for a figure measured in each repetition: the values side by side (rounded to `unit`), and the ratio
/// of each pair, so a reader sees the spread.
fn repeated(metric: &str, gofer: &[f64], direct: &[f64], unit: &str, target: &str) -> Line {
    let each = |values: &[f64]| values.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ");
    let ratios: Vec<String> = gofer.iter().zip(direct).map(|(g, d)| format!("{:.2}", g / d)).collect();
    line(
        metric,
        format!("{} {unit}", each(gofer)),
        format!("{} {unit}", each(direct)),
        format!("{}×", ratios.join(", ")),
        target,
    )
}

/// A Gofer server process on its own data dir.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .args(["service", "start", "--bind-address", &format!("127.0.0.1:{port}")])
            .args(["--external-bind-address", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data_dir.join("server.log"))?)
            .spawn()
            .with_context(|| format!("could not start {}", bin.display()))?;
        Ok(Self { child, url: format!("http://127.0.0.1:{port}") })
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http.get(format!("{}/api/health", self.url)).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the Gofer server did not become ready")
    }

    fn rss_kb(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Live events of one server, with the instant each arrived.
struct Watcher {
    rx: mpsc::UnboundedReceiver<(Event, Instant)>,
    seen: Vec<(Event, Instant)>,
}

impl Watcher {
    async fn connect(http: &reqwest::Client, url: &str) -> Result<Self> {
        // Start after the newest stored event: only what happens from now on.
        let history = http.get(format!("{url}/api/events")).send().await?.text().await?;
        let last =
            history.lines().filter_map(|l| serde_json::from_str::<Event>(l).ok()).map(|e| e.id).max().unwrap_or(0);
        let response = http.get(format!("{url}/api/events?follow=true&after={last}")).send().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut bytes = response.bytes_stream();
            let mut buffer = Vec::new();
            while let Some(Ok(chunk)) = bytes.next().await {
                let now = Instant::now();
                buffer.extend_from_slice(&chunk);
                while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=pos).collect();
                    if let Ok(event) = serde_json::from_slice::<Event>(&line)
                        && tx.send((event, now)).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Self { rx, seen: Vec::new() })
    }

    /// Waits for the first event matching `wanted`, seen before or arriving now.
    async fn wait(&mut self, wanted: impl FnMut(&EventKind) -> bool) -> Result<Instant> {
        Ok(self.wait_event(wanted).await?.1)
    }

    /// Moves every event that arrived so far into `seen`, without waiting.
    fn drain(&mut self) {
        while let Ok(arrived) = self.rx.try_recv() {
            self.seen.push(arrived);
        }
    }

    /// Whether an event matching `wanted` was seen (and not taken by `wait`).
    fn has(&self, mut wanted: impl FnMut(&EventKind) -> bool) -> bool {
        self.seen.iter().any(|(e, _)| wanted(&e.kind))
    }

    /// Like `wait`, with the event itself (for its server-side `emitted` time).
    async fn wait_event(&mut self, mut wanted: impl FnMut(&EventKind) -> bool) -> Result<(Event, Instant)> {
        if let Some(i) = self.seen.iter().position(|(e, _)| wanted(&e.kind)) {
            return Ok(self.seen.remove(i));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let (event, at) = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .context("timed out waiting for an event")?
                .context("the event stream ended")?;
            if wanted(&event.kind) {
                return Ok((event, at));
            }
            self.seen.push((event, at));
            if self.seen.len() > 100_000 {
                self.seen.drain(..50_000);
            }
        }
    }
}

fn completed(pipeline: &str, run: u64) -> impl FnMut(&EventKind) -> bool + '_ {
    move |kind| matches!(kind, EventKind::RunCompleted { pipeline_id, run_id, .. } if pipeline_id == pipeline && *run_id == run)
}

fn any_task_running(pipeline: &str) -> impl FnMut(&EventKind) -> bool + '_ {
    move |kind| matches!(kind, EventKind::TaskChanged { pipeline_id, state: TaskState::Running, .. } if pipeline_id == pipeline)
}

fn task_running(pipeline: &str, run: u64) -> impl FnMut(&EventKind) -> bool + '_ {
    move |kind| {
        matches!(kind, EventKind::TaskChanged { pipeline_id, run_id, state: TaskState::Running, .. }
            if pipeline_id == pipeline && *run_id == run)
    }
}

struct Gofer {
    http: reqwest::Client,
    url: String,
}

impl Gofer {
    async fn register(&self, config: Value) -> Result<()> {
        let id = config["id"].as_str().context("config id")?.to_string();
        let base = format!("{}/api/namespaces/default/pipelines/{id}", self.url);
        let registered: Value =
            self.http.post(format!("{base}/configs")).json(&json!({ "config": config })).send().await?.json().await?;
        let version = registered["config"]["version"].as_u64().context("registered version")?;
        let deployed = self.http.post(format!("{base}/configs/{version}/deploy")).send().await?;
        if !deployed.status().is_success() {
            bail!("deploy failed: {}", deployed.text().await?);
        }
        Ok(())
    }

    /// Registers a config without deploying it; returns its version.
    async fn register_only(&self, config: Value) -> Result<u64> {
        let id = config["id"].as_str().context("config id")?.to_string();
        let url = format!("{}/api/namespaces/default/pipelines/{id}/configs", self.url);
        let registered: Value = self.http.post(url).json(&json!({ "config": config })).send().await?.json().await?;
        registered["config"]["version"].as_u64().context("registered version")
    }

    async fn deploy(&self, pipeline: &str, version: u64, request: Value) -> Result<()> {
        let url = format!("{}/api/namespaces/default/pipelines/{pipeline}/configs/{version}/deploy", self.url);
        let deployed = self.http.post(url).json(&request).send().await?;
        if !deployed.status().is_success() {
            bail!("deploy failed: {}", deployed.text().await?);
        }
        Ok(())
    }

    async fn start_run(&self, pipeline: &str) -> Result<u64> {
        let url = format!("{}/api/namespaces/default/pipelines/{pipeline}/runs", self.url);
        let run: Value = self.http.post(url).json(&json!({})).send().await?.json().await?;
        run["run_id"].as_u64().with_context(|| format!("no run id in {run}"))
    }
}

fn task(id: &str, command: &[&str], parent: Option<&str>) -> Value {
    let mut task = json!({ "id": id, "image": IMAGE, "command": command });
    if let Some(parent) = parent {
        task["depends_on"] = json!({ parent: "Success" });
    }
    task
}

/// The engine used directly: create, start, wait, the calls Gofer makes.
struct Direct {
    docker: Docker,
    counter: std::sync::atomic::AtomicU64,
}

impl Direct {
    /// Runs one container; returns the time until start returned and until wait returned. Removal is untimed.
    async fn run(&self, command: &[&str]) -> Result<(Duration, Duration)> {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("gofer-bench-direct-{}-{n}", std::process::id());
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(command.iter().map(|s| s.to_string()).collect()),
            labels: Some(HashMap::from([(BENCH_LABEL.to_string(), "direct".to_string())])),
            ..Default::default()
        };
        let begun = Instant::now();
        let created = self
            .docker
            .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
            .await?;
        self.docker.start_container(&created.id, None).await?;
        let running = begun.elapsed();
        let options = WaitContainerOptions { condition: "not-running".into() };
        let mut wait = self.docker.wait_container(&created.id, Some(options));
        match wait.next().await {
            Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("wait ended without a status"),
        }
        let done = begun.elapsed();
        let remove = RemoveContainerOptions { force: true, ..Default::default() };
        self.docker.remove_container(&created.id, Some(remove)).await?;
        Ok((running, done))
    }

    /// Runs `sleep 1.5` and returns how long after the container's recorded exit the engine's wait returned.
    async fn exit_lag(&self) -> Result<f64> {
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec!["sleep".into(), "1.5".into()]),
            labels: Some(HashMap::from([(BENCH_LABEL.to_string(), "direct".to_string())])),
            ..Default::default()
        };
        let created = self.docker.create_container(None::<CreateContainerOptions>, body).await?;
        self.docker.start_container(&created.id, None).await?;
        let options = WaitContainerOptions { condition: "not-running".into() };
        let _ = self.docker.wait_container(&created.id, Some(options)).next().await;
        let returned = epoch_nanos_now();
        let details = self.docker.inspect_container(&created.id, None).await?;
        let finished = details.state.and_then(|s| s.finished_at).context("no FinishedAt")?;
        let finished = parse_rfc3339_nanos(&finished).context("FinishedAt")?;
        let remove = RemoveContainerOptions { force: true, ..Default::default() };
        self.docker.remove_container(&created.id, Some(remove)).await?;
        Ok((returned - finished) as f64 / 1e6)
    }

    async fn chain(&self, n: usize) -> Result<Duration> {
        let begun = Instant::now();
        for _ in 0..n {
            self.run(&["true"]).await?;
        }
        Ok(begun.elapsed())
    }

    async fn fan_out(&self, width: usize) -> Result<Duration> {
        let begun = Instant::now();
        self.run(&["true"]).await?;
        let children = futures::future::join_all((0..width).map(|_| self.run(&["true"]))).await;
        for child in children {
            child?;
        }
        Ok(begun.elapsed())
    }

    async fn burst(&self, n: usize) -> Result<Duration> {
        let begun = Instant::now();
        for result in futures::future::join_all((0..n).map(|_| self.run(&["true"]))).await {
            result?;
        }
        Ok(begun.elapsed())
    }
}

/// Parses Docker's RFC 3339 timestamps ("2026-11-28T03:30:01.123456789Z") into nanoseconds since the epoch.
fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos: i64 = format!("{frac:0<9}")[..9].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(secs as i128 * 1_000_000_000 + nanos as i128)
}

fn epoch_nanos_now() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

async fn finished_at_nanos(docker: &Docker, pipeline: &str, run: u64) -> Result<i128> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("dev.gofer.pipeline={pipeline}"), format!("dev.gofer.run={run}")],
    )]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let containers = docker.list_containers(Some(options)).await?;
    let id = containers.first().and_then(|c| c.id.clone()).context("the task's container was not kept")?;
    let details = docker.inspect_container(&id, None).await?;
    let finished = details.state.and_then(|s| s.finished_at).context("no FinishedAt")?;
    let nanos = parse_rfc3339_nanos(&finished).with_context(|| format!("cannot parse FinishedAt {finished}"))?;
    docker.remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await?;
    Ok(nanos)
}

async fn remove_kept(docker: &Docker) -> Result<()> {
    let filters = HashMap::from([("label".to_string(), vec!["dev.gofer.pipeline".to_string()])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    for container in docker.list_containers(Some(options)).await? {
        if container
            .labels
            .as_ref()
            .is_some_and(|l| l.get("dev.gofer.pipeline").is_some_and(|p| p.starts_with("bench-")))
            && let Some(id) = container.id
        {
            let _ =
                docker.remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
        }
    }
    Ok(())
}

fn ratio(gofer: f64, direct: f64) -> String {
    format!("{:.3}×", gofer / direct)
}

fn gofer_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("GOFER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("gofer");
    if !bin.exists() {
        bail!(
            "no gofer binary next to {}; build it with `cargo build --release -p gofer` or set GOFER_BIN",
            exe.display()
        );
    }
    Ok(bin)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let bin = gofer_bin()?;
    let docker = Docker::connect_with_local_defaults()?.negotiate_version().await.context("no Docker engine")?;
    docker.inspect_image(IMAGE).await.context("busybox:latest is missing; run scripts/ensure-docker.sh")?;
    let http = reqwest::Client::new();
    let direct = Direct { docker: docker.clone(), counter: Default::default() };
    let mut report: Vec<Line> = Vec::new();

    if args.storage {
        storage_modes(&args, &bin, &http, &docker, &direct, &mut report).await?;
    } else if args.logs {
        report.extend(logs::logs(&args, &bin, &http, &docker).await?);
    } else if args.one_task_only {
        let data_dir = tempfile::tempdir()?;
        let server = Server::start(&bin, data_dir.path(), &[("GOFER_RUNS__KEEP_CONTAINERS_SECONDS", "3600")])?;
        server.wait_ready(&http).await?;
        let gofer = Gofer { http: http.clone(), url: server.url.clone() };
        let mut watcher = Watcher::connect(&http, &server.url).await?;
        gofer.register(json!({ "id": "bench-true", "tasks": [task("t", &["true"], None)] })).await?;
        for _ in 0..2 {
            let run = gofer.start_run("bench-true").await?;
            watcher.wait(completed("bench-true", run)).await?;
            direct.run(&["true"]).await?;
        }
        remove_kept(&docker).await?;
        one_task(&args, &gofer, &mut watcher, &docker, &direct, &mut report).await?;
    } else if args.dag_only {
        let data_dir = tempfile::tempdir()?;
        let server = Server::start(&bin, data_dir.path(), &[("GOFER_RUNS__KEEP_CONTAINERS_SECONDS", "3600")])?;
        server.wait_ready(&http).await?;
        let gofer = Gofer { http: http.clone(), url: server.url.clone() };
        let mut watcher = Watcher::connect(&http, &server.url).await?;
        register_dag_shapes(&gofer).await?;
        dag_shapes(&args, &gofer, &mut watcher, &docker, &direct, &mut report).await?;
    } else {
        if !args.api_only {
            runs(&args, &bin, &http, &docker, &direct, &mut report).await?;
            ticks(&args, &bin, &http, &mut report).await?;
        }
        api_latency(&args, &bin, &http, &mut report).await?;
    }

    println!("| metric | Gofer | Docker directly | ratio | target |");
    println!("|---|---|---|---|---|");
    for l in &report {
        println!("| {} | {} | {} | {} | {} |", l.metric, l.gofer, l.direct, l.ratio, l.target);
    }
    Ok(())
}

/// Everything that runs containers: latency, exit delay, DAG shapes, bursts and memory.
async fn runs(
    args: &Args,
    bin: &Path,
    http: &reqwest::Client,
    docker: &Docker,
    direct: &Direct,
    report: &mut Vec<Line>,
) -> Result<()> {
    let data_dir = tempfile::tempdir()?;
    let server = Server::start(
        bin,
        data_dir.path(),
        &[("GOFER_RUNS__KEEP_CONTAINERS_SECONDS", "3600"), ("GOFER_RUNS__PIPELINE_LIMIT", "200")],
    )?;
    server.wait_ready(http).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = server.rss_kb()?;
    let gofer = Gofer { http: http.clone(), url: server.url.clone() };
    let mut watcher = Watcher::connect(http, &server.url).await?;

    gofer.register(json!({ "id": "bench-true", "tasks": [task("t", &["true"], None)] })).await?;
    gofer.register(json!({ "id": "bench-sleep", "tasks": [task("t", &["sleep", "1.5"], None)] })).await?;
    register_dag_shapes(&gofer).await?;

    // Warm up both paths.
    for _ in 0..2 {
        let run = gofer.start_run("bench-true").await?;
        watcher.wait(completed("bench-true", run)).await?;
        direct.run(&["true"]).await?;
    }
    remove_kept(docker).await?;

    one_task(args, &gofer, &mut watcher, docker, direct, report).await?;

    // Routing: the same one-task run while a canary of its pipeline is running (every start takes the deployment
    // lock, reads the deployment with its counts and records the routing), against a pipeline with no deployment.
    gofer.register(json!({ "id": "bench-routed", "tasks": [task("t", &["true"], None)] })).await?;
    let candidate = json!({ "id": "bench-routed", "description": "candidate", "tasks": [task("t", &["true"], None)] });
    let version = gofer.register_only(candidate).await?;
    let canary = json!({ "strategy": { "kind": "canary", "steps": [50], "min_runs": 1000, "success_threshold": 0.5 } });
    gofer.deploy("bench-routed", version, canary).await?;
    eprintln!("one-task runs routed by a canary: {} each, interleaved with unrouted ones", args.runs);
    let (mut routed, mut plain) = (vec![], vec![]);
    for _ in 0..args.runs {
        for (pipeline, samples) in [("bench-routed", &mut routed), ("bench-true", &mut plain)] {
            let begun = Instant::now();
            let run = gofer.start_run(pipeline).await?;
            samples.push(ms(watcher.wait(completed(pipeline, run)).await? - begun));
        }
        remove_kept(docker).await?;
    }
    let (rm, pm) = (percentile(&routed, 50.0), percentile(&plain, 50.0));
    report.push(line(
        "one-task run routed by a running canary vs no deployment (Gofer both; median request → complete)",
        format!("{rm:.1} ms"),
        format!("{pm:.1} ms (unrouted)"),
        format!("{} ({:+.1} ms)", ratio(rm, pm), rm - pm),
        "within the spread",
    ));

    eprintln!("1.5 s task: exit → run complete");
    let (mut lag, mut direct_lag) = (vec![], vec![]);
    for _ in 0..5 {
        direct_lag.push(direct.exit_lag().await?);
        let run = gofer.start_run("bench-sleep").await?;
        watcher.wait(completed("bench-sleep", run)).await?;
        let completed_at = epoch_nanos_now();
        let finished = finished_at_nanos(docker, "bench-sleep", run).await?;
        // The event arrived at `completed_at` at the latest; the run was marked complete before that.
        lag.push((completed_at - finished) as f64 / 1e6);
    }
    let (gm, dm) = (percentile(&lag, 50.0), percentile(&direct_lag, 50.0));
    report.push(line(
        "1.5 s task: container exit (FinishedAt) → run complete / wait returns (median of 5)",
        format!("{gm:.1} ms"),
        format!("{dm:.1} ms"),
        format!("+{:.1} ms", gm - dm),
        "≤ 10 ms added",
    ));

    dag_shapes(args, &gofer, &mut watcher, docker, direct, report).await?;

    eprintln!("50 runs at once vs 50 containers at once, 3 rounds");
    let (mut g, mut d) = (vec![], vec![]);
    for _ in 0..3 {
        let begun = Instant::now();
        let runs = futures::future::join_all((0..50).map(|_| gofer.start_run("bench-true"))).await;
        for run in runs {
            watcher.wait(completed("bench-true", run?)).await?;
        }
        g.push(ms(begun.elapsed()));
        remove_kept(docker).await?;
        d.push(ms(direct.burst(50).await?));
    }
    let (gm, dm) = (percentile(&g, 50.0), percentile(&d, 50.0));
    report.push(line(
        "50 at once: wall time (median of 3)",
        format!("{gm:.0} ms"),
        format!("{dm:.0} ms"),
        ratio(gm, dm),
        "≤ 1.03×",
    ));

    eprintln!("memory after {} runs", args.rss_runs);
    let mut done = 0;
    while done < args.rss_runs {
        let batch = (args.rss_runs - done).min(50);
        let runs = futures::future::join_all((0..batch).map(|_| gofer.start_run("bench-true"))).await;
        for run in runs {
            watcher.wait(completed("bench-true", run?)).await?;
        }
        remove_kept(docker).await?;
        done += batch;
    }
    let busy_rss = server.rss_kb()?;
    report.push(line(
        "server RSS idle",
        format!("{:.1} MB", idle_rss as f64 / 1024.0),
        "-".into(),
        "-".into(),
        "≤ 15 MB",
    ));
    report.push(line(
        &format!("server RSS after {} more runs", args.rss_runs),
        format!("{:.1} MB", busy_rss as f64 / 1024.0),
        "-".into(),
        "-".into(),
        "≤ 30 MB",
    ));
    drop(watcher);
    drop(server);
    remove_kept(docker).await?;
    Ok(())
}

/// One-task runs against the engine doing create/start/wait, interleaved sample by sample, `args.runs` samples
/// in each of `args.repetitions` repetitions: median, p95 and p99 of request → running and request → complete.
async fn one_task(
    args: &Args,
    gofer: &Gofer,
    watcher: &mut Watcher,
    docker: &Docker,
    direct: &Direct,
    report: &mut Vec<Line>,
) -> Result<()> {
    let figures = [("one-task: request → container running", 0), ("one-task: request → run complete", 1)];
    let percentiles = [(50.0, "median", "≤ 1.03×"), (95.0, "p95", "≤ 1.10×"), (99.0, "p99", "≤ 1.20×")];
    // Per figure and percentile: Gofer's and the engine's value in each repetition.
    let mut values = vec![(Vec::new(), Vec::new()); figures.len() * percentiles.len()];
    for repetition in 1..=args.repetitions {
        eprintln!("one-task runs: repetition {repetition} of {}, {} each, interleaved", args.repetitions, args.runs);
        let mut samples = [(vec![], vec![]), (vec![], vec![])];
        for _ in 0..args.runs {
            let begun = Instant::now();
            let run = gofer.start_run("bench-true").await?;
            samples[0].0.push(ms(watcher.wait(task_running("bench-true", run)).await? - begun));
            samples[1].0.push(ms(watcher.wait(completed("bench-true", run)).await? - begun));
            let (running, done) = direct.run(&["true"]).await?;
            samples[0].1.push(ms(running));
            samples[1].1.push(ms(done));
            remove_kept(docker).await?;
        }
        for (_, figure) in figures {
            for (i, (p, _, _)) in percentiles.iter().enumerate() {
                let (g, d) = &samples[figure];
                let slot = &mut values[figure * percentiles.len() + i];
                slot.0.push(percentile(g, *p));
                slot.1.push(percentile(d, *p));
            }
        }
    }
    for (name, figure) in figures {
        for (i, (_, label, target)) in percentiles.iter().enumerate() {
            let (g, d) = &values[figure * percentiles.len() + i];
            report.push(repeated(&format!("{name} ({label}, each repetition)"), g, d, "ms", target));
        }
    }
    Ok(())
}

/// The 10-task chain and the 1 → 9 fan-out, as pipelines.
async fn register_dag_shapes(gofer: &Gofer) -> Result<()> {
    let chain: Vec<Value> = (1..=10)
        .map(|i| task(&format!("c{i}"), &["true"], (i > 1).then(|| format!("c{}", i - 1)).as_deref()))
        .collect();
    gofer.register(json!({ "id": "bench-chain", "tasks": chain })).await?;
    let mut fan = vec![task("root", &["true"], None)];
    fan.extend((1..=9).map(|i| task(&format!("f{i}"), &["true"], Some("root"))));
    gofer.register(json!({ "id": "bench-fan", "tasks": fan })).await?;
    Ok(())
}

/// The chain and the fan-out against the engine doing create/start/wait per task, `args.repetitions` times (five
/// interleaved rounds each): the median of each repetition, so the spread between them shows what is noise.
async fn dag_shapes(
    args: &Args,
    gofer: &Gofer,
    watcher: &mut Watcher,
    docker: &Docker,
    direct: &Direct,
    report: &mut Vec<Line>,
) -> Result<()> {
    for (pipeline, label, target) in
        [("bench-chain", "10-task chain wall time", "≤ 0.80×"), ("bench-fan", "fan-out 1 → 9 wall time", "≤ 0.85×")]
    {
        let (mut gofer_medians, mut direct_medians) = (vec![], vec![]);
        for repetition in 1..=args.repetitions {
            eprintln!("{label}: repetition {repetition} of {}, 5 rounds", args.repetitions);
            let (mut g, mut d) = (vec![], vec![]);
            for _ in 0..5 {
                let begun = Instant::now();
                let run = gofer.start_run(pipeline).await?;
                g.push(ms(watcher.wait(completed(pipeline, run)).await? - begun));
                d.push(ms(if pipeline == "bench-chain" { direct.chain(10).await? } else { direct.fan_out(9).await? }));
                remove_kept(docker).await?;
            }
            gofer_medians.push(percentile(&g, 50.0));
            direct_medians.push(percentile(&d, 50.0));
        }
        let metric = format!("{label} (median of 5, each repetition)");
        report.push(repeated(&metric, &gofer_medians, &direct_medians, "ms", target));
    }
    Ok(())
}

/// Epoch milliseconds now, on the same clock the server stamps events with.
fn epoch_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One-task latency and 50 runs at once on SQLite, on PostgreSQL with one server, and on PostgreSQL with three
/// servers (runs started round-robin, events followed on the first: the shared bus carries every server's), each
/// interleaved with the engine used directly.
async fn storage_modes(
    args: &Args,
    bin: &Path,
    http: &reqwest::Client,
    docker: &Docker,
    direct: &Direct,
    report: &mut Vec<Line>,
) -> Result<()> {
    let database = gofer_storage_postgres::test_server::TestServer::start();
    let objects = tempfile::tempdir()?;
    let objects_path = objects.path().display().to_string();
    for (mode, (label, count, postgres)) in
        [("SQLite, one server", 1, false), ("PostgreSQL, one server", 1, true), ("PostgreSQL, three servers", 3, true)]
            .into_iter()
            .enumerate()
    {
        let url = if postgres { database.create_database(&format!("bench{mode}")).await } else { String::new() };
        let mut env = vec![("GOFER_RUNS__PIPELINE_LIMIT", "200")];
        if postgres {
            env.extend([
                ("GOFER_STORAGE__KIND", "postgres"),
                ("GOFER_STORAGE__URL", url.as_str()),
                ("GOFER_OBJECTS__PATH", objects_path.as_str()),
                ("GOFER_SECRETS__KEY", "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMzI="),
            ]);
        }
        let dirs: Vec<tempfile::TempDir> = (0..count).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
        let mut servers = Vec::new();
        for dir in &dirs {
            servers.push(Server::start(bin, dir.path(), &env)?);
        }
        for server in &servers {
            server.wait_ready(http).await?;
        }
        let gofers: Vec<Gofer> = servers.iter().map(|s| Gofer { http: http.clone(), url: s.url.clone() }).collect();
        let mut watcher = Watcher::connect(http, &servers[0].url).await?;
        gofers[0].register(json!({ "id": "bench-mode", "tasks": [task("t", &["true"], None)] })).await?;
        for gofer in &gofers {
            let run = gofer.start_run("bench-mode").await?;
            watcher.wait(completed("bench-mode", run)).await?;
        }
        eprintln!("{label}: {} one-task runs, interleaved", args.runs);
        let (mut gofer_done, mut direct_done) = (Vec::new(), Vec::new());
        for i in 0..args.runs {
            let begun = Instant::now();
            let run = gofers[i % count].start_run("bench-mode").await?;
            gofer_done.push(ms(watcher.wait(completed("bench-mode", run)).await? - begun));
            direct_done.push(ms(direct.run(&["true"]).await?.1));
        }
        let (g, d) = (percentile(&gofer_done, 50.0), percentile(&direct_done, 50.0));
        report.push(line(
            &format!("{label}: one-task request → run complete (median)"),
            format!("{g:.0} ms"),
            format!("{d:.0} ms"),
            ratio(g, d),
            "",
        ));
        let (g, d) = (percentile(&gofer_done, 95.0), percentile(&direct_done, 95.0));
        report.push(line(
            &format!("{label}: one-task (p95)"),
            format!("{g:.0} ms"),
            format!("{d:.0} ms"),
            ratio(g, d),
            "",
        ));

        eprintln!("{label}: 50 runs at once");
        let begun = Instant::now();
        let mut started = Vec::new();
        for i in 0..50 {
            started.push(gofers[i % count].start_run("bench-mode").await?);
        }
        for run in started {
            watcher.wait(completed("bench-mode", run)).await?;
        }
        let g = begun.elapsed();
        let d = direct.burst(50).await?;
        report.push(line(
            &format!("{label}: 50 one-task runs at once, wall time"),
            format!("{:.2} s", g.as_secs_f64()),
            format!("{:.2} s", d.as_secs_f64()),
            ratio(g.as_secs_f64(), d.as_secs_f64()),
            "",
        ));
        drop(watcher);
        drop(servers);
        remove_kept(docker).await?;
    }
    Ok(())
}

/// From an interval tick to the task container running, against the plain start-run path (request → container
/// running), interleaved. Both are measured on the server's clock: the tick is the subscription's `last_fired`,
/// the request the moment before it is sent, and "running" the `task_changed` event's `emitted`.
async fn ticks(args: &Args, bin: &Path, http: &reqwest::Client, report: &mut Vec<Line>) -> Result<()> {
    let data_dir = tempfile::tempdir()?;
    let server = Server::start(bin, data_dir.path(), &[("GOFER_EXTENSIONS__INTERVAL__MIN_INTERVAL", "1s")])?;
    server.wait_ready(http).await?;
    let gofer = Gofer { http: http.clone(), url: server.url.clone() };
    let mut watcher = Watcher::connect(http, &server.url).await?;
    gofer.register(json!({ "id": "bench-tick", "tasks": [task("t", &["true"], None)] })).await?;
    gofer.register(json!({ "id": "bench-request", "tasks": [task("t", &["true"], None)] })).await?;
    for _ in 0..2 {
        let run = gofer.start_run("bench-request").await?;
        watcher.wait(completed("bench-request", run)).await?;
    }
    let subscriptions = format!("{}/api/namespaces/default/pipelines/bench-tick/subscriptions", server.url);
    let request = json!({ "extension_id": "interval", "label": "bench", "settings": { "every": "1s" } });
    let answer = http.post(&subscriptions).json(&request).send().await?;
    if !answer.status().is_success() {
        bail!("subscribe failed: {}", answer.text().await?);
    }

    eprintln!("interval ticks: {} samples, interleaved with start-run requests", args.runs);
    let (mut tick, mut plain) = (Vec::new(), Vec::new());
    while tick.len() < args.runs {
        let (event, _) = watcher.wait_event(any_task_running("bench-tick")).await?;
        let listed: Value = http.get(&subscriptions).send().await?.json().await?;
        let last_fired = listed["subscriptions"][0]["last_fired"].as_u64().context("last_fired")?;
        let EventKind::TaskChanged { run_id, .. } = event.kind else { continue };
        watcher.wait(completed("bench-tick", run_id)).await?;
        // A tick that fired after this run's container started belongs to the next run: skip the sample.
        if last_fired > event.emitted {
            continue;
        }
        tick.push((event.emitted - last_fired) as f64);

        let sent = epoch_ms_now();
        let run = gofer.start_run("bench-request").await?;
        let (running, _) = watcher.wait_event(task_running("bench-request", run)).await?;
        plain.push(running.emitted.saturating_sub(sent) as f64);
        watcher.wait(completed("bench-request", run)).await?;
    }
    for (name, p) in [("median", 50.0), ("p95", 95.0)] {
        let (t, r) = (percentile(&tick, p), percentile(&plain, p));
        report.push(line(
            &format!("interval tick → container running ({name}; the other column: start-run request → running)"),
            format!("{t:.0} ms"),
            format!("{r:.0} ms"),
            format!("{:+.0} ms", t - r),
            if name == "median" { "≤ +50 ms" } else { "" },
        ));
    }
    Ok(())
}

/// API latency and throughput against a database holding many runs.
async fn api_latency(args: &Args, bin: &Path, http: &reqwest::Client, report: &mut Vec<Line>) -> Result<()> {
    eprintln!("seeding {} stored runs", args.stored_runs);
    let seeded = tempfile::tempdir()?;
    seed(seeded.path(), args.stored_runs).await?;
    let server = Server::start(bin, seeded.path(), &[])?;
    server.wait_ready(http).await?;
    let list_url = format!("{}/api/namespaces/default/pipelines/bench-big/runs?limit=50", server.url);
    let get_url = format!("{}/api/namespaces/default/pipelines/bench-big/runs/{}", server.url, args.stored_runs / 2);
    for (name, url) in [("run list, 50-run page", &list_url), ("run get", &get_url)] {
        let mut samples = Vec::with_capacity(1000);
        for i in 0..1100 {
            let begun = Instant::now();
            let response = http.get(url.as_str()).send().await?;
            let status = response.status();
            response.bytes().await?;
            if !status.is_success() {
                bail!("{url} answered {status}");
            }
            if i >= 100 {
                samples.push(ms(begun.elapsed()));
            }
        }
        report.push(line(
            &format!("{name} with {} runs stored: p50 / p99", args.stored_runs),
            format!("{:.2} / {:.2} ms", percentile(&samples, 50.0), percentile(&samples, 99.0)),
            "-".into(),
            "-".into(),
            "p50 ≤ 2 ms",
        ));
    }
    let (throughput, how) = match wrk(&list_url)? {
        Some(rate) => (rate, "wrk -t2 -c10 -d10s"),
        None => (load(http, &list_url, 8, Duration::from_secs(5)).await?, "in-process client, 8 connections"),
    };
    report.push(line(
        &format!("run list (50-run page) under load ({how})"),
        format!("{throughput:.0} req/s"),
        "-".into(),
        "-".into(),
        "≥ 10,000 req/s",
    ));
    drop(server);
    Ok(())
}

/// Requests per second measured by wrk (as the earlier Gofer was measured), if wrk is installed.
fn wrk(url: &str) -> Result<Option<f64>> {
    let Ok(out) = Command::new("wrk").args(["-t2", "-c10", "-d10s", url]).output() else { return Ok(None) };
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok());
    match rate {
        Some(rate) if out.status.success() => Ok(Some(rate)),
        _ => bail!("wrk failed: {text}"),
    }
}

/// Requests per second of `connections` clients hammering `url` for `duration`.
async fn load(http: &reqwest::Client, url: &str, connections: usize, duration: Duration) -> Result<f64> {
    let deadline = Instant::now() + duration;
    let workers = (0..connections).map(|_| {
        let (http, url) = (http.clone(), url.to_string());
        tokio::spawn(async move {
            let mut count = 0u64;
            while Instant::now() < deadline {
                if let Ok(response) = http.get(&url).send().await
                    && response.bytes().await.is_ok()
                {
                    count += 1;
                }
            }
            count
        })
    });
    let mut total = 0;
    for worker in futures::future::join_all(workers).await {
        total += worker?;
    }
    Ok(total as f64 / duration.as_secs_f64())
}

/// Fills a data dir with one pipeline and `runs` completed runs, straight through the storage crate.
async fn seed(data_dir: &Path, runs: u64) -> Result<()> {
    use gofer_api::models::{Initiator, Namespace, RunState, RunStatus, Variable, VariableSource};
    let store: std::sync::Arc<dyn gofer_storage::Storage> =
        std::sync::Arc::new(gofer_storage_sqlite::SqliteStorage::open(&data_dir.join("gofer.db"))?);
    let now = gofer_api::epoch_millis();
    let namespace = Namespace {
        id: "default".into(),
        name: "Default".into(),
        description: String::new(),
        created: now,
        modified: now,
    };
    store.create_namespace(&namespace).await?;
    let config: gofer_api::config::Pipeline = serde_json::from_value(json!({
        "id": "bench-big", "tasks": [{ "id": "t", "image": IMAGE, "command": ["true"] }]
    }))?;
    store.register_config("default", &config, "seed", now).await?;
    let bench = Initiator { kind: "user".into(), name: "bench".into() };
    let new = gofer_storage::NewDeployment {
        namespace_id: "default".into(),
        pipeline_id: "bench-big".into(),
        from_version: None,
        to_version: 1,
        strategy: gofer_api::config::Strategy::Immediate,
        started: now,
        initiator: bench.clone(),
        message: "seeded".into(),
    };
    let (mut deployment, _) = store.insert_deployment(&new).await?;
    deployment.state = gofer_api::models::DeploymentState::Promoted;
    deployment.ended = now;
    let promoted = EventKind::DeploymentEnded {
        namespace_id: "default".into(),
        pipeline_id: "bench-big".into(),
        deployment_id: deployment.deployment_id,
        state: deployment.state,
        live_version: Some(1),
        reason: "seeded".into(),
    };
    store.update_deployment(&deployment, &gofer_storage::NewEvent { emitted: now, kind: promoted }).await?;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (w..runs).step_by(4) {
                    let (mut run, _) = store
                        .insert_run(gofer_storage::NewRun {
                            namespace_id: "default".into(),
                            pipeline_id: "bench-big".into(),
                            version: 1,
                            created: now + i,
                            initiator: Initiator { kind: "user".into(), name: "bench".into() },
                            variables: vec![Variable {
                                key: "RUN_NUMBER".into(),
                                value: i.to_string(),
                                source: VariableSource::RunOptions,
                            }],
                            routing: None,
                        })
                        .await?;
                    run.state = RunState::Complete;
                    run.status = RunStatus::Successful;
                    run.started = now + i;
                    run.ended = now + i + 300;
                    let completed = EventKind::RunCompleted {
                        namespace_id: run.namespace_id.clone(),
                        pipeline_id: run.pipeline_id.clone(),
                        run_id: run.run_id,
                        status: run.status,
                        status_reason: None,
                    };
                    store.update_run(&run, &gofer_storage::NewEvent { emitted: run.ended, kind: completed }).await?;
                }
                Ok::<(), gofer_storage::Error>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    Ok(())
}
