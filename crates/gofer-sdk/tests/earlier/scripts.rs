// Scripts built at run time: `.script()` with an owned `String` from `format!`, a `&String`, and a raw string.
use gofer_sdk::config::{Pipeline, Task};

fn main() {
    let targets = ["web", "db", "cache"];
    let greeting = String::from("hello");
    let mut tasks = Vec::new();
    for target in targets {
        tasks.push(
            Task::new(&format!("scan-{target}"), "busybox:latest")
                .description(&format!("Scans {target}"))
                .script(format!("echo scanning {target}; echo {greeting}")),
        );
    }
    let script = String::from("echo from a String");
    tasks.push(Task::new("borrowed", "busybox:latest").script(&script));
    tasks.push(Task::new("multiline", "ghcr.io/clintjedwards/gofer/tools:rust").always_pull_newest_image(true).script(
        r#"
            cargo test
            wget https://example.com/somefile
        "#,
    ));
    Pipeline::new("scripts", "Scripts").tasks(tasks).finish().unwrap();
}
