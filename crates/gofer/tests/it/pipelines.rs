//! Pipelines deployed with the CLI run as containers, follow the DAG rules, get their variables and keep their logs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Server, script_pipeline, wait_containers_removed, wait_for};

#[test]
fn the_simple_example_deploys_runs_and_keeps_its_logs() {
    let gofer = Server::start();
    gofer.deploy_example("simple");

    let pipeline = gofer.cli_json(&["pipeline", "get", "simple"]);
    assert_eq!(pipeline["live_version"], 1);
    assert_eq!(pipeline["state"], "active");

    let run = gofer.start_run("simple", &[]);
    assert_eq!(run, 1);
    let finished = gofer.wait_run("simple", run);
    assert_eq!(finished["status"], "successful", "{finished:#}");

    let tasks = gofer.tasks("simple", run);
    assert_eq!(tasks["hello"]["status"], "successful");
    assert_eq!(tasks["hello"]["exit_code"], 0);
    assert!(tasks["hello"]["image_digest"].as_str().unwrap().starts_with("sha256:"), "{:#}", tasks["hello"]);

    let logs = String::from_utf8(gofer.logs("simple", run, "hello")).unwrap();
    assert_eq!(logs, "Hello from Gofer\npipeline=simple run=1 task=hello\n");
    wait_containers_removed(&gofer, "simple", run);

    // Deploying the same program again registers nothing new.
    gofer.deploy_example("simple");
    assert_eq!(gofer.cli_json(&["pipeline", "get", "simple"])["latest_version"], 1);
}

#[test]
fn the_go_dag_example_goes_up_and_runs_like_the_rust_one() {
    let gofer = Server::start();
    let dir = crate::harness::repo_root().join("examples/go-dag");
    let said = gofer.cli(&["up", dir.to_str().unwrap()]);
    assert!(said.status.success(), "{said:?}");
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(stderr.contains("registered pipeline 'go-dag' version 1"), "{stderr}");
    // What the Go program printed is what the server registered (it validates again, as the Rust SDK does).
    let registered = gofer.cli_json(&["pipeline", "config", "get", "go-dag", "1"]);
    let tasks = registered["config"]["tasks"].as_array().unwrap_or_else(|| panic!("{registered:#}"));
    assert_eq!(tasks.len(), 6, "{registered:#}");
    let test = tasks.iter().find(|t| t["id"] == "test").unwrap();
    assert_eq!(test["variables"]["FAILING_TEST"], "test_parser");
    assert_eq!(test["depends_on"]["checkout"], "Success");
    let run = gofer.start_run("go-dag", &[]);
    check_dag_run(&gofer, "go-dag", run);
}

#[test]
fn the_dag_example_follows_success_failure_and_any_edges() {
    let gofer = Server::start();
    gofer.deploy_example("dag");
    let run = gofer.start_run("dag", &[]);
    check_dag_run(&gofer, "dag", run);
}

/// The example DAG's run, written in Rust or in Go: every kind of edge did what it says.
fn check_dag_run(gofer: &Server, pipeline: &str, run: u64) {
    let finished = gofer.wait_run(pipeline, run);
    assert_eq!(finished["status"], "failed");
    assert_eq!(finished["status_reason"]["reason"], "abnormal_exit");
    assert!(finished["status_reason"]["description"].as_str().unwrap().contains("test"), "{finished:#}");

    let tasks = gofer.tasks(pipeline, run);
    let outcome = |id: &str| (tasks[id]["status"].as_str().unwrap().to_string(), tasks[id]["exit_code"].clone());
    assert_eq!(outcome("checkout"), ("successful".into(), json!(0)));
    assert_eq!(outcome("lint"), ("successful".into(), json!(0)));
    assert_eq!(outcome("test"), ("failed".into(), json!(3)));
    assert_eq!(outcome("on-failure"), ("successful".into(), json!(0)), "a Failure edge runs when the parent fails");
    assert_eq!(outcome("report"), ("successful".into(), json!(0)), "an Any edge runs whatever the parent did");
    assert_eq!(outcome("publish"), ("skipped".into(), json!(null)), "a Success edge on a failed parent skips");
    assert_eq!(tasks["publish"]["status_reason"]["reason"], "failed_precondition");
    assert!(tasks["publish"]["status_reason"]["description"].as_str().unwrap().contains("'test' ended failed"));
    assert_eq!(tasks["test"]["status_reason"]["reason"], "abnormal_exit");

    // lint and test depend only on checkout: Gofer started each before the other finished. (Whether their
    // containers' lifetimes overlap is up to the engine, so the order of Gofer's own events is what is checked.)
    let timeline = gofer.cli_json(&["run", "get", pipeline, &run.to_string(), "--timeline"]);
    let position = |task: &str, state: &str| {
        timeline
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["kind"]["task_id"] == task && e["kind"]["state"] == state)
            .unwrap_or_else(|| panic!("no {state} event for {task} in {timeline:#}"))
    };
    assert!(position("test", "processing") < position("lint", "complete"), "{timeline:#}");
    assert!(position("lint", "processing") < position("test", "complete"), "{timeline:#}");
    assert!(tasks["lint"]["started"].as_u64() >= tasks["checkout"]["ended"].as_u64());

    let test_logs = String::from_utf8(gofer.logs(pipeline, run, "test")).unwrap();
    assert!(test_logs.contains("running tests\n") && test_logs.contains("FAILED: test_parser\n"), "{test_logs}");
    assert!(gofer.logs(pipeline, run, "publish").is_empty(), "a skipped task has an empty log");
}

#[test]
fn tasks_get_gofer_variables_with_config_and_run_overrides() {
    let gofer = Server::start();
    gofer.register(json!({
        "id": "env",
        "tasks": [{
            "id": "show",
            "image": "busybox:latest",
            "variables": { "FROM_CONFIG": "config", "OVERRIDE_ME": "config" },
            "command": ["sh", "-c", "env | grep -E '^(GOFER_|FROM_|OVERRIDE_)' | sort"]
        }]
    }));
    let run = gofer.start_run("env", &["-v", "OVERRIDE_ME=run", "-v", "FROM_RUN=yes=really"]);
    assert_eq!(gofer.wait_run("env", run)["status"], "successful");
    let logs = String::from_utf8(gofer.logs("env", run, "show")).unwrap();
    for expected in [
        "GOFER_NAMESPACE_ID=default",
        "GOFER_PIPELINE_ID=env",
        &format!("GOFER_RUN_ID={run}"),
        "GOFER_TASK_ID=show",
        "GOFER_TASK_IMAGE=busybox:latest",
        "GOFER_API_BASE_URL=http://172.17.0.1:",
        "FROM_CONFIG=config",
        "OVERRIDE_ME=run",
        "FROM_RUN=yes=really",
    ] {
        assert!(logs.contains(expected), "missing {expected} in:\n{logs}");
    }
    let task = gofer.cli_json(&["task", "get", "env", &run.to_string(), "show"]);
    let sources: Vec<(String, String)> = task["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["key"].as_str().unwrap().to_string(), v["source"].as_str().unwrap().to_string()))
        .collect();
    assert!(sources.contains(&("OVERRIDE_ME".into(), "run_options".into())), "{sources:?}");
    assert!(sources.contains(&("GOFER_TASK_ID".into(), "system".into())), "{sources:?}");
}

#[test]
fn logs_are_byte_exact_and_stream_live_while_the_task_runs() {
    let gofer = Server::start();
    // Binary output on stdout and stderr, a pause in the middle, no trailing newline.
    let script = r"printf 'one\n\000\377\376 bin'; printf 'err\n' >&2; sleep 2; printf 'two'";
    gofer.register(script_pipeline("bytes", script));
    let run = gofer.start_run("bytes", &[]);

    let id = run.to_string();
    wait_for("the task to run", Duration::from_secs(30), || {
        (gofer.tasks("bytes", run)["main"]["state"] == "running").then_some(())
    });
    let started = Instant::now();
    let followed = gofer.cli(&["task", "logs", "bytes", &id, "main", "--follow"]);
    assert!(followed.status.success());
    assert!(started.elapsed() >= Duration::from_millis(500), "--follow kept the stream open until the task ended");

    let expected_stdout: &[u8] = b"one\n\x00\xff\xfe bin";
    let all = gofer.logs("bytes", run, "main");
    assert_eq!(followed.stdout, all, "the live stream and the stored log are the same bytes");
    assert!(all.starts_with(expected_stdout) || all.starts_with(b"err\n"), "{all:?}");
    assert!(all.ends_with(b"two"), "{all:?}");
    assert_eq!(all.len(), expected_stdout.len() + b"err\n".len() + b"two".len(), "{all:?}");
    assert!(all.windows(expected_stdout.len()).any(|w| w == expected_stdout), "binary bytes kept exactly: {all:?}");
}

#[test]
fn run_get_follow_shows_task_states_and_logs_until_the_run_completes() {
    let gofer = Server::start();
    gofer.register(script_pipeline("follow", "echo first; sleep 1; echo second"));
    let run = gofer.start_run("follow", &[]);
    let out = gofer.cli(&["run", "get", "follow", &run.to_string(), "--follow"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("main | first\nmain | second\n"), "{stdout}");
    assert!(stdout.contains("status:    successful"), "{stdout}");
    assert!(stderr.contains("[main] successful (exit 0)"), "{stderr}");
    // Following a run that already ended shows the same, and ends.
    let again = gofer.cli(&["run", "get", "follow", &run.to_string(), "--follow"]);
    assert!(again.status.success());
    assert!(String::from_utf8(again.stdout).unwrap().contains("main | first\nmain | second\n"));
}

#[test]
fn cancelling_a_run_stops_its_containers() {
    let gofer = Server::start();
    gofer.register(json!({
        "id": "slow",
        "tasks": [
            { "id": "sleep", "image": "busybox:latest", "command": ["sleep", "300"] },
            { "id": "after", "image": "busybox:latest", "depends_on": { "sleep": "Any" }, "command": ["true"] }
        ]
    }));
    let run = gofer.start_run("slow", &[]);
    let id = run.to_string();
    wait_for("the task to run", Duration::from_secs(30), || {
        (gofer.tasks("slow", run)["sleep"]["state"] == "running").then_some(())
    });
    let started = Instant::now();
    gofer.cli_ok(&["run", "cancel", "slow", &id]);
    let finished = gofer.wait_run("slow", run);
    assert!(started.elapsed() < Duration::from_secs(30), "cancel did not wait for the 300 s task");
    assert_eq!(finished["status"], "cancelled");
    assert_eq!(finished["status_reason"]["reason"], "user_cancelled");
    let tasks = gofer.tasks("slow", run);
    assert_eq!(tasks["sleep"]["status"], "cancelled");
    assert_eq!(tasks["after"]["status"], "cancelled", "a task that had not started is cancelled, not run");
    wait_containers_removed(&gofer, "slow", run);

    let again = gofer.cli(&["run", "cancel", "slow", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"), "{again:?}");
}

#[test]
fn runs_list_newest_first_with_pages() {
    let gofer = Server::start();
    gofer.register(script_pipeline("many", "true"));
    for _ in 0..3 {
        let run = gofer.start_run("many", &[]);
        gofer.wait_run("many", run);
    }
    let page: Vec<u64> = gofer
        .cli_json(&["run", "list", "many", "--limit", "2"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_u64().unwrap())
        .collect();
    assert_eq!(page, [3, 2]);
    let (status, body) = crate::harness::http(
        "GET",
        &format!("{}/api/namespaces/default/pipelines/many/runs?limit=2&offset=2", gofer.url),
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["runs"][0]["run_id"], 1);
    assert_eq!(body["next_offset"], serde_json::Value::Null);
}

#[test]
fn namespaces_partition_pipelines() {
    let gofer = Server::start();
    let created = gofer.cli_json(&["namespace", "create", "team-a", "--name", "Team A"]);
    assert_eq!(created["id"], "team-a");
    let ids: Vec<String> = gofer
        .cli_json(&["namespace", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"default".to_string()) && ids.contains(&"team-a".to_string()), "{ids:?}");
    let again = gofer.cli(&["namespace", "create", "team-a"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let config = serde_json::json!({ "config": script_pipeline("scoped", "echo in $GOFER_NAMESPACE_ID") });
    let (status, body) =
        crate::harness::api(&gofer, "POST", "/api/namespaces/team-a/pipelines/scoped/configs", Some(&config));
    assert_eq!(status, 201, "{body}");
    gofer.cli_ok(&["--namespace", "team-a", "pipeline", "list"]);
    let (status, _) =
        crate::harness::api(&gofer, "POST", "/api/namespaces/team-a/pipelines/scoped/configs/1/deploy", None);
    assert_eq!(status, 201);
    let run = gofer.cli_json(&["--namespace", "team-a", "run", "start", "scoped"]);
    let id = run["run_id"].as_u64().unwrap().to_string();
    wait_for("the namespaced run", Duration::from_secs(60), || {
        let run = gofer.cli_json(&["--namespace", "team-a", "run", "get", "scoped", &id]);
        (run["state"] == "complete").then_some(())
    });
    let logs = gofer.cli_ok(&["--namespace", "team-a", "task", "logs", "scoped", &id, "main"]);
    assert_eq!(logs, "in team-a\n");
    let elsewhere = gofer.cli(&["pipeline", "get", "scoped"]);
    assert!(!elsewhere.status.success(), "the default namespace does not see team-a's pipeline");
}
