//! Runs and their task executions: starting (into the queue), reading, cancelling, logs; and the `Trigger` the
//! extensions fire.

use std::collections::BTreeMap;

use gofer_api::models::{Initiator, PipelineState, Run, TaskExecution, Variable, VariableSource};
use gofer_api::requests::PageQuery;
use gofer_storage::{LogKey, LogStream, Recorded, RunFilter, SubscriptionKey};

use crate::error::{Error, Result};
use crate::extensions::{Fired, Firing, Trigger};
use crate::orchestrator::RunKey;
use crate::{Gofer, page, paged};

impl Gofer {
    /// Who starts a run: the holder of the caller's token (an extension for `extension:<id>`), else the
    /// development-mode user.
    pub fn initiator_of(caller: Option<&gofer_api::permissions::Token>) -> Initiator {
        match caller {
            Some(token) => match token.user.strip_prefix("extension:") {
                Some(id) => Initiator { kind: "extension".into(), name: id.into() },
                None => Initiator { kind: "user".into(), name: token.user.clone() },
            },
            None => Initiator { kind: "user".into(), name: "anonymous".into() },
        }
    }

    /// Stores a pending run and queues it: of `version` if given, else of the version the deployment in progress
    /// routes it to, else of the live version.
    pub async fn start_run(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        variables: BTreeMap<String, String>,
        version: Option<u64>,
        initiator: Initiator,
    ) -> Result<Run> {
        let mut variables = variables;
        if initiator.kind == "extension" {
            // Its tasks know which extension started them, whether or not it said so itself (extensions written
            // for the earlier Gofer do not).
            // It cannot pass another extension's name.
            variables.insert("GOFER_EXTENSION_ID".into(), initiator.name.clone());
        }
        self.start_run_with(namespace_id, pipeline_id, variables, version, VariableSource::RunOptions, initiator).await
    }

    pub(crate) async fn start_run_with(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        variables: BTreeMap<String, String>,
        version: Option<u64>,
        source: VariableSource,
        initiator: Initiator,
    ) -> Result<Run> {
        self.storage.get_namespace(namespace_id).await?;
        let pipeline = self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        if self.storage.get_system().await?.maintenance {
            return Err(Error::Unavailable {
                message:
                    "Gofer is in maintenance mode and refuses new runs; end it with `gofer system maintenance off`"
                        .into(),
            });
        }
        if pipeline.state == PipelineState::Disabled {
            return Err(Error::Unavailable {
                message: format!(
                    "pipeline '{pipeline_id}' is disabled and takes no new runs; enable it with `gofer pipeline \
                     enable {pipeline_id}`"
                ),
            });
        }
        for key in variables.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(Error::invalid(format!(
                    "run variable name '{key}' is not valid: it must be non-empty and contain no '=' or NUL"
                )));
            }
        }
        let variables = variables.into_iter().map(|(key, value)| Variable { key, value, source }).collect();
        self.insert_run(&pipeline, version, variables, initiator).await
    }

    pub async fn list_runs(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        query: PageQuery,
    ) -> Result<(Vec<Run>, Option<u64>)> {
        self.list_runs_where(namespace_id, pipeline_id, RunFilter::default(), query).await
    }

    /// A pipeline's runs in a state or with a status, newest first.
    pub async fn list_runs_where(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        filter: RunFilter,
        query: PageQuery,
    ) -> Result<(Vec<Run>, Option<u64>)> {
        let items = self.storage.list_runs(namespace_id, pipeline_id, filter, page(query)?).await?;
        Ok(paged(items, query))
    }

    pub async fn get_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> Result<Run> {
        Ok(self.storage.get_run(namespace_id, pipeline_id, run_id).await?)
    }

    pub async fn cancel_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> Result<Run> {
        let key = RunKey { namespace_id: namespace_id.into(), pipeline_id: pipeline_id.into(), run_id };
        self.storage.get_run(namespace_id, pipeline_id, run_id).await?;
        self.orchestrator.cancel(&key, None).await?;
        Ok(self.storage.get_run(namespace_id, pipeline_id, run_id).await?)
    }

    /// Cancels one task of a run; the rest of the run goes on as the DAG says.
    pub async fn cancel_task(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
    ) -> Result<TaskExecution> {
        let key = RunKey { namespace_id: namespace_id.into(), pipeline_id: pipeline_id.into(), run_id };
        self.storage.get_task_execution(namespace_id, pipeline_id, run_id, task_id).await?;
        self.orchestrator.cancel(&key, Some(task_id)).await?;
        Ok(self.storage.get_task_execution(namespace_id, pipeline_id, run_id, task_id).await?)
    }

    pub async fn list_task_executions(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
    ) -> Result<Vec<TaskExecution>> {
        self.storage.get_run(namespace_id, pipeline_id, run_id).await?;
        Ok(self.storage.list_task_executions(namespace_id, pipeline_id, run_id).await?)
    }

    pub async fn get_task_execution(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
    ) -> Result<TaskExecution> {
        self.storage.get_run(namespace_id, pipeline_id, run_id).await?;
        Ok(self.storage.get_task_execution(namespace_id, pipeline_id, run_id, task_id).await?)
    }

    /// A task's log from the start; with `follow`, live until the task ends.
    pub async fn task_logs(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        task_id: &str,
        attempt: Option<u32>,
        follow: bool,
    ) -> Result<LogStream> {
        let execution = self.get_task_execution(namespace_id, pipeline_id, run_id, task_id).await?;
        if execution.logs_expired {
            return Err(Error::NotFound {
                what: format!("logs of task '{task_id}' in run {run_id} (removed by log retention)"),
            });
        }
        let attempt = attempt.unwrap_or(execution.attempt);
        if attempt == 0 || attempt > execution.attempt {
            return Err(Error::NotFound {
                what: format!("attempt {attempt} of task '{task_id}' in run {run_id} (it has {})", execution.attempt),
            });
        }
        let key = LogKey {
            namespace_id: execution.namespace_id,
            pipeline_id: execution.pipeline_id,
            run_id,
            task_id: execution.task_id,
            attempt,
        };
        self.orchestrator.logs().read(&key, follow).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::NotFound { what: format!("logs of task '{task_id}' in run {run_id}") }
            }
            _ => Error::internal(format!("read the logs of task '{task_id}'"), e),
        })
    }
}

#[async_trait::async_trait]
impl Trigger for Gofer {
    async fn fire(&self, key: &SubscriptionKey, firing: Firing, extra: BTreeMap<String, String>) -> Result<Fired> {
        let (expected, at) = match firing {
            Firing::Tick { previous, at } => (Some(previous), at),
            Firing::Event { at } => (None, at),
        };
        // Record the firing first: a crash right after may lose this run, but never starts it twice; and of the
        // servers firing the same tick, only the one that records it starts a run.
        match self.storage.record_subscription_fired(key, expected, at).await {
            Ok(Recorded::Yes) => {}
            Ok(Recorded::Already { last_fired }) => return Ok(Fired::Already { last_fired }),
            Err(e) => {
                self.metrics.trigger_fired(&key.extension_id, false);
                tracing::warn!(%key, error = %e, "could not record a subscription's firing; not starting a run");
                return Err(e.into());
            }
        }
        let mut variables = extra;
        variables.insert("GOFER_EXTENSION_ID".into(), key.extension_id.clone());
        variables.insert("GOFER_EXTENSION_SUBSCRIPTION".into(), key.label.clone());
        let initiator = Initiator { kind: "extension".into(), name: key.extension_id.clone() };
        match self
            .start_run_with(&key.namespace_id, &key.pipeline_id, variables, None, VariableSource::Extension, initiator)
            .await
        {
            Ok(run) => {
                self.metrics.trigger_fired(&key.extension_id, true);
                tracing::info!(%key, run = run.run_id, "subscription started a run");
                Ok(Fired::Run(run.run_id))
            }
            Err(e) => {
                self.metrics.trigger_fired(&key.extension_id, false);
                tracing::warn!(%key, error = %e, "subscription could not start a run");
                Err(e)
            }
        }
    }
}
