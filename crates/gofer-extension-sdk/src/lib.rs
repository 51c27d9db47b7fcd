//! Write a Gofer extension in Rust: implement [`Extension`], then call [`run`] from `main`.
//!
//! Gofer starts the extension's image with the `GOFER_EXTENSION_SYSTEM_*` variables and the operator's settings as
//! environment variables, waits until it answers `GET /api/health`, and then sends it subscriptions. `run` serves
//! the extension protocol (`gofer_api::protocol`) on `GOFER_EXTENSION_SYSTEM_BIND_ADDRESS`, checks Gofer's bearer
//! secret on every call but the health check, and stops on SIGTERM or Gofer's shutdown call. The extension starts
//! runs through [`Gofer::start_run`], with the same secret as its API token.
//!
//! ```no_run
//! use gofer_extension::{Context, Documentation, Extension, Subscription, SubscriptionKey};
//!
//! struct Hello;
//!
//! #[gofer_extension::async_trait]
//! impl Extension for Hello {
//!     fn documentation(&self) -> Documentation {
//!         Documentation { body: "Says hello.".into(), ..Default::default() }
//!     }
//!     async fn subscribe(&self, subscription: Subscription) -> Result<(), String> {
//!         Ok(())
//!     }
//!     async fn unsubscribe(&self, key: SubscriptionKey) {}
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), gofer_extension::Error> {
//!     gofer_extension::run(|_context: Context| Hello).await
//! }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use async_trait::async_trait;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use gofer_api::models::ExtensionParameter;
use gofer_api::protocol::{self, DebugResponse, ErrorResponse, InfoResponse};
pub use gofer_api::protocol::{Documentation, ExternalEventRequest};
use stop::Shutdown;

/// Why the extension could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{name} is not set; Gofer sets it when it starts an extension (run this image with `gofer extension install`)"
    )]
    MissingEnv { name: &'static str },
    #[error("{name}={value} is not an address to listen on")]
    BadAddress { name: &'static str, value: String },
    #[error("could not listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
}

/// What Gofer told the extension through `GOFER_EXTENSION_SYSTEM_*`.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub id: String,
    /// Gofer's bearer secret, and the extension's API token.
    pub secret: String,
    /// Gofer's API, e.g. `http://172.17.0.1:8080`.
    pub gofer_host: String,
    pub bind_address: SocketAddr,
    pub log_level: String,
}

impl SystemConfig {
    pub fn from_env() -> Result<Self, Error> {
        let required = |name: &'static str| std::env::var(name).map_err(|_| Error::MissingEnv { name });
        let bind = std::env::var(protocol::env::BIND_ADDRESS)
            .unwrap_or_else(|_| format!("0.0.0.0:{}", protocol::DEFAULT_PORT));
        let bind_address =
            bind.parse().map_err(|_| Error::BadAddress { name: protocol::env::BIND_ADDRESS, value: bind.clone() })?;
        // The whole URL when Gofer gives it; else the earlier host:port, over http.
        let mut gofer_host = std::env::var(protocol::env::GOFER_URL)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| std::env::var(protocol::env::GOFER_HOST).ok())
            .unwrap_or_else(|| "localhost:8080".into());
        if !gofer_host.starts_with("http://") && !gofer_host.starts_with("https://") {
            gofer_host = format!("http://{gofer_host}");
        }
        Ok(Self {
            id: required(protocol::env::ID)?,
            secret: required(protocol::env::SECRET)?,
            gofer_host: gofer_host.trim_end_matches('/').to_string(),
            bind_address,
            log_level: std::env::var(protocol::env::LOG_LEVEL).unwrap_or_else(|_| "info".into()),
        })
    }
}

/// An operator's setting given at install (`gofer extension install ID IMAGE -s key=value`): Gofer passes it as
/// the environment variable named like the key, upper-cased.
pub fn setting(key: &str) -> Option<String> {
    std::env::var(key.to_ascii_uppercase()).ok().filter(|v| !v.is_empty())
}

/// Names one subscription: a pipeline and the label it subscribed under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionKey {
    pub namespace_id: String,
    pub pipeline_id: String,
    pub label: String,
}

impl std::fmt::Display for SubscriptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace_id, self.pipeline_id, self.label)
    }
}

/// A pipeline's subscription with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub key: SubscriptionKey,
    pub settings: BTreeMap<String, String>,
}

/// Gofer's API, as the extension uses it.
#[derive(Debug, Clone)]
pub struct Gofer {
    http: reqwest::Client,
    host: String,
    token: String,
    /// This extension's id, passed to the runs it starts as `GOFER_EXTENSION_ID`.
    id: String,
}

impl Gofer {
    /// The typed API client (`gofer-client`) with this extension's token, for any other call: reading a pipeline,
    /// following a run, storing an extension object. `namespace` is the one pipeline-scoped calls work in.
    pub fn client(&self, namespace: &str) -> Result<gofer_client::Client, gofer_client::Error> {
        gofer_client::Client::new(&self.host, namespace, Some(&self.token), None)
    }

    /// Starts a run of the subscription's pipeline with extra variables; returns the run id.
    pub async fn start_run(&self, key: &SubscriptionKey, variables: BTreeMap<String, String>) -> Result<u64, String> {
        let url = format!("{}/api/namespaces/{}/pipelines/{}/runs", self.host, key.namespace_id, key.pipeline_id);
        let mut variables = variables;
        variables.entry("GOFER_EXTENSION_ID".into()).or_insert_with(|| self.id.clone());
        variables.entry("GOFER_EXTENSION_SUBSCRIPTION".into()).or_insert_with(|| key.label.clone());
        let body = serde_json::json!({ "variables": variables });
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("could not reach Gofer at {}: {e}", self.host))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let message = answer["message"].as_str().unwrap_or("no message");
            return Err(format!("Gofer refused to start a run of {key} ({status}): {message}"));
        }
        answer["run_id"].as_u64().ok_or_else(|| format!("Gofer's answer has no run_id: {answer}"))
    }
}

/// What an extension gets when it is made: who it is and how to reach Gofer.
#[derive(Debug, Clone)]
pub struct Context {
    pub system: SystemConfig,
    pub gofer: Gofer,
}

/// An extension. Every method maps to one call of the protocol.
#[async_trait]
pub trait Extension: Send + Sync + 'static {
    /// What the extension does and the settings it takes (`GET /api/info`).
    fn documentation(&self) -> Documentation;
    /// Starts triggering for a subscription; refuse bad settings with a message that says how to fix them. Gofer
    /// calls this again for every enabled subscription after the extension (re)starts.
    async fn subscribe(&self, subscription: Subscription) -> Result<(), String>;
    /// Stops triggering for a subscription.
    async fn unsubscribe(&self, key: SubscriptionKey);
    /// A request that reached Gofer's external-events listener for this extension (a webhook). Answer with a
    /// message, or refuse with a status and a message.
    async fn external_event(&self, _event: ExternalEventRequest) -> Result<String, (u16, String)> {
        Err((404, "this extension takes no external events".into()))
    }
    /// The extension's view of itself, for `gofer extension debug`.
    async fn debug(&self) -> String {
        String::new()
    }
    /// Called once before the extension stops.
    async fn shutdown(&self) {}
}

struct Served<E> {
    extension: E,
    system: SystemConfig,
    shutdown: Shutdown,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorResponse { message: message.into() })).into_response()
}

/// Refuses calls without Gofer's bearer secret (the health check excepted).
async fn check_secret<E: Extension>(State(served): State<Arc<Served<E>>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/api/health" {
        return next.run(request).await;
    }
    let expected = format!("Bearer {}", served.system.secret);
    let given = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    if !constant_time_eq(given, expected.as_bytes()) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer secret");
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn info<E: Extension>(State(served): State<Arc<Served<E>>>) -> Json<InfoResponse> {
    Json(InfoResponse { extension_id: served.system.id.clone(), documentation: served.extension.documentation() })
}

async fn debug<E: Extension>(State(served): State<Arc<Served<E>>>) -> Json<DebugResponse> {
    Json(DebugResponse { info: served.extension.debug().await })
}

async fn subscribe<E: Extension>(
    State(served): State<Arc<Served<E>>>,
    Json(request): Json<protocol::SubscribeRequest>,
) -> Response {
    let key = SubscriptionKey {
        namespace_id: request.namespace_id,
        pipeline_id: request.pipeline_id,
        label: request.pipeline_subscription_id,
    };
    let subscription = Subscription { key: key.clone(), settings: request.pipeline_subscription_params };
    match served.extension.subscribe(subscription).await {
        Ok(()) => {
            tracing::info!(subscription = %key, "subscribed");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(message) => refuse(StatusCode::BAD_REQUEST, message),
    }
}

async fn unsubscribe<E: Extension>(
    State(served): State<Arc<Served<E>>>,
    Json(request): Json<protocol::UnsubscribeRequest>,
) -> StatusCode {
    let key = SubscriptionKey {
        namespace_id: request.namespace_id,
        pipeline_id: request.pipeline_id,
        label: request.pipeline_subscription_id,
    };
    tracing::info!(subscription = %key, "unsubscribed");
    served.extension.unsubscribe(key).await;
    StatusCode::NO_CONTENT
}

async fn external_event<E: Extension>(
    State(served): State<Arc<Served<E>>>,
    Json(request): Json<ExternalEventRequest>,
) -> Response {
    match served.extension.external_event(request).await {
        Ok(message) => (StatusCode::OK, Json(ErrorResponse { message })).into_response(),
        Err((status, message)) => refuse(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), message),
    }
}

async fn shutdown_call<E: Extension>(State(served): State<Arc<Served<E>>>) -> StatusCode {
    served.shutdown.trigger();
    StatusCode::NO_CONTENT
}

/// Reads the `GOFER_EXTENSION_SYSTEM_*` variables, makes the extension with `make`, and serves the protocol until
/// SIGTERM, SIGINT or Gofer's `POST /api/shutdown`.
pub async fn run<E: Extension>(make: impl FnOnce(Context) -> E) -> Result<(), Error> {
    let system = SystemConfig::from_env()?;
    let level = system.log_level.parse().unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_ansi(false).try_init();
    let gofer = Gofer {
        http: reqwest::Client::new(),
        host: system.gofer_host.clone(),
        token: system.secret.clone(),
        id: system.id.clone(),
    };
    let extension = make(Context { system: system.clone(), gofer });
    let shutdown = Shutdown::default();
    let served = Arc::new(Served { extension, system: system.clone(), shutdown: shutdown.clone() });

    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route("/api/health", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/info", get(info::<E>))
        .route("/api/debug", get(debug::<E>))
        .route("/api/subscribe", post(subscribe::<E>).delete(unsubscribe::<E>))
        .route("/api/external-event", post(external_event::<E>))
        .route("/api/shutdown", post(shutdown_call::<E>))
        .layer(axum::middleware::from_fn_with_state(served.clone(), check_secret::<E>))
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind(system.bind_address)
        .await
        .map_err(|source| Error::Listen { address: system.bind_address, source })?;
    tracing::info!(id = %system.id, address = %system.bind_address, gofer = %system.gofer_host, "extension is ready");
    let stopping = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopping.wait_or_signal().await })
        .await
        .map_err(Error::Serve)?;
    served.extension.shutdown().await;
    tracing::info!("extension stopped");
    Ok(())
}

/// A one-shot stop signal shared by the shutdown route and the signal handlers.
mod stop {
    use std::sync::Arc;

    use tokio::sync::Notify;

    #[derive(Clone, Default)]
    pub struct Shutdown(Arc<Notify>);

    impl Shutdown {
        pub fn trigger(&self) {
            self.0.notify_one();
        }

        pub async fn wait_or_signal(&self) {
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = self.0.notified() => {}
                _ = tokio::signal::ctrl_c() => {}
                () = terminate => {}
            }
        }
    }
}
