//! The conformance suite every storage backend passes. A backend's tests call [`run_all`] with a fresh, empty store
//! (migrated, with no namespaces). Failures panic with a message naming the broken expectation.

#![allow(clippy::unwrap_used)]

use gofer_api::config::{Pipeline as PipelineConfigDoc, RequiredParentStatus, Strategy, Task};
use gofer_api::models::{
    Attempt, ConfigState, Deployment, DeploymentState, DeploymentStep, EventKind, Initiator, Namespace, PipelineState,
    Routing, RunCounts, RunState, RunStatus, StatusReason, StatusReasonKind, Subscription, SystemSettings,
    TaskExecution, TaskState, TaskStatus, Variable, VariableSource,
};

use gofer_api::models::ExtensionRegistration;
use gofer_api::permissions::{Token, extension_role};

use crate::{
    CancelRequest, Error, EventFilter, NewDeployment, NewEvent, NewRun, Page, Recorded, RunFilter, Storage,
    SubscriptionKey, Visible,
};
use crate::{SealedSecret, SecretScope};

/// Runs every check against `store`, which must be freshly created and empty.
pub async fn run_all(store: &dyn Storage) {
    namespaces(store).await;
    configs_and_pipelines(store).await;
    runs(store).await;
    deployments(store).await;
    task_executions(store).await;
    logs_expiry(store).await;
    system_and_events(store).await;
    subscriptions(store).await;
    extensions_tokens_and_roles(store).await;
    secrets(store).await;
    delete_cascades(store).await;
}

/// An event for a change at `emitted`.
fn told(emitted: u64, kind: EventKind) -> NewEvent {
    NewEvent { emitted, kind }
}

/// How many events are stored: a change that failed must not have appended one.
async fn event_count(store: &dyn Storage) -> usize {
    store.list_events(&EventFilter::default(), 100_000).await.unwrap().len()
}

fn namespace(id: &str, created: u64) -> Namespace {
    Namespace { id: id.into(), name: format!("{id} name"), description: String::new(), created, modified: created }
}

fn doc(id: &str, image: &str) -> PipelineConfigDoc {
    PipelineConfigDoc::new(id, &format!("{id} pipeline"))
        .tasks(vec![Task::new("a", image), Task::new("b", image).depends_on("a", RequiredParentStatus::Success)])
}

fn new_run(ns: &str, pipeline: &str, created: u64) -> NewRun {
    NewRun {
        namespace_id: ns.into(),
        pipeline_id: pipeline.into(),
        version: 1,
        created,
        initiator: Initiator { kind: "user".into(), name: "tester".into() },
        variables: vec![Variable { key: "K".into(), value: "v".into(), source: VariableSource::RunOptions }],
        routing: None,
    }
}

fn new_deployment(ns: &str, pipeline: &str, from: Option<u64>, to: u64, at: u64) -> NewDeployment {
    NewDeployment {
        namespace_id: ns.into(),
        pipeline_id: pipeline.into(),
        from_version: from,
        to_version: to,
        strategy: Strategy::Immediate,
        started: at,
        initiator: Initiator { kind: "user".into(), name: "tester".into() },
        message: format!("deploying version {to}"),
    }
}

/// Makes `version` live the way an immediate deployment does: a deployment started and promoted at `at`.
async fn deploy_now(store: &dyn Storage, ns: &str, pipeline: &str, version: u64, at: u64) -> Deployment {
    let from = store.get_pipeline(ns, pipeline).await.unwrap().live_version;
    let (mut deployment, _) = store.insert_deployment(&new_deployment(ns, pipeline, from, version, at)).await.unwrap();
    deployment.state = DeploymentState::Promoted;
    deployment.ended = at;
    deployment.reason = "deployed at once".into();
    let ended = EventKind::DeploymentEnded {
        namespace_id: ns.into(),
        pipeline_id: pipeline.into(),
        deployment_id: deployment.deployment_id,
        state: DeploymentState::Promoted,
        live_version: Some(version),
        reason: deployment.reason.clone(),
    };
    store.update_deployment(&deployment, &told(at, ended)).await.unwrap();
    deployment
}

async fn namespaces(store: &dyn Storage) {
    for (i, id) in ["ns-a", "ns-b", "ns-c"].iter().enumerate() {
        store.create_namespace(&namespace(id, 100 + i as u64)).await.unwrap();
    }
    assert!(
        matches!(store.create_namespace(&namespace("ns-a", 1)).await, Err(Error::Exists { .. })),
        "creating a namespace twice must fail with Exists"
    );
    assert_eq!(store.get_namespace("ns-b").await.unwrap(), namespace("ns-b", 101));
    assert!(matches!(store.get_namespace("nope").await, Err(Error::NotFound { .. })));
    let list = |page: Page, visible: Visible| async move {
        store.list_namespaces(page, &visible).await.unwrap().into_iter().map(|n| n.id).collect::<Vec<String>>()
    };
    assert_eq!(list(Page::new(2, 0), Visible::All).await, ["ns-c", "ns-b"], "newest first, paged");
    assert_eq!(list(Page::new(2, 2), Visible::All).await, ["ns-a"]);
    let some = Visible::Matching(vec!["ns-?".into(), "nope*".into()]);
    assert_eq!(list(Page::new(10, 0), some).await, ["ns-c", "ns-b", "ns-a"], "patterns match whole ids");
    let two = Visible::Matching(vec!["ns-a".into(), "*-c".into()]);
    assert_eq!(list(Page::new(1, 0), two.clone()).await, ["ns-c"], "filtered in the query: pages are full");
    assert_eq!(list(Page::new(1, 1), two).await, ["ns-a"]);
    assert!(list(Page::new(10, 0), Visible::Matching(vec!["ns".into()])).await.is_empty(), "anchored");
    assert!(list(Page::new(10, 0), Visible::Matching(vec![])).await.is_empty(), "no pattern shows nothing");
    let mut renamed = store.get_namespace("ns-a").await.unwrap();
    renamed.name = "Renamed".into();
    renamed.modified += 1;
    store.update_namespace(&renamed).await.unwrap();
    assert_eq!(store.get_namespace("ns-a").await.unwrap(), renamed);
    let ghost = Namespace { id: "ghost".into(), ..renamed };
    assert!(matches!(store.update_namespace(&ghost).await, Err(Error::NotFound { .. })));
}

async fn configs_and_pipelines(store: &dyn Storage) {
    let first = store.register_config("ns-a", &doc("p1", "img:1"), "h1", 1000).await.unwrap();
    assert!(first.created);
    let registered = EventKind::ConfigRegistered { namespace_id: "ns-a".into(), pipeline_id: "p1".into(), version: 1 };
    let event = first.event.clone().expect("a stored version has its event");
    assert_eq!((event.emitted, event.kind), (1000, registered), "config_registered is stored with the version");
    assert_eq!(first.config.version, 1);
    assert_eq!(first.config.state, ConfigState::Unreleased);

    let pipeline = store.get_pipeline("ns-a", "p1").await.unwrap();
    assert_eq!(pipeline.state, PipelineState::Active);
    assert_eq!(pipeline.live_version, None, "a registered version is not live until deployed");
    assert_eq!(pipeline.latest_version, 1);

    let same = store.register_config("ns-a", &doc("p1", "img:1"), "h1", 1001).await.unwrap();
    assert!(!same.created && same.event.is_none(), "an identical config registers nothing, and tells nothing");
    assert_eq!(same.config.version, 1);

    let second = store.register_config("ns-a", &doc("p1", "img:2"), "h2", 1002).await.unwrap();
    assert_eq!(second.config.version, 2);

    deploy_now(store, "ns-a", "p1", 1, 1003).await;
    assert_eq!(store.get_config("ns-a", "p1", 1).await.unwrap().state, ConfigState::Live);
    assert_eq!(store.get_pipeline("ns-a", "p1").await.unwrap().live_version, Some(1));
    deploy_now(store, "ns-a", "p1", 2, 1004).await;
    assert_eq!(store.get_config("ns-a", "p1", 1).await.unwrap().state, ConfigState::Deprecated);
    assert_eq!(store.get_config("ns-a", "p1", 2).await.unwrap().config, doc("p1", "img:2"));
    let pipeline = store.get_pipeline("ns-a", "p1").await.unwrap();
    assert_eq!((pipeline.live_version, pipeline.latest_version), (Some(2), 2));
    assert_eq!(pipeline.name, "p1 pipeline");

    let count = event_count(store).await;
    let missing = new_deployment("ns-a", "p1", Some(2), 9, 1005);
    assert!(matches!(store.insert_deployment(&missing).await, Err(Error::NotFound { .. })));
    assert_eq!(event_count(store).await, count, "a refused deploy tells nothing");
    assert!(matches!(store.get_config("ns-a", "p1", 9).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_pipeline("ns-a", "nope").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_pipeline("ns-b", "p1").await, Err(Error::NotFound { .. })));

    let versions: Vec<u64> =
        store.list_configs("ns-a", "p1", Page::ALL).await.unwrap().into_iter().map(|c| c.version).collect();
    assert_eq!(versions, [2, 1], "configs are listed newest first");

    store.register_config("ns-a", &doc("p2", "img"), "h", 1006).await.unwrap();
    let pipelines = |visible: Visible| async move {
        let listed = store.list_pipelines("ns-a", Page::ALL, &visible).await.unwrap();
        listed.into_iter().map(|p| p.pipeline_id).collect::<Vec<String>>()
    };
    assert_eq!(pipelines(Visible::All).await, ["p2", "p1"], "pipelines are listed newest first");
    assert_eq!(pipelines(Visible::Matching(vec!["p1".into()])).await, ["p1"]);

    let state = |pipeline: &str, state| {
        told(1007, EventKind::PipelineStateChanged { namespace_id: "ns-a".into(), pipeline_id: pipeline.into(), state })
    };
    let event = state("p1", PipelineState::Disabled);
    let stored = store.set_pipeline_state("ns-a", "p1", PipelineState::Disabled, &event).await.unwrap();
    assert_eq!(stored.kind, event.kind);
    let pipeline = store.get_pipeline("ns-a", "p1").await.unwrap();
    assert_eq!((pipeline.state, pipeline.modified), (PipelineState::Disabled, 1007));
    store.set_pipeline_state("ns-a", "p1", PipelineState::Active, &state("p1", PipelineState::Active)).await.unwrap();
    let count = event_count(store).await;
    assert!(matches!(
        store.set_pipeline_state("ns-a", "nope", PipelineState::Active, &state("nope", PipelineState::Active)).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(event_count(store).await, count, "a refused change tells nothing");
}

/// Deployments: one running per pipeline, counts from the runs they routed, ending them moves the live version.
async fn deployments(store: &dyn Storage) {
    let (ns, p) = ("ns-c", "pd");
    for (i, image) in ["img:1", "img:2", "img:3"].iter().enumerate() {
        store.register_config(ns, &doc(p, image), &format!("hd{i}"), 3500).await.unwrap();
    }
    let first = deploy_now(store, ns, p, 1, 3501).await;
    assert_eq!((first.deployment_id, first.from_version, first.to_version), (1, None, 1));
    let stored = store.get_deployment(ns, p, 1).await.unwrap();
    assert_eq!(stored.state, DeploymentState::Promoted);
    assert_eq!(store.get_pipeline(ns, p).await.unwrap().running_deployment, None);

    let canary = Strategy::canary(50, 2, 0.5);
    let new = NewDeployment { strategy: canary.clone(), ..new_deployment(ns, p, Some(1), 2, 3510) };
    let (mut running, started) = store.insert_deployment(&new).await.unwrap();
    assert_eq!(running.deployment_id, 2, "deployment ids count up from 1 per pipeline");
    assert_eq!((running.state, running.stage, running.stage_started), (DeploymentState::Running, 0, 3510));
    assert_eq!(running.strategy, canary);
    assert_eq!(running.timeline, [DeploymentStep { at: 3510, message: "deploying version 2".into() }]);
    let expected = EventKind::DeploymentStarted {
        namespace_id: ns.into(),
        pipeline_id: p.into(),
        deployment_id: 2,
        from_version: Some(1),
        to_version: 2,
        strategy: "canary".into(),
    };
    assert_eq!((started.emitted, started.kind), (3510, expected), "deployment_started is stored with it");
    let pipeline = store.get_pipeline(ns, p).await.unwrap();
    assert_eq!((pipeline.running_deployment, pipeline.live_version), (Some(2), Some(1)));
    assert_eq!(store.get_config(ns, p, 2).await.unwrap().state, ConfigState::Candidate);

    let count = event_count(store).await;
    let refused = store.insert_deployment(&new_deployment(ns, p, Some(1), 3, 3511)).await;
    match refused {
        Err(Error::Conflict { message }) => {
            assert!(message.contains("deployment 2"), "names the running one: {message}")
        }
        other => panic!("a second running deployment must be refused with Conflict, got {other:?}"),
    }
    assert_eq!(event_count(store).await, count, "a refused deployment tells nothing");
    let in_use = store.delete_config(ns, p, 2, &told(3512, config_deleted(ns, p, 2))).await;
    assert!(matches!(in_use, Err(Error::Conflict { .. })), "the candidate of a running deployment is kept");
    let live = store.delete_config(ns, p, 1, &told(3512, config_deleted(ns, p, 1))).await;
    assert!(matches!(live, Err(Error::Conflict { .. })), "the live version is kept");

    // Runs it routes are counted by version and stage, from the runs themselves.
    let routed = |version, stage, candidate| NewRun {
        namespace_id: ns.into(),
        pipeline_id: p.into(),
        version,
        routing: Some(Routing { deployment_id: 2, stage, candidate, reason: "test".into() }),
        ..new_run(ns, p, 3520)
    };
    let mut runs = Vec::new();
    for (version, stage, candidate) in [(1, 0, false), (2, 0, true), (2, 0, true), (2, 1, true)] {
        runs.push(store.insert_run(routed(version, stage, candidate)).await.unwrap().0);
    }
    store.insert_run(NewRun { version: 2, ..new_run(ns, p, 3521) }).await.unwrap();
    assert_eq!(store.get_run(ns, p, runs[1].run_id).await.unwrap().routing, runs[1].routing, "routing is kept");
    for (run, status) in runs.iter_mut().zip([RunStatus::Successful, RunStatus::Failed, RunStatus::Cancelled]) {
        run.state = RunState::Complete;
        run.status = status;
        let completed = EventKind::RunCompleted {
            namespace_id: ns.into(),
            pipeline_id: p.into(),
            run_id: run.run_id,
            status,
            status_reason: None,
        };
        store.update_run(run, &told(3530, completed)).await.unwrap();
    }
    let counted = store.get_deployment(ns, p, 2).await.unwrap().counts;
    let counts = |version, stage, started, successful, failed, cancelled| RunCounts {
        version,
        stage,
        started,
        successful,
        failed,
        cancelled,
    };
    assert_eq!(
        counted,
        [counts(1, 0, 1, 1, 0, 0), counts(2, 0, 2, 0, 1, 1), counts(2, 1, 1, 0, 0, 0)],
        "by stage then version; runs not routed by it (an explicit version) are not counted"
    );
    let in_flight = store.delete_config(ns, p, 2, &told(3531, config_deleted(ns, p, 2))).await;
    assert!(matches!(in_flight, Err(Error::Conflict { .. })), "a version that runs still run is kept");

    running.stage = 1;
    running.stage_started = 3540;
    running.timeline.push(DeploymentStep { at: 3540, message: "stage 2".into() });
    let stage = EventKind::DeploymentStageChanged {
        namespace_id: ns.into(),
        pipeline_id: p.into(),
        deployment_id: 2,
        stage: 1,
        weight: 100,
    };
    store.update_deployment(&running, &told(3540, stage)).await.unwrap();
    let listed = store.list_running_deployments().await.unwrap();
    assert_eq!(listed.len(), 1, "only running deployments: {listed:?}");
    assert_eq!((listed[0].stage, listed[0].stage_started, listed[0].counts.len()), (1, 3540, 3));

    running.state = DeploymentState::RolledBack;
    running.ended = 3550;
    running.reason = "candidate failed".into();
    let ended = EventKind::DeploymentEnded {
        namespace_id: ns.into(),
        pipeline_id: p.into(),
        deployment_id: 2,
        state: DeploymentState::RolledBack,
        live_version: Some(1),
        reason: "candidate failed".into(),
    };
    let event = store.update_deployment(&running, &told(3550, ended.clone())).await.unwrap();
    assert_eq!(event.kind, ended);
    let pipeline = store.get_pipeline(ns, p).await.unwrap();
    assert_eq!((pipeline.running_deployment, pipeline.live_version), (None, Some(1)), "a rollback keeps the live one");
    assert_eq!(store.get_config(ns, p, 2).await.unwrap().state, ConfigState::RolledBack);
    assert_eq!(store.get_config(ns, p, 1).await.unwrap().state, ConfigState::Live);
    let count = event_count(store).await;
    let again = store.update_deployment(&running, &told(3551, ended)).await;
    assert!(matches!(again, Err(Error::Conflict { .. })), "an ended deployment does not change again");
    assert_eq!(event_count(store).await, count);
    assert!(store.list_running_deployments().await.unwrap().is_empty());

    let promoted = deploy_now(store, ns, p, 3, 3560).await;
    assert_eq!((promoted.deployment_id, promoted.from_version), (3, Some(1)));
    let pipeline = store.get_pipeline(ns, p).await.unwrap();
    assert_eq!(pipeline.live_version, Some(3));
    assert_eq!(store.get_config(ns, p, 1).await.unwrap().state, ConfigState::Deprecated);
    let ids: Vec<u64> =
        store.list_deployments(ns, p, Page::new(2, 0)).await.unwrap().into_iter().map(|d| d.deployment_id).collect();
    assert_eq!(ids, [3, 2], "newest first, paged");
    assert!(matches!(store.get_deployment(ns, p, 9).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.list_deployments(ns, "ghost", Page::ALL).await, Err(Error::NotFound { .. })));

    // A deleted version is gone for good: its number is never given again.
    let event = store.delete_config(ns, p, 1, &told(3570, config_deleted(ns, p, 1))).await.unwrap();
    assert_eq!(event.kind, config_deleted(ns, p, 1));
    assert!(matches!(store.get_config(ns, p, 1).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        store.delete_config(ns, p, 1, &told(3571, config_deleted(ns, p, 1))).await,
        Err(Error::NotFound { .. })
    ));
    let next = store.register_config(ns, &doc(p, "img:4"), "hd4", 3580).await.unwrap();
    assert_eq!(next.config.version, 4);
    let deleted_latest = store.delete_config(ns, p, 4, &told(3581, config_deleted(ns, p, 4))).await;
    deleted_latest.unwrap();
    let again = store.register_config(ns, &doc(p, "img:4"), "hd4", 3582).await.unwrap();
    assert_eq!((again.created, again.config.version), (true, 5), "the latest deleted, numbering goes on");
}

fn config_deleted(ns: &str, pipeline: &str, version: u64) -> EventKind {
    EventKind::ConfigDeleted { namespace_id: ns.into(), pipeline_id: pipeline.into(), version }
}

async fn runs(store: &dyn Storage) {
    for i in 0..5 {
        let (run, queued) = store.insert_run(new_run("ns-a", "p1", 2000 + i)).await.unwrap();
        assert_eq!(run.run_id, i + 1, "run ids count up from 1 per pipeline");
        assert_eq!((run.state, run.status), (RunState::Pending, RunStatus::Unknown));
        let expected =
            EventKind::RunQueued { namespace_id: "ns-a".into(), pipeline_id: "p1".into(), run_id: run.run_id };
        assert_eq!((queued.emitted, queued.kind), (run.created, expected), "the run_queued event is stored with it");
    }
    let (other, _) = store.insert_run(new_run("ns-a", "p2", 2100)).await.unwrap();
    assert_eq!(other.run_id, 1, "each pipeline has its own run ids");
    assert!(matches!(store.insert_run(new_run("ns-a", "ghost", 1)).await, Err(Error::NotFound { .. })));

    let ids: Vec<u64> = store
        .list_runs("ns-a", "p1", RunFilter::default(), Page::new(2, 1))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(ids, [4, 3], "runs are listed newest first and paged");

    let mut run = store.get_run("ns-a", "p1", 2).await.unwrap();
    assert_eq!(run.variables, new_run("ns-a", "p1", 0).variables);
    run.state = RunState::Complete;
    run.status = RunStatus::Failed;
    run.status_reason =
        Some(StatusReason { reason: StatusReasonKind::AbnormalExit, description: "task a exited 3".into() });
    run.started = 2500;
    run.ended = 2600;
    let completed = NewEvent {
        emitted: 2600,
        kind: EventKind::RunCompleted {
            namespace_id: "ns-a".into(),
            pipeline_id: "p1".into(),
            run_id: 2,
            status: run.status,
            status_reason: run.status_reason.clone(),
        },
    };
    let event = store.update_run(&run, &completed).await.unwrap();
    assert_eq!((event.emitted, &event.kind), (2600, &completed.kind), "the event is stored with the change");
    assert_eq!(store.get_run("ns-a", "p1", 2).await.unwrap(), run);
    let listed = |filter| async move {
        let runs = store.list_runs("ns-a", "p1", filter, Page::ALL).await.unwrap();
        runs.into_iter().map(|r| r.run_id).collect::<Vec<u64>>()
    };
    let failed = RunFilter { status: Some(RunStatus::Failed), ..Default::default() };
    assert_eq!(listed(failed).await, [2], "runs are filtered by status");
    let pending = RunFilter { state: Some(RunState::Pending), ..Default::default() };
    assert_eq!(listed(pending).await, [5, 4, 3, 1], "and by state");
    let both = RunFilter { state: Some(RunState::Complete), status: Some(RunStatus::Successful) };
    assert!(listed(both).await.is_empty());
    let ghost_run = gofer_api::models::Run { run_id: 99, ..run.clone() };
    assert!(matches!(store.update_run(&ghost_run, &completed).await, Err(Error::NotFound { .. })));
    let of_run = |run_id| EventFilter {
        namespace_id: Some("ns-a".into()),
        pipeline_id: Some("p1".into()),
        run_id: Some(run_id),
        ..Default::default()
    };
    let kinds: Vec<EventKind> = store.list_events(&of_run(2), 100).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.len(), 2, "queued and completed");
    assert_eq!(kinds[1], completed.kind);
    assert!(store.list_events(&of_run(99), 100).await.unwrap().is_empty(), "a change that failed appends no event");
    assert!(matches!(store.get_run("ns-a", "p1", 99).await, Err(Error::NotFound { .. })));

    let unfinished: Vec<(String, u64)> =
        store.list_unfinished_runs().await.unwrap().into_iter().map(|r| (r.pipeline_id, r.run_id)).collect();
    assert_eq!(
        unfinished,
        [("p1".into(), 1), ("p1".into(), 3), ("p1".into(), 4), ("p1".into(), 5), ("p2".into(), 1)],
        "unfinished runs exclude complete ones, oldest first"
    );

    // Cancel requests are stored for whichever server drives the run, oldest first.
    let cancel = |task_id: Option<&str>, requested| CancelRequest {
        namespace_id: "ns-a".into(),
        pipeline_id: "p1".into(),
        run_id: 3,
        task_id: task_id.map(str::to_string),
        reason: StatusReason { reason: StatusReasonKind::UserCancelled, description: "asked".into() },
        requested,
    };
    assert!(store.list_cancel_requests("ns-a", "p1", 3).await.unwrap().is_empty());
    let asked = store.request_cancel(&cancel(Some("build"), 2700)).await.unwrap();
    let expected = EventKind::RunCancelRequested {
        namespace_id: "ns-a".into(),
        pipeline_id: "p1".into(),
        run_id: 3,
        task_id: Some("build".into()),
    };
    assert_eq!((asked.emitted, asked.kind), (2700, expected), "the run_cancel_requested event is stored with it");
    store.request_cancel(&cancel(None, 2701)).await.unwrap();
    let stored = store.list_cancel_requests("ns-a", "p1", 3).await.unwrap();
    assert_eq!(stored, [cancel(Some("build"), 2700), cancel(None, 2701)]);
    assert!(store.list_cancel_requests("ns-a", "p1", 4).await.unwrap().is_empty(), "per run");
    let ghost = CancelRequest { run_id: 99, ..cancel(None, 1) };
    assert!(matches!(store.request_cancel(&ghost).await, Err(Error::NotFound { .. })));
    assert!(store.list_events(&of_run(99), 100).await.unwrap().is_empty(), "nor does a refused cancel");
}

fn execution(task_id: &str) -> TaskExecution {
    TaskExecution {
        namespace_id: "ns-a".into(),
        pipeline_id: "p1".into(),
        run_id: 1,
        task_id: task_id.into(),
        created: 3000,
        started: 0,
        ended: 0,
        state: TaskState::Waiting,
        status: TaskStatus::Unknown,
        status_reason: None,
        exit_code: None,
        image_digest: None,
        container_id: None,
        variables: vec![Variable {
            key: "GOFER_TASK_ID".into(),
            value: task_id.into(),
            source: VariableSource::System,
        }],
        task: Task::new(task_id, "busybox:latest"),
        attempt: 1,
        attempts: Vec::new(),
        logs_expired: false,
    }
}

fn changed(te: &TaskExecution) -> NewEvent {
    NewEvent {
        emitted: te.created,
        kind: EventKind::TaskChanged {
            namespace_id: te.namespace_id.clone(),
            pipeline_id: te.pipeline_id.clone(),
            run_id: te.run_id,
            task_id: te.task_id.clone(),
            attempt: te.attempt,
            state: te.state,
            status: te.status,
            status_reason: te.status_reason.clone(),
            exit_code: te.exit_code,
        },
    }
}

async fn task_executions(store: &dyn Storage) {
    for id in ["b", "a"] {
        let event = store.insert_task_execution(&execution(id), &changed(&execution(id))).await.unwrap();
        assert_eq!(event.kind, changed(&execution(id)).kind);
    }
    let before = store.list_events(&EventFilter::default(), 100).await.unwrap();
    let newest = before.last().map_or(0, |e| e.id);
    assert_eq!(store.latest_event_id().await.unwrap(), newest, "the newest event's id");
    let again = store.insert_task_execution(&execution("a"), &changed(&execution("a"))).await;
    assert!(matches!(again, Err(Error::Exists { .. })));
    assert_eq!(store.list_events(&EventFilter::default(), 100).await.unwrap(), before, "no event for a failed insert");
    let ids: Vec<String> =
        store.list_task_executions("ns-a", "p1", 1).await.unwrap().into_iter().map(|t| t.task_id).collect();
    assert_eq!(ids, ["a", "b"]);

    let mut a = execution("a");
    a.state = TaskState::Complete;
    a.status = TaskStatus::Failed;
    a.exit_code = Some(-1);
    a.image_digest = Some("sha256:abc".into());
    a.container_id = Some("c0ffee".into());
    a.status_reason = Some(StatusReason { reason: StatusReasonKind::AbnormalExit, description: "exit".into() });
    a.started = 3001;
    a.ended = 3002;
    a.attempt = 2;
    a.attempts = vec![Attempt {
        attempt: 1,
        started: 3000,
        ended: 3001,
        status: TaskStatus::Failed,
        status_reason: None,
        exit_code: Some(1),
        image_digest: None,
    }];
    let event = store.update_task_execution(&a, &changed(&a)).await.unwrap();
    assert_eq!(event.kind, changed(&a).kind);
    assert_eq!(store.get_task_execution("ns-a", "p1", 1, "a").await.unwrap(), a);
    assert!(matches!(store.get_task_execution("ns-a", "p1", 1, "zz").await, Err(Error::NotFound { .. })));
    let mut ghost = execution("ghost");
    ghost.run_id = 77;
    assert!(store.update_task_execution(&ghost, &changed(&ghost)).await.is_err(), "updating a missing execution fails");
    let events = store.list_events(&EventFilter::default(), 100).await.unwrap();
    assert_eq!(events.len(), before.len() + 1, "a failed update appends no event");
}

async fn logs_expiry(store: &dyn Storage) {
    let mut second = execution("a");
    second.run_id = 2;
    store.insert_task_execution(&second, &changed(&second)).await.unwrap();
    assert_eq!(store.expire_logs("ns-a", "p1", 1).await.unwrap(), [1], "runs up to 1 had live logs");
    assert!(store.get_task_execution("ns-a", "p1", 1, "b").await.unwrap().logs_expired);
    assert!(!store.get_task_execution("ns-a", "p1", 2, "a").await.unwrap().logs_expired);
    assert!(store.expire_logs("ns-a", "p1", 1).await.unwrap().is_empty(), "expiring twice reports nothing new");
}

async fn system_and_events(store: &dyn Storage) {
    assert_eq!(store.get_system().await.unwrap(), SystemSettings::default());
    let maintenance = |on| told(4000, EventKind::MaintenanceChanged { maintenance: on });
    let event = store.set_system(&SystemSettings { maintenance: true }, &maintenance(true)).await.unwrap();
    assert_eq!(event.kind, maintenance(true).kind);
    assert!(store.get_system().await.unwrap().maintenance);
    store.set_system(&SystemSettings { maintenance: false }, &maintenance(false)).await.unwrap();
    assert!(!store.get_system().await.unwrap().maintenance);

    // The events appended with run and task changes above are pruned like any other.
    let earlier = store.list_events(&EventFilter::default(), 100_000).await.unwrap();
    assert!(earlier.iter().all(|e| e.emitted < 5000), "the changes above happened before 5000");
    assert_eq!(store.delete_events_before(5000).await.unwrap(), earlier.len() as u64);
    let queued = |run_id| EventKind::RunQueued { namespace_id: "ns-a".into(), pipeline_id: "p1".into(), run_id };
    let first = store.insert_event(5000, &queued(1)).await.unwrap();
    let second = store.insert_event(5001, &EventKind::MaintenanceChanged { maintenance: true }).await.unwrap();
    let third = store.insert_event(6000, &queued(2)).await.unwrap();
    assert_eq!((second.id, third.id), (first.id + 1, first.id + 2), "event ids count up by one");

    let all = store.list_events(&EventFilter::default(), 100).await.unwrap();
    assert_eq!(all, [first.clone(), second.clone(), third.clone()]);
    let after = EventFilter { after: first.id, ..Default::default() };
    assert_eq!(store.list_events(&after, 1).await.unwrap(), std::slice::from_ref(&second));
    let run2 = EventFilter {
        namespace_id: Some("ns-a".into()),
        pipeline_id: Some("p1".into()),
        run_id: Some(2),
        ..Default::default()
    };
    assert_eq!(store.list_events(&run2, 100).await.unwrap(), std::slice::from_ref(&third));
    assert!(run2.matches(&third) && !run2.matches(&first) && !run2.matches(&second));

    assert_eq!(store.delete_events_before(6000).await.unwrap(), 2);
    assert_eq!(store.list_events(&EventFilter::default(), 100).await.unwrap(), [third]);
}

async fn subscriptions(store: &dyn Storage) {
    assert_eq!(store.get_extension_enabled("interval").await.unwrap(), None, "never switched");
    store.set_extension_enabled("interval", false, 1).await.unwrap();
    assert_eq!(store.get_extension_enabled("interval").await.unwrap(), Some(false));
    store.set_extension_enabled("interval", true, 2).await.unwrap();
    assert_eq!(store.get_extension_enabled("interval").await.unwrap(), Some(true));

    let sub = Subscription {
        namespace_id: "ns-a".into(),
        pipeline_id: "p1".into(),
        extension_id: "interval".into(),
        label: "every-minute".into(),
        settings: [("every".to_string(), "1m".to_string())].into(),
        enabled: true,
        created: 7000,
        last_fired: 0,
        declared: false,
        next_fire: None,
    };
    store.insert_subscription(&sub).await.unwrap();
    assert!(matches!(store.insert_subscription(&sub).await, Err(Error::Exists { .. })));
    let ghost = Subscription { pipeline_id: "ghost".into(), ..sub.clone() };
    assert!(matches!(store.insert_subscription(&ghost).await, Err(Error::NotFound { .. })));
    let key = SubscriptionKey::of(&sub);
    assert_eq!(store.get_subscription(&key).await.unwrap(), sub);
    store.set_subscription_enabled(&key, false).await.unwrap();
    assert_eq!(store.record_subscription_fired(&key, None, 7500).await.unwrap(), Recorded::Yes, "events always");
    let stored = store.get_subscription(&key).await.unwrap();
    assert_eq!((stored.enabled, stored.last_fired), (false, 7500));
    // Ticks are compare-and-set: of two firings of the same tick, one records it.
    assert_eq!(store.record_subscription_fired(&key, Some(7500), 7600).await.unwrap(), Recorded::Yes);
    let second = store.record_subscription_fired(&key, Some(7500), 7601).await.unwrap();
    assert_eq!(second, Recorded::Already { last_fired: 7600 }, "the second loses and learns the first's tick");
    assert_eq!(store.get_subscription(&key).await.unwrap().last_fired, 7600);
    let ghost_key = SubscriptionKey { label: "ghost".into(), ..key.clone() };
    assert!(matches!(store.record_subscription_fired(&ghost_key, Some(0), 1).await, Err(Error::NotFound { .. })));
    let other = Subscription { pipeline_id: "p2".into(), label: "b".into(), ..sub.clone() };
    store.insert_subscription(&other).await.unwrap();
    assert_eq!(store.list_subscriptions("ns-a", "p1").await.unwrap().len(), 1);
    assert_eq!(store.list_extension_subscriptions("interval").await.unwrap().len(), 2);
    assert!(store.list_extension_subscriptions("cron").await.unwrap().is_empty());
    store.delete_subscription(&SubscriptionKey::of(&other)).await.unwrap();
    assert!(matches!(store.delete_subscription(&SubscriptionKey::of(&other)).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_subscription(&SubscriptionKey::of(&other)).await, Err(Error::NotFound { .. })));
}

async fn extensions_tokens_and_roles(store: &dyn Storage) {
    let registration = ExtensionRegistration {
        id: "hello".into(),
        image: "hello:1".into(),
        settings: [("GREETING".to_string(), "hi".to_string())].into(),
        registry_auth: None,
        created: 9000,
    };
    let role = extension_role("hello");
    let token = Token {
        id: "extension:hello".into(),
        hash: "h1".into(),
        user: "extension:hello".into(),
        roles: vec![role.id.clone()],
        created: 9000,
        expires: 0,
        disabled: false,
        metadata: Default::default(),
    };
    let installed =
        told(9000, EventKind::ExtensionInstalled { extension_id: "hello".into(), image: registration.image.clone() });
    let event = store.insert_extension(&registration, &role, &token, &installed).await.unwrap();
    assert_eq!(event.kind, installed.kind);
    let count = event_count(store).await;
    assert!(
        matches!(store.insert_extension(&registration, &role, &token, &installed).await, Err(Error::Exists { .. })),
        "an id is installed once"
    );
    assert_eq!(store.list_extensions().await.unwrap(), vec![registration.clone()]);
    assert_eq!(store.get_role("extension_hello").await.unwrap(), role);
    let custom = gofer_api::permissions::Role { id: "team-a".into(), system_role: false, ..role.clone() };
    store.insert_role(&custom).await.unwrap();
    assert!(matches!(store.insert_role(&custom).await, Err(Error::Exists { .. })));
    assert_eq!(store.list_roles().await.unwrap().len(), 2);
    let changed = gofer_api::permissions::Role { description: "changed".into(), grants: vec![], ..custom.clone() };
    store.update_role(&changed).await.unwrap();
    assert_eq!(store.get_role("team-a").await.unwrap(), changed);
    let ghost = gofer_api::permissions::Role { id: "ghost".into(), ..custom.clone() };
    assert!(matches!(store.update_role(&ghost).await, Err(Error::NotFound { .. })));
    let holder = Token {
        id: "t-holder".into(),
        hash: "hh".into(),
        user: "alice".into(),
        roles: vec!["read_only".into(), "team-a".into()],
        ..token.clone()
    };
    store.put_token(&holder).await.unwrap();
    store.delete_role("team-a").await.unwrap();
    assert!(matches!(store.delete_role("team-a").await, Err(Error::NotFound { .. })));
    assert_eq!(store.get_token("t-holder").await.unwrap().roles, ["read_only"], "a deleted role leaves its tokens");
    store.delete_token("t-holder").await.unwrap();
    assert_eq!(store.get_token_by_hash("h1").await.unwrap(), token);
    // A new start replaces the token: the old secret stops working.
    let renewed = Token { hash: "h2".into(), created: 9100, ..token.clone() };
    store.put_token(&renewed).await.unwrap();
    assert!(matches!(store.get_token_by_hash("h1").await, Err(Error::NotFound { .. })));
    assert_eq!(store.get_token_by_hash("h2").await.unwrap(), renewed);
    let run_token = |id: &str, hash: &str| Token {
        id: id.into(),
        hash: hash.into(),
        user: "run:ns-a/p2/1".into(),
        roles: vec!["run".into()],
        created: 9150,
        expires: 0,
        disabled: false,
        metadata: Default::default(),
    };
    store.put_token(&run_token("run:ns-a/p2/1/a/1", "r1")).await.unwrap();
    store.put_token(&run_token("run:ns-a/p2/1/b/1", "r2")).await.unwrap();
    assert_eq!(store.token_users("run:ns-a/p2/").await.unwrap(), ["run:ns-a/p2/1"]);
    assert_eq!(store.get_token("run:ns-a/p2/1/a/1").await.unwrap().hash, "r1");
    assert!(matches!(store.get_token("nope").await, Err(Error::NotFound { .. })));
    let boot = Token { id: "t-boot".into(), hash: "hb".into(), user: "bootstrap".into(), ..run_token("x", "y") };
    store.insert_bootstrap_token(&boot).await.unwrap();
    store.delete_token("t-boot").await.unwrap();
    assert!(matches!(store.delete_token("t-boot").await, Err(Error::NotFound { .. })));
    assert!(
        matches!(store.insert_bootstrap_token(&boot).await, Err(Error::Exists { .. })),
        "bootstrap works once, even after its token is gone"
    );
    assert_eq!(store.list_tokens().await.unwrap().len(), 3);
    assert!(store.token_users("run:ns-a/p2_").await.unwrap().is_empty(), "a prefix, not a pattern");
    assert_eq!(store.delete_tokens_of_user("run:ns-a/p2/1").await.unwrap(), 2);
    assert!(matches!(store.get_token_by_hash("r1").await, Err(Error::NotFound { .. })));
    assert_eq!(store.get_token_by_hash("h2").await.unwrap(), renewed, "other holders keep theirs");

    let sub = Subscription {
        namespace_id: "ns-a".into(),
        pipeline_id: "p2".into(),
        extension_id: "hello".into(),
        label: "x".into(),
        settings: Default::default(),
        enabled: true,
        created: 9200,
        last_fired: 0,
        declared: true,
        next_fire: None,
    };
    store.insert_subscription(&sub).await.unwrap();
    assert!(store.get_subscription(&SubscriptionKey::of(&sub)).await.unwrap().declared, "declared is kept");
    store.set_extension_enabled("hello", false, 9300).await.unwrap();
    let uninstalled = told(9400, EventKind::ExtensionUninstalled { extension_id: "hello".into() });
    assert_eq!(event_count(store).await, count, "a refused install tells nothing");
    assert_eq!(store.delete_extension("hello", &uninstalled).await.unwrap().kind, uninstalled.kind);
    assert!(store.list_extensions().await.unwrap().is_empty());
    assert!(store.list_extension_subscriptions("hello").await.unwrap().is_empty(), "subscriptions go with it");
    assert_eq!(store.get_extension_enabled("hello").await.unwrap(), None, "so does its switch");
    assert!(matches!(store.get_role("extension_hello").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_token_by_hash("h2").await, Err(Error::NotFound { .. })));
    let count = event_count(store).await;
    assert!(matches!(store.delete_extension("hello", &uninstalled).await, Err(Error::NotFound { .. })));
    assert_eq!(event_count(store).await, count);
    assert_eq!(store.list_extension_subscriptions("interval").await.unwrap().len(), 1, "others are untouched");
}

async fn secrets(store: &dyn Storage) {
    let p1 = SecretScope::Pipeline { namespace_id: "ns-a".into(), pipeline_id: "p1".into() };
    let secret = SealedSecret {
        scope: p1.clone(),
        key: "DB_PASSWORD".into(),
        sealed: vec![1, 2, 3],
        namespaces: Vec::new(),
        created: 10_000,
        modified: 10_000,
    };
    store.put_secret(&secret).await.unwrap();
    assert_eq!(store.get_secret(&p1, "DB_PASSWORD").await.unwrap(), secret);
    let replaced = SealedSecret { sealed: vec![4, 5], created: 10_500, modified: 10_500, ..secret.clone() };
    store.put_secret(&replaced).await.unwrap();
    let stored = store.get_secret(&p1, "DB_PASSWORD").await.unwrap();
    assert_eq!((stored.sealed, stored.created, stored.modified), (vec![4, 5], 10_000, 10_500), "created is kept");
    let ghost = SecretScope::Pipeline { namespace_id: "ns-a".into(), pipeline_id: "ghost".into() };
    let orphan = SealedSecret { scope: ghost.clone(), ..secret.clone() };
    assert!(matches!(store.put_secret(&orphan).await, Err(Error::NotFound { .. })), "the pipeline must exist");
    assert!(matches!(store.get_secret(&ghost, "DB_PASSWORD").await, Err(Error::NotFound { .. })));

    let global = SealedSecret {
        scope: SecretScope::Global,
        key: "SLACK".into(),
        sealed: vec![9],
        namespaces: vec!["team-*".into()],
        created: 11_000,
        modified: 11_000,
    };
    store.put_secret(&global).await.unwrap();
    assert_eq!(store.get_secret(&SecretScope::Global, "SLACK").await.unwrap(), global);
    assert!(matches!(store.get_secret(&SecretScope::Global, "DB_PASSWORD").await, Err(Error::NotFound { .. })));
    assert_eq!(store.list_secrets(&p1).await.unwrap().len(), 1);
    assert_eq!(store.list_secrets(&SecretScope::Global).await.unwrap(), vec![global.clone()]);

    assert_eq!(store.get_secret_key_check().await.unwrap(), None);
    store.set_secret_key_check(&[7, 7]).await.unwrap();
    let mut all = store.all_secrets().await.unwrap();
    assert_eq!(all.len(), 2);
    for s in &mut all {
        s.sealed = vec![0];
    }
    store.reseal_secrets(&all, &[8, 8]).await.unwrap();
    assert_eq!(store.get_secret_key_check().await.unwrap(), Some(vec![8, 8]));
    assert_eq!(store.get_secret(&SecretScope::Global, "SLACK").await.unwrap().sealed, vec![0]);
    assert_eq!(store.get_secret(&p1, "DB_PASSWORD").await.unwrap().sealed, vec![0]);

    store.delete_secret(&SecretScope::Global, "SLACK").await.unwrap();
    assert!(matches!(store.delete_secret(&SecretScope::Global, "SLACK").await, Err(Error::NotFound { .. })));
}

async fn delete_cascades(store: &dyn Storage) {
    let deleted = told(9500, EventKind::PipelineDeleted { namespace_id: "ns-a".into(), pipeline_id: "p1".into() });
    let event = store.delete_pipeline("ns-a", "p1", &deleted).await.unwrap();
    assert_eq!(event.kind, deleted.kind);
    let kept = store.list_events(&EventFilter::default(), 100_000).await.unwrap();
    assert_eq!(kept.last(), Some(&event), "the deletion's event outlives what it deleted");
    assert!(matches!(store.get_pipeline("ns-a", "p1").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_run("ns-a", "p1", 1).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_config("ns-a", "p1", 1).await, Err(Error::NotFound { .. })));
    assert!(store.list_task_executions("ns-a", "p1", 1).await.unwrap().is_empty());
    assert!(store.list_subscriptions("ns-a", "p1").await.unwrap().is_empty(), "subscriptions go with the pipeline");
    let p1 = SecretScope::Pipeline { namespace_id: "ns-a".into(), pipeline_id: "p1".into() };
    assert!(store.list_secrets(&p1).await.unwrap().is_empty(), "so do its secrets");
    assert!(matches!(store.delete_pipeline("ns-a", "p1", &deleted).await, Err(Error::NotFound { .. })));
    assert_eq!(event_count(store).await, kept.len(), "a refused deletion tells nothing");
    store.get_pipeline("ns-a", "p2").await.unwrap();
    // A re-created pipeline starts its run ids from 1 again.
    store.register_config("ns-a", &doc("p1", "img"), "h", 4000).await.unwrap();
    assert_eq!(store.insert_run(new_run("ns-a", "p1", 4001)).await.unwrap().0.run_id, 1);

    // A namespace goes with everything in it.
    let p1 = SecretScope::Pipeline { namespace_id: "ns-a".into(), pipeline_id: "p1".into() };
    let secret = SealedSecret {
        scope: p1.clone(),
        key: "K".into(),
        sealed: vec![1],
        namespaces: Vec::new(),
        created: 4002,
        modified: 4002,
    };
    store.put_secret(&secret).await.unwrap();
    let gone = told(9600, EventKind::NamespaceDeleted { namespace_id: "ns-a".into() });
    assert_eq!(store.delete_namespace("ns-a", &gone).await.unwrap().kind, gone.kind);
    assert!(matches!(store.get_namespace("ns-a").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_pipeline("ns-a", "p2").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_run("ns-a", "p1", 1).await, Err(Error::NotFound { .. })));
    assert!(store.list_secrets(&p1).await.unwrap().is_empty());
    let count = event_count(store).await;
    assert!(matches!(store.delete_namespace("ns-a", &gone).await, Err(Error::NotFound { .. })));
    assert_eq!(event_count(store).await, count);
}

/// Checks an event bus: followers get what is announced after they start following, in order, and one that falls
/// behind is told it lagged before any gap.
pub async fn event_bus(bus: &dyn crate::EventBus) {
    use crate::Live;
    use futures::StreamExt;
    use gofer_api::models::Event;

    let event =
        |id: u64| Event { id, emitted: id, kind: EventKind::MaintenanceChanged { maintenance: id.is_multiple_of(2) } };
    // A guard against a hang, not a timing expectation.
    async fn next(follower: &mut futures::stream::BoxStream<'static, Live>) -> Live {
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), follower.next()).await;
        next.expect("an announced event reaches its follower").expect("the bus is still there")
    }

    let mut early = bus.follow();
    bus.announce(event(1));
    let mut late = bus.follow();
    bus.announce(event(2));
    bus.announce(event(3));
    for id in 1..=3 {
        assert_eq!(next(&mut early).await, Live::Event(event(id)), "in the order announced");
    }
    for id in 2..=3 {
        assert_eq!(next(&mut late).await, Live::Event(event(id)), "only what was announced after following");
    }
    drop((early, late));

    let mut slow = bus.follow();
    let last_id = 20_003;
    for id in 4..=last_id {
        bus.announce(event(id));
    }
    let (mut last, mut lagged) = (3, false);
    while last < last_id {
        match next(&mut slow).await {
            Live::Event(e) => {
                assert!(e.id > last, "event {} came after {last}", e.id);
                assert!(e.id == last + 1 || lagged, "events {}..{} were skipped without a lag notice", last + 1, e.id);
                (last, lagged) = (e.id, false);
            }
            Live::Lagged => lagged = true,
        }
    }
}

/// Checks a task log store: bytes come back exactly, followers see everything until the writer ends (finished or
/// dropped), attempts and runs are kept apart, and removal removes.
pub async fn log_store(store: &dyn crate::LogStore) {
    use crate::LogKey;
    use futures::StreamExt;

    let key = |run_id, task: &str, attempt| LogKey {
        namespace_id: "ns-a".into(),
        pipeline_id: "p1".into(),
        run_id,
        task_id: task.into(),
        attempt,
    };
    // Reads a whole log; a guard against a follower that never ends, not a timing expectation.
    let read = |key: LogKey, follow: bool| async move {
        let stream = store.read(&key, follow).await.expect("the log exists");
        let chunks = tokio::time::timeout(std::time::Duration::from_secs(30), stream.collect::<Vec<_>>())
            .await
            .expect("a follower ends when its log's writer does");
        chunks.into_iter().map(|c| c.expect("a chunk reads")).collect::<Vec<_>>().concat()
    };

    // Exact bytes, and a follower that joins half-way sees all of them, in order, until the end.
    let mut sink = store.create(&key(1, "build", 1)).await.unwrap();
    sink.write(b"first\n").await.unwrap();
    let follower = read(key(1, "build", 1), true);
    let binary: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let writing = async {
        for chunk in binary.chunks(7_001) {
            sink.write(chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
        sink.finish().await.unwrap();
    };
    let (followed, ()) = tokio::join!(follower, writing);
    let mut expected = b"first\n".to_vec();
    expected.extend_from_slice(&binary);
    assert_eq!(followed, expected, "the follower saw every byte, in order");
    assert_eq!(read(key(1, "build", 1), true).await, expected, "following a finished log just reads it");
    assert_eq!(read(key(1, "build", 1), false).await, expected);

    // Without follow, a reader stops at what was written so far; a dropped writer ends followers.
    let mut sink = store.create(&key(1, "test", 1)).await.unwrap();
    sink.write(b"so far").await.unwrap();
    assert_eq!(read(key(1, "test", 1), false).await, b"so far");
    let follower = read(key(1, "test", 1), true);
    let dropping = async move {
        sink.write(b", then gone").await.unwrap();
        drop(sink);
    };
    let (followed, ()) = tokio::join!(follower, dropping);
    assert_eq!(followed, b"so far, then gone", "a dropped writer ends its followers");

    // Attempts have their own logs; making a log again starts it over.
    let mut second = store.create(&key(1, "build", 2)).await.unwrap();
    second.write(b"second attempt").await.unwrap();
    second.finish().await.unwrap();
    assert_eq!(read(key(1, "build", 2), false).await, b"second attempt");
    assert_eq!(read(key(1, "build", 1), false).await, expected, "the first attempt's log is kept");
    let mut again = store.create(&key(1, "test", 1)).await.unwrap();
    again.write(b"anew").await.unwrap();
    again.finish().await.unwrap();
    assert_eq!(read(key(1, "test", 1), false).await, b"anew", "a log made again starts over");

    let missing = |key: LogKey| async move {
        match store.read(&key, false).await {
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            Ok(_) => false,
        }
    };
    assert!(missing(key(1, "nope", 1)).await, "a log never written is NotFound");

    // Removal: a run's logs, then a pipeline's, then a namespace's.
    for (run_id, pipeline) in [(2, "p1"), (3, "p1"), (1, "p2")] {
        let key = LogKey { pipeline_id: pipeline.into(), ..key(run_id, "build", 1) };
        let mut sink = store.create(&key).await.unwrap();
        sink.write(b"x").await.unwrap();
        sink.finish().await.unwrap();
    }
    store.remove_run("ns-a", "p1", 1).await.unwrap();
    assert!(missing(key(1, "build", 1)).await && missing(key(1, "build", 2)).await && missing(key(1, "test", 1)).await);
    assert_eq!(read(key(2, "build", 1), false).await, b"x", "other runs keep their logs");
    store.remove_run("ns-a", "p1", 1).await.expect("removing what is gone succeeds");
    store.remove_all("ns-a", Some("p1")).await.unwrap();
    assert!(missing(key(2, "build", 1)).await && missing(key(3, "build", 1)).await);
    let p2 = LogKey { pipeline_id: "p2".into(), ..key(1, "build", 1) };
    assert_eq!(read(p2.clone(), false).await, b"x", "other pipelines keep their logs");
    store.remove_all("ns-a", None).await.unwrap();
    assert!(missing(p2).await);
    store.remove_all("ns-a", None).await.expect("removing what is gone succeeds");
}
