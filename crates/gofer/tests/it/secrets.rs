//! Secrets on the real engine: sealed at rest (no value anywhere in the data dir), handed to tasks through
//! `pipeline_secret{{KEY}}` / `global_secret{{KEY}}`, masked in logs even when split across writes, refused with a
//! clear reason when missing or not allowed, and never readable with the wrong key.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{BIN, Server, api, script_pipeline, wait_for};

const VALUE: &str = "hunter2-c0rrect-h0rse";

/// A one-task pipeline whose task reads `reference` into MY_VAR and runs `script`.
fn reading(id: &str, reference: &str, script: &str) -> Value {
    let mut config = script_pipeline(id, script);
    config["tasks"][0]["variables"] = json!({ "MY_VAR": reference });
    config
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn a_pipeline_secret_reaches_its_task_sealed_at_rest_and_masked_in_logs() {
    let gofer = Server::start();
    // The value is printed whole, split across two writes, and next to other text.
    let script = "echo \"pw=$MY_VAR\"; printf '%s' \"$MY_VAR\" | cut -c1-8 | tr -d '\\n'; sleep 0.3; \
                  printf '%s\\n' \"$MY_VAR\" | cut -c9-; echo \"len=${#MY_VAR}\"";
    gofer.register(reading("backup", "pipeline_secret{{DB_PASSWORD}}", script));
    gofer.cli_ok(&["secret", "pipeline", "put", "backup", "DB_PASSWORD", VALUE]);
    let from_stdin = gofer.cli_with_stdin(&["secret", "pipeline", "put", "backup", "API_TOKEN", "@-"], b"from-stdin\n");
    assert!(from_stdin.status.success(), "{from_stdin:?}");

    let listed = gofer.cli_json(&["secret", "pipeline", "list", "backup"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:#}");
    assert!(!listed.to_string().contains(VALUE), "lists never carry values");
    let shown = gofer.cli_json(&["secret", "pipeline", "get", "backup", "DB_PASSWORD"]);
    assert!(shown.get("value").is_none(), "no value unless asked: {shown}");
    let asked = gofer.cli_json(&["secret", "pipeline", "get", "backup", "API_TOKEN", "--include-secret"]);
    assert_eq!(asked["value"], "from-stdin", "stdin, without its trailing newline");

    let run = gofer.start_run("backup", &[]);
    let done = gofer.wait_run("backup", run);
    assert_eq!(done["status"], "successful", "{done:#}");
    let logs = String::from_utf8(gofer.logs("backup", run, "main")).unwrap();
    assert_eq!(logs, format!("pw=***\n***\nlen={}\n", VALUE.len()), "the task saw the value; the log does not");
    let task = gofer.cli_json(&["task", "get", "backup", &run.to_string(), "main"]);
    assert!(!task.to_string().contains(VALUE), "the stored variables keep the reference: {task}");

    let leaks = files_containing(gofer.data_path(), VALUE.as_bytes());
    assert!(leaks.is_empty(), "the value is in plain text in {leaks:?}");
    assert!(!gofer.log().contains(VALUE), "nor in the server's log");

    // Deleting the pipeline deletes its secrets.
    gofer.cli_ok(&["pipeline", "delete", "backup"]);
    gofer.register(reading("backup", "pipeline_secret{{DB_PASSWORD}}", "true"));
    assert!(gofer.cli_json(&["secret", "pipeline", "list", "backup"]).as_array().unwrap().is_empty());
}

#[test]
fn missing_or_forbidden_secrets_fail_the_task_naming_the_key() {
    let gofer = Server::start();
    gofer.register(reading("needs-missing", "pipeline_secret{{NOPE}}", "echo should not run"));
    let run = gofer.start_run("needs-missing", &[]);
    let done = gofer.wait_run("needs-missing", run);
    assert_eq!(done["status"], "failed");
    let task = &gofer.tasks("needs-missing", run)["main"];
    assert_eq!(task["status_reason"]["reason"], "failed_precondition", "{task:#}");
    let why = task["status_reason"]["description"].as_str().unwrap();
    assert!(why.contains("variable MY_VAR: pipeline secret 'NOPE' does not exist"), "{why}");

    gofer.cli_ok(&["secret", "global", "put", "SLACK", VALUE, "--namespaces", "team-*"]);
    gofer.register(reading("notify", "global_secret{{SLACK}}", "echo \"slack=$MY_VAR\""));
    let run = gofer.start_run("notify", &[]);
    gofer.wait_run("notify", run);
    let why = gofer.tasks("notify", run)["main"]["status_reason"]["description"].as_str().unwrap().to_string();
    assert!(why.contains("global secret 'SLACK' may not be used in namespace 'default'"), "{why}");
    assert!(!why.contains(VALUE));

    // A namespace its pattern matches (the whole id) may use it.
    gofer.cli_ok(&["namespace", "create", "team-a"]);
    let config = reading("notify", "global_secret{{SLACK}}", "echo \"slack=$MY_VAR\"");
    let (status, body) =
        api(&gofer, "POST", "/api/namespaces/team-a/pipelines/notify/configs", Some(&json!({ "config": config })));
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(&gofer, "POST", "/api/namespaces/team-a/pipelines/notify/configs/1/deploy", None);
    assert_eq!(status, 201, "{body}");
    let run = gofer.cli_json(&["run", "start", "notify", "--namespace", "team-a"])["run_id"].as_u64().unwrap();
    wait_for("the team-a run", Duration::from_secs(60), || {
        let run = gofer.cli_json(&["run", "get", "notify", &run.to_string(), "--namespace", "team-a"]);
        (run["state"] == "complete").then_some(())
    });
    let out = gofer.cli(&["task", "logs", "notify", &run.to_string(), "main", "--namespace", "team-a"]);
    assert_eq!(out.stdout, b"slack=***\n");
    let listed = gofer.cli_json(&["secret", "global", "list"]);
    assert_eq!(listed[0]["namespaces"], json!(["team-*"]));
}

#[test]
fn bad_secret_input_is_refused_and_unknown_keys_are_404() {
    let gofer = Server::start_with(&[("GOFER_SECRETS__MAX_VALUE_BYTES", "1024")]);
    gofer.register(script_pipeline("p", "true"));
    let base = "/api/namespaces/default/pipelines/p/secrets";
    let big = json!({ "value": "x".repeat(2000) });
    let (status, body) = api(&gofer, "PUT", &format!("{base}/BIG"), Some(&big));
    assert_eq!(status, 413, "{body}");
    assert!(body["message"].as_str().unwrap().contains("secrets.max_value_bytes"), "{body}");
    let huge = json!({ "value": "x".repeat(3 * 1024 * 1024) });
    assert_eq!(api(&gofer, "PUT", &format!("{base}/HUGE"), Some(&huge)).0, 413, "beyond the body limit too");
    let (status, body) = api(&gofer, "PUT", &format!("{base}/..%2Fescape"), Some(&json!({ "value": "v" })));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("invalid secret key"), "{body}");
    let (status, body) = api(&gofer, "PUT", "/api/secrets/SHARED", Some(&json!({ "value": "v" })));
    assert_eq!(status, 400, "a global secret needs its namespaces: {body}");
    let (status, body) =
        api(&gofer, "PUT", "/api/secrets/SHARED", Some(&json!({ "value": "v", "namespaces": ["a/.*"] })));
    assert_eq!(status, 400, "{body}");
    assert_eq!(api(&gofer, "GET", &format!("{base}/MISSING"), None).0, 404);
    assert_eq!(api(&gofer, "DELETE", &format!("{base}/MISSING"), None).0, 404);
    assert_eq!(api(&gofer, "GET", "/api/secrets/MISSING", None).0, 404);
    let (status, _) =
        api(&gofer, "PUT", "/api/namespaces/default/pipelines/ghost/secrets/K", Some(&json!({ "value": "v" })));
    assert_eq!(status, 404);
    assert!(gofer.cli_json(&["secret", "pipeline", "list", "p"]).as_array().unwrap().is_empty(), "nothing stored");
}

#[test]
fn a_wrong_key_is_refused_at_startup_and_rotation_re_seals_everything() {
    let mut gofer = Server::start();
    gofer.register(script_pipeline("p", "true"));
    gofer.cli_ok(&["secret", "pipeline", "put", "p", "K", VALUE]);
    gofer.cli_ok(&["secret", "global", "put", "G", "global-value", "--namespaces", "*"]);
    gofer.crash();
    let data_dir = gofer.data_path().to_path_buf();

    let other_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let refused = Command::new(BIN)
        .args(["service", "start", "--bind-address", "127.0.0.1:0", "--external-bind-address", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("GOFER_SECRETS__KEY", other_key)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not the one the stored secrets were sealed with"), "{stderr}");

    let old_key = std::fs::read_to_string(data_dir.join("secret.key")).unwrap();
    let new_key_file = data_dir.join("new.key");
    std::fs::write(&new_key_file, "qUEvqSn4dQxDQ7RhTDbn3RQnsJeJQq5rRZIhE0O8X0M=\n").unwrap();
    let rotated = Command::new(BIN)
        .args(["service", "rotate-secret-key", "--new-key-file"])
        .arg(&new_key_file)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(String::from_utf8_lossy(&rotated.stderr).contains("Re-sealed 2 secret(s)"), "{rotated:?}");
    let now = std::fs::read_to_string(data_dir.join("secret.key")).unwrap();
    assert_ne!(now, old_key, "the data dir's key file holds the new key");

    gofer.restart();
    let shown = gofer.cli_json(&["secret", "pipeline", "get", "p", "K", "--include-secret"]);
    assert_eq!(shown["value"], VALUE);
    let shown = gofer.cli_json(&["secret", "global", "get", "G", "--include-secret"]);
    assert_eq!(shown["value"], "global-value");
}

/// A registry password written into a config is sealed like a secret: the config routes show a marker, the data
/// dir never holds the password, registering the same config again is a no-op, and a password that names a
/// secret is resolved (or the task fails naming it) when the container is made.
#[test]
fn registry_passwords_in_configs_are_sealed_and_never_returned() {
    let gofer = Server::start();
    let password = "s3cr3t-r3g1stry-pa55";
    let mut config = script_pipeline("private", "echo pulled");
    config["tasks"][0]["registry_auth"] = json!({ "user": "robot", "pass": password });
    let (status, registered) =
        api(&gofer, "POST", "/api/namespaces/default/pipelines/private/configs", Some(&json!({ "config": config })));
    assert_eq!(status, 201, "{registered}");
    let pass = registered["config"]["config"]["tasks"][0]["registry_auth"]["pass"].as_str().unwrap().to_string();
    assert!(pass.starts_with("sealed{{main:"), "{pass}");
    let (status, again) =
        api(&gofer, "POST", "/api/namespaces/default/pipelines/private/configs", Some(&json!({ "config": config })));
    assert_eq!((status, again["created"].clone()), (200, json!(false)), "unchanged: {again}");
    let (_, shown) = api(&gofer, "GET", "/api/namespaces/default/pipelines/private/configs/1", None);
    assert!(!shown.to_string().contains(password), "{shown}");
    // What the API showed can be registered again: the marker names the sealed password.
    config["tasks"][0]["registry_auth"]["pass"] = json!(pass);
    let (status, body) =
        api(&gofer, "POST", "/api/namespaces/default/pipelines/private/configs", Some(&json!({ "config": config })));
    assert_eq!(status, 200, "the same config: {body}");
    let listed = gofer.cli_json(&["secret", "pipeline", "list", "private"]);
    assert!(listed.as_array().unwrap().is_empty(), "sealed passwords are not user secrets: {listed}");

    let (status, body) = api(&gofer, "POST", "/api/namespaces/default/pipelines/private/configs/1/deploy", None);
    assert_eq!(status, 201, "{body}");
    let run = gofer.start_run("private", &[]);
    assert_eq!(gofer.wait_run("private", run)["status"], "successful");
    let task = gofer.cli_json(&["task", "get", "private", &run.to_string(), "main"]);
    assert!(!task.to_string().contains(password), "{task}");
    let leaks = files_containing(gofer.data_path(), password.as_bytes());
    assert!(leaks.is_empty(), "the password is in plain text in {leaks:?}");

    // A marker from another pipeline (or made up) is refused; a secret reference is resolved at start.
    let mut other = script_pipeline("other", "true");
    other["tasks"][0]["registry_auth"] = json!({ "user": "robot", "pass": pass });
    let (status, body) =
        api(&gofer, "POST", "/api/namespaces/default/pipelines/other/configs", Some(&json!({ "config": other })));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("names no password sealed for this pipeline"), "{body}");
    let mut referring = script_pipeline("referring", "true");
    referring["tasks"][0]["registry_auth"] = json!({ "user": "robot", "pass": "pipeline_secret{{REGISTRY}}" });
    gofer.register(referring);
    let run = gofer.start_run("referring", &[]);
    assert_eq!(gofer.wait_run("referring", run)["status"], "failed");
    let task = &gofer.tasks("referring", run)["main"];
    assert_eq!(task["status_reason"]["reason"], "failed_precondition", "{task:#}");
    let why = task["status_reason"]["description"].as_str().unwrap();
    assert!(why.contains("registry_auth.pass: pipeline secret 'REGISTRY' does not exist"), "{why}");
}
