//! Subscriptions of pipelines to extensions.

use async_trait::async_trait;
use gofer_api::models::Subscription;
use gofer_storage::{Recorded, Result, SubscriptionKey, SubscriptionStore};
use rusqlite::{OptionalExtension, params};

use crate::codec::{Record, all, one, pipeline_exists, to_json};
use crate::{SqliteStorage, backend, not_found, sql_error};

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

    async fn record_subscription_fired(
        &self,
        key: &SubscriptionKey,
        expected: Option<u64>,
        at: u64,
    ) -> Result<Recorded> {
        const CONTEXT: &str = "record a subscription's tick";
        let key = key.clone();
        let at = i64::try_from(at).map_err(|e| backend(CONTEXT, e))?;
        let expected = expected.map(i64::try_from).transpose().map_err(|e| backend(CONTEXT, e))?;
        self.write(CONTEXT, move |tx| {
            let keys = params![key.namespace_id, key.pipeline_id, key.extension_id, key.label, at, expected];
            let sql = format!(
                "UPDATE subscriptions SET last_fired = ?5 WHERE {SUBSCRIPTION_KEY} AND (?6 IS NULL OR last_fired = ?6)"
            );
            if tx.execute(&sql, keys).map_err(|e| backend(CONTEXT, e))? == 1 {
                return Ok(Recorded::Yes);
            }
            let current = format!("SELECT last_fired FROM subscriptions WHERE {SUBSCRIPTION_KEY}");
            let found: Option<u64> = tx
                .query_row(&current, params![key.namespace_id, key.pipeline_id, key.extension_id, key.label], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| backend(CONTEXT, e))?;
            match found {
                Some(last_fired) => Ok(Recorded::Already { last_fired }),
                None => Err(not_found(key.to_string())),
            }
        })
        .await
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        let sql = format!("DELETE FROM subscriptions WHERE {SUBSCRIPTION_KEY}");
        self.change_subscription("delete a subscription", key, sql, None).await
    }
}
