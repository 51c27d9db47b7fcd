//! `gofer event`: the event log, as JSON lines, live with `--follow`.

use std::io::Write;

use futures::StreamExt;

use crate::EventCommand;
use crate::client::Client;

pub(super) async fn command(client: &Client, command: EventCommand) -> anyhow::Result<()> {
    let EventCommand::List { after, follow, tail } = command;
    let mut events = Box::pin(client.events(None, after, follow, tail).await?);
    let mut out = std::io::stdout().lock();
    while let Some(event) = events.next().await {
        serde_json::to_writer(&mut out, &event?)?;
        writeln!(out)?;
        out.flush()?;
    }
    Ok(())
}
