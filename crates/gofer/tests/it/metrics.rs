//! Prometheus metrics on the real binary: scraped while runs are in flight and after they end, parsed by the
//! Prometheus project's own Python parser (`prometheus_client` from PyPI; `scripts/test.sh` installs it), and
//! checked against what happened. And who may scrape: production mode needs `system:read` unless public; a
//! listener of their own serves them instead of the API's.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Server, http_raw, run_count, script_pipeline, wait_for};

/// The Python that has `prometheus_client` (`scripts/ensure-prometheus-parser.sh` installs it): `GOFER_TEST_PYTHON`
/// when set, else `python3`.
fn python() -> String {
    std::env::var("GOFER_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Parses exposition text with `prometheus_client.parser` into samples: (name, labels, value).
fn parse(text: &str) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    const SCRIPT: &str = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out.append([s.name, s.labels, s.value, family.type])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new(python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs what the tests need)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client could not parse the metrics (install it: `pip install prometheus_client`, or run \
         scripts/test.sh): {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    samples
        .into_iter()
        .map(|s| (s[0].as_str().unwrap().to_string(), s[1].as_object().unwrap().clone(), s[2].as_f64().unwrap()))
        .collect()
}

/// Parsed samples, looked up by name and labels.
struct Scrape {
    samples: Vec<(String, serde_json::Map<String, Value>, f64)>,
    /// The families the text declares (`# TYPE` lines), those without series too.
    families: std::collections::BTreeSet<String>,
}

impl Scrape {
    fn of(url: &str, token: Option<&str>) -> Scrape {
        let (status, text) = get(url, token);
        assert_eq!(status, 200, "{text}");
        let families = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE ")?.split_whitespace().next().map(str::to_string))
            .collect();
        Scrape { samples: parse(&text), families }
    }

    /// The value of the one sample named `name` whose labels are exactly `labels`; `None` when there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name && l.len() == labels.len() && labels.iter().all(|(k, v)| l.get(*k) == Some(&json!(v)))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(matching.len() <= 1, "{name} {labels:?} matched {} samples", matching.len());
        matching.first().copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let names: Vec<String> = self.samples.iter().filter(|s| s.0 == name).map(|s| format!("{s:?}")).collect();
            panic!("no sample {name} {labels:?}; samples of that name: {names:#?}")
        })
    }

    fn names(&self) -> std::collections::BTreeSet<&str> {
        self.samples.iter().map(|s| s.0.as_str()).collect()
    }
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http_raw("GET", url, &headers, b"").unwrap()
}

const RUNS_ROUTE: &str = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs";

#[test]
fn metrics_count_what_happened_and_parse_as_prometheus_text() {
    let gofer = Server::start_with(&[("GOFER_EXTENSIONS__INTERVAL__MIN_INTERVAL", "1s")]);
    let metrics_url = format!("{}/metrics", gofer.url);
    // One run at a time: the second waits in the queue while the first's task runs.
    let mut held = script_pipeline("held", "printf 'held output\\n'; sleep 600");
    held["parallelism"] = json!(1);
    gofer.register(held);
    gofer.register(script_pipeline("quick", "printf 'twelve bytes'"));

    let first = gofer.start_run("held", &[]);
    gofer.wait_task_state("held", first, "main", "running");
    let second = gofer.start_run("held", &[]);
    let held_labels = [("namespace", "default"), ("pipeline", "held")];
    let manual = [("namespace", "default"), ("pipeline", "held"), ("trigger", "manual")];

    // While the first run's task runs and the second waits.
    let during = Scrape::of(&metrics_url, None);
    assert_eq!(during.value("gofer_tasks_running", &held_labels), 1.0);
    assert_eq!(during.value("gofer_runs_waiting", &held_labels), 1.0);
    assert_eq!(during.value("gofer_runs_queued_total", &manual), 2.0);
    assert_eq!(during.value("gofer_runs_started_total", &manual), 1.0);
    let build = during.samples.iter().find(|s| s.0 == "gofer_build_info").expect("build info");
    assert_eq!(build.1["version"], json!(env!("CARGO_PKG_VERSION")));
    assert!(build.1.contains_key("commit"));

    // Both runs cancelled (the second after it started), and a quick one succeeds.
    gofer.cli_ok(&["run", "cancel", "held", &first.to_string()]);
    gofer.wait_task_state("held", second, "main", "running");
    gofer.cli_ok(&["run", "cancel", "held", &second.to_string()]);
    let quick = gofer.start_run("quick", &[]);
    for (pipeline, run) in [("held", first), ("held", second), ("quick", quick)] {
        gofer.wait_run(pipeline, run);
    }

    let after = Scrape::of(&metrics_url, None);
    let cancelled = [("namespace", "default"), ("pipeline", "held"), ("trigger", "manual"), ("status", "cancelled")];
    assert_eq!(after.value("gofer_runs_completed_total", &cancelled), 2.0);
    let successful = [("namespace", "default"), ("pipeline", "quick"), ("trigger", "manual"), ("status", "successful")];
    assert_eq!(after.value("gofer_runs_completed_total", &successful), 1.0);
    assert_eq!(after.value("gofer_runs_started_total", &manual), 2.0);
    assert_eq!(after.value("gofer_tasks_running", &held_labels), 0.0);
    assert_eq!(after.get("gofer_runs_waiting", &held_labels), None, "nothing waits any more");
    let held_cancelled = [("namespace", "default"), ("pipeline", "held"), ("status", "cancelled")];
    assert_eq!(after.value("gofer_run_duration_seconds_count", &held_cancelled), 2.0);
    assert_eq!(after.value("gofer_task_duration_seconds_count", &held_cancelled), 2.0);
    assert_eq!(after.value("gofer_run_queue_wait_seconds_count", &held_labels), 2.0);
    let quick_ok = [("namespace", "default"), ("pipeline", "quick"), ("status", "successful")];
    let bucket = |le: &str| {
        let labels = [("namespace", "default"), ("pipeline", "quick"), ("status", "successful"), ("le", le)];
        after.value("gofer_run_duration_seconds_bucket", &labels)
    };
    assert_eq!(bucket("+Inf"), after.value("gofer_run_duration_seconds_count", &quick_ok));
    // Log bytes are the bytes of the stored logs.
    let mut held_bytes = 0;
    for run in [first, second] {
        held_bytes += gofer.logs("held", run, "main").len();
    }
    assert_eq!(held_bytes, 2 * "held output\n".len());
    assert_eq!(after.value("gofer_task_log_bytes_total", &held_labels), held_bytes as f64);
    let quick_labels = [("namespace", "default"), ("pipeline", "quick")];
    assert_eq!(after.value("gofer_task_log_bytes_total", &quick_labels), 12.0);
    // Requests by route template and status: three runs were started through the API.
    let started = [("method", "POST"), ("route", RUNS_ROUTE), ("status", "201")];
    assert_eq!(after.value("gofer_http_requests_total", &started), 3.0);
    assert!(
        after.value("gofer_http_request_duration_seconds_count", &[("method", "POST"), ("route", RUNS_ROUTE)]) >= 3.0
    );
    assert!(after.value("gofer_storage_query_duration_seconds_count", &[("operation", "read")]) > 0.0);
    assert!(after.value("gofer_storage_query_duration_seconds_count", &[("operation", "write")]) > 0.0);
    // Every deploy (register promotes at once) counted by outcome.
    let promoted = [("namespace", "default"), ("pipeline", "quick"), ("outcome", "promoted")];
    assert_eq!(after.value("gofer_deployments_total", &promoted), 1.0);

    // Triggers: runs an interval subscription started, then firings refused while the pipeline is disabled.
    gofer.register(script_pipeline("ticked", "true"));
    gofer.cli_ok(&["pipeline", "subscribe", "ticked", "interval", "beat", "-s", "every=1s"]);
    wait_for("two runs by the interval", Duration::from_secs(20), || (run_count(&gofer, "ticked") >= 2).then_some(()));
    gofer.cli_ok(&["pipeline", "disable", "ticked"]);
    let interval = [("extension", "interval")];
    let scrape = wait_for("a firing refused by the disabled pipeline", Duration::from_secs(20), || {
        let scrape = Scrape::of(&metrics_url, None);
        scrape.get("gofer_trigger_failures_total", &interval).is_some_and(|v| v >= 1.0).then_some(scrape)
    });
    // Disabled, it starts no more runs: every run it has is one firing.
    assert_eq!(scrape.value("gofer_trigger_fires_total", &interval), run_count(&gofer, "ticked") as f64);
    let by_interval = [("namespace", "default"), ("pipeline", "ticked"), ("trigger", "interval")];
    assert_eq!(scrape.value("gofer_runs_queued_total", &by_interval), run_count(&gofer, "ticked") as f64);

    // Every exported family is listed in docs/metrics.md (a unit test of gofer-core holds the list to every
    // registered family), and the dashboard and alert rules name only listed ones.
    let docs = crate::harness::repo_root().join("docs");
    let documented = std::fs::read_to_string(docs.join("metrics.md")).unwrap();
    let families: std::collections::BTreeSet<&str> =
        documented.lines().filter_map(|line| line.strip_prefix("| `")?.split('`').next()).collect();
    for family in &scrape.families {
        assert!(families.contains(family.as_str()), "docs/metrics.md does not list {family}");
    }
    let dashboard = std::fs::read_to_string(docs.join("metrics/grafana-dashboard.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
    let alerts = std::fs::read_to_string(docs.join("metrics/alerts.yml")).unwrap();
    for (file, text) in [("grafana-dashboard.json", &dashboard), ("alerts.yml", &alerts)] {
        for name in metric_names(text) {
            let family =
                ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(families.contains(family), "docs/metrics/{file} names {name}, which Gofer does not export");
        }
    }
    check_alert_rules(&docs.join("metrics/alerts.yml"));
}

/// Every `gofer_…` metric name in a text.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("gofer_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The alert rules are YAML in Prometheus' rule-file shape: groups of rules, each with a name, an expression and a
/// severity.
fn check_alert_rules(path: &std::path::Path) {
    const SCRIPT: &str = "import sys, yaml\n\
        doc = yaml.safe_load(open(sys.argv[1]))\n\
        rules = [r for g in doc['groups'] for r in g['rules']]\n\
        assert rules, 'no rules'\n\
        for r in rules:\n\
        \x20   assert r['alert'] and r['expr'] and r['labels']['severity'] and r['annotations']['summary'], r\n\
        print(len(rules))\n";
    let output = Command::new(python()).args(["-c", SCRIPT]).arg(path).output().unwrap();
    assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
}

#[test]
fn scraping_needs_system_read_in_production_unless_public_and_can_have_its_own_listener() {
    const KEY: &str = "qUEvqSn4dQxDQ7RhTDbn3RQnsJeJQq5rRZIhE0O8X0M=";
    let production = [("GOFER_DEVELOPMENT__BYPASS_AUTH", "false"), ("GOFER_SECRETS__KEY", KEY)];
    let gofer = Server::start_with(&production);
    let url = format!("{}/metrics", gofer.url);
    let admin = gofer.cli_json(&["token", "bootstrap"])["secret"].as_str().unwrap().to_string();
    let post = |path: &str, request: Value| {
        let auth = format!("Bearer {admin}");
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let (status, body) =
            http_raw("POST", &format!("{}{path}", gofer.url), &headers, request.to_string().as_bytes()).unwrap();
        assert_eq!(status, 201, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let token = |user: &str, roles: &[&str]| {
        let created = post("/api/tokens", json!({ "user": user, "roles": roles }));
        created["secret"].as_str().unwrap().to_string()
    };
    assert_eq!(get(&url, None).0, 401, "no token");
    assert_eq!(get(&url, Some("not-a-token")).0, 401);
    // Reading everything in one namespace is not reading the system: metrics name every namespace's pipelines.
    let grants = json!([{ "actions": ["read"], "namespaces": ["team-a"] }]);
    post("/api/roles", json!({ "id": "team-a-reader", "description": "", "grants": grants }));
    let team = token("team-a", &["team-a-reader"]);
    assert_eq!(get(&url, Some(&team)).0, 403);
    let reader = token("prometheus", &["read_only"]);
    Scrape::of(&url, Some(&reader));
    // Tokens, presented or refused, never reach the server's log.
    let log = gofer.log();
    for secret in [&admin, &team, &reader] {
        assert!(!log.contains(secret.as_str()), "a token reached the server's log");
    }
    assert!(!log.contains("not-a-token"), "a refused token reached the server's log");
    drop(gofer);

    // Public: anyone scrapes; everything else still needs a token.
    let public = Server::start_with(&[production[0], production[1], ("GOFER_METRICS__PUBLIC", "true")]);
    Scrape::of(&format!("{}/metrics", public.url), None);
    assert_eq!(get(&format!("{}/api/system", public.url), None).0, 401);
    drop(public);

    // A listener of their own: served there (still needing a token), not on the API's.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let separate = Server::start_with(&[production[0], production[1], ("GOFER_METRICS__BIND_ADDRESS", &address)]);
    let admin = separate.cli_json(&["token", "bootstrap"])["secret"].as_str().unwrap().to_string();
    let own = format!("http://{address}/metrics");
    assert_eq!(get(&own, None).0, 401);
    let scrape = Scrape::of(&own, Some(&admin));
    assert!(scrape.names().contains("gofer_build_info"));
    assert_eq!(get(&format!("{}/metrics", separate.url), Some(&admin)).0, 404);
    assert_eq!(get(&format!("http://{address}/api/system"), Some(&admin)).0, 404, "only /metrics there");
    drop(separate);

    // Turned off: no /metrics anywhere.
    let off = Server::start_with(&[("GOFER_METRICS__ENABLED", "false")]);
    assert_eq!(get(&format!("{}/metrics", off.url), None).0, 404);
    drop(off);

    // A bad address is refused at start, naming the setting.
    let output = Command::new(env!("CARGO_BIN_EXE_gofer"))
        .args(["service", "start", "--check-config"])
        .env("GOFER_METRICS__BIND_ADDRESS", "nine-thousand")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("metrics.bind_address"), "{output:?}");
}
