//! Pipeline and config-version routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use gofer_api::error::ApiError;
use gofer_api::models::{Deployment, Pipeline, PipelineConfig};
use gofer_api::requests::{
    DeployRequest, ListConfigsResponse, ListPipelinesResponse, PageQuery, RegisterConfigRequest,
    RegisterConfigResponse, RollbackRequest, UpdatePipelineRequest,
};

use super::extract::{ApiJson, ApiPath, ApiQuery, ApiResult, OptionalApiJson};
use super::{AppState, Caller};

/// Lists the pipelines of a namespace that the caller may read, newest first.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines", tag = "Pipelines",
    extensions(("x-gofer-access" = json!("pipelines:read"))),
    params(("namespace_id" = String, Path), PageQuery),
    responses((status = 200, body = ListPipelinesResponse), (status = 404, body = ApiError))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(namespace_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<ListPipelinesResponse>> {
    let (pipelines, next_offset) = state.gofer.list_pipelines(caller.0.as_ref(), &namespace_id, query).await?;
    Ok(Json(ListPipelinesResponse { pipelines, next_offset }))
}

/// Gets a pipeline.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}", tag = "Pipelines",
    extensions(("x-gofer-access" = json!("pipelines:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    responses((status = 200, body = Pipeline), (status = 404, body = ApiError))
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Pipeline>> {
    Ok(Json(state.gofer.get_pipeline(&namespace_id, &pipeline_id).await?))
}

/// Enables or disables a pipeline; a disabled pipeline takes no new runs.
#[utoipa::path(
    patch, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}", tag = "Pipelines",
    extensions(("x-gofer-access" = json!("pipelines:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    request_body = UpdatePipelineRequest,
    responses((status = 200, body = Pipeline), (status = 400, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn update(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<UpdatePipelineRequest>,
) -> ApiResult<Json<Pipeline>> {
    Ok(Json(state.gofer.set_pipeline_state(&namespace_id, &pipeline_id, request.state).await?))
}

/// Deletes a pipeline with its config versions, runs and task executions.
#[utoipa::path(
    delete, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}", tag = "Pipelines",
    extensions(("x-gofer-access" = json!("pipelines:delete"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 409, body = ApiError))
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.gofer.delete_pipeline(&namespace_id, &pipeline_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a pipeline's config versions, newest first.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/configs", tag = "Pipelines",
    extensions(("x-gofer-access" = json!("configs:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), PageQuery),
    responses((status = 200, body = ListConfigsResponse), (status = 404, body = ApiError))
)]
pub async fn list_configs(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<ListConfigsResponse>> {
    let (configs, next_offset) = state.gofer.list_configs(&namespace_id, &pipeline_id, query).await?;
    Ok(Json(ListConfigsResponse { configs, next_offset }))
}

/// Registers a config as the pipeline's next version (creating the pipeline if new). The server validates it
/// again; an identical config registers nothing and answers 200 with the existing version.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/configs", tag = "Pipelines",
    extensions(("x-gofer-access" = json!("configs:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    request_body = RegisterConfigRequest,
    responses(
        (status = 201, body = RegisterConfigResponse, description = "A new version was registered"),
        (status = 200, body = RegisterConfigResponse, description = "Identical to the latest version; nothing registered"),
        (status = 400, body = ApiError), (status = 404, body = ApiError)
    )
)]
pub async fn register_config(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<RegisterConfigRequest>,
) -> ApiResult<(StatusCode, Json<RegisterConfigResponse>)> {
    let registered = state.gofer.register_config(&namespace_id, &pipeline_id, request.config).await?;
    let status = if registered.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(RegisterConfigResponse { config: registered.config, created: registered.created })))
}

/// Gets one config version.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/configs/{version}", tag = "Pipelines",
    extensions(("x-gofer-access" = json!("configs:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("version" = u64, Path)),
    responses((status = 200, body = PipelineConfig), (status = 404, body = ApiError))
)]
pub async fn get_config(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, version)): ApiPath<(String, String, u64)>,
) -> ApiResult<Json<PipelineConfig>> {
    Ok(Json(state.gofer.get_config(&namespace_id, &pipeline_id, version).await?))
}

/// Deploys a config version with a strategy (the body's, else the one the config declares, else `immediate`):
/// at once, after verification runs (blue/green) or stage by stage (canary). The body may be left out.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/configs/{version}/deploy", tag = "Deployments",
    extensions(("x-gofer-access" = json!("deployments:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("version" = u64, Path)),
    request_body(content = Option<DeployRequest>, description = "Optional"),
    responses(
        (status = 201, body = Deployment, description = "The deployment, promoted already when immediate"),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "Another deployment of the pipeline is running")
    )
)]
pub async fn deploy_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((namespace_id, pipeline_id, version)): ApiPath<(String, String, u64)>,
    OptionalApiJson(request): OptionalApiJson<DeployRequest>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let initiator = gofer_core::Gofer::initiator_of(caller.0.as_ref());
    let deployment = state.gofer.deploy(&namespace_id, &pipeline_id, version, request, initiator).await?;
    Ok((StatusCode::CREATED, Json(deployment)))
}

/// Deletes a config version. Refused for the live version, one a running deployment uses, and one that runs not
/// yet complete run; version numbers are never given again.
#[utoipa::path(
    delete, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/configs/{version}", tag = "Pipelines",
    extensions(("x-gofer-access" = json!("configs:delete"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("version" = u64, Path)),
    responses(
        (status = 204, description = "Deleted"), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The version is in use")
    )
)]
pub async fn delete_config(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, version)): ApiPath<(String, String, u64)>,
) -> ApiResult<StatusCode> {
    state.gofer.delete_config(&namespace_id, &pipeline_id, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Goes back to an earlier version at once: the one named, else the one live before the live version.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/rollback", tag = "Deployments",
    extensions(("x-gofer-access" = json!("deployments:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    request_body(content = Option<RollbackRequest>, description = "Optional"),
    responses(
        (status = 201, body = Deployment, description = "The immediate deployment that rolled back"),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "No earlier version is known, or a deployment is running")
    )
)]
pub async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
    OptionalApiJson(request): OptionalApiJson<RollbackRequest>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let initiator = gofer_core::Gofer::initiator_of(caller.0.as_ref());
    let deployment = state.gofer.rollback(&namespace_id, &pipeline_id, request, initiator).await?;
    Ok((StatusCode::CREATED, Json(deployment)))
}
