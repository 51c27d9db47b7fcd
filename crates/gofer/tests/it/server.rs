//! The server process: health, clean shutdown, clear startup errors, state kept across restarts.

use std::process::Command;
use std::time::Duration;

use crate::harness::{BIN, Server, http, script_pipeline, wait_for};

#[test]
fn sigterm_shuts_the_server_down_cleanly_and_state_survives_a_restart() {
    let mut gofer = Server::start();
    let (status, body) = http("GET", &format!("{}/api/health", gofer.url), None).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"dev_mode\":true"), "{body}");
    assert!(gofer.log().contains("DEVELOPMENT MODE"), "dev mode is announced: {}", gofer.log());

    gofer.register(script_pipeline("kept", "echo kept"));
    let run = gofer.start_run("kept", &[]);
    gofer.wait_run("kept", run);

    let killed = Command::new("kill").args(["-TERM", &gofer.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    let exit = wait_for("the server to exit", Duration::from_secs(15), || gofer.child.try_wait().unwrap());
    assert!(exit.success(), "exit status {exit}: {}", gofer.log());

    gofer.restart();
    let run = gofer.run("kept", 1);
    assert_eq!(run["status"], "successful", "{run:#}");
    assert_eq!(gofer.logs("kept", 1, "main"), b"kept\n");
}

#[test]
fn an_unreachable_docker_engine_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["service", "start", "--bind-address", "127.0.0.1:0", "--external-bind-address", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the container engine at unix:///nonexistent/docker.sock"), "{stderr}");
    assert!(stderr.contains("DOCKER_HOST"), "says how to fix it: {stderr}");
}

#[test]
fn an_address_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["service", "start", "--bind-address", &taken.local_addr().unwrap().to_string()])
        .args(["--external-bind-address", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bind-address"), "{out:?}");
}

#[test]
fn service_config_prints_the_effective_configuration() {
    let out = Command::new(BIN)
        .args(["service", "config", "--bind-address", "0.0.0.0:9999"])
        .env("GOFER_RUNS__STOP_GRACE_SECONDS", "42")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bind_address = \"0.0.0.0:9999\""), "{text}");
    assert!(text.contains("stop_grace_seconds = 42"), "{text}");
}
