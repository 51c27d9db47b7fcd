//! Gofer on PostgreSQL (`storage.kind = "postgres"`): the real binary on a real PostgreSQL server the test starts
//! itself, running containers on the real engine.

use std::time::Duration;

use gofer_storage_postgres::test_server::TestServer;
use serde_json::json;

use crate::harness::{Server, api, script_pipeline, wait_for};

fn gofer_on(database: &TestServer) -> Server {
    let url = database.url();
    Server::start_with(&[
        ("GOFER_STORAGE__KIND", "postgres"),
        ("GOFER_STORAGE__URL", &url),
        ("GOFER_STORAGE__POOL_SIZE", "4"),
    ])
}

#[test]
fn a_server_on_postgres_runs_pipelines_and_picks_up_its_runs_after_a_crash() {
    let database = TestServer::start();
    let mut gofer = gofer_on(&database);
    assert!(!gofer.data_path().join("gofer.db").exists(), "nothing is kept in SQLite");

    gofer.register(script_pipeline("pg", "echo hello; echo from postgres"));
    gofer.cli_ok(&["secret", "pipeline", "put", "pg", "TOKEN", "s3cret"]);
    let run = gofer.start_run("pg", &[]);
    assert_eq!(gofer.wait_run("pg", run)["status"], "successful");
    assert_eq!(gofer.logs("pg", run, "main"), b"hello\nfrom postgres\n");
    let events = gofer.cli_ok(&["event", "list", "--output", "json"]);
    let kinds: Vec<String> = events
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"]["type"].to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "\"run_completed\""), "{kinds:?}");

    // A crash mid-run: the restarted server finds the run in PostgreSQL and re-attaches its container.
    gofer.register(script_pipeline("slow", "echo before; sleep 2; echo after"));
    let run = gofer.start_run("slow", &[]);
    gofer.wait_task_state("slow", run, "main", "running");
    gofer.crash();
    gofer.restart();
    let done = gofer.wait_run("slow", run);
    assert_eq!(done["status"], "successful", "{done:#}");
    assert_eq!(gofer.logs("slow", run, "main"), b"before\nafter\n");
    assert_eq!(gofer.cli_json(&["secret", "pipeline", "list", "pg"]).as_array().unwrap().len(), 1);
}

#[test]
fn requests_get_503_while_the_database_is_away_and_runs_in_flight_are_recorded_when_it_returns() {
    let database = TestServer::start();
    let gofer = gofer_on(&database);
    gofer.register(script_pipeline("steady", "echo before; sleep 3; echo after"));
    let run = gofer.start_run("steady", &[]);
    gofer.wait_task_state("steady", run, "main", "running");

    database.stop();
    let (status, body) = api(&gofer, "GET", "/api/namespaces/default/pipelines/steady", None);
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("PostgreSQL"), "{body}");
    let (status, _) = api(&gofer, "POST", "/api/namespaces/default/pipelines/steady/runs", Some(&json!({})));
    assert_eq!(status, 503);

    database.resume();
    // The container went on; its end is recorded once the database is back, with all of its output.
    let done = wait_for("the run to be recorded as complete", Duration::from_secs(60), || {
        let (status, body) = api(&gofer, "GET", &format!("/api/namespaces/default/pipelines/steady/runs/{run}"), None);
        (status == 200 && body["state"] == "complete").then_some(body)
    });
    assert_eq!(done["status"], "successful", "{done:#}");
    assert_eq!(gofer.logs("steady", run, "main"), b"before\nafter\n");
    let again = gofer.start_run("steady", &[]);
    assert_eq!(gofer.wait_run("steady", again)["status"], "successful");
}
