//! Logins to the web UI: a random session id in an HttpOnly cookie, standing for the API token its holder typed in.
//! The token itself stays on the server (in memory), so it never reaches a page, a URL or a script; every request
//! made with the cookie is checked with that token's permissions, exactly as a request bearing it would be.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie that carries a session id.
pub const COOKIE: &str = "gofer_session";

/// The live sessions of this server. A restart ends them (people log in again).
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

#[derive(Debug)]
struct Session {
    secret: String,
    until: Instant,
}

impl Sessions {
    /// More sessions than this and the expired ones are dropped first; past it, the oldest-ending goes.
    const MAX: usize = 10_000;

    /// Starts a session for a token's secret, lasting `ttl`; returns its id.
    pub fn start(&self, secret: &str, ttl: Duration) -> String {
        let mut bytes = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut bytes) {
            // No randomness, no guessable ids: the caller refuses the login.
            tracing::error!(error = %e, "no randomness for a session id");
            return String::new();
        }
        let id = hex::encode(bytes);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() >= Self::MAX {
            let now = Instant::now();
            live.retain(|_, session| session.until > now);
            if live.len() >= Self::MAX
                && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.until).map(|(id, _)| id.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), Session { secret: secret.to_string(), until: Instant::now() + ttl });
        id
    }

    /// The token secret of a live session.
    pub fn secret(&self, id: &str) -> Option<String> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get(id) {
            Some(session) if session.until > Instant::now() => Some(session.secret.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logout, or a token that no longer works).
    pub fn end(&self, id: &str) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The session id a request's `Cookie` header carries, if any.
pub fn session_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

/// Whether a request comes from a page of this server: its `Origin` names the host it was sent to (`Host`, or
/// `X-Forwarded-Host` behind a proxy that rewrites `Host`), or, without an `Origin`, the browser says it is
/// same-origin. Requests from other sites (forged forms, scripts) are not: a browser sends another site's `Origin`,
/// and a page of another site cannot add `X-Forwarded-Host` to a request without asking first (CORS), which this
/// server never allows.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("origin") {
        Some(origin) => {
            let authority = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
            let forwarded = header("x-forwarded-host").and_then(|hosts| hosts.split(',').next()).map(str::trim);
            authority.is_some_and(|authority| [header("host"), forwarded].contains(&Some(authority)))
        }
        None => header("sec-fetch-site").is_some_and(|site| site == "same-origin"),
    }
}

/// Whether a request is foreign: it names an `Origin` (or a `Sec-Fetch-Site`) that is not this server. Requests
/// without either (the CLI, extensions, scripts) are not browsers' and are not foreign.
pub fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    let named = headers.contains_key("origin") || headers.contains_key("sec-fetch-site");
    named && !same_origin(headers) && headers.get("sec-fetch-site").is_none_or(|site| site != "none")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (axum::http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn sessions_start_find_and_end() {
        let sessions = Sessions::default();
        let id = sessions.start("secret", Duration::from_secs(60));
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.secret(&id).as_deref(), Some("secret"));
        assert_eq!(sessions.secret("other"), None);
        sessions.end(&id);
        assert_eq!(sessions.secret(&id), None);
        let expired = sessions.start("secret", Duration::ZERO);
        assert_eq!(sessions.secret(&expired), None, "an expired session is no session");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; gofer_session=abc; b=2")]);
        assert_eq!(session_id(&h).as_deref(), Some("abc"));
        assert_eq!(session_id(&headers(&[("cookie", "gofer_session=")])), None);
        assert_eq!(session_id(&headers(&[("cookie", "xgofer_session=abc")])), None);
    }

    #[test]
    fn only_pages_of_this_server_are_same_origin() {
        let own = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert!(same_origin(&own) && !cross_site(&own));
        let forged = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")]);
        assert!(!same_origin(&forged) && cross_site(&forged));
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(!same_origin(&null) && cross_site(&null));
        let fetch = headers(&[("host", "h"), ("sec-fetch-site", "same-origin")]);
        assert!(same_origin(&fetch));
        let other = headers(&[("host", "h"), ("sec-fetch-site", "cross-site")]);
        assert!(!same_origin(&other) && cross_site(&other));
        let proxied = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "gofer.example.com"),
            ("origin", "https://gofer.example.com"),
        ]);
        assert!(same_origin(&proxied), "behind a proxy that rewrites Host");
        let cli = headers(&[("host", "h")]);
        assert!(!same_origin(&cli) && !cross_site(&cli), "the CLI names no origin: not a browser, not foreign");
    }
}
