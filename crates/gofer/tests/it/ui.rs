//! The web UI in a real browser (headless Chromium through WebDriver) against the real binary and Docker engine:
//! pages list what the API holds, a run's graph and a running task's log update while the run goes on, cancel from a
//! page stops the container, and production mode holds the UI to the logged-in token exactly as the API holds a
//! token. The screenshots in docs/ui/ are taken here.

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::harness::{Server, api, http_raw, repo_root, wait_containers_removed, wait_for};

/// A run of three tasks: `build` prints a coloured line and keeps running; `deploy` needs it to succeed, `notify`
/// needs it to fail.
fn live_pipeline(id: &str) -> Value {
    json!({
        "id": id,
        "name": "Build and deploy",
        "description": "Builds, then deploys; tells someone when the build fails.",
        "tasks": [
            { "id": "build", "image": "busybox:latest",
              "command": ["sh", "-c", "printf 'building \\033[32mgreen\\033[0m\\n'; sleep 600"] },
            { "id": "deploy", "image": "busybox:latest", "depends_on": { "build": "Success" },
              "command": ["sh", "-c", "echo deploying"] },
            { "id": "notify", "image": "busybox:latest", "depends_on": { "build": "Failure" },
              "command": ["sh", "-c", "echo build failed"] }
        ]
    })
}

/// The DAG example's shape: parallel tasks, a failing test, a failure handler, a skipped step.
fn dag_pipeline() -> Value {
    let task = |id: &str, needs: Value, script: &str| json!({ "id": id, "image": "busybox:latest", "depends_on": needs, "command": ["sh", "-c", script] });
    json!({
        "id": "dag",
        "name": "DAG pipeline",
        "description": "Parallel tasks, a failing test, a failure handler and a skipped publish step.",
        "tasks": [
            task("checkout", json!({}), "echo checking out"),
            task("lint", json!({ "checkout": "Success" }), "echo lint clean"),
            task("test", json!({ "checkout": "Success" }), "echo running tests; echo 'FAILED: test_parser' >&2; exit 3"),
            task("on-failure", json!({ "test": "Failure" }), "echo tests failed, notifying the team"),
            task("publish", json!({ "test": "Success", "lint": "Success" }), "echo publishing"),
            task("report", json!({ "lint": "Any", "test": "Any" }), "echo writing the report"),
        ]
    })
}

fn screenshot(browser: &Browser, name: &str) {
    browser.screenshot(&repo_root().join("docs/ui").join(name));
}

/// The `data-phase` of a task's node in the drawn graph.
fn node_phase(browser: &Browser, task: &str) -> Option<String> {
    let node = browser.find(&format!("g.node[data-task=\"{task}\"]"))?;
    browser.attribute(&node, "data-phase")
}

/// Waits until the graph shows each task in its phase (the page redraws the graph as events arrive).
fn wait_phases(browser: &Browser, expected: &[(&str, &str)]) {
    wait_for(&format!("the graph to show {expected:?}"), std::time::Duration::from_secs(30), || {
        expected.iter().all(|(task, phase)| node_phase(browser, task).as_deref() == Some(*phase)).then_some(())
    });
}

#[test]
fn the_ui_shows_pipelines_a_live_run_graph_and_log_and_cancels_from_the_page() {
    // `sleep` as a container's first process ignores SIGTERM: a short grace keeps the cancel quick.
    let gofer = Server::start_with(&[("GOFER_RUNS__STOP_GRACE_SECONDS", "1")]);
    let browser = Browser::start();

    // Nothing yet: the dashboard says what to do next.
    browser.goto(&format!("{}/", gofer.url));
    browser.wait_text("main", "gofer up DIR");

    gofer.register(dag_pipeline());
    gofer.register(live_pipeline("build-deploy"));
    gofer.cli_ok(&["pipeline", "subscribe", "dag", "interval", "hourly", "-s", "every=1h"]);
    let finished = gofer.start_run("dag", &[]);
    gofer.wait_run("dag", finished);
    let run = gofer.start_run("build-deploy", &[]);

    // The dashboard lists both pipelines with their last runs.
    browser.goto(&format!("{}/", gofer.url));
    let row = browser.wait_text("tr[data-pipeline=\"dag\"]", "DAG pipeline");
    assert!(row.contains("v1") && row.contains("active"), "{row}");
    browser.wait_find("tr[data-pipeline=\"dag\"] a.mark.st-failed");
    browser.wait_text("tr[data-pipeline=\"build-deploy\"]", "Build and deploy");
    let next = browser.wait_text("tr[data-pipeline=\"dag\"] td:last-child", "in ");
    assert!(next.contains("in 60 min") || next.contains("in 59 min"), "the interval's next tick: {next}");
    let search = browser.wait_find("#search");
    browser.type_into(&search, "build");
    wait_for("the search to hide the other pipeline", std::time::Duration::from_secs(10), || {
        let hidden = browser.script("return document.querySelector('tr[data-pipeline=\"dag\"]').hidden");
        (hidden == json!(true)).then_some(())
    });
    browser.goto(&format!("{}/", gofer.url));
    browser.wait_find("tr[data-pipeline=\"dag\"] a.mark.st-failed");
    screenshot(&browser, "dashboard.png");

    // The pipeline page: its config drawn as a graph, its runs, its deployment.
    browser.goto(&format!("{}/namespaces/default/pipelines/dag", gofer.url));
    browser.wait_find("svg.dag g.node[data-task=\"publish\"]");
    browser.wait_text("tr[data-run=\"1\"]", "failed");
    browser.wait_text("main", "Deployment #1");
    screenshot(&browser, "pipeline.png");

    // The finished run's graph: each node coloured by how its task ended, each edge labelled with what it needs.
    browser.goto(&format!("{}/namespaces/default/pipelines/dag/runs/{finished}/tasks/test", gofer.url));
    browser.wait_text("#log", "FAILED: test_parser");
    let expected =
        [("checkout", "successful"), ("test", "failed"), ("on-failure", "successful"), ("publish", "skipped")];
    wait_phases(&browser, &expected);
    browser.wait_text("g.edge[data-from=\"test\"][data-to=\"on-failure\"]", "failure");
    browser.wait_text("#exit-code", "3");
    let raw = browser.attribute(&browser.wait_find("a[download]"), "href").expect("a download link");
    let (status, body) = http_raw("GET", &format!("{}{raw}", gofer.url), &[], b"").unwrap();
    let log = String::from_utf8(gofer.logs("dag", finished, "test")).unwrap();
    // (The harness's client does not undo chunked encoding: the log is inside the chunks.)
    assert!(status == 200 && body.contains(&log), "download raw is the log: {body:?} vs {log:?}");

    // The graph is reachable from the keyboard: its nodes take focus and open their task.
    let focused = browser.script(
        "const node = document.querySelector('svg.dag a[href$=\"/tasks/lint\"]'); node.focus(); \
         return document.activeElement === node",
    );
    assert_eq!(focused, json!(true));

    // The running run: the log line the task printed shows while it still runs, colours rendered.
    let page = format!("{}/namespaces/default/pipelines/build-deploy/runs/{run}/tasks/build", gofer.url);
    browser.goto(&page);
    let log = browser.wait_text("#log", "building green");
    assert!(!log.contains("\u{1b}"), "escape codes are rendered, not shown: {log:?}");
    browser.wait_text("#log span.fg-green", "green");
    let build = &gofer.tasks("build-deploy", run)["build"];
    assert_eq!(build["state"], "running", "the line was shown while the task runs: {build}");
    wait_phases(&browser, &[("build", "running"), ("deploy", "waiting"), ("notify", "waiting")]);
    screenshot(&browser, "run.png");

    // The dark colour scheme.
    browser.prefer_dark();
    let background = browser.script("return getComputedStyle(document.body).backgroundColor");
    assert_eq!(background, json!("rgb(13, 17, 23)"), "dark pages are dark");
    screenshot(&browser, "run-dark.png");

    // Cancel from the page: the run ends cancelled, its container is stopped and removed, the page follows.
    browser.wait_find("#cancel-run");
    browser.click("#cancel-run");
    browser.accept_dialog();
    let ended = gofer.wait_run("build-deploy", run);
    assert_eq!(ended["status"], "cancelled", "{ended}");
    wait_containers_removed(&gofer, "build-deploy", run);
    browser.wait_text("#run-status", "cancelled");
    wait_phases(&browser, &[("build", "cancelled")]);
    assert!(browser.find("#cancel-run").is_none(), "a finished run offers no cancel");

    // Unknown things are real 404 pages, with a way back.
    for path in [
        "/namespaces/default/pipelines/nope",
        "/namespaces/default/pipelines/dag/runs/99",
        "/namespaces/default/pipelines/dag/runs/1/tasks/nope",
        "/no/such/page",
    ] {
        let (status, _) = http_raw("GET", &format!("{}{path}", gofer.url), &[], b"").unwrap();
        assert_eq!(status, 404, "{path}");
        browser.goto(&format!("{}{path}", gofer.url));
        let error = browser.wait_text("#error", "");
        assert!(error.to_lowercase().contains("not found") || error.contains("no page"), "{path}: {error}");
    }
    let (status, body) = api(&gofer, "GET", "/api/nope", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "the API keeps its JSON 404");

    // A retried task: every attempt listed, the latest shown, an earlier one's log a click away.
    let mut flaky = json!({ "id": "flaky", "name": "flaky", "tasks": [{ "id": "main", "image": "busybox:latest",
        "command": ["sh", "-c", "echo \"attempt $GOFER_TASK_ATTEMPT\"; [ \"$GOFER_TASK_ATTEMPT\" -ge 2 ]"] }] });
    flaky["tasks"][0]["retries"] = json!(2);
    gofer.register(flaky);
    let retried = gofer.start_run("flaky", &[]);
    gofer.wait_run("flaky", retried);
    browser.goto(&format!("{}/namespaces/default/pipelines/flaky/runs/{retried}/tasks/main", gofer.url));
    browser.wait_text("#log", "attempt 2");
    browser.wait_text("tr[data-attempt=\"1\"]", "failed");
    browser.wait_text("tr.current[data-attempt=\"2\"]", "successful");
    browser.click("tr[data-attempt=\"1\"] button");
    browser.wait_text("#log", "attempt 1");

    // The event feed and the extensions page.
    browser.goto(&format!("{}/events", gofer.url));
    browser.wait_text("table.events", "run completed");
    browser.goto(&format!("{}/extensions", gofer.url));
    browser.wait_find("article.extension[data-extension=\"interval\"]");

    // Terminal output is rendered from chunks split anywhere (in an escape sequence, a UTF-8 character, a CRLF),
    // in 16, 256 and true colours; a huge log keeps only its newest 4 MiB on the page.
    let rendered = browser.script(
        r#"const el = document.createElement('pre');
        const ansi = new AnsiRenderer(el);
        const text = 'plain \x1b[1;31mbold red\x1b[0m \x1b[38;5;196mx\x1b[0m \x1b[38;2;1;2;3my\x1b[m \u00e9\r\n';
        const bytes = new TextEncoder().encode(text);
        const end = bytes.length;
        for (const [from, to] of [[0, 9], [9, 30], [30, 44], [44, end - 3], [end - 3, end - 1], [end - 1, end]]) {
          ansi.push(bytes.slice(from, to));
        }
        const html = el.innerHTML;
        const big = new AnsiRenderer(document.createElement('pre'));
        const line = new TextEncoder().encode('x'.repeat(1 << 20) + '\n');
        for (let i = 0; i < 6; i++) big.push(line);
        return [html, big.trimmed, big.target.textContent.length];"#,
    );
    assert_eq!(
        rendered[0],
        concat!(
            r#"plain <span class="fg-red b">bold red</span> <span style="color: rgb(255, 0, 0);">x</span> "#,
            r#"<span style="color: rgb(1, 2, 3);">y</span> é"#,
            "\n"
        )
    );
    assert_eq!(rendered[1], json!(true));
    assert!(rendered[2].as_u64().unwrap() <= 4 * 1024 * 1024, "{}", rendered[2]);

    // A phone's width: the run page fits (the graph scrolls inside its box, not the page).
    browser.set_window(390, 844);
    browser.goto(&format!("{}/namespaces/default/pipelines/dag/runs/{finished}", gofer.url));
    browser.wait_find("svg.dag");
    let fits = browser.script("return document.documentElement.scrollWidth <= window.innerWidth + 1");
    assert_eq!(fits, json!(true), "the page is wider than a phone");
    screenshot(&browser, "run-phone.png");
}

/// A call with a bearer token.
fn call(gofer: &Server, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let headers = [("Content-Type", "application/json"), ("Authorization", auth.as_str())];
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, text) = http_raw(method, &format!("{}{path}", gofer.url), &headers, payload.as_bytes()).unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn log_in(browser: &Browser, token: &str) {
    let field = browser.wait_find("#token");
    browser.type_into(&field, token);
    browser.click("form button[type=submit]");
}

#[test]
fn production_mode_logs_in_with_a_token_and_holds_the_ui_to_its_permissions() {
    let gofer = Server::start_with(&[
        ("GOFER_DEVELOPMENT__BYPASS_AUTH", "false"),
        ("GOFER_SECRETS__KEY", "qUEvqSn4dQxDQ7RhTDbn3RQnsJeJQq5rRZIhE0O8X0M="),
    ]);
    let admin = gofer.cli_json(&["token", "bootstrap"])["secret"].as_str().unwrap().to_string();
    let (status, created) =
        call(&gofer, "POST", "/api/tokens", &admin, Some(&json!({ "user": "viewer", "roles": ["read_only"] })));
    assert_eq!(status, 201, "{created}");
    let reader = created["secret"].as_str().unwrap().to_string();
    let base = "/api/namespaces/default/pipelines/guarded";
    let config = json!({ "config": live_pipeline("guarded") });
    assert_eq!(call(&gofer, "POST", &format!("{base}/configs"), &admin, Some(&config)).0, 201);
    assert_eq!(call(&gofer, "POST", &format!("{base}/configs/1/deploy"), &admin, None).0, 201);
    let (status, run) = call(&gofer, "POST", &format!("{base}/runs"), &admin, Some(&json!({})));
    assert_eq!(status, 201, "{run}");
    let run_page = format!("{}/namespaces/default/pipelines/guarded/runs/1", gofer.url);
    let cancel = format!("{}{base}/runs/1/cancel", gofer.url);

    // Every page sends a stranger to the login page, remembering where they were going.
    let browser = Browser::start();
    browser.goto(&run_page);
    let url = browser.url();
    assert!(url.ends_with("/login?next=/namespaces/default/pipelines/guarded/runs/1"), "{url}");
    screenshot(&browser, "login.png");
    log_in(&browser, "not-a-token");
    let refused = browser.wait_text(".problem", "unknown");
    assert!(refused.contains("unknown or was revoked"), "{refused}");
    assert!(browser.cookie("gofer_session").is_none(), "a wrong token starts no session");

    // A read-only token: it sees the run, and is offered nothing it may not do.
    log_in(&browser, &reader);
    browser.wait_find("svg.dag g.node[data-task=\"build\"]");
    assert!(browser.url().ends_with("/namespaces/default/pipelines/guarded/runs/1"), "{}", browser.url());
    browser.wait_text("#run-status", "running");
    assert!(browser.find("#cancel-run").is_none(), "a read-only token is offered no cancel");
    browser.wait_text("header .who", "viewer");
    let cookie = browser.cookie_attributes("gofer_session");
    assert_eq!((cookie["httpOnly"].as_bool(), cookie["sameSite"].as_str()), (Some(true), Some("Strict")), "{cookie}");
    for place in [browser.url(), browser.source()] {
        assert!(!place.contains(&reader), "the token shows in a URL or a page");
    }
    browser.goto(&format!("{}/namespaces/default/pipelines/guarded", gofer.url));
    browser.wait_find("tr[data-run=\"1\"]");
    assert!(browser.find("#start-run").is_none() && browser.find("#toggle-state").is_none());

    // The session's requests are the token's: reading works, cancelling is refused by the API itself.
    let session = format!("gofer_session={}", browser.cookie("gofer_session").unwrap());
    let same_site = [("Cookie", session.as_str()), ("Origin", gofer.url.as_str())];
    let (status, _) = http_raw("GET", &format!("{}{base}/runs/1", gofer.url), &same_site, b"").unwrap();
    assert_eq!(status, 200);
    let (status, body) = http_raw("POST", &cancel, &same_site, b"").unwrap();
    assert_eq!(status, 403, "a read-only session may not cancel: {body}");

    // A token of another namespace: the page is a 403 that says why, and the dashboard offers nothing of default.
    let role = json!({ "id": "team-b", "description": "", "system_role": false,
        "grants": [{ "actions": ["read"], "namespaces": ["team-b"] }] });
    assert_eq!(call(&gofer, "POST", "/api/roles", &admin, Some(&role)).0, 201);
    let (status, created) =
        call(&gofer, "POST", "/api/tokens", &admin, Some(&json!({ "user": "bee", "roles": ["team-b"] })));
    assert_eq!(status, 201, "{created}");
    browser.click("header .who button");
    browser.wait_find("#token");
    browser.goto(&run_page);
    log_in(&browser, created["secret"].as_str().unwrap());
    browser.wait_text("#error", "may not read this");
    let outsider = format!("gofer_session={}", browser.cookie("gofer_session").unwrap());
    let (status, _) = http_raw("GET", &run_page, &[("Cookie", outsider.as_str())], b"").unwrap();
    assert_eq!(status, 403);

    // Log out; log in as the admin, who is offered cancel.
    browser.click("header .who button");
    browser.wait_find("#token");
    let (status, _) = http_raw("GET", &format!("{}{base}/runs/1", gofer.url), &same_site, b"").unwrap();
    assert_eq!(status, 401, "a session ended by logging out is no session");
    browser.goto(&run_page);
    log_in(&browser, &admin);
    browser.wait_find("#cancel-run");

    // A forged POST (another site's form or script, or no origin at all) is refused although the session may cancel.
    let session = format!("gofer_session={}", browser.cookie("gofer_session").unwrap());
    for headers in [
        vec![("Cookie", session.as_str()), ("Origin", "http://evil.example")],
        vec![("Cookie", session.as_str()), ("Origin", "null")],
        vec![("Cookie", session.as_str()), ("Sec-Fetch-Site", "cross-site")],
        vec![("Cookie", session.as_str())],
    ] {
        let (status, body) = http_raw("POST", &cancel, &headers, b"").unwrap();
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    assert_eq!(call(&gofer, "GET", &format!("{base}/runs/1"), &admin, None).1["state"], "running");

    // The page's own cancel works.
    browser.click("#cancel-run");
    browser.accept_dialog();
    browser.wait_text("#run-status", "cancelled");
    wait_containers_removed(&gofer, "guarded", 1);
    let log = gofer.log();
    assert!(!log.contains(&admin) && !log.contains(&reader), "a token was logged");
}

#[test]
fn the_ui_can_be_turned_off() {
    let gofer = Server::start_with(&[("GOFER_UI__ENABLED", "false")]);
    for path in ["/", "/ui/app.js", "/namespaces/default/pipelines/p"] {
        let (status, body) = api(&gofer, "GET", path, None);
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{path}: {body}");
    }
    assert_eq!(api(&gofer, "GET", "/api/health", None).0, 200);
}

#[test]
fn the_pipeline_page_starts_runs_switches_the_pipeline_and_drives_deployments() {
    let gofer = Server::start();
    gofer.register(json!({ "id": "svc", "name": "svc", "tasks": [
        { "id": "main", "image": "busybox:latest", "command": ["sh", "-c", "echo v1 $GREETING"] }
    ]}));
    let base = "/api/namespaces/default/pipelines/svc";
    let v2 = json!({ "config": { "id": "svc", "name": "svc", "tasks": [
        { "id": "main", "image": "busybox:latest", "command": ["sh", "-c", "echo v2"] }
    ]}});
    assert_eq!(api(&gofer, "POST", &format!("{base}/configs"), Some(&v2)).0, 201);
    let canary = json!({ "strategy": { "kind": "canary", "steps": [50], "min_runs": 5, "success_threshold": 0.9 } });
    let deployment = |id: u64| api(&gofer, "GET", &format!("{base}/deployments/{id}"), None).1;
    let live = || api(&gofer, "GET", base, None).1["live_version"].clone();
    let page = format!("{}/namespaces/default/pipelines/svc", gofer.url);
    let browser = Browser::start();

    // A canary in progress: its strategy and counts, and the buttons to end it.
    let (status, body) = api(&gofer, "POST", &format!("{base}/configs/2/deploy"), Some(&canary));
    assert_eq!(status, 201, "{body}");
    browser.goto(&page);
    let shown = browser.wait_text("main", "Deployment #2");
    assert!(shown.contains("canary 50%") && shown.contains("v1 → v2"), "{shown}");
    browser.wait_find("#abort");
    browser.click("#promote");
    wait_for("the UI's promote", std::time::Duration::from_secs(20), || {
        (deployment(2)["state"] == "promoted").then_some(())
    });
    assert_eq!(live(), json!(2));
    browser.wait_text("main", "promoted");

    // Roll back from the page: v1 is live again.
    browser.click("#rollback");
    browser.accept_dialog();
    wait_for("the UI's rollback", std::time::Duration::from_secs(20), || (live() == json!(1)).then_some(()));

    // Abort a second canary.
    assert_eq!(api(&gofer, "POST", &format!("{base}/configs/2/deploy"), Some(&canary)).0, 201);
    browser.goto(&page);
    browser.wait_text("main", "Deployment #4");
    browser.click("#abort");
    wait_for("the UI's abort", std::time::Duration::from_secs(20), || {
        (deployment(4)["state"] == "aborted").then_some(())
    });
    assert_eq!(live(), json!(1));

    // Start a run with a variable; the page goes to the new run, which gets it.
    browser.goto(&page);
    let variables = browser.wait_find("#run-variables");
    browser.type_into(&variables, "GREETING=hi from the UI");
    browser.click("#start-run");
    wait_for("the new run's page", std::time::Duration::from_secs(20), || {
        browser.url().ends_with("/namespaces/default/pipelines/svc/runs/1").then_some(())
    });
    gofer.wait_run("svc", 1);
    assert_eq!(gofer.logs("svc", 1, "main"), b"v1 hi from the UI\n");
    browser.wait_text("#run-status", "successful");

    // The runs list filters by status on the server (the CLI and the API too); a bad filter is a clear 400.
    browser.goto(&page);
    browser.wait_find("tr[data-run=\"1\"]");
    browser.click("#run-filter option[value=\"status=failed\"]");
    browser.wait_text("main", "No runs match the filter.");
    browser.click("#run-filter option[value=\"status=successful\"]");
    browser.wait_find("tr[data-run=\"1\"]");
    assert_eq!(gofer.cli_json(&["run", "list", "svc", "--status", "failed"]), json!([]));
    assert_eq!(gofer.cli_json(&["run", "list", "svc", "--state", "complete"]).as_array().unwrap().len(), 1);
    let (status, body) = api(&gofer, "GET", &format!("{base}/runs?status=bogus"), None);
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("bogus"), "{body}");

    // Disable and enable the pipeline.
    browser.wait_text("#toggle-state", "Disable");
    browser.click("#toggle-state");
    wait_for("the pipeline to be disabled", std::time::Duration::from_secs(20), || {
        (api(&gofer, "GET", base, None).1["state"] == "disabled").then_some(())
    });
    browser.wait_text("#toggle-state", "Enable");
    browser.click("#toggle-state");
    wait_for("the pipeline to be enabled", std::time::Duration::from_secs(20), || {
        (api(&gofer, "GET", base, None).1["state"] == "active").then_some(())
    });
}
