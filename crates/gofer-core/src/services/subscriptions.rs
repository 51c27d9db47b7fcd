//! Subscriptions of pipelines to extensions, made through the API or declared in a config and reconciled on
//! deploy.

use std::sync::Arc;

use gofer_api::config;
use gofer_api::epoch_millis;
use gofer_api::models::Subscription;
use gofer_api::requests::SubscribeRequest;
use gofer_storage::SubscriptionKey;

use crate::error::{Error, Result, error_chain};
use crate::extensions;
use crate::{Gofer, identifier};

/// One change a deploy made to a pipeline's subscriptions, to undo it if the deploy fails.
pub(crate) struct Reconciled {
    pub(crate) old: Option<Subscription>,
    pub(crate) new: Option<Subscription>,
}

/// What an extension's failure means to the caller: settings it refused are the caller's to fix (400); an
/// extension that cannot be reached, or did not start, is not (503).
pub(crate) fn extension_failed(extension_id: &str, doing: &str, e: extensions::Error) -> Error {
    let message = format!("extension '{extension_id}' {doing}: {}", error_chain(&e));
    match e {
        extensions::Error::Settings(_) | extensions::Error::Refused { .. } => Error::invalid(message),
        extensions::Error::Storage(e) => e.into(),
        _ => Error::Unavailable { message },
    }
}

impl Gofer {
    /// Makes the pipeline's declared subscriptions equal `declared`: new ones are subscribed, changed ones
    /// re-subscribed (keeping their switch and last tick), dropped ones unsubscribed. Subscriptions made through the
    /// API are left alone, unless the code declares the same extension and label, which takes them over. Everything
    /// is checked before anything changes; if an extension still refuses one, what was done is undone.
    pub(crate) async fn reconcile_subscriptions(
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
                next_fire: None,
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
    pub(crate) async fn put_subscription(&self, subscription: &Subscription) -> Result<()> {
        let extension = self.extensions.find(&subscription.extension_id).await?;
        self.storage.insert_subscription(subscription).await?;
        let active = subscription.enabled && self.extensions.is_enabled(&subscription.extension_id).await?;
        if active && let Err(e) = extension.subscribe(subscription.clone(), Arc::new(self.clone())).await {
            // Leave nothing half-made: the extension did not take it, so it is not stored either.
            self.storage.delete_subscription(&SubscriptionKey::of(subscription)).await?;
            return Err(extension_failed(&subscription.extension_id, "did not take the subscription", e));
        }
        Ok(())
    }

    /// Stops a subscription's triggers and deletes it.
    pub(crate) async fn drop_subscription(&self, subscription: &Subscription) -> Result<()> {
        let key = SubscriptionKey::of(subscription);
        if let Ok(extension) = self.extensions.find(&subscription.extension_id).await {
            extension.unsubscribe(&key).await;
        }
        Ok(self.storage.delete_subscription(&key).await?)
    }

    /// Puts back what `reconcile_subscriptions` changed, newest change first.
    pub(crate) async fn undo_reconcile(&self, done: Vec<Reconciled>) {
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

    pub async fn list_subscriptions(&self, namespace_id: &str, pipeline_id: &str) -> Result<Vec<Subscription>> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        let subscriptions = self.storage.list_subscriptions(namespace_id, pipeline_id).await?;
        Ok(self.with_next_fire(subscriptions))
    }

    /// Subscriptions with their next run, where their extension knows it.
    pub(crate) fn with_next_fire(&self, mut subscriptions: Vec<Subscription>) -> Vec<Subscription> {
        for subscription in &mut subscriptions {
            if subscription.enabled
                && let Ok(extension) = self.extensions.get(&subscription.extension_id)
            {
                subscription.next_fire = extension.next_fire(&SubscriptionKey::of(subscription));
            }
        }
        subscriptions
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
        let extension = self.extensions.find(&request.extension_id).await?;
        if !self.extensions.is_enabled(&request.extension_id).await? {
            return Err(Error::conflict(format!(
                "extension '{}' is disabled; enable it with `gofer extension enable {}`",
                request.extension_id, request.extension_id
            )));
        }
        extension
            .validate(&request.settings)
            .map_err(|e| extension_failed(&request.extension_id, "refused the settings", e))?;
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
            next_fire: None,
        };
        self.put_subscription(&subscription).await?;
        Ok(subscription)
    }

    pub async fn unsubscribe(&self, key: &SubscriptionKey) -> Result<()> {
        let extension = self.extensions.find(&key.extension_id).await?;
        self.storage.get_subscription(key).await?;
        extension.unsubscribe(key).await;
        Ok(self.storage.delete_subscription(key).await?)
    }

    /// Enables or disables one subscription; a disabled one triggers nothing.
    pub async fn set_subscription_enabled(&self, key: &SubscriptionKey, enabled: bool) -> Result<Subscription> {
        let extension = self.extensions.find(&key.extension_id).await?;
        self.storage.set_subscription_enabled(key, enabled).await?;
        let subscription = self.storage.get_subscription(key).await?;
        if !enabled {
            extension.unsubscribe(key).await;
        } else if self.extensions.is_enabled(&key.extension_id).await?
            && let Err(e) = extension.subscribe(subscription.clone(), Arc::new(self.clone())).await
        {
            return Err(extension_failed(&key.extension_id, "did not take the subscription", e));
        }
        Ok(subscription)
    }
}
