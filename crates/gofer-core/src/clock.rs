//! The wall clock, injected: what the core reads the time from (token expiry, subscription ticks) and waits on.
//! `SystemClock` in a server; `ManualClock` in tests, which move time forward instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gofer_api::epoch_millis;
use tokio::sync::watch;

pub trait Clock: Send + Sync {
    /// Now, in epoch milliseconds.
    fn now(&self) -> u64;
    /// Resolves once the clock reads `at` (epoch milliseconds) or later.
    fn sleep_until(&self, at: u64) -> BoxFuture<'static, ()>;
}

/// The system's wall clock; waits on tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        epoch_millis()
    }

    fn sleep_until(&self, at: u64) -> BoxFuture<'static, ()> {
        let wait = Duration::from_millis(at.saturating_sub(epoch_millis()));
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to. Cheap to clone; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    /// A clock reading `start` (epoch milliseconds).
    pub fn new(start: u64) -> Self {
        Self { now: Arc::new(watch::Sender::new(start)) }
    }

    /// Moves the clock forward, waking everything waiting for a time now reached.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now = now.saturating_add(by.as_millis() as u64));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: u64) -> BoxFuture<'static, ()> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, nothing will ever wake this.
            let _ = now.wait_for(|now| *now >= at).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_moved_past_their_time() {
        let clock = ManualClock::new(1_000);
        let sleeper = tokio::spawn(clock.sleep_until(3_000));
        clock.advance(Duration::from_millis(1_500));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "2500 is before 3000");
        clock.advance(Duration::from_millis(500));
        sleeper.await.expect("woken at 3000");
        assert_eq!(clock.now(), 3_000);
        clock.sleep_until(2_000).await;
    }
}
