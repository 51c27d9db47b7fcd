//! The rules of a run's DAG, as pure functions: when a task may start, when it is skipped, and how a run's
//! status follows from its tasks. The orchestrator applies them; tests pin them down without containers.

use std::collections::HashMap;

use gofer_api::config::{RequiredParentStatus, Task};
use gofer_api::models::{RunStatus, StatusReason, StatusReasonKind, TaskStatus};

/// What to do with a task that has not started yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some parent has not finished.
    Wait,
    /// Every parent ended the way this task needs.
    Run,
    /// Some parent ended in a way that rules this task out; the description says which.
    Skip { description: String },
}

fn satisfied(required: RequiredParentStatus, parent: TaskStatus) -> bool {
    match required {
        RequiredParentStatus::Success => parent == TaskStatus::Successful,
        RequiredParentStatus::Failure => parent == TaskStatus::Failed,
        RequiredParentStatus::Any | RequiredParentStatus::Unknown => true,
    }
}

fn needs(required: RequiredParentStatus) -> &'static str {
    match required {
        RequiredParentStatus::Success => "to succeed",
        RequiredParentStatus::Failure => "to fail",
        RequiredParentStatus::Any | RequiredParentStatus::Unknown => "to finish",
    }
}

/// Decides whether `task` can run, given the final statuses of the tasks that finished so far.
pub fn decide(task: &Task, finished: &HashMap<String, TaskStatus>) -> Decision {
    let mut unmet = Vec::new();
    for (parent, required) in &task.depends_on {
        let Some(status) = finished.get(parent) else {
            return Decision::Wait;
        };
        if !satisfied(*required, *status) {
            unmet.push(format!("task '{parent}' ended {status} but this task needs it {}", needs(*required)));
        }
    }
    if unmet.is_empty() { Decision::Run } else { Decision::Skip { description: unmet.join("; ") } }
}

/// The final status of a run from its tasks' final statuses: cancelled if any task was cancelled, failed if any
/// failed, successful otherwise (skipped tasks do not fail a run: skipping is the DAG working as written).
pub fn run_outcome(tasks: &HashMap<String, (TaskStatus, Option<StatusReason>)>) -> (RunStatus, Option<StatusReason>) {
    let mut ids: Vec<&String> = tasks.keys().collect();
    ids.sort();
    let with = |wanted: TaskStatus| ids.iter().copied().filter(move |id| tasks[*id].0 == wanted);
    let cancelled: Vec<&String> = with(TaskStatus::Cancelled).collect();
    if !cancelled.is_empty() {
        let reason = tasks[cancelled[0]].1.as_ref().map_or(StatusReasonKind::UserCancelled, |r| r.reason);
        return (
            RunStatus::Cancelled,
            Some(StatusReason { reason, description: format!("cancelled tasks: {}", join(&cancelled)) }),
        );
    }
    let failed: Vec<&String> = with(TaskStatus::Failed).collect();
    if let Some(first) = failed.first() {
        let reason = tasks[*first].1.as_ref().map_or(StatusReasonKind::AbnormalExit, |r| r.reason);
        return (
            RunStatus::Failed,
            Some(StatusReason { reason, description: format!("failed tasks: {}", join(&failed)) }),
        );
    }
    (RunStatus::Successful, None)
}

fn join(ids: &[&String]) -> String {
    ids.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(deps: &[(&str, RequiredParentStatus)]) -> Task {
        Task::new("child", "img").depends_on_many(deps.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    fn finished(entries: &[(&str, TaskStatus)]) -> HashMap<String, TaskStatus> {
        entries.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_task_without_parents_runs_at_once() {
        assert_eq!(decide(&task(&[]), &finished(&[])), Decision::Run);
    }

    #[test]
    fn a_task_waits_until_every_parent_finished() {
        use RequiredParentStatus::*;
        let t = task(&[("a", Any), ("b", Success)]);
        assert_eq!(decide(&t, &finished(&[("a", TaskStatus::Failed)])), Decision::Wait);
        assert_eq!(decide(&t, &finished(&[("a", TaskStatus::Failed), ("b", TaskStatus::Successful)])), Decision::Run);
    }

    #[test]
    fn edge_conditions_follow_the_parent_outcome() {
        use RequiredParentStatus::*;
        use TaskStatus::*;
        let cases = [
            (Success, Successful, true),
            (Success, Failed, false),
            (Success, Skipped, false),
            (Success, Cancelled, false),
            (Failure, Failed, true),
            (Failure, Successful, false),
            (Failure, Skipped, false),
            (Any, Successful, true),
            (Any, Failed, true),
            (Any, Skipped, true),
            (Any, Cancelled, true),
            (RequiredParentStatus::Unknown, Failed, true),
        ];
        for (required, parent, runs) in cases {
            let decision = decide(&task(&[("p", required)]), &finished(&[("p", parent)]));
            assert_eq!(decision == Decision::Run, runs, "{required:?} edge with parent {parent:?}: {decision:?}");
        }
    }

    #[test]
    fn skip_reasons_name_the_parent_and_the_need() {
        let t = task(&[("build", RequiredParentStatus::Success)]);
        let Decision::Skip { description } = decide(&t, &finished(&[("build", TaskStatus::Failed)])) else {
            panic!("expected a skip")
        };
        assert_eq!(description, "task 'build' ended failed but this task needs it to succeed");
    }

    fn outcome(entries: &[(&str, TaskStatus)]) -> (RunStatus, Option<StatusReason>) {
        run_outcome(&entries.iter().map(|(k, v)| (k.to_string(), (*v, None))).collect())
    }

    #[test]
    fn run_status_follows_from_tasks() {
        use TaskStatus::*;
        assert_eq!(outcome(&[("a", Successful), ("b", Skipped)]).0, RunStatus::Successful);
        let (status, reason) = outcome(&[("b", Failed), ("a", Failed), ("c", Successful)]);
        assert_eq!(status, RunStatus::Failed);
        assert_eq!(reason.unwrap().description, "failed tasks: a, b");
        assert_eq!(outcome(&[("a", Failed), ("b", Cancelled)]).0, RunStatus::Cancelled);
    }
}
