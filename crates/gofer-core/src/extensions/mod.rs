//! Extensions start runs: a subscription `(pipeline, extension, label, settings)` asks an extension to trigger the
//! pipeline. Every extension sits behind one trait that mirrors the extension protocol
//! (`gofer_api::protocol`: info, debug, subscribe, unsubscribe, external events, shutdown), so the built-in
//! extensions (`interval`, `cron`, `github`) run in-process and container extensions are driven over HTTP through
//! the same calls.

pub mod container;
pub mod github;
mod timers;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gofer_api::models::{Extension as ExtensionInfo, ExtensionKind, ExtensionState};
use gofer_api::models::{ExtensionParameter, Subscription};
use gofer_api::protocol::Documentation;
use gofer_storage::{Storage, SubscriptionKey};

use self::container::{ContainerExtension, ContainerHost};
pub use self::timers::{Cron, Interval};
use crate::error::Result;

/// What can go wrong between Gofer and an extension. Callers branch on the variant: settings an extension refuses
/// are the user's to fix (400), an extension that cannot be reached or did not start is the operator's (503).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings are not what the extension takes; the message says what is wrong and how to fix it.
    #[error("{0}")]
    Settings(String),
    /// The extension refused the call, in its own words.
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// The extension is not running now.
    #[error("extension '{extension}' is not running (it is {state})")]
    NotRunning { extension: String, state: String },
    /// The extension could not be reached, or broke off its answer.
    #[error("could not reach extension '{extension}'")]
    Unreachable {
        extension: String,
        #[source]
        source: reqwest::Error,
    },
    /// The extension answered with something that is not the protocol.
    #[error("extension '{extension}' answered {path} with something unexpected")]
    Protocol {
        extension: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The extension's container did not start, or never answered.
    #[error("{reason}")]
    NotStarted {
        reason: String,
        #[source]
        source: Option<gofer_scheduler::Error>,
    },
    #[error(transparent)]
    Storage(#[from] gofer_storage::Error),
}

/// When a subscription fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// A scheduled tick at `at`, the one after the tick recorded at `previous`. It starts a run only if it is the
    /// first to be recorded (compare-and-set): of the servers or processes firing the same tick, one starts a run.
    Tick { previous: u64, at: u64 },
    /// Something that happened at `at` (a webhook): each one starts a run.
    Event { at: u64 },
}

/// What firing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// It started this run.
    Run(u64),
    /// The tick was fired already (by another server, or process); this is the tick recorded last.
    Already { last_fired: u64 },
}

/// Starts a run on behalf of a subscription; implemented by the services, handed to extensions.
#[async_trait]
pub trait Trigger: Send + Sync {
    /// Records the firing, then starts a run of the pipeline with `variables` (on top of `GOFER_EXTENSION_ID` and
    /// `GOFER_EXTENSION_SUBSCRIPTION`). An error says why no run started (the firing stays recorded).
    async fn fire(&self, key: &SubscriptionKey, firing: Firing, variables: BTreeMap<String, String>) -> Result<Fired>;
}

/// A request that reached the external-events listener for one extension.
#[derive(Debug, Clone, Default)]
pub struct ExternalEvent {
    /// Header names in lower case; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
}

/// What the extension answers to an external event; the listener passes it on to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalResponse {
    pub status: u16,
    pub message: String,
}

impl ExternalResponse {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

/// How an extension is doing, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: ExtensionState,
    pub image: Option<String>,
    pub restarts: u32,
    pub problem: Option<String>,
}

impl Status {
    pub fn builtin() -> Self {
        Self { state: ExtensionState::Running, image: None, restarts: 0, problem: None }
    }
}

/// What Gofer asks of an extension.
#[async_trait]
pub trait Extension: Send + Sync {
    fn id(&self) -> &str;
    fn kind(&self) -> ExtensionKind;
    /// What the extension does and the settings it takes.
    fn documentation(&self) -> Documentation;
    fn status(&self) -> Status {
        Status::builtin()
    }
    /// Checks a subscription's settings without subscribing, where the extension can do so locally; the message
    /// says what is wrong and how to fix it. Extensions that can only tell by subscribing accept here.
    fn validate(&self, _settings: &BTreeMap<String, String>) -> std::result::Result<(), Error> {
        Ok(())
    }
    /// Starts triggering for a subscription (also called to restore subscriptions). Refusing the settings
    /// returns the extension's message.
    async fn subscribe(&self, subscription: Subscription, trigger: Arc<dyn Trigger>) -> std::result::Result<(), Error>;
    /// Stops triggering for a subscription; once it returns, the subscription starts no more runs. Unknown
    /// subscriptions are ignored.
    async fn unsubscribe(&self, key: &SubscriptionKey);
    /// Handles a request from the outside world (a webhook) sent to `/api/external/{id}`.
    async fn external_event(&self, _event: ExternalEvent, _trigger: Arc<dyn Trigger>) -> ExternalResponse {
        ExternalResponse::new(404, format!("extension '{}' takes no external events", self.id()))
    }
    /// When the extension will next start a run for a subscription (epoch milliseconds), if it knows in advance.
    /// The subscriptions this extension acts on in this process, with their settings — for extensions that keep
    /// them here (the timers, GitHub); `None` for those that keep none here (a container extension keeps its own).
    fn active(&self) -> Option<Vec<(SubscriptionKey, BTreeMap<String, String>)>> {
        None
    }
    fn next_fire(&self, _key: &SubscriptionKey) -> Option<u64> {
        None
    }
    /// The extension's view of itself, for people debugging it.
    async fn debug(&self) -> std::result::Result<String, Error>;
    /// Starts the extension again after it was stopped (enabling a disabled extension). Built-ins need nothing.
    async fn resume(&self) -> std::result::Result<(), Error> {
        Ok(())
    }
    /// Stops everything: no more triggers until `resume`.
    async fn shutdown(&self);
}

/// Parses durations such as `90s`, `5m`, `1h30m`, `2d` or `250ms`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let invalid = || format!("'{text}' is not a duration; write it like 30s, 5m, 1h30m or 2d");
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        total += scale.checked_mul(u32::try_from(number).map_err(|_| invalid())?).ok_or_else(invalid)?;
        rest = &rest[unit..];
    }
    Ok(total)
}

/// Renders a duration the way `parse_duration` reads it.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = duration.as_secs();
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            text.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if text.is_empty() { "0s".into() } else { text }
}

/// A parameter of an extension's documentation.
pub(crate) fn param(key: &str, required: bool, documentation: &str) -> ExtensionParameter {
    ExtensionParameter { key: key.into(), required, documentation: documentation.into() }
}

/// Refuses settings other than `known`, naming them.
pub(crate) fn only_known(
    extension: &str,
    settings: &BTreeMap<String, String>,
    known: &[&str],
) -> std::result::Result<(), String> {
    match settings.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => {
            Err(format!("unknown setting '{unknown}'; the {extension} extension takes {}", known.join(", ")))
        }
        None => Ok(()),
    }
}

/// Ids that only the built-in extensions may have, installed or not.
pub const BUILTIN_IDS: &[&str] = &[Interval::ID, Cron::ID, github::GitHub::ID];

/// The installed extensions and their switches.
#[derive(Clone)]
pub struct Extensions {
    storage: Arc<dyn Storage>,
    installed: Arc<RwLock<BTreeMap<String, Arc<dyn Extension>>>>,
    /// Container extensions by id (also in `installed`), for what only they can do (logs).
    containers: Arc<RwLock<BTreeMap<String, ContainerExtension>>>,
    host: Option<ContainerHost>,
}

impl Extensions {
    pub fn new(storage: Arc<dyn Storage>, installed: Vec<Arc<dyn Extension>>) -> Self {
        let installed = installed.into_iter().map(|e| (e.id().to_string(), e)).collect();
        Self { storage, installed: Arc::new(RwLock::new(installed)), containers: Arc::default(), host: None }
    }

    /// Lets container extensions be installed, run where `host` says.
    pub fn with_containers(mut self, host: ContainerHost) -> Self {
        self.host = Some(host);
        self
    }

    pub fn container_host(&self) -> Option<&ContainerHost> {
        self.host.as_ref()
    }

    pub fn container(&self, id: &str) -> Option<ContainerExtension> {
        self.containers.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Adds a container extension to the registry.
    pub fn insert_container(&self, extension: ContainerExtension) {
        let id = extension.registration().id.clone();
        self.containers.write().unwrap_or_else(|p| p.into_inner()).insert(id, extension.clone());
        self.insert(Arc::new(extension));
    }

    /// Loads the installed container extensions and starts the enabled ones in the background (each retries
    /// with back-off until it comes up, so one broken extension does not keep Gofer from starting).
    pub async fn start_containers(&self) -> Result<()> {
        let Some(host) = &self.host else { return Ok(()) };
        for registration in self.storage.list_extensions().await? {
            let extension = host.extension(registration);
            let id = extension.registration().id.clone();
            self.insert_container(extension.clone());
            if self.is_enabled(&id).await? {
                extension.supervise(false).await;
            }
        }
        Ok(())
    }

    /// Loads the installed container extensions into the registry without starting them: on servers sharing their
    /// state, the leading server starts and supervises them ([`Extensions::lead_containers`]).
    pub async fn load_containers(&self) -> Result<()> {
        let Some(host) = &self.host else { return Ok(()) };
        for registration in self.storage.list_extensions().await? {
            self.insert_container(host.extension(registration));
        }
        Ok(())
    }

    /// Brings the registry in step with the stored registrations (installs and uninstalls made through another
    /// server), and, on the leading server, supervises every enabled container extension (and no disabled one,
    /// whose leftover container another server may have left running); a server that does not lead supervises
    /// none. `skip` are installs in progress here. Servers sharing their state call it at every beat.
    pub async fn lead_containers(&self, leading: bool, skip: &std::collections::BTreeSet<String>) -> Result<()> {
        let Some(host) = &self.host else { return Ok(()) };
        let stored = self.storage.list_extensions().await?;
        let known: Vec<ContainerExtension> =
            self.containers.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for extension in &known {
            let id = extension.registration().id.clone();
            if !skip.contains(&id) && !stored.iter().any(|r| r.id == id) {
                // Uninstalled through another server: stopped here, and its token (which a launch racing the
                // uninstall may have stored again) goes.
                self.remove(&id);
                extension.shutdown().await;
                self.storage.delete_tokens_of_user(&format!("extension:{id}")).await?;
            }
        }
        for registration in stored {
            let id = registration.id.clone();
            if skip.contains(&id) {
                continue;
            }
            let extension = match self.container(&id) {
                Some(extension) => extension,
                None => {
                    let extension = host.extension(registration);
                    self.insert_container(extension.clone());
                    extension
                }
            };
            let supervised = extension.is_supervised().await;
            let wanted = leading && self.is_enabled(&id).await?;
            match (wanted, supervised) {
                (true, false) => extension.supervise(false).await,
                (true, true) => extension.ensure_recorded().await,
                (false, true) => extension.shutdown().await,
                (false, false) if leading => extension.remove_leftovers().await,
                (false, false) => {}
            }
            extension.refresh().await;
        }
        Ok(())
    }

    /// Stops supervising every container extension here (this server cannot tell whether it still leads).
    pub async fn release_containers(&self) {
        let known: Vec<ContainerExtension> =
            self.containers.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for extension in known {
            if extension.is_supervised().await {
                extension.shutdown().await;
            }
        }
    }

    fn all(&self) -> Vec<Arc<dyn Extension>> {
        self.installed.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.installed.read().unwrap_or_else(|p| p.into_inner()).contains_key(id)
    }

    pub fn get(&self, id: &str) -> Result<Arc<dyn Extension>> {
        let installed = self.installed.read().unwrap_or_else(|p| p.into_inner());
        installed.get(id).cloned().ok_or_else(|| crate::Error::NotFound {
            what: format!("extension '{id}' (installed: {})", installed.keys().cloned().collect::<Vec<_>>().join(", ")),
        })
    }

    /// The extension `id`; on servers sharing their state, one installed through another server and not yet seen
    /// here is loaded now.
    pub async fn find(&self, id: &str) -> Result<Arc<dyn Extension>> {
        if let Ok(found) = self.get(id) {
            return Ok(found);
        }
        self.load_missing().await?;
        self.get(id)
    }

    /// On servers sharing their state: loads the container extensions installed through another server that this
    /// one has not seen yet (the leading server runs them; this one calls them where it recorded them).
    async fn load_missing(&self) -> Result<()> {
        let Some(host) = self.host.as_ref().filter(|h| h.shared.is_some()) else { return Ok(()) };
        for registration in self.storage.list_extensions().await? {
            if self.container(&registration.id).is_none() {
                let extension = host.extension(registration);
                extension.refresh().await;
                self.insert_container(extension);
            }
        }
        Ok(())
    }

    /// Adds a running extension to the registry.
    pub fn insert(&self, extension: Arc<dyn Extension>) {
        self.installed.write().unwrap_or_else(|p| p.into_inner()).insert(extension.id().to_string(), extension);
    }

    /// Takes an extension out of the registry.
    pub fn remove(&self, id: &str) -> Option<Arc<dyn Extension>> {
        self.containers.write().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.installed.write().unwrap_or_else(|p| p.into_inner()).remove(id)
    }

    pub async fn is_enabled(&self, id: &str) -> Result<bool> {
        Ok(self.storage.get_extension_enabled(id).await?.unwrap_or(true))
    }

    pub async fn describe(&self, extension: &dyn Extension) -> Result<ExtensionInfo> {
        let documentation = extension.documentation();
        let status = extension.status();
        Ok(ExtensionInfo {
            id: extension.id().to_string(),
            kind: extension.kind(),
            image: status.image,
            enabled: self.is_enabled(extension.id()).await?,
            state: status.state,
            restarts: status.restarts,
            problem: status.problem,
            documentation: documentation.body,
            config_params: documentation.config_params,
            subscription_params: documentation.pipeline_subscription_params,
        })
    }

    pub async fn list(&self) -> Result<Vec<ExtensionInfo>> {
        self.load_missing().await?;
        let all = self.all();
        let mut infos = Vec::with_capacity(all.len());
        for extension in all {
            infos.push(self.describe(extension.as_ref()).await?);
        }
        Ok(infos)
    }

    /// Starts triggering every enabled subscription of the built-in `extension` (all when `None`). Container
    /// extensions restore their own each time they (re)start.
    pub async fn restore(&self, extension: Option<&str>, trigger: Arc<dyn Trigger>) -> Result<()> {
        for ext in self.all() {
            let id = ext.id().to_string();
            if extension.is_some_and(|e| e != id) || ext.kind() == ExtensionKind::Container {
                continue;
            }
            if !self.is_enabled(&id).await? {
                continue;
            }
            restore_subscriptions(self.storage.as_ref(), ext.as_ref(), &trigger).await?;
        }
        Ok(())
    }

    /// Brings the subscriptions the built-in extensions act on in this process in step with the stored ones: on
    /// servers sharing their state, a subscription made, changed, switched or deleted through another server
    /// reaches this one here. Ticks stay once: each is recorded with compare-and-set before its run starts.
    pub async fn reconcile(&self, trigger: Arc<dyn Trigger>) -> Result<()> {
        for ext in self.all() {
            let Some(active) = ext.active() else { continue };
            let id = ext.id().to_string();
            let desired: Vec<Subscription> = if self.is_enabled(&id).await? {
                self.storage.list_extension_subscriptions(&id).await?.into_iter().filter(|s| s.enabled).collect()
            } else {
                Vec::new()
            };
            let active: std::collections::HashMap<SubscriptionKey, BTreeMap<String, String>> =
                active.into_iter().collect();
            for subscription in &desired {
                let key = SubscriptionKey::of(subscription);
                if active.get(&key) == Some(&subscription.settings) {
                    continue;
                }
                if let Err(message) = ext.subscribe(subscription.clone(), trigger.clone()).await {
                    tracing::warn!(%key, %message, "could not take up a subscription made elsewhere");
                }
            }
            for key in active.keys() {
                if !desired.iter().any(|s| SubscriptionKey::of(s) == *key) {
                    ext.unsubscribe(key).await;
                }
            }
        }
        Ok(())
    }

    /// Stops triggering every subscription of an extension.
    pub async fn stop_all(&self, extension: &str) -> Result<()> {
        let ext = self.get(extension)?;
        for subscription in self.storage.list_extension_subscriptions(extension).await? {
            ext.unsubscribe(&SubscriptionKey::of(&subscription)).await;
        }
        Ok(())
    }

    pub async fn shutdown(&self) {
        for extension in self.all() {
            extension.shutdown().await;
        }
    }
}

/// Subscribes an extension to each of its enabled stored subscriptions; one it refuses is logged and skipped.
pub(crate) async fn restore_subscriptions(
    storage: &dyn Storage,
    extension: &dyn Extension,
    trigger: &Arc<dyn Trigger>,
) -> Result<()> {
    for subscription in storage.list_extension_subscriptions(extension.id()).await? {
        if !subscription.enabled {
            continue;
        }
        let key = SubscriptionKey::of(&subscription);
        if let Err(message) = extension.subscribe(subscription, trigger.clone()).await {
            tracing::warn!(%key, %message, "could not restore a subscription");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, secs) in [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172_800), ("1m1s", 61)] {
            assert_eq!(parse_duration(text).unwrap(), Duration::from_secs(secs), "{text}");
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
        }
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "5", "m", "5x", "1.5s", "-1s", "99999999999h"] {
            assert!(parse_duration(bad).unwrap_err().contains("is not a duration"), "{bad}");
        }
    }
}
