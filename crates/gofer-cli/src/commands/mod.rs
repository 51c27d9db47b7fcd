//! What each client command does, one module per noun. Every result is printed through
//! [`crate::output::print`]; progress and hints go to stderr.

mod config;
mod context;
mod deployment;
mod event;
mod extension;
mod namespace;
mod object;
mod pipeline;
mod role;
mod run;
mod secret;
mod system;
mod task;
mod token;

use std::io::Write;

use futures::{Stream, StreamExt};

use crate::client::Client;
pub use crate::commands::pipeline::build_config;
use crate::{Command, GlobalArgs};

/// A client of the server the settings name, with the settings it was made from.
pub async fn connect(global: &GlobalArgs) -> anyhow::Result<(Client, crate::Settings)> {
    let settings = global.resolve()?;
    let ca_cert = match &settings.ca_cert {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("could not read the CA certificate {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let client = Client::new(&settings.api_url, &settings.namespace, settings.token.as_deref(), ca_cert.as_deref())?;
    Ok((client, settings))
}

/// Runs a client command.
pub async fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    let (client, settings) = connect(global).await?;
    let format = settings.output;
    match command {
        Command::Up(args) => pipeline::deploy(&client, format, &args).await,
        Command::Deployment(command) => deployment::command(&client, format, command).await,
        Command::Pipeline(command) => pipeline::command(&client, format, command).await,
        Command::Run(command) => run::command(&client, format, command).await,
        Command::Task(command) => task::command(&client, format, command).await,
        Command::System(command) => system::command(&client, format, command).await,
        Command::Secret(command) => secret::command(&client, format, command).await,
        Command::Token(command) => token::command(&client, format, command).await,
        Command::Context => context::command(&client, &settings, format).await,
        Command::Role(command) => role::command(&client, format, command).await,
        Command::Namespace(command) => namespace::command(&client, format, command).await,
        Command::Extension(command) => extension::command(&client, format, command).await,
        Command::Event(command) => event::command(&client, command).await,
    }
}

/// Copies a byte stream (logs) to stdout as it arrives.
async fn copy_to_stdout<E>(stream: impl Stream<Item = Result<bytes::Bytes, E>>) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut stream = std::pin::pin!(stream);
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}
