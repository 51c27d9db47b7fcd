//! The PostgreSQL backend passes the shared conformance suites on a real PostgreSQL server that the test starts
//! itself, and its event bus carries one server's events to another's followers in id order.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use gofer_api::models::{EventKind, Namespace};
use gofer_storage::{EventBus, Live, NamespaceStore, NewEvent};
use gofer_storage_postgres::test_server::TestServer;
use gofer_storage_postgres::{PostgresBus, PostgresStorage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suites() {
    let server = TestServer::start();
    let storage = PostgresStorage::connect(&server.create_database("stores").await, 4).await.unwrap();
    gofer_storage::conformance::run_all(&storage).await;

    // The bus, on a database of its own: the suite announces events that are not stored.
    let bus_storage = PostgresStorage::connect(&server.create_database("bus").await, 2).await.unwrap();
    let bus = PostgresBus::start(&bus_storage);
    gofer_storage::conformance::event_bus(&bus).await;
}

/// A guard against a hang, not a timing expectation.
async fn next(follower: &mut futures::stream::BoxStream<'static, Live>) -> Live {
    tokio::time::timeout(Duration::from_secs(30), follower.next()).await.expect("an event arrives").expect("the bus")
}

fn namespace(id: &str) -> Namespace {
    Namespace { id: id.into(), name: id.into(), description: String::new(), created: 1, modified: 1 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_by_any_server_reach_every_servers_followers_in_id_order() {
    let server = TestServer::start();
    let url = server.create_database("shared").await;
    let (a, b) = (PostgresStorage::connect(&url, 4).await.unwrap(), PostgresStorage::connect(&url, 4).await.unwrap());
    let (bus_a, bus_b) = (PostgresBus::start(&a), PostgresBus::start(&b));
    let (mut on_a, mut on_b) = (bus_a.follow(), bus_b.follow());
    bus_a.listening().await;
    bus_b.listening().await;
    a.create_namespace(&namespace("warm")).await.unwrap();
    let first = gofer_storage::EventStore::insert_event(&a, 1, &EventKind::MaintenanceChanged { maintenance: true })
        .await
        .unwrap();
    for follower in [&mut on_a, &mut on_b] {
        loop {
            match next(follower).await {
                Live::Event(e) if e.id == first.id => break,
                _ => continue,
            }
        }
    }

    // Both servers write at once, each announcing its own events as the orchestrator does.
    let write = |storage: PostgresStorage, bus: &'static str, count: u64| async move {
        let mut ids = Vec::new();
        for i in 0..count {
            let kind = EventKind::MaintenanceChanged { maintenance: i % 2 == 0 };
            let event = gofer_storage::EventStore::insert_event(&storage, 2 + i, &kind).await.unwrap();
            ids.push((bus, event));
        }
        ids
    };
    let (from_a, from_b) = tokio::join!(write(a.clone(), "a", 100), write(b.clone(), "b", 100));
    for (_, event) in from_a.iter().chain(&from_b) {
        let bus = if from_a.iter().any(|(_, e)| e.id == event.id) { &bus_a } else { &bus_b };
        bus.announce(event.clone());
    }
    let newest = first.id + 200;
    for follower in [&mut on_a, &mut on_b] {
        let mut last = first.id;
        while last < newest {
            match next(follower).await {
                Live::Event(e) => {
                    assert_eq!(e.id, last + 1, "events arrive one after another, none skipped");
                    last = e.id;
                }
                Live::Lagged => panic!("no follower lagged: 200 events fit its buffer"),
            }
        }
    }

    // A stored change that failed tells no one: the counter stays, and the next event follows without a gap.
    assert!(a.create_namespace(&namespace("warm")).await.is_err());
    let after = b
        .delete_namespace("warm", &NewEvent { emitted: 9, kind: EventKind::MaintenanceChanged { maintenance: false } })
        .await
        .unwrap();
    assert_eq!(after.id, newest + 1);
    match next(&mut on_a).await {
        Live::Event(e) => assert_eq!(e.id, newest + 1),
        Live::Lagged => panic!("no lag"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_as_unavailable_while_the_database_is_away_and_work_again_after() {
    let server = TestServer::start();
    let url = server.create_database("away").await;
    let storage = PostgresStorage::connect(&url, 2).await.unwrap();
    let bus = PostgresBus::start(&storage);
    let mut follower = bus.follow();
    bus.listening().await;
    storage.create_namespace(&namespace("before")).await.unwrap();

    server.stop();
    let error = storage.get_namespace("before").await.unwrap_err();
    assert!(matches!(error, gofer_storage::Error::Unavailable { .. }), "{error:?}");
    let error = storage.create_namespace(&namespace("during")).await.unwrap_err();
    assert!(matches!(error, gofer_storage::Error::Unavailable { .. }), "{error:?}");

    server.resume();
    // The pool replaces its dead connections; a deadline guards against a hang.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        match storage.get_namespace("before").await {
            Ok(ns) => break ns,
            Err(gofer_storage::Error::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    };
    assert_eq!(got.id, "before");
    let missing = storage.get_namespace("during").await.unwrap_err();
    assert!(matches!(missing, gofer_storage::Error::NotFound { .. }), "nothing was half-stored: {missing:?}");
    // The bus reconnects by itself: an event stored while it was away is announced as a lag (followers read it from
    // storage), one stored after arrives as itself. A guard against a hang, not a timing expectation: on a loaded
    // machine the listener may take a while to reconnect, so each event gets a while and the whole a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no event arrived live after the database came back");
        let kind = EventKind::MaintenanceChanged { maintenance: true };
        let stored = match gofer_storage::EventStore::insert_event(&storage, 5, &kind).await {
            Ok(event) => event,
            Err(gofer_storage::Error::Unavailable { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(other) => panic!("{other:?}"),
        };
        // Events stored in earlier rounds may come first, in order; then this one, or a lag notice.
        let arrived = loop {
            match tokio::time::timeout(Duration::from_secs(10), follower.next()).await {
                Ok(Some(Live::Event(e))) if e.id < stored.id => continue,
                Ok(Some(Live::Event(e))) if e.id == stored.id => break true,
                Ok(Some(Live::Event(e))) => panic!("event {} came before {}", e.id, stored.id),
                Ok(Some(Live::Lagged)) | Err(_) => break false,
                Ok(None) => panic!("the bus went away"),
            }
        };
        if arrived {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_writing_at_once_take_turns_where_they_decide_on_the_same_rows() {
    use gofer_api::config::{Pipeline as Config, Task};
    use gofer_api::models::{Initiator, Subscription};
    use gofer_storage::{NewRun, PipelineStore, Recorded, RunStore, SubscriptionKey, SubscriptionStore};

    let server = TestServer::start();
    let url = server.create_database("busy").await;
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(PostgresStorage::connect(&url, 4).await.unwrap());
    }
    servers[0].create_namespace(&namespace("ns")).await.unwrap();

    // Three servers register different configs of one new pipeline at once: one creates it, the versions are 1..3.
    let registering = servers.iter().enumerate().map(|(i, storage)| {
        let config = Config::new("p", "P").tasks(vec![Task::new("a", &format!("image:{i}"))]);
        let storage = storage.clone();
        tokio::spawn(async move { storage.register_config("ns", &config, &format!("hash-{i}"), 1).await })
    });
    let mut versions = Vec::new();
    for registered in registering.collect::<Vec<_>>() {
        versions.push(registered.await.unwrap().unwrap().config.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3]);

    // Runs started on all three at once get contiguous ids, each once.
    let starting: Vec<_> = (0..60)
        .map(|i| {
            let storage = servers[i % 3].clone();
            tokio::spawn(async move {
                let new = NewRun {
                    namespace_id: "ns".into(),
                    pipeline_id: "p".into(),
                    version: 1,
                    created: 10,
                    initiator: Initiator { kind: "user".into(), name: "t".into() },
                    variables: Vec::new(),
                    routing: None,
                };
                storage.insert_run(new).await.map(|(run, _)| run.run_id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for started in starting {
        ids.push(started.await.unwrap().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=60).collect::<Vec<u64>>());

    // The same tick recorded by three servers at once: exactly one records it.
    let sub = Subscription {
        namespace_id: "ns".into(),
        pipeline_id: "p".into(),
        extension_id: "interval".into(),
        label: "tick".into(),
        settings: Default::default(),
        enabled: true,
        created: 1,
        last_fired: 100,
        declared: false,
        next_fire: None,
    };
    servers[0].insert_subscription(&sub).await.unwrap();
    let key = SubscriptionKey::of(&sub);
    for tick in 1..=20u64 {
        let firing: Vec<_> = servers
            .iter()
            .map(|storage| {
                let (storage, key) = (storage.clone(), key.clone());
                tokio::spawn(async move {
                    storage.record_subscription_fired(&key, Some(100 * tick), 100 * (tick + 1)).await
                })
            })
            .collect();
        let mut recorded = 0;
        for fired in firing {
            if fired.await.unwrap().unwrap() == Recorded::Yes {
                recorded += 1;
            }
        }
        assert_eq!(recorded, 1, "tick {tick} was recorded once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_a_run_to_another_can_record_nothing_more_of_it() {
    use gofer_api::config::{Pipeline as Config, Task};
    use gofer_api::models::{Initiator, RunState};
    use gofer_storage::{Claim, ClusterStore, Error, Limits, NewRun, PipelineStore, RunStore, ServerRecord};

    let server = TestServer::start();
    let url = server.create_database("fenced").await;
    let a = PostgresStorage::connect(&url, 2).await.unwrap().as_server("a");
    let b = PostgresStorage::connect(&url, 2).await.unwrap().as_server("b");
    a.create_namespace(&namespace("ns")).await.unwrap();
    a.register_config("ns", &Config::new("p", "P").tasks(vec![Task::new("t", "busybox")]), "h", 1).await.unwrap();
    let new = NewRun {
        namespace_id: "ns".into(),
        pipeline_id: "p".into(),
        version: 1,
        created: 1,
        initiator: Initiator { kind: "user".into(), name: "t".into() },
        variables: Vec::new(),
        routing: None,
    };
    let (run, _) = a.insert_run(new).await.unwrap();
    let record = |id: &str| ServerRecord {
        id: id.into(),
        hostname: "h".into(),
        address: "x".into(),
        version: "v".into(),
        started: 1,
        joined: 0,
        heartbeat: 0,
    };
    a.heartbeat(&record("a")).await.unwrap();
    b.heartbeat(&record("b")).await.unwrap();
    let limits = Some(Limits { global: 10, pipeline: 10 });
    let claimed = a.claim_run("a", "ns", "p", run.run_id, limits).await.unwrap();
    let Claim::Claimed(claimed) = claimed else { panic!("{claimed:?}") };
    assert_eq!(b.claim_run("b", "ns", "p", run.run_id, limits).await.unwrap(), Claim::Gone, "claimed once");
    let running = gofer_api::models::Run { state: RunState::Running, started: 2, ..*claimed };
    let told = NewEvent { emitted: 2, kind: EventKind::MaintenanceChanged { maintenance: false } };
    a.update_run(&running, &told).await.unwrap();

    // A's heartbeat goes stale (b's clock says so): b adopts the run.
    let now = b.now().await.unwrap();
    assert!(b.adopt_runs("b", now.saturating_sub(60_000)).await.unwrap().is_empty(), "a is alive: nothing adopted");
    let adopted = b.adopt_runs("b", now + 1).await.unwrap();
    assert_eq!(adopted.iter().map(|r| r.run_id).collect::<Vec<_>>(), [run.run_id]);
    let refused = a.update_run(&running, &told).await.unwrap_err();
    assert!(matches!(&refused, Error::Conflict { message } if message.contains("driven by server b")), "{refused:?}");
    let events_before = gofer_storage::EventStore::latest_event_id(&b).await.unwrap();
    b.update_run(&running, &told).await.unwrap();
    assert_eq!(
        gofer_storage::EventStore::latest_event_id(&b).await.unwrap(),
        events_before + 1,
        "b records, a did not"
    );
    let owned = b.list_owned_runs().await.unwrap();
    assert_eq!(owned.iter().map(|r| r.owner.as_str()).collect::<Vec<_>>(), ["b"]);
}
