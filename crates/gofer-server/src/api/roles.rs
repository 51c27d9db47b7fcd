//! Role routes: the built-in roles and custom ones made of scoped grants.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gofer_api::error::ApiError;
use gofer_api::permissions::Role;
use gofer_api::requests::ListRolesResponse;

use super::AppState;
use super::extract::{ApiJson, ApiPath, ApiResult};

/// Lists the roles: `admin`, `user`, `read_only`, extension roles and custom roles.
#[utoipa::path(get, path = "/api/roles", tag = "Tokens", responses((status = 200, body = ListRolesResponse)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<ListRolesResponse>> {
    Ok(Json(ListRolesResponse { roles: state.gofer.list_roles().await? }))
}

/// Makes a custom role: grants of actions on resources within namespace and pipeline patterns.
#[utoipa::path(
    post, path = "/api/roles", tag = "Tokens", request_body = Role,
    responses((status = 201, body = Role), (status = 400, body = ApiError), (status = 409, body = ApiError))
)]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(role): ApiJson<Role>,
) -> ApiResult<(StatusCode, Json<Role>)> {
    Ok((StatusCode::CREATED, Json(state.gofer.create_role(role).await?)))
}

/// Gets a role.
#[utoipa::path(
    get, path = "/api/roles/{role_id}", tag = "Tokens", params(("role_id" = String, Path)),
    responses((status = 200, body = Role), (status = 404, body = ApiError))
)]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Role>> {
    Ok(Json(state.gofer.get_role(&id).await?))
}

/// Deletes a custom role.
#[utoipa::path(
    delete, path = "/api/roles/{role_id}", tag = "Tokens", params(("role_id" = String, Path)),
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    state.gofer.delete_role(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
