//! `gofer extension`: list, show, switch, install and uninstall extensions; their logs and debug views.

use gofer_api::config::RegistryAuth;
use gofer_api::requests::InstallExtensionRequest;

use super::copy_to_stdout;
use crate::ExtensionCommand;
use crate::client::Client;
use crate::output::{self, Format, View};

pub(super) async fn command(client: &Client, format: Format, command: ExtensionCommand) -> anyhow::Result<()> {
    let shown = match command {
        ExtensionCommand::List => return output::print(format, &client.list_extensions().await?.extensions),
        ExtensionCommand::Get { id } => client.get_extension(&id).await?,
        ExtensionCommand::Enable { id } => client.set_extension_enabled(&id, true).await?,
        ExtensionCommand::Disable { id } => client.set_extension_enabled(&id, false).await?,
        ExtensionCommand::Install { id, image, settings, registry_auth } => {
            let registry_auth = match registry_auth {
                None => None,
                Some(text) => {
                    let (user, pass) = text.split_once(':').ok_or_else(|| {
                        anyhow::anyhow!("--registry-auth must be USER:PASSWORD, e.g. --registry-auth robot:s3cret")
                    })?;
                    Some(RegistryAuth { user: user.into(), pass: pass.into() })
                }
            };
            let request =
                InstallExtensionRequest { id, image, settings: settings.into_iter().collect(), registry_auth };
            client.install_extension(&request).await?
        }
        ExtensionCommand::Uninstall { id } => {
            client.uninstall_extension(&id).await?;
            if format != Format::Json {
                eprintln!("Extension '{id}' uninstalled.");
            }
            return Ok(());
        }
        ExtensionCommand::Logs { id, follow } => {
            return copy_to_stdout(client.extension_logs(&id, follow).await?).await;
        }
        ExtensionCommand::Debug { id } => {
            let debug = client.debug_extension(&id).await?;
            return match format {
                Format::Json => output::json(&debug),
                Format::Table => output::render(&View::Text(debug.info)),
            };
        }
    };
    output::print(format, &shown)
}
