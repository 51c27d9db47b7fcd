//! `gofer pipeline object` and `gofer run object`: bytes by key, streamed from a file or stdin and back.

use std::sync::Arc;

use futures::StreamExt;

use crate::client::{Client, ObjectTarget};
use crate::output::{self, Format};
use crate::term::{self, Progress};
use crate::{PipelineObjectCommand, RunObjectCommand};

/// What to do with an object, whoever's it is.
enum ObjectAction {
    Put { key: String, file: String },
    Get { key: String, output_file: Option<std::path::PathBuf> },
    List,
    Delete { key: String },
}

/// A request body streamed from a file, or from stdin for `-` or `@-`, counted on `progress` as it is sent.
async fn upload_body(file: &str, progress: &Arc<Progress>) -> anyhow::Result<reqwest::Body> {
    let (reader, total): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) = if file == "-" || file == "@-" {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let opened = tokio::fs::File::open(file).await.map_err(|e| anyhow::anyhow!("could not open {file}: {e}"))?;
        let size = opened.metadata().await.ok().map(|m| m.len());
        (Box::new(opened), size)
    };
    if !progress.shown() {
        return Ok(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(reader)));
    }
    let progress = progress.clone();
    let mut sent = 0u64;
    let counted = tokio_util::io::ReaderStream::new(reader).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            sent += chunk.len() as u64;
            progress.detail(match total {
                Some(total) if total > 0 => {
                    format!("{} of {} ({} %)", term::bytes(sent), term::bytes(total), sent * 100 / total)
                }
                _ => term::bytes(sent),
            });
        }
    });
    Ok(reqwest::Body::wrap_stream(counted))
}

/// Writes a download to a file or to stdout, as it arrives.
async fn download(
    mut stream: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    output_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match &output_file {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| anyhow::anyhow!("could not write {}: {e}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).await?;
    }
    out.flush().await?;
    Ok(())
}

async fn act(client: &Client, format: Format, target: ObjectTarget<'_>, action: ObjectAction) -> anyhow::Result<()> {
    match action {
        ObjectAction::Put { key, file } => {
            let progress = Arc::new(Progress::start(format!("uploading {key}")));
            let stored = client.put_object(target, &key, upload_body(&file, &progress).await?).await;
            progress.finish();
            output::print(format, &stored?)
        }
        ObjectAction::Get { key, output_file } => download(client.get_object(target, &key).await?, output_file).await,
        ObjectAction::List => output::print(format, &client.list_objects(target).await?.objects),
        ObjectAction::Delete { key } => {
            client.delete_object(target, &key).await?;
            eprintln!("Object '{key}' deleted.");
            Ok(())
        }
    }
}

pub(super) async fn pipeline(client: &Client, format: Format, command: PipelineObjectCommand) -> anyhow::Result<()> {
    use PipelineObjectCommand as C;
    let (pipeline, action) = match command {
        C::Put { pipeline, key, file } => (pipeline, ObjectAction::Put { key, file }),
        C::Get { pipeline, key, output_file } => (pipeline, ObjectAction::Get { key, output_file }),
        C::List { pipeline } => (pipeline, ObjectAction::List),
        C::Delete { pipeline, key } => (pipeline, ObjectAction::Delete { key }),
    };
    act(client, format, ObjectTarget::Pipeline(&pipeline), action).await
}

pub(super) async fn run(client: &Client, format: Format, command: RunObjectCommand) -> anyhow::Result<()> {
    use RunObjectCommand as C;
    let (pipeline, run, action) = match command {
        C::Put { pipeline, run, key, file } => (pipeline, run, ObjectAction::Put { key, file }),
        C::Get { pipeline, run, key, output_file } => (pipeline, run, ObjectAction::Get { key, output_file }),
        C::List { pipeline, run } => (pipeline, run, ObjectAction::List),
        C::Delete { pipeline, run, key } => (pipeline, run, ObjectAction::Delete { key }),
    };
    act(client, format, ObjectTarget::Run(&pipeline, run), action).await
}
