//! The Docker scheduler: runs task containers on a local (or `DOCKER_HOST`) Docker engine through its API.
//!
//! Containers are created with Gofer's labels, started, awaited with the engine's wait call (no polling), and their
//! logs followed from the engine. Only containers Gofer created are ever stopped or removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HostConfig, HostConfigLogConfig, MountType, PortBinding,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use gofer_scheduler::{ContainerInfo, ContainerSpec, ContainerState, Error, Exec, Result, Scheduler, Started};

mod network;

/// What to do when the engine does not answer.
const HINT: &str =
    "start it (for example `dockerd &` or `systemctl start docker`) or set DOCKER_HOST to where it listens";

/// The Docker backend. Cheap to clone.
#[derive(Clone)]
pub struct DockerScheduler {
    docker: Docker,
    /// The engine's version and address, for reports.
    description: String,
    /// Containers given a shared network join its holder (see [`network`]).
    share_networks: bool,
    holders: Arc<network::Holders>,
}

impl DockerScheduler {
    /// Connects to the engine named by `DOCKER_HOST` (or the default local socket), agrees on an API version and
    /// checks that the engine answers.
    pub async fn connect() -> Result<Self> {
        Self::connect_to(None).await
    }

    /// Connects to the engine at `host` (`unix:///…`, `tcp://…`, `http://…`), or as [`DockerScheduler::connect`]
    /// does when `None`.
    pub async fn connect_to(host: Option<&str>) -> Result<Self> {
        let endpoint = host.map(str::to_string).unwrap_or_else(|| {
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
        });
        let unreachable = |e: bollard::errors::Error| Error::Unreachable {
            endpoint: endpoint.clone(),
            hint: HINT.into(),
            source: Box::new(e),
        };
        let docker = match host {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        let version = docker.version().await.ok().and_then(|v| v.version).unwrap_or_else(|| "(version unknown)".into());
        let description = format!("docker {version} at {endpoint}");
        Ok(Self { docker, description, share_networks: true, holders: Default::default() })
    }

    /// Whether containers given the same [`ContainerSpec::shared_network`] share one network namespace (the
    /// default), or each gets its own.
    pub fn sharing_networks(mut self, share: bool) -> Self {
        self.share_networks = share;
        self
    }

    /// Pulls the task's image, with its registry credentials if any.
    async fn pull(&self, spec: &ContainerSpec) -> Result<()> {
        let credentials = spec.registry_auth.as_ref().map(|auth| DockerCredentials {
            username: Some(auth.user.clone()),
            password: Some(auth.pass.clone()),
            ..Default::default()
        });
        let options = CreateImageOptions { from_image: Some(spec.image.clone()), ..Default::default() };
        let mut pull = self.docker.create_image(Some(options), None, credentials);
        while let Some(progress) = pull.next().await {
            if let Err(e) = progress {
                return Err(Error::Image { image: spec.image.clone(), source: Box::new(e) });
            }
        }
        Ok(())
    }

    /// Creates the container, pulling its image first when asked to, or when the engine does not have it (learned
    /// from the create call itself, so the common case costs no extra round trip).
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        if spec.always_pull {
            self.pull(spec).await?;
        }
        // An exposed port is published on the loopback address only, on a port the engine picks.
        let port = spec.expose_port.map(|p| format!("{p}/tcp"));
        let resources = &spec.resources;
        let memory = resources.memory_bytes.map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX));
        let holder = match (&spec.shared_network, spec.expose_port) {
            (Some(key), None) => self.holder(key, &spec.labels).await,
            _ => None,
        };
        let host_config = HostConfig {
            network_mode: holder.map(|id| format!("container:{id}")),
            port_bindings: port.as_ref().map(|port| {
                HashMap::from([(
                    port.clone(),
                    Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
                )])
            }),
            nano_cpus: resources.cpu_millicores.map(|millis| i64::from(millis) * 1_000_000),
            memory,
            // Swap counts against the limit: a task over it is killed, not slowed down by swapping.
            memory_swap: memory,
            mounts: Some(resources.mounts.iter().map(mount).collect::<Vec<_>>()).filter(|m| !m.is_empty()),
            // The engine's own copy of the output is what a restarted server reads: the `local` driver keeps the
            // bytes as they were (`json-file` replaces bytes that are not UTF-8), up to 1 GB per container.
            log_config: Some(HostConfigLogConfig {
                typ: Some("local".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), "100m".to_string()),
                    ("max-file".to_string(), "10".to_string()),
                ])),
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            exposed_ports: port.map(|port| vec![port]),
            host_config: Some(host_config),
            working_dir: resources.working_dir.clone(),
            user: resources.user.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.command.clone(),
            labels: Some(spec.labels.clone().into_iter().collect::<HashMap<_, _>>()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        };
        let options = || CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        match self.docker.create_container(Some(options()), body.clone()).await {
            Ok(created) => Ok(created.id),
            Err(e) if status_of(&e) == Some(404) && !spec.always_pull => {
                self.pull(spec).await?;
                let created = self
                    .docker
                    .create_container(Some(options()), body)
                    .await
                    .map_err(engine_error(format!("create container {}", spec.name)))?;
                Ok(created.id)
            }
            Err(e) => Err(engine_error(format!("create container {}", spec.name))(e)),
        }
    }
}

/// The exit code of a container ended by SIGKILL (128 + 9), as the kernel's OOM killer ends one.
const KILLED: i64 = 137;
/// How long the engine may take to record that a killed container was out of memory.
const OOM_SETTLE: Duration = Duration::from_secs(1);

impl DockerScheduler {
    /// Waits, for a container with a memory limit that was killed, until the engine recorded whether it was out of
    /// memory: the engine learns of the OOM kill from a separate event that can come just after the exit, so an
    /// inspect right after the wait may not show it yet. Returns at once for containers without a limit.
    async fn settle_oom(&self, container_id: &str) {
        let deadline = tokio::time::Instant::now() + OOM_SETTLE;
        loop {
            let Ok(details) = self.docker.inspect_container(container_id, None).await else { return };
            let limited = details.host_config.and_then(|h| h.memory).is_some_and(|m| m > 0);
            let oom = details.state.and_then(|s| s.oom_killed).unwrap_or(false);
            if !limited || oom || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A mount as Docker takes it: a bind mount of an absolute host path, else the Docker volume of that name. Given as
/// fields, never as a `source:target:options` string a path could add options to.
fn mount(mount: &gofer_scheduler::Mount) -> bollard::models::Mount {
    let typ = if mount.source.starts_with('/') { MountType::BIND } else { MountType::VOLUME };
    bollard::models::Mount {
        target: Some(mount.target.clone()),
        source: Some(mount.source.clone()),
        typ: Some(typ),
        read_only: Some(mount.read_only),
        ..Default::default()
    }
}

fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn engine_error(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Error {
    let action = action.into();
    move |e| Error::Engine { action, source: Box::new(e) }
}

fn container_error(container: &str, action: &str) -> impl FnOnce(bollard::errors::Error) -> Error {
    let (container, action) = (container.to_string(), action.to_string());
    move |e| {
        if status_of(&e) == Some(404) {
            Error::NoSuchContainer { container, source: Box::new(e) }
        } else {
            Error::Engine { action: format!("{action} container {container}"), source: Box::new(e) }
        }
    }
}

/// The merged stdout and stderr bytes of an engine output stream.
fn output_bytes(
    raw: impl futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
    id: String,
) -> BoxStream<'static, Result<Bytes>> {
    raw.filter_map(move |item| {
        let item = match item {
            Ok(LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message }) => {
                Some(Ok(message))
            }
            Ok(LogOutput::StdIn { .. }) => None,
            Err(e) => Some(Err(container_error(&id, "read the output of")(e))),
        };
        std::future::ready(item)
    })
    .boxed()
}

#[async_trait]
impl Scheduler for DockerScheduler {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn exec(&self, container_id: &str, command: &[String], tty: bool) -> Result<Exec> {
        let config = bollard::exec::CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let created =
            self.docker.create_exec(container_id, config).await.map_err(container_error(container_id, "exec in"))?;
        let options = bollard::exec::StartExecOptions { detach: false, tty, output_capacity: None };
        let started = self
            .docker
            .start_exec(&created.id, Some(options))
            .await
            .map_err(container_error(container_id, "start a command in"))?;
        match started {
            bollard::exec::StartExecResults::Attached { output, input } => {
                Ok(Exec { exec_id: created.id, output: output_bytes(output, container_id.to_string()), input })
            }
            bollard::exec::StartExecResults::Detached => Err(Error::Engine {
                action: format!("attach to a command in container {container_id}"),
                source: Error::cause("the engine started the command detached"),
            }),
        }
    }

    async fn snapshot(&self, container_id: &str, image: &str, blank: &[String]) -> Result<()> {
        let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        let mut options = bollard::query_parameters::CommitContainerOptionsBuilder::new()
            .container(container_id)
            .repo(repo)
            .tag(tag)
            .pause(false);
        if !blank.is_empty() {
            // One Dockerfile instruction, applied while committing: the container's values are not kept.
            let pairs: Vec<String> = blank.iter().map(|key| format!("{key}=\"\"")).collect();
            options = options.changes(&format!("ENV {}", pairs.join(" ")));
        }
        let options = options.build();
        let config = bollard::models::ContainerConfig::default();
        self.docker.commit_container(options, config).await.map_err(container_error(container_id, "snapshot"))?;
        Ok(())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::new().force(true).build();
        match self.docker.remove_image(image, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(engine_error(format!("remove image {image}"))(e)),
        }
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>> {
        let inspected = self.docker.inspect_exec(exec_id).await.map_err(engine_error("inspect a command"))?;
        Ok(if inspected.running == Some(true) { None } else { inspected.exit_code })
    }

    async fn resize_exec(&self, exec_id: &str, columns: u16, rows: u16) -> Result<()> {
        let options = bollard::exec::ResizeExecOptions { height: rows, width: columns };
        self.docker.resize_exec(exec_id, options).await.map_err(engine_error("resize a command's terminal"))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        self.create_container(spec).await
    }

    async fn start(&self, container_id: &str) -> Result<Started> {
        // Attach before starting: the output arrives raw and complete, with no newline framing by a log driver.
        let attach = AttachContainerOptions { stream: true, stdout: true, stderr: true, ..Default::default() };
        let attached = match self.docker.attach_container(container_id, Some(attach)).await {
            Ok(attached) => attached,
            Err(e) => {
                let _ = self.remove(container_id).await;
                return Err(container_error(container_id, "attach to")(e));
            }
        };
        if let Err(e) = self.docker.start_container(container_id, None).await {
            // Leave nothing half-made behind: a created-but-never-started container is ours to remove.
            let _ = self.remove(container_id).await;
            return Err(container_error(container_id, "start")(e));
        }
        let output = output_bytes(attached.output, container_id.to_string());
        // The image digest comes from `inspect`, off the start path.
        Ok(Started { container_id: container_id.to_string(), image_digest: None, output })
    }

    async fn wait(&self, container_id: &str) -> Result<i64> {
        let options = WaitContainerOptions { condition: "not-running".to_string() };
        let mut wait = self.docker.wait_container(container_id, Some(options));
        let code = match wait.next().await {
            Some(Ok(response)) => response.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(container_error(container_id, "wait for")(e)),
            None => {
                return Err(Error::Engine {
                    action: format!("wait for container {container_id}"),
                    source: Error::cause("the engine closed the wait call without an exit status"),
                });
            }
        };
        if code == KILLED {
            self.settle_oom(container_id).await;
        }
        Ok(code)
    }

    async fn output_since_start(&self, container_id: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let info = self.inspect(container_id).await?;
        let id = container_id.to_string();
        let raw = if info.is_running() {
            // Replays what the engine logged so far, then streams live output straight from the container.
            let options =
                AttachContainerOptions { logs: true, stream: true, stdout: true, stderr: true, ..Default::default() };
            self.docker
                .attach_container(container_id, Some(options))
                .await
                .map_err(container_error(container_id, "attach to"))?
                .output
        } else {
            let options = LogsOptions { follow: false, stdout: true, stderr: true, ..Default::default() };
            self.docker.logs(container_id, Some(options)).boxed()
        };
        Ok(output_bytes(raw, id))
    }

    async fn logs(&self, container_id: &str, follow: bool) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.inspect(container_id).await?;
        let options = LogsOptions { follow, stdout: true, stderr: true, ..Default::default() };
        let logged = output_bytes(self.docker.logs(container_id, Some(options)), container_id.to_string());
        if !follow {
            return Ok(logged);
        }
        // A followed log ends at the exit without a last line that has no newline (the engine drops it): what the
        // engine kept past the bytes delivered comes after.
        let delivered = Arc::new(AtomicUsize::new(0));
        let counted = {
            let delivered = delivered.clone();
            logged.inspect(move |chunk| {
                if let Ok(bytes) = chunk {
                    delivered.fetch_add(bytes.len(), Ordering::Relaxed);
                }
            })
        };
        let (docker, id) = (self.docker.clone(), container_id.to_string());
        let rest = futures::stream::once(async move {
            // Streamed, skipping what was delivered: the engine keeps up to 1 GB of a container's output.
            let options = LogsOptions { follow: false, stdout: true, stderr: true, ..Default::default() };
            let skip = delivered.load(Ordering::Relaxed);
            output_bytes(docker.logs(&id, Some(options)), id.clone())
                // Removed meanwhile: what was delivered is all there is.
                .take_while(|chunk| std::future::ready(chunk.is_ok()))
                .scan(skip, |skip, chunk| {
                    let rest = chunk.map(|bytes| {
                        let cut = (*skip).min(bytes.len());
                        *skip -= cut;
                        bytes.slice(cut..)
                    });
                    std::future::ready(Some(rest))
                })
                .filter(|chunk| std::future::ready(chunk.as_ref().is_ok_and(|b| !b.is_empty())))
        })
        .flatten();
        Ok(counted.chain(rest).boxed())
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerInfo> {
        let details = self
            .docker
            .inspect_container(container_id, None)
            .await
            .map_err(container_error(container_id, "inspect"))?;
        let state = details.state.unwrap_or_default();
        let running = state.running.unwrap_or(false) || state.restarting.unwrap_or(false);
        let life = match state.status {
            _ if running => ContainerState::Running,
            Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
            Some(
                ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::PAUSED
                | ContainerStateStatusEnum::RESTARTING
                | ContainerStateStatusEnum::STOPPING,
            ) => ContainerState::Running,
            _ => ContainerState::Exited,
        };
        let endpoint = details
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| ports.into_values().flatten().flatten().next())
            .and_then(|binding| Some(format!("{}:{}", binding.host_ip?, binding.host_port?)))
            .filter(|_| running);
        Ok(ContainerInfo {
            id: details.id.unwrap_or_else(|| container_id.to_string()),
            name: details.name.unwrap_or_default().trim_start_matches('/').to_string(),
            state: life,
            exit_code: if life == ContainerState::Exited { state.exit_code } else { None },
            image_digest: details.image,
            labels: details.config.and_then(|c| c.labels).unwrap_or_default().into_iter().collect(),
            endpoint,
            oom_killed: life == ContainerState::Exited && state.oom_killed == Some(true),
            exit_message: state.error.filter(|e| !e.is_empty() && life == ContainerState::Exited),
        })
    }

    async fn find(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>> {
        let filters =
            HashMap::from([("label".to_string(), labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let found = self.docker.list_containers(Some(options)).await.map_err(engine_error("list containers"))?;
        let mut infos = Vec::with_capacity(found.len());
        for summary in found {
            let Some(id) = summary.id else { continue };
            match self.inspect(&id).await {
                Ok(info) => infos.push(info),
                Err(Error::NoSuchContainer { .. }) => {} // removed meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(infos)
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> Result<()> {
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptions { t: Some(seconds), signal: None };
        match self.docker.stop_container(container_id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(container_error(container_id, "stop")(e)),
            Err(_) => {
                // The engine did not confirm the stop: kill outright.
                let options = KillContainerOptions { signal: "KILL".to_string() };
                match self.docker.kill_container(container_id, Some(options)).await {
                    Ok(()) => Ok(()),
                    Err(e) if status_of(&e) == Some(409) => Ok(()), // not running any more
                    Err(e) => Err(container_error(container_id, "kill")(e)),
                }
            }
        }
    }

    async fn prepare_shared_network(&self, key: &str, labels: &BTreeMap<String, String>) {
        self.holder(key, labels).await;
    }

    async fn release_shared_network(&self, key: &str) {
        if self.share_networks {
            self.release_holder(key).await;
        }
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(container_id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(container_error(container_id, "remove")(e)),
        }
    }
}
