//! The deployment rules as pure functions: which version a new run gets, and what a deployment's counts decide.
//! The services (`services/deployments.rs`) store what these decide; `docs/deployments.md` states the same rules
//! for users.

use gofer_api::config::{Canary, Strategy};
use gofer_api::models::{Deployment, RunCounts};

/// What a deployment's counts decide now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing yet; look again when a routed run completes, or at `until` (the end of a canary stage's bake).
    Wait { until: Option<u64> },
    /// The canary stage passed and a later one follows.
    NextStage { reason: String },
    /// The candidate becomes live.
    Promote { reason: String },
    /// The candidate failed; the live version stays.
    RollBack { reason: String },
}

/// Whether the next run routed in a canary stage of `weight` % goes to the candidate, given how many runs the stage
/// routed before it: run *n* of the stage goes to the candidate when ⌊n·w/100⌋ grows, so after any *n* runs the
/// candidate had exactly ⌊n·w/100⌋ of them (10 runs at 20 % route runs 5 and 10 to it).
pub fn canary_takes_next(weight: u8, routed_before: u64) -> bool {
    let w = u64::from(weight);
    (routed_before + 1) * w / 100 > routed_before * w / 100
}

/// The runs a deployment routed in `stage`, summed over versions.
pub fn routed_in_stage(counts: &[RunCounts], stage: u32) -> u64 {
    counts.iter().filter(|c| c.stage == stage).map(|c| c.started).sum()
}

/// The candidate's counts in `stage`.
fn candidate(counts: &[RunCounts], version: u64, stage: u32) -> RunCounts {
    counts.iter().find(|c| c.version == version && c.stage == stage).cloned().unwrap_or_default()
}

/// The verdict on a running deployment at `now` (epoch milliseconds).
pub fn judge(deployment: &Deployment, now: u64) -> Verdict {
    match &deployment.strategy {
        Strategy::Immediate => Verdict::Promote { reason: "deployed at once (immediate)".into() },
        Strategy::BlueGreen(blue_green) => {
            let green = candidate(&deployment.counts, deployment.to_version, 0);
            let wanted = u64::from(blue_green.verify_runs);
            if green.failed + green.cancelled > 0 {
                return Verdict::RollBack {
                    reason: format!(
                        "blue/green: {} of {wanted} verification runs of version {} did not succeed ({} failed, {} \
                         cancelled); version {} stays live",
                        green.failed + green.cancelled,
                        deployment.to_version,
                        green.failed,
                        green.cancelled,
                        live_name(deployment),
                    ),
                };
            }
            if green.successful >= wanted {
                return Verdict::Promote {
                    reason: format!(
                        "blue/green: all {wanted} verification runs of version {} succeeded",
                        deployment.to_version
                    ),
                };
            }
            Verdict::Wait { until: None }
        }
        Strategy::Canary(canary) => judge_canary(deployment, canary, now),
    }
}

fn live_name(deployment: &Deployment) -> String {
    deployment.from_version.map_or_else(|| "none".into(), |v| v.to_string())
}

/// A canary stage: with *s* successful and *f* failed candidate runs completed in it (cancelled ones are not
/// judged), *N* = `min_runs` and *R* = `success_threshold`:
/// - rolled back as soon as f > (1 − R) · max(N, s + f): the rate can no longer reach R by the time N runs
///   completed (and once N did, it is below R);
/// - passed once s + f ≥ N, s ≥ R · (s + f), and the stage has lasted `bake_seconds`;
/// - otherwise it waits.
fn judge_canary(deployment: &Deployment, canary: &Canary, now: u64) -> Verdict {
    let stage = deployment.stage;
    let index = stage as usize;
    let weight = canary.steps.get(index).copied().unwrap_or(100);
    let counts = candidate(&deployment.counts, deployment.to_version, stage);
    let (s, f) = (counts.successful, counts.failed);
    let judged = s + f;
    let n = u64::from(canary.min_runs);
    let r = canary.threshold_basis_points();
    let stage_name = if canary.steps.len() > 1 {
        format!("canary stage {} of {} ({weight} %)", index + 1, canary.steps.len())
    } else {
        format!("canary ({weight} %)")
    };
    let rate = |s: u64, total: u64| if total == 0 { 0.0 } else { s as f64 * 100.0 / total as f64 };
    if f * 10_000 > (10_000 - r) * n.max(judged) {
        return Verdict::RollBack {
            reason: format!(
                "{stage_name}: {f} of {judged} completed runs of version {} failed ({s} successful, {:.1} %); a success \
                 rate of {} % over at least {n} runs can no longer be reached; version {} stays live",
                deployment.to_version,
                rate(s, judged),
                r as f64 / 100.0,
                live_name(deployment),
            ),
        };
    }
    if judged < n || s * 10_000 < r * judged {
        return Verdict::Wait { until: None };
    }
    let bake_ends = deployment.stage_started.saturating_add(canary.bake_seconds.saturating_mul(1000));
    if now < bake_ends {
        return Verdict::Wait { until: Some(bake_ends) };
    }
    let passed = format!(
        "{stage_name}: {s} of {judged} completed runs of version {} succeeded ({:.1} %, needed {} % over at least {n})",
        deployment.to_version,
        rate(s, judged),
        r as f64 / 100.0,
    );
    if index + 1 < canary.steps.len() {
        Verdict::NextStage { reason: passed }
    } else {
        Verdict::Promote { reason: passed }
    }
}

#[cfg(test)]
mod tests {
    use gofer_api::models::{DeploymentState, Initiator};

    use super::*;

    fn deployment(strategy: Strategy, counts: Vec<RunCounts>) -> Deployment {
        Deployment {
            namespace_id: "default".into(),
            pipeline_id: "p".into(),
            deployment_id: 1,
            from_version: Some(1),
            to_version: 2,
            strategy,
            state: DeploymentState::Running,
            reason: String::new(),
            started: 1000,
            ended: 0,
            stage: 0,
            stage_started: 1000,
            initiator: Initiator { kind: "user".into(), name: "t".into() },
            counts,
            timeline: Vec::new(),
        }
    }

    fn candidate_counts(stage: u32, successful: u64, failed: u64) -> RunCounts {
        RunCounts { version: 2, stage, started: successful + failed, successful, failed, cancelled: 0 }
    }

    #[test]
    fn the_split_is_exact_for_every_weight_and_run_count() {
        for weight in 1..=100u8 {
            let mut taken = 0;
            for n in 0..250u64 {
                if canary_takes_next(weight, n) {
                    taken += 1;
                }
                assert_eq!(taken, (n + 1) * u64::from(weight) / 100, "weight {weight}, after {} runs", n + 1);
            }
        }
        let twenty: Vec<bool> = (0..10).map(|n| canary_takes_next(20, n)).collect();
        assert_eq!(twenty.iter().filter(|t| **t).count(), 2, "10 runs at 20 % route exactly 2");
        assert!(twenty[4] && twenty[9]);
    }

    #[test]
    fn a_canary_is_rolled_back_as_soon_as_the_threshold_cannot_be_reached() {
        // N = 5, R = 0.8: one failure may be absorbed, the second cannot.
        let canary = Strategy::canary(20, 5, 0.8);
        let judge_at = |s, f| judge(&deployment(canary.clone(), vec![candidate_counts(0, s, f)]), 1000);
        assert_eq!(judge_at(0, 1), Verdict::Wait { until: None });
        assert!(matches!(judge_at(0, 2), Verdict::RollBack { .. }), "2 failures of 5 leave at most 60 %");
        assert!(matches!(judge_at(3, 1), Verdict::Wait { .. }));
        assert!(matches!(judge_at(4, 1), Verdict::Promote { .. }), "4 of 5 is 80 %");
        assert!(matches!(judge_at(5, 0), Verdict::Promote { .. }));
        assert!(matches!(judge_at(8, 2), Verdict::Promote { .. }), "8 of 10 is 80 %");
        assert!(matches!(judge_at(7, 2), Verdict::RollBack { .. }), "7 of 9 is 77.8 %");
        // Past N, the rate over everything counts: 8 of 11 is 72.7 %.
        let Verdict::RollBack { reason } = judge_at(8, 3) else { panic!("8 of 11 is below 80 %") };
        assert!(reason.contains("3 of 11 completed runs of version 2 failed"), "{reason}");
        assert!(reason.contains("version 1 stays live"), "{reason}");
        // R = 1: the first failure decides.
        let strict = Strategy::canary(50, 3, 1.0);
        let verdict = judge(&deployment(strict, vec![candidate_counts(0, 2, 1)]), 1000);
        assert!(matches!(verdict, Verdict::RollBack { .. }));
    }

    #[test]
    fn cancelled_runs_and_the_live_version_are_not_judged() {
        let canary = Strategy::canary(50, 2, 1.0);
        let counts = vec![
            RunCounts { version: 1, stage: 0, started: 9, successful: 0, failed: 9, cancelled: 0 },
            RunCounts { version: 2, stage: 0, started: 4, successful: 1, failed: 0, cancelled: 3 },
        ];
        assert_eq!(judge(&deployment(canary, counts), 1000), Verdict::Wait { until: None });
    }

    #[test]
    fn stages_are_judged_one_by_one_and_bake_before_passing() {
        let canary = Strategy::canary(10, 2, 0.5).steps([10, 50, 100]).bake(std::time::Duration::from_secs(60));
        let mut d = deployment(canary, vec![candidate_counts(0, 2, 0), candidate_counts(1, 0, 1)]);
        assert_eq!(judge(&d, 1000), Verdict::Wait { until: Some(61_000) }, "passed, but bakes a minute");
        assert!(matches!(judge(&d, 61_000), Verdict::NextStage { .. }));
        d.stage = 1;
        d.stage_started = 61_000;
        assert_eq!(judge(&d, 200_000), Verdict::Wait { until: None }, "stage 2 judges only its own runs");
        d.counts.push(candidate_counts(2, 0, 0));
        d.counts[1] = candidate_counts(1, 1, 1);
        assert!(matches!(judge(&d, 200_000), Verdict::NextStage { .. }));
        d.stage = 2;
        d.counts[2] = candidate_counts(2, 2, 0);
        let Verdict::Promote { reason } = judge(&d, 200_000) else { panic!("the last stage promotes") };
        assert!(reason.contains("canary stage 3 of 3 (100 %)"), "{reason}");
    }

    #[test]
    fn blue_green_promotes_after_every_verification_run_succeeded_and_stops_at_the_first_failure() {
        let strategy = Strategy::blue_green(3);
        let green = |successful, failed| vec![candidate_counts(0, successful, failed)];
        assert_eq!(judge(&deployment(strategy.clone(), green(2, 0)), 0), Verdict::Wait { until: None });
        assert!(matches!(judge(&deployment(strategy.clone(), green(3, 0)), 0), Verdict::Promote { .. }));
        let Verdict::RollBack { reason } = judge(&deployment(strategy, green(1, 1)), 0) else { panic!() };
        assert!(reason.contains("version 1 stays live"), "{reason}");
    }
}
