//! The event bus several servers share: every stored event is announced by PostgreSQL itself (`pg_notify` in the
//! transaction that stores it, delivered at commit, in commit order — which the event counter makes id order), and
//! each server's one listening connection hands the events to its local followers.
//!
//! A server's own events also come through [`EventBus::announce`] right after their commit, so its followers need
//! not wait for the round trip; whichever of the two arrives first delivers the event, and the other is dropped by
//! id. An event is delivered only as the successor of the last one, so nothing overtakes a missing id: an out of
//! order announcement is dropped (its notification brings it in turn), and when the listener had to reconnect, or
//! finds ids missing, followers are told [`Live::Lagged`] and catch up from storage. Nothing is skipped silently.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use gofer_api::models::Event;
use gofer_storage::bus::LOCAL_BUS_CAPACITY;
use gofer_storage::{EventBus, EventFilter, Live, Operation};
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::PostgresStorage;
use crate::events::CHANNEL;

/// How many events the listener reads from storage per query when it catches up.
const BATCH: u64 = 500;

/// How long the listener waits for a notification before it asks the database itself: a probe of its connection,
/// and a catch-up on whatever was stored without a notification reaching it.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The bus of the servers sharing one PostgreSQL database. Dropping it stops its listener.
pub struct PostgresBus {
    shared: Arc<Shared>,
    listener: tokio::task::AbortHandle,
}

struct Shared {
    live: broadcast::Sender<Live>,
    /// Whether the listener is listening now.
    listening: tokio::sync::watch::Sender<bool>,
    /// The id of the last event delivered; `None` until the first is.
    last: Mutex<Option<u64>>,
}

impl Shared {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delivers an event read from storage: after a gap, followers are told they lagged first.
    fn deliver(&self, event: Event) {
        let mut last = self.last();
        match *last {
            Some(previous) if event.id <= previous => return,
            Some(previous) if event.id != previous + 1 => {
                let _ = self.live.send(Live::Lagged);
            }
            _ => {}
        }
        *last = Some(event.id);
        let _ = self.live.send(Live::Event(event));
    }

    /// Everything up to `newest` counts as delivered; if that skips anything, followers are told they lagged.
    fn skip_to(&self, newest: u64) {
        let mut last = self.last();
        match *last {
            None => {
                // The first connection: followers that came before it may have missed events stored meanwhile.
                *last = Some(newest);
                if newest > 0 && self.live.receiver_count() > 0 {
                    let _ = self.live.send(Live::Lagged);
                }
            }
            Some(previous) if previous < newest => {
                *last = Some(newest);
                let _ = self.live.send(Live::Lagged);
            }
            Some(_) => {}
        }
    }
}

impl PostgresBus {
    /// Starts listening for the events stored in `storage`'s database (on a connection of its own, outside the
    /// pool, reconnected while the database is away).
    pub fn start(storage: &PostgresStorage) -> Self {
        let shared = Arc::new(Shared {
            live: broadcast::channel(LOCAL_BUS_CAPACITY).0,
            listening: tokio::sync::watch::Sender::new(false),
            last: Mutex::new(None),
        });
        let listener = tokio::spawn(listen(storage.clone(), shared.clone())).abort_handle();
        Self { shared, listener }
    }

    /// Resolves once the listener is listening (at once if it is): every event committed from then on reaches
    /// this bus's followers. A server waits for it before it serves, so no follower misses an event at startup.
    pub async fn listening(&self) {
        let mut listening = self.shared.listening.subscribe();
        let _ = listening.wait_for(|listening| *listening).await;
    }
}

impl Drop for PostgresBus {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl EventBus for PostgresBus {
    fn announce(&self, event: Event) {
        let mut last = self.shared.last();
        // Only the successor of the last event: anything else arrives through the listener, in order.
        if last.is_none_or(|previous| event.id == previous + 1) {
            *last = Some(event.id);
            let _ = self.shared.live.send(Live::Event(event));
        }
    }

    fn follow(&self) -> BoxStream<'static, Live> {
        let receiver = self.shared.live.subscribe();
        Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(live) => Some((live, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Live::Lagged, receiver)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }))
    }
}

/// Listens for as long as the bus lives, reconnecting with a growing pause (0.1 s doubling to 5 s).
async fn listen(storage: PostgresStorage, shared: Arc<Shared>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let error = listen_once(&storage, &shared, &mut pause).await;
        shared.listening.send_replace(false);
        tracing::warn!(error = %error, endpoint = %storage.endpoint(), "the event listener lost PostgreSQL; reconnecting");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One connection's worth of listening; returns why it ended.
async fn listen_once(
    storage: &PostgresStorage,
    shared: &Shared,
    pause: &mut Duration,
) -> Box<dyn std::error::Error + Send + Sync> {
    let (client, mut connection) = match storage.config.connect(NoTls).await {
        Ok(connected) => connected,
        Err(e) => return Box::new(e),
    };
    let (notified, mut notifications) = mpsc::unbounded_channel();
    // The connection is driven here; notifications (event ids) and its end go to the loop below.
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Ok(id) = n.payload().parse::<u64>() {
                        let _ = notified.send(Ok(id));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = notified.send(Err(e));
                    return;
                }
            }
        }
    });
    let _driver = AbortOnDrop(driver.abort_handle());
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        return Box::new(e);
    }
    // Listening now: what was stored before is in storage; what was stored while this server was not listening
    // (it just started, or lost the connection) may have been missed.
    match client.query_one("SELECT last FROM event_counter", &[]).await {
        Ok(row) => shared.skip_to(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
        Err(e) => return Box::new(e),
    }
    *pause = Duration::from_millis(100);
    shared.listening.send_replace(true);
    loop {
        let first = match tokio::time::timeout(PROBE_EVERY, notifications.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => return "the listening connection closed".into(),
            Err(_) => {
                // Quiet for a while: is the connection still there, and did anything pass by unannounced?
                match tokio::time::timeout(PROBE_EVERY, client.query_one("SELECT last FROM event_counter", &[])).await {
                    Ok(Ok(row)) => Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
                    Ok(Err(e)) => return Box::new(e),
                    Err(_) => return "the listening connection stopped answering".into(),
                }
            }
        };
        let mut newest = match first {
            Ok(id) => id,
            Err(e) => return Box::new(e),
        };
        // A burst of commits is read with one query.
        while let Ok(more) = notifications.try_recv() {
            match more {
                Ok(id) => newest = newest.max(id),
                Err(e) => return Box::new(e),
            }
        }
        if let Err(e) = catch_up(storage, shared, newest).await {
            // Storage said no: followers are told to read it themselves, and this connection keeps listening.
            tracing::warn!(error = %e, "could not read announced events");
            shared.skip_to(newest);
        }
    }
}

/// Reads the events after the last delivered one up to `newest` from storage and delivers them in order.
async fn catch_up(storage: &PostgresStorage, shared: &Shared, newest: u64) -> gofer_storage::Result<()> {
    let session = storage.session(Operation::Read, "read announced events").await?;
    loop {
        let after = match *shared.last() {
            Some(last) if last >= newest => return Ok(()),
            Some(last) => last,
            None => newest.saturating_sub(1),
        };
        let filter = EventFilter { after, ..EventFilter::default() };
        let events = crate::events::list(session.client(), &filter, BATCH.min(newest - after)).await?;
        if events.is_empty() {
            // Pruned before it was read: followers catch up from storage.
            shared.skip_to(newest);
            return Ok(());
        }
        for event in events {
            shared.deliver(event);
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
