//! The schema on a real PostgreSQL server that the test starts itself (`initdb` and `pg_ctl`, as the unprivileged
//! `postgres` user when the tests run as root; `scripts/ensure-postgres.sh` installs Debian's `postgresql` when
//! they are missing): migrated once however many servers connect at once, and a newer schema refused untouched.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use gofer_storage_postgres::{OpenError, PostgresStorage};

/// A throwaway PostgreSQL server in a temporary directory, stopped on drop.
struct TestServer {
    dir: tempfile::TempDir,
    port: u16,
}

/// A PostgreSQL program: on the PATH, else in Debian's versioned directory.
fn program(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
    {
        return path;
    }
    let versions =
        std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed (scripts/ensure-postgres.sh)");
    let mut found: Vec<PathBuf> =
        versions.filter_map(|v| Some(v.ok()?.path().join("bin").join(name))).filter(|p| p.is_file()).collect();
    found.sort();
    found.pop().unwrap_or_else(|| panic!("no {name}; run scripts/ensure-postgres.sh"))
}

/// Runs a PostgreSQL program as the unprivileged `postgres` user when this process is root (PostgreSQL refuses
/// to run as root).
fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command) {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl TestServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        run({
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres"]).arg(dir.path());
            chown
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        run({
            let mut initdb = as_postgres(&program("initdb"));
            initdb.args(["-A", "trust", "-U", "gofer", "-E", "UTF8", "--no-sync", "-D"]).arg(&data);
            initdb
        });
        let options = format!("-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off", dir.path().display());
        run({
            let mut start = as_postgres(&program("pg_ctl"));
            start.args(["-w", "-D"]).arg(&data).args(["-o", &options, "-l"]).arg(dir.path().join("log")).arg("start");
            start
        });
        Self { dir, port }
    }

    fn url(&self) -> String {
        format!("postgres://gofer@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let mut stop = as_postgres(&program("pg_ctl"));
        stop.args(["-D"]).arg(self.dir.path().join("data")).args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_migrated_once_however_many_servers_start_together() {
    let server = TestServer::start();
    let url = server.url();
    // Three servers at once: one migrates, the others wait for its lock and find the work done.
    let connecting: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { PostgresStorage::connect(&url, 2).await }
            })
        })
        .collect();
    let mut storages = Vec::new();
    for connection in connecting {
        storages.push(connection.await.unwrap().unwrap());
    }
    let known = PostgresStorage::known_schema_version();
    for storage in &storages {
        assert_eq!(storage.schema_version().await.unwrap(), known);
    }
    // Connecting again changes nothing.
    let again = PostgresStorage::connect(&url, 1).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), known);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_untouched_and_bad_settings_are_named() {
    let server = TestServer::start();
    let storage = PostgresStorage::connect(&server.url(), 1).await.unwrap();
    let newer = PostgresStorage::known_schema_version() + 1;
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.execute("UPDATE gofer_schema SET version = $1", &[&newer]).await.unwrap();
    drop(storage);

    match PostgresStorage::connect(&server.url(), 1).await {
        Err(error @ OpenError::NewerSchema { .. }) => {
            let message = error.to_string();
            assert!(message.contains(&format!("schema version {newer}")), "{message}");
            assert!(message.contains("127.0.0.1") && !message.contains("gofer@"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let kept: i64 = client.query_one("SELECT version FROM gofer_schema", &[]).await.unwrap().get(0);
    assert_eq!(kept, newer, "the newer schema was left as it was");

    let bad_url = PostgresStorage::connect("postgres://gofer@127.0.0.1:notaport/x", 1).await.unwrap_err();
    assert!(bad_url.to_string().contains("storage.url"), "{bad_url}");
    assert!(matches!(PostgresStorage::connect(&server.url(), 0).await, Err(OpenError::PoolSize)));
    // Nobody listening: named, without the password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let away = PostgresStorage::connect(&format!("postgres://gofer:hunter2@127.0.0.1:{closed}/gofer"), 1).await;
    let message = away.unwrap_err().to_string();
    assert!(message.contains(&format!("127.0.0.1:{closed}/gofer")) && !message.contains("hunter2"), "{message}");
}
