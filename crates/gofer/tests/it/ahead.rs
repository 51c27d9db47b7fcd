//! Work done ahead of a task's start, on the real engine: the tasks of a run that have parents share the network the
//! engine made for the run, and a container made ahead for a task that does not run is removed without starting.

use std::process::Command;

use serde_json::json;

use crate::harness::{Server, containers_of_run, wait_containers_removed};

/// What the engine did to the containers of `task` since `since` (epoch seconds): `create`, `start`, `destroy`…
fn engine_actions(gofer: &Server, task: &str, since: u64) -> Vec<String> {
    let installation = std::fs::read_to_string(gofer.data_path().join("installation_id")).unwrap();
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let out = Command::new("docker")
        .args(["events", "--since", &since.to_string(), "--until", &until.to_string()])
        .args(["--filter", "type=container", "--filter", &format!("label=dev.gofer.task={task}")])
        .args(["--filter", &format!("label=dev.gofer.installation={}", installation.trim())])
        .args(["--format", "{{.Action}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn tasks_with_parents_reach_each_other_on_localhost_and_the_shared_network_goes_with_the_run() {
    let gofer = Server::start();
    gofer.register(json!({
        "id": "pod",
        "tasks": [
            { "id": "setup", "image": "busybox:latest", "command": ["readlink", "/proc/self/ns/net"] },
            {
                "id": "server", "image": "busybox:latest", "depends_on": { "setup": "Success" },
                "command": ["sh", "-c", "readlink /proc/self/ns/net; echo served | nc -l -p 9123"]
            },
            {
                "id": "client", "image": "busybox:latest", "depends_on": { "setup": "Success" },
                "command": ["sh", "-c", "readlink /proc/self/ns/net; until nc 127.0.0.1 9123; do sleep 0.1; done"]
            }
        ]
    }));
    let run = gofer.start_run("pod", &[]);
    assert_eq!(gofer.wait_run("pod", run)["status"], "successful", "{:#?}", gofer.tasks("pod", run));
    let log = |task: &str| String::from_utf8(gofer.logs("pod", run, task)).unwrap();
    let (server, client) = (log("server"), log("client"));
    let (server_ns, client_ns) = (server.lines().next().unwrap(), client.lines().next().unwrap());
    assert!(server_ns.starts_with("net:["), "{server}");
    assert_eq!(server_ns, client_ns, "one network namespace for the tasks with parents");
    assert_eq!(client.lines().last(), Some("served"), "reached on localhost (once the server listened): {client}");
    // The network's holder goes with the run, as the task containers do.
    wait_containers_removed(&gofer, "pod", run);
}

#[test]
fn a_container_made_ahead_for_a_task_that_is_skipped_is_removed_without_starting() {
    let gofer = Server::start();
    gofer.register(json!({
        "id": "ahead",
        "tasks": [
            { "id": "build", "image": "busybox:latest", "command": ["sh", "-c", "sleep 1; exit 2"] },
            {
                "id": "deploy", "image": "busybox:latest", "depends_on": { "build": "Success" },
                "command": ["echo", "deployed"]
            }
        ]
    }));
    let since = now_secs();
    let run = gofer.start_run("ahead", &[]);
    // While `build` runs, `deploy`'s container is there already, never started.
    crate::harness::wait_for("deploy's container made ahead", std::time::Duration::from_secs(20), || {
        engine_actions(&gofer, "deploy", since).contains(&"create".to_string()).then_some(())
    });
    let finished = gofer.wait_run("ahead", run);
    assert_eq!(finished["status"], "failed");
    let tasks = gofer.tasks("ahead", run);
    assert_eq!(tasks["deploy"]["status"], "skipped", "{:#}", tasks["deploy"]);
    wait_containers_removed(&gofer, "ahead", run);
    assert!(containers_of_run(&gofer, "ahead", run).is_empty());
    let actions = engine_actions(&gofer, "deploy", since);
    assert_eq!(actions, ["create", "destroy"], "made ahead, never started, removed");
    assert!(engine_actions(&gofer, "build", since).contains(&"start".to_string()));
}
