//! Checking the tokens requests present. Development mode lets requests without a token in (the full auth layer,
//! with production mode, users and roles, comes later); but a token that is presented is always checked: an
//! unknown, disabled or expired one is refused, and a token only does what it was made for. Extension tokens hold
//! their extension's role; run tokens (`inject_api_token`) may read their own pipeline and read and write their
//! own run's objects.

use gofer_api::epoch_millis;
use gofer_api::permissions::{Access, Grant, Permission, Role, Token, system_roles};

use crate::Gofer;
use crate::tokens::{self, RUN_TOKEN_ROLE};

/// What the auth check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// 401: no valid token.
    Unauthenticated(String),
    /// 401: a token nobody issued (or one revoked): what guessing looks like.
    Unknown(String),
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

/// Whether a known token may be used now.
fn usable(token: &Token) -> std::result::Result<(), String> {
    if token.disabled {
        return Err("the token is disabled".into());
    }
    if token.expires != 0 && token.expires < epoch_millis() {
        return Err("the token has expired".into());
    }
    Ok(())
}

/// What a request asks for, as the auth check needs it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The bearer secret, if the request carries one.
    pub secret: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub access: Access,
    /// The namespace, pipeline and extension the route names, if any.
    pub namespace: Option<&'a str>,
    pub pipeline: Option<&'a str>,
    pub extension: Option<&'a str>,
}

impl Gofer {
    /// The roles a token holds (built-in ones from code, the rest from storage); unknown ids are skipped.
    async fn roles_of(&self, token: &Token) -> std::result::Result<Vec<Role>, String> {
        let builtin = system_roles();
        let mut roles = Vec::with_capacity(token.roles.len());
        for id in &token.roles {
            if let Some(role) = builtin.iter().find(|r| &r.id == id) {
                roles.push(role.clone());
                continue;
            }
            match self.storage.get_role(id).await {
                Ok(role) => roles.push(role),
                Err(gofer_storage::Error::NotFound { .. }) => {}
                Err(e) => return Err(format!("the token's roles could not be read: {e}")),
            }
        }
        Ok(roles)
    }

    /// Checks a request's token (if any) against what the route requires. With `required` (production mode) a
    /// request without a token gets only the public routes. Returns the caller's token when there is one.
    pub async fn authorize(&self, request: Request<'_>, required: bool) -> (Verdict, Option<Token>) {
        let Some(secret) = request.secret else {
            return match (required, request.access) {
                (true, Access::Requires(needed)) => (
                    Verdict::Unauthenticated(format!(
                        "this route needs a token granting {needed}; pass one with --token or GOFER_TOKEN"
                    )),
                    None,
                ),
                _ => (Verdict::Allowed, None),
            };
        };
        let token = match self.storage.get_token_by_hash(&tokens::token_hash(secret)).await {
            Ok(token) => token,
            Err(gofer_storage::Error::NotFound { .. }) => {
                return (Verdict::Unknown("the token is unknown or was revoked".into()), None);
            }
            Err(e) => return (Verdict::Unauthenticated(format!("the token could not be checked: {e}")), None),
        };
        if let Err(message) = usable(&token) {
            return (Verdict::Unauthenticated(message), None);
        }
        let verdict = self.judge(&token, request).await;
        (verdict, Some(token))
    }

    async fn judge(&self, token: &Token, request: Request<'_>) -> Verdict {
        let Request { method, path, access, namespace, pipeline, extension, .. } = request;
        // A public route (whoami, health) is open to every valid token, a run's token included.
        let Access::Requires(needed) = access else { return Verdict::Allowed };
        if let Some(scope) = token.user.strip_prefix("run:") {
            if token.roles.iter().any(|r| r == RUN_TOKEN_ROLE) && run_token_allows(scope, method, path) {
                return Verdict::Allowed;
            }
            return Verdict::Forbidden(format!(
                "a run's token may only read its pipeline and read and write its own run's objects \
                 (/api/namespaces/{scope}/objects); {method} {path} is neither"
            ));
        }
        if let (Some(own), Some(other)) = (token.user.strip_prefix("extension:"), extension)
            && own != other
            && path.contains("/objects")
        {
            return Verdict::Forbidden(format!("extension '{own}' may not reach the objects of extension '{other}'"));
        }
        // The namespace and pipeline lists show each token only what it may read, so a token that may read some
        // of what they list may ask for them.
        let filtered_list = method == "GET"
            && (path == "/api/namespaces"
                || (namespace.is_some() && pipeline.is_none() && path.ends_with("/pipelines")));
        match self.roles_of(token).await {
            Ok(roles) if roles.iter().any(|role| role.allows(needed, namespace, pipeline)) => Verdict::Allowed,
            Ok(roles) if filtered_list && roles.iter().any(|role| role.allows_somewhere(needed, namespace)) => {
                Verdict::Allowed
            }
            Ok(_) => {
                let scope = match (namespace, pipeline) {
                    (Some(ns), Some(p)) => format!(" on pipeline {ns}/{p}"),
                    (Some(ns), None) => format!(" in namespace {ns}"),
                    _ => String::new(),
                };
                Verdict::Forbidden(format!("the token of {} does not grant {needed}{scope}", token.user))
            }
            Err(message) => Verdict::Unauthenticated(message),
        }
    }
}

/// Checks a grant's patterns; a grant needs at least one of each.
fn check_patterns(what: &str, patterns: &[String]) -> crate::Result<()> {
    if patterns.is_empty() {
        return Err(crate::Error::invalid(format!("a grant needs at least one {what} pattern; use * for all")));
    }
    for pattern in patterns {
        gofer_api::permissions::validate_pattern(what, pattern).map_err(crate::Error::invalid)?;
    }
    Ok(())
}

impl Gofer {
    /// Whether `caller` may read namespace `namespace_id`, or with `pipeline_id` that pipeline (every caller may
    /// when there is no token: development mode).
    pub async fn may_read(&self, caller: Option<&Token>, namespace_id: &str, pipeline_id: Option<&str>) -> bool {
        let Some(token) = caller else { return true };
        let resource = match pipeline_id {
            Some(_) => gofer_api::permissions::Resource::Pipelines,
            None => gofer_api::permissions::Resource::Namespaces,
        };
        let needed = gofer_api::permissions::Permission::new(resource, gofer_api::permissions::Action::Read);
        if let Some(scope) = token.user.strip_prefix("run:") {
            let mut parts = scope.split('/');
            return parts.next() == Some(namespace_id) && pipeline_id.is_none_or(|p| parts.next() == Some(p));
        }
        match self.roles_of(token).await {
            Ok(roles) => roles.iter().any(|role| role.allows(needed, Some(namespace_id), pipeline_id)),
            Err(_) => false,
        }
    }

    /// Every role: the built-in ones, then the stored ones.
    pub async fn list_roles(&self) -> crate::Result<Vec<Role>> {
        let mut roles = system_roles();
        roles.extend(self.storage.list_roles().await?);
        Ok(roles)
    }

    pub async fn get_role(&self, id: &str) -> crate::Result<Role> {
        match system_roles().into_iter().find(|r| r.id == id) {
            Some(role) => Ok(role),
            None => Ok(self.storage.get_role(id).await?),
        }
    }

    /// What `caller` may hand on: None when unrestricted (no token, i.e. development mode, or an admin token),
    /// else the grants of the roles it holds.
    async fn grantable(&self, caller: Option<&Token>) -> crate::Result<Option<Vec<Grant>>> {
        let Some(token) = caller else { return Ok(None) };
        if token.roles.iter().any(|r| r == "admin") && !token.user.starts_with("run:") {
            return Ok(None);
        }
        let roles = self.roles_of(token).await.map_err(crate::Error::invalid)?;
        Ok(Some(roles.into_iter().flat_map(|r| r.grants).collect()))
    }

    /// Refuses grants the caller does not hold itself: nobody makes a role wider than their own token.
    async fn check_grants_held(&self, caller: Option<&Token>, grants: &[Grant]) -> crate::Result<()> {
        let Some(held) = self.grantable(caller).await? else { return Ok(()) };
        if let Some(wider) = grants.iter().find(|g| !g.covered_by(&held)) {
            return Err(crate::Error::Forbidden {
                message: format!(
                    "you may not grant {}: your own token does not hold all of it (ask an admin)",
                    wider.describe()
                ),
            });
        }
        Ok(())
    }

    /// Checks a role's grants: actions and patterns present and valid.
    fn check_grants(grants: &[Grant]) -> crate::Result<()> {
        if grants.is_empty() {
            return Err(crate::Error::invalid("a role needs at least one grant"));
        }
        for grant in grants {
            if grant.actions.is_empty() {
                return Err(crate::Error::invalid("a grant needs at least one action: read, write, delete or reveal"));
            }
            check_patterns("namespace", &grant.namespaces)?;
            check_patterns("pipeline", &grant.pipelines)?;
        }
        Ok(())
    }

    fn check_custom(id: &str, doing: &str) -> crate::Result<()> {
        if system_roles().iter().any(|r| r.id == id) || id.starts_with("extension_") {
            return Err(crate::Error::invalid(format!("role '{id}' is Gofer's own and cannot be {doing}")));
        }
        Ok(())
    }

    /// Stores a custom role after checking its id, grants and patterns. A caller that is not an admin may only
    /// grant what its own token holds.
    pub async fn create_role(&self, caller: Option<&Token>, role: Role) -> crate::Result<Role> {
        gofer_api::config::validate_identifier("role id", &role.id)
            .map_err(|e| crate::Error::invalid(e.to_string()))?;
        if system_roles().iter().any(|r| r.id == role.id) || role.id.starts_with("extension_") {
            return Err(crate::Error::conflict(format!("role '{}' is Gofer's own; choose another id", role.id)));
        }
        crate::text::check("role description", &role.description, crate::text::MAX_DESCRIPTION)?;
        Self::check_grants(&role.grants)?;
        self.check_grants_held(caller, &role.grants).await?;
        let role = Role { system_role: false, ..role };
        self.storage.insert_role(&role).await?;
        Ok(role)
    }

    /// Changes a custom role's description or grants; the new grants must be held by the caller, as when creating
    /// one. Tokens holding the role get the new grants with their next request.
    pub async fn update_role(
        &self,
        caller: Option<&Token>,
        id: &str,
        description: Option<String>,
        grants: Option<Vec<Grant>>,
    ) -> crate::Result<Role> {
        Self::check_custom(id, "changed")?;
        let mut role = self.storage.get_role(id).await?;
        if let Some(description) = description {
            crate::text::check("role description", &description, crate::text::MAX_DESCRIPTION)?;
            role.description = description;
        }
        if let Some(grants) = grants {
            Self::check_grants(&grants)?;
            self.check_grants_held(caller, &grants).await?;
            role.grants = grants;
        }
        self.storage.update_role(&role).await?;
        Ok(role)
    }

    /// Deletes a custom role and takes it from every token that holds it, so a role made later with the same id
    /// gives those tokens nothing.
    pub async fn delete_role(&self, id: &str) -> crate::Result<()> {
        Self::check_custom(id, "deleted")?;
        Ok(self.storage.delete_role(id).await?)
    }

    /// Refuses with 403 unless `caller` holds `needed` for the namespace and pipeline (no token: development mode,
    /// everything is allowed). For checks a route's own permission cannot express, like reading secret values.
    pub async fn require(
        &self,
        caller: Option<&Token>,
        needed: Permission,
        namespace: Option<&str>,
        pipeline: Option<&str>,
    ) -> crate::Result<()> {
        let Some(token) = caller else { return Ok(()) };
        let allowed = !token.user.starts_with("run:")
            && self
                .roles_of(token)
                .await
                .map_err(crate::Error::invalid)?
                .iter()
                .any(|role| role.allows(needed, namespace, pipeline));
        if allowed {
            return Ok(());
        }
        Err(crate::Error::Forbidden { message: format!("the token of {} does not grant {needed}", token.user) })
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
