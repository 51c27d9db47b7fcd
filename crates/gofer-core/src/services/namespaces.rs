//! Namespaces: the default one every Gofer has, and the ones people make and delete.

use gofer_api::epoch_millis;
use gofer_api::models::{DEFAULT_NAMESPACE, EventKind, Namespace};
use gofer_api::requests::{MAX_PAGE_LIMIT, PageQuery};
use gofer_storage::Page;

use gofer_api::permissions::Token;
use gofer_storage::Visible;

use crate::error::{Error, Result};
use crate::events;
use crate::{Gofer, identifier, page, paged, text};

impl Gofer {
    /// Makes sure the `default` namespace exists.
    pub async fn ensure_default_namespace(&self) -> Result<()> {
        match self.storage.get_namespace(DEFAULT_NAMESPACE).await {
            Ok(_) => Ok(()),
            Err(gofer_storage::Error::NotFound { .. }) => {
                let now = epoch_millis();
                let namespace = Namespace {
                    id: DEFAULT_NAMESPACE.into(),
                    name: "Default".into(),
                    description: "The namespace every Gofer has.".into(),
                    created: now,
                    modified: now,
                };
                match self.storage.create_namespace(&namespace).await {
                    Ok(()) | Err(gofer_storage::Error::Exists { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The namespaces `caller` may read, newest first (filtered in the query: pages are full).
    pub async fn list_namespaces(
        &self,
        caller: Option<&Token>,
        query: PageQuery,
    ) -> Result<(Vec<Namespace>, Option<u64>)> {
        let visible = self.visible_namespaces(caller).await?;
        let items = self.storage.list_namespaces(page(query)?, &visible).await?;
        Ok(paged(items, query))
    }

    pub async fn get_namespace(&self, id: &str) -> Result<Namespace> {
        Ok(self.storage.get_namespace(id).await?)
    }

    pub async fn create_namespace(&self, id: &str, name: &str, description: &str) -> Result<Namespace> {
        identifier("namespace id", id)?;
        text::check("namespace name", name, text::MAX_NAME)?;
        text::check("namespace description", description, text::MAX_DESCRIPTION)?;
        let now = epoch_millis();
        let namespace = Namespace {
            id: id.into(),
            name: if name.is_empty() { id.into() } else { name.into() },
            description: description.into(),
            created: now,
            modified: now,
        };
        self.storage.create_namespace(&namespace).await?;
        Ok(namespace)
    }

    /// Changes a namespace's name or description.
    pub async fn update_namespace(
        &self,
        id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Namespace> {
        let mut namespace = self.storage.get_namespace(id).await?;
        if let Some(name) = name {
            if name.trim().is_empty() {
                return Err(Error::invalid("a namespace's name cannot be empty"));
            }
            text::check("namespace name", &name, text::MAX_NAME)?;
            namespace.name = name;
        }
        if let Some(description) = description {
            text::check("namespace description", &description, text::MAX_DESCRIPTION)?;
            namespace.description = description;
        }
        namespace.modified = epoch_millis();
        self.storage.update_namespace(&namespace).await?;
        Ok(namespace)
    }

    /// Deletes a namespace with all its pipelines (and their secrets, logs and objects). The default namespace
    /// stays; refused while runs in the namespace are in flight.
    pub async fn delete_namespace(&self, namespace_id: &str) -> Result<()> {
        if namespace_id == DEFAULT_NAMESPACE {
            return Err(Error::invalid("the default namespace cannot be deleted"));
        }
        self.storage.get_namespace(namespace_id).await?;
        self.refuse_unfinished(namespace_id, None).await?;
        let mut offset = 0;
        loop {
            let every = Page::new(MAX_PAGE_LIMIT, offset);
            let pipelines = self.storage.list_pipelines(namespace_id, every, &Visible::All).await?;
            for pipeline in &pipelines {
                self.stop_subscriptions(namespace_id, &pipeline.pipeline_id).await?;
            }
            if (pipelines.len() as u64) < MAX_PAGE_LIMIT {
                break;
            }
            offset += MAX_PAGE_LIMIT;
        }
        let deleted = events::now(EventKind::NamespaceDeleted { namespace_id: namespace_id.into() });
        self.events.record(|| self.storage.delete_namespace(namespace_id, &deleted)).await?;
        self.metrics.forget_namespace(namespace_id);
        self.delete_files(namespace_id, None).await?;
        Ok(())
    }
}
