//! Pipelines and their config versions.

use async_trait::async_trait;
use gofer_api::config;
use gofer_api::models::{ConfigState, Event, EventKind, Pipeline, PipelineConfig, PipelineState};
use gofer_storage::{Error, NewEvent, Operation, Page, PipelineStore, Registered, Result, Visible};

use crate::codec::{
    Columns, Param, Record, all, enum_text, execute, first, int, limit_offset, one, opt, pipeline_exists, to_json,
    value, visible_clause,
};
use crate::events::append;
use crate::{PostgresStorage, commit, not_found};

#[async_trait]
impl PipelineStore for PostgresStorage {
    async fn register_config(
        &self,
        namespace_id: &str,
        config: &config::Pipeline,
        hash: &str,
        now: u64,
    ) -> Result<Registered> {
        const CONTEXT: &str = "register a pipeline config";
        let ns = namespace_id;
        let pipeline_id = config.id.as_str();
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        if first(&tx, CONTEXT, "SELECT 1 FROM namespaces WHERE id = $1 FOR SHARE", &[&ns]).await?.is_none() {
            return Err(not_found(format!("namespace '{ns}'")));
        }
        // Created here, or locked: of two servers registering at once, the second waits and sees the first's.
        let sql = format!(
            "INSERT INTO pipelines ({}) VALUES ($1, $2, $3, $4, $5, NULL, 1, $6, $6, NULL) ON CONFLICT DO NOTHING",
            Pipeline::COLUMNS
        );
        let state = enum_text(&PipelineState::Active)?;
        let created =
            execute(&tx, CONTEXT, &sql, &[&ns, &pipeline_id, &config.name, &config.description, &state, &int(now)?])
                .await?
                == 1;
        let version = if created {
            1
        } else {
            let latest = first(
                &tx,
                CONTEXT,
                "SELECT latest_version FROM pipelines WHERE namespace_id = $1 AND pipeline_id = $2 FOR UPDATE",
                &[&ns, &pipeline_id],
            )
            .await?
            .ok_or_else(|| not_found(format!("pipeline '{pipeline_id}' in namespace '{ns}'")))?;
            let latest = value(CONTEXT, latest.uint(0))?;
            // The newest version still kept (the latest may have been deleted; numbers are never reused).
            let existing = opt::<PipelineConfig>(
                &tx,
                CONTEXT,
                "WHERE namespace_id = $1 AND pipeline_id = $2 ORDER BY version DESC LIMIT 1",
                &[&ns, &pipeline_id],
            )
            .await?;
            if let Some(existing) = existing.filter(|e| e.hash == hash) {
                commit(tx, CONTEXT).await?;
                return Ok(Registered { config: existing, created: false, event: None });
            }
            execute(
                &tx,
                CONTEXT,
                "UPDATE pipelines SET latest_version = $3, modified = $4 WHERE namespace_id = $1 AND pipeline_id = $2",
                &[&ns, &pipeline_id, &int(latest + 1)?, &int(now)?],
            )
            .await?;
            latest + 1
        };
        let stored = PipelineConfig {
            namespace_id: ns.to_string(),
            pipeline_id: pipeline_id.to_string(),
            version,
            state: ConfigState::Unreleased,
            hash: hash.to_string(),
            registered: now,
            config: config.clone(),
        };
        let sql =
            format!("INSERT INTO pipeline_configs ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)", PipelineConfig::COLUMNS);
        let params: [Param<'_>; 7] = [
            &stored.namespace_id,
            &stored.pipeline_id,
            &int(version)?,
            &enum_text(&stored.state)?,
            &stored.hash,
            &int(now)?,
            &to_json(&stored.config)?,
        ];
        execute(&tx, CONTEXT, &sql, &params).await?;
        let registered = EventKind::ConfigRegistered {
            namespace_id: stored.namespace_id.clone(),
            pipeline_id: stored.pipeline_id.clone(),
            version,
        };
        let event = append(&tx, NewEvent { emitted: now, kind: registered }).await?;
        commit(tx, CONTEXT).await?;
        Ok(Registered { config: stored, created: true, event: Some(event) })
    }

    async fn delete_config(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        version: u64,
        event: &NewEvent,
    ) -> Result<Event> {
        const CONTEXT: &str = "delete a config version";
        let (ns, pipeline) = (namespace_id, pipeline_id);
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        // Locked: a run or deployment of this version cannot start while it is judged and deleted.
        let row = first(
            &tx,
            CONTEXT,
            "SELECT live_version, running_deployment FROM pipelines WHERE namespace_id = $1 AND pipeline_id = $2 \
             FOR UPDATE",
            &[&ns, &pipeline],
        )
        .await?
        .ok_or_else(|| not_found(format!("pipeline '{pipeline}' in namespace '{ns}'")))?;
        let (live, running) = (value(CONTEXT, row.opt_uint(0))?, value(CONTEXT, row.opt_uint(1))?);
        let v = int(version)?;
        let exists = first(
            &tx,
            CONTEXT,
            "SELECT 1 FROM pipeline_configs WHERE namespace_id = $1 AND pipeline_id = $2 AND version = $3",
            &[&ns, &pipeline, &v],
        )
        .await?;
        if exists.is_none() {
            return Err(not_found(format!("config version {version} of pipeline '{pipeline}' in namespace '{ns}'")));
        }
        let refuse = |why: String| Err(Error::Conflict { message: why });
        if live == Some(version) {
            return refuse(format!("version {version} of pipeline '{pipeline}' is live; deploy another version first"));
        }
        if let Some(id) = running {
            let used = first(
                &tx,
                CONTEXT,
                "SELECT from_version = $4 OR to_version = $4 FROM deployments \
                 WHERE namespace_id = $1 AND pipeline_id = $2 AND deployment_id = $3",
                &[&ns, &pipeline, &int(id)?, &v],
            )
            .await?
            .map(|row| value(CONTEXT, row.flag(0)))
            .transpose()?
            .unwrap_or(false);
            if used {
                return refuse(format!(
                    "version {version} of pipeline '{pipeline}' is used by deployment {id}, which is running; \
                     promote or abort it first"
                ));
            }
        }
        let in_flight = first(
            &tx,
            CONTEXT,
            "SELECT count(*) FROM runs WHERE namespace_id = $1 AND pipeline_id = $2 AND version = $3 \
             AND state <> 'complete'",
            &[&ns, &pipeline, &v],
        )
        .await?
        .map(|row| value(CONTEXT, row.uint(0)))
        .transpose()?
        .unwrap_or(0);
        if in_flight > 0 {
            return refuse(format!(
                "version {version} of pipeline '{pipeline}' is run by {in_flight} run(s) not yet complete; \
                 wait for them or cancel them"
            ));
        }
        execute(
            &tx,
            CONTEXT,
            "DELETE FROM pipeline_configs WHERE namespace_id = $1 AND pipeline_id = $2 AND version = $3",
            &[&ns, &pipeline, &v],
        )
        .await?;
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn get_config(&self, namespace_id: &str, pipeline_id: &str, version: u64) -> Result<PipelineConfig> {
        const CONTEXT: &str = "get a pipeline config";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<PipelineConfig>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 AND version = $3",
            &[&namespace_id, &pipeline_id, &int(version)?],
            || format!("config version {version} of pipeline '{pipeline_id}' in namespace '{namespace_id}'"),
        )
        .await
    }

    async fn list_configs(&self, namespace_id: &str, pipeline_id: &str, page: Page) -> Result<Vec<PipelineConfig>> {
        const CONTEXT: &str = "list pipeline configs";
        let session = self.session(Operation::Read, CONTEXT).await?;
        pipeline_exists(session.client(), namespace_id, pipeline_id, false).await?;
        let (limit, offset) = limit_offset(page);
        all::<PipelineConfig>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 ORDER BY version DESC LIMIT $3 OFFSET $4",
            &[&namespace_id, &pipeline_id, &limit, &offset],
        )
        .await
    }

    async fn get_pipeline(&self, namespace_id: &str, pipeline_id: &str) -> Result<Pipeline> {
        const CONTEXT: &str = "get a pipeline";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<Pipeline>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2",
            &[&namespace_id, &pipeline_id],
            || format!("pipeline '{pipeline_id}' in namespace '{namespace_id}'"),
        )
        .await
    }

    async fn list_pipelines(&self, namespace_id: &str, page: Page, visible: &Visible) -> Result<Vec<Pipeline>> {
        const CONTEXT: &str = "list pipelines";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let (limit, offset) = limit_offset(page);
        let (only, patterns) = visible_clause("pipeline_id", visible, 4);
        let mut params: Vec<Param<'_>> = vec![&namespace_id, &limit, &offset];
        params.extend(patterns.iter().map(|p| p as Param<'_>));
        all::<Pipeline>(
            session.client(),
            CONTEXT,
            &format!("WHERE namespace_id = $1{only} ORDER BY created DESC, pipeline_id DESC LIMIT $2 OFFSET $3"),
            &params,
        )
        .await
    }

    async fn set_pipeline_state(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        state: PipelineState,
        event: &NewEvent,
    ) -> Result<Event> {
        const CONTEXT: &str = "set a pipeline's state";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        let changed = execute(
            &tx,
            CONTEXT,
            "UPDATE pipelines SET state = $3, modified = $4 WHERE namespace_id = $1 AND pipeline_id = $2",
            &[&namespace_id, &pipeline_id, &enum_text(&state)?, &int(event.emitted)?],
        )
        .await?;
        if changed == 0 {
            return Err(not_found(format!("pipeline '{pipeline_id}' in namespace '{namespace_id}'")));
        }
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn delete_pipeline(&self, namespace_id: &str, pipeline_id: &str, event: &NewEvent) -> Result<Event> {
        const CONTEXT: &str = "delete a pipeline";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        let changed = execute(
            &tx,
            CONTEXT,
            "DELETE FROM pipelines WHERE namespace_id = $1 AND pipeline_id = $2",
            &[&namespace_id, &pipeline_id],
        )
        .await?;
        if changed == 0 {
            return Err(not_found(format!("pipeline '{pipeline_id}' in namespace '{namespace_id}'")));
        }
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }
}
