//! Task logs on disk: one file per task execution holding the container's stdout and stderr byte for byte, with
//! live followers woken on every write. No marker is written into the file; readers learn the end from the writer.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const READ_CHUNK: usize = 64 * 1024;

/// Names one task execution's log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogKey {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub run_id: u64,
    pub task_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    written: u64,
    done: bool,
}

/// Where logs live, and which of them are still being written. Cheap to clone.
#[derive(Clone)]
pub struct LogStore {
    root: PathBuf,
    live: Arc<Mutex<HashMap<LogKey, watch::Receiver<Progress>>>>,
}

impl LogStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root, live: Arc::default() }
    }

    fn run_dir(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> PathBuf {
        self.root.join(namespace_id).join(pipeline_id).join(run_id.to_string())
    }

    /// The file of a task execution's log: `<task>.log` for the first attempt, `<task>.attempt-<n>.log` after.
    /// Ids are validated identifiers, so they are safe path components.
    pub fn path(&self, key: &LogKey) -> PathBuf {
        let file = match key.attempt {
            0 | 1 => format!("{}.log", key.task_id),
            n => format!("{}.attempt-{n}.log", key.task_id),
        };
        self.run_dir(&key.namespace_id, &key.pipeline_id, key.run_id).join(file)
    }

    /// Deletes every log of a pipeline (`Some`) or of a whole namespace (`None`).
    pub async fn remove_all(&self, namespace_id: &str, pipeline_id: Option<&str>) -> io::Result<()> {
        let dir = match pipeline_id {
            Some(pipeline_id) => self.root.join(namespace_id).join(pipeline_id),
            None => self.root.join(namespace_id),
        };
        match tokio::fs::remove_dir_all(dir).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes every log of a run.
    pub async fn remove_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> io::Result<()> {
        match tokio::fs::remove_dir_all(self.run_dir(namespace_id, pipeline_id, run_id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Creates (truncating) the log of a task execution; followers wait on it until the writer finishes.
    pub async fn create(&self, key: LogKey) -> io::Result<LogWriter> {
        let path = self.path(&key);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = File::create(&path).await?;
        let (progress, rx) = watch::channel(Progress::default());
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), rx);
        Ok(LogWriter { file: Some(file), problem: None, progress, key, store: self.clone() })
    }

    /// Reads a log from the start. With `follow`, the stream stays open while the log is being written and ends
    /// when its writer finishes; without, it ends at the current end of the file.
    pub async fn read(&self, key: &LogKey, follow: bool) -> io::Result<impl Stream<Item = io::Result<Bytes>> + use<>> {
        // Subscribe before opening so that nothing written in between is missed.
        let progress =
            if follow { self.live.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned() } else { None };
        let file = File::open(self.path(key)).await?;
        let tail = Tail { file, progress, offset: 0 };
        Ok(futures::stream::unfold(tail, |mut tail| async move {
            match tail.next_chunk().await {
                Ok(Some(bytes)) => Some((Ok(bytes), tail)),
                Ok(None) => None,
                Err(e) => Some((Err(e), tail.finished())),
            }
        }))
    }

    /// Creates the log like [`LogStore::create`], or when that fails (a full disk), a writer that refuses every
    /// write with that error, so the task fails naming the cause instead of running without a log.
    pub async fn create_or_broken(&self, key: LogKey) -> LogWriter {
        match self.create(key.clone()).await {
            Ok(writer) => writer,
            Err(e) => {
                let (progress, _) = watch::channel(Progress { written: 0, done: true });
                let problem = Some((e.kind(), e.to_string()));
                LogWriter { file: None, problem, progress, key, store: self.clone() }
            }
        }
    }

    fn forget(&self, key: &LogKey) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
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

/// Appends to one task execution's log. Finishing (or dropping) it ends every follower's stream.
pub struct LogWriter {
    file: Option<File>,
    /// Set once a write failed (or the file could not be made): every later write fails the same way.
    problem: Option<(io::ErrorKind, String)>,
    progress: watch::Sender<Progress>,
    key: LogKey,
    store: LogStore,
}

impl LogWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if let Some(problem) = self.problem() {
            return Err(problem);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let written = match file.write_all(chunk).await {
            // Followers read from the file, so they must see the bytes there before they are told.
            Ok(()) => file.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            self.problem = Some((e.kind(), e.to_string()));
            return Err(e);
        }
        self.progress.send_modify(|p| p.written += chunk.len() as u64);
        Ok(())
    }

    /// Why this log cannot be written, if it cannot.
    pub fn problem(&self) -> Option<io::Error> {
        self.problem.as_ref().map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    /// Flushes the file and ends the followers' streams.
    pub async fn finish(mut self) -> io::Result<()> {
        let result = match self.file.take() {
            // Flushed to the OS, not fsynced: a crash of Gofer loses nothing, and a task's end is not held up by
            // the disk.
            Some(mut file) => file.flush().await,
            None => Ok(()),
        };
        self.close();
        result
    }

    fn close(&mut self) {
        self.progress.send_modify(|p| p.done = true);
        self.store.forget(&self.key);
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::StreamExt;

    use super::*;

    fn key() -> LogKey {
        LogKey { namespace_id: "ns".into(), pipeline_id: "p".into(), run_id: 7, task_id: "t".into(), attempt: 1 }
    }

    async fn collect(stream: impl Stream<Item = io::Result<Bytes>>) -> Vec<u8> {
        let chunks: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
        chunks.concat()
    }

    #[tokio::test]
    async fn bytes_are_stored_exactly_and_followers_see_everything_until_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf());
        let mut writer = store.create(key()).await.unwrap();
        writer.write(b"first\n").await.unwrap();

        let follower = tokio::spawn(collect(store.read(&key(), true).await.unwrap()));
        let binary: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        for chunk in binary.chunks(7_001) {
            writer.write(chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
        writer.finish().await.unwrap();

        let mut expected = b"first\n".to_vec();
        expected.extend_from_slice(&binary);
        assert_eq!(follower.await.unwrap(), expected, "the follower saw every byte, in order");
        assert_eq!(std::fs::read(store.path(&key())).unwrap(), expected, "the file holds the bytes verbatim");
        assert_eq!(collect(store.read(&key(), true).await.unwrap()).await, expected, "a finished log just ends");
    }

    #[tokio::test]
    async fn a_reader_without_follow_stops_at_the_current_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf());
        let mut writer = store.create(key()).await.unwrap();
        writer.write(b"so far").await.unwrap();
        assert_eq!(collect(store.read(&key(), false).await.unwrap()).await, b"so far");
        drop(writer);
    }

    #[tokio::test]
    async fn attempts_have_their_own_files_and_runs_are_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf());
        let second = LogKey { attempt: 2, ..key() };
        assert_ne!(store.path(&key()), store.path(&second));
        store.create(key()).await.unwrap().finish().await.unwrap();
        store.create(second.clone()).await.unwrap().finish().await.unwrap();
        store.remove_run("ns", "p", 7).await.unwrap();
        assert!(!store.path(&key()).exists() && !store.path(&second).exists());
        store.remove_run("ns", "p", 7).await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_writer_ends_followers() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf());
        let mut writer = store.create(key()).await.unwrap();
        let follower = tokio::spawn(collect(store.read(&key(), true).await.unwrap()));
        writer.write(b"partial").await.unwrap();
        drop(writer);
        assert_eq!(follower.await.unwrap(), b"partial");
    }
}
