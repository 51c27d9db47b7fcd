//! The Nomad backend against an in-process fake of Nomad's HTTP API (`src/fake.rs`) whose allocations run on the
//! real Docker engine: the scheduler conformance suite, then what Nomad does to clients (followed logs that never
//! end, streams that break, allocations that stay pending, lost nodes) and extensions' addresses.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use gofer_scheduler::conformance::{Harness, run_all};
use gofer_scheduler::{Error, Scheduler};
use gofer_scheduler_nomad::fake::{FakeNomad, Faults};
use gofer_scheduler_nomad::{NomadScheduler, Settings};

fn settings(url: &str) -> Settings {
    Settings {
        address: url.into(),
        namespace: "ci".into(),
        kill_timeout: Duration::from_secs(1),
        ..Settings::default()
    }
}

async fn connect(nomad: &FakeNomad, settings: Settings) -> NomadScheduler {
    NomadScheduler::connect(settings).await.unwrap_or_else(|e| panic!("connect to the fake at {}: {e}", nomad.url))
}

fn harness(url: String, tag: &str, volume: Option<&str>) -> Harness {
    Harness {
        connect: Box::new(move || {
            let url = url.clone();
            async move { Arc::new(NomadScheduler::connect(settings(&url)).await.expect("connect")) as Arc<dyn Scheduler> }
                .boxed()
        }),
        image: "busybox:latest".into(),
        tag: tag.into(),
        volume_source: volume.map(String::from),
        reports_image_digest: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nomad_backend_passes_the_conformance_suite() {
    let volume = tempfile::tempdir().unwrap();
    std::fs::write(volume.path().join("probe"), "mounted\n").unwrap();
    let volumes = BTreeMap::from([("probe-volume".to_string(), volume.path().display().to_string())]);
    let nomad = FakeNomad::start(volumes).await;
    run_all(&harness(nomad.url.clone(), &format!("nomad{}", std::process::id()), Some("probe-volume"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_when_log_streams_break() {
    let nomad = FakeNomad::start(BTreeMap::new()).await;
    nomad.set_faults(Faults { cut_logs_after: Some(1000), ..Faults::default() });
    let h = harness(nomad.url.clone(), &format!("nomadf{}", std::process::id()), None);
    gofer_scheduler::conformance::output_is_byte_exact_and_the_exit_code_is_the_engines(&h).await;
    gofer_scheduler::conformance::output_is_complete_after_a_restart(&h).await;
    assert!(nomad.logs_cut() >= 2, "log streams were cut: {}", nomad.logs_cut());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_stays_pending_fails_after_the_start_timeout_naming_why() {
    let nomad = FakeNomad::start(BTreeMap::new()).await;
    nomad.set_faults(Faults { stuck_image: Some("busybox:stuck".into()), ..Faults::default() });
    let scheduler = connect(&nomad, Settings { start_timeout: Duration::from_secs(2), ..settings(&nomad.url) }).await;
    let h = harness(nomad.url.clone(), &format!("nomads{}", std::process::id()), None);
    gofer_scheduler::conformance::a_workload_that_never_runs_fails_after_the_start_timeout(
        &scheduler,
        &h,
        "busybox:stuck",
        "Task Setup",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_is_an_engine_error_saying_so_and_the_output_ends() {
    let nomad = FakeNomad::start(BTreeMap::new()).await;
    let scheduler = connect(&nomad, settings(&nomad.url)).await;
    let h = harness(nomad.url.clone(), &format!("nomadl{}", std::process::id()), None);
    let started = scheduler.run(&h.spec("lost", "echo up; sleep 60")).await.unwrap();
    let mut output = started.output;
    assert!(output.next().await.unwrap().unwrap().starts_with(b"up"));
    nomad.lose_node_of(&started.container_id).await;
    match scheduler.wait(&started.container_id).await {
        Err(Error::Engine { source, .. }) => assert!(source.to_string().contains("node was lost"), "{source}"),
        other => panic!("expected a lost node, got {other:?}"),
    }
    assert!(tokio::time::timeout(Duration::from_secs(30), output.count()).await.is_ok(), "the output ended");
    scheduler.remove(&started.container_id).await.unwrap();
    assert!(nomad.job_ids().is_empty(), "the job and its run were purged: {:?}", nomad.job_ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_is_a_service_job_reached_at_its_allocations_address() {
    let nomad = FakeNomad::start(BTreeMap::new()).await;
    let scheduler = connect(&nomad, settings(&nomad.url)).await;
    let h = harness(nomad.url.clone(), &format!("nomadx{}", std::process::id()), None);
    let mut spec = h.spec(
        "extension",
        "echo serving; while true; do echo -e 'HTTP/1.0 200 OK\\r\\n\\r\\nhi' | nc -l -p 8082; done",
    );
    spec.expose_port = Some(8082);
    let started = scheduler.run(&spec).await.unwrap();
    let mut output = started.output;
    assert!(output.next().await.unwrap().unwrap().starts_with(b"serving"));
    let endpoint = scheduler.inspect(&started.container_id).await.unwrap().endpoint.expect("an endpoint");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&endpoint).await {
            let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer).await;
            if answer.contains("hi") {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing answered at {endpoint}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = nomad.job(&started.container_id).unwrap();
    assert_eq!(job["TaskGroups"][0]["Networks"][0]["DynamicPorts"][0]["To"], 8082);
    assert_eq!((&job["Type"], &job["Stop"]), (&serde_json::json!("service"), &serde_json::json!(false)));
    assert_eq!(
        nomad.job_ids(),
        std::slice::from_ref(&started.container_id),
        "a service runs as itself, no dispatched job"
    );
    scheduler.stop(&started.container_id, Duration::from_secs(1)).await.unwrap();
    assert_ne!(scheduler.wait(&started.container_id).await.unwrap(), 0, "stopped");
    scheduler.remove(&started.container_id).await.unwrap();
    assert!(nomad.job_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_says_where_and_what_to_check() {
    match NomadScheduler::connect(settings("http://127.0.0.1:9")).await {
        Err(e @ Error::Unreachable { .. }) => {
            let words = e.to_string();
            assert!(words.contains("127.0.0.1:9") && words.contains("scheduler.nomad"), "{words}");
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_job_nomad_has_not_placed_ends_its_wait_at_once() {
    let nomad = FakeNomad::start(BTreeMap::new()).await;
    nomad.set_faults(Faults { stuck_image: Some("busybox:stuck".into()), ..Faults::default() });
    // The default start timeout (ten minutes): the wait must end because of the stop, not because of it.
    let scheduler = connect(&nomad, settings(&nomad.url)).await;
    let h = harness(nomad.url.clone(), &format!("nomadc{}", std::process::id()), None);
    let mut spec = h.spec("cancelled", "true");
    spec.image = "busybox:stuck".into();
    let started = scheduler.run(&spec).await.unwrap();
    let waiting = tokio::spawn({
        let (scheduler, id) = (scheduler.clone(), started.container_id.clone());
        async move { scheduler.wait(&id).await }
    });
    scheduler.stop(&started.container_id, Duration::from_secs(1)).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("the wait ended").unwrap();
    match waited {
        Err(Error::Engine { source, .. }) => assert!(source.to_string().contains("stopped before"), "{source}"),
        other => panic!("expected the stop to end the wait, got {other:?}"),
    }
    let output = tokio::time::timeout(Duration::from_secs(30), started.output.count()).await;
    assert!(output.is_ok(), "the output ended");
    scheduler.remove(&started.container_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_nomad_cannot_place_fails_after_the_start_timeout_saying_why() {
    let nomad = FakeNomad::start(BTreeMap::new()).await;
    nomad.set_faults(Faults { unplaceable_image: Some("busybox:huge".into()), ..Faults::default() });
    let scheduler = connect(&nomad, Settings { start_timeout: Duration::from_secs(2), ..settings(&nomad.url) }).await;
    let h = harness(nomad.url.clone(), &format!("nomadu{}", std::process::id()), None);
    let why = "no node fits (3 evaluated, 1 filtered, 2 exhausted); 1 node(s) filtered by ${attr.kernel.name} = linux; \
               2 node(s) exhausted: memory";
    gofer_scheduler::conformance::a_workload_that_never_runs_fails_after_the_start_timeout(
        &scheduler,
        &h,
        "busybox:huge",
        why,
    )
    .await;
}
