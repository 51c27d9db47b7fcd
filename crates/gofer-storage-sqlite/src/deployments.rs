//! Deployments, and the run counts they are judged by (counted from the runs they routed, so they can never
//! disagree with the runs).

use async_trait::async_trait;
use gofer_api::models::{ConfigState, Deployment, DeploymentState, Event, PipelineConfig, RunCounts};
use gofer_storage::{DeploymentStore, Error, NewDeployment, NewEvent, Page, Result};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{Record, all, enum_text, limit_offset, one, pipeline_exists, query_values, to_json};
use crate::events::append;
use crate::{SqliteStorage, backend, sql_error};

/// The runs a deployment routed, by version and stage.
fn counts(conn: &Connection, deployment: &mut Deployment) -> Result<()> {
    deployment.counts = query_values(
        conn,
        "count a deployment's runs",
        "SELECT version, deployment_stage, count(*), \
                sum(state = 'complete' AND status = 'successful'), \
                sum(state = 'complete' AND status = 'failed'), \
                sum(state = 'complete' AND status = 'cancelled') \
         FROM runs WHERE namespace_id = ?1 AND pipeline_id = ?2 AND deployment_id = ?3 \
         GROUP BY deployment_stage, version ORDER BY deployment_stage, version",
        params![deployment.namespace_id, deployment.pipeline_id, deployment.deployment_id],
        |row| {
            Ok(RunCounts {
                version: row.get(0)?,
                stage: row.get(1)?,
                started: row.get(2)?,
                successful: row.get(3)?,
                failed: row.get(4)?,
                cancelled: row.get(5)?,
            })
        },
    )?;
    Ok(())
}

fn with_counts(conn: &Connection, mut deployments: Vec<Deployment>) -> Result<Vec<Deployment>> {
    for deployment in &mut deployments {
        counts(conn, deployment)?;
    }
    Ok(deployments)
}

fn set_config_state(conn: &Connection, ns: &str, pipeline: &str, version: u64, state: ConfigState) -> Result<()> {
    conn.execute(
        "UPDATE pipeline_configs SET state = ?4 WHERE namespace_id = ?1 AND pipeline_id = ?2 AND version = ?3",
        params![ns, pipeline, version, enum_text(&state)?],
    )
    .map_err(|e| backend("set a config version's state", e))?;
    Ok(())
}

fn live_version(conn: &Connection, ns: &str, pipeline: &str) -> Result<Option<u64>> {
    conn.query_row(
        "SELECT live_version FROM pipelines WHERE namespace_id = ?1 AND pipeline_id = ?2",
        params![ns, pipeline],
        |r| r.get(0),
    )
    .map_err(sql_error("read a pipeline's live version", || format!("pipeline '{pipeline}' in namespace '{ns}'")))
}

/// Makes `version` live: the previous live version becomes deprecated and the pipeline's name and description
/// follow the new one.
fn make_live(conn: &Connection, ns: &str, pipeline: &str, version: u64, now: u64) -> Result<()> {
    const CONTEXT: &str = "make a config version live";
    let config = one::<PipelineConfig>(
        conn,
        "WHERE namespace_id = ?1 AND pipeline_id = ?2 AND version = ?3",
        params![ns, pipeline, version],
    )
    .map_err(sql_error(CONTEXT, || format!("config version {version} of pipeline '{pipeline}' in namespace '{ns}'")))?;
    if let Some(previous) = live_version(conn, ns, pipeline)?.filter(|v| *v != version) {
        set_config_state(conn, ns, pipeline, previous, ConfigState::Deprecated)?;
    }
    set_config_state(conn, ns, pipeline, version, ConfigState::Live)?;
    conn.execute(
        "UPDATE pipelines SET live_version = ?3, name = ?4, description = ?5, modified = ?6 \
         WHERE namespace_id = ?1 AND pipeline_id = ?2",
        params![ns, pipeline, version, config.config.name, config.config.description, now],
    )
    .map_err(|e| backend(CONTEXT, e))?;
    Ok(())
}

#[async_trait]
impl DeploymentStore for SqliteStorage {
    async fn insert_deployment(&self, new: &NewDeployment) -> Result<(Deployment, Event)> {
        let new = new.clone();
        self.write("start a deployment", move |tx| {
            const CONTEXT: &str = "start a deployment";
            let (ns, pipeline) = (new.namespace_id.as_str(), new.pipeline_id.as_str());
            let running: Option<Option<u64>> = tx
                .query_row(
                    "SELECT running_deployment FROM pipelines WHERE namespace_id = ?1 AND pipeline_id = ?2",
                    params![ns, pipeline],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| backend(CONTEXT, e))?;
            match running {
                None => return Err(crate::not_found(format!("pipeline '{pipeline}' in namespace '{ns}'"))),
                Some(Some(id)) => {
                    return Err(Error::Conflict {
                        message: format!(
                            "deployment {id} of pipeline '{pipeline}' is still running; promote or abort it first \
                             (gofer deployment promote|abort {pipeline} {id}), or deploy with --force to abort it"
                        ),
                    });
                }
                Some(None) => {}
            }
            let version = new.to_version;
            tx.query_row(
                "SELECT 1 FROM pipeline_configs WHERE namespace_id = ?1 AND pipeline_id = ?2 AND version = ?3",
                params![ns, pipeline, version],
                |_| Ok(()),
            )
            .map_err(sql_error(CONTEXT, || {
                format!("config version {version} of pipeline '{pipeline}' in namespace '{ns}'")
            }))?;
            let deployment_id: u64 = tx
                .query_row(
                    "UPDATE pipelines SET last_deployment_id = last_deployment_id + 1, \
                         running_deployment = last_deployment_id + 1 \
                     WHERE namespace_id = ?1 AND pipeline_id = ?2 RETURNING last_deployment_id",
                    params![ns, pipeline],
                    |r| r.get(0),
                )
                .map_err(|e| backend(CONTEXT, e))?;
            if live_version(tx, ns, pipeline)? != Some(version) {
                set_config_state(tx, ns, pipeline, version, ConfigState::Candidate)?;
            }
            let (deployment, started) = new.running(deployment_id);
            tx.execute(
                &format!(
                    "INSERT INTO deployments ({columns}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, ?9, ?10, ?11)",
                    columns = Deployment::COLUMNS
                ),
                params![
                    deployment.namespace_id,
                    deployment.pipeline_id,
                    deployment.deployment_id,
                    deployment.from_version,
                    deployment.to_version,
                    to_json(&deployment.strategy)?,
                    enum_text(&deployment.state)?,
                    deployment.reason,
                    deployment.started,
                    to_json(&deployment.initiator)?,
                    to_json(&deployment.timeline)?
                ],
            )
            .map_err(|e| backend(CONTEXT, e))?;
            let event = append(tx, started)?;
            Ok((deployment, event))
        })
        .await
    }

    async fn update_deployment(&self, deployment: &Deployment, event: &NewEvent) -> Result<Event> {
        let (d, event) = (deployment.clone(), event.clone());
        self.write("update a deployment", move |tx| {
            const CONTEXT: &str = "update a deployment";
            let (ns, pipeline, id) = (d.namespace_id.as_str(), d.pipeline_id.as_str(), d.deployment_id);
            let stored: DeploymentState = tx
                .query_row(
                    "SELECT state FROM deployments WHERE namespace_id = ?1 AND pipeline_id = ?2 AND deployment_id = ?3",
                    params![ns, pipeline, id],
                    |r| r.get::<_, String>(0),
                )
                .map_err(sql_error(CONTEXT, || format!("deployment {id} of pipeline '{pipeline}' in namespace '{ns}'")))
                .and_then(|text| {
                    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| backend(CONTEXT, e))
                })?;
            if stored != DeploymentState::Running {
                return Err(Error::Conflict {
                    message: format!("deployment {id} of pipeline '{pipeline}' already ended ({stored})"),
                });
            }
            tx.execute(
                "UPDATE deployments SET state = ?4, reason = ?5, ended = ?6, stage = ?7, stage_started = ?8, \
                     timeline = ?9 \
                 WHERE namespace_id = ?1 AND pipeline_id = ?2 AND deployment_id = ?3",
                params![
                    ns,
                    pipeline,
                    id,
                    enum_text(&d.state)?,
                    d.reason,
                    d.ended,
                    d.stage,
                    d.stage_started,
                    to_json(&d.timeline)?
                ],
            )
            .map_err(|e| backend(CONTEXT, e))?;
            if d.state != DeploymentState::Running {
                tx.execute(
                    "UPDATE pipelines SET running_deployment = NULL WHERE namespace_id = ?1 AND pipeline_id = ?2",
                    params![ns, pipeline],
                )
                .map_err(|e| backend(CONTEXT, e))?;
                if d.state == DeploymentState::Promoted {
                    make_live(tx, ns, pipeline, d.to_version, d.ended)?;
                } else if live_version(tx, ns, pipeline)? != Some(d.to_version) {
                    set_config_state(tx, ns, pipeline, d.to_version, ConfigState::RolledBack)?;
                }
            }
            append(tx, event)
        })
        .await
    }

    async fn get_deployment(&self, namespace_id: &str, pipeline_id: &str, deployment_id: u64) -> Result<Deployment> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.read(move |conn| {
            let mut deployment = one::<Deployment>(
                conn,
                "WHERE namespace_id = ?1 AND pipeline_id = ?2 AND deployment_id = ?3",
                params![ns, pipeline, deployment_id],
            )
            .map_err(sql_error("get a deployment", || {
                format!("deployment {deployment_id} of pipeline '{pipeline}' in namespace '{ns}'")
            }))?;
            counts(conn, &mut deployment)?;
            Ok(deployment)
        })
        .await
    }

    async fn list_deployments(&self, namespace_id: &str, pipeline_id: &str, page: Page) -> Result<Vec<Deployment>> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.read(move |conn| {
            const CONTEXT: &str = "list deployments";
            pipeline_exists(conn, &ns, &pipeline)?;
            let (limit, offset) = limit_offset(page);
            let deployments = all::<Deployment>(
                conn,
                CONTEXT,
                "WHERE namespace_id = ?1 AND pipeline_id = ?2 ORDER BY deployment_id DESC LIMIT ?3 OFFSET ?4",
                params![ns, pipeline, limit, offset],
            )?;
            with_counts(conn, deployments)
        })
        .await
    }

    async fn list_running_deployments(&self) -> Result<Vec<Deployment>> {
        self.read(move |conn| {
            let deployments = all::<Deployment>(
                conn,
                "list running deployments",
                "WHERE state = 'running' ORDER BY started, namespace_id, pipeline_id",
                [],
            )?;
            with_counts(conn, deployments)
        })
        .await
    }
}
