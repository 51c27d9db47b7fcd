//! Crash safety: kill -9 the server while tasks run and start it again. Nothing is re-run from scratch, nothing
//! is lost, nothing stays running forever.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::{Server, script_pipeline, wait_containers_removed, wait_for};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_container_still_running_after_a_crash_is_reattached_not_restarted() {
    let mut gofer = Server::start();
    gofer.register(script_pipeline("survive", "echo before; sleep 3; echo after"));
    let run = gofer.start_run("survive", &[]);
    let running = gofer.wait_task_state("survive", run, "main", "running");
    let container = running["container_id"].as_str().unwrap().to_string();
    let started_at = docker(&["inspect", "--format", "{{.State.StartedAt}}", &container]);

    gofer.crash();
    gofer.restart();
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.StartedAt}}", &container]),
        started_at,
        "the container kept running through the crash; it was not started again"
    );

    let finished = gofer.wait_run("survive", run);
    assert_eq!(finished["status"], "successful", "{finished:#}\n{}", gofer.log());
    let task = &gofer.tasks("survive", run)["main"];
    assert_eq!(task["container_id"], container, "the same container finished the task");
    assert_eq!(task["attempt"], 1);
    assert_eq!(gofer.logs("survive", run, "main"), b"before\nafter\n", "output from before and after the crash");
    wait_containers_removed(&gofer, "survive", run);
}

#[test]
fn a_container_that_finished_while_the_server_was_down_reports_its_real_exit_and_output() {
    let mut gofer = Server::start();
    gofer.register(json!({
        "id": "meanwhile",
        "tasks": [
            { "id": "work", "image": "busybox:latest", "command": ["sh", "-c", "echo one; sleep 1; printf two; exit 4"] },
            { "id": "after", "image": "busybox:latest", "depends_on": { "work": "Failure" }, "command": ["echo", "handled"] }
        ]
    }));
    let run = gofer.start_run("meanwhile", &[]);
    let running = gofer.wait_task_state("meanwhile", run, "work", "running");
    let container = running["container_id"].as_str().unwrap().to_string();
    gofer.crash();
    wait_for("the container to exit while Gofer is down", Duration::from_secs(30), || {
        (docker(&["inspect", "--format", "{{.State.Status}}", &container]) == "exited").then_some(())
    });

    gofer.restart();
    let finished = gofer.wait_run("meanwhile", run);
    let tasks = gofer.tasks("meanwhile", run);
    assert_eq!(tasks["work"]["status"], "failed", "{finished:#}");
    assert_eq!(tasks["work"]["exit_code"], 4, "the real exit code");
    assert_eq!(gofer.logs("meanwhile", run, "work"), b"one\ntwo", "the full output, also the last partial line");
    assert_eq!(tasks["after"]["status"], "successful", "the DAG went on after the restart");
    assert_eq!(gofer.logs("meanwhile", run, "after"), b"handled\n");
}

#[test]
fn queued_runs_survive_a_crash_and_start_in_order() {
    let mut gofer = Server::start();
    let mut config = script_pipeline("queue", "sleep 1; echo \"run $GOFER_RUN_ID\"");
    config["parallelism"] = json!(1);
    gofer.register(config);
    let first = gofer.start_run("queue", &[]);
    let second = gofer.start_run("queue", &[]);
    let third = gofer.start_run("queue", &[]);
    gofer.wait_task_state("queue", first, "main", "running");
    assert_eq!(gofer.run("queue", second)["state"], "pending");
    gofer.crash();
    gofer.restart();
    for run in [first, second, third] {
        assert_eq!(gofer.wait_run("queue", run)["status"], "successful");
    }
    let runs: Vec<_> = [first, second, third].iter().map(|r| gofer.run("queue", *r)).collect();
    for pair in runs.windows(2) {
        assert!(pair[1]["started"].as_u64() >= pair[0]["ended"].as_u64(), "one at a time, in order: {pair:#?}");
    }
}

#[test]
fn a_container_removed_while_the_server_was_down_fails_its_task_instead_of_hanging() {
    let mut gofer = Server::start();
    gofer.register(script_pipeline("vanish", "sleep 300"));
    let run = gofer.start_run("vanish", &[]);
    let running = gofer.wait_task_state("vanish", run, "main", "running");
    gofer.crash();
    docker(&["rm", "-f", running["container_id"].as_str().unwrap()]);
    gofer.restart();
    let finished = gofer.wait_run("vanish", run);
    assert_eq!(finished["status"], "failed");
    let task = &gofer.tasks("vanish", run)["main"];
    assert_eq!(task["status_reason"]["reason"], "scheduler_error", "{task:#}");
    assert!(task["status_reason"]["description"].as_str().unwrap().contains("disappeared"), "{task:#}");
}
