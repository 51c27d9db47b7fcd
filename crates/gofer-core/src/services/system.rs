//! Server-wide switches and the event log.

use futures::Stream;
use gofer_api::models::{Event, EventKind, SystemSettings};
use gofer_storage::EventFilter;

use crate::error::{Error, Result};
use crate::events;
use crate::{Gofer, check_id};

impl Gofer {
    pub async fn get_system(&self) -> Result<SystemSettings> {
        Ok(self.storage.get_system().await?)
    }

    /// Turns maintenance mode on (new runs are refused) or off.
    pub async fn set_maintenance(&self, maintenance: bool) -> Result<SystemSettings> {
        let settings = SystemSettings { maintenance };
        let changed = events::now(EventKind::MaintenanceChanged { maintenance });
        self.events.record(|| self.storage.set_system(&settings, &changed)).await?;
        Ok(settings)
    }

    /// The servers sharing this server's state, with their heartbeats and the runs each drives; a server alone
    /// lists itself.
    pub async fn servers(&self) -> Result<gofer_api::requests::ListServersResponse> {
        use gofer_api::models::{Server, ServerRun};
        let cluster = self.orchestrator.cluster();
        let now = gofer_api::epoch_millis();
        // Judged by the store's clock, as the servers judge each other.
        let stale_before = cluster.stale_before().await?;
        let leader = cluster.leader().await?;
        let as_server = |record: &gofer_storage::ServerRecord, runs: Vec<ServerRun>| Server {
            id: record.id.clone(),
            hostname: record.hostname.clone(),
            address: record.address.clone(),
            version: record.version.clone(),
            started: record.started,
            heartbeat: record.heartbeat,
            this: record.id == cluster.me.id,
            alive: record.heartbeat >= stale_before,
            leading: leader.as_deref() == Some(record.id.as_str()),
            runs,
        };
        let servers = match &cluster.store {
            None => {
                let runs = self
                    .orchestrator
                    .driving()
                    .into_iter()
                    .map(|k| ServerRun { namespace_id: k.namespace_id, pipeline_id: k.pipeline_id, run_id: k.run_id })
                    .collect();
                let me = gofer_storage::ServerRecord { heartbeat: now, ..cluster.me.clone() };
                vec![as_server(&me, runs)]
            }
            Some(store) => {
                let owned = store.list_owned_runs().await?;
                store
                    .list_servers()
                    .await?
                    .iter()
                    .map(|record| {
                        let runs = owned
                            .iter()
                            .filter(|run| run.owner == record.id)
                            .map(|run| ServerRun {
                                namespace_id: run.namespace_id.clone(),
                                pipeline_id: run.pipeline_id.clone(),
                                run_id: run.run_id,
                            })
                            .collect();
                        as_server(record, runs)
                    })
                    .collect()
            }
        };
        Ok(gofer_api::requests::ListServersResponse {
            shared: cluster.store.is_some(),
            lease_seconds: cluster.lease.as_secs(),
            servers,
        })
    }

    /// The container engine tasks run on, in words.
    pub fn scheduler_description(&self) -> String {
        self.orchestrator.scheduler().describe()
    }

    /// The id of the newest event stored (0 when none is).
    pub async fn latest_event_id(&self) -> Result<u64> {
        Ok(self.storage.latest_event_id().await?)
    }

    /// Stored events after `filter.after`, oldest first; with `follow`, then live ones.
    pub fn events(
        &self,
        filter: EventFilter,
        follow: bool,
    ) -> Result<impl Stream<Item = gofer_storage::Result<Event>> + use<>> {
        if filter.run_id.is_some() && filter.pipeline_id.is_none() {
            return Err(Error::invalid("filtering events by run needs the pipeline (and namespace) too"));
        }
        if filter.pipeline_id.is_some() && filter.namespace_id.is_none() {
            return Err(Error::invalid("filtering events by pipeline needs the namespace too"));
        }
        check_id("after", filter.after)?;
        if let Some(run_id) = filter.run_id {
            check_id("run", run_id)?;
        }
        Ok(self.events.stream(filter, follow))
    }
}
