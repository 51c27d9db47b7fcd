//! Custom and extension roles.

use async_trait::async_trait;
use gofer_api::permissions::Role;
use gofer_storage::{Operation, Result, RoleStore};

use crate::codec::{Record, all, execute, insert, one, to_json};
use crate::{PostgresStorage, commit, not_found};

#[async_trait]
impl RoleStore for PostgresStorage {
    async fn get_role(&self, role_id: &str) -> Result<Role> {
        const CONTEXT: &str = "get a role";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<Role>(session.client(), CONTEXT, "WHERE id = $1", &[&role_id], || format!("role '{role_id}'")).await
    }

    async fn insert_role(&self, role: &Role) -> Result<()> {
        const CONTEXT: &str = "store a role";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let sql = format!("INSERT INTO roles ({}) VALUES ($1, $2, $3, $4)", Role::COLUMNS);
        insert(
            session.client(),
            CONTEXT,
            &sql,
            &[&role.id, &role.description, &to_json(&role.grants)?, &role.system_role],
            || format!("role '{}'", role.id),
        )
        .await?;
        Ok(())
    }

    async fn list_roles(&self) -> Result<Vec<Role>> {
        const CONTEXT: &str = "list roles";
        let session = self.session(Operation::Read, CONTEXT).await?;
        all::<Role>(session.client(), CONTEXT, "ORDER BY id", &[]).await
    }

    async fn update_role(&self, role: &Role) -> Result<()> {
        const CONTEXT: &str = "change a role";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let changed = execute(
            session.client(),
            CONTEXT,
            "UPDATE roles SET description = $2, permissions = $3 WHERE id = $1",
            &[&role.id, &role.description, &to_json(&role.grants)?],
        )
        .await?;
        if changed == 0 {
            return Err(not_found(format!("role '{}'", role.id)));
        }
        Ok(())
    }

    async fn delete_role(&self, role_id: &str) -> Result<()> {
        const CONTEXT: &str = "delete a role";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        if execute(&tx, CONTEXT, "DELETE FROM roles WHERE id = $1", &[&role_id]).await? == 0 {
            return Err(not_found(format!("role '{role_id}'")));
        }
        // Tokens lose the role for good: a role made later with the same id must not widen them. The others keep
        // their order.
        execute(
            &tx,
            "take a deleted role from tokens",
            "UPDATE tokens SET roles = ( \
                 SELECT COALESCE(json_agg(role ORDER BY position), '[]'::json)::text \
                 FROM json_array_elements_text(tokens.roles::json) WITH ORDINALITY AS held(role, position) \
                 WHERE role <> $1) \
             WHERE EXISTS (SELECT 1 FROM json_array_elements_text(tokens.roles::json) AS held(role) WHERE role = $1)",
            &[&role_id],
        )
        .await?;
        commit(tx, CONTEXT).await
    }
}
