//! The event bus: how an event, once stored, reaches the streams following it live. In-process today
//! ([`LocalBus`]); a bus shared by several servers (PostgreSQL's `LISTEN`/`NOTIFY`) implements the same trait and
//! passes the same [`crate::conformance::event_bus`] checks.
//!
//! The bus carries no history and promises no delivery: followers read history from storage, and a follower that
//! falls behind is told so ([`Live::Lagged`]) and catches up from storage. It never skips an event silently.

use futures::stream::BoxStream;
use gofer_api::models::Event;
use tokio::sync::broadcast;

/// What a follower receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    Event(Event),
    /// Events were announced that this follower will not receive: read them from storage.
    Lagged,
}

pub trait EventBus: Send + Sync {
    /// Hands a stored event to every follower. Callers announce events in the order of their ids.
    fn announce(&self, event: Event);
    /// The events announced from now on, in the order announced; ends when the bus goes away.
    fn follow(&self) -> BoxStream<'static, Live>;
}

/// How many events a follower of a [`LocalBus`] may fall behind before it is told it lagged.
pub const LOCAL_BUS_CAPACITY: usize = 1024;

/// The bus of one process.
pub struct LocalBus {
    live: broadcast::Sender<Event>,
}

impl LocalBus {
    pub fn new(capacity: usize) -> Self {
        Self { live: broadcast::channel(capacity.max(1)).0 }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new(LOCAL_BUS_CAPACITY)
    }
}

impl EventBus for LocalBus {
    fn announce(&self, event: Event) {
        // No follower is not an error.
        let _ = self.live.send(event);
    }

    fn follow(&self) -> BoxStream<'static, Live> {
        let receiver = self.live.subscribe();
        Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(event) => Some((Live::Event(event), receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Live::Lagged, receiver)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }))
    }
}
