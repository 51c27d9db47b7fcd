//! Token routes: the one-time bootstrap, create (the secret is shown once), list, get, enable or disable, delete,
//! and whoami.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use gofer_api::error::{ApiError, ErrorCode};
use gofer_api::permissions::Token;
use gofer_api::requests::{CreateTokenRequest, CreatedToken, ListTokensResponse, UpdateTokenRequest};

use super::extract::{ApiFailure, ApiJson, ApiPath, ApiResult};
use super::{AppState, Caller};

/// Makes the first admin token of a Gofer; works once (409 after). Needs no token.
#[utoipa::path(
    post, path = "/api/tokens/bootstrap", tag = "Tokens",
    extensions(("x-gofer-access" = json!("public"))),
    responses((status = 201, body = CreatedToken), (status = 409, body = ApiError, description = "Bootstrapped already"))
)]
pub async fn bootstrap(State(state): State<AppState>) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(state.gofer.bootstrap_token().await?)))
}

/// Makes a token. Its secret is in this answer and nowhere else, ever. A caller may grant only roles it holds
/// (or any, as an admin).
#[utoipa::path(
    post, path = "/api/tokens", tag = "Tokens", request_body = CreateTokenRequest,
    extensions(("x-gofer-access" = json!("tokens:write"))),
    responses(
        (status = 201, body = CreatedToken), (status = 400, body = ApiError),
        (status = 403, body = ApiError, description = "Grants a role the caller does not hold")
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(state.gofer.create_token(caller.0.as_ref(), request).await?)))
}

/// Lists tokens (never their secrets).
#[utoipa::path(
    get, path = "/api/tokens", tag = "Tokens", responses((status = 200, body = ListTokensResponse)),
    extensions(("x-gofer-access" = json!("tokens:read")))
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<ListTokensResponse>> {
    Ok(Json(ListTokensResponse { tokens: state.gofer.list_tokens().await? }))
}

/// The caller's own token.
#[utoipa::path(
    get, path = "/api/tokens/whoami", tag = "Tokens",
    extensions(("x-gofer-access" = json!("public"))),
    responses((status = 200, body = Token), (status = 401, body = ApiError, description = "No token was given"))
)]
pub async fn whoami(Extension(caller): Extension<Caller>) -> ApiResult<Json<Token>> {
    caller.0.map(Json).ok_or_else(|| {
        ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied,
            "no token was given (development mode lets you in without one); pass --token or GOFER_TOKEN",
        )
    })
}

/// Gets a token.
#[utoipa::path(
    get, path = "/api/tokens/{token_id}", tag = "Tokens", params(("token_id" = String, Path)),
    extensions(("x-gofer-access" = json!("tokens:read"))),
    responses((status = 200, body = Token), (status = 404, body = ApiError))
)]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Token>> {
    Ok(Json(state.gofer.get_token(&id).await?))
}

/// Disables a token (it gets 401 from then on) or enables it again.
#[utoipa::path(
    patch, path = "/api/tokens/{token_id}", tag = "Tokens", params(("token_id" = String, Path)),
    extensions(("x-gofer-access" = json!("tokens:write"))),
    request_body = UpdateTokenRequest,
    responses((status = 200, body = Token), (status = 404, body = ApiError))
)]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<UpdateTokenRequest>,
) -> ApiResult<Json<Token>> {
    Ok(Json(state.gofer.set_token_disabled(&id, request.disabled).await?))
}

/// Deletes a token.
#[utoipa::path(
    delete, path = "/api/tokens/{token_id}", tag = "Tokens", params(("token_id" = String, Path)),
    extensions(("x-gofer-access" = json!("tokens:delete"))),
    responses((status = 204), (status = 404, body = ApiError))
)]
pub async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    state.gofer.delete_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
