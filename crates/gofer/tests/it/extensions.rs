//! Container extensions on the real engine: the example `heartbeat` extension (built with the extension SDK,
//! packaged as an image here) is installed into a running Gofer, subscribed to, and starts runs; Gofer supervises
//! it (a killed container is started again and gets its subscriptions back; so after a Gofer restart), and an
//! install that cannot work leaves nothing behind.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Server, api, http_raw, run_count, script_pipeline, wait_for, wait_periods};
use crate::images;

const SCRIPT: &str = "echo $GOFER_EXTENSION_ID/$GOFER_EXTENSION_SUBSCRIPTION beat=$HEARTBEAT_BEAT $HEARTBEAT_GREETING";

fn wait_runs(gofer: &Server, pipeline: &str, at_least: usize) {
    wait_for(&format!("{at_least} runs of {pipeline}"), Duration::from_secs(30), || {
        (run_count(gofer, pipeline) >= at_least).then_some(())
    });
}

/// This installation's containers of one extension, running or not.
fn extension_containers(gofer: &Server, id: &str) -> Vec<String> {
    let installation = std::fs::read_to_string(gofer.data_path().join("installation_id")).unwrap();
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=dev.gofer.installation={}", installation.trim()))
        .args(["--filter", &format!("label=dev.gofer.extension={id}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn install_heartbeat(gofer: &Server) -> Value {
    gofer.cli_json(&["extension", "install", "heartbeat", images::heartbeat(), "-s", "greeting=hi"])
}

fn extension(gofer: &Server, id: &str) -> Value {
    gofer.cli_json(&["extension", "get", id])
}

#[test]
fn a_container_extension_is_installed_subscribed_to_and_starts_runs() {
    let gofer = Server::start();
    let installed = install_heartbeat(&gofer);
    assert_eq!(installed["kind"], "container", "{installed:#}");
    assert_eq!(installed["state"], "running");
    assert_eq!(installed["image"], images::HEARTBEAT);
    assert_eq!(installed["subscription_params"][0]["key"], "every", "documentation read from /api/info");
    assert_eq!(installed["config_params"][0]["key"], "greeting");
    assert_eq!(extension_containers(&gofer, "heartbeat").len(), 1);

    gofer.register(script_pipeline("beating", SCRIPT));
    // The extension checks the settings; its words come back and nothing is stored.
    let refused = gofer.cli(&["pipeline", "subscribe", "beating", "heartbeat", "fast", "-s", "every=10ms"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("shorter than the heartbeat's minimum of 1s"), "{stderr}");
    assert!(gofer.cli_json(&["pipeline", "subscriptions", "beating"]).as_array().unwrap().is_empty());

    gofer.cli_ok(&["pipeline", "subscribe", "beating", "heartbeat", "pulse", "-s", "every=1s"]);
    wait_runs(&gofer, "beating", 2);
    let first = gofer.wait_run("beating", 1);
    assert_eq!(first["status"], "successful", "{first:#}");
    assert_eq!(first["initiator"], json!({ "kind": "extension", "name": "heartbeat" }), "known by its token");
    assert_eq!(gofer.logs("beating", 1, "main"), b"heartbeat/pulse beat=1 hi\n");
    let listed = api(&gofer, "GET", "/api/extensions/heartbeat/subscriptions", None).1;
    assert_eq!(listed["subscriptions"][0]["label"], "pulse", "{listed}");

    let debug = gofer.cli_ok(&["extension", "debug", "heartbeat"]);
    assert!(debug.contains("default/beating/pulse: every 1s"), "{debug}");
    let logs = String::from_utf8(gofer.cli(&["extension", "logs", "heartbeat"]).stdout).unwrap();
    assert!(logs.contains("extension is ready"), "{logs}");

    // Webhooks reach container extensions too, through the external-events listener.
    let url = format!("{}/api/external/heartbeat", gofer.external_url);
    let (status, body) = http_raw("POST", &url, &[("Content-Type", "text/plain")], b"beat now").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("started 1 run(s)"), "{body}");
    let (status, body) = http_raw("POST", &url, &[], b"").unwrap();
    assert_eq!(status, 400, "the extension's refusal is passed on: {body}");

    // Another subscription of the same extension keeps beating: it shows the periods passing.
    gofer.register(script_pipeline("metronome", "true"));
    gofer.cli_ok(&["pipeline", "subscribe", "metronome", "heartbeat", "beat", "-s", "every=1s"]);
    gofer.cli_ok(&["pipeline", "unsubscribe", "beating", "heartbeat", "pulse"]);
    let settled = run_count(&gofer, "beating");
    wait_periods(&gofer, "metronome", 3); // three beats' worth of silence expected
    assert_eq!(run_count(&gofer, "beating"), settled, "no runs after unsubscribing");

    gofer.cli_ok(&["extension", "uninstall", "heartbeat"]);
    wait_for("the extension's container to be removed", Duration::from_secs(20), || {
        extension_containers(&gofer, "heartbeat").is_empty().then_some(())
    });
    assert_eq!(api(&gofer, "GET", "/api/extensions/heartbeat", None).0, 404);
    assert_eq!(api(&gofer, "DELETE", "/api/extensions/heartbeat", None).0, 404);
}

#[test]
fn a_dead_extension_is_restarted_with_its_subscriptions_and_so_after_a_gofer_restart() {
    let mut gofer = Server::start_with(&[("GOFER_EXTENSIONS__INTERVAL__MIN_INTERVAL", "1s")]);
    install_heartbeat(&gofer);
    gofer.register(script_pipeline("steady", SCRIPT));
    gofer.cli_ok(&["pipeline", "subscribe", "steady", "heartbeat", "pulse", "-s", "every=1s"]);
    wait_runs(&gofer, "steady", 1);

    let container = extension_containers(&gofer, "heartbeat").remove(0);
    assert!(Command::new("docker").args(["kill", &container]).status().unwrap().success());
    let restarted = wait_for("the extension to be started again", Duration::from_secs(30), || {
        let ext = extension(&gofer, "heartbeat");
        (ext["restarts"] == 1 && ext["state"] == "running").then_some(ext)
    });
    assert!(restarted["problem"].as_str().unwrap().contains("exited with code 137"), "{restarted:#}");
    let before = run_count(&gofer, "steady");
    wait_runs(&gofer, "steady", before + 2);
    let events: Vec<Value> = gofer
        .cli_ok(&["event", "list", "--output", "json"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"]["type"] == "extension_state_changed")
        .map(|e| e["kind"]["state"].as_str().unwrap())
        .collect();
    assert!(states.ends_with(&["restarting", "starting", "running"]), "{states:?}");

    // Gofer crashes; the old container is replaced and the subscription resumes.
    gofer.crash();
    gofer.restart();
    wait_for("the extension to run again after the restart", Duration::from_secs(30), || {
        (extension(&gofer, "heartbeat")["state"] == "running").then_some(())
    });
    let before = run_count(&gofer, "steady");
    wait_runs(&gofer, "steady", before + 2);
    assert_eq!(extension_containers(&gofer, "heartbeat").len(), 1, "the old container was replaced, not kept");

    // Disabling really stops it: no container, no runs. Enabling brings both back.
    gofer.cli_ok(&["extension", "disable", "heartbeat"]);
    assert_eq!(extension(&gofer, "heartbeat")["state"], "stopped");
    assert!(extension_containers(&gofer, "heartbeat").is_empty());
    let settled = run_count(&gofer, "steady");
    // The interval extension shows the periods passing.
    gofer.register(script_pipeline("metronome", "true"));
    gofer.cli_ok(&["pipeline", "subscribe", "metronome", "interval", "beat", "-s", "every=1s"]);
    wait_periods(&gofer, "metronome", 3);
    assert_eq!(run_count(&gofer, "steady"), settled, "a disabled extension starts no runs");
    gofer.cli_ok(&["extension", "enable", "heartbeat"]);
    wait_runs(&gofer, "steady", settled + 1);
    gofer.cli_ok(&["extension", "uninstall", "heartbeat"]);
}

#[test]
fn installs_that_cannot_work_leave_nothing_behind() {
    let gofer = Server::start_with(&[("GOFER_EXTENSIONS__START_TIMEOUT_SECONDS", "2")]);
    let cases = [
        ("ghost", "gofer-test/not-there:latest", "is not available"),
        ("sleepy", images::sleeper(), "did not answer GET /api/health on port 8082 within 2s"),
        ("quitter", "busybox:latest", "exited with code 0 before answering"),
    ];
    for (id, image, expected) in cases {
        let (status, body) = api(&gofer, "POST", "/api/extensions", Some(&json!({ "id": id, "image": image })));
        assert_eq!(status, 400, "{id}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(&format!("extension '{id}' was not installed")), "{message}");
        assert!(message.contains(expected), "{id}: {message}");
        assert!(extension_containers(&gofer, id).is_empty(), "{id}: no container left");
        assert_eq!(api(&gofer, "GET", &format!("/api/extensions/{id}"), None).0, 404, "{id}: nothing stored");
        // Its role and token, made before its container started, went with it.
        assert_eq!(api(&gofer, "GET", &format!("/api/roles/extension_{id}"), None).0, 404, "{id}: no role left");
        let (_, tokens) = api(&gofer, "GET", "/api/tokens", None);
        let users: Vec<&str> = tokens["tokens"].as_array().unwrap().iter().filter_map(|t| t["user"].as_str()).collect();
        assert!(!users.contains(&format!("extension:{id}").as_str()), "{id}: no token left: {users:?}");
    }
    assert_eq!(gofer.extension_ids(), ["cron", "interval"]);

    for (request, status, expected) in [
        (json!({ "id": "cron", "image": "x" }), 409, "built-in"),
        (json!({ "id": "github", "image": "x" }), 409, "built-in"),
        (json!({ "id": "bad id", "image": "x" }), 400, "extension id"),
        (json!({ "id": "fine", "image": " " }), 400, "image is empty"),
    ] {
        let (got, body) = api(&gofer, "POST", "/api/extensions", Some(&request));
        assert_eq!(got, status, "{body}");
        assert!(body["message"].as_str().unwrap().contains(expected), "{body}");
    }
    let (status, body) = api(&gofer, "DELETE", "/api/extensions/interval", None);
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("disable it instead"), "{body}");
    let (status, body) = api(&gofer, "GET", "/api/extensions/interval/logs", None);
    assert_eq!(status, 400, "{body}");
}

/// An extension of the earlier Gofer — Go's standard library and the documented protocol, nothing of this Gofer's —
/// is installed, validates and receives a subscription, starts runs with its token, and after its container is
/// killed restores its subscriptions itself from the listing, reading the earlier fields (`subscription_id`,
/// `status`) and reaching the API through `GOFER_EXTENSION_SYSTEM_GOFER_HOST` with the scheme it adds.
#[test]
fn an_extension_written_for_the_earlier_protocol_works_unchanged() {
    let gofer = Server::start();
    let installed = gofer.cli_json(&["extension", "install", "earlier", images::earlier_extension()]);
    assert_eq!(installed["state"], "running", "{installed:#}");
    gofer.register(script_pipeline("hooked", "echo \"$ORIGIN $MESSAGE by $GOFER_EXTENSION_ID\""));

    // Its own validation: a subscription without `message` is refused with its message.
    let refused = gofer.cli(&["pipeline", "subscribe", "hooked", "earlier", "bad"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the setting `message` is required"), "{refused:?}");

    gofer.cli_ok(&["pipeline", "subscribe", "hooked", "earlier", "main", "-s", "message=hello"]);
    wait_runs(&gofer, "hooked", 1);
    let first = gofer.wait_run("hooked", 1);
    assert_eq!(first["initiator"], json!({ "kind": "extension", "name": "earlier" }));
    assert_eq!(first["status"], "successful");
    assert_eq!(gofer.logs("hooked", 1, "main"), b"subscribe hello by earlier\n");

    // The listing it restores from carries what it reads.
    let (status, listed) = api(&gofer, "GET", "/api/extensions/earlier/subscriptions", None);
    assert_eq!(status, 200, "{listed:#}");
    let subscription = &listed["subscriptions"][0];
    assert_eq!((&subscription["subscription_id"], &subscription["status"]), (&json!("main"), &json!("active")));

    // Killed, it is started again and restores its subscription from the listing by itself.
    let container = extension_containers(&gofer, "earlier").remove(0);
    assert!(Command::new("docker").args(["kill", &container]).status().unwrap().success());
    wait_for("a run the extension started from its restored subscription", Duration::from_secs(30), || {
        let runs = run_count(&gofer, "hooked") as u64;
        (1..=runs).find(|&run| {
            let done = gofer.run("hooked", run);
            done["state"] == "complete" && gofer.logs("hooked", run, "main") == b"restore hello by earlier\n"
        })
    });

    // Unsubscribing reaches it: its own view says so.
    gofer.cli_ok(&["pipeline", "unsubscribe", "hooked", "earlier", "main"]);
    let debug = gofer.cli_ok(&["extension", "debug", "earlier"]);
    assert!(debug.contains("0 active subscription(s)"), "{debug}");
}
