//! The event log: every state change is stored with a timestamp, then broadcast to live listeners. A stream
//! replays stored history and continues live without gaps or duplicates.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use gofer_api::epoch_millis;
use gofer_api::models::{Event, EventKind};
use gofer_storage::{EventFilter, Storage};
use tokio::sync::{Mutex, broadcast};

const PAGE: u64 = 500;
const LIVE_CAPACITY: usize = 1024;

/// Publishes and streams events. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    storage: Arc<dyn Storage>,
    live: broadcast::Sender<Event>,
    /// Held across store-then-broadcast so live listeners see ids in order.
    order: Arc<Mutex<()>>,
}

impl Events {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self { storage, live, order: Arc::default() }
    }

    /// Stores and broadcasts an event. A storage failure is logged: losing an event must not fail a run.
    pub async fn publish(&self, kind: EventKind) {
        let _order = self.order.lock().await;
        match self.storage.insert_event(epoch_millis(), &kind).await {
            Ok(event) => {
                let _ = self.live.send(event);
            }
            Err(e) => tracing::error!(error = %e, ?kind, "could not store an event"),
        }
    }

    /// Stored events passing `filter`, oldest first; with `follow`, then live events until the receiver goes away.
    pub fn stream(
        &self,
        filter: EventFilter,
        follow: bool,
    ) -> impl Stream<Item = gofer_storage::Result<Event>> + use<> {
        // Subscribe before reading history, so nothing published in between is missed.
        let live = follow.then(|| self.live.subscribe());
        let state =
            StreamState { storage: self.storage.clone(), filter, live, buffer: Vec::new(), history_done: false };
        futures::stream::unfold(state, |mut state| async move {
            let next = state.next().await;
            next.map(|item| (item, state))
        })
    }

    /// Deletes events older than `retention`, now and then every `interval`, for as long as it runs (in a
    /// [`crate::background::Background`] scope, which stops it).
    pub async fn prune(self, retention: Duration, interval: Duration) {
        loop {
            let cutoff = epoch_millis().saturating_sub(retention.as_millis() as u64);
            match self.storage.delete_events_before(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned old events"),
                Err(e) => tracing::warn!(error = %e, "could not prune old events"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

struct StreamState {
    storage: Arc<dyn Storage>,
    filter: EventFilter,
    live: Option<broadcast::Receiver<Event>>,
    /// Stored events not yet handed out, newest last.
    buffer: Vec<Event>,
    history_done: bool,
}

impl StreamState {
    async fn next(&mut self) -> Option<gofer_storage::Result<Event>> {
        loop {
            if let Some(event) = self.buffer.pop() {
                self.filter.after = event.id;
                return Some(Ok(event));
            }
            if !self.history_done {
                match self.storage.list_events(&self.filter, PAGE).await {
                    Ok(mut page) => {
                        self.history_done = (page.len() as u64) < PAGE;
                        page.reverse();
                        self.buffer = page;
                        continue;
                    }
                    Err(e) => {
                        self.history_done = true;
                        self.live = None;
                        return Some(Err(e));
                    }
                }
            }
            let live = self.live.as_mut()?;
            match live.recv().await {
                Ok(event) if self.filter.matches(&event) => {
                    self.filter.after = event.id;
                    return Some(Ok(event));
                }
                Ok(_) => {}
                // Fell behind the live channel: catch up from storage.
                Err(broadcast::error::RecvError::Lagged(_)) => self.history_done = false,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
