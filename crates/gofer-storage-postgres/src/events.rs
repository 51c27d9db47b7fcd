//! The event log.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gofer_api::models::{Event, EventKind};
use gofer_storage::{EventFilter, EventStore, NewEvent, Operation, Result};

use crate::codec::{Columns, all, execute, first, int, opt_int, rows, to_json, value};
use crate::{PostgresStorage, commit};

/// The channel every stored event is announced on (its id as the payload), at its transaction's commit.
pub(crate) const CHANNEL: &str = "gofer_events";

/// Appends an event within the caller's transaction: the next id from the counter row (locked until the
/// transaction ends, so ids grow by one in commit order across servers), and a notification that PostgreSQL
/// delivers to every listening server if, and when, the transaction commits. Call it as the transaction's last
/// write, so the counter is held as briefly as can be.
pub(crate) async fn append(client: &impl GenericClient, event: NewEvent) -> Result<Event> {
    const CONTEXT: &str = "store an event";
    let NewEvent { emitted, kind } = event;
    let pipeline = kind.pipeline();
    let run = opt_int(kind.run().map(|(_, _, r)| r))?;
    let row = first(
        client,
        CONTEXT,
        "WITH next AS (UPDATE event_counter SET last = last + 1 RETURNING last), \
              stored AS (INSERT INTO events (id, emitted, namespace_id, pipeline_id, run_id, kind) \
                         SELECT last, $1, $2, $3, $4, $5 FROM next RETURNING id) \
         SELECT id, pg_notify('gofer_events', id::text) FROM stored",
        &[&int(emitted)?, &pipeline.map(|p| p.0), &pipeline.map(|p| p.1), &run, &to_json(&kind)?],
    )
    .await?;
    let id = match row {
        Some(row) => value(CONTEXT, row.uint(0))?,
        None => return Err(crate::codec_error(CONTEXT, "the event counter row is missing")),
    };
    Ok(Event { id, emitted, kind })
}

/// Events passing `filter`, oldest first.
pub(crate) async fn list(client: &impl GenericClient, filter: &EventFilter, limit: u64) -> Result<Vec<Event>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    all::<Event>(
        client,
        "list events",
        "WHERE id > $1 AND ($2::TEXT IS NULL OR namespace_id = $2) AND ($3::TEXT IS NULL OR pipeline_id = $3) \
         AND ($4::BIGINT IS NULL OR run_id = $4) ORDER BY id LIMIT $5",
        &[&int(filter.after)?, &filter.namespace_id, &filter.pipeline_id, &opt_int(filter.run_id)?, &limit],
    )
    .await
}

#[async_trait]
impl EventStore for PostgresStorage {
    async fn insert_event(&self, emitted: u64, kind: &EventKind) -> Result<Event> {
        const CONTEXT: &str = "store an event";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        let event = append(&tx, NewEvent { emitted, kind: kind.clone() }).await?;
        commit(tx, CONTEXT).await?;
        Ok(event)
    }

    async fn list_events(&self, filter: &EventFilter, limit: u64) -> Result<Vec<Event>> {
        let session = self.session(Operation::Read, "list events").await?;
        list(session.client(), filter, limit).await
    }

    async fn latest_event_id(&self) -> Result<u64> {
        const CONTEXT: &str = "find the newest event";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let found = rows(session.client(), CONTEXT, "SELECT COALESCE(MAX(id), 0) FROM events", &[]).await?;
        match found.first() {
            Some(row) => value(CONTEXT, row.uint(0)),
            None => Ok(0),
        }
    }

    async fn delete_events_before(&self, emitted: u64) -> Result<u64> {
        const CONTEXT: &str = "delete old events";
        let session = self.session(Operation::Write, CONTEXT).await?;
        execute(session.client(), CONTEXT, "DELETE FROM events WHERE emitted < $1", &[&int(emitted)?]).await
    }
}
