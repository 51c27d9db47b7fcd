//! Gofer's embedded SQLite storage: one file under the data dir, WAL mode, append-only migrations.
//!
//! Writes go through a single connection (SQLite allows one writer at a time anyway) on tokio's blocking pool;
//! reads use a small pool of connections of their own, so API reads never queue behind the orchestrator's writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gofer_storage::{Error, Operation, QueryObserver, Result, SubscriptionKey};
use rusqlite::{Connection, params};

mod codec;
mod deployments;
mod events;
mod extensions;
mod namespaces;
mod pipelines;
mod roles;
mod runs;
mod secrets;
mod subscriptions;
mod system;
mod tokens;

/// Append-only: each entry is applied once, in order, and recorded in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_attempts_events_system.sql"),
    include_str!("../migrations/0003_extensions_subscriptions.sql"),
    include_str!("../migrations/0004_extension_registrations_tokens_roles.sql"),
    include_str!("../migrations/0005_declared_subscriptions.sql"),
    include_str!("../migrations/0006_secrets.sql"),
    include_str!("../migrations/0007_role_grants.sql"),
    include_str!("../migrations/0008_token_metadata.sql"),
    include_str!("../migrations/0009_cancel_requests.sql"),
    include_str!("../migrations/0010_deployments.sql"),
];
const READERS: usize = 3;
/// Page cache per connection, in KiB: enough for the hot indexes, small enough to keep the server lean.
const CACHE_KIB: i64 = 1024;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("could not open the SQLite database at {path}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the database at {path} has schema version {found}, newer than this Gofer knows ({known}); run a newer \
         Gofer or point --data-dir elsewhere"
    )]
    NewerSchema { path: PathBuf, found: usize, known: usize },
}

/// The SQLite backend. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStorage {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
    /// Told the time of every call, when set (the server's metrics).
    observer: Option<Arc<dyn QueryObserver>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let sqlite = |source| OpenError::Sqlite { path: path.to_path_buf(), source };
        let mut writer = Connection::open(path).map_err(sqlite)?;
        configure(&writer).map_err(sqlite)?;
        let found: usize = writer.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite)?;
        if found > MIGRATIONS.len() {
            return Err(OpenError::NewerSchema { path: path.to_path_buf(), found, known: MIGRATIONS.len() });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(found) {
            let tx = writer.transaction().map_err(sqlite)?;
            tx.execute_batch(migration).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", index + 1).map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
        }
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(path).map_err(sqlite)?;
            configure(&reader).map_err(sqlite)?;
            readers.push(Mutex::new(reader));
        }
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(readers),
            next_reader: Arc::new(AtomicUsize::new(0)),
            observer: None,
        })
    }

    /// This storage, telling `observer` how long each call takes.
    pub fn observed_by(mut self, observer: Arc<dyn QueryObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe(&self, operation: Operation, started: std::time::Instant) {
        if let Some(observer) = &self.observer {
            observer.observe(operation, started.elapsed());
        }
    }

    /// Runs a read on the calling task, not on the blocking pool. Reads are short indexed queries, and in WAL mode
    /// they never wait for the writer, so the hand-off to another thread would cost more than the query itself
    /// (measured: +18 % requests/s and lower latency for the run list; docs/benchmarks.md). Writes, which can wait
    /// for the single writer, stay on the blocking pool.
    async fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = self.readers[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = f(&conn);
        drop(conn);
        self.observe(Operation::Read, started);
        value
    }

    async fn write<T, F>(&self, context: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let writer = self.writer.clone();
        let value = tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| backend(context, e))?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| backend(context, e))?;
            Ok(value)
        })
        .await
        .map_err(|e| backend(context, e))?;
        self.observe(Operation::Write, started);
        value
    }
}

impl SqliteStorage {
    /// Runs a `DELETE ... WHERE id = ?1`; NotFound naming `what` when no row matched.
    async fn delete_by_id(&self, context: &'static str, sql: &'static str, id: &str, what: String) -> Result<()> {
        let id = id.to_string();
        self.write(context, move |tx| {
            if tx.execute(sql, [&id]).map_err(|e| backend(context, e))? == 0 {
                return Err(not_found(what));
            }
            Ok(())
        })
        .await
    }

    /// Runs one statement on the subscription named by `key` (bound as ?1..?4, `value` as ?5 when given);
    /// NotFound when no row matched.
    async fn change_subscription(
        &self,
        context: &'static str,
        key: &SubscriptionKey,
        sql: String,
        value: Option<i64>,
    ) -> Result<()> {
        let key = key.clone();
        self.write(context, move |tx| {
            let keys = [&key.namespace_id, &key.pipeline_id, &key.extension_id, &key.label];
            let changed = match value {
                Some(value) => tx.execute(&sql, params![keys[0], keys[1], keys[2], keys[3], value]),
                None => tx.execute(&sql, params![keys[0], keys[1], keys[2], keys[3]]),
            }
            .map_err(|e| backend(context, e))?;
            if changed == 0 {
                return Err(not_found(key.to_string()));
            }
            Ok(())
        })
        .await
    }
}

pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// A failure of the database: `Unavailable` when it may pass (a full disk, a busy or read-only file, an I/O
/// error), else `Backend`.
pub(crate) fn backend(context: &str, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    let source: Box<dyn std::error::Error + Send + Sync> = Box::new(source);
    let passing = matches!(
        source.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(failure, _)) if matches!(
            failure.code,
            rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::CannotOpen
        )
    );
    if passing {
        Error::Unavailable { context: context.to_string(), source }
    } else {
        Error::Backend { context: context.to_string(), source }
    }
}

pub(crate) fn not_found(what: String) -> Error {
    Error::NotFound { what }
}

/// Maps "no row" to NotFound and primary-key violations to Exists.
pub(crate) fn sql_error(context: &'static str, what: impl FnOnce() -> String) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| match &e {
        rusqlite::Error::QueryReturnedNoRows => Error::NotFound { what: what() },
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Error::Exists { what: what() }
        }
        _ => backend(context, e),
    }
}
