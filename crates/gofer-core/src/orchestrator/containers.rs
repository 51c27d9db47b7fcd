//! The containers of task attempts: their spec and labels, finding one after a restart, stopping, and removing
//! them once their outcome is stored (or left over by an earlier process).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gofer_api::models::TaskExecution;
use gofer_scheduler::{ContainerInfo, ContainerSpec, Mount, RegistryAuth, Resources, labels};

use crate::error::Result;

use super::{Inner, RunKey};

/// How long removing a finished container is retried while the engine cannot be reached.
const REMOVE_RETRY_FOR: Duration = Duration::from_secs(3600);

impl Inner {
    pub(super) fn container_labels(&self, execution: &TaskExecution) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::INSTALLATION.to_string(), self.options.installation_id.clone()),
            (labels::NAMESPACE.to_string(), execution.namespace_id.clone()),
            (labels::PIPELINE.to_string(), execution.pipeline_id.clone()),
            (labels::RUN.to_string(), execution.run_id.to_string()),
            (labels::TASK.to_string(), execution.task_id.clone()),
            (labels::ATTEMPT.to_string(), execution.attempt.to_string()),
        ])
    }

    /// The container for an attempt; `env` is the task's variables with references already resolved.
    pub(super) fn container_spec(
        &self,
        execution: &TaskExecution,
        env: Vec<(String, String)>,
        registry_auth: Option<RegistryAuth>,
        mounts: Vec<Mount>,
    ) -> ContainerSpec {
        let task = &execution.task;
        let resources = Resources {
            cpu_millicores: task.cpu_millicores,
            memory_bytes: task.memory_bytes,
            working_dir: task.working_dir.clone(),
            user: task.user.clone(),
            mounts,
        };
        ContainerSpec {
            name: format!(
                "gofer-{}-{}-{}-{}-{}-{}",
                self.options.installation_id,
                execution.namespace_id,
                execution.pipeline_id,
                execution.run_id,
                execution.task_id,
                execution.attempt
            ),
            image: task.image.clone(),
            always_pull: task.always_pull_newest_image,
            registry_auth,
            env: env.into_iter().chain([("GOFER_TASK_ATTEMPT".to_string(), execution.attempt.to_string())]).collect(),
            entrypoint: task.entrypoint.clone(),
            command: task.command.clone(),
            labels: self.container_labels(execution),
            expose_port: None,
            resources,
            // Tasks with parents start into the network their run's engine made ahead.
            shared_network: (!task.depends_on.is_empty())
                .then(|| self.shared_network_key(&execution.namespace_id, &execution.pipeline_id, execution.run_id)),
        }
    }

    /// The container a previous process made for this attempt, if the engine still has it (by the id recorded,
    /// else by the attempt's labels: a crash right after creating it leaves no id behind). A recorded container that
    /// is gone is an error: the task cannot be finished from it.
    pub(super) async fn find_container(
        &self,
        execution: &TaskExecution,
    ) -> Result<Option<ContainerInfo>, gofer_scheduler::Error> {
        if let Some(id) = &execution.container_id {
            match self.scheduler.inspect(id).await {
                Ok(info) => return Ok(Some(info)),
                Err(gofer_scheduler::Error::NoSuchContainer { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let found = self.scheduler.find(&self.container_labels(execution)).await?;
        match found.into_iter().next() {
            Some(info) => Ok(Some(info)),
            None if execution.container_id.is_some() => Err(gofer_scheduler::Error::NoSuchContainer {
                container: execution.container_id.clone().unwrap_or_default(),
                source: gofer_scheduler::Error::cause("the container disappeared while Gofer was not running"),
            }),
            None => Ok(None),
        }
    }

    pub(super) async fn stop(&self, task_id: &str, container_id: &str) {
        if let Err(e) = self.scheduler.stop(container_id, self.options.stop_grace).await {
            tracing::warn!(task = %task_id, error = %e, "could not stop a container");
        }
    }

    /// Removes a finished container now, or after the configured while for debugging. While the engine cannot be
    /// reached (it restarts), removal is tried again with back-off, for up to an hour; what is still left then is
    /// removed at the next start.
    pub(super) fn release_container(self: &Arc<Self>, container_id: Option<String>, task_id: &str) {
        let Some(id) = container_id else { return };
        let (scheduler, keep, task) = (self.scheduler.clone(), self.options.keep_containers_for, task_id.to_string());
        self.background.spawn(async move {
            if !keep.is_zero() {
                tokio::time::sleep(keep).await;
            }
            let mut delay = Duration::from_secs(1);
            let mut waited = Duration::ZERO;
            loop {
                match scheduler.remove(&id).await {
                    Ok(()) | Err(gofer_scheduler::Error::NoSuchContainer { .. }) => return,
                    Err(e) if waited >= REMOVE_RETRY_FOR => {
                        return tracing::warn!(task = %task, container = %id, error = %e, "could not remove a finished container; it goes at the next start");
                    }
                    Err(e) => {
                        tracing::debug!(task = %task, container = %id, error = %e, "could not remove a finished container yet");
                        tokio::time::sleep(delay).await;
                        waited += delay;
                        delay = (delay * 2).min(Duration::from_secs(60));
                    }
                }
            }
        });
    }

    /// Keeps a failed attempt's filesystem for `keep`: saves its container as an image (the variables Gofer gave
    /// the task emptied in its environment; Docker's metadata of the image still records the failed container's
    /// configuration, as it does for every container) and starts a debug container from it (running `sleep`), which
    /// `exec` and `attach` reach;
    /// both go when `keep` has passed (or at the next start). Returns the debug container's id.
    pub(super) async fn keep_for_debugging(
        self: &Arc<Self>,
        execution: &TaskExecution,
        container_id: &str,
        keep: Duration,
    ) -> Result<String, gofer_scheduler::Error> {
        let name = format!(
            "gofer-debug-{}-{}-{}-{}-{}",
            self.options.installation_id,
            execution.namespace_id,
            execution.pipeline_id,
            execution.run_id,
            execution.task_id
        )
        .to_lowercase();
        let image = format!("{name}:{}", execution.attempt);
        // Every variable Gofer gave the task is emptied in the image: resolved secrets and the run token go.
        let mut blank: Vec<String> = execution.variables.iter().map(|v| v.key.clone()).collect();
        blank.extend(["GOFER_TOKEN".to_string(), "GOFER_TASK_ATTEMPT".to_string()]);
        self.scheduler.snapshot(container_id, &image, &blank).await?;
        let mut labels = self.container_labels(execution);
        labels.insert(labels::DEBUG_IMAGE.to_string(), image.clone());
        let spec = ContainerSpec {
            name: format!("{name}-{}", execution.attempt),
            image: image.clone(),
            always_pull: false,
            registry_auth: None,
            env: Vec::new(),
            entrypoint: Some(vec!["sleep".into()]),
            command: Some(vec![keep.as_secs().max(1).to_string()]),
            labels,
            expose_port: None,
            resources: Default::default(),
            shared_network: None,
        };
        let started = match self.scheduler.run(&spec).await {
            Ok(started) => started,
            Err(e) => {
                let _ = self.scheduler.remove_image(&image).await;
                return Err(e);
            }
        };
        let (scheduler, id) = (self.scheduler.clone(), started.container_id.clone());
        drop(started.output);
        self.background.spawn(async move {
            tokio::time::sleep(keep).await;
            let _ = scheduler.stop(&id, Duration::from_secs(1)).await;
            if let Err(e) = scheduler.remove(&id).await {
                tracing::warn!(container = %id, error = %e, "could not remove a debug container; it goes at the next start");
            }
            let _ = scheduler.remove_image(&image).await;
        });
        Ok(started.container_id)
    }

    /// Removes containers of this installation whose task is finished (left behind by a previous process).
    pub(super) async fn sweep_leftover_containers(&self) {
        let filter = BTreeMap::from([(labels::INSTALLATION.to_string(), self.options.installation_id.clone())]);
        let containers = match self.scheduler.find(&filter).await {
            Ok(containers) => containers,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for leftover containers");
                return;
            }
        };
        let active: Vec<RunKey> = self.slots().controls.keys().cloned().collect();
        for container in containers.into_iter().filter(|c| !c.labels.contains_key(labels::EXTENSION)) {
            let label = |k: &str| container.labels.get(k).cloned().unwrap_or_default();
            let key = RunKey {
                namespace_id: label(labels::NAMESPACE),
                pipeline_id: label(labels::PIPELINE),
                run_id: label(labels::RUN).parse().unwrap_or(0),
            };
            if active.contains(&key) {
                continue;
            }
            // A run still in flight that this server does not drive is another server's (or one it is about to
            // adopt): its containers stay.
            if let Ok(run) = self.storage.get_run(&key.namespace_id, &key.pipeline_id, key.run_id).await
                && run.state != gofer_api::models::RunState::Complete
            {
                continue;
            }
            if container.is_running() {
                self.stop(&label(labels::TASK), &container.id).await;
            }
            if let Err(e) = self.scheduler.remove(&container.id).await {
                tracing::warn!(container = %container.id, error = %e, "could not remove a leftover container");
            }
            if let Some(image) = container.labels.get(labels::DEBUG_IMAGE) {
                let _ = self.scheduler.remove_image(image).await;
            }
        }
    }
}
