//! Role routes: the built-in roles and custom ones made of scoped grants.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use gofer_api::error::ApiError;
use gofer_api::permissions::Role;
use gofer_api::requests::{ListRolesResponse, UpdateRoleRequest};

use super::extract::{ApiJson, ApiPath, ApiResult};
use super::{AppState, Caller};

/// Lists the roles: `admin`, `user`, `read_only`, extension roles and custom roles.
#[utoipa::path(
    get, path = "/api/roles", tag = "Tokens", responses((status = 200, body = ListRolesResponse)),
    extensions(("x-gofer-access" = json!("roles:read")))
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<ListRolesResponse>> {
    Ok(Json(ListRolesResponse { roles: state.gofer.list_roles().await? }))
}

/// Makes a custom role: grants of actions on resources within namespace and pipeline patterns. A caller that is not
/// an admin may only grant what its own token holds.
#[utoipa::path(
    post, path = "/api/roles", tag = "Tokens", request_body = Role,
    extensions(("x-gofer-access" = json!("roles:write"))),
    responses(
        (status = 201, body = Role), (status = 400, body = ApiError),
        (status = 403, body = ApiError, description = "Grants more than the caller holds"),
        (status = 409, body = ApiError)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(role): ApiJson<Role>,
) -> ApiResult<(StatusCode, Json<Role>)> {
    Ok((StatusCode::CREATED, Json(state.gofer.create_role(caller.0.as_ref(), role).await?)))
}

/// Changes a custom role's description or grants. New grants are held to what the caller holds, as when creating.
#[utoipa::path(
    patch, path = "/api/roles/{role_id}", tag = "Tokens", params(("role_id" = String, Path)),
    extensions(("x-gofer-access" = json!("roles:write"))),
    request_body = UpdateRoleRequest,
    responses(
        (status = 200, body = Role), (status = 400, body = ApiError),
        (status = 403, body = ApiError, description = "Grants more than the caller holds"),
        (status = 404, body = ApiError)
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<UpdateRoleRequest>,
) -> ApiResult<Json<Role>> {
    let role = state.gofer.update_role(caller.0.as_ref(), &id, request.description, request.grants).await?;
    Ok(Json(role))
}

/// Gets a role.
#[utoipa::path(
    get, path = "/api/roles/{role_id}", tag = "Tokens", params(("role_id" = String, Path)),
    extensions(("x-gofer-access" = json!("roles:read"))),
    responses((status = 200, body = Role), (status = 404, body = ApiError))
)]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Role>> {
    Ok(Json(state.gofer.get_role(&id).await?))
}

/// Deletes a custom role; every token that held it loses it.
#[utoipa::path(
    delete, path = "/api/roles/{role_id}", tag = "Tokens", params(("role_id" = String, Path)),
    extensions(("x-gofer-access" = json!("roles:delete"))),
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    state.gofer.delete_role(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
