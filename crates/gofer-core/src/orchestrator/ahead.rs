//! Work done ahead of a task's start, while its parents run: its container is created (image pulled, variables
//! resolved) so that the DAG edge costs only a start, and the tasks of a run that have parents share one network
//! namespace the engine made ahead (where it can: Docker).
//!
//! A container made ahead for a task that does not run after all (a parent's outcome skips it, the run is cancelled)
//! is removed without ever starting. A task whose variables read objects is not made ahead: a parent may write them.

use std::collections::BTreeMap;
use std::sync::Arc;

use gofer_api::models::{Run, TaskExecution};
use gofer_scheduler::{ContainerState, Scheduler, labels};

use crate::mask::Masker;
use crate::secrets::Reference;

use super::Inner;

/// A container created for a task's first attempt before its parents ended, and how to mask its output.
pub(super) struct Prepared {
    pub(super) container_id: String,
    pub(super) masker: Masker,
}

/// A container being made ahead; yields `None` when it could not be (the attempt then does it itself, and reports
/// what goes wrong at the time the task would have started).
pub(super) type Preparing = tokio::task::JoinHandle<Option<Prepared>>;

impl Inner {
    /// Starts creating `execution`'s container ahead of its start.
    pub(super) fn prepare(self: &Arc<Self>, execution: TaskExecution) -> Preparing {
        let inner = self.clone();
        tokio::spawn(async move {
            let resolved = inner.resolve_variables(&execution, true).await.ok()?;
            let mounts = inner.options.mounts(&execution.namespace_id, &execution.task).ok()?;
            let spec = inner.container_spec(&execution, resolved.env, resolved.registry_auth, mounts);
            match inner.scheduler.create(&spec).await {
                Ok(container_id) => Some(Prepared { container_id, masker: resolved.masker }),
                Err(e) => {
                    tracing::debug!(task = %execution.task_id, error = %e, "could not create a container ahead; the task's start will");
                    None
                }
            }
        })
    }

    /// Removes a container made ahead for a task that will not start it, once it is made.
    pub(super) fn discard_prepared(&self, preparing: Preparing, task_id: &str) {
        let (scheduler, task) = (self.scheduler.clone(), task_id.to_string());
        self.background.spawn(async move {
            if let Ok(Some(prepared)) = preparing.await {
                remove_unstarted(scheduler.as_ref(), &prepared.container_id, &task).await;
            }
        });
    }

    /// Removes a container made ahead that its task will not start after all.
    pub(super) fn forget_prepared(&self, container_id: String, task_id: &str) {
        let (scheduler, task) = (self.scheduler.clone(), task_id.to_string());
        self.background.spawn(async move { remove_unstarted(scheduler.as_ref(), &container_id, &task).await });
    }

    /// Removes the container a previous process made ahead for a task that has not started (found by its labels).
    pub(super) async fn remove_made_ahead(&self, execution: &TaskExecution) {
        if !self.options.create_ahead && execution.container_id.is_none() {
            return;
        }
        match self.find_container(execution).await {
            Ok(Some(info)) if info.state == ContainerState::Created => {
                if let Err(e) = self.scheduler.remove(&info.id).await {
                    tracing::warn!(task = %execution.task_id, error = %e, "could not remove a container made ahead");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(task = %execution.task_id, error = %e, "could not look for a container made ahead")
            }
        }
    }

    /// The key of the network shared by a run's tasks that have parents.
    pub(super) fn shared_network_key(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> String {
        format!("{}/{namespace_id}/{pipeline_id}/{run_id}", self.options.installation_id)
    }

    /// The labels of a run's shared network.
    pub(super) fn run_labels(&self, run: &Run) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::INSTALLATION.to_string(), self.options.installation_id.clone()),
            (labels::NAMESPACE.to_string(), run.namespace_id.clone()),
            (labels::PIPELINE.to_string(), run.pipeline_id.clone()),
            (labels::RUN.to_string(), run.run_id.to_string()),
        ])
    }
}

async fn remove_unstarted(scheduler: &dyn Scheduler, container_id: &str, task: &str) {
    if let Err(e) = scheduler.remove(container_id).await {
        tracing::warn!(task = %task, container = %container_id, error = %e, "could not remove a container made ahead; it goes at the next start");
    }
}

/// Whether a task's container may be made before its parents ended: not when a variable reads an object, which a
/// parent may write meanwhile.
pub(super) fn may_prepare(execution: &TaskExecution) -> bool {
    execution.attempt == 1
        && !execution
            .variables
            .iter()
            .any(|v| matches!(Reference::parse(&v.value), Some(Reference::PipelineObject(_) | Reference::RunObject(_))))
}
