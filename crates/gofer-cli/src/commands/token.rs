//! `gofer token`: bootstrap, create (the secret is shown once), list, show, switch and delete tokens; whoami.
use gofer_api::requests::CreateTokenRequest;

use crate::TokenCommand;
use crate::client::Client;
use crate::output::{self, Format};

pub(super) async fn command(client: &Client, format: Format, command: TokenCommand) -> anyhow::Result<()> {
    let shown = match command {
        TokenCommand::Create { user, roles, expires_in, metadata } => {
            let metadata = metadata.into_iter().collect();
            let request = CreateTokenRequest { user, roles, expires_in_seconds: expires_in, metadata };
            let created = client.create_token(&request).await?;
            eprintln!("Keep the secret now: Gofer keeps only its hash and cannot show it again.");
            return output::print(format, &created);
        }
        TokenCommand::Bootstrap => {
            let created = client.bootstrap_token().await?;
            eprintln!("Keep the secret now: Gofer keeps only its hash and cannot show it again.");
            return output::print(format, &created);
        }
        TokenCommand::List => return output::print(format, &client.list_tokens().await?.tokens),
        TokenCommand::Get { id } => client.get_token(&id).await?,
        TokenCommand::Enable { id } => client.set_token_disabled(&id, false).await?,
        TokenCommand::Disable { id } => client.set_token_disabled(&id, true).await?,
        TokenCommand::Delete { id } => {
            client.delete_token(&id).await?;
            eprintln!("Token '{id}' deleted.");
            return Ok(());
        }
        TokenCommand::Whoami => client.whoami().await?,
    };
    output::print(format, &shown)
}
