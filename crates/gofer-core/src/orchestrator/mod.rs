//! The orchestrator: queues runs within their limits, drives each run's DAG on the scheduler, records every state
//! change in storage and the event log, and stores task logs. It is a library: it needs storage, a scheduler and
//! a log directory, never the HTTP server.
//!
//! One tokio task drives each run. It starts every task whose parents have finished the way it needs, skips the
//! ones whose conditions can no longer be met, and learns of each container's exit from the scheduler's wait call,
//! so a DAG edge costs no more than a channel message. After a restart, runs in flight are resumed: containers
//! still running are re-attached, containers that ended meanwhile give their real exit code and output.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gofer_api::epoch_millis;
use gofer_api::models::{Run, RunState, RunStatus, StatusReason, StatusReasonKind};
use gofer_scheduler::{Mount, Scheduler};
use gofer_storage::{CancelRequest, LogStore, Storage};

use crate::background::Background;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::metrics::Metrics;
use crate::objects::Objects;
use crate::secrets::Secrets;

mod ahead;
mod attempt;
mod containers;
mod environment;
mod queue;
mod records;
mod retention;
mod run;
mod shared;

pub use environment::task_variables;

pub use crate::error::error_chain;
use queue::{Queued, RunControl, Slots};

/// Settings of the orchestrator.
#[derive(Debug, Clone)]
pub struct Options {
    /// Identifies this installation in container names and labels, so two Gofers can share one engine.
    pub installation_id: String,
    /// Handed to every task as `GOFER_API_BASE_URL`.
    pub api_base_url: String,
    /// How long a cancelled or timed-out container gets to stop before it is killed.
    pub stop_grace: Duration,
    /// Runs active at once across the server.
    pub global_limit: usize,
    /// Runs active at once per pipeline, for pipelines that set no parallelism of their own.
    pub pipeline_limit: usize,
    /// The longest any run or task attempt may take; configs asking for more are refused.
    pub max_timeout: Duration,
    /// Keep the logs of this many most recent runs per pipeline; 0 keeps all.
    pub log_retention_runs: u64,
    /// Keep finished containers this long for debugging before removing them; zero removes at once.
    pub keep_containers_for: Duration,
    /// The volumes tasks may mount, by name (`scheduler.volumes`).
    pub volumes: BTreeMap<String, Volume>,
    /// Create a task's container while its parents run, so that its start is all its DAG edge costs.
    pub create_ahead: bool,
}

/// A volume the operator lets tasks mount (`scheduler.volumes.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The engine's name for the storage (a host path or volume for Docker, a claim for Kubernetes, a host volume
    /// for Nomad).
    pub source: String,
    /// Every task mounts it read-only.
    pub read_only: bool,
    /// The namespaces whose tasks may mount it; empty: every namespace.
    pub namespaces: Vec<String>,
}

impl Options {
    /// The mounts a task asks for, or why a namespace's task may not have them (naming the volume and the
    /// setting that would allow it).
    pub fn mounts(&self, namespace_id: &str, task: &gofer_api::config::Task) -> Result<Vec<Mount>, String> {
        task.volumes
            .iter()
            .map(|wanted| {
                let Some(volume) = self.volumes.get(&wanted.name) else {
                    return Err(format!(
                        "task '{}' mounts volume '{}', which this server does not offer; an operator declares it as \
                         scheduler.volumes.{} (offered: {})",
                        task.id,
                        wanted.name,
                        wanted.name,
                        if self.volumes.is_empty() {
                            "none".to_string()
                        } else {
                            self.volumes.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ));
                };
                if !volume.namespaces.is_empty() && !volume.namespaces.iter().any(|n| n == namespace_id) {
                    return Err(format!(
                        "task '{}' mounts volume '{}', which namespace '{namespace_id}' may not use \
                         (scheduler.volumes.{}.namespaces)",
                        task.id, wanted.name, wanted.name
                    ));
                }
                Ok(Mount {
                    source: volume.source.clone(),
                    target: wanted.path.clone(),
                    read_only: wanted.read_only || volume.read_only,
                })
            })
            .collect()
    }
}

/// Identifies a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub run_id: u64,
}

impl RunKey {
    pub fn of(run: &Run) -> Self {
        Self { namespace_id: run.namespace_id.clone(), pipeline_id: run.pipeline_id.clone(), run_id: run.run_id }
    }
}

fn reason(kind: StatusReasonKind, description: &str) -> StatusReason {
    StatusReason { reason: kind, description: description.to_string() }
}

/// A handle to the orchestrator. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    scheduler: Arc<dyn Scheduler>,
    logs: Arc<dyn LogStore>,
    events: Events,
    options: Options,
    slots: Mutex<Slots>,
    /// Run drivers and container removals run here.
    background: Background,
    /// Where `pipeline_secret{{...}}` and `global_secret{{...}}` are read from.
    secrets: Secrets,
    /// Where `pipeline_object{{...}}` and `run_object{{...}}` are read from; run objects expire with retention.
    objects: Objects,
    metrics: Metrics,
    /// This server, and the servers it shares the store with.
    cluster: Cluster,
    /// Wakes the admitter of a server that shares its queue (`shared.rs`).
    admit_wake: tokio::sync::Notify,
    /// How this server's heartbeats go (`shared.rs`).
    beats: Mutex<shared::Beats>,
}

/// What the orchestrator works with.
pub struct Parts {
    pub storage: Arc<dyn Storage>,
    pub scheduler: Arc<dyn Scheduler>,
    pub logs: Arc<dyn LogStore>,
    pub events: Events,
    pub secrets: Secrets,
    pub objects: Objects,
    pub metrics: Metrics,
    pub cluster: Cluster,
}

impl Orchestrator {
    /// An orchestrator whose run drivers and container removals run in `background`: cancelling it stops them
    /// where they are (containers keep running), as a crash would; the next start picks the runs up.
    pub fn new(options: Options, parts: Parts, background: Background) -> Self {
        let Parts { storage, scheduler, logs, events, secrets, objects, metrics, cluster } = parts;
        Self {
            inner: Arc::new(Inner {
                storage,
                scheduler,
                logs,
                events,
                options,
                slots: Mutex::default(),
                background,
                secrets,
                objects,
                metrics,
                cluster,
                admit_wake: tokio::sync::Notify::new(),
                beats: Mutex::default(),
            }),
        }
    }

    /// This server and the cluster it is part of.
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// The runs this server drives now.
    pub fn driving(&self) -> Vec<RunKey> {
        let slots = self.inner.slots();
        let queued: std::collections::HashSet<RunKey> = slots.queue.iter().map(|q| RunKey::of(&q.run)).collect();
        let mut keys: Vec<RunKey> = slots.controls.keys().filter(|k| !queued.contains(*k)).cloned().collect();
        keys.sort_by(|a, b| {
            (&a.namespace_id, &a.pipeline_id, a.run_id).cmp(&(&b.namespace_id, &b.pipeline_id, b.run_id))
        });
        keys
    }

    pub fn logs(&self) -> &dyn LogStore {
        self.inner.logs.as_ref()
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Runs queued and not yet started, per pipeline: (namespace, pipeline, count).
    pub fn waiting(&self) -> Vec<(String, String, usize)> {
        let mut counts: std::collections::BTreeMap<(String, String), usize> = std::collections::BTreeMap::new();
        for queued in &self.inner.slots().queue {
            *counts.entry((queued.run.namespace_id.clone(), queued.run.pipeline_id.clone())).or_default() += 1;
        }
        counts.into_iter().map(|((namespace, pipeline), count)| (namespace, pipeline, count)).collect()
    }

    /// The container engine the tasks run on.
    pub(crate) fn scheduler(&self) -> &Arc<dyn Scheduler> {
        &self.inner.scheduler
    }

    /// Queues a stored, pending run; it starts as soon as its pipeline's and the server's limits allow, in order.
    pub async fn enqueue(&self, run: Run) -> Result<()> {
        let config = self.inner.storage.get_config(&run.namespace_id, &run.pipeline_id, run.version).await?.config;
        let key = RunKey::of(&run);
        let control = RunControl::new();
        {
            let mut slots = self.inner.slots();
            // Servers sharing a queue learn of a run from its event and from the store: it is queued once.
            if slots.controls.contains_key(&key) {
                return Ok(());
            }
            slots.controls.insert(key.clone(), control.clone());
            slots.queue.push_back(Queued { run, config, control });
        }
        self.inner.admit();
        Ok(())
    }

    /// Asks a run, or one task of it, to stop: what has not started is cancelled, running containers are stopped
    /// (then killed after the grace period). A queued run is cancelled at once.
    pub async fn cancel(&self, key: &RunKey, task_id: Option<&str>) -> Result<()> {
        let why = reason(StatusReasonKind::UserCancelled, "a user cancelled it");
        if self.inner.cluster.store.is_some() {
            return self.inner.cancel_shared(key, task_id, why).await;
        }
        let Some(control) = self.inner.slots().controls.get(key).cloned() else {
            let run = self.inner.storage.get_run(&key.namespace_id, &key.pipeline_id, key.run_id).await?;
            return Err(Error::conflict(format!(
                "run {} of pipeline '{}' is already finished ({})",
                run.run_id, run.pipeline_id, run.status
            )));
        };
        if let Some(task) = task_id {
            self.inner.check_task_running(key, task).await?;
        }
        // Stored (with its event) before it takes effect: whichever process drives the run next honours it.
        let request = self.inner.request_cancel(key, task_id, &why).await?;
        let queued = {
            let mut slots = self.inner.slots();
            match slots.queue.iter().position(|q| RunKey::of(&q.run) == *key) {
                Some(i) if task_id.is_none() => {
                    slots.controls.remove(key);
                    slots.queue.remove(i)
                }
                _ => None,
            }
        };
        match queued {
            Some(queued) => self.inner.finish_run(queued.run, RunStatus::Cancelled, Some(why)).await,
            None => {
                control.apply(&request);
                Ok(())
            }
        }
    }

    /// Removes the containers of this installation whose runs are not in flight (waiting for the engine): a local run
    /// calls it at its end so that nothing is left behind, without waiting for the background removals.
    pub async fn remove_finished_containers(&self) {
        self.inner.sweep_leftover_containers().await;
    }

    /// Picks up what a previous server process left: runs in flight are resumed (their containers re-attached or
    /// their real exit read), queued runs are queued again in order, and finished containers left behind are
    /// removed.
    pub async fn recover(&self) -> Result<()> {
        if self.inner.cluster.store.is_some() {
            return self.inner.clone().recover_shared().await;
        }
        let unfinished = self.inner.storage.list_unfinished_runs().await?;
        for run in unfinished {
            if run.state == RunState::Pending {
                self.enqueue(run).await?;
                continue;
            }
            self.inner.resume(run).await?;
        }
        self.inner.sweep_leftover_containers().await;
        Ok(())
    }
}

impl Inner {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Conflict` when the task already finished.
    async fn check_task_running(&self, key: &RunKey, task: &str) -> Result<()> {
        let execution = self.storage.get_task_execution(&key.namespace_id, &key.pipeline_id, key.run_id, task).await?;
        if execution.is_complete() {
            return Err(Error::conflict(format!(
                "task '{task}' of run {} is already finished ({})",
                key.run_id, execution.status
            )));
        }
        Ok(())
    }

    /// Stores a request to cancel a run (or one task of it) with its event.
    async fn request_cancel(&self, key: &RunKey, task_id: Option<&str>, why: &StatusReason) -> Result<CancelRequest> {
        let request = CancelRequest {
            namespace_id: key.namespace_id.clone(),
            pipeline_id: key.pipeline_id.clone(),
            run_id: key.run_id,
            task_id: task_id.map(str::to_string),
            reason: why.clone(),
            requested: epoch_millis(),
        };
        self.events.record(|| self.storage.request_cancel(&request)).await?;
        Ok(request)
    }

    /// Drives a run that was in flight when its server stopped (this one before a restart, or another that died):
    /// its containers are found again, and the cancels asked for meanwhile still hold.
    async fn resume(self: &Arc<Self>, run: Run) -> Result<()> {
        let config = self.storage.get_config(&run.namespace_id, &run.pipeline_id, run.version).await?.config;
        tracing::info!(pipeline = %run.pipeline_id, run = run.run_id, "resuming a run left in flight");
        let control = RunControl::new();
        // The control is in place before the cancels are read: one asked for in between reaches it either way.
        {
            let mut slots = self.slots();
            if let Some(earlier) = slots.controls.insert(RunKey::of(&run), control.clone()) {
                // A driver of an earlier ownership of this run is let go.
                earlier.lost.cancel();
            }
            *slots.running.entry((run.namespace_id.clone(), run.pipeline_id.clone())).or_default() += 1;
            slots.total += 1;
        }
        let requests = self.storage.list_cancel_requests(&run.namespace_id, &run.pipeline_id, run.run_id).await;
        match requests {
            Ok(requests) => requests.iter().for_each(|r| control.apply(r)),
            Err(e) => tracing::warn!(run = run.run_id, error = %e, "could not read a resumed run's cancels"),
        }
        // A run claimed but not started when its server stopped starts now.
        let resume = run.state != RunState::Pending;
        self.spawn_driver(Queued { run, config, control }, resume);
        Ok(())
    }
}
