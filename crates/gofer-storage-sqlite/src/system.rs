//! Server-wide settings.

use async_trait::async_trait;
use gofer_api::models::{Event, SystemSettings};
use gofer_storage::{NewEvent, Result, SystemStore};
use rusqlite::OptionalExtension;

use crate::codec::to_json;
use crate::events::append;
use crate::{SqliteStorage, backend};

#[async_trait]
impl SystemStore for SqliteStorage {
    async fn get_system(&self) -> Result<SystemSettings> {
        self.read(move |conn| {
            let value: Option<String> = conn
                .query_row("SELECT value FROM system WHERE key = 'settings'", [], |r| r.get(0))
                .optional()
                .map_err(|e| backend("read system settings", e))?;
            match value {
                Some(text) => serde_json::from_str(&text).map_err(|e| backend("read system settings", e)),
                None => Ok(SystemSettings::default()),
            }
        })
        .await
    }

    async fn set_system(&self, settings: &SystemSettings, event: &NewEvent) -> Result<Event> {
        let (text, event) = (to_json(settings)?, event.clone());
        self.write("store system settings", move |tx| {
            tx.execute(
                "INSERT INTO system (key, value) VALUES ('settings', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [text],
            )
            .map_err(|e| backend("store system settings", e))?;
            append(tx, event)
        })
        .await
    }
}
