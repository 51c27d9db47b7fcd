//! The extension protocol: what Gofer sends to an extension and what it answers. Kept from the earlier Gofer so
//! existing extensions keep working. Every call but `GET /api/health` carries `Authorization: Bearer <secret>`,
//! the secret Gofer passed in `GOFER_EXTENSION_SYSTEM_SECRET`; the extension calls Gofer's API with the same token.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `GET /api/health` | – | 2xx when ready |
//! | `GET /api/info` | – | [`InfoResponse`] |
//! | `GET /api/debug` | – | [`DebugResponse`] |
//! | `POST /api/subscribe` | [`SubscribeRequest`] | 2xx, or 4xx with [`ErrorResponse`] to refuse the settings |
//! | `DELETE /api/subscribe` | [`UnsubscribeRequest`] | 2xx |
//! | `POST /api/shutdown` | – | 2xx |
//! | `POST /api/external-event` | [`ExternalEventRequest`] | any status, with [`ErrorResponse`] or a message |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::models::ExtensionParameter;

/// The environment variables Gofer gives an extension container (besides the operator's settings).
pub mod env {
    pub const ID: &str = "GOFER_EXTENSION_SYSTEM_ID";
    pub const SECRET: &str = "GOFER_EXTENSION_SYSTEM_SECRET";
    /// Gofer's API as `host:port`, without a scheme (the earlier extension SDKs add `http://` themselves).
    pub const GOFER_HOST: &str = "GOFER_EXTENSION_SYSTEM_GOFER_HOST";
    /// Gofer's API as a whole URL, `http://…` or `https://…`.
    pub const GOFER_URL: &str = "GOFER_EXTENSION_SYSTEM_GOFER_URL";
    pub const BIND_ADDRESS: &str = "GOFER_EXTENSION_SYSTEM_BIND_ADDRESS";
    pub const LOG_LEVEL: &str = "GOFER_EXTENSION_SYSTEM_LOG_LEVEL";
    pub const USE_TLS: &str = "GOFER_EXTENSION_SYSTEM_USE_TLS";
}

/// `host:port` of a URL: what `GOFER_EXTENSION_SYSTEM_GOFER_HOST` holds.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// The port an extension container listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8082;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Documentation {
    /// What the extension does (Markdown).
    #[serde(default)]
    pub body: String,
    /// Settings the operator gives at install.
    #[serde(default)]
    pub config_params: Vec<ExtensionParameter>,
    /// Settings a subscription gives.
    #[serde(default)]
    pub pipeline_subscription_params: Vec<ExtensionParameter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    pub extension_id: String,
    #[serde(default)]
    pub documentation: Documentation,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugResponse {
    pub info: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeRequest {
    pub namespace_id: String,
    pub pipeline_id: String,
    /// The subscription's label.
    pub pipeline_subscription_id: String,
    #[serde(default)]
    pub pipeline_subscription_params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsubscribeRequest {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub pipeline_subscription_id: String,
}

/// A request that reached Gofer's external-events listener, forwarded as it came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalEventRequest {
    /// Header names in lower case; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// An extension's reason for refusing a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_is_the_url_without_scheme_or_path() {
        assert_eq!(super::host_of("http://172.17.0.1:8080"), "172.17.0.1:8080");
        assert_eq!(super::host_of("https://gofer.internal:8443/"), "gofer.internal:8443");
        assert_eq!(super::host_of("172.17.0.1:8080"), "172.17.0.1:8080");
    }
}
