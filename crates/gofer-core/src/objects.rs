//! Objects: bytes stored by key for a pipeline (kept; past a per-pipeline count the oldest is evicted), for a run
//! (removed once enough newer runs exist) or for an extension. The bytes live in an `object_store` (the local
//! filesystem by default, S3-compatible by configuration), which is also the only index: listing a scope lists
//! its prefix. Uploads and downloads stream; an upload goes in parts of a few MiB, so a large object never sits
//! in memory.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use gofer_api::models::ObjectInfo;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};

use crate::error::{Error, Result};

/// Upload parts in flight at once (each up to the store's part size, 5 MiB by default).
const PARTS_IN_FLIGHT: usize = 2;

/// Whose an object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectScope {
    Pipeline { namespace_id: String, pipeline_id: String },
    Run { namespace_id: String, pipeline_id: String, run_id: u64 },
    Extension { extension_id: String },
}

impl std::fmt::Display for ObjectScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pipeline { namespace_id, pipeline_id } => write!(f, "pipeline {namespace_id}/{pipeline_id}"),
            Self::Run { namespace_id, pipeline_id, run_id } => {
                write!(f, "run {run_id} of {namespace_id}/{pipeline_id}")
            }
            Self::Extension { extension_id } => write!(f, "extension {extension_id}"),
        }
    }
}

impl ObjectScope {
    /// The folder of the scope's objects in the store.
    fn prefix(&self) -> Path {
        match self {
            Self::Pipeline { namespace_id, pipeline_id } => {
                Path::from_iter(["pipelines", namespace_id, pipeline_id, "objects"])
            }
            Self::Run { namespace_id, pipeline_id, run_id } => {
                Path::from_iter(["runs", namespace_id, pipeline_id, &run_id.to_string()])
            }
            Self::Extension { extension_id } => Path::from_iter(["extensions", extension_id]),
        }
    }
}

/// Checks an object key: letters, digits, `.`, `-` and `_`, not only dots (no way out of the scope's folder).
pub fn check_key(key: &str) -> Result<()> {
    gofer_api::config::validate_object_key(key).map_err(Error::invalid)
}

/// Limits on objects.
#[derive(Debug, Clone)]
pub struct ObjectLimits {
    /// Larger uploads are refused (413) and leave nothing behind.
    pub max_object_bytes: u64,
    /// Objects kept per pipeline; storing one more evicts the oldest.
    pub pipeline_objects: usize,
    /// Run objects are kept for this many most recent runs of a pipeline.
    pub run_objects_runs: u64,
}

/// The object store. Cheap to clone.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    limits: ObjectLimits,
}

fn store_error(what: String) -> impl FnOnce(object_store::Error) -> Error {
    move |e| match e {
        object_store::Error::NotFound { .. } => Error::NotFound { what },
        other => Error::internal(format!("reach the object store for {what}"), other),
    }
}

impl Objects {
    pub fn new(store: Arc<dyn ObjectStore>, limits: ObjectLimits) -> Self {
        Self { store, limits }
    }

    pub fn limits(&self) -> &ObjectLimits {
        &self.limits
    }

    fn path(scope: &ObjectScope, key: &str) -> Result<Path> {
        check_key(key)?;
        Ok(scope.prefix().child(key))
    }

    /// Stores an object from a stream of bytes, replacing one with the same key once the upload completed. An
    /// upload larger than the limit is aborted and leaves nothing behind.
    pub async fn put<S, E>(&self, scope: &ObjectScope, key: &str, body: S) -> Result<ObjectInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        let path = Self::path(scope, key)?;
        let what = format!("object '{key}' of {scope}");
        let upload = self.store.put_multipart(&path).await.map_err(store_error(what.clone()))?;
        let mut writer = WriteMultipart::new(upload);
        let mut size: u64 = 0;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::invalid(format!("the upload of {what} broke off: {e}")));
                }
            };
            size += chunk.len() as u64;
            if size > self.limits.max_object_bytes {
                let _ = writer.abort().await;
                return Err(Error::TooLarge {
                    message: format!(
                        "{what} is larger than this server takes ({} bytes, objects.max_object_bytes)",
                        self.limits.max_object_bytes
                    ),
                });
            }
            writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(store_error(what.clone()))?;
            writer.write(&chunk);
        }
        writer.finish().await.map_err(store_error(what.clone()))?;
        if let ObjectScope::Pipeline { .. } = scope {
            self.evict_oldest(scope).await?;
        }
        let meta = self.store.head(&path).await.map_err(store_error(what))?;
        Ok(info(key, &meta))
    }

    /// Removes a pipeline's oldest objects beyond its limit.
    async fn evict_oldest(&self, scope: &ObjectScope) -> Result<()> {
        let mut all = self.list_meta(scope).await?;
        if all.len() <= self.limits.pipeline_objects {
            return Ok(());
        }
        all.sort_by_key(|m| m.last_modified);
        let excess = all.len() - self.limits.pipeline_objects;
        for meta in all.into_iter().take(excess) {
            tracing::info!(object = %meta.location, "evicting the oldest object (objects.pipeline_objects)");
            self.store.delete(&meta.location).await.map_err(store_error(meta.location.to_string()))?;
        }
        Ok(())
    }

    async fn list_meta(&self, scope: &ObjectScope) -> Result<Vec<object_store::ObjectMeta>> {
        // Only the scope's own level: a run's prefix must not list another run's objects.
        let listed =
            self.store.list_with_delimiter(Some(&scope.prefix())).await.map_err(store_error(scope.to_string()))?;
        Ok(listed.objects)
    }

    /// An object's bytes as a stream.
    pub async fn get(
        &self,
        scope: &ObjectScope,
        key: &str,
    ) -> Result<(ObjectInfo, BoxStream<'static, std::io::Result<Bytes>>)> {
        let path = Self::path(scope, key)?;
        let got = self.store.get(&path).await.map_err(store_error(format!("object '{key}' of {scope}")))?;
        let meta = info(key, &got.meta);
        Ok((meta, got.into_stream().map_err(std::io::Error::other).boxed()))
    }

    /// A small object's bytes, for a task variable; None when it does not exist.
    pub async fn read_small(&self, scope: &ObjectScope, key: &str, max: usize) -> Result<Option<Bytes>> {
        let path = Self::path(scope, key)?;
        let what = format!("object '{key}' of {scope}");
        let meta = match self.store.head(&path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(what)(e)),
        };
        if meta.size as usize > max {
            return Err(Error::TooLarge {
                message: format!("{what} is {} bytes; a variable takes at most {max}", meta.size),
            });
        }
        let bytes = self.store.get(&path).await.map_err(store_error(what.clone()))?.bytes().await;
        bytes.map(Some).map_err(store_error(what))
    }

    pub async fn list(&self, scope: &ObjectScope) -> Result<Vec<ObjectInfo>> {
        let mut all: Vec<ObjectInfo> =
            self.list_meta(scope).await?.iter().filter_map(|m| m.location.filename().map(|key| info(key, m))).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    pub async fn delete(&self, scope: &ObjectScope, key: &str) -> Result<()> {
        let path = Self::path(scope, key)?;
        let what = format!("object '{key}' of {scope}");
        // Stores differ on deleting what is not there; ask first so that a missing key is a 404 everywhere.
        self.store.head(&path).await.map_err(store_error(what.clone()))?;
        self.store.delete(&path).await.map_err(store_error(what))
    }

    /// Deletes everything under a prefix.
    async fn delete_prefix(&self, prefix: Path) -> Result<()> {
        let locations = self.store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(prefix.to_string())(e)),
            }
        }
        Ok(())
    }

    /// Deletes a pipeline's objects and those of all its runs (when the pipeline is deleted).
    pub async fn delete_pipeline(&self, namespace_id: &str, pipeline_id: &str) -> Result<()> {
        self.delete_prefix(Path::from_iter(["pipelines", namespace_id, pipeline_id])).await?;
        self.delete_prefix(Path::from_iter(["runs", namespace_id, pipeline_id])).await
    }

    /// Deletes the objects of every pipeline and run of a namespace (when the namespace is deleted).
    pub async fn delete_namespace(&self, namespace_id: &str) -> Result<()> {
        self.delete_prefix(Path::from_iter(["pipelines", namespace_id])).await?;
        self.delete_prefix(Path::from_iter(["runs", namespace_id])).await
    }

    /// Deletes an extension's objects (when it is uninstalled).
    pub async fn delete_extension(&self, extension_id: &str) -> Result<()> {
        self.delete_prefix(Path::from_iter(["extensions", extension_id])).await
    }

    /// Deletes the objects of a pipeline's runs numbered up to `up_to_run_id`; returns those runs.
    pub async fn expire_runs(&self, namespace_id: &str, pipeline_id: &str, up_to_run_id: u64) -> Result<Vec<u64>> {
        let prefix = Path::from_iter(["runs", namespace_id, pipeline_id]);
        let listed = self.store.list_with_delimiter(Some(&prefix)).await.map_err(store_error(prefix.to_string()))?;
        let mut expired = Vec::new();
        for folder in listed.common_prefixes {
            let Some(run_id) = folder.filename().and_then(|f| f.parse::<u64>().ok()) else { continue };
            if run_id <= up_to_run_id {
                self.delete_prefix(folder).await?;
                expired.push(run_id);
            }
        }
        expired.sort_unstable();
        Ok(expired)
    }
}

fn info(key: &str, meta: &object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        size: meta.size,
        modified: u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;

    use super::*;

    fn objects(dir: &std::path::Path, pipeline_objects: usize) -> Objects {
        let store = LocalFileSystem::new_with_prefix(dir).unwrap();
        Objects::new(Arc::new(store), ObjectLimits { max_object_bytes: 1024, pipeline_objects, run_objects_runs: 2 })
    }

    fn body(bytes: &'static [u8]) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
        futures::stream::iter([Ok(Bytes::from_static(bytes))])
    }

    fn pipeline() -> ObjectScope {
        ObjectScope::Pipeline { namespace_id: "ns".into(), pipeline_id: "p".into() }
    }

    #[test]
    fn keys_cannot_leave_their_scope() {
        for good in ["report.json", "cache-v2", "a_b.tar.gz", "..hidden"] {
            check_key(good).unwrap();
        }
        for bad in ["", ".", "..", "../etc/passwd", "a/b", "a\\b", "sp ace", &"x".repeat(129)] {
            assert!(check_key(bad).unwrap_err().to_string().starts_with("invalid object key"), "{bad}");
        }
    }

    #[tokio::test]
    async fn objects_round_trip_evict_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let objects = objects(dir.path(), 2);
        let scope = pipeline();
        objects.put(&scope, "a", body(b"first")).await.unwrap();
        let (meta, stream) = objects.get(&scope, "a").await.unwrap();
        assert_eq!(meta.size, 5);
        let bytes: Vec<u8> = stream.map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(bytes, b"first");

        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        objects.put(&scope, "b", body(b"second")).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        objects.put(&scope, "c", body(b"third")).await.unwrap();
        let keys: Vec<String> = objects.list(&scope).await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["b", "c"], "the oldest was evicted");

        let too_big = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 200]))));
        let err = objects.put(&scope, "big", too_big).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(matches!(objects.get(&scope, "big").await, Err(Error::NotFound { .. })), "nothing left behind");

        for run_id in 1..=3 {
            let run = ObjectScope::Run { namespace_id: "ns".into(), pipeline_id: "p".into(), run_id };
            objects.put(&run, "out", body(b"x")).await.unwrap();
        }
        let run1 = ObjectScope::Run { namespace_id: "ns".into(), pipeline_id: "p".into(), run_id: 1 };
        assert_eq!(objects.list(&run1).await.unwrap().len(), 1, "a run lists only its own objects");
        assert_eq!(objects.expire_runs("ns", "p", 2).await.unwrap(), [1, 2]);
        assert!(objects.list(&run1).await.unwrap().is_empty());

        objects.delete_pipeline("ns", "p").await.unwrap();
        assert!(objects.list(&scope).await.unwrap().is_empty());
        assert!(matches!(objects.delete(&scope, "b").await, Err(Error::NotFound { .. })));
    }
}
