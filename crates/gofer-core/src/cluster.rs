//! This server among others: its identity, and — when the store is shared (PostgreSQL) — its heartbeat, the
//! global queue it claims runs from, and the adoption of runs whose server stopped beating. On SQLite the server
//! is alone: it owns every run it drives and nothing here talks to the store.

use std::sync::Arc;
use std::time::Duration;

use gofer_storage::{ClusterStore, ServerRecord};

/// How this server takes part in a cluster.
#[derive(Clone)]
pub struct Cluster {
    /// This server (its `heartbeat` is filled in at each beat).
    pub me: ServerRecord,
    /// The shared store; `None` when the server is alone.
    pub store: Option<Arc<dyn ClusterStore>>,
    /// How long a server may miss heartbeats before its runs are adopted by another.
    pub lease: Duration,
}

impl Cluster {
    /// A server alone (SQLite, a local run).
    pub fn alone(me: ServerRecord) -> Self {
        Self { me, store: None, lease: Duration::from_secs(15) }
    }

    /// How often a server beats, adopts, and looks again at the queue: three beats per lease, so one lost beat
    /// never costs a server its runs.
    pub fn beat_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(100))
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("me", &self.me.id).field("shared", &self.store.is_some()).finish()
    }
}

/// This process as a server: `<hostname>-<8 random hex digits>` (a restarted server is a new one), with the API
/// address it was configured with.
pub fn this_server(address: &str, version: &str) -> ServerRecord {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gofer".into());
    let mut bytes = [0u8; 4];
    // A clash needs the same hostname and the same 32 random bits; without randomness the pid stands in.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = std::process::id().to_be_bytes();
    }
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let started = gofer_api::epoch_millis();
    ServerRecord {
        id: format!("{hostname}-{suffix}"),
        hostname,
        address: address.to_string(),
        version: version.to_string(),
        started,
        joined: started,
        heartbeat: started,
    }
}

impl Cluster {
    /// Whether this server leads: the live server that joined first does what must be done once across the
    /// cluster (judging deployments, running container extensions). A server alone always leads.
    pub async fn leads(&self) -> bool {
        match self.leader().await {
            Ok(leader) => leader.as_deref() == Some(self.me.id.as_str()),
            Err(e) => {
                tracing::warn!(error = %e, "could not list the servers; not leading meanwhile");
                false
            }
        }
    }

    /// The leading server's id (see [`Cluster::leads`]), as the store says now; `None` when no server may lead
    /// yet. Errors are the store's: a caller should change nothing on them.
    pub async fn leader(&self) -> gofer_storage::Result<Option<String>> {
        let Some(store) = &self.store else { return Ok(Some(self.me.id.clone())) };
        let stale_before = self.stale_before().await?;
        let servers = store.list_servers().await?;
        // The live server that joined first: a server joining later never takes over from a live leader, so the
        // lead moves only when the leader stops (and then to the next oldest).
        let leader = servers
            .iter()
            .filter(|s| s.heartbeat >= stale_before)
            .min_by(|a, b| (a.joined, &a.id).cmp(&(b.joined, &b.id)));
        Ok(leader.map(|s| s.id.clone()))
    }

    /// The store's time before which a heartbeat is stale (its clock, not this server's). Zero for a server
    /// alone.
    pub async fn stale_before(&self) -> gofer_storage::Result<u64> {
        let Some(store) = &self.store else { return Ok(0) };
        let lease = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        Ok(store.now().await?.saturating_sub(lease))
    }

    /// Resolves once this server leads, looking at every beat.
    pub async fn until_leading(&self) {
        while !self.leads().await {
            tokio::time::sleep(self.beat_every()).await;
        }
    }

    /// Resolves once this server no longer leads, looking at every beat (never for a server alone).
    pub async fn until_not_leading(&self) {
        if self.store.is_none() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(self.beat_every()).await;
            if !self.leads().await {
                return;
            }
        }
    }
}
