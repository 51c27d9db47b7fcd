//! The `gofer` binary: `gofer service ...` runs the server; every other command is a client of its API.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "gofer", about = "Run short-lived jobs in containers, with pipelines written in Rust.")]
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
    Service(ServiceCommand),
    /// Print a shell completion script: `gofer completion bash > /etc/bash_completion.d/gofer`, or for zsh put
    /// `gofer completion zsh` in a file named `_gofer` on your `$fpath`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `gofer man | man -l -`. With `--dir`, write `gofer.1` and one page per
    /// subcommand (`gofer-run-list.1`, …) there instead.
    Man {
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    #[command(flatten)]
    Client(gofer_cli::Command),
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    #[command(flatten)]
    Server(gofer_server::ServiceCommand),
    /// List the servers sharing the state (PostgreSQL) with their last heartbeat and the runs each drives; a
    /// server on SQLite lists itself. Asks the server at --api-url (`gofer system servers`).
    Status,
}

/// `0.1.0 (commit 1a2b3c4)`: the version, and the git commit when the build named one (`scripts/release.sh`).
fn version() -> &'static str {
    let build = gofer_server::BuildInfo::current();
    Box::leak(format!("{} (commit {})", build.version, build.commit).into_boxed_str())
}

fn command() -> clap::Command {
    Cli::command().version(version())
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match &cli.command {
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command(), "gofer", &mut script);
            return print(&script);
        }
        Command::Man { dir } => return man(dir.as_deref()),
        _ => {}
    }
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
            Command::Service(ServiceCommand::Server(command)) => gofer_server::run(command).await.map(|()| None),
            Command::Service(ServiceCommand::Status) => {
                let servers = gofer_cli::Command::System(gofer_cli::SystemCommand::Servers);
                gofer_cli::run(&cli.global, servers).await.map(|()| None)
            }
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
            Command::Completion { .. } | Command::Man { .. } => Ok(None),
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

/// Prints the man page, or writes every page to `dir`.
fn man(dir: Option<&std::path::Path>) -> std::process::ExitCode {
    let written = match dir {
        None => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(command()).render(&mut page) {
                Ok(()) => return print(&page),
                Err(e) => Err(e),
            }
        }
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(command(), dir)),
    };
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: could not write the man page: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes generated text to stdout; a reader that stopped early (`| head`) is not an error.
fn print(text: &[u8]) -> std::process::ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: could not write to stdout: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
