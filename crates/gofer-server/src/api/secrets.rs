//! Secret routes. Values go in; they come out only with `include_secret=true`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use gofer_api::error::ApiError;
use gofer_api::models::Secret;
use gofer_api::requests::{ListSecretsResponse, PutSecretRequest, SecretQuery};

use super::extract::{ApiJson, ApiPath, ApiQuery, ApiResult};
use super::{AppState, Caller};

/// Lists a pipeline's secrets (keys and dates, never values).
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/secrets", tag = "Secrets",
    extensions(("x-gofer-access" = json!("secrets:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    responses((status = 200, body = ListSecretsResponse), (status = 404, body = ApiError))
)]
pub async fn list_pipeline(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<ListSecretsResponse>> {
    Ok(Json(ListSecretsResponse { secrets: state.gofer.list_pipeline_secrets(&namespace_id, &pipeline_id).await? }))
}

/// Stores a pipeline secret, replacing its value if the key exists. Tasks of the pipeline read it with a
/// variable set to `pipeline_secret{{KEY}}`.
#[utoipa::path(
    put, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/secrets/{key}", tag = "Secrets",
    extensions(("x-gofer-access" = json!("secrets:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("key" = String, Path)),
    request_body = PutSecretRequest,
    responses(
        (status = 200, body = Secret), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 413, body = ApiError, description = "Larger than secrets.max_value_bytes")
    )
)]
pub async fn put_pipeline(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, key)): ApiPath<(String, String, String)>,
    ApiJson(request): ApiJson<PutSecretRequest>,
) -> ApiResult<Json<Secret>> {
    Ok(Json(state.gofer.put_pipeline_secret(&namespace_id, &pipeline_id, &key, request).await?))
}

/// A pipeline secret's metadata; its value only with `include_secret=true`, which needs `secrets:reveal`
/// (among the built-in roles only `admin` holds it).
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/secrets/{key}", tag = "Secrets",
    extensions(("x-gofer-access" = json!("secrets:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("key" = String, Path), SecretQuery),
    responses(
        (status = 200, body = Secret), (status = 400, body = ApiError),
        (status = 403, body = ApiError, description = "The value was asked for without secrets:reveal"),
        (status = 404, body = ApiError)
    )
)]
pub async fn get_pipeline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((namespace_id, pipeline_id, key)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<SecretQuery>,
) -> ApiResult<Json<Secret>> {
    let caller = caller.0.as_ref();
    Ok(Json(state.gofer.get_pipeline_secret(caller, &namespace_id, &pipeline_id, &key, query.include_secret).await?))
}

/// Deletes a pipeline secret.
#[utoipa::path(
    delete, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/secrets/{key}", tag = "Secrets",
    extensions(("x-gofer-access" = json!("secrets:delete"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError))
)]
pub async fn delete_pipeline(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, key)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    state.gofer.delete_pipeline_secret(&namespace_id, &pipeline_id, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the global secrets (keys, namespace patterns and dates, never values).
#[utoipa::path(
    get, path = "/api/secrets", tag = "Secrets", responses((status = 200, body = ListSecretsResponse)),
    extensions(("x-gofer-access" = json!("secrets:read")))
)]
pub async fn list_global(State(state): State<AppState>) -> ApiResult<Json<ListSecretsResponse>> {
    Ok(Json(ListSecretsResponse { secrets: state.gofer.list_global_secrets().await? }))
}

/// Stores a global secret with the namespace patterns that may use it (`global_secret{{KEY}}` in a task).
#[utoipa::path(
    put, path = "/api/secrets/{key}", tag = "Secrets", params(("key" = String, Path)),
    extensions(("x-gofer-access" = json!("secrets:write"))),
    request_body = PutSecretRequest,
    responses(
        (status = 200, body = Secret), (status = 400, body = ApiError),
        (status = 413, body = ApiError, description = "Larger than secrets.max_value_bytes")
    )
)]
pub async fn put_global(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiJson(request): ApiJson<PutSecretRequest>,
) -> ApiResult<Json<Secret>> {
    Ok(Json(state.gofer.put_global_secret(&key, request).await?))
}

/// A global secret's metadata; its value only with `include_secret=true`, which needs `secrets:reveal`.
#[utoipa::path(
    get, path = "/api/secrets/{key}", tag = "Secrets", params(("key" = String, Path), SecretQuery),
    extensions(("x-gofer-access" = json!("secrets:read"))),
    responses(
        (status = 200, body = Secret), (status = 400, body = ApiError),
        (status = 403, body = ApiError, description = "The value was asked for without secrets:reveal"),
        (status = 404, body = ApiError)
    )
)]
pub async fn get_global(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(query): ApiQuery<SecretQuery>,
) -> ApiResult<Json<Secret>> {
    Ok(Json(state.gofer.get_global_secret(caller.0.as_ref(), &key, query.include_secret).await?))
}

/// Deletes a global secret.
#[utoipa::path(
    delete, path = "/api/secrets/{key}", tag = "Secrets", params(("key" = String, Path)),
    extensions(("x-gofer-access" = json!("secrets:delete"))),
    responses((status = 204), (status = 404, body = ApiError))
)]
pub async fn delete_global(State(state): State<AppState>, ApiPath(key): ApiPath<String>) -> ApiResult<StatusCode> {
    state.gofer.delete_global_secret(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}
