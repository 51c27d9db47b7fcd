//! Work done ahead on scripted containers: a child's container is made while its parent runs and only started at
//! the edge; one made for a task that does not run after all is removed unstarted; the tasks with parents ask for
//! their run's shared network, which goes with the run.

use std::time::Duration;

use gofer_api::config::{Pipeline, RequiredParentStatus};

use crate::{Harness, harness, task};

impl Harness {
    /// Waits (on the paused clock) until the scheduler recorded `call`.
    async fn until_called(&self, call: &str) {
        while !self.scheduler.calls.lock().unwrap().iter().any(|c| c == call) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every container is gone (removal runs off the path that completes a run).
    async fn until_no_containers(&self) {
        while self.scheduler.container_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_childs_container_is_made_while_its_parent_runs_and_only_started_at_the_edge() {
    let h = harness().await;
    h.deploy(Pipeline::new("ahead", "").tasks(vec![
        task("build", &["sleep-then-exit", "5"]),
        task("test", &["exit", "0"]).depends_on("build", RequiredParentStatus::Success),
        task("ship", &["exit", "0"]).depends_on("test", RequiredParentStatus::Success),
    ]))
    .await;
    let run = h.start("ahead").await;
    assert_eq!(
        h.snapshot("ahead", run.run_id).await,
        "run 1: complete successful\n\
         build: complete successful exit=0 attempt=1\n\
         ship: complete successful exit=0 attempt=1\n\
         test: complete successful exit=0 attempt=1\n"
    );
    h.until_no_containers().await;
    let calls = h.scheduler.calls_of("");
    let (mut removed, lives): (Vec<&String>, Vec<&String>) =
        calls.iter().filter(|c| !c.contains("network")).partition(|c| c.starts_with("remove"));
    assert_eq!(
        lives,
        [
            "create build",
            "start build",
            "create test", // while build runs
            "exit build 0",
            "start test",
            "create ship", // while test runs
            "exit test 0",
            "start ship",
            "exit ship 0",
        ],
        "each child made while its parent runs"
    );
    removed.sort();
    assert_eq!(removed, ["remove build exited", "remove ship exited", "remove test exited"]);
    // The tasks with parents join the run's shared network, made as the run starts and released with it.
    let key = "test/default/ahead/1";
    assert_eq!(
        h.scheduler.calls_of("network"),
        [format!("network test {key}"), format!("network ship {key}")],
        "the first task has a network of its own"
    );
    assert_eq!(h.scheduler.calls_of("prepare-network"), [format!("prepare-network {key}")]);
    assert_eq!(h.scheduler.calls_of("release-network"), [format!("release-network {key}")]);
}

#[tokio::test(start_paused = true)]
async fn a_container_made_for_a_task_that_is_skipped_is_removed_unstarted() {
    let h = harness().await;
    h.deploy(Pipeline::new("skipped", "").tasks(vec![
        task("build", &["sleep-then-exit", "5", "1"]),
        task("deploy", &["exit", "0"]).depends_on("build", RequiredParentStatus::Success),
        task("notify", &["exit", "0"]).depends_on("build", RequiredParentStatus::Failure),
    ]))
    .await;
    let run = h.start("skipped").await;
    assert_eq!(
        h.snapshot("skipped", run.run_id).await,
        "run 1: complete failed (abnormal_exit)\n\
         build: complete failed exit=1 attempt=1 (abnormal_exit)\n\
         deploy: complete skipped exit=- attempt=1 (failed_precondition)\n\
         notify: complete successful exit=0 attempt=1\n"
    );
    h.until_no_containers().await;
    assert_eq!(h.scheduler.calls_of("create"), ["create build", "create deploy", "create notify"]);
    assert_eq!(h.scheduler.calls_of("start"), ["start build", "start notify"], "deploy never started");
    assert!(h.scheduler.calls_of("remove").contains(&"remove deploy created".to_string()));
}

#[tokio::test(start_paused = true)]
async fn containers_made_ahead_go_unstarted_when_the_run_is_cancelled() {
    let h = harness().await;
    h.deploy(Pipeline::new("cancelled", "").tasks(vec![
        task("long", &["hang"]),
        task("after", &["exit", "0"]).depends_on("long", RequiredParentStatus::Any),
        task("last", &["exit", "0"]).depends_on("after", RequiredParentStatus::Any),
    ]))
    .await;
    let run = h.start("cancelled").await;
    h.until_called("create after").await;
    h.gofer.cancel_run("default", "cancelled", run.run_id).await.unwrap();
    assert_eq!(
        h.snapshot("cancelled", run.run_id).await,
        "run 1: complete cancelled (user_cancelled)\n\
         after: complete cancelled exit=- attempt=1 (user_cancelled)\n\
         last: complete cancelled exit=- attempt=1 (user_cancelled)\n\
         long: complete cancelled exit=143 attempt=1 (user_cancelled)\n"
    );
    h.until_no_containers().await;
    assert_eq!(h.scheduler.calls_of("create"), ["create long", "create after"], "only one edge ahead");
    assert_eq!(h.scheduler.calls_of("start"), ["start long"]);
    assert!(h.scheduler.calls_of("remove").contains(&"remove after created".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_variables_read_objects_is_not_made_ahead() {
    let h = harness().await;
    h.deploy(Pipeline::new("objects", "").tasks(vec![
        task("producer", &["sleep-then-exit", "5"]),
        task("consumer", &["exit", "0"])
            .depends_on("producer", RequiredParentStatus::Success)
            .variables(vec![("REPORT", "run_object{{report}}")]),
    ]))
    .await;
    let run = h.start("objects").await;
    h.until_called("start producer").await;
    // The producer writes the object its child reads, as a task does with its run token.
    h.gofer
        .put_object(
            &gofer_core::objects::ObjectScope::Run {
                namespace_id: "default".into(),
                pipeline_id: "objects".into(),
                run_id: run.run_id,
            },
            "report",
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"all green"))]),
        )
        .await
        .unwrap();
    assert_eq!(
        h.snapshot("objects", run.run_id).await,
        "run 1: complete successful\n\
         consumer: complete successful exit=0 attempt=1\n\
         producer: complete successful exit=0 attempt=1\n"
    );
    let calls = h.scheduler.calls_of("");
    let created = calls.iter().position(|c| c == "create consumer");
    let exited = calls.iter().position(|c| c == "exit producer 0");
    assert!(created > exited, "made only once its parent ended: {calls:?}");
    let env = h.scheduler.envs.lock().unwrap().last().cloned().unwrap_or_default();
    assert_eq!(env.get("REPORT").map(String::as_str), Some("all green"));
}
