//! Run routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use gofer_api::error::ApiError;
use gofer_api::models::Run;
use gofer_api::requests::{ListRunsQuery, ListRunsResponse, StartRunRequest};

use super::extract::{ApiJson, ApiPath, ApiQuery, ApiResult};
use super::{AppState, Caller};

/// Lists a pipeline's runs, newest first; `state` and `status` keep only the runs that match.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs", tag = "Runs",
    extensions(("x-gofer-access" = json!("runs:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ListRunsQuery),
    responses((status = 200, body = ListRunsResponse), (status = 400, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<ListRunsQuery>,
) -> ApiResult<Json<ListRunsResponse>> {
    let filter = gofer_storage::RunFilter { state: query.state, status: query.status };
    let (runs, next_offset) = state.gofer.list_runs_where(&namespace_id, &pipeline_id, filter, query.page()).await?;
    Ok(Json(ListRunsResponse { runs, next_offset }))
}

/// Starts a run of the pipeline's live config version (or the version a deployment in progress routes it to, or the
/// `version` asked for). Answers at once with the pending run.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs", tag = "Runs",
    extensions(("x-gofer-access" = json!("runs:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    request_body = StartRunRequest,
    responses(
        (status = 201, body = Run), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "No config version is deployed"),
        (status = 503, body = ApiError, description = "The pipeline is disabled")
    )
)]
pub async fn start(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<StartRunRequest>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    // The token check already found the caller's token (if any).
    let initiator = gofer_core::Gofer::initiator_of(caller.0.as_ref());
    let run = state.gofer.start_run(&namespace_id, &pipeline_id, request.variables, request.version, initiator).await?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// Gets a run.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}", tag = "Runs",
    extensions(("x-gofer-access" = json!("runs:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path)),
    responses((status = 200, body = Run), (status = 404, body = ApiError))
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id)): ApiPath<(String, String, u64)>,
) -> ApiResult<Json<Run>> {
    Ok(Json(state.gofer.get_run(&namespace_id, &pipeline_id, run_id).await?))
}

/// Cancels a run: tasks not started are cancelled, running containers are stopped (then killed after the grace
/// period).
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/cancel", tag = "Runs",
    extensions(("x-gofer-access" = json!("runs:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path)),
    responses(
        (status = 202, body = Run, description = "Cancellation started"),
        (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The run is already finished")
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id)): ApiPath<(String, String, u64)>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let run = state.gofer.cancel_run(&namespace_id, &pipeline_id, run_id).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}
