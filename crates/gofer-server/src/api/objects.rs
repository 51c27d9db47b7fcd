//! Object routes: raw bytes in and out, streamed both ways (an upload is never held in memory whole).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gofer_api::error::{ApiError, ErrorCode};
use gofer_api::models::ObjectInfo;
use gofer_api::requests::ListObjectsResponse;
use gofer_core::objects::ObjectScope;

use super::AppState;
use super::extract::{ApiFailure, ApiPath, ApiResult};

fn pipeline((namespace_id, pipeline_id): (String, String)) -> ObjectScope {
    ObjectScope::Pipeline { namespace_id, pipeline_id }
}

fn run((namespace_id, pipeline_id, run_id): (String, String, u64)) -> ObjectScope {
    ObjectScope::Run { namespace_id, pipeline_id, run_id }
}

fn extension(extension_id: String) -> ObjectScope {
    ObjectScope::Extension { extension_id }
}

async fn list(state: &AppState, scope: ObjectScope) -> ApiResult<Json<ListObjectsResponse>> {
    Ok(Json(ListObjectsResponse { objects: state.gofer.list_objects(&scope).await? }))
}

/// Streams the body into the store; a declared length beyond the limit is refused before reading anything.
async fn put(
    state: &AppState,
    scope: ObjectScope,
    key: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Json<ObjectInfo>> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let max = state.gofer.max_object_bytes();
    if let Some(declared) = declared.filter(|declared| *declared > max) {
        return Err(ApiFailure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("object '{key}' is {declared} bytes; this server takes at most {max} (objects.max_object_bytes)"),
        ));
    }
    Ok(Json(state.gofer.put_object(&scope, key, body.into_data_stream()).await?))
}

async fn get(state: &AppState, scope: ObjectScope, key: &str) -> ApiResult<Response> {
    let (info, stream) = state.gofer.get_object(&scope, key).await?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, info.size.to_string()),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}

async fn delete(state: &AppState, scope: ObjectScope, key: &str) -> ApiResult<StatusCode> {
    state.gofer.delete_object(&scope, key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a pipeline's objects (kept; past `objects.pipeline_objects` the oldest is evicted).
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/objects", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    responses((status = 200, body = ListObjectsResponse), (status = 404, body = ApiError))
)]
pub async fn list_pipeline(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, String)>,
) -> ApiResult<Json<ListObjectsResponse>> {
    list(&state, pipeline(path)).await
}

/// Stores a pipeline object from the raw request body (streamed); replaces one with the same key.
#[utoipa::path(
    put, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("key" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, body = ObjectInfo), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 413, body = ApiError, description = "Larger than objects.max_object_bytes")
    )
)]
pub async fn put_pipeline(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, key)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ObjectInfo>> {
    put(&state, pipeline((namespace_id, pipeline_id)), &key, &headers, body).await
}

/// A pipeline object's bytes.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("key" = String, Path)),
    responses(
        (status = 200, content_type = "application/octet-stream", description = "The bytes"),
        (status = 404, body = ApiError)
    )
)]
pub async fn get_pipeline(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, key)): ApiPath<(String, String, String)>,
) -> ApiResult<Response> {
    get(&state, pipeline((namespace_id, pipeline_id)), &key).await
}

/// Deletes a pipeline object.
#[utoipa::path(
    delete, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:delete"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError))
)]
pub async fn delete_pipeline(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, key)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    delete(&state, pipeline((namespace_id, pipeline_id)), &key).await
}

/// Lists a run's objects (removed once `objects.run_objects_runs` newer runs exist).
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/objects", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path)),
    responses((status = 200, body = ListObjectsResponse), (status = 404, body = ApiError))
)]
pub async fn list_run(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, String, u64)>,
) -> ApiResult<Json<ListObjectsResponse>> {
    list(&state, run(path)).await
}

/// Stores a run object from the raw request body (streamed): how a task hands data to the tasks after it.
#[utoipa::path(
    put, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path), ("key" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, body = ObjectInfo), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 413, body = ApiError, description = "Larger than objects.max_object_bytes")
    )
)]
pub async fn put_run(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id, key)): ApiPath<(String, String, u64, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ObjectInfo>> {
    put(&state, run((namespace_id, pipeline_id, run_id)), &key, &headers, body).await
}

/// A run object's bytes.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path), ("key" = String, Path)),
    responses(
        (status = 200, content_type = "application/octet-stream", description = "The bytes"),
        (status = 404, body = ApiError)
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id, key)): ApiPath<(String, String, u64, String)>,
) -> ApiResult<Response> {
    get(&state, run((namespace_id, pipeline_id, run_id)), &key).await
}

/// Deletes a run object.
#[utoipa::path(
    delete, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:delete"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError))
)]
pub async fn delete_run(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id, key)): ApiPath<(String, String, u64, String)>,
) -> ApiResult<StatusCode> {
    delete(&state, run((namespace_id, pipeline_id, run_id)), &key).await
}

/// Lists an extension's objects (its private store; removed when it is uninstalled).
#[utoipa::path(
    get, path = "/api/extensions/{extension_id}/objects", tag = "Objects", params(("extension_id" = String, Path)),
    extensions(("x-gofer-access" = json!("objects:read"))),
    responses((status = 200, body = ListObjectsResponse), (status = 404, body = ApiError))
)]
pub async fn list_extension(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ListObjectsResponse>> {
    list(&state, extension(id)).await
}

/// Stores an extension object from the raw request body (streamed).
#[utoipa::path(
    put, path = "/api/extensions/{extension_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:write"))),
    params(("extension_id" = String, Path), ("key" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, body = ObjectInfo), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 413, body = ApiError, description = "Larger than objects.max_object_bytes")
    )
)]
pub async fn put_extension(
    State(state): State<AppState>,
    ApiPath((id, key)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ObjectInfo>> {
    put(&state, extension(id), &key, &headers, body).await
}

/// An extension object's bytes.
#[utoipa::path(
    get, path = "/api/extensions/{extension_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:read"))),
    params(("extension_id" = String, Path), ("key" = String, Path)),
    responses(
        (status = 200, content_type = "application/octet-stream", description = "The bytes"),
        (status = 404, body = ApiError)
    )
)]
pub async fn get_extension(
    State(state): State<AppState>,
    ApiPath((id, key)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    get(&state, extension(id), &key).await
}

/// Deletes an extension object.
#[utoipa::path(
    delete, path = "/api/extensions/{extension_id}/objects/{key}", tag = "Objects",
    extensions(("x-gofer-access" = json!("objects:delete"))),
    params(("extension_id" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError))
)]
pub async fn delete_extension(
    State(state): State<AppState>,
    ApiPath((id, key)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    delete(&state, extension(id), &key).await
}
