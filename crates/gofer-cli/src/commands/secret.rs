//! `gofer secret`: pipeline and global secrets; values in from the command line or stdin, out only on request.
use gofer_api::requests::PutSecretRequest;

use crate::client::Client;
use crate::output::{self, Format};
use crate::views::ScopedSecret;
use crate::{GlobalSecretCommand, PipelineSecretCommand, SecretCommand};

/// A secret's value from the command line, or from stdin when it is `@-` (one trailing newline dropped).
fn secret_value(value: String) -> anyhow::Result<String> {
    if value != "@-" {
        return Ok(value);
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| anyhow::anyhow!("could not read the secret from stdin (it must be UTF-8 text): {e}"))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

pub(super) async fn command(client: &Client, format: Format, command: SecretCommand) -> anyhow::Result<()> {
    use GlobalSecretCommand as G;
    use PipelineSecretCommand as P;
    let request = |value: String, namespaces: Vec<String>| -> anyhow::Result<PutSecretRequest> {
        Ok(PutSecretRequest { value: secret_value(value)?, namespaces })
    };
    let (pipeline, secret) = match command {
        SecretCommand::Pipeline(P::Put { pipeline, key, value }) => {
            let secret = client.put_secret(Some(&pipeline), &key, &request(value, Vec::new())?).await?;
            (Some(pipeline), secret)
        }
        SecretCommand::Pipeline(P::Get { pipeline, key, include_secret }) => {
            let secret = client.get_secret(Some(&pipeline), &key, include_secret).await?;
            (Some(pipeline), secret)
        }
        SecretCommand::Pipeline(P::Delete { pipeline, key }) => {
            client.delete_secret(Some(&pipeline), &key).await?;
            eprintln!("Secret '{key}' of pipeline '{pipeline}' deleted.");
            return Ok(());
        }
        SecretCommand::Global(G::Put { key, value, namespaces }) => {
            (None, client.put_secret(None, &key, &request(value, namespaces)?).await?)
        }
        SecretCommand::Global(G::Get { key, include_secret }) => {
            (None, client.get_secret(None, &key, include_secret).await?)
        }
        SecretCommand::Global(G::Delete { key }) => {
            client.delete_secret(None, &key).await?;
            eprintln!("Global secret '{key}' deleted.");
            return Ok(());
        }
        SecretCommand::Pipeline(P::List { pipeline }) => {
            return output::print(format, &client.list_secrets(Some(&pipeline)).await?.secrets);
        }
        SecretCommand::Global(G::List) => return output::print(format, &client.list_secrets(None).await?.secrets),
    };
    output::print(format, &ScopedSecret { pipeline, secret })
}
