//! Extension and subscription routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use gofer_api::error::ApiError;
use gofer_api::models::{Extension, Subscription};
use gofer_api::requests::{
    ExtensionDebugResponse, FollowQuery, InstallExtensionRequest, ListExtensionsResponse, ListSubscriptionsResponse,
    SetEnabledRequest, SubscribeRequest,
};
use gofer_storage::SubscriptionKey;

use super::AppState;
use super::extract::{ApiJson, ApiPath, ApiQuery, ApiResult};

/// Installs a container extension: Gofer starts the image, waits until it answers `/api/health`, reads
/// `/api/info`, and only then stores it. A missing image or one that never answers installs nothing.
#[utoipa::path(
    post, path = "/api/extensions", tag = "Extensions", request_body = InstallExtensionRequest,
    extensions(("x-gofer-access" = json!("extensions:write"))),
    responses(
        (status = 201, body = Extension),
        (status = 400, body = ApiError, description = "Bad id, or the extension did not start; nothing was installed"),
        (status = 409, body = ApiError, description = "The id is taken")
    )
)]
pub async fn install(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<InstallExtensionRequest>,
) -> ApiResult<(StatusCode, Json<Extension>)> {
    Ok((StatusCode::CREATED, Json(state.gofer.install_extension(request).await?)))
}

/// Uninstalls a container extension: stops its container, deletes it with its subscriptions and token.
#[utoipa::path(
    delete, path = "/api/extensions/{extension_id}", tag = "Extensions", params(("extension_id" = String, Path)),
    extensions(("x-gofer-access" = json!("extensions:delete"))),
    responses(
        (status = 204), (status = 400, body = ApiError, description = "Built-in extensions cannot be uninstalled"),
        (status = 404, body = ApiError)
    )
)]
pub async fn uninstall(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    state.gofer.uninstall_extension(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A container extension's stdout and stderr; with `follow=true`, live until its container exits.
#[utoipa::path(
    get, path = "/api/extensions/{extension_id}/logs", tag = "Extensions",
    extensions(("x-gofer-access" = json!("extensions:read"))),
    params(("extension_id" = String, Path), FollowQuery),
    responses(
        (status = 200, content_type = "application/octet-stream", description = "The log bytes"),
        (status = 400, body = ApiError, description = "Built-in extensions log to the server's own log"),
        (status = 404, body = ApiError), (status = 503, body = ApiError, description = "It has no container now")
    )
)]
pub async fn logs(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<FollowQuery>,
) -> ApiResult<Response> {
    let stream = state.gofer.extension_logs(&id, query.follow).await?;
    Ok(state.streamed("application/octet-stream", stream, query.follow))
}

/// The extension's own view of itself (its `GET /api/debug`; for built-ins, their subscriptions and next ticks).
#[utoipa::path(
    get, path = "/api/extensions/{extension_id}/debug", tag = "Extensions", params(("extension_id" = String, Path)),
    extensions(("x-gofer-access" = json!("extensions:write"))),
    responses(
        (status = 200, body = ExtensionDebugResponse), (status = 404, body = ApiError),
        (status = 503, body = ApiError, description = "The extension did not answer")
    )
)]
pub async fn debug(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ExtensionDebugResponse>> {
    Ok(Json(ExtensionDebugResponse { info: state.gofer.debug_extension(&id).await? }))
}

/// Lists the installed extensions.
#[utoipa::path(
    get, path = "/api/extensions", tag = "Extensions", responses((status = 200, body = ListExtensionsResponse)),
    extensions(("x-gofer-access" = json!("extensions:read")))
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<ListExtensionsResponse>> {
    Ok(Json(ListExtensionsResponse { extensions: state.gofer.list_extensions().await? }))
}

/// Gets an extension, with the settings its subscriptions take.
#[utoipa::path(
    get, path = "/api/extensions/{extension_id}", tag = "Extensions", params(("extension_id" = String, Path)),
    extensions(("x-gofer-access" = json!("extensions:read"))),
    responses((status = 200, body = Extension), (status = 404, body = ApiError))
)]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Extension>> {
    Ok(Json(state.gofer.get_extension(&id).await?))
}

/// Enables or disables an extension; a disabled extension triggers nothing and keeps its subscriptions.
#[utoipa::path(
    patch, path = "/api/extensions/{extension_id}", tag = "Extensions", params(("extension_id" = String, Path)),
    extensions(("x-gofer-access" = json!("extensions:write"))),
    request_body = SetEnabledRequest,
    responses((status = 200, body = Extension), (status = 404, body = ApiError))
)]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<SetEnabledRequest>,
) -> ApiResult<Json<Extension>> {
    Ok(Json(state.gofer.set_extension_enabled(&id, request.enabled).await?))
}

/// Lists every subscription to an extension, across namespaces and pipelines (extensions written for the earlier
/// Gofer read this at startup; Gofer also sends them their subscriptions itself).
#[utoipa::path(
    get, path = "/api/extensions/{extension_id}/subscriptions", tag = "Extensions",
    extensions(("x-gofer-access" = json!("subscriptions:read"))),
    params(("extension_id" = String, Path)),
    responses((status = 200, body = ListSubscriptionsResponse), (status = 404, body = ApiError))
)]
pub async fn list_extension_subscriptions(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ListSubscriptionsResponse>> {
    Ok(Json(ListSubscriptionsResponse { subscriptions: state.gofer.list_extension_subscriptions(&id).await? }))
}

/// Lists a pipeline's subscriptions.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/subscriptions", tag = "Extensions",
    extensions(("x-gofer-access" = json!("subscriptions:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    responses((status = 200, body = ListSubscriptionsResponse), (status = 404, body = ApiError))
)]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<ListSubscriptionsResponse>> {
    let subscriptions = state.gofer.list_subscriptions(&namespace_id, &pipeline_id).await?;
    Ok(Json(ListSubscriptionsResponse { subscriptions }))
}

/// Subscribes a pipeline to an extension. The extension checks the settings; refused settings store nothing.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/subscriptions", tag = "Extensions",
    extensions(("x-gofer-access" = json!("subscriptions:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path)),
    request_body = SubscribeRequest,
    responses(
        (status = 201, body = Subscription), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The label is taken, or the extension is disabled")
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<SubscribeRequest>,
) -> ApiResult<(StatusCode, Json<Subscription>)> {
    let subscription = state.gofer.subscribe(&namespace_id, &pipeline_id, request).await?;
    Ok((StatusCode::CREATED, Json(subscription)))
}

fn key((namespace_id, pipeline_id, extension_id, label): (String, String, String, String)) -> SubscriptionKey {
    SubscriptionKey { namespace_id, pipeline_id, extension_id, label }
}

/// Enables or disables one subscription.
#[utoipa::path(
    patch, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/subscriptions/{extension_id}/{label}",
    extensions(("x-gofer-access" = json!("subscriptions:write"))),
    tag = "Extensions",
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("extension_id" = String, Path), ("label" = String, Path)),
    request_body = SetEnabledRequest,
    responses((status = 200, body = Subscription), (status = 404, body = ApiError))
)]
pub async fn update_subscription(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, String, String, String)>,
    ApiJson(request): ApiJson<SetEnabledRequest>,
) -> ApiResult<Json<Subscription>> {
    Ok(Json(state.gofer.set_subscription_enabled(&key(path), request.enabled).await?))
}

/// Unsubscribes: the extension stops triggering the pipeline.
#[utoipa::path(
    delete, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/subscriptions/{extension_id}/{label}",
    extensions(("x-gofer-access" = json!("subscriptions:delete"))),
    tag = "Extensions",
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("extension_id" = String, Path), ("label" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError))
)]
pub async fn unsubscribe(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    state.gofer.unsubscribe(&key(path)).await?;
    Ok(StatusCode::NO_CONTENT)
}
