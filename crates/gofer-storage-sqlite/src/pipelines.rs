//! Pipelines and their config versions.

use async_trait::async_trait;
use gofer_api::config;
use gofer_api::models::{ConfigState, Event, EventKind, Pipeline, PipelineConfig, PipelineState};
use gofer_storage::{NewEvent, Page, PipelineStore, Registered, Result, Visible};
use rusqlite::{OptionalExtension, params};

use crate::codec::{Record, all, enum_text, limit_offset, one, pipeline_exists, to_json, visible_clause};
use crate::events::append;
use crate::{SqliteStorage, backend, not_found, sql_error};

#[async_trait]
impl PipelineStore for SqliteStorage {
    async fn register_config(
        &self,
        namespace_id: &str,
        config: &config::Pipeline,
        hash: &str,
        now: u64,
    ) -> Result<Registered> {
        let (ns, config, hash) = (namespace_id.to_string(), config.clone(), hash.to_string());
        self.write("register a pipeline config", move |tx| {
            const CONTEXT: &str = "register a pipeline config";
            let pipeline_id = config.id.clone();
            tx.query_row("SELECT 1 FROM namespaces WHERE id = ?1", [&ns], |_| Ok(()))
                .map_err(sql_error(CONTEXT, || format!("namespace '{ns}'")))?;
            let latest: Option<u64> = tx
                .query_row(
                    "SELECT latest_version FROM pipelines WHERE namespace_id = ?1 AND pipeline_id = ?2",
                    params![ns, pipeline_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| backend(CONTEXT, e))?;
            let version = match latest {
                Some(latest) => {
                    // The newest version still kept (the latest may have been deleted; numbers are never reused).
                    let existing = one::<PipelineConfig>(
                        tx,
                        "WHERE namespace_id = ?1 AND pipeline_id = ?2 ORDER BY version DESC LIMIT 1",
                        params![ns, pipeline_id],
                    )
                    .optional()
                    .map_err(|e| backend(CONTEXT, e))?;
                    if let Some(existing) = existing.filter(|e| e.hash == hash) {
                        return Ok(Registered { config: existing, created: false, event: None });
                    }
                    tx.execute(
                        "UPDATE pipelines SET latest_version = ?3, modified = ?4 \
                         WHERE namespace_id = ?1 AND pipeline_id = ?2",
                        params![ns, pipeline_id, latest + 1, now],
                    )
                    .map_err(|e| backend(CONTEXT, e))?;
                    latest + 1
                }
                None => {
                    tx.execute(
                        &format!(
                            "INSERT INTO pipelines ({columns}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, 1, ?6, ?6, NULL)",
                            columns = Pipeline::COLUMNS
                        ),
                        params![
                            ns,
                            pipeline_id,
                            config.name,
                            config.description,
                            enum_text(&PipelineState::Active)?,
                            now
                        ],
                    )
                    .map_err(|e| backend(CONTEXT, e))?;
                    1
                }
            };
            let stored = PipelineConfig {
                namespace_id: ns.clone(),
                pipeline_id,
                version,
                state: ConfigState::Unreleased,
                hash,
                registered: now,
                config,
            };
            tx.execute(
                &format!(
                    "INSERT INTO pipeline_configs ({columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    columns = PipelineConfig::COLUMNS
                ),
                params![
                    stored.namespace_id,
                    stored.pipeline_id,
                    stored.version,
                    enum_text(&stored.state)?,
                    stored.hash,
                    stored.registered,
                    to_json(&stored.config)?
                ],
            )
            .map_err(|e| backend(CONTEXT, e))?;
            let registered = EventKind::ConfigRegistered {
                namespace_id: stored.namespace_id.clone(),
                pipeline_id: stored.pipeline_id.clone(),
                version,
            };
            let event = append(tx, NewEvent { emitted: now, kind: registered })?;
            Ok(Registered { config: stored, created: true, event: Some(event) })
        })
        .await
    }

    async fn delete_config(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        version: u64,
        event: &NewEvent,
    ) -> Result<Event> {
        let (ns, pipeline, event) = (namespace_id.to_string(), pipeline_id.to_string(), event.clone());
        self.write("delete a config version", move |tx| {
            const CONTEXT: &str = "delete a config version";
            let what = || format!("config version {version} of pipeline '{pipeline}' in namespace '{ns}'");
            let (live, running): (Option<u64>, Option<u64>) = tx
                .query_row(
                    "SELECT live_version, running_deployment FROM pipelines \
                     WHERE namespace_id = ?1 AND pipeline_id = ?2",
                    params![ns, pipeline],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql_error(CONTEXT, || format!("pipeline '{pipeline}' in namespace '{ns}'")))?;
            tx.query_row(
                "SELECT 1 FROM pipeline_configs WHERE namespace_id = ?1 AND pipeline_id = ?2 AND version = ?3",
                params![ns, pipeline, version],
                |_| Ok(()),
            )
            .map_err(sql_error(CONTEXT, what))?;
            let refuse = |why: String| Err(gofer_storage::Error::Conflict { message: why });
            if live == Some(version) {
                return refuse(format!(
                    "version {version} of pipeline '{pipeline}' is live; deploy another version first"
                ));
            }
            if let Some(id) = running {
                let used: bool = tx
                    .query_row(
                        "SELECT from_version = ?4 OR to_version = ?4 FROM deployments \
                         WHERE namespace_id = ?1 AND pipeline_id = ?2 AND deployment_id = ?3",
                        params![ns, pipeline, id, version],
                        |r| r.get(0),
                    )
                    .map_err(|e| backend(CONTEXT, e))?;
                if used {
                    return refuse(format!(
                        "version {version} of pipeline '{pipeline}' is used by deployment {id}, which is running; \
                         promote or abort it first"
                    ));
                }
            }
            let in_flight: u64 = tx
                .query_row(
                    "SELECT count(*) FROM runs WHERE namespace_id = ?1 AND pipeline_id = ?2 AND version = ?3 \
                     AND state != 'complete'",
                    params![ns, pipeline, version],
                    |r| r.get(0),
                )
                .map_err(|e| backend(CONTEXT, e))?;
            if in_flight > 0 {
                return refuse(format!(
                    "version {version} of pipeline '{pipeline}' is run by {in_flight} run(s) not yet complete; \
                     wait for them or cancel them"
                ));
            }
            tx.execute(
                "DELETE FROM pipeline_configs WHERE namespace_id = ?1 AND pipeline_id = ?2 AND version = ?3",
                params![ns, pipeline, version],
            )
            .map_err(|e| backend(CONTEXT, e))?;
            append(tx, event)
        })
        .await
    }

    async fn get_config(&self, namespace_id: &str, pipeline_id: &str, version: u64) -> Result<PipelineConfig> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.read(move |conn| {
            one::<PipelineConfig>(
                conn,
                "\
                     WHERE namespace_id = ?1 AND pipeline_id = ?2 AND version = ?3",
                params![ns, pipeline, version],
            )
            .map_err(sql_error("get a pipeline config", || {
                format!("config version {version} of pipeline '{pipeline}' in namespace '{ns}'")
            }))
        })
        .await
    }

    async fn list_configs(&self, namespace_id: &str, pipeline_id: &str, page: Page) -> Result<Vec<PipelineConfig>> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.read(move |conn| {
            const CONTEXT: &str = "list pipeline configs";
            pipeline_exists(conn, &ns, &pipeline)?;
            let (limit, offset) = limit_offset(page);
            all::<PipelineConfig>(
                conn,
                CONTEXT,
                "WHERE namespace_id = ?1 AND pipeline_id = ?2 \
                     ORDER BY version DESC LIMIT ?3 OFFSET ?4",
                params![ns, pipeline, limit, offset],
            )
        })
        .await
    }

    async fn get_pipeline(&self, namespace_id: &str, pipeline_id: &str) -> Result<Pipeline> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.read(move |conn| {
            one::<Pipeline>(conn, "WHERE namespace_id = ?1 AND pipeline_id = ?2", params![ns, pipeline])
                .map_err(sql_error("get a pipeline", || format!("pipeline '{pipeline}' in namespace '{ns}'")))
        })
        .await
    }

    async fn list_pipelines(&self, namespace_id: &str, page: Page, visible: &Visible) -> Result<Vec<Pipeline>> {
        let (ns, visible) = (namespace_id.to_string(), visible.clone());
        self.read(move |conn| {
            const CONTEXT: &str = "list pipelines";
            let (limit, offset) = limit_offset(page);
            let (only, patterns) = visible_clause("pipeline_id", &visible, 4);
            let mut values: Vec<rusqlite::types::Value> = vec![ns.into(), limit.into(), offset.into()];
            values.extend(patterns.into_iter().map(rusqlite::types::Value::from));
            all::<Pipeline>(
                conn,
                CONTEXT,
                &format!("WHERE namespace_id = ?1{only} ORDER BY created DESC, pipeline_id DESC LIMIT ?2 OFFSET ?3"),
                rusqlite::params_from_iter(values),
            )
        })
        .await
    }

    async fn set_pipeline_state(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        state: PipelineState,
        event: &NewEvent,
    ) -> Result<Event> {
        let (ns, pipeline, event) = (namespace_id.to_string(), pipeline_id.to_string(), event.clone());
        self.write("set a pipeline's state", move |tx| {
            let changed = tx
                .execute(
                    "UPDATE pipelines SET state = ?3, modified = ?4 WHERE namespace_id = ?1 AND pipeline_id = ?2",
                    params![ns, pipeline, enum_text(&state)?, event.emitted],
                )
                .map_err(|e| backend("set a pipeline's state", e))?;
            if changed == 0 {
                return Err(not_found(format!("pipeline '{pipeline}' in namespace '{ns}'")));
            }
            append(tx, event)
        })
        .await
    }

    async fn delete_pipeline(&self, namespace_id: &str, pipeline_id: &str, event: &NewEvent) -> Result<Event> {
        let (ns, pipeline, event) = (namespace_id.to_string(), pipeline_id.to_string(), event.clone());
        self.write("delete a pipeline", move |tx| {
            let changed = tx
                .execute("DELETE FROM pipelines WHERE namespace_id = ?1 AND pipeline_id = ?2", params![ns, pipeline])
                .map_err(|e| backend("delete a pipeline", e))?;
            if changed == 0 {
                return Err(not_found(format!("pipeline '{pipeline}' in namespace '{ns}'")));
            }
            append(tx, event)
        })
        .await
    }
}
