//! When storage cannot take writes: a full disk fails the task whose output could not be stored (and stops its
//! container), a database that cannot take writes answers 503, and in both cases every run in flight is recorded
//! once storage works again; nothing is left `running`.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Server, api, script_pipeline, wait_for};

/// A tmpfs of `megabytes` mounted on a fresh directory, unmounted when dropped (after the server using it).
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(dir: &std::path::Path, megabytes: u32) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "gofer-test", dir.to_str().unwrap()])
            .status()
            .expect("the mount command");
        assert!(status.success(), "mounting a tmpfs needs root (the tests run as root, like CI)");
        Tmpfs { path: dir.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[test]
fn a_full_disk_fails_the_task_that_could_not_log_and_nothing_stays_running() {
    let data_dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(data_dir.path(), 24);
    let gofer = Server::start_at(data_dir, &[("GOFER_RUNS__STOP_GRACE_SECONDS", "1")]);
    // Room to give back later: the task's output fills the rest of the disk.
    let ballast = mount.path.join("ballast");
    std::fs::write(&ballast, vec![0u8; 6 << 20]).unwrap();
    // Output without end: only a stop ends this task.
    gofer.register(script_pipeline("flood", "echo start; exec cat /dev/zero"));
    gofer.register(script_pipeline("small", "echo fine"));
    let run = gofer.start_run("flood", &[]);

    // The disk fills up. Whatever storage can still take meanwhile, no request is answered with a 500.
    wait_for("the log write to fail", Duration::from_secs(60), || {
        gofer.log().contains("could not write a task log").then_some(())
    });
    let (status, body) = api(&gofer, "POST", "/api/namespaces/default/pipelines/small/runs", Some(&json!({})));
    assert!(status == 201 || status == 503, "{status} {body}");
    if status == 503 {
        assert!(body["message"].as_str().unwrap().contains("full"), "{body}");
    }

    std::fs::remove_file(&ballast).unwrap();
    let done = wait_for("the flooded run to complete", Duration::from_secs(90), || {
        let run = gofer.run("flood", run);
        if std::env::var_os("GOFER_TEST_DEBUG").is_some() {
            eprintln!("{run}\n{}", gofer.log());
        }
        (run["state"] == "complete").then_some(run)
    });
    assert_eq!(done["status"], "failed", "{done:#}");
    let task = &gofer.tasks("flood", run)["main"];
    assert_eq!(task["status_reason"]["reason"], "log_write_failed", "{task:#}");
    let why = task["status_reason"]["description"].as_str().unwrap();
    assert!(why.contains("No space left on device"), "names the cause: {why}");
    assert_eq!(task["exit_code"], 137, "the container was stopped (killed after the grace time): {task:#}");
    crate::harness::wait_containers_removed(&gofer, "flood", run);

    // Space came back: the log of the failed task goes with its pipeline, and new runs work.
    gofer.cli_ok(&["pipeline", "delete", "flood"]);
    let next = gofer.start_run("small", &[]);
    assert_eq!(gofer.wait_run("small", next)["status"], "successful");
    assert_eq!(gofer.logs("small", next, "main"), b"fine\n");
    drop(gofer);
}

#[test]
fn a_database_that_cannot_take_writes_answers_503_and_runs_finish_once_it_can() {
    let gofer = Server::start();
    gofer.register(script_pipeline("slow", "echo working; sleep 2; echo done"));
    let run = gofer.start_run("slow", &[]);
    gofer.wait_task_state("slow", run, "main", "running");

    // Another process holds the database's write lock for a while (as a stuck backup tool would).
    let db = gofer.data_path().join("gofer.db");
    let script = "import sqlite3, sys, time\n\
                  c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
                  c.execute('BEGIN IMMEDIATE')\n\
                  print('locked', flush=True)\n\
                  time.sleep(float(sys.argv[2]))\n";
    let mut locker = Command::new("python3")
        .args(["-c", script, db.to_str().unwrap(), "14"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut said = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()), &mut said).unwrap();
    assert_eq!(said.trim(), "locked");

    let (status, body) = api(&gofer, "POST", "/api/namespaces/default/pipelines/slow/runs", Some(&json!({})));
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("cannot take it now"), "{body}");
    assert_eq!(gofer.run("slow", run)["state"], "running", "the outcome cannot be stored yet");

    assert!(locker.wait().unwrap().success());
    let done = gofer.wait_run("slow", run);
    assert_eq!(done["status"], "successful", "{done:#}");
    assert_eq!(gofer.logs("slow", run, "main"), b"working\ndone\n");
    assert!(gofer.log().contains("retrying until storage takes it"), "{}", gofer.log());
    let next = gofer.start_run("slow", &[]);
    assert_eq!(gofer.wait_run("slow", next)["status"], "successful");
}
