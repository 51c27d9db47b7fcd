//! A scheduler that plays containers from a script in their command, for deterministic orchestrator tests:
//! `exit N`, `start-fails`, `hang` (until stopped: exit 143), `succeed-on-attempt N` (exit 1 before attempt N),
//! `sleep-then-exit SECS` (on tokio's clock, exit 0).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use gofer_scheduler::{ContainerInfo, ContainerSpec, Error, Result, Scheduler, Started};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
enum Play {
    Exit(i64),
    Hang,
    Sleep(u64),
}

#[derive(Default)]
pub struct Scripted {
    containers: Mutex<HashMap<String, (Play, CancellationToken)>>,
    next: AtomicU64,
    /// The environment of every container started, in order.
    pub envs: Mutex<Vec<BTreeMap<String, String>>>,
}

#[async_trait]
impl Scheduler for Scripted {
    async fn start(&self, spec: ContainerSpec) -> Result<Started> {
        self.envs.lock().unwrap().push(spec.env.iter().cloned().collect());
        let command = spec.command.clone().unwrap_or_default();
        let arg = |i: usize| command.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        let attempt: i64 =
            spec.env.iter().find(|(k, _)| k == "GOFER_TASK_ATTEMPT").and_then(|(_, v)| v.parse().ok()).unwrap_or(1);
        let play = match command.first().map(String::as_str) {
            Some("exit") => Play::Exit(arg(1)),
            Some("hang") => Play::Hang,
            Some("succeed-on-attempt") => Play::Exit(if attempt >= arg(1) { 0 } else { 1 }),
            Some("sleep-then-exit") => Play::Sleep(arg(1) as u64),
            Some("start-fails") => {
                return Err(Error::Engine { action: "start the container".into(), message: "scripted failure".into() });
            }
            other => panic!("unscripted command {other:?}"),
        };
        let id = format!("c{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.containers.lock().unwrap().insert(id.clone(), (play, CancellationToken::new()));
        let output = futures::stream::iter([Ok(Bytes::from(format!("{}\n", command.join(" "))))]).boxed();
        Ok(Started { container_id: id, image_digest: Some("sha256:scripted".into()), output })
    }

    async fn wait(&self, container_id: &str) -> Result<i64> {
        let (play, stopped) =
            self.containers.lock().unwrap().get(container_id).cloned().ok_or_else(|| Error::NoSuchContainer {
                container: container_id.into(),
                message: "not scripted".into(),
            })?;
        match play {
            Play::Exit(code) => Ok(code),
            Play::Hang => {
                stopped.cancelled().await;
                Ok(143)
            }
            Play::Sleep(secs) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(secs)) => Ok(0),
                    () = stopped.cancelled() => Ok(143),
                }
            }
        }
    }

    async fn output_since_start(&self, _container_id: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        Ok(futures::stream::empty().boxed())
    }

    async fn logs(&self, _container_id: &str, _follow: bool) -> Result<BoxStream<'static, Result<Bytes>>> {
        Ok(futures::stream::empty().boxed())
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerInfo> {
        Ok(ContainerInfo {
            id: container_id.into(),
            name: container_id.into(),
            running: false,
            exit_code: None,
            image_digest: Some("sha256:scripted".into()),
            labels: BTreeMap::new(),
            endpoint: None,
        })
    }

    async fn find(&self, _labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>> {
        Ok(Vec::new())
    }

    async fn stop(&self, container_id: &str, _grace: Duration) -> Result<()> {
        if let Some((_, stopped)) = self.containers.lock().unwrap().get(container_id) {
            stopped.cancel();
        }
        Ok(())
    }

    async fn remove(&self, container_id: &str) -> Result<()> {
        self.containers.lock().unwrap().remove(container_id);
        Ok(())
    }
}
