//! Checking the tokens requests present. Development mode lets requests without a token in (the full auth layer,
//! with production mode, users and roles, comes later); but a token that is presented is always checked: an
//! unknown, disabled or expired one is refused, and a token only does what it was made for. Extension tokens hold
//! their extension's role; run tokens (`inject_api_token`) may read their own pipeline and read and write their
//! own run's objects.

use gofer_api::epoch_millis;
use gofer_api::permissions::{Access, Token};

use crate::Gofer;
use crate::tokens::{self, RUN_TOKEN_ROLE};

/// What the auth check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// 401: no valid token.
    Unauthenticated(String),
    /// 403: a valid token that may not do this.
    Forbidden(String),
}

/// Whether a run token (holder `run:<ns>/<pipeline>/<run>`) may make this request.
fn run_token_allows(scope: &str, method: &str, path: &str) -> bool {
    let mut parts = scope.splitn(3, '/');
    let (Some(ns), Some(pipeline), Some(run)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let pipeline_path = format!("/api/namespaces/{ns}/pipelines/{pipeline}");
    let own_objects = format!("{pipeline_path}/runs/{run}/objects");
    if path == own_objects || path.starts_with(&format!("{own_objects}/")) {
        return true;
    }
    let reads_pipeline = path == pipeline_path
        || ["/configs", "/runs"].iter().any(|sub| path.starts_with(&format!("{pipeline_path}{sub}")));
    method == "GET" && reads_pipeline && !path.contains("/objects")
}

impl Gofer {
    /// Checks the token a request presents (if any) against what the route requires.
    pub async fn authorize(&self, secret: Option<&str>, method: &str, path: &str, access: Access) -> Verdict {
        let Some(secret) = secret else { return Verdict::Allowed };
        let token: Token = match self.storage.get_token_by_hash(&tokens::token_hash(secret)).await {
            Ok(token) => token,
            Err(gofer_storage::Error::NotFound { .. }) => {
                return Verdict::Unauthenticated("the token is unknown or was revoked".into());
            }
            Err(e) => return Verdict::Unauthenticated(format!("the token could not be checked: {e}")),
        };
        if token.disabled {
            return Verdict::Unauthenticated("the token is disabled".into());
        }
        if token.expires != 0 && token.expires < epoch_millis() {
            return Verdict::Unauthenticated("the token has expired".into());
        }
        if let Some(scope) = token.user.strip_prefix("run:") {
            if token.roles.iter().any(|r| r == RUN_TOKEN_ROLE) && run_token_allows(scope, method, path) {
                return Verdict::Allowed;
            }
            return Verdict::Forbidden(format!(
                "a run's token may only read its pipeline and read and write its own run's objects \
                 (/api/namespaces/{scope}/objects); {method} {path} is neither"
            ));
        }
        let Access::Requires(needed) = access else { return Verdict::Allowed };
        for role in &token.roles {
            match self.storage.get_role(role).await {
                Ok(role) if role.permissions.contains(&needed) => return Verdict::Allowed,
                Ok(_) | Err(gofer_storage::Error::NotFound { .. }) => {}
                Err(e) => return Verdict::Unauthenticated(format!("the token's roles could not be read: {e}")),
            }
        }
        Verdict::Forbidden(format!("the token of {} does not grant {needed}", token.user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tokens_reach_their_pipeline_and_their_run_objects_only() {
        let scope = "team/backup/7";
        let allowed = [
            ("GET", "/api/namespaces/team/pipelines/backup"),
            ("GET", "/api/namespaces/team/pipelines/backup/runs/7"),
            ("GET", "/api/namespaces/team/pipelines/backup/configs/2"),
            ("GET", "/api/namespaces/team/pipelines/backup/runs/7/objects"),
            ("PUT", "/api/namespaces/team/pipelines/backup/runs/7/objects/report"),
            ("DELETE", "/api/namespaces/team/pipelines/backup/runs/7/objects/report"),
        ];
        for (method, path) in allowed {
            assert!(run_token_allows(scope, method, path), "{method} {path}");
        }
        let refused = [
            ("PUT", "/api/namespaces/team/pipelines/backup/runs/6/objects/report"),
            ("GET", "/api/namespaces/team/pipelines/backup/runs/6/objects/report"),
            ("GET", "/api/namespaces/team/pipelines/backup/runs/70/objects"),
            ("GET", "/api/namespaces/team/pipelines/backup/objects/cache"),
            ("GET", "/api/namespaces/team/pipelines/backup/secrets"),
            ("GET", "/api/namespaces/team/pipelines/backupx"),
            ("POST", "/api/namespaces/team/pipelines/backup/runs"),
            ("GET", "/api/namespaces/other/pipelines/backup"),
            ("GET", "/api/secrets"),
        ];
        for (method, path) in refused {
            assert!(!run_token_allows(scope, method, path), "{method} {path}");
        }
    }
}
