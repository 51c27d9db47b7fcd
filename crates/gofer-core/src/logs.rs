//! The orchestrator's side of task logs: a writer over a [`LogStore`] sink that remembers the first failure, so a
//! log that cannot be written (a full disk) fails its task naming the cause instead of the task running without a
//! log.
//!
//! Writing does not wait for the disk: chunks go to a pump (one tokio task per log) that writes what arrived
//! meanwhile in one call to the sink, so a task that writes fast is read from the engine without pause and stored
//! in few large writes, and a slow disk holds up only its own log. At most [`QUEUED_BYTES`] wait to be written; a
//! writer past that waits for room.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use gofer_storage::{LogKey, LogSink, LogStore};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// The most bytes of one log waiting to be written.
pub const QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// The most bytes the pump writes in one call.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

enum Item {
    /// Bytes to append, and the room they hold in the queue.
    Chunk(Bytes, u32),
    /// Answered once everything queued before it was written (or failed).
    Flush(oneshot::Sender<()>),
}

/// What the writer and its pump share.
struct Shared {
    /// The first failure (kind and words), once there was one: every later write fails the same way.
    problem: Mutex<Option<(io::ErrorKind, String)>>,
    /// Becomes true when a write failed.
    failed: watch::Sender<bool>,
    /// Room in the queue, in bytes.
    room: Semaphore,
    /// Counts the bytes written (the server's metrics), when set.
    written: Mutex<Option<prometheus_client::metrics::counter::Counter>>,
}

impl Shared {
    fn problem(&self) -> Option<io::Error> {
        let problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        problem.as_ref().map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    fn fail(&self, e: &io::Error) {
        let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        if problem.is_none() {
            *problem = Some((e.kind(), e.to_string()));
            self.failed.send_replace(true);
        }
    }
}

/// Appends to one task attempt's log. Finishing (or dropping) it ends every follower's stream once what was
/// written is stored.
pub struct LogWriter {
    queue: Option<mpsc::UnboundedSender<Item>>,
    pump: Option<JoinHandle<io::Result<()>>>,
    shared: Arc<Shared>,
}

impl LogWriter {
    /// Creates the log, or when that fails, a writer that refuses every write with that error.
    pub async fn create(store: &dyn LogStore, key: &LogKey) -> Self {
        let shared = Arc::new(Shared {
            problem: Mutex::new(None),
            failed: watch::Sender::new(false),
            room: Semaphore::new(QUEUED_BYTES),
            written: Mutex::new(None),
        });
        match store.create(key).await {
            Ok(sink) => {
                let (queue, items) = mpsc::unbounded_channel();
                let pump = tokio::spawn(pump(sink, items, shared.clone()));
                Self { queue: Some(queue), pump: Some(pump), shared }
            }
            Err(e) => {
                shared.fail(&e);
                Self { queue: None, pump: None, shared }
            }
        }
    }

    /// This writer, adding the bytes it writes to `counter`.
    pub fn counting(self, counter: prometheus_client::metrics::counter::Counter) -> Self {
        *self.shared.written.lock().unwrap_or_else(|p| p.into_inner()) = Some(counter);
        self
    }

    /// Queues `chunk` to be appended; waits only while the queue is full. A failure of an earlier write is
    /// returned here; one of this write shows in [`LogWriter::problem`], [`LogWriter::failed`] and later calls.
    pub async fn write(&mut self, chunk: impl Into<Bytes>) -> io::Result<()> {
        if let Some(problem) = self.problem() {
            return Err(problem);
        }
        let chunk = chunk.into();
        let Some(queue) = self.queue.as_ref() else { return Ok(()) };
        if chunk.is_empty() {
            return Ok(());
        }
        let room = chunk.len().min(QUEUED_BYTES) as u32;
        match self.shared.room.acquire_many(room).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(io::Error::other("the log's writer is gone")),
        }
        queue.send(Item::Chunk(chunk, room)).map_err(|_| io::Error::other("the log's writer is gone"))
    }

    /// Waits until everything written so far is stored; returns the first failure, if any.
    pub async fn flush(&mut self) -> io::Result<()> {
        if let Some(queue) = self.queue.as_ref() {
            let (done, stored) = oneshot::channel();
            if queue.send(Item::Flush(done)).is_ok() {
                let _ = stored.await;
            }
        }
        self.problem().map_or(Ok(()), Err)
    }

    /// Why this log cannot be written, if it cannot.
    pub fn problem(&self) -> Option<io::Error> {
        self.shared.problem()
    }

    /// Resolves once a write of this log failed (at once if one did); never if none does.
    pub fn failed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut failed = self.shared.failed.subscribe();
        async move {
            if failed.wait_for(|failed| *failed).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stores what was written and ends the followers' streams.
    pub async fn finish(mut self) -> io::Result<()> {
        self.queue = None;
        let finished = match self.pump.take() {
            Some(pump) => pump.await.unwrap_or_else(|e| Err(io::Error::other(e))),
            None => Ok(()),
        };
        match self.problem() {
            Some(problem) => Err(problem),
            None => finished,
        }
    }
}

/// Writes a log's queued chunks in order, what arrived meanwhile in one call, until the writer is gone; then
/// finishes the sink.
async fn pump(
    mut sink: Box<dyn LogSink>,
    mut items: mpsc::UnboundedReceiver<Item>,
    shared: Arc<Shared>,
) -> io::Result<()> {
    while let Some(first) = items.recv().await {
        let (mut chunks, mut size, mut room, mut flushes) = (Vec::new(), 0usize, 0usize, Vec::new());
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Chunk(chunk, held) => {
                    size += chunk.len();
                    room += held as usize;
                    chunks.push(chunk);
                }
                Item::Flush(done) => flushes.push(done),
            }
            if size < BATCH_BYTES {
                next = items.try_recv().ok();
            }
        }
        if !chunks.is_empty() && shared.problem().is_none() {
            let batch = match chunks.len() {
                1 => chunks.pop().unwrap_or_default(),
                _ => {
                    let mut joined = BytesMut::with_capacity(size);
                    chunks.iter().for_each(|chunk| joined.extend_from_slice(chunk));
                    joined.freeze()
                }
            };
            match sink.write(&batch).await {
                Ok(()) => {
                    if let Some(counter) = shared.written.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                        counter.inc_by(batch.len() as u64);
                    }
                }
                Err(e) => shared.fail(&e),
            }
        }
        shared.room.add_permits(room);
        for done in flushes {
            let _ = done.send(());
        }
    }
    sink.finish().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use async_trait::async_trait;
    use gofer_storage::{FileLogStore, LogStream};

    use super::*;

    fn key() -> LogKey {
        LogKey { namespace_id: "ns".into(), pipeline_id: "p".into(), run_id: 7, task_id: "t".into(), attempt: 1 }
    }

    /// A store whose every log is the sink `make` makes (or its error).
    struct Store<F>(F);

    #[async_trait]
    impl<F: Fn() -> io::Result<Box<dyn LogSink>> + Send + Sync> LogStore for Store<F> {
        async fn create(&self, _: &LogKey) -> io::Result<Box<dyn LogSink>> {
            (self.0)()
        }
        async fn read(&self, _: &LogKey, _: bool) -> io::Result<LogStream> {
            Err(io::ErrorKind::NotFound.into())
        }
        async fn remove_run(&self, _: &str, _: &str, _: u64) -> io::Result<()> {
            Ok(())
        }
        async fn remove_all(&self, _: &str, _: Option<&str>) -> io::Result<()> {
            Ok(())
        }
    }

    /// A store whose logs take `room` bytes, then refuse more like a full disk.
    fn full(room: usize) -> impl LogStore {
        Store(move || -> io::Result<Box<dyn LogSink>> {
            if room == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
            }
            Ok(Box::new(FullSink { room }))
        })
    }

    struct FullSink {
        room: usize,
    }

    #[async_trait]
    impl LogSink for FullSink {
        async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
            self.room = self.room.checked_sub(chunk.len()).ok_or(io::ErrorKind::StorageFull)?;
            Ok(())
        }
        async fn finish(self: Box<Self>) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_made_refuses_every_write_naming_why() {
        let mut writer = LogWriter::create(&full(0), &key()).await;
        assert_eq!(writer.problem().unwrap().kind(), io::ErrorKind::StorageFull);
        assert_eq!(writer.write(&b"x"[..]).await.unwrap_err().kind(), io::ErrorKind::StorageFull);
        writer.failed().await;
    }

    #[tokio::test]
    async fn after_a_failed_write_every_write_fails_the_same_way() {
        let mut writer = LogWriter::create(&full(4), &key()).await;
        writer.write(&b"1234"[..]).await.unwrap();
        writer.flush().await.unwrap();
        assert!(writer.problem().is_none());
        // The write is queued; its failure shows once the pump tried it.
        let _ = writer.write(&b"5"[..]).await;
        writer.failed().await;
        assert_eq!(writer.flush().await.unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(writer.write(&b"6"[..]).await.unwrap_err().kind(), io::ErrorKind::StorageFull, "it stays broken");
        assert_eq!(writer.finish().await.unwrap_err().kind(), io::ErrorKind::StorageFull);
    }

    #[tokio::test]
    async fn a_writer_writes_through_to_its_store_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileLogStore::new(dir.path().to_path_buf());
        let mut writer = LogWriter::create(&store, &key()).await;
        let mut expected = Vec::new();
        for i in 0..2000 {
            let line = format!("line {i} {}\n", "x".repeat(i % 5000));
            expected.extend_from_slice(line.as_bytes());
            writer.write(line).await.unwrap();
        }
        writer.flush().await.unwrap();
        assert_eq!(std::fs::read(store.path(&key())).unwrap(), expected, "stored once flushed");
        writer.write(&b"the end"[..]).await.unwrap();
        writer.finish().await.unwrap();
        expected.extend_from_slice(b"the end");
        assert_eq!(std::fs::read(store.path(&key())).unwrap(), expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_waits_for_room_when_the_queue_is_full() {
        /// A sink that takes nothing until told to.
        struct Held(tokio::sync::watch::Receiver<bool>);
        #[async_trait]
        impl LogSink for Held {
            async fn write(&mut self, _: &[u8]) -> io::Result<()> {
                let _ = self.0.wait_for(|open| *open).await;
                Ok(())
            }
            async fn finish(self: Box<Self>) -> io::Result<()> {
                Ok(())
            }
        }
        let (open, held) = tokio::sync::watch::channel(false);
        let store = Store(move || -> io::Result<Box<dyn LogSink>> { Ok(Box::new(Held(held.clone()))) });
        let mut writer = LogWriter::create(&store, &key()).await;
        let half = Bytes::from(vec![b'x'; QUEUED_BYTES / 2]);
        writer.write(half.clone()).await.unwrap(); // taken by the pump, which waits in the sink
        writer.write(half.clone()).await.unwrap();
        let full = tokio::time::timeout(std::time::Duration::from_millis(50), writer.write(half.clone())).await;
        assert!(full.is_err(), "a full queue holds the writer");
        open.send_replace(true);
        writer.write(half).await.unwrap();
        writer.finish().await.unwrap();
    }
}
