//! A DAG with every kind of edge:
//!
//! ```text
//!             ┌─▶ lint  (Success) ─┐
//!   checkout ─┤                    ├─▶ report (Any)
//!             └─▶ test  (Success) ─┘
//!                   │
//!                   ├─▶ on-failure (Failure)   runs, because `test` fails
//!                   └─▶ publish    (Success)   skipped, because `test` fails
//! ```

use gofer_sdk::config::{Pipeline, RequiredParentStatus, Task};

fn main() {
    let image = "busybox:latest";
    Pipeline::new("dag", "DAG pipeline")
        .description("Parallel tasks, a failing test, a failure handler and a skipped publish step.")
        .tasks(vec![
            Task::new("checkout", image).script("echo checking out; sleep 1; echo done"),
            Task::new("lint", image).depends_on("checkout", RequiredParentStatus::Success).script("echo lint clean"),
            Task::new("test", image)
                .depends_on("checkout", RequiredParentStatus::Success)
                .variables(vec![("failing_test", "test_parser")])
                .script("echo running tests; echo \"FAILED: $FAILING_TEST\" >&2; exit 3"),
            Task::new("on-failure", image)
                .depends_on("test", RequiredParentStatus::Failure)
                .script("echo tests failed, notifying the team"),
            Task::new("publish", image)
                .depends_on("test", RequiredParentStatus::Success)
                .depends_on("lint", RequiredParentStatus::Success)
                .script("echo publishing"),
            Task::new("report", image)
                .depends_on("lint", RequiredParentStatus::Any)
                .depends_on("test", RequiredParentStatus::Any)
                .script("echo writing the report"),
        ])
        .finish()
        .unwrap();
}
