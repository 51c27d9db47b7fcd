//! Logs at speed: a task writes `--log-mb` MB of lines to stdout as fast as it can. Gofer's capture (request → run
//! complete, the log stored) is timed against the engine used directly (create, attach, start, read every byte,
//! wait) on the same container (script and log driver), interleaved; the stored log's SHA-256 must equal the bytes the script writes; the
//! server's RSS is sampled throughout; a client follows the log live and its last byte is timed against the run's
//! completion. Then `--log-tasks` such tasks run at once while the API's p99 is measured against its idle p99.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, RemoveContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    Args, BENCH_LABEL, Gofer, IMAGE, Line, Server, Watcher, completed, line, ms, percentile, repeated, task_running,
};

/// What every line of the task's output says (64 bytes with its newline).
const LINE: &str = "gofer log benchmark 0123456789 abcdefghijklmnopqrstuvwxyz ABCDE";

/// The task's script: `bytes` bytes of [`LINE`]s, as fast as `yes` writes them.
fn script(bytes: u64) -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("yes '{LINE}' | head -c {bytes}")]
}

/// The SHA-256 of what [`script`] writes, made here.
fn expected_digest(bytes: u64) -> String {
    let mut line = LINE.as_bytes().to_vec();
    line.push(b'\n');
    let block: Vec<u8> = line.iter().copied().cycle().take(line.len() * 16_384).collect();
    let mut hasher = Sha256::new();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The engine used directly: create, attach, start, read (and hash) every byte, wait. Returns the time from the
/// create call until the output ended and the wait returned, and the output's digest.
async fn direct(docker: &Docker, bytes: u64) -> Result<(Duration, String)> {
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(script(bytes)),
        labels: Some(HashMap::from([(BENCH_LABEL.to_string(), "direct".to_string())])),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        // The same container as Gofer's: the engine keeps its own copy with the `local` driver.
        host_config: Some(HostConfig {
            log_config: Some(HostConfigLogConfig {
                typ: Some("local".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), "100m".to_string()),
                    ("max-file".to_string(), "10".to_string()),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let begun = Instant::now();
    let created = docker.create_container(None::<CreateContainerOptions>, body).await?;
    let attach = AttachContainerOptions { stream: true, stdout: true, stderr: true, ..Default::default() };
    let mut attached = docker.attach_container(&created.id, Some(attach)).await?.output;
    docker.start_container(&created.id, None).await?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = attached.next().await {
        match chunk? {
            LogOutput::StdOut { message } | LogOutput::StdErr { message } => hasher.update(&message),
            _ => {}
        }
    }
    let options = WaitContainerOptions { condition: "not-running".into() };
    let _ = docker.wait_container(&created.id, Some(options)).next().await;
    let took = begun.elapsed();
    let remove = RemoveContainerOptions { force: true, ..Default::default() };
    docker.remove_container(&created.id, Some(remove)).await?;
    Ok((took, hex(&hasher.finalize())))
}

/// The largest RSS (kB) of process `pid` while sampling runs, every 20 ms.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: tokio::task::JoinHandle<()>,
}

impl RssPeak {
    fn sample(pid: u32) -> Self {
        let (peak, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (p, s) = (peak.clone(), stop.clone());
        let sampler = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = rss_of(pid) {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak, stop, sampler }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sampler.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The pid of the Docker engine on this host, for its CPU time.
fn dockerd_pid() -> Option<u32> {
    let out = std::process::Command::new("pidof").arg("dockerd").output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().next()?.parse().ok()
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a task's log through the API (following it when `follow`): its digest, size and when its last byte came.
async fn read_log(gofer: &Gofer, pipeline: &str, run: u64, follow: bool) -> Result<(String, u64, Instant)> {
    let url =
        format!("{}/api/namespaces/default/pipelines/{pipeline}/runs/{run}/tasks/t/logs?follow={follow}", gofer.url);
    let response = gofer.http.get(url).send().await?;
    if !response.status().is_success() {
        bail!("reading the log: {}", response.status());
    }
    let mut stream = response.bytes_stream();
    let (mut hasher, mut size, mut last) = (Sha256::new(), 0u64, Instant::now());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
        last = Instant::now();
    }
    Ok((hex(&hasher.finalize()), size, last))
}

/// Request latencies (ms) of `GET run` for `samples` sequential calls.
async fn api_latencies(gofer: &Gofer, pipeline: &str, run: u64, samples: usize) -> Result<Vec<f64>> {
    let url = format!("{}/api/namespaces/default/pipelines/{pipeline}/runs/{run}", gofer.url);
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let begun = Instant::now();
        let response = gofer.http.get(&url).send().await?;
        response.bytes().await?;
        latencies.push(ms(begun.elapsed()));
    }
    Ok(latencies)
}

pub(crate) async fn logs(args: &Args, bin: &Path, http: &reqwest::Client, docker: &Docker) -> Result<Vec<Line>> {
    let bytes = args.log_mb * 1_000_000;
    let expected = expected_digest(bytes);
    let data_dir = tempfile::tempdir()?;
    let server = Server::start(bin, data_dir.path(), &[("GOFER_RUNS__PIPELINE_LIMIT", "200")])?;
    server.wait_ready(http).await?;
    let gofer = Gofer { http: http.clone(), url: server.url.clone() };
    let mut watcher = Watcher::connect(http, &server.url).await?;
    let config = json!({ "id": "bench-logs", "tasks": [{ "id": "t", "image": IMAGE, "command": script(bytes) }] });
    gofer.register(config).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut report = Vec::new();
    let (mut gofer_times, mut direct_times, mut growths, mut lags) = (vec![], vec![], vec![], vec![]);
    let (mut gofer_cpu, mut engine_cpu) = (vec![], vec![]);
    let engine = dockerd_pid();
    let mut exact = true;
    for repetition in 1..=args.repetitions {
        eprintln!("{} MB of output: repetition {repetition} of {}", args.log_mb, args.repetitions);
        let (took, digest) = direct(docker, bytes).await?;
        if digest != expected {
            bail!("the engine's own output differs from what the script writes: the benchmark is wrong");
        }
        direct_times.push(ms(took));

        let before = server.rss_kb()?;
        let cpu_before = (cpu_seconds(server.child.id()), engine.and_then(cpu_seconds));
        let peak = RssPeak::sample(server.child.id());
        let begun = Instant::now();
        let run = gofer.start_run("bench-logs").await?;
        watcher.wait(task_running("bench-logs", run)).await?;
        let follower = {
            let gofer = Gofer { http: http.clone(), url: server.url.clone() };
            tokio::spawn(async move { read_log(&gofer, "bench-logs", run, true).await })
        };
        let done = watcher.wait(completed("bench-logs", run)).await?;
        gofer_times.push(ms(done - begun));
        if let (Some(server_was), Some(server_is)) = (cpu_before.0, cpu_seconds(server.child.id())) {
            gofer_cpu.push(server_is - server_was);
        }
        if let (Some(engine_was), Some(engine_is)) = (cpu_before.1, engine.and_then(cpu_seconds)) {
            engine_cpu.push(engine_is - engine_was);
        }
        let (followed, followed_size, last_byte) = follower.await??;
        growths.push(peak.finish().await.saturating_sub(before) as f64 / 1024.0);
        lags.push(ms(last_byte.saturating_duration_since(done)));
        let (stored, stored_size, _) = read_log(&gofer, "bench-logs", run, false).await?;
        if stored != expected || followed != expected {
            eprintln!(
                "stored log: {stored_size} bytes, sha256 {stored}; followed: {followed_size} bytes, {followed}; \
                 expected {bytes} bytes, {expected}"
            );
            exact = false;
        }
    }
    let each = |values: &[f64], unit: &str| {
        format!("{} {unit}", values.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", "))
    };
    let metric = format!("{} MB to stdout: request → run complete, log stored (each repetition)", args.log_mb);
    report.push(repeated(&metric, &gofer_times, &direct_times, "ms", "≤ 1.10×"));
    report.push(line(
        "stored and followed log byte-exact (SHA-256 against the script's bytes)",
        if exact { "yes".into() } else { "NO".into() },
        "-".into(),
        "-".into(),
        "exact",
    ));
    report.push(line(
        "server RSS growth while it captures (peak − before)",
        each(&growths, "MB"),
        "-".into(),
        "-".into(),
        "≤ 16 MB",
    ));
    let seconds = |values: &[f64]| values.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(", ");
    report.push(line(
        "CPU seconds used during the capture: Gofer server (the other column: dockerd)",
        format!("{} s", seconds(&gofer_cpu)),
        format!("{} s", seconds(&engine_cpu)),
        "-".into(),
        "",
    ));
    report.push(line(
        "live follower's last byte after the run completed",
        each(&lags, "ms"),
        "-".into(),
        "-".into(),
        "keeps up",
    ));

    let tasks = args.log_tasks;
    eprintln!("{tasks} such tasks at once: API p99 against idle");
    let probe = gofer.start_run("bench-logs").await?;
    watcher.wait(completed("bench-logs", probe)).await?;
    let idle = api_latencies(&gofer, "bench-logs", probe, 500).await?;
    let runs = futures::future::join_all((0..tasks).map(|_| gofer.start_run("bench-logs"))).await;
    let runs: Vec<u64> = runs.into_iter().collect::<Result<_>>()?;
    for run in &runs {
        watcher.wait(task_running("bench-logs", *run)).await?;
    }
    let begun = Instant::now();
    let mut busy = Vec::new();
    // Sampled while all of them write: until the first ends.
    loop {
        busy.extend(api_latencies(&gofer, "bench-logs", probe, 50).await?);
        watcher.drain();
        if runs.iter().any(|run| watcher.has(completed("bench-logs", *run)))
            || begun.elapsed() > Duration::from_secs(600)
        {
            break;
        }
    }
    for run in &runs {
        watcher.wait(completed("bench-logs", *run)).await?;
    }
    let wall = begun.elapsed();
    let (idle_p99, busy_p99) = (percentile(&idle, 99.0), percentile(&busy, 99.0));
    report.push(line(
        &format!(
            "API p99 (GET run) idle vs while {tasks} tasks write {} MB each ({} samples)",
            args.log_mb,
            busy.len()
        ),
        format!("{busy_p99:.2} ms busy"),
        format!("{idle_p99:.2} ms idle"),
        format!("{:.2}×", busy_p99 / idle_p99),
        "≤ 2×",
    ));
    report.push(line(
        &format!("{tasks} × {} MB captured at once: wall time after all started", args.log_mb),
        format!("{:.1} s", wall.as_secs_f64()),
        "-".into(),
        "-".into(),
        "",
    ));
    drop(watcher);
    drop(server);
    Ok(report)
}
