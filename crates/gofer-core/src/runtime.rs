//! The composition root: one builder makes every part of a Gofer once, fully wired, from the backends its caller
//! chose (the server from its configuration, a test from a scripted engine), and one place starts and stops the
//! background work, in the reverse order of building.
//!
//! Building starts nothing. [`Runtime::start`] resumes what a previous process left and starts the background
//! components; [`Runtime::shutdown`] stops them: extensions first (no new triggers), then the deployment judge, then
//! run drivers (their containers keep running, for the next start to re-attach), then the event pruner, and waits
//! for every task.

use std::sync::Arc;
use std::time::Duration;

use gofer_scheduler::Scheduler;
use gofer_storage::{EventBus, LogStore, Storage};
use object_store::ObjectStore;

use crate::background::Background;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::events::Events;
use crate::extensions::container::{ContainerHost, ContainerOptions};
use crate::extensions::{self, Extension, Extensions};
use crate::metrics::Metrics;
use crate::objects::{ObjectLimits, Objects};
use crate::orchestrator::{self, Orchestrator};
use crate::secrets::{SecretKey, Secrets};
use crate::{Gofer, Parts};

/// What a Gofer stores and runs on.
pub struct Backends {
    pub storage: Arc<dyn Storage>,
    /// Carries stored events to live followers.
    pub bus: Arc<dyn EventBus>,
    /// Keeps task logs.
    pub logs: Arc<dyn LogStore>,
    /// What token expiry and subscription ticks read the time from.
    pub clock: Arc<dyn Clock>,
    pub scheduler: Arc<dyn Scheduler>,
    pub object_store: Arc<dyn ObjectStore>,
    /// Seals secrets; the store refuses a key other than the one its secrets were sealed with.
    pub secret_key: SecretKey,
    /// What the parts count (exported at `/metrics`); the storage may already report into it.
    pub metrics: Metrics,
    /// This server, and the store it shares with other servers, if it does.
    pub cluster: Cluster,
}

/// How the parts behave.
#[derive(Debug, Clone)]
pub struct Options {
    pub orchestrator: orchestrator::Options,
    pub objects: ObjectLimits,
    pub max_secret_bytes: usize,
    /// Events older than this are deleted, now and then.
    pub event_retention: Duration,
    /// The shortest `every` the interval extension takes.
    pub min_interval: Duration,
    /// With a webhook secret, the GitHub extension is installed.
    pub github_webhook_secret: Option<String>,
    /// With these, container extensions can be installed.
    pub container_extensions: Option<ContainerOptions>,
}

/// How often old events are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A built Gofer: its services, and the background work they need.
pub struct Runtime {
    gofer: Gofer,
    events: Events,
    event_retention: Duration,
    /// The root of all background work; listeners run in child scopes of it.
    root: Background,
    /// One scope per component, in the order they were built.
    scopes: Scopes,
}

struct Scopes {
    /// Keeps extensions in step with the other servers; stopped before the extensions themselves.
    in_step: Background,
    events: Background,
    orchestrator: Background,
    extensions: Background,
    deployments: Background,
}

impl Runtime {
    /// Makes every part once: events, logs, secrets (the key is checked against the store), objects, the
    /// orchestrator, the extensions, and the services over them. Nothing runs yet.
    pub async fn build(backends: Backends, options: Options) -> Result<Self> {
        let Backends { storage, bus, logs, clock, scheduler, object_store, secret_key, metrics, cluster } = backends;
        let root = Background::root();
        let scopes = Scopes {
            in_step: root.child(),
            events: root.child(),
            orchestrator: root.child(),
            extensions: root.child(),
            deployments: root.child(),
        };
        let events = Events::new(storage.clone(), bus);
        let shared_host = cluster.store.clone().map(|store| (store, cluster.clone()));
        let secrets = Secrets::open(storage.clone(), &secret_key, options.max_secret_bytes).await?;
        let objects = Objects::new(object_store, options.objects.clone());
        let orchestrator = Orchestrator::new(
            options.orchestrator.clone(),
            orchestrator::Parts {
                storage: storage.clone(),
                scheduler: scheduler.clone(),
                logs,
                events: events.clone(),
                secrets: secrets.clone(),
                objects: objects.clone(),
                metrics: metrics.clone(),
                cluster,
            },
            scopes.orchestrator.clone(),
        );
        let mut builtin: Vec<Arc<dyn Extension>> = vec![
            Arc::new(extensions::Interval::new(options.min_interval, scopes.extensions.clone(), clock.clone())),
            Arc::new(extensions::Cron::new(scopes.extensions.clone(), clock.clone())),
        ];
        if let Some(secret) = &options.github_webhook_secret {
            builtin.push(Arc::new(extensions::github::GitHub::new(secret)));
        }
        let mut extensions = Extensions::new(storage.clone(), builtin);
        if let Some(container_options) = options.container_extensions.clone() {
            extensions = extensions.with_containers(ContainerHost {
                options: Arc::new(container_options),
                scheduler,
                storage: storage.clone(),
                events: events.clone(),
                background: scopes.extensions.clone(),
                metrics: metrics.clone(),
                shared: shared_host.map(|(store, cluster)| crate::extensions::container::SharedHost {
                    store,
                    secrets: secrets.clone(),
                    cluster,
                }),
            });
        }
        let parts =
            Parts { storage, orchestrator, events: events.clone(), extensions, secrets, objects, clock, metrics };
        let gofer = Gofer::new(parts);
        Ok(Self { gofer, events, event_retention: options.event_retention, root, scopes })
    }

    /// The services every API route calls.
    pub fn gofer(&self) -> &Gofer {
        &self.gofer
    }

    /// A scope for more background work (listeners); it stops with the runtime.
    pub fn background(&self) -> Background {
        self.root.child()
    }

    /// Picks up what the previous process left (runs in flight and queued, container extensions, subscriptions)
    /// and starts the event pruner.
    pub async fn start(&self) -> Result<()> {
        self.gofer.ensure_default_namespace().await?;
        // Judges deployments from the counts stored so far, then as their runs complete (resumed ones included).
        self.scopes.deployments.spawn(self.gofer.clone().judge_deployments());
        self.gofer.orchestrator().recover().await?;
        self.gofer.restore_subscriptions().await?;
        if self.gofer.orchestrator().cluster().store.is_some() {
            self.scopes.in_step.spawn(self.gofer.clone().keep_extensions_in_step());
        }
        self.scopes.events.spawn(self.events.clone().prune(self.event_retention, PRUNE_EVERY));
        Ok(())
    }

    /// Stops everything in the reverse order of building: extensions (stopped properly: their containers and
    /// timers), run drivers (containers keep running; servers sharing the state adopt them), the event pruner, and whatever else runs in the root scope;
    /// then waits, at most `grace`, for the tasks to end.
    pub async fn shutdown(self, grace: Duration) {
        // First what would start extensions again while they stop.
        self.scopes.in_step.cancel();
        if tokio::time::timeout(grace, self.gofer.shutdown_extensions()).await.is_err() {
            tracing::warn!("extensions did not stop within the shutdown grace time; leaving them");
        }
        self.scopes.extensions.cancel();
        self.scopes.deployments.cancel();
        self.scopes.orchestrator.cancel();
        // Servers sharing the state adopt this one's runs at their next beat, not after its lease runs out.
        let cluster = self.gofer.orchestrator().cluster().clone();
        if let Some(store) = &cluster.store
            && let Err(e) = tokio::time::timeout(grace, store.leave(&cluster.me.id)).await.unwrap_or(Ok(()))
        {
            tracing::warn!(error = %e, "could not tell the other servers this one stops");
        }
        self.scopes.events.cancel();
        self.root.cancel();
        if tokio::time::timeout(grace, self.root.wait()).await.is_err() {
            tracing::warn!("background tasks did not end within the shutdown grace time");
        }
    }
}
