//! Bad input gets a clear 4xx naming what was wrong; a broken image fails only its task.

use serde_json::{Value, json};

use crate::harness::{Server, http, script_pipeline, wait_for};

fn post_config(gofer: &Server, id: &str, config: Value) -> (u16, Value) {
    let url = format!("{}/api/namespaces/default/pipelines/{id}/configs", gofer.url);
    let (status, body) = http("POST", &url, Some(&json!({ "config": config }))).unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn task(id: &str, deps: Value) -> Value {
    json!({ "id": id, "image": "busybox:latest", "depends_on": deps })
}

#[test]
fn invalid_configs_are_refused_with_400_naming_the_task_and_problem() {
    let gofer = Server::start();
    let cases = [
        (
            json!([task("a", json!({"c": "Any"})), task("b", json!({"a": "Any"})), task("c", json!({"b": "Any"}))]),
            "dependency cycle",
        ),
        (json!([task("a", json!({"ghost": "Success"}))]), "task 'a' depends on task 'ghost'"),
        (json!([task("a", json!({})), task("a", json!({}))]), "task 'a' is defined more than once"),
        (json!([task("bad id!", json!({}))]), "invalid task id 'bad id!'"),
        (json!([{ "id": "a", "image": "" }]), "task 'a': invalid image"),
    ];
    for (tasks, expected) in cases {
        let (status, body) = post_config(&gofer, "broken", json!({ "id": "broken", "tasks": tasks }));
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "invalid_argument");
        assert!(body["message"].as_str().unwrap().contains(expected), "expected '{expected}' in {body}");
    }
    let (status, body) = post_config(&gofer, "other", script_pipeline("mismatch", "true"));
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("'mismatch'"), "{body}");

    let (status, body) = post_config(&gofer, "x", json!({ "tasks": "not a list" }));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_argument");

    let (status, _) = http("GET", &format!("{}/api/namespaces/default/pipelines/broken", gofer.url), None).unwrap();
    assert_eq!(status, 404, "nothing was stored for a refused config");
}

#[test]
fn unknown_resources_are_404_naming_which() {
    let gofer = Server::start();
    gofer.register(script_pipeline("known", "true"));
    let run = gofer.start_run("known", &[]);
    gofer.wait_run("known", run);
    let base = format!("{}/api/namespaces", gofer.url);
    for (path, named) in [
        ("/nope/pipelines", "namespace 'nope'"),
        ("/default/pipelines/ghost", "pipeline 'ghost'"),
        ("/default/pipelines/known/runs/99", "run 99"),
        ("/default/pipelines/known/runs/1/tasks/ghost", "task 'ghost'"),
        ("/default/pipelines/known/configs/7", "config version 7"),
    ] {
        let (status, body) = http("GET", &format!("{base}{path}"), None).unwrap();
        assert_eq!(status, 404, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "not_found");
        assert!(body["message"].as_str().unwrap().contains(named), "{path}: {body}");
    }
    let (status, body) = http("GET", &format!("{base}/default/pipelines/known/runs/abc"), None).unwrap();
    assert_eq!(status, 400, "{body}");
    for (path, named) in [
        ("/default/pipelines/known/runs/42/cancel", "run 42"),
        ("/default/pipelines/known/runs/1/tasks/ghost/cancel", "task 'ghost'"),
    ] {
        let (status, body) = http("POST", &format!("{base}{path}"), None).unwrap();
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains(named), "{path}: {body}");
    }

    let out = gofer.cli(&["run", "get", "ghost", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pipeline 'ghost'"), "{out:?}");
}

#[test]
fn a_missing_image_fails_its_task_with_the_engines_message_and_the_server_keeps_serving() {
    let gofer = Server::start();
    gofer.register(json!({
        "id": "noimage",
        "tasks": [
            { "id": "pull", "image": "gofer-test/does-not-exist:never", "command": ["true"] },
            { "id": "fine", "image": "busybox:latest", "command": ["true"] }
        ]
    }));
    let run = gofer.start_run("noimage", &[]);
    let finished = gofer.wait_run("noimage", run);
    assert_eq!(finished["status"], "failed");
    assert_eq!(finished["status_reason"]["reason"], "failed_precondition");
    let tasks = gofer.tasks("noimage", run);
    assert_eq!(tasks["pull"]["status"], "failed");
    assert_eq!(tasks["pull"]["status_reason"]["reason"], "failed_precondition");
    let description = tasks["pull"]["status_reason"]["description"].as_str().unwrap();
    assert!(description.contains("gofer-test/does-not-exist:never"), "{description}");
    assert!(description.len() > "image '' is not available: ".len() + 30, "carries the engine's words: {description}");
    assert_eq!(tasks["fine"]["status"], "successful");
    assert_eq!(http("GET", &format!("{}/api/health", gofer.url), None).unwrap().0, 200);
}

#[test]
fn disabled_pipelines_refuse_runs_until_enabled() {
    let gofer = Server::start();
    gofer.register(script_pipeline("toggle", "true"));
    gofer.cli_ok(&["pipeline", "disable", "toggle"]);
    let out = gofer.cli(&["run", "start", "toggle"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("disabled") && stderr.contains("gofer pipeline enable toggle"), "{stderr}");
    gofer.cli_ok(&["pipeline", "enable", "toggle"]);
    let run = gofer.start_run("toggle", &[]);
    assert_eq!(gofer.wait_run("toggle", run)["status"], "successful");
}

#[test]
fn a_pipeline_program_that_does_not_validate_fails_deploy() {
    let gofer = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let sdk = crate::harness::repo_root().join("crates/gofer-sdk");
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"cyclic\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n\n\
             [dependencies]\ngofer-sdk = {{ path = {:?} }}\n",
            sdk.to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("src/main.rs"),
        "use gofer_sdk::config::*;\nfn main() {\n    Pipeline::new(\"cyclic\", \"\").tasks(vec![\n        \
         Task::new(\"a\", \"busybox\").depends_on(\"b\", RequiredParentStatus::Any),\n        \
         Task::new(\"b\", \"busybox\").depends_on(\"a\", RequiredParentStatus::Any),\n    ]).finish().unwrap();\n}\n",
    )
    .unwrap();
    let out = gofer.cli(&["pipeline", "deploy", dir.path().to_str().unwrap()]);
    assert!(!out.status.success(), "deploy of an invalid pipeline must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dependency cycle"), "the SDK's message reaches the user: {stderr}");
    assert!(stderr.contains("the pipeline program failed"), "{stderr}");

    let out = gofer.cli(&["pipeline", "deploy", "/nonexistent/dir"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has neither a Cargo.toml nor a go.mod"));
}

/// Input that no stored value can hold, or that would harm other users of the API, gets a 4xx naming it: numbers
/// past the largest id, out-of-range expiries, unbounded names, bodies that are not objects, misspelt config
/// fields, malformed references. Nothing of a refused request is stored, and the server keeps serving.
#[test]
fn input_that_cannot_be_stored_or_would_harm_others_is_refused_with_400() {
    let gofer = Server::start();
    gofer.register(script_pipeline("known", "true"));
    let run = gofer.start_run("known", &[]);
    gofer.wait_run("known", run);
    let base = format!("{}/api/namespaces/default/pipelines/known", gofer.url);
    let huge = "9223372036854775808"; // i64::MAX + 1
    let max = "18446744073709551615"; // u64::MAX
    for (method, path) in [
        ("GET", format!("{base}/runs/{huge}")),
        ("GET", format!("{base}/runs/{max}")),
        ("GET", format!("{base}/runs/{huge}/tasks")),
        ("POST", format!("{base}/runs/{huge}/cancel")),
        ("GET", format!("{base}/runs/{max}/tasks/main/logs")),
        ("GET", format!("{base}/configs/{huge}")),
        ("POST", format!("{base}/configs/{max}/deploy")),
        ("DELETE", format!("{base}/configs/{huge}")),
        ("GET", format!("{base}/deployments/{huge}")),
        ("POST", format!("{base}/deployments/{max}/abort")),
        ("GET", format!("{base}/runs/{huge}/objects")),
        ("GET", format!("{}/api/events?after={huge}", gofer.url)),
        ("GET", format!("{}/api/events?namespace=default&pipeline=known&run={max}", gofer.url)),
    ] {
        let (status, body) = http(method, &path, None).unwrap();
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(body.contains("too large"), "{method} {path}: {body}");
    }
    let (status, body) = http("GET", &format!("{base}/runs?offset={max}"), None).unwrap();
    assert_eq!(status, 200, "an offset past the end is an empty page: {body}");

    let token = |seconds: u64| json!({ "user": "ci", "roles": ["read_only"], "expires_in_seconds": seconds });
    for seconds in [u64::MAX, u64::MAX / 1000, 0] {
        let (status, body) = http("POST", &format!("{}/api/tokens", gofer.url), Some(&token(seconds))).unwrap();
        assert_eq!(status, 400, "expires_in_seconds {seconds}: {body}");
        assert!(body.contains("expires_in_seconds"), "{body}");
    }

    // Names are bounded, so that one config cannot make the pipeline list unreadable for everyone.
    let long_name =
        json!({ "id": "long", "name": "n".repeat(1_000_000), "tasks": [{ "id": "a", "image": "busybox" }] });
    let (status, body) = post_config(&gofer, "long", long_name);
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("invalid pipeline name"), "{body}");
    let wide = json!({ "id": "wide", "name": "w".repeat(256), "description": "d\n".repeat(4000),
        "tasks": [{ "id": "a", "image": "busybox" }] });
    assert_eq!(post_config(&gofer, "wide", wide).0, 201);
    let listed = gofer.cli_ok(&["pipeline", "list"]);
    assert!(listed.lines().all(|l| l.chars().count() < 400), "table cells are cut: {listed}");
    gofer.cli_ok(&["pipeline", "get", "wide"]);

    // Bodies are JSON objects; a misspelt config field is named, never ignored.
    let url = format!("{}/api/namespaces", gofer.url);
    let (status, body) =
        crate::harness::http_raw("POST", &url, &[("Content-Type", "application/json")], b"[]").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("JSON object"), "{body}");
    let misspelt = json!({ "id": "typo", "tasks": [
        { "id": "b", "image": "busybox" },
        { "id": "a", "image": "busybox", "dependson": { "b": "Success" } }
    ] });
    let (status, body) = post_config(&gofer, "typo", misspelt);
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("unknown field `dependson`"), "{body}");

    // References are checked when the config is registered, not when the run needs them.
    for (value, expected) in [
        ("pipeline_secret{{bad key!}}", "invalid secret key 'bad key!'"),
        ("run_object{{../../etc}}", "invalid object key"),
        ("global_secret{{half", "starts like a global_secret reference"),
    ] {
        let config = json!({ "id": "refs", "tasks": [{ "id": "a", "image": "busybox", "variables": { "V": value } }] });
        let (status, body) = post_config(&gofer, "refs", config);
        assert_eq!(status, 400, "{value}: {body}");
        assert!(body["message"].as_str().unwrap().contains(expected), "{value}: {body}");
    }
    let (status, _) = http("GET", &format!("{}/api/namespaces/default/pipelines/refs", gofer.url), None).unwrap();
    assert_eq!(status, 404, "nothing was stored for the refused configs");
    assert_eq!(http("GET", &format!("{}/api/health", gofer.url), None).unwrap().0, 200);
}

/// A failure inside the server answers 500 with a request id and nothing internal; the server's log has the chain
/// under that id.
#[test]
fn an_internal_error_names_a_request_id_and_keeps_the_details_in_the_servers_log() {
    let gofer = Server::start();
    gofer.register(script_pipeline("broken-log", "echo hi"));
    let run = gofer.start_run("broken-log", &[]);
    gofer.wait_run("broken-log", run);
    // Make the stored log unopenable the way a damaged data dir would: a link that points at itself.
    let log = gofer.data_path().join(format!("logs/default/broken-log/{run}/main.log"));
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&log, &log).unwrap();
    let url = format!("{}/api/namespaces/default/pipelines/broken-log/runs/{run}/tasks/main/logs", gofer.url);
    let (status, body) = http("GET", &url, None).unwrap();
    assert_eq!(status, 500, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "internal");
    let request_id = body["request_id"].as_str().unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(request_id), "{message}");
    assert!(!message.contains(gofer.data_path().to_str().unwrap()) && !message.contains("main.log"), "{message}");
    wait_for("the server to log the request id", std::time::Duration::from_secs(5), || {
        gofer.log().lines().any(|l| l.contains(request_id) && l.contains("logs")).then_some(())
    });
}
