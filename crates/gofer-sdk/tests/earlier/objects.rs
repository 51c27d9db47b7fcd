// The earlier "objects" example, plus a run object handed from a parent to its child.
use gofer_sdk::config::{pipeline_object, run_object, Pipeline, RequiredParentStatus, Task};
use std::collections::HashMap;

fn main() {
    Pipeline::new("objects", "Objects Pipeline").
        description("This pipeline displays how one might use Gofer's object/kv store to pass container results to others containers.").
        tasks(vec![
                Task::new("simple-task", "ghcr.io/clintjedwards/gofer/debug/log:latest").
                    description("This task has no dependencies so it will run immediately").
                    variables(HashMap::from([
                        ("SOME_VARIABLE", "something here"),
                        ("LOGS_HEADER", &pipeline_object("logs_header")),
                        ("ALTERNATE_LOGS_HEADER", "pipeline_object{{alternate_logs_header}}")
                        ])
                    ).inject_api_token(true),
                Task::new("reader", "busybox:latest")
                    .depends_on("simple-task", RequiredParentStatus::Success)
                    .variables(HashMap::from([("REPORT".to_string(), run_object("report"))])),
        ]).finish().unwrap();
}
