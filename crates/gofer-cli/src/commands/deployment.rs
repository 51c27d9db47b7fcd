//! `gofer deployment` (list, show, promote, abort), `gofer pipeline rollback`, and the strategy flags every deploy
//! command takes.

use anyhow::bail;
use gofer_api::config::Strategy;
use gofer_api::models::{Deployment, DeploymentState};
use gofer_api::requests::{DeployRequest, RollbackRequest};

use crate::client::Client;
use crate::output::{self, Format};
use crate::{DeploymentCommand, StrategyArgs};

/// Canary runs judged per stage when `--min-runs` is not given.
const DEFAULT_MIN_RUNS: u32 = 5;
/// The canary success threshold when `--success-threshold` is not given.
const DEFAULT_SUCCESS_THRESHOLD: f64 = 0.9;

impl StrategyArgs {
    /// The strategy the flags ask for; `None` leaves it to the config (else immediate). Flags that do not belong to
    /// the chosen strategy are refused rather than ignored.
    pub fn strategy(&self) -> anyhow::Result<Option<Strategy>> {
        let blue_green_flags = self.verify_runs.is_some() || !self.variables.is_empty();
        let canary_flags = self.weight.is_some()
            || !self.steps.is_empty()
            || self.min_runs.is_some()
            || self.success_threshold.is_some()
            || self.bake.is_some();
        let strategy = match self.strategy.as_deref() {
            None if blue_green_flags || canary_flags => {
                bail!(
                    "--verify-runs, -v, --weight, --steps, --min-runs, --success-threshold and --bake need --strategy"
                )
            }
            None => return Ok(None),
            Some("immediate") if blue_green_flags || canary_flags => {
                bail!("--strategy immediate takes no blue-green or canary flags")
            }
            Some("immediate") => Strategy::Immediate,
            Some("blue-green") => {
                if canary_flags {
                    bail!("--weight, --steps, --min-runs, --success-threshold and --bake are canary flags")
                }
                let Some(runs) = self.verify_runs else {
                    bail!("--strategy blue-green needs --verify-runs N (how many runs of the new version must succeed)")
                };
                self.variables.iter().fold(Strategy::blue_green(runs), |s, (k, v)| s.verify_variable(k, v))
            }
            Some("canary") => {
                if blue_green_flags {
                    bail!("--verify-runs and -v are blue-green flags")
                }
                let steps = match (self.weight, self.steps.as_slice()) {
                    (Some(_), [_, ..]) => bail!("give either --weight P or --steps P1,P2,..., not both"),
                    (Some(weight), []) => vec![weight],
                    (None, []) => bail!("--strategy canary needs --weight P (percent of new runs) or --steps"),
                    (None, steps) => steps.to_vec(),
                };
                let min_runs = self.min_runs.unwrap_or(DEFAULT_MIN_RUNS);
                let threshold = self.success_threshold.unwrap_or(DEFAULT_SUCCESS_THRESHOLD);
                let mut strategy = Strategy::canary(steps[0], min_runs, threshold).steps(steps);
                if let Some(bake) = self.bake {
                    strategy = strategy.bake(bake);
                }
                strategy
            }
            Some(other) => bail!("unknown strategy '{other}'; use immediate, blue-green or canary"),
        };
        strategy.validate()?;
        Ok(Some(strategy))
    }

    pub fn request(&self) -> anyhow::Result<DeployRequest> {
        Ok(DeployRequest { strategy: self.strategy()?, force: self.force })
    }
}

/// Prints a deployment just started, with what to do next.
pub(super) fn started(format: Format, deployment: &Deployment) -> anyhow::Result<()> {
    output::print(format, deployment)?;
    if format != Format::Table {
        return Ok(());
    }
    let (p, id, to) = (&deployment.pipeline_id, deployment.deployment_id, deployment.to_version);
    match deployment.state {
        DeploymentState::Promoted => eprintln!("version {to} is live; start a run with `gofer run start {p}`"),
        DeploymentState::Running => eprintln!(
            "deployment {id} is running ({}); watch it with `gofer deployment get {p} {id}`, stop it with `gofer \
             deployment abort {p} {id}`",
            deployment.strategy.name()
        ),
        _ => eprintln!("deployment {id} ended {}: {}", deployment.state, deployment.reason),
    }
    Ok(())
}

pub(super) async fn rollback(
    client: &Client,
    format: Format,
    pipeline: &str,
    to: Option<u64>,
    force: bool,
) -> anyhow::Result<()> {
    let deployment = client.rollback(pipeline, &RollbackRequest { to_version: to, force }).await?;
    started(format, &deployment)
}

pub(super) async fn command(client: &Client, format: Format, command: DeploymentCommand) -> anyhow::Result<()> {
    match command {
        DeploymentCommand::List { pipeline, limit, offset } => {
            let list = client.list_deployments(&pipeline, limit, offset).await?;
            output::print(format, &list.deployments)?;
            if let (Format::Table, Some(next)) = (format, list.next_offset) {
                eprintln!("more deployments: --offset {next}");
            }
            Ok(())
        }
        DeploymentCommand::Get { pipeline, deployment } => {
            output::print(format, &client.get_deployment(&pipeline, deployment).await?)
        }
        DeploymentCommand::Promote { pipeline, deployment } => {
            output::print(format, &client.promote_deployment(&pipeline, deployment).await?)
        }
        DeploymentCommand::Abort { pipeline, deployment } => {
            output::print(format, &client.abort_deployment(&pipeline, deployment).await?)
        }
    }
}
