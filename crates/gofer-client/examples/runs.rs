//! Lists a namespace's pipelines with their last run, and starts a run when asked:
//!
//! ```sh
//! GOFER_API_URL=http://127.0.0.1:8080 cargo run -p gofer-client --example runs            # list
//! GOFER_API_URL=http://127.0.0.1:8080 cargo run -p gofer-client --example runs -- dag     # start a run of dag
//! ```
//!
//! `GOFER_TOKEN` is sent when set (production mode); `GOFER_NAMESPACE` picks the namespace.

use std::collections::BTreeMap;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), gofer_client::Error> {
    let url = std::env::var("GOFER_API_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let namespace = std::env::var("GOFER_NAMESPACE").unwrap_or_else(|_| "default".into());
    let token = std::env::var("GOFER_TOKEN").ok();
    let gofer = gofer_client::Client::new(&url, &namespace, token.as_deref(), None)?;

    if let Some(pipeline) = std::env::args().nth(1) {
        let variables = BTreeMap::from([("STARTED_BY".to_string(), "gofer-client example".to_string())]);
        let run = gofer.start_run(&pipeline, variables, None).await?;
        println!("started run {} of {} (version {})", run.run_id, run.pipeline_id, run.version);
        return Ok(());
    }
    for pipeline in gofer.list_pipelines().await?.pipelines {
        let runs = gofer.list_runs(&pipeline.pipeline_id, 1, 0, None, None).await?;
        let last = runs.runs.first().map_or("never run".to_string(), |r| format!("run {}: {}", r.run_id, r.status));
        println!("{:<24} {:<10} {last}", pipeline.pipeline_id, pipeline.state.to_string());
    }
    Ok(())
}
