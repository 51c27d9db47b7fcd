//! `gofer pipeline` and `gofer up`: build a pipeline program and deploy what it prints; list, show, switch and
//! delete pipelines; their subscriptions and objects.

use std::path::Path;

use anyhow::{Context, bail};
use gofer_api::config;
use gofer_api::models::PipelineState;
use gofer_api::requests::SubscribeRequest;

use crate::client::Client;
use crate::output::{self, Format};
use crate::{DeployArgs, PipelineCommand};

/// The language a pipeline program is written in, told by its project file.
enum Program {
    /// `Cargo.toml`: built and run with `cargo run`.
    Rust,
    /// `go.mod`: built and run with `go run .` in its directory (the Go SDK, `sdk/go`).
    Go,
}

/// Builds and runs the pipeline program in `dir` (a Cargo project or a Go module), returning the config it printed.
pub async fn build_config(dir: &Path) -> anyhow::Result<config::Pipeline> {
    let manifest = dir.join("Cargo.toml");
    let program = if manifest.is_file() {
        Program::Rust
    } else if dir.join("go.mod").is_file() {
        Program::Go
    } else {
        bail!(
            "{} has neither a Cargo.toml nor a go.mod; a pipeline is a Rust (Cargo) or Go program that builds the \
             pipeline and calls .finish() / .Finish()",
            dir.display()
        );
    };
    let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().to_string());
    let progress = crate::term::Progress::start(format!("building the pipeline program {name}"));
    if !progress.shown() {
        eprintln!("building and running the pipeline program in {} ...", dir.display());
    }
    let (mut command, missing_tool) = match program {
        Program::Rust => {
            let mut cargo = tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo
                .args(["run", "--quiet"])
                // Piped through the progress line on a terminal, cargo's messages keep their colours.
                .args(if progress.shown() && crate::term::colour(true) { &["--color", "always"][..] } else { &[] })
                .arg("--manifest-path")
                .arg(&manifest);
            (cargo, "could not run cargo; is the Rust toolchain installed and on PATH?")
        }
        Program::Go => {
            let mut go = tokio::process::Command::new("go");
            go.args(["run", "."]).current_dir(dir);
            (go, "could not run go; install Go 1.19 or newer (Debian: apt-get install golang-go) and put it on PATH")
        }
    };
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        // Through the progress line on a terminal, so the build's messages are not drawn over.
        .stderr(if progress.shown() { std::process::Stdio::piped() } else { std::process::Stdio::inherit() })
        .spawn()
        .context(missing_tool)?;
    let stderr = child.stderr.take();
    let relay = async {
        use tokio::io::AsyncBufReadExt;
        if let Some(stderr) = stderr {
            // Every byte to the end (a line that is not UTF-8 is shown lossily, never the end of the relay).
            let mut reader = tokio::io::BufReader::new(stderr);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line);
                progress.println(text.trim_end_matches(['\n', '\r']));
                line.clear();
            }
        }
    };
    let (out, ()) = tokio::join!(child.wait_with_output(), relay);
    progress.finish();
    let out = out.context("the pipeline program did not finish")?;
    if !out.status.success() {
        bail!("the pipeline program failed ({}); see its output above", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    if json.is_empty() {
        bail!(
            "the pipeline program printed no config on stdout; does it end with `.finish()` (Rust) or `.Finish()` (Go), and does a Go program check the error it returns?"
        );
    }
    serde_json::from_str(json).context("the pipeline program printed something that is not a pipeline config")
}

pub(super) async fn deploy(client: &Client, format: Format, args: &DeployArgs) -> anyhow::Result<()> {
    let config = build_config(&args.dir).await?;
    let pipeline_id = config.id.clone();
    let live = match client.get_pipeline(&pipeline_id).await {
        Ok(p) => match p.live_version {
            Some(v) => Some(client.get_config(&pipeline_id, v).await?),
            None => None,
        },
        Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => None,
        Err(e) => return Err(e.into()),
    };
    let registered = client.register_config(config.clone()).await?;
    let version = registered.config.version;
    if registered.created {
        eprintln!("registered pipeline '{pipeline_id}' version {version}");
    } else {
        eprintln!("pipeline '{pipeline_id}' is unchanged: identical to version {version}");
    }
    match &live {
        Some(live) if live.version != version => {
            let changes = super::config::diff(&live.config, &config);
            eprintln!("changes against live version {}:", live.version);
            for change in &changes {
                eprintln!("  {change}");
            }
        }
        None => eprintln!("first version of '{pipeline_id}': {} task(s)", config.tasks.len()),
        Some(_) => {}
    }
    let request = args.strategy.request()?;
    if args.no_deploy {
        eprintln!("not deployed (--no-deploy); deploy it with `gofer pipeline config deploy {pipeline_id} {version}`");
        return output::print(format, &registered.config);
    }
    if live.as_ref().is_some_and(|l| l.version == version) && !request.force {
        eprintln!("version {version} is already live");
        return output::print(format, &registered.config);
    }
    let deployment = client.deploy_config(&pipeline_id, version, &request).await?;
    super::deployment::started(format, &deployment)
}

pub(super) async fn command(client: &Client, format: Format, command: PipelineCommand) -> anyhow::Result<()> {
    let shown = match command {
        PipelineCommand::List => return output::print(format, &client.list_pipelines().await?.pipelines),
        PipelineCommand::Get { pipeline } => client.get_pipeline(&pipeline).await?,
        PipelineCommand::Enable { pipeline } => client.set_pipeline_state(&pipeline, PipelineState::Active).await?,
        PipelineCommand::Disable { pipeline } => client.set_pipeline_state(&pipeline, PipelineState::Disabled).await?,
        PipelineCommand::Delete { pipeline } => {
            client.delete_pipeline(&pipeline).await?;
            eprintln!("deleted pipeline '{pipeline}'");
            return Ok(());
        }
        PipelineCommand::Deploy(args) => return deploy(client, format, &args).await,
        PipelineCommand::Config(command) => return super::config::command(client, format, command).await,
        PipelineCommand::Rollback { pipeline, to, force } => {
            return super::deployment::rollback(client, format, &pipeline, to, force).await;
        }
        PipelineCommand::Subscribe { pipeline, extension, label, settings } => {
            let request = SubscribeRequest { extension_id: extension, label, settings: settings.into_iter().collect() };
            let subscription = client.subscribe(&pipeline, &request).await?;
            eprintln!(
                "subscribed '{pipeline}' to extension '{}' as '{}'",
                subscription.extension_id, subscription.label
            );
            return output::print(format, &subscription);
        }
        PipelineCommand::Unsubscribe { pipeline, extension, label } => {
            client.unsubscribe(&pipeline, &extension, &label).await?;
            eprintln!("unsubscribed '{pipeline}' from extension '{extension}' ('{label}')");
            return Ok(());
        }
        PipelineCommand::Object(command) => return super::object::pipeline(client, format, command).await,
        PipelineCommand::Subscriptions { pipeline } => {
            return output::print(format, &client.list_subscriptions(&pipeline).await?.subscriptions);
        }
    };
    output::print(format, &shown)
}
