//! Runs that are bounded: queueing within limits, maintenance, cancellation, timeouts, retries, events, log
//! retention and big outputs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, api, containers_of_run, script_pipeline, wait_containers_removed, wait_for};

#[test]
fn runs_queue_within_the_pipelines_parallelism_and_start_in_order() {
    let gofer = Server::start();
    let mut config = script_pipeline("serial", "sleep 1");
    config["parallelism"] = json!(1);
    gofer.register(config);
    let began = Instant::now();
    let runs: Vec<u64> = (0..3).map(|_| gofer.start_run("serial", &[])).collect();
    assert!(began.elapsed() < Duration::from_secs(3), "starting runs answers at once, it never waits for a slot");
    assert_eq!(gofer.run("serial", runs[2])["state"], "pending");
    let done: Vec<Value> = runs.iter().map(|r| gofer.wait_run("serial", *r)).collect();
    for pair in done.windows(2) {
        assert!(pair[1]["started"].as_u64() >= pair[0]["ended"].as_u64(), "never two at once: {pair:#?}");
    }
}

#[test]
fn the_server_wide_limit_holds_across_pipelines() {
    let gofer = Server::start_with(&[("GOFER_RUNS__GLOBAL_LIMIT", "1")]);
    gofer.register(script_pipeline("left", "sleep 1"));
    gofer.register(script_pipeline("right", "sleep 1"));
    let left = gofer.start_run("left", &[]);
    let right = gofer.start_run("right", &[]);
    let (left, right) = (gofer.wait_run("left", left), gofer.wait_run("right", right));
    assert!(right["started"].as_u64() >= left["ended"].as_u64(), "{left:#} {right:#}");
}

#[test]
fn maintenance_mode_refuses_new_runs_until_it_ends() {
    let gofer = Server::start();
    gofer.register(script_pipeline("maint", "true"));
    gofer.cli_ok(&["system", "maintenance", "on"]);
    assert_eq!(gofer.cli_json(&["system", "get"])["maintenance"], true);
    let (status, body) = api(&gofer, "POST", "/api/namespaces/default/pipelines/maint/runs", Some(&json!({})));
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("maintenance"), "{body}");
    gofer.cli_ok(&["system", "maintenance", "off"]);
    let run = gofer.start_run("maint", &[]);
    assert_eq!(gofer.wait_run("maint", run)["status"], "successful");
}

#[test]
fn a_queued_run_can_be_cancelled_before_it_starts() {
    let gofer = Server::start();
    let mut config = script_pipeline("waiting", "sleep 2");
    config["parallelism"] = json!(1);
    gofer.register(config);
    let first = gofer.start_run("waiting", &[]);
    let second = gofer.start_run("waiting", &[]);
    gofer.cli_ok(&["run", "cancel", "waiting", &second.to_string()]);
    let cancelled = gofer.wait_run("waiting", second);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["started"], 0, "it never started");
    assert!(gofer.tasks("waiting", second).is_empty());
    assert_eq!(gofer.wait_run("waiting", first)["status"], "successful");
}

#[test]
fn cancelling_one_task_stops_it_and_the_dag_goes_on() {
    let gofer = Server::start();
    gofer.register(json!({
        "id": "partial",
        "tasks": [
            { "id": "slow", "image": "busybox:latest", "command": ["sleep", "300"] },
            { "id": "cleanup", "image": "busybox:latest", "depends_on": { "slow": "Any" }, "command": ["echo", "cleaned"] },
            { "id": "deploy", "image": "busybox:latest", "depends_on": { "slow": "Success" }, "command": ["true"] }
        ]
    }));
    let run = gofer.start_run("partial", &[]);
    gofer.wait_task_state("partial", run, "slow", "running");
    gofer.cli_ok(&["task", "cancel", "partial", &run.to_string(), "slow"]);
    let finished = gofer.wait_run("partial", run);
    let tasks = gofer.tasks("partial", run);
    assert_eq!(tasks["slow"]["status"], "cancelled");
    assert_eq!(tasks["slow"]["status_reason"]["reason"], "user_cancelled");
    assert_eq!(tasks["cleanup"]["status"], "successful", "an Any child still runs");
    assert_eq!(tasks["deploy"]["status"], "skipped");
    assert_eq!(finished["status"], "cancelled");
    let again = gofer.cli(&["task", "cancel", "partial", &run.to_string(), "cleanup"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"), "{again:?}");
}

#[test]
fn task_and_run_timeouts_stop_containers_with_reason_timeout() {
    let gofer = Server::start_with(&[("GOFER_RUNS__STOP_GRACE_SECONDS", "1")]);
    gofer.register(json!({
        "id": "slowtask",
        "tasks": [
            { "id": "hang", "image": "busybox:latest", "timeout_seconds": 1, "command": ["sleep", "300"] },
            { "id": "alert", "image": "busybox:latest", "depends_on": { "hang": "Failure" }, "command": ["true"] }
        ]
    }));
    let began = Instant::now();
    let run = gofer.start_run("slowtask", &[]);
    let finished = gofer.wait_run("slowtask", run);
    assert!(began.elapsed() < Duration::from_secs(30));
    let tasks = gofer.tasks("slowtask", run);
    assert_eq!(tasks["hang"]["status"], "failed");
    assert_eq!(tasks["hang"]["status_reason"]["reason"], "timeout");
    assert_eq!(tasks["alert"]["status"], "successful", "a timeout is a failure: Failure edges fire");
    assert_eq!(finished["status_reason"]["reason"], "timeout");

    let mut config = script_pipeline("slowrun", "sleep 300");
    config["timeout_seconds"] = json!(1);
    gofer.register(config);
    let run = gofer.start_run("slowrun", &[]);
    let finished = gofer.wait_run("slowrun", run);
    assert_eq!(finished["status"], "cancelled");
    assert_eq!(finished["status_reason"]["reason"], "timeout", "{finished:#}");
    assert_eq!(gofer.tasks("slowrun", run)["main"]["status_reason"]["reason"], "timeout");
    wait_containers_removed(&gofer, "slowrun", run);
}

#[test]
fn timeouts_beyond_the_servers_maximum_are_refused_naming_the_task() {
    let gofer = Server::start_with(&[("GOFER_RUNS__MAX_TIMEOUT_SECONDS", "60")]);
    let mut config = script_pipeline("absurd", "true");
    config["tasks"][0]["timeout_seconds"] = json!(999_999);
    let (status, body) =
        api(&gofer, "POST", "/api/namespaces/default/pipelines/absurd/configs", Some(&json!({ "config": config })));
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("task 'main'") && message.contains("maximum of 60s"), "{message}");
}

#[test]
fn failed_attempts_are_retried_and_every_attempt_is_recorded() {
    let gofer = Server::start();
    let mut config =
        script_pipeline("flaky", "echo \"attempt $GOFER_TASK_ATTEMPT\"; [ \"$GOFER_TASK_ATTEMPT\" -ge 3 ]");
    config["tasks"][0]["retries"] = json!(4);
    gofer.register(config);
    let run = gofer.start_run("flaky", &[]);
    assert_eq!(gofer.wait_run("flaky", run)["status"], "successful");
    let task = &gofer.tasks("flaky", run)["main"];
    assert_eq!(task["attempt"], 3);
    let attempts = task["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["attempt"], i + 1);
        assert_eq!(attempt["status"], "failed");
        assert_eq!(attempt["exit_code"], 1);
    }
    let id = run.to_string();
    assert_eq!(gofer.logs("flaky", run, "main"), b"attempt 3\n");
    assert_eq!(gofer.cli_ok(&["task", "logs", "flaky", &id, "main", "--attempt", "1"]), "attempt 1\n");
    let out = gofer.cli(&["task", "logs", "flaky", &id, "main", "--attempt", "9"]);
    assert!(!out.status.success());

    let mut always = script_pipeline("broken", "exit 2");
    always["tasks"][0]["retries"] = json!(1);
    gofer.register(always);
    let run = gofer.start_run("broken", &[]);
    assert_eq!(gofer.wait_run("broken", run)["status"], "failed");
    assert_eq!(gofer.tasks("broken", run)["main"]["attempt"], 2, "retries stop at the limit");
}

#[test]
fn every_state_change_is_an_event_and_the_timeline_shows_the_run() {
    let gofer = Server::start();
    gofer.register(json!({
        "id": "evented",
        "tasks": [
            { "id": "a", "image": "busybox:latest", "command": ["true"] },
            { "id": "b", "image": "busybox:latest", "depends_on": { "a": "Success" }, "command": ["false"] }
        ]
    }));

    // A live follower, connected before the run starts.
    let host = gofer.url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(stream, "GET /api/events?follow=true&namespace=default&pipeline=evented HTTP/1.1\r\nHost: {host}\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);

    let run = gofer.start_run("evented", &[]);
    gofer.wait_run("evented", run);

    let mut kinds = Vec::new();
    let mut line = String::new();
    while !kinds.contains(&"run_completed".to_string()) {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the live stream ended early");
        // Chunk-size lines of the chunked encoding are skipped; every event line is a JSON object.
        if let Ok(event) = serde_json::from_str::<Value>(line.trim())
            && let Some(kind) = event["kind"]["type"].as_str()
        {
            kinds.push(kind.to_string());
        }
    }
    for expected in ["run_queued", "run_started", "task_changed", "run_completed"] {
        assert!(kinds.contains(&expected.to_string()), "missing {expected} in {kinds:?}");
    }

    let timeline = gofer.cli_ok(&["run", "get", "evented", &run.to_string(), "--timeline"]);
    let order = ["queued", "started", "task a", "complete: successful, exit 0", "task b", "complete: failed, exit 1"];
    let mut at = 0;
    for needle in order {
        let found = timeline[at..].find(needle).unwrap_or_else(|| panic!("'{needle}' out of order in:\n{timeline}"));
        at += found;
    }
    assert!(timeline.contains("complete: failed (abnormal_exit"), "{timeline}");

    let history = gofer.cli_ok(&["event", "list"]);
    assert!(history.lines().count() >= kinds.len(), "stored history: {history}");
    let all: Vec<&str> = history.lines().collect();
    let tail = gofer.cli_ok(&["event", "list", "--tail", "2"]);
    assert_eq!(tail.lines().collect::<Vec<_>>(), all[all.len() - 2..], "--tail 2 is the two newest events");
    assert_eq!(gofer.cli_ok(&["event", "list", "--tail", "0"]), "", "--tail 0 starts at the newest");
}

#[test]
fn log_retention_keeps_the_last_runs_only() {
    let gofer = Server::start_with(&[("GOFER_RUNS__LOG_RETENTION_RUNS", "2")]);
    gofer.register(script_pipeline("retained", "echo run $GOFER_RUN_ID"));
    for _ in 0..3 {
        let run = gofer.start_run("retained", &[]);
        gofer.wait_run("retained", run);
    }
    let out = gofer.cli(&["task", "logs", "retained", "1", "main"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log retention"), "{out:?}");
    assert!(gofer.tasks("retained", 1)["main"]["logs_expired"].as_bool().unwrap());
    assert!(!gofer.data_path().join("logs/default/retained/1").exists());
    assert_eq!(gofer.logs("retained", 3, "main"), b"run 3\n");
    assert_eq!(gofer.logs("retained", 2, "main"), b"run 2\n");
}

#[test]
fn a_hundred_megabytes_of_output_is_stored_exactly_with_bounded_server_memory() {
    let gofer = Server::start();
    // 100 MiB of a repeating, non-UTF-8 pattern, as fast as the container can write it.
    gofer.register(script_pipeline("flood", "yes \"$(printf 'gofer\\377\\376')\" | head -c 104857600"));
    let run = gofer.start_run("flood", &[]);
    assert_eq!(gofer.wait_run("flood", run)["status"], "successful");
    let path = gofer.data_path().join(format!("logs/default/flood/{run}/main.log"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 104_857_600);
    assert!(bytes.chunks(8).take(1000).all(|c| c == b"gofer\xff\xfe\n"), "content kept byte for byte");
    let status = std::fs::read_to_string(format!("/proc/{}/status", gofer.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(peak_kb < 100 * 1024, "server peak memory {peak_kb} kB while storing 100 MiB of output");
}

#[test]
fn finished_containers_can_be_kept_for_a_while_for_debugging() {
    let gofer = Server::start_with(&[("GOFER_RUNS__KEEP_CONTAINERS_SECONDS", "2")]);
    gofer.register(script_pipeline("kept", "true"));
    let run = gofer.start_run("kept", &[]);
    gofer.wait_run("kept", run);
    assert_eq!(containers_of_run(&gofer, "kept", run).len(), 1, "kept right after the run");
    wait_for("the kept container to be removed", Duration::from_secs(20), || {
        containers_of_run(&gofer, "kept", run).is_empty().then_some(())
    });
}

#[test]
fn run_debug_prints_one_report_with_the_failed_tasks_last_log_lines() {
    let gofer = crate::harness::Server::start();
    let script = "for i in $(seq 1 30); do echo line-$i; done; echo 'the real cause'; exit 7";
    gofer.register(crate::harness::script_pipeline("broken", script));
    let run = gofer.start_run("broken", &["-v", "SECRETISH=do-not-print"]);
    gofer.wait_run("broken", run);
    let report = gofer.cli_ok(&["run", "debug", "broken", &run.to_string(), "--lines", "5"]);
    for expected in [
        "# Gofer run report: pipeline 'broken', run 1",
        "version 0.",
        "scheduler: docker ",
        "main: complete failed, attempt 1, exit 7, image busybox:latest (digest sha256:",
        "abnormal_exit",
        "## Timeline",
        "## Last 5 log lines of failed task 'main'",
        "line-30\nthe real cause",
        "run variables (names only): SECRETISH (run_options)",
    ] {
        assert!(report.contains(expected), "missing {expected:?} in:\n{report}");
    }
    assert!(!report.contains("line-25"), "only the last 5 lines:\n{report}");
    assert!(!report.contains("do-not-print"), "variable values stay out of the report:\n{report}");
    let json = gofer.cli_json(&["run", "debug", "broken", &run.to_string()]);
    assert_eq!(json["run"]["status"], "failed");
    assert!(json["failed_task_logs"]["main"].as_str().unwrap().ends_with("the real cause"), "{json}");
    assert!(!json["events"].as_array().unwrap().is_empty());
}

#[test]
fn exec_and_attach_run_commands_in_a_running_task_with_their_output_and_exit_code() {
    let gofer = crate::harness::Server::start();
    gofer.register(crate::harness::script_pipeline("long", "echo inside > /tmp/marker; sleep 120"));
    let run = gofer.start_run("long", &[]);
    let run_id = run.to_string();
    gofer.wait_task_state("long", run, "main", "running");
    crate::harness::wait_for("the task's script to begin", Duration::from_secs(30), || {
        let out = gofer.cli(&["task", "exec", "long", &run_id, "main", "--", "cat", "/tmp/marker"]);
        out.status.success().then_some(())
    });
    let out = gofer.cli(&["task", "exec", "long", &run_id, "main", "--", "sh", "-c", "cat /tmp/marker; exit 3"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inside\n");
    assert_eq!(out.status.code(), Some(3), "the CLI exits with the command's exit code");
    let json = gofer.cli_ok(&["--output", "json", "task", "exec", "long", &run_id, "main", "--", "echo", "hi"]);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!((json["exit_code"].as_i64(), json["output"].as_str()), (Some(0), Some("hi\n")));
    let missing = gofer.cli(&["task", "exec", "long", &run_id, "main", "--", "no-such-program"]);
    assert_ne!(missing.status.code(), Some(0), "a missing program fails");

    // An interactive session (no terminal here, so no TTY): input in, output and exit code out.
    let attach = ["task", "attach", "long", &run_id, "main", "--", "sh", "-c", "read line; echo got-$line; exit 4"];
    let out = gofer.cli_with_stdin(&attach, b"hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got-hello\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4));
    let out = gofer.cli_with_stdin(&["task", "attach", "long", &run_id, "main"], b"echo $((6 * 7))\nexit\n");
    assert_eq!(
        (String::from_utf8_lossy(&out.stdout).as_ref(), out.status.code()),
        ("42\n", Some(0)),
        "a shell by default"
    );
    // Under a terminal (util-linux `script` gives the CLI a pseudo-terminal), the command gets one too.
    let line = format!("{} task attach long {run_id} main -- sh -c 'tty; stty size; exit 5'", crate::harness::BIN);
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("GOFER_API_URL", &gofer.url)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("/dev/pts/"), "the command has a terminal: {shown:?}");
    assert_eq!(out.status.code(), Some(5), "{shown:?}");
    let (status, body) = crate::harness::api(
        &gofer,
        "POST",
        &format!("/api/namespaces/default/pipelines/long/runs/{run}/tasks/main/attach"),
        Some(&serde_json::json!({ "command": ["sh"] })),
    );
    assert_eq!(status, 400, "attach needs the upgrade: {body}");

    let timeline = gofer.cli_ok(&["run", "get", "long", &run_id, "--timeline"]);
    assert!(timeline.contains("exec by user anonymous: echo hi"), "recorded as an event:\n{timeline}");
    assert!(timeline.contains("exec by user anonymous: sh -c read line"), "attach too:\n{timeline}");

    gofer.cli_ok(&["run", "cancel", "long", &run_id]);
    gofer.wait_run("long", run);
    let (status, body) = crate::harness::api(
        &gofer,
        "POST",
        &format!("/api/namespaces/default/pipelines/long/runs/{run}/tasks/main/exec"),
        Some(&serde_json::json!({ "command": ["true"] })),
    );
    assert_eq!(status, 409, "only running tasks: {body}");
    let (status, body) = crate::harness::api(
        &gofer,
        "POST",
        &format!("/api/namespaces/default/pipelines/long/runs/{run}/tasks/main/exec"),
        Some(&serde_json::json!({ "command": [] })),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_failed_tasks_filesystem_is_kept_in_a_debug_container_for_a_while() {
    let gofer = Server::start();
    let mut config = script_pipeline("keeps", "echo evidence > /tmp/state; exit 3");
    config["keep_failed_seconds"] = json!(6);
    config["tasks"][0]["variables"] = json!({ "TOKEN": "pipeline_secret{{K}}" });
    gofer.register(config);
    gofer.cli_ok(&["secret", "pipeline", "put", "keeps", "K", "s3cr3t-value"]);
    let run = gofer.start_run("keeps", &[]);
    assert_eq!(gofer.wait_run("keeps", run)["status"], "failed");
    let task = gofer.tasks("keeps", run).remove("main").unwrap();
    let reason = task["status_reason"]["description"].as_str().unwrap().to_string();
    assert!(reason.contains("its filesystem is kept 6s in debug container"), "{reason}");
    let run_id = run.to_string();
    let out = gofer.cli(&["task", "exec", "keeps", &run_id, "main", "--", "cat", "/tmp/state"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "evidence\n", "{}", String::from_utf8_lossy(&out.stderr));
    let env = gofer.cli_ok(&["task", "exec", "keeps", &run_id, "main", "--", "sh", "-c", "echo ${GOFER_RUN_ID:-none}"]);
    assert_eq!(env, "none\n", "the variables Gofer gave the task are emptied in the debug container");
    let installation = std::fs::read_to_string(gofer.data_path().join("installation_id")).unwrap();
    let image = format!("gofer-debug-{}-default-keeps-{run}-main:1", installation.trim());
    let inspected = std::process::Command::new("docker").args(["image", "inspect", &image]).output().unwrap();
    let inspected = String::from_utf8_lossy(&inspected.stdout);
    assert!(inspected.contains("\"TOKEN=\""), "the image keeps the variable, emptied: {inspected}");
    let config: Value = serde_json::from_str(&inspected).unwrap();
    let env = config[0]["Config"]["Env"].to_string();
    assert!(!env.contains("s3cr3t-value"), "no secret in the debug image's environment: {env}");
    wait_for("the debug container to go", Duration::from_secs(60), || {
        containers_of_run(&gofer, "keeps", run).is_empty().then_some(())
    });
    let images = std::process::Command::new("docker")
        .args(["image", "ls", "-q", "--filter"])
        .arg(format!("reference=gofer-debug-{}*", installation.trim()))
        .output()
        .unwrap();
    assert!(images.stdout.is_empty(), "its image went with it");
    let out = gofer.cli(&["task", "exec", "keeps", &run_id, "main", "--", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("keeps no debug container"), "{out:?}");

    let mut config = script_pipeline("keeps", "exit 1");
    config["keep_failed_seconds"] = json!(0);
    let (status, body) =
        api(&gofer, "POST", "/api/namespaces/default/pipelines/keeps/configs", Some(&json!({ "config": config })));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("keep_failed_seconds"), "{body}");
}
