//! Health, maintenance mode and documents about the API itself.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use gofer_api::error::{ApiError, ErrorCode};
use gofer_api::models::SystemSettings;
use gofer_api::requests::{Health, ListServersResponse, UpdateSystemRequest};

use super::AppState;
use super::extract::{ApiFailure, ApiJson, ApiResult};

/// Answers 200 once the server is ready to serve: storage open, container engine reachable.
#[utoipa::path(
    get, path = "/api/health", tag = "System", responses((status = 200, body = Health)),
    extensions(("x-gofer-access" = json!("public")))
)]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        dev_mode: state.dev_mode,
        scheduler: state.gofer.scheduler_description(),
    })
}

/// This API's OpenAPI document.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "System", responses((status = 200, description = "OpenAPI 3.1 document")),
    extensions(("x-gofer-access" = json!("public")))
)]
pub async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi_value())
}

/// The JSON Schema of the pipeline config that SDKs produce.
#[utoipa::path(
    get,
    path = "/api/schemas/pipeline-config.json",
    extensions(("x-gofer-access" = json!("public"))),
    tag = "System",
    responses((status = 200, description = "JSON Schema (draft 2020-12) of a pipeline config"))
)]
pub async fn pipeline_config_schema() -> Json<serde_json::Value> {
    Json(super::pipeline_config_schema())
}

/// Prometheus metrics in the text format (0.0.4); `docs/metrics.md` lists them. Needs `system:read` in production
/// mode unless `metrics.public`; answers 404 when `metrics.enabled = false` or when `metrics.bind_address` serves
/// them on a listener of their own.
#[utoipa::path(
    get, path = "/metrics", tag = "System",
    extensions(("x-gofer-access" = json!("system:read"))),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
        (status = 404, body = ApiError)
    )
)]
pub async fn metrics(State(state): State<AppState>, uri: Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !state.metrics.served {
        return not_found(uri).await.into_response();
    }
    let content_type = [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    (content_type, state.gofer.render_metrics()).into_response()
}

pub async fn not_found(uri: Uri) -> ApiFailure {
    ApiFailure {
        status: StatusCode::NOT_FOUND,
        body: ApiError {
            code: ErrorCode::NotFound,
            message: format!("no API route {}; see /api/openapi.json for the routes", uri.path()),
            request_id: None,
        },
    }
}

/// Server-wide settings.
#[utoipa::path(
    get, path = "/api/system", tag = "System", responses((status = 200, body = SystemSettings)),
    extensions(("x-gofer-access" = json!("system:read")))
)]
pub async fn get_system(State(state): State<AppState>) -> ApiResult<Json<SystemSettings>> {
    Ok(Json(state.gofer.get_system().await?))
}

/// The servers sharing this server's state (PostgreSQL), with their last heartbeat and the runs each drives; a
/// server on SQLite lists itself.
#[utoipa::path(
    get, path = "/api/system/servers", tag = "System", responses((status = 200, body = ListServersResponse)),
    extensions(("x-gofer-access" = json!("system:read")))
)]
pub async fn list_servers(State(state): State<AppState>) -> ApiResult<Json<ListServersResponse>> {
    Ok(Json(state.gofer.servers().await?))
}

/// Turns maintenance mode on or off; in maintenance, new runs are refused with 503 while runs in flight and
/// queued runs go on.
#[utoipa::path(
    patch, path = "/api/system", tag = "System", request_body = UpdateSystemRequest,
    extensions(("x-gofer-access" = json!("system:write"))),
    responses((status = 200, body = SystemSettings), (status = 400, body = ApiError))
)]
pub async fn update_system(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<UpdateSystemRequest>,
) -> ApiResult<Json<SystemSettings>> {
    Ok(Json(state.gofer.set_maintenance(request.maintenance).await?))
}
