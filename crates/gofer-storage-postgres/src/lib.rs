//! Gofer's PostgreSQL storage: the shared store several Gofer servers run on (issue 17). So far: the connection
//! pool and the schema, migrated once however many servers start at the same moment (a transaction-scoped advisory
//! lock), append-only, and refused untouched when the database holds a newer schema than this Gofer knows. The
//! stores (`gofer_storage::Storage`) come next; until they pass the conformance suite this backend cannot be
//! selected.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Append-only: each entry is applied once, in order, and recorded in `gofer_schema`.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql")];

/// The advisory lock the servers take to migrate one at a time (any constant; "gofer" in ASCII).
const MIGRATION_LOCK: i64 = 0x0067_6f66_6572;

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
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage").field("pool", &self.pool.status()).finish()
    }
}

impl PostgresStorage {
    /// Connects with a pool of `pool_size` connections and brings the schema up to date.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, OpenError> {
        if pool_size == 0 {
            return Err(OpenError::PoolSize);
        }
        let config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| OpenError::Url { reason: e.to_string() })?;
        let endpoint = endpoint(&config);
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool =
            Pool::builder(manager).max_size(pool_size).build().map_err(|e| OpenError::Url { reason: e.to_string() })?;
        let storage = Self { pool };
        storage.migrate(&endpoint).await?;
        Ok(storage)
    }

    /// The schema version the database holds.
    pub async fn schema_version(&self) -> Result<i64, OpenError> {
        let client = self.client("").await?;
        let row = client.query_one("SELECT version FROM gofer_schema", &[]).await.map_err(OpenError::Migrate)?;
        Ok(row.get(0))
    }

    /// The schema versions this Gofer knows.
    pub fn known_schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    async fn client(&self, endpoint: &str) -> Result<deadpool_postgres::Object, OpenError> {
        self.pool.get().await.map_err(|e| OpenError::Connect { endpoint: endpoint.to_string(), source: Box::new(e) })
    }

    /// Applies the migrations this database lacks, in one transaction, holding the migration lock: of several
    /// servers starting together, one migrates and the others find the work done.
    async fn migrate(&self, endpoint: &str) -> Result<(), OpenError> {
        let mut client = self.client(endpoint).await?;
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
            return Err(OpenError::NewerSchema { endpoint: endpoint.to_string(), found, known });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(migration).await.map_err(OpenError::Migrate)?;
            let version = index as i64 + 1;
            tx.execute("UPDATE gofer_schema SET version = $1", &[&version]).await.map_err(OpenError::Migrate)?;
            tracing::info!(version, "applied a PostgreSQL schema migration");
        }
        tx.commit().await.map_err(OpenError::Migrate)
    }
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
