//! Reading rows into Gofer's records and writing values into columns: JSON for nested values, serde names for
//! enums, so the database reads like the API.

use gofer_api::models::{
    Deployment, Event, ExtensionRegistration, Initiator, Namespace, Pipeline, PipelineConfig, Run, Subscription,
    TaskExecution,
};
use gofer_api::permissions::{Role, Token};
use gofer_storage::{Page, Result, SealedSecret, SecretScope};
use rusqlite::{Connection, Row, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{backend, sql_error};

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| backend("encode a JSON column", e))
}

/// Stored enums are their serde names, so the database reads like the API.
pub(crate) fn enum_text<T: Serialize>(value: &T) -> Result<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(backend("encode an enum column", e)),
    }
}

fn column_error(index: usize, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
}

fn json_col<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| column_error(index, e))
}

fn opt_json_col<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| column_error(index, e))).transpose()
}

fn enum_col<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    // Borrow the text and deserialize the unit variant from it directly: no allocation on the hot list paths.
    let text = row.get_ref(index)?.as_str()?;
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e)))
}

pub(crate) fn limit_offset(page: Page) -> (i64, i64) {
    (i64::try_from(page.limit).unwrap_or(i64::MAX), i64::try_from(page.offset).unwrap_or(i64::MAX))
}

impl Record for Namespace {
    const TABLE: &str = "namespaces";
    const COLUMNS: &str = "id, name, description, created, modified";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Namespace {
            id: row.get(0)?,
            name: row.get(1)?,
            description: row.get(2)?,
            created: row.get(3)?,
            modified: row.get(4)?,
        })
    }
}

impl Record for Pipeline {
    const TABLE: &str = "pipelines";
    const COLUMNS: &str = "namespace_id, pipeline_id, name, description, state, live_version, latest_version, \
                           created, modified, running_deployment";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Pipeline {
            namespace_id: row.get(0)?,
            pipeline_id: row.get(1)?,
            name: row.get(2)?,
            description: row.get(3)?,
            state: enum_col(row, 4)?,
            live_version: row.get(5)?,
            latest_version: row.get(6)?,
            created: row.get(7)?,
            modified: row.get(8)?,
            running_deployment: row.get(9)?,
        })
    }
}

impl Record for PipelineConfig {
    const TABLE: &str = "pipeline_configs";
    const COLUMNS: &str = "namespace_id, pipeline_id, version, state, hash, registered, config";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(PipelineConfig {
            namespace_id: row.get(0)?,
            pipeline_id: row.get(1)?,
            version: row.get(2)?,
            state: enum_col(row, 3)?,
            hash: row.get(4)?,
            registered: row.get(5)?,
            config: json_col(row, 6)?,
        })
    }
}

impl Record for Run {
    const TABLE: &str = "runs";
    const COLUMNS: &str = "namespace_id, pipeline_id, run_id, version, state, status, status_reason, created, \
                           started, ended, initiator, variables, routing";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Run {
            namespace_id: row.get(0)?,
            pipeline_id: row.get(1)?,
            run_id: row.get(2)?,
            version: row.get(3)?,
            state: enum_col(row, 4)?,
            status: enum_col(row, 5)?,
            status_reason: opt_json_col(row, 6)?,
            created: row.get(7)?,
            started: row.get(8)?,
            ended: row.get(9)?,
            initiator: json_col::<Initiator>(row, 10)?,
            variables: json_col(row, 11)?,
            routing: opt_json_col(row, 12)?,
        })
    }
}

/// A deployment's columns; its run counts come from the runs it routed (`deployments::counts`).
impl Record for Deployment {
    const TABLE: &str = "deployments";
    const COLUMNS: &str = "namespace_id, pipeline_id, deployment_id, from_version, to_version, strategy, state, \
                           reason, started, ended, stage, stage_started, initiator, timeline";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Deployment {
            namespace_id: row.get(0)?,
            pipeline_id: row.get(1)?,
            deployment_id: row.get(2)?,
            from_version: row.get(3)?,
            to_version: row.get(4)?,
            strategy: json_col(row, 5)?,
            state: enum_col(row, 6)?,
            reason: row.get(7)?,
            started: row.get(8)?,
            ended: row.get(9)?,
            stage: row.get(10)?,
            stage_started: row.get(11)?,
            initiator: json_col(row, 12)?,
            counts: Vec::new(),
            timeline: json_col(row, 13)?,
        })
    }
}

impl Record for TaskExecution {
    const TABLE: &str = "task_executions";
    const COLUMNS: &str = "namespace_id, pipeline_id, run_id, task_id, created, started, ended, state, status, \
                            status_reason, exit_code, image_digest, container_id, variables, task, attempt, \
                            attempts, logs_expired";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(TaskExecution {
            namespace_id: row.get(0)?,
            pipeline_id: row.get(1)?,
            run_id: row.get(2)?,
            task_id: row.get(3)?,
            created: row.get(4)?,
            started: row.get(5)?,
            ended: row.get(6)?,
            state: enum_col(row, 7)?,
            status: enum_col(row, 8)?,
            status_reason: opt_json_col(row, 9)?,
            exit_code: row.get(10)?,
            image_digest: row.get(11)?,
            container_id: row.get(12)?,
            variables: json_col(row, 13)?,
            task: json_col(row, 14)?,
            attempt: row.get(15)?,
            attempts: json_col(row, 16)?,
            logs_expired: row.get(17)?,
        })
    }
}

impl Record for Subscription {
    const TABLE: &str = "subscriptions";
    const COLUMNS: &str =
        "namespace_id, pipeline_id, extension_id, label, settings, enabled, created, last_fired, declared";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Subscription {
            namespace_id: row.get(0)?,
            pipeline_id: row.get(1)?,
            extension_id: row.get(2)?,
            label: row.get(3)?,
            settings: json_col(row, 4)?,
            enabled: row.get(5)?,
            created: row.get(6)?,
            last_fired: row.get(7)?,
            declared: row.get(8)?,
            next_fire: None,
        })
    }
}

impl Record for ExtensionRegistration {
    const TABLE: &str = "extension_registrations";
    const COLUMNS: &str = "id, image, settings, registry_auth, created";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(ExtensionRegistration {
            id: row.get(0)?,
            image: row.get(1)?,
            settings: json_col(row, 2)?,
            registry_auth: opt_json_col(row, 3)?,
            created: row.get(4)?,
        })
    }
}

impl Record for Role {
    const TABLE: &str = "roles";
    const COLUMNS: &str = "id, description, permissions, system_role";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Role { id: row.get(0)?, description: row.get(1)?, grants: json_col(row, 2)?, system_role: row.get(3)? })
    }
}

impl Record for Token {
    const TABLE: &str = "tokens";
    const COLUMNS: &str = "id, hash, user, roles, created, expires, disabled, metadata";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Token {
            id: row.get(0)?,
            hash: row.get(1)?,
            user: row.get(2)?,
            roles: json_col(row, 3)?,
            created: row.get(4)?,
            expires: row.get(5)?,
            disabled: row.get(6)?,
            metadata: json_col(row, 7)?,
        })
    }
}

/// A cancel request as its table holds it.
pub(crate) struct CancelRow(pub gofer_storage::CancelRequest);

impl Record for CancelRow {
    const TABLE: &str = "cancel_requests";
    const COLUMNS: &str = "namespace_id, pipeline_id, run_id, task_id, reason, requested";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(gofer_storage::CancelRequest {
            namespace_id: row.get(0)?,
            pipeline_id: row.get(1)?,
            run_id: row.get(2)?,
            task_id: row.get(3)?,
            reason: json_col(row, 4)?,
            requested: row.get(5)?,
        }))
    }
}

/// A pipeline secret as its table holds it.
pub(crate) struct PipelineSecret(pub SealedSecret);

impl Record for PipelineSecret {
    const TABLE: &str = "pipeline_secrets";
    const COLUMNS: &str = "namespace_id, pipeline_id, key, sealed, created, modified";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(SealedSecret {
            scope: SecretScope::Pipeline { namespace_id: row.get(0)?, pipeline_id: row.get(1)? },
            key: row.get(2)?,
            sealed: row.get(3)?,
            namespaces: Vec::new(),
            created: row.get(4)?,
            modified: row.get(5)?,
        }))
    }
}

/// A global secret as its table holds it.
pub(crate) struct GlobalSecret(pub SealedSecret);

impl Record for GlobalSecret {
    const TABLE: &str = "global_secrets";
    const COLUMNS: &str = "key, sealed, namespaces, created, modified";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(SealedSecret {
            scope: SecretScope::Global,
            key: row.get(0)?,
            sealed: row.get(1)?,
            namespaces: json_col(row, 2)?,
            created: row.get(3)?,
            modified: row.get(4)?,
        }))
    }
}

impl Record for Event {
    const TABLE: &str = "events";
    const COLUMNS: &str = "id, emitted, kind";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Event { id: row.get(0)?, emitted: row.get(1)?, kind: json_col(row, 2)? })
    }
}

/// One of Gofer's records as a table stores it: the one codec every query reads rows with.
pub(crate) trait Record: Sized {
    const TABLE: &str;
    /// Its columns, in the order `from_row` reads them (and inserts write them).
    const COLUMNS: &str;
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self>;
}

/// `SELECT <T's columns> FROM <T's table> <rest>`; `rest` is the WHERE, ORDER BY and LIMIT clauses.
fn select<T: Record>(rest: &str) -> String {
    format!("SELECT {} FROM {} {rest}", T::COLUMNS, T::TABLE)
}

/// Every record matching `rest`.
pub(crate) fn all<T: Record>(
    conn: &Connection,
    context: &'static str,
    rest: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(&select::<T>(rest)).map_err(|e| backend(context, e))?;
    let rows = stmt.query_map(params, T::from_row).map_err(|e| backend(context, e))?;
    rows.collect::<rusqlite::Result<_>>().map_err(|e| backend(context, e))
}

/// The one record matching `rest`; map the error with `sql_error` to name what was not found.
pub(crate) fn one<T: Record>(conn: &Connection, rest: &str, params: impl rusqlite::Params) -> rusqlite::Result<T> {
    conn.prepare_cached(&select::<T>(rest))?.query_row(params, T::from_row)
}

/// A condition on `column` (with a leading `AND`) that keeps the rows `visible` shows, and its values; the
/// placeholders are numbered from `first`. Patterns become GLOBs: ids hold no GLOB characters but `*` and `?`.
pub(crate) fn visible_clause(column: &str, visible: &gofer_storage::Visible, first: usize) -> (String, Vec<String>) {
    match visible {
        gofer_storage::Visible::All => (String::new(), Vec::new()),
        gofer_storage::Visible::Matching(patterns) if patterns.is_empty() => (" AND 0".to_string(), Vec::new()),
        gofer_storage::Visible::Matching(patterns) => {
            let globs: Vec<String> = (0..patterns.len()).map(|i| format!("{column} GLOB ?{}", first + i)).collect();
            (format!(" AND ({})", globs.join(" OR ")), patterns.clone())
        }
    }
}

/// Runs a query of plain values (not records) and collects every row.
pub(crate) fn query_values<T, P: rusqlite::Params>(
    conn: &Connection,
    context: &'static str,
    sql: &str,
    params: P,
    row: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| backend(context, e))?;
    let rows = stmt.query_map(params, row).map_err(|e| backend(context, e))?;
    rows.collect::<rusqlite::Result<_>>().map_err(|e| backend(context, e))
}

pub(crate) fn pipeline_exists(conn: &Connection, ns: &str, pipeline: &str) -> Result<()> {
    conn.query_row(
        "SELECT 1 FROM pipelines WHERE namespace_id = ?1 AND pipeline_id = ?2",
        params![ns, pipeline],
        |_| Ok(()),
    )
    .map_err(sql_error("look up a pipeline", || format!("pipeline '{pipeline}' in namespace '{ns}'")))
}
