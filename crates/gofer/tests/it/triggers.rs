//! Triggers: the built-in interval extension starts runs through subscriptions, and stops when told to.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Server, api, run_count, script_pipeline, wait_for, wait_periods};

const FAST: &[(&str, &str)] = &[("GOFER_EXTENSIONS__INTERVAL__MIN_INTERVAL", "1s")];

/// A pipeline the interval extension runs every second, to show that periods passed.
fn metronome(gofer: &Server) {
    gofer.register(script_pipeline("metronome", "true"));
    gofer.cli_ok(&["pipeline", "subscribe", "metronome", "interval", "beat", "-s", "every=1s"]);
}

#[test]
fn an_interval_subscription_starts_runs_until_unsubscribed() {
    let gofer = Server::start_with(FAST);
    gofer.register(script_pipeline("ticking", "echo $GOFER_EXTENSION_ID/$GOFER_EXTENSION_SUBSCRIPTION"));
    gofer.cli_ok(&["pipeline", "subscribe", "ticking", "interval", "fast", "-s", "every=1s"]);
    metronome(&gofer);
    wait_for("two runs started by the interval", Duration::from_secs(20), || {
        (run_count(&gofer, "ticking") >= 2).then_some(())
    });

    let first = gofer.wait_run("ticking", 1);
    assert_eq!(first["initiator"], json!({ "kind": "extension", "name": "interval" }));
    assert_eq!(gofer.logs("ticking", 1, "main"), b"interval/fast\n");
    let listed = gofer.cli_json(&["pipeline", "subscriptions", "ticking"]);
    assert!(listed[0]["last_fired"].as_u64().unwrap() > 0, "{listed:#}");

    gofer.cli_ok(&["pipeline", "unsubscribe", "ticking", "interval", "fast"]);
    let settled = run_count(&gofer, "ticking");
    wait_periods(&gofer, "metronome", 3); // three periods with no tick expected
    assert_eq!(run_count(&gofer, "ticking"), settled, "no runs after unsubscribing");
    let again = gofer.cli(&["pipeline", "unsubscribe", "ticking", "interval", "fast"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("subscription 'fast'"));
}

#[test]
fn disabling_a_subscription_or_the_extension_really_stops_triggers() {
    let gofer = Server::start_with(FAST);
    gofer.register(script_pipeline("switched", "true"));
    gofer.cli_ok(&["pipeline", "subscribe", "switched", "interval", "tick", "-s", "every=1s"]);
    metronome(&gofer);
    wait_for("a first run", Duration::from_secs(20), || (run_count(&gofer, "switched") >= 1).then_some(()));

    let path = "/api/namespaces/default/pipelines/switched/subscriptions/interval/tick";
    let (status, body) = api(&gofer, "PATCH", path, Some(&json!({ "enabled": false })));
    assert_eq!(status, 200, "{body}");
    let settled = run_count(&gofer, "switched");
    wait_periods(&gofer, "metronome", 3);
    assert_eq!(run_count(&gofer, "switched"), settled, "a disabled subscription triggers nothing");

    api(&gofer, "PATCH", path, Some(&json!({ "enabled": true })));
    wait_for("runs again", Duration::from_secs(20), || (run_count(&gofer, "switched") > settled).then_some(()));

    gofer.cli_ok(&["extension", "disable", "interval"]);
    assert_eq!(gofer.cli_json(&["extension", "get", "interval"])["enabled"], false);
    // Nothing is left to tick (the core's tests show on a clock they move that nothing does).
    let debug = gofer.cli_ok(&["extension", "debug", "interval"]);
    assert_eq!(debug.trim(), "no active subscriptions", "a disabled extension triggers nothing");
    let refused = gofer.cli(&["pipeline", "subscribe", "switched", "interval", "other", "-s", "every=1s"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("gofer extension enable interval"), "{refused:?}");

    gofer.cli_ok(&["extension", "enable", "interval"]);
    wait_for("runs after enabling", Duration::from_secs(20), || {
        (run_count(&gofer, "switched") > settled).then_some(())
    });
}

#[test]
fn bad_subscriptions_are_refused_and_nothing_is_stored() {
    let gofer = Server::start_with(FAST);
    gofer.register(script_pipeline("picky", "true"));
    let base = "/api/namespaces/default/pipelines/picky/subscriptions";
    for (request, status, expected) in [
        (
            json!({ "extension_id": "interval", "label": "a", "settings": { "every": "10ms" } }),
            400,
            "shorter than this server's minimum of 1s",
        ),
        (
            json!({ "extension_id": "interval", "label": "a", "settings": { "every": "soon" } }),
            400,
            "'soon' is not a duration",
        ),
        (json!({ "extension_id": "interval", "label": "a", "settings": {} }), 400, "'every' is required"),
        (
            json!({ "extension_id": "interval", "label": "bad label", "settings": { "every": "1m" } }),
            400,
            "invalid subscription label",
        ),
        (json!({ "extension_id": "nope", "label": "a", "settings": { "every": "1m" } }), 404, "extension 'nope'"),
    ] {
        let (got, body) = api(&gofer, "POST", base, Some(&request));
        assert_eq!(got, status, "{request}: {body}");
        assert!(body["message"].as_str().unwrap().contains(expected), "{request}: {body}");
    }
    assert_eq!(api(&gofer, "GET", base, None).1["subscriptions"], json!([]), "nothing stored half-way");

    let ok = json!({ "extension_id": "interval", "label": "hourly", "settings": { "every": "1h" } });
    assert_eq!(api(&gofer, "POST", base, Some(&ok)).0, 201);
    let (status, body) = api(&gofer, "POST", base, Some(&ok));
    assert_eq!(status, 409, "{body}");
    let (status, _) = api(&gofer, "POST", "/api/namespaces/default/pipelines/ghost/subscriptions", Some(&ok));
    assert_eq!(status, 404);
    assert_eq!(api(&gofer, "DELETE", &format!("{base}/interval/missing"), None).0, 404);
    assert_eq!(api(&gofer, "DELETE", &format!("{base}/nope/hourly"), None).0, 404);
}

#[test]
fn subscriptions_resume_after_a_restart_and_missed_ticks_run_once() {
    let mut gofer = Server::start_with(FAST);
    gofer.register(script_pipeline("durable", "true"));
    gofer.cli_ok(&["pipeline", "subscribe", "durable", "interval", "slow", "-s", "every=1h"]);
    metronome(&gofer);
    wait_periods(&gofer, "metronome", 1);
    gofer.crash();
    // Down since a tick three hours and ten minutes ago: three ticks were missed while down.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let down_since = now - (3 * 3600 + 600) * 1000;
    gofer.set_last_fired("durable", "interval", "slow", down_since);
    gofer.restart();
    // The missed ticks are coalesced into one run right away; the next comes a full period after that tick.
    wait_for("the coalesced run after restart", Duration::from_secs(10), || {
        (run_count(&gofer, "durable") == 1).then_some(())
    });
    wait_periods(&gofer, "metronome", 2);
    assert_eq!(run_count(&gofer, "durable"), 1, "missed ticks start one run, not one per tick");
    let listed = gofer.cli_json(&["pipeline", "subscriptions", "durable"]);
    assert_eq!(listed[0]["last_fired"], down_since + 3 * 3600 * 1000, "the latest missed tick ran: {listed:#}");
    let debug = gofer.cli_ok(&["extension", "debug", "interval"]);
    let line = debug.lines().find(|l| l.contains("'durable'")).unwrap_or_else(|| panic!("{debug}"));
    assert!(line.contains("next tick in"), "the schedule goes on: {line}");
}

#[test]
fn cron_subscriptions_take_standard_expressions_with_a_time_zone() {
    let gofer = Server::start();
    gofer.register(script_pipeline("nightly", "true"));
    let base = "/api/namespaces/default/pipelines/nightly/subscriptions";
    for (settings, expected) in [
        (json!({ "expression": "0 3 * *" }), "must have 5 fields"),
        (json!({ "expression": "0 25 * * *" }), "not a valid cron expression"),
        (json!({ "expression": "0 3 * * *", "timezone": "Mars/Olympus" }), "timezone 'Mars/Olympus' is unknown"),
    ] {
        let request = json!({ "extension_id": "cron", "label": "nightly", "settings": settings });
        let (status, body) = api(&gofer, "POST", base, Some(&request));
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(expected), "{body}");
    }
    gofer.cli_ok(&[
        "pipeline",
        "subscribe",
        "nightly",
        "cron",
        "at-three",
        "-s",
        "expression=0 3 * * *",
        "-s",
        "timezone=Europe/Berlin",
    ]);
    let listed = gofer.cli_json(&["pipeline", "subscriptions", "nightly"]);
    assert_eq!(listed[0]["extension_id"], "cron");
    assert_eq!(listed[0]["settings"]["timezone"], "Europe/Berlin");
    assert_eq!(gofer.extension_ids(), ["cron", "interval"], "both built-in extensions are installed by default");
}

/// A one-task config that declares `subscriptions` in code.
fn declaring(id: &str, subscriptions: serde_json::Value) -> serde_json::Value {
    let mut config = script_pipeline(id, "echo $GOFER_EXTENSION_SUBSCRIPTION");
    config["subscriptions"] = subscriptions;
    config
}

fn subscriptions(gofer: &Server, pipeline: &str) -> Vec<(String, String, String, bool)> {
    let listed = gofer.cli_json(&["pipeline", "subscriptions", pipeline]);
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let settings = s["settings"].as_object().unwrap().values().map(|v| v.as_str().unwrap()).collect();
            (
                s["extension_id"].as_str().unwrap().into(),
                s["label"].as_str().unwrap().into(),
                settings,
                s["declared"] == true,
            )
        })
        .collect()
}

#[test]
fn subscriptions_declared_in_code_are_reconciled_on_deploy() {
    let gofer = Server::start_with(FAST);
    let every = |d: &str| json!([{ "extension": "interval", "label": "tick", "settings": { "every": d } }]);
    gofer.register(declaring("coded", every("1s")));
    metronome(&gofer);
    assert_eq!(subscriptions(&gofer, "coded"), [("interval".into(), "tick".into(), "1s".into(), true)]);
    wait_for("runs from the declared subscription", Duration::from_secs(20), || {
        (run_count(&gofer, "coded") >= 2).then_some(())
    });
    assert_eq!(gofer.logs("coded", 1, "main"), b"tick\n");
    // One made by hand is left alone by deploys.
    gofer.cli_ok(&["pipeline", "subscribe", "coded", "cron", "manual", "-s", "expression=0 3 * * *"]);

    // Changed settings are applied; a subscription the code no longer declares is removed.
    gofer.register(declaring("coded", every("1h")));
    assert_eq!(
        subscriptions(&gofer, "coded"),
        [
            ("cron".into(), "manual".into(), "0 3 * * *".into(), false),
            ("interval".into(), "tick".into(), "1h".into(), true)
        ]
    );
    let settled = run_count(&gofer, "coded");
    wait_periods(&gofer, "metronome", 3);
    assert_eq!(run_count(&gofer, "coded"), settled, "the 1s timer was replaced by the 1h one");

    // A config whose subscriptions an extension refuses is refused when it is registered: nothing is stored, the
    // live version and the subscriptions stay.
    let base = format!("{}/api/namespaces/default/pipelines/coded", gofer.url);
    let bad = json!({ "config": declaring("coded", every("10ms")) });
    let (status, body) = crate::harness::http("POST", &format!("{base}/configs"), Some(&bad)).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("subscription 'tick' to extension 'interval'") && body.contains("shorter"), "{body}");
    let ghost = json!({ "config": declaring("coded", json!([{ "extension": "nope", "label": "x" }])) });
    let (status, body) = crate::harness::http("POST", &format!("{base}/configs"), Some(&ghost)).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("extension 'nope'"), "{body}");
    let pipeline = gofer.cli_json(&["pipeline", "get", "coded"]);
    assert_eq!((pipeline["live_version"].clone(), pipeline["latest_version"].clone()), (json!(2), json!(2)));
    assert_eq!(subscriptions(&gofer, "coded")[1], ("interval".into(), "tick".into(), "1h".into(), true));
    // A new pipeline whose first config is refused leaves no pipeline behind.
    let fresh = json!({ "config": declaring("fresh", every("10ms")) });
    let url = format!("{}/api/namespaces/default/pipelines/fresh/configs", gofer.url);
    assert_eq!(crate::harness::http("POST", &url, Some(&fresh)).unwrap().0, 400);
    let gone = crate::harness::http("GET", &format!("{}/api/namespaces/default/pipelines/fresh", gofer.url), None);
    assert_eq!(gone.unwrap().0, 404);

    gofer.register(declaring("coded", json!([])));
    assert_eq!(subscriptions(&gofer, "coded"), [("cron".into(), "manual".into(), "0 3 * * *".into(), false)]);
}
