//! The configs both SDKs write match the JSON Schema Gofer publishes (`docs/pipeline-config.schema.json`), checked
//! by a real validator (Python's `jsonschema`, draft 2020-12): every valid shared vector (which the Rust and Go SDKs
//! write byte for byte alike, `sdk/testdata/vectors.json`) and what the Go example program prints.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::repo_root;

/// Validates each document against the published schema; returns the problems, one line each.
fn schema_problems(documents: &[Value]) -> String {
    const SCRIPT: &str = "import json, sys\n\
        from jsonschema import Draft202012Validator\n\
        schema = json.load(open(sys.argv[1]))\n\
        Draft202012Validator.check_schema(schema)\n\
        validator = Draft202012Validator(schema)\n\
        for i, doc in enumerate(json.load(sys.stdin)):\n\
        \x20   for error in validator.iter_errors(doc):\n\
        \x20       print(f'document {i}: {error.json_path}: {error.message}')\n";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(repo_root().join("docs/pipeline-config.schema.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(documents).unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the schema check did not run (scripts/ensure-prometheus-parser.sh installs jsonschema): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn what_both_sdks_write_matches_the_published_schema() {
    let vectors: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("sdk/testdata/vectors.json")).unwrap()).unwrap();
    let mut documents: Vec<Value> =
        vectors.iter().filter_map(|v| v["json"].as_str()).map(|json| serde_json::from_str(json).unwrap()).collect();
    assert!(documents.len() >= 5, "valid vectors: {}", documents.len());
    let go = Command::new("go").args(["run", "."]).current_dir(repo_root().join("examples/go-dag")).output().unwrap();
    assert!(go.status.success(), "{go:?}");
    documents.push(serde_json::from_slice(&go.stdout).unwrap());
    let problems = schema_problems(&documents);
    assert!(problems.is_empty(), "{problems}");

    // The check can fail: a document the schema refuses is reported.
    let mut wrong = documents[0].clone();
    wrong["tasks"][0]["retries"] = Value::from(-1);
    wrong["surprise"] = Value::from(true);
    let problems = schema_problems(&[wrong]);
    assert!(problems.contains("surprise") && problems.contains("retries"), "{problems}");
}

#[test]
fn the_typed_client_drives_a_real_server_and_reports_its_errors() {
    let gofer = crate::harness::Server::start();
    gofer.register(crate::harness::script_pipeline("typed", "echo typed client"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = gofer_client::Client::new(&gofer.url, "default", None, None).unwrap();
        let pipelines = client.list_pipelines().await.unwrap().pipelines;
        assert!(pipelines.iter().any(|p| p.pipeline_id == "typed"), "{pipelines:?}");
        let variables = std::collections::BTreeMap::from([("WHO".to_string(), "client".to_string())]);
        let run = client.start_run("typed", variables, None).await.unwrap();
        assert_eq!((run.pipeline_id.as_str(), run.run_id), ("typed", 1));
        let done = loop {
            let current = client.get_run("typed", run.run_id).await.unwrap();
            if current.is_complete() {
                break current;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(done.status.to_string(), "successful");
        let tasks = client.list_tasks("typed", run.run_id).await.unwrap().task_executions;
        assert_eq!(tasks.len(), 1);
        assert!(tasks[0].variables.iter().any(|v| v.key == "WHO" && v.value == "client"));

        // The server's own error: status, stable code, message.
        let missing = client.get_run("typed", 99).await.unwrap_err();
        assert_eq!(missing.status().map(|s| s.as_u16()), Some(404));
        match &missing {
            gofer_client::Error::Api { error, .. } => {
                assert_eq!(error.code, gofer_api_code("not_found"), "{error:?}");
            }
            other => panic!("{other:?}"),
        }
        // Another namespace through the same client.
        let elsewhere = client.in_namespace("nowhere");
        assert_eq!(elsewhere.namespace(), "nowhere");
        assert_eq!(elsewhere.list_pipelines().await.unwrap_err().status().map(|s| s.as_u16()), Some(404));
        // Nobody listening: a transport error that says where it looked.
        let closed = gofer_client::Client::new("http://127.0.0.1:9", "default", None, None).unwrap();
        let unreachable = closed.list_pipelines().await.unwrap_err().to_string();
        assert!(unreachable.contains("cannot reach Gofer at http://127.0.0.1:9"), "{unreachable}");
    });
}

/// An error code as the API spells it.
fn gofer_api_code(code: &str) -> gofer_client::api::error::ErrorCode {
    serde_json::from_value(Value::from(code)).unwrap()
}
