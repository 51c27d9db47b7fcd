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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
