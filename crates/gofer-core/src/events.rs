//! The event log: every state change is stored with its event, then the event is announced on the bus to live
//! followers. A stream replays stored history and continues live without gaps or duplicates.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use gofer_api::epoch_millis;
use gofer_api::models::{Event, EventKind};
use gofer_storage::{EventBus, EventFilter, Live, NewEvent, Storage};
use tokio::sync::Mutex;

const PAGE: u64 = 500;

/// Publishes and streams events. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    storage: Arc<dyn Storage>,
    bus: Arc<dyn EventBus>,
    /// Held across store-then-announce so live followers see ids in order.
    order: Arc<Mutex<()>>,
}

/// What a write that stores a change with its event returns: the event (none when nothing changed), and perhaps
/// what was stored.
pub trait Told {
    fn event(&self) -> Option<&Event>;
}

impl Told for Event {
    fn event(&self) -> Option<&Event> {
        Some(self)
    }
}

impl<T> Told for (T, Event) {
    fn event(&self) -> Option<&Event> {
        Some(&self.1)
    }
}

impl Told for gofer_storage::Registered {
    fn event(&self) -> Option<&Event> {
        self.event.as_ref()
    }
}

/// An event of a change made now.
pub fn now(kind: EventKind) -> NewEvent {
    NewEvent { emitted: epoch_millis(), kind }
}

impl Events {
    pub fn new(storage: Arc<dyn Storage>, bus: Arc<dyn EventBus>) -> Self {
        Self { storage, bus, order: Arc::default() }
    }

    /// Runs `write`, which stores a change together with its event in one transaction, and announces the event.
    pub async fn record<T, F, Fut>(&self, write: F) -> gofer_storage::Result<T>
    where
        T: Told,
        F: FnOnce() -> Fut,
        Fut: Future<Output = gofer_storage::Result<T>>,
    {
        let _order = self.order.lock().await;
        let written = write().await?;
        if let Some(event) = written.event() {
            self.bus.announce(event.clone());
        }
        Ok(written)
    }

    /// Stores and announces an event of a change that is not stored itself (an extension's container came up or
    /// went away). A storage failure is logged. Stored changes use [`Events::record`].
    pub async fn publish(&self, kind: EventKind) {
        let stored = self.record(|| self.storage.insert_event(epoch_millis(), &kind)).await;
        if let Err(e) = stored {
            tracing::error!(error = %e, ?kind, "could not store an event");
        }
    }

    /// The events announced from now on (a follower that falls behind is told `Live::Lagged`).
    pub fn follow(&self) -> futures::stream::BoxStream<'static, Live> {
        self.bus.follow()
    }

    /// Stored events passing `filter`, oldest first; with `follow`, then live events until the receiver goes away.
    pub fn stream(
        &self,
        filter: EventFilter,
        follow: bool,
    ) -> impl Stream<Item = gofer_storage::Result<Event>> + use<> {
        // Follow before reading history, so nothing published in between is missed.
        let live = follow.then(|| self.bus.follow());
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
    live: Option<futures::stream::BoxStream<'static, Live>>,
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
            match live.next().await? {
                Live::Event(event) if self.filter.matches(&event) => {
                    self.filter.after = event.id;
                    return Some(Ok(event));
                }
                Live::Event(_) => {}
                // Fell behind the bus: catch up from storage.
                Live::Lagged => self.history_done = false,
            }
        }
    }
}
