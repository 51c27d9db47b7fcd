//! Checking the tokens requests present, in terms of permissions and scopes (never URLs). Development mode lets
//! requests without a token in; a token that is presented is always checked: an unknown, disabled or expired one
//! is refused, and a token only does what it was made for. People's tokens hold roles of scoped grants; extension
//! tokens hold their extension's role and reach only their own objects; run tokens (`inject_api_token`) may read
//! their own pipeline and read and write their own run's objects.

use gofer_api::permissions::{Access, Action, Grant, Permission, Resource, Role, Token, system_roles};
use gofer_storage::Visible;

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

/// What a request is about: the namespace, pipeline, run and extension its route names, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope<'a> {
    pub namespace: Option<&'a str>,
    pub pipeline: Option<&'a str>,
    pub run: Option<u64>,
    pub extension: Option<&'a str>,
}

impl Scope<'_> {
    /// A list that shows each token only what it may read: the namespaces (no namespace named), or the pipelines of
    /// one namespace. A token that may read some of it may ask for it.
    fn is_filtered_list(&self, needed: Permission) -> bool {
        needed.action == Action::Read
            && self.pipeline.is_none()
            && self.run.is_none()
            && self.extension.is_none()
            && match needed.resource {
                Resource::Namespaces => self.namespace.is_none(),
                Resource::Pipelines => self.namespace.is_some(),
                _ => false,
            }
    }
}

/// The run a run token belongs to, from its holder `run:<namespace>/<pipeline>/<run>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunScope {
    namespace: String,
    pipeline: String,
    run: u64,
}

impl RunScope {
    fn of(token: &Token) -> Option<Self> {
        if !token.roles.iter().any(|r| r == RUN_TOKEN_ROLE) {
            return None;
        }
        let mut parts = token.user.strip_prefix("run:")?.splitn(3, '/');
        let (namespace, pipeline, run) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
        Some(Self { namespace: namespace.into(), pipeline: pipeline.into(), run })
    }

    /// What a run's token may do: read its pipeline (configs, runs, task executions and logs) and read, write and
    /// delete the objects of its own run.
    fn allows(&self, needed: Permission, scope: &Scope<'_>) -> bool {
        let own_pipeline =
            scope.namespace == Some(self.namespace.as_str()) && scope.pipeline == Some(self.pipeline.as_str());
        match needed.resource {
            Resource::Objects => own_pipeline && scope.run == Some(self.run) && needed.action != Action::Reveal,
            Resource::Pipelines | Resource::Configs | Resource::Runs | Resource::TaskExecutions => {
                own_pipeline && needed.action == Action::Read
            }
            _ => false,
        }
    }
}

/// Whether a known token may be used at `now` (epoch milliseconds).
fn usable(token: &Token, now: u64) -> std::result::Result<(), String> {
    if token.disabled {
        return Err("the token is disabled".into());
    }
    if token.expires != 0 && token.expires < now {
        return Err("the token has expired".into());
    }
    Ok(())
}

/// What a request asks for, as the auth check needs it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The bearer secret, if the request carries one.
    pub secret: Option<&'a str>,
    /// What the route requires.
    pub access: Access,
    pub scope: Scope<'a>,
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
        if let Err(message) = usable(&token, self.clock.now()) {
            return (Verdict::Unauthenticated(message), None);
        }
        let verdict = self.judge(&token, request.access, &request.scope).await;
        (verdict, Some(token))
    }

    async fn judge(&self, token: &Token, access: Access, scope: &Scope<'_>) -> Verdict {
        // A public route (whoami, health) is open to every valid token, a run's token included.
        let Access::Requires(needed) = access else { return Verdict::Allowed };
        if token.user.starts_with("run:") {
            return match RunScope::of(token) {
                Some(run) if run.allows(needed, scope) => Verdict::Allowed,
                _ => Verdict::Forbidden(format!(
                    "a run's token may only read its pipeline and read and write its own run's objects; {needed} \
                     here is neither"
                )),
            };
        }
        if let Some(own) = token.user.strip_prefix("extension:")
            && needed.resource == Resource::Objects
            && scope.extension != Some(own)
        {
            return Verdict::Forbidden(format!("extension '{own}' may reach only its own objects"));
        }
        let (namespace, pipeline) = (scope.namespace, scope.pipeline);
        match self.roles_of(token).await {
            Ok(roles) if roles.iter().any(|role| role.allows(needed, namespace, pipeline)) => Verdict::Allowed,
            Ok(roles)
                if scope.is_filtered_list(needed)
                    && roles.iter().any(|role| role.allows_somewhere(needed, namespace)) =>
            {
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

    /// The namespaces `caller` may see in a list (every one without a token: development mode).
    pub(crate) async fn visible_namespaces(&self, caller: Option<&Token>) -> crate::Result<Visible> {
        let Some(token) = caller else { return Ok(Visible::All) };
        if let Some(run) = RunScope::of(token) {
            return Ok(Visible::Matching(vec![run.namespace]));
        }
        let needed = Permission::new(Resource::Namespaces, Action::Read);
        let grants = self.grants_for(token, needed).await?;
        Ok(visible(grants.iter().flat_map(|g| g.namespaces.iter())))
    }

    /// The pipelines of `namespace` that `caller` may see in a list.
    pub(crate) async fn visible_pipelines(&self, caller: Option<&Token>, namespace: &str) -> crate::Result<Visible> {
        let Some(token) = caller else { return Ok(Visible::All) };
        if let Some(run) = RunScope::of(token) {
            let own = if run.namespace == namespace { vec![run.pipeline] } else { Vec::new() };
            return Ok(Visible::Matching(own));
        }
        let needed = Permission::new(Resource::Pipelines, Action::Read);
        let grants = self.grants_for(token, needed).await?;
        let in_namespace = grants
            .iter()
            .filter(|g| g.namespaces.iter().any(|p| gofer_api::permissions::pattern_matches(p, namespace)));
        Ok(visible(in_namespace.flat_map(|g| g.pipelines.iter())))
    }

    /// The caller's grants that give `needed` somewhere.
    async fn grants_for(&self, token: &Token, needed: Permission) -> crate::Result<Vec<Grant>> {
        let roles = self.roles_of(token).await.map_err(|message| crate::Error::Unavailable { message })?;
        Ok(roles
            .into_iter()
            .flat_map(|r| r.grants)
            .filter(|g| {
                (g.resources.is_empty() || g.resources.contains(&needed.resource)) && g.actions.contains(&needed.action)
            })
            .collect())
    }
}

/// The ids matching any of `patterns`; `*` among them shows all.
fn visible<'a>(patterns: impl Iterator<Item = &'a String>) -> Visible {
    let patterns: Vec<String> = patterns.cloned().collect();
    if patterns.iter().any(|p| p == "*") { Visible::All } else { Visible::Matching(patterns) }
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

    fn run_token(user: &str) -> Token {
        Token {
            id: "t".into(),
            hash: String::new(),
            user: user.into(),
            roles: vec![RUN_TOKEN_ROLE.into()],
            created: 0,
            expires: 0,
            disabled: false,
            metadata: Default::default(),
        }
    }

    #[test]
    fn run_tokens_reach_their_pipeline_and_their_run_objects_only() {
        let run = RunScope::of(&run_token("run:team/backup/7")).unwrap();
        let scope = |ns: &str, pipeline: Option<&str>, run: Option<u64>| Scope {
            namespace: Some(Box::leak(ns.to_string().into_boxed_str())),
            pipeline: pipeline.map(|p| &*Box::leak(p.to_string().into_boxed_str())),
            run,
            extension: None,
        };
        let needs = |r: Resource, a: Action| Permission::new(r, a);
        let allowed = [
            (needs(Resource::Pipelines, Action::Read), scope("team", Some("backup"), None)),
            (needs(Resource::Runs, Action::Read), scope("team", Some("backup"), Some(7))),
            (needs(Resource::Configs, Action::Read), scope("team", Some("backup"), None)),
            (needs(Resource::TaskExecutions, Action::Read), scope("team", Some("backup"), Some(7))),
            (needs(Resource::Objects, Action::Read), scope("team", Some("backup"), Some(7))),
            (needs(Resource::Objects, Action::Write), scope("team", Some("backup"), Some(7))),
            (needs(Resource::Objects, Action::Delete), scope("team", Some("backup"), Some(7))),
        ];
        for (needed, scope) in allowed {
            assert!(run.allows(needed, &scope), "{needed} {scope:?}");
        }
        let refused = [
            (needs(Resource::Objects, Action::Write), scope("team", Some("backup"), Some(6))),
            (needs(Resource::Objects, Action::Read), scope("team", Some("backup"), None)),
            (needs(Resource::Secrets, Action::Read), scope("team", Some("backup"), None)),
            (needs(Resource::Pipelines, Action::Read), scope("team", Some("backupx"), None)),
            (needs(Resource::Runs, Action::Write), scope("team", Some("backup"), None)),
            (needs(Resource::Pipelines, Action::Read), scope("other", Some("backup"), None)),
            (needs(Resource::Secrets, Action::Read), Scope::default()),
        ];
        for (needed, scope) in refused {
            assert!(!run.allows(needed, &scope), "{needed} {scope:?}");
        }
        assert_eq!(RunScope::of(&run_token("run:team/backup/x")), None, "a holder that names no run");
        assert_eq!(RunScope::of(&Token { roles: vec![], ..run_token("run:team/backup/7") }), None, "no run role");
    }

    #[test]
    fn only_list_routes_are_filtered_lists() {
        let read = |r| Permission::new(r, Action::Read);
        assert!(Scope::default().is_filtered_list(read(Resource::Namespaces)));
        let ns = Scope { namespace: Some("team"), ..Scope::default() };
        assert!(ns.is_filtered_list(read(Resource::Pipelines)));
        assert!(!ns.is_filtered_list(read(Resource::Namespaces)), "a namespace is not a list");
        assert!(!ns.is_filtered_list(Permission::new(Resource::Pipelines, Action::Write)));
        let pipeline = Scope { pipeline: Some("p"), ..ns };
        assert!(!pipeline.is_filtered_list(read(Resource::Pipelines)));
    }
}
