// A DAG in the earlier SDK's idioms: `.into()` inside `vec![]` and `HashMap::from`, every edge condition,
// `depends_on_many` with a HashMap, variables from a Vec of tuples.
use gofer_sdk::config::{Pipeline, RequiredParentStatus, Task};
use std::collections::HashMap;

fn main() {
    Pipeline::new("dag", "DAG Test Pipeline")
        .description(concat!(
            "This pipeline shows off how you might use Gofer's DAG(Directed Acyclic Graph) system to chain ",
            "together containers that depend on other container's end states."
        ))
        .parallelism(2)
        .tasks(vec![
            Task::new("first-task", "ghcr.io/clintjedwards/gofer/debug/wait:latest")
                .description("This task has no dependencies so it will run immediately")
                .variables(vec![("WAIT_DURATION", "20s")])
                .always_pull_newest_image(true),
            Task::new("depends-on-first", "ghcr.io/clintjedwards/gofer/debug/log:latest")
                .description("This task depends on the first task to finish with a successful result.")
                .depends_on("first-task", RequiredParentStatus::Success)
                .variables(vec![("LOGS_HEADER", "This string can be anything you want it to be")]),
            Task::new("fails", "ghcr.io/clintjedwards/gofer/debug/fail:latest")
                .entrypoint(vec!["sh".into(), "-c".into()])
                .command(vec!["exit 1".into()]),
            Task::new("on-failure", "busybox:latest")
                .depends_on("fails", RequiredParentStatus::Failure)
                .command(vec!["echo".into(), "the failing task failed".into()]),
            Task::new("after-everything", "ghcr.io/clintjedwards/gofer/debug/wait:latest")
                .description("This task runs once the others ended, whatever their result.")
                .depends_on_many(HashMap::from([
                    ("depends-on-first".into(), RequiredParentStatus::Any),
                    ("on-failure".into(), RequiredParentStatus::Any),
                ]))
                .variables(vec![("WAIT_DURATION", "5s")]),
        ])
        .finish()
        .unwrap();
}
