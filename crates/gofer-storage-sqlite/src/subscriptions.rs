//! Subscriptions of pipelines to extensions.

use async_trait::async_trait;
use gofer_api::models::Subscription;
use gofer_storage::{Result, SubscriptionKey, SubscriptionStore};
use rusqlite::params;

use crate::codec::{Record, all, one, pipeline_exists, to_json};
use crate::{SqliteStorage, backend, sql_error};

pub(crate) const SUBSCRIPTION_KEY: &str = "namespace_id = ?1 AND pipeline_id = ?2 AND extension_id = ?3 AND label = ?4";

#[async_trait]
impl SubscriptionStore for SqliteStorage {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<()> {
        let sub = subscription.clone();
        self.write("store a subscription", move |tx| {
            pipeline_exists(tx, &sub.namespace_id, &sub.pipeline_id)?;
            tx.execute(
                &format!(
                    "INSERT INTO subscriptions ({columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    columns = Subscription::COLUMNS
                ),
                params![
                    sub.namespace_id,
                    sub.pipeline_id,
                    sub.extension_id,
                    sub.label,
                    to_json(&sub.settings)?,
                    sub.enabled,
                    sub.created,
                    sub.last_fired,
                    sub.declared
                ],
            )
            .map_err(sql_error("store a subscription", || SubscriptionKey::of(&sub).to_string()))?;
            Ok(())
        })
        .await
    }

    async fn get_subscription(&self, key: &SubscriptionKey) -> Result<Subscription> {
        self.read(move |conn| {
            one::<Subscription>(
                conn,
                &format!("WHERE {SUBSCRIPTION_KEY}"),
                params![key.namespace_id, key.pipeline_id, key.extension_id, key.label],
            )
            .map_err(sql_error("get a subscription", || key.to_string()))
        })
        .await
    }

    async fn list_subscriptions(&self, namespace_id: &str, pipeline_id: &str) -> Result<Vec<Subscription>> {
        self.read(move |conn| {
            all::<Subscription>(
                conn,
                "list subscriptions",
                "WHERE namespace_id = ?1 AND pipeline_id = ?2 \
                     ORDER BY extension_id, label",
                params![namespace_id, pipeline_id],
            )
        })
        .await
    }

    async fn list_extension_subscriptions(&self, extension_id: &str) -> Result<Vec<Subscription>> {
        self.read(move |conn| {
            all::<Subscription>(
                conn,
                "list an extension's subscriptions",
                "WHERE extension_id = ?1 \
                     ORDER BY namespace_id, pipeline_id, label",
                [extension_id],
            )
        })
        .await
    }

    async fn set_subscription_enabled(&self, key: &SubscriptionKey, enabled: bool) -> Result<()> {
        let sql = format!("UPDATE subscriptions SET enabled = ?5 WHERE {SUBSCRIPTION_KEY}");
        self.change_subscription("switch a subscription", key, sql, Some(i64::from(enabled))).await
    }

    async fn record_subscription_fired(&self, key: &SubscriptionKey, at: u64) -> Result<()> {
        let sql = format!("UPDATE subscriptions SET last_fired = ?5 WHERE {SUBSCRIPTION_KEY}");
        let at = i64::try_from(at).map_err(|e| backend("record a subscription's tick", e))?;
        self.change_subscription("record a subscription's tick", key, sql, Some(at)).await
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        let sql = format!("DELETE FROM subscriptions WHERE {SUBSCRIPTION_KEY}");
        self.change_subscription("delete a subscription", key, sql, None).await
    }
}
