//! Prometheus metrics: one registry per runtime, the families Gofer counts, and their text exposition
//! (`prometheus-client`). Labels stay low-cardinality: namespace and pipeline, a status, a trigger, an extension,
//! a route template — never a run id, a task id or a variable.
//!
//! Counters and histograms are fed where things happen (the run queue, a run's driver, a task's attempt, a
//! subscription firing, a container extension's supervisor, the deployment judge, the HTTP layer, the storage
//! backend). The queue depth is read from the queue itself when scraped, so it can never drift. The series of a
//! pipeline are remembered by pipeline and removed when it (or its namespace) is deleted: a token that may create
//! and delete pipelines cannot grow the exposition without bound.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gofer_api::models::{DeploymentState, Initiator, Run, TaskExecution};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The version this binary was built as, and the git commit when the build named one (`scripts/release.sh` sets
/// `GOFER_COMMIT`).
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
}

impl BuildInfo {
    pub const fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            commit: match option_env!("GOFER_COMMIT") {
                Some(commit) => commit,
                None => "unknown",
            },
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    namespace: String,
    pipeline: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    namespace: String,
    pipeline: String,
    trigger: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompletedLabels {
    namespace: String,
    pipeline: String,
    trigger: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    namespace: String,
    pipeline: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    namespace: String,
    pipeline: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExtensionLabels {
    extension: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// A series labelled with a pipeline, remembered so it can be removed with the pipeline.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
enum Series {
    Queued(TriggerLabels),
    Started(TriggerLabels),
    Completed(CompletedLabels),
    RunDuration(StatusLabels),
    QueueWait(PipelineLabels),
    TaskDuration(StatusLabels),
    TasksRunning(PipelineLabels),
    Deployments(OutcomeLabels),
    LogBytes(PipelineLabels),
}

/// Bucket bounds, in seconds, of each kind of duration.
const RUN_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
const QUEUE_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
const REQUEST_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const QUERY_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// Makes each series of a histogram family with its bounds.
#[derive(Clone, Copy)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type Histograms<L> = Family<L, Histogram, Buckets>;

/// Every metric Gofer exports. Cheap to clone; clones count into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// One scrape at a time: the queue depth is cleared and refilled from the queue for each.
    scraping: Mutex<()>,
    /// The series of each pipeline, by (namespace, pipeline).
    series: Mutex<HashMap<(String, String), HashSet<Series>>>,
    runs_queued: Family<TriggerLabels, Counter>,
    runs_started: Family<TriggerLabels, Counter>,
    runs_completed: Family<CompletedLabels, Counter>,
    run_duration: Histograms<StatusLabels>,
    queue_wait: Histograms<PipelineLabels>,
    queue_depth: Family<PipelineLabels, Gauge>,
    task_duration: Histograms<StatusLabels>,
    tasks_running: Family<PipelineLabels, Gauge>,
    trigger_fires: Family<ExtensionLabels, Counter>,
    trigger_failures: Family<ExtensionLabels, Counter>,
    extension_restarts: Family<ExtensionLabels, Counter>,
    scheduler_errors: Family<KindLabels, Counter>,
    deployments: Family<OutcomeLabels, Counter>,
    log_bytes: Family<PipelineLabels, Counter>,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Histograms<RouteLabels>,
    storage_duration: Histograms<OperationLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(BuildInfo::current())
    }
}

impl Metrics {
    pub fn new(build: BuildInfo) -> Self {
        let mut registry = Registry::with_prefix("gofer");
        let build_info = Info::new(BuildLabels { version: build.version, commit: build.commit });
        registry.register("build", "The version and git commit of this Gofer", build_info);
        let runs_queued = Family::default();
        registry.register("runs_queued", "Runs requested (queued), by what triggered them", runs_queued.clone());
        let runs_started = Family::default();
        registry.register("runs_started", "Runs whose tasks began, by what triggered them", runs_started.clone());
        let runs_completed = Family::default();
        registry.register("runs_completed", "Runs that ended, by outcome and trigger", runs_completed.clone());
        let run_duration = Family::new_with_constructor(Buckets(RUN_BUCKETS));
        registry.register_with_unit(
            "run_duration",
            "Time from a run's start to its end, by outcome",
            Unit::Seconds,
            run_duration.clone(),
        );
        let queue_wait = Family::new_with_constructor(Buckets(QUEUE_BUCKETS));
        registry.register_with_unit(
            "run_queue_wait",
            "Time from a run being queued to its start",
            Unit::Seconds,
            queue_wait.clone(),
        );
        let queue_depth = Family::default();
        registry.register("runs_waiting", "Runs queued and not yet started (waiting for a slot)", queue_depth.clone());
        let task_duration = Family::new_with_constructor(Buckets(RUN_BUCKETS));
        registry.register_with_unit(
            "task_duration",
            "Time a task's last attempt ran, from its container's start to its end, by outcome",
            Unit::Seconds,
            task_duration.clone(),
        );
        let tasks_running = Family::default();
        registry.register("tasks_running", "Task containers running now", tasks_running.clone());
        let trigger_fires = Family::default();
        registry.register("trigger_fires", "Runs started by an extension's subscription", trigger_fires.clone());
        let trigger_failures = Family::default();
        registry.register(
            "trigger_failures",
            "Subscription firings that could not start a run (pipeline disabled or gone, maintenance, storage)",
            trigger_failures.clone(),
        );
        let extension_restarts = Family::default();
        registry.register(
            "extension_restarts",
            "Times a container extension was started again after it died or failed to start",
            extension_restarts.clone(),
        );
        let scheduler_errors = Family::default();
        registry.register(
            "scheduler_errors",
            "Container engine calls that failed, by kind (image, no_such_container, engine, unreachable)",
            scheduler_errors.clone(),
        );
        let deployments = Family::default();
        registry.register("deployments", "Deployments that ended, by outcome", deployments.clone());
        let log_bytes = Family::default();
        registry.register_with_unit("task_log", "Bytes of task output written to logs", Unit::Bytes, log_bytes.clone());
        let http_requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            http_requests.clone(),
        );
        let http_duration = Family::new_with_constructor(Buckets(REQUEST_BUCKETS));
        registry.register_with_unit(
            "http_request_duration",
            "Time until an HTTP answer started, by route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        let storage_duration = Family::new_with_constructor(Buckets(QUERY_BUCKETS));
        registry.register_with_unit(
            "storage_query_duration",
            "Time of storage calls (a write includes waiting for the writer)",
            Unit::Seconds,
            storage_duration.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                scraping: Mutex::new(()),
                series: Mutex::default(),
                runs_queued,
                runs_started,
                runs_completed,
                run_duration,
                queue_wait,
                queue_depth,
                task_duration,
                tasks_running,
                trigger_fires,
                trigger_failures,
                extension_restarts,
                scheduler_errors,
                deployments,
                log_bytes,
                http_requests,
                http_duration,
                storage_duration,
            }),
        }
    }

    /// Every metric in the Prometheus text format (0.0.4), with the queue depth read by `waiting` (namespace,
    /// pipeline, runs) at this moment.
    pub fn render(&self, waiting: Vec<(String, String, usize)>) -> String {
        let _one_at_a_time = self.inner.scraping.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.queue_depth.clear();
        for (namespace, pipeline, count) in waiting {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            self.inner.queue_depth.get_or_create(&PipelineLabels { namespace, pipeline }).set(count);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry);
        text
    }

    /// Remembers a pipeline's series.
    fn note(&self, namespace: &str, pipeline: &str, series: Series) {
        let mut known = self.inner.series.lock().unwrap_or_else(|p| p.into_inner());
        known.entry((namespace.to_string(), pipeline.to_string())).or_default().insert(series);
    }

    /// Removes every series of a deleted pipeline.
    pub(crate) fn forget_pipeline(&self, namespace: &str, pipeline: &str) {
        let key = (namespace.to_string(), pipeline.to_string());
        let removed = self.inner.series.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        for series in removed.into_iter().flatten() {
            self.remove(&series);
        }
    }

    /// Removes every series of a deleted namespace's pipelines.
    pub(crate) fn forget_namespace(&self, namespace: &str) {
        let removed: Vec<Series> = {
            let mut known = self.inner.series.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<(String, String)> = known.keys().filter(|(ns, _)| ns == namespace).cloned().collect();
            keys.iter().filter_map(|key| known.remove(key)).flatten().collect()
        };
        for series in &removed {
            self.remove(series);
        }
    }

    fn remove(&self, series: &Series) {
        let inner = &self.inner;
        match series {
            Series::Queued(labels) => inner.runs_queued.remove(labels),
            Series::Started(labels) => inner.runs_started.remove(labels),
            Series::Completed(labels) => inner.runs_completed.remove(labels),
            Series::RunDuration(labels) => inner.run_duration.remove(labels),
            Series::QueueWait(labels) => inner.queue_wait.remove(labels),
            Series::TaskDuration(labels) => inner.task_duration.remove(labels),
            Series::TasksRunning(labels) => inner.tasks_running.remove(labels),
            Series::Deployments(labels) => inner.deployments.remove(labels),
            Series::LogBytes(labels) => inner.log_bytes.remove(labels),
        };
    }

    pub(crate) fn run_queued(&self, run: &Run) {
        let labels = trigger_labels(run);
        self.inner.runs_queued.get_or_create(&labels).inc();
        self.note(&run.namespace_id, &run.pipeline_id, Series::Queued(labels));
    }

    pub(crate) fn run_started(&self, run: &Run) {
        let labels = trigger_labels(run);
        self.inner.runs_started.get_or_create(&labels).inc();
        self.note(&run.namespace_id, &run.pipeline_id, Series::Started(labels));
        let labels = pipeline_labels(&run.namespace_id, &run.pipeline_id);
        self.inner.queue_wait.get_or_create(&labels).observe(millis_between(run.created, run.started));
        self.note(&run.namespace_id, &run.pipeline_id, Series::QueueWait(labels));
    }

    pub(crate) fn run_completed(&self, run: &Run) {
        let TriggerLabels { namespace, pipeline, trigger } = trigger_labels(run);
        let status = run.status.to_string();
        if run.started > 0 {
            let labels =
                StatusLabels { namespace: namespace.clone(), pipeline: pipeline.clone(), status: status.clone() };
            self.inner.run_duration.get_or_create(&labels).observe(millis_between(run.started, run.ended));
            self.note(&run.namespace_id, &run.pipeline_id, Series::RunDuration(labels));
        }
        let labels = CompletedLabels { namespace, pipeline, trigger, status };
        self.inner.runs_completed.get_or_create(&labels).inc();
        self.note(&run.namespace_id, &run.pipeline_id, Series::Completed(labels));
    }

    /// Counts a task container as running until the guard is dropped.
    pub(crate) fn task_running(&self, execution: &TaskExecution) -> RunningTask {
        let labels = pipeline_labels(&execution.namespace_id, &execution.pipeline_id);
        let gauge = self.inner.tasks_running.get_or_create_owned(&labels);
        gauge.inc();
        self.note(&execution.namespace_id, &execution.pipeline_id, Series::TasksRunning(labels));
        RunningTask(gauge)
    }

    pub(crate) fn task_completed(&self, execution: &TaskExecution) {
        if execution.started == 0 {
            return;
        }
        let labels = StatusLabels {
            namespace: execution.namespace_id.clone(),
            pipeline: execution.pipeline_id.clone(),
            status: execution.status.to_string(),
        };
        self.inner.task_duration.get_or_create(&labels).observe(millis_between(execution.started, execution.ended));
        self.note(&execution.namespace_id, &execution.pipeline_id, Series::TaskDuration(labels));
    }

    /// The counter of a pipeline's log bytes, for a log writer to add to.
    pub(crate) fn log_bytes(&self, namespace: &str, pipeline: &str) -> Counter {
        let labels = pipeline_labels(namespace, pipeline);
        let counter = self.inner.log_bytes.get_or_create_owned(&labels);
        self.note(namespace, pipeline, Series::LogBytes(labels));
        counter
    }

    pub(crate) fn trigger_fired(&self, extension: &str, started: bool) {
        let family = if started { &self.inner.trigger_fires } else { &self.inner.trigger_failures };
        family.get_or_create(&ExtensionLabels { extension: extension.to_string() }).inc();
    }

    pub(crate) fn extension_restarted(&self, extension: &str) {
        self.inner.extension_restarts.get_or_create(&ExtensionLabels { extension: extension.to_string() }).inc();
    }

    pub(crate) fn scheduler_error(&self, error: &gofer_scheduler::Error) {
        let kind = match error {
            gofer_scheduler::Error::Image { .. } => "image",
            gofer_scheduler::Error::NoSuchContainer { .. } => "no_such_container",
            gofer_scheduler::Error::Engine { .. } => "engine",
            gofer_scheduler::Error::Unreachable { .. } => "unreachable",
            gofer_scheduler::Error::Unsupported { .. } => "unsupported",
        };
        self.inner.scheduler_errors.get_or_create(&KindLabels { kind }).inc();
    }

    pub(crate) fn deployment_ended(&self, namespace: &str, pipeline: &str, state: DeploymentState) {
        let labels = OutcomeLabels {
            namespace: namespace.to_string(),
            pipeline: pipeline.to_string(),
            outcome: state.to_string(),
        };
        self.inner.deployments.get_or_create(&labels).inc();
        self.note(namespace, pipeline, Series::Deployments(labels));
    }

    /// An HTTP request answered: its method, route template (`(no route)` when none matched), status and time.
    /// Methods other than the standard ones count as `other`: a client must not mint series.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        let method = if METHODS.contains(&method) { method } else { "other" };
        let (method, route) = (method.to_string(), route.to_string());
        let labels = RouteLabels { method: method.clone(), route: route.clone() };
        self.inner.http_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.inner.http_requests.get_or_create(&RequestLabels { method, route, status }).inc();
    }
}

impl gofer_storage::QueryObserver for Metrics {
    fn observe(&self, operation: gofer_storage::Operation, elapsed: Duration) {
        let labels = OperationLabels { operation: operation.as_str() };
        self.inner.storage_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }
}

/// A running task container, counted in `gofer_tasks_running` until dropped.
pub(crate) struct RunningTask(Gauge);

impl Drop for RunningTask {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn pipeline_labels(namespace: &str, pipeline: &str) -> PipelineLabels {
    PipelineLabels { namespace: namespace.to_string(), pipeline: pipeline.to_string() }
}

fn trigger_labels(run: &Run) -> TriggerLabels {
    TriggerLabels {
        namespace: run.namespace_id.clone(),
        pipeline: run.pipeline_id.clone(),
        trigger: trigger(&run.initiator),
    }
}

/// What started a run, as a label: `manual` for a person (or a token), the extension's id for a subscription
/// (`interval`, `cron`, `github`, …), else the initiator's kind (`system` for a deployment's own runs).
fn trigger(initiator: &Initiator) -> String {
    match initiator.kind.as_str() {
        "user" => "manual".into(),
        "extension" => initiator.name.clone(),
        other => other.to_string(),
    }
}

/// Seconds from one epoch-milliseconds time to a later one (0 when they are out of order).
fn millis_between(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_text_names_every_family_with_its_unit_and_suffix() {
        let metrics = Metrics::new(BuildInfo { version: "1.2.3", commit: "abc" });
        metrics.http_request("GET", "/api/namespaces/{namespace_id}", 200, Duration::from_millis(3));
        metrics.http_request("BREW", "(no route)", 405, Duration::from_millis(1));
        gofer_storage::QueryObserver::observe(&metrics, gofer_storage::Operation::Read, Duration::from_micros(80));
        let text = metrics.render(vec![("default".into(), "p\"q".into(), 2)]);
        assert!(text.contains("gofer_build_info{version=\"1.2.3\",commit=\"abc\"} 1"), "{text}");
        assert!(
            text.contains(
                "gofer_http_requests_total{method=\"GET\",route=\"/api/namespaces/{namespace_id}\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE gofer_http_request_duration_seconds histogram"), "{text}");
        assert!(text.contains("gofer_http_requests_total{method=\"other\",route=\"(no route)\",status=\"405\"} 1"));
        assert!(!text.contains("BREW"), "{text}");
        assert!(text.contains("gofer_storage_query_duration_seconds_count{operation=\"read\"} 1"), "{text}");
        // Label values are escaped.
        assert!(text.contains("gofer_runs_waiting{namespace=\"default\",pipeline=\"p\\\"q\"} 2"), "{text}");
        // The queue depth is what the queue says at each scrape, not what it said before.
        let text = metrics.render(Vec::new());
        assert!(!text.contains("gofer_runs_waiting{"), "{text}");
    }

    #[test]
    fn docs_list_exactly_the_registered_families() {
        let metrics = Metrics::default();
        let run = Run {
            namespace_id: "ns".into(),
            pipeline_id: "p".into(),
            run_id: 1,
            version: 1,
            state: gofer_api::models::RunState::Complete,
            status: gofer_api::models::RunStatus::Successful,
            status_reason: None,
            created: 1,
            started: 2,
            ended: 3,
            initiator: Initiator { kind: "user".into(), name: "u".into() },
            variables: Vec::new(),
            routing: None,
        };
        metrics.run_queued(&run);
        metrics.run_started(&run);
        metrics.run_completed(&run);
        let execution: TaskExecution = serde_json::from_value(serde_json::json!({
            "namespace_id": "ns", "pipeline_id": "p", "run_id": 1, "task_id": "t", "created": 1, "started": 2,
            "ended": 3, "state": "complete", "status": "successful", "status_reason": null, "exit_code": 0,
            "image_digest": null, "container_id": null, "variables": [], "attempt": 1, "attempts": [],
            "logs_expired": false, "task": { "id": "t", "image": "i" }
        }))
        .unwrap();
        drop(metrics.task_running(&execution));
        metrics.task_completed(&execution);
        metrics.log_bytes("ns", "p").inc();
        metrics.trigger_fired("interval", true);
        metrics.trigger_fired("interval", false);
        metrics.extension_restarted("x");
        metrics.scheduler_error(&gofer_scheduler::Error::Unreachable {
            endpoint: "e".into(),
            hint: "start it".into(),
            source: gofer_scheduler::Error::cause("down"),
        });
        metrics.deployment_ended("ns", "p", DeploymentState::Promoted);
        metrics.http_request("GET", "/", 200, Duration::from_millis(1));
        gofer_storage::QueryObserver::observe(&metrics, gofer_storage::Operation::Write, Duration::from_millis(1));
        let text = metrics.render(vec![("ns".into(), "p".into(), 1)]);
        let registered: std::collections::BTreeSet<&str> =
            text.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split_whitespace().next()).collect();
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md")).unwrap();
        let documented: std::collections::BTreeSet<&str> =
            docs.lines().filter_map(|line| line.strip_prefix("| `")?.split('`').next()).collect();
        assert_eq!(registered, documented, "docs/metrics.md lists exactly the metrics Gofer registers");
    }

    #[test]
    fn a_deleted_pipeline_takes_its_series_with_it() {
        let metrics = Metrics::default();
        for (namespace, pipeline) in [("a", "gone"), ("a", "kept"), ("b", "other")] {
            metrics.deployment_ended(namespace, pipeline, DeploymentState::Promoted);
            metrics.log_bytes(namespace, pipeline).inc_by(3);
        }
        metrics.forget_pipeline("a", "gone");
        let text = metrics.render(Vec::new());
        assert!(!text.contains("pipeline=\"gone\""), "{text}");
        assert!(text.contains("pipeline=\"kept\"") && text.contains("pipeline=\"other\""), "{text}");
        metrics.forget_namespace("a");
        let text = metrics.render(Vec::new());
        assert!(!text.contains("namespace=\"a\"") && text.contains("pipeline=\"other\""), "{text}");
    }

    #[test]
    fn triggers_are_named_by_who_started_the_run() {
        let by = |kind: &str, name: &str| trigger(&Initiator { kind: kind.into(), name: name.into() });
        assert_eq!(by("user", "alice"), "manual");
        assert_eq!(by("extension", "interval"), "interval");
        assert_eq!(by("system", "deployments"), "system");
    }
}
