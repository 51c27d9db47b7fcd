//! `gofer pipeline config`: a pipeline's registered versions — list, show, compare, deploy, delete — and the
//! readable diff `pipeline deploy` prints against the live version.

use std::collections::{BTreeMap, BTreeSet};

use gofer_api::config::{self, RequiredParentStatus};
use gofer_api::models::PipelineConfig;

use crate::ConfigCommand;
use crate::client::Client;
use crate::output::{self, Format};
use crate::views::ConfigDiff;

fn edge(status: RequiredParentStatus) -> &'static str {
    match status {
        RequiredParentStatus::Success => "success",
        RequiredParentStatus::Failure => "failure",
        RequiredParentStatus::Any | RequiredParentStatus::Unknown => "any",
    }
}

fn names_changed(what: &str, old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, value) in new {
        match old.get(key) {
            None => lines.push(format!("+ {what} {key}")),
            Some(before) if before != value => lines.push(format!("~ {what} {key} (value changed)")),
            Some(_) => {}
        }
    }
    lines.extend(old.keys().filter(|k| !new.contains_key(*k)).map(|k| format!("- {what} {k}")));
    lines
}

fn task_changes(old: &config::Task, new: &config::Task) -> Vec<String> {
    let mut lines = Vec::new();
    if old.image != new.image {
        lines.push(format!("~ image {} → {}", old.image, new.image));
    }
    for (parent, status) in &new.depends_on {
        match old.depends_on.get(parent) {
            None => lines.push(format!("+ edge {parent} → {} ({})", new.id, edge(*status))),
            Some(before) if edge(*before) != edge(*status) => {
                lines.push(format!("~ edge {parent} → {} ({} → {})", new.id, edge(*before), edge(*status)));
            }
            Some(_) => {}
        }
    }
    for (parent, status) in &old.depends_on {
        if !new.depends_on.contains_key(parent) {
            lines.push(format!("- edge {parent} → {} ({})", new.id, edge(*status)));
        }
    }
    lines.extend(names_changed("variable", &old.variables, &new.variables));
    if old.command != new.command {
        lines.push("~ command".into());
    }
    if old.entrypoint != new.entrypoint {
        lines.push("~ entrypoint".into());
    }
    if old.timeout_seconds != new.timeout_seconds {
        let show = |t: Option<u64>| t.map_or("none".into(), |s| format!("{s}s"));
        lines.push(format!("~ timeout {} → {}", show(old.timeout_seconds), show(new.timeout_seconds)));
    }
    if old.retries != new.retries {
        lines.push(format!("~ retries {} → {}", old.retries, new.retries));
    }
    if old.registry_auth != new.registry_auth {
        lines.push("~ registry credentials".into());
    }
    if old.inject_api_token != new.inject_api_token {
        lines.push(format!("~ inject_api_token {} → {}", old.inject_api_token, new.inject_api_token));
    }
    if old.always_pull_newest_image != new.always_pull_newest_image {
        lines.push(format!(
            "~ always_pull_newest_image {} → {}",
            old.always_pull_newest_image, new.always_pull_newest_image
        ));
    }
    if old.description != new.description {
        lines.push("~ description".into());
    }
    lines.extend(resource_changes(old, new));
    lines
}

/// Changed limits, working dir, user and volumes.
fn resource_changes(old: &config::Task, new: &config::Task) -> Vec<String> {
    let mut lines = Vec::new();
    let none = || "none".to_string();
    if old.cpu_millicores != new.cpu_millicores {
        let show = |m: Option<u32>| m.map_or_else(none, |m| format!("{} cores", f64::from(m) / 1000.0));
        lines.push(format!("~ cpu {} → {}", show(old.cpu_millicores), show(new.cpu_millicores)));
    }
    if old.memory_bytes != new.memory_bytes {
        let show = |b: Option<u64>| b.map_or_else(none, |b| format!("{b} bytes"));
        lines.push(format!("~ memory {} → {}", show(old.memory_bytes), show(new.memory_bytes)));
    }
    for (field, before, after) in [("working_dir", &old.working_dir, &new.working_dir), ("user", &old.user, &new.user)]
    {
        if before != after {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(none);
            lines.push(format!("~ {field} {} → {}", show(before), show(after)));
        }
    }
    let mounts = |t: &config::Task| -> Vec<String> {
        t.volumes
            .iter()
            .map(|v| format!("{} at {}{}", v.name, v.path, if v.read_only { " (read-only)" } else { "" }))
            .collect()
    };
    let (before, after) = (mounts(old), mounts(new));
    lines.extend(after.iter().filter(|m| !before.contains(m)).map(|m| format!("+ volume {m}")));
    lines.extend(before.iter().filter(|m| !after.contains(m)).map(|m| format!("- volume {m}")));
    lines
}

/// What changed from `old` to `new`, one line per change (`+` added, `-` removed, `~` changed). Variables and
/// registry credentials are named, never shown: their values may be secret.
pub(super) fn diff(old: &config::Pipeline, new: &config::Pipeline) -> Vec<String> {
    let mut lines = Vec::new();
    if old.name != new.name {
        lines.push(format!("~ name '{}' → '{}'", old.name, new.name));
    }
    if old.description != new.description {
        lines.push("~ description".into());
    }
    if old.parallelism != new.parallelism {
        lines.push(format!("~ parallelism {} → {}", old.parallelism, new.parallelism));
    }
    if old.timeout_seconds != new.timeout_seconds {
        let show = |t: Option<u64>| t.map_or("none".into(), |s| format!("{s}s"));
        lines.push(format!("~ run timeout {} → {}", show(old.timeout_seconds), show(new.timeout_seconds)));
    }
    if old.deploy_strategy != new.deploy_strategy {
        let show = |s: &Option<config::Strategy>| s.as_ref().map_or("none", |s| s.name());
        lines.push(format!("~ deploy strategy {} → {}", show(&old.deploy_strategy), show(&new.deploy_strategy)));
    }
    let subscriptions = |c: &config::Pipeline| -> BTreeMap<String, BTreeMap<String, String>> {
        c.subscriptions.iter().map(|s| (format!("{}/{}", s.extension, s.label), s.settings.clone())).collect()
    };
    let (old_subs, new_subs) = (subscriptions(old), subscriptions(new));
    for (key, settings) in &new_subs {
        match old_subs.get(key) {
            None => lines.push(format!("+ subscription {key}")),
            Some(before) if before != settings => lines.push(format!("~ subscription {key} (settings changed)")),
            Some(_) => {}
        }
    }
    lines.extend(old_subs.keys().filter(|k| !new_subs.contains_key(*k)).map(|k| format!("- subscription {k}")));
    let old_tasks: BTreeMap<&str, &config::Task> = old.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let new_ids: BTreeSet<&str> = new.tasks.iter().map(|t| t.id.as_str()).collect();
    for task in &new.tasks {
        match old_tasks.get(task.id.as_str()) {
            None => {
                lines.push(format!("+ task {} ({})", task.id, task.image));
                for (parent, status) in &task.depends_on {
                    lines.push(format!("  + edge {parent} → {} ({})", task.id, edge(*status)));
                }
            }
            Some(before) => {
                let changes = task_changes(before, task);
                if !changes.is_empty() {
                    lines.push(format!("~ task {}", task.id));
                    lines.extend(changes.into_iter().map(|c| format!("  {c}")));
                }
            }
        }
    }
    for task in &old.tasks {
        if !new_ids.contains(task.id.as_str()) {
            lines.push(format!("- task {} ({})", task.id, task.image));
        }
    }
    lines
}

pub(super) async fn command(client: &Client, format: Format, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::List { pipeline, limit, offset } => {
            let list = client.list_configs(&pipeline, limit, offset).await?;
            output::print(format, &list.configs)?;
            if let (Format::Table, Some(next)) = (format, list.next_offset) {
                eprintln!("more versions: --offset {next}");
            }
            Ok(())
        }
        ConfigCommand::Get { pipeline, version } => {
            output::print(format, &client.get_config(&pipeline, version).await?)
        }
        ConfigCommand::Diff { pipeline, v1, v2 } => {
            let (old, new): (PipelineConfig, PipelineConfig) =
                (client.get_config(&pipeline, v1).await?, client.get_config(&pipeline, v2).await?);
            let lines = diff(&old.config, &new.config);
            output::print(format, &ConfigDiff { pipeline, from: v1, to: v2, changes: lines })
        }
        ConfigCommand::Deploy { pipeline, version, strategy } => {
            let deployment = client.deploy_config(&pipeline, version, &strategy.request()?).await?;
            super::deployment::started(format, &deployment)
        }
        ConfigCommand::Delete { pipeline, version } => {
            client.delete_config(&pipeline, version).await?;
            eprintln!("deleted version {version} of pipeline '{pipeline}'");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_resources_are_listed() {
        let old = config::Task::new("t", "busybox").cpu(0.5).volume("cache", "/cache").user("1000");
        let new = config::Task::new("t", "busybox")
            .cpu(2.0)
            .memory(64 * config::MIB)
            .working_dir("/src")
            .read_only_volume("cache", "/cache");
        assert_eq!(
            resource_changes(&old, &new),
            [
                "~ cpu 0.5 cores → 2 cores",
                "~ memory none → 67108864 bytes",
                "~ working_dir none → /src",
                "~ user 1000 → none",
                "+ volume cache at /cache (read-only)",
                "- volume cache at /cache",
            ]
        );
        assert!(resource_changes(&old, &old).is_empty());
    }
}
