//! Custom and extension roles.

use async_trait::async_trait;
use gofer_api::permissions::Role;
use gofer_storage::{Result, RoleStore};
use rusqlite::params;

use crate::codec::{Record, all, one, to_json};
use crate::{SqliteStorage, backend, not_found, sql_error};

#[async_trait]
impl RoleStore for SqliteStorage {
    async fn get_role(&self, role_id: &str) -> Result<Role> {
        self.read(move |conn| {
            one::<Role>(conn, "WHERE id = ?1", [role_id])
                .map_err(sql_error("get a role", || format!("role '{role_id}'")))
        })
        .await
    }

    async fn insert_role(&self, role: &Role) -> Result<()> {
        let role = role.clone();
        self.write("store a role", move |tx| {
            tx.execute(
                &format!("INSERT INTO roles ({columns}) VALUES (?1, ?2, ?3, ?4)", columns = Role::COLUMNS),
                params![role.id, role.description, to_json(&role.grants)?, role.system_role],
            )
            .map_err(sql_error("store a role", || format!("role '{}'", role.id)))?;
            Ok(())
        })
        .await
    }

    async fn list_roles(&self) -> Result<Vec<Role>> {
        self.read(|conn| all::<Role>(conn, "list roles", "ORDER BY id", [])).await
    }

    async fn update_role(&self, role: &Role) -> Result<()> {
        let role = role.clone();
        self.write("change a role", move |tx| {
            let changed = tx
                .execute(
                    "UPDATE roles SET description = ?2, permissions = ?3 WHERE id = ?1",
                    params![role.id, role.description, to_json(&role.grants)?],
                )
                .map_err(|e| backend("change a role", e))?;
            if changed == 0 {
                return Err(not_found(format!("role '{}'", role.id)));
            }
            Ok(())
        })
        .await
    }

    async fn delete_role(&self, role_id: &str) -> Result<()> {
        let role_id = role_id.to_string();
        self.write("delete a role", move |tx| {
            if tx.execute("DELETE FROM roles WHERE id = ?1", [&role_id]).map_err(|e| backend("delete a role", e))? == 0 {
                return Err(not_found(format!("role '{role_id}'")));
            }
            // Tokens lose the role for good: a role made later with the same id must not widen them.
            tx.execute(
                "UPDATE tokens SET roles = (SELECT json_group_array(value) FROM json_each(tokens.roles) WHERE value != ?1) \
                 WHERE EXISTS (SELECT 1 FROM json_each(tokens.roles) WHERE value = ?1)",
                [&role_id],
            )
            .map_err(|e| backend("take a deleted role from tokens", e))?;
            Ok(())
        })
        .await
    }
}
