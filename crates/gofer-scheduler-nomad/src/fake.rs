//! An in-process fake of the part of Nomad's HTTP API Gofer uses, built from Nomad's API documentation: job
//! registration, parameterized dispatch (with idempotency tokens), job lists with `prefix` and `filter`, a job's
//! allocations and one allocation, deregistration with `purge`, the leader, and the allocation logs (`plain`,
//! `offset`, `follow`). Blocking queries (`index`, `wait`, `X-Nomad-Index`) block. Its "client" runs each dispatched
//! job's task on the real Docker engine, stdout and stderr kept apart, and reports task states and events as
//! Nomad's client does (`Received`, `Driver`, `Started`, `Terminated` with `exit_code` and `oom_killed`,
//! `Driver Failure` for a failed pull).
//!
//! It also does what Nomad does to clients: a followed log never ends, even after the task did; and, on demand, log
//! streams that break, allocations stuck pending and nodes that are lost.

// Handlers answer with a response either way (axum's idiom); its size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bollard::container::LogOutput;
use bollard::query_parameters::AttachContainerOptions;
use bytes::Bytes;
use futures::StreamExt;
use gofer_scheduler::cluster::produced;
use gofer_scheduler::{ContainerSpec, Mount, Resources, Scheduler};
use gofer_scheduler_docker::DockerScheduler;
use serde_json::{Value, json};
use tokio::sync::watch;

/// What the fake does to its clients, beyond answering.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Each allocation's first followed stdout and stderr streams break after this many bytes.
    pub cut_logs_after: Option<usize>,
    /// Allocations of jobs with this image stay pending (their image never arrives).
    pub stuck_image: Option<String>,
    /// Jobs with this image are never placed: no node has the memory, and a constraint filters some.
    pub unplaceable_image: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Alloc {
    job: String,
    client_status: String,
    client_description: String,
    task_state: String,
    failed: bool,
    events: Vec<Value>,
    create_index: u64,
    modify_index: u64,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    container: Option<String>,
    port: Option<(u16, String)>,
    lost: bool,
}

struct Stored {
    index: u64,
    jobs: BTreeMap<String, Value>,
    allocs: BTreeMap<String, Alloc>,
    /// (parent, idempotency token) → the dispatched job.
    dispatched: BTreeMap<(String, String), String>,
    /// Job → its evaluations.
    evaluations: BTreeMap<String, Vec<Value>>,
    /// (allocation, stdout|stderr) whose first followed stream was cut already.
    cut: Vec<(String, String)>,
    next_id: u64,
}

struct Shared {
    stored: Mutex<Stored>,
    /// The index after each change, for blocking queries and log followers.
    changed: watch::Sender<u64>,
    docker: DockerScheduler,
    engine: bollard::Docker,
    /// Host volume name → host directory.
    host_volumes: BTreeMap<String, String>,
    faults: Mutex<Faults>,
    tag: String,
}

/// A running fake Nomad agent; dropping it removes its containers.
pub struct FakeNomad {
    pub url: String,
    shared: Arc<Shared>,
}

type Answer = Result<Response, Response>;

fn text(code: StatusCode, message: impl Into<String>) -> Response {
    (code, message.into()).into_response()
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stored> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bumps the index and wakes blocking queries.
    fn bump(&self, stored: &mut Stored) -> u64 {
        stored.index += 1;
        // Kept even when no query waits (`send` would drop it then), so a later one compares with the truth.
        self.changed.send_replace(stored.index);
        stored.index
    }

    fn update_alloc(&self, id: &str, change: impl FnOnce(&mut Alloc)) {
        let mut stored = self.lock();
        let index = stored.index + 1;
        if let Some(alloc) = stored.allocs.get_mut(id) {
            change(alloc);
            alloc.modify_index = index;
        }
        self.bump(&mut stored);
    }

    fn event(kind: &str, message: &str, details: Value) -> Value {
        json!({ "Type": kind, "Message": message, "DisplayMessage": message, "Details": details })
    }

    /// The client's part for one allocation: make the task's container, run it, report every state.
    async fn run_alloc(self: Arc<Self>, alloc: String) {
        let job = {
            let stored = self.lock();
            let Some(job_id) = stored.allocs.get(&alloc).map(|a| a.job.clone()) else { return };
            stored.jobs.get(&job_id).cloned().unwrap_or_default()
        };
        let group = &job["TaskGroups"][0];
        let task = &group["Tasks"][0];
        let config = &task["Config"];
        let image = config["image"].as_str().unwrap_or_default().to_string();
        self.update_alloc(&alloc, |a| {
            a.events.push(Self::event("Received", "Task received by client", json!({})));
            a.events.push(Self::event("Task Setup", "Building Task Directory", json!({})));
        });
        if self.faults.lock().unwrap_or_else(|e| e.into_inner()).stuck_image.as_deref() == Some(image.as_str()) {
            return;
        }
        let mut mounts = Vec::new();
        for mount in task["VolumeMounts"].as_array().into_iter().flatten() {
            let volume = &group["Volumes"][mount["Volume"].as_str().unwrap_or_default()];
            let source = volume["Source"].as_str().unwrap_or_default();
            let Some(path) = self.host_volumes.get(source) else {
                let words = format!("missing host volume \"{source}\"");
                return self.update_alloc(&alloc, |a| {
                    a.events.push(Self::event("Setup Failure", &words, json!({ "setup_error": words })));
                    (a.task_state, a.failed, a.client_status) = ("dead".into(), true, "failed".into());
                });
            };
            let target = mount["Destination"].as_str().unwrap_or_default().to_string();
            mounts.push(Mount {
                source: path.clone(),
                target,
                read_only: mount["ReadOnly"].as_bool().unwrap_or(false),
            });
        }
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        };
        let command = config["command"].as_str().map(|c| {
            let mut all = vec![c.to_string()];
            all.extend(strings(&config["args"]).unwrap_or_default());
            all
        });
        let hard_cpu = config["cpu_hard_limit"].as_bool().unwrap_or(false);
        let port = group["Networks"][0]["DynamicPorts"][0]["To"].as_u64().and_then(|p| u16::try_from(p).ok());
        let spec = ContainerSpec {
            name: format!("fakenomad-{}-{alloc}", self.tag),
            image: image.clone(),
            always_pull: false,
            registry_auth: None,
            env: task["Env"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            entrypoint: strings(&config["entrypoint"]),
            command,
            labels: BTreeMap::from([
                (gofer_scheduler::labels::MANAGED.to_string(), "true".to_string()),
                ("dev.gofer.fakenomad".to_string(), self.tag.clone()),
            ]),
            expose_port: port,
            shared_network: None,
            resources: Resources {
                // The fake's nodes have 1000 MHz per core.
                cpu_millicores: task["Resources"]["CPU"]
                    .as_u64()
                    .filter(|_| hard_cpu)
                    .and_then(|m| u32::try_from(m).ok()),
                memory_bytes: task["Resources"]["MemoryMB"].as_u64().map(|mb| mb * 1024 * 1024),
                working_dir: config["work_dir"].as_str().map(String::from),
                user: task["User"].as_str().map(String::from),
                mounts,
            },
        };
        self.update_alloc(&alloc, |a| {
            a.events.push(Self::event("Driver", "Downloading image", json!({ "image": image })));
        });
        let id = match self.docker.create(&spec).await {
            Ok(id) => id,
            Err(e) => {
                let words = format!("Failed to pull `{image}`: {e}");
                return self.update_alloc(&alloc, |a| {
                    a.events.push(Self::event("Driver Failure", &words, json!({ "driver_error": words })));
                    a.events.push(Self::event(
                        "Not Restarting",
                        "Error was unrecoverable",
                        json!({ "fails_task": "true" }),
                    ));
                    (a.task_state, a.failed, a.client_status) = ("dead".into(), true, "failed".into());
                });
            }
        };
        let options = AttachContainerOptions { stream: true, stdout: true, stderr: true, ..Default::default() };
        let attached = match self.engine.attach_container(&id, Some(options)).await {
            Ok(attached) => attached,
            Err(e) => return self.fail_driver(&alloc, &e.to_string()),
        };
        if let Err(e) = self.engine.start_container(&id, None).await {
            return self.fail_driver(&alloc, &e.to_string());
        }
        let published = match port {
            Some(_) => self.docker.inspect(&id).await.ok().and_then(|i| i.endpoint).and_then(|e| {
                let (host, port) = e.rsplit_once(':')?;
                Some((port.parse().ok()?, host.to_string()))
            }),
            None => None,
        };
        self.update_alloc(&alloc, |a| {
            a.container = Some(id.clone());
            a.port = published;
            a.events.push(Self::event("Started", "Task started by client", json!({})));
            (a.task_state, a.client_status) = ("running".into(), "running".into());
        });
        let mut output = attached.output;
        while let Some(chunk) = output.next().await {
            let (stderr, bytes) = match chunk {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => (false, message),
                Ok(LogOutput::StdErr { message }) => (true, message),
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(_) => break,
            };
            self.update_alloc(&alloc, |a| {
                if stderr { a.stderr.extend_from_slice(&bytes) } else { a.stdout.extend_from_slice(&bytes) }
            });
        }
        let code = self.docker.wait(&id).await.unwrap_or(-1);
        let oom = self.docker.inspect(&id).await.map(|i| i.oom_killed).unwrap_or(false);
        let _ = self.docker.remove(&id).await;
        self.update_alloc(&alloc, |a| {
            a.container = None;
            if a.lost {
                // The node is gone: nothing more is heard of the task.
                a.client_status = "lost".into();
                a.client_description = "alloc is lost since its node is down".into();
                return;
            }
            let message = if oom { "OOM Killed".to_string() } else { format!("Exit Code: {code}") };
            let details = json!({ "exit_code": code.to_string(), "signal": "0", "oom_killed": oom.to_string() });
            a.events.push(Self::event("Terminated", &message, details));
            a.task_state = "dead".into();
            a.failed = code != 0;
            a.client_status = if code == 0 { "complete" } else { "failed" }.into();
        });
    }

    fn fail_driver(&self, alloc: &str, words: &str) {
        self.update_alloc(alloc, |a| {
            a.events.push(Self::event("Driver Failure", words, json!({ "driver_error": words })));
            (a.task_state, a.failed, a.client_status) = ("dead".into(), true, "failed".into());
        });
    }

    /// Waits until the index passes `index` or `wait` elapsed (a blocking query).
    async fn block(&self, query: &BTreeMap<String, String>) {
        let index: u64 = query.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
        if index == 0 {
            return;
        }
        let wait = query.get("wait").and_then(|w| w.trim_end_matches('s').parse().ok()).unwrap_or(300);
        let mut changed = self.changed.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(wait), changed.wait_for(|now| *now > index)).await;
    }

    fn stub(alloc_id: &str, alloc: &Alloc) -> Value {
        json!({
            "ID": alloc_id,
            "JobID": alloc.job,
            "TaskGroup": "task",
            "ClientStatus": alloc.client_status,
            "ClientDescription": alloc.client_description,
            "DesiredStatus": "run",
            "TaskStates": { "task": { "State": alloc.task_state, "Failed": alloc.failed, "Events": alloc.events } },
            "CreateIndex": alloc.create_index,
            "ModifyIndex": alloc.modify_index,
        })
    }
}

impl FakeNomad {
    /// Starts the fake on a free local port. `host_volumes` maps host volume names to host directories.
    pub async fn start(host_volumes: BTreeMap<String, String>) -> FakeNomad {
        let docker = DockerScheduler::connect().await.expect("a running Docker engine");
        let engine = bollard::Docker::connect_with_local_defaults().expect("a Docker engine");
        let (changed, _) = watch::channel(1);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let shared = Arc::new(Shared {
            stored: Mutex::new(Stored {
                index: 1,
                jobs: BTreeMap::new(),
                allocs: BTreeMap::new(),
                dispatched: BTreeMap::new(),
                evaluations: BTreeMap::new(),
                cut: Vec::new(),
                next_id: 1,
            }),
            changed,
            docker,
            engine,
            host_volumes,
            faults: Mutex::new(Faults::default()),
            tag: format!("{}-{nanos:x}", std::process::id()),
        });
        let app = Router::new()
            .route("/v1/status/leader", get(|| async { axum::Json(json!("127.0.0.1:4647")) }))
            .route("/v1/jobs", get(list_jobs).put(register).post(register))
            .route("/v1/job/{id}", get(get_job).delete(deregister))
            .route("/v1/job/{id}/dispatch", post(dispatch).put(dispatch))
            .route("/v1/job/{id}/allocations", get(job_allocations))
            .route("/v1/job/{id}/evaluations", get(job_evaluations))
            .route("/v1/allocation/{id}", get(get_allocation))
            .route("/v1/client/fs/logs/{id}", get(logs))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeNomad { url, shared }
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Loses the node of the job's running allocation: its container dies and the allocation is `lost`.
    pub async fn lose_node_of(&self, job: &str) {
        let container = {
            let mut stored = self.shared.lock();
            let prefix = format!("{job}/dispatch-");
            let found = stored.allocs.values_mut().find(|a| a.job.starts_with(&prefix) && a.container.is_some());
            found.and_then(|a| {
                a.lost = true;
                a.container.clone()
            })
        };
        if let Some(id) = container {
            let _ = self.shared.docker.stop(&id, Duration::ZERO).await;
        }
    }

    /// The registered jobs (parents and dispatched runs).
    pub fn job_ids(&self) -> Vec<String> {
        self.shared.lock().jobs.keys().cloned().collect()
    }

    /// A registered job, as it was sent.
    pub fn job(&self, id: &str) -> Option<Value> {
        self.shared.lock().jobs.get(id).cloned()
    }

    /// How many log streams were cut.
    pub fn logs_cut(&self) -> usize {
        self.shared.lock().cut.len()
    }
}

impl Drop for FakeNomad {
    fn drop(&mut self) {
        let filter = format!("label=dev.gofer.fakenomad={}", self.shared.tag);
        if let Ok(out) = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output();
            }
        }
    }
}

/// The answer to a read, with its index.
fn indexed(value: Value, index: u64) -> Response {
    let mut response = axum::Json(value).into_response();
    if let Ok(header) = index.to_string().parse() {
        response.headers_mut().insert("X-Nomad-Index", header);
    }
    response
}

async fn register(State(shared): State<Arc<Shared>>, axum::Json(body): axum::Json<Value>) -> Answer {
    let mut job = body.get("Job").cloned().ok_or_else(|| text(StatusCode::BAD_REQUEST, "Job must be specified"))?;
    let id = job["ID"].as_str().unwrap_or_default().to_string();
    if id.is_empty() {
        return Err(text(StatusCode::BAD_REQUEST, "Job ID hasn't been provided"));
    }
    if job["TaskGroups"].as_array().is_none_or(Vec::is_empty) {
        return Err(text(StatusCode::INTERNAL_SERVER_ERROR, "1 error occurred:\n\t* Missing job task groups"));
    }
    job["ParentID"] = json!("");
    job["Status"] = json!("running");
    let runs = job["Type"] == "service" && job["Stop"] != true;
    let alloc = {
        let mut stored = shared.lock();
        stored.jobs.insert(id.clone(), job);
        let index = shared.bump(&mut stored);
        // A service registered running gets an allocation, unless it has a live one.
        let live = stored.allocs.values().any(|a| a.job == id && a.task_state != "dead");
        (runs && !live).then(|| new_alloc(&shared, &mut stored, &id, index))
    };
    if let Some(alloc) = alloc {
        tokio::spawn(shared.clone().run_alloc(alloc));
    }
    Ok(axum::Json(json!({ "EvalID": "", "JobModifyIndex": 1 })).into_response())
}

/// A pending allocation of `job`.
fn new_alloc(shared: &Shared, stored: &mut Stored, job: &str, index: u64) -> String {
    stored.next_id += 1;
    let alloc = format!("{:08x}-0000-4000-8000-{:012x}", stored.next_id, stored.next_id);
    let pending = Alloc {
        job: job.to_string(),
        client_status: "pending".into(),
        task_state: "pending".into(),
        create_index: index,
        modify_index: index,
        ..Alloc::default()
    };
    stored.allocs.insert(alloc.clone(), pending);
    shared.bump(stored);
    alloc
}

/// The filter terms Gofer sends: `Meta["k"] == "v"`, `ParentID is empty`, `ParentID == "x"`, joined by `and`.
fn matches_filter(job: &Value, filter: &str) -> Result<bool, String> {
    for term in filter.split(" and ").map(str::trim) {
        let ok = if let Some(rest) = term.strip_prefix("Meta[\"") {
            let (key, rest) = rest.split_once("\"] == \"").ok_or(format!("cannot parse {term}"))?;
            let value = rest.strip_suffix('"').ok_or(format!("cannot parse {term}"))?;
            job["Meta"][key].as_str() == Some(value)
        } else if term == "ParentID is empty" {
            job["ParentID"].as_str().is_none_or(str::is_empty)
        } else if let Some(value) = term.strip_prefix("ParentID == \"").and_then(|r| r.strip_suffix('"')) {
            job["ParentID"].as_str() == Some(value)
        } else {
            return Err(format!("the fake does not know the filter term {term}"));
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list_jobs(State(shared): State<Arc<Shared>>, Query(query): Query<BTreeMap<String, String>>) -> Answer {
    shared.block(&query).await;
    let stored = shared.lock();
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let mut stubs = Vec::new();
    for (id, job) in stored.jobs.range(prefix.clone()..).take_while(|(id, _)| id.starts_with(&prefix)) {
        if let Some(filter) = query.get("filter") {
            match matches_filter(job, filter) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return Err(text(StatusCode::BAD_REQUEST, e)),
            }
        }
        let mut stub = json!({ "ID": id, "ParentID": job["ParentID"], "Status": job["Status"], "Type": job["Type"] });
        if query.get("meta").is_some_and(|m| m == "true") {
            stub["Meta"] = job["Meta"].clone();
        }
        stubs.push(stub);
    }
    Ok(indexed(json!(stubs), stored.index))
}

async fn get_job(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    let stored = shared.lock();
    let job = stored.jobs.get(&id).cloned().ok_or_else(|| text(StatusCode::NOT_FOUND, "job not found"))?;
    Ok(indexed(job, stored.index))
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Answer {
    let (child, alloc) = {
        let mut stored = shared.lock();
        let parent = stored
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| text(StatusCode::INTERNAL_SERVER_ERROR, "parameterized job not found"))?;
        if parent["ParameterizedJob"].is_null() {
            return Err(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Specified job \"{id}\" is not a parameterized job"),
            ));
        }
        let token = query.get("idempotency_token").cloned().unwrap_or_default();
        if let Some(child) = stored.dispatched.get(&(id.clone(), token.clone())).filter(|_| !token.is_empty()) {
            return Ok(axum::Json(json!({ "DispatchedJobID": child, "EvalID": "" })).into_response());
        }
        stored.next_id += 1;
        let serial = stored.next_id;
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let child = format!("{id}/dispatch-{unix}-{serial:08x}");
        let mut job = parent.clone();
        job["ID"] = json!(child);
        job["Name"] = json!(child);
        job["ParentID"] = json!(id);
        job["Dispatched"] = json!(true);
        job["ParameterizedJob"] = Value::Null;
        stored.jobs.insert(child.clone(), job);
        if !token.is_empty() {
            stored.dispatched.insert((id.clone(), token), child.clone());
        }
        let index = shared.bump(&mut stored);
        let image = parent["TaskGroups"][0]["Tasks"][0]["Config"]["image"].as_str().unwrap_or_default().to_string();
        let unplaceable = shared.faults.lock().unwrap_or_else(|e| e.into_inner()).unplaceable_image.clone();
        if unplaceable.as_deref() == Some(image.as_str()) {
            let failed = json!({ "task": {
                "NodesEvaluated": 3, "NodesFiltered": 1, "NodesExhausted": 2,
                "ConstraintFiltered": { "${attr.kernel.name} = linux": 1 },
                "DimensionExhausted": { "memory": 2 }
            }});
            let evaluation =
                json!({ "ID": "eval-1", "Status": "complete", "CreateIndex": index, "FailedTGAllocs": failed });
            stored.evaluations.insert(child.clone(), vec![evaluation]);
            return Ok(axum::Json(json!({ "DispatchedJobID": child, "EvalID": "eval-1" })).into_response());
        }
        let alloc = new_alloc(&shared, &mut stored, &child, index);
        (child, alloc)
    };
    tokio::spawn(shared.clone().run_alloc(alloc));
    Ok(axum::Json(json!({ "DispatchedJobID": child, "EvalID": "eval", "EvalCreateIndex": 1, "JobCreateIndex": 1 }))
        .into_response())
}

async fn deregister(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Answer {
    let purge = query.get("purge").is_some_and(|p| p == "true");
    let (running, kill_timeout) = {
        let mut stored = shared.lock();
        let job = stored.jobs.get_mut(&id).ok_or_else(|| text(StatusCode::NOT_FOUND, "job not found"))?;
        job["Status"] = json!("dead");
        job["Stop"] = json!(true);
        let kill_timeout = job["TaskGroups"][0]["Tasks"][0]["KillTimeout"].as_u64().unwrap_or(5_000_000_000);
        let running: Vec<String> =
            stored.allocs.values().filter(|a| a.job == id).filter_map(|a| a.container.clone()).collect();
        if purge {
            stored.jobs.remove(&id);
        }
        shared.bump(&mut stored);
        (running, Duration::from_nanos(kill_timeout))
    };
    for container in running {
        let (docker, container) = (shared.docker.clone(), container.clone());
        tokio::spawn(async move {
            let _ = docker.stop(&container, kill_timeout).await;
        });
    }
    Ok(axum::Json(json!({ "EvalID": "eval", "JobModifyIndex": 1 })).into_response())
}

async fn job_allocations(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Answer {
    shared.block(&query).await;
    let stored = shared.lock();
    let stubs: Vec<Value> =
        stored.allocs.iter().filter(|(_, a)| a.job == id).map(|(aid, a)| Shared::stub(aid, a)).collect();
    Ok(indexed(json!(stubs), stored.index))
}

async fn job_evaluations(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    let stored = shared.lock();
    let evaluations = stored.evaluations.get(&id).cloned().unwrap_or_default();
    Ok(indexed(json!(evaluations), stored.index))
}

async fn get_allocation(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    let stored = shared.lock();
    let alloc = stored.allocs.get(&id).ok_or_else(|| text(StatusCode::NOT_FOUND, "alloc not found"))?;
    let mut full = Shared::stub(&id, alloc);
    let ports: Vec<Value> = alloc
        .port
        .iter()
        .map(|(port, host)| json!({ "Label": "api", "Value": port, "To": 0, "HostIP": host }))
        .collect();
    full["AllocatedResources"] = json!({ "Shared": { "Ports": ports } });
    Ok(indexed(full, stored.index))
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Answer {
    let kind = query.get("type").cloned().unwrap_or_default();
    if kind != "stdout" && kind != "stderr" {
        return Err(text(StatusCode::BAD_REQUEST, "must provide type (stdout or stderr)"));
    }
    if query.get("task").map(String::as_str) != Some("task") {
        return Err(text(StatusCode::BAD_REQUEST, "unknown task name"));
    }
    let follow = query.get("follow").is_some_and(|f| f == "true");
    let mut offset: usize = query.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let mut budget = {
        let mut stored = shared.lock();
        let alloc = stored.allocs.get(&id).ok_or_else(|| text(StatusCode::NOT_FOUND, "alloc not found"))?;
        if alloc.task_state == "pending" {
            return Err(text(StatusCode::NOT_FOUND, "task \"task\" not started yet. No logs available"));
        }
        let cut_after = shared.faults.lock().unwrap_or_else(|e| e.into_inner()).cut_logs_after;
        let key = (id.clone(), kind.clone());
        match cut_after {
            Some(n) if follow && !stored.cut.contains(&key) => {
                stored.cut.push(key);
                Some(n)
            }
            _ => None,
        }
    };
    let stream = produced(16, move |sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>| async move {
        let mut changed = shared.changed.subscribe();
        loop {
            let fresh = {
                let stored = shared.lock();
                let Some(alloc) = stored.allocs.get(&id) else { return };
                let buffer = if kind == "stdout" { &alloc.stdout } else { &alloc.stderr };
                Bytes::copy_from_slice(buffer.get(offset..).unwrap_or_default())
            };
            if !fresh.is_empty() {
                offset += fresh.len();
                let (fresh, cut) = match budget.as_mut() {
                    Some(left) if fresh.len() >= *left => (fresh.slice(..*left), true),
                    Some(left) => {
                        *left -= fresh.len();
                        (fresh, false)
                    }
                    None => (fresh, false),
                };
                if sender.send(Ok(fresh)).await.is_err() {
                    return;
                }
                if cut {
                    let _ = sender.send(Err(std::io::Error::other("the log stream was cut"))).await;
                    return;
                }
            }
            if !follow {
                return;
            }
            // Followed, it never ends by itself (as Nomad's): only when the reader goes.
            let _ = changed.changed().await;
        }
    });
    Ok(Body::from_stream(stream).into_response())
}
