//! What each API route needs: a resource and an action. Every route declares one; enforcement arrives with auth.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of things a permission can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Namespaces,
    Pipelines,
    Configs,
    Runs,
    TaskExecutions,
    Events,
    Extensions,
    Subscriptions,
    Secrets,
    Objects,
    System,
}

/// What is done to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Write,
    Delete,
}

/// The permission a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
        let resource = serde_json::to_value(self.resource).map_err(|_| std::fmt::Error)?;
        let action = serde_json::to_value(self.action).map_err(|_| std::fmt::Error)?;
        write!(f, "{}:{}", resource.as_str().unwrap_or_default(), action.as_str().unwrap_or_default())
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

/// A named set of permissions that tokens carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Role {
    pub id: String,
    pub description: String,
    pub permissions: Vec<Permission>,
    /// Made by Gofer itself (an extension's role); removed with what it was made for.
    pub system_role: bool,
}

/// An API token. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
}

/// The role every container extension gets: start runs anywhere and read what it needs to, nothing more.
pub fn extension_role(extension_id: &str) -> Role {
    use Action::*;
    use Resource::*;
    let permissions = [
        (Namespaces, Read),
        (Pipelines, Read),
        (Configs, Read),
        (Runs, Read),
        (Runs, Write),
        (TaskExecutions, Read),
        (Events, Read),
        (Extensions, Read),
        (Subscriptions, Read),
        (System, Read),
    ]
    .into_iter()
    .map(|(resource, action)| Permission::new(resource, action))
    .collect();
    Role {
        id: format!("extension_{extension_id}"),
        description: format!("What extension '{extension_id}' may do: start runs and read pipelines and runs."),
        permissions,
        system_role: true,
    }
}
