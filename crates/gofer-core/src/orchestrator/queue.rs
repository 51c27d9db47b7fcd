//! The run queue: which runs wait, which may start within the limits, and the cancellation handle of each run.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use gofer_api::config;
use gofer_api::models::{Run, StatusReason, StatusReasonKind};
use tokio_util::sync::CancellationToken;

use super::{Inner, RunKey, error_chain, reason};

/// Cancellation of one run and its tasks, with the reason given first.
pub(super) struct RunControl {
    pub(super) cancel: CancellationToken,
    /// Cancelled when another server took the run over: its driver here is dropped where it is, touching none of
    /// its containers and recording nothing more.
    pub(super) lost: CancellationToken,
    pub(super) reason: Mutex<Option<StatusReason>>,
    pub(super) tasks: Mutex<HashMap<String, (CancellationToken, Option<StatusReason>)>>,
}

impl RunControl {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            cancel: CancellationToken::new(),
            lost: CancellationToken::new(),
            reason: Mutex::default(),
            tasks: Mutex::default(),
        })
    }

    pub(super) fn cancel(&self, why: StatusReason) {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(why);
        self.cancel.cancel();
    }

    pub(super) fn reason(&self) -> StatusReason {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| reason(StatusReasonKind::UserCancelled, "the run was cancelled"))
    }

    pub(super) fn task_token(&self, task_id: &str) -> CancellationToken {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.entry(task_id.to_string()).or_insert_with(|| (self.cancel.child_token(), None)).0.clone()
    }

    pub(super) fn cancel_task(&self, task_id: &str, why: StatusReason) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tasks.entry(task_id.to_string()).or_insert_with(|| (self.cancel.child_token(), None));
        entry.1.get_or_insert(why);
        entry.0.cancel();
    }

    /// Carries out a (stored) cancel request: the whole run's, or one task's.
    pub(super) fn apply(&self, request: &gofer_storage::CancelRequest) {
        match &request.task_id {
            Some(task) => self.cancel_task(task, request.reason.clone()),
            None => self.cancel(request.reason.clone()),
        }
    }

    /// Why a task was cancelled: its own reason, else the run's.
    pub(super) fn task_reason(&self, task_id: &str) -> StatusReason {
        let own = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(task_id).and_then(|t| t.1.clone());
        own.unwrap_or_else(|| self.reason())
    }
}

pub(super) struct Queued {
    pub(super) run: Run,
    pub(super) config: config::Pipeline,
    pub(super) control: Arc<RunControl>,
}

/// Which runs wait for a slot and how many are active.
#[derive(Default)]
pub(super) struct Slots {
    pub(super) queue: VecDeque<Queued>,
    pub(super) running: HashMap<(String, String), usize>,
    pub(super) total: usize,
    pub(super) controls: HashMap<RunKey, Arc<RunControl>>,
}

impl Inner {
    pub(super) fn pipeline_limit(&self, config: &config::Pipeline) -> usize {
        match usize::try_from(config.parallelism) {
            Ok(n) if n > 0 => n,
            _ => self.options.pipeline_limit,
        }
    }

    /// Starts every queued run that fits, in queue order; a run held back by its pipeline's limit does not hold
    /// back other pipelines' runs.
    pub(super) fn admit(self: &Arc<Self>) {
        if self.cluster.store.is_some() {
            // The queue is shared: the admitter claims runs from the store, within the limits of all servers.
            self.admit_wake.notify_one();
            return;
        }
        let admitted = {
            let mut slots = self.slots();
            let mut admitted = Vec::new();
            let mut index = 0;
            while index < slots.queue.len() && slots.total < self.options.global_limit {
                let queued = &slots.queue[index];
                let pipeline = (queued.run.namespace_id.clone(), queued.run.pipeline_id.clone());
                let limit = self.pipeline_limit(&queued.config);
                if slots.running.get(&pipeline).copied().unwrap_or(0) >= limit {
                    index += 1;
                    continue;
                }
                if let Some(queued) = slots.queue.remove(index) {
                    *slots.running.entry(pipeline).or_default() += 1;
                    slots.total += 1;
                    admitted.push(queued);
                }
            }
            admitted
        };
        for queued in admitted {
            self.spawn_driver(queued, false);
        }
    }

    pub(super) fn spawn_driver(self: &Arc<Self>, queued: Queued, resume: bool) {
        use tracing::Instrument;
        let inner = self.clone();
        // Everything logged while driving the run names it (JSON logs carry the span's fields). It outlives the
        // request that may have started it, so it is a root.
        let span = tracing::info_span!(
            parent: None,
            "run",
            namespace = %queued.run.namespace_id,
            pipeline = %queued.run.pipeline_id,
            run = queued.run.run_id
        );
        self.background.spawn(
            async move {
                let key = RunKey::of(&queued.run);
                let control = queued.control.clone();
                tokio::select! {
                    driven = inner.clone().drive(queued, resume) => if let Err(e) = driven {
                        tracing::error!(run = ?key, error = %error_chain(&e), "run could not be driven to completion");
                    },
                    () = control.lost.cancelled() => {
                        tracing::warn!(run = ?key, "another server drives this run now; this one lets it go");
                    }
                }
                {
                    let mut slots = inner.slots();
                    // Only its own entry: the run may be driven again here already (adopted back).
                    if slots.controls.get(&key).is_some_and(|c| Arc::ptr_eq(c, &control)) {
                        slots.controls.remove(&key);
                    }
                    let pipeline = (key.namespace_id.clone(), key.pipeline_id.clone());
                    if let Some(count) = slots.running.get_mut(&pipeline) {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            slots.running.remove(&pipeline);
                        }
                    }
                    slots.total = slots.total.saturating_sub(1);
                }
                inner.admit();
            }
            .instrument(span),
        );
    }
}
