//! `gofer role`: the built-in roles and custom ones made of scoped grants.
use gofer_api::permissions::{Grant, Role};

use crate::RoleCommand;
use crate::client::Client;
use crate::output::{self, Format};

/// One grant from the role flags: names as the API spells them.
fn grant_from_flags(
    resources: Vec<String>,
    actions: Vec<String>,
    namespaces: Vec<String>,
    pipelines: Vec<String>,
) -> anyhow::Result<Grant> {
    let or_any = |v: Vec<String>| if v.is_empty() { vec!["*".to_string()] } else { v };
    let grant = serde_json::json!({
        "resources": resources,
        "actions": actions,
        "namespaces": or_any(namespaces),
        "pipelines": or_any(pipelines),
    });
    serde_json::from_value(grant).map_err(|e| {
        anyhow::anyhow!(
            "{e}: resources are namespaces, pipelines, configs, runs, task_executions, events, extensions, \
             subscriptions, secrets, objects, tokens, roles, system; actions are read, write, delete, reveal"
        )
    })
}

pub(super) async fn command(client: &Client, format: Format, command: RoleCommand) -> anyhow::Result<()> {
    let shown = match command {
        RoleCommand::List => return output::print(format, &client.list_roles().await?.roles),
        RoleCommand::Get { id } => client.get_role(&id).await?,
        RoleCommand::Create { id, description, resources, actions, namespaces, pipelines, grants_file } => {
            let grants: Vec<Grant> = match grants_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("could not read {}: {e}", path.display()))?;
                    serde_json::from_str(&text)
                        .map_err(|e| anyhow::anyhow!("{}: not a list of grants: {e}", path.display()))?
                }
                None => vec![grant_from_flags(resources, actions, namespaces, pipelines)?],
            };
            client.create_role(&Role { id, description, grants, system_role: false }).await?
        }
        RoleCommand::Delete { id } => {
            client.delete_role(&id).await?;
            eprintln!("Role '{id}' deleted.");
            return Ok(());
        }
    };
    output::print(format, &shown)
}
