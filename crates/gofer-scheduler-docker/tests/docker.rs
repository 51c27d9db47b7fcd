//! The Docker backend against the real engine (scripts/ensure-docker.sh starts it and builds busybox:latest).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gofer_scheduler::{ContainerSpec, ContainerState, Error, Scheduler, labels};
use gofer_scheduler_docker::DockerScheduler;

fn spec_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        ("dev.gofer.scheduler-test".to_string(), std::process::id().to_string()),
    ])
}

fn spec(name: &str, command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: format!("gofer-scheduler-test-{name}-{}", std::process::id()),
        image: "busybox:latest".into(),
        always_pull: false,
        registry_auth: None,
        env: vec![("GREETING".into(), "hi there".into())],
        entrypoint: None,
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        labels: spec_labels(),
        expose_port: None,
    }
}

async fn inspect_label(name: &str, label: &str) -> String {
    let out = tokio::process::Command::new("docker")
        .args(["inspect", "--format", &format!("{{{{index .Config.Labels \"{label}\"}}}}"), name])
        .output()
        .await
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn runs_a_container_with_env_and_returns_exit_code_and_exact_output() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    let spec = spec("exit", &["sh", "-c", "printf \"$GREETING\"; printf ' err' >&2; exit 7"]);
    let name = spec.name.clone();
    let started = docker.run(&spec).await.expect("start");
    assert_eq!(inspect_label(&name, labels::MANAGED).await, "true");
    let info = docker.inspect(&started.container_id).await.expect("inspect");
    assert!(info.image_digest.as_deref().unwrap_or_default().starts_with("sha256:"), "{info:?}");
    assert_eq!(info.labels.get(labels::MANAGED).map(String::as_str), Some("true"));
    let found = docker.find(&spec_labels()).await.expect("find");
    assert!(found.iter().any(|c| c.id == started.container_id), "found by its labels");
    let output: Vec<u8> = started.output.map(|c| c.expect("chunk").to_vec()).concat().await;
    assert_eq!(docker.wait(&started.container_id).await.expect("wait"), 7);
    let info = docker.inspect(&started.container_id).await.expect("inspect after exit");
    assert_eq!((info.state, info.exit_code), (ContainerState::Exited, Some(7)));
    let replay: Vec<u8> = docker
        .output_since_start(&started.container_id)
        .await
        .expect("output of an exited container")
        .map(|c| c.expect("chunk").to_vec())
        .concat()
        .await;
    assert_eq!(replay.len(), output.len(), "the engine kept the same output");
    assert_eq!(output.len(), "hi there err".len(), "{:?}", String::from_utf8_lossy(&output));
    assert!(output.starts_with(b"hi there") || output.starts_with(b" err"));
    docker.remove(&started.container_id).await.expect("remove");
    docker.remove(&started.container_id).await.expect("removing twice is fine");
}

#[tokio::test]
async fn stop_ends_a_long_running_container_within_the_grace_period() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    let started = docker.run(&spec("stop", &["sleep", "300"])).await.expect("start");
    let begun = Instant::now();
    docker.stop(&started.container_id, Duration::from_secs(1)).await.expect("stop");
    let code = docker.wait(&started.container_id).await.expect("wait");
    assert!(begun.elapsed() < Duration::from_secs(30));
    assert_ne!(code, 0, "a stopped container did not exit cleanly");
    docker.remove(&started.container_id).await.expect("remove");
}

#[tokio::test]
async fn a_missing_image_is_an_image_error_with_the_engines_message() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    let mut spec = spec("missing", &["true"]);
    spec.image = "gofer-test/no-such-image:never".into();
    match docker.run(&spec).await {
        Err(Error::Image { image, source }) => {
            assert_eq!(image, "gofer-test/no-such-image:never");
            assert!(!source.to_string().is_empty(), "the engine's own error is kept as the source");
        }
        other => panic!("expected an image error, got {other:?}"),
    }
}

#[tokio::test]
async fn waiting_on_an_unknown_container_says_so() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    match docker.wait("gofer-no-such-container").await {
        Err(Error::NoSuchContainer { container, .. }) => {
            assert_eq!(container, "gofer-no-such-container")
        }
        other => panic!("expected NoSuchContainer, got {other:?}"),
    }
}

#[tokio::test]
async fn an_exposed_port_is_reachable_on_loopback_and_logs_can_be_read() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    let mut spec = spec(
        "port",
        &[
            "sh",
            "-c",
            "echo listening; while true; do echo -e 'HTTP/1.0 200 OK\\r\\n\\r\\nhello' | nc -l -p 8082; done",
        ],
    );
    spec.expose_port = Some(8082);
    let started = docker.run(&spec).await.expect("start");
    let info = docker.inspect(&started.container_id).await.expect("inspect");
    let endpoint = info.endpoint.expect("an endpoint for the exposed port");
    assert!(endpoint.starts_with("127.0.0.1:"), "published on loopback only: {endpoint}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&endpoint).await {
            let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer).await;
            if answer.contains("hello") {
                break answer;
            }
        }
        assert!(Instant::now() < deadline, "nothing answered on {endpoint}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let logs: Vec<u8> = docker
        .logs(&started.container_id, false)
        .await
        .expect("logs")
        .map(|c| c.expect("chunk").to_vec())
        .concat()
        .await;
    assert!(String::from_utf8_lossy(&logs).starts_with("listening\n"), "{logs:?}");
    docker.remove(&started.container_id).await.expect("remove");
    assert!(docker.inspect(&started.container_id).await.is_err());
}

/// What recovery relies on: a container that was created but never started says so, and starting it later runs it
/// with its output attached from the first byte. (The engine's wait call answers 0 at once for a created container,
/// which is why a created container must never be taken as finished.)
#[tokio::test]
async fn a_created_container_is_told_apart_and_can_be_started_later() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    let id = docker.create(&spec("created", &["sh", "-c", "echo ran; exit 4"])).await.expect("create");
    let info = docker.inspect(&id).await.expect("inspect");
    assert_eq!((info.state, info.exit_code), (ContainerState::Created, None));
    let found = docker.find(&spec_labels()).await.expect("find");
    assert!(found.iter().any(|c| c.id == id && c.state == ContainerState::Created), "{found:?}");
    let started = docker.start(&id).await.expect("start the created container");
    let output: Vec<u8> = started.output.map(|c| c.expect("chunk").to_vec()).concat().await;
    assert_eq!(docker.wait(&id).await.expect("wait"), 4);
    assert_eq!(output, b"ran\n");
    assert_eq!(docker.inspect(&id).await.expect("inspect").state, ContainerState::Exited);
    docker.remove(&id).await.expect("remove");
}
