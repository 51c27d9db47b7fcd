//! `gofer namespace`: list, show, create, rename and delete namespaces.
use gofer_api::requests::{CreateNamespaceRequest, UpdateNamespaceRequest};

use crate::NamespaceCommand;
use crate::client::Client;
use crate::output::{self, Format};

pub(super) async fn command(client: &Client, format: Format, command: NamespaceCommand) -> anyhow::Result<()> {
    let shown = match command {
        NamespaceCommand::List => return output::print(format, &client.list_namespaces().await?.namespaces),
        NamespaceCommand::Get { id } => client.get_namespace(&id).await?,
        NamespaceCommand::Create { id, name, description } => {
            let created = client.create_namespace(&CreateNamespaceRequest { id, name, description }).await?;
            eprintln!("created namespace '{}'; use it with --namespace {}", created.id, created.id);
            created
        }
        NamespaceCommand::Update { id, name, description } => {
            client.update_namespace(&id, &UpdateNamespaceRequest { name, description }).await?
        }
        NamespaceCommand::Delete { id } => {
            client.delete_namespace(&id).await?;
            eprintln!("Namespace '{id}' deleted, with everything in it.");
            return Ok(());
        }
    };
    output::print(format, &shown)
}
