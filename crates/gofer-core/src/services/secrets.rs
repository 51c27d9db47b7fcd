//! Pipeline and global secrets: metadata for readers, values only for `secrets:reveal`.

use gofer_api::models::Secret;
use gofer_api::permissions::Token;
use gofer_api::requests::PutSecretRequest;
use gofer_storage::SecretScope;

use crate::error::Result;
use crate::{Gofer, REVEAL_SECRETS};

impl Gofer {
    /// Where a pipeline's secrets live, once the namespace and pipeline are known to exist.
    pub(crate) async fn pipeline_scope(&self, namespace_id: &str, pipeline_id: &str) -> Result<SecretScope> {
        self.storage.get_namespace(namespace_id).await?;
        self.storage.get_pipeline(namespace_id, pipeline_id).await?;
        Ok(SecretScope::Pipeline { namespace_id: namespace_id.into(), pipeline_id: pipeline_id.into() })
    }

    pub async fn put_pipeline_secret(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        key: &str,
        request: PutSecretRequest,
    ) -> Result<Secret> {
        let scope = self.pipeline_scope(namespace_id, pipeline_id).await?;
        self.secrets.put(scope, key, &request.value, request.namespaces).await
    }

    /// A pipeline secret's metadata; with `include_value` also its value, which needs `secrets:reveal`.
    pub async fn get_pipeline_secret(
        &self,
        caller: Option<&Token>,
        namespace_id: &str,
        pipeline_id: &str,
        key: &str,
        include_value: bool,
    ) -> Result<Secret> {
        let scope = self.pipeline_scope(namespace_id, pipeline_id).await?;
        if include_value {
            self.require(caller, REVEAL_SECRETS, Some(namespace_id), Some(pipeline_id)).await?;
        }
        self.secrets.get(&scope, key, include_value).await
    }

    pub async fn list_pipeline_secrets(&self, namespace_id: &str, pipeline_id: &str) -> Result<Vec<Secret>> {
        let scope = self.pipeline_scope(namespace_id, pipeline_id).await?;
        self.secrets.list(&scope).await
    }

    pub async fn delete_pipeline_secret(&self, namespace_id: &str, pipeline_id: &str, key: &str) -> Result<()> {
        let scope = self.pipeline_scope(namespace_id, pipeline_id).await?;
        self.secrets.delete(&scope, key).await
    }

    pub async fn put_global_secret(&self, key: &str, request: PutSecretRequest) -> Result<Secret> {
        self.secrets.put(SecretScope::Global, key, &request.value, request.namespaces).await
    }

    /// A global secret's metadata; with `include_value` also its value, which needs `secrets:reveal`.
    pub async fn get_global_secret(&self, caller: Option<&Token>, key: &str, include_value: bool) -> Result<Secret> {
        if include_value {
            self.require(caller, REVEAL_SECRETS, None, None).await?;
        }
        self.secrets.get(&SecretScope::Global, key, include_value).await
    }

    pub async fn list_global_secrets(&self) -> Result<Vec<Secret>> {
        self.secrets.list(&SecretScope::Global).await
    }

    pub async fn delete_global_secret(&self, key: &str) -> Result<()> {
        self.secrets.delete(&SecretScope::Global, key).await
    }
}
