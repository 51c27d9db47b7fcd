//! Deployment routes: the history of a pipeline's live version, and promoting or aborting the one in progress.

use axum::extract::State;
use axum::{Extension, Json};
use gofer_api::error::ApiError;
use gofer_api::models::Deployment;
use gofer_api::requests::{ListDeploymentsResponse, PageQuery};

use super::extract::{ApiPath, ApiQuery, ApiResult};
use super::{AppState, Caller};

/// Lists a pipeline's deployments with the runs each routed, newest first.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/deployments", tag = "Deployments",
    extensions(("x-gofer-access" = json!("deployments:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), PageQuery),
    responses(
        (status = 200, body = ListDeploymentsResponse), (status = 400, body = ApiError), (status = 404, body = ApiError)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<ListDeploymentsResponse>> {
    let (deployments, next_offset) = state.gofer.list_deployments(&namespace_id, &pipeline_id, query).await?;
    Ok(Json(ListDeploymentsResponse { deployments, next_offset }))
}

/// Gets a deployment: its strategy, state, the runs it routed by version and stage, and its timeline.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/deployments/{deployment_id}",
    tag = "Deployments",
    extensions(("x-gofer-access" = json!("deployments:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("deployment_id" = u64, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ApiError))
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, deployment_id)): ApiPath<(String, String, u64)>,
) -> ApiResult<Json<Deployment>> {
    Ok(Json(state.gofer.get_deployment(&namespace_id, &pipeline_id, deployment_id).await?))
}

/// Makes the candidate of a running deployment live now, whatever its counts say.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/deployments/{deployment_id}/promote",
    tag = "Deployments",
    extensions(("x-gofer-access" = json!("deployments:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("deployment_id" = u64, Path)),
    responses(
        (status = 200, body = Deployment), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The deployment already ended")
    )
)]
pub async fn promote(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((namespace_id, pipeline_id, deployment_id)): ApiPath<(String, String, u64)>,
) -> ApiResult<Json<Deployment>> {
    let by = gofer_core::Gofer::initiator_of(caller.0.as_ref());
    Ok(Json(state.gofer.promote_deployment(&namespace_id, &pipeline_id, deployment_id, &by).await?))
}

/// Stops a running deployment: new runs go to the version live before it; runs in flight finish as they are.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/deployments/{deployment_id}/abort",
    tag = "Deployments",
    extensions(("x-gofer-access" = json!("deployments:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("deployment_id" = u64, Path)),
    responses(
        (status = 200, body = Deployment), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The deployment already ended")
    )
)]
pub async fn abort(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((namespace_id, pipeline_id, deployment_id)): ApiPath<(String, String, u64)>,
) -> ApiResult<Json<Deployment>> {
    let by = gofer_core::Gofer::initiator_of(caller.0.as_ref());
    Ok(Json(state.gofer.abort_deployment(&namespace_id, &pipeline_id, deployment_id, &by).await?))
}
