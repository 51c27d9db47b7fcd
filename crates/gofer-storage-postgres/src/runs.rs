//! Runs and their task executions.

use async_trait::async_trait;
use gofer_api::models::{Event, Run, TaskExecution};
use gofer_storage::{CancelRequest, NewEvent, NewRun, Operation, Page, Result, RunFilter, RunStore};

use crate::cluster::fence;
use crate::codec::{
    CancelRow, Columns, Param, Record, all, enum_text, execute, first, insert, int, limit_offset, one, opt_int,
    pipeline_exists, rows, to_json, value,
};
use crate::events::append;
use crate::{PostgresStorage, commit, not_found};

#[async_trait]
impl RunStore for PostgresStorage {
    async fn insert_run(&self, new: NewRun) -> Result<(Run, Event)> {
        const CONTEXT: &str = "start a run";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        // The pipeline's row stays locked until commit: run ids are given one at a time across servers.
        let row = first(
            &tx,
            CONTEXT,
            "UPDATE pipelines SET last_run_id = last_run_id + 1 \
             WHERE namespace_id = $1 AND pipeline_id = $2 RETURNING last_run_id",
            &[&new.namespace_id, &new.pipeline_id],
        )
        .await?
        .ok_or_else(|| not_found(format!("pipeline '{}' in namespace '{}'", new.pipeline_id, new.namespace_id)))?;
        let run_id = value(CONTEXT, row.uint(0))?;
        let (run, queued) = new.pending(run_id);
        let sql = format!(
            "INSERT INTO runs ({}, deployment_id, deployment_stage) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, 0, 0, $8, $9, $10, $11, $12)",
            Run::COLUMNS
        );
        let params: [Param<'_>; 12] = [
            &run.namespace_id,
            &run.pipeline_id,
            &int(run.run_id)?,
            &int(run.version)?,
            &enum_text(&run.state)?,
            &enum_text(&run.status)?,
            &int(run.created)?,
            &to_json(&run.initiator)?,
            &to_json(&run.variables)?,
            &run.routing.as_ref().map(to_json).transpose()?,
            &opt_int(run.routing.as_ref().map(|r| r.deployment_id))?,
            &run.routing.as_ref().map(|r| i64::from(r.stage)),
        ];
        execute(&tx, CONTEXT, &sql, &params).await?;
        let event = append(&tx, queued).await?;
        commit(tx, CONTEXT).await?;
        Ok((run, event))
    }

    async fn get_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> Result<Run> {
        const CONTEXT: &str = "get a run";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<Run>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3",
            &[&namespace_id, &pipeline_id, &int(run_id)?],
            || format!("run {run_id} of pipeline '{pipeline_id}' in namespace '{namespace_id}'"),
        )
        .await
    }

    async fn list_runs(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        filter: RunFilter,
        page: Page,
    ) -> Result<Vec<Run>> {
        const CONTEXT: &str = "list runs";
        let state = filter.state.as_ref().map(enum_text).transpose()?;
        let status = filter.status.as_ref().map(enum_text).transpose()?;
        let session = self.session(Operation::Read, CONTEXT).await?;
        let (limit, offset) = limit_offset(page);
        let runs = all::<Run>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 AND ($5::TEXT IS NULL OR state = $5) \
             AND ($6::TEXT IS NULL OR status = $6) ORDER BY run_id DESC LIMIT $3 OFFSET $4",
            &[&namespace_id, &pipeline_id, &limit, &offset, &state, &status],
        )
        .await?;
        // Only an empty page can mean the pipeline does not exist; the hot path skips the check.
        if runs.is_empty() {
            pipeline_exists(session.client(), namespace_id, pipeline_id, false).await?;
        }
        Ok(runs)
    }

    async fn update_run(&self, run: &Run, event: &NewEvent) -> Result<Event> {
        const CONTEXT: &str = "update a run";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        fence(&tx, self.server(), &run.namespace_id, &run.pipeline_id, run.run_id).await?;
        let changed = execute(
            &tx,
            CONTEXT,
            "UPDATE runs SET state = $4, status = $5, status_reason = $6, started = $7, ended = $8 \
             WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3",
            &[
                &run.namespace_id,
                &run.pipeline_id,
                &int(run.run_id)?,
                &enum_text(&run.state)?,
                &enum_text(&run.status)?,
                &run.status_reason.as_ref().map(to_json).transpose()?,
                &int(run.started)?,
                &int(run.ended)?,
            ],
        )
        .await?;
        if changed == 0 {
            return Err(not_found(format!("run {} of pipeline '{}'", run.run_id, run.pipeline_id)));
        }
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn list_unfinished_runs(&self) -> Result<Vec<Run>> {
        const CONTEXT: &str = "list unfinished runs";
        let session = self.session(Operation::Read, CONTEXT).await?;
        all::<Run>(
            session.client(),
            CONTEXT,
            "WHERE state <> 'complete' ORDER BY created, namespace_id, pipeline_id, run_id",
            &[],
        )
        .await
    }

    async fn insert_task_execution(&self, te: &TaskExecution, event: &NewEvent) -> Result<Event> {
        const CONTEXT: &str = "store a task execution";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        fence(&tx, self.server(), &te.namespace_id, &te.pipeline_id, te.run_id).await?;
        let sql = format!(
            "INSERT INTO task_executions ({}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            TaskExecution::COLUMNS
        );
        let columns = TaskColumns::of(te)?;
        insert(&tx, CONTEXT, &sql, &columns.params(), || {
            format!("task execution '{}' of run {}", te.task_id, te.run_id)
        })
        .await?;
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn update_task_execution(&self, te: &TaskExecution, event: &NewEvent) -> Result<Event> {
        const CONTEXT: &str = "update a task execution";
        // Placeholders follow `TaskColumns::changing`; `created` and `task` never change.
        const SQL: &str = "UPDATE task_executions SET started = $5, ended = $6, state = $7, status = $8, \
                           status_reason = $9, exit_code = $10, image_digest = $11, container_id = $12, \
                           variables = $13, attempt = $14, attempts = $15, logs_expired = $16 \
                           WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3 AND task_id = $4";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        fence(&tx, self.server(), &te.namespace_id, &te.pipeline_id, te.run_id).await?;
        let columns = TaskColumns::of(te)?;
        let changed = execute(&tx, CONTEXT, SQL, &columns.changing()).await?;
        if changed == 0 {
            return Err(not_found(format!("task execution '{}' of run {}", te.task_id, te.run_id)));
        }
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn get_task_execution(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
    ) -> Result<TaskExecution> {
        const CONTEXT: &str = "get a task execution";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<TaskExecution>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3 AND task_id = $4",
            &[&namespace_id, &pipeline_id, &int(run_id)?, &task_id],
            || format!("task '{task_id}' in run {run_id} of pipeline '{pipeline_id}'"),
        )
        .await
    }

    async fn list_task_executions(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
    ) -> Result<Vec<TaskExecution>> {
        const CONTEXT: &str = "list task executions";
        let session = self.session(Operation::Read, CONTEXT).await?;
        all::<TaskExecution>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3 ORDER BY task_id",
            &[&namespace_id, &pipeline_id, &int(run_id)?],
        )
        .await
    }

    async fn request_cancel(&self, request: &CancelRequest) -> Result<Event> {
        const CONTEXT: &str = "store a cancel request";
        let (ns, pipeline, run_id) = (&request.namespace_id, &request.pipeline_id, request.run_id);
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        let run = int(run_id)?;
        let found = first(
            &tx,
            CONTEXT,
            "SELECT 1 FROM runs WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3 FOR SHARE",
            &[ns, pipeline, &run],
        )
        .await?;
        if found.is_none() {
            return Err(not_found(format!("run {run_id} of pipeline '{pipeline}'")));
        }
        execute(
            &tx,
            CONTEXT,
            "INSERT INTO cancel_requests (namespace_id, pipeline_id, run_id, task_id, reason, requested) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[ns, pipeline, &run, &request.task_id, &to_json(&request.reason)?, &int(request.requested)?],
        )
        .await?;
        let event = append(&tx, request.event()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn list_cancel_requests(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
    ) -> Result<Vec<CancelRequest>> {
        const CONTEXT: &str = "list cancel requests";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let found = all::<CancelRow>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3 ORDER BY id",
            &[&namespace_id, &pipeline_id, &int(run_id)?],
        )
        .await?;
        Ok(found.into_iter().map(|r| r.0).collect())
    }

    async fn expire_logs(&self, namespace_id: &str, pipeline_id: &str, up_to_run_id: u64) -> Result<Vec<u64>> {
        const CONTEXT: &str = "expire task logs";
        let session = self.session(Operation::Write, CONTEXT).await?;
        // One statement: the runs whose logs it marked are the ones it returns.
        let marked = rows(
            session.client(),
            CONTEXT,
            "UPDATE task_executions SET logs_expired = TRUE WHERE namespace_id = $1 AND pipeline_id = $2 \
             AND run_id <= $3 AND NOT logs_expired RETURNING run_id",
            &[&namespace_id, &pipeline_id, &int(up_to_run_id)?],
        )
        .await?;
        let mut runs = marked.iter().map(|row| value(CONTEXT, row.uint(0))).collect::<Result<Vec<u64>>>()?;
        runs.sort_unstable();
        runs.dedup();
        Ok(runs)
    }
}

/// A task execution's columns as bound parameters $1..$18, in `TaskExecution::COLUMNS` order.
struct TaskColumns<'a> {
    te: &'a TaskExecution,
    run_id: i64,
    created: i64,
    started: i64,
    ended: i64,
    state: String,
    status: String,
    status_reason: Option<String>,
    variables: String,
    task: String,
    attempt: i64,
    attempts: String,
}

impl<'a> TaskColumns<'a> {
    fn of(te: &'a TaskExecution) -> Result<Self> {
        Ok(Self {
            te,
            run_id: int(te.run_id)?,
            created: int(te.created)?,
            started: int(te.started)?,
            ended: int(te.ended)?,
            state: enum_text(&te.state)?,
            status: enum_text(&te.status)?,
            status_reason: te.status_reason.as_ref().map(to_json).transpose()?,
            variables: to_json(&te.variables)?,
            task: to_json(&te.task)?,
            attempt: i64::from(te.attempt),
            attempts: to_json(&te.attempts)?,
        })
    }

    fn params(&self) -> [Param<'_>; 18] {
        [
            &self.te.namespace_id,
            &self.te.pipeline_id,
            &self.run_id,
            &self.te.task_id,
            &self.created,
            &self.started,
            &self.ended,
            &self.state,
            &self.status,
            &self.status_reason,
            &self.te.exit_code,
            &self.te.image_digest,
            &self.te.container_id,
            &self.variables,
            &self.task,
            &self.attempt,
            &self.attempts,
            &self.te.logs_expired,
        ]
    }

    /// The key ($1..$4), then the columns an update writes ($5..$16): all but `created` and `task`.
    fn changing(&self) -> [Param<'_>; 16] {
        let [
            ns,
            pipeline,
            run,
            task_id,
            _created,
            started,
            ended,
            state,
            status,
            reason,
            exit,
            digest,
            container,
            variables,
            _task,
            attempt,
            attempts,
            expired,
        ] = self.params();
        [
            ns, pipeline, run, task_id, started, ended, state, status, reason, exit, digest, container, variables,
            attempt, attempts, expired,
        ]
    }
}
