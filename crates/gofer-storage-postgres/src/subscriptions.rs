//! Subscriptions of pipelines to extensions.

use async_trait::async_trait;
use gofer_api::models::Subscription;
use gofer_storage::{Operation, Recorded, Result, SubscriptionKey, SubscriptionStore};

use crate::codec::{Columns, Record, all, execute, first, insert, int, one, opt_int, pipeline_exists, to_json, value};
use crate::{PostgresStorage, commit, not_found};

const SUBSCRIPTION_KEY: &str = "namespace_id = $1 AND pipeline_id = $2 AND extension_id = $3 AND label = $4";

#[async_trait]
impl SubscriptionStore for PostgresStorage {
    async fn insert_subscription(&self, sub: &Subscription) -> Result<()> {
        const CONTEXT: &str = "store a subscription";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        pipeline_exists(&tx, &sub.namespace_id, &sub.pipeline_id, false).await?;
        let sql = format!(
            "INSERT INTO subscriptions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            Subscription::COLUMNS
        );
        insert(
            &tx,
            CONTEXT,
            &sql,
            &[
                &sub.namespace_id,
                &sub.pipeline_id,
                &sub.extension_id,
                &sub.label,
                &to_json(&sub.settings)?,
                &sub.enabled,
                &int(sub.created)?,
                &int(sub.last_fired)?,
                &sub.declared,
            ],
            || SubscriptionKey::of(sub).to_string(),
        )
        .await?;
        commit(tx, CONTEXT).await
    }

    async fn get_subscription(&self, key: &SubscriptionKey) -> Result<Subscription> {
        const CONTEXT: &str = "get a subscription";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<Subscription>(
            session.client(),
            CONTEXT,
            &format!("WHERE {SUBSCRIPTION_KEY}"),
            &[&key.namespace_id, &key.pipeline_id, &key.extension_id, &key.label],
            || key.to_string(),
        )
        .await
    }

    async fn list_subscriptions(&self, namespace_id: &str, pipeline_id: &str) -> Result<Vec<Subscription>> {
        const CONTEXT: &str = "list subscriptions";
        let session = self.session(Operation::Read, CONTEXT).await?;
        all::<Subscription>(
            session.client(),
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 ORDER BY extension_id, label",
            &[&namespace_id, &pipeline_id],
        )
        .await
    }

    async fn list_extension_subscriptions(&self, extension_id: &str) -> Result<Vec<Subscription>> {
        const CONTEXT: &str = "list an extension's subscriptions";
        let session = self.session(Operation::Read, CONTEXT).await?;
        all::<Subscription>(
            session.client(),
            CONTEXT,
            "WHERE extension_id = $1 ORDER BY namespace_id, pipeline_id, label",
            &[&extension_id],
        )
        .await
    }

    async fn set_subscription_enabled(&self, key: &SubscriptionKey, enabled: bool) -> Result<()> {
        const CONTEXT: &str = "switch a subscription";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let changed = execute(
            session.client(),
            CONTEXT,
            &format!("UPDATE subscriptions SET enabled = $5 WHERE {SUBSCRIPTION_KEY}"),
            &[&key.namespace_id, &key.pipeline_id, &key.extension_id, &key.label, &enabled],
        )
        .await?;
        if changed == 0 {
            return Err(not_found(key.to_string()));
        }
        Ok(())
    }

    async fn record_subscription_fired(
        &self,
        key: &SubscriptionKey,
        expected: Option<u64>,
        at: u64,
    ) -> Result<Recorded> {
        const CONTEXT: &str = "record a subscription's tick";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let keys = [&key.namespace_id, &key.pipeline_id, &key.extension_id, &key.label];
        // One statement: PostgreSQL re-checks the condition on the row it waited for, so of the servers that
        // fire the same tick exactly one changes it.
        let changed = execute(
            session.client(),
            CONTEXT,
            &format!(
                "UPDATE subscriptions SET last_fired = $5 WHERE {SUBSCRIPTION_KEY} \
                 AND ($6::BIGINT IS NULL OR last_fired = $6)"
            ),
            &[keys[0], keys[1], keys[2], keys[3], &int(at)?, &opt_int(expected)?],
        )
        .await?;
        if changed == 1 {
            return Ok(Recorded::Yes);
        }
        let current = first(
            session.client(),
            CONTEXT,
            &format!("SELECT last_fired FROM subscriptions WHERE {SUBSCRIPTION_KEY}"),
            &[keys[0], keys[1], keys[2], keys[3]],
        )
        .await?;
        match current {
            Some(row) => Ok(Recorded::Already { last_fired: value(CONTEXT, row.uint(0))? }),
            None => Err(not_found(key.to_string())),
        }
    }

    async fn delete_subscription(&self, key: &SubscriptionKey) -> Result<()> {
        const CONTEXT: &str = "delete a subscription";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let changed = execute(
            session.client(),
            CONTEXT,
            &format!("DELETE FROM subscriptions WHERE {SUBSCRIPTION_KEY}"),
            &[&key.namespace_id, &key.pipeline_id, &key.extension_id, &key.label],
        )
        .await?;
        if changed == 0 {
            return Err(not_found(key.to_string()));
        }
        Ok(())
    }
}
