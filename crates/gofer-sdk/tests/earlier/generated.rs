// Commands and dependencies computed in code: `.collect()` into `command`, statuses parsed from text and
// printed back, registry credentials, and `?` on `finish()` from a `main` that returns a `Result`.
use gofer_sdk::config::{Pipeline, RequiredParentStatus, Task};
use std::collections::HashMap;
use std::error::Error;
use std::str::FromStr;

fn main() -> Result<(), Box<dyn Error>> {
    let args = "echo one two three";
    let when: RequiredParentStatus = "Failure".parse()?;
    let always = RequiredParentStatus::from_str("Any")?;
    assert_eq!(when.to_string(), "Failure");
    assert_eq!(format!("{always}"), "Any");
    assert!("sometimes".parse::<RequiredParentStatus>().is_err());

    let mut deps: HashMap<String, RequiredParentStatus> = HashMap::new();
    deps.insert("build".to_string(), RequiredParentStatus::Success);
    Pipeline::new("generated", "Generated")
        .tasks(vec![
            Task::new("build", "registry.example.com/team/builder:1")
                .registry_auth("robot", "hunter2")
                .command(args.split(' ').map(|s| s.to_string()).collect()),
            Task::new("test", "busybox:latest").depends_on_many(deps).command(vec![String::from("true")]),
            Task::new("alert", "busybox:latest")
                .depends_on("test", when)
                .entrypoint(vec!["/bin/sh".to_string(), "-c".to_string()])
                .command(vec!["echo tests failed".to_string()]),
            Task::new("cleanup", "busybox:latest").depends_on("alert", always).inject_api_token(false),
        ])
        .finish()?;
    Ok(())
}
