//! Sealed secrets and the key check.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gofer_storage::{Operation, Result, SealedSecret, SecretScope, SecretStore};

use crate::codec::{
    Columns, GlobalSecret, PipelineSecret, Record, all, execute, first, int, pipeline_exists, to_json, value,
};
use crate::{PostgresStorage, commit, not_found};

/// Reads secrets of one scope (all of them when `key` is None).
async fn query_secrets(
    client: &impl GenericClient,
    scope: &SecretScope,
    key: Option<&str>,
) -> Result<Vec<SealedSecret>> {
    const CONTEXT: &str = "read secrets";
    let unwrap = |secrets: Vec<PipelineSecret>| secrets.into_iter().map(|s| s.0).collect();
    let unwrap_global = |secrets: Vec<GlobalSecret>| secrets.into_iter().map(|s| s.0).collect();
    match (scope, key) {
        (SecretScope::Pipeline { namespace_id, pipeline_id }, Some(key)) => {
            let rest = "WHERE namespace_id = $1 AND pipeline_id = $2 AND key = $3";
            all(client, CONTEXT, rest, &[namespace_id, pipeline_id, &key]).await.map(unwrap)
        }
        (SecretScope::Pipeline { namespace_id, pipeline_id }, None) => {
            let rest = "WHERE namespace_id = $1 AND pipeline_id = $2 ORDER BY key";
            all(client, CONTEXT, rest, &[namespace_id, pipeline_id]).await.map(unwrap)
        }
        (SecretScope::Global, Some(key)) => all(client, CONTEXT, "WHERE key = $1", &[&key]).await.map(unwrap_global),
        (SecretScope::Global, None) => all(client, CONTEXT, "ORDER BY key", &[]).await.map(unwrap_global),
    }
}

async fn update_sealed(client: &impl GenericClient, secret: &SealedSecret) -> Result<u64> {
    const CONTEXT: &str = "re-seal a secret";
    match &secret.scope {
        SecretScope::Pipeline { namespace_id, pipeline_id } => {
            execute(
                client,
                CONTEXT,
                "UPDATE pipeline_secrets SET sealed = $4 WHERE namespace_id = $1 AND pipeline_id = $2 AND key = $3",
                &[namespace_id, pipeline_id, &secret.key, &secret.sealed],
            )
            .await
        }
        SecretScope::Global => {
            execute(
                client,
                CONTEXT,
                "UPDATE global_secrets SET sealed = $2 WHERE key = $1",
                &[&secret.key, &secret.sealed],
            )
            .await
        }
    }
}

const SET_KEY_CHECK: &str =
    "INSERT INTO secret_key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed";

#[async_trait]
impl SecretStore for PostgresStorage {
    async fn put_secret(&self, secret: &SealedSecret) -> Result<()> {
        const CONTEXT: &str = "store a secret";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        match &secret.scope {
            SecretScope::Pipeline { namespace_id, pipeline_id } => {
                pipeline_exists(&tx, namespace_id, pipeline_id, false).await?;
                let sql = format!(
                    "INSERT INTO pipeline_secrets ({}) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (namespace_id, pipeline_id, key) DO UPDATE SET sealed = excluded.sealed, \
                     modified = excluded.modified",
                    PipelineSecret::COLUMNS
                );
                execute(
                    &tx,
                    CONTEXT,
                    &sql,
                    &[
                        namespace_id,
                        pipeline_id,
                        &secret.key,
                        &secret.sealed,
                        &int(secret.created)?,
                        &int(secret.modified)?,
                    ],
                )
                .await?;
            }
            SecretScope::Global => {
                let sql = format!(
                    "INSERT INTO global_secrets ({}) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (key) DO UPDATE SET sealed = excluded.sealed, \
                     namespaces = excluded.namespaces, modified = excluded.modified",
                    GlobalSecret::COLUMNS
                );
                execute(
                    &tx,
                    CONTEXT,
                    &sql,
                    &[
                        &secret.key,
                        &secret.sealed,
                        &to_json(&secret.namespaces)?,
                        &int(secret.created)?,
                        &int(secret.modified)?,
                    ],
                )
                .await?;
            }
        }
        commit(tx, CONTEXT).await
    }

    async fn get_secret(&self, scope: &SecretScope, key: &str) -> Result<SealedSecret> {
        let session = self.session(Operation::Read, "read secrets").await?;
        let found = query_secrets(session.client(), scope, Some(key)).await?;
        found.into_iter().next().ok_or_else(|| not_found(format!("{scope} secret '{key}'")))
    }

    async fn list_secrets(&self, scope: &SecretScope) -> Result<Vec<SealedSecret>> {
        let session = self.session(Operation::Read, "read secrets").await?;
        query_secrets(session.client(), scope, None).await
    }

    async fn delete_secret(&self, scope: &SecretScope, key: &str) -> Result<()> {
        const CONTEXT: &str = "delete a secret";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let deleted = match scope {
            SecretScope::Pipeline { namespace_id, pipeline_id } => {
                execute(
                    session.client(),
                    CONTEXT,
                    "DELETE FROM pipeline_secrets WHERE namespace_id = $1 AND pipeline_id = $2 AND key = $3",
                    &[namespace_id, pipeline_id, &key],
                )
                .await?
            }
            SecretScope::Global => {
                execute(session.client(), CONTEXT, "DELETE FROM global_secrets WHERE key = $1", &[&key]).await?
            }
        };
        if deleted == 0 {
            return Err(not_found(format!("{scope} secret '{key}'")));
        }
        Ok(())
    }

    async fn all_secrets(&self) -> Result<Vec<SealedSecret>> {
        let session = self.session(Operation::Read, "read secrets").await?;
        let pipelines = all::<PipelineSecret>(session.client(), "read secrets", "", &[]).await?;
        let mut secrets: Vec<SealedSecret> = pipelines.into_iter().map(|s| s.0).collect();
        secrets.extend(query_secrets(session.client(), &SecretScope::Global, None).await?);
        Ok(secrets)
    }

    async fn reseal_secrets(&self, secrets: &[SealedSecret], key_check: &[u8]) -> Result<()> {
        const CONTEXT: &str = "re-seal secrets";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        for secret in secrets {
            if update_sealed(&tx, secret).await? == 0 {
                return Err(not_found(format!("{} secret '{}'", secret.scope, secret.key)));
            }
        }
        execute(&tx, "store the key check", SET_KEY_CHECK, &[&key_check]).await?;
        commit(tx, CONTEXT).await
    }

    async fn get_secret_key_check(&self) -> Result<Option<Vec<u8>>> {
        const CONTEXT: &str = "read the key check";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let row = first(session.client(), CONTEXT, "SELECT sealed FROM secret_key_check WHERE id = 1", &[]).await?;
        row.map(|row| value(CONTEXT, row.bytes(0))).transpose()
    }

    async fn set_secret_key_check(&self, sealed: &[u8]) -> Result<()> {
        const CONTEXT: &str = "store the key check";
        let session = self.session(Operation::Write, CONTEXT).await?;
        execute(session.client(), CONTEXT, SET_KEY_CHECK, &[&sealed]).await?;
        Ok(())
    }
}
