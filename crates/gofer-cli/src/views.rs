//! How each resource looks to people: one [`Show`] implementation per shape, so every command renders through
//! [`crate::output::print`] (a table or fields for people, the value itself as JSON for scripts).

use std::collections::BTreeSet;

use gofer_api::config::Strategy;
use gofer_api::models::{
    Deployment, Event, EventKind, Extension, Namespace, ObjectInfo, Pipeline, PipelineConfig, Run, RunCounts, Secret,
    StatusReason, Subscription, SystemSettings, TaskExecution, TaskState,
};
use gofer_api::permissions::{Role, Token};
use gofer_api::requests::CreatedToken;
use serde::Serialize;

use crate::output::{View, ago, took};

/// A value people read as fields or a table; `--output json` prints the value itself.
pub trait Show: Serialize {
    fn view(&self) -> View;
}

fn switch(enabled: bool) -> String {
    if enabled { "enabled" } else { "disabled" }.into()
}

fn reason(reason: &Option<StatusReason>) -> Option<String> {
    reason.as_ref().map(|r| format!("{}: {}", r.reason, r.description))
}

impl Show for Extension {
    fn view(&self) -> View {
        let mut fields = vec![
            ("extension", self.id.clone()),
            ("kind", self.kind.to_string()),
            ("switch", switch(self.enabled)),
            ("state", self.state.to_string()),
            ("about", self.documentation.clone()),
        ];
        if let Some(image) = &self.image {
            fields.insert(2, ("image", image.clone()));
        }
        if self.restarts > 0 {
            fields.push(("restarts", self.restarts.to_string()));
        }
        if let Some(problem) = &self.problem {
            fields.push(("last problem", problem.clone()));
        }
        for (label, params) in [("install setting", &self.config_params), ("setting", &self.subscription_params)] {
            for param in params {
                let required = if param.required { "required" } else { "optional" };
                fields.push((label, format!("{} ({required}): {}", param.key, param.documentation)));
            }
        }
        View::Fields(fields)
    }
}

impl Show for Vec<Extension> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|e| {
                let image = e.image.clone().unwrap_or_else(|| "-".into());
                vec![e.id.clone(), e.kind.to_string(), switch(e.enabled), e.state.to_string(), image]
            })
            .collect();
        View::table(&["ID", "KIND", "SWITCH", "STATE", "IMAGE"], rows)
    }
}

fn token_fields(token: &Token) -> Vec<(&'static str, String)> {
    vec![
        ("token", token.id.clone()),
        ("user", token.user.clone()),
        ("roles", token.roles.join(", ")),
        ("created", ago(token.created)),
        ("expires", if token.expires == 0 { "never".into() } else { ago(token.expires) }),
        ("state", switch(!token.disabled)),
    ]
}

impl Show for Token {
    fn view(&self) -> View {
        View::Fields(token_fields(self))
    }
}

impl Show for CreatedToken {
    fn view(&self) -> View {
        let mut fields = token_fields(&self.token);
        fields.push(("secret", self.secret.clone()));
        View::Fields(fields)
    }
}

impl Show for Vec<Token> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|t| vec![t.id.clone(), t.user.clone(), t.roles.join(","), switch(!t.disabled), ago(t.created)])
            .collect();
        View::table(&["ID", "USER", "ROLES", "STATE", "CREATED"], rows)
    }
}

impl Show for Role {
    fn view(&self) -> View {
        let mut fields = vec![("role", self.id.clone()), ("about", self.description.clone())];
        for grant in &self.grants {
            let resources = if grant.resources.is_empty() {
                "everything".to_string()
            } else {
                grant.resources.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
            };
            let actions: Vec<&str> = grant.actions.iter().map(|a| a.as_str()).collect();
            fields.push((
                "grant",
                format!(
                    "{} on {resources} in namespaces {} pipelines {}",
                    actions.join(","),
                    grant.namespaces.join(","),
                    grant.pipelines.join(",")
                ),
            ));
        }
        View::Fields(fields)
    }
}

impl Show for Vec<Role> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|r| {
                vec![r.id.clone(), if r.system_role { "built in" } else { "custom" }.into(), r.description.clone()]
            })
            .collect();
        View::table(&["ID", "KIND", "DESCRIPTION"], rows)
    }
}

impl Show for ObjectInfo {
    fn view(&self) -> View {
        View::Fields(vec![("key", self.key.clone()), ("size", self.size.to_string())])
    }
}

impl Show for Vec<ObjectInfo> {
    fn view(&self) -> View {
        let rows = self.iter().map(|o| vec![o.key.clone(), o.size.to_string(), ago(o.modified)]).collect();
        View::table(&["KEY", "SIZE", "MODIFIED"], rows)
    }
}

/// A secret with the pipeline it belongs to (none for a global secret); JSON is the secret alone.
pub struct ScopedSecret {
    pub pipeline: Option<String>,
    pub secret: Secret,
}

impl Serialize for ScopedSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.secret.serialize(serializer)
    }
}

impl Show for ScopedSecret {
    fn view(&self) -> View {
        let secret = &self.secret;
        let mut fields = vec![("key", secret.key.clone())];
        if let Some(pipeline) = &self.pipeline {
            fields.push(("pipeline", pipeline.clone()));
        }
        if !secret.namespaces.is_empty() {
            fields.push(("namespaces", secret.namespaces.join(", ")));
        }
        fields.push(("created", ago(secret.created)));
        fields.push(("modified", ago(secret.modified)));
        if let Some(value) = &secret.value {
            fields.push(("value", value.clone()));
        }
        View::Fields(fields)
    }
}

impl Show for Vec<Secret> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|s| vec![s.key.clone(), s.namespaces.join(", "), ago(s.created), ago(s.modified)])
            .collect();
        View::table(&["KEY", "NAMESPACES", "CREATED", "MODIFIED"], rows)
    }
}

impl Show for Namespace {
    fn view(&self) -> View {
        View::Fields(vec![
            ("namespace", self.id.clone()),
            ("name", self.name.clone()),
            ("description", self.description.clone()),
            ("created", ago(self.created)),
        ])
    }
}

impl Show for Vec<Namespace> {
    fn view(&self) -> View {
        let rows =
            self.iter().map(|n| vec![n.id.clone(), n.name.clone(), n.description.clone(), ago(n.created)]).collect();
        View::table(&["ID", "NAME", "DESCRIPTION", "CREATED"], rows)
    }
}

impl Show for SystemSettings {
    fn view(&self) -> View {
        View::Fields(vec![("maintenance", self.maintenance.to_string())])
    }
}

impl Show for gofer_api::requests::ListServersResponse {
    fn view(&self) -> View {
        let rows = self
            .servers
            .iter()
            .map(|server| {
                let runs: Vec<String> =
                    server.runs.iter().map(|r| format!("{}/{}#{}", r.namespace_id, r.pipeline_id, r.run_id)).collect();
                vec![
                    format!(
                        "{}{}{}",
                        server.id,
                        if server.this { " (this)" } else { "" },
                        if server.leading { " (leads)" } else { "" }
                    ),
                    server.address.clone(),
                    server.version.clone(),
                    format!("{}{}", ago(server.heartbeat), if server.alive { "" } else { " (stopped)" }),
                    ago(server.started),
                    if runs.is_empty() { "-".into() } else { runs.join(" ") },
                ]
            })
            .collect();
        View::table(&["SERVER", "ADDRESS", "VERSION", "HEARTBEAT", "STARTED", "RUNS"], rows)
    }
}

impl Show for PipelineConfig {
    fn view(&self) -> View {
        let config = &self.config;
        let mut fields = vec![
            ("pipeline", self.pipeline_id.clone()),
            ("version", self.version.to_string()),
            ("state", self.state.to_string()),
            ("registered", ago(self.registered)),
            ("hash", self.hash.clone()),
            ("name", config.name.clone()),
        ];
        if let Some(description) = &config.description {
            fields.push(("description", description.clone()));
        }
        if config.parallelism > 0 {
            fields.push(("parallelism", config.parallelism.to_string()));
        }
        if let Some(timeout) = config.timeout_seconds {
            fields.push(("run timeout", format!("{timeout}s")));
        }
        if let Some(strategy) = &config.deploy_strategy {
            fields.push(("deploy strategy", describe_strategy(strategy)));
        }
        for s in &config.subscriptions {
            fields.push(("subscription", format!("{}/{}", s.extension, s.label)));
        }
        let tasks = config
            .tasks
            .iter()
            .map(|t| {
                let after: Vec<String> = t.depends_on.iter().map(|(p, status)| format!("{p} ({status:?})")).collect();
                let variables: Vec<&str> = t.variables.keys().map(String::as_str).collect();
                vec![
                    t.id.clone(),
                    t.image.clone(),
                    if after.is_empty() { "-".into() } else { after.join(", ").to_lowercase() },
                    if variables.is_empty() { "-".into() } else { variables.join(", ") },
                ]
            })
            .collect();
        View::Stacked(vec![View::Fields(fields), View::table(&["TASK", "IMAGE", "AFTER", "VARIABLES"], tasks)])
    }
}

impl Show for Vec<PipelineConfig> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|c| {
                // The state says which is live and which is the candidate of the deployment in progress.
                vec![
                    c.version.to_string(),
                    c.state.to_string(),
                    ago(c.registered),
                    c.hash.chars().take(12).collect(),
                    c.config.tasks.len().to_string(),
                    c.config
                        .tasks
                        .iter()
                        .map(|t| t.image.as_str())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        View::table(&["VERSION", "STATE", "REGISTERED", "HASH", "TASKS", "IMAGES"], rows)
    }
}

/// `gofer pipeline config diff`: one line per change.
#[derive(Serialize)]
pub struct ConfigDiff {
    pub pipeline: String,
    pub from: u64,
    pub to: u64,
    pub changes: Vec<String>,
}

impl Show for ConfigDiff {
    fn view(&self) -> View {
        let mut text = format!("pipeline '{}': version {} → {}\n", self.pipeline, self.from, self.to);
        if self.changes.is_empty() {
            text.push_str("  no changes\n");
        }
        for change in &self.changes {
            text.push_str(&format!("  {change}\n"));
        }
        View::Text(text)
    }
}

fn describe_strategy(strategy: &Strategy) -> String {
    match strategy {
        Strategy::Immediate => "immediate".into(),
        Strategy::BlueGreen(b) => format!("blue-green, {} verification run(s)", b.verify_runs),
        Strategy::Canary(c) => {
            let weights: Vec<String> = c.steps.iter().map(|w| format!("{w} %")).collect();
            let mut text = format!(
                "canary {}, judged after {} run(s) per stage, success ≥ {} %",
                weights.join(" → "),
                c.min_runs,
                c.threshold_basis_points() as f64 / 100.0
            );
            if c.bake_seconds > 0 {
                text.push_str(&format!(", each stage at least {}s", c.bake_seconds));
            }
            text
        }
    }
}

/// Runs of one version summed over stages.
fn version_counts(counts: &[RunCounts], version: u64) -> RunCounts {
    counts.iter().filter(|c| c.version == version).fold(RunCounts { version, ..Default::default() }, |mut sum, c| {
        sum.started += c.started;
        sum.successful += c.successful;
        sum.failed += c.failed;
        sum.cancelled += c.cancelled;
        sum
    })
}

fn describe_counts(c: &RunCounts) -> String {
    let done = c.successful + c.failed;
    let rate = if done == 0 { "-".into() } else { format!("{:.1} %", c.successful as f64 * 100.0 / done as f64) };
    let in_flight = c.started.saturating_sub(c.successful + c.failed + c.cancelled);
    format!(
        "{} run(s): {} successful, {} failed, {} cancelled, {in_flight} in flight; success rate {rate}",
        c.started, c.successful, c.failed, c.cancelled
    )
}

impl Show for Deployment {
    fn view(&self) -> View {
        let from = self.from_version.map_or("none".into(), |v| v.to_string());
        let mut fields = vec![
            ("pipeline", self.pipeline_id.clone()),
            ("deployment", self.deployment_id.to_string()),
            ("versions", format!("{from} → {}", self.to_version)),
            ("strategy", describe_strategy(&self.strategy)),
            ("state", self.state.to_string()),
            ("reason", self.reason.clone()),
            ("started", format!("{} by {}", ago(self.started), self.initiator.name)),
        ];
        if self.ended > 0 {
            fields.push(("took", took(self.started, self.ended)));
        }
        if let Strategy::Canary(canary) = &self.strategy
            && self.is_running()
        {
            let weight = canary.steps.get(self.stage as usize).copied().unwrap_or(100);
            fields.push(("stage", format!("{} of {} ({weight} %)", self.stage + 1, canary.steps.len())));
        }
        if let Some(from) = self.from_version.filter(|v| *v != self.to_version) {
            fields.push(("live version", format!("{from}: {}", describe_counts(&version_counts(&self.counts, from)))));
        }
        let candidate = version_counts(&self.counts, self.to_version);
        fields.push(("candidate", format!("{}: {}", self.to_version, describe_counts(&candidate))));
        let mut views = vec![View::Fields(fields)];
        if self.counts.iter().any(|c| c.stage > 0) {
            let rows = self
                .counts
                .iter()
                .map(|c| {
                    vec![
                        (c.stage + 1).to_string(),
                        c.version.to_string(),
                        c.started.to_string(),
                        c.successful.to_string(),
                        c.failed.to_string(),
                        c.cancelled.to_string(),
                    ]
                })
                .collect();
            views.push(View::table(&["STAGE", "VERSION", "RUNS", "SUCCESSFUL", "FAILED", "CANCELLED"], rows));
        }
        // The timeline in full: each entry is the reason that decided a step, and tables cut long cells.
        let mut timeline = String::from("TIMELINE\n");
        for step in &self.timeline {
            timeline.push_str(&format!("{:>10}  {}\n", ago(step.at), step.message));
        }
        views.push(View::Text(timeline));
        View::Stacked(views)
    }
}

impl Show for Vec<Deployment> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|d| {
                let candidate = version_counts(&d.counts, d.to_version);
                vec![
                    d.deployment_id.to_string(),
                    format!("{} → {}", d.from_version.map_or("-".into(), |v| v.to_string()), d.to_version),
                    d.strategy.name().into(),
                    d.state.to_string(),
                    format!("{}/{}", candidate.successful, candidate.successful + candidate.failed),
                    ago(d.started),
                    d.reason.chars().take(80).collect(),
                ]
            })
            .collect();
        View::table(&["ID", "VERSIONS", "STRATEGY", "STATE", "CANDIDATE OK", "STARTED", "REASON"], rows)
    }
}

impl Show for Pipeline {
    fn view(&self) -> View {
        View::Fields(vec![
            ("pipeline", self.pipeline_id.clone()),
            ("name", self.name.clone()),
            ("description", self.description.clone().unwrap_or_default()),
            ("state", self.state.to_string()),
            ("live version", self.live_version.map_or("none".into(), |v| v.to_string())),
            ("latest version", self.latest_version.to_string()),
            (
                "deployment",
                self.running_deployment.map_or("none running".into(), |d| {
                    format!("{d} running (gofer deployment get {} {d})", self.pipeline_id)
                }),
            ),
            ("created", ago(self.created)),
        ])
    }
}

impl Show for Vec<Pipeline> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|p| {
                let live = p.live_version.map_or("-".into(), |v| v.to_string());
                vec![p.pipeline_id.clone(), p.name.clone(), p.state.to_string(), live, ago(p.created)]
            })
            .collect();
        View::table(&["ID", "NAME", "STATE", "LIVE VERSION", "CREATED"], rows)
    }
}

impl Show for Vec<Subscription> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|s| {
                let settings: Vec<String> = s.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                vec![s.extension_id.clone(), s.label.clone(), settings.join(" "), switch(s.enabled), ago(s.last_fired)]
            })
            .collect();
        View::table(&["EXTENSION", "LABEL", "SETTINGS", "STATE", "LAST FIRED"], rows)
    }
}

impl Show for Subscription {
    fn view(&self) -> View {
        vec![self.clone()].view()
    }
}

impl Show for Run {
    fn view(&self) -> View {
        let mut fields = vec![
            ("pipeline", self.pipeline_id.clone()),
            ("run", self.run_id.to_string()),
            ("version", self.version.to_string()),
            ("state", self.state.to_string()),
            ("status", self.status.to_string()),
            ("started", ago(self.started)),
            ("took", took(self.started, self.ended)),
        ];
        if let Some(reason) = reason(&self.status_reason) {
            fields.push(("reason", reason));
        }
        if let Some(routing) = &self.routing {
            fields.push(("routed by", format!("deployment {}: {}", routing.deployment_id, routing.reason)));
        }
        View::Fields(fields)
    }
}

impl Show for Vec<Run> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|r| {
                vec![
                    r.run_id.to_string(),
                    r.state.to_string(),
                    r.status.to_string(),
                    ago(r.created),
                    took(r.started, r.ended),
                    r.version.to_string(),
                ]
            })
            .collect();
        View::table(&["RUN", "STATE", "STATUS", "CREATED", "TOOK", "VERSION"], rows)
    }
}

/// A run with its tasks, as `run get` shows it; JSON is the run alone.
pub struct RunWithTasks {
    pub run: Run,
    pub tasks: Vec<TaskExecution>,
}

impl Serialize for RunWithTasks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.run.serialize(serializer)
    }
}

impl Show for RunWithTasks {
    fn view(&self) -> View {
        View::Stacked(vec![self.run.view(), self.tasks.view()])
    }
}

impl Show for Vec<TaskExecution> {
    fn view(&self) -> View {
        let rows = self
            .iter()
            .map(|t| {
                vec![
                    t.task_id.clone(),
                    t.state.to_string(),
                    t.status.to_string(),
                    t.exit_code.map_or("-".into(), |c| c.to_string()),
                    took(t.started, t.ended),
                    reason(&t.status_reason).unwrap_or_default(),
                ]
            })
            .collect();
        View::table(&["TASK", "STATE", "STATUS", "EXIT", "TOOK", "REASON"], rows)
    }
}

impl Show for TaskExecution {
    fn view(&self) -> View {
        let mut fields = vec![
            ("task", self.task_id.clone()),
            ("image", self.task.image.clone()),
            ("image digest", self.image_digest.clone().unwrap_or_else(|| "-".into())),
            ("state", self.state.to_string()),
            ("status", self.status.to_string()),
            ("exit code", self.exit_code.map_or("-".into(), |c| c.to_string())),
            ("started", ago(self.started)),
            ("took", took(self.started, self.ended)),
        ];
        if let Some(reason) = reason(&self.status_reason) {
            fields.push(("reason", reason));
        }
        for (parent, needs) in &self.task.depends_on {
            fields.push(("depends on", format!("{parent} ({needs:?})")));
        }
        for variable in &self.variables {
            fields.push(("variable", format!("{}={} ({})", variable.key, variable.value, variable.source)));
        }
        View::Fields(fields)
    }
}

/// A run's events in order, shown with the time since the first one.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Timeline(pub Vec<Event>);

impl Show for Timeline {
    fn view(&self) -> View {
        let start = self.0.first().map_or(0, |e| e.emitted);
        let rows = self
            .0
            .iter()
            .map(|event| {
                let offset = format!("+{}ms", event.emitted.saturating_sub(start));
                let (subject, what) = describe_event(&event.kind);
                vec![offset, subject, what]
            })
            .collect();
        View::table(&["AT", "SUBJECT", "CHANGE"], rows)
    }
}

/// What an event is about and what changed, in words.
pub fn describe_event(kind: &EventKind) -> (String, String) {
    use EventKind as K;
    let why =
        |r: &Option<StatusReason>| r.as_ref().map_or(String::new(), |r| format!(" ({}: {})", r.reason, r.description));
    match kind {
        K::RunQueued { .. } => ("run".into(), "queued".into()),
        K::RunStarted { .. } => ("run".into(), "started".into()),
        K::RunCancelRequested { task_id, .. } => match task_id {
            Some(task) => (format!("task {task}"), "cancel requested".into()),
            None => ("run".into(), "cancel requested".into()),
        },
        K::RunCompleted { status, status_reason, .. } => {
            ("run".into(), format!("complete: {status}{}", why(status_reason)))
        }
        K::TaskChanged { task_id, attempt, state, status, status_reason, exit_code, .. } => {
            let attempt = if *attempt > 1 { format!(" attempt {attempt}") } else { String::new() };
            let change = match state {
                TaskState::Complete => {
                    let exit = exit_code.map_or(String::new(), |c| format!(", exit {c}"));
                    format!("complete: {status}{exit}{}", why(status_reason))
                }
                other => other.to_string(),
            };
            (format!("task {task_id}{attempt}"), change)
        }
        K::TaskExecStarted { task_id, command, by, .. } => {
            (format!("task {task_id}"), format!("exec by {by}: {}", command.join(" ")))
        }
        other => ("-".into(), serde_json::to_string(other).unwrap_or_default()),
    }
}
