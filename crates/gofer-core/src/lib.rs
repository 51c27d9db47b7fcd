//! Gofer's server core: the services behind every API route and the orchestrator that runs pipelines.
//!
//! This crate knows storage only through the `gofer_storage::Storage` trait and containers only through the
//! `gofer_scheduler::Scheduler` trait. It never sees SQL, HTTP or a container engine's API.

pub mod auth;
pub mod dag;
pub mod error;
pub mod events;
pub mod extensions;
pub mod logs;
pub mod mask;
pub mod objects;
pub mod orchestrator;
pub mod secrets;
pub mod text;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use gofer_api::config::{self, validate_identifier};
use gofer_api::epoch_millis;
use gofer_api::models::{
    DEFAULT_NAMESPACE, Event, EventKind, Initiator, Namespace, Pipeline, PipelineConfig, PipelineState, Run,
    SystemSettings, TaskExecution, Variable, VariableSource,
};
use gofer_api::models::{Extension, ExtensionKind, ExtensionRegistration, ObjectInfo, Secret, Subscription};
use gofer_api::permissions::{Action, Permission, Resource, Token};
use gofer_api::requests::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, PageQuery};
use gofer_api::requests::{InstallExtensionRequest, PutSecretRequest, SubscribeRequest};
use gofer_storage::{EventFilter, NewRun, Page, Registered, SecretScope, Storage, SubscriptionKey};
use sha2::{Digest, Sha256};

pub use crate::error::{Error, Result};
use crate::events::Events;
use crate::extensions::{Extension as _, Extensions, ExternalEvent, ExternalResponse, Trigger};
use crate::logs::LogKey;
use crate::objects::{ObjectScope, Objects};
use crate::orchestrator::{Orchestrator, RunKey};
use crate::secrets::Secrets;

/// What reading a secret's value through the API needs (metadata needs only `secrets:read`).
const REVEAL_SECRETS: Permission = Permission::new(Resource::Secrets, Action::Reveal);

/// The services behind the API. Cheap to clone; every handler calls exactly one method.
#[derive(Clone)]
pub struct Gofer {
    storage: Arc<dyn Storage>,
    orchestrator: Orchestrator,
    events: Events,
    extensions: Extensions,
    /// Installs and uninstalls one at a time (an extension's container name is its id).
    installing: Arc<tokio::sync::Mutex<()>>,
    secrets: Option<Secrets>,
    objects: Option<Objects>,
}

/// One change a deploy made to a pipeline's subscriptions, to undo it if the deploy fails.
struct Reconciled {
    old: Option<Subscription>,
    new: Option<Subscription>,
}

/// A page as asked for, and whether another page follows.
fn page(query: PageQuery) -> Result<Page> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(Error::invalid(format!("limit must be between 1 and {MAX_PAGE_LIMIT}, got {limit}")));
    }
    // Ask for one more than requested to learn whether a next page exists.
    Ok(Page::new(limit + 1, query.offset.unwrap_or(0)))
}

/// Trims the look-ahead item and computes the next offset.
pub fn paged<T>(mut items: Vec<T>, query: PageQuery) -> (Vec<T>, Option<u64>) {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_LIMIT) as usize;
    let offset = query.offset.unwrap_or(0);
    if items.len() > limit {
        items.truncate(limit);
        (items, Some(offset + limit as u64))
    } else {
        (items, None)
    }
}

/// The largest id (run id, version, event id) Gofer stores: ids are signed 64-bit in every database.
pub const MAX_ID: u64 = i64::MAX as u64;

/// Refuses a number no stored id can reach, naming the parameter.
pub fn check_id(what: &str, value: u64) -> Result<()> {
    if value > MAX_ID {
        return Err(Error::invalid(format!("{what} {value} is too large; ids go up to {MAX_ID}")));
    }
    Ok(())
}

fn identifier(what: &str, value: &str) -> Result<()> {
    validate_identifier(what, value).map_err(|e| Error::invalid(e.to_string()))
}

/// SHA-256 of the config's canonical JSON (maps are ordered, so equal configs hash equally).
pub fn config_hash(config: &config::Pipeline) -> Result<String> {
    let json = serde_json::to_string(config).map_err(|e| Error::internal("hash a pipeline config", e))?;
    let digest = Sha256::digest(json.as_bytes());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

impl Gofer {
    pub fn new(storage: Arc<dyn Storage>, orchestrator: Orchestrator, events: Events, extensions: Extensions) -> Self {
        Self { storage, orchestrator, events, extensions, installing: Arc::default(), secrets: None, objects: None }
    }

    /// Serves secrets through the API and hands them to tasks.
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.orchestrator.set_secrets(secrets.clone());
        self.secrets = Some(secrets);
        self
    }

    /// Serves objects through the API and hands them to tasks.
    pub fn with_objects(mut self, objects: Objects) -> Self {
        self.orchestrator.set_objects(objects.clone());
        self.objects = Some(objects);
        self
    }

    /// The object store, once the scope is known to exist.
    async fn objects_of(&self, scope: &ObjectScope) -> Result<&Objects> {
        match scope {
            ObjectScope::Pipeline { namespace_id, pipeline_id } => {
                self.pipeline_scope(namespace_id, pipeline_id).await?;
            }
            ObjectScope::Run { namespace_id, pipeline_id, run_id } => {
                self.pipeline_scope(namespace_id, pipeline_id).await?;
                self.storage.get_run(namespace_id, pipeline_id, *run_id).await?;
            }
            ObjectScope::Extension { extension_id } => {
                self.extensions.get(extension_id)?;
            }
        }
        self.objects.as_ref().ok_or_else(|| Error::Unavailable { message: "this Gofer has no object store".into() })
    }

    // --- objects ---

    /// Stores an object from a byte stream (replacing one with the same key).
    pub async fn put_object<S, E>(&self, scope: &ObjectScope, key: &str, body: S) -> Result<ObjectInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.objects_of(scope).await?.put(scope, key, body).await
    }

    pub async fn get_object(
        &self,
        scope: &ObjectScope,
        key: &str,
    ) -> Result<(ObjectInfo, futures::stream::BoxStream<'static, std::io::Result<Bytes>>)> {
        self.objects_of(scope).await?.get(scope, key).await
    }

    pub async fn list_objects(&self, scope: &ObjectScope) -> Result<Vec<ObjectInfo>> {
        self.objects_of(scope).await?.list(scope).await
    }

    pub async fn delete_object(&self, scope: &ObjectScope, key: &str) -> Result<()> {
        self.objects_of(scope).await?.delete(scope, key).await
    }

    /// The largest object an upload may carry.
    pub fn max_object_bytes(&self) -> Option<u64> {
        self.objects.as_ref().map(|o| o.limits().max_object_bytes)
    }

    fn secrets(&self) -> Result<&Secrets> {
        self.secrets.as_ref().ok_or_else(|| Error::Unavailable { message: "this Gofer has no secret store".into() })
    }

    /// Where a pipeline's secrets live, once the namespace and pipeline are known to exist.
    async fn pipeline_scope(&self, namespace_id: &str, pipeline_id: &str) -> Result<SecretScope> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        Ok(SecretScope::Pipeline { namespace_id: namespace_id.into(), pipeline_id: pipeline_id.into() })
    }

    // --- secrets ---

    pub async fn put_pipeline_secret(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        key: &str,
        request: PutSecretRequest,
    ) -> Result<Secret> {
        let scope = self.pipeline_scope(namespace_id, pipeline_id).await?;
        self.secrets()?.put(scope, key, &request.value, request.namespaces).await
    }

    /// A pipeline secret's metadata; with `include_value` also its value, which needs `secrets:reveal`.
    pub async fn get_pipeline_secret(
        &self,
        caller: Option<&Token>,
        namespace_id: &str,
        pipeline_id: &str,
        key: &str,
        include_value: bool,
    ) -> Result<Secret> {
        let scope = self.pipeline_scope(namespace_id, pipeline_id).await?;
        if include_value {
            self.require(caller, REVEAL_SECRETS, Some(namespace_id), Some(pipeline_id)).await?;
        }
        self.secrets()?.get(&scope, key, include_value).await
    }

    pub async fn list_pipeline_secrets(&self, namespace_id: &str, pipeline_id: &str) -> Result<Vec<Secret>> {
        let scope = self.pipeline_scope(namespace_id, pipeline_id).await?;
        self.secrets()?.list(&scope).await
    }

    pub async fn delete_pipeline_secret(&self, namespace_id: &str, pipeline_id: &str, key: &str) -> Result<()> {
        let scope = self.pipeline_scope(namespace_id, pipeline_id).await?;
        self.secrets()?.delete(&scope, key).await
    }

    pub async fn put_global_secret(&self, key: &str, request: PutSecretRequest) -> Result<Secret> {
        self.secrets()?.put(SecretScope::Global, key, &request.value, request.namespaces).await
    }

    /// A global secret's metadata; with `include_value` also its value, which needs `secrets:reveal`.
    pub async fn get_global_secret(&self, caller: Option<&Token>, key: &str, include_value: bool) -> Result<Secret> {
        if include_value {
            self.require(caller, REVEAL_SECRETS, None, None).await?;
        }
        self.secrets()?.get(&SecretScope::Global, key, include_value).await
    }

    pub async fn list_global_secrets(&self) -> Result<Vec<Secret>> {
        self.secrets()?.list(&SecretScope::Global).await
    }

    pub async fn delete_global_secret(&self, key: &str) -> Result<()> {
        self.secrets()?.delete(&SecretScope::Global, key).await
    }

    pub fn orchestrator(&self) -> &Orchestrator {
        &self.orchestrator
    }

    /// Makes sure the `default` namespace exists.
    pub async fn ensure_default_namespace(&self) -> Result<()> {
        match self.storage.get_namespace(DEFAULT_NAMESPACE).await {
            Ok(_) => Ok(()),
            Err(gofer_storage::Error::NotFound { .. }) => {
                let now = epoch_millis();
                let namespace = Namespace {
                    id: DEFAULT_NAMESPACE.into(),
                    name: "Default".into(),
                    description: "The namespace every Gofer has.".into(),
                    created: now,
                    modified: now,
                };
                match self.storage.create_namespace(&namespace).await {
                    Ok(()) | Err(gofer_storage::Error::Exists { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    // --- namespaces ---

    pub async fn list_namespaces(&self, query: PageQuery) -> Result<(Vec<Namespace>, Option<u64>)> {
        let items = self.storage.list_namespaces(page(query)?).await?;
        Ok(paged(items, query))
    }

    pub async fn get_namespace(&self, id: &str) -> Result<Namespace> {
        Ok(self.storage.get_namespace(id).await?)
    }

    pub async fn create_namespace(&self, id: &str, name: &str, description: &str) -> Result<Namespace> {
        identifier("namespace id", id)?;
        text::check("namespace name", name, text::MAX_NAME)?;
        text::check("namespace description", description, text::MAX_DESCRIPTION)?;
        let now = epoch_millis();
        let namespace = Namespace {
            id: id.into(),
            name: if name.is_empty() { id.into() } else { name.into() },
            description: description.into(),
            created: now,
            modified: now,
        };
        self.storage.create_namespace(&namespace).await?;
        Ok(namespace)
    }

    /// Changes a namespace's name or description.
    pub async fn update_namespace(
        &self,
        id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Namespace> {
        let mut namespace = self.storage.get_namespace(id).await?;
        if let Some(name) = name {
            if name.trim().is_empty() {
                return Err(Error::invalid("a namespace's name cannot be empty"));
            }
            text::check("namespace name", &name, text::MAX_NAME)?;
            namespace.name = name;
        }
        if let Some(description) = description {
            text::check("namespace description", &description, text::MAX_DESCRIPTION)?;
            namespace.description = description;
        }
        namespace.modified = epoch_millis();
        self.storage.update_namespace(&namespace).await?;
        Ok(namespace)
    }

    // --- pipelines and configs ---

    pub async fn list_pipelines(&self, namespace_id: &str, query: PageQuery) -> Result<(Vec<Pipeline>, Option<u64>)> {
        self.storage.get_namespace(namespace_id).await?;
        let items = self.storage.list_pipelines(namespace_id, page(query)?).await?;
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
        self.storage.set_pipeline_state(namespace_id, pipeline_id, state, epoch_millis()).await?;
        self.events
            .publish(EventKind::PipelineStateChanged {
                namespace_id: namespace_id.into(),
                pipeline_id: pipeline_id.into(),
                state,
            })
            .await;
        Ok(self.storage.get_pipeline(namespace_id, pipeline_id).await?)
    }

    /// Refuses while runs of `pipeline_id` (every pipeline of the namespace when `None`) are in flight, so no
    /// container is left unowned.
    async fn refuse_unfinished(&self, namespace_id: &str, pipeline_id: Option<&str>) -> Result<()> {
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
    async fn stop_subscriptions(&self, namespace_id: &str, pipeline_id: &str) -> Result<()> {
        for subscription in self.storage.list_subscriptions(namespace_id, pipeline_id).await? {
            if let Ok(extension) = self.extensions.get(&subscription.extension_id) {
                extension.unsubscribe(&SubscriptionKey::of(&subscription)).await;
            }
        }
        Ok(())
    }

    /// Deletes the logs and objects of a pipeline (`Some`) or of a whole namespace, after their rows went.
    async fn delete_files(&self, namespace_id: &str, pipeline_id: Option<&str>) -> Result<()> {
        let logs = self.orchestrator.logs().remove_all(namespace_id, pipeline_id).await;
        logs.map_err(|e| Error::internal("delete logs", e))?;
        if let Some(objects) = &self.objects {
            match pipeline_id {
                Some(pipeline_id) => objects.delete_pipeline(namespace_id, pipeline_id).await?,
                None => objects.delete_namespace(namespace_id).await?,
            }
        }
        Ok(())
    }

    /// Deletes a pipeline with its history, secrets, logs and objects. Refused while runs are in flight.
    pub async fn delete_pipeline(&self, namespace_id: &str, pipeline_id: &str) -> Result<()> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        self.refuse_unfinished(namespace_id, Some(pipeline_id)).await?;
        self.stop_subscriptions(namespace_id, pipeline_id).await?;
        self.storage.delete_pipeline(namespace_id, pipeline_id).await?;
        self.delete_files(namespace_id, Some(pipeline_id)).await?;
        self.events
            .publish(EventKind::PipelineDeleted { namespace_id: namespace_id.into(), pipeline_id: pipeline_id.into() })
            .await;
        Ok(())
    }

    /// Deletes a namespace with all its pipelines (and their secrets, logs and objects). The default namespace
    /// stays; refused while runs in the namespace are in flight.
    pub async fn delete_namespace(&self, namespace_id: &str) -> Result<()> {
        if namespace_id == DEFAULT_NAMESPACE {
            return Err(Error::invalid("the default namespace cannot be deleted"));
        }
        self.storage.get_namespace(namespace_id).await?;
        self.refuse_unfinished(namespace_id, None).await?;
        let mut offset = 0;
        loop {
            let pipelines = self.storage.list_pipelines(namespace_id, Page::new(MAX_PAGE_LIMIT, offset)).await?;
            for pipeline in &pipelines {
                self.stop_subscriptions(namespace_id, &pipeline.pipeline_id).await?;
            }
            if (pipelines.len() as u64) < MAX_PAGE_LIMIT {
                break;
            }
            offset += MAX_PAGE_LIMIT;
        }
        self.storage.delete_namespace(namespace_id).await?;
        self.delete_files(namespace_id, None).await?;
        self.events.publish(EventKind::NamespaceDeleted { namespace_id: namespace_id.into() }).await;
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
        self.check_declared_subscriptions(&config.subscriptions).await?;
        let mut config = config;
        let sealed = self.seal_registry_passwords(namespace_id, &mut config).await?;
        let hash = config_hash(&config)?;
        let registered = self.storage.register_config(namespace_id, &config, &hash, epoch_millis()).await?;
        // Stored after the config, which creates the pipeline they belong to; again for an unchanged config, so a
        // registration that failed half-way is completed by registering it again.
        for secret in &sealed {
            self.secrets()?.store_sealed(secret).await?;
        }
        if registered.created {
            self.events
                .publish(EventKind::ConfigRegistered {
                    namespace_id: namespace_id.into(),
                    pipeline_id: pipeline_id.into(),
                    version: registered.config.version,
                })
                .await;
        }
        Ok(registered)
    }

    /// Replaces each task's literal registry password with the marker of its sealed copy (returned, to be stored):
    /// no password is kept in a config in plain text, nor returned by the config routes. References to secrets stay
    /// as they are; a marker already in the config must name a password sealed for this pipeline.
    async fn seal_registry_passwords(
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
            let secrets = self.secrets.as_ref().ok_or_else(|| Error::Unavailable {
                message: format!(
                    "task '{}' has a registry password, but this Gofer has no secret store to seal it in; name a \
                     secret instead (pipeline_secret{{{{KEY}}}})",
                    task.id
                ),
            })?;
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
    async fn check_declared_subscriptions(&self, declared: &[config::Subscription]) -> Result<()> {
        for d in declared {
            let refused = |message: String| {
                Error::invalid(format!(
                    "the config declares subscription '{}' to extension '{}': {message}",
                    d.label, d.extension
                ))
            };
            let extension = self.extensions.get(&d.extension).map_err(|e| refused(e.to_string()))?;
            if !self.extensions.is_enabled(&d.extension).await? {
                return Err(refused(format!("the extension is disabled (gofer extension enable {})", d.extension)));
            }
            extension.validate(&d.settings).map_err(|message| refused(format!("settings refused: {message}")))?;
        }
        Ok(())
    }

    /// Refuses timeouts beyond the server's maximum, naming the field.
    fn check_timeouts(&self, config: &config::Pipeline) -> Result<()> {
        let max = self.orchestrator.options().max_timeout.as_secs();
        let too_long = |what: String, secs: u64| {
            Error::invalid(format!(
                "{what}: timeout {secs}s is longer than this server's maximum of {max}s (runs.max_timeout_seconds)"
            ))
        };
        if let Some(secs) = config.timeout_seconds.filter(|s| *s > max) {
            return Err(too_long(format!("pipeline '{}'", config.id), secs));
        }
        for task in &config.tasks {
            if let Some(secs) = task.timeout_seconds.filter(|s| *s > max) {
                return Err(too_long(format!("task '{}'", task.id), secs));
            }
        }
        Ok(())
    }

    /// Makes a registered version the one new runs use.
    /// Subscriptions the config declares are reconciled first; if an extension refuses one, nothing changes.
    pub async fn deploy_config(&self, namespace_id: &str, pipeline_id: &str, version: u64) -> Result<PipelineConfig> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        let target = self.storage.get_config(namespace_id, pipeline_id, version).await?;
        let undo = self.reconcile_subscriptions(namespace_id, pipeline_id, &target.config.subscriptions).await?;
        let deployed = match self.storage.deploy_config(namespace_id, pipeline_id, version, epoch_millis()).await {
            Ok(deployed) => deployed,
            Err(e) => {
                self.undo_reconcile(undo).await;
                return Err(e.into());
            }
        };
        self.events
            .publish(EventKind::ConfigDeployed {
                namespace_id: namespace_id.into(),
                pipeline_id: pipeline_id.into(),
                version,
            })
            .await;
        Ok(deployed)
    }

    /// Makes the pipeline's declared subscriptions equal `declared`: new ones are subscribed, changed ones
    /// re-subscribed (keeping their switch and last tick), dropped ones unsubscribed. Subscriptions made through the
    /// API are left alone, unless the code declares the same extension and label, which takes them over. Everything
    /// is checked before anything changes; if an extension still refuses one, what was done is undone.
    async fn reconcile_subscriptions(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        declared: &[config::Subscription],
    ) -> Result<Vec<Reconciled>> {
        let refused = |d: &config::Subscription, message: String| {
            Error::invalid(format!(
                "the config declares subscription '{}' to extension '{}': {message}",
                d.label, d.extension
            ))
        };
        self.check_declared_subscriptions(declared).await?;
        let current = self.storage.list_subscriptions(namespace_id, pipeline_id).await?;
        let mut done = Vec::new();
        for d in declared {
            let old = current.iter().find(|s| s.extension_id == d.extension && s.label == d.label);
            if old.is_some_and(|old| old.declared && old.settings == d.settings) {
                continue;
            }
            let new = Subscription {
                namespace_id: namespace_id.into(),
                pipeline_id: pipeline_id.into(),
                extension_id: d.extension.clone(),
                label: d.label.clone(),
                settings: d.settings.clone(),
                enabled: old.is_none_or(|o| o.enabled),
                created: old.map_or_else(epoch_millis, |o| o.created),
                last_fired: old.map_or(0, |o| o.last_fired),
                declared: true,
            };
            if let Some(old) = old {
                self.drop_subscription(old).await?;
            }
            if let Err(e) = self.put_subscription(&new).await {
                // The refused subscription is not stored; put back the one it replaced and what came before.
                done.push(Reconciled { old: old.cloned(), new: None });
                self.undo_reconcile(done).await;
                return Err(refused(d, e.to_string()));
            }
            done.push(Reconciled { old: old.cloned(), new: Some(new) });
        }
        for old in current.iter().filter(|s| s.declared) {
            if !declared.iter().any(|d| d.extension == old.extension_id && d.label == old.label) {
                self.drop_subscription(old).await?;
                done.push(Reconciled { old: Some(old.clone()), new: None });
            }
        }
        Ok(done)
    }

    /// Stores a subscription and, when it and its extension are enabled, hands it to the extension; a refusal
    /// removes the row again.
    async fn put_subscription(&self, subscription: &Subscription) -> Result<()> {
        let extension = self.extensions.get(&subscription.extension_id)?;
        self.storage.insert_subscription(subscription).await?;
        let active = subscription.enabled && self.extensions.is_enabled(&subscription.extension_id).await?;
        if active && let Err(message) = extension.subscribe(subscription.clone(), Arc::new(self.clone())).await {
            // Leave nothing half-made: the extension did not take it, so it is not stored either.
            self.storage.delete_subscription(&SubscriptionKey::of(subscription)).await?;
            return Err(Error::invalid(format!(
                "extension '{}' refused the subscription: {message}",
                subscription.extension_id
            )));
        }
        Ok(())
    }

    /// Stops a subscription's triggers and deletes it.
    async fn drop_subscription(&self, subscription: &Subscription) -> Result<()> {
        let key = SubscriptionKey::of(subscription);
        if let Ok(extension) = self.extensions.get(&subscription.extension_id) {
            extension.unsubscribe(&key).await;
        }
        Ok(self.storage.delete_subscription(&key).await?)
    }

    /// Puts back what `reconcile_subscriptions` changed, newest change first.
    async fn undo_reconcile(&self, done: Vec<Reconciled>) {
        for change in done.into_iter().rev() {
            if let Some(new) = &change.new
                && let Err(e) = self.drop_subscription(new).await
            {
                tracing::warn!(key = %SubscriptionKey::of(new), error = %e, "could not undo a subscription");
            }
            if let Some(old) = &change.old
                && let Err(e) = self.put_subscription(old).await
            {
                tracing::warn!(key = %SubscriptionKey::of(old), error = %e, "could not restore a subscription");
            }
        }
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

    // --- runs ---

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

    /// Stores a pending run of the pipeline's live version and starts it in the background.
    pub async fn start_run(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        variables: BTreeMap<String, String>,
        initiator: Initiator,
    ) -> Result<Run> {
        self.start_run_with(namespace_id, pipeline_id, variables, VariableSource::RunOptions, initiator).await
    }

    async fn start_run_with(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        variables: BTreeMap<String, String>,
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
        let Some(version) = pipeline.live_version else {
            return Err(Error::conflict(format!(
                "pipeline '{pipeline_id}' has no deployed config version; deploy one with `gofer pipeline deploy`"
            )));
        };
        for key in variables.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(Error::invalid(format!(
                    "run variable name '{key}' is not valid: it must be non-empty and contain no '=' or NUL"
                )));
            }
        }
        let variables = variables.into_iter().map(|(key, value)| Variable { key, value, source }).collect();
        let run = self
            .storage
            .insert_run(NewRun {
                namespace_id: namespace_id.into(),
                pipeline_id: pipeline_id.into(),
                version,
                created: epoch_millis(),
                initiator,
                variables,
            })
            .await?;
        self.orchestrator.enqueue(run.clone()).await?;
        Ok(run)
    }

    pub async fn list_runs(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        query: PageQuery,
    ) -> Result<(Vec<Run>, Option<u64>)> {
        let items = self.storage.list_runs(namespace_id, pipeline_id, page(query)?).await?;
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

    // --- system and events ---

    pub async fn get_system(&self) -> Result<SystemSettings> {
        Ok(self.storage.get_system().await?)
    }

    /// Turns maintenance mode on (new runs are refused) or off.
    pub async fn set_maintenance(&self, maintenance: bool) -> Result<SystemSettings> {
        let settings = SystemSettings { maintenance };
        self.storage.set_system(&settings).await?;
        self.events.publish(EventKind::MaintenanceChanged { maintenance }).await;
        Ok(settings)
    }

    /// Stored events after `filter.after`, oldest first; with `follow`, then live ones.
    pub fn events(
        &self,
        filter: EventFilter,
        follow: bool,
    ) -> Result<impl Stream<Item = gofer_storage::Result<Event>> + use<>> {
        if filter.run_id.is_some() && filter.pipeline_id.is_none() {
            return Err(Error::invalid("filtering events by run needs the pipeline (and namespace) too"));
        }
        if filter.pipeline_id.is_some() && filter.namespace_id.is_none() {
            return Err(Error::invalid("filtering events by pipeline needs the namespace too"));
        }
        check_id("after", filter.after)?;
        if let Some(run_id) = filter.run_id {
            check_id("run", run_id)?;
        }
        Ok(self.events.stream(filter, follow))
    }

    // --- task executions ---

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

    // --- extensions and subscriptions ---

    pub async fn list_extensions(&self) -> Result<Vec<Extension>> {
        self.extensions.list().await
    }

    pub async fn get_extension(&self, id: &str) -> Result<Extension> {
        let extension = self.extensions.get(id)?;
        self.extensions.describe(extension.as_ref()).await
    }

    /// Enables or disables an extension; a disabled extension's subscriptions stop triggering (and are kept). A
    /// disabled container extension's container is stopped; enabling starts it again.
    pub async fn set_extension_enabled(&self, id: &str, enabled: bool) -> Result<Extension> {
        let extension = self.extensions.get(id)?;
        let was = self.extensions.is_enabled(id).await?;
        self.storage.set_extension_enabled(id, enabled, epoch_millis()).await?;
        match (was, enabled, extension.kind()) {
            (true, false, ExtensionKind::Builtin) => self.extensions.stop_all(id).await?,
            (false, true, ExtensionKind::Builtin) => self.extensions.restore(Some(id), Arc::new(self.clone())).await?,
            (true, false, ExtensionKind::Container) => extension.shutdown().await,
            (false, true, ExtensionKind::Container) => {
                if let Err(problem) = extension.resume().await {
                    // Stays enabled (the operator asked for it) and keeps being retried; the problem shows on it.
                    return Err(Error::Unavailable {
                        message: format!(
                            "extension '{id}' is enabled but did not start ({problem}); Gofer keeps trying"
                        ),
                    });
                }
            }
            _ => {}
        }
        self.extensions.describe(extension.as_ref()).await
    }

    /// Installs a container extension: starts it, waits until it answers, and only then stores it. An image that
    /// is missing or never answers leaves nothing behind.
    pub async fn install_extension(&self, request: InstallExtensionRequest) -> Result<Extension> {
        identifier("extension id", &request.id)?;
        if request.image.trim().is_empty() {
            return Err(Error::invalid("the image is empty; name an image that speaks the extension protocol"));
        }
        let Some(host) = self.extensions.container_host() else {
            return Err(Error::Unavailable { message: "this Gofer cannot run container extensions".into() });
        };
        let _installing = self.installing.lock().await;
        if extensions::BUILTIN_IDS.contains(&request.id.as_str()) {
            return Err(Error::conflict(format!("'{}' is the id of a built-in extension; choose another", request.id)));
        }
        if self.extensions.contains(&request.id) {
            return Err(Error::conflict(format!(
                "extension '{}' is already installed; uninstall it first (gofer extension uninstall {})",
                request.id, request.id
            )));
        }
        let registration = ExtensionRegistration {
            id: request.id.clone(),
            image: request.image.clone(),
            settings: request.settings,
            registry_auth: request.registry_auth,
            created: epoch_millis(),
        };
        let extension = host.extension(registration.clone());
        let token = extension
            .launch()
            .await
            .map_err(|problem| Error::invalid(format!("extension '{}' was not installed: {problem}", request.id)))?;
        let role = gofer_api::permissions::extension_role(&request.id);
        if let Err(e) = self.storage.insert_extension(&registration, &role, &token).await {
            extension.shutdown().await;
            return Err(e.into());
        }
        extension.supervise(true).await;
        self.extensions.insert_container(extension.clone());
        self.events.publish(EventKind::ExtensionInstalled { extension_id: request.id, image: request.image }).await;
        self.extensions.describe(&extension).await
    }

    /// Uninstalls a container extension: stops its container and deletes it with its subscriptions and token.
    pub async fn uninstall_extension(&self, id: &str) -> Result<()> {
        let extension = self.extensions.get(id)?;
        if extension.kind() == ExtensionKind::Builtin {
            return Err(Error::invalid(format!(
                "'{id}' is built in and cannot be uninstalled; disable it instead (gofer extension disable {id})"
            )));
        }
        let _installing = self.installing.lock().await;
        self.storage.delete_extension(id).await?;
        self.extensions.remove(id);
        extension.shutdown().await;
        if let Some(objects) = &self.objects {
            objects.delete_extension(id).await?;
        }
        self.events.publish(EventKind::ExtensionUninstalled { extension_id: id.into() }).await;
        Ok(())
    }

    /// A container extension's output; with `follow`, live until its container exits.
    pub async fn extension_logs(
        &self,
        id: &str,
        follow: bool,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + use<>> {
        self.extensions.get(id)?;
        let Some(container) = self.extensions.container(id) else {
            return Err(Error::invalid(format!("'{id}' is built in; it writes to the Gofer server's own log")));
        };
        let stream = container.logs(follow).await.map_err(|message| Error::Unavailable { message })?;
        Ok(stream.map(|chunk| chunk.map_err(std::io::Error::other)))
    }

    /// Starts triggering every stored subscription of the enabled extensions (at startup).
    pub async fn restore_subscriptions(&self) -> Result<()> {
        self.extensions.start_containers().await?;
        self.extensions.restore(None, Arc::new(self.clone())).await
    }

    pub async fn shutdown_extensions(&self) {
        self.extensions.shutdown().await;
    }

    /// Hands a request from the external-events listener to the extension it names.
    pub async fn external_event(&self, extension_id: &str, event: ExternalEvent) -> Result<ExternalResponse> {
        let extension = self.extensions.get(extension_id)?;
        if !self.extensions.is_enabled(extension_id).await? {
            return Err(Error::conflict(format!(
                "extension '{extension_id}' is disabled and takes no external events; enable it with `gofer \
                 extension enable {extension_id}`"
            )));
        }
        Ok(extension.external_event(event, Arc::new(self.clone())).await)
    }

    /// Every subscription to an extension.
    pub async fn list_extension_subscriptions(&self, extension_id: &str) -> Result<Vec<Subscription>> {
        self.extensions.get(extension_id)?;
        Ok(self.storage.list_extension_subscriptions(extension_id).await?)
    }

    /// The extension's own view of itself.
    pub async fn debug_extension(&self, extension_id: &str) -> Result<String> {
        let extension = self.extensions.get(extension_id)?;
        extension.debug().await.map_err(|message| Error::Unavailable {
            message: format!("extension '{extension_id}' did not answer its debug call: {message}"),
        })
    }

    pub async fn list_subscriptions(&self, namespace_id: &str, pipeline_id: &str) -> Result<Vec<Subscription>> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        Ok(self.storage.list_subscriptions(namespace_id, pipeline_id).await?)
    }

    /// Subscribes a pipeline to an extension. The extension checks the settings first; nothing is stored when it
    /// refuses them.
    pub async fn subscribe(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        request: SubscribeRequest,
    ) -> Result<Subscription> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        identifier("subscription label", &request.label)?;
        let extension = self.extensions.get(&request.extension_id)?;
        if !self.extensions.is_enabled(&request.extension_id).await? {
            return Err(Error::conflict(format!(
                "extension '{}' is disabled; enable it with `gofer extension enable {}`",
                request.extension_id, request.extension_id
            )));
        }
        extension.validate(&request.settings).map_err(|message| {
            Error::invalid(format!("extension '{}' refused the settings: {message}", request.extension_id))
        })?;
        let subscription = Subscription {
            namespace_id: namespace_id.into(),
            pipeline_id: pipeline_id.into(),
            extension_id: request.extension_id,
            label: request.label,
            settings: request.settings,
            enabled: true,
            created: epoch_millis(),
            last_fired: 0,
            declared: false,
        };
        self.put_subscription(&subscription).await?;
        Ok(subscription)
    }

    pub async fn unsubscribe(&self, key: &SubscriptionKey) -> Result<()> {
        let extension = self.extensions.get(&key.extension_id)?;
        self.storage.get_subscription(key).await?;
        extension.unsubscribe(key).await;
        Ok(self.storage.delete_subscription(key).await?)
    }

    /// Enables or disables one subscription; a disabled one triggers nothing.
    pub async fn set_subscription_enabled(&self, key: &SubscriptionKey, enabled: bool) -> Result<Subscription> {
        let extension = self.extensions.get(&key.extension_id)?;
        self.storage.set_subscription_enabled(key, enabled).await?;
        let subscription = self.storage.get_subscription(key).await?;
        if !enabled {
            extension.unsubscribe(key).await;
        } else if self.extensions.is_enabled(&key.extension_id).await?
            && let Err(message) = extension.subscribe(subscription.clone(), Arc::new(self.clone())).await
        {
            return Err(Error::invalid(format!(
                "extension '{}' refused the subscription: {message}",
                key.extension_id
            )));
        }
        Ok(subscription)
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
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + use<>> {
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
    async fn fire(
        &self,
        key: &SubscriptionKey,
        at: u64,
        extra: BTreeMap<String, String>,
    ) -> std::result::Result<u64, String> {
        // Record the tick first: a crash right after may lose this run, but never starts it twice.
        if let Err(e) = self.storage.record_subscription_fired(key, at).await {
            tracing::warn!(%key, error = %e, "could not record a subscription's tick; not starting a run");
            return Err(format!("could not record the tick: {e}"));
        }
        let mut variables = extra;
        variables.insert("GOFER_EXTENSION_ID".into(), key.extension_id.clone());
        variables.insert("GOFER_EXTENSION_SUBSCRIPTION".into(), key.label.clone());
        let initiator = Initiator { kind: "extension".into(), name: key.extension_id.clone() };
        match self
            .start_run_with(&key.namespace_id, &key.pipeline_id, variables, VariableSource::Extension, initiator)
            .await
        {
            Ok(run) => {
                tracing::info!(%key, run = run.run_id, "subscription started a run");
                Ok(run.run_id)
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, "subscription could not start a run");
                Err(e.to_string())
            }
        }
    }
}
