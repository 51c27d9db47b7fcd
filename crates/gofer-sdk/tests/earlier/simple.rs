// The earlier Gofer's "simple" example, as its users wrote it: `command` takes owned strings.
use gofer_sdk::config::{Pipeline, Task};

fn main() {
    Pipeline::new("simple", "Simple Pipeline")
        .description("This pipeline shows off a very simple Gofer pipeline that simply pulls in a container and runs \
a command. Veterans of CI/CD tooling should be familiar with this pattern.")
        .tasks(vec![
                Task::new("simple-task", "ubuntu:latest").
                    description("This task simply prints our hello-world message and exits!").
                    command(vec!["echo".to_string(), "Hello from Gofer!".to_string()])
        ])
        .finish().unwrap();
}
