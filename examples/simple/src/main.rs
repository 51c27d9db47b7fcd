//! A one-task pipeline: a container that says hello and shows what Gofer told it.

use gofer_sdk::config::{Pipeline, Task};

fn main() {
    Pipeline::new("simple", "Simple pipeline")
        .description("Runs one container that greets and prints the variables Gofer injects.")
        .tasks(vec![
            Task::new("hello", "busybox:latest")
                .description("Says hello and shows the run it belongs to.")
                .variables(vec![("greeting", "Hello from Gofer")])
                .script(
                    "echo \"$GREETING\"; echo \"pipeline=$GOFER_PIPELINE_ID run=$GOFER_RUN_ID task=$GOFER_TASK_ID\"",
                ),
        ])
        .finish()
        .unwrap();
}
