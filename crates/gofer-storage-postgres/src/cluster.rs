//! Several servers on one database: heartbeats, claims within global limits, adoption of a dead server's runs, and
//! the fence that refuses a server's writes to runs it no longer owns.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gofer_api::models::Run;
use gofer_storage::{Claim, ClusterStore, Error, ExtensionEndpoint, Limits, Operation, OwnedRun, Result, ServerRecord};

use crate::codec::{Columns, Record, all, execute, first, int, rows, value};
use crate::{PostgresStorage, commit, not_found};

/// The advisory lock claims and adoptions take, one at a time across servers, so that the counts they decide on
/// hold until they commit ("claim" in ASCII).
const CLAIM_LOCK: i64 = 0x0063_6c61_696d;

/// The database's clock in epoch milliseconds (`clock_timestamp`: the time of the statement, not of the
/// transaction's start).
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// Refuses the write of a server that no longer owns the run (another adopted it), and keeps the owner from changing
/// until the write commits. Nothing to check for a storage that is not a server's, or a run still queued.
pub(crate) async fn fence(
    client: &impl GenericClient,
    server: Option<&str>,
    namespace_id: &str,
    pipeline_id: &str,
    run_id: u64,
) -> Result<()> {
    const CONTEXT: &str = "check who drives a run";
    let Some(server) = server else { return Ok(()) };
    let row = first(
        client,
        CONTEXT,
        "SELECT owner FROM runs WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3 FOR SHARE",
        &[&namespace_id, &pipeline_id, &int(run_id)?],
    )
    .await?;
    match row.map(|row| value(CONTEXT, row.opt_text(0))).transpose()? {
        None => Err(not_found(format!("run {run_id} of pipeline '{pipeline_id}' in namespace '{namespace_id}'"))),
        Some(Some(owner)) if owner != server => Err(Error::Conflict {
            message: format!(
                "run {run_id} of pipeline '{pipeline_id}' is driven by server {owner} now; this server ({server}) \
                 lost it (its heartbeat stopped for longer than the lease)"
            ),
        }),
        Some(_) => Ok(()),
    }
}

impl Record for ServerRecord {
    const TABLE: &str = "servers";
    const COLUMNS: &str = "id, hostname, address, version, started, joined, heartbeat";

    fn from_row(row: &tokio_postgres::Row) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ServerRecord {
            id: row.text(0)?,
            hostname: row.text(1)?,
            address: row.text(2)?,
            version: row.text(3)?,
            started: row.uint(4)?,
            joined: row.uint(5)?,
            heartbeat: row.uint(6)?,
        })
    }
}

#[async_trait]
impl ClusterStore for PostgresStorage {
    async fn installation_id(&self, proposed: &str) -> Result<String> {
        const CONTEXT: &str = "read the installation id";
        let session = self.session(Operation::Write, CONTEXT).await?;
        execute(
            session.client(),
            CONTEXT,
            "INSERT INTO system (key, value) VALUES ('installation_id', $1) ON CONFLICT (key) DO NOTHING",
            &[&proposed],
        )
        .await?;
        let row = first(session.client(), CONTEXT, "SELECT value FROM system WHERE key = 'installation_id'", &[])
            .await?
            .ok_or_else(|| crate::codec_error(CONTEXT, "the installation id vanished"))?;
        value(CONTEXT, row.text(0))
    }

    async fn now(&self) -> Result<u64> {
        const CONTEXT: &str = "read the database's clock";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let row = first(session.client(), CONTEXT, &format!("SELECT {NOW}"), &[])
            .await?
            .ok_or_else(|| crate::codec_error(CONTEXT, "no row"))?;
        value(CONTEXT, row.uint(0))
    }

    async fn heartbeat(&self, server: &ServerRecord) -> Result<()> {
        const CONTEXT: &str = "record a heartbeat";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let sql = format!(
            "INSERT INTO servers ({}) VALUES ($1, $2, $3, $4, $5, {NOW}, {NOW}) \
             ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat",
            ServerRecord::COLUMNS
        );
        let started = int(server.started)?;
        let params: [crate::codec::Param<'_>; 5] =
            [&server.id, &server.hostname, &server.address, &server.version, &started];
        execute(session.client(), CONTEXT, &sql, &params).await?;
        Ok(())
    }

    async fn leave(&self, server_id: &str) -> Result<()> {
        const CONTEXT: &str = "leave the cluster";
        let session = self.session(Operation::Write, CONTEXT).await?;
        execute(session.client(), CONTEXT, "UPDATE servers SET heartbeat = 0 WHERE id = $1", &[&server_id]).await?;
        Ok(())
    }

    async fn list_servers(&self) -> Result<Vec<ServerRecord>> {
        const CONTEXT: &str = "list servers";
        let session = self.session(Operation::Read, CONTEXT).await?;
        all::<ServerRecord>(session.client(), CONTEXT, "ORDER BY id", &[]).await
    }

    async fn list_owned_runs(&self) -> Result<Vec<OwnedRun>> {
        const CONTEXT: &str = "list the runs servers drive";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let found = rows(
            session.client(),
            CONTEXT,
            "SELECT namespace_id, pipeline_id, run_id, owner FROM runs \
             WHERE owner IS NOT NULL AND state <> 'complete' ORDER BY owner, created, namespace_id, pipeline_id, run_id",
            &[],
        )
        .await?;
        found
            .iter()
            .map(|row| {
                Ok(OwnedRun {
                    namespace_id: value(CONTEXT, row.text(0))?,
                    pipeline_id: value(CONTEXT, row.text(1))?,
                    run_id: value(CONTEXT, row.uint(2))?,
                    owner: value(CONTEXT, row.text(3))?,
                })
            })
            .collect()
    }

    async fn claim_run(
        &self,
        server: &str,
        namespace_id: &str,
        pipeline_id: &str,
        run_id: u64,
        limits: Option<Limits>,
    ) -> Result<Claim> {
        const CONTEXT: &str = "claim a queued run";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        execute(&tx, CONTEXT, "SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK]).await?;
        let run = int(run_id)?;
        let queued = first(
            &tx,
            CONTEXT,
            "SELECT 1 FROM runs WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3 \
             AND owner IS NULL AND state = 'pending' FOR UPDATE",
            &[&namespace_id, &pipeline_id, &run],
        )
        .await?;
        if queued.is_none() {
            return Ok(Claim::Gone);
        }
        if let Some(limits) = limits {
            let counts = first(
                &tx,
                CONTEXT,
                "SELECT count(*), count(*) FILTER (WHERE namespace_id = $1 AND pipeline_id = $2) FROM runs \
                 WHERE owner IS NOT NULL AND state <> 'complete'",
                &[&namespace_id, &pipeline_id],
            )
            .await?
            .ok_or_else(|| crate::codec_error(CONTEXT, "a count returned no row"))?;
            if value(CONTEXT, counts.uint(0))? >= limits.global {
                return Ok(Claim::GlobalLimit);
            }
            if value(CONTEXT, counts.uint(1))? >= limits.pipeline {
                return Ok(Claim::PipelineLimit);
            }
        }
        let claimed = all::<Run>(
            &tx,
            CONTEXT,
            "WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3",
            &[&namespace_id, &pipeline_id, &run],
        )
        .await?;
        execute(
            &tx,
            CONTEXT,
            "UPDATE runs SET owner = $4 WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3",
            &[&namespace_id, &pipeline_id, &run, &server],
        )
        .await?;
        commit(tx, CONTEXT).await?;
        Ok(claimed.into_iter().next().map_or(Claim::Gone, |run| Claim::Claimed(Box::new(run))))
    }

    async fn adopt_runs(&self, server: &str, stale_before: u64) -> Result<Vec<Run>> {
        const CONTEXT: &str = "adopt the runs of servers that stopped";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        execute(&tx, CONTEXT, "SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK]).await?;
        let stale = int(stale_before)?;
        // Runs whose owner is not a live server (it stopped beating, or it is gone from the table), and runs in
        // flight with no owner at all (left by a Gofer from before servers shared their state).
        let adopted = rows(
            &tx,
            CONTEXT,
            "UPDATE runs SET owner = $1 WHERE state <> 'complete' AND ( \
                 (owner IS NULL AND state <> 'pending') \
                 OR (owner <> $1 AND owner NOT IN (SELECT id FROM servers WHERE heartbeat >= $2))) \
             RETURNING namespace_id, pipeline_id, run_id",
            &[&server, &stale],
        )
        .await?;
        execute(&tx, CONTEXT, "DELETE FROM servers WHERE heartbeat < $1 AND id <> $2", &[&stale, &server]).await?;
        let mut runs = Vec::with_capacity(adopted.len());
        for row in &adopted {
            let (ns, pipeline, run) =
                (value(CONTEXT, row.text(0))?, value(CONTEXT, row.text(1))?, value(CONTEXT, row.uint(2))?);
            runs.extend(
                all::<Run>(
                    &tx,
                    CONTEXT,
                    "WHERE namespace_id = $1 AND pipeline_id = $2 AND run_id = $3",
                    &[&ns, &pipeline, &int(run)?],
                )
                .await?,
            );
        }
        commit(tx, CONTEXT).await?;
        runs.sort_by(|a, b| {
            (a.created, &a.namespace_id, &a.pipeline_id, a.run_id).cmp(&(
                b.created,
                &b.namespace_id,
                &b.pipeline_id,
                b.run_id,
            ))
        });
        Ok(runs)
    }

    async fn put_extension_endpoint(&self, endpoint: &ExtensionEndpoint) -> Result<()> {
        const CONTEXT: &str = "record where an extension answers";
        let session = self.session(Operation::Write, CONTEXT).await?;
        let stored = execute(
            session.client(),
            CONTEXT,
            "INSERT INTO extension_endpoints (id, server, base_url, sealed_secret, container_id, documentation) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM extension_registrations WHERE id = $1) \
             ON CONFLICT (id) DO UPDATE SET server = excluded.server, base_url = excluded.base_url, \
             sealed_secret = excluded.sealed_secret, container_id = excluded.container_id, \
             documentation = excluded.documentation",
            &[
                &endpoint.extension_id,
                &endpoint.server,
                &endpoint.base_url,
                &endpoint.sealed_secret,
                &endpoint.container_id,
                &endpoint.documentation,
            ],
        )
        .await?;
        if stored == 0 {
            return Err(not_found(format!("extension '{}'", endpoint.extension_id)));
        }
        Ok(())
    }

    async fn get_extension_endpoint(&self, extension_id: &str) -> Result<Option<ExtensionEndpoint>> {
        const CONTEXT: &str = "read where an extension answers";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let row = first(
            session.client(),
            CONTEXT,
            "SELECT id, server, base_url, sealed_secret, container_id, documentation FROM extension_endpoints \
             WHERE id = $1",
            &[&extension_id],
        )
        .await?;
        row.map(|row| {
            Ok(ExtensionEndpoint {
                extension_id: value(CONTEXT, row.text(0))?,
                server: value(CONTEXT, row.text(1))?,
                base_url: value(CONTEXT, row.text(2))?,
                sealed_secret: value(CONTEXT, row.bytes(3))?,
                container_id: value(CONTEXT, row.text(4))?,
                documentation: value(CONTEXT, row.text(5))?,
            })
        })
        .transpose()
    }

    async fn delete_extension_endpoint(&self, extension_id: &str, server: &str) -> Result<()> {
        const CONTEXT: &str = "forget where an extension answers";
        let session = self.session(Operation::Write, CONTEXT).await?;
        execute(
            session.client(),
            CONTEXT,
            "DELETE FROM extension_endpoints WHERE id = $1 AND server = $2",
            &[&extension_id, &server],
        )
        .await?;
        Ok(())
    }
}
