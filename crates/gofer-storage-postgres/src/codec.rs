//! Reading rows into Gofer's records and writing values into columns, as the SQLite backend does: JSON text for
//! nested values, serde names for enums, epoch milliseconds and ids as BIGINT (Gofer's unsigned values checked on
//! the way in and out, never wrapped).

use deadpool_postgres::GenericClient;
use gofer_api::models::{
    Deployment, Event, ExtensionRegistration, Namespace, Pipeline, PipelineConfig, Run, Subscription, TaskExecution,
};
use gofer_api::permissions::{Role, Token};
use gofer_storage::{CancelRequest, Page, Result, SealedSecret, SecretScope, Visible};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{backend, codec_error, not_found};

/// One bound parameter.
pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

type Decoded<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// An unsigned value as a BIGINT; values past `i64::MAX` (which Gofer's API refuses) are an error, not wrapped.
pub(crate) fn int(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|e| codec_error("store a number", e))
}

pub(crate) fn opt_int(value: Option<u64>) -> Result<Option<i64>> {
    value.map(int).transpose()
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| codec_error("encode a JSON column", e))
}

/// Stored enums are their serde names, so the database reads like the API.
pub(crate) fn enum_text<T: Serialize>(value: &T) -> Result<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(codec_error("encode an enum column", e)),
    }
}

/// A page as LIMIT and OFFSET values.
pub(crate) fn limit_offset(page: Page) -> (i64, i64) {
    (i64::try_from(page.limit).unwrap_or(i64::MAX), i64::try_from(page.offset).unwrap_or(i64::MAX))
}

/// Typed reads of a row's columns.
pub(crate) trait Columns {
    fn text(&self, index: usize) -> Decoded<String>;
    fn opt_text(&self, index: usize) -> Decoded<Option<String>>;
    fn uint(&self, index: usize) -> Decoded<u64>;
    fn opt_uint(&self, index: usize) -> Decoded<Option<u64>>;
    fn flag(&self, index: usize) -> Decoded<bool>;
    fn bytes(&self, index: usize) -> Decoded<Vec<u8>>;
    fn json<T: DeserializeOwned>(&self, index: usize) -> Decoded<T>;
    fn opt_json<T: DeserializeOwned>(&self, index: usize) -> Decoded<Option<T>>;
    fn named<T: DeserializeOwned>(&self, index: usize) -> Decoded<T>;
}

impl Columns for Row {
    fn text(&self, index: usize) -> Decoded<String> {
        Ok(self.try_get(index)?)
    }

    fn opt_text(&self, index: usize) -> Decoded<Option<String>> {
        Ok(self.try_get(index)?)
    }

    fn uint(&self, index: usize) -> Decoded<u64> {
        Ok(u64::try_from(self.try_get::<_, i64>(index)?)?)
    }

    fn opt_uint(&self, index: usize) -> Decoded<Option<u64>> {
        Ok(self.try_get::<_, Option<i64>>(index)?.map(u64::try_from).transpose()?)
    }

    fn flag(&self, index: usize) -> Decoded<bool> {
        Ok(self.try_get(index)?)
    }

    fn bytes(&self, index: usize) -> Decoded<Vec<u8>> {
        Ok(self.try_get(index)?)
    }

    fn json<T: DeserializeOwned>(&self, index: usize) -> Decoded<T> {
        Ok(serde_json::from_str(self.try_get::<_, &str>(index)?)?)
    }

    fn opt_json<T: DeserializeOwned>(&self, index: usize) -> Decoded<Option<T>> {
        Ok(self.try_get::<_, Option<&str>>(index)?.map(serde_json::from_str).transpose()?)
    }

    /// An enum stored as its serde name.
    fn named<T: DeserializeOwned>(&self, index: usize) -> Decoded<T> {
        let text: &str = self.try_get(index)?;
        Ok(T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text))?)
    }
}

/// One of Gofer's records as a table stores it: the one codec every query reads rows with.
pub(crate) trait Record: Sized {
    const TABLE: &str;
    /// Its columns, in the order `from_row` reads them (and inserts write them).
    const COLUMNS: &str;
    fn from_row(row: &Row) -> Decoded<Self>;
}

/// `SELECT <T's columns> FROM <T's table> <rest>`; `rest` is the WHERE, ORDER BY and LIMIT clauses.
fn select<T: Record>(rest: &str) -> String {
    format!("SELECT {} FROM {} {rest}", T::COLUMNS, T::TABLE)
}

/// Runs a statement (prepared once per connection) and returns its rows.
pub(crate) async fn rows(
    client: &impl GenericClient,
    context: &'static str,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<Row>> {
    let statement = client.prepare_cached(sql).await.map_err(|e| backend(context, e))?;
    client.query(&statement, params).await.map_err(|e| backend(context, e))
}

/// Runs a statement and returns its first row, if any.
pub(crate) async fn first(
    client: &impl GenericClient,
    context: &'static str,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Option<Row>> {
    Ok(rows(client, context, sql, params).await?.into_iter().next())
}

/// Runs a statement and returns how many rows it changed.
pub(crate) async fn execute(
    client: &impl GenericClient,
    context: &'static str,
    sql: &str,
    params: &[Param<'_>],
) -> Result<u64> {
    let statement = client.prepare_cached(sql).await.map_err(|e| backend(context, e))?;
    client.execute(&statement, params).await.map_err(|e| backend(context, e))
}

/// Runs an insert; a unique violation is `Exists` naming `what`.
pub(crate) async fn insert(
    client: &impl GenericClient,
    context: &'static str,
    sql: &str,
    params: &[Param<'_>],
    what: impl FnOnce() -> String,
) -> Result<u64> {
    let statement = client.prepare_cached(sql).await.map_err(|e| backend(context, e))?;
    client.execute(&statement, params).await.map_err(crate::exists_error(context, what))
}

/// Reads one value of a row.
pub(crate) fn value<T>(context: &'static str, read: Decoded<T>) -> Result<T> {
    read.map_err(|e| codec_error(context, e))
}

/// Every record matching `rest`.
pub(crate) async fn all<T: Record>(
    client: &impl GenericClient,
    context: &'static str,
    rest: &str,
    params: &[Param<'_>],
) -> Result<Vec<T>> {
    let rows = rows(client, context, &select::<T>(rest), params).await?;
    rows.iter().map(|row| T::from_row(row).map_err(|e| codec_error(context, e))).collect()
}

/// The record matching `rest`, if there is one.
pub(crate) async fn opt<T: Record>(
    client: &impl GenericClient,
    context: &'static str,
    rest: &str,
    params: &[Param<'_>],
) -> Result<Option<T>> {
    Ok(all::<T>(client, context, rest, params).await?.into_iter().next())
}

/// The record matching `rest`; `NotFound` naming `what` when there is none.
pub(crate) async fn one<T: Record>(
    client: &impl GenericClient,
    context: &'static str,
    rest: &str,
    params: &[Param<'_>],
    what: impl FnOnce() -> String,
) -> Result<T> {
    opt::<T>(client, context, rest, params).await?.ok_or_else(|| not_found(what()))
}

/// `NotFound` naming the pipeline unless it exists. With `lock`, the pipeline's row stays locked until the
/// transaction ends (the calls that decide on it and its versions take turns across servers).
pub(crate) async fn pipeline_exists(client: &impl GenericClient, ns: &str, pipeline: &str, lock: bool) -> Result<()> {
    let sql = if lock {
        "SELECT 1 FROM pipelines WHERE namespace_id = $1 AND pipeline_id = $2 FOR UPDATE"
    } else {
        "SELECT 1 FROM pipelines WHERE namespace_id = $1 AND pipeline_id = $2"
    };
    match first(client, "look up a pipeline", sql, &[&ns, &pipeline]).await? {
        Some(_) => Ok(()),
        None => Err(not_found(format!("pipeline '{pipeline}' in namespace '{ns}'"))),
    }
}

/// A condition on `column` (with a leading `AND`) that keeps the rows `visible` shows, and its patterns as LIKE
/// patterns; the placeholders are numbered from `first`. `*` becomes `%` and `?` becomes `_`; the LIKE characters
/// ids may hold (`_`, and `%`/`\` for safety) are escaped.
pub(crate) fn visible_clause(column: &str, visible: &Visible, first: usize) -> (String, Vec<String>) {
    match visible {
        Visible::All => (String::new(), Vec::new()),
        Visible::Matching(patterns) if patterns.is_empty() => (" AND FALSE".to_string(), Vec::new()),
        Visible::Matching(patterns) => {
            let likes: Vec<String> = (0..patterns.len()).map(|i| format!("{column} LIKE ${}", first + i)).collect();
            let patterns = patterns
                .iter()
                .map(|pattern| {
                    pattern
                        .chars()
                        .map(|c| match c {
                            '*' => "%".to_string(),
                            '?' => "_".to_string(),
                            '%' | '_' | '\\' => format!("\\{c}"),
                            c => c.to_string(),
                        })
                        .collect()
                })
                .collect();
            (format!(" AND ({})", likes.join(" OR ")), patterns)
        }
    }
}

impl Record for Namespace {
    const TABLE: &str = "namespaces";
    const COLUMNS: &str = "id, name, description, created, modified";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Namespace {
            id: row.text(0)?,
            name: row.text(1)?,
            description: row.text(2)?,
            created: row.uint(3)?,
            modified: row.uint(4)?,
        })
    }
}

impl Record for Pipeline {
    const TABLE: &str = "pipelines";
    const COLUMNS: &str = "namespace_id, pipeline_id, name, description, state, live_version, latest_version, \
                           created, modified, running_deployment";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Pipeline {
            namespace_id: row.text(0)?,
            pipeline_id: row.text(1)?,
            name: row.text(2)?,
            description: row.opt_text(3)?,
            state: row.named(4)?,
            live_version: row.opt_uint(5)?,
            latest_version: row.uint(6)?,
            created: row.uint(7)?,
            modified: row.uint(8)?,
            running_deployment: row.opt_uint(9)?,
        })
    }
}

impl Record for PipelineConfig {
    const TABLE: &str = "pipeline_configs";
    const COLUMNS: &str = "namespace_id, pipeline_id, version, state, hash, registered, config";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(PipelineConfig {
            namespace_id: row.text(0)?,
            pipeline_id: row.text(1)?,
            version: row.uint(2)?,
            state: row.named(3)?,
            hash: row.text(4)?,
            registered: row.uint(5)?,
            config: row.json(6)?,
        })
    }
}

impl Record for Run {
    const TABLE: &str = "runs";
    const COLUMNS: &str = "namespace_id, pipeline_id, run_id, version, state, status, status_reason, created, \
                           started, ended, initiator, variables, routing";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Run {
            namespace_id: row.text(0)?,
            pipeline_id: row.text(1)?,
            run_id: row.uint(2)?,
            version: row.uint(3)?,
            state: row.named(4)?,
            status: row.named(5)?,
            status_reason: row.opt_json(6)?,
            created: row.uint(7)?,
            started: row.uint(8)?,
            ended: row.uint(9)?,
            initiator: row.json(10)?,
            variables: row.json(11)?,
            routing: row.opt_json(12)?,
        })
    }
}

/// A deployment's columns; its run counts come from the runs it routed (`deployments::counts`).
impl Record for Deployment {
    const TABLE: &str = "deployments";
    const COLUMNS: &str = "namespace_id, pipeline_id, deployment_id, from_version, to_version, strategy, state, \
                           reason, started, ended, stage, stage_started, initiator, timeline";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Deployment {
            namespace_id: row.text(0)?,
            pipeline_id: row.text(1)?,
            deployment_id: row.uint(2)?,
            from_version: row.opt_uint(3)?,
            to_version: row.uint(4)?,
            strategy: row.json(5)?,
            state: row.named(6)?,
            reason: row.text(7)?,
            started: row.uint(8)?,
            ended: row.uint(9)?,
            stage: row.uint(10)?.try_into()?,
            stage_started: row.uint(11)?,
            initiator: row.json(12)?,
            counts: Vec::new(),
            timeline: row.json(13)?,
        })
    }
}

impl Record for TaskExecution {
    const TABLE: &str = "task_executions";
    const COLUMNS: &str = "namespace_id, pipeline_id, run_id, task_id, created, started, ended, state, status, \
                            status_reason, exit_code, image_digest, container_id, variables, task, attempt, \
                            attempts, logs_expired";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(TaskExecution {
            namespace_id: row.text(0)?,
            pipeline_id: row.text(1)?,
            run_id: row.uint(2)?,
            task_id: row.text(3)?,
            created: row.uint(4)?,
            started: row.uint(5)?,
            ended: row.uint(6)?,
            state: row.named(7)?,
            status: row.named(8)?,
            status_reason: row.opt_json(9)?,
            exit_code: row.try_get(10)?,
            image_digest: row.opt_text(11)?,
            container_id: row.opt_text(12)?,
            variables: row.json(13)?,
            task: row.json(14)?,
            attempt: row.uint(15)?.try_into()?,
            attempts: row.json(16)?,
            logs_expired: row.flag(17)?,
        })
    }
}

impl Record for Subscription {
    const TABLE: &str = "subscriptions";
    const COLUMNS: &str =
        "namespace_id, pipeline_id, extension_id, label, settings, enabled, created, last_fired, declared";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Subscription {
            namespace_id: row.text(0)?,
            pipeline_id: row.text(1)?,
            extension_id: row.text(2)?,
            label: row.text(3)?,
            settings: row.json(4)?,
            enabled: row.flag(5)?,
            created: row.uint(6)?,
            last_fired: row.uint(7)?,
            declared: row.flag(8)?,
            next_fire: None,
        })
    }
}

impl Record for ExtensionRegistration {
    const TABLE: &str = "extension_registrations";
    const COLUMNS: &str = "id, image, settings, registry_auth, created";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(ExtensionRegistration {
            id: row.text(0)?,
            image: row.text(1)?,
            settings: row.json(2)?,
            registry_auth: row.opt_json(3)?,
            created: row.uint(4)?,
        })
    }
}

impl Record for Role {
    const TABLE: &str = "roles";
    const COLUMNS: &str = "id, description, permissions, system_role";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Role { id: row.text(0)?, description: row.text(1)?, grants: row.json(2)?, system_role: row.flag(3)? })
    }
}

impl Record for Token {
    const TABLE: &str = "tokens";
    const COLUMNS: &str = "id, hash, holder, roles, created, expires, disabled, metadata";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Token {
            id: row.text(0)?,
            hash: row.text(1)?,
            user: row.text(2)?,
            roles: row.json(3)?,
            created: row.uint(4)?,
            expires: row.uint(5)?,
            disabled: row.flag(6)?,
            metadata: row.json(7)?,
        })
    }
}

/// A cancel request as its table holds it.
pub(crate) struct CancelRow(pub CancelRequest);

impl Record for CancelRow {
    const TABLE: &str = "cancel_requests";
    const COLUMNS: &str = "namespace_id, pipeline_id, run_id, task_id, reason, requested";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Self(CancelRequest {
            namespace_id: row.text(0)?,
            pipeline_id: row.text(1)?,
            run_id: row.uint(2)?,
            task_id: row.opt_text(3)?,
            reason: row.json(4)?,
            requested: row.uint(5)?,
        }))
    }
}

/// A pipeline secret as its table holds it.
pub(crate) struct PipelineSecret(pub SealedSecret);

impl Record for PipelineSecret {
    const TABLE: &str = "pipeline_secrets";
    const COLUMNS: &str = "namespace_id, pipeline_id, key, sealed, created, modified";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Self(SealedSecret {
            scope: SecretScope::Pipeline { namespace_id: row.text(0)?, pipeline_id: row.text(1)? },
            key: row.text(2)?,
            sealed: row.bytes(3)?,
            namespaces: Vec::new(),
            created: row.uint(4)?,
            modified: row.uint(5)?,
        }))
    }
}

/// A global secret as its table holds it.
pub(crate) struct GlobalSecret(pub SealedSecret);

impl Record for GlobalSecret {
    const TABLE: &str = "global_secrets";
    const COLUMNS: &str = "key, sealed, namespaces, created, modified";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Self(SealedSecret {
            scope: SecretScope::Global,
            key: row.text(0)?,
            sealed: row.bytes(1)?,
            namespaces: row.json(2)?,
            created: row.uint(3)?,
            modified: row.uint(4)?,
        }))
    }
}

impl Record for Event {
    const TABLE: &str = "events";
    const COLUMNS: &str = "id, emitted, kind";

    fn from_row(row: &Row) -> Decoded<Self> {
        Ok(Event { id: row.uint(0)?, emitted: row.uint(1)?, kind: row.json(2)? })
    }
}
