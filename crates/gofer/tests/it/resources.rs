//! Task resources on the real engine: limits, working dir, user and the volumes an operator offers.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::harness::{Server, api};

/// A host directory tasks can read: a volume source holding `probe`.
fn volume_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe"), "mounted\n").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path().join("probe"), std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

#[test]
fn limits_working_dir_user_and_volumes_reach_the_task_and_going_over_memory_ends_out_of_memory() {
    let volume = volume_dir();
    let source = volume.path().display().to_string();
    let gofer = Server::start_with(&[("GOFER_SCHEDULER__VOLUMES__CACHE__SOURCE", &source)]);
    gofer.register(json!({
        "id": "shaped",
        "tasks": [
            {
                "id": "shape", "image": "busybox:latest",
                "command": ["sh", "-c", "pwd; id -u; id -g; cat /cache/probe; touch /cache/new 2>/dev/null || echo read-only"],
                "cpu_millicores": 500, "memory_bytes": 67_108_864, "working_dir": "/tmp", "user": "1234:2345",
                "volumes": [{ "name": "cache", "path": "/cache", "read_only": true }]
            },
            {
                "id": "hungry", "image": "busybox:latest", "memory_bytes": 16_777_216,
                "command": ["sh", "-c", "echo eating; exec dd if=/dev/zero of=/dev/null bs=64M count=1"]
            }
        ]
    }));
    let run = gofer.start_run("shaped", &[]);
    let finished = gofer.wait_run("shaped", run);
    assert_eq!(finished["status"], "failed");
    let tasks = gofer.tasks("shaped", run);
    assert_eq!(tasks["shape"]["status"], "successful", "{:#}", tasks["shape"]);
    assert_eq!(
        String::from_utf8(gofer.logs("shaped", run, "shape")).unwrap(),
        "/tmp\n1234\n2345\nmounted\nread-only\n"
    );
    assert!(!volume.path().join("new").exists(), "the read-only mount was not written");
    let hungry = &tasks["hungry"];
    assert_eq!(
        (&hungry["status"], &hungry["status_reason"]["reason"]),
        (&json!("failed"), &json!("out_of_memory")),
        "{hungry:#}"
    );
    let description = hungry["status_reason"]["description"].as_str().unwrap();
    assert!(description.contains("memory limit of 16 MiB"), "{description}");
    assert_eq!(hungry["exit_code"], 137, "killed by the engine");
    assert_eq!(finished["status_reason"]["reason"], "out_of_memory", "the run tells why: {finished:#}");
}

#[test]
fn volumes_the_server_does_not_offer_and_bad_limits_are_refused_at_registration() {
    let gofer = Server::start_with(&[
        ("GOFER_SCHEDULER__VOLUMES__CACHE__SOURCE", "/srv/gofer-cache"),
        ("GOFER_SCHEDULER__VOLUMES__LOCKED__SOURCE", "/srv/locked"),
        ("GOFER_SCHEDULER__VOLUMES__LOCKED__NAMESPACES", "[elsewhere]"),
    ]);
    let refused = |task: serde_json::Value| {
        let config = json!({ "id": "vol", "tasks": [task] });
        let (status, body) =
            api(&gofer, "POST", "/api/namespaces/default/pipelines/vol/configs", Some(&json!({ "config": config })));
        assert_eq!(status, 400, "{body}");
        body["message"].as_str().unwrap().to_string()
    };
    let message =
        refused(json!({ "id": "t", "image": "busybox:latest", "volumes": [{ "name": "nope", "path": "/x" }] }));
    assert!(message.contains("volume 'nope'") && message.contains("scheduler.volumes.nope"), "{message}");
    assert!(message.contains("offered: cache, locked"), "{message}");
    let message =
        refused(json!({ "id": "t", "image": "busybox:latest", "volumes": [{ "name": "locked", "path": "/x" }] }));
    assert!(message.contains("namespace 'default' may not use") && message.contains("locked.namespaces"), "{message}");
    let message = refused(json!({ "id": "t", "image": "busybox:latest", "cpu_millicores": 1 }));
    assert!(message.contains("task 't': invalid cpu"), "{message}");
    let message = refused(json!({ "id": "t", "image": "busybox:latest", "memory_bytes": 1024 }));
    assert!(message.contains("task 't': invalid memory"), "{message}");
    let message = refused(json!({ "id": "t", "image": "busybox:latest", "user": "root:wheel:x" }));
    assert!(message.contains("task 't': invalid user"), "{message}");
    let (status, _) = api(&gofer, "GET", "/api/namespaces/default/pipelines/vol", None);
    assert_eq!(status, 404, "nothing was stored");
}
