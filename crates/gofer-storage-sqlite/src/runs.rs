//! Runs and their task executions.

use async_trait::async_trait;
use gofer_api::models::{Event, Run, TaskExecution};
use gofer_storage::{CancelRequest, NewEvent, NewRun, Page, Result, RunFilter, RunStore};
use rusqlite::params;

use crate::codec::{CancelRow, Record, all, enum_text, limit_offset, one, pipeline_exists, query_values, to_json};
use crate::events::append;
use crate::{SqliteStorage, backend, not_found, sql_error};

#[async_trait]
impl RunStore for SqliteStorage {
    async fn insert_run(&self, new: NewRun) -> Result<(Run, Event)> {
        self.write("start a run", move |tx| {
            const CONTEXT: &str = "start a run";
            let run_id: u64 = tx
                .query_row(
                    "UPDATE pipelines SET last_run_id = last_run_id + 1 \
                     WHERE namespace_id = ?1 AND pipeline_id = ?2 RETURNING last_run_id",
                    params![new.namespace_id, new.pipeline_id],
                    |r| r.get(0),
                )
                .map_err(sql_error(CONTEXT, || {
                    format!("pipeline '{}' in namespace '{}'", new.pipeline_id, new.namespace_id)
                }))?;
            let (run, queued) = new.pending(run_id);
            tx.execute(
                &format!(
                    "INSERT INTO runs ({columns}, deployment_id, deployment_stage) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, 0, 0, ?8, ?9, ?10, ?11, ?12)",
                    columns = Run::COLUMNS
                ),
                params![
                    run.namespace_id,
                    run.pipeline_id,
                    run.run_id,
                    run.version,
                    enum_text(&run.state)?,
                    enum_text(&run.status)?,
                    run.created,
                    to_json(&run.initiator)?,
                    to_json(&run.variables)?,
                    run.routing.as_ref().map(to_json).transpose()?,
                    run.routing.as_ref().map(|r| r.deployment_id),
                    run.routing.as_ref().map(|r| r.stage)
                ],
            )
            .map_err(|e| backend(CONTEXT, e))?;
            let event = append(tx, queued)?;
            Ok((run, event))
        })
        .await
    }

    async fn get_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> Result<Run> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.read(move |conn| {
            one::<Run>(
                conn,
                "WHERE namespace_id = ?1 AND pipeline_id = ?2 AND run_id = ?3",
                params![ns, pipeline, run_id],
            )
            .map_err(sql_error("get a run", || format!("run {run_id} of pipeline '{pipeline}' in namespace '{ns}'")))
        })
        .await
    }

    async fn list_runs(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        filter: RunFilter,
        page: Page,
    ) -> Result<Vec<Run>> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        let state = filter.state.as_ref().map(enum_text).transpose()?;
        let status = filter.status.as_ref().map(enum_text).transpose()?;
        self.read(move |conn| {
            const CONTEXT: &str = "list runs";
            let (limit, offset) = limit_offset(page);
            let runs: Vec<Run> = all::<Run>(
                conn,
                CONTEXT,
                "WHERE namespace_id = ?1 AND pipeline_id = ?2 AND (?5 IS NULL OR state = ?5) \
                     AND (?6 IS NULL OR status = ?6) ORDER BY run_id DESC LIMIT ?3 OFFSET ?4",
                params![ns, pipeline, limit, offset, state, status],
            )?;
            // Only an empty page can mean the pipeline does not exist; the hot path skips the check.
            if runs.is_empty() {
                pipeline_exists(conn, &ns, &pipeline)?;
            }
            Ok(runs)
        })
        .await
    }

    async fn update_run(&self, run: &Run, event: &NewEvent) -> Result<Event> {
        let (run, event) = (run.clone(), event.clone());
        self.write("update a run", move |tx| {
            let changed = tx
                .execute(
                    "UPDATE runs SET state = ?4, status = ?5, status_reason = ?6, started = ?7, ended = ?8 \
                     WHERE namespace_id = ?1 AND pipeline_id = ?2 AND run_id = ?3",
                    params![
                        run.namespace_id,
                        run.pipeline_id,
                        run.run_id,
                        enum_text(&run.state)?,
                        enum_text(&run.status)?,
                        run.status_reason.as_ref().map(to_json).transpose()?,
                        run.started,
                        run.ended
                    ],
                )
                .map_err(|e| backend("update a run", e))?;
            if changed == 0 {
                return Err(not_found(format!("run {} of pipeline '{}'", run.run_id, run.pipeline_id)));
            }
            append(tx, event)
        })
        .await
    }

    async fn list_unfinished_runs(&self) -> Result<Vec<Run>> {
        self.read(move |conn| {
            const CONTEXT: &str = "list unfinished runs";
            all::<Run>(
                conn,
                CONTEXT,
                "WHERE state != 'complete' \
                     ORDER BY created, namespace_id, pipeline_id, run_id",
                [],
            )
        })
        .await
    }

    async fn insert_task_execution(&self, execution: &TaskExecution, event: &NewEvent) -> Result<Event> {
        let (te, event) = (execution.clone(), event.clone());
        self.write("store a task execution", move |tx| {
            let sql = format!(
                "INSERT INTO task_executions ({columns}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                columns = TaskExecution::COLUMNS
            );
            with_columns(&te, |values| {
                tx.execute(&sql, values).map_err(sql_error("store a task execution", || {
                    format!("task execution '{}' of run {}", te.task_id, te.run_id)
                }))
            })?;
            append(tx, event)
        })
        .await
    }

    async fn update_task_execution(&self, execution: &TaskExecution, event: &NewEvent) -> Result<Event> {
        let (te, event) = (execution.clone(), event.clone());
        self.write("update a task execution", move |tx| {
            // Placeholders follow `TaskExecution::COLUMNS`; `created` (?5) and `task` (?15) never change.
            const SQL: &str = "UPDATE task_executions SET started = ?6, ended = ?7, state = ?8, status = ?9, \
                               status_reason = ?10, exit_code = ?11, image_digest = ?12, container_id = ?13, \
                               variables = ?14, attempt = ?16, attempts = ?17, logs_expired = ?18 \
                               WHERE namespace_id = ?1 AND pipeline_id = ?2 AND run_id = ?3 AND task_id = ?4";
            let changed =
                with_columns(&te, |values| tx.execute(SQL, values).map_err(|e| backend("update a task execution", e)))?;
            if changed == 0 {
                return Err(not_found(format!("task execution '{}' of run {}", te.task_id, te.run_id)));
            }
            append(tx, event)
        })
        .await
    }

    async fn get_task_execution(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
    ) -> Result<TaskExecution> {
        let (ns, pipeline, task) = (namespace_id.to_string(), pipeline_id.to_string(), task_id.to_string());
        self.read(move |conn| {
            one::<TaskExecution>(
                conn,
                "\
                     WHERE namespace_id = ?1 AND pipeline_id = ?2 AND run_id = ?3 AND task_id = ?4",
                params![ns, pipeline, run_id, task],
            )
            .map_err(sql_error("get a task execution", || {
                format!("task '{task}' in run {run_id} of pipeline '{pipeline}'")
            }))
        })
        .await
    }

    async fn list_task_executions(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
    ) -> Result<Vec<TaskExecution>> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.read(move |conn| {
            const CONTEXT: &str = "list task executions";
            all::<TaskExecution>(
                conn,
                CONTEXT,
                "\
                     WHERE namespace_id = ?1 AND pipeline_id = ?2 AND run_id = ?3 ORDER BY task_id",
                params![ns, pipeline, run_id],
            )
        })
        .await
    }

    async fn request_cancel(&self, request: &CancelRequest) -> Result<Event> {
        const CONTEXT: &str = "store a cancel request";
        let request = request.clone();
        self.write(CONTEXT, move |tx| {
            let run = (&request.namespace_id, &request.pipeline_id, request.run_id);
            tx.query_row(
                "SELECT 1 FROM runs WHERE namespace_id = ?1 AND pipeline_id = ?2 AND run_id = ?3",
                params![run.0, run.1, run.2],
                |_| Ok(()),
            )
            .map_err(sql_error(CONTEXT, || format!("run {} of pipeline '{}'", run.2, run.1)))?;
            tx.execute(
                "INSERT INTO cancel_requests (namespace_id, pipeline_id, run_id, task_id, reason, requested) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run.0, run.1, run.2, request.task_id, to_json(&request.reason)?, request.requested],
            )
            .map_err(|e| backend(CONTEXT, e))?;
            append(tx, request.event())
        })
        .await
    }

    async fn list_cancel_requests(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
    ) -> Result<Vec<CancelRequest>> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.read(move |conn| {
            all::<CancelRow>(
                conn,
                "list cancel requests",
                "WHERE namespace_id = ?1 AND pipeline_id = ?2 AND run_id = ?3 ORDER BY id",
                params![ns, pipeline, run_id],
            )
            .map(|rows| rows.into_iter().map(|r| r.0).collect())
        })
        .await
    }

    async fn expire_logs(&self, namespace_id: &str, pipeline_id: &str, up_to_run_id: u64) -> Result<Vec<u64>> {
        let (ns, pipeline) = (namespace_id.to_string(), pipeline_id.to_string());
        self.write("expire task logs", move |tx| {
            const CONTEXT: &str = "expire task logs";
            let runs: Vec<u64> = query_values(
                tx,
                CONTEXT,
                "SELECT DISTINCT run_id FROM task_executions WHERE namespace_id = ?1 AND pipeline_id = ?2 \
                 AND run_id <= ?3 AND logs_expired = 0 ORDER BY run_id",
                params![ns, pipeline, up_to_run_id],
                |r| r.get(0),
            )?;
            tx.execute(
                "UPDATE task_executions SET logs_expired = 1 WHERE namespace_id = ?1 AND pipeline_id = ?2 \
                 AND run_id <= ?3 AND logs_expired = 0",
                params![ns, pipeline, up_to_run_id],
            )
            .map_err(|e| backend(CONTEXT, e))?;
            Ok(runs)
        })
        .await
    }
}

/// Runs `statement` with a task execution's columns as its parameters ?1..?18, in `TaskExecution::COLUMNS` order.
fn with_columns<R>(te: &TaskExecution, statement: impl FnOnce(&[&dyn rusqlite::ToSql]) -> Result<R>) -> Result<R> {
    statement(params![
        te.namespace_id,
        te.pipeline_id,
        te.run_id,
        te.task_id,
        te.created,
        te.started,
        te.ended,
        enum_text(&te.state)?,
        enum_text(&te.status)?,
        te.status_reason.as_ref().map(to_json).transpose()?,
        te.exit_code,
        te.image_digest,
        te.container_id,
        to_json(&te.variables)?,
        to_json(&te.task)?,
        te.attempt,
        to_json(&te.attempts)?,
        te.logs_expired
    ])
}
