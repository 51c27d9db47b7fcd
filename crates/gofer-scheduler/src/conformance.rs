//! The suite every scheduler backend passes (feature `conformance`): what the orchestrator relies on, checked
//! against a real engine (Docker) or a backend's cluster API. Each check panics with what went wrong.
//!
//! The image must have busybox's applets (`sh`, `seq`, `sleep`, `dd`, `id`, `pwd`, `printf`); the checks start their
//! containers with the harness's labels and remove them when they pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::{ContainerSpec, ContainerState, Error, Mount, Resources, Result, Scheduler, labels};

/// What the suite needs of a backend.
pub struct Harness {
    /// A fresh scheduler on the same engine, as a server that restarted makes one.
    pub connect: Box<dyn Fn() -> BoxFuture<'static, Arc<dyn Scheduler>> + Send + Sync>,
    /// An image with busybox's applets.
    pub image: String,
    /// Unique to this test process: every container the suite makes carries it, so it finds only its own.
    pub tag: String,
    /// A volume source the backend can mount (for Docker a host directory), holding a file `probe` that reads
    /// `mounted`; `None` skips the mount check.
    pub volume_source: Option<String>,
    /// Whether the engine tells the digest of the image a container ran (Nomad does not).
    pub reports_image_digest: bool,
}

const TAG: &str = "dev.gofer.conformance";

impl Harness {
    fn labels(&self, check: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (TAG.to_string(), self.tag.clone()),
            ("dev.gofer.conformance-check".to_string(), check.to_string()),
        ])
    }

    /// A container named as Gofer names task containers, running `script` with `sh -c`.
    pub fn spec(&self, check: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            name: format!("gofer-{}-default-conformance-1-{check}-1", self.tag),
            image: self.image.clone(),
            always_pull: false,
            registry_auth: None,
            env: vec![("GREETING".into(), "hi there".into())],
            entrypoint: None,
            command: Some(vec!["sh".into(), "-c".into(), script.into()]),
            labels: self.labels(check),
            expose_port: None,
            shared_network: None,
            resources: Resources::default(),
        }
    }
}

/// Runs every check, one after another.
pub async fn run_all(harness: &Harness) {
    output_is_byte_exact_and_the_exit_code_is_the_engines(harness).await;
    a_created_container_is_told_apart_and_starts_later(harness).await;
    stop_ends_a_container_within_its_grace(harness).await;
    output_is_complete_after_a_restart(harness).await;
    containers_are_found_by_their_labels_only(harness).await;
    removing_is_idempotent_and_unknown_containers_say_so(harness).await;
    a_missing_image_is_an_image_error(harness).await;
    resources_are_honoured(harness).await;
    names_of_any_gofer_ids_are_accepted(harness).await;
}

async fn collect(output: BoxStream<'static, Result<Bytes>>) -> Vec<u8> {
    output.map(|chunk| chunk.expect("an output chunk").to_vec()).concat().await
}

/// The whole output of a container that exited, as a restarted server reads it.
async fn replay(scheduler: &dyn Scheduler, id: &str) -> Vec<u8> {
    collect(scheduler.output_since_start(id).await.expect("the output since start")).await
}

/// stdout and stderr arrive merged and byte for byte (binary and large output included); the exit code is the
/// container's; an exited container's output can be read again whole.
pub async fn output_is_byte_exact_and_the_exit_code_is_the_engines(h: &Harness) {
    let scheduler = (h.connect)().await;
    let script = "seq 1 100000; printf '\\001\\377\\000\\r\\n'; printf \"$GREETING\"; printf '<<stderr>>' >&2; exit 7";
    let started = scheduler.run(&h.spec("exact", script)).await.expect("start");
    let output = collect(started.output).await;
    assert_eq!(scheduler.wait(&started.container_id).await.expect("wait"), 7);
    let mut expected: Vec<u8> = (1..=100_000).flat_map(|i| format!("{i}\n").into_bytes()).collect();
    expected.extend_from_slice(b"\x01\xff\x00\r\nhi there");
    // stderr is a separate pipe: its bytes may come anywhere between stdout's writes.
    let marker = b"<<stderr>>";
    let at = output.windows(marker.len()).position(|w| w == marker).expect("stderr in the output");
    let stdout = [&output[..at], &output[at + marker.len()..]].concat();
    assert!(stdout == expected, "stdout differs: {} bytes, expected {}", stdout.len(), expected.len());
    let info = scheduler.inspect(&started.container_id).await.expect("inspect");
    assert_eq!((info.state, info.exit_code, info.oom_killed), (ContainerState::Exited, Some(7), false));
    if h.reports_image_digest {
        assert!(info.image_digest.as_deref().is_some_and(|d| d.contains("sha256:")), "the image's digest: {info:?}");
    }
    assert_eq!(replay(scheduler.as_ref(), &started.container_id).await.len(), output.len(), "replayed whole");
    let logged = collect(scheduler.logs(&started.container_id, true).await.expect("logs")).await;
    assert_eq!(logged.len(), output.len(), "the engine's log holds the same output");
    scheduler.remove(&started.container_id).await.expect("remove");
}

/// A container created but never started says so (recovery starts it instead of taking it as finished), and
/// starting it later runs it with its output from the first byte.
pub async fn a_created_container_is_told_apart_and_starts_later(h: &Harness) {
    let scheduler = (h.connect)().await;
    let id = scheduler.create(&h.spec("created", "echo ran; exit 4")).await.expect("create");
    let info = scheduler.inspect(&id).await.expect("inspect");
    assert_eq!((info.state, info.exit_code), (ContainerState::Created, None));
    let again = (h.connect)().await;
    let found = again.find(&h.labels("created")).await.expect("find");
    assert!(found.iter().any(|c| c.id == id && c.state == ContainerState::Created), "{found:?}");
    let started = again.start(&id).await.expect("start the created container");
    assert_eq!(collect(started.output).await, b"ran\n");
    assert_eq!(again.wait(&id).await.expect("wait"), 4);
    assert_eq!(again.inspect(&id).await.expect("inspect").state, ContainerState::Exited);
    again.remove(&id).await.expect("remove");
}

/// Stopping asks the container to end and kills it after the grace period; its wait then answers non-zero.
pub async fn stop_ends_a_container_within_its_grace(h: &Harness) {
    let scheduler = (h.connect)().await;
    // A shell ignoring SIGTERM: only the kill after the grace period ends it.
    let started =
        scheduler.run(&h.spec("stop", "trap '' TERM; echo up; while true; do sleep 1; done")).await.expect("start");
    let mut output = started.output;
    let first = output.next().await.expect("output").expect("a chunk");
    assert!(first.starts_with(b"up"), "{first:?}");
    let begun = Instant::now();
    scheduler.stop(&started.container_id, Duration::from_secs(1)).await.expect("stop");
    let code = scheduler.wait(&started.container_id).await.expect("wait");
    assert!(begun.elapsed() < Duration::from_secs(30), "stopped after {:?}", begun.elapsed());
    assert_ne!(code, 0, "a killed container does not exit cleanly");
    // A backend whose stop deletes (Kubernetes) has nothing left to inspect; one that keeps it shows it exited.
    match scheduler.inspect(&started.container_id).await {
        Ok(info) => assert_eq!(info.state, ContainerState::Exited),
        Err(Error::NoSuchContainer { .. }) => {}
        Err(e) => panic!("inspect after a stop: {e}"),
    }
    match scheduler.stop(&started.container_id, Duration::from_secs(1)).await {
        Ok(()) | Err(Error::NoSuchContainer { .. }) => {}
        Err(e) => panic!("stopping an ended container: {e}"),
    }
    scheduler.remove(&started.container_id).await.expect("remove");
}

/// A server that restarts while a container runs reads its whole output (what came before and what comes after)
/// and its exit code, from a fresh connection.
pub async fn output_is_complete_after_a_restart(h: &Harness) {
    let scheduler = (h.connect)().await;
    let started = scheduler.run(&h.spec("restart", "echo first; sleep 2; echo second; exit 3")).await.expect("start");
    let mut output = started.output;
    let first = output.next().await.expect("output").expect("a chunk");
    assert!(first.starts_with(b"first"), "{first:?}");
    drop(output);
    drop(scheduler);
    let restarted = (h.connect)().await;
    let info = restarted.inspect(&started.container_id).await.expect("inspect after the restart");
    assert_eq!(info.state, ContainerState::Running, "still running: {info:?}");
    let whole = collect(restarted.output_since_start(&started.container_id).await.expect("re-attach")).await;
    assert_eq!(whole, b"first\nsecond\n");
    assert_eq!(restarted.wait(&started.container_id).await.expect("wait"), 3);
    assert_eq!(replay(restarted.as_ref(), &started.container_id).await, b"first\nsecond\n");
    restarted.remove(&started.container_id).await.expect("remove");
}

/// `find` returns the containers carrying every label asked for, and only those, in any state.
pub async fn containers_are_found_by_their_labels_only(h: &Harness) {
    let scheduler = (h.connect)().await;
    let one = scheduler.create(&h.spec("find-one", "true")).await.expect("create");
    let two = scheduler.run(&h.spec("find-two", "true")).await.expect("run");
    assert_eq!(scheduler.wait(&two.container_id).await.expect("wait"), 0);
    let mine = BTreeMap::from([(TAG.to_string(), h.tag.clone())]);
    let found = scheduler.find(&mine).await.expect("find");
    for id in [&one, &two.container_id] {
        assert!(found.iter().any(|c| &c.id == id), "{id} not found by the common label: {found:?}");
    }
    let only = scheduler.find(&h.labels("find-one")).await.expect("find one");
    assert_eq!(only.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [one.as_str()]);
    assert_eq!(only[0].labels.get(TAG), Some(&h.tag), "labels are read back");
    let none = BTreeMap::from([(TAG.to_string(), format!("{}-nobody", h.tag))]);
    assert!(scheduler.find(&none).await.expect("find none").is_empty());
    for id in [&one, &two.container_id] {
        scheduler.remove(id).await.expect("remove");
    }
    assert!(scheduler.find(&h.labels("find-one")).await.expect("find after removal").is_empty());
}

/// Removing twice is fine; a container that is gone is `NoSuchContainer` to inspect and wait.
pub async fn removing_is_idempotent_and_unknown_containers_say_so(h: &Harness) {
    let scheduler = (h.connect)().await;
    let id = scheduler.create(&h.spec("remove", "true")).await.expect("create");
    scheduler.remove(&id).await.expect("remove");
    scheduler.remove(&id).await.expect("removing twice is fine");
    assert!(matches!(scheduler.inspect(&id).await, Err(Error::NoSuchContainer { .. })), "inspect of a removed one");
    assert!(matches!(scheduler.wait(&id).await, Err(Error::NoSuchContainer { .. })), "wait on a removed one");
}

/// An image the engine cannot get is an image error naming it, with the engine's words as its source: from
/// creating, starting or waiting (a cluster learns of it only once a node tries to pull), and the output ends.
pub async fn a_missing_image_is_an_image_error(h: &Harness) {
    let scheduler = (h.connect)().await;
    let mut spec = h.spec("missing-image", "true");
    spec.image = "gofer-conformance/no-such-image:never".into();
    let failed = match scheduler.create(&spec).await {
        Ok(id) => {
            let outcome = match scheduler.start(&id).await {
                Ok(started) => {
                    let waited = scheduler.wait(&id).await;
                    let output = tokio::time::timeout(Duration::from_secs(60), collect(started.output)).await;
                    assert!(output.is_ok(), "the output ended");
                    waited
                }
                Err(e) => Err(e),
            };
            scheduler.remove(&id).await.expect("remove");
            outcome
        }
        Err(e) => Err(e),
    };
    match failed {
        Err(Error::Image { image, source }) => {
            assert_eq!(image, "gofer-conformance/no-such-image:never");
            assert!(!source.to_string().is_empty(), "the engine's words are kept");
        }
        other => panic!("expected an image error, got {other:?}"),
    }
    assert!(scheduler.find(&h.labels("missing-image")).await.expect("find").is_empty(), "nothing left behind");
}

/// The working dir, user, CPU limit and mounts are applied; a container over its memory limit is killed and
/// says so.
pub async fn resources_are_honoured(h: &Harness) {
    let scheduler = (h.connect)().await;
    let mut spec = h.spec("resources", "pwd; id -u; id -g; cat /mnt/probe/probe 2>/dev/null || echo unmounted");
    spec.resources = Resources {
        cpu_millicores: Some(500),
        memory_bytes: Some(64 * 1024 * 1024),
        working_dir: Some("/tmp".into()),
        user: Some("1234:2345".into()),
        mounts: h
            .volume_source
            .iter()
            .map(|source| Mount { source: source.clone(), target: "/mnt/probe".into(), read_only: true })
            .collect(),
    };
    let started = scheduler.run(&spec).await.expect("start with resources");
    let output = String::from_utf8(collect(started.output).await).expect("text");
    assert_eq!(scheduler.wait(&started.container_id).await.expect("wait"), 0, "{output}");
    let mounted = if h.volume_source.is_some() { "mounted" } else { "unmounted" };
    assert_eq!(output, format!("/tmp\n1234\n2345\n{mounted}\n"));
    scheduler.remove(&started.container_id).await.expect("remove");

    // Engines learn of an OOM kill from the kernel apart from the exit, and now and then miss it (Docker with
    // cgroup v1 when containers end together): one of three tries must be told.
    let mut tries = Vec::new();
    for attempt in 1..=3 {
        let mut hungry =
            h.spec(&format!("oom{attempt}"), "echo start; exec dd if=/dev/zero of=/dev/null bs=64M count=1");
        hungry.resources.memory_bytes = Some(16 * 1024 * 1024);
        let started = scheduler.run(&hungry).await.expect("start");
        let output = collect(started.output).await;
        let code = scheduler.wait(&started.container_id).await.expect("wait");
        let info = scheduler.inspect(&started.container_id).await.expect("inspect");
        scheduler.remove(&started.container_id).await.expect("remove");
        assert!(code != 0, "a container over its memory limit was killed: {:?}", String::from_utf8_lossy(&output));
        if info.oom_killed {
            return;
        }
        tries.push(format!("code {code}, {info:?}"));
    }
    panic!("the backend never said a container was out of memory: {tries:#?}");
}

/// Gofer ids (up to 64 letters, digits, `-` and `_` each, in any case) make container names the backend accepts.
pub async fn names_of_any_gofer_ids_are_accepted(h: &Harness) {
    let scheduler = (h.connect)().await;
    let mut spec = h.spec("names", "echo named");
    let long = |prefix: &str| format!("{prefix}_{}", "Ab_9-".repeat(12))[..64].to_string();
    spec.name = format!(
        "gofer-{}-{}-{}-18446744073709551615-{}-10",
        long("Install"),
        long("Name_Space"),
        long("Pipe_Line"),
        long("Task")
    );
    let started = scheduler.run(&spec).await.expect("a long name with capitals and underscores");
    assert_eq!(collect(started.output).await, b"named\n");
    assert_eq!(scheduler.wait(&started.container_id).await.expect("wait"), 0);
    scheduler.remove(&started.container_id).await.expect("remove");
}

/// For a cluster backend: a workload the cluster never gets running (its fake keeps `stuck_image` from starting)
/// fails its wait once the start timeout passed (2 s on `scheduler`), naming the timeout and the cluster's last
/// word (`says`).
pub async fn a_workload_that_never_runs_fails_after_the_start_timeout(
    scheduler: &dyn Scheduler,
    h: &Harness,
    stuck_image: &str,
    says: &str,
) {
    let mut spec = h.spec("stuck", "true");
    spec.image = stuck_image.into();
    let started = scheduler.run(&spec).await.expect("start");
    let info = scheduler.inspect(&started.container_id).await.expect("inspect");
    assert_eq!(info.state, ContainerState::Running, "started, not yet running: {info:?}");
    match scheduler.wait(&started.container_id).await {
        Err(Error::Engine { source, .. }) => {
            let words = source.to_string();
            assert!(words.contains("did not run within 2s") && words.contains(says), "{words}");
        }
        other => panic!("expected the start timeout, got {other:?}"),
    }
    scheduler.remove(&started.container_id).await.expect("remove");
}
