//! The objects Gofer sends to the cluster for one container: its pod, the pull secret of its registry credentials
//! and, for an extension, the service Gofer reaches it through. Pure functions of the spec, so snapshot tests fix
//! exactly what is sent.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use gofer_scheduler::{ContainerSpec, Error, RegistryAuth, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, LocalObjectReference, PersistentVolumeClaimVolumeSource, Pod, PodSchedulingGate,
    PodSpec, ResourceRequirements, Secret, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::{label_value, pod_name};

/// The scheduling gate a pod is created with: it is not placed on a node, so nothing of it runs, until `start`
/// removes the gate. This is Kubernetes' "created but not started" (GA since 1.30).
pub const START_GATE: &str = "dev.gofer/start";
/// The name of the task's container in its pod.
pub const CONTAINER: &str = "task";
/// Annotation holding the Gofer container name the pod stands for.
pub const NAME_ANNOTATION: &str = "dev.gofer.name";
/// Label selecting one pod (for its service).
pub const POD_LABEL: &str = "dev.gofer.pod";

/// Where and how pods run; the operator's `[scheduler.kubernetes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The namespace Gofer's pods, secrets and services live in.
    pub namespace: String,
    /// The service account pods run as; without one, pods get no API token mounted.
    pub service_account: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    /// Pull secrets (already in the namespace) every pod may use.
    pub image_pull_secrets: Vec<String>,
    /// How long a started pod may wait for a node, its image and its volumes before its task fails.
    pub start_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            service_account: None,
            node_selector: BTreeMap::new(),
            image_pull_secrets: Vec::new(),
            start_timeout: Duration::from_secs(600),
        }
    }
}

/// The name of the secret holding a pod's registry credentials: `<pod>-pull`, made to fit (with a hash of the
/// whole) when the pod's name is long, so two pods never share one.
pub fn pull_secret_name(pod: &str) -> String {
    pod_name(&format!("{pod}-pull"))
}

/// A value Kubernetes takes as it is: it expands `$(NAME)` and turns `$$` into `$` in a container's command,
/// arguments and variables, which Docker and Nomad do not, so every `$` is written `$$`.
fn literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// `uid` or `uid:gid`, as Kubernetes takes users: by number only.
fn numeric_user(user: &str) -> Result<(i64, Option<i64>)> {
    let unsupported = || Error::Unsupported {
        reason: format!(
            "user '{user}': Kubernetes runs containers as a numeric user; give a uid or uid:gid (e.g. \"1000:1000\")"
        ),
    };
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let uid = uid.parse::<i64>().map_err(|_| unsupported())?;
    let gid = gid.map(|g| g.parse::<i64>().map_err(|_| unsupported())).transpose()?;
    Ok((uid, gid))
}

/// The labels (values made valid, for selectors) and annotations (exact values) of a container's objects.
fn metadata(spec: &ContainerSpec, name: &str) -> ObjectMeta {
    let mut labels: BTreeMap<String, String> =
        spec.labels.iter().map(|(key, value)| (key.clone(), label_value(value))).collect();
    labels.insert(POD_LABEL.into(), name.into());
    let mut annotations = spec.labels.clone();
    annotations.insert(NAME_ANNOTATION.into(), spec.name.clone());
    ObjectMeta { name: Some(name.into()), labels: Some(labels), annotations: Some(annotations), ..Default::default() }
}

/// The pod for a container spec: created behind the start gate, never restarted, with the task's limits, user,
/// working dir and claims.
pub fn pod(spec: &ContainerSpec, settings: &Settings) -> Result<Pod> {
    let name = pod_name(&spec.name);
    let resources = &spec.resources;
    let mut limits = BTreeMap::new();
    if let Some(millis) = resources.cpu_millicores {
        limits.insert("cpu".to_string(), Quantity(format!("{millis}m")));
    }
    if let Some(bytes) = resources.memory_bytes {
        limits.insert("memory".to_string(), Quantity(bytes.to_string()));
    }
    let user = resources.user.as_deref().map(numeric_user).transpose()?;
    let mounts: Vec<(Volume, VolumeMount)> = resources
        .mounts
        .iter()
        .enumerate()
        .map(|(i, mount)| {
            let volume = Volume {
                name: format!("volume-{i}"),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: mount.source.clone(),
                    read_only: Some(mount.read_only),
                }),
                ..Default::default()
            };
            let mounted = VolumeMount {
                name: format!("volume-{i}"),
                mount_path: mount.target.clone(),
                read_only: Some(mount.read_only),
                ..Default::default()
            };
            (volume, mounted)
        })
        .collect();
    let mut pull_secrets: Vec<LocalObjectReference> =
        settings.image_pull_secrets.iter().map(|s| LocalObjectReference { name: s.clone() }).collect();
    if spec.registry_auth.is_some() {
        pull_secrets.push(LocalObjectReference { name: pull_secret_name(&name) });
    }
    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(if spec.always_pull { "Always" } else { "IfNotPresent" }.into()),
        command: spec.entrypoint.as_ref().map(|list| list.iter().map(|a| literal(a)).collect()),
        args: spec.command.as_ref().map(|list| list.iter().map(|a| literal(a)).collect()),
        env: Some(
            spec.env
                .iter()
                .map(|(k, v)| EnvVar { name: k.clone(), value: Some(literal(v)), ..Default::default() })
                .collect(),
        ),
        working_dir: resources.working_dir.clone(),
        resources: (!limits.is_empty()).then(|| ResourceRequirements { limits: Some(limits), ..Default::default() }),
        security_context: user.map(|(uid, gid)| SecurityContext {
            run_as_user: Some(uid),
            run_as_group: gid,
            ..Default::default()
        }),
        volume_mounts: Some(mounts.iter().map(|(_, m)| m.clone()).collect()).filter(|m: &Vec<_>| !m.is_empty()),
        ports: spec.expose_port.map(|port| {
            vec![ContainerPort { container_port: i32::from(port), protocol: Some("TCP".into()), ..Default::default() }]
        }),
        ..Default::default()
    };
    Ok(Pod {
        metadata: metadata(spec, &name),
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            scheduling_gates: Some(vec![PodSchedulingGate { name: START_GATE.into() }]),
            service_account_name: settings.service_account.clone(),
            // A task gets an API token of the cluster only when the operator chose the account it runs as.
            automount_service_account_token: Some(settings.service_account.is_some()),
            // The namespace's services are not the task's business (and their variables would mix with its own).
            enable_service_links: Some(false),
            node_selector: Some(settings.node_selector.clone()).filter(|s| !s.is_empty()),
            image_pull_secrets: Some(pull_secrets).filter(|s| !s.is_empty()),
            volumes: Some(mounts.into_iter().map(|(v, _)| v).collect()).filter(|v: &Vec<_>| !v.is_empty()),
            ..Default::default()
        }),
        status: None,
    })
}

/// The registry a `docker login` would use for `image`: its first part when that names a host, else Docker Hub.
fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "https://index.docker.io/v1/".to_string(),
    }
}

/// The pull secret carrying a task's registry credentials (`kubernetes.io/dockerconfigjson`), named after its pod.
pub fn pull_secret(spec: &ContainerSpec, auth: &RegistryAuth) -> Secret {
    let name = pod_name(&spec.name);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", auth.user, auth.pass));
    let config = serde_json::json!({
        "auths": { registry_of(&spec.image): { "username": auth.user, "password": auth.pass, "auth": basic } }
    });
    let mut metadata = metadata(spec, &pull_secret_name(&name));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(POD_LABEL.into(), name);
    }
    Secret {
        metadata,
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(".dockerconfigjson".to_string(), ByteString(config.to_string().into_bytes()))])),
        ..Default::default()
    }
}

/// The service through which Gofer reaches a container's exposed port by cluster DNS (extensions).
pub fn service(spec: &ContainerSpec, port: u16) -> Service {
    let name = pod_name(&spec.name);
    Service {
        metadata: metadata(spec, &name),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(POD_LABEL.to_string(), name)])),
            ports: Some(vec![ServicePort {
                name: Some("api".into()),
                port: i32::from(port),
                target_port: Some(IntOrString::Int(i32::from(port))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gofer_scheduler::{Mount, Resources};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "gofer-inst-default-Nightly_Build-12-unit_test-1".into(),
            image: "registry.example.com:5000/team/tool:1.2".into(),
            always_pull: false,
            registry_auth: None,
            env: vec![("GOFER_TASK_ID".into(), "unit_test".into()), ("PASSWORD".into(), "p@$$w0rd$(X)".into())],
            entrypoint: Some(vec!["sh".into()]),
            command: Some(vec!["-c".into(), "make test; echo $$ $(id -u)".into()]),
            labels: BTreeMap::from([
                ("dev.gofer.managed".into(), "true".into()),
                ("dev.gofer.pipeline".into(), "Nightly_Build".into()),
                ("dev.gofer.task".into(), "unit_test_".into()),
            ]),
            expose_port: None,
            shared_network: None,
            resources: Resources {
                cpu_millicores: Some(1500),
                memory_bytes: Some(512 * 1024 * 1024),
                working_dir: Some("/src".into()),
                user: Some("1000:2000".into()),
                mounts: vec![Mount { source: "build-cache".into(), target: "/cache".into(), read_only: true }],
            },
        }
    }

    /// The exact pod sent for a task with every setting: change it only on purpose.
    #[test]
    fn the_pod_of_a_task_is_exactly_this() {
        let settings = Settings {
            namespace: "ci".into(),
            service_account: Some("gofer-task".into()),
            node_selector: BTreeMap::from([("pool".into(), "batch".into())]),
            image_pull_secrets: vec!["org-registry".into()],
            start_timeout: Duration::from_secs(600),
        };
        let mut spec = spec();
        spec.registry_auth = Some(RegistryAuth { user: "bot".into(), pass: "s3cret".into() });
        let pod = serde_json::to_value(pod(&spec, &settings).unwrap()).unwrap();
        let expected = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "gofer-inst-default-nightly-build-12-unit-test-1-941a036d5f",
                "labels": {
                    "dev.gofer.managed": "true",
                    "dev.gofer.pipeline": "Nightly_Build",
                    "dev.gofer.pod": "gofer-inst-default-nightly-build-12-unit-test-1-941a036d5f",
                    "dev.gofer.task": "unit_test-3bdc04093e"
                },
                "annotations": {
                    "dev.gofer.managed": "true",
                    "dev.gofer.name": "gofer-inst-default-Nightly_Build-12-unit_test-1",
                    "dev.gofer.pipeline": "Nightly_Build",
                    "dev.gofer.task": "unit_test_"
                }
            },
            "spec": {
                "automountServiceAccountToken": true,
                "containers": [{
                    "name": "task",
                    "image": "registry.example.com:5000/team/tool:1.2",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh"],
                    "args": ["-c", "make test; echo $$$$ $$(id -u)"],
                    "env": [{ "name": "GOFER_TASK_ID", "value": "unit_test" }, { "name": "PASSWORD", "value": "p@$$$$w0rd$$(X)" }],
                    "workingDir": "/src",
                    "resources": { "limits": { "cpu": "1500m", "memory": "536870912" } },
                    "securityContext": { "runAsUser": 1000, "runAsGroup": 2000 },
                    "volumeMounts": [{ "name": "volume-0", "mountPath": "/cache", "readOnly": true }]
                }],
                "enableServiceLinks": false,
                "imagePullSecrets": [
                    { "name": "org-registry" },
                    { "name": "gofer-inst-default-nightly-build-12-unit-test-1-941a036d5f-pull" }
                ],
                "nodeSelector": { "pool": "batch" },
                "restartPolicy": "Never",
                "schedulingGates": [{ "name": "dev.gofer/start" }],
                "serviceAccountName": "gofer-task",
                "volumes": [{ "name": "volume-0", "persistentVolumeClaim": { "claimName": "build-cache", "readOnly": true } }]
            }
        });
        assert_eq!(pod, expected, "{}", serde_json::to_string_pretty(&pod).unwrap());
    }

    #[test]
    fn a_plain_task_gets_no_account_token_and_nothing_it_did_not_ask_for() {
        let mut spec = spec();
        spec.resources = Resources::default();
        spec.always_pull = true;
        let pod = serde_json::to_value(pod(&spec, &Settings::default()).unwrap()).unwrap();
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "Always");
        for absent in ["resources", "securityContext", "volumeMounts", "workingDir", "ports"] {
            assert!(container.get(absent).is_none(), "{absent}: {container}");
        }
        for absent in ["imagePullSecrets", "nodeSelector", "volumes", "serviceAccountName"] {
            assert!(pod["spec"].get(absent).is_none(), "{absent}: {pod}");
        }
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    }

    #[test]
    fn users_by_name_are_refused_with_what_to_give() {
        let mut spec = spec();
        spec.resources.user = Some("builder".into());
        match pod(&spec, &Settings::default()) {
            Err(Error::Unsupported { reason }) => assert!(reason.contains("give a uid or uid:gid"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(numeric_user("0").unwrap(), (0, None));
    }

    #[test]
    fn the_pull_secret_and_the_service_are_exactly_these() {
        let spec = spec();
        let auth = RegistryAuth { user: "bot".into(), pass: "s3cret".into() };
        let secret = serde_json::to_value(pull_secret(&spec, &auth)).unwrap();
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(secret["metadata"]["name"], "gofer-inst-default-nightly-build-12-unit-test-1-941a036d5f-pull");
        let data = secret["data"][".dockerconfigjson"].as_str().unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap();
        assert_eq!(
            config,
            serde_json::json!({ "auths": { "registry.example.com:5000": {
                "username": "bot", "password": "s3cret", "auth": "Ym90OnMzY3JldA==" } } })
        );
        assert_eq!(registry_of("busybox:latest"), "https://index.docker.io/v1/");
        assert_eq!(registry_of("library/busybox"), "https://index.docker.io/v1/");
        assert_eq!(registry_of("localhost/x"), "localhost");

        let service = serde_json::to_value(service(&spec, 8082)).unwrap();
        assert_eq!(
            service["spec"],
            serde_json::json!({
                "selector": { "dev.gofer.pod": "gofer-inst-default-nightly-build-12-unit-test-1-941a036d5f" },
                "ports": [{ "name": "api", "port": 8082, "targetPort": 8082, "protocol": "TCP" }]
            })
        );
    }
}
