//! Request extractors and the error response: every failure, including malformed input that axum rejects,
//! becomes a JSON `ApiError` with a stable code.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use gofer_api::error::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub body: ApiError,
}

impl ApiFailure {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, body: ApiError { code, message: message.into(), request_id: None } }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<gofer_core::Error> for ApiFailure {
    fn from(e: gofer_core::Error) -> Self {
        use gofer_core::Error as E;
        match &e {
            E::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, e.to_string()),
            E::InvalidArgument { .. } => Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, e.to_string()),
            E::Conflict { .. } => Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string()),
            E::Unavailable { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, e.to_string()),
            E::Forbidden { .. } => Self::new(StatusCode::FORBIDDEN, ErrorCode::PermissionDenied, e.to_string()),
            E::TooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, e.to_string()),
            E::Internal { .. } => {
                // The client learns that something broke and where to look; the chain (paths, engine and
                // database messages) stays in the server's log.
                let request_id = new_request_id();
                let chain = gofer_core::orchestrator::error_chain(&e);
                tracing::error!(%request_id, error = %chain, "request failed");
                let message = format!("internal error; the server's log has the details under request id {request_id}");
                let mut failure = Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message);
                failure.body.request_id = Some(request_id);
                failure
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiFailure>;

tokio::task_local! {
    /// The id of the request being served (what its log lines carry), for errors that name it.
    pub(crate) static REQUEST_ID: String;
}

/// The id of the request being served, or a new one outside a request.
fn new_request_id() -> String {
    REQUEST_ID.try_with(String::clone).unwrap_or_else(|_| random_id())
}

/// A short id naming one request in the server's log: a random start for this process, counted up per request
/// (no system call on the request path; unique within the process, unlikely to repeat across restarts).
pub(crate) fn random_id() -> String {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: LazyLock<AtomicU64> = LazyLock::new(|| {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
            bytes = (nanos as u64).to_be_bytes();
        }
        AtomicU64::new(u64::from_be_bytes(bytes))
    });
    format!("{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn bad_request(what: &str, detail: String) -> ApiFailure {
    ApiFailure::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, format!("invalid {what}: {detail}"))
}

/// `Json` whose rejections are `ApiError`s. Every request body of this API is a JSON object: anything else (an
/// array, which serde would otherwise read field by field into a struct, a string, a number) is refused.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = json_body(req, state).await?;
        parse_object(&body).map(Self)
    }
}

/// [`ApiJson`] for a body that may be left out: no body (or only whitespace) is `T::default()`.
pub struct OptionalApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_body = req.headers().get(axum::http::header::CONTENT_LENGTH).is_none_or(|v| v != "0")
            && req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        if !has_body {
            let body = body_bytes(req, state).await?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(T::default()));
            }
            return Err(not_json());
        }
        let body = json_body(req, state).await?;
        parse_object(&body).map(Self)
    }
}

fn not_json() -> ApiFailure {
    bad_request("request", "the body must be JSON with the header `Content-Type: application/json`".into())
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<axum::body::Bytes, ApiFailure> {
    match axum::body::Bytes::from_request(req, state).await {
        Ok(body) => Ok(body),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiFailure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            "the request body is larger than this server takes",
        )),
        Err(e) => Err(bad_request("request body", e.body_text())),
    }
}

/// The body of a request that says it is JSON.
async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<axum::body::Bytes, ApiFailure> {
    let is_json = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
    if !is_json {
        return Err(not_json());
    }
    body_bytes(req, state).await
}

fn parse_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiFailure> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(bad_request("request body", "it must be a JSON object ({...})".into()));
    }
    serde_json::from_slice(body).map_err(|e| bad_request("request body", e.to_string()))
}

/// `Path` whose rejections are `ApiError`s.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|e: PathRejection| bad_request("path", e.body_text()))
    }
}

/// `Query` whose rejections are `ApiError`s.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e: QueryRejection| bad_request("query", e.body_text()))
    }
}

/// The connection of a request that asks to switch to the `gofer-attach` framing (`Upgrade: gofer-attach`).
pub struct AttachUpgrade(pub hyper::upgrade::OnUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for AttachUpgrade {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let asked = parts
            .headers
            .get(axum::http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(gofer_api::attach::UPGRADE));
        if !asked {
            return Err(bad_request(
                "request",
                format!(
                    "this route switches the connection to an interactive session: send `Connection: Upgrade` and \
                     `Upgrade: {}` (gofer task attach does)",
                    gofer_api::attach::UPGRADE
                ),
            ));
        }
        parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .map(Self)
            .ok_or_else(|| bad_request("request", "this connection cannot be upgraded; attach over HTTP/1.1".into()))
    }
}
