//! Deployments on the real engine, through the real CLI: a failing canary rolled back, a good one promoted with its
//! declared subscription, blue/green verification that keeps blue live, a restart mid-canary, the exact split, and
//! rollback to an older version.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Server, api, script_pipeline, wait_for};

/// Registers a config without deploying it; returns its version.
pub(crate) fn register_only(gofer: &Server, config: Value) -> u64 {
    let id = config["id"].as_str().unwrap().to_string();
    let path = format!("/api/namespaces/default/pipelines/{id}/configs");
    let (status, body) = api(gofer, "POST", &path, Some(&json!({ "config": config })));
    assert!(status == 201 || status == 200, "register answered {status}: {body}");
    body["config"]["version"].as_u64().unwrap()
}

/// A one-task pipeline `svc` printing the version it runs and exiting with `code`.
fn svc(code: u8, note: &str) -> Value {
    script_pipeline("svc", &format!("echo \"version $GOFER_PIPELINE_VERSION {note}\"; exit {code}"))
}

/// Starts a run of `svc` and waits for it; returns the run.
fn complete_run(gofer: &Server) -> Value {
    let run = gofer.start_run("svc", &[]);
    gofer.wait_run("svc", run)
}

fn deployment(gofer: &Server, id: u64) -> Value {
    gofer.cli_json(&["deployment", "get", "svc", &id.to_string()])
}

fn wait_ended(gofer: &Server, id: u64) -> Value {
    wait_for(&format!("deployment {id} to end"), Duration::from_secs(90), || {
        let d = deployment(gofer, id);
        (d["state"] != "running").then_some(d)
    })
}

fn live_version(gofer: &Server) -> u64 {
    gofer.cli_json(&["pipeline", "get", "svc"])["live_version"].as_u64().unwrap()
}

/// `(version, started, successful, failed)` per version, summed over stages.
fn counts(deployment: &Value) -> Vec<(u64, u64, u64, u64)> {
    let mut sums: std::collections::BTreeMap<u64, (u64, u64, u64)> = Default::default();
    for c in deployment["counts"].as_array().unwrap() {
        let sum = sums.entry(c["version"].as_u64().unwrap()).or_default();
        sum.0 += c["started"].as_u64().unwrap();
        sum.1 += c["successful"].as_u64().unwrap();
        sum.2 += c["failed"].as_u64().unwrap();
    }
    sums.into_iter().map(|(v, (s, ok, f))| (v, s, ok, f)).collect()
}

/// Deploys version 2 of `svc` as a canary taking `weight` % of new runs, judged after `min_runs`.
pub(crate) fn deploy_canary(gofer: &Server, weight: &str, min_runs: &str) -> Value {
    gofer.cli_json(&[
        "pipeline",
        "config",
        "deploy",
        "svc",
        "2",
        "--strategy",
        "canary",
        "--weight",
        weight,
        "--min-runs",
        min_runs,
    ])
}

fn started_with_v1() -> Server {
    let gofer = Server::start();
    gofer.register(svc(0, "one"));
    gofer
}

#[test]
fn a_failing_canary_is_rolled_back_automatically_with_the_live_version_untouched() {
    let gofer = started_with_v1();
    assert_eq!(register_only(&gofer, svc(3, "two")), 2);
    let args =
        ["pipeline", "config", "deploy", "svc", "2", "--strategy", "canary", "--weight", "50", "--min-runs", "2"];
    let mut with_threshold = args.to_vec();
    with_threshold.extend(["--success-threshold", "100%"]);
    let started = gofer.cli_json(&with_threshold);
    assert_eq!((started["deployment_id"].as_u64(), started["state"].as_str()), (Some(2), Some("running")));
    let listed = gofer.cli_json(&["pipeline", "config", "list", "svc"]);
    assert_eq!(listed[0]["state"], "candidate", "{listed}");

    // Another deployment while this one runs is refused, naming it.
    let refused = gofer.cli(&["pipeline", "config", "deploy", "svc", "1"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("deployment 2 of pipeline 'svc' is still running"), "{stderr}");

    let first = complete_run(&gofer);
    assert_eq!((first["version"].as_u64(), first["status"].as_str()), (Some(1), Some("successful")));
    let second = complete_run(&gofer);
    assert_eq!((second["version"].as_u64(), second["status"].as_str()), (Some(2), Some("failed")));
    assert_eq!(second["routing"]["candidate"], true, "{second}");
    let ended = wait_ended(&gofer, 2);
    assert_eq!(ended["state"], "rolled_back", "{ended}");
    let reason = ended["reason"].as_str().unwrap();
    assert!(reason.contains("1 of 1 completed runs of version 2 failed") && reason.contains("run 2"), "{reason}");
    assert_eq!(counts(&ended), [(1, 1, 1, 0), (2, 1, 0, 1)]);
    assert_eq!(live_version(&gofer), 1);
    let after = complete_run(&gofer);
    assert_eq!((after["version"].as_u64(), after["routing"].is_null()), (Some(1), true));
    let logs = gofer.logs("svc", after["run_id"].as_u64().unwrap(), "main");
    assert_eq!(String::from_utf8_lossy(&logs), "version 1 one\n");
    let shown = gofer.cli_ok(&["deployment", "get", "svc", "2"]);
    assert!(shown.contains("rolled back: canary (50 %)"), "the timeline says what happened:\n{shown}");
}

#[test]
fn a_good_canary_is_promoted_and_its_declared_subscription_takes_effect_then() {
    let gofer = started_with_v1();
    let mut v2 = svc(0, "two");
    v2["subscriptions"] = json!([{ "extension": "interval", "label": "hourly", "settings": { "every": "1h" } }]);
    v2["deploy_strategy"] = json!({ "kind": "canary", "steps": [100], "min_runs": 2, "success_threshold": 0.5 });
    register_only(&gofer, v2);
    // No strategy flag: the config's declared strategy applies.
    let started = gofer.cli_json(&["pipeline", "config", "deploy", "svc", "2"]);
    assert_eq!((started["strategy"]["kind"].as_str(), started["state"].as_str()), (Some("canary"), Some("running")));
    let subscriptions = gofer.cli_json(&["pipeline", "subscriptions", "svc"]);
    assert_eq!(subscriptions, json!([]), "a candidate's subscriptions wait for its promotion");
    assert_eq!(complete_run(&gofer)["version"], 2);
    assert_eq!(complete_run(&gofer)["version"], 2);
    let ended = wait_ended(&gofer, 2);
    assert_eq!(ended["state"], "promoted", "{ended}");
    assert_eq!(counts(&ended), [(2, 2, 2, 0)]);
    assert_eq!(live_version(&gofer), 2);
    let subscriptions = gofer.cli_json(&["pipeline", "subscriptions", "svc"]);
    assert_eq!(subscriptions[0]["label"], "hourly", "{subscriptions}");
    let history = gofer.cli_json(&["deployment", "list", "svc"]);
    let states: Vec<&str> = history.as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["promoted", "promoted"]);
}

#[test]
fn blue_green_verification_failure_keeps_blue_live() {
    let gofer = started_with_v1();
    register_only(&gofer, script_pipeline("svc", "test \"$MODE\" = verify && exit 5; echo fine"));
    let args = ["pipeline", "config", "deploy", "svc", "2", "--strategy", "blue-green", "--verify-runs", "2"];
    let mut with_variable = args.to_vec();
    with_variable.extend(["-v", "MODE=verify"]);
    gofer.cli_json(&with_variable);
    let ended = wait_ended(&gofer, 2);
    assert_eq!(ended["state"], "rolled_back", "{ended}");
    assert!(ended["reason"].as_str().unwrap().contains("verification runs of version 2 did not succeed"), "{ended}");
    assert_eq!(live_version(&gofer), 1);
    let run = complete_run(&gofer);
    assert_eq!((run["version"].as_u64(), run["status"].as_str()), (Some(1), Some("successful")));
}

#[test]
fn a_restart_mid_canary_continues_the_deployment_with_its_counts() {
    let mut gofer = started_with_v1();
    register_only(&gofer, svc(0, "two"));
    deploy_canary(&gofer, "100", "2");
    assert_eq!(complete_run(&gofer)["version"], 2);
    gofer.crash();
    gofer.restart();
    let d = deployment(&gofer, 2);
    assert_eq!(d["state"], "running");
    assert_eq!(counts(&d), [(2, 1, 1, 0)], "the counts survived the restart");
    assert_eq!(complete_run(&gofer)["version"], 2, "it still routes");
    let ended = wait_ended(&gofer, 2);
    assert_eq!(ended["state"], "promoted", "{ended}");
    assert_eq!(counts(&ended), [(2, 2, 2, 0)]);
}

#[test]
fn the_split_is_exact_and_rollback_makes_new_runs_use_the_older_version() {
    let gofer = started_with_v1();
    register_only(&gofer, svc(0, "two"));
    deploy_canary(&gofer, "20", "1000");
    let runs: Vec<u64> = (0..10).map(|_| gofer.start_run("svc", &[])).collect();
    let versions: Vec<u64> = runs.iter().map(|r| gofer.run("svc", *r)["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [1, 1, 1, 1, 2, 1, 1, 1, 1, 2], "10 runs at 20 %: exactly runs 5 and 10");
    let explicit = gofer.start_run("svc", &["--version", "2"]);
    assert!(gofer.run("svc", explicit)["routing"].is_null(), "an explicit version is not routed");
    for run in runs.iter().chain([&explicit]) {
        gofer.wait_run("svc", *run);
    }
    assert_eq!(counts(&deployment(&gofer, 2)), [(1, 8, 8, 0), (2, 2, 2, 0)]);
    let promoted = gofer.cli_json(&["deployment", "promote", "svc", "2"]);
    assert_eq!(promoted["state"], "promoted");
    assert_eq!(live_version(&gofer), 2);

    let diff = gofer.cli_ok(&["pipeline", "config", "diff", "svc", "1", "2"]);
    assert!(diff.contains("~ task main") && diff.contains("~ command"), "{diff}");
    let refused = gofer.cli(&["pipeline", "config", "delete", "svc", "2"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is live"), "the live version is kept");

    let back = gofer.cli_json(&["pipeline", "rollback", "svc"]);
    assert_eq!((back["from_version"].as_u64(), back["to_version"].as_u64()), (Some(2), Some(1)));
    assert_eq!(back["state"], "promoted");
    let run = complete_run(&gofer);
    assert_eq!(run["version"], 1);
    let logs = gofer.logs("svc", run["run_id"].as_u64().unwrap(), "main");
    assert_eq!(String::from_utf8_lossy(&logs), "version 1 one\n");
}

#[test]
fn bad_deployment_input_is_refused_naming_what_is_wrong() {
    let gofer = started_with_v1();
    register_only(&gofer, svc(0, "two"));
    let deploy = "/api/namespaces/default/pipelines/svc/configs/2/deploy";
    for (body, expected) in [
        (json!({ "strategy": { "kind": "rolling" } }), "unknown variant `rolling`"),
        (json!({ "strategy": { "kind": "canary", "steps": [0], "min_runs": 1, "success_threshold": 0.5 } }), "weight"),
        (
            json!({ "strategy": { "kind": "canary", "steps": [50, 20], "min_runs": 1, "success_threshold": 0.5 } }),
            "steps",
        ),
        (
            json!({ "strategy": { "kind": "canary", "steps": [5], "min_runs": 1, "success_threshold": 2 } }),
            "success_threshold",
        ),
        (json!({ "strategy": { "kind": "blue_green", "verify_runs": 0 } }), "verify_runs"),
        (json!({ "strategy": { "kind": "blue_green", "verify_runs": 1, "extra": 1 } }), "unknown field `extra`"),
        (json!({ "force": true, "strategy": null, "later": 1 }), "unknown field `later`"),
    ] {
        let (status, answer) = api(&gofer, "POST", deploy, Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(expected), "{body}: {answer}");
    }
    let canary_of_live =
        json!({ "strategy": { "kind": "canary", "steps": [5], "min_runs": 1, "success_threshold": 1 } });
    let (status, answer) =
        api(&gofer, "POST", "/api/namespaces/default/pipelines/svc/configs/1/deploy", Some(&canary_of_live));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("already live"), "{answer}");
    let (status, answer) = api(&gofer, "POST", "/api/namespaces/default/pipelines/svc/configs/9/deploy", None);
    assert_eq!(status, 404, "{answer}");
    let runs = "/api/namespaces/default/pipelines/svc/runs";
    let (status, answer) = api(&gofer, "POST", runs, Some(&json!({ "version": 9 })));
    assert_eq!(status, 404, "an explicit version must exist: {answer}");
    let (status, answer) = api(&gofer, "POST", runs, Some(&json!({ "version": u64::MAX })));
    assert_eq!(status, 400, "{answer}");
    let rollback = "/api/namespaces/default/pipelines/svc/rollback";
    let (status, answer) = api(&gofer, "POST", rollback, None);
    assert_eq!(status, 409, "nothing was live before version 1: {answer}");
    assert!(answer["message"].as_str().unwrap().contains("--to VERSION"), "{answer}");
    let (status, answer) = api(&gofer, "POST", "/api/namespaces/default/pipelines/svc/deployments/1/abort", None);
    assert_eq!(status, 409, "an ended deployment cannot be aborted: {answer}");
    let flags = gofer.cli(&["pipeline", "config", "deploy", "svc", "2", "--weight", "10"]);
    assert_eq!(flags.status.code(), Some(1), "strategy flags without --strategy are refused");
    assert!(String::from_utf8_lossy(&flags.stderr).contains("need --strategy"));
    let share = gofer.cli(&[
        "pipeline",
        "config",
        "deploy",
        "svc",
        "2",
        "--strategy",
        "canary",
        "--weight",
        "10",
        "--success-threshold",
        "150%",
    ]);
    assert_eq!(share.status.code(), Some(2), "a wrong command line");
    assert_eq!(live_version(&gofer), 1, "nothing refused changed anything");
}

/// A pipeline program declaring a canary as its default strategy, its one task exiting with `exit_code`.
fn program(dir: &std::path::Path, exit_code: u8) {
    let main = format!(
        "use gofer_sdk::config::{{Pipeline, Strategy, Task}};\n\
         fn main() {{\n\
             Pipeline::new(\"svc\", \"svc\")\n\
                 .deploy_strategy(Strategy::canary(50, 1, 1.0))\n\
                 .tasks(vec![Task::new(\"main\", \"busybox:latest\").script(\"exit {exit_code}\")])\n\
                 .finish()\n\
                 .unwrap();\n\
         }}\n"
    );
    crate::harness::write_program(dir, &main);
}

#[test]
fn gofer_up_uses_the_strategy_the_program_declares_unless_told_otherwise() {
    let gofer = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    program(dir.path(), 0);
    let first = gofer.cli_json(&["up", path]);
    assert_eq!((first["state"].as_str(), first["strategy"]["kind"].as_str()), (Some("promoted"), Some("immediate")));
    assert!(first["reason"].as_str().unwrap().contains("nothing was live"), "{first}");
    program(dir.path(), 4);
    let second = gofer.cli_json(&["up", path]);
    assert_eq!((second["state"].as_str(), second["strategy"]["kind"].as_str()), (Some("running"), Some("canary")));
    complete_run(&gofer);
    assert_eq!(complete_run(&gofer)["version"], 2, "the second run goes to the canary");
    assert_eq!(wait_ended(&gofer, 2)["state"], "rolled_back");
    assert_eq!(live_version(&gofer), 1);
    let forced = gofer.cli_json(&["pipeline", "deploy", path, "--strategy", "immediate"]);
    assert_eq!((forced["state"].as_str(), forced["to_version"].as_u64()), (Some("promoted"), Some(2)));
    assert_eq!(live_version(&gofer), 2);
}
