//! Pipeline programs written in the earlier Gofer SDK's idioms keep compiling and print the config they describe.
//!
//! Each program under `tests/earlier/` is included verbatim as a module, so this binary only builds if every one of
//! them compiles against today's SDK. `finish()` prints to the process's real stdout, so the binary runs each
//! program in a child process of itself and checks what it printed (its own `main`: `harness = false`).

use std::process::{Command, ExitCode};

use gofer_sdk::config::{Pipeline, RequiredParentStatus};

/// Includes each fixture as a module with a `run()` that calls its `main`.
macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(
            #[allow(clippy::all, clippy::unwrap_used, unused_imports)]
            mod $name {
                include!(concat!("earlier/", stringify!($name), ".rs"));
                pub fn run() -> std::process::ExitCode {
                    std::process::Termination::report(main())
                }
            }
        )*
        fn run_fixture(name: &str) -> Option<ExitCode> {
            match name {
                $(stringify!($name) => Some($name::run()),)*
                _ => None,
            }
        }
    };
}

fixtures!(simple, dag, secrets, objects, scripts, generated, cycle);

const CHILD: &str = "GOFER_SDK_EARLIER_FIXTURE";

/// Runs one fixture in a child process: its exit status, stdout and stderr.
fn run_child(name: &str) -> Result<(bool, String, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this test binary: {e}"))?;
    let output = Command::new(exe).env(CHILD, name).output().map_err(|e| format!("cannot run fixture {name}: {e}"))?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// The config a fixture printed, parsed and validated again the way the server does.
fn printed_config(name: &str) -> Result<Pipeline, String> {
    let (success, stdout, stderr) = run_child(name)?;
    if !success {
        return Err(format!("fixture {name} failed:\n{stderr}"));
    }
    let config: Pipeline = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("fixture {name} printed no config ({e}):\n{stdout}"))?;
    config.validate().map_err(|e| format!("fixture {name} printed an invalid config: {e}"))?;
    Ok(config)
}

fn check(condition: bool, what: &str) -> Result<(), String> {
    if condition { Ok(()) } else { Err(format!("expected {what}")) }
}

fn task<'a>(config: &'a Pipeline, id: &str) -> Result<&'a gofer_sdk::config::Task, String> {
    config.tasks.iter().find(|t| t.id == id).ok_or_else(|| format!("task '{id}' in pipeline '{}'", config.id))
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

fn check_all() -> Result<(), String> {
    let simple = printed_config("simple")?;
    let t = task(&simple, "simple-task")?;
    check(t.command == strings(&["echo", "Hello from Gofer!"]), "simple-task's command")?;

    let dag = printed_config("dag")?;
    check(dag.parallelism == 2, "parallelism 2")?;
    check(task(&dag, "fails")?.entrypoint == strings(&["sh", "-c"]), "an entrypoint made with .into()")?;
    let after = task(&dag, "after-everything")?;
    check(after.depends_on.len() == 2, "two dependencies from depends_on_many")?;
    check(after.depends_on.values().all(|s| *s == RequiredParentStatus::Any), "Any edges")?;
    check(task(&dag, "on-failure")?.depends_on.get("fails") == Some(&RequiredParentStatus::Failure), "a Failure edge")?;

    let secrets = printed_config("secrets")?;
    let t = task(&secrets, "simple-task")?;
    check(t.variables.get("LOGS_HEADER").map(String::as_str) == Some("pipeline_secret{{logs_header}}"), "a secret")?;
    check(t.variables.get("SHARED_KEY").map(String::as_str) == Some("global_secret{{shared_key}}"), "upper-cased")?;

    let objects = printed_config("objects")?;
    check(task(&objects, "simple-task")?.inject_api_token, "inject_api_token")?;
    check(
        task(&objects, "reader")?.variables.get("REPORT").map(String::as_str) == Some("run_object{{report}}"),
        "a run object",
    )?;

    let scripts = printed_config("scripts")?;
    check(
        task(&scripts, "scan-db")?.command == strings(&["sh", "-c", "echo scanning db; echo hello"]),
        "a script from format!",
    )?;
    check(task(&scripts, "borrowed")?.command == strings(&["sh", "-c", "echo from a String"]), "a &String script")?;
    check(task(&scripts, "multiline")?.always_pull_newest_image, "always_pull_newest_image")?;

    let generated = printed_config("generated")?;
    let build = task(&generated, "build")?;
    check(build.command == strings(&["echo", "one", "two", "three"]), "a collected command")?;
    check(build.registry_auth.as_ref().is_some_and(|a| a.user == "robot"), "registry credentials")?;
    check(
        task(&generated, "alert")?.depends_on.get("test") == Some(&RequiredParentStatus::Failure),
        "a parsed status",
    )?;

    let (success, stdout, stderr) = run_child("cycle")?;
    check(!success && stdout.trim().is_empty(), "the cycle fixture to fail without printing a config")?;
    check(stderr.contains("dependency cycle"), &format!("the cycle to be named, got:\n{stderr}"))?;
    Ok(())
}

fn main() -> ExitCode {
    if let Ok(name) = std::env::var(CHILD) {
        return run_fixture(&name).unwrap_or_else(|| {
            eprintln!("no fixture named {name}");
            ExitCode::FAILURE
        });
    }
    match check_all() {
        Ok(()) => {
            println!("earlier SDK programs: 7 fixtures compiled and printed the configs they describe");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("earlier SDK programs: {problem}");
            ExitCode::FAILURE
        }
    }
}
