//! Pipelines and their config versions: registering (validated, registry passwords sealed, declared
//! subscriptions checked first), deploying, enabling and deleting.

use gofer_api::config;
use gofer_api::epoch_millis;
use gofer_api::models::{EventKind, Pipeline, PipelineConfig, PipelineState};
use gofer_api::permissions::Token;
use gofer_api::requests::PageQuery;
use gofer_storage::{Registered, SubscriptionKey};

use crate::error::{Error, Result};
use crate::events;
use crate::secrets;
use crate::{Gofer, config_hash, page, paged};

impl Gofer {
    /// The pipelines of a namespace that `caller` may read, newest first (filtered in the query: pages are full).
    pub async fn list_pipelines(
        &self,
        caller: Option<&Token>,
        namespace_id: &str,
        query: PageQuery,
    ) -> Result<(Vec<Pipeline>, Option<u64>)> {
        self.storage.get_namespace(namespace_id).await?;
        let visible = self.visible_pipelines(caller, namespace_id).await?;
        let items = self.storage.list_pipelines(namespace_id, page(query)?, &visible).await?;
        Ok(paged(items, query))
    }

    pub async fn get_pipeline(&self, namespace_id: &str, pipeline_id: &str) -> Result<Pipeline> {
        self.storage.get_namespace(namespace_id).await?;
        Ok(self.storage.get_pipeline(namespace_id, pipeline_id).await?)
    }

    pub async fn set_pipeline_state(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        state: PipelineState,
    ) -> Result<Pipeline> {
        self.storage.get_namespace(namespace_id).await?;
        let changed = events::now(EventKind::PipelineStateChanged {
            namespace_id: namespace_id.into(),
            pipeline_id: pipeline_id.into(),
            state,
        });
        self.events.record(|| self.storage.set_pipeline_state(namespace_id, pipeline_id, state, &changed)).await?;
        Ok(self.storage.get_pipeline(namespace_id, pipeline_id).await?)
    }

    /// Refuses while runs of `pipeline_id` (every pipeline of the namespace when `None`) are in flight, so no
    /// container is left unowned.
    pub(crate) async fn refuse_unfinished(&self, namespace_id: &str, pipeline_id: Option<&str>) -> Result<()> {
        let active = self
            .storage
            .list_unfinished_runs()
            .await?
            .into_iter()
            .filter(|r| r.namespace_id == namespace_id && pipeline_id.is_none_or(|p| r.pipeline_id == p))
            .count();
        if active == 0 {
            return Ok(());
        }
        let what = match pipeline_id {
            Some(p) => format!("pipeline '{p}'"),
            None => format!("namespace '{namespace_id}'"),
        };
        Err(Error::conflict(format!(
            "{what} has {active} unfinished run(s); cancel them (gofer run cancel) and try again"
        )))
    }

    /// Stops the triggers of a pipeline's subscriptions (before the pipeline goes).
    pub(crate) async fn stop_subscriptions(&self, namespace_id: &str, pipeline_id: &str) -> Result<()> {
        for subscription in self.storage.list_subscriptions(namespace_id, pipeline_id).await? {
            if let Ok(extension) = self.extensions.find(&subscription.extension_id).await {
                extension.unsubscribe(&SubscriptionKey::of(&subscription)).await;
            }
        }
        Ok(())
    }

    /// Deletes the logs and objects of a pipeline (`Some`) or of a whole namespace, after their rows went.
    pub(crate) async fn delete_files(&self, namespace_id: &str, pipeline_id: Option<&str>) -> Result<()> {
        let logs = self.orchestrator.logs().remove_all(namespace_id, pipeline_id).await;
        logs.map_err(|e| Error::internal("delete logs", e))?;
        match pipeline_id {
            Some(pipeline_id) => self.objects.delete_pipeline(namespace_id, pipeline_id).await?,
            None => self.objects.delete_namespace(namespace_id).await?,
        }
        Ok(())
    }

    /// Deletes a pipeline with its history, secrets, logs and objects. Refused while runs are in flight.
    pub async fn delete_pipeline(&self, namespace_id: &str, pipeline_id: &str) -> Result<()> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        self.refuse_unfinished(namespace_id, Some(pipeline_id)).await?;
        self.stop_subscriptions(namespace_id, pipeline_id).await?;
        let deleted = events::now(EventKind::PipelineDeleted {
            namespace_id: namespace_id.into(),
            pipeline_id: pipeline_id.into(),
        });
        self.events.record(|| self.storage.delete_pipeline(namespace_id, pipeline_id, &deleted)).await?;
        self.metrics.forget_pipeline(namespace_id, pipeline_id);
        self.delete_files(namespace_id, Some(pipeline_id)).await?;
        Ok(())
    }

    /// Validates and registers a config as the pipeline's next version. An identical config registers nothing.
    pub async fn register_config(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        config: config::Pipeline,
    ) -> Result<Registered> {
        self.storage.get_namespace(namespace_id).await?;
        if config.id != pipeline_id {
            return Err(Error::invalid(format!(
                "the config is for pipeline '{}' but was sent to pipeline '{pipeline_id}'",
                config.id
            )));
        }
        config.validate().map_err(|e| Error::invalid(e.to_string()))?;
        self.check_timeouts(&config)?;
        for task in &config.tasks {
            self.orchestrator.options().mounts(namespace_id, task).map_err(Error::invalid)?;
        }
        self.check_declared_subscriptions(&config.subscriptions).await?;
        let mut config = config;
        let sealed = self.seal_registry_passwords(namespace_id, &mut config).await?;
        let hash = config_hash(&config)?;
        let registered =
            self.events.record(|| self.storage.register_config(namespace_id, &config, &hash, epoch_millis())).await?;
        // Stored after the config, which creates the pipeline they belong to; again for an unchanged config, so a
        // registration that failed half-way is completed by registering it again.
        for secret in &sealed {
            self.secrets.store_sealed(secret).await?;
        }
        Ok(registered)
    }

    /// Replaces each task's literal registry password with the marker of its sealed copy (returned, to be stored):
    /// no password is kept in a config in plain text, nor returned by the config routes. References to secrets stay
    /// as they are; a marker already in the config must name a password sealed for this pipeline.
    pub(crate) async fn seal_registry_passwords(
        &self,
        namespace_id: &str,
        config: &mut config::Pipeline,
    ) -> Result<Vec<gofer_storage::SealedSecret>> {
        let mut sealed = Vec::new();
        for task in &mut config.tasks {
            let Some(auth) = task.registry_auth.as_mut() else { continue };
            if secrets::Reference::parse(&auth.pass).is_some() {
                continue;
            }
            let secrets = &self.secrets;
            if secrets::sealed_registry_key(&auth.pass).is_some() {
                if !secrets.has_registry_password(namespace_id, &config.id, &auth.pass).await? {
                    return Err(Error::invalid(format!(
                        "task '{}': registry_auth.pass '{}' names no password sealed for this pipeline; give the \
                         password itself or a secret (pipeline_secret{{{{KEY}}}})",
                        task.id, auth.pass
                    )));
                }
                continue;
            }
            let (marker, secret) =
                secrets.seal_registry_password(namespace_id, &config.id, &task.id, &auth.pass).await?;
            auth.pass = marker;
            sealed.push(secret);
        }
        Ok(sealed)
    }

    /// Checks the subscriptions a config declares before anything is stored: the extension exists, is enabled and
    /// takes the settings. (Deploying subscribes; an extension may still refuse then, and the deploy changes
    /// nothing.)
    pub(crate) async fn check_declared_subscriptions(&self, declared: &[config::Subscription]) -> Result<()> {
        for d in declared {
            let refused = |message: String| {
                Error::invalid(format!(
                    "the config declares subscription '{}' to extension '{}': {message}",
                    d.label, d.extension
                ))
            };
            let extension = self.extensions.find(&d.extension).await.map_err(|e| refused(e.to_string()))?;
            if !self.extensions.is_enabled(&d.extension).await? {
                return Err(refused(format!("the extension is disabled (gofer extension enable {})", d.extension)));
            }
            extension.validate(&d.settings).map_err(|e| refused(format!("settings refused: {e}")))?;
        }
        Ok(())
    }

    /// Refuses timeouts beyond the server's maximum, naming the field.
    pub(crate) fn check_timeouts(&self, config: &config::Pipeline) -> Result<()> {
        let max = self.orchestrator.options().max_timeout.as_secs();
        let too_long = |what: String, secs: u64| {
            Error::invalid(format!(
                "{what}: timeout {secs}s is longer than this server's maximum of {max}s (runs.max_timeout_seconds)"
            ))
        };
        if let Some(secs) = config.timeout_seconds.filter(|s| *s > max) {
            return Err(too_long(format!("pipeline '{}'", config.id), secs));
        }
        if let Some(secs) = config.keep_failed_seconds.filter(|s| *s > max) {
            return Err(too_long(format!("pipeline '{}' keep_failed_seconds", config.id), secs));
        }
        for task in &config.tasks {
            if let Some(secs) = task.timeout_seconds.filter(|s| *s > max) {
                return Err(too_long(format!("task '{}'", task.id), secs));
            }
        }
        Ok(())
    }

    /// Deletes a registered version; refused for the live version, one a running deployment uses and one that runs
    /// not yet complete run.
    pub async fn delete_config(&self, namespace_id: &str, pipeline_id: &str, version: u64) -> Result<()> {
        self.storage.get_namespace(namespace_id).await?;
        let deleted = events::now(EventKind::ConfigDeleted {
            namespace_id: namespace_id.into(),
            pipeline_id: pipeline_id.into(),
            version,
        });
        self.events.record(|| self.storage.delete_config(namespace_id, pipeline_id, version, &deleted)).await?;
        Ok(())
    }

    pub async fn list_configs(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        query: PageQuery,
    ) -> Result<(Vec<PipelineConfig>, Option<u64>)> {
        self.storage.get_namespace(namespace_id).await?;
        let items = self.storage.list_configs(namespace_id, pipeline_id, page(query)?).await?;
        Ok(paged(items, query))
    }

    pub async fn get_config(&self, namespace_id: &str, pipeline_id: &str, version: u64) -> Result<PipelineConfig> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        Ok(self.storage.get_config(namespace_id, pipeline_id, version).await?)
    }
}
