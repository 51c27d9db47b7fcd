//! The orchestrator of a server that shares its store with others (PostgreSQL): the queue is the store's pending
//! runs, and a run starts on the one server that claims it within the limits of all servers together; each server
//! beats its heartbeat and adopts the runs of servers that stopped beating; cancels reach the server that drives the
//! run through the event bus.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use gofer_api::epoch_millis;
use gofer_api::models::{EventKind, RunState, RunStatus, StatusReason};
use gofer_storage::{Claim, ClusterStore, Limits, Live};

use crate::error::{Error, Result};

use super::queue::Queued;
use super::{Inner, RunKey, error_chain};

/// How this server's heartbeats go: the caretaker adopts nothing while they fail, nor for a lease after the
/// store came back (every server's heartbeat looks stale then, until each has beaten again).
#[derive(Default)]
pub(super) struct Beats {
    failing: bool,
    adopt_from: Option<tokio::time::Instant>,
}

impl Inner {
    fn shared_store(&self) -> &Arc<dyn ClusterStore> {
        // Only called on servers built with a shared store.
        self.cluster.store.as_ref().unwrap_or_else(|| unreachable!("a shared-queue call on a server that is alone"))
    }

    /// At start: this server beats once, queues the pending runs, adopts the runs of servers that stopped (its own
    /// earlier process among them, once its lease ran out), and starts the admitter, the beater and the watcher.
    pub(super) async fn recover_shared(self: Arc<Self>) -> Result<()> {
        self.beat().await?;
        self.queue_pending().await?;
        self.adopt().await;
        self.sweep_leftover_containers().await;
        self.background.spawn(self.clone().admitter());
        self.background.spawn(self.clone().beater());
        self.background.spawn(self.clone().caretaker());
        self.background.spawn(self.clone().watcher());
        self.admit_wake.notify_one();
        Ok(())
    }

    async fn beat(&self) -> Result<()> {
        let mut me = self.cluster.me.clone();
        me.heartbeat = epoch_millis();
        self.shared_store().heartbeat(&me).await?;
        Ok(())
    }

    /// Queues every pending run of the store this server does not know yet.
    async fn queue_pending(self: &Arc<Self>) -> Result<()> {
        let known: HashSet<RunKey> = self.slots().controls.keys().cloned().collect();
        for run in self.storage.list_unfinished_runs().await? {
            if run.state == RunState::Pending && !known.contains(&RunKey::of(&run)) {
                self.enqueue_shared(run).await?;
            }
        }
        Ok(())
    }

    /// Queues a stored pending run (idempotent), without waking the admitter.
    async fn enqueue_shared(self: &Arc<Self>, run: gofer_api::models::Run) -> Result<()> {
        let config = self.storage.get_config(&run.namespace_id, &run.pipeline_id, run.version).await?.config;
        let key = RunKey::of(&run);
        let mut slots = self.slots();
        if let std::collections::hash_map::Entry::Vacant(entry) = slots.controls.entry(key) {
            let control = entry.insert(super::RunControl::new()).clone();
            slots.queue.push_back(Queued { run, config, control });
        }
        Ok(())
    }

    /// Takes over the runs of servers whose heartbeat is older than the lease, and drives them on.
    async fn adopt(self: &Arc<Self>) {
        let adopted = match self.cluster.stale_before().await {
            Ok(stale_before) => self.shared_store().adopt_runs(&self.cluster.me.id, stale_before).await,
            Err(e) => Err(e),
        };
        let adopted = match adopted {
            Ok(adopted) => adopted,
            Err(e) => return tracing::warn!(error = %error_chain(&e), "could not look for runs of stopped servers"),
        };
        for run in adopted {
            let key = RunKey::of(&run);
            tracing::info!(pipeline = %run.pipeline_id, run = run.run_id, "adopted a run whose server stopped");
            // A run this server only knew as queued is driven from what the store says now.
            self.forget_queued(&key);
            if let Err(e) = self.resume(run).await {
                tracing::error!(run = ?key, error = %error_chain(&e), "could not resume an adopted run");
            }
        }
    }

    /// Drops a run from this server's view of the queue (another server started it, or this one adopts it).
    fn forget_queued(&self, key: &RunKey) {
        let mut slots = self.slots();
        if let Some(index) = slots.queue.iter().position(|q| RunKey::of(&q.run) == *key) {
            slots.queue.remove(index);
            slots.controls.remove(key);
        }
    }

    /// Claims queued runs in order while the limits of all servers allow, and drives what it claimed. A run
    /// another server claimed first leaves this server's queue.
    async fn admit_pass(self: &Arc<Self>) {
        let candidates: Vec<(RunKey, u64)> = self
            .slots()
            .queue
            .iter()
            .map(|q| (RunKey::of(&q.run), u64::try_from(self.pipeline_limit(&q.config)).unwrap_or(u64::MAX)))
            .collect();
        let global = u64::try_from(self.options.global_limit).unwrap_or(u64::MAX);
        let mut full_pipelines: HashSet<(String, String)> = HashSet::new();
        for (key, pipeline_limit) in candidates {
            let pipeline = (key.namespace_id.clone(), key.pipeline_id.clone());
            if full_pipelines.contains(&pipeline) {
                continue;
            }
            let limits = Limits { global, pipeline: pipeline_limit };
            let claim = self
                .shared_store()
                .claim_run(&self.cluster.me.id, &key.namespace_id, &key.pipeline_id, key.run_id, Some(limits))
                .await;
            match claim {
                Ok(Claim::Claimed(run)) => {
                    let queued = {
                        let mut slots = self.slots();
                        let index = slots.queue.iter().position(|q| RunKey::of(&q.run) == key);
                        let queued = index.and_then(|i| slots.queue.remove(i));
                        *slots.running.entry(pipeline.clone()).or_default() += 1;
                        slots.total += 1;
                        queued
                    };
                    let mut queued = match queued {
                        Some(queued) => queued,
                        // Claimed, but no longer in this server's view of the queue: driven all the same.
                        None => match self.storage.get_config(&run.namespace_id, &run.pipeline_id, run.version).await {
                            Ok(config) => {
                                let control = super::RunControl::new();
                                self.slots().controls.insert(key.clone(), control.clone());
                                Queued { run: (*run).clone(), config: config.config, control }
                            }
                            Err(e) => {
                                tracing::error!(run = ?key, error = %error_chain(&e), "could not drive a claimed run");
                                continue;
                            }
                        },
                    };
                    queued.run = *run;
                    // Cancels asked for while it waited (on any server) hold.
                    match self.storage.list_cancel_requests(&key.namespace_id, &key.pipeline_id, key.run_id).await {
                        Ok(requests) => requests.iter().for_each(|r| queued.control.apply(r)),
                        Err(e) => tracing::warn!(run = ?key, error = %e, "could not read a claimed run's cancels"),
                    }
                    self.spawn_driver(queued, false);
                }
                Ok(Claim::Gone) => self.forget_queued(&key),
                Ok(Claim::PipelineLimit) => {
                    full_pipelines.insert(pipeline);
                }
                Ok(Claim::GlobalLimit) => return,
                Err(e) => {
                    return tracing::warn!(error = %error_chain(&e), "could not claim a queued run; trying again soon");
                }
            }
        }
    }

    /// Claims runs whenever something may have freed a slot or queued a run, and at every beat in any case.
    async fn admitter(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(self.cluster.beat_every(), self.admit_wake.notified()).await;
            self.admit_pass().await;
        }
    }

    /// Beats, on a task of its own so that nothing slow delays a beat.
    async fn beater(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.cluster.beat_every()).await;
            let beaten = self.beat().await;
            let mut beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
            match beaten {
                Ok(()) if beats.failing => {
                    beats.failing = false;
                    beats.adopt_from = Some(tokio::time::Instant::now() + self.cluster.lease);
                }
                Ok(()) => {}
                Err(e) => {
                    if !beats.failing {
                        tracing::warn!(error = %error_chain(&e), "could not record this server's heartbeat");
                    }
                    beats.failing = true;
                }
            }
        }
    }

    /// At every beat: adopts the runs of servers that stopped, lets go of runs another server took over, drives
    /// again a run this server owns but no longer drives (a failure after its claim or adoption), and looks at
    /// the store's queue again (a run queued by a server that died before announcing it is found here).
    async fn caretaker(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.cluster.beat_every()).await;
            let may_adopt = {
                let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
                !beats.failing && beats.adopt_from.is_none_or(|from| tokio::time::Instant::now() >= from)
            };
            if may_adopt {
                self.adopt().await;
            }
            if let Err(e) = self.check_ownership().await {
                tracing::warn!(error = %error_chain(&e), "could not check which runs this server owns");
            }
            if let Err(e) = self.queue_pending().await {
                tracing::warn!(error = %error_chain(&e), "could not read the queue");
            }
            self.admit_wake.notify_one();
        }
    }

    /// Holds the runs this server drives to what the store says it owns.
    async fn check_ownership(self: &Arc<Self>) -> Result<()> {
        let owned = self.shared_store().list_owned_runs().await?;
        let me = self.cluster.me.id.as_str();
        for run in &owned {
            let key = RunKey {
                namespace_id: run.namespace_id.clone(),
                pipeline_id: run.pipeline_id.clone(),
                run_id: run.run_id,
            };
            let control = self.slots().controls.get(&key).cloned();
            match control {
                // Another server claimed it (this one still had it queued), or took it over while this one was
                // away (its driver here lets it go).
                Some(control) if run.owner != me => {
                    let queued = self.slots().queue.iter().any(|q| RunKey::of(&q.run) == key);
                    if queued { self.forget_queued(&key) } else { control.lost.cancel() }
                }
                Some(_) => {}
                None if run.owner == me => {
                    // Read again: the run may have ended since the list was read.
                    let current = self.storage.get_run(&key.namespace_id, &key.pipeline_id, key.run_id).await?;
                    if current.state != RunState::Complete && !self.slots().controls.contains_key(&key) {
                        tracing::warn!(run = ?key, "this server owns a run it does not drive; driving it again");
                        self.resume(current).await?;
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Follows the events of every server: runs queued elsewhere join this server's view of the queue, runs
    /// started elsewhere leave it, a run ending anywhere may free a slot, and a cancel reaches the run's driver.
    async fn watcher(self: Arc<Self>) {
        let mut live = self.events.follow();
        while let Some(item) = live.next().await {
            let kind = match item {
                Live::Event(event) => event.kind,
                Live::Lagged => {
                    // Missed events may have been cancels: every run held here reads its requests again.
                    let held: Vec<(RunKey, Arc<super::RunControl>)> =
                        self.slots().controls.iter().map(|(k, c)| (k.clone(), c.clone())).collect();
                    for (key, control) in held {
                        match self.storage.list_cancel_requests(&key.namespace_id, &key.pipeline_id, key.run_id).await {
                            Ok(requests) => requests.iter().for_each(|r| control.apply(r)),
                            Err(e) => tracing::warn!(run = ?key, error = %e, "could not read a run's cancels"),
                        }
                    }
                    if let Err(e) = self.queue_pending().await {
                        tracing::warn!(error = %error_chain(&e), "could not read the queue");
                    }
                    self.admit_wake.notify_one();
                    continue;
                }
            };
            match kind {
                EventKind::RunQueued { namespace_id, pipeline_id, run_id } => {
                    match self.storage.get_run(&namespace_id, &pipeline_id, run_id).await {
                        Ok(run) if run.state == RunState::Pending => {
                            if let Err(e) = self.enqueue_shared(run).await {
                                tracing::warn!(run = run_id, error = %error_chain(&e), "could not queue a run");
                            }
                            self.admit_wake.notify_one();
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(run = run_id, error = %e, "a queued run is gone"),
                    }
                }
                EventKind::RunStarted { namespace_id, pipeline_id, run_id } => {
                    let key = RunKey { namespace_id, pipeline_id, run_id };
                    self.forget_queued(&key);
                }
                EventKind::RunCompleted { .. } => self.admit_wake.notify_one(),
                EventKind::RunCancelRequested { namespace_id, pipeline_id, run_id, .. } => {
                    let key = RunKey { namespace_id, pipeline_id, run_id };
                    let control = self.slots().controls.get(&key).cloned();
                    if let Some(control) = control {
                        match self.storage.list_cancel_requests(&key.namespace_id, &key.pipeline_id, run_id).await {
                            Ok(requests) => requests.iter().for_each(|r| control.apply(r)),
                            Err(e) => tracing::warn!(run = ?key, error = %e, "could not read a run's cancels"),
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Cancels a run wherever it is: the request is stored (with its event) for the server that drives it; a run
    /// still queued is claimed without limits and ended here.
    pub(super) async fn cancel_shared(
        self: &Arc<Self>,
        key: &RunKey,
        task_id: Option<&str>,
        why: StatusReason,
    ) -> Result<()> {
        let run = self.storage.get_run(&key.namespace_id, &key.pipeline_id, key.run_id).await?;
        if run.state == RunState::Complete {
            return Err(Error::conflict(format!(
                "run {} of pipeline '{}' is already finished ({})",
                run.run_id, run.pipeline_id, run.status
            )));
        }
        if let Some(task) = task_id {
            self.check_task_running(key, task).await?;
        }
        // Stored before it takes effect: the server that drives the run (now, or after adopting it) honours it.
        let request = self.request_cancel(key, task_id, &why).await?;
        if task_id.is_some() || run.state != RunState::Pending {
            if let Some(control) = self.slots().controls.get(key).cloned() {
                control.apply(&request);
            }
            return Ok(());
        }
        let claim =
            self.shared_store().claim_run(&self.cluster.me.id, &key.namespace_id, &key.pipeline_id, key.run_id, None);
        match claim.await? {
            Claim::Claimed(run) => {
                self.forget_queued(key);
                self.finish_run(*run, RunStatus::Cancelled, Some(why)).await
            }
            // Another server started it meanwhile; the stored request reaches its driver.
            _ => Ok(()),
        }
    }
}
