//! Deployments, and the run counts they are judged by (counted from the runs they routed, so they can never
//! disagree with the runs).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gofer_api::models::{ConfigState, Deployment, DeploymentState, Event, PipelineConfig, RunCounts};
use gofer_storage::{DeploymentStore, Error, NewDeployment, NewEvent, Operation, Page, Result};

use crate::codec::{
    Columns, Param, Record, all, enum_text, execute, first, int, limit_offset, one, opt_int, pipeline_exists, rows,
    to_json, value,
};
use crate::events::append;
use crate::{PostgresStorage, codec_error, commit, not_found};

/// The runs a deployment routed, by version and stage.
async fn counts(client: &impl GenericClient, deployment: &mut Deployment) -> Result<()> {
    const CONTEXT: &str = "count a deployment's runs";
    let found = rows(
        client,
        CONTEXT,
        "SELECT version, deployment_stage, count(*), \
                count(*) FILTER (WHERE state = 'complete' AND status = 'successful'), \
                count(*) FILTER (WHERE state = 'complete' AND status = 'failed'), \
                count(*) FILTER (WHERE state = 'complete' AND status = 'cancelled') \
         FROM runs WHERE namespace_id = $1 AND pipeline_id = $2 AND deployment_id = $3 \
         GROUP BY deployment_stage, version ORDER BY deployment_stage, version",
        &[&deployment.namespace_id, &deployment.pipeline_id, &int(deployment.deployment_id)?],
    )
    .await?;
    deployment.counts = found
        .iter()
        .map(|row| {
            Ok(RunCounts {
                version: value(CONTEXT, row.uint(0))?,
                stage: u32::try_from(value(CONTEXT, row.uint(1))?).map_err(|e| codec_error(CONTEXT, e))?,
                started: value(CONTEXT, row.uint(2))?,
                successful: value(CONTEXT, row.uint(3))?,
                failed: value(CONTEXT, row.uint(4))?,
                cancelled: value(CONTEXT, row.uint(5))?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(())
}

async fn with_counts(client: &impl GenericClient, mut deployments: Vec<Deployment>) -> Result<Vec<Deployment>> {
    for deployment in &mut deployments {
        counts(client, deployment).await?;
    }
    Ok(deployments)
}

async fn set_config_state(
    client: &impl GenericClient,
    ns: &str,
    pipeline: &str,
    version: u64,
    state: ConfigState,
) -> Result<()> {
    execute(
        client,
        "set a config version's state",
        "UPDATE pipeline_configs SET state = $4 WHERE namespace_id = $1 AND pipeline_id = $2 AND version = $3",
        &[&ns, &pipeline, &int(version)?, &enum_text(&state)?],
    )
    .await?;
    Ok(())
}

async fn live_version(client: &impl GenericClient, ns: &str, pipeline: &str) -> Result<Option<u64>> {
    const CONTEXT: &str = "read a pipeline's live version";
    let row = first(
        client,
        CONTEXT,
        "SELECT live_version FROM pipelines WHERE namespace_id = $1 AND pipeline_id = $2",
        &[&ns, &pipeline],
    )
    .await?
    .ok_or_else(|| not_found(format!("pipeline '{pipeline}' in namespace '{ns}'")))?;
    value(CONTEXT, row.opt_uint(0))
}

/// Makes `version` live: the previous live version becomes deprecated and the pipeline's name and description
/// follow the new one.
async fn make_live(client: &impl GenericClient, ns: &str, pipeline: &str, version: u64, now: u64) -> Result<()> {
    const CONTEXT: &str = "make a config version live";
    let config = one::<PipelineConfig>(
        client,
        CONTEXT,
        "WHERE namespace_id = $1 AND pipeline_id = $2 AND version = $3",
        &[&ns, &pipeline, &int(version)?],
        || format!("config version {version} of pipeline '{pipeline}' in namespace '{ns}'"),
    )
    .await?;
    if let Some(previous) = live_version(client, ns, pipeline).await?.filter(|v| *v != version) {
        set_config_state(client, ns, pipeline, previous, ConfigState::Deprecated).await?;
    }
    set_config_state(client, ns, pipeline, version, ConfigState::Live).await?;
    execute(
        client,
        CONTEXT,
        "UPDATE pipelines SET live_version = $3, name = $4, description = $5, modified = $6 \
         WHERE namespace_id = $1 AND pipeline_id = $2",
        &[&ns, &pipeline, &int(version)?, &config.config.name, &config.config.description, &int(now)?],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl DeploymentStore for PostgresStorage {
    async fn insert_deployment(&self, new: &NewDeployment) -> Result<(Deployment, Event)> {
        const CONTEXT: &str = "start a deployment";
        let (ns, pipeline) = (new.namespace_id.as_str(), new.pipeline_id.as_str());
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        // Locked until commit: of two deployments started at once on two servers, the second sees the first.
        let row = first(
            &tx,
            CONTEXT,
            "SELECT running_deployment FROM pipelines WHERE namespace_id = $1 AND pipeline_id = $2 FOR UPDATE",
            &[&ns, &pipeline],
        )
        .await?
        .ok_or_else(|| not_found(format!("pipeline '{pipeline}' in namespace '{ns}'")))?;
        if let Some(id) = value(CONTEXT, row.opt_uint(0))? {
            return Err(Error::Conflict {
                message: format!(
                    "deployment {id} of pipeline '{pipeline}' is still running; promote or abort it first \
                     (gofer deployment promote|abort {pipeline} {id}), or deploy with --force to abort it"
                ),
            });
        }
        let version = new.to_version;
        let exists = first(
            &tx,
            CONTEXT,
            "SELECT 1 FROM pipeline_configs WHERE namespace_id = $1 AND pipeline_id = $2 AND version = $3",
            &[&ns, &pipeline, &int(version)?],
        )
        .await?;
        if exists.is_none() {
            return Err(not_found(format!("config version {version} of pipeline '{pipeline}' in namespace '{ns}'")));
        }
        let row = first(
            &tx,
            CONTEXT,
            "UPDATE pipelines SET last_deployment_id = last_deployment_id + 1, \
                 running_deployment = last_deployment_id + 1 \
             WHERE namespace_id = $1 AND pipeline_id = $2 RETURNING last_deployment_id",
            &[&ns, &pipeline],
        )
        .await?
        .ok_or_else(|| not_found(format!("pipeline '{pipeline}' in namespace '{ns}'")))?;
        let deployment_id = value(CONTEXT, row.uint(0))?;
        if live_version(&tx, ns, pipeline).await? != Some(version) {
            set_config_state(&tx, ns, pipeline, version, ConfigState::Candidate).await?;
        }
        let (deployment, started) = new.running(deployment_id);
        let sql = format!(
            "INSERT INTO deployments ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 0, $9, $10, $11)",
            Deployment::COLUMNS
        );
        let params: [Param<'_>; 11] = [
            &deployment.namespace_id,
            &deployment.pipeline_id,
            &int(deployment_id)?,
            &opt_int(deployment.from_version)?,
            &int(version)?,
            &to_json(&deployment.strategy)?,
            &enum_text(&deployment.state)?,
            &deployment.reason,
            &int(deployment.started)?,
            &to_json(&deployment.initiator)?,
            &to_json(&deployment.timeline)?,
        ];
        execute(&tx, CONTEXT, &sql, &params).await?;
        let event = append(&tx, started).await?;
        commit(tx, CONTEXT).await?;
        Ok((deployment, event))
    }

    async fn update_deployment(&self, d: &Deployment, event: &NewEvent) -> Result<Event> {
        const CONTEXT: &str = "update a deployment";
        let (ns, pipeline, id) = (d.namespace_id.as_str(), d.pipeline_id.as_str(), d.deployment_id);
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        let row = first(
            &tx,
            CONTEXT,
            "SELECT state FROM deployments WHERE namespace_id = $1 AND pipeline_id = $2 AND deployment_id = $3 \
             FOR UPDATE",
            &[&ns, &pipeline, &int(id)?],
        )
        .await?
        .ok_or_else(|| not_found(format!("deployment {id} of pipeline '{pipeline}' in namespace '{ns}'")))?;
        let stored: DeploymentState = value(CONTEXT, row.named(0))?;
        if stored != DeploymentState::Running {
            return Err(Error::Conflict {
                message: format!("deployment {id} of pipeline '{pipeline}' already ended ({stored})"),
            });
        }
        execute(
            &tx,
            CONTEXT,
            "UPDATE deployments SET state = $4, reason = $5, ended = $6, stage = $7, stage_started = $8, \
                 timeline = $9 \
             WHERE namespace_id = $1 AND pipeline_id = $2 AND deployment_id = $3",
            &[
                &ns,
                &pipeline,
                &int(id)?,
                &enum_text(&d.state)?,
                &d.reason,
                &int(d.ended)?,
                &i64::from(d.stage),
                &int(d.stage_started)?,
                &to_json(&d.timeline)?,
            ],
        )
        .await?;
        if d.state != DeploymentState::Running {
            execute(
                &tx,
                CONTEXT,
                "UPDATE pipelines SET running_deployment = NULL WHERE namespace_id = $1 AND pipeline_id = $2",
                &[&ns, &pipeline],
            )
            .await?;
            if d.state == DeploymentState::Promoted {
                make_live(&tx, ns, pipeline, d.to_version, d.ended).await?;
            } else if live_version(&tx, ns, pipeline).await? != Some(d.to_version) {
                set_config_state(&tx, ns, pipeline, d.to_version, ConfigState::RolledBack).await?;
            }
        }
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn get_deployment(&self, namespace_id: &str, pipeline_id: &str, deployment_id: u64) -> Result<Deployment> {
        const CONTEXT: &str = "get a deployment";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let mut deployment = one::<Deployment>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 AND deployment_id = $3",
            &[&namespace_id, &pipeline_id, &int(deployment_id)?],
            || format!("deployment {deployment_id} of pipeline '{pipeline_id}' in namespace '{namespace_id}'"),
        )
        .await?;
        counts(session.client(), &mut deployment).await?;
        Ok(deployment)
    }

    async fn list_deployments(&self, namespace_id: &str, pipeline_id: &str, page: Page) -> Result<Vec<Deployment>> {
        const CONTEXT: &str = "list deployments";
        let session = self.session(Operation::Read, CONTEXT).await?;
        pipeline_exists(session.client(), namespace_id, pipeline_id, false).await?;
        let (limit, offset) = limit_offset(page);
        let deployments = all::<Deployment>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 ORDER BY deployment_id DESC LIMIT $3 OFFSET $4",
            &[&namespace_id, &pipeline_id, &limit, &offset],
        )
        .await?;
        with_counts(session.client(), deployments).await
    }

    async fn list_running_deployments(&self) -> Result<Vec<Deployment>> {
        const CONTEXT: &str = "list running deployments";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let deployments = all::<Deployment>(
            session.client(),
            CONTEXT,
            "WHERE state = 'running' ORDER BY started, namespace_id, pipeline_id",
            &[],
        )
        .await?;
        with_counts(session.client(), deployments).await
    }
}
