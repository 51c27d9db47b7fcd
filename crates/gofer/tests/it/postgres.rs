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

/// Servers sharing one PostgreSQL database and one object store (a folder here), each with a data dir of its own;
/// a short lease keeps the tests quick.
struct Cluster {
    servers: Vec<Server>,
    _objects: tempfile::TempDir,
}

fn cluster(database: &TestServer, count: usize, extra: &[(&str, &str)]) -> Cluster {
    let objects = tempfile::tempdir().unwrap();
    let (url, path) = (database.url(), objects.path().display().to_string());
    let mut env = vec![
        ("GOFER_STORAGE__KIND", "postgres"),
        ("GOFER_STORAGE__URL", url.as_str()),
        ("GOFER_STORAGE__POOL_SIZE", "4"),
        ("GOFER_STORAGE__LEASE_SECONDS", "3"),
        ("GOFER_OBJECTS__PATH", path.as_str()),
        // The servers seal and open each other's secrets.
        ("GOFER_SECRETS__KEY", "c2hhcmVkLWNsdXN0ZXIta2V5LWZvci10ZXN0cy0zMmI="),
    ];
    env.extend_from_slice(extra);
    let servers = (0..count).map(|_| Server::start_with(&env)).collect();
    Cluster { servers, _objects: objects }
}

/// The server driving a run, as `/api/system/servers` (asked of `asked`) tells.
fn owner_of(asked: &Server, pipeline: &str, run: u64) -> Option<String> {
    let (status, body) = api(asked, "GET", "/api/system/servers", None);
    assert_eq!(status, 200, "{body}");
    body["servers"].as_array().unwrap().iter().find_map(|server| {
        let drives =
            server["runs"].as_array().unwrap().iter().any(|r| r["pipeline_id"] == pipeline && r["run_id"] == run);
        drives.then(|| server["id"].as_str().unwrap().to_string())
    })
}

/// The index of the leading server, as the servers say.
fn leader_of(cluster: &Cluster) -> usize {
    let (_, body) = api(&cluster.servers[0], "GET", "/api/system/servers", None);
    let leader = body["servers"].as_array().unwrap().iter().find(|s| s["leading"] == true).expect("a leader");
    let id = leader["id"].as_str().unwrap();
    cluster.servers.iter().position(|s| id_of(s) == id).unwrap()
}

/// The id a server gives itself, from its own answer.
fn id_of(server: &Server) -> String {
    let (_, body) = api(server, "GET", "/api/system/servers", None);
    body["servers"].as_array().unwrap().iter().find(|s| s["this"] == true).unwrap()["id"].as_str().unwrap().to_string()
}

#[test]
fn when_the_server_driving_a_run_is_killed_another_adopts_it_and_its_container_runs_once() {
    let database = TestServer::start();
    let mut cluster = cluster(&database, 2, &[]);
    let first = &cluster.servers[0];
    // The container prints its own id (its hostname): a second container would print another.
    first.register(script_pipeline("adopted", "echo started in $(hostname); sleep 6; echo ended in $(hostname)"));
    let run = first.start_run("adopted", &[]);
    first.wait_task_state("adopted", run, "main", "running");
    let owner = wait_for("a server to drive the run", Duration::from_secs(20), || owner_of(first, "adopted", run));
    let container = first.tasks("adopted", run)["main"]["container_id"].as_str().unwrap().to_string();
    let (dead, alive) = if id_of(&cluster.servers[0]) == owner { (0, 1) } else { (1, 0) };
    cluster.servers[dead].crash();

    let survivor = &cluster.servers[alive];
    let status = survivor.cli_ok(&["service", "status"]);
    assert!(status.contains(&id_of(survivor)), "{status}");
    let done = survivor.wait_run("adopted", run);
    assert_eq!(done["status"], "successful", "{done:#}");
    assert_eq!(owner_of(survivor, "adopted", run), None, "a finished run is nobody's");
    let task = &survivor.tasks("adopted", run)["main"];
    assert_eq!((task["attempt"].as_u64(), task["container_id"].as_str()), (Some(1), Some(container.as_str())));
    let short: String = container.chars().take(12).collect();
    let logs = String::from_utf8(survivor.logs("adopted", run, "main")).unwrap();
    assert_eq!(logs, format!("started in {short}\nended in {short}\n"), "one container, all of its output");
    let (_, servers) = api(survivor, "GET", "/api/system/servers", None);
    let ids: Vec<&str> = servers["servers"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&owner.as_str()), "the dead server was forgotten once its runs were adopted: {ids:?}");
}

#[test]
fn a_hundred_runs_started_round_robin_complete_once_each_within_the_limits_of_all_servers() {
    let database = TestServer::start();
    let cluster = cluster(&database, 3, &[("GOFER_RUNS__GLOBAL_LIMIT", "5")]);
    let first = &cluster.servers[0];
    let mut config = script_pipeline("many", "true");
    config["parallelism"] = json!(3);
    first.register(config);
    first.register(script_pipeline("other", "sleep 1"));
    for (i, server) in cluster.servers.iter().cycle().take(100).enumerate() {
        let (status, body) = api(server, "POST", "/api/namespaces/default/pipelines/many/runs", Some(&json!({})));
        assert_eq!(status, 201, "run {i}: {body}");
        if i % 25 == 0 {
            server.start_run("other", &[]);
        }
    }
    let runs = wait_for("every run to complete", Duration::from_secs(240), || {
        let runs = first.cli_json(&["run", "list", "many", "--limit", "1000"]);
        let runs = runs.as_array().unwrap().clone();
        (runs.len() == 100 && runs.iter().all(|r| r["state"] == "complete")).then_some(runs)
    });
    let mut ids: Vec<u64> = runs.iter().map(|r| r["run_id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=100).collect::<Vec<u64>>(), "run ids are contiguous");
    assert!(runs.iter().all(|r| r["status"] == "successful"), "every run succeeded");
    // Started once each: one run_started event per run, whichever server started it.
    let events = first.cli_ok(&["event", "list", "--output", "json"]);
    let mut started = std::collections::BTreeMap::<u64, usize>::new();
    let mut intervals = Vec::new();
    for line in events.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["kind"]["type"] == "run_started" && event["kind"]["pipeline_id"] == "many" {
            *started.entry(event["kind"]["run_id"].as_u64().unwrap()).or_default() += 1;
        }
    }
    assert_eq!(started.len(), 100);
    assert!(started.values().all(|n| *n == 1), "a run was started twice: {started:?}");
    // The pipeline's limit held across the servers: never more than 3 of its runs at once.
    for run in &runs {
        intervals.push((run["started"].as_u64().unwrap(), run["ended"].as_u64().unwrap()));
    }
    let most =
        intervals.iter().map(|(start, _)| intervals.iter().filter(|(s, e)| s <= start && start < e).count()).max();
    assert!(most.unwrap_or(0) <= 3, "{most:?} runs of a pipeline with parallelism 3 ran at once");
}

#[test]
fn an_interval_subscription_fires_once_per_tick_whatever_the_number_of_servers() {
    let database = TestServer::start();
    let mut cluster = cluster(&database, 3, &[("GOFER_EXTENSIONS__INTERVAL__MIN_INTERVAL", "1s")]);
    let first = &cluster.servers[0];
    first.register(script_pipeline("ticking", "true"));
    // Made through the first server; the others take it up at their next beat.
    first.cli_ok(&["pipeline", "subscribe", "ticking", "interval", "every-2s", "-s", "every=2s"]);
    let began = std::time::Instant::now();
    wait_for("three ticks", Duration::from_secs(60), || {
        (crate::harness::run_count(first, "ticking") >= 3).then_some(())
    });
    // The server the subscription was made on dies: the others go on ticking.
    cluster.servers[0].crash();
    let second = &cluster.servers[1];
    wait_for("three more ticks", Duration::from_secs(60), || {
        (crate::harness::run_count(second, "ticking") >= 6).then_some(())
    });
    let elapsed = began.elapsed().as_secs_f64();
    let runs = second.cli_json(&["run", "list", "ticking", "--limit", "1000"]);
    let mut created: Vec<u64> = runs.as_array().unwrap().iter().map(|r| r["created"].as_u64().unwrap()).collect();
    created.sort_unstable();
    // Three servers each run the timer; one run per tick means runs about two seconds apart, never a burst.
    assert!(created.len() as f64 <= elapsed / 2.0 + 2.0, "{} runs in {elapsed:.1}s", created.len());
    for pair in created.windows(2) {
        assert!(pair[1] - pair[0] >= 1000, "two runs {} ms apart: a tick fired twice", pair[1] - pair[0]);
    }
}

#[test]
fn a_run_is_followed_and_cancelled_from_a_server_that_does_not_drive_it() {
    let database = TestServer::start();
    let cluster = cluster(&database, 2, &[]);
    let first = &cluster.servers[0];
    first.register(script_pipeline("chatty", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"));
    first.register(script_pipeline("endless", "echo waiting; sleep 300"));
    let run = first.start_run("chatty", &[]);
    let owner = wait_for("a server to drive the run", Duration::from_secs(20), || owner_of(first, "chatty", run));
    let other = cluster.servers.iter().find(|s| id_of(s) != owner).unwrap();
    // Followed live on the server that does not drive it: all of the output, then the stream ends.
    let followed = other.cli_ok(&["task", "logs", "chatty", &run.to_string(), "main", "--follow"]);
    assert_eq!(followed, "line 1\nline 2\nline 3\nline 4\nline 5\n");

    let run = first.start_run("endless", &[]);
    first.wait_task_state("endless", run, "main", "running");
    let owner = owner_of(first, "endless", run).unwrap();
    let other = cluster.servers.iter().find(|s| id_of(s) != owner).unwrap();
    other.cli_ok(&["run", "cancel", "endless", &run.to_string()]);
    let done = other.wait_run("endless", run);
    assert_eq!(done["status"], "cancelled", "{done:#}");
    assert_eq!(other.tasks("endless", run)["main"]["status"], "cancelled");
}

#[test]
fn a_canary_is_judged_once_across_the_servers_and_the_next_leader_takes_over() {
    let database = TestServer::start();
    let mut cluster = cluster(&database, 2, &[]);
    let first = &cluster.servers[0];
    first.register(script_pipeline("svc", "echo version $GOFER_PIPELINE_VERSION"));
    let v2 = json!({ "id": "svc", "name": "svc", "tasks": [
        { "id": "main", "image": "busybox:latest", "command": ["sh", "-c", "echo two; exit 0"] }
    ]});
    crate::deployments::register_only(first, v2);
    let started = crate::deployments::deploy_canary(first, "100", "2");
    assert_eq!(started["state"], "running", "{started}");
    // The leader judges; kill it before the canary has its runs, so the other must take over.
    let leader = leader_of(&cluster);
    let follower = 1 - leader;
    cluster.servers[leader].crash();
    let survivor = &cluster.servers[follower];
    for _ in 0..2 {
        let run = survivor.start_run("svc", &[]);
        assert_eq!(survivor.wait_run("svc", run)["status"], "successful");
    }
    let ended = wait_for("the canary to be promoted", Duration::from_secs(60), || {
        let d = survivor.cli_json(&["deployment", "get", "svc", "2"]);
        (d["state"] != "running").then_some(d)
    });
    assert_eq!(ended["state"], "promoted", "{ended:#}");
    let events = survivor.cli_ok(&["event", "list", "--output", "json"]);
    let ended_events = events
        .lines()
        .filter(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"]["type"] == "deployment_ended")
        .count();
    assert_eq!(ended_events, 2, "the immediate deploy of version 1 and the canary ended once each");
}

/// Running containers of the heartbeat extension of an installation.
fn running_extension_containers(installation: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=dev.gofer.installation={installation}")])
        .args(["--filter", "label=dev.gofer.extension=heartbeat"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn a_container_extension_runs_once_across_the_servers_and_moves_when_its_server_dies() {
    let database = TestServer::start();
    let mut cluster = cluster(&database, 2, &[]);
    // The first server to start gave the installation its id.
    let installation = std::fs::read_to_string(cluster.servers[0].data_path().join("installation_id")).unwrap();
    let installation = installation.trim().to_string();
    let installed = cluster.servers[1].cli_json(&[
        "extension",
        "install",
        "heartbeat",
        crate::images::heartbeat(),
        "-s",
        "greeting=hi",
    ]);
    assert_eq!(installed["kind"], "container", "{installed:#}");
    // Whichever server took the install, the leading one runs it, once; every server sees it running.
    wait_for("the extension to run once, seen running by both servers", Duration::from_secs(60), || {
        let running =
            cluster.servers.iter().all(|s| s.cli_json(&["extension", "get", "heartbeat"])["state"] == "running");
        (running && running_extension_containers(&installation).len() == 1).then_some(())
    });
    let script = "echo $GOFER_EXTENSION_ID/$GOFER_EXTENSION_SUBSCRIPTION $HEARTBEAT_GREETING";
    cluster.servers[0].register(script_pipeline("beating", script));
    // Subscribed through each server: both reach the extension, wherever it runs.
    cluster.servers[0].cli_ok(&["pipeline", "subscribe", "beating", "heartbeat", "pulse", "-s", "every=1s"]);
    cluster.servers[1].cli_ok(&["pipeline", "subscribe", "beating", "heartbeat", "slow", "-s", "every=2s"]);
    wait_for("runs started by the extension", Duration::from_secs(60), || {
        (crate::harness::run_count(&cluster.servers[1], "beating") >= 3).then_some(())
    });
    assert_eq!(running_extension_containers(&installation).len(), 1, "one extension container, not one per server");
    let first = cluster.servers[1].wait_run("beating", 1);
    assert_eq!(first["initiator"], json!({ "kind": "extension", "name": "heartbeat" }), "its token works: {first:#}");

    // The server running it dies: the other takes it over, restores its subscriptions, and runs go on.
    let leader = leader_of(&cluster);
    let follower = 1 - leader;
    cluster.servers[leader].crash();
    let survivor = &cluster.servers[follower];
    let before = crate::harness::run_count(survivor, "beating");
    wait_for("the extension to start runs again from the other server", Duration::from_secs(90), || {
        (crate::harness::run_count(survivor, "beating") >= before + 3).then_some(())
    });
    assert_eq!(running_extension_containers(&installation).len(), 1, "still one extension container");
    let listed = survivor.cli_json(&["pipeline", "subscriptions", "beating"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

#[test]
fn with_two_servers_a_database_away_longer_than_the_lease_moves_no_run() {
    let database = TestServer::start();
    let cluster = cluster(&database, 2, &[]);
    let first = &cluster.servers[0];
    first.register(script_pipeline("through", "echo before; sleep 8; echo after"));
    let run = first.start_run("through", &[]);
    first.wait_task_state("through", run, "main", "running");
    let task = first.tasks("through", run)["main"].clone();

    database.stop();
    // The outage must outlast the lease (3 s): every server's heartbeat then looks stale once the database is back.
    let down = std::time::Instant::now();
    wait_for("the database to be away longer than the lease", Duration::from_secs(30), || {
        let (status, _) = api(first, "GET", "/api/system/servers", None);
        (status == 503 && down.elapsed() > Duration::from_secs(4)).then_some(())
    });
    database.resume();

    let done = wait_for("the run to be recorded as complete", Duration::from_secs(90), || {
        let (status, body) = api(first, "GET", &format!("/api/namespaces/default/pipelines/through/runs/{run}"), None);
        (status == 200 && body["state"] == "complete").then_some(body)
    });
    assert_eq!(done["status"], "successful", "{done:#}");
    let after = &first.tasks("through", run)["main"];
    assert_eq!(
        (after["attempt"].clone(), after["container_id"].clone()),
        (task["attempt"].clone(), task["container_id"].clone())
    );
    assert_eq!(first.logs("through", run, "main"), b"before\nafter\n");
    let events = first.cli_ok(&["event", "list", "--output", "json"]);
    let started = events
        .lines()
        .filter(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"]["type"] == "run_started")
        .count();
    assert_eq!(started, 1, "the run started once");
    for server in &cluster.servers {
        let (_, body) = api(server, "GET", "/api/system/servers", None);
        let alive = body["servers"].as_array().unwrap().iter().filter(|s| s["alive"] == true).count();
        assert_eq!(alive, 2, "both servers beat again: {body}");
        assert!(!server.log().contains("adopted a run"), "no server took a run from one that was alive");
    }
}

#[test]
fn a_github_delivery_to_any_server_starts_one_run_for_a_subscription_made_on_another() {
    use crate::github::{REPO, SECRET, deliver, push_payload};

    let database = TestServer::start();
    let cluster = cluster(&database, 2, &[("GOFER_EXTENSIONS__GITHUB__WEBHOOK_SECRET", SECRET)]);
    let (first, second) = (&cluster.servers[0], &cluster.servers[1]);
    first.register(script_pipeline("on-push", "echo $GOFER_EXTENSION_GITHUB_EVENT"));
    first.cli_ok(&[
        "pipeline",
        "subscribe",
        "on-push",
        "github",
        "main",
        "-s",
        &format!("repository={REPO}"),
        "-s",
        "events=push",
    ]);
    // The second server takes the subscription up at its next beat.
    wait_for("the other server to know the subscription", Duration::from_secs(30), || {
        second.cli_ok(&["extension", "debug", "github"]).contains("on-push").then_some(())
    });
    for (server, runs) in [(second, 1), (first, 2)] {
        let (status, body) = deliver(server, "push", &push_payload(REPO), None);
        assert!((200..300).contains(&status), "{status}: {body}");
        assert_eq!(crate::harness::run_count(first, "on-push"), runs, "one delivery, one run");
    }
    let run = first.wait_run("on-push", 1);
    assert_eq!(run["status"], "successful", "{run:#}");
    assert_eq!(first.logs("on-push", 1, "main"), b"push\n");
}
