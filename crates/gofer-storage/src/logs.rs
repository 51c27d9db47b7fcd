//! Task logs behind a trait: one log per task attempt, holding the container's stdout and stderr byte for byte,
//! with live followers. Local files today ([`FileLogStore`]); a store several servers share (the object store)
//! implements the same trait and passes [`crate::conformance::log_store`].

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Names one task attempt's log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogKey {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub run_id: u64,
    pub task_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// A log read from its start: chunks of bytes in order.
pub type LogStream = BoxStream<'static, io::Result<Bytes>>;

#[async_trait]
pub trait LogStore: Send + Sync {
    /// Creates the log of a task attempt, empty (a log made again starts over). Followers of it wait for more until
    /// the returned sink is finished or dropped.
    async fn create(&self, key: &LogKey) -> io::Result<Box<dyn LogSink>>;
    /// Reads a log from its start. With `follow`, the stream stays open while the log is being written and ends
    /// when its sink is finished or dropped; without, it ends at what was written so far. A log that does not exist
    /// is an error of kind `NotFound`.
    async fn read(&self, key: &LogKey, follow: bool) -> io::Result<LogStream>;
    /// Deletes every log of a run; deleting what is not there succeeds.
    async fn remove_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> io::Result<()>;
    /// Deletes every log of a pipeline (`Some`) or of a whole namespace (`None`).
    async fn remove_all(&self, namespace_id: &str, pipeline_id: Option<&str>) -> io::Result<()>;
}

/// Appends to one log. Finishing or dropping it ends every follower's stream.
#[async_trait]
pub trait LogSink: Send {
    /// Appends `chunk`; followers (and new readers) see it once this returns.
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()>;
    /// Flushes what was written and ends the followers' streams.
    async fn finish(self: Box<Self>) -> io::Result<()>;
}

const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    written: u64,
    done: bool,
}

/// Logs as files under a directory: `<namespace>/<pipeline>/<run>/<task>.log` for a first attempt,
/// `<task>.attempt-<n>.log` after. No marker is written into a file; followers learn the end from the writer.
/// Cheap to clone.
#[derive(Clone)]
pub struct FileLogStore {
    root: PathBuf,
    live: Arc<Mutex<HashMap<LogKey, watch::Receiver<Progress>>>>,
}

impl FileLogStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root, live: Arc::default() }
    }

    fn run_dir(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> PathBuf {
        self.root.join(namespace_id).join(pipeline_id).join(run_id.to_string())
    }

    /// The file of a task attempt's log. Ids are validated identifiers, so they are safe path components.
    pub fn path(&self, key: &LogKey) -> PathBuf {
        let file = match key.attempt {
            0 | 1 => format!("{}.log", key.task_id),
            n => format!("{}.attempt-{n}.log", key.task_id),
        };
        self.run_dir(&key.namespace_id, &key.pipeline_id, key.run_id).join(file)
    }

    /// Whether a sink of this store is writing the log now.
    pub fn is_live(&self, key: &LogKey) -> bool {
        self.live().contains_key(key)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<LogKey, watch::Receiver<Progress>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn remove_dir(dir: PathBuf) -> io::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[async_trait]
impl LogStore for FileLogStore {
    async fn create(&self, key: &LogKey) -> io::Result<Box<dyn LogSink>> {
        let path = self.path(key);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = File::create(&path).await?;
        let (progress, rx) = watch::channel(Progress::default());
        self.live().insert(key.clone(), rx);
        Ok(Box::new(FileSink { file: Some(file), progress, key: key.clone(), store: self.clone() }))
    }

    async fn read(&self, key: &LogKey, follow: bool) -> io::Result<LogStream> {
        // Subscribe before opening so that nothing written in between is missed.
        let progress = if follow { self.live().get(key).cloned() } else { None };
        let file = File::open(self.path(key)).await?;
        let tail = Tail { file, progress, offset: 0 };
        Ok(Box::pin(futures::stream::unfold(tail, |mut tail| async move {
            match tail.next_chunk().await {
                Ok(Some(bytes)) => Some((Ok(bytes), tail)),
                Ok(None) => None,
                Err(e) => Some((Err(e), tail.finished())),
            }
        })))
    }

    async fn remove_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> io::Result<()> {
        remove_dir(self.run_dir(namespace_id, pipeline_id, run_id)).await
    }

    async fn remove_all(&self, namespace_id: &str, pipeline_id: Option<&str>) -> io::Result<()> {
        let dir = match pipeline_id {
            Some(pipeline_id) => self.root.join(namespace_id).join(pipeline_id),
            None => self.root.join(namespace_id),
        };
        remove_dir(dir).await
    }
}

struct Tail {
    file: File,
    progress: Option<watch::Receiver<Progress>>,
    offset: u64,
}

impl Tail {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let mut buf = BytesMut::zeroed(READ_CHUNK);
            let n = self.file.read(&mut buf).await?;
            if n > 0 {
                self.offset += n as u64;
                buf.truncate(n);
                return Ok(Some(buf.freeze()));
            }
            let Some(progress) = self.progress.as_mut() else {
                return Ok(None);
            };
            let seen = *progress.borrow_and_update();
            if self.offset < seen.written {
                continue;
            }
            if seen.done {
                return Ok(None);
            }
            if progress.changed().await.is_err() {
                // The writer is gone: read what it left, then stop.
                self.progress = None;
            }
        }
    }

    /// After an error the stream ends: a tail that has no file left to read.
    fn finished(mut self) -> Self {
        self.progress = None;
        self
    }
}

struct FileSink {
    file: Option<File>,
    progress: watch::Sender<Progress>,
    key: LogKey,
    store: FileLogStore,
}

impl FileSink {
    fn close(&mut self) {
        self.progress.send_modify(|p| p.done = true);
        self.store.live().remove(&self.key);
    }
}

#[async_trait]
impl LogSink for FileSink {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the log was already finished"));
        };
        file.write_all(chunk).await?;
        // Followers read from the file, so they must see the bytes there before they are told.
        file.flush().await?;
        self.progress.send_modify(|p| p.written += chunk.len() as u64);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> io::Result<()> {
        let result = match self.file.take() {
            // Flushed to the OS, not fsynced: a crash of Gofer loses nothing, and a task's end is not held up by
            // the disk.
            Some(mut file) => file.flush().await,
            None => Ok(()),
        };
        self.close();
        result
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(attempt: u32) -> LogKey {
        LogKey { namespace_id: "ns".into(), pipeline_id: "p".into(), run_id: 7, task_id: "t".into(), attempt }
    }

    #[tokio::test]
    async fn files_are_laid_out_per_run_and_attempt_and_hold_the_bytes_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileLogStore::new(dir.path().to_path_buf());
        assert_eq!(store.path(&key(1)), dir.path().join("ns/p/7/t.log"));
        assert_eq!(store.path(&key(3)), dir.path().join("ns/p/7/t.attempt-3.log"));
        let mut sink = store.create(&key(1)).await.unwrap();
        sink.write(b"\x00\xffbinary\n").await.unwrap();
        sink.finish().await.unwrap();
        assert_eq!(std::fs::read(store.path(&key(1))).unwrap(), b"\x00\xffbinary\n");
    }
}
