//! Restarting the Docker engine mid-run: the affected task fails with a scheduler-error reason, the server keeps
//! serving, and later runs succeed. This binary has one test because it restarts the engine every other test uses.

#![allow(clippy::unwrap_used)]

#[path = "it/harness.rs"]
mod harness;

use std::process::Command;
use std::time::Duration;

use harness::{Server, http, repo_root, script_pipeline, wait_for};

fn engine_answers() -> bool {
    Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success())
}

#[test]
fn a_docker_engine_restart_fails_the_running_task_and_gofer_keeps_working() {
    let gofer = Server::start();
    gofer.register(script_pipeline("engine", "echo started; sleep 300"));
    let run = gofer.start_run("engine", &[]);
    gofer.wait_task_state("engine", run, "main", "running");

    // Stop the engine the way an operator would, then bring it back.
    assert!(Command::new("pkill").args(["-TERM", "-x", "dockerd"]).status().unwrap().success());
    wait_for("the engine to stop", Duration::from_secs(90), || {
        let gone = !Command::new("pgrep").args(["-x", "dockerd"]).status().unwrap().success();
        (gone && !engine_answers()).then_some(())
    });
    let finished = gofer.wait_run("engine", run);
    let restarted = Command::new("bash").arg(repo_root().join("scripts/ensure-docker.sh")).status().unwrap();
    assert!(restarted.success());

    let task = &gofer.tasks("engine", run)["main"];
    assert_eq!(finished["status"], "failed", "{finished:#}");
    assert_eq!(task["status"], "failed");
    assert_eq!(task["status_reason"]["reason"], "scheduler_error", "{task:#}");
    assert_eq!(http("GET", &format!("{}/api/health", gofer.url), None).unwrap().0, 200);
    assert_eq!(gofer.logs("engine", run, "main"), b"started\n");
    // The failed task's container is removed once the engine is back, without waiting for Gofer's next start.
    wait_for("the failed task's container to be removed", Duration::from_secs(120), || {
        harness::containers_of_run(&gofer, "engine", run).is_empty().then_some(())
    });

    gofer.register(script_pipeline("after", "echo fine"));
    let later = gofer.start_run("after", &[]);
    assert_eq!(gofer.wait_run("after", later)["status"], "successful", "the engine is used again after its restart");
    assert_eq!(gofer.logs("after", later, "main"), b"fine\n");
}
