//! What each API route needs: a resource and an action. Every route declares one; enforcement arrives with auth.

use serde::{Deserialize, Serialize};

/// The kinds of things a permission can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Namespaces,
    Pipelines,
    Configs,
    Deployments,
    Runs,
    TaskExecutions,
    Events,
    Extensions,
    Subscriptions,
    Secrets,
    Objects,
    Tokens,
    Roles,
    System,
}

/// What is done to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Write,
    Delete,
    /// Read a secret's value through the API (`include_secret=true`). Reading secrets' metadata is `read`; tasks
    /// get values by reference and need neither. Only `admin` holds it among the built-in roles.
    Reveal,
}

/// The permission a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Permission {
    pub resource: Resource,
    pub action: Action,
}

impl Permission {
    pub const fn new(resource: Resource, action: Action) -> Self {
        Self { resource, action }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.resource.as_str(), self.action.as_str())
    }
}

impl Resource {
    pub const ALL: [Self; 14] = [
        Self::Namespaces,
        Self::Pipelines,
        Self::Configs,
        Self::Deployments,
        Self::Runs,
        Self::TaskExecutions,
        Self::Events,
        Self::Extensions,
        Self::Subscriptions,
        Self::Secrets,
        Self::Objects,
        Self::Tokens,
        Self::Roles,
        Self::System,
    ];

    /// The name configs and the API use (`task_executions`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Namespaces => "namespaces",
            Self::Pipelines => "pipelines",
            Self::Configs => "configs",
            Self::Deployments => "deployments",
            Self::Runs => "runs",
            Self::TaskExecutions => "task_executions",
            Self::Events => "events",
            Self::Extensions => "extensions",
            Self::Subscriptions => "subscriptions",
            Self::Secrets => "secrets",
            Self::Objects => "objects",
            Self::Tokens => "tokens",
            Self::Roles => "roles",
            Self::System => "system",
        }
    }
}

impl Action {
    pub const ALL: [Self; 4] = [Self::Read, Self::Write, Self::Delete, Self::Reveal];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Reveal => "reveal",
        }
    }
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone may call it (health, the OpenAPI document).
    Public,
    /// The caller's token must grant this permission.
    Requires(Permission),
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Public => f.write_str("public"),
            Self::Requires(permission) => permission.fmt(f),
        }
    }
}

/// Text that names no access: not `public`, nor `<resource>:<action>` with a known resource and action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseAccessError(pub String);

impl std::fmt::Display for ParseAccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' is not an access: write `public` or `<resource>:<action>`, e.g. `runs:read`", self.0)
    }
}

impl std::error::Error for ParseAccessError {}

impl std::str::FromStr for Access {
    type Err = ParseAccessError;

    /// Reads what [`Access`]'s `Display` writes: `public`, or a permission such as `task_executions:read`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "public" {
            return Ok(Self::Public);
        }
        let refused = || ParseAccessError(text.to_string());
        let (resource, action) = text.split_once(':').ok_or_else(refused)?;
        let resource = Resource::ALL.into_iter().find(|r| r.as_str() == resource).ok_or_else(refused)?;
        let action = Action::ALL.into_iter().find(|a| a.as_str() == action).ok_or_else(refused)?;
        Ok(Self::Requires(Permission::new(resource, action)))
    }
}

/// Whether a pattern (`*` any run of characters, `?` one character) matches the whole of `id`.
pub fn pattern_matches(pattern: &str, id: &str) -> bool {
    fn matches(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], s) || (!s.is_empty() && matches(p, &s[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &s[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), id.as_bytes())
}

/// Whether every id `inner` matches is also matched by `outer` (both patterns with `*` and `?`). Conservative:
/// it may answer no for some pairs where the answer is yes (then ask an admin), never yes where it is no.
pub fn pattern_within(inner: &str, outer: &str) -> bool {
    fn within(i: &[u8], o: &[u8]) -> bool {
        match (i.first(), o.first()) {
            (None, None) => true,
            // The outer `*` takes none, or one more symbol of the inner pattern (whatever it stands for).
            (_, Some(b'*')) => within(i, &o[1..]) || (!i.is_empty() && within(&i[1..], o)),
            // An inner `*` stands for strings of any length: only an outer `*` covers it.
            (Some(b'*'), _) => false,
            (Some(_), Some(b'?')) => within(&i[1..], &o[1..]),
            (Some(b'?'), Some(_)) => false,
            (Some(a), Some(b)) if a == b => within(&i[1..], &o[1..]),
            _ => false,
        }
    }
    within(inner.as_bytes(), outer.as_bytes())
}

/// Checks a pattern over ids (`what`: "namespace", "pipeline"): id characters with `*` and `?` wildcards. The
/// message says what is wrong and how to write one.
pub fn validate_pattern(what: &str, pattern: &str) -> Result<(), String> {
    let plain = pattern.replace(['*', '?'], "x");
    if pattern.is_empty() || crate::config::validate_identifier(what, &plain).is_err() {
        return Err(format!(
            "{what} pattern '{pattern}' is not valid: use {what} ids with * and ? wildcards, e.g. team-* (a pattern \
             matches whole ids)"
        ));
    }
    Ok(())
}

fn any() -> Vec<String> {
    vec!["*".to_string()]
}

/// What a role grants: `actions` on `resources` (all resources when empty), within the namespaces and pipelines
/// whose ids match the patterns (whole ids, `*` and `?` wildcards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default)]
    pub resources: Vec<Resource>,
    pub actions: Vec<Action>,
    #[serde(default = "any")]
    pub namespaces: Vec<String>,
    #[serde(default = "any")]
    pub pipelines: Vec<String>,
}

impl Grant {
    fn on(resources: &[Resource], actions: &[Action]) -> Self {
        Self { resources: resources.to_vec(), actions: actions.to_vec(), namespaces: any(), pipelines: any() }
    }

    /// Whether this grant covers `needed` for a request about `namespace` and `pipeline` (when the route names
    /// them; a route about no namespace needs a grant for all namespaces, and likewise for pipelines).
    pub fn allows(&self, needed: Permission, namespace: Option<&str>, pipeline: Option<&str>) -> bool {
        let scoped = |patterns: &[String], id: Option<&str>| match id {
            Some(id) => patterns.iter().any(|p| pattern_matches(p, id)),
            None => patterns.iter().any(|p| p == "*"),
        };
        (self.resources.is_empty() || self.resources.contains(&needed.resource))
            && self.actions.contains(&needed.action)
            && scoped(&self.namespaces, namespace)
            && scoped(&self.pipelines, pipeline)
    }
}

impl Grant {
    /// Whether everything this grant gives is also given by some of `held`: each resource and action, in each
    /// namespace and pipeline pattern, is covered by one held grant. A grant of all resources is covered only by
    /// grants of all resources, so it never widens as new resources appear.
    pub fn covered_by(&self, held: &[Grant]) -> bool {
        let resources: Vec<Option<Resource>> =
            if self.resources.is_empty() { vec![None] } else { self.resources.iter().copied().map(Some).collect() };
        resources.iter().all(|resource| {
            self.actions.iter().all(|action| {
                self.namespaces.iter().all(|namespace| {
                    self.pipelines.iter().all(|pipeline| {
                        held.iter().any(|h| {
                            let resource_held =
                                h.resources.is_empty() || resource.is_some_and(|r| h.resources.contains(&r));
                            resource_held
                                && h.actions.contains(action)
                                && h.namespaces.iter().any(|p| pattern_within(namespace, p))
                                && h.pipelines.iter().any(|p| pattern_within(pipeline, p))
                        })
                    })
                })
            })
        })
    }

    /// The grant in words, for messages: `write on runs in namespaces team-* and pipelines *`.
    pub fn describe(&self) -> String {
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        let resources = if self.resources.is_empty() {
            "all resources".to_string()
        } else {
            self.resources.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
        };
        format!(
            "{} on {resources} in namespaces {} and pipelines {}",
            actions.join(", "),
            self.namespaces.join(", "),
            self.pipelines.join(", ")
        )
    }
}

/// A named set of grants that tokens carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(alias = "permissions")]
    pub grants: Vec<Grant>,
    /// Made by Gofer itself (the built-in roles, an extension's role); not edited through the API.
    #[serde(default)]
    pub system_role: bool,
}

impl Role {
    pub fn allows(&self, needed: Permission, namespace: Option<&str>, pipeline: Option<&str>) -> bool {
        self.grants.iter().any(|g| g.allows(needed, namespace, pipeline))
    }

    /// Whether some grant gives `needed` in at least one namespace (`namespace` None) or for at least one pipeline
    /// of `namespace`: enough to ask for a list that then shows only what is allowed.
    pub fn allows_somewhere(&self, needed: Permission, namespace: Option<&str>) -> bool {
        self.grants.iter().any(|g| {
            (g.resources.is_empty() || g.resources.contains(&needed.resource))
                && g.actions.contains(&needed.action)
                && namespace.is_none_or(|ns| g.namespaces.iter().any(|p| pattern_matches(p, ns)))
        })
    }
}

/// The roles every Gofer has: `admin` (everything), `user` (work with pipelines, runs, secrets and objects;
/// read the rest) and `read_only` (read everything). Only `admin` may read secret values (`reveal`).
pub fn system_roles() -> Vec<Role> {
    use Action::*;
    use Resource::*;
    let everything = [Read, Write, Delete];
    vec![
        Role {
            id: "admin".into(),
            description: "Everything, everywhere, including reading secret values.".into(),
            grants: vec![Grant::on(&[], &[Read, Write, Delete, Reveal])],
            system_role: true,
        },
        Role {
            id: "user".into(),
            description:
                "Deploys and runs pipelines, manages their secrets, objects and subscriptions; reads the rest.".into(),
            grants: vec![
                Grant::on(&[], &[Read]),
                Grant::on(
                    &[Pipelines, Configs, Deployments, Runs, TaskExecutions, Subscriptions, Secrets, Objects],
                    &everything,
                ),
            ],
            system_role: true,
        },
        Role {
            id: "read_only".into(),
            description: "Reads everything; changes nothing.".into(),
            grants: vec![Grant::on(&[], &[Read])],
            system_role: true,
        },
    ]
}

/// An API token. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Token {
    pub id: String,
    /// Hex SHA-256 of the secret; never shown.
    #[serde(skip_serializing, default)]
    pub hash: String,
    /// Who or what holds it, e.g. `extension:github`.
    pub user: String,
    pub roles: Vec<String>,
    pub created: u64,
    /// Epoch milliseconds after which it is refused; 0 never.
    pub expires: u64,
    pub disabled: bool,
    /// Free-form notes: what it is for, who asked for it.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// The role every container extension gets: start runs anywhere and read what it needs to, nothing more.
pub fn extension_role(extension_id: &str) -> Role {
    use Action::*;
    use Resource::*;
    let grants = vec![
        Grant::on(
            &[
                Namespaces,
                Pipelines,
                Configs,
                Deployments,
                Runs,
                TaskExecutions,
                Events,
                Extensions,
                Subscriptions,
                System,
            ],
            &[Read],
        ),
        Grant::on(&[Runs], &[Write]),
        Grant {
            resources: vec![Objects],
            actions: vec![Read, Write, Delete],
            // Its own object store only: extension routes name no namespace or pipeline, so scope by extension id
            // happens in the auth check.
            namespaces: any(),
            pipelines: any(),
        },
    ];
    Role {
        id: format!("extension_{extension_id}"),
        description: format!("What extension '{extension_id}' may do: start runs and read pipelines and runs."),
        grants,
        system_role: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_access_reads_back_what_it_writes_and_nothing_else_reads() {
        let mut all = vec![Access::Public];
        for resource in Resource::ALL {
            all.extend(Action::ALL.map(|action| Access::Requires(Permission::new(resource, action))));
        }
        for access in all {
            assert_eq!(access.to_string().parse::<Access>(), Ok(access));
        }
        for bad in ["", "Public", "runs", "runs:", ":read", "runs:read:x", "run:read", "runs:READ"] {
            assert_eq!(bad.parse::<Access>(), Err(ParseAccessError(bad.into())), "{bad}");
        }
    }

    #[test]
    fn grants_are_scoped_by_anchored_patterns() {
        let grant = Grant {
            resources: vec![Resource::Runs],
            actions: vec![Action::Read, Action::Write],
            namespaces: vec!["team-*".into()],
            pipelines: vec!["backup?".into()],
        };
        let run_write = Permission::new(Resource::Runs, Action::Write);
        assert!(grant.allows(run_write, Some("team-a"), Some("backup1")));
        assert!(!grant.allows(run_write, Some("my-team-a"), Some("backup1")), "anchored");
        assert!(!grant.allows(run_write, Some("team-a"), Some("backup12")));
        assert!(!grant.allows(Permission::new(Resource::Runs, Action::Delete), Some("team-a"), Some("backup1")));
        assert!(!grant.allows(Permission::new(Resource::Secrets, Action::Read), Some("team-a"), Some("backup1")));
        assert!(!grant.allows(run_write, None, None), "a route about every namespace needs a grant for all");
        let roles = system_roles();
        let read_only = roles.iter().find(|r| r.id == "read_only").unwrap();
        assert!(read_only.allows(Permission::new(Resource::Pipelines, Action::Read), Some("x"), Some("y")));
        assert!(!read_only.allows(Permission::new(Resource::Pipelines, Action::Write), Some("x"), Some("y")));
        let user = roles.iter().find(|r| r.id == "user").unwrap();
        assert!(user.allows(Permission::new(Resource::Secrets, Action::Write), Some("x"), Some("y")));
        assert!(!user.allows(Permission::new(Resource::System, Action::Write), None, None));
        let reveal = Permission::new(Resource::Secrets, Action::Reveal);
        assert!(!user.allows(reveal, Some("x"), Some("y")), "users read secret metadata, not values");
        assert!(!read_only.allows(reveal, Some("x"), Some("y")));
        assert!(roles.iter().find(|r| r.id == "admin").unwrap().allows(reveal, Some("x"), Some("y")));
    }

    #[test]
    fn serde_names_and_display_names_agree() {
        use Resource::*;
        for r in [Namespaces, Pipelines, Configs, Runs, TaskExecutions, Events, Extensions, Subscriptions, Secrets] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for r in [Objects, Tokens, Roles, System] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for a in [Action::Read, Action::Write, Action::Delete, Action::Reveal] {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }

    #[test]
    fn pattern_containment_is_never_too_generous() {
        let yes = [("team-a", "team-*"), ("team-*", "team-*"), ("team-a*", "team-*"), ("x", "*"), ("*", "*")];
        for (inner, outer) in yes {
            assert!(pattern_within(inner, outer), "{inner} within {outer}");
        }
        let no = [("team-*", "team-?"), ("*", "team-*"), ("team-?", "team-a"), ("team-ab", "team-?"), ("a*", "a?")];
        for (inner, outer) in no {
            assert!(!pattern_within(inner, outer), "{inner} not within {outer}");
        }
        // Checked against every id of a small alphabet: containment must hold for each id the inner one matches.
        let ids = ["", "a", "b", "ab", "ba", "aa", "abc", "team-a", "team-ab"];
        let patterns = ["*", "a*", "*a", "a?", "?", "??", "a", "team-*", "team-?", "*b*"];
        for inner in patterns {
            for outer in patterns {
                if pattern_within(inner, outer) {
                    for id in ids.iter().filter(|id| pattern_matches(inner, id)) {
                        assert!(pattern_matches(outer, id), "{inner} within {outer}, yet {id} escapes");
                    }
                }
            }
        }
    }

    #[test]
    fn a_grant_is_covered_only_by_grants_at_least_as_wide() {
        let grant = |resources: &[Resource], actions: &[Action], namespaces: &[&str]| Grant {
            resources: resources.to_vec(),
            actions: actions.to_vec(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            pipelines: vec!["*".into()],
        };
        let held = [grant(&[Resource::Runs], &[Action::Read, Action::Write], &["team-*"])];
        assert!(grant(&[Resource::Runs], &[Action::Read], &["team-a"]).covered_by(&held));
        assert!(!grant(&[Resource::Runs], &[Action::Delete], &["team-a"]).covered_by(&held));
        assert!(!grant(&[Resource::Runs], &[Action::Read], &["*"]).covered_by(&held));
        assert!(!grant(&[Resource::Secrets], &[Action::Read], &["team-a"]).covered_by(&held));
        assert!(!grant(&[], &[Action::Read], &["team-a"]).covered_by(&held), "all resources needs all resources");
        let split =
            [grant(&[Resource::Runs], &[Action::Read], &["a"]), grant(&[Resource::Runs], &[Action::Read], &["b"])];
        assert!(grant(&[Resource::Runs], &[Action::Read], &["a", "b"]).covered_by(&split));
        assert!(grant(&[Resource::Runs], &[Action::Read], &["a"]).covered_by(&system_roles()[0].grants));
    }
}
