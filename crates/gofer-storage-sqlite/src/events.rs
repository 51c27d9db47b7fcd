//! The event log.

use async_trait::async_trait;
use gofer_api::models::{Event, EventKind};
use gofer_storage::{EventFilter, EventStore, NewEvent, Result};
use rusqlite::params;

use crate::codec::{all, to_json};
use crate::{SqliteStorage, backend};

/// Appends an event within the caller's transaction; ids grow by one per event.
pub(crate) fn append(tx: &rusqlite::Transaction<'_>, event: NewEvent) -> Result<Event> {
    let NewEvent { emitted, kind } = event;
    let pipeline = kind.pipeline();
    let run = kind.run().map(|(_, _, r)| r);
    let id: u64 = tx
        .query_row(
            "INSERT INTO events (emitted, namespace_id, pipeline_id, run_id, kind) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            params![emitted, pipeline.map(|p| p.0), pipeline.map(|p| p.1), run, to_json(&kind)?],
            |r| r.get(0),
        )
        .map_err(|e| backend("store an event", e))?;
    Ok(Event { id, emitted, kind })
}

#[async_trait]
impl EventStore for SqliteStorage {
    async fn insert_event(&self, emitted: u64, kind: &EventKind) -> Result<Event> {
        let event = NewEvent { emitted, kind: kind.clone() };
        self.write("store an event", move |tx| append(tx, event)).await
    }

    async fn list_events(&self, filter: &EventFilter, limit: u64) -> Result<Vec<Event>> {
        let filter = filter.clone();
        self.read(move |conn| {
            const CONTEXT: &str = "list events";
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            all::<Event>(
                conn,
                CONTEXT,
                "WHERE id > ?1 AND (?2 IS NULL OR namespace_id = ?2) AND (?3 IS NULL OR pipeline_id = ?3) \
                 AND (?4 IS NULL OR run_id = ?4) ORDER BY id LIMIT ?5",
                params![filter.after, filter.namespace_id, filter.pipeline_id, filter.run_id, limit],
            )
        })
        .await
    }

    async fn latest_event_id(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))
                .map_err(|e| backend("find the newest event", e))
        })
        .await
    }

    async fn delete_events_before(&self, emitted: u64) -> Result<u64> {
        self.write("delete old events", move |tx| {
            let deleted = tx
                .execute("DELETE FROM events WHERE emitted < ?1", [emitted])
                .map_err(|e| backend("delete old events", e))?;
            Ok(deleted as u64)
        })
        .await
    }
}
