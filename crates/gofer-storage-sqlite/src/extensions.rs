//! Extension switches and container extension registrations.

use async_trait::async_trait;
use gofer_api::models::{Event, ExtensionRegistration};
use gofer_api::permissions::{Role, Token};
use gofer_storage::{ExtensionStore, NewEvent, Result};
use rusqlite::{OptionalExtension, params};

use crate::codec::{all, to_json};
use crate::events::append;
use crate::tokens::upsert_token;
use crate::{SqliteStorage, backend, not_found, sql_error};

#[async_trait]
impl ExtensionStore for SqliteStorage {
    async fn get_extension_enabled(&self, extension_id: &str) -> Result<Option<bool>> {
        self.read(move |conn| {
            conn.query_row("SELECT enabled FROM extensions WHERE id = ?1", [extension_id], |r| r.get(0))
                .optional()
                .map_err(|e| backend("read an extension's switch", e))
        })
        .await
    }

    async fn set_extension_enabled(&self, extension_id: &str, enabled: bool, now: u64) -> Result<()> {
        let id = extension_id.to_string();
        self.write("switch an extension", move |tx| {
            tx.execute(
                "INSERT INTO extensions (id, enabled, modified) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET enabled = excluded.enabled, modified = excluded.modified",
                params![id, enabled, now],
            )
            .map_err(|e| backend("switch an extension", e))?;
            Ok(())
        })
        .await
    }

    async fn insert_extension(
        &self,
        registration: &ExtensionRegistration,
        role: &Role,
        token: &Token,
        event: &NewEvent,
    ) -> Result<Event> {
        let (registration, role, token, event) = (registration.clone(), role.clone(), token.clone(), event.clone());
        self.write("install an extension", move |tx| {
            tx.execute(
                "INSERT INTO extension_registrations (id, image, settings, registry_auth, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    registration.id,
                    registration.image,
                    to_json(&registration.settings)?,
                    registration.registry_auth.as_ref().map(to_json).transpose()?,
                    registration.created
                ],
            )
            .map_err(sql_error("install an extension", || format!("extension '{}'", registration.id)))?;
            tx.execute(
                "INSERT INTO roles (id, description, permissions, system_role) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (id) DO UPDATE SET description = excluded.description, \
                 permissions = excluded.permissions, system_role = excluded.system_role",
                params![role.id, role.description, to_json(&role.grants)?, role.system_role],
            )
            .map_err(|e| backend("store a role", e))?;
            upsert_token(tx, &token)?;
            append(tx, event)
        })
        .await
    }

    async fn list_extensions(&self) -> Result<Vec<ExtensionRegistration>> {
        self.read(|conn| all::<ExtensionRegistration>(conn, "list installed extensions", "ORDER BY id", [])).await
    }

    async fn delete_extension(&self, extension_id: &str, event: &NewEvent) -> Result<Event> {
        let (id, event) = (extension_id.to_string(), event.clone());
        self.write("uninstall an extension", move |tx| {
            let deleted = tx
                .execute("DELETE FROM extension_registrations WHERE id = ?1", [&id])
                .map_err(|e| backend("uninstall an extension", e))?;
            if deleted == 0 {
                return Err(not_found(format!("extension '{id}'")));
            }
            let statements = [
                ("DELETE FROM subscriptions WHERE extension_id = ?1", id.clone()),
                ("DELETE FROM extensions WHERE id = ?1", id.clone()),
                ("DELETE FROM roles WHERE id = ?1", format!("extension_{id}")),
                ("DELETE FROM tokens WHERE user = ?1", format!("extension:{id}")),
            ];
            for (sql, value) in statements {
                tx.execute(sql, [value]).map_err(|e| backend("uninstall an extension", e))?;
            }
            append(tx, event)
        })
        .await
    }
}
