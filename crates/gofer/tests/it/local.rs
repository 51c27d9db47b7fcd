//! `gofer run local`: pipeline programs run on the real engine with no server — exit codes, live prefixed logs,
//! secrets from every source masked, objects, `--only`, and Ctrl-C leaving no container behind.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{BIN, repo_root, wait_for, write_program};

/// `gofer run local ARGS…` with no server anywhere (the API URL points at a closed port).
fn local(args: &[&str]) -> Output {
    local_command(args).output().unwrap()
}

fn local_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["run", "local"])
        .args(args)
        .env("GOFER_API_URL", "http://127.0.0.1:9")
        .env("NO_COLOR", "1")
        .env("CARGO_TARGET_DIR", repo_root().join("target/it-pipelines"));
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Containers of the installation whose data dir is `dir`, as Docker lists them.
fn containers_of(dir: &std::path::Path) -> Vec<String> {
    let installation = std::fs::read_to_string(dir.join("installation_id")).unwrap();
    let listed = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=dev.gofer.installation={}", installation.trim()))
        .output()
        .unwrap();
    text(&listed.stdout).lines().map(str::to_string).collect()
}

#[test]
fn the_example_dags_run_locally_with_their_exit_codes_and_live_prefixed_logs() {
    let simple = repo_root().join("examples/simple");
    let out = local(&[simple.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("hello | Hello from Gofer"), "{stdout}");
    assert!(stdout.contains("hello | pipeline=simple run=1 task=hello"), "{stdout}");
    assert!(stderr.contains("[hello] running") && stderr.contains("[hello] complete successful (exit 0)"), "{stderr}");
    assert!(stdout.contains("status:    successful"), "the run's table follows: {stdout}");

    // The same DAG written in Rust and in Go (a go.mod: run with `go run .`).
    for example in ["dag", "go-dag"] {
        let dag = repo_root().join("examples").join(example);
        let out = local(&[dag.to_str().unwrap(), "--output", "json"]);
        assert_eq!(out.status.code(), Some(1), "{example}: a failing DAG exits 1: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let json_start = stdout.find("{\n").unwrap_or_else(|| panic!("no JSON in {stdout}"));
        let result: serde_json::Value = serde_json::from_str(&stdout[json_start..]).unwrap();
        assert_eq!(result["run"]["status"], "failed");
        let tasks = result["tasks"].as_array().unwrap();
        let status = |id: &str| tasks.iter().find(|t| t["task_id"] == id).unwrap()["status"].clone();
        assert_eq!(
            (status("test"), status("publish"), status("on-failure")),
            ("failed".into(), "skipped".into(), "successful".into()),
            "{example}"
        );
    }
}

#[test]
fn secrets_from_every_source_are_masked_objects_are_read_and_only_runs_the_chosen_tasks() {
    let dir = tempfile::tempdir().unwrap();
    write_program(
        dir.path(),
        r#"use gofer_sdk::config::{Pipeline, RequiredParentStatus, Task};
fn main() {
    Pipeline::new("local-secrets", "")
        .tasks(vec![
            Task::new("first", "busybox:latest").script("echo first ran"),
            Task::new("show", "busybox:latest")
                .depends_on("first", RequiredParentStatus::Success)
                .inject_api_token(true)
                .variables(vec![
                    ("FROM_FLAG", "pipeline_secret{{FLAG}}"),
                    ("FROM_FILE", "global_secret{{FILE}}"),
                    ("FROM_ENV", "pipeline_secret{{ENVIRONMENT}}"),
                    ("OBJECT", "pipeline_object{{notes}}"),
                ])
                .script("echo \"flag=$FROM_FLAG file=$FROM_FILE env=$FROM_ENV object=$OBJECT run=$RUN_NOTE\""),
        ])
        .finish()
        .unwrap();
}
"#,
    );
    let secrets_file = dir.path().join("secrets.env");
    std::fs::write(&secrets_file, "# local secrets\nFILE=\"from-the-file-s3cret\"\n").unwrap();
    let object = dir.path().join("notes.txt");
    std::fs::write(&object, "object-body").unwrap();
    let program = dir.path().to_str().unwrap();
    let out = local_command(&[
        program,
        "--secret",
        "FLAG=flag-s3cret",
        "--secrets-file",
        secrets_file.to_str().unwrap(),
        "--secret-from-env",
        "ENVIRONMENT",
        "--object",
        &format!("notes={}", object.display()),
        "-v",
        "RUN_NOTE=plain",
        "--only",
        "show",
    ])
    .env("ENVIRONMENT", "env-s3cret")
    .output()
    .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("show | flag=*** file=*** env=*** object=object-body run=plain"), "{stdout}");
    for secret in ["flag-s3cret", "from-the-file-s3cret", "env-s3cret"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} leaked:\n{stdout}\n{stderr}");
    }
    assert!(!stdout.contains("first ran"), "--only show: first does not run\n{stdout}");
    assert!(stderr.contains("parent 'first' is not run and is taken as successful"), "{stderr}");
    assert!(stderr.contains("task 'show' asks for an API token; a local run has no Gofer API"), "{stderr}");

    let out = local(&[program, "--only", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--only nope: the pipeline has no such task"), "{}", text(&out.stderr));
    let out = local(&[program, "--secret-from-env", "GOFER_SURELY_UNSET_VARIABLE"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_config_that_does_not_validate_exits_2_with_the_message() {
    let dir = tempfile::tempdir().unwrap();
    write_program(
        dir.path(),
        r##"fn main() {
    // Printed by hand, not with .finish() (which would refuse it): the local run must judge it itself.
    let a = r#"{"id":"a","image":"busybox:latest","depends_on":{"b":"Success"}}"#;
    let b = r#"{"id":"b","image":"busybox:latest","depends_on":{"a":"Success"}}"#;
    println!("{{\"id\":\"cyclic\",\"tasks\":[{a},{b}]}}");
}
"##,
    );
    let out = local(&[dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cycle"), "{}", text(&out.stderr));
    let out = local(&["/nonexistent-dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("has neither a Cargo.toml nor a go.mod"), "{}", text(&out.stderr));
}

#[test]
fn ctrl_c_cancels_the_run_and_leaves_no_container_behind() {
    let dir = tempfile::tempdir().unwrap();
    write_program(
        dir.path(),
        r#"use gofer_sdk::config::{Pipeline, Task};
fn main() {
    Pipeline::new("local-long", "")
        .tasks(vec![Task::new("wait", "busybox:latest").script("echo started; sleep 300")])
        .finish()
        .unwrap();
}
"#,
    );
    let data = tempfile::tempdir().unwrap();
    let mut child = local_command(&[dir.path().to_str().unwrap(), "--data-dir", data.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the task's container to run", Duration::from_secs(120), || {
        (std::fs::read_to_string(data.path().join("installation_id")).is_ok() && !containers_of(data.path()).is_empty())
            .then_some(())
    });
    // Past `running`: the log says it started.
    wait_for("the task to start", Duration::from_secs(60), || {
        let log = data.path().join("logs/default/local-long/1/wait.log");
        std::fs::read_to_string(log).ok().filter(|l| l.contains("started")).map(drop)
    });
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    wait_for("run local to exit", Duration::from_secs(60), || child.try_wait().unwrap().map(drop));
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "a cancelled run exits 1\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("cancelling the run (Ctrl-C)"), "{stderr}");
    assert!(stdout.contains("status:    cancelled"), "{stdout}");
    assert!(containers_of(data.path()).is_empty(), "nothing is left behind");
}

#[test]
fn replay_reproduces_a_runs_variables_on_the_server_and_locally() {
    let gofer = crate::harness::Server::start();
    gofer.register(crate::harness::script_pipeline("greet", "echo \"greeting=$GREETING\""));
    let first = gofer.start_run("greet", &["-v", "GREETING=from-run-1"]);
    gofer.wait_run("greet", first);

    let replay = gofer.cli_json(&["run", "replay", "greet", &first.to_string()]);
    let replay = replay["run_id"].as_u64().unwrap();
    assert_eq!(gofer.wait_run("greet", replay)["status"], "successful");
    assert_eq!(text(&gofer.logs("greet", replay, "main")), "greeting=from-run-1\n");

    let dir = tempfile::tempdir().unwrap();
    write_program(
        dir.path(),
        r#"use gofer_sdk::config::{Pipeline, Task};
fn main() {
    Pipeline::new("greet", "")
        .tasks(vec![Task::new("main", "busybox:latest").script("echo \"fixed greeting=$GREETING\"")])
        .finish()
        .unwrap();
}
"#,
    );
    let program = dir.path().to_str().unwrap();
    let out = gofer.cli(&["run", "replay", "greet", &first.to_string(), "--local", program]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("main | fixed greeting=from-run-1"), "{stdout}");

    // The recorded run, saved and fed back.
    let saved = dir.path().join("run.json");
    std::fs::write(&saved, gofer.cli_ok(&["run", "get", "greet", &first.to_string(), "--output", "json"])).unwrap();
    let out = local(&[program, "--event", saved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("main | fixed greeting=from-run-1"), "{}", text(&out.stdout));
    let out = local(&[program, "--event", saved.to_str().unwrap(), "-v", "GREETING=overridden"]);
    assert!(text(&out.stdout).contains("main | fixed greeting=overridden"), "-v wins: {}", text(&out.stdout));
}

#[test]
fn keep_containers_leaves_them_for_inspection_and_names_them() {
    let data = tempfile::tempdir().unwrap();
    let simple = repo_root().join("examples/simple");
    let out = local(&[simple.to_str().unwrap(), "--keep-containers", "--data-dir", data.path().to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("kept container of task 'hello'"), "{stderr}");
    let kept = containers_of(data.path());
    assert_eq!(kept.len(), 1, "the task's container is still there");
    assert!(stderr.contains(&kept[0]), "the id printed is Docker's: {stderr}");
    assert!(data.path().join("logs/default/simple/1/hello.log").exists(), "--data-dir keeps the state and logs");
    crate::harness::remove_containers_of(data.path());
}
