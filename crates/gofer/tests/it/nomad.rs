//! The whole server on `scheduler.kind = "nomad"`, against the in-process fake of Nomad's HTTP API whose
//! allocations run on the real Docker engine (`gofer_scheduler_nomad::fake`): a DAG with limits, an OOM kill and
//! logs, and a crash of the server while a task runs.

use std::collections::BTreeMap;
use std::time::Duration;

use gofer_scheduler_nomad::fake::FakeNomad;
use serde_json::json;

use crate::harness::{Server, a_crash_while_a_task_runs_is_survived, wait_for};

/// A fake Nomad served by its own runtime, alive as long as the value.
struct Nomad {
    fake: FakeNomad,
    _runtime: tokio::runtime::Runtime,
}

fn nomad() -> Nomad {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fake = runtime.block_on(FakeNomad::start(BTreeMap::new()));
    Nomad { fake, _runtime: runtime }
}

fn server_on(nomad: &Nomad) -> Server {
    Server::start_with(&[
        ("GOFER_SCHEDULER__KIND", "nomad"),
        ("GOFER_SCHEDULER__NOMAD__ADDRESS", &nomad.fake.url),
        ("GOFER_SERVER__TASK_API_URL", "http://gofer.service.consul:8080"),
    ])
}

#[test]
fn a_dag_runs_as_dispatched_jobs_with_its_limits_logs_and_reasons_and_leaves_no_job_behind() {
    let nomad = nomad();
    let gofer = server_on(&nomad);
    gofer.register(json!({
        "id": "nomadic",
        "tasks": [
            { "id": "first", "image": "busybox:latest", "working_dir": "/tmp", "user": "1234:2345",
              "cpu_millicores": 250, "memory_bytes": 67_108_864,
              "command": ["sh", "-c", "pwd; id -u; echo \"$GOFER_TASK_ID at $GOFER_API_BASE_URL\"; printf 'no newline' >&2"] },
            { "id": "second", "image": "busybox:latest", "depends_on": { "first": "Success" },
              "command": ["sh", "-c", "echo second; exit 3"] },
            { "id": "hungry", "image": "busybox:latest", "memory_bytes": 16_777_216,
              "command": ["sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1"] },
            { "id": "missing", "image": "gofer-test/no-such-image:never", "command": ["true"] }
        ]
    }));
    let run = gofer.start_run("nomadic", &[]);
    let finished = gofer.wait_run("nomadic", run);
    assert_eq!(finished["status"], "failed");
    let tasks = gofer.tasks("nomadic", run);
    assert_eq!(tasks["first"]["status"], "successful", "{:#}", tasks["first"]);
    // Nomad keeps stdout and stderr apart: they are merged as they come, so the stderr line may come anywhere.
    let logged = gofer.logs("nomadic", run, "first");
    let marker = b"no newline";
    let at = logged.windows(marker.len()).position(|w| w == marker).expect("stderr in the log");
    let stdout = [&logged[..at], &logged[at + marker.len()..]].concat();
    assert_eq!(stdout, b"/tmp\n1234\nfirst at http://gofer.service.consul:8080\n".to_vec());
    assert_eq!((&tasks["second"]["status"], &tasks["second"]["exit_code"]), (&json!("failed"), &json!(3)));
    assert_eq!(tasks["second"]["status_reason"]["reason"], "abnormal_exit");
    assert_eq!(tasks["hungry"]["status_reason"]["reason"], "out_of_memory", "{:#}", tasks["hungry"]);
    assert_eq!(tasks["missing"]["status_reason"]["reason"], "failed_precondition", "{:#}", tasks["missing"]);
    let words = tasks["missing"]["status_reason"]["description"].as_str().unwrap();
    assert!(words.contains("gofer-test/no-such-image:never") && words.contains("Failed to pull"), "{words}");
    wait_for("the run's jobs to be purged", Duration::from_secs(30), || nomad.fake.job_ids().is_empty().then_some(()));
}

#[test]
fn a_server_that_crashes_while_a_task_runs_re_attaches_to_its_allocation() {
    let nomad = nomad();
    let mut gofer = server_on(&nomad);
    // The registered job and its one dispatched run.
    a_crash_while_a_task_runs_is_survived(&mut gofer, || nomad.fake.job_ids().len(), 2);
    wait_for("the jobs to be purged", Duration::from_secs(30), || nomad.fake.job_ids().is_empty().then_some(()));
}
