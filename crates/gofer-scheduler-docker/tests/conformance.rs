//! The Docker backend passes the scheduler conformance suite on the real engine (scripts/ensure-docker.sh starts
//! it and builds busybox:latest).

use std::sync::Arc;

use futures::FutureExt;
use gofer_scheduler::Scheduler;
use gofer_scheduler::conformance::{Harness, run_all};
use gofer_scheduler_docker::DockerScheduler;

#[tokio::test]
async fn the_docker_backend_passes_the_conformance_suite() {
    let volume = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(volume.path().join("probe"), "mounted\n").expect("the probe file");
    let harness = Harness {
        connect: Box::new(|| {
            async { Arc::new(DockerScheduler::connect().await.expect("a running Docker engine")) as Arc<dyn Scheduler> }
                .boxed()
        }),
        image: "busybox:latest".into(),
        tag: format!("docker{}", std::process::id()),
        volume_source: Some(volume.path().display().to_string()),
        reports_image_digest: true,
    };
    run_all(&harness).await;
}
