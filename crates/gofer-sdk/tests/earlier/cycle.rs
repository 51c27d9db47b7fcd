// A mistake the earlier SDK caught before anything reached the server: tasks that wait on each other.
use gofer_sdk::config::{Pipeline, RequiredParentStatus, Task};

fn main() {
    Pipeline::new("cycle", "Cycle")
        .tasks(vec![
            Task::new("a", "busybox:latest").depends_on("b", RequiredParentStatus::Any),
            Task::new("b", "busybox:latest").depends_on("a", RequiredParentStatus::Success),
        ])
        .finish()
        .unwrap();
}
