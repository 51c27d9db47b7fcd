//! Test helpers: start the real `gofer` binary against the real Docker engine, drive it with the real CLI, and
//! wait on conditions with deadlines (never sleep-and-hope).

#![allow(clippy::unwrap_used, dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_gofer");

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A running Gofer server with its own data dir and port; killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The external-events listener (webhooks).
    pub external_url: String,
    pub data_dir: tempfile::TempDir,
    log: PathBuf,
    port: u16,
    external_port: u16,
    env: Vec<(String, String)>,
}

fn spawn(port: u16, external_port: u16, data_dir: &Path, log: &Path, env: &[(String, String)]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    // The API listens on all addresses so that containers (extensions) can reach it over Docker's bridge.
    Command::new(BIN)
        .args(["service", "start", "--bind-address", &format!("0.0.0.0:{port}")])
        .args(["--external-bind-address", &format!("127.0.0.1:{external_port}"), "--data-dir"])
        .arg(data_dir)
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Two distinct free ports (both listeners are held while the second is picked, so they differ).
fn free_ports() -> (u16, u16) {
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (first.local_addr().unwrap().port(), second.local_addr().unwrap().port())
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server with extra environment (e.g. `GOFER_RUNS__GLOBAL_LIMIT`).
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Self::start_at(tempfile::tempdir().unwrap(), env)
    }

    /// Starts a server on a data dir the test prepared (e.g. a small tmpfs).
    pub fn start_at(data_dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let (port, external_port) = free_ports();
        let log = data_dir.path().join("server.log");
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let child = spawn(port, external_port, data_dir.path(), &log, &env);
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            external_url: format!("http://127.0.0.1:{external_port}"),
            data_dir,
            log,
            port,
            external_port,
            env,
        };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&mut self) {
        let url = self.url.clone();
        wait_for("the server to answer /api/health", Duration::from_secs(20), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited with {status}:\n{}", self.log());
            }
            matches!(http("GET", &format!("{url}/api/health"), None), Ok((200, _))).then_some(())
        });
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn crash(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the server again on the same data dir and port (after `crash`, or a clean stop).
    pub fn restart(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            self.crash();
        }
        self.child = spawn(self.port, self.external_port, self.data_dir.path(), &self.log, &self.env);
        self.wait_healthy();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("GOFER_API_URL", &self.url)
            .env("NO_COLOR", "1")
            .env("CARGO_TARGET_DIR", repo_root().join("target/it-pipelines"))
            .output()
            .unwrap()
    }

    /// Runs the CLI with `input` on its stdin.
    pub fn cli_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .env("GOFER_API_URL", &self.url)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs the CLI and returns its stdout, failing the test if it failed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`gofer {}` failed ({}):\nstdout: {}\nstderr: {}\nserver log:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI with `--output json` and parses what it printed.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let text = self.cli_ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Deploys one of the repository's example pipelines with the real CLI (building it with cargo).
    pub fn deploy_example(&self, name: &str) {
        let dir = repo_root().join("examples").join(name);
        self.cli_ok(&["pipeline", "deploy", dir.to_str().unwrap()]);
    }

    /// Registers and deploys a config given as JSON, straight through the API.
    pub fn register(&self, config: Value) {
        let id = config["id"].as_str().unwrap().to_string();
        let base = format!("{}/api/namespaces/default/pipelines/{id}", self.url);
        let (status, body) =
            http("POST", &format!("{base}/configs"), Some(&serde_json::json!({ "config": config }))).unwrap();
        assert!(status == 201 || status == 200, "register answered {status}: {body}");
        let version = serde_json::from_str::<Value>(&body).unwrap()["config"]["version"].as_u64().unwrap();
        let (status, body) = http("POST", &format!("{base}/configs/{version}/deploy"), None).unwrap();
        assert_eq!(status, 201, "deploy answered: {body}");
    }

    /// Starts a run and returns its id.
    pub fn start_run(&self, pipeline: &str, extra: &[&str]) -> u64 {
        let mut args = vec!["run", "start", pipeline];
        args.extend_from_slice(extra);
        let run = self.cli_json(&args);
        run["run_id"].as_u64().unwrap_or_else(|| panic!("no run_id in {run}"))
    }

    /// The run as the server reports it.
    pub fn run(&self, pipeline: &str, run: u64) -> Value {
        self.cli_json(&["run", "get", pipeline, &run.to_string()])
    }

    /// Waits until a task reaches `state`.
    pub fn wait_task_state(&self, pipeline: &str, run: u64, task: &str, state: &str) -> Value {
        wait_for(&format!("task {task} of run {run} to be {state}"), Duration::from_secs(60), || {
            let t = self.tasks(pipeline, run).remove(task)?;
            (t["state"] == state).then_some(t)
        })
    }

    /// Waits until a run is complete and returns it.
    pub fn wait_run(&self, pipeline: &str, run: u64) -> Value {
        let id = run.to_string();
        wait_for(&format!("run {run} of {pipeline} to complete"), Duration::from_secs(60), || {
            let run = self.cli_json(&["run", "get", pipeline, &id]);
            (run["state"] == "complete").then_some(run)
        })
    }

    /// The run's task executions by task id.
    pub fn tasks(&self, pipeline: &str, run: u64) -> std::collections::BTreeMap<String, Value> {
        let list = self.cli_json(&["task", "list", pipeline, &run.to_string()]);
        list.as_array().unwrap().iter().map(|t| (t["task_id"].as_str().unwrap().to_string(), t.clone())).collect()
    }

    /// The ids of the installed extensions, as `gofer extension list` shows them.
    pub fn extension_ids(&self) -> Vec<String> {
        let list = self.cli_json(&["extension", "list"]);
        list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
    }

    /// A task's logs, raw bytes.
    pub fn logs(&self, pipeline: &str, run: u64, task: &str) -> Vec<u8> {
        let out = self.cli(&["task", "logs", pipeline, &run.to_string(), task]);
        assert!(out.status.success(), "task logs failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }
}

impl Drop for Server {
    /// Kills the server and removes every container it left (task and extension containers of runs in flight):
    /// tests clean up what they start.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_containers_of(self.data_path());
    }
}

/// Removes the containers of the Gofer installation whose data dir is `data_dir`.
pub fn remove_containers_of(data_dir: &Path) {
    let Ok(installation) = std::fs::read_to_string(data_dir.join("installation_id")) else { return };
    let listed = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=dev.gofer.installation={}", installation.trim()))
        .output();
    let Ok(listed) = listed else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_string).collect();
    if !ids.is_empty() {
        let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).stdout(Stdio::null()).status();
    }
}

/// A minimal HTTP/1.1 client for checking raw status codes and bodies.
pub fn http(method: &str, url: &str, body: Option<&Value>) -> std::io::Result<(u16, String)> {
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let headers: &[(&str, &str)] = if body.is_some() { &[("Content-Type", "application/json")] } else { &[] };
    http_raw(method, url, headers, payload.as_bytes())
}

/// Sends any bytes with any headers; returns the status and the body.
pub fn http_raw(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap();
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes())?;
    // The server may answer (413) before reading a large body, and close: keep what it said.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A raw API call against this server, returning the status and parsed JSON body.
pub fn api(server: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, text) = http(method, &format!("{}{path}", server.url), body).unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Docker's view of the containers of one run of this server's installation.
pub fn containers_of_run(server: &Server, pipeline: &str, run: u64) -> Vec<String> {
    let installation = std::fs::read_to_string(server.data_path().join("installation_id")).unwrap();
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=dev.gofer.installation={}", installation.trim()))
        .args(["--filter", &format!("label=dev.gofer.pipeline={pipeline}")])
        .args(["--filter", &format!("label=dev.gofer.run={run}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Waits until the run's containers are gone: Gofer removes a container right after storing its outcome, off the
/// path that completes the run.
pub fn wait_containers_removed(server: &Server, pipeline: &str, run: u64) {
    wait_for(&format!("the containers of run {run} of {pipeline} to be removed"), Duration::from_secs(20), || {
        containers_of_run(server, pipeline, run).is_empty().then_some(())
    });
}

/// A pipeline program (Rust, on the SDK) in its own Cargo project in `dir`, with `main_rs` as its `src/main.rs`.
/// It builds with the workspace's lock file, so with the versions already built for the examples.
pub fn write_program(dir: &Path, main_rs: &str) {
    let root = repo_root();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    // Its own package name: programs built at once in one target dir must not share a binary path.
    let unique: String = dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let manifest = format!(
        "[package]\nname = \"test-pipeline{unique}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\ngofer-sdk = {{ path = \"{}\" }}\n\n[workspace]\n",
        root.join("crates/gofer-sdk").display()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    std::fs::write(dir.join("src/main.rs"), main_rs).unwrap();
}

/// A one-task config running `script` in busybox.
pub fn script_pipeline(id: &str, script: &str) -> Value {
    serde_json::json!({
        "id": id,
        "name": id,
        "tasks": [{ "id": "main", "image": "busybox:latest", "command": ["sh", "-c", script] }]
    })
}

/// How many runs a pipeline has had.
pub fn run_count(gofer: &Server, pipeline: &str) -> usize {
    gofer.cli_json(&["run", "list", pipeline, "--limit", "1000"]).as_array().unwrap().len()
}

/// Waits until `control`, a pipeline something triggers every second, has had `periods` more runs: proof that
/// that many periods passed for the triggers, without sleeping a guessed time.
pub fn wait_periods(gofer: &Server, control: &str, periods: usize) {
    let target = run_count(gofer, control) + periods;
    wait_for(&format!("{periods} more runs of {control}"), Duration::from_secs(30), || {
        (run_count(gofer, control) >= target).then_some(())
    });
}

impl Server {
    /// Changes one row of the database from outside, as time passing would (an expiry reached, a tick long
    /// past), instead of waiting for it: the real binary reads the wall clock. `args` bind `?1`, `?2`, ….
    fn change_one_row(&self, statement: &str, args: &[&str]) {
        let db = self.data_path().join("gofer.db");
        let script = "import sqlite3, sys\n\
                      c = sqlite3.connect(sys.argv[1], timeout=30)\n\
                      changed = c.execute(sys.argv[2], sys.argv[3:]).rowcount\n\
                      c.commit()\n\
                      sys.exit(0 if changed == 1 else 1)\n";
        let status = std::process::Command::new("python3")
            .args(["-c", script, db.to_str().unwrap(), statement])
            .args(args)
            .status();
        assert!(status.expect("python3").success(), "one row changed by {statement} {args:?}");
    }

    /// Makes a token expired: its expiry moves into the past.
    pub fn expire_token(&self, id: &str) {
        self.change_one_row("UPDATE tokens SET expires = 1 WHERE id = ?1", &[id]);
    }

    /// Moves a subscription's last recorded tick to `last_fired` (epoch milliseconds), as if the ticks since had
    /// been missed while Gofer was down. Only while the server is stopped.
    pub fn set_last_fired(&self, pipeline: &str, extension: &str, label: &str, last_fired: u64) {
        self.change_one_row(
            "UPDATE subscriptions SET last_fired = CAST(?1 AS INTEGER) \
             WHERE namespace_id = 'default' AND pipeline_id = ?2 AND extension_id = ?3 AND label = ?4",
            &[&last_fired.to_string(), pipeline, extension, label],
        );
    }
}

/// Runs a task that prints a line, sleeps and exits 4; kills the server with SIGKILL while it runs and starts it
/// again. The run must end with the task's own exit code and its whole output once, from its first attempt.
/// `workloads` counts what the engine holds for the run; it must be `while_running` before the crash.
pub fn a_crash_while_a_task_runs_is_survived(gofer: &mut Server, workloads: impl Fn() -> usize, while_running: usize) {
    gofer.register(serde_json::json!({
        "id": "crashy",
        "tasks": [{ "id": "slow", "image": "busybox:latest", "command": ["sh", "-c", "echo before; sleep 3; echo after; exit 4"] }]
    }));
    let run = gofer.start_run("crashy", &[]);
    gofer.wait_task_state("crashy", run, "slow", "running");
    wait_for("the task's first line", Duration::from_secs(30), || {
        gofer.logs("crashy", run, "slow").starts_with(b"before").then_some(())
    });
    assert_eq!(workloads(), while_running, "what the engine holds while the task runs");
    gofer.crash();
    gofer.restart();
    let finished = gofer.wait_run("crashy", run);
    let task = &gofer.tasks("crashy", run)["slow"];
    let outcome = (&finished["status"], &task["exit_code"], &task["attempt"]);
    assert_eq!(outcome, (&serde_json::json!("failed"), &serde_json::json!(4), &serde_json::json!(1)));
    assert_eq!(gofer.logs("crashy", run, "slow"), b"before\nafter\n".to_vec(), "the whole output, once");
}
