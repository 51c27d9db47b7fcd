//! The Kubernetes backend against an in-process fake of the API (`src/fake.rs`) whose pods run on the real Docker
//! engine: the scheduler conformance suite, then what clusters do to clients (expired watches, broken log
//! streams, pods that never start, evictions) and the objects that come with a pod.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use gofer_scheduler::conformance::{Harness, run_all};
use gofer_scheduler::{Error, RegistryAuth, Scheduler};
use gofer_scheduler_kubernetes::{Connection, KubernetesScheduler, Settings};

use gofer_scheduler_kubernetes::fake::{FakeCluster, Faults};

fn settings() -> Settings {
    Settings { namespace: "gofer-test".into(), ..Settings::default() }
}

async fn connect(cluster: &FakeCluster, settings: Settings) -> KubernetesScheduler {
    KubernetesScheduler::connect(&Connection::Url(cluster.url.clone()), settings).await.expect("connect to the fake")
}

fn harness(url: String, tag: &str, claim: Option<&str>) -> Harness {
    Harness {
        connect: Box::new(move || {
            let url = url.clone();
            async move {
                let scheduler = KubernetesScheduler::connect(&Connection::Url(url), settings()).await.expect("connect");
                Arc::new(scheduler) as Arc<dyn Scheduler>
            }
            .boxed()
        }),
        image: "busybox:latest".into(),
        tag: tag.into(),
        volume_source: claim.map(String::from),
        reports_image_digest: true,
    }
}

async fn collect(output: futures::stream::BoxStream<'static, gofer_scheduler::Result<bytes::Bytes>>) -> Vec<u8> {
    output.map(|chunk| chunk.expect("a chunk").to_vec()).concat().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_backend_passes_the_conformance_suite() {
    let volume = tempfile::tempdir().unwrap();
    std::fs::write(volume.path().join("probe"), "mounted\n").unwrap();
    let claims = BTreeMap::from([("probe-claim".to_string(), volume.path().display().to_string())]);
    let cluster = FakeCluster::start(claims).await;
    run_all(&harness(cluster.url.clone(), &format!("k8s{}", std::process::id()), Some("probe-claim"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_when_watches_expire_and_log_streams_break() {
    let cluster = FakeCluster::start(BTreeMap::new()).await;
    // Every watch ends after two events (the client watches on from its last version); each pod's first log
    // stream breaks after 1000 bytes (the client opens it again and skips what it delivered).
    cluster.set_faults(Faults { cut_logs_after: Some(1000), close_watches_after: Some(2), ..Faults::default() });
    let h = harness(cluster.url.clone(), &format!("k8sf{}", std::process::id()), None);
    gofer_scheduler::conformance::output_is_byte_exact_and_the_exit_code_is_the_engines(&h).await;
    gofer_scheduler::conformance::output_is_complete_after_a_restart(&h).await;
    gofer_scheduler::conformance::stop_ends_a_container_within_its_grace(&h).await;
    assert!(cluster.faults_served().1 >= 2, "log streams were cut: {:?}", cluster.faults_served());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_outlives_an_expired_watch_version() {
    let cluster = FakeCluster::start(BTreeMap::new()).await;
    let scheduler = connect(&cluster, settings()).await;
    let h = harness(cluster.url.clone(), &format!("k8sg{}", std::process::id()), None);
    let started = scheduler.run(&h.spec("gone", "echo up; sleep 2; exit 5")).await.unwrap();
    let id = started.container_id.clone();
    let waiting = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.wait(&id).await }
    });
    let mut output = started.output;
    assert!(output.next().await.unwrap().unwrap().starts_with(b"up"));
    // The cluster forgets the versions the watch knows and ends every watch: resuming gets 410 Gone, and the
    // client must read the pod again instead of giving up or missing the exit.
    cluster.compact();
    cluster.close_watches();
    assert_eq!(waiting.await.unwrap().unwrap(), 5);
    assert!(cluster.faults_served().0 >= 1, "a watch was answered 410 Gone");
    scheduler.remove(&started.container_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_stuck_in_container_creating_fails_after_the_start_timeout_naming_why() {
    let cluster = FakeCluster::start(BTreeMap::new()).await;
    cluster.set_faults(Faults { stuck_image: Some("busybox:stuck".into()), ..Faults::default() });
    let scheduler = connect(&cluster, Settings { start_timeout: Duration::from_secs(2), ..settings() }).await;
    let h = harness(cluster.url.clone(), &format!("k8ss{}", std::process::id()), None);
    gofer_scheduler::conformance::a_workload_that_never_runs_fails_after_the_start_timeout(
        &scheduler,
        &h,
        "busybox:stuck",
        "ContainerCreating",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_pod_is_an_engine_error_saying_so() {
    let cluster = FakeCluster::start(BTreeMap::new()).await;
    let scheduler = connect(&cluster, settings()).await;
    let h = harness(cluster.url.clone(), &format!("k8se{}", std::process::id()), None);
    let started = scheduler.run(&h.spec("evicted", "echo up; sleep 60")).await.unwrap();
    let mut output = started.output;
    assert!(output.next().await.unwrap().unwrap().starts_with(b"up"));
    cluster.evict(&started.container_id).await;
    match scheduler.wait(&started.container_id).await {
        Err(Error::Engine { source, .. }) => assert!(source.to_string().contains("Evicted"), "{source}"),
        other => panic!("expected an eviction, got {other:?}"),
    }
    assert!(tokio::time::timeout(Duration::from_secs(30), output.count()).await.is_ok(), "the output ended");
    scheduler.remove(&started.container_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_travel_in_a_pull_secret_the_pod_owns() {
    let cluster = FakeCluster::start(BTreeMap::new()).await;
    let scheduler = connect(&cluster, settings()).await;
    let h = harness(cluster.url.clone(), &format!("k8sr{}", std::process::id()), None);
    let mut spec = h.spec("auth", "echo pulled");
    spec.registry_auth = Some(RegistryAuth { user: "bot".into(), pass: "s3cret".into() });
    let id = scheduler.create(&spec).await.unwrap();
    let secret_name = format!("{id}-pull");
    let secret = cluster.secret(&secret_name).expect("the pull secret");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let pod = cluster.pod(&id).unwrap();
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], serde_json::json!(pod.metadata.uid), "{secret:#}");
    let pull = pod.spec.unwrap().image_pull_secrets.unwrap();
    assert_eq!(pull[0].name, secret_name);
    let started = scheduler.start(&id).await.unwrap();
    assert_eq!(collect(started.output).await, b"pulled\n");
    assert_eq!(scheduler.wait(&id).await.unwrap(), 0);
    scheduler.remove(&id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cluster.secret(&secret_name).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the pull secret outlived its pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_port_gets_a_service_reached_by_cluster_dns() {
    let cluster = FakeCluster::start(BTreeMap::new()).await;
    let scheduler = connect(&cluster, settings()).await;
    let h = harness(cluster.url.clone(), &format!("k8sx{}", std::process::id()), None);
    let mut spec = h.spec("extension", "echo serving; sleep 60");
    spec.expose_port = Some(8082);
    let started = scheduler.run(&spec).await.unwrap();
    let mut output = started.output;
    assert!(output.next().await.unwrap().unwrap().starts_with(b"serving"));
    let id = started.container_id;
    let service = cluster.service(&id).expect("a service");
    assert_eq!(service["spec"]["selector"]["dev.gofer.pod"], id.as_str());
    let info = scheduler.inspect(&id).await.unwrap();
    assert_eq!(info.endpoint, Some(format!("{id}.gofer-test.svc:8082")));
    scheduler.remove(&id).await.unwrap();
    assert!(cluster.service(&id).is_none(), "the service goes with the pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_says_where_and_what_to_check() {
    match KubernetesScheduler::connect(&Connection::Url("http://127.0.0.1:9".into()), settings()).await {
        Err(e @ Error::Unreachable { .. }) => {
            let words = e.to_string();
            assert!(words.contains("127.0.0.1:9") && words.contains("scheduler.kubernetes"), "{words}");
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_cannot_start_ends_with_the_kubelets_words() {
    let cluster = FakeCluster::start(BTreeMap::new()).await;
    let scheduler = connect(&cluster, settings()).await;
    let h = harness(cluster.url.clone(), &format!("k8sn{}", std::process::id()), None);
    let mut spec = h.spec("nocommand", "true");
    spec.command = Some(vec!["no-such-command".into()]);
    let started = scheduler.run(&spec).await.unwrap();
    assert_eq!(scheduler.wait(&started.container_id).await.unwrap(), 128);
    let info = scheduler.inspect(&started.container_id).await.unwrap();
    let said = info.exit_message.unwrap_or_default();
    assert!(said.starts_with("StartError: ") && said.contains("no-such-command"), "{said}");
    scheduler.remove(&started.container_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_and_services_left_without_their_pod_are_swept() {
    let cluster = FakeCluster::start(BTreeMap::new()).await;
    let scheduler = connect(&cluster, settings()).await;
    let h = harness(cluster.url.clone(), &format!("k8so{}", std::process::id()), None);
    let mut spec = h.spec("orphan", "true");
    spec.registry_auth = Some(RegistryAuth { user: "bot".into(), pass: "s3cret".into() });
    spec.expose_port = Some(8082);
    let id = scheduler.create(&spec).await.unwrap();
    let kept = scheduler.create(&h.spec("kept", "true")).await.unwrap();
    // As if Gofer crashed after making the secret and the service but before the pod.
    cluster.forget_pod(&id);
    assert_eq!(scheduler.sweep_orphans(Duration::from_secs(3600)).await.unwrap(), 0, "young ones stay");
    assert_eq!(scheduler.sweep_orphans(Duration::ZERO).await.unwrap(), 2);
    assert!(cluster.secret(&format!("{id}-pull")).is_none() && cluster.service(&id).is_none());
    assert!(cluster.pod(&kept).is_some(), "pods are not the sweep's business");
    scheduler.remove(&kept).await.unwrap();
}
