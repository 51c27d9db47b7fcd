//! The orchestrator's side of task logs: a writer over a [`LogStore`] sink that remembers the first failure, so a
//! log that cannot be written (a full disk) fails its task naming the cause instead of the task running without a
//! log.

use std::io;

use gofer_storage::{LogKey, LogSink, LogStore};

/// Appends to one task attempt's log. Finishing (or dropping) it ends every follower's stream.
pub struct LogWriter {
    sink: Option<Box<dyn LogSink>>,
    /// Set once a write failed (or the log could not be made): every later write fails the same way.
    problem: Option<(io::ErrorKind, String)>,
    /// Counts the bytes written (the server's metrics), when set.
    written: Option<prometheus_client::metrics::counter::Counter>,
}

impl LogWriter {
    /// Creates the log, or when that fails, a writer that refuses every write with that error.
    pub async fn create(store: &dyn LogStore, key: &LogKey) -> Self {
        match store.create(key).await {
            Ok(sink) => Self { sink: Some(sink), problem: None, written: None },
            Err(e) => Self { sink: None, problem: Some((e.kind(), e.to_string())), written: None },
        }
    }

    /// This writer, adding the bytes it writes to `counter`.
    pub fn counting(mut self, counter: prometheus_client::metrics::counter::Counter) -> Self {
        self.written = Some(counter);
        self
    }

    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if let Some(problem) = self.problem() {
            return Err(problem);
        }
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        if let Err(e) = sink.write(chunk).await {
            self.problem = Some((e.kind(), e.to_string()));
            return Err(e);
        }
        if let Some(counter) = &self.written {
            counter.inc_by(chunk.len() as u64);
        }
        Ok(())
    }

    /// Why this log cannot be written, if it cannot.
    pub fn problem(&self) -> Option<io::Error> {
        self.problem.as_ref().map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    /// Flushes the log and ends the followers' streams.
    pub async fn finish(mut self) -> io::Result<()> {
        match self.sink.take() {
            Some(sink) => sink.finish().await,
            None => Ok(()),
        }
    }
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

    /// A store whose logs take `room` bytes, then refuse more like a full disk.
    struct Full {
        room: usize,
    }

    struct FullSink {
        room: usize,
    }

    #[async_trait]
    impl LogStore for Full {
        async fn create(&self, _: &LogKey) -> io::Result<Box<dyn LogSink>> {
            if self.room == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
            }
            Ok(Box::new(FullSink { room: self.room }))
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
        let mut writer = LogWriter::create(&Full { room: 0 }, &key()).await;
        assert_eq!(writer.problem().unwrap().kind(), io::ErrorKind::StorageFull);
        assert_eq!(writer.write(b"x").await.unwrap_err().kind(), io::ErrorKind::StorageFull);
    }

    #[tokio::test]
    async fn after_a_failed_write_every_write_fails_the_same_way() {
        let mut writer = LogWriter::create(&Full { room: 4 }, &key()).await;
        writer.write(b"1234").await.unwrap();
        assert!(writer.problem().is_none());
        assert_eq!(writer.write(b"5").await.unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(writer.write(b"").await.unwrap_err().kind(), io::ErrorKind::StorageFull, "it stays broken");
    }

    #[tokio::test]
    async fn a_writer_writes_through_to_its_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileLogStore::new(dir.path().to_path_buf());
        let mut writer = LogWriter::create(&store, &key()).await;
        writer.write(b"hello").await.unwrap();
        writer.finish().await.unwrap();
        assert_eq!(std::fs::read(store.path(&key())).unwrap(), b"hello");
    }
}
