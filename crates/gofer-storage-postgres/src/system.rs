//! Server-wide settings.

use async_trait::async_trait;
use gofer_api::models::{Event, SystemSettings};
use gofer_storage::{NewEvent, Operation, Result, SystemStore};

use crate::codec::{Columns, execute, first, to_json, value};
use crate::events::append;
use crate::{PostgresStorage, codec_error, commit};

#[async_trait]
impl SystemStore for PostgresStorage {
    async fn get_system(&self) -> Result<SystemSettings> {
        const CONTEXT: &str = "read system settings";
        let session = self.session(Operation::Read, CONTEXT).await?;
        match first(session.client(), CONTEXT, "SELECT value FROM system WHERE key = 'settings'", &[]).await? {
            Some(row) => serde_json::from_str(&value(CONTEXT, row.text(0))?).map_err(|e| codec_error(CONTEXT, e)),
            None => Ok(SystemSettings::default()),
        }
    }

    async fn set_system(&self, settings: &SystemSettings, event: &NewEvent) -> Result<Event> {
        const CONTEXT: &str = "store system settings";
        let text = to_json(settings)?;
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        execute(
            &tx,
            CONTEXT,
            "INSERT INTO system (key, value) VALUES ('settings', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&text],
        )
        .await?;
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }
}
