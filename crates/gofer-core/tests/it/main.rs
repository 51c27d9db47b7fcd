//! The orchestrator without luck: a scripted scheduler plays each container's part (exit codes, failures to
//! start, containers that hang until stopped) and tokio's paused clock makes timeouts instant and exact. Each test
//! snapshots the run as text. Storage is the real SQLite backend. The real Docker engine is covered end to end in
//! the `gofer` crate's tests; these pin down the orchestrator's decisions.

#![allow(clippy::unwrap_used)]

mod ahead;
mod deployments;
mod scripted;
mod time;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gofer_api::config::{Pipeline, RequiredParentStatus, Strategy, Task};
use gofer_api::models::{Initiator, Run};
use gofer_api::requests::DeployRequest;
use gofer_core::Gofer;
use gofer_core::clock::ManualClock;
use gofer_core::objects::ObjectLimits;
use gofer_core::runtime::{Backends, Options, Runtime};
use gofer_core::secrets::SecretKey;
use gofer_storage::Storage;

use crate::scripted::{Scripted, Step};

struct Harness {
    gofer: Gofer,
    storage: Arc<dyn Storage>,
    scheduler: Arc<Scripted>,
    /// The wall clock token expiry and subscription ticks read; tests move it instead of sleeping.
    clock: ManualClock,
    /// Kept so its background work lives as long as the test.
    runtime: Runtime,
    _dir: Option<tempfile::TempDir>,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness_on(dir.path(), Arc::new(Scripted::default())).await;
    h._dir = Some(dir);
    h
}

/// A Gofer on the data in `dir` and the containers of `scheduler`, built by the same composition root as the
/// server's (only the backends differ).
async fn harness_on(dir: &std::path::Path, scheduler: Arc<Scripted>) -> Harness {
    let storage: Arc<dyn Storage> = Arc::new(gofer_storage_sqlite::SqliteStorage::open(&dir.join("gofer.db")).unwrap());
    std::fs::create_dir_all(dir.join("objects")).unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.join("objects")).unwrap();
    // 2026-01-01T00:00:00Z: whole seconds, so interval ticks fall on round numbers.
    let clock = ManualClock::new(1_767_225_600_000);
    let key_file = dir.join("secret.key");
    let secret_key = match std::fs::read_to_string(&key_file) {
        Ok(text) => SecretKey::from_base64(&text).unwrap(),
        Err(_) => {
            let key = SecretKey::generate().unwrap();
            std::fs::write(&key_file, key.to_base64()).unwrap();
            key
        }
    };
    let backends = Backends {
        storage: storage.clone(),
        bus: Arc::new(gofer_storage::LocalBus::default()),
        scheduler: scheduler.clone(),
        object_store: Arc::new(store),
        secret_key,
        logs: Arc::new(gofer_storage::FileLogStore::new(dir.join("logs"))),
        clock: Arc::new(clock.clone()),
        metrics: gofer_core::metrics::Metrics::default(),
        cluster: gofer_core::cluster::Cluster::alone(gofer_core::cluster::this_server("http://gofer", "test")),
    };
    let options = Options {
        orchestrator: gofer_core::orchestrator::Options {
            installation_id: "test".into(),
            api_base_url: "http://gofer".into(),
            stop_grace: Duration::from_secs(5),
            global_limit: 10,
            pipeline_limit: 10,
            max_timeout: Duration::from_secs(3600),
            log_retention_runs: 0,
            keep_containers_for: Duration::ZERO,
            volumes: Default::default(),
            create_ahead: true,
        },
        objects: ObjectLimits { max_object_bytes: 1 << 20, pipeline_objects: 10, run_objects_runs: 1 },
        max_secret_bytes: 1 << 16,
        event_retention: Duration::from_secs(86_400),
        min_interval: Duration::from_secs(1),
        github_webhook_secret: None,
        container_extensions: None,
    };
    let runtime = Runtime::build(backends, options).await.unwrap();
    runtime.gofer().ensure_default_namespace().await.unwrap();
    Harness { gofer: runtime.gofer().clone(), storage, scheduler, clock, runtime, _dir: None }
}

fn test_user() -> Initiator {
    Initiator { kind: "user".into(), name: "test".into() }
}

fn task(id: &str, command: &[&str]) -> Task {
    Task::new(id, "scripted").command(command.iter().map(|s| s.to_string()).collect())
}

impl Harness {
    async fn deploy(&self, pipeline: Pipeline) {
        let id = pipeline.id.clone();
        let registered = self.gofer.register_config("default", &id, pipeline).await.unwrap();
        let immediate = DeployRequest { strategy: Some(Strategy::Immediate), force: false };
        self.gofer.deploy("default", &id, registered.config.version, immediate, test_user()).await.unwrap();
    }

    async fn start(&self, pipeline: &str) -> Run {
        self.gofer.start_run("default", pipeline, BTreeMap::new(), None, test_user()).await.unwrap()
    }

    async fn wait_complete(&self, pipeline: &str, run: u64) -> Run {
        loop {
            let current = self.gofer.get_run("default", pipeline, run).await.unwrap();
            if current.is_complete() {
                return current;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The run and its tasks as text: one line per task, in task-id order.
    async fn snapshot(&self, pipeline: &str, run: u64) -> String {
        let current = self.wait_complete(pipeline, run).await;
        let mut text = format!(
            "run {}: {} {}{}\n",
            current.run_id,
            current.state,
            current.status,
            current.status_reason.map(|r| format!(" ({})", r.reason)).unwrap_or_default()
        );
        for t in self.storage.list_task_executions("default", pipeline, run).await.unwrap() {
            text.push_str(&format!(
                "{}: {} {} exit={} attempt={}{}{}\n",
                t.task_id,
                t.state,
                t.status,
                t.exit_code.map_or("-".into(), |c| c.to_string()),
                t.attempt,
                t.status_reason.map(|r| format!(" ({})", r.reason)).unwrap_or_default(),
                if t.attempts.is_empty() {
                    String::new()
                } else {
                    format!(" earlier={:?}", t.attempts.iter().map(|a| a.exit_code.unwrap_or(-1)).collect::<Vec<_>>())
                }
            ));
        }
        text
    }
}

#[tokio::test(start_paused = true)]
async fn edges_decide_what_runs_and_skips_propagate() {
    let h = harness().await;
    h.deploy(Pipeline::new("dag", "").tasks(vec![
        task("build", &["exit", "0"]),
        task("test", &["exit", "2"]).depends_on("build", RequiredParentStatus::Success),
        task("notify", &["exit", "0"]).depends_on("test", RequiredParentStatus::Failure),
        task("publish", &["exit", "0"]).depends_on("test", RequiredParentStatus::Success),
        task("announce", &["exit", "0"]).depends_on("publish", RequiredParentStatus::Success),
        task("cleanup", &["exit", "0"]).depends_on("publish", RequiredParentStatus::Any),
    ]))
    .await;
    let run = h.start("dag").await;
    assert_eq!(
        h.snapshot("dag", run.run_id).await,
        "run 1: complete failed (abnormal_exit)\n\
         announce: complete skipped exit=- attempt=1 (failed_precondition)\n\
         build: complete successful exit=0 attempt=1\n\
         cleanup: complete successful exit=0 attempt=1\n\
         notify: complete successful exit=0 attempt=1\n\
         publish: complete skipped exit=- attempt=1 (failed_precondition)\n\
         test: complete failed exit=2 attempt=1 (abnormal_exit)\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_container_that_cannot_start_is_a_scheduler_error() {
    let h = harness().await;
    h.deploy(Pipeline::new("broken", "").tasks(vec![
        task("start", &["start-fails"]),
        task("after", &["exit", "0"]).depends_on("start", RequiredParentStatus::Success),
    ]))
    .await;
    let run = h.start("broken").await;
    assert_eq!(
        h.snapshot("broken", run.run_id).await,
        "run 1: complete failed (scheduler_error)\n\
         after: complete skipped exit=- attempt=1 (failed_precondition)\n\
         start: complete failed exit=- attempt=1 (scheduler_error)\n"
    );
}

/// The value of the one sample of `text` that starts with `series` (name and labels), or `None`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(start_paused = true)]
async fn metrics_count_runs_tasks_and_engine_errors_as_they_happen() {
    let h = harness().await;
    h.deploy(Pipeline::new("dag", "").tasks(vec![
        task("build", &["exit", "0"]),
        task("test", &["exit", "2"]).depends_on("build", RequiredParentStatus::Success),
    ]))
    .await;
    h.deploy(Pipeline::new("broken", "").tasks(vec![task("start", &["start-fails"])])).await;
    for _ in 0..2 {
        let run = h.start("dag").await;
        h.wait_complete("dag", run.run_id).await;
    }
    let run = h.start("broken").await;
    h.wait_complete("broken", run.run_id).await;
    let text = h.gofer.render_metrics();
    let dag = r#"namespace="default",pipeline="dag""#;
    let value = |series: String| sample(&text, &series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"));
    assert_eq!(value(format!("gofer_runs_queued_total{{{dag},trigger=\"manual\"}}")), 2.0);
    assert_eq!(value(format!("gofer_runs_started_total{{{dag},trigger=\"manual\"}}")), 2.0);
    assert_eq!(value(format!("gofer_runs_completed_total{{{dag},trigger=\"manual\",status=\"failed\"}}")), 2.0);
    assert_eq!(value(format!("gofer_run_duration_seconds_count{{{dag},status=\"failed\"}}")), 2.0);
    assert_eq!(value(format!("gofer_run_queue_wait_seconds_count{{{dag}}}")), 2.0);
    assert_eq!(value(format!("gofer_task_duration_seconds_count{{{dag},status=\"successful\"}}")), 2.0);
    assert_eq!(value(format!("gofer_task_duration_seconds_count{{{dag},status=\"failed\"}}")), 2.0);
    assert_eq!(value(format!("gofer_tasks_running{{{dag}}}")), 0.0);
    assert_eq!(value("gofer_scheduler_errors_total{kind=\"engine\"}".into()), 1.0);
    assert_eq!(
        value(
            r#"gofer_runs_completed_total{namespace="default",pipeline="broken",trigger="manual",status="failed"}"#
                .into()
        ),
        1.0
    );
    // A task that never started has no duration.
    assert!(!text.contains(r#"gofer_task_duration_seconds_count{namespace="default",pipeline="broken""#), "{text}");
    // Nothing waits.
    assert!(!text.contains("gofer_runs_waiting{"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_first_success_and_keep_every_attempt() {
    let h = harness().await;
    h.deploy(Pipeline::new("flaky", "").tasks(vec![
        task("third-time", &["succeed-on-attempt", "3"]).retries(5),
        task("never", &["exit", "9"]).retries(2),
    ]))
    .await;
    let run = h.start("flaky").await;
    assert_eq!(
        h.snapshot("flaky", run.run_id).await,
        "run 1: complete failed (abnormal_exit)\n\
         never: complete failed exit=9 attempt=3 (abnormal_exit) earlier=[9, 9]\n\
         third-time: complete successful exit=0 attempt=3 earlier=[1, 1]\n"
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_stop_the_task_or_the_run() {
    let h = harness().await;
    h.deploy(Pipeline::new("slow-task", "").tasks(vec![
        task("hang", &["hang"]).timeout(Duration::from_secs(30)),
        task("handler", &["exit", "0"]).depends_on("hang", RequiredParentStatus::Failure),
    ]))
    .await;
    let run = h.start("slow-task").await;
    assert_eq!(
        h.snapshot("slow-task", run.run_id).await,
        "run 1: complete failed (timeout)\n\
         handler: complete successful exit=0 attempt=1\n\
         hang: complete failed exit=143 attempt=1 (timeout)\n"
    );

    h.deploy(Pipeline::new("slow-run", "").timeout(Duration::from_secs(60)).tasks(vec![
        task("hang", &["hang"]),
        task("later", &["exit", "0"]).depends_on("hang", RequiredParentStatus::Any),
    ]))
    .await;
    let run = h.start("slow-run").await;
    assert_eq!(
        h.snapshot("slow-run", run.run_id).await,
        "run 1: complete cancelled (timeout)\n\
         hang: complete cancelled exit=143 attempt=1 (timeout)\n\
         later: complete cancelled exit=- attempt=1 (timeout)\n"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_run_stops_running_tasks_and_cancels_waiting_ones() {
    let h = harness().await;
    h.deploy(Pipeline::new("cancel", "").tasks(vec![
        task("hang", &["hang"]),
        task("after", &["exit", "0"]).depends_on("hang", RequiredParentStatus::Success),
    ]))
    .await;
    let run = h.start("cancel").await;
    loop {
        // The execution appears once the run's driver has stored it.
        let t = h.gofer.get_task_execution("default", "cancel", run.run_id, "hang").await.ok();
        if t.is_some_and(|t| t.state == gofer_api::models::TaskState::Running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.gofer.cancel_run("default", "cancel", run.run_id).await.unwrap();
    assert_eq!(
        h.snapshot("cancel", run.run_id).await,
        "run 1: complete cancelled (user_cancelled)\n\
         after: complete cancelled exit=- attempt=1 (user_cancelled)\n\
         hang: complete cancelled exit=143 attempt=1 (user_cancelled)\n"
    );
    let again = h.gofer.cancel_run("default", "cancel", run.run_id).await.unwrap_err();
    assert!(again.to_string().contains("already finished"), "{again}");
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_limit_of_one_runs_one_at_a_time_in_order() {
    let h = harness().await;
    h.deploy(Pipeline::new("serial", "").parallelism(1).tasks(vec![task("work", &["sleep-then-exit", "10"])])).await;
    let runs = [h.start("serial").await, h.start("serial").await, h.start("serial").await];
    let mut done = Vec::new();
    for run in &runs {
        done.push(h.wait_complete("serial", run.run_id).await);
    }
    for pair in done.windows(2) {
        assert!(
            pair[1].started >= pair[0].ended,
            "{:?} then {:?}",
            (pair[0].started, pair[0].ended),
            (pair[1].started, pair[1].ended)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn run_tokens_are_injected_stored_hashed_and_revoked_when_the_run_ends() {
    let h = harness().await;
    h.deploy(Pipeline::new("tokens", "").tasks(vec![
        task("with", &["hang"]).inject_api_token(true).timeout(Duration::from_secs(60)),
        task("without", &["exit", "0"]),
    ]))
    .await;
    let run = h.start("tokens").await;
    let token = loop {
        let envs = h.scheduler.envs.lock().unwrap().clone();
        if let Some(token) = envs.iter().find_map(|env| env.get("GOFER_TOKEN").cloned())
            && envs.len() == 2
        {
            assert_eq!(envs.iter().filter(|env| env.contains_key("GOFER_TOKEN")).count(), 1, "only that task");
            break token;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(token.len(), 64);
    let stored = h.storage.get_token_by_hash(&gofer_core::tokens::token_hash(&token)).await.unwrap();
    assert_eq!(stored.user, "run:default/tokens/1");
    assert_ne!(stored.hash, token, "only the hash is kept");
    assert!(stored.expires > stored.created, "a run token expires in any case");
    assert!(stored.expires <= stored.created + 3_600_000, "no later than the longest run may take");

    // The token ends with its run.
    h.wait_complete("tokens", run.run_id).await;
    assert!(h.storage.get_token_by_hash(&gofer_core::tokens::token_hash(&token)).await.is_err());
    let holders = h.storage.token_users("run:default/tokens/").await.unwrap();
    assert!(holders.is_empty(), "tokens of finished runs are revoked: {holders:?}");
}

/// A task's log, as the API gives it.
async fn log_text(h: &Harness, pipeline: &str, run: u64, task: &str) -> String {
    use futures::StreamExt;
    let stream = h.gofer.task_logs("default", pipeline, run, task, None, false).await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.map(|c| c.unwrap()).collect().await;
    String::from_utf8(chunks.concat()).unwrap()
}

/// Gofer dies (the runtime that ran it is dropped mid-call, like kill -9) at each step of a task attempt; a new
/// Gofer on the same data and engine finishes the run. Whatever the step, the task ran exactly once, in its own
/// container, with its real exit code and its output, and a container that never started is never taken as
/// finished (the engine answers a wait on a created container with 0 at once).
#[test]
fn a_crash_at_any_step_of_an_attempt_is_recovered_and_nothing_runs_twice() {
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    for step in [Step::Created, Step::Attached, Step::Started, Step::Exited, Step::Recorded] {
        let dir = tempfile::tempdir().unwrap();
        let scheduler = Arc::new(Scripted::default());
        let first = runtime();
        first.block_on(async {
            let h = harness_on(dir.path(), scheduler.clone()).await;
            h.deploy(Pipeline::new("crash", "").tasks(vec![
                task("first", &["exit", "3"]),
                task("handler", &["exit", "0"]).depends_on("first", RequiredParentStatus::Failure),
            ]))
            .await;
            scheduler.crash_at(step);
            h.start("crash").await;
            scheduler.crashed().await;
        });
        drop(first);

        let (snapshot, log) = runtime().block_on(async {
            let h = harness_on(dir.path(), scheduler.clone()).await;
            h.gofer.orchestrator().recover().await.unwrap();
            let snapshot = h.snapshot("crash", 1).await;
            let log = log_text(&h, "crash", 1, "first").await;
            // Containers go once their outcome is stored, off the path that completes the run.
            while scheduler.container_count() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (snapshot, log)
        });
        assert_eq!(
            snapshot,
            "run 1: complete failed (abnormal_exit)\n\
             first: complete failed exit=3 attempt=1 (abnormal_exit)\n\
             handler: complete successful exit=0 attempt=1\n",
            "crash at {step:?}"
        );
        assert_eq!(log, "exit 3\n", "crash at {step:?}: the output, once");
        let created = scheduler.created.load(std::sync::atomic::Ordering::Relaxed);
        let started = scheduler.started.load(std::sync::atomic::Ordering::Relaxed);
        // While `first` runs, `handler`'s container is made ahead; after a crash between `first`'s exit and its
        // outcome, the new Gofer removes it unstarted and makes it again when its time comes.
        let made_ahead = step == Step::Exited;
        let expected = (if made_ahead { 3 } else { 2 }, 2);
        assert_eq!((created, started), expected, "crash at {step:?}: each task started once, in one container");
        assert_eq!(scheduler.container_count(), 0, "crash at {step:?}: every container removed");
    }
}

/// A tick is recorded with compare-and-set: of two firings of the same tick (two servers, or a process and its
/// successor), one starts a run and the other learns the tick was taken.
#[tokio::test(start_paused = true)]
async fn the_same_tick_fired_twice_starts_one_run() {
    use gofer_core::extensions::{Fired, Firing, Trigger};
    let h = harness().await;
    h.deploy(Pipeline::new("ticked", "").tasks(vec![task("work", &["exit", "0"])])).await;
    let request = gofer_api::requests::SubscribeRequest {
        extension_id: "interval".into(),
        label: "hourly".into(),
        settings: BTreeMap::from([("every".to_string(), "1h".to_string())]),
    };
    let subscription = h.gofer.subscribe("default", "ticked", request).await.unwrap();
    let key = gofer_storage::SubscriptionKey::of(&subscription);
    let tick = Firing::Tick { previous: subscription.last_fired, at: 3_600_000 };
    let first = h.gofer.fire(&key, tick, BTreeMap::new()).await.unwrap();
    let second = h.gofer.fire(&key, tick, BTreeMap::new()).await.unwrap();
    assert_eq!(first, Fired::Run(1));
    assert_eq!(second, Fired::Already { last_fired: 3_600_000 });
    let runs = h.gofer.list_runs("default", "ticked", Default::default()).await.unwrap().0;
    assert_eq!(runs.len(), 1, "one run for the tick");
    let event = Firing::Event { at: 3_600_001 };
    assert_eq!(h.gofer.fire(&key, event, BTreeMap::new()).await.unwrap(), Fired::Run(2), "events always start one");
}

/// A cancel asked for just before a crash still holds after the restart: it is stored, and the new process
/// honours it (the container it re-attaches to is stopped, the run ends cancelled, not at its timeout).
#[test]
fn a_cancel_survives_a_crash() {
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Arc::new(Scripted::default());
    runtime().block_on(async {
        let h = harness_on(dir.path(), scheduler.clone()).await;
        h.deploy(
            Pipeline::new("cancelled", "").tasks(vec![task("hang", &["hang"]).timeout(Duration::from_secs(3600))]),
        )
        .await;
        let run = h.start("cancelled").await;
        while h.gofer.get_task_execution("default", "cancelled", run.run_id, "hang").await.map(|t| t.state).ok()
            != Some(gofer_api::models::TaskState::Running)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        scheduler.crash_at(Step::Stopping);
        h.gofer.cancel_run("default", "cancelled", run.run_id).await.unwrap();
        scheduler.crashed().await;
    });
    let snapshot = runtime().block_on(async {
        let h = harness_on(dir.path(), scheduler.clone()).await;
        h.gofer.orchestrator().recover().await.unwrap();
        h.snapshot("cancelled", 1).await
    });
    assert_eq!(
        snapshot,
        "run 1: complete cancelled (user_cancelled)\n\
         hang: complete cancelled exit=143 attempt=1 (user_cancelled)\n"
    );
}
