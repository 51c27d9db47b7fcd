//! Extensions: listing, switching, installing and uninstalling container extensions, their logs and debug
//! views, and external events.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use gofer_api::epoch_millis;
use gofer_api::models::EventKind;
use gofer_api::models::{Extension, ExtensionKind, ExtensionRegistration, Subscription};
use gofer_api::requests::InstallExtensionRequest;

use crate::error::{Error, Result, error_chain};
use crate::events;
use crate::extensions::{self, Extension as _, ExternalEvent, ExternalResponse};
use crate::{Gofer, identifier};

impl Gofer {
    pub async fn list_extensions(&self) -> Result<Vec<Extension>> {
        self.extensions.list().await
    }

    pub async fn get_extension(&self, id: &str) -> Result<Extension> {
        let extension = self.extensions.find(id).await?;
        self.extensions.describe(extension.as_ref()).await
    }

    /// Enables or disables an extension; a disabled extension's subscriptions stop triggering (and are kept). A
    /// disabled container extension's container is stopped; enabling starts it again.
    pub async fn set_extension_enabled(&self, id: &str, enabled: bool) -> Result<Extension> {
        let extension = self.extensions.find(id).await?;
        let was = self.extensions.is_enabled(id).await?;
        self.storage.set_extension_enabled(id, enabled, epoch_millis()).await?;
        if extension.kind() == ExtensionKind::Container && self.orchestrator.cluster().store.is_some() {
            // Servers sharing their state: the leading server starts or stops it at its next beat.
            return self.extensions.describe(extension.as_ref()).await;
        }
        match (was, enabled, extension.kind()) {
            (true, false, ExtensionKind::Builtin) => self.extensions.stop_all(id).await?,
            (false, true, ExtensionKind::Builtin) => self.extensions.restore(Some(id), Arc::new(self.clone())).await?,
            (true, false, ExtensionKind::Container) => extension.shutdown().await,
            (false, true, ExtensionKind::Container) => {
                if let Err(problem) = extension.resume().await.map_err(|e| error_chain(&e)) {
                    // Stays enabled (the operator asked for it) and keeps being retried; the problem shows on it.
                    return Err(Error::Unavailable {
                        message: format!(
                            "extension '{id}' is enabled but did not start ({problem}); Gofer keeps trying"
                        ),
                    });
                }
            }
            _ => {}
        }
        self.extensions.describe(extension.as_ref()).await
    }

    /// Installs a container extension: starts it, waits until it answers, and only then stores it. An image that
    /// is missing or never answers leaves nothing behind.
    pub async fn install_extension(&self, request: InstallExtensionRequest) -> Result<Extension> {
        identifier("extension id", &request.id)?;
        if request.image.trim().is_empty() {
            return Err(Error::invalid("the image is empty; name an image that speaks the extension protocol"));
        }
        let Some(host) = self.extensions.container_host() else {
            return Err(Error::Unavailable { message: "this Gofer cannot run container extensions".into() });
        };
        let _installing = self.installing.lock().await;
        if extensions::BUILTIN_IDS.contains(&request.id.as_str()) {
            return Err(Error::conflict(format!("'{}' is the id of a built-in extension; choose another", request.id)));
        }
        let stored = self.orchestrator.cluster().store.is_some()
            && self.storage.list_extensions().await?.iter().any(|r| r.id == request.id);
        if stored || self.extensions.contains(&request.id) {
            return Err(Error::conflict(format!(
                "extension '{}' is already installed; uninstall it first (gofer extension uninstall {})",
                request.id, request.id
            )));
        }
        let registration = ExtensionRegistration {
            id: request.id.clone(),
            image: request.image.clone(),
            settings: request.settings,
            registry_auth: request.registry_auth,
            created: epoch_millis(),
        };
        let extension = host.extension(registration.clone());
        // Its role and token exist before its container starts, and its subscriptions (none yet) can be listed:
        // the earlier Gofer's extensions list them as they boot and exit when that fails. A failed install takes
        // them away again.
        let role = gofer_api::permissions::extension_role(&request.id);
        let made_role = match self.storage.insert_role(&role).await {
            Ok(()) => true,
            Err(gofer_storage::Error::Exists { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        self.pending_installs().insert(request.id.clone());
        let launched = extension.launch().await;
        self.pending_installs().remove(&request.id);
        let token = match launched {
            Ok(token) => token,
            Err(problem) => {
                if let Err(e) = self.storage.delete_tokens_of_user(&format!("extension:{}", request.id)).await {
                    tracing::warn!(extension = %request.id, error = %e, "could not remove a failed install's token");
                }
                if made_role && let Err(e) = self.storage.delete_role(&role.id).await {
                    tracing::warn!(extension = %request.id, error = %e, "could not remove a failed install's role");
                }
                return Err(Error::invalid(format!(
                    "extension '{}' was not installed: {}",
                    request.id,
                    error_chain(&problem)
                )));
            }
        };
        let installed =
            events::now(EventKind::ExtensionInstalled { extension_id: request.id.clone(), image: request.image });
        let stored =
            self.events.record(|| self.storage.insert_extension(&registration, &role, &token, &installed)).await;
        if let Err(e) = stored {
            extension.shutdown().await;
            return Err(e.into());
        }
        let cluster = self.orchestrator.cluster();
        if cluster.store.is_none() || cluster.leads().await {
            extension.supervise(true).await;
            // Where it answers could be recorded only now that it is stored.
            extension.ensure_recorded().await;
        } else {
            // Another server leads and supervises the container extensions: it starts this one at its next beat.
            extension.shutdown().await;
        }
        self.extensions.insert_container(extension.clone());
        self.extensions.describe(&extension).await
    }

    /// Uninstalls a container extension: stops its container and deletes it with its subscriptions and token.
    pub async fn uninstall_extension(&self, id: &str) -> Result<()> {
        let extension = self.extensions.find(id).await?;
        if extension.kind() == ExtensionKind::Builtin {
            return Err(Error::invalid(format!(
                "'{id}' is built in and cannot be uninstalled; disable it instead (gofer extension disable {id})"
            )));
        }
        let _installing = self.installing.lock().await;
        let uninstalled = events::now(EventKind::ExtensionUninstalled { extension_id: id.into() });
        self.events.record(|| self.storage.delete_extension(id, &uninstalled)).await?;
        self.extensions.remove(id);
        extension.shutdown().await;
        self.objects.delete_extension(id).await?;
        Ok(())
    }

    /// A container extension's output; with `follow`, live until its container exits.
    pub async fn extension_logs(
        &self,
        id: &str,
        follow: bool,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + use<>> {
        self.extensions.find(id).await?;
        let Some(container) = self.extensions.container(id) else {
            return Err(Error::invalid(format!("'{id}' is built in; it writes to the Gofer server's own log")));
        };
        let stream = container.logs(follow).await.map_err(|e| Error::Unavailable { message: error_chain(&e) })?;
        Ok(stream.map(|chunk| chunk.map_err(std::io::Error::other)))
    }

    /// Starts triggering every stored subscription of the enabled extensions (at startup).
    pub async fn restore_subscriptions(&self) -> Result<()> {
        if self.orchestrator.cluster().store.is_some() {
            // The leading server starts them (`keep_extensions_in_step`).
            self.extensions.load_containers().await?;
        } else {
            self.extensions.start_containers().await?;
        }
        self.extensions.restore(None, Arc::new(self.clone())).await
    }

    /// On servers sharing their state, at every beat: takes up the subscriptions made, changed or removed through
    /// the other servers, so that each server's timers tick for every subscription (and, a tick being recorded
    /// with compare-and-set, one of them starts each tick's run); and keeps the container extensions supervised
    /// by the leading server alone.
    pub async fn keep_extensions_in_step(self) {
        let cluster = self.orchestrator.cluster().clone();
        let mut confirmed = std::time::Instant::now();
        loop {
            if let Err(e) = self.extensions.reconcile(Arc::new(self.clone())).await {
                tracing::warn!(error = %e, "could not bring this server's subscriptions in step with the stored ones");
            }
            // Container extensions run once: the leading server supervises them; the others call them where it
            // recorded them.
            match cluster.leader().await {
                Ok(leader) => {
                    confirmed = std::time::Instant::now();
                    let leading = leader.as_deref() == Some(cluster.me.id.as_str());
                    // Not while an install or uninstall of this server is under way.
                    let _installing = self.installing.lock().await;
                    let skip = self.pending_installs().clone();
                    if let Err(e) = self.extensions.lead_containers(leading, &skip).await {
                        tracing::warn!(error = %e, "could not bring the container extensions in step");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not tell which server leads");
                    // Unable to tell for half a lease: another server may lead by now, so this one lets go.
                    if confirmed.elapsed() > cluster.lease / 2 {
                        self.extensions.release_containers().await;
                    }
                }
            }
            tokio::time::sleep(cluster.beat_every()).await;
        }
    }

    pub async fn shutdown_extensions(&self) {
        self.extensions.shutdown().await;
    }

    /// Hands a request from the external-events listener to the extension it names.
    pub async fn external_event(&self, extension_id: &str, event: ExternalEvent) -> Result<ExternalResponse> {
        let extension = self.extensions.find(extension_id).await?;
        if !self.extensions.is_enabled(extension_id).await? {
            return Err(Error::conflict(format!(
                "extension '{extension_id}' is disabled and takes no external events; enable it with `gofer \
                 extension enable {extension_id}`"
            )));
        }
        Ok(extension.external_event(event, Arc::new(self.clone())).await)
    }

    /// Every subscription to an extension.
    pub async fn list_extension_subscriptions(&self, extension_id: &str) -> Result<Vec<Subscription>> {
        if self.pending_installs().contains(extension_id) {
            return Ok(Vec::new());
        }
        self.extensions.find(extension_id).await?;
        Ok(self.with_next_fire(self.storage.list_extension_subscriptions(extension_id).await?))
    }

    /// The extension's own view of itself.
    pub async fn debug_extension(&self, extension_id: &str) -> Result<String> {
        let extension = self.extensions.find(extension_id).await?;
        extension.debug().await.map_err(|e| Error::Unavailable {
            message: format!("extension '{extension_id}' did not answer its debug call: {}", error_chain(&e)),
        })
    }
}
