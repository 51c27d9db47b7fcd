//! The one shape of everything Gofer does in the background.
//!
//! A long-running component is built from its options and given a [`Background`] scope; its tasks run on the one
//! task tracker of the runtime, each under a cancellation token that is a child of the runtime's root token. When a
//! scope is cancelled every task in it is dropped at its next `.await` — so every sleep and every wait in them is
//! cancellable, and a task stopped this way is like one that died: what it left is picked up the way a restart
//! picks it up (run drivers leave their containers running, a timer's next tick comes from its last recorded one).
//! Nothing is detached: the runtime waits for the tracker to empty when it stops.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A scope of background work: a cancellation token and the shared tracker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Background {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Background {
    /// The root scope of a runtime.
    pub fn root() -> Self {
        Self { tracker: TaskTracker::new(), shutdown: CancellationToken::new() }
    }

    /// A scope inside this one: cancelled with it, or on its own (a component stopping before the others).
    pub fn child(&self) -> Self {
        Self { tracker: self.tracker.clone(), shutdown: self.shutdown.child_token() }
    }

    /// Runs `task` on the tracker until it ends or the scope is cancelled; the handle tells when it is over.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = task => {}
                () = shutdown.cancelled() => {}
            }
        })
    }

    /// Cancels this scope (and the scopes inside it).
    pub fn cancel(&self) {
        self.shutdown.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Resolves once this scope is cancelled.
    pub async fn cancelled(&self) {
        self.shutdown.cancelled().await;
    }

    /// Waits until every task on the tracker has ended (after the scopes were cancelled, this is quick: each task
    /// is dropped at its next `.await`). No task may be spawned afterwards.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cancelling_a_scope_drops_its_tasks_and_leaves_the_others() {
        let root = Background::root();
        let (first, second) = (root.child(), root.child());
        let sleeping = first.spawn(tokio::time::sleep(Duration::from_secs(3600)));
        let (tx, rx) = tokio::sync::oneshot::channel();
        second.spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = tx.send(());
        });
        first.cancel();
        sleeping.await.expect("the cancelled task ends");
        rx.await.expect("the other scope's task ran to its end");
        root.cancel();
        root.wait().await;
    }
}
