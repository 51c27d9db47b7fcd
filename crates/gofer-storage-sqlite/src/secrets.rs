//! Sealed secrets and the key check.

use async_trait::async_trait;
use gofer_storage::{Result, SealedSecret, SecretScope, SecretStore};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{GlobalSecret, PipelineSecret, Record, all, pipeline_exists, to_json};
use crate::{SqliteStorage, backend, not_found};

/// Reads secrets of one scope (all of them when `key` is None).
pub(crate) fn query_secrets(conn: &Connection, scope: &SecretScope, key: Option<&str>) -> Result<Vec<SealedSecret>> {
    const CONTEXT: &str = "read secrets";
    let unwrap = |secrets: Vec<PipelineSecret>| secrets.into_iter().map(|s| s.0).collect();
    let unwrap_global = |secrets: Vec<GlobalSecret>| secrets.into_iter().map(|s| s.0).collect();
    match (scope, key) {
        (SecretScope::Pipeline { namespace_id, pipeline_id }, Some(key)) => {
            let rest = "WHERE namespace_id = ?1 AND pipeline_id = ?2 AND key = ?3";
            all(conn, CONTEXT, rest, params![namespace_id, pipeline_id, key]).map(unwrap)
        }
        (SecretScope::Pipeline { namespace_id, pipeline_id }, None) => {
            let rest = "WHERE namespace_id = ?1 AND pipeline_id = ?2 ORDER BY key";
            all(conn, CONTEXT, rest, params![namespace_id, pipeline_id]).map(unwrap)
        }
        (SecretScope::Global, Some(key)) => all(conn, CONTEXT, "WHERE key = ?1", [key]).map(unwrap_global),
        (SecretScope::Global, None) => all(conn, CONTEXT, "ORDER BY key", []).map(unwrap_global),
    }
}

pub(crate) fn update_sealed(tx: &rusqlite::Transaction<'_>, secret: &SealedSecret) -> Result<usize> {
    let context = "re-seal a secret";
    match &secret.scope {
        SecretScope::Pipeline { namespace_id, pipeline_id } => tx.execute(
            "UPDATE pipeline_secrets SET sealed = ?4 WHERE namespace_id = ?1 AND pipeline_id = ?2 AND key = ?3",
            params![namespace_id, pipeline_id, secret.key, secret.sealed],
        ),
        SecretScope::Global => {
            tx.execute("UPDATE global_secrets SET sealed = ?2 WHERE key = ?1", params![secret.key, secret.sealed])
        }
    }
    .map_err(|e| backend(context, e))
}

#[async_trait]
impl SecretStore for SqliteStorage {
    async fn put_secret(&self, secret: &SealedSecret) -> Result<()> {
        let secret = secret.clone();
        self.write("store a secret", move |tx| {
            match &secret.scope {
                SecretScope::Pipeline { namespace_id, pipeline_id } => {
                    pipeline_exists(tx, namespace_id, pipeline_id)?;
                    tx.execute(
                        &format!(
                            "INSERT INTO pipeline_secrets ({columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                             ON CONFLICT (namespace_id, pipeline_id, key) DO UPDATE SET sealed = excluded.sealed, \
                             modified = excluded.modified",
                            columns = PipelineSecret::COLUMNS
                        ),
                        params![namespace_id, pipeline_id, secret.key, secret.sealed, secret.created, secret.modified],
                    )
                }
                SecretScope::Global => tx.execute(
                    &format!(
                        "INSERT INTO global_secrets ({columns}) VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (key) DO UPDATE SET sealed = excluded.sealed, \
                         namespaces = excluded.namespaces, modified = excluded.modified",
                        columns = GlobalSecret::COLUMNS
                    ),
                    params![secret.key, secret.sealed, to_json(&secret.namespaces)?, secret.created, secret.modified],
                ),
            }
            .map_err(|e| backend("store a secret", e))?;
            Ok(())
        })
        .await
    }

    async fn get_secret(&self, scope: &SecretScope, key: &str) -> Result<SealedSecret> {
        let found = self.read(|conn| query_secrets(conn, scope, Some(key))).await?;
        found.into_iter().next().ok_or_else(|| not_found(format!("{scope} secret '{key}'")))
    }

    async fn list_secrets(&self, scope: &SecretScope) -> Result<Vec<SealedSecret>> {
        self.read(|conn| query_secrets(conn, scope, None)).await
    }

    async fn delete_secret(&self, scope: &SecretScope, key: &str) -> Result<()> {
        let (scope, key) = (scope.clone(), key.to_string());
        self.write("delete a secret", move |tx| {
            let deleted = match &scope {
                SecretScope::Pipeline { namespace_id, pipeline_id } => tx.execute(
                    "DELETE FROM pipeline_secrets WHERE namespace_id = ?1 AND pipeline_id = ?2 AND key = ?3",
                    params![namespace_id, pipeline_id, key],
                ),
                SecretScope::Global => tx.execute("DELETE FROM global_secrets WHERE key = ?1", [&key]),
            }
            .map_err(|e| backend("delete a secret", e))?;
            if deleted == 0 {
                return Err(not_found(format!("{scope} secret '{key}'")));
            }
            Ok(())
        })
        .await
    }

    async fn all_secrets(&self) -> Result<Vec<SealedSecret>> {
        self.read(|conn| {
            let pipelines = all::<PipelineSecret>(conn, "read secrets", "", [])?;
            let mut secrets: Vec<SealedSecret> = pipelines.into_iter().map(|s| s.0).collect();
            secrets.extend(query_secrets(conn, &SecretScope::Global, None)?);
            Ok(secrets)
        })
        .await
    }

    async fn reseal_secrets(&self, secrets: &[SealedSecret], key_check: &[u8]) -> Result<()> {
        let (secrets, key_check) = (secrets.to_vec(), key_check.to_vec());
        self.write("re-seal secrets", move |tx| {
            for secret in &secrets {
                if update_sealed(tx, secret)? == 0 {
                    return Err(not_found(format!("{} secret '{}'", secret.scope, secret.key)));
                }
            }
            tx.execute(
                "INSERT INTO secret_key_check (id, sealed) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed",
                [&key_check],
            )
            .map_err(|e| backend("store the key check", e))?;
            Ok(())
        })
        .await
    }

    async fn get_secret_key_check(&self) -> Result<Option<Vec<u8>>> {
        self.read(|conn| {
            conn.query_row("SELECT sealed FROM secret_key_check WHERE id = 1", [], |r| r.get(0))
                .optional()
                .map_err(|e| backend("read the key check", e))
        })
        .await
    }

    async fn set_secret_key_check(&self, sealed: &[u8]) -> Result<()> {
        let sealed = sealed.to_vec();
        self.write("store the key check", move |tx| {
            tx.execute(
                "INSERT INTO secret_key_check (id, sealed) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed",
                [&sealed],
            )
            .map_err(|e| backend("store the key check", e))?;
            Ok(())
        })
        .await
    }
}
