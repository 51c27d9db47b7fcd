//! The error body every failed API call returns.

use serde::{Deserialize, Serialize};

/// A stable machine-readable code plus a message a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is out of range (400).
    InvalidArgument,
    /// The named resource does not exist (404).
    NotFound,
    /// The resource exists already, or is in a state that forbids the request (409).
    Conflict,
    /// The caller may not do this (401/403).
    PermissionDenied,
    /// A value is larger than the server takes (413).
    TooLarge,
    /// The server cannot do this now, for example because the pipeline is disabled (503).
    Unavailable,
    /// Something failed inside the server (500). Nothing internal is in the message; the server's log has the
    /// details under the error's `request_id`.
    Internal,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// For internal errors: the id under which the server logged what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}
