//! Namespace routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use gofer_api::error::ApiError;
use gofer_api::models::Namespace;
use gofer_api::requests::{CreateNamespaceRequest, ListNamespacesResponse, PageQuery, UpdateNamespaceRequest};

use super::extract::{ApiJson, ApiPath, ApiQuery, ApiResult};
use super::{AppState, Caller};

/// Lists the namespaces the caller may read, newest first.
#[utoipa::path(
    get, path = "/api/namespaces", tag = "Namespaces", params(PageQuery),
    extensions(("x-gofer-access" = json!("namespaces:read"))),
    responses((status = 200, body = ListNamespacesResponse), (status = 400, body = ApiError))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<ListNamespacesResponse>> {
    let (namespaces, next_offset) = state.gofer.list_namespaces(caller.0.as_ref(), query).await?;
    Ok(Json(ListNamespacesResponse { namespaces, next_offset }))
}

/// Creates a namespace.
#[utoipa::path(
    post, path = "/api/namespaces", tag = "Namespaces", request_body = CreateNamespaceRequest,
    extensions(("x-gofer-access" = json!("namespaces:write"))),
    responses((status = 201, body = Namespace), (status = 400, body = ApiError), (status = 409, body = ApiError))
)]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateNamespaceRequest>,
) -> ApiResult<(StatusCode, Json<Namespace>)> {
    let namespace = state.gofer.create_namespace(&request.id, &request.name, &request.description).await?;
    Ok((StatusCode::CREATED, Json(namespace)))
}

/// Gets a namespace.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}", tag = "Namespaces",
    extensions(("x-gofer-access" = json!("namespaces:read"))),
    params(("namespace_id" = String, Path)),
    responses((status = 200, body = Namespace), (status = 404, body = ApiError))
)]
pub async fn get(State(state): State<AppState>, ApiPath(namespace_id): ApiPath<String>) -> ApiResult<Json<Namespace>> {
    Ok(Json(state.gofer.get_namespace(&namespace_id).await?))
}

/// Deletes a namespace with all its pipelines, their runs, secrets, logs and objects. The default namespace cannot
/// be deleted; refused while runs in it are in flight.
#[utoipa::path(
    delete, path = "/api/namespaces/{namespace_id}", tag = "Namespaces",
    extensions(("x-gofer-access" = json!("namespaces:delete"))),
    params(("namespace_id" = String, Path)),
    responses(
        (status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "Runs in the namespace are in flight")
    )
)]
pub async fn delete(State(state): State<AppState>, ApiPath(namespace_id): ApiPath<String>) -> ApiResult<StatusCode> {
    state.gofer.delete_namespace(&namespace_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a namespace's name or description.
#[utoipa::path(
    patch, path = "/api/namespaces/{namespace_id}", tag = "Namespaces",
    extensions(("x-gofer-access" = json!("namespaces:write"))),
    params(("namespace_id" = String, Path)), request_body = UpdateNamespaceRequest,
    responses((status = 200, body = Namespace), (status = 400, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(namespace_id): ApiPath<String>,
    ApiJson(request): ApiJson<UpdateNamespaceRequest>,
) -> ApiResult<Json<Namespace>> {
    Ok(Json(state.gofer.update_namespace(&namespace_id, request.name, request.description).await?))
}
