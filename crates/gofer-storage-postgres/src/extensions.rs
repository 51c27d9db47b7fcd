//! Extension switches and container extension registrations.

use async_trait::async_trait;
use gofer_api::models::{Event, ExtensionRegistration};
use gofer_api::permissions::{Role, Token};
use gofer_storage::{ExtensionStore, NewEvent, Operation, Result};

use crate::codec::{Columns, all, execute, first, insert, int, to_json, value};
use crate::events::append;
use crate::tokens::upsert_token;
use crate::{PostgresStorage, commit, not_found};

#[async_trait]
impl ExtensionStore for PostgresStorage {
    async fn get_extension_enabled(&self, extension_id: &str) -> Result<Option<bool>> {
        const CONTEXT: &str = "read an extension's switch";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let row =
            first(session.client(), CONTEXT, "SELECT enabled FROM extensions WHERE id = $1", &[&extension_id]).await?;
        row.map(|row| value(CONTEXT, row.flag(0))).transpose()
    }

    async fn set_extension_enabled(&self, extension_id: &str, enabled: bool, now: u64) -> Result<()> {
        const CONTEXT: &str = "switch an extension";
        let session = self.session(Operation::Write, CONTEXT).await?;
        execute(
            session.client(),
            CONTEXT,
            "INSERT INTO extensions (id, enabled, modified) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET enabled = excluded.enabled, modified = excluded.modified",
            &[&extension_id, &enabled, &int(now)?],
        )
        .await?;
        Ok(())
    }

    async fn insert_extension(
        &self,
        registration: &ExtensionRegistration,
        role: &Role,
        token: &Token,
        event: &NewEvent,
    ) -> Result<Event> {
        const CONTEXT: &str = "install an extension";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        insert(
            &tx,
            CONTEXT,
            "INSERT INTO extension_registrations (id, image, settings, registry_auth, created) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &registration.id,
                &registration.image,
                &to_json(&registration.settings)?,
                &registration.registry_auth.as_ref().map(to_json).transpose()?,
                &int(registration.created)?,
            ],
            || format!("extension '{}'", registration.id),
        )
        .await?;
        execute(
            &tx,
            "store a role",
            "INSERT INTO roles (id, description, permissions, system_role) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET description = excluded.description, \
             permissions = excluded.permissions, system_role = excluded.system_role",
            &[&role.id, &role.description, &to_json(&role.grants)?, &role.system_role],
        )
        .await?;
        upsert_token(&tx, token).await?;
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn list_extensions(&self) -> Result<Vec<ExtensionRegistration>> {
        const CONTEXT: &str = "list installed extensions";
        let session = self.session(Operation::Read, CONTEXT).await?;
        all::<ExtensionRegistration>(session.client(), CONTEXT, "ORDER BY id", &[]).await
    }

    async fn delete_extension(&self, extension_id: &str, event: &NewEvent) -> Result<Event> {
        const CONTEXT: &str = "uninstall an extension";
        let id = extension_id;
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        if execute(&tx, CONTEXT, "DELETE FROM extension_registrations WHERE id = $1", &[&id]).await? == 0 {
            return Err(not_found(format!("extension '{id}'")));
        }
        let statements = [
            ("DELETE FROM subscriptions WHERE extension_id = $1", id.to_string()),
            ("DELETE FROM extensions WHERE id = $1", id.to_string()),
            ("DELETE FROM roles WHERE id = $1", format!("extension_{id}")),
            ("DELETE FROM tokens WHERE holder = $1", format!("extension:{id}")),
        ];
        for (sql, value) in &statements {
            execute(&tx, CONTEXT, sql, &[value]).await?;
        }
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }
}
