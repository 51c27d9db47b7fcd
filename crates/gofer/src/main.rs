//! The `gofer` binary: `gofer service ...` runs the server; every other command is a client of its API.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "gofer", version, about = "Run short-lived jobs in containers, with pipelines written in Rust.")]
struct Cli {
    #[command(flatten)]
    global: gofer_cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run and inspect the Gofer server.
    #[command(subcommand)]
    Service(gofer_server::ServiceCommand),
    #[command(flatten)]
    Client(gofer_cli::Command),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Blocking work is SQLite calls and log file writes, each short: a small pool keeps memory flat (every extra
    // thread brings its own stack and allocator arena).
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(16).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Service(command) => gofer_server::run(command).await.map(|()| None),
            // Runs without a server, with its own exit codes (0 successful, 1 failed, 2 cannot run).
            Command::Client(gofer_cli::Command::Run(gofer_cli::RunCommand::Local(args))) => {
                Ok(Some(gofer_local::run(&cli.global, args).await))
            }
            Command::Client(gofer_cli::Command::Run(gofer_cli::RunCommand::Replay {
                pipeline,
                run,
                local: Some(dir),
                ..
            })) => Ok(Some(gofer_local::replay(&cli.global, &pipeline, run, dir).await)),
            Command::Client(command) => gofer_cli::run(&cli.global, command).await.map(|()| None),
        }
    });
    // Blocking work still going (a log write, a database write) gets a moment; nothing holds the exit up longer.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(Some(code)) => code,
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(gofer_cli::ExitWith(code)) = e.downcast_ref() {
                return std::process::ExitCode::from(*code);
            }
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
