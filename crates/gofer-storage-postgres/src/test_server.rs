//! A throwaway PostgreSQL server for tests and benchmarks (feature `test-server`): `initdb` and `pg_ctl` in a temporary directory,
//! run as the unprivileged `postgres` user when the tests run as root (PostgreSQL refuses to run as root);
//! `scripts/ensure-postgres.sh` installs Debian's `postgresql` when the programs are missing. Stopped on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL server of its own, listening on 127.0.0.1 at a free port; user `gofer`, no password.
pub struct TestServer {
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

/// Runs a PostgreSQL program as the unprivileged `postgres` user when this process is root.
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
    /// Makes a new database cluster and starts its server.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false) {
            run({
                let mut chown = Command::new("chown");
                chown.args(["-R", "postgres"]).arg(dir.path());
                chown
            });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        run({
            let mut initdb = as_postgres(&program("initdb"));
            initdb.args(["-A", "trust", "-U", "gofer", "-E", "UTF8", "--no-sync", "-D"]).arg(&data);
            initdb
        });
        let server = Self { dir, port };
        server.resume();
        server
    }

    /// Starts the server again after [`TestServer::stop`], on the same data and port.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run({
            let mut start = as_postgres(&program("pg_ctl"));
            start
                .args(["-w", "-D"])
                .arg(self.dir.path().join("data"))
                .args(["-o", &options, "-l"])
                .arg(self.dir.path().join("log"))
                .arg("start");
            start
        });
    }

    /// Stops the server at once (`immediate`: connections are cut, as when a database server dies).
    pub fn stop(&self) {
        let mut stop = as_postgres(&program("pg_ctl"));
        stop.args(["-w", "-D"]).arg(self.dir.path().join("data")).args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of one of its databases.
    pub fn database_url(&self, database: &str) -> String {
        format!("postgres://gofer@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, database: &str) -> String {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE \"{database}\"")).await.unwrap();
        drop(client);
        let _ = driver.await;
        self.database_url(database)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}
