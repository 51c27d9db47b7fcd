//! The external-events listener: its own address, so it alone can face the internet. `POST
//! /api/external/{extension_id}` hands the request's headers and body to the extension, which verifies it (the
//! github extension checks the HMAC signature) and answers; its answer goes back to the caller as
//! `{"message": ...}` with the extension's status. Nothing else is served here.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gofer_api::error::ErrorCode;
use gofer_core::Gofer;
use gofer_core::extensions::ExternalEvent;

use crate::api::ApiFailure;
use crate::api::extract::ApiPath;

/// The listener's routes.
pub fn router(gofer: Gofer, max_body_bytes: usize) -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route("/api/health", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/external/{extension_id}", post(forward))
        .fallback(|| async {
            ApiFailure::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "this listener takes only POST /api/external/<extension id>",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(gofer)
}

async fn forward(
    State(gofer): State<Gofer>,
    ApiPath(extension_id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "the body is larger than this listener takes (external_events.max_body_bytes)".to_string()
            } else {
                format!("could not read the body: {}", rejection.body_text())
            };
            return ApiFailure::new(status, ErrorCode::InvalidArgument, message).into_response();
        }
    };
    let mut forwarded: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        forwarded
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    match gofer.external_event(&extension_id, ExternalEvent { headers: forwarded, body }).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            if !status.is_success() {
                tracing::info!(extension = %extension_id, status = answer.status, message = %answer.message, "external event refused");
            }
            (status, axum::Json(serde_json::json!({ "message": answer.message }))).into_response()
        }
        Err(e) => ApiFailure::from(e).into_response(),
    }
}
