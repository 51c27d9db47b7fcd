//! Objects of pipelines, runs and extensions: the scope is checked to exist, then the object store streams.

use bytes::Bytes;
use futures::Stream;
use gofer_api::models::ObjectInfo;

use crate::Gofer;
use crate::error::Result;
use crate::objects::{ObjectScope, Objects};

impl Gofer {
    /// The object store, once the scope is known to exist.
    pub(crate) async fn objects_of(&self, scope: &ObjectScope) -> Result<&Objects> {
        match scope {
            ObjectScope::Pipeline { namespace_id, pipeline_id } => {
                self.pipeline_scope(namespace_id, pipeline_id).await?;
            }
            ObjectScope::Run { namespace_id, pipeline_id, run_id } => {
                self.pipeline_scope(namespace_id, pipeline_id).await?;
                self.storage.get_run(namespace_id, pipeline_id, *run_id).await?;
            }
            ObjectScope::Extension { extension_id } => {
                self.extensions.find(extension_id).await?;
            }
        }
        Ok(&self.objects)
    }

    /// Stores an object from a byte stream (replacing one with the same key).
    pub async fn put_object<S, E>(&self, scope: &ObjectScope, key: &str, body: S) -> Result<ObjectInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.objects_of(scope).await?.put(scope, key, body).await
    }

    pub async fn get_object(
        &self,
        scope: &ObjectScope,
        key: &str,
    ) -> Result<(ObjectInfo, futures::stream::BoxStream<'static, std::io::Result<Bytes>>)> {
        self.objects_of(scope).await?.get(scope, key).await
    }

    pub async fn list_objects(&self, scope: &ObjectScope) -> Result<Vec<ObjectInfo>> {
        self.objects_of(scope).await?.list(scope).await
    }

    pub async fn delete_object(&self, scope: &ObjectScope, key: &str) -> Result<()> {
        self.objects_of(scope).await?.delete(scope, key).await
    }

    /// The largest object an upload may carry.
    pub fn max_object_bytes(&self) -> u64 {
        self.objects.limits().max_object_bytes
    }
}
