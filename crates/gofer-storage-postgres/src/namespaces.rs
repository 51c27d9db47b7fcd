//! Namespaces.

use async_trait::async_trait;
use gofer_api::models::{Event, Namespace};
use gofer_storage::{NamespaceStore, NewEvent, Operation, Page, Result, Visible};

use crate::codec::{Param, Record, all, execute, insert, int, limit_offset, one, visible_clause};
use crate::events::append;
use crate::{PostgresStorage, commit, not_found};

#[async_trait]
impl NamespaceStore for PostgresStorage {
    async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        const CONTEXT: &str = "create a namespace";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let sql = format!("INSERT INTO namespaces ({}) VALUES ($1, $2, $3, $4, $5)", Namespace::COLUMNS);
        let params: [Param<'_>; 5] = [&ns.id, &ns.name, &ns.description, &int(ns.created)?, &int(ns.modified)?];
        insert(session.client(), CONTEXT, &sql, &params, || format!("namespace '{}'", ns.id)).await?;
        Ok(())
    }

    async fn get_namespace(&self, id: &str) -> Result<Namespace> {
        const CONTEXT: &str = "get a namespace";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<Namespace>(session.client(), CONTEXT, "WHERE id = $1", &[&id], || format!("namespace '{id}'")).await
    }

    async fn update_namespace(&self, ns: &Namespace) -> Result<()> {
        const CONTEXT: &str = "update a namespace";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let changed = execute(
            session.client(),
            CONTEXT,
            "UPDATE namespaces SET name = $2, description = $3, modified = $4 WHERE id = $1",
            &[&ns.id, &ns.name, &ns.description, &int(ns.modified)?],
        )
        .await?;
        if changed == 0 {
            return Err(not_found(format!("namespace '{}'", ns.id)));
        }
        Ok(())
    }

    async fn list_namespaces(&self, page: Page, visible: &Visible) -> Result<Vec<Namespace>> {
        const CONTEXT: &str = "list namespaces";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let (limit, offset) = limit_offset(page);
        let (only, patterns) = visible_clause("id", visible, 3);
        let mut params: Vec<Param<'_>> = vec![&limit, &offset];
        params.extend(patterns.iter().map(|p| p as Param<'_>));
        all::<Namespace>(
            session.client(),
            CONTEXT,
            &format!("WHERE TRUE{only} ORDER BY created DESC, id DESC LIMIT $1 OFFSET $2"),
            &params,
        )
        .await
    }

    async fn delete_namespace(&self, namespace_id: &str, event: &NewEvent) -> Result<Event> {
        const CONTEXT: &str = "delete a namespace";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        if execute(&tx, CONTEXT, "DELETE FROM namespaces WHERE id = $1", &[&namespace_id]).await? == 0 {
            return Err(not_found(format!("namespace '{namespace_id}'")));
        }
        let event = append(&tx, event.clone()).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }
}
