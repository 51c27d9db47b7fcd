//! The web UI, served by the API listener at `/` (the API stays under `/api`).
//!
//! Each page is one URL people can paste (`/namespaces/{ns}/pipelines/{p}/runs/{run}`…). The server answers a page
//! with a small HTML shell and the facts the script needs to draw it (who is signed in, what they may do there); the
//! script (`ui/app.js`, no build step, no third-party code) then reads the API with the same session and follows the
//! server's streams (events, logs) to stay live. Production mode asks for an API token at `/login` and keeps it in a
//! server-side session ([`sessions`]); every page and every API call made from the UI is checked with that token's
//! permissions by the same code as any API request.

pub mod sessions;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gofer_api::permissions::{Access, Token};
use serde::Deserialize;

use crate::api::{AccessTable, AppState, access_of};

/// What the UI's routes can reach.
#[derive(Clone)]
pub struct UiState {
    app: AppState,
    access: Arc<AccessTable>,
    /// Cookies get `Secure` (the API is served over TLS).
    secure: bool,
    session_ttl: Duration,
}

/// The UI's settings from the server configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub secure_cookies: bool,
    pub session_ttl: Duration,
}

/// The UI's routes: pages, login and logout, and the script and style they load.
pub fn router(app: AppState, access: Arc<AccessTable>, settings: Settings) -> Router {
    let state = UiState { app, access, secure: settings.secure_cookies, session_ttl: settings.session_ttl };
    Router::new()
        .route("/", get(dashboard))
        .route("/namespaces/{namespace_id}/pipelines/{pipeline_id}", get(pipeline))
        .route("/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}", get(run))
        .route("/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}", get(task))
        .route("/extensions", get(extensions))
        .route("/events", get(events))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/ui/{asset}", get(asset))
        .with_state(state)
}

/// Answers paths no route serves: the API's JSON 404 under `/api`, the UI's not-found page elsewhere.
pub async fn fallback(uri: Uri, dev_mode: bool) -> Response {
    if uri.path() == "/api" || uri.path().starts_with("/api/") {
        return crate::api::not_found(uri).await.into_response();
    }
    let boot = Boot::error(Page::NotFound, format!("There is no page at {}.", uri.path()), dev_mode);
    shell(StatusCode::NOT_FOUND, &boot)
}

/// The page a shell is for, as the script names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Page {
    Dashboard,
    Pipeline,
    Run,
    Task,
    Extensions,
    Events,
    NotFound,
}

impl Page {
    fn title(self) -> &'static str {
        match self {
            Self::Dashboard => "Pipelines",
            Self::Pipeline => "Pipeline",
            Self::Run => "Run",
            Self::Task => "Task",
            Self::Extensions => "Extensions",
            Self::Events => "Events",
            Self::NotFound => "Not found",
        }
    }
}

/// What the script is told about the page: where it is, who is looking, and what they may do here.
#[derive(Debug, Clone, serde::Serialize)]
struct Boot {
    page: Page,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<String>,
    dev_mode: bool,
    /// Who the token belongs to (production mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// The actions of this page the viewer may take, each checked as the API checks its route.
    can: std::collections::BTreeMap<&'static str, bool>,
    version: &'static str,
    /// Why the page cannot be shown, and the status it is answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

impl Boot {
    fn new(page: Page, dev_mode: bool) -> Self {
        Self {
            page,
            namespace: None,
            pipeline: None,
            run: None,
            task: None,
            dev_mode,
            user: None,
            can: Default::default(),
            version: env!("CARGO_PKG_VERSION"),
            error: None,
            status: None,
        }
    }

    fn error(page: Page, message: String, dev_mode: bool) -> Self {
        Self { error: Some(message), ..Self::new(page, dev_mode) }
    }
}

/// The actions pages offer, each the API route that does it: the page offers the action only when that route
/// would let the viewer through.
const ACTIONS: &[(&str, Method, &str)] = &[
    ("start_run", Method::POST, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs"),
    ("set_state", Method::PATCH, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}"),
    ("deploy", Method::POST, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/configs/{version}/deploy"),
    ("rollback", Method::POST, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/rollback"),
    (
        "promote",
        Method::POST,
        "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/deployments/{deployment_id}/promote",
    ),
    ("abort", Method::POST, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/deployments/{deployment_id}/abort"),
    ("cancel_run", Method::POST, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/cancel"),
    (
        "cancel_task",
        Method::POST,
        "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}/cancel",
    ),
    (
        "read_logs",
        Method::GET,
        "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}/logs",
    ),
    ("read_events", Method::GET, "/api/events"),
];

/// The viewer of a page: the token secret of their session (none in development mode without a login).
struct Viewer {
    secret: Option<String>,
    token: Option<Token>,
}

/// Where a page sends someone who must log in first.
fn to_login(uri: &Uri) -> Response {
    let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("/login?next={}", encode_query(next));
    redirect(&location, None)
}

fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_string())]).into_response();
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

impl UiState {
    /// Who is looking, or the answer that sends them to log in (production mode without a working session).
    async fn viewer(&self, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Response> {
        let session = sessions::session_id(headers);
        let secret = session.as_deref().and_then(|id| self.app.sessions.secret(id));
        let Some(secret) = secret else {
            return if self.app.dev_mode { Ok(Viewer { secret: None, token: None }) } else { Err(to_login(uri)) };
        };
        let request =
            gofer_core::auth::Request { secret: Some(&secret), access: Access::Public, scope: Default::default() };
        match self.app.gofer.authorize(request, true).await {
            (gofer_core::auth::Verdict::Allowed, token) => Ok(Viewer { secret: Some(secret), token }),
            // The token was disabled, deleted or expired since the login: the session ends with it.
            _ => {
                if let Some(id) = session {
                    self.app.sessions.end(&id);
                }
                if self.app.dev_mode { Ok(Viewer { secret: None, token: None }) } else { Err(to_login(uri)) }
            }
        }
    }

    /// Whether the viewer may use the route `method pattern` for this scope, as the API's token check decides.
    async fn may(&self, viewer: &Viewer, method: &Method, pattern: &str, scope: gofer_core::auth::Scope<'_>) -> bool {
        let Some(access) = access_of(&self.access, method, pattern) else { return false };
        let request = gofer_core::auth::Request { secret: viewer.secret.as_deref(), access, scope };
        matches!(self.app.gofer.authorize(request, !self.app.dev_mode).await.0, gofer_core::auth::Verdict::Allowed)
    }

    /// The page's facts: the viewer, and which of the actions they may take in this scope.
    async fn boot(&self, page: Page, viewer: &Viewer, scope: gofer_core::auth::Scope<'_>) -> Boot {
        let mut boot = Boot::new(page, self.app.dev_mode);
        boot.namespace = scope.namespace.map(str::to_string);
        boot.pipeline = scope.pipeline.map(str::to_string);
        boot.run = scope.run;
        boot.user = viewer.token.as_ref().map(|t| t.user.clone());
        for (name, method, pattern) in ACTIONS {
            // The scope the API's check would see: only what the route's path names.
            let named = |param: &str| pattern.contains(&format!("{{{param}}}"));
            let route_scope = gofer_core::auth::Scope {
                namespace: scope.namespace.filter(|_| named("namespace_id")),
                pipeline: scope.pipeline.filter(|_| named("pipeline_id")),
                run: scope.run.filter(|_| named("run_id")),
                extension: None,
            };
            boot.can.insert(name, self.may(viewer, method, pattern, route_scope).await);
        }
        boot
    }

    /// A page about something that must exist and be readable: 403 when the viewer may not read it, 404 when it
    /// does not exist (so an unknown pipeline is a real 404, not an empty page).
    async fn page_of(
        &self,
        page: Page,
        headers: &HeaderMap,
        uri: &Uri,
        scope: gofer_core::auth::Scope<'_>,
        task: Option<&str>,
    ) -> Response {
        let viewer = match self.viewer(headers, uri).await {
            Ok(viewer) => viewer,
            Err(login) => return login,
        };
        let mut boot = self.boot(page, &viewer, scope).await;
        boot.task = task.map(str::to_string);
        let (read, pattern) = match page {
            Page::Pipeline => (Method::GET, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}"),
            Page::Run => (Method::GET, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}"),
            Page::Task => {
                (Method::GET, "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}")
            }
            _ => return shell(StatusCode::OK, &boot),
        };
        if !self.may(&viewer, &read, pattern, scope).await {
            boot.error = Some("Your token may not read this. Ask an administrator for a role that grants it.".into());
            return shell(StatusCode::FORBIDDEN, &boot);
        }
        if let Err(e) = self.exists(scope, task).await {
            let status = match e {
                gofer_core::Error::NotFound { .. } => StatusCode::NOT_FOUND,
                gofer_core::Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            boot.error = Some(match status {
                StatusCode::NOT_FOUND => {
                    let text = e.to_string();
                    let mut chars = text.chars();
                    chars
                        .next()
                        .map(|first| first.to_uppercase().chain(chars).collect::<String>() + ".")
                        .unwrap_or(text)
                }
                _ => "This page cannot be shown right now; the server's log says why.".into(),
            });
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %gofer_core::orchestrator::error_chain(&e), path = uri.path(), "a UI page failed");
            }
            return shell(status, &boot);
        }
        shell(StatusCode::OK, &boot)
    }

    async fn exists(&self, scope: gofer_core::auth::Scope<'_>, task: Option<&str>) -> gofer_core::Result<()> {
        let gofer = &self.app.gofer;
        let (Some(namespace), Some(pipeline)) = (scope.namespace, scope.pipeline) else { return Ok(()) };
        match (scope.run, task) {
            (Some(run), Some(task)) => gofer.get_task_execution(namespace, pipeline, run, task).await.map(drop),
            (Some(run), None) => gofer.get_run(namespace, pipeline, run).await.map(drop),
            _ => gofer.get_pipeline(namespace, pipeline).await.map(drop),
        }
    }

    /// A run's page, or one of its tasks' (the run page with the task selected).
    async fn run_page(&self, headers: &HeaderMap, uri: &Uri, path: (&str, &str, &str), task: Option<&str>) -> Response {
        let (namespace, pipeline, run) = path;
        let Some(number) = page_number(run) else { return not_a_run(run, self.app.dev_mode) };
        let scope = gofer_core::auth::Scope {
            namespace: Some(namespace),
            pipeline: Some(pipeline),
            run: Some(number),
            extension: None,
        };
        let page = if task.is_some() { Page::Task } else { Page::Run };
        self.page_of(page, headers, uri, scope, task).await
    }

    async fn plain(&self, page: Page, headers: &HeaderMap, uri: &Uri, namespace: Option<&str>) -> Response {
        match self.viewer(headers, uri).await {
            Ok(viewer) => {
                let scope = gofer_core::auth::Scope { namespace, ..Default::default() };
                shell(StatusCode::OK, &self.boot(page, &viewer, scope).await)
            }
            Err(login) => login,
        }
    }
}

#[derive(Debug, Deserialize)]
struct DashboardQuery {
    namespace: Option<String>,
}

async fn dashboard(
    State(ui): State<UiState>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<DashboardQuery>, QueryRejection>,
) -> Response {
    let namespace = query.ok().and_then(|Query(q)| q.namespace);
    ui.plain(Page::Dashboard, &headers, &uri, namespace.as_deref()).await
}

async fn extensions(State(ui): State<UiState>, headers: HeaderMap, uri: Uri) -> Response {
    ui.plain(Page::Extensions, &headers, &uri, None).await
}

async fn events(State(ui): State<UiState>, headers: HeaderMap, uri: Uri) -> Response {
    ui.plain(Page::Events, &headers, &uri, None).await
}

async fn pipeline(
    State(ui): State<UiState>,
    headers: HeaderMap,
    uri: Uri,
    Path((namespace, pipeline)): Path<(String, String)>,
) -> Response {
    let scope =
        gofer_core::auth::Scope { namespace: Some(&namespace), pipeline: Some(&pipeline), ..Default::default() };
    ui.page_of(Page::Pipeline, &headers, &uri, scope, None).await
}

async fn run(
    State(ui): State<UiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(path): Path<(String, String, String)>,
) -> Response {
    let (namespace, pipeline, run) = path;
    ui.run_page(&headers, &uri, (&namespace, &pipeline, &run), None).await
}

async fn task(
    State(ui): State<UiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(path): Path<(String, String, String, String)>,
) -> Response {
    let (namespace, pipeline, run, task) = path;
    ui.run_page(&headers, &uri, (&namespace, &pipeline, &run), Some(&task)).await
}

/// A run number from a path, if it is one a run can have.
fn page_number(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|n| gofer_core::check_id("run_id", *n).is_ok())
}

fn not_a_run(text: &str, dev_mode: bool) -> Response {
    let boot =
        Boot::error(Page::NotFound, format!("'{text}' is not a run number; runs are numbered 1, 2, 3…"), dev_mode);
    shell(StatusCode::NOT_FOUND, &boot)
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Where to go after logging in: a path of this server, never another site (`//evil`, `/\evil`, `http:…`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") => next.to_string(),
        _ => "/".into(),
    }
}

async fn login_page(State(ui): State<UiState>, query: Result<Query<LoginQuery>, QueryRejection>) -> Response {
    let next = safe_next(query.as_ref().ok().and_then(|Query(q)| q.next.as_deref()));
    if ui.app.dev_mode {
        return redirect(&next, None);
    }
    login_form(StatusCode::OK, &next, None)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Takes an API token from the login form; a working one starts a session (an HttpOnly, SameSite=Strict cookie) and
/// goes on to the page asked for. Unknown tokens count towards the same guessing limit as the API's.
async fn login(
    State(ui): State<UiState>,
    headers: HeaderMap,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !sessions::same_origin(&headers) {
        return login_form(StatusCode::FORBIDDEN, "/", Some("Log in from this server's own login page."));
    }
    let Ok(Form(form)) = form else {
        return login_form(StatusCode::BAD_REQUEST, "/", Some("Paste an API token into the field and press Log in."));
    };
    let next = safe_next(form.next.as_deref());
    let secret = form.token.trim();
    if secret.is_empty() {
        return login_form(StatusCode::BAD_REQUEST, &next, Some("Paste an API token into the field."));
    }
    let request = gofer_core::auth::Request { secret: Some(secret), access: Access::Public, scope: Default::default() };
    let (verdict, token) = ui.app.gofer.authorize(request, true).await;
    let token = match (verdict, token) {
        (gofer_core::auth::Verdict::Allowed, Some(token)) => token,
        (gofer_core::auth::Verdict::Unknown(_), _) => {
            let ip = connect.map(|axum::Extension(c)| c.0.ip());
            let message = if ui.app.failures.failed(ip, secret) {
                "Too many failed logins from this address; wait a minute."
            } else {
                "That token is unknown or was revoked."
            };
            return login_form(StatusCode::UNAUTHORIZED, &next, Some(message));
        }
        (gofer_core::auth::Verdict::Unauthenticated(message), _) => {
            return login_form(StatusCode::UNAUTHORIZED, &next, Some(&message));
        }
        _ => return login_form(StatusCode::UNAUTHORIZED, &next, Some("That token cannot log in.")),
    };
    let mut ttl = ui.session_ttl;
    if token.expires > 0 {
        let left = token.expires.saturating_sub(gofer_api::epoch_millis());
        ttl = ttl.min(Duration::from_millis(left));
    }
    // A login replaces the session this browser had.
    if let Some(old) = sessions::session_id(&headers) {
        ui.app.sessions.end(&old);
    }
    let id = ui.app.sessions.start(secret, ttl);
    if id.is_empty() {
        return login_form(StatusCode::SERVICE_UNAVAILABLE, &next, Some("The server cannot start a session now."));
    }
    tracing::info!(user = %token.user, token = %token.id, "logged in to the web UI");
    redirect(&next, Some(session_cookie(&id, ttl.as_secs(), ui.secure)))
}

/// Ends the session and sends the browser to the login page.
async fn logout(State(ui): State<UiState>, headers: HeaderMap) -> Response {
    if !sessions::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "refused: a logout must come from this server's own pages").into_response();
    }
    if let Some(id) = sessions::session_id(&headers) {
        ui.app.sessions.end(&id);
    }
    redirect(if ui.app.dev_mode { "/" } else { "/login" }, Some(session_cookie("", 0, ui.secure)))
}

fn session_cookie(id: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}", sessions::COOKIE)
}

/// The login page: a plain form (it works without the script).
fn login_form(status: StatusCode, next: &str, problem: Option<&str>) -> Response {
    let problem = problem.map(|p| format!("<p class=\"problem\" role=\"alert\">{}</p>", escape(p))).unwrap_or_default();
    let body = format!(
        "<main class=\"login\"><h1>Log in to Gofer</h1>{problem}\
         <form method=\"post\" action=\"/login\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button type=\"submit\">Log in</button></form>\
         <p class=\"hint\">An administrator makes tokens with <code>gofer token create</code>; the first one comes from \
         <code>gofer token bootstrap</code>.</p></main>",
        escape(next)
    );
    page(status, "Log in", &body, None)
}

/// A page shell: the script draws the page from `boot`.
fn shell(status: StatusCode, boot: &Boot) -> Response {
    let json = if status == StatusCode::OK {
        boot_json(boot)
    } else {
        boot_json(&Boot { status: Some(status.as_u16()), ..boot.clone() })
    };
    let body = format!(
        "<div id=\"app\" aria-live=\"polite\"><p class=\"loading\">Loading…</p></div>\
         <noscript><p class=\"problem\">This page needs JavaScript; the CLI (<code>gofer --help</code>) needs none.</p></noscript>\
         <script id=\"boot\" type=\"application/json\">{json}</script>"
    );
    page(status, boot.page.title(), &body, Some("/ui/app.js"))
}

/// The boot data as JSON that can sit inside a `<script>` element: no `<`, `>` or `&` (JSON escapes them), so no
/// text in it (an error message naming a path, say) can end the element.
fn boot_json(boot: &Boot) -> String {
    serde_json::to_string(boot)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn page(status: StatusCode, title: &str, body: &str, script: Option<&str>) -> Response {
    let script = script.map(|src| format!("<script src=\"{src}\" defer></script>")).unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{} · Gofer</title><link rel=\"icon\" href=\"/ui/favicon.svg\">\
         <link rel=\"stylesheet\" href=\"/ui/app.css\">{script}</head><body>{body}</body></html>",
        escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    protect(headers);
    response
}

/// What every UI answer says to the browser: run only this server's script and style, connect only here, never in
/// a frame, sniff nothing, send no referrer elsewhere.
fn protect(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// The UI's own files, built into the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../ui/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("../../ui/app.css")),
    ("favicon.svg", "image/svg+xml", include_str!("../../ui/favicon.svg")),
];

/// Each asset's entity tag: a hash of its bytes, so browsers revalidate cheaply and never keep a stale script.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(_, _, body)| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut hasher);
            format!("\"{:016x}\"", hasher.finish())
        })
        .collect()
});

async fn asset(State(ui): State<UiState>, Path(name): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let Some(index) = ASSETS.iter().position(|(file, _, _)| *file == name) else {
        return fallback(uri, ui.app.dev_mode).await;
    };
    let (_, content_type, body) = ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, etag);
    }
    protect(out);
    response
}

/// Total size of the UI's files, as built into the binary.
pub fn assets_size() -> usize {
    ASSETS.iter().map(|(_, _, body)| body.len()).sum()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_server_are_followed_after_login() {
        assert_eq!(safe_next(Some("/namespaces/default/pipelines/p")), "/namespaces/default/pipelines/p");
        for foreign in ["//evil.example", "/\\evil.example", "https://evil.example", "evil", ""] {
            assert_eq!(safe_next(Some(foreign)), "/", "{foreign}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn page_text_and_boot_data_cannot_break_out() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let mut boot = Boot::new(Page::NotFound, false);
        let hostile = "</script><script>alert('&')</script>";
        boot.error = Some(hostile.into());
        let json = boot_json(&boot);
        assert!(!json.contains('<') && !json.contains('>') && !json.contains('&'), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["error"], hostile, "the script reads back exactly what was meant");
        assert_eq!(encode_query("/a b?c=d&e"), "/a%20b%3Fc%3Dd%26e");
    }

    #[test]
    fn every_action_names_a_route_of_the_api() {
        let table = crate::api::route_table();
        for (name, method, pattern) in ACTIONS {
            assert!(table.iter().any(|r| r.method == method && r.path == *pattern), "{name}: {method} {pattern}");
        }
    }

    #[test]
    fn the_ui_is_small() {
        assert!(assets_size() < 200 * 1024, "the UI's files are {} bytes; keep them under 200 KiB", assets_size());
    }
}
