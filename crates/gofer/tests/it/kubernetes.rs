//! The whole server on `scheduler.kind = "kubernetes"`, against the in-process fake of the Kubernetes API whose
//! pods run on the real Docker engine (`gofer_scheduler_kubernetes::fake`): a DAG with limits, an OOM kill, a user
//! by name, logs, and a crash of the server while a pod runs.

use std::collections::BTreeMap;
use std::time::Duration;

use gofer_scheduler_kubernetes::fake::FakeCluster;
use serde_json::json;

use crate::harness::{Server, a_crash_while_a_task_runs_is_survived, wait_for};

/// A fake cluster served by its own runtime, alive as long as the value.
struct Cluster {
    fake: FakeCluster,
    _runtime: tokio::runtime::Runtime,
}

fn cluster() -> Cluster {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fake = runtime.block_on(FakeCluster::start(BTreeMap::new()));
    Cluster { fake, _runtime: runtime }
}

fn server_on(cluster: &Cluster) -> Server {
    Server::start_with(&[
        ("GOFER_SCHEDULER__KIND", "kubernetes"),
        ("GOFER_SCHEDULER__KUBERNETES__API_URL", &cluster.fake.url),
        ("GOFER_SCHEDULER__KUBERNETES__NAMESPACE", "ci"),
        ("GOFER_SERVER__TASK_API_URL", "http://gofer.ci.svc:8080"),
    ])
}

#[test]
fn a_dag_runs_as_pods_with_its_limits_logs_and_reasons_and_leaves_no_pod_behind() {
    let cluster = cluster();
    let gofer = server_on(&cluster);
    let status = gofer.cli_ok(&["service", "status"]);
    assert!(!status.is_empty());
    gofer.register(json!({
        "id": "kube",
        "tasks": [
            { "id": "first", "image": "busybox:latest", "working_dir": "/tmp", "user": "1234:2345",
              "cpu_millicores": 250, "memory_bytes": 67_108_864,
              "command": ["sh", "-c", "pwd; id -u; echo \"$GOFER_TASK_ID at $GOFER_API_BASE_URL\"; printf '$(GOFER_TASK_ID) $$ no newline'"] },
            { "id": "second", "image": "busybox:latest", "depends_on": { "first": "Success" },
              "command": ["sh", "-c", "echo second; exit 3"] },
            { "id": "hungry", "image": "busybox:latest", "memory_bytes": 16_777_216,
              "command": ["sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1"] },
            { "id": "named", "image": "busybox:latest", "user": "builder", "command": ["true"] },
            { "id": "nocommand", "image": "busybox:latest", "command": ["no-such-command"] }
        ]
    }));
    let run = gofer.start_run("kube", &[]);
    let finished = gofer.wait_run("kube", run);
    assert_eq!(finished["status"], "failed");
    let tasks = gofer.tasks("kube", run);
    assert_eq!(tasks["first"]["status"], "successful", "{:#}", tasks["first"]);
    assert_eq!(
        gofer.logs("kube", run, "first"),
        b"/tmp\n1234\nfirst at http://gofer.ci.svc:8080\n$(GOFER_TASK_ID) $$ no newline".to_vec(),
        "commands reach the container as written: the cluster expands nothing"
    );
    assert_eq!((&tasks["second"]["status"], &tasks["second"]["exit_code"]), (&json!("failed"), &json!(3)));
    assert_eq!(tasks["second"]["status_reason"]["reason"], "abnormal_exit");
    assert_eq!(gofer.logs("kube", run, "second"), b"second\n".to_vec());
    assert_eq!(tasks["hungry"]["status_reason"]["reason"], "out_of_memory", "{:#}", tasks["hungry"]);
    assert_eq!(tasks["named"]["status_reason"]["reason"], "failed_precondition", "{:#}", tasks["named"]);
    let words = tasks["named"]["status_reason"]["description"].as_str().unwrap();
    assert!(words.contains("give a uid or uid:gid"), "{words}");
    let words = tasks["nocommand"]["status_reason"]["description"].as_str().unwrap();
    assert!(words.starts_with("the container exited with code 128: StartError: "), "the kubelet's words: {words}");
    assert!(
        tasks["first"]["image_digest"].as_str().unwrap_or_default().starts_with("sha256:"),
        "the digest from the pod's status: {:#}",
        tasks["first"]
    );
    wait_for("the run's pods to be deleted", Duration::from_secs(30), || {
        cluster.fake.pod_names().is_empty().then_some(())
    });
}

#[test]
fn a_server_that_crashes_while_a_pod_runs_re_attaches_to_it() {
    let cluster = cluster();
    let mut gofer = server_on(&cluster);
    a_crash_while_a_task_runs_is_survived(&mut gofer, || cluster.fake.pod_names().len(), 1);
    assert_eq!(cluster.fake.pods_created(), 1, "the same pod was re-attached, no other made");
    wait_for("the pod to be deleted", Duration::from_secs(30), || cluster.fake.pod_names().is_empty().then_some(()));
}

#[test]
fn cancelling_a_task_deletes_its_pod_and_the_dag_goes_on() {
    let cluster = cluster();
    let gofer = server_on(&cluster);
    gofer.register(json!({
        "id": "partial",
        "tasks": [
            { "id": "slow", "image": "busybox:latest", "command": ["sleep", "300"] },
            { "id": "cleanup", "image": "busybox:latest", "depends_on": { "slow": "Any" }, "command": ["echo", "cleaned"] }
        ]
    }));
    let run = gofer.start_run("partial", &[]);
    gofer.wait_task_state("partial", run, "slow", "running");
    gofer.cli_ok(&["task", "cancel", "partial", &run.to_string(), "slow"]);
    gofer.wait_run("partial", run);
    let tasks = gofer.tasks("partial", run);
    assert_eq!(tasks["slow"]["status"], "cancelled", "{:#}", tasks["slow"]);
    assert_eq!(tasks["slow"]["status_reason"]["reason"], "user_cancelled");
    assert_eq!(tasks["cleanup"]["status"], "successful");
    assert_eq!(gofer.logs("partial", run, "cleanup"), b"cleaned\n".to_vec());
    wait_for("the run's pods to be deleted", Duration::from_secs(30), || {
        cluster.fake.pod_names().is_empty().then_some(())
    });
}
