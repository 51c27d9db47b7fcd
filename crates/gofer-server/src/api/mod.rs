//! The HTTP API: the routes (each declared once, on its handler, with the access it requires), the OpenAPI
//! document and the error mapping. Handlers are thin: they parse input, call one `gofer_core::Gofer` method and
//! map the result.

mod deployments;
mod events;
mod extensions;
pub(crate) mod extract;
mod namespaces;
mod objects;
mod pipelines;
mod roles;
mod runs;
mod secrets;
mod system;
mod tasks;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use gofer_api::permissions::{Access, Action, Permission, Resource};
use gofer_core::Gofer;
use utoipa::OpenApi;

pub use extract::ApiFailure;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub gofer: Gofer,
    pub dev_mode: bool,
    /// Failed token checks per client address, to slow down guessing.
    pub failures: Arc<AuthFailures>,
    /// How long a request may take until its answer starts (streams then go on as long as they need).
    pub request_timeout: std::time::Duration,
    /// Cancelled when the server stops: followed streams (events, logs) end, so no client holds the stop up.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Logins to the web UI; a request without an `Authorization` header is checked with its session's token.
    pub sessions: Arc<crate::ui::sessions::Sessions>,
    /// Whether this listener serves `/metrics`, and to whom.
    pub metrics: MetricsAccess,
}

/// Where `/metrics` is served and who may scrape it.
#[derive(Debug, Clone, Copy)]
pub struct MetricsAccess {
    /// Served by this listener (off when turned off, or when a listener of their own serves them).
    pub served: bool,
    /// Anyone may scrape, without a token.
    pub public: bool,
}

impl AppState {
    pub fn new(
        gofer: Gofer,
        dev_mode: bool,
        request_timeout: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            gofer,
            dev_mode,
            failures: Arc::default(),
            request_timeout,
            shutdown,
            sessions: Arc::default(),
            metrics: MetricsAccess { served: true, public: false },
        }
    }

    /// A streamed answer of `content_type` that ends when the server stops. A followed stream (one that stays open
    /// for what happens next) closes its connection when it ends: a browser that leaves the page would otherwise
    /// keep the connection to drain and reuse it, and with a few such connections held, its next pages wait.
    pub fn streamed<S, E>(&self, content_type: &'static str, stream: S, follow: bool) -> axum::response::Response
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: Into<axum::BoxError> + 'static,
    {
        use axum::http::{HeaderValue, header};
        use axum::response::IntoResponse;
        let mut response = ([(header::CONTENT_TYPE, content_type)], self.until_shutdown(stream)).into_response();
        if follow {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// A streamed response body that ends when the server stops.
    pub fn until_shutdown<S, E>(&self, stream: S) -> axum::body::Body
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: Into<axum::BoxError> + 'static,
    {
        use futures::StreamExt;
        axum::body::Body::from_stream(stream.take_until(self.shutdown.clone().cancelled_owned()))
    }
}

/// Checks with unknown tokens (guesses) per client address and per presented token, within a window. Past the
/// limit, unknown tokens from that address (or that same unknown token from anywhere) get 429 for the rest of the
/// window; a valid token is always let through, so clients behind a shared proxy address are not locked out.
#[derive(Debug, Default)]
pub struct AuthFailures {
    seen: std::sync::Mutex<std::collections::HashMap<FailureKey, (u32, std::time::Instant)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FailureKey {
    Address(std::net::IpAddr),
    /// The hash of a presented token nobody issued.
    Token(String),
}

impl AuthFailures {
    const LIMIT: u32 = 20;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    fn blocked(&self, key: &FailureKey) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(key).is_some_and(|(count, since)| *count >= Self::LIMIT && since.elapsed() < Self::WINDOW)
    }

    fn record(&self, key: FailureKey) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 10_000 {
            seen.retain(|_, (_, since)| since.elapsed() < Self::WINDOW);
        }
        let entry = seen.entry(key).or_insert((0, std::time::Instant::now()));
        if entry.1.elapsed() >= Self::WINDOW {
            *entry = (0, std::time::Instant::now());
        }
        entry.0 += 1;
    }

    /// Records a failed check; true when the address or the token was over the limit already.
    pub(crate) fn failed(&self, ip: Option<std::net::IpAddr>, secret: &str) -> bool {
        let keys: Vec<FailureKey> = ip
            .map(FailureKey::Address)
            .into_iter()
            .chain([FailureKey::Token(gofer_core::tokens::token_hash(secret))])
            .collect();
        let blocked = keys.iter().any(|key| self.blocked(key));
        for key in keys {
            self.record(key);
        }
        blocked
    }
}

/// One row of the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    pub path: String,
    pub access: Access,
}

/// Every route, each named once, by its handler: the handler's `#[utoipa::path]` gives the method, the path and
/// the access it requires (`x-gofer-access`). `$then!` is given the list: [`mount`] makes the router and the route
/// table from it, [`document`] the OpenAPI document.
macro_rules! each_route {
    ($then:ident) => {
        $then!(
            system::health,
            system::openapi,
            system::pipeline_config_schema,
            tokens::bootstrap,
            tokens::whoami,
            tokens::list,
            tokens::create,
            tokens::get,
            tokens::update,
            tokens::delete,
            roles::list,
            roles::create,
            roles::get,
            roles::update,
            roles::delete,
            system::get_system,
            system::update_system,
            system::list_servers,
            system::metrics,
            events::list,
            extensions::list,
            extensions::get,
            extensions::install,
            extensions::update,
            extensions::uninstall,
            extensions::logs,
            extensions::debug,
            extensions::list_extension_subscriptions,
            extensions::list_subscriptions,
            extensions::subscribe,
            extensions::update_subscription,
            extensions::unsubscribe,
            objects::list_extension,
            objects::put_extension,
            objects::get_extension,
            objects::delete_extension,
            objects::list_pipeline,
            objects::put_pipeline,
            objects::get_pipeline,
            objects::delete_pipeline,
            objects::list_run,
            objects::put_run,
            objects::get_run,
            objects::delete_run,
            secrets::list_global,
            secrets::put_global,
            secrets::get_global,
            secrets::delete_global,
            secrets::list_pipeline,
            secrets::put_pipeline,
            secrets::get_pipeline,
            secrets::delete_pipeline,
            namespaces::list,
            namespaces::create,
            namespaces::get,
            namespaces::update,
            namespaces::delete,
            pipelines::list,
            pipelines::get,
            pipelines::update,
            pipelines::delete,
            pipelines::list_configs,
            pipelines::register_config,
            pipelines::get_config,
            pipelines::deploy_config,
            pipelines::delete_config,
            pipelines::rollback,
            deployments::list,
            deployments::get,
            deployments::promote,
            deployments::abort,
            runs::list,
            runs::start,
            runs::get,
            runs::cancel,
            tasks::list,
            tasks::get,
            tasks::cancel,
            tasks::logs,
            tasks::exec,
            tasks::attach,
        )
    };
}

/// The router and route table of the listed handlers; reads only what each route needs (no schemas).
macro_rules! mount {
    ($($module:ident :: $handler:ident),* $(,)?) => {{
        let mut routes = Routes { router: Router::new(), table: Vec::new() };
        $( paste::paste! { routes.add::<$module::[<__path_ $handler>], _, _>($module::$handler); } )*
        routes
    }};
}

/// The OpenAPI document of the listed handlers, with the schemas they use.
macro_rules! document {
    ($($module:ident :: $handler:ident),* $(,)?) => {
        utoipa_axum::router::OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
            $( .routes(utoipa_axum::routes!($module::$handler)) )*
            .into_openapi()
    };
}

struct Routes {
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    /// Mounts `handler` where its annotation `P` says, and records the access it declares (a route that declares
    /// none is left out of the table, and so refused by the token check).
    fn add<P, H, T>(&mut self, handler: H)
    where
        P: utoipa::Path,
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let path = P::path();
        let access = declared_access(&P::operation());
        let mut methods = axum::routing::MethodRouter::new();
        for method in P::methods() {
            let (method, filter) = http_method(&method);
            methods = methods.on(filter, handler.clone());
            if let Some(access) = access {
                self.table.push(RouteInfo { method, path: path.clone(), access });
            }
        }
        self.router = std::mem::replace(&mut self.router, Router::new()).route(&path, methods);
    }
}

fn http_method(method: &utoipa::openapi::path::HttpMethod) -> (Method, axum::routing::MethodFilter) {
    use axum::routing::MethodFilter;
    use utoipa::openapi::path::HttpMethod;
    match method {
        HttpMethod::Get => (Method::GET, MethodFilter::GET),
        HttpMethod::Post => (Method::POST, MethodFilter::POST),
        HttpMethod::Put => (Method::PUT, MethodFilter::PUT),
        HttpMethod::Patch => (Method::PATCH, MethodFilter::PATCH),
        HttpMethod::Delete => (Method::DELETE, MethodFilter::DELETE),
        HttpMethod::Head => (Method::HEAD, MethodFilter::HEAD),
        HttpMethod::Options => (Method::OPTIONS, MethodFilter::OPTIONS),
        HttpMethod::Trace => (Method::TRACE, MethodFilter::TRACE),
    }
}

/// The access each route requires, by route pattern and method.
pub(crate) type AccessTable = std::collections::HashMap<String, Vec<(Method, Access)>>;

/// What the token check needs: the app, and the access of every route.
#[derive(Clone)]
struct TokenCheck {
    app: AppState,
    access: Arc<AccessTable>,
}

/// The API router. Every matched route goes through the token check first.
pub fn router(state: AppState) -> Router {
    let metrics = state.gofer.metrics().clone();
    routes(state).0.fallback(system::not_found).layer(axum::middleware::from_fn_with_state(metrics, log_request))
}

/// `/metrics` alone, for a listener of its own (`metrics.bind_address`): the same token check and request log as
/// on the API's listener.
pub fn metrics_router(mut state: AppState) -> Router {
    state.metrics.served = true;
    let mut access = AccessTable::new();
    let needs = if state.metrics.public { Access::Public } else { METRICS_ACCESS };
    access.insert("/metrics".into(), vec![(Method::GET, needs)]);
    let metrics = state.gofer.metrics().clone();
    let check = TokenCheck { app: state.clone(), access: Arc::new(access) };
    Router::new()
        .route("/metrics", axum::routing::get(system::metrics))
        .route_layer(axum::middleware::from_fn_with_state(check, check_token))
        .route_layer(axum::middleware::from_fn(note_route))
        .with_state(state)
        .fallback(system::not_found)
        .layer(axum::middleware::from_fn_with_state(metrics, log_request))
}

/// What scraping `/metrics` needs unless `metrics.public`: what the route declares.
const METRICS_ACCESS: Access = Access::Requires(Permission::new(Resource::System, Action::Read));

/// The API, and the web UI beside it unless `ui` is `None`. Every request is logged once.
pub fn app(state: AppState, ui: Option<crate::ui::Settings>) -> Router {
    let metrics = state.gofer.metrics().clone();
    let (api, access) = routes(state.clone());
    let app = match ui {
        Some(settings) => {
            let dev_mode = state.dev_mode;
            let ui = crate::ui::router(state, access, settings).route_layer(axum::middleware::from_fn(note_route));
            api.merge(ui).fallback(move |uri: axum::http::Uri| crate::ui::fallback(uri, dev_mode))
        }
        None => api.fallback(system::not_found),
    };
    app.layer(axum::middleware::from_fn_with_state(metrics, log_request))
}

/// The route template a request matched, handed from inside the router to [`log_request`] outside it.
#[derive(Debug, Clone)]
struct RouteTemplate(String);

async fn note_route(
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(RouteTemplate(matched.as_str().to_string()));
    }
    response
}

/// Serves a request inside a span naming its id, then logs it once: method, route template (never the path with
/// its ids, nor a query, header or body), status and the time until the answer started; and counts it in the
/// metrics by the same labels. Health checks log at debug.
async fn log_request(
    axum::extract::State(metrics): axum::extract::State<gofer_core::metrics::Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let id = extract::random_id();
    let method = request.method().clone();
    let span = tracing::info_span!("request", id = %id);
    let response = extract::REQUEST_ID.scope(id, next.run(request).instrument(span.clone())).await;
    let route = response.extensions().get::<RouteTemplate>().map_or("(no route)", |r| r.0.as_str());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics.http_request(method.as_str(), route, status, elapsed);
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if route == "/api/health" {
            tracing::debug!(target: "gofer::http", %method, route, status, duration_ms, "request");
        } else {
            tracing::info!(target: "gofer::http", %method, route, status, duration_ms, "request");
        }
    });
    response
}

/// The API's routes (no fallback) and the access each requires.
fn routes(state: AppState) -> (Router, Arc<AccessTable>) {
    let Routes { router, table } = each_route!(mount);
    let mut access = AccessTable::new();
    for route in table {
        access.entry(route.path).or_default().push((route.method, route.access));
    }
    if state.metrics.public {
        access.insert("/metrics".into(), vec![(Method::GET, Access::Public)]);
    }
    let access = Arc::new(access);
    let check = TokenCheck { app: state.clone(), access: access.clone() };
    let check = axum::middleware::from_fn_with_state(check, check_token);
    let router = router.route_layer(check).route_layer(axum::middleware::from_fn(note_route));
    (router.with_state(state), access)
}

/// The JSON 404 of a path no API route serves.
pub async fn not_found(uri: axum::http::Uri) -> ApiFailure {
    system::not_found(uri).await
}

/// The access a route requires; `None` for a route that declares none, which the token check refuses (a test
/// holds every route to declaring one).
pub(crate) fn access_of(table: &AccessTable, method: &Method, pattern: &str) -> Option<Access> {
    // HEAD is served by GET routes.
    let method = if method == Method::HEAD { &Method::GET } else { method };
    table.get(pattern)?.iter().find(|(m, _)| m == method).map(|(_, access)| *access)
}

/// The access an operation declares in `x-gofer-access`, if it declares a valid one.
fn declared_access(operation: &utoipa::openapi::path::Operation) -> Option<Access> {
    let value = operation.extensions.as_ref()?.get("x-gofer-access")?;
    value.as_str()?.parse().ok()
}

/// Who made the request: their token, when they presented a valid one. Handlers that need the caller
/// (whoami, making tokens) read it from the request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<gofer_api::permissions::Token>);

/// Checks the request's bearer token against the route's access: 401 for a missing (production mode), unknown,
/// disabled or expired token, 403 for one that does not grant the route (for the namespace and pipeline it names).
async fn check_token(
    axum::extract::State(TokenCheck { app: state, access: table }): axum::extract::State<TokenCheck>,
    matched: Option<axum::extract::MatchedPath>,
    params: axum::extract::RawPathParams,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let client = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
    let ip = client.map(|c| c.0.ip());
    let header = request.headers().get(axum::http::header::AUTHORIZATION);
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // A browser on another site may send requests here (a forged form, a script): none of them may change anything,
    // whatever credentials the browser holds for this server (or none, in development mode).
    if changes_state && crate::ui::sessions::cross_site(request.headers()) {
        return ApiFailure::new(
            axum::http::StatusCode::FORBIDDEN,
            gofer_api::error::ErrorCode::PermissionDenied,
            "refused: a request from another site (its Origin is not this server) may not change anything",
        )
        .into_response();
    }
    let secret = match header.map(|v| v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim)) {
        // A web UI login: its session stands for the token typed in. A change made with it must come from this
        // server's own pages (same origin), besides the cookie being SameSite=Strict.
        None => match crate::ui::sessions::session_id(request.headers()).and_then(|id| state.sessions.secret(&id)) {
            Some(_) if changes_state && !crate::ui::sessions::same_origin(request.headers()) => {
                return ApiFailure::new(
                    axum::http::StatusCode::FORBIDDEN,
                    gofer_api::error::ErrorCode::PermissionDenied,
                    "refused: a change made with a web UI login must come from this server's pages (send Origin)",
                )
                .into_response();
            }
            secret => secret,
        },
        Some(Some(secret)) if !secret.is_empty() => Some(secret.to_string()),
        Some(_) => {
            return ApiFailure::new(
                axum::http::StatusCode::UNAUTHORIZED,
                gofer_api::error::ErrorCode::PermissionDenied,
                "the Authorization header must be `Bearer <token>`",
            )
            .into_response();
        }
    };
    // Numbers a path can hold but no stored id can reach are refused here, for every route alike.
    for (name, value) in params.iter() {
        if matches!(name, "run_id" | "version" | "deployment_id")
            && let Ok(number) = value.parse::<u64>()
            && let Err(e) = gofer_core::check_id(name, number)
        {
            return ApiFailure::from(e).into_response();
        }
    }
    let param = |name: &str| params.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string());
    let (namespace, pipeline, extension) = (param("namespace_id"), param("pipeline_id"), param("extension_id"));
    let run = param("run_id").and_then(|run| run.parse::<u64>().ok());
    let access = match matched {
        None => Access::Public,
        Some(m) => match access_of(&table, request.method(), m.as_str()) {
            Some(access) => access,
            None => {
                tracing::error!(method = %request.method(), route = m.as_str(), "a route declares no access");
                return ApiFailure::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    gofer_api::error::ErrorCode::Internal,
                    "this route declares no access; it is refused to everyone",
                )
                .into_response();
            }
        },
    };
    let path = request.uri().path().to_string();
    let scope = gofer_core::auth::Scope {
        namespace: namespace.as_deref(),
        pipeline: pipeline.as_deref(),
        run,
        extension: extension.as_deref(),
    };
    let auth = gofer_core::auth::Request { secret: secret.as_deref(), access, scope };
    let (verdict, token) = state.gofer.authorize(auth, !state.dev_mode).await;
    let denied_with = |status, code, message: String| ApiFailure::new(status, code, message).into_response();
    let denied = |status, message| denied_with(status, gofer_api::error::ErrorCode::PermissionDenied, message);
    match verdict {
        gofer_core::auth::Verdict::Allowed => {
            request.extensions_mut().insert(Caller(token));
            // Uploads take as long as their bytes need, and starting an extension container as long as its own
            // timeout says (cutting either off half-way would leave half a thing); every other request must start
            // its answer in time.
            let unbounded = (request.method() == Method::PUT && path.contains("/objects/"))
                || (request.method() != Method::GET && path.starts_with("/api/extensions"));
            if unbounded {
                return next.run(request).await;
            }
            match tokio::time::timeout(state.request_timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => denied_with(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    gofer_api::error::ErrorCode::Unavailable,
                    format!(
                        "the request took longer than {}s (server.request_timeout_seconds)",
                        state.request_timeout.as_secs()
                    ),
                ),
            }
        }
        gofer_core::auth::Verdict::Unknown(message) => {
            // Unknown tokens are how tokens get guessed: past the limit the answer is 429, not 401.
            if secret.as_deref().is_some_and(|secret| state.failures.failed(ip, secret)) {
                return denied(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too many failed token checks from this address or with this token; wait a minute".into(),
                );
            }
            denied(axum::http::StatusCode::UNAUTHORIZED, message)
        }
        gofer_core::auth::Verdict::Unauthenticated(message) => denied(axum::http::StatusCode::UNAUTHORIZED, message),
        gofer_core::auth::Verdict::Forbidden(message) => denied(axum::http::StatusCode::FORBIDDEN, message),
    }
}

/// Every route with the access it requires, as its handler declares it; a route without a valid declaration is
/// left out (and so refused by the token check).
pub fn route_table() -> Vec<RouteInfo> {
    each_route!(mount).table
}

/// The OpenAPI document of every route. Made when asked for and not kept.
fn document() -> utoipa::openapi::OpenApi {
    each_route!(document)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gofer",
        description = "Run short-lived jobs in containers. Every error is a JSON `ApiError` with a stable `code`."
    ),
    components(schemas(gofer_api::error::ErrorCode, gofer_api::permissions::Resource, gofer_api::permissions::Action)),
    tags(
        (name = "System", description = "Health, maintenance mode and documents about the API itself"),
        (name = "Events", description = "Everything that happened, stored and live"),
        (name = "Extensions", description = "Extensions and the subscriptions through which they start runs"),
        (name = "Namespaces", description = "Partitions of pipelines"),
        (name = "Objects", description = "Bytes stored by key for a pipeline, a run or an extension, streamed"),
        (name = "Secrets", description = "Pipeline and global secrets, sealed at rest, handed to tasks by reference"),
        (name = "Pipelines", description = "Pipelines and their config versions"),
        (name = "Deployments", description = "Changes of a pipeline's live version: immediate, blue/green, canary"),
        (name = "Runs", description = "Executions of a pipeline"),
        (name = "Tokens", description = "API tokens: bootstrap, create, disable, delete, whoami"),
        (name = "Tasks", description = "Task executions of a run and their logs"),
    )
)]
struct ApiDoc;

/// The OpenAPI document: each operation with its required access (`x-gofer-access`) and the errors it can give.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = document();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    for item in doc.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete] {
            let Some(operation) = operation.as_mut() else { continue };
            // An operation without a valid access is refused to everyone; it is documented as needing a token.
            let access = declared_access(operation)
                .unwrap_or(Access::Requires(Permission::new(Resource::System, Action::Write)));
            declare_error_responses(operation, access);
        }
    }
    doc
}

/// Adds the errors every route of its kind can answer, so the document lists what clients really get: 400 for
/// a route that takes parameters or a body (the extractors refuse malformed ones), 401 and 403 for a route that
/// needs a token, and a `default` for the rest (413, 429, 500, 503 and the like; always an `ApiError`).
fn declare_error_responses(operation: &mut utoipa::openapi::path::Operation, access: Access) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ApiError"))).build())
            .build()
    };
    let takes_input = operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) || operation.request_body.is_some();
    let mut add = |code: &str, description: &str| {
        operation.responses.responses.entry(code.to_string()).or_insert_with(|| error(description).into());
    };
    if takes_input {
        add("400", "A parameter or the body is malformed or invalid; the message names which");
    }
    if let Access::Requires(permission) = access {
        add("401", "No token (production mode), or an unknown, disabled or expired one");
        add("403", &format!("The token does not grant {permission} here"));
    }
    add("default", "Any other error (413 too large, 429 too many failed token checks, 503 unavailable, 500)");
}

/// The OpenAPI document as served and checked in, its tagged enums' schemas made valid (see
/// [`inline_tagged_variants`]).
pub fn openapi_value() -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi()).unwrap_or_default();
    let schemas = doc.pointer("/components/schemas").cloned().unwrap_or_default();
    inline_tagged_variants(&mut doc, &schemas, "#/components/schemas/");
    doc
}

/// The OpenAPI document as the pretty JSON that is checked into `docs/openapi.json`.
pub fn openapi_json() -> String {
    let mut json = serde_json::to_string_pretty(&openapi_value()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// The JSON Schema of a pipeline config (what `Pipeline::finish()` prints), derived from the same types the
/// server deserializes. Checked into `docs/pipeline-config.schema.json`.
pub fn pipeline_config_schema() -> serde_json::Value {
    use utoipa::{PartialSchema, ToSchema};
    let mut defs = Vec::new();
    <gofer_api::config::Pipeline as ToSchema>::schemas(&mut defs);
    let mut doc = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gofer.dev/schemas/pipeline-config.json",
        "title": "Gofer pipeline config",
        "description": "What a pipeline program prints with `.finish()` and `gofer pipeline deploy` registers.",
    });
    let root = serde_json::to_value(<gofer_api::config::Pipeline as PartialSchema>::schema()).unwrap_or_default();
    if let (Some(doc), Some(root)) = (doc.as_object_mut(), root.as_object()) {
        for (k, v) in root {
            doc.entry(k.clone()).or_insert(v.clone());
        }
        let defs: serde_json::Map<String, serde_json::Value> =
            defs.into_iter().map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or_default())).collect();
        doc.insert("$defs".into(), serde_json::Value::Object(defs));
    }
    let text = doc.to_string().replace("#/components/schemas/", "#/$defs/");
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap_or(doc);
    let defs = doc["$defs"].clone();
    inline_tagged_variants(&mut doc, &defs, "#/$defs/");
    doc
}

/// utoipa writes a variant of an internally tagged enum (`{"kind": "canary", ...}`) as `allOf` of the variant's
/// struct and an object holding `kind`; but the struct's `additionalProperties: false` then refuses `kind` itself,
/// so no tagged value would validate. Each such `allOf` becomes the struct's schema with `kind` added to it.
fn inline_tagged_variants(value: &mut serde_json::Value, defs: &serde_json::Value, prefix: &str) {
    use serde_json::Value;
    if let Some(all_of) = value.get("allOf").and_then(Value::as_array)
        && let [reference, tag] = all_of.as_slice()
        && let Some(name) = reference.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(prefix))
        && let Some(kind) = tag.pointer("/properties/kind")
        && let Some(mut inlined) = defs.get(name).cloned()
        && inlined.get("additionalProperties") == Some(&Value::Bool(false))
    {
        let kind = kind.clone();
        if let Some(properties) = inlined.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("kind".into(), kind);
        }
        match inlined.get_mut("required").and_then(Value::as_array_mut) {
            Some(required) => required.insert(0, Value::from("kind")),
            None => inlined["required"] = serde_json::json!(["kind"]),
        }
        if let Some(description) = value.get("description").cloned() {
            inlined["description"] = description;
        }
        *value = inlined;
        return;
    }
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| inline_tagged_variants(v, defs, prefix)),
        Value::Array(items) => items.iter_mut().for_each(|v| inline_tagged_variants(v, defs, prefix)),
        _ => {}
    }
}

/// The config schema as the pretty JSON that is checked in.
pub fn pipeline_config_schema_json() -> String {
    let mut json = serde_json::to_string_pretty(&pipeline_config_schema()).unwrap_or_default();
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_checks_are_counted_per_address_and_per_token() {
        let failures = AuthFailures::default();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let blocked: Vec<bool> = (0..=AuthFailures::LIMIT).map(|_| failures.failed(Some(a), "same-guess")).collect();
        assert!(!blocked[..20].iter().any(|b| *b) && blocked[20], "{blocked:?}");
        assert!(failures.failed(Some(b), "same-guess"), "the same unknown token from elsewhere is blocked too");
        assert!(!failures.failed(Some(b), "another-guess"), "another address with another token is not");
        assert!(failures.failed(Some(a), "another-guess"), "the first address is");
    }
}
