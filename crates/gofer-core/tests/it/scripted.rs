//! A scheduler that plays containers from a script in their command, for deterministic orchestrator tests:
//! `exit N`, `start-fails`, `hang` (until stopped: exit 143), `succeed-on-attempt N` (exit 1 before attempt N),
//! `sleep-then-exit SECS [CODE]` (on tokio's clock, exit CODE, default 0). Every call that changes a container is
//! recorded in [`Scripted::calls`] (`create first`, `start first`, `exit first 0`, `remove first created`…), with the
//! shared networks asked for.
//!
//! Containers live through the states an engine gives them (created, running, exited), and survive the
//! orchestrator that made them, so a test can "crash" Gofer at a named step ([`Step`]: the scheduler call never
//! returns, the test drops the runtime) and start a new one on the same engine and storage.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use gofer_scheduler::{ContainerInfo, ContainerSpec, ContainerState, Error, Result, Scheduler, Started};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
enum Play {
    Exit(i64),
    Hang,
    Sleep(u64, i64),
    StartFails,
}

/// A step of a task attempt at which Gofer can crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The container was created; Gofer never learned its id.
    Created,
    /// Gofer attached to the created container but did not start it.
    Attached,
    /// The container started; Gofer never learned it did.
    Started,
    /// The container exited; Gofer never learned how.
    Exited,
    /// Gofer stored the outcome but did not remove the container.
    Recorded,
    /// Gofer was about to stop the container (a cancel), and did not.
    Stopping,
}

#[derive(Clone)]
struct Container {
    play: Play,
    state: ContainerState,
    exit_code: Option<i64>,
    output: Bytes,
    labels: BTreeMap<String, String>,
    stopped: CancellationToken,
}

#[derive(Default)]
pub struct Scripted {
    containers: Mutex<HashMap<String, Container>>,
    next: AtomicU64,
    /// The environment of every container created, in order.
    pub envs: Mutex<Vec<BTreeMap<String, String>>>,
    /// What was done, in order: `create TASK`, `start TASK`, `exit TASK CODE`, `remove TASK STATE`,
    /// `network TASK KEY` (a created container joins a shared network), `prepare-network KEY`, `release-network KEY`.
    pub calls: Mutex<Vec<String>>,
    /// How many containers were created and started.
    pub created: AtomicUsize,
    pub started: AtomicUsize,
    crash_at: Mutex<Option<Step>>,
    crashed: CancellationToken,
}

impl Scripted {
    /// The next time an attempt reaches `step`, the scheduler call hangs for ever, as if Gofer had died there.
    pub fn crash_at(&self, step: Step) {
        *self.crash_at.lock().unwrap() = Some(step);
    }

    /// Resolves once the crash point was reached.
    pub async fn crashed(&self) {
        self.crashed.cancelled().await;
    }

    /// Hangs for ever when `step` is the crash point (once).
    async fn maybe_crash(&self, step: Step) {
        let now = {
            let mut crash_at = self.crash_at.lock().unwrap();
            let now = *crash_at == Some(step);
            if now {
                *crash_at = None;
            }
            now
        };
        if now {
            self.crashed.cancel();
            std::future::pending::<()>().await;
        }
    }

    fn container(&self, container_id: &str) -> Result<Container> {
        self.containers.lock().unwrap().get(container_id).cloned().ok_or_else(|| Error::NoSuchContainer {
            container: container_id.into(),
            source: Error::cause("no such container"),
        })
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    /// The recorded calls that start with `prefix`.
    pub fn calls_of(&self, prefix: &str) -> Vec<String> {
        self.calls.lock().unwrap().iter().filter(|c| c.starts_with(prefix)).cloned().collect()
    }

    fn task_of(&self, container_id: &str) -> String {
        let containers = self.containers.lock().unwrap();
        containers.get(container_id).and_then(|c| c.labels.get("dev.gofer.task").cloned()).unwrap_or_default()
    }

    fn set_state(&self, container_id: &str, state: ContainerState, exit_code: Option<i64>) {
        if let Some(c) = self.containers.lock().unwrap().get_mut(container_id) {
            c.state = state;
            c.exit_code = exit_code;
        }
    }

    /// Containers left, of any state.
    pub fn container_count(&self) -> usize {
        self.containers.lock().unwrap().len()
    }

    fn info(id: &str, c: &Container) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: id.into(),
            state: c.state,
            exit_code: c.exit_code,
            image_digest: Some("sha256:scripted".into()),
            labels: c.labels.clone(),
            endpoint: None,
            oom_killed: false,
            exit_message: None,
        }
    }

    async fn exit(&self, container_id: &str, code: i64) -> Result<i64> {
        self.set_state(container_id, ContainerState::Exited, Some(code));
        self.record(format!("exit {} {code}", self.task_of(container_id)));
        self.maybe_crash(Step::Exited).await;
        Ok(code)
    }
}

#[async_trait]
impl Scheduler for Scripted {
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        self.envs.lock().unwrap().push(spec.env.iter().cloned().collect());
        let command = spec.command.clone().unwrap_or_default();
        let arg = |i: usize| command.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        let attempt: i64 =
            spec.env.iter().find(|(k, _)| k == "GOFER_TASK_ATTEMPT").and_then(|(_, v)| v.parse().ok()).unwrap_or(1);
        let play = match command.first().map(String::as_str) {
            Some("exit") => Play::Exit(arg(1)),
            Some("hang") => Play::Hang,
            Some("succeed-on-attempt") => Play::Exit(if attempt >= arg(1) { 0 } else { 1 }),
            Some("sleep-then-exit") => Play::Sleep(arg(1) as u64, arg(2)),
            Some("start-fails") => Play::StartFails,
            other => panic!("unscripted command {other:?}"),
        };
        let id = format!("c{}", self.next.fetch_add(1, Ordering::Relaxed));
        let container = Container {
            play,
            state: ContainerState::Created,
            exit_code: None,
            output: Bytes::from(format!("{}\n", command.join(" "))),
            labels: spec.labels.clone(),
            stopped: CancellationToken::new(),
        };
        self.containers.lock().unwrap().insert(id.clone(), container);
        let task = self.task_of(&id);
        self.record(format!("create {task}"));
        if let Some(key) = &spec.shared_network {
            self.record(format!("network {task} {key}"));
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        self.maybe_crash(Step::Created).await;
        Ok(id)
    }

    async fn start(&self, container_id: &str) -> Result<Started> {
        let container = self.container(container_id)?;
        self.maybe_crash(Step::Attached).await;
        if let Play::StartFails = container.play {
            self.containers.lock().unwrap().remove(container_id);
            return Err(Error::Engine {
                action: "start the container".into(),
                source: Error::cause("scripted failure"),
            });
        }
        self.set_state(container_id, ContainerState::Running, None);
        self.record(format!("start {}", self.task_of(container_id)));
        self.started.fetch_add(1, Ordering::Relaxed);
        self.maybe_crash(Step::Started).await;
        let output = futures::stream::iter([Ok(container.output)]).boxed();
        Ok(Started { container_id: container_id.into(), image_digest: Some("sha256:scripted".into()), output })
    }

    async fn wait(&self, container_id: &str) -> Result<i64> {
        let container = self.container(container_id)?;
        match (container.state, container.exit_code) {
            (ContainerState::Exited, Some(code)) => return Ok(code),
            // What the Docker engine does: a created container "is not running", so the wait answers at once.
            (ContainerState::Created, _) => return Ok(0),
            _ => {}
        }
        match container.play {
            Play::Exit(code) => self.exit(container_id, code).await,
            Play::Hang => {
                container.stopped.cancelled().await;
                self.exit(container_id, 143).await
            }
            Play::Sleep(secs, code) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(secs)) => self.exit(container_id, code).await,
                    () = container.stopped.cancelled() => self.exit(container_id, 143).await,
                }
            }
            Play::StartFails => {
                Err(Error::NoSuchContainer { container: container_id.into(), source: Error::cause("never started") })
            }
        }
    }

    async fn output_since_start(&self, container_id: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let container = self.container(container_id)?;
        let output = match container.state {
            ContainerState::Created => Bytes::new(),
            _ => container.output,
        };
        Ok(futures::stream::iter([Ok(output)]).boxed())
    }

    async fn logs(&self, container_id: &str, follow: bool) -> Result<BoxStream<'static, Result<Bytes>>> {
        let _ = follow;
        self.output_since_start(container_id).await
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerInfo> {
        Ok(Self::info(container_id, &self.container(container_id)?))
    }

    async fn find(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>> {
        let containers = self.containers.lock().unwrap();
        let mut found: Vec<ContainerInfo> = containers
            .iter()
            .filter(|(_, c)| labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .map(|(id, c)| Self::info(id, c))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn stop(&self, container_id: &str, _grace: Duration) -> Result<()> {
        self.maybe_crash(Step::Stopping).await;
        if let Ok(container) = self.container(container_id) {
            container.stopped.cancel();
        }
        Ok(())
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        if let Ok(container) = self.container(container_id) {
            let state = match container.state {
                ContainerState::Created => "created",
                ContainerState::Running => "running",
                ContainerState::Exited => "exited",
            };
            self.record(format!("remove {} {state}", self.task_of(container_id)));
            self.maybe_crash(Step::Recorded).await;
        }
        self.containers.lock().unwrap().remove(container_id);
        Ok(())
    }

    async fn prepare_shared_network(&self, key: &str, _labels: &BTreeMap<String, String>) {
        self.record(format!("prepare-network {key}"));
    }

    async fn release_shared_network(&self, key: &str) {
        self.record(format!("release-network {key}"));
    }
}
