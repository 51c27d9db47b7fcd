//! Task logs that every server sharing the state can read: each server writes the logs of the tasks it drives to
//! its own files (a [`FileLogStore`]: local followers see every byte as it is written), and copies them into the
//! shared object store as they grow — a segment of what was added at most every `upload_every`, then an `end`
//! marker when the log ends. Another server reads a log it does not have from those segments, and follows it by
//! looking for new ones; so a follower on another server sees the output at most about a second late, and all of
//! it.
//!
//! Layout: `task-logs/<namespace>/<pipeline>/<run>/<task>.attempt-<n>/` holding `start` (made with the log),
//! `<segment number, 10 digits>` and `end`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use gofer_storage::{FileLogStore, LogKey, LogSink, LogStore, LogStream};
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

/// The most one segment holds; a log growing faster is uploaded in several per round.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// How often a reader on another server looks for new segments.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Task logs kept in local files and copied to a shared object store. Cheap to clone.
#[derive(Clone)]
pub struct SharedLogStore {
    local: FileLogStore,
    objects: Arc<dyn ObjectStore>,
    upload_every: Duration,
}

impl SharedLogStore {
    pub fn new(local: FileLogStore, objects: Arc<dyn ObjectStore>, upload_every: Duration) -> Self {
        Self { local, objects, upload_every }
    }
}

fn log_dir(key: &LogKey) -> Path {
    Path::from_iter([
        "task-logs",
        &key.namespace_id,
        &key.pipeline_id,
        &key.run_id.to_string(),
        &format!("{}.attempt-{}", key.task_id, key.attempt),
    ])
}

fn segment(dir: &Path, number: u64) -> Path {
    dir.child(format!("{number:010}"))
}

fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        other => io::Error::other(other),
    }
}

/// Deletes everything under `prefix`; deleting what is not there succeeds.
async fn remove_prefix(objects: &dyn ObjectStore, prefix: &Path) -> io::Result<()> {
    let listed: Vec<Path> = objects
        .list(Some(prefix))
        .map(|meta| meta.map(|m| m.location))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(io_error)?;
    for location in listed {
        match objects.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(())
}

/// Empties a log's directory and marks it started: a log made again (a server that adopted the run re-reads the
/// container's output) starts over.
async fn prepare(objects: &dyn ObjectStore, dir: &Path) -> io::Result<()> {
    remove_prefix(objects, dir).await?;
    objects.put(&dir.child("start"), Bytes::new().into()).await.map_err(io_error)?;
    Ok(())
}

/// What a log's directory holds now: its segment numbers in order, and whether it ended.
async fn listing(objects: &dyn ObjectStore, dir: &Path) -> io::Result<(Vec<u64>, bool, bool)> {
    let mut segments = Vec::new();
    let (mut started, mut ended) = (false, false);
    let mut listed = objects.list(Some(dir));
    while let Some(meta) = listed.next().await {
        let meta = meta.map_err(io_error)?;
        match meta.location.filename() {
            Some("start") => started = true,
            Some("end") => ended = true,
            Some(name) => {
                if let Ok(number) = name.parse::<u64>() {
                    segments.push(number);
                }
            }
            None => {}
        }
    }
    segments.sort_unstable();
    let exists = started || ended || !segments.is_empty();
    Ok((segments, exists, ended))
}

#[async_trait]
impl LogStore for SharedLogStore {
    async fn create(&self, key: &LogKey) -> io::Result<Box<dyn LogSink>> {
        let dir = log_dir(key);
        let local = self.local.create(key).await?;
        // Emptied and marked started at once, so that other servers follow it from now; if the object store is
        // away, the uploader tries again at each round.
        let prepared = match prepare(self.objects.as_ref(), &dir).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(log = %dir, error = %e, "could not start a task log in the object store; retrying");
                false
            }
        };
        let (stop, stopped) = watch::channel(false);
        let uploader = Uploader {
            objects: self.objects.clone(),
            dir,
            file: self.local.path(key),
            prepared,
            uploaded: 0,
            next: 0,
            every: self.upload_every,
        };
        let task = tokio::spawn(uploader.run(stopped));
        Ok(Box::new(SharedSink { local: Some(local), stop, task: Some(task) }))
    }

    async fn read(&self, key: &LogKey, follow: bool) -> io::Result<LogStream> {
        // The server writing the log reads its own file: live, byte by byte. Once written, the object store holds
        // the whole log and is the one copy to trust (another server may have made the log again since).
        if self.local.is_live(key) {
            return self.local.read(key, follow).await;
        }
        let dir = log_dir(key);
        let (_, exists, _) = listing(self.objects.as_ref(), &dir).await?;
        if !exists {
            // Not copied (the object store failed while it was written): this server's own copy, if it has one.
            return self.local.read(key, follow).await;
        }
        let reader = Remote { objects: self.objects.clone(), dir, next: 0, follow, pending: Vec::new(), ended: false };
        Ok(Box::pin(futures::stream::unfold(reader, |mut reader| async move {
            match reader.next_segment().await {
                Ok(Some(bytes)) => Some((Ok(bytes), reader)),
                Ok(None) => None,
                Err(e) => {
                    reader.ended = true;
                    reader.pending.clear();
                    reader.follow = false;
                    Some((Err(e), reader))
                }
            }
        })))
    }

    async fn remove_run(&self, namespace_id: &str, pipeline_id: &str, run_id: u64) -> io::Result<()> {
        self.local.remove_run(namespace_id, pipeline_id, run_id).await?;
        let prefix = Path::from_iter(["task-logs", namespace_id, pipeline_id, &run_id.to_string()]);
        remove_prefix(self.objects.as_ref(), &prefix).await
    }

    async fn remove_all(&self, namespace_id: &str, pipeline_id: Option<&str>) -> io::Result<()> {
        self.local.remove_all(namespace_id, pipeline_id).await?;
        let prefix = match pipeline_id {
            Some(pipeline_id) => Path::from_iter(["task-logs", namespace_id, pipeline_id]),
            None => Path::from_iter(["task-logs", namespace_id]),
        };
        remove_prefix(self.objects.as_ref(), &prefix).await
    }
}

/// Copies what a local log file gained into segments, until told to stop; then copies the rest and marks the end.
struct Uploader {
    objects: Arc<dyn ObjectStore>,
    dir: Path,
    file: std::path::PathBuf,
    /// Whether the log's directory was emptied and marked started ([`prepare`]); an object store that is away
    /// delays the copy but never fails the task.
    prepared: bool,
    uploaded: u64,
    next: u64,
    every: Duration,
}

impl Uploader {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> io::Result<()> {
        loop {
            let stopping = tokio::time::timeout(self.every, stop.wait_for(|stop| *stop)).await.is_ok();
            if let Err(e) = self.upload().await {
                tracing::warn!(log = %self.dir, error = %e, "could not copy a task log to the object store");
                if stopping {
                    return Err(e);
                }
                continue;
            }
            if stopping {
                return self
                    .objects
                    .put(&self.dir.child("end"), Bytes::new().into())
                    .await
                    .map(|_| ())
                    .map_err(io_error);
            }
        }
    }

    /// Uploads what the file gained since the last upload.
    async fn upload(&mut self) -> io::Result<()> {
        if !self.prepared {
            prepare(self.objects.as_ref(), &self.dir).await?;
            self.prepared = true;
        }
        let mut file = tokio::fs::File::open(&self.file).await?;
        let length = file.metadata().await?.len();
        while self.uploaded < length {
            let size = (length - self.uploaded).min(SEGMENT_BYTES);
            let mut bytes = vec![0u8; usize::try_from(size).map_err(io::Error::other)?];
            file.seek(io::SeekFrom::Start(self.uploaded)).await?;
            file.read_exact(&mut bytes).await?;
            self.objects.put(&segment(&self.dir, self.next), Bytes::from(bytes).into()).await.map_err(io_error)?;
            self.uploaded += size;
            self.next += 1;
        }
        Ok(())
    }
}

struct SharedSink {
    local: Option<Box<dyn LogSink>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

#[async_trait]
impl LogSink for SharedSink {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self.local.as_mut() {
            Some(local) => local.write(chunk).await,
            None => Err(io::Error::other("the log was already finished")),
        }
    }

    async fn finish(mut self: Box<Self>) -> io::Result<()> {
        let local = match self.local.take() {
            Some(local) => local.finish().await,
            None => Ok(()),
        };
        // The last bytes and the end marker are in the object store before the task is recorded as ended.
        self.stop.send_replace(true);
        let uploaded = match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other).and_then(|r| r),
            None => Ok(()),
        };
        local.and(uploaded)
    }
}

impl Drop for SharedSink {
    fn drop(&mut self) {
        // Dropped unfinished (the run's driver stopped): the uploader copies the rest and marks the end by itself.
        self.local.take();
        self.stop.send_replace(true);
    }
}

/// A log read from the object store, segment by segment.
struct Remote {
    objects: Arc<dyn ObjectStore>,
    dir: Path,
    next: u64,
    follow: bool,
    /// Segments listed and not yet read.
    pending: Vec<u64>,
    ended: bool,
}

impl Remote {
    async fn next_segment(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(number) = self.pending.first().copied() {
                self.pending.remove(0);
                let bytes = self.objects.get(&segment(&self.dir, number)).await.map_err(io_error)?.bytes().await;
                self.next = number + 1;
                return bytes.map(Some).map_err(io_error);
            }
            if self.ended {
                return Ok(None);
            }
            let (segments, _, ended) = listing(self.objects.as_ref(), &self.dir).await?;
            self.pending = segments.into_iter().filter(|n| *n >= self.next).collect();
            // Segments are written before the end marker: a listing that shows it shows them all.
            self.ended = ended || !self.follow;
            if self.pending.is_empty() && !self.ended {
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn objects(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
        std::fs::create_dir_all(dir.join("objects")).unwrap();
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.join("objects")).unwrap())
    }

    fn store(dir: &std::path::Path, objects: &Arc<dyn ObjectStore>) -> SharedLogStore {
        SharedLogStore::new(FileLogStore::new(dir.to_path_buf()), objects.clone(), Duration::from_millis(50))
    }

    #[tokio::test]
    async fn it_passes_the_log_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        let objects = objects(dir.path());
        gofer_storage::conformance::log_store(&store(&dir.path().join("a"), &objects)).await;
    }

    #[tokio::test]
    async fn another_server_follows_a_log_to_its_end_and_reads_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let objects = objects(dir.path());
        let (writer, reader) = (store(&dir.path().join("a"), &objects), store(&dir.path().join("b"), &objects));
        let key =
            LogKey { namespace_id: "ns".into(), pipeline_id: "p".into(), run_id: 1, task_id: "t".into(), attempt: 1 };
        assert_eq!(reader.read(&key, false).await.err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));

        let mut sink = writer.create(&key).await.unwrap();
        sink.write(b"first ").await.unwrap();
        let follower = reader.read(&key, true).await.unwrap();
        let following = tokio::spawn(async move {
            let chunks: Vec<Bytes> = follower.map(|c| c.unwrap()).collect().await;
            chunks.concat()
        });
        let mut expected = b"first ".to_vec();
        for i in 0..200u32 {
            let line = format!("line {i} {}\n", "x".repeat((i as usize * 37) % 900));
            sink.write(line.as_bytes()).await.unwrap();
            expected.extend_from_slice(line.as_bytes());
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        sink.finish().await.unwrap();
        // A guard against a hang, not a timing expectation.
        let followed = tokio::time::timeout(Duration::from_secs(30), following).await.unwrap().unwrap();
        // Compared as text lengths and a flag: a failure must not print a hundred kilobytes.
        assert!(
            followed == expected,
            "the follower saw {} bytes of {}, or not in order",
            followed.len(),
            expected.len()
        );
        let read: Vec<Bytes> = reader.read(&key, false).await.unwrap().map(|c| c.unwrap()).collect().await;
        assert!(read.concat() == expected, "a later read on the other server has every byte");

        // Made again (a server that adopted the run), the log starts over everywhere.
        let mut again = reader.create(&key).await.unwrap();
        again.write(b"again\n").await.unwrap();
        again.finish().await.unwrap();
        let read: Vec<Bytes> = writer.read(&key, false).await.unwrap().map(|c| c.unwrap()).collect().await;
        assert_eq!(read.concat(), b"again\n", "the first writer's own (older) copy is not what it reads");
        let third = store(&dir.path().join("c"), &objects);
        let read: Vec<Bytes> = third.read(&key, false).await.unwrap().map(|c| c.unwrap()).collect().await;
        assert_eq!(read.concat(), b"again\n");

        third.remove_run("ns", "p", 1).await.unwrap();
        assert_eq!(third.read(&key, false).await.err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
    }
}
