//! Deployments judged on scripted containers: routing splits, automatic rollback and promotion, blue/green
//! verification, stages with bake time on the manual clock, a restart mid-canary, and the refusals.

use std::collections::BTreeMap;
use std::time::Duration;

use gofer_api::config::{Pipeline, Strategy};
use gofer_api::models::{ConfigState, Deployment, DeploymentState, Run};
use gofer_api::requests::{DeployRequest, PageQuery, RollbackRequest};
use gofer_core::Error;

use crate::{Harness, harness, harness_on, task, test_user};

/// A pipeline whose one task exits with `code`: version 1 of it, and so on.
fn version(code: u8) -> Pipeline {
    Pipeline::new("svc", "").tasks(vec![task("main", &["exit", &code.to_string()])])
}

impl Harness {
    /// Registers `config` and deploys it with `strategy`.
    async fn roll_out(&self, config: Pipeline, strategy: Strategy) -> Result<Deployment, Error> {
        let registered = self.gofer.register_config("default", "svc", config).await.unwrap();
        let request = DeployRequest { strategy: Some(strategy), force: false };
        self.gofer.deploy("default", "svc", registered.config.version, request, test_user()).await
    }

    /// Starts a run and waits for it to complete.
    async fn complete_run(&self) -> Run {
        let run = self.start("svc").await;
        self.wait_complete("svc", run.run_id).await
    }

    async fn deployment(&self, id: u64) -> Deployment {
        self.gofer.get_deployment("default", "svc", id).await.unwrap()
    }

    /// Waits until the deployment's judge has ended it.
    async fn ended(&self, id: u64) -> Deployment {
        let waiting = async {
            loop {
                let d = self.deployment(id).await;
                if !d.is_running() {
                    return d;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), waiting).await.expect("the deployment never ended")
    }

    async fn live(&self) -> Option<u64> {
        self.gofer.get_pipeline("default", "svc").await.unwrap().live_version
    }
}

async fn started() -> Harness {
    let h = harness().await;
    h.runtime.start().await.unwrap();
    h.roll_out(version(0), Strategy::Immediate).await.unwrap();
    h
}

#[tokio::test(start_paused = true)]
async fn a_failing_canary_is_rolled_back_at_once_and_the_live_version_keeps_every_run() {
    let h = started().await;
    // 50 %: the second run of the stage goes to the candidate; with R = 1 its failure decides.
    let canary = h.roll_out(version(3), Strategy::canary(50, 2, 1.0)).await.unwrap();
    assert_eq!((canary.deployment_id, canary.state, canary.from_version), (2, DeploymentState::Running, Some(1)));
    assert_eq!(h.gofer.get_config("default", "svc", 2).await.unwrap().state, ConfigState::Candidate);
    let first = h.complete_run().await;
    assert_eq!((first.version, first.routing.as_ref().map(|r| r.candidate)), (1, Some(false)));
    let second = h.complete_run().await;
    assert_eq!((second.version, second.routing.as_ref().map(|r| r.candidate)), (2, Some(true)));
    let ended = h.ended(2).await;
    assert_eq!(ended.state, DeploymentState::RolledBack, "{}", ended.reason);
    assert!(ended.reason.contains("1 of 1 completed runs of version 2 failed"), "{}", ended.reason);
    assert!(ended.reason.contains("run 2 (failed)"), "names the failing run: {}", ended.reason);
    assert_eq!(h.live().await, Some(1));
    assert_eq!(h.gofer.get_config("default", "svc", 2).await.unwrap().state, ConfigState::RolledBack);
    let counts: Vec<(u64, u64, u64, u64)> =
        ended.counts.iter().map(|c| (c.version, c.started, c.successful, c.failed)).collect();
    assert_eq!(counts, [(1, 1, 1, 0), (2, 1, 0, 1)]);
    for _ in 0..3 {
        let after = h.complete_run().await;
        assert_eq!((after.version, after.routing), (1, None), "every new run goes to the live version again");
    }
    let timeline: Vec<&str> = ended.timeline.iter().map(|s| s.message.as_str()).collect();
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    assert!(timeline[1].starts_with("rolled back: "), "{timeline:?}");
}

#[tokio::test(start_paused = true)]
async fn ten_runs_at_twenty_percent_route_exactly_two_and_explicit_versions_are_not_counted() {
    let h = started().await;
    h.roll_out(version(0), Strategy::canary(20, 1000, 0.9)).await.unwrap_err();
    let canary = h.roll_out(version(1).description("v2"), Strategy::canary(20, 1000, 0.5)).await.unwrap();
    let mut to_candidate = Vec::new();
    for _ in 0..10 {
        let run = h.start("svc").await;
        if run.version == canary.to_version {
            to_candidate.push(run.run_id);
        }
        assert!(run.routing.as_ref().unwrap().reason.contains("canary (20 %)"), "{:?}", run.routing);
    }
    assert_eq!(to_candidate, [5, 10], "the split is exact and deterministic");
    let explicit = h.gofer.start_run("default", "svc", BTreeMap::new(), Some(2), test_user()).await.unwrap();
    assert_eq!((explicit.version, explicit.routing), (2, None));
    let d = h.deployment(canary.deployment_id).await;
    let started: Vec<(u64, u64)> = d.counts.iter().map(|c| (c.version, c.started)).collect();
    assert_eq!(started, [(1, 8), (2, 2)], "the explicit run is not the deployment's");
}

#[tokio::test(start_paused = true)]
async fn a_good_canary_is_promoted_and_only_then_its_declared_subscriptions_take_effect() {
    let h = started().await;
    let declaring = version(0).description("v2").subscribe("interval", "hourly", vec![("every", "1h")]);
    let canary = h.roll_out(declaring, Strategy::canary(100, 2, 1.0)).await.unwrap();
    assert!(h.storage.list_subscriptions("default", "svc").await.unwrap().is_empty(), "not while a candidate");
    h.complete_run().await;
    assert!(h.deployment(canary.deployment_id).await.is_running(), "one run of two");
    h.complete_run().await;
    let ended = h.ended(canary.deployment_id).await;
    assert_eq!(ended.state, DeploymentState::Promoted, "{}", ended.reason);
    assert!(ended.reason.contains("2 of 2 completed runs of version 2 succeeded"), "{}", ended.reason);
    assert_eq!(h.live().await, Some(2));
    assert_eq!(h.gofer.get_config("default", "svc", 1).await.unwrap().state, ConfigState::Deprecated);
    let subscriptions = h.storage.list_subscriptions("default", "svc").await.unwrap();
    assert_eq!(subscriptions.len(), 1, "the promoted version's subscription is made");
    assert!(subscriptions[0].declared);
}

#[tokio::test(start_paused = true)]
async fn blue_green_verification_failure_keeps_blue_live_and_success_switches_at_once() {
    let h = started().await;
    let failing = h.roll_out(version(4), Strategy::blue_green(2).verify_variable("SMOKE", "1")).await.unwrap();
    let ended = h.ended(failing.deployment_id).await;
    assert_eq!(ended.state, DeploymentState::RolledBack, "{}", ended.reason);
    assert!(ended.reason.contains("verification runs of version 2 did not succeed"), "{}", ended.reason);
    assert_eq!(h.live().await, Some(1));
    let runs = h.gofer.list_runs("default", "svc", PageQuery::default()).await.unwrap().0;
    let verification: Vec<&Run> = runs.iter().filter(|r| r.version == 2).collect();
    assert_eq!(verification.len(), 2, "the deployment started its verification runs itself");
    assert!(verification.iter().all(|r| r.initiator.name == "deployment 2" && r.variables[0].key == "SMOKE"));
    // While green verifies, blue takes every run.
    let good = h.roll_out(version(0).description("v3"), Strategy::blue_green(3)).await.unwrap();
    let blue = h.start("svc").await;
    assert_eq!(blue.version, 1);
    let ended = h.ended(good.deployment_id).await;
    assert_eq!(ended.state, DeploymentState::Promoted, "{}", ended.reason);
    assert_eq!(h.live().await, Some(3));
}

#[tokio::test(start_paused = true)]
async fn stages_raise_the_weight_after_each_bake_on_the_clock() {
    let h = started().await;
    let strategy = Strategy::canary(50, 1, 1.0).steps([50, 100]).bake(Duration::from_secs(600));
    let canary = h.roll_out(version(0).description("v2"), strategy).await.unwrap();
    h.complete_run().await;
    h.complete_run().await;
    let d = h.deployment(canary.deployment_id).await;
    assert_eq!((d.state, d.stage), (DeploymentState::Running, 0), "stage 1 passed but bakes ten minutes");
    h.clock.advance(Duration::from_secs(601));
    let waiting = async {
        while h.deployment(canary.deployment_id).await.stage == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("the bake's end moved the stage on");
    let run = h.complete_run().await;
    assert_eq!(run.version, 2, "stage 2 sends every run to the candidate");
    h.clock.advance(Duration::from_secs(601));
    let ended = h.ended(canary.deployment_id).await;
    assert_eq!(ended.state, DeploymentState::Promoted, "{}", ended.reason);
    assert_eq!(ended.timeline.len(), 3, "{:?}", ended.timeline);
}

#[test]
fn a_restart_mid_canary_continues_with_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    runtime().block_on(async {
        let h = harness_on(dir.path(), Default::default()).await;
        h.runtime.start().await.unwrap();
        h.roll_out(version(0), Strategy::Immediate).await.unwrap();
        h.roll_out(version(0).description("v2"), Strategy::canary(100, 3, 1.0)).await.unwrap();
        h.complete_run().await;
        h.complete_run().await;
    });
    runtime().block_on(async {
        let h = harness_on(dir.path(), Default::default()).await;
        h.runtime.start().await.unwrap();
        let d = h.deployment(2).await;
        assert_eq!(d.state, DeploymentState::Running);
        assert_eq!((d.counts[0].version, d.counts[0].successful), (2, 2), "the counts survived the restart");
        h.complete_run().await;
        let ended = h.ended(2).await;
        assert_eq!(ended.state, DeploymentState::Promoted, "{}", ended.reason);
        assert!(ended.reason.contains("3 of 3"), "{}", ended.reason);
    });
}

#[tokio::test(start_paused = true)]
async fn one_deployment_at_a_time_force_aborts_rollback_goes_back_and_versions_in_use_are_kept() {
    let h = started().await;
    let running = h.roll_out(version(0).description("v2"), Strategy::canary(10, 50, 0.9)).await.unwrap();
    let refused = h.roll_out(version(0).description("v3"), Strategy::Immediate).await.unwrap_err();
    assert!(refused.to_string().contains("deployment 2 of pipeline 'svc' is still running"), "{refused}");
    for version in [1, 2] {
        let kept = h.gofer.delete_config("default", "svc", version).await.unwrap_err();
        assert!(matches!(kept, Error::Conflict { .. }), "version {version}: {kept}");
    }
    let forced = DeployRequest { strategy: None, force: true };
    let deployed = h.gofer.deploy("default", "svc", 3, forced, test_user()).await.unwrap();
    assert_eq!((deployed.state, deployed.to_version), (DeploymentState::Promoted, 3));
    let aborted = h.deployment(running.deployment_id).await;
    assert_eq!(aborted.state, DeploymentState::Aborted);
    assert!(aborted.reason.contains("forced deployment of version 3"), "{}", aborted.reason);
    assert_eq!(h.live().await, Some(3));

    let back = h.gofer.rollback("default", "svc", RollbackRequest::default(), test_user()).await.unwrap();
    assert_eq!((back.from_version, back.to_version, back.state), (Some(3), 1, DeploymentState::Promoted));
    assert_eq!(h.complete_run().await.version, 1, "new runs use the version rolled back to");
    let to = RollbackRequest { to_version: Some(3), force: false };
    h.gofer.rollback("default", "svc", to, test_user()).await.unwrap();
    assert_eq!(h.live().await, Some(3));
    h.gofer.delete_config("default", "svc", 2).await.unwrap();
    let missing =
        h.gofer.rollback("default", "svc", RollbackRequest { to_version: Some(2), force: false }, test_user());
    assert!(matches!(missing.await, Err(Error::NotFound { .. })));
    let listed = h.gofer.list_deployments("default", "svc", PageQuery::default()).await.unwrap().0;
    let states: Vec<(u64, DeploymentState)> = listed.iter().map(|d| (d.deployment_id, d.state)).collect();
    assert_eq!(
        states,
        [
            (5, DeploymentState::Promoted),
            (4, DeploymentState::Promoted),
            (3, DeploymentState::Promoted),
            (2, DeploymentState::Aborted),
            (1, DeploymentState::Promoted)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn verification_runs_wait_for_maintenance_mode_to_end() {
    let h = started().await;
    h.gofer.set_maintenance(true).await.unwrap();
    let deployment = h.roll_out(version(0).description("v2"), Strategy::blue_green(2)).await.unwrap();
    let runs = || async { h.gofer.list_runs("default", "svc", PageQuery::default()).await.unwrap().0.len() };
    assert_eq!(runs().await, 0, "no new run while in maintenance, verification runs included");
    h.gofer.set_maintenance(false).await.unwrap();
    let ended = h.ended(deployment.deployment_id).await;
    assert_eq!(ended.state, DeploymentState::Promoted, "{}", ended.reason);
    assert_eq!(runs().await, 2);
}
