//! Gofer's server core: the services behind every API route and the orchestrator that runs pipelines.
//!
//! This crate knows storage only through the `gofer_storage::Storage` trait and containers only through the
//! `gofer_scheduler::Scheduler` trait. It never sees SQL, HTTP or a container engine's API.

pub mod auth;
pub mod background;
pub mod clock;
pub mod cluster;
pub mod dag;
pub mod deployments;
pub mod error;
pub mod events;
pub mod extensions;
pub mod logs;
pub mod mask;
pub mod metrics;
pub mod objects;
pub mod orchestrator;
pub mod runtime;
pub mod secrets;
mod services;
pub mod shared_logs;
pub mod text;
pub mod tokens;

use std::sync::Arc;

use gofer_api::config::{self, validate_identifier};
use gofer_api::permissions::{Action, Permission, Resource};
use gofer_api::requests::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, PageQuery};
use gofer_storage::{Page, Storage};
use sha2::{Digest, Sha256};

pub use crate::error::{Error, Result};
use crate::events::Events;
use crate::extensions::Extensions;
use crate::objects::Objects;
use crate::orchestrator::Orchestrator;
use crate::secrets::Secrets;
pub use crate::services::Session;

/// What reading a secret's value through the API needs (metadata needs only `secrets:read`).
const REVEAL_SECRETS: Permission = Permission::new(Resource::Secrets, Action::Reveal);

/// The services behind the API. Cheap to clone; every handler calls exactly one method.
#[derive(Clone)]
pub struct Gofer {
    storage: Arc<dyn Storage>,
    orchestrator: Orchestrator,
    events: Events,
    extensions: Extensions,
    /// Installs and uninstalls one at a time (an extension's container name is its id).
    installing: Arc<tokio::sync::Mutex<()>>,
    /// Extensions being installed: their containers are starting and may already call the API.
    pending_installs: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Deployment decisions (starting, routing a run, judging, ending) one at a time.
    deploying: Arc<tokio::sync::Mutex<()>>,
    secrets: Secrets,
    objects: Objects,
    clock: Arc<dyn clock::Clock>,
    metrics: metrics::Metrics,
}

/// What the services are made of.
pub struct Parts {
    pub storage: Arc<dyn Storage>,
    pub orchestrator: Orchestrator,
    pub events: Events,
    pub extensions: Extensions,
    pub secrets: Secrets,
    pub objects: Objects,
    pub clock: Arc<dyn clock::Clock>,
    pub metrics: metrics::Metrics,
}

/// A page as asked for, and whether another page follows.
fn page(query: PageQuery) -> Result<Page> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(Error::invalid(format!("limit must be between 1 and {MAX_PAGE_LIMIT}, got {limit}")));
    }
    // Ask for one more than requested to learn whether a next page exists.
    Ok(Page::new(limit + 1, query.offset.unwrap_or(0)))
}

/// Trims the look-ahead item and computes the next offset.
pub fn paged<T>(mut items: Vec<T>, query: PageQuery) -> (Vec<T>, Option<u64>) {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_LIMIT) as usize;
    let offset = query.offset.unwrap_or(0);
    if items.len() > limit {
        items.truncate(limit);
        (items, Some(offset.saturating_add(limit as u64)))
    } else {
        (items, None)
    }
}

/// The largest id (run id, version, event id) Gofer stores: ids are signed 64-bit in every database.
pub const MAX_ID: u64 = i64::MAX as u64;

/// Refuses a number no stored id can reach, naming the parameter.
pub fn check_id(what: &str, value: u64) -> Result<()> {
    if value > MAX_ID {
        return Err(Error::invalid(format!("{what} {value} is too large; ids go up to {MAX_ID}")));
    }
    Ok(())
}

fn identifier(what: &str, value: &str) -> Result<()> {
    validate_identifier(what, value).map_err(|e| Error::invalid(e.to_string()))
}

/// SHA-256 of the config's canonical JSON (maps are ordered, so equal configs hash equally).
pub fn config_hash(config: &config::Pipeline) -> Result<String> {
    let json = serde_json::to_string(config).map_err(|e| Error::internal("hash a pipeline config", e))?;
    let digest = Sha256::digest(json.as_bytes());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

impl Gofer {
    /// The services over their parts (see [`runtime::Runtime::build`], which makes them all, once).
    pub fn new(parts: Parts) -> Self {
        let Parts { storage, orchestrator, events, extensions, secrets, objects, clock, metrics } = parts;
        Self {
            storage,
            orchestrator,
            events,
            extensions,
            installing: Arc::default(),
            pending_installs: Arc::default(),
            deploying: Arc::default(),
            secrets,
            objects,
            clock,
            metrics,
        }
    }

    pub fn orchestrator(&self) -> &Orchestrator {
        &self.orchestrator
    }

    fn pending_installs(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.pending_installs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the server counts; the HTTP layer adds its requests.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// Every metric in the Prometheus text format, as of now.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(self.orchestrator.waiting())
    }
}
