//! The job Gofer registers for one container: a parameterized batch job for a task, a service job registered stopped
//! for an extension (it exposes a port), whose one task runs the image with the Docker driver. A pure function of the spec, so a
//! snapshot test fixes exactly what is sent.

use std::collections::BTreeMap;
use std::time::Duration;

use gofer_scheduler::ContainerSpec;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The name of the task group and of its one task.
pub const TASK: &str = "task";
/// The label of an extension's port in the group's network.
pub const PORT_LABEL: &str = "api";
/// Meta key holding the Gofer container name the job stands for.
pub const NAME_META: &str = "dev.gofer.name";
/// The longest job id Gofer makes (Nomad's own limit is larger; ids show in its UI and CLI).
pub const MAX_JOB_ID: usize = 100;

/// Where and how jobs run; the operator's `[scheduler.nomad]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `http(s)://host:4646`.
    pub address: String,
    /// An ACL token (`X-Nomad-Token`); `None` for a cluster without ACLs.
    pub token: Option<String>,
    pub namespace: String,
    /// `None`: the agent's region.
    pub region: Option<String>,
    /// Empty: every datacenter (`*`).
    pub datacenters: Vec<String>,
    /// A CPU limit becomes this many MHz per core, a hard limit (`cpu_hard_limit`).
    pub mhz_per_core: u32,
    /// Memory for a task that sets no limit (Nomad always limits memory).
    pub default_memory_mb: u64,
    /// How long a task gets to stop before it is killed (the task's `kill_timeout`).
    pub kill_timeout: Duration,
    /// How long a dispatched job may wait for a node and its image before its task fails.
    pub start_timeout: Duration,
    /// PEM files for TLS: the CA that signed the agents' certificates, and Gofer's client certificate and key.
    pub ca_cert: Option<std::path::PathBuf>,
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            address: "http://127.0.0.1:4646".into(),
            token: None,
            namespace: "default".into(),
            region: None,
            datacenters: Vec::new(),
            mhz_per_core: 1000,
            default_memory_mb: 1024,
            kill_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(600),
            ca_cert: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// The job id for a Gofer container name: the name itself when short enough, else cut with a hash of the whole.
pub fn job_id(name: &str) -> String {
    if name.len() <= MAX_JOB_ID {
        return name.to_string();
    }
    let hash = &hex::encode(Sha256::digest(name.as_bytes()))[..10];
    format!("{}-{hash}", &name[..MAX_JOB_ID - hash.len() - 1])
}

/// The registration body (`{"Job": …}`) for a container spec.
pub fn job(spec: &ContainerSpec, settings: &Settings) -> Value {
    let resources = &spec.resources;
    let mut config = serde_json::Map::new();
    config.insert("image".into(), json!(spec.image));
    config.insert("force_pull".into(), json!(spec.always_pull));
    if let Some(entrypoint) = &spec.entrypoint {
        config.insert("entrypoint".into(), json!(entrypoint));
    }
    // The Docker driver's command is one string and its arguments a list: together they are the container's Cmd.
    if let Some((command, args)) = spec.command.as_ref().and_then(|c| c.split_first()) {
        config.insert("command".into(), json!(command));
        config.insert("args".into(), json!(args));
    }
    if let Some(dir) = &resources.working_dir {
        config.insert("work_dir".into(), json!(dir));
    }
    if let Some(auth) = &spec.registry_auth {
        config.insert("auth".into(), json!({ "username": auth.user, "password": auth.pass }));
    }
    if spec.expose_port.is_some() {
        config.insert("ports".into(), json!([PORT_LABEL]));
    }
    let mut task_resources = serde_json::Map::new();
    if let Some(millis) = resources.cpu_millicores {
        let mhz = (u64::from(millis) * u64::from(settings.mhz_per_core)).div_ceil(1000).max(1);
        task_resources.insert("CPU".into(), json!(mhz));
        config.insert("cpu_hard_limit".into(), json!(true));
    }
    let memory_mb = resources.memory_bytes.map_or(settings.default_memory_mb, |b| b.div_ceil(1024 * 1024));
    task_resources.insert("MemoryMB".into(), json!(memory_mb));
    let volumes: BTreeMap<String, Value> = resources
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("volume-{i}"), json!({ "Type": "host", "Source": m.source, "ReadOnly": m.read_only })))
        .collect();
    let volume_mounts: Vec<Value> = resources
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| json!({ "Volume": format!("volume-{i}"), "Destination": m.target, "ReadOnly": m.read_only }))
        .collect();
    let mut task = json!({
        "Name": TASK,
        "Driver": "docker",
        "Config": config,
        "Env": spec.env.iter().cloned().collect::<BTreeMap<String, String>>(),
        "Resources": task_resources,
        "KillTimeout": u64::try_from(settings.kill_timeout.as_nanos()).unwrap_or(u64::MAX),
        "LogConfig": { "MaxFiles": 10, "MaxFileSizeMB": 100 },
    });
    if let Some(user) = &resources.user {
        task["User"] = json!(user);
    }
    if !volume_mounts.is_empty() {
        task["VolumeMounts"] = json!(volume_mounts);
    }
    let mut group = json!({
        "Name": TASK,
        "Count": 1,
        // Gofer retries attempts itself, each as a new job: Nomad neither restarts nor reschedules.
        "RestartPolicy": { "Attempts": 0, "Mode": "fail" },
        "ReschedulePolicy": { "Attempts": 0, "Unlimited": false },
        "Tasks": [task],
    });
    if !volumes.is_empty() {
        group["Volumes"] = json!(volumes);
    }
    if let Some(port) = spec.expose_port {
        group["Networks"] = json!([{ "DynamicPorts": [{ "Label": PORT_LABEL, "To": port }] }]);
    }
    let mut meta = spec.labels.clone();
    meta.insert(NAME_META.into(), spec.name.clone());
    let datacenters =
        if settings.datacenters.is_empty() { vec!["*".to_string()] } else { settings.datacenters.clone() };
    let mut job = json!({
        "ID": job_id(&spec.name),
        "Name": job_id(&spec.name),
        "Type": "batch",
        "Namespace": settings.namespace,
        "Datacenters": datacenters,
        "Meta": meta,
        // Registered, it runs nothing: each dispatch is a run of it. This is Nomad's "created but not started".
        "ParameterizedJob": { "Payload": "forbidden" },
        "TaskGroups": [group],
    });
    if spec.expose_port.is_some() {
        // An extension is a service: registered stopped (nothing runs), started by registering it running.
        job["Type"] = json!("service");
        job["Stop"] = json!(true);
        if let Some(fields) = job.as_object_mut() {
            fields.remove("ParameterizedJob");
        }
    }
    if let Some(region) = &settings.region {
        job["Region"] = json!(region);
    }
    json!({ "Job": job })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gofer_scheduler::{Mount, RegistryAuth, Resources};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "gofer-inst-default-nightly-12-unit_test-1".into(),
            image: "registry.example.com/team/tool:1.2".into(),
            always_pull: true,
            registry_auth: Some(RegistryAuth { user: "bot".into(), pass: "s3cret".into() }),
            env: vec![("GOFER_TASK_ID".into(), "unit_test".into())],
            entrypoint: Some(vec!["/bin/sh".into()]),
            command: Some(vec!["-c".into(), "make test".into()]),
            labels: BTreeMap::from([("dev.gofer.managed".into(), "true".into())]),
            expose_port: None,
            shared_network: None,
            resources: Resources {
                cpu_millicores: Some(1500),
                memory_bytes: Some(512 * 1024 * 1024 + 1),
                working_dir: Some("/src".into()),
                user: Some("1000:2000".into()),
                mounts: vec![Mount { source: "build-cache".into(), target: "/cache".into(), read_only: true }],
            },
        }
    }

    /// The exact job sent for a task with every setting: change it only on purpose.
    #[test]
    fn the_job_of_a_task_is_exactly_this() {
        let settings = Settings {
            namespace: "ci".into(),
            region: Some("eu".into()),
            datacenters: vec!["dc1".into(), "dc2".into()],
            mhz_per_core: 2400,
            kill_timeout: Duration::from_secs(10),
            ..Settings::default()
        };
        let expected = json!({ "Job": {
            "ID": "gofer-inst-default-nightly-12-unit_test-1",
            "Name": "gofer-inst-default-nightly-12-unit_test-1",
            "Type": "batch",
            "Namespace": "ci",
            "Region": "eu",
            "Datacenters": ["dc1", "dc2"],
            "Meta": { "dev.gofer.managed": "true", "dev.gofer.name": "gofer-inst-default-nightly-12-unit_test-1" },
            "ParameterizedJob": { "Payload": "forbidden" },
            "TaskGroups": [{
                "Name": "task",
                "Count": 1,
                "RestartPolicy": { "Attempts": 0, "Mode": "fail" },
                "ReschedulePolicy": { "Attempts": 0, "Unlimited": false },
                "Volumes": { "volume-0": { "Type": "host", "Source": "build-cache", "ReadOnly": true } },
                "Tasks": [{
                    "Name": "task",
                    "Driver": "docker",
                    "Config": {
                        "image": "registry.example.com/team/tool:1.2",
                        "force_pull": true,
                        "entrypoint": ["/bin/sh"],
                        "command": "-c",
                        "args": ["make test"],
                        "work_dir": "/src",
                        "auth": { "username": "bot", "password": "s3cret" },
                        "cpu_hard_limit": true
                    },
                    "Env": { "GOFER_TASK_ID": "unit_test" },
                    "User": "1000:2000",
                    "Resources": { "CPU": 3600, "MemoryMB": 513 },
                    "KillTimeout": 10_000_000_000u64,
                    "LogConfig": { "MaxFiles": 10, "MaxFileSizeMB": 100 },
                    "VolumeMounts": [{ "Volume": "volume-0", "Destination": "/cache", "ReadOnly": true }]
                }]
            }]
        }});
        let sent = job(&spec(), &settings);
        assert_eq!(sent, expected, "{}", serde_json::to_string_pretty(&sent).unwrap_or_default());
    }

    #[test]
    fn a_plain_task_gets_the_default_memory_and_an_extension_its_port() {
        let mut spec = spec();
        spec.resources = Resources::default();
        spec.registry_auth = None;
        spec.command = None;
        spec.expose_port = Some(8082);
        let sent = job(&spec, &Settings::default());
        let task = &sent["Job"]["TaskGroups"][0]["Tasks"][0];
        assert_eq!(task["Resources"], json!({ "MemoryMB": 1024 }));
        for absent in ["command", "args", "work_dir", "auth", "cpu_hard_limit"] {
            assert!(task["Config"].get(absent).is_none(), "{absent}: {task}");
        }
        assert_eq!(task["Config"]["ports"], json!(["api"]));
        assert_eq!(
            sent["Job"]["TaskGroups"][0]["Networks"],
            json!([{ "DynamicPorts": [{ "Label": "api", "To": 8082 }] }])
        );
        assert_eq!((&sent["Job"]["Type"], &sent["Job"]["Stop"]), (&json!("service"), &json!(true)), "a service");
        assert!(sent["Job"].get("ParameterizedJob").is_none());
        assert_eq!(sent["Job"]["Datacenters"], json!(["*"]));
        assert!(sent["Job"].get("Region").is_none());
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "g".repeat(150);
        let id = job_id(&long);
        assert_eq!(id.len(), MAX_JOB_ID);
        assert_ne!(id, job_id(&"g".repeat(151)));
        assert_eq!(job_id("short"), "short");
    }
}
