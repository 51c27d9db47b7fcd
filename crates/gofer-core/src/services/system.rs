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
