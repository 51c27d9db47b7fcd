// The earlier "secrets" example: variables from a HashMap whose values mix literals and `&pipeline_secret(..)`.
use gofer_sdk::config::{global_secret, pipeline_secret, Pipeline, Task};
use std::collections::HashMap;

fn main() {
    Pipeline::new("secrets", "Secrets Pipeline")
        .description(concat!(
            "This pipeline displays how one might use Gofer's object/kv store to pass container ",
            "results to other containers."
        ))
        .tasks(vec![Task::new(
            "simple-task",
            "ghcr.io/clintjedwards/gofer/debug/log:latest",
        )
        .description("This task has no dependencies so it will run immediately")
        .variables(HashMap::from([
            ("SOME_VARIABLE", "something here"),
            ("LOGS_HEADER", &pipeline_secret("logs_header")),
            (
                "ALTERNATE_LOGS_HEADER",
                "pipeline_secret{{alternate_logs_header}}",
            ),
        ]))
        .variables(vec![("shared_key".to_string(), global_secret("shared_key"))])])
        .finish()
        .unwrap();
}
