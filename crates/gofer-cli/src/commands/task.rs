//! `gofer task`: a run's task executions, one task's details, cancelling one task, its logs.

use super::copy_to_stdout;
use crate::TaskCommand;
use crate::client::Client;
use crate::output::{self, Format};

pub(super) async fn command(client: &Client, format: Format, command: TaskCommand) -> anyhow::Result<()> {
    match command {
        TaskCommand::List { pipeline, run } => {
            output::print(format, &client.list_tasks(&pipeline, run).await?.task_executions)
        }
        TaskCommand::Get { pipeline, run, task } => {
            output::print(format, &client.get_task(&pipeline, run, &task).await?)
        }
        TaskCommand::Attach { pipeline, run, task, command } => attach(client, &pipeline, run, &task, command).await,
        TaskCommand::Exec { pipeline, run, task, command } => {
            let answer = client.exec(&pipeline, run, &task, command).await?;
            if format == Format::Json {
                return output::json(&answer);
            }
            print!("{}", answer.output);
            if answer.truncated {
                eprintln!("(output truncated: the server returns at most 1 MiB)");
            }
            match u8::try_from(answer.exit_code) {
                Ok(0) => Ok(()),
                Ok(code) => Err(crate::ExitWith(code).into()),
                Err(_) => Err(crate::ExitWith(1).into()),
            }
        }
        TaskCommand::Cancel { pipeline, run, task } => {
            let cancelled = client.cancel_task(&pipeline, run, &task).await?;
            eprintln!("cancelling task '{task}' of run {run}");
            match format {
                Format::Json => output::json(&cancelled),
                Format::Table => output::print(format, &vec![cancelled]),
            }
        }
        TaskCommand::Logs { pipeline, run, task, follow, attempt } => {
            copy_to_stdout(client.task_logs(&pipeline, run, &task, attempt, follow).await?).await
        }
    }
}

/// The terminal in raw mode (keys go to the remote command as typed) until dropped.
struct RawMode {
    original: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> std::io::Result<Self> {
        let original = rustix::termios::tcgetattr(std::io::stdin())?;
        let mut raw = original.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &raw)?;
        Ok(Self { original })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &self.original);
    }
}

/// `gofer task attach`: stdin, terminal size and end of input go to the command, its output comes back; the process
/// exits with the command's exit code.
async fn attach(client: &Client, pipeline: &str, run: u64, task: &str, command: Vec<String>) -> anyhow::Result<()> {
    use std::io::IsTerminal;

    use gofer_api::attach::Frame;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let command = if command.is_empty() { vec!["sh".to_string()] } else { command };
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let size = || rustix::termios::tcgetwinsize(std::io::stdout()).ok().map(|w| (w.ws_col, w.ws_row));
    let (columns, rows) = if tty { size().unzip() } else { (None, None) };
    let request = gofer_api::requests::AttachRequest { command, tty, columns, rows };
    let connection = client.attach(pipeline, run, task, &request).await?;
    let raw = if tty { Some(RawMode::enter()?) } else { None };
    let (mut reader, mut writer) = tokio::io::split(connection);
    let (frames, mut to_send) = tokio::sync::mpsc::channel::<Frame>(16);
    let sender = tokio::spawn(async move {
        while let Some(frame) = to_send.recv().await {
            if writer.write_all(&frame.encode()).await.is_err() {
                break;
            }
        }
    });
    let keys = frames.clone();
    let stdin = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buffer = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buffer).await {
                Ok(0) | Err(_) => {
                    let _ = keys.send(Frame::EndOfInput).await;
                    break;
                }
                Ok(n) => {
                    if keys.send(Frame::Input(buffer[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let resizes = tty.then(|| {
        let frames = frames.clone();
        tokio::spawn(async move {
            let Ok(mut changes) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            while changes.recv().await.is_some() {
                if let Some((columns, rows)) = size()
                    && frames.send(Frame::Resize { columns, rows }).await.is_err()
                {
                    break;
                }
            }
        })
    });
    drop(frames);
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut stdout = tokio::io::stdout();
    let code = 'session: loop {
        let read = reader.read(&mut chunk).await?;
        if read == 0 {
            break None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        while let Some(frame) = Frame::decode(&mut buffer).map_err(anyhow::Error::msg)? {
            match frame {
                Frame::Output(bytes) => {
                    stdout.write_all(&bytes).await?;
                    stdout.flush().await?;
                }
                Frame::Exit(code) => break 'session Some(code),
                _ => anyhow::bail!("the server sent a frame a client does not take"),
            }
        }
    };
    drop(raw);
    stdin.abort();
    sender.abort();
    if let Some(resizes) = resizes {
        resizes.abort();
    }
    let Some(code) = code else {
        anyhow::bail!("the session ended before the command did (the task ended, or the server stopped)");
    };
    // Exit now: a read of the terminal still pending would otherwise hold the process up.
    std::process::exit(i32::try_from(code).unwrap_or(1));
}
