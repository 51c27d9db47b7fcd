//! `gofer system`: server-wide switches (maintenance mode), and the servers sharing the state.

use crate::SystemCommand;
use crate::client::Client;
use crate::output::{self, Format};

pub(super) async fn command(client: &Client, format: Format, command: SystemCommand) -> anyhow::Result<()> {
    let settings = match command {
        SystemCommand::Get => client.get_system().await?,
        SystemCommand::Servers => return output::print(format, &client.list_servers().await?),
        SystemCommand::Maintenance { mode } => {
            let settings = client.set_maintenance(mode == "on").await?;
            eprintln!(
                "maintenance mode is {}",
                if settings.maintenance { "on: new runs are refused" } else { "off: new runs are taken" }
            );
            settings
        }
    };
    output::print(format, &settings)
}
