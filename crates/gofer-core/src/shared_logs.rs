//! Task logs that every server sharing the state can read: each server writes the logs of the tasks it drives to
//! its own files (a [`FileLogStore`]: local followers see every byte as it is written), and copies them into the
//! shared object store as they grow — a segment of what was added at most every `upload_every`, then an `end`
//! marker once the log is finished. Another server reads a log it does not have from those segments, and follows
//! it by looking for new ones; so a follower on another server sees the output at most about a second late, and
//! all of it.
//!
//! Layout: `task-logs/<namespace>/<pipeline>/<run>/<task>.attempt-<n>/` holding `start` (made with the log),
//! segments named by the offset of their first byte (20 digits), and `end`. Offsets make copies by two servers
//! agree: a server that adopted a run makes the log again from the container's whole output, and a server that
//! lost the run (paused, not dead) may still copy a little of the same output; the bytes at an offset are the same
//! either way, and a reader takes each offset once. A log dropped unfinished (its server stopping, or losing the
//! run) gets no `end`: the server that drives the run on finishes it.

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

/// How long finishing a log waits for its last copy; past that the copy goes on (retried) without holding up
/// the task's completion.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// How long a finished log's last copy and `end` marker are retried while the object store is away.
const FINISH_RETRY_FOR: Duration = Duration::from_secs(600);

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

fn segment(dir: &Path, offset: u64) -> Path {
    dir.child(format!("{offset:020}"))
}

fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        other => io::Error::other(other),
    }
}

/// Deletes everything under `prefix` but `keep`; deleting what is not there succeeds.
async fn remove_prefix_but(objects: &dyn ObjectStore, prefix: &Path, keep: Option<&Path>) -> io::Result<()> {
    let listed: Vec<Path> = objects
        .list(Some(prefix))
        .map(|meta| meta.map(|m| m.location))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(io_error)?;
    for location in listed.into_iter().filter(|l| Some(l) != keep) {
        match objects.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(())
}

/// Deletes everything under `prefix`.
async fn remove_prefix(objects: &dyn ObjectStore, prefix: &Path) -> io::Result<()> {
    remove_prefix_but(objects, prefix, None).await
}

/// Marks a log started and empties it of everything else: a log made again starts over. The marker is written
/// first, so a reader following the log never sees it missing (which would mean it was removed).
async fn prepare(objects: &dyn ObjectStore, dir: &Path) -> io::Result<()> {
    let start = dir.child("start");
    objects.put(&start, Bytes::new().into()).await.map_err(io_error)?;
    remove_prefix_but(objects, dir, Some(&start)).await
}

/// What a log's directory holds now.
struct Listing {
    /// `(offset, length)` of each segment, by offset.
    segments: Vec<(u64, u64)>,
    exists: bool,
    ended: bool,
}

async fn listing(objects: &dyn ObjectStore, dir: &Path) -> io::Result<Listing> {
    let mut segments = Vec::new();
    let (mut started, mut ended) = (false, false);
    let mut listed = objects.list(Some(dir));
    while let Some(meta) = listed.next().await {
        let meta = meta.map_err(io_error)?;
        match meta.location.filename() {
            Some("start") => started = true,
            Some("end") => ended = true,
            Some(name) => {
                if let Ok(offset) = name.parse::<u64>() {
                    segments.push((offset, meta.size));
                }
            }
            None => {}
        }
    }
    segments.sort_unstable();
    let exists = started || ended || !segments.is_empty();
    Ok(Listing { segments, exists, ended })
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
        let (stop, stopped) = watch::channel(None);
        let uploader = Uploader {
            objects: self.objects.clone(),
            dir,
            file: self.local.path(key),
            prepared,
            uploaded: 0,
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
        if !listing(self.objects.as_ref(), &dir).await?.exists {
            // Not copied (the object store failed while it was written): this server's own copy, if it has one.
            return self.local.read(key, follow).await;
        }
        let reader =
            Remote { objects: self.objects.clone(), dir, offset: 0, follow, pending: Vec::new(), ended: false };
        Ok(Box::pin(futures::stream::unfold(reader, |mut reader| async move {
            match reader.next_bytes().await {
                Ok(Some(bytes)) => Some((Ok(bytes), reader)),
                Ok(None) => None,
                Err(e) => {
                    reader.ended = true;
                    reader.pending.clear();
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

/// Copies what a local log file gained into segments, until told to stop; then copies the rest, and marks the end
/// when the log was finished (not when it was dropped).
struct Uploader {
    objects: Arc<dyn ObjectStore>,
    dir: Path,
    file: std::path::PathBuf,
    /// Whether the log's directory was emptied and marked started ([`prepare`]); an object store that is away
    /// delays the copy but never fails the task.
    prepared: bool,
    /// Bytes of the file copied so far: the offset of the next segment.
    uploaded: u64,
    every: Duration,
}

impl Uploader {
    /// `stop` becomes `Some(true)` when the log is finished, `Some(false)` when its sink is dropped unfinished.
    async fn run(mut self, mut stop: watch::Receiver<Option<bool>>) -> io::Result<()> {
        loop {
            let stopping = match tokio::time::timeout(self.every, stop.wait_for(Option::is_some)).await {
                Ok(Ok(finished)) => Some(finished.unwrap_or(false)),
                // The sink is gone without a word: as dropped.
                Ok(Err(_)) => Some(false),
                Err(_) => None,
            };
            match stopping {
                None => {
                    if let Err(e) = self.upload().await {
                        tracing::warn!(log = %self.dir, error = %e, "could not copy a task log to the object store");
                    }
                }
                Some(finished) => return self.last(finished).await,
            }
        }
    }

    /// The last copy (and the `end` marker of a finished log), retried while the object store is away.
    async fn last(mut self, finished: bool) -> io::Result<()> {
        let (mut delay, mut waited) = (Duration::from_secs(1), Duration::ZERO);
        loop {
            let mut done = self.upload().await;
            if done.is_ok() && finished {
                done = self.objects.put(&self.dir.child("end"), Bytes::new().into()).await.map(drop).map_err(io_error);
            }
            match done {
                Ok(()) => return Ok(()),
                Err(e) if waited >= FINISH_RETRY_FOR => {
                    tracing::error!(log = %self.dir, error = %e, "gave up copying a task log to the object store");
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(log = %self.dir, error = %e, "could not finish a task log's copy; retrying");
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
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
            self.objects.put(&segment(&self.dir, self.uploaded), Bytes::from(bytes).into()).await.map_err(io_error)?;
            self.uploaded += size;
        }
        Ok(())
    }
}

struct SharedSink {
    local: Option<Box<dyn LogSink>>,
    stop: watch::Sender<Option<bool>>,
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
        self.stop.send_replace(Some(true));
        // Usually the last bytes and the end marker are stored before the task is recorded as ended; an object
        // store that is away only delays them (the uploader goes on retrying).
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(FINISH_WAIT, task).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "a task log's copy is incomplete"),
                Ok(Err(e)) => tracing::warn!(error = %e, "a task log's uploader failed"),
                Ok(Ok(Ok(()))) | Err(_) => {}
            }
        }
        local
    }
}

impl Drop for SharedSink {
    fn drop(&mut self) {
        // Dropped unfinished (the driver stopped): the uploader copies the rest, and leaves the end to the server
        // that drives the run on. After `finish` this changes nothing.
        self.local.take();
        self.stop.send_if_modified(|stop| {
            if stop.is_none() {
                *stop = Some(false);
                true
            } else {
                false
            }
        });
    }
}

/// A log read from the object store, byte offset by byte offset.
struct Remote {
    objects: Arc<dyn ObjectStore>,
    dir: Path,
    /// Bytes delivered so far.
    offset: u64,
    follow: bool,
    /// Segments listed and not yet read, by offset.
    pending: Vec<(u64, u64)>,
    ended: bool,
}

impl Remote {
    async fn next_bytes(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if !self.pending.is_empty() {
                let (start, length) = self.pending.remove(0);
                if start + length <= self.offset {
                    // Copied twice (by two servers): taken once.
                    continue;
                }
                if start > self.offset {
                    // Not copied yet (a log made again, refilling from its start): wait for it, unless the log ended.
                    self.pending.clear();
                    if self.ended {
                        return Ok(None);
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                    continue;
                }
                let bytes = self.objects.get(&segment(&self.dir, start)).await.map_err(io_error)?.bytes().await;
                let bytes = bytes.map_err(io_error)?;
                let skip = usize::try_from(self.offset - start).map_err(io::Error::other)?.min(bytes.len());
                self.offset = start + bytes.len() as u64;
                return Ok(Some(bytes.slice(skip..)));
            }
            if self.ended {
                return Ok(None);
            }
            let listed = listing(self.objects.as_ref(), &self.dir).await?;
            if !listed.exists {
                // Removed (retention, a deleted pipeline) while it was followed.
                return Ok(None);
            }
            self.pending = listed.segments.into_iter().filter(|(start, length)| start + length > self.offset).collect();
            // Segments are written before the end marker: a listing that shows it shows them all.
            self.ended = listed.ended || !self.follow;
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

    #[tokio::test]
    async fn a_follower_elsewhere_goes_on_seamlessly_when_the_run_is_adopted_and_the_log_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let objects = objects(dir.path());
        let (lost, adopter, watcher) = (
            store(&dir.path().join("a"), &objects),
            store(&dir.path().join("b"), &objects),
            store(&dir.path().join("c"), &objects),
        );
        let key =
            LogKey { namespace_id: "ns".into(), pipeline_id: "p".into(), run_id: 7, task_id: "t".into(), attempt: 1 };
        let mut sink = lost.create(&key).await.unwrap();
        sink.write(b"first part\n").await.unwrap();
        // Its server stops: dropped unfinished, copied, but not ended.
        drop(sink);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let read: Vec<Bytes> = watcher.read(&key, false).await.unwrap().map(|c| c.unwrap()).collect().await;
            if read.concat() == b"first part\n" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the dropped log's bytes were copied");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let follower = watcher.read(&key, true).await.unwrap();
        let following =
            tokio::spawn(async move { follower.map(|c| c.unwrap()).collect::<Vec<Bytes>>().await.concat() });
        // The adopting server makes the log again from the container's whole output, and finishes it.
        let mut again = adopter.create(&key).await.unwrap();
        again.write(b"first part\n").await.unwrap();
        again.write(b"second part\n").await.unwrap();
        again.finish().await.unwrap();
        let followed = tokio::time::timeout(Duration::from_secs(30), following).await.unwrap().unwrap();
        assert_eq!(followed, b"first part\nsecond part\n", "nothing twice, nothing lost, and the stream ended");
    }
}
