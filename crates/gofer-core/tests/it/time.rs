//! What depends on the wall clock, on a clock the tests move: token expiry and subscription ticks. Nothing here
//! sleeps to let time pass.

use std::collections::BTreeMap;
use std::time::Duration;

use gofer_api::permissions::{Access, Action, Permission, Resource};
use gofer_api::requests::{CreateTokenRequest, SubscribeRequest};
use gofer_core::auth::{Request, Scope, Verdict};
use gofer_storage::SubscriptionKey;

use super::{Harness, harness, task};
use gofer_api::config::Pipeline;

#[tokio::test]
async fn a_token_is_refused_once_its_expiry_passes() {
    let h = harness().await;
    let request = CreateTokenRequest {
        user: "brief".into(),
        roles: vec!["read_only".into()],
        expires_in_seconds: Some(60),
        metadata: BTreeMap::new(),
    };
    let created = h.gofer.create_token(None, request).await.unwrap();
    let read = Access::Requires(Permission::new(Resource::Namespaces, Action::Read));
    let ask = || Request { secret: Some(&created.secret), access: read, scope: Scope::default() };

    h.clock.advance(Duration::from_secs(60));
    assert!(matches!(h.gofer.authorize(ask(), true).await.0, Verdict::Allowed), "usable up to its expiry");
    h.clock.advance(Duration::from_millis(1));
    match h.gofer.authorize(ask(), true).await.0 {
        Verdict::Unauthenticated(message) => assert_eq!(message, "the token has expired"),
        other => panic!("an expired token was judged {other:?}"),
    }
}

/// Subscribes `pipeline` to the interval extension, every second.
async fn every_second(h: &Harness, pipeline: &str) -> SubscriptionKey {
    h.deploy(Pipeline::new(pipeline, "").tasks(vec![task("main", &["exit", "0"])])).await;
    let mut settings = BTreeMap::new();
    settings.insert("every".to_string(), "1s".to_string());
    let request = SubscribeRequest { extension_id: "interval".into(), label: "tick".into(), settings };
    let subscription = h.gofer.subscribe("default", pipeline, request).await.unwrap();
    SubscriptionKey::of(&subscription)
}

impl Harness {
    async fn run_count(&self, pipeline: &str) -> usize {
        self.storage.list_runs("default", pipeline, Default::default(), gofer_storage::Page::ALL).await.unwrap().len()
    }

    /// Waits (on tokio's clock, not the wall clock) until `pipeline` has had `count` runs.
    async fn wait_runs(&self, pipeline: &str, count: usize) {
        let waiting = async {
            while self.run_count(pipeline).await < count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .unwrap_or_else(|_| panic!("{pipeline} never reached {count} runs"));
    }

    /// Moves the clock one period on and waits for the control pipeline's run of that tick: once it is there,
    /// every timer has seen the tick.
    async fn tick(&self, control: &str) {
        let before = self.run_count(control).await;
        self.clock.advance(Duration::from_secs(1));
        self.wait_runs(control, before + 1).await;
    }
}

#[tokio::test]
async fn interval_ticks_follow_the_clock_and_stop_when_unsubscribed_or_disabled() {
    let h = harness().await;
    every_second(&h, "control").await;
    let watched = every_second(&h, "watched").await;
    assert_eq!((h.run_count("control").await, h.run_count("watched").await), (0, 0), "nothing before a tick");
    h.tick("control").await;
    h.wait_runs("watched", 1).await;
    let run = h.storage.get_run("default", "watched", 1).await.unwrap();
    assert_eq!((run.initiator.kind.as_str(), run.initiator.name.as_str()), ("extension", "interval"));

    // Missed ticks become one run.
    let before = (h.run_count("control").await, h.run_count("watched").await);
    h.clock.advance(Duration::from_secs(5));
    h.wait_runs("control", before.0 + 1).await;
    h.wait_runs("watched", before.1 + 1).await;
    assert_eq!(h.run_count("watched").await, before.1 + 1, "five missed ticks, one run");

    // A disabled subscription triggers nothing; enabled again, it ticks again.
    h.gofer.set_subscription_enabled(&watched, false).await.unwrap();
    let settled = h.run_count("watched").await;
    for _ in 0..3 {
        h.tick("control").await;
    }
    assert_eq!(h.run_count("watched").await, settled, "a disabled subscription triggers nothing");
    h.gofer.set_subscription_enabled(&watched, true).await.unwrap();
    h.tick("control").await;
    h.wait_runs("watched", settled + 1).await;

    // Unsubscribed, nothing more.
    h.gofer.unsubscribe(&watched).await.unwrap();
    let settled = h.run_count("watched").await;
    for _ in 0..3 {
        h.tick("control").await;
    }
    assert_eq!(h.run_count("watched").await, settled, "no runs after unsubscribing");

    // A disabled extension triggers nothing at all; cron, on the same clock, shows the time went by.
    let mut settings = BTreeMap::new();
    settings.insert("expression".to_string(), "* * * * *".to_string());
    let request = SubscribeRequest { extension_id: "cron".into(), label: "minutely".into(), settings };
    h.gofer.subscribe("default", "control", request).await.unwrap();
    h.gofer.set_extension_enabled("interval", false).await.unwrap();
    let settled = h.run_count("control").await;
    h.clock.advance(Duration::from_secs(60));
    h.wait_runs("control", settled + 1).await;
    let runs = h.storage.list_runs("default", "control", Default::default(), gofer_storage::Page::ALL).await.unwrap();
    let initiators: Vec<&str> =
        runs.iter().take_while(|r| r.run_id > settled as u64).map(|r| r.initiator.name.as_str()).collect();
    assert_eq!(initiators, ["cron"], "a minute passed: cron fired, the disabled interval extension did not");
}
