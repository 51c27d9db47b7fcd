//! What operators and shell users get around the server: `--version`, shell completions that a real bash completes
//! with, man pages, `service start --check-config`, colour that `NO_COLOR` turns off, and a progress line on a
//! terminal (a pseudo-terminal made by `script`) that never reaches a pipe.

use std::process::Command;

use crate::harness::{BIN, Server, script_pipeline};

fn gofer(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn version_completions_and_man_pages_come_from_the_cli_itself() {
    let version = stdout(&gofer(&["--version"]));
    assert!(version.starts_with(&format!("gofer {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");

    // bash completes subcommands and flags with the generated script.
    let script = stdout(&gofer(&["completion", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gofer.bash");
    std::fs::write(&file, &script).unwrap();
    let complete = |words: &str, current: usize| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={current}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _gofer gofer; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let output = Command::new("bash").args(["-c", &program]).output().unwrap();
        stdout(&output)
    };
    let first = complete("gofer ru", 1);
    assert!(first.lines().any(|w| w == "run"), "{first}");
    let flags = complete("gofer run list --sta", 3);
    assert!(flags.lines().any(|w| w == "--state") && flags.lines().any(|w| w == "--status"), "{flags}");
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let script = stdout(&gofer(&["completion", shell]));
        assert!(script.contains("service") && script.contains("pipeline"), "{shell}: {script}");
    }
    let wrong = gofer(&["completion", "cmd.exe"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("possible values"), "{wrong:?}");

    // The man page, and one per subcommand.
    let page = stdout(&gofer(&["man"]));
    assert!(page.contains(".TH gofer 1") && page.contains("pipeline"), "{page}");
    let pages = dir.path().join("man");
    stdout(&gofer(&["man", "--dir", pages.to_str().unwrap()]));
    for name in ["gofer.1", "gofer-run-list.1", "gofer-service-start.1", "gofer-pipeline-deploy.1"] {
        let text = std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
    assert!(std::fs::read_to_string(pages.join("gofer-service-start.1")).unwrap().contains("check\\-config"));
    // A reader that stops early is no error.
    let output = Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {BIN} completion bash | head -1 >/dev/null; {BIN} man | head -c1")])
        .output()
        .unwrap();
    assert!(output.status.success() && !String::from_utf8_lossy(&output.stderr).contains("panicked"), "{output:?}");
}

#[test]
fn check_config_validates_without_starting_and_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let check = |env: &[(&str, &str)]| {
        Command::new(BIN)
            .args(["service", "start", "--check-config", "--data-dir"])
            .arg(dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let ok = check(&[]);
    assert!(String::from_utf8_lossy(&ok.stdout).contains("configuration is valid: development"), "{ok:?}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "checking wrote nothing to the data dir");
    for (name, value, named) in [
        ("GOFER_RUNS__GLOBAL_LIMIT", "0", "runs.global_limit"),
        ("GOFER_LOG__FORMAT", "xml", "log.format"),
        ("GOFER_METRICS__BIND_ADDRESS", "localhost", "metrics.bind_address"),
        ("GOFER_SERVER__TLS_CERT_PATH", "/nonexistent/cert.pem", "server.tls_cert_path"),
    ] {
        let failed = check(&[(name, value)]);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(1), "{name}={value}: {failed:?}");
        assert!(stderr.contains(named), "{name}={value} should name {named}: {stderr}");
    }
    // Production mode without a secret key cannot start.
    let failed = check(&[("GOFER_DEVELOPMENT__BYPASS_AUTH", "false")]);
    assert!(!failed.status.success() && String::from_utf8_lossy(&failed.stderr).contains("secrets.key_file"));
    let key = [
        ("GOFER_DEVELOPMENT__BYPASS_AUTH", "false"),
        ("GOFER_SECRETS__KEY", "qUEvqSn4dQxDQ7RhTDbn3RQnsJeJQq5rRZIhE0O8X0M="),
    ];
    assert!(String::from_utf8_lossy(&check(&key).stdout).contains("production mode"));
}

#[test]
fn the_shipped_production_config_and_systemd_unit_are_valid() {
    let deploy = crate::harness::repo_root().join("deploy");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret.key");
    std::fs::write(&key, "qUEvqSn4dQxDQ7RhTDbn3RQnsJeJQq5rRZIhE0O8X0M=\n").unwrap();
    let output = Command::new(BIN)
        .args(["service", "start", "--check-config", "--config"])
        .arg(deploy.join("gofer.toml"))
        .env("GOFER_SECRETS__KEY_FILE", &key)
        .output()
        .unwrap();
    let said = stdout(&output);
    assert!(said.contains("production mode") && said.contains("/var/lib/gofer"), "{said}");
    let effective = stdout(
        &Command::new(BIN).args(["service", "config", "--config"]).arg(deploy.join("gofer.toml")).output().unwrap(),
    );
    assert!(effective.contains("format = \"json\"") && effective.contains("bypass_auth = false"), "{effective}");

    // systemd reads the unit as written (with this build's binary in place of /usr/local/bin/gofer).
    let unit = std::fs::read_to_string(deploy.join("gofer.service")).unwrap();
    assert!(unit.contains("ExecStartPre=/usr/local/bin/gofer service start --check-config"), "{unit}");
    let unit_file = dir.path().join("gofer.service");
    std::fs::write(&unit_file, unit.replace("/usr/local/bin/gofer", BIN)).unwrap();
    let verified = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit_file)
        .output()
        .expect("systemd-analyze (Debian's systemd package) checks the unit");
    let complaints = String::from_utf8_lossy(&verified.stderr);
    let real: Vec<&str> = complaints.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(real.is_empty() && verified.status.success(), "systemd-analyze verify: {complaints}");
}

#[test]
fn colour_follows_no_color_and_progress_is_drawn_only_on_a_terminal() {
    let gofer = Server::start();
    gofer.register(script_pipeline("painted", "true"));
    let run = gofer.start_run("painted", &[]);
    gofer.wait_run("painted", run);
    let list = |env: &[(&str, &str)]| {
        let output = Command::new(BIN)
            .args(["run", "list", "painted"])
            .env("GOFER_API_URL", &gofer.url)
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        stdout(&output)
    };
    assert!(!list(&[]).contains('\x1b'), "a pipe gets no colour");
    let forced = list(&[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains("\x1b[32msuccessful\x1b[0m"), "{forced:?}");
    assert!(!list(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).contains('\x1b'), "NO_COLOR wins");

    // An upload on a terminal shows its progress on stderr; through a pipe nothing but the result is written.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![7u8; 8 << 20]).unwrap();
    let put = ["pipeline", "object", "put", "painted", "big", file.to_str().unwrap()];
    let piped = gofer.cli(&put);
    assert!(piped.status.success() && !String::from_utf8_lossy(&piped.stderr).contains('\x1b'), "{piped:?}");
    let command = format!("GOFER_API_URL={} {BIN} {}", gofer.url, put.join(" "));
    let terminal = Command::new("script").args(["-qec", &command, "/dev/null"]).output().unwrap();
    let seen = String::from_utf8_lossy(&terminal.stdout);
    assert!(terminal.status.success(), "{terminal:?}");
    assert!(seen.contains("uploading big") && seen.contains("\x1b[2K"), "{seen:?}");
    assert!(seen.contains("big") && seen.contains("8388608"), "the result follows: {seen:?}");

    // Building a pipeline program on a terminal: the progress line, then what the deploy says, never a line drawn
    // over by the other.
    let example = crate::harness::repo_root().join("examples/simple");
    let target = crate::harness::repo_root().join("target/it-pipelines");
    let command = format!(
        "CARGO_TARGET_DIR={} GOFER_API_URL={} {BIN} pipeline deploy {}",
        target.display(),
        gofer.url,
        example.display()
    );
    let terminal = Command::new("script").args(["-qec", &command, "/dev/null"]).output().unwrap();
    let seen = String::from_utf8_lossy(&terminal.stdout);
    assert!(terminal.status.success(), "{seen}");
    assert!(seen.contains("building the pipeline program simple"), "{seen:?}");
    assert!(seen.contains("\x1b[2Kregistered pipeline 'simple'"), "the line is erased before the next: {seen:?}");
}
