//! The server process: health, clean shutdown, clear startup errors, state kept across restarts.

use serde_json::{Value, json};
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

/// A server process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_api_and_the_external_listener_speak_tls_with_the_operators_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // A private CA and a server certificate it signed, as an operator would have.
    let (ca, cert, key) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let script = "set -e; cd \"$0\"; \
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=gofer-test-ca -keyout ca.key -out ca.pem; \
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out server.csr; \
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext.cnf; \
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem";
    let made = Command::new("sh").args(["-c", script]).arg(dir.path()).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let port = |l: std::net::TcpListener| l.local_addr().unwrap().port();
    let (a, b) =
        (std::net::TcpListener::bind("127.0.0.1:0").unwrap(), std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let (api_port, external_port) = (port(a), port(b));
    let _server = Killed(
        Command::new(BIN)
            .args(["service", "start", "--bind-address", &format!("127.0.0.1:{api_port}")])
            .args(["--external-bind-address", &format!("127.0.0.1:{external_port}"), "--data-dir"])
            .arg(dir.path().join("data"))
            .env("GOFER_SERVER__TLS_CERT_PATH", &cert)
            .env("GOFER_SERVER__TLS_KEY_PATH", &key)
            .env("GOFER_EXTERNAL_EVENTS__TLS_CERT_PATH", &cert)
            .env("GOFER_EXTERNAL_EVENTS__TLS_KEY_PATH", &key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("https://127.0.0.1:{api_port}");
    let cli = |args: &[&str], trust: bool| {
        let mut command = Command::new(BIN);
        command.args(args).env("GOFER_API_URL", &url).env("NO_COLOR", "1");
        if trust {
            command.arg("--ca-cert").arg(&ca);
        }
        command.output().unwrap()
    };
    let listed = wait_for("the HTTPS API to answer", Duration::from_secs(30), || {
        let out = cli(&["namespace", "list", "--output", "json"], true);
        out.status.success().then_some(out)
    });
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"default\""));
    let untrusted = cli(&["namespace", "list"], false);
    assert!(!untrusted.status.success(), "a certificate nobody vouches for is refused");
    let plain = crate::harness::http("GET", &format!("http://127.0.0.1:{api_port}/api/health"), None);
    assert!(!matches!(plain, Ok((200, _))), "plain HTTP is not served: {plain:?}");

    let webhook = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&ca)
        .args(["-X", "POST", "-d", "{}", &format!("https://127.0.0.1:{external_port}/api/external/nope")])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&webhook.stdout);
    assert!(answer.contains("extension 'nope'"), "the external listener answers over TLS: {answer}");
}

/// SIGTERM while clients follow the event stream and a task's log: the followed streams end, the process exits
/// within the configured grace time with status 0, and the task container it leaves running is re-attached at the
/// next start (created once, its whole output kept, its real exit code).
#[test]
fn sigterm_with_followers_stops_within_the_grace_time_and_running_tasks_are_picked_up() {
    let mut gofer = Server::start_with(&[("GOFER_SERVER__SHUTDOWN_GRACE_SECONDS", "2")]);
    gofer.register(script_pipeline("long", "echo before; sleep 6; echo after; exit 3"));
    let run = gofer.start_run("long", &[]);
    gofer.wait_task_state("long", run, "main", "running");
    let follower = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("GOFER_API_URL", &gofer.url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut events = follower(&["event", "list", "--follow"]);
    let mut logs = follower(&["task", "logs", "long", &run.to_string(), "main", "--follow"]);
    // Both are connected and streaming once they printed their first line.
    let mut readers = Vec::new();
    for client in [&mut events, &mut logs] {
        let mut reader = std::io::BufReader::new(client.stdout.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
        assert!(!first.is_empty(), "a follower printed nothing");
        readers.push(reader);
    }

    let stopping = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &gofer.pid().to_string()]).status().unwrap().success());
    let exit = wait_for("the server to exit", Duration::from_secs(10), || gofer.child.try_wait().unwrap());
    assert!(exit.success(), "exit status {exit}: {}", gofer.log());
    assert!(stopping.elapsed() < Duration::from_secs(6), "took {:?}", stopping.elapsed());
    for (what, client) in [("event follower", &mut events), ("log follower", &mut logs)] {
        wait_for(&format!("the {what} to end"), Duration::from_secs(10), || client.try_wait().unwrap());
    }
    let containers = crate::harness::containers_of_run(&gofer, "long", run);
    assert_eq!(containers.len(), 1, "the task container is left running");

    gofer.restart();
    let done = gofer.wait_run("long", run);
    let task = &gofer.tasks("long", run)["main"];
    assert_eq!((done["status"].clone(), task["exit_code"].clone()), ("failed".into(), 3.into()), "{task:#}");
    assert_eq!(gofer.logs("long", run, "main"), b"before\nafter\n");
    let recorded = task["container_id"].as_str().unwrap();
    assert!(recorded.starts_with(&containers[0]), "the same container was re-attached: {recorded} {containers:?}");
}

#[test]
fn json_logs_name_each_request_and_run_and_never_a_secret() {
    const VALUE: &str = "s3cr3t-value-kept-out-of-the-log";
    let gofer = Server::start_with(&[("GOFER_LOG__FORMAT", "json")]);
    let mut config = script_pipeline("logged", "echo \"using $DB_PASSWORD\"");
    config["tasks"][0]["variables"] = json!({ "DB_PASSWORD": "pipeline_secret{{DB_PASSWORD}}" });
    gofer.register(config);
    gofer.cli_ok(&["secret", "pipeline", "put", "logged", "DB_PASSWORD", VALUE]);
    let run = gofer.start_run("logged", &[]);
    assert_eq!(gofer.wait_run("logged", run)["status"], "successful");

    let log = gofer.log();
    assert!(!log.contains(VALUE), "a secret reached the server's log");
    let lines: Vec<Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string() && line["target"].is_string(), "{line}");
    }
    // Each request once, by its route template, with its status, duration and id.
    let started = lines
        .iter()
        .find(|l| {
            l["target"] == "gofer::http"
                && l["method"] == "POST"
                && l["status"] == 201
                && l["route"] == "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs"
        })
        .unwrap_or_else(|| panic!("no log line for starting the run:\n{log}"));
    assert!(started["duration_ms"].is_number() && started["spans"][0]["id"].is_string(), "{started}");
    // What happens while a run is driven names the run.
    let complete = lines.iter().find(|l| l["message"] == "run complete").expect("the run's completion is logged");
    let span = &complete["spans"][0];
    assert_eq!((&span["name"], &span["pipeline"], &span["run"]), (&json!("run"), &json!("logged"), &json!(run)));
}
