//! The scheduler boundary: how Gofer asks a container engine to run one container and learns how it ended.
//!
//! The orchestrator only sees this trait. Backends (Docker now; Kubernetes and Nomad later) live in their own
//! crates. Exit is learned from the engine's own wait call, never by polling.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod cluster;
#[cfg(feature = "conformance")]
pub mod conformance;

/// Labels every Gofer container carries, so Gofer only ever touches its own containers.
pub mod labels {
    /// Present (value `true`) on every container Gofer creates.
    pub const MANAGED: &str = "dev.gofer.managed";
    /// The id of the Gofer installation (data dir) that created the container.
    pub const INSTALLATION: &str = "dev.gofer.installation";
    pub const NAMESPACE: &str = "dev.gofer.namespace";
    pub const PIPELINE: &str = "dev.gofer.pipeline";
    pub const RUN: &str = "dev.gofer.run";
    pub const TASK: &str = "dev.gofer.task";
    pub const ATTEMPT: &str = "dev.gofer.attempt";
    /// On extension containers: the extension's id.
    pub const EXTENSION: &str = "dev.gofer.extension";
    /// On a failed task's debug container: the image its filesystem was saved as (removed with it).
    pub const DEBUG_IMAGE: &str = "dev.gofer.debug-image";
    /// On the container that holds a shared network ([`crate::ContainerSpec::shared_network`]): its key.
    pub const SHARED_NETWORK: &str = "dev.gofer.shared-network";
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created but never started: nothing of the task has run yet.
    Created,
    /// Started and not yet exited (also paused or restarting).
    Running,
    /// Started and ended (or dead); its exit code is known.
    Exited,
}

/// A container Gofer created, as the engine sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub state: ContainerState,
    /// The exit code, once it exited.
    pub exit_code: Option<i64>,
    pub image_digest: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Where Gofer reaches the container's exposed port (`host:port`), if the spec exposed one and it runs.
    pub endpoint: Option<String>,
    /// The engine killed it for going over its memory limit.
    pub oom_killed: bool,
    /// What the engine says about how it ended, beyond the exit code, when it says something (Kubernetes:
    /// `StartError: exec: "make": executable file not found`).
    pub exit_message: Option<String>,
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        self.state == ContainerState::Running
    }
}

/// Credentials for a private registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub user: String,
    pub pass: String,
}

/// Storage mounted into a container, as the operator configured it for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The engine's name for the storage: for Docker a host path (absolute) or a named volume; for Kubernetes a
    /// persistent volume claim; for Nomad a host volume.
    pub source: String,
    /// Where it appears in the container (absolute).
    pub target: String,
    pub read_only: bool,
}

/// What a container may use and how it runs, beyond its image and command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// The most CPU it may use, in thousandths of a core.
    pub cpu_millicores: Option<u32>,
    /// The most memory it may use, in bytes (swap included: going over kills it).
    pub memory_bytes: Option<u64>,
    /// The directory its command starts in.
    pub working_dir: Option<String>,
    /// The user (`name`, `uid`, `name:group` or `uid:gid`) its command runs as.
    pub user: Option<String>,
    pub mounts: Vec<Mount>,
}

/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Unique container name.
    pub name: String,
    pub image: String,
    /// Pull even when the engine has the image.
    pub always_pull: bool,
    pub registry_auth: Option<RegistryAuth>,
    pub env: Vec<(String, String)>,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    /// A TCP port inside the container that Gofer must reach (extensions); `inspect` tells where.
    pub expose_port: Option<u16>,
    /// Limits, working directory, user and mounts.
    pub resources: Resources,
    /// The key of a group of containers (the tasks of a run) that may share one network namespace, made once for
    /// the group, so that starting each costs no network setup. `None`, or an engine that does not share: the
    /// container has its own. Never set together with `expose_port`.
    pub shared_network: Option<String>,
}

/// A container that was started.
pub struct Started {
    /// The engine's id of the container.
    pub container_id: String,
    /// The id (content digest) of the image the engine ran, if known at start; else `inspect` tells it.
    pub image_digest: Option<String>,
    /// The container's stdout and stderr, merged, byte for byte, attached before it started so nothing is
    /// missed; the stream ends once the container exited and all its output was delivered.
    pub output: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("container_id", &self.container_id)
            .field("image_digest", &self.image_digest)
            .finish_non_exhaustive()
    }
}

/// The engine's own error, kept as the source of an [`Error`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong talking to a container engine. The engine's own error is the source: print the whole chain
/// to show its words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image '{image}' is not available")]
    Image {
        image: String,
        #[source]
        source: Cause,
    },
    #[error("no container '{container}'")]
    NoSuchContainer {
        container: String,
        #[source]
        source: Cause,
    },
    #[error("the container engine failed to {action}")]
    Engine {
        action: String,
        #[source]
        source: Cause,
    },
    /// The spec asks for something this scheduler cannot do (a user by name on Kubernetes, for example): the
    /// task's to change, not the engine's fault.
    #[error("{reason}")]
    Unsupported { reason: String },
    #[error("cannot reach the container engine at {endpoint}; {hint}")]
    Unreachable {
        endpoint: String,
        /// What to do about it, in the engine's terms.
        hint: String,
        #[source]
        source: Cause,
    },
}

impl Error {
    /// A cause that is only words (no error value of the engine's to keep).
    pub fn cause(message: impl Into<String>) -> Cause {
        Box::new(std::io::Error::other(message.into()))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A command started in a running container ([`Scheduler::exec`]).
pub struct Exec {
    /// The engine's id for the command, to ask for its exit code.
    pub exec_id: String,
    /// Its stdout and stderr, merged (a TTY merges them anyway); ends when the command exits.
    pub output: BoxStream<'static, Result<Bytes>>,
    /// Its stdin; shutting it down sends end-of-file.
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec").field("exec_id", &self.exec_id).finish_non_exhaustive()
    }
}

fn no_exec() -> Error {
    Error::Engine {
        action: "debug a container".into(),
        source: Error::cause("this container scheduler cannot run commands in containers or keep their filesystems"),
    }
}

/// A container engine.
///
/// Creating and starting are two calls so that a crash between them can be told apart afterwards: a container
/// found in state [`ContainerState::Created`] never ran, and is started (or given up), never taken as finished.
#[async_trait]
pub trait Scheduler: Send + Sync + 'static {
    /// Which engine this is and where, for reports (e.g. `docker 20.10.24 at unix:///var/run/docker.sock`).
    fn describe(&self) -> String {
        "unknown".into()
    }
    /// Pulls the image if needed (or always, when the spec asks) and creates the container; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String>;
    /// Attaches to a created container's output and starts it. A container that fails to start is removed.
    async fn start(&self, container_id: &str) -> Result<Started>;
    /// Creates and starts a container.
    async fn run(&self, spec: &ContainerSpec) -> Result<Started> {
        let id = self.create(spec).await?;
        self.start(&id).await
    }
    /// Waits until the container exits and returns its exit code. Returns at once if it already exited. Only for
    /// containers that were started: the engine answers at once for a created one, as if it had exited.
    async fn wait(&self, container_id: &str) -> Result<i64>;
    /// The container's whole output from its start, for containers whose live output this process did not attach
    /// to (after a restart): what the engine kept, then live output until the container exits.
    async fn output_since_start(&self, container_id: &str) -> Result<BoxStream<'static, Result<Bytes>>>;
    /// The container's output as the engine logged it: what it kept so far, and with `follow` then live output
    /// until the container exits.
    async fn logs(&self, container_id: &str, follow: bool) -> Result<BoxStream<'static, Result<Bytes>>>;
    /// The container's current state.
    async fn inspect(&self, container_id: &str) -> Result<ContainerInfo>;
    /// Containers carrying all of `labels`, running or not.
    async fn find(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>>;
    /// Asks the container to stop, and kills it once `grace` has passed.
    async fn stop(&self, container_id: &str, grace: Duration) -> Result<()>;
    /// Removes the container. Removing one that is already gone is not an error.
    async fn remove(&self, container_id: &str) -> Result<()>;
    /// Starts `command` in a running container, with a TTY when `tty` (stdout and stderr then arrive as one).
    async fn exec(&self, container_id: &str, command: &[String], tty: bool) -> Result<Exec> {
        let _ = (container_id, command, tty);
        Err(no_exec())
    }
    /// The exit code of a command started with [`Scheduler::exec`]; `None` while it runs.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>> {
        let _ = exec_id;
        Err(no_exec())
    }
    /// Saves a container's filesystem as the image `image` (`name:tag`), to start a debug container from; the
    /// variables named in `blank` are emptied in the image's environment (they may hold secrets).
    async fn snapshot(&self, container_id: &str, image: &str, blank: &[String]) -> Result<()> {
        let _ = (container_id, image, blank);
        Err(no_exec())
    }
    /// Removes an image made by [`Scheduler::snapshot`]; removing one that is gone is not an error.
    async fn remove_image(&self, image: &str) -> Result<()> {
        let _ = image;
        Err(no_exec())
    }
    /// Makes the network that containers created with `shared_network: Some(key)` join, ahead of them, labelled with
    /// `labels` (and [`labels::SHARED_NETWORK`]) so a later process can find it. Engines that do not share
    /// networks do nothing. A network that cannot be made is no error: the containers get their own.
    async fn prepare_shared_network(&self, key: &str, labels: &BTreeMap<String, String>) {
        let _ = (key, labels);
    }
    /// Removes the shared network `key` once no container of its group runs any more (also one a previous process
    /// made). Engines that do not share networks do nothing.
    async fn release_shared_network(&self, key: &str) {
        let _ = key;
    }
    /// Tells the TTY of a command started with [`Scheduler::exec`] its window size.
    async fn resize_exec(&self, exec_id: &str, columns: u16, rows: u16) -> Result<()> {
        let _ = (exec_id, columns, rows);
        Err(no_exec())
    }
}
