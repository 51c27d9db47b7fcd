//! Namespaces.

use async_trait::async_trait;
use gofer_api::models::{Event, Namespace};
use gofer_storage::{NamespaceStore, NewEvent, Page, Result, Visible};
use rusqlite::params;

use crate::codec::{Record, all, limit_offset, one, visible_clause};
use crate::events::append;
use crate::{SqliteStorage, backend, not_found, sql_error};

#[async_trait]
impl NamespaceStore for SqliteStorage {
    async fn create_namespace(&self, namespace: &Namespace) -> Result<()> {
        let ns = namespace.clone();
        self.write("create a namespace", move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO namespaces ({columns}) VALUES (?1, ?2, ?3, ?4, ?5)",
                    columns = Namespace::COLUMNS
                ),
                params![ns.id, ns.name, ns.description, ns.created, ns.modified],
            )
            .map_err(sql_error("create a namespace", || format!("namespace '{}'", ns.id)))?;
            Ok(())
        })
        .await
    }

    async fn get_namespace(&self, id: &str) -> Result<Namespace> {
        let id = id.to_string();
        self.read(move |conn| {
            one::<Namespace>(conn, "WHERE id = ?1", [&id])
                .map_err(sql_error("get a namespace", || format!("namespace '{id}'")))
        })
        .await
    }

    async fn update_namespace(&self, namespace: &Namespace) -> Result<()> {
        let ns = namespace.clone();
        self.write("update a namespace", move |tx| {
            let changed = tx
                .execute(
                    "UPDATE namespaces SET name = ?2, description = ?3, modified = ?4 WHERE id = ?1",
                    params![ns.id, ns.name, ns.description, ns.modified],
                )
                .map_err(|e| backend("update a namespace", e))?;
            if changed == 0 {
                return Err(not_found(format!("namespace '{}'", ns.id)));
            }
            Ok(())
        })
        .await
    }

    async fn list_namespaces(&self, page: Page, visible: &Visible) -> Result<Vec<Namespace>> {
        let visible = visible.clone();
        self.read(move |conn| {
            let (limit, offset) = limit_offset(page);
            let (only, patterns) = visible_clause("id", &visible, 3);
            let mut values: Vec<rusqlite::types::Value> = vec![limit.into(), offset.into()];
            values.extend(patterns.into_iter().map(rusqlite::types::Value::from));
            all::<Namespace>(
                conn,
                "list namespaces",
                &format!("WHERE 1{only} ORDER BY created DESC, id DESC LIMIT ?1 OFFSET ?2"),
                rusqlite::params_from_iter(values),
            )
        })
        .await
    }

    async fn delete_namespace(&self, namespace_id: &str, event: &NewEvent) -> Result<Event> {
        let (id, event) = (namespace_id.to_string(), event.clone());
        self.write("delete a namespace", move |tx| {
            if tx
                .execute("DELETE FROM namespaces WHERE id = ?1", [&id])
                .map_err(|e| backend("delete a namespace", e))?
                == 0
            {
                return Err(not_found(format!("namespace '{id}'")));
            }
            append(tx, event)
        })
        .await
    }
}
