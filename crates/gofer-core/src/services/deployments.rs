//! Deployments: making a version live at once, after verification runs (blue/green) or stage by stage (canary);
//! routing new runs while one is in progress; judging it whenever one of its runs completes, a canary stage's bake
//! ends, or the server starts again; promoting, aborting and rolling back.
//!
//! Every decision is taken under one lock (`Gofer::deploying`), so a run is never routed by a deployment that is
//! ending, and the split counter is read and advanced together with the run it routes.

use std::collections::BTreeMap;

use futures::StreamExt;
use gofer_api::config::Strategy;
use gofer_api::models::{
    Deployment, DeploymentState, DeploymentStep, EventKind, Initiator, Pipeline, PipelineState, Routing, Run,
    RunStatus, Variable, VariableSource,
};
use gofer_api::requests::{DeployRequest, PageQuery, RollbackRequest};
use gofer_storage::{Live, NewDeployment, NewRun, Page};
use tokio::sync::MutexGuard;

use crate::deployments::{Verdict, canary_takes_next, judge, routed_in_stage};
use crate::error::{Error, Result};
use crate::events;
use crate::{Gofer, page, paged};

/// Holding this proves the caller holds the deployment lock.
type Deciding<'a> = MutexGuard<'a, ()>;

/// A deployment's place: `(namespace, pipeline, deployment)`.
type DeploymentKey = (String, String, u64);

impl Gofer {
    pub async fn list_deployments(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        query: PageQuery,
    ) -> Result<(Vec<Deployment>, Option<u64>)> {
        self.storage.get_namespace(namespace_id).await?;
        let items = self.storage.list_deployments(namespace_id, pipeline_id, page(query)?).await?;
        Ok(paged(items, query))
    }

    pub async fn get_deployment(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        deployment_id: u64,
    ) -> Result<Deployment> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        Ok(self.storage.get_deployment(namespace_id, pipeline_id, deployment_id).await?)
    }

    /// Starts a deployment of a registered version with the strategy asked for, else the one its config declares,
    /// else immediate. With nothing live yet every strategy deploys at once (there is nothing to compare with).
    pub async fn deploy(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        version: u64,
        request: DeployRequest,
        initiator: Initiator,
    ) -> Result<Deployment> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        let target = self.storage.get_config(namespace_id, pipeline_id, version).await?;
        let strategy = request.strategy.or(target.config.deploy_strategy).unwrap_or(Strategy::Immediate);
        strategy.validate().map_err(|e| Error::invalid(e.to_string()))?;
        let deciding = self.deploying.lock().await;
        let pipeline = self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        let live = pipeline.live_version;
        let degraded = live.is_none() && strategy != Strategy::Immediate;
        let (strategy, message) = match (live, &strategy) {
            (_, Strategy::Immediate) => (strategy, format!("deploying version {version} at once")),
            (None, other) => (
                Strategy::Immediate,
                format!(
                    "nothing was live, so version {version} is deployed at once (a {} deployment needs a live version \
                     to compare with)",
                    other.name()
                ),
            ),
            (Some(live), other) if live == version => {
                return Err(Error::invalid(format!(
                    "version {version} of pipeline '{pipeline_id}' is already live; a {} deployment needs another \
                     version to roll out",
                    other.name()
                )));
            }
            (Some(live), Strategy::BlueGreen(b)) => (
                strategy.clone(),
                format!(
                    "blue/green from version {live} to {version}: {} verification run(s) of version {version}, \
                     version {live} takes every other run",
                    b.verify_runs
                ),
            ),
            (Some(live), Strategy::Canary(c)) => (
                strategy.clone(),
                format!(
                    "canary from version {live} to {version}: {} % of new runs to version {version}{}",
                    c.steps[0],
                    if c.steps.len() > 1 { format!(" (stages {:?})", c.steps) } else { String::new() }
                ),
            ),
        };
        // Checked after the request itself, so a refused request aborts nothing.
        if let Some(running) = pipeline.running_deployment {
            if !request.force {
                return Err(Error::conflict(format!(
                    "deployment {running} of pipeline '{pipeline_id}' is still running; promote or abort it first \
                     (gofer deployment promote|abort {pipeline_id} {running}), or deploy with --force to abort it"
                )));
            }
            let reason = format!("aborted by a forced deployment of version {version} ({})", initiator.name);
            self.end(&deciding, namespace_id, pipeline_id, running, DeploymentState::Aborted, reason).await?;
        }
        let immediate = strategy == Strategy::Immediate;
        let reason_if_immediate = if degraded { message.clone() } else { "deployed at once (immediate)".to_string() };
        // An immediate deployment reconciles the declared subscriptions before anything is stored, so an extension
        // that refuses one refuses the deployment; the others reconcile when their candidate is promoted.
        let undo = if immediate {
            Some(self.reconcile_subscriptions(namespace_id, pipeline_id, &target.config.subscriptions).await?)
        } else {
            None
        };
        let new = NewDeployment {
            namespace_id: namespace_id.into(),
            pipeline_id: pipeline_id.into(),
            from_version: live,
            to_version: version,
            strategy,
            started: self.clock.now(),
            initiator,
            message,
        };
        let inserted = self.events.record(|| self.storage.insert_deployment(&new)).await;
        let deployment = match inserted {
            Ok((deployment, _)) => deployment,
            Err(e) => {
                if let Some(undo) = undo {
                    self.undo_reconcile(undo).await;
                }
                return Err(e.into());
            }
        };
        let id = deployment.deployment_id;
        if immediate {
            self.store_end(deployment, DeploymentState::Promoted, reason_if_immediate).await?;
        } else {
            // Blue/green starts its verification runs now; if that fails, the judge tries again (it saw the start).
            if let Err(e) = self.evaluate(&deciding, namespace_id, pipeline_id, id).await {
                tracing::warn!(namespace_id, pipeline_id, deployment_id = id, error = %e, "could not judge a deployment");
            }
        }
        drop(deciding);
        Ok(self.storage.get_deployment(namespace_id, pipeline_id, id).await?)
    }

    /// Makes the candidate of a running deployment live now, whatever its counts say.
    pub async fn promote_deployment(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        deployment_id: u64,
        by: &Initiator,
    ) -> Result<Deployment> {
        let reason = format!("promoted by {}", by.name);
        self.end_now(namespace_id, pipeline_id, deployment_id, DeploymentState::Promoted, reason).await
    }

    /// Stops a running deployment: every new run goes to the version that was live before it again.
    pub async fn abort_deployment(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        deployment_id: u64,
        by: &Initiator,
    ) -> Result<Deployment> {
        let reason = format!("aborted by {}", by.name);
        self.end_now(namespace_id, pipeline_id, deployment_id, DeploymentState::Aborted, reason).await
    }

    /// Ends a running deployment on a user's word.
    async fn end_now(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        deployment_id: u64,
        state: DeploymentState,
        reason: String,
    ) -> Result<Deployment> {
        self.get_deployment(namespace_id, pipeline_id, deployment_id).await?;
        let deciding = self.deploying.lock().await;
        self.end(&deciding, namespace_id, pipeline_id, deployment_id, state, reason).await?;
        drop(deciding);
        Ok(self.storage.get_deployment(namespace_id, pipeline_id, deployment_id).await?)
    }

    /// An immediate deployment back to `to_version`, or to the version that was live before the live one.
    pub async fn rollback(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        request: RollbackRequest,
        initiator: Initiator,
    ) -> Result<Deployment> {
        self.storage.get_namespace(namespace_id).await?;
        let pipeline = self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        let to = match request.to_version {
            Some(version) => {
                crate::check_id("to_version", version)?;
                version
            }
            None => self.previous_live(&pipeline).await?,
        };
        let request = DeployRequest { strategy: Some(Strategy::Immediate), force: request.force };
        self.deploy(namespace_id, pipeline_id, to, request, initiator).await
    }

    /// The version that was live before the live one: the source of the promotion that made it live.
    async fn previous_live(&self, pipeline: &Pipeline) -> Result<u64> {
        let Some(live) = pipeline.live_version else {
            return Err(Error::conflict(format!(
                "pipeline '{}' has no live version to roll back from; deploy one with `gofer pipeline config deploy`",
                pipeline.pipeline_id
            )));
        };
        let history = self.storage.list_deployments(&pipeline.namespace_id, &pipeline.pipeline_id, Page::ALL).await?;
        history
            .iter()
            .find(|d| d.state == DeploymentState::Promoted && d.to_version == live)
            .and_then(|d| d.from_version.filter(|from| *from != live))
            .ok_or_else(|| {
                Error::conflict(format!(
                    "no version was live before version {live} of pipeline '{}'; name one with --to VERSION \
                     (gofer pipeline config list {})",
                    pipeline.pipeline_id, pipeline.pipeline_id
                ))
            })
    }

    /// Stores a new pending run of `pipeline` and queues it: of `explicit` if given (not counted by any deployment),
    /// else of the version the deployment in progress routes it to, else of the live version.
    pub(crate) async fn insert_run(
        &self,
        pipeline: &Pipeline,
        explicit: Option<u64>,
        variables: Vec<Variable>,
        initiator: Initiator,
    ) -> Result<Run> {
        let (namespace_id, pipeline_id) = (pipeline.namespace_id.as_str(), pipeline.pipeline_id.as_str());
        let new = |version, routing| NewRun {
            namespace_id: namespace_id.into(),
            pipeline_id: pipeline_id.into(),
            version,
            created: gofer_api::epoch_millis(),
            initiator: initiator.clone(),
            variables: variables.clone(),
            routing,
        };
        if let Some(version) = explicit {
            crate::check_id("version", version)?;
            self.storage.get_config(namespace_id, pipeline_id, version).await?;
            return self.queue(new(version, None)).await;
        }
        // The common case takes no lock: nothing is being deployed.
        if pipeline.running_deployment.is_none() {
            return self.queue(new(live_version(pipeline)?, None)).await;
        }
        let _deciding = self.deploying.lock().await;
        let pipeline = self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        let Some(id) = pipeline.running_deployment else {
            return self.queue(new(live_version(&pipeline)?, None)).await;
        };
        let deployment = self.storage.get_deployment(namespace_id, pipeline_id, id).await?;
        let (version, routing) = route(&deployment);
        self.queue(new(version, Some(routing))).await
    }

    async fn queue(&self, new: NewRun) -> Result<Run> {
        let (run, _) = self.events.record(|| self.storage.insert_run(new)).await?;
        self.metrics.run_queued(&run);
        self.orchestrator.enqueue(run.clone()).await?;
        Ok(run)
    }

    /// Looks at a running deployment and does what its counts decide: starts missing verification runs, moves to
    /// the next stage, promotes or rolls back. Returns when to look again (a bake ending), if at a set time.
    async fn evaluate(
        &self,
        deciding: &Deciding<'_>,
        namespace_id: &str,
        pipeline_id: &str,
        deployment_id: u64,
    ) -> Result<Option<u64>> {
        let mut deployment = self.storage.get_deployment(namespace_id, pipeline_id, deployment_id).await?;
        if !deployment.is_running() {
            return Ok(None);
        }
        if let Strategy::BlueGreen(blue_green) = &deployment.strategy {
            self.start_verification_runs(&deployment, blue_green).await?;
            deployment = self.storage.get_deployment(namespace_id, pipeline_id, deployment_id).await?;
        }
        let now = self.clock.now();
        match judge(&deployment, now) {
            Verdict::Wait { until } => Ok(until),
            Verdict::NextStage { reason } => {
                let Strategy::Canary(canary) = &deployment.strategy else { return Ok(None) };
                deployment.stage += 1;
                deployment.stage_started = now;
                let weight = canary.steps.get(deployment.stage as usize).copied().unwrap_or(100);
                let message = format!(
                    "{reason}; stage {} of {}: {weight} % of new runs to version {}",
                    deployment.stage + 1,
                    canary.steps.len(),
                    deployment.to_version
                );
                deployment.timeline.push(DeploymentStep { at: now, message: message.clone() });
                deployment.reason = message;
                let changed = events::now(EventKind::DeploymentStageChanged {
                    namespace_id: namespace_id.into(),
                    pipeline_id: pipeline_id.into(),
                    deployment_id,
                    stage: deployment.stage,
                    weight,
                });
                self.events.record(|| self.storage.update_deployment(&deployment, &changed)).await?;
                Ok(None)
            }
            Verdict::Promote { reason } => {
                let promoted = self
                    .end(deciding, namespace_id, pipeline_id, deployment_id, DeploymentState::Promoted, reason)
                    .await;
                if let Err(Error::InvalidArgument { message }) = promoted {
                    // An extension refused a subscription the candidate declares: it cannot go live.
                    let reason = format!("the candidate could not be promoted: {message}");
                    self.end(deciding, namespace_id, pipeline_id, deployment_id, DeploymentState::RolledBack, reason)
                        .await?;
                    return Ok(None);
                }
                promoted.map(|_| None)
            }
            Verdict::RollBack { reason } => {
                let reason = match self.failing_runs(&deployment).await {
                    Some(runs) => format!("{reason}; not successful: {runs}"),
                    None => reason,
                };
                self.end(deciding, namespace_id, pipeline_id, deployment_id, DeploymentState::RolledBack, reason)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Starts the verification runs a blue/green deployment has not started yet (all of them at first; after a
    /// crash between two starts, the rest). Like any new run they wait while Gofer is in maintenance mode or the
    /// pipeline is disabled (the judge looks again when either changes).
    async fn start_verification_runs(
        &self,
        deployment: &Deployment,
        blue_green: &gofer_api::config::BlueGreen,
    ) -> Result<()> {
        let started: u64 =
            deployment.counts.iter().filter(|c| c.version == deployment.to_version).map(|c| c.started).sum();
        let wanted = u64::from(blue_green.verify_runs);
        if started >= wanted {
            return Ok(());
        }
        let pipeline = self.storage.get_pipeline(&deployment.namespace_id, &deployment.pipeline_id).await?;
        if self.storage.get_system().await?.maintenance || pipeline.state == PipelineState::Disabled {
            tracing::info!(
                pipeline_id = %deployment.pipeline_id,
                deployment_id = deployment.deployment_id,
                "verification runs wait: maintenance mode or the pipeline is disabled"
            );
            return Ok(());
        }
        let variables: Vec<Variable> = blue_green
            .variables
            .iter()
            .map(|(key, value)| Variable { key: key.clone(), value: value.clone(), source: VariableSource::RunOptions })
            .collect();
        for n in started + 1..=wanted {
            let routing = Routing {
                deployment_id: deployment.deployment_id,
                stage: 0,
                candidate: true,
                reason: format!("blue/green verification run {n} of {wanted} of version {}", deployment.to_version),
            };
            let new = NewRun {
                namespace_id: deployment.namespace_id.clone(),
                pipeline_id: deployment.pipeline_id.clone(),
                version: deployment.to_version,
                created: gofer_api::epoch_millis(),
                initiator: Initiator {
                    kind: "system".into(),
                    name: format!("deployment {}", deployment.deployment_id),
                },
                variables: variables.clone(),
                routing: Some(routing),
            };
            self.queue(new).await?;
        }
        Ok(())
    }

    /// The candidate's runs that did not succeed, named for a rollback's reason (the newest few hundred runs are
    /// searched).
    async fn failing_runs(&self, deployment: &Deployment) -> Option<String> {
        let runs = self
            .storage
            .list_runs(&deployment.namespace_id, &deployment.pipeline_id, Default::default(), Page::new(500, 0))
            .await;
        let mut failing: Vec<String> = runs
            .ok()?
            .into_iter()
            .filter(|r| {
                r.routing.as_ref().is_some_and(|routing| routing.deployment_id == deployment.deployment_id)
                    && r.version == deployment.to_version
                    && matches!(r.status, RunStatus::Failed | RunStatus::Cancelled)
            })
            .map(|r| format!("run {} ({})", r.run_id, r.status))
            .collect();
        failing.reverse();
        failing.truncate(10);
        (!failing.is_empty()).then(|| failing.join(", "))
    }

    /// Ends a running deployment. Promoting reconciles the candidate's declared subscriptions first (undone if the
    /// deployment cannot then be stored).
    async fn end(
        &self,
        _deciding: &Deciding<'_>,
        namespace_id: &str,
        pipeline_id: &str,
        deployment_id: u64,
        state: DeploymentState,
        reason: String,
    ) -> Result<()> {
        let deployment = self.storage.get_deployment(namespace_id, pipeline_id, deployment_id).await?;
        if !deployment.is_running() {
            return Err(Error::conflict(format!(
                "deployment {deployment_id} of pipeline '{pipeline_id}' already ended ({}): {}",
                deployment.state, deployment.reason
            )));
        }
        let undo = if state == DeploymentState::Promoted {
            let candidate = self.storage.get_config(namespace_id, pipeline_id, deployment.to_version).await?;
            Some(self.reconcile_subscriptions(namespace_id, pipeline_id, &candidate.config.subscriptions).await?)
        } else {
            None
        };
        let stored = self.store_end(deployment, state, reason).await;
        if stored.is_err()
            && let Some(undo) = undo
        {
            self.undo_reconcile(undo).await;
        }
        stored
    }

    /// Stores the end of `deployment` (as read, running) with its timeline entry and event.
    async fn store_end(&self, mut deployment: Deployment, state: DeploymentState, reason: String) -> Result<()> {
        let now = self.clock.now();
        let live_version =
            if state == DeploymentState::Promoted { Some(deployment.to_version) } else { deployment.from_version };
        let message = match state {
            DeploymentState::Promoted => format!("promoted: version {} is live; {reason}", deployment.to_version),
            DeploymentState::RolledBack => format!("rolled back: {reason}"),
            DeploymentState::Aborted => format!("aborted: {reason}"),
            DeploymentState::Running => reason.clone(),
        };
        deployment.state = state;
        deployment.ended = now;
        deployment.reason = reason.clone();
        deployment.timeline.push(DeploymentStep { at: now, message });
        let ended = events::now(EventKind::DeploymentEnded {
            namespace_id: deployment.namespace_id.clone(),
            pipeline_id: deployment.pipeline_id.clone(),
            deployment_id: deployment.deployment_id,
            state,
            live_version,
            reason,
        });
        self.events.record(|| self.storage.update_deployment(&deployment, &ended)).await?;
        self.metrics.deployment_ended(&deployment.namespace_id, &deployment.pipeline_id, state);
        Ok(())
    }

    /// Judges every running deployment whenever one of its runs completes, when a canary stage's bake ends, and
    /// once at start (for what completed while no server was watching). Runs until its background scope stops.
    /// Judges deployments on the one server that leads (every server on its own store leads itself); a server
    /// that stops leading stops judging, the next leader starts from the stored state.
    pub async fn judge_deployments(self) {
        let cluster = self.orchestrator.cluster().clone();
        loop {
            cluster.until_leading().await;
            tokio::select! {
                () = self.clone().watch_deployments() => return,
                () = cluster.until_not_leading() => {
                    tracing::info!("this server no longer leads; another judges deployments");
                }
            }
        }
    }

    async fn watch_deployments(self) {
        // Follow before looking, so nothing that completes in between is missed.
        let mut live = self.events.follow();
        let mut wakes: BTreeMap<DeploymentKey, u64> = BTreeMap::new();
        self.evaluate_all(&mut wakes).await;
        loop {
            let next = wakes.values().min().copied();
            let sleep = async {
                match next {
                    Some(at) => self.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = live.next() => match event {
                    Some(Live::Event(event)) => match &event.kind {
                        EventKind::RunCompleted { namespace_id, pipeline_id, .. }
                        | EventKind::DeploymentStarted { namespace_id, pipeline_id, .. }
                        | EventKind::PipelineStateChanged { namespace_id, pipeline_id, .. } => {
                            self.evaluate_pipeline(namespace_id, pipeline_id, &mut wakes).await;
                        }
                        EventKind::MaintenanceChanged { .. } => self.evaluate_all(&mut wakes).await,
                        _ => {}
                    },
                    Some(Live::Lagged) => self.evaluate_all(&mut wakes).await,
                    None => return,
                },
                () = sleep => {
                    let now = self.clock.now();
                    let due: Vec<DeploymentKey> =
                        wakes.iter().filter(|(_, at)| **at <= now).map(|(key, _)| key.clone()).collect();
                    for (namespace_id, pipeline_id, _) in due {
                        self.evaluate_pipeline(&namespace_id, &pipeline_id, &mut wakes).await;
                    }
                }
            }
        }
    }

    async fn evaluate_all(&self, wakes: &mut BTreeMap<DeploymentKey, u64>) {
        match self.storage.list_running_deployments().await {
            Ok(running) => {
                wakes.clear();
                for d in running {
                    self.evaluate_pipeline(&d.namespace_id, &d.pipeline_id, wakes).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list running deployments; they are judged again later"),
        }
    }

    async fn evaluate_pipeline(&self, namespace_id: &str, pipeline_id: &str, wakes: &mut BTreeMap<DeploymentKey, u64>) {
        wakes.retain(|(ns, p, _), _| !(ns == namespace_id && p == pipeline_id));
        let Ok(pipeline) = self.storage.get_pipeline(namespace_id, pipeline_id).await else { return };
        let Some(id) = pipeline.running_deployment else { return };
        let deciding = self.deploying.lock().await;
        match self.evaluate(&deciding, namespace_id, pipeline_id, id).await {
            Ok(Some(at)) => {
                wakes.insert((namespace_id.into(), pipeline_id.into(), id), at);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(namespace_id, pipeline_id, deployment_id = id, error = %e, "could not judge a deployment");
            }
        }
    }
}

fn live_version(pipeline: &Pipeline) -> Result<u64> {
    pipeline.live_version.ok_or_else(|| {
        Error::conflict(format!(
            "pipeline '{}' has no deployed config version; deploy one with `gofer pipeline deploy`",
            pipeline.pipeline_id
        ))
    })
}

/// The version a running deployment gives the next run it routes, and why.
fn route(deployment: &Deployment) -> (u64, Routing) {
    let live = deployment.from_version.unwrap_or(deployment.to_version);
    let candidate = deployment.to_version;
    let stage = deployment.stage;
    let routed = routed_in_stage(&deployment.counts, stage);
    let (to_candidate, reason) = match &deployment.strategy {
        Strategy::Canary(canary) => {
            let weight = canary.steps.get(stage as usize).copied().unwrap_or(100);
            let takes = canary_takes_next(weight, routed);
            let due = (routed + 1) * u64::from(weight) / 100;
            let stage_name = if canary.steps.len() > 1 {
                format!("canary stage {} of {} ({weight} %)", stage + 1, canary.steps.len())
            } else {
                format!("canary ({weight} %)")
            };
            let version = if takes { candidate } else { live };
            (
                takes,
                format!(
                    "{stage_name}: run {} of the stage → version {version} ({due} of {} to the candidate so far)",
                    routed + 1,
                    routed + 1
                ),
            )
        }
        Strategy::BlueGreen(_) => {
            (false, format!("blue/green: live version {live} takes every run while version {candidate} verifies"))
        }
        // A deployment being promoted at once: until it is, the live version takes the run.
        Strategy::Immediate => {
            (false, format!("version {candidate} is being deployed; live version {live} until then"))
        }
    };
    let version = if to_candidate { candidate } else { live };
    (version, Routing { deployment_id: deployment.deployment_id, stage, candidate: to_candidate, reason })
}
