//! What only the Docker backend does, against the real engine (scripts/ensure-docker.sh starts it and builds
//! busybox:latest); what every backend does is in `conformance.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gofer_scheduler::{ContainerSpec, Mount, Resources, Scheduler, labels};
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
        shared_network: None,
        resources: Default::default(),
    }
}

/// A field of `docker inspect`, as its Go template prints it.
async fn inspect_field(name: &str, template: &str) -> String {
    let out = tokio::process::Command::new("docker")
        .args(["inspect", "--format", template, name])
        .output()
        .await
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn limits_labels_and_the_log_driver_reach_the_engine() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    let mut spec = spec("settings", &["true"]);
    spec.resources = Resources {
        cpu_millicores: Some(1500),
        memory_bytes: Some(256 * 1024 * 1024),
        working_dir: Some("/tmp".into()),
        user: Some("nobody".into()),
        mounts: vec![Mount { source: "gofer-test-cache".into(), target: "/cache".into(), read_only: true }],
    };
    let id = docker.create(&spec).await.expect("create");
    let field = |template: &'static str| inspect_field(&spec.name, template);
    assert_eq!(field("{{.HostConfig.NanoCpus}}").await, "1500000000");
    assert_eq!(field("{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}").await, "268435456 268435456");
    assert_eq!(field("{{.Config.WorkingDir}} {{.Config.User}}").await, "/tmp nobody");
    assert_eq!(
        field("{{range .HostConfig.Mounts}}{{.Type}} {{.Source}} {{.Target}} {{.ReadOnly}}{{end}}").await,
        "volume gofer-test-cache /cache true"
    );
    assert_eq!(field("{{.HostConfig.LogConfig.Type}}").await, "local", "the driver that keeps bytes as they were");
    assert_eq!(field(r#"{{index .Config.Labels "dev.gofer.managed"}}"#).await, "true");
    docker.remove(&id).await.expect("remove");
    let _ = tokio::process::Command::new("docker").args(["volume", "rm", "gofer-test-cache"]).output().await;
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

/// Runs `spec` to its end and returns its output.
async fn output_of(docker: &DockerScheduler, spec: &ContainerSpec) -> String {
    let id = docker.create(spec).await.expect("create");
    let started = docker.start(&id).await.expect("start");
    let bytes: Vec<u8> =
        started.output.filter_map(|c| async { c.ok() }).flat_map(futures::stream::iter).collect().await;
    assert_eq!(docker.wait(&id).await.expect("wait"), 0);
    docker.remove(&id).await.expect("remove");
    String::from_utf8_lossy(&bytes).trim().to_string()
}

#[tokio::test]
async fn containers_of_one_group_share_a_network_held_until_the_group_is_released() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    let key = format!("test/{}/shared", std::process::id());
    let namespace = |name: &str, group: Option<&str>| {
        let mut spec = spec(name, &["readlink", "/proc/self/ns/net"]);
        spec.shared_network = group.map(str::to_string);
        spec
    };
    docker.prepare_shared_network(&key, &spec_labels()).await;
    let holders = BTreeMap::from([(labels::SHARED_NETWORK.to_string(), key.clone())]);
    let held = docker.find(&holders).await.expect("find");
    assert_eq!(held.len(), 1, "one holder, made ahead: {held:?}");
    assert!(held[0].is_running() && held[0].labels.contains_key("dev.gofer.scheduler-test"), "{held:?}");

    let first = output_of(&docker, &namespace("shared-a", Some(&key))).await;
    let second = output_of(&docker, &namespace("shared-b", Some(&key))).await;
    let alone = output_of(&docker, &namespace("alone", None)).await;
    assert!(first.starts_with("net:["), "{first}");
    assert_eq!(first, second, "one group, one network namespace");
    assert_ne!(first, alone, "a container outside the group has its own");
    // The group's containers reach each other on loopback, as a pod's do.
    let mut server = spec("shared-server", &["sh", "-c", "echo ready | nc -l -p 9123"]);
    server.shared_network = Some(key.clone());
    let server_id = docker.create(&server).await.expect("create");
    let serving = docker.start(&server_id).await.expect("start");
    let mut client = spec("shared-client", &["sh", "-c", "until nc 127.0.0.1 9123; do sleep 0.1; done"]);
    client.shared_network = Some(key.clone());
    assert_eq!(output_of(&docker, &client).await, "ready");
    assert_eq!(docker.wait(&server_id).await.expect("wait"), 0);
    drop(serving);
    docker.remove(&server_id).await.expect("remove");

    docker.release_shared_network(&key).await;
    assert!(docker.find(&holders).await.expect("find").is_empty(), "the holder goes with its group");

    // Sharing off: the same specs get networks of their own, and no holder is made.
    let apart = DockerScheduler::connect().await.expect("a running Docker engine").sharing_networks(false);
    let other = format!("{key}-off");
    let spec = namespace("apart", Some(&other));
    let id = apart.create(&spec).await.expect("create");
    assert_eq!(inspect_field(&spec.name, "{{.HostConfig.NetworkMode}}").await, "default");
    apart.remove(&id).await.expect("remove");
    let holders = BTreeMap::from([(labels::SHARED_NETWORK.to_string(), other)]);
    assert!(apart.find(&holders).await.expect("find").is_empty());
}

#[tokio::test]
async fn a_holder_removed_behind_the_schedulers_back_is_replaced() {
    let docker = DockerScheduler::connect().await.expect("a running Docker engine");
    let key = format!("test/{}/replaced", std::process::id());
    docker.prepare_shared_network(&key, &spec_labels()).await;
    let holders = BTreeMap::from([(labels::SHARED_NETWORK.to_string(), key.clone())]);
    let first = docker.find(&holders).await.expect("find");
    docker.remove(&first[0].id).await.expect("remove the holder");
    let mut spec = spec("replaced", &["true"]);
    spec.shared_network = Some(key.clone());
    assert_eq!(output_of(&docker, &spec).await, "");
    let second = docker.find(&holders).await.expect("find");
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].id, first[0].id);
    docker.release_shared_network(&key).await;
}
