//! What the backends for clusters (Kubernetes, Nomad) share: streams fed by a task that lives as long as its reader,
//! and the wait for a workload's end from the states a watch reports.

use std::future::Future;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::{Error, Result};

/// A stream of what `produce` sends, from a task that ends when `produce` returns or when the stream is dropped.
pub fn produced<T, F, Fut>(capacity: usize, produce: F) -> BoxStream<'static, T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(capacity);
    let reader_gone = sender.clone();
    let work = produce(sender);
    tokio::spawn(async move {
        tokio::select! {
            () = reader_gone.closed() => {}
            () = work => {}
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) })
        .boxed()
}

/// What a watch of one workload tells: a state it saw, or that the workload is gone (after its last state, when
/// the watch saw one).
#[derive(Debug)]
pub enum Update<T> {
    Seen(Box<T>),
    Gone,
}

impl<T> Update<T> {
    /// The progress a seen state stands for; `None` when the workload is gone.
    pub fn progress(self, of: impl FnOnce(&T) -> Progress) -> Option<Progress> {
        match self {
            Update::Seen(seen) => Some(of(&seen)),
            Update::Gone => None,
        }
    }
}

/// Where a workload is, as a backend reads it from its cluster's state.
#[derive(Debug)]
pub enum Progress {
    /// Created and not started: nothing of it runs (a wait goes on, without a deadline).
    Created,
    /// Started but not running yet (no node, its image, its volumes), with what the cluster says.
    Pending(String),
    Running,
    /// Its container ended with this exit code.
    Ended(i64),
    /// It ended without its container ending, or cannot run.
    Failed(Error),
}

/// A wait for one workload's end.
#[derive(Debug, Clone, Copy)]
pub struct Wait<'a> {
    /// What the workload is (`pod`, `job`), for messages.
    pub kind: &'a str,
    /// The workload's id (the container id Gofer knows it by).
    pub container: &'a str,
    /// How long it may be pending before the wait fails.
    pub start_timeout: Duration,
    /// The setting of that timeout, named when it passes.
    pub timeout_setting: &'a str,
}

impl Wait<'_> {
    /// Follows `states` (`None`: the workload is gone) until the workload ended, failed, vanished or stayed pending
    /// longer than the start timeout.
    pub async fn until_ended(&self, states: impl Stream<Item = Result<Option<Progress>>>) -> Result<i64> {
        let mut states = std::pin::pin!(states);
        let mut pending: Option<(tokio::time::Instant, String)> = None;
        loop {
            let next = match &pending {
                Some((since, last)) => {
                    match tokio::time::timeout(self.start_timeout.saturating_sub(since.elapsed()), states.next()).await
                    {
                        Ok(next) => next,
                        Err(_) => {
                            return Err(Error::Engine {
                                action: format!("start {} {}", self.kind, self.container),
                                source: Error::cause(format!(
                                    "it did not run within {}s ({}); last: {last}",
                                    self.start_timeout.as_secs(),
                                    self.timeout_setting
                                )),
                            });
                        }
                    }
                }
                None => states.next().await,
            };
            match next {
                Some(Ok(Some(Progress::Ended(code)))) => return Ok(code),
                Some(Ok(Some(Progress::Failed(e)))) | Some(Err(e)) => return Err(e),
                Some(Ok(Some(Progress::Pending(words)))) => {
                    let since = pending.map_or_else(tokio::time::Instant::now, |(since, _)| since);
                    pending = Some((since, words));
                }
                Some(Ok(Some(Progress::Created | Progress::Running))) => pending = None,
                Some(Ok(None)) | None => {
                    return Err(Error::NoSuchContainer {
                        container: self.container.to_string(),
                        source: Error::cause(format!("the {} was deleted before its container ended", self.kind)),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait() -> Wait<'static> {
        Wait {
            kind: "pod",
            container: "p",
            start_timeout: Duration::from_secs(5),
            timeout_setting: "x.start_timeout_seconds",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_with_the_exit_code_or_the_reason() {
        let states = futures::stream::iter([
            Ok(Some(Progress::Created)),
            Ok(Some(Progress::Running)),
            Ok(Some(Progress::Ended(3))),
        ]);
        assert_eq!(wait().until_ended(states).await.ok(), Some(3));
        let gone = futures::stream::iter([Ok(Some(Progress::Running)), Ok(None)]);
        assert!(matches!(wait().until_ended(gone).await, Err(Error::NoSuchContainer { .. })));
        let failed = futures::stream::iter([Ok(Some(Progress::Failed(Error::Unsupported { reason: "no".into() })))]);
        assert!(matches!(wait().until_ended(failed).await, Err(Error::Unsupported { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn pending_too_long_fails_naming_the_setting_and_the_last_word() {
        // Pending, then still pending with new words, then nothing more: the deadline counts from the first.
        let states =
            futures::stream::iter([Ok(Some(Progress::Pending("a".into()))), Ok(Some(Progress::Pending("b".into())))])
                .chain(futures::stream::pending());
        match wait().until_ended(states).await {
            Err(Error::Engine { action, source }) => {
                assert_eq!(action, "start pod p");
                assert_eq!(source.to_string(), "it did not run within 5s (x.start_timeout_seconds); last: b");
            }
            other => panic!("{other:?}"),
        }
        // Running resets it; created waits without a deadline.
        let states = futures::stream::iter([Ok(Some(Progress::Pending("a".into()))), Ok(Some(Progress::Created))])
            .chain(futures::stream::pending());
        assert!(tokio::time::timeout(Duration::from_secs(3600), wait().until_ended(states)).await.is_err());
    }
}
