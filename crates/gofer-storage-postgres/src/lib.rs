//! Gofer's PostgreSQL storage: the shared store several Gofer servers run on. A pool of connections
//! (deadpool-postgres over tokio-postgres), the schema migrated once however many servers start at the same moment
//! (a transaction-scoped advisory lock), append-only and refused untouched when the database holds a newer schema
//! than this Gofer knows; the eleven stores of `gofer_storage::Storage` (one module per aggregate, as in the SQLite
//! backend) and the event bus shared by the servers (`bus.rs`, on `LISTEN`/`NOTIFY`).
//!
//! Several servers write at once here, where SQLite has one writer: a call that reads before it writes locks the
//! rows it decides on (`FOR UPDATE`), and event ids come from one counter row taken last in each transaction, so
//! they grow by one in commit order across all servers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use gofer_storage::{Error, Operation, QueryObserver, Result};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

mod bus;
mod cluster;
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
#[cfg(feature = "test-server")]
pub mod test_server;
mod tokens;

pub use bus::PostgresBus;

/// Append-only: each entry is applied once, in order, and recorded in `gofer_schema`.
const MIGRATIONS: &[&str] =
    &[include_str!("../migrations/0001_init.sql"), include_str!("../migrations/0002_cluster.sql")];

/// The advisory lock the servers take to migrate one at a time (any constant; "gofer" in ASCII).
const MIGRATION_LOCK: i64 = 0x0067_6f66_6572;

/// How long a call waits for a connection (from the pool, or a new one to the server) before it is told the
/// database is unavailable: long enough for a busy pool, short enough that a request gets its 503 while the
/// database is away instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid storage.url: {reason} (give postgres://USER:PASSWORD@HOST:PORT/DATABASE)")]
    Url { reason: String },
    #[error("storage.pool_size must be at least 1")]
    PoolSize,
    #[error("could not reach PostgreSQL at {endpoint}; is it running, and do storage.url's user and password work?")]
    Connect {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("could not bring the PostgreSQL schema up to date")]
    Migrate(#[source] tokio_postgres::Error),
    #[error(
        "the database at {endpoint} has schema version {found}, newer than this Gofer knows ({known}); run a newer \
         Gofer, or point storage.url elsewhere"
    )]
    NewerSchema { endpoint: String, found: i64, known: i64 },
}

/// The PostgreSQL backend. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStorage {
    pool: Pool,
    config: Arc<tokio_postgres::Config>,
    /// Told the time of every call, when set (the server's metrics).
    observer: Option<Arc<dyn QueryObserver>>,
    /// The server this storage writes for: its writes to a run another server took over are refused.
    server: Option<Arc<str>>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("endpoint", &self.endpoint())
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStorage {
    /// Connects with a pool of `pool_size` connections and brings the schema up to date.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, OpenError> {
        if pool_size == 0 {
            return Err(OpenError::PoolSize);
        }
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| OpenError::Url { reason: e.to_string() })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("gofer");
        }
        // A connection whose peer vanished (a failover, a dropped NAT entry) fails within seconds instead of
        // hanging a call, or the event listener, for the system's TCP timeout (minutes to hours).
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(30));
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| OpenError::Url { reason: e.to_string() })?;
        let storage = Self { pool, config: Arc::new(config), observer: None, server: None };
        storage.migrate().await?;
        Ok(storage)
    }

    /// This storage, telling `observer` how long each call takes.
    pub fn observed_by(mut self, observer: Arc<dyn QueryObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// This storage, writing for server `id`: its writes to a run another server owns are refused
    /// (`Error::Conflict`), so a server that lost a run records nothing more about it.
    pub fn as_server(mut self, id: &str) -> Self {
        self.server = Some(Arc::from(id));
        self
    }

    pub(crate) fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// Where this storage points, for messages: `host:port/database`, never the password.
    pub fn endpoint(&self) -> String {
        endpoint(&self.config)
    }

    /// The schema version the database holds.
    pub async fn schema_version(&self) -> Result<i64, OpenError> {
        let client = self.pool.get().await.map_err(|e| self.connect_error(e))?;
        let row = client.query_one("SELECT version FROM gofer_schema", &[]).await.map_err(OpenError::Migrate)?;
        Ok(row.get(0))
    }

    /// The schema versions this Gofer knows.
    pub fn known_schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    fn connect_error(&self, e: impl std::error::Error + Send + Sync + 'static) -> OpenError {
        OpenError::Connect { endpoint: self.endpoint(), source: Box::new(e) }
    }

    /// Applies the migrations this database lacks, in one transaction, holding the migration lock: of several
    /// servers starting together, one migrates and the others find the work done.
    async fn migrate(&self) -> Result<(), OpenError> {
        let mut client = self.pool.get().await.map_err(|e| self.connect_error(e))?;
        let tx = client.transaction().await.map_err(OpenError::Migrate)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(OpenError::Migrate)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS gofer_schema (version BIGINT NOT NULL)")
            .await
            .map_err(OpenError::Migrate)?;
        let found: i64 =
            match tx.query_opt("SELECT version FROM gofer_schema", &[]).await.map_err(OpenError::Migrate)? {
                Some(row) => row.get(0),
                None => {
                    tx.execute("INSERT INTO gofer_schema (version) VALUES (0)", &[])
                        .await
                        .map_err(OpenError::Migrate)?;
                    0
                }
            };
        let known = Self::known_schema_version();
        if found > known {
            // Rolled back: nothing is touched.
            return Err(OpenError::NewerSchema { endpoint: self.endpoint(), found, known });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(migration).await.map_err(OpenError::Migrate)?;
            let version = index as i64 + 1;
            tx.execute("UPDATE gofer_schema SET version = $1", &[&version]).await.map_err(OpenError::Migrate)?;
            tracing::info!(version, "applied a PostgreSQL schema migration");
        }
        tx.commit().await.map_err(OpenError::Migrate)
    }

    /// A connection from the pool for one call, timed as `operation` until the returned guard is dropped.
    async fn session(&self, operation: Operation, context: &'static str) -> Result<Session> {
        let timer = Timer { observer: self.observer.clone(), operation, started: Instant::now() };
        let conn = self.pool.get().await.map_err(|e| Error::Unavailable {
            context: context.to_string(),
            source: format!("no connection to PostgreSQL at {}: {e}", self.endpoint()).into(),
        })?;
        Ok(Session { conn, _timer: timer })
    }
}

/// A pooled connection held for one storage call; reports the call's time when dropped.
pub(crate) struct Session {
    conn: Object,
    _timer: Timer,
}

impl Session {
    pub(crate) fn client(&self) -> &Object {
        &self.conn
    }

    /// Begins the call's transaction.
    pub(crate) async fn begin(&mut self, context: &'static str) -> Result<deadpool_postgres::Transaction<'_>> {
        self.conn.transaction().await.map_err(|e| backend(context, e))
    }
}

struct Timer {
    observer: Option<Arc<dyn QueryObserver>>,
    operation: Operation,
    started: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(observer) = &self.observer {
            observer.observe(self.operation, self.started.elapsed());
        }
    }
}

/// Commits a call's transaction.
pub(crate) async fn commit(tx: deadpool_postgres::Transaction<'_>, context: &'static str) -> Result<()> {
    tx.commit().await.map_err(|e| backend(context, e))
}

/// Where a configuration points, for messages: `host:port/database`, never the password.
fn endpoint(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("(default database)"))
}

/// Whether a database error may pass: the connection went (or could not be made), the server is shutting down or
/// starting, out of room or connections, or the transaction lost a deadlock or a serialization race.
fn passing(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let class = &code.code()[..2];
            // 08: connection exception; 53: insufficient resources; 57: operator intervention (shutdown).
            matches!(class, "08" | "53" | "57")
                || [
                    &SqlState::T_R_SERIALIZATION_FAILURE,
                    &SqlState::T_R_DEADLOCK_DETECTED,
                    &SqlState::READ_ONLY_SQL_TRANSACTION,
                ]
                .contains(&code)
        }
        // No SQLSTATE: the error came from the connection itself (I/O, a closed socket).
        None => {
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                if inner.is::<std::io::Error>() {
                    return true;
                }
                source = inner.source();
            }
            false
        }
    }
}

/// A failure of the database: `Unavailable` when it may pass, else `Backend`.
pub(crate) fn backend(context: &str, e: tokio_postgres::Error) -> Error {
    if passing(&e) {
        Error::Unavailable { context: context.to_string(), source: Box::new(e) }
    } else {
        Error::Backend { context: context.to_string(), source: Box::new(e) }
    }
}

/// A value that could not be read from or written to a column.
pub(crate) fn codec_error(context: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::Backend { context: context.to_string(), source: source.into() }
}

pub(crate) fn not_found(what: String) -> Error {
    Error::NotFound { what }
}

/// Maps unique violations to `Exists` naming `what`; anything else as [`backend`].
pub(crate) fn exists_error(
    context: &'static str,
    what: impl FnOnce() -> String,
) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) { Error::Exists { what: what() } } else { backend(context, e) }
    }
}
