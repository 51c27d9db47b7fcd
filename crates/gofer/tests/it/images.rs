//! Test images built locally (no registry here): the example `heartbeat` extension packaged from its binary and
//! the shared libraries it links, and a `sleeper` that runs but never answers the extension protocol.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::harness::repo_root;

pub const HEARTBEAT: &str = "gofer-test/heartbeat:latest";
pub const SLEEPER: &str = "gofer-test/sleeper:latest";
pub const GOFER_CLI: &str = "gofer-test/gofer-cli:latest";
pub const EARLIER_EXTENSION: &str = "gofer-test/earlier-extension:latest";

fn run(command: &mut Command) -> Vec<u8> {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The heartbeat binary: built by scripts/test.sh into target/debug; built here (in a separate target dir) when
/// the tests run without it.
fn heartbeat_binary() -> PathBuf {
    let built = repo_root().join("target/debug/heartbeat");
    if built.exists() {
        return built;
    }
    let target = repo_root().join("target/it-pipelines");
    run(Command::new("cargo")
        .args(["build", "-j2", "-p", "gofer-extension-heartbeat"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo_root()));
    target.join("debug/heartbeat")
}

/// Copies `binary` and every shared library `ldd` names into `root`, at the same paths.
fn copy_with_libraries(binary: &Path, root: &Path, name: &str) {
    std::fs::copy(binary, root.join(name)).unwrap();
    let ldd = String::from_utf8(run(Command::new("ldd").arg(binary))).unwrap();
    for line in ldd.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else { continue };
        let target = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(path, &target).unwrap();
    }
}

fn import(root: &Path, change: &str, tag: &str) {
    let mut tar = Command::new("tar").arg("-C").arg(root).args(["-c", "."]).stdout(Stdio::piped()).spawn().unwrap();
    run(Command::new("docker").args(["import", "--change", change, "-", tag]).stdin(tar.stdout.take().unwrap()));
    assert!(tar.wait().unwrap().success(), "tar of {} failed", root.display());
}

/// The example extension as an image, built once per test process.
pub fn heartbeat() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        copy_with_libraries(&heartbeat_binary(), root.path(), "heartbeat");
        import(root.path(), r#"ENTRYPOINT ["/heartbeat"]"#, HEARTBEAT);
    });
    HEARTBEAT
}

/// An extension written for the earlier Gofer's protocol in Go's standard library alone
/// (`tests/it/earlier_extension`), built static and packaged as the only file of an image.
pub fn earlier_extension() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let source = repo_root().join("crates/gofer/tests/it/earlier_extension");
        run(Command::new("go")
            .args(["build", "-o"])
            .arg(root.path().join("extension"))
            .arg(".")
            .env("CGO_ENABLED", "0")
            .current_dir(source));
        import(root.path(), r#"ENTRYPOINT ["/extension"]"#, EARLIER_EXTENSION);
    });
    EARLIER_EXTENSION
}

/// The static busybox as /bin/busybox, with /bin/sh.
fn busybox_into(root: &Path) {
    let busybox = String::from_utf8(run(Command::new("sh").args(["-c", "command -v busybox"]))).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox.trim(), root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
}

/// busybox with this build's `gofer` binary at /bin/gofer: a task that uses the CLI.
pub fn gofer_cli() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        busybox_into(root.path());
        copy_with_libraries(Path::new(crate::harness::BIN), root.path(), "bin/gofer");
        import(root.path(), r#"CMD ["/bin/sh"]"#, GOFER_CLI);
    });
    GOFER_CLI
}

/// busybox that sleeps: runs, but never answers `/api/health`.
pub fn sleeper() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        busybox_into(root.path());
        import(root.path(), r#"CMD ["/bin/busybox", "sleep", "3600"]"#, SLEEPER);
    });
    SLEEPER
}
