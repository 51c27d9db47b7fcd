//! Several Gofer servers on one store: who is alive (a heartbeat per server), which server drives each run (its
//! owner, set when the run is claimed from the queue or adopted from a dead server), and the limits that hold across
//! all of them. Only a store that several servers can share implements [`ClusterStore`] (PostgreSQL); a server on
//! SQLite is alone and never asks.
//!
//! Fencing lives in the store: a store opened as one server refuses that server's writes to a run another server
//! has taken over (`Error::Conflict`), so a server that lost its lease cannot record anything about the run.

use async_trait::async_trait;
use gofer_api::models::Run;

use crate::Result;

/// One server as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRecord {
    /// Unique per process: a server that restarts is a new server (its old self's runs are adopted).
    pub id: String,
    pub hostname: String,
    /// Where its API listens, as configured.
    pub address: String,
    pub version: String,
    /// Epoch milliseconds, by its own clock.
    pub started: u64,
    /// Epoch milliseconds of its first heartbeat, by the store's clock (set by the store).
    pub joined: u64,
    /// Epoch milliseconds of its last heartbeat, by the store's clock (set by the store).
    pub heartbeat: u64,
}

/// A run as one server drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRun {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub run_id: u64,
    pub owner: String,
}

/// The limits a claim must stay within, counted over every server's runs in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Runs in flight across all servers.
    pub global: u64,
    /// Runs in flight of the run's pipeline.
    pub pipeline: u64,
}

/// What claiming a queued run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This server drives it now.
    Claimed(Box<Run>),
    /// Another server claimed it first, or it is no longer queued.
    Gone,
    /// Every server together runs `global` runs already: nothing more starts now.
    GlobalLimit,
    /// Its pipeline runs as many as it may.
    PipelineLimit,
}

/// Where a container extension answers, as the server that supervises it recorded it, so that any server can call
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionEndpoint {
    pub extension_id: String,
    /// The server supervising it.
    pub server: String,
    /// `http://host:port` of its container.
    pub base_url: String,
    /// The bearer secret Gofer calls it with, sealed with the secret key the servers share.
    pub sealed_secret: Vec<u8>,
    pub container_id: String,
    /// What it said of itself (`/api/info`), as JSON.
    pub documentation: String,
}

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// The installation id every server shares (container labels name it): `proposed` when none is stored yet.
    async fn installation_id(&self, proposed: &str) -> Result<String>;
    /// The store's clock (epoch milliseconds): heartbeats are written and judged by it alone, so the servers' own
    /// clocks may disagree.
    async fn now(&self) -> Result<u64>;
    /// Registers a server, or renews its heartbeat (at the store's clock; `server.heartbeat` is ignored).
    async fn heartbeat(&self, server: &ServerRecord) -> Result<()>;
    /// Marks a server gone at once (a clean stop): its runs are adopted without waiting for its lease to run out.
    async fn leave(&self, server_id: &str) -> Result<()>;
    /// Every registered server, by id.
    async fn list_servers(&self) -> Result<Vec<ServerRecord>>;
    /// Every run in flight that a server drives.
    async fn list_owned_runs(&self) -> Result<Vec<OwnedRun>>;
    /// Claims a queued (pending, unowned) run for `server`, within `limits` when given (a run cancelled before it
    /// started is claimed without them). One claim at a time across all servers, so the limits hold.
    async fn claim_run(
        &self,
        server: &str,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        limits: Option<Limits>,
    ) -> Result<Claim>;
    /// Gives `server` the runs in flight of every other server whose last heartbeat is older than `stale_before`
    /// (epoch milliseconds at the store's clock), and forgets those servers. Returns the runs adopted, oldest first.
    async fn adopt_runs(&self, server: &str, stale_before: u64) -> Result<Vec<Run>>;
    /// Records where a container extension answers (replacing what was recorded); `NotFound` if it is not installed.
    async fn put_extension_endpoint(&self, endpoint: &ExtensionEndpoint) -> Result<()>;
    async fn get_extension_endpoint(&self, extension_id: &str) -> Result<Option<ExtensionEndpoint>>;
    /// Forgets where an extension answers, if `server` recorded it.
    async fn delete_extension_endpoint(&self, extension_id: &str, server: &str) -> Result<()>;
}
