//! Objects on the real binary: byte-exact round trips through the CLI, a parent task leaving a run object its
//! child reads through `run_object{{KEY}}`, keys that cannot escape their folder, size limits, deletion with the
//! pipeline, a 1 GiB object streamed through with bounded server memory, and the same API on a real
//! S3-compatible server (moto, from PyPI; scripts/ensure-s3.sh installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Server, api, http_raw, script_pipeline, wait_for};

/// Every byte value, twice, and a few newlines and NULs: what a text-only path would mangle.
fn binary() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    bytes.extend_from_slice(b"\r\n\0\n");
    bytes
}

fn round_trip(gofer: &Server) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.bin");
    std::fs::write(&file, binary()).unwrap();
    gofer.cli_ok(&["pipeline", "object", "put", "p", "blob.bin", file.to_str().unwrap()]);
    let got = gofer.cli(&["pipeline", "object", "get", "p", "blob.bin"]);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(got.stdout, binary(), "bytes come back exactly");
    let listed = gofer.cli_json(&["pipeline", "object", "list", "p"]);
    assert_eq!(listed[0]["key"], "blob.bin");
    assert_eq!(listed[0]["size"], binary().len());

    let run = gofer.start_run("p", &[]);
    gofer.wait_run("p", run);
    let put = gofer.cli_with_stdin(&["run", "object", "put", "p", &run.to_string(), "notes", "-"], b"from stdin\n");
    assert!(put.status.success(), "{put:?}");
    assert_eq!(gofer.cli(&["run", "object", "get", "p", &run.to_string(), "notes"]).stdout, b"from stdin\n");
    gofer.cli_ok(&["run", "object", "delete", "p", &run.to_string(), "notes"]);
    let again = gofer.cli(&["run", "object", "get", "p", &run.to_string(), "notes"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not found"), "{again:?}");
    gofer.cli_ok(&["pipeline", "object", "delete", "p", "blob.bin"]);
    assert!(gofer.cli_json(&["pipeline", "object", "list", "p"]).as_array().unwrap().is_empty());
}

#[test]
fn objects_round_trip_byte_exact_and_a_parent_hands_a_run_object_to_its_child() {
    let gofer = Server::start();
    gofer.register(script_pipeline("p", "true"));
    round_trip(&gofer);

    // The parent stores a run object through the API (raw HTTP from busybox's nc, which stops reading once its
    // input ends, hence the sleep); the child reads it as a variable.
    let put = "body='made by the parent'; addr=$(echo $GOFER_API_BASE_URL | sed 's|http://||; s|:| |'); \
               (printf 'PUT /api/namespaces/default/pipelines/handoff/runs/%s/objects/greeting HTTP/1.0\\r\\n\
               Content-Length: %s\\r\\n\\r\\n%s' \"$GOFER_RUN_ID\" \"${#body}\" \"$body\"; sleep 2) \
               | nc $addr | head -1 | grep ' 200 '";
    gofer.register(json!({
        "id": "handoff",
        "tasks": [
            { "id": "parent", "image": "busybox:latest", "command": ["sh", "-c", put] },
            {
                "id": "child", "image": "busybox:latest", "command": ["sh", "-c", "echo \"child got: $GREETING\""],
                "variables": { "GREETING": "run_object{{greeting}}" },
                "depends_on": { "parent": "Success" }
            }
        ]
    }));
    let run = gofer.start_run("handoff", &[]);
    let done = gofer.wait_run("handoff", run);
    assert_eq!(done["status"], "successful", "{done:#} {:?}", gofer.tasks("handoff", run));
    assert_eq!(gofer.logs("handoff", run, "child"), b"child got: made by the parent\n");

    // A missing object fails the task that needs it, naming the key.
    gofer.register(json!({
        "id": "wants",
        "tasks": [{ "id": "t", "image": "busybox:latest", "command": ["true"],
                    "variables": { "CACHE": "pipeline_object{{cache}}" } }]
    }));
    let run = gofer.start_run("wants", &[]);
    gofer.wait_run("wants", run);
    let task = &gofer.tasks("wants", run)["t"];
    assert_eq!(task["status_reason"]["reason"], "failed_precondition");
    assert!(
        task["status_reason"]["description"]
            .as_str()
            .unwrap()
            .contains("object 'cache' of pipeline default/wants does not exist")
    );
}

#[test]
fn a_task_uses_the_gofer_cli_with_its_injected_token_to_leave_a_run_object_for_its_child() {
    let gofer = Server::start();
    let parent = "echo \"token: $GOFER_TOKEN\"; export GOFER_API_URL=\"$GOFER_API_BASE_URL\"; \
                  printf 'the report' | /bin/gofer run object put \"$GOFER_PIPELINE_ID\" \"$GOFER_RUN_ID\" report - \
                  && /bin/gofer pipeline get \"$GOFER_PIPELINE_ID\" >/dev/null && echo 'may read its pipeline' \
                  && ! /bin/gofer secret pipeline list \"$GOFER_PIPELINE_ID\" 2>/dev/null && echo 'may not read secrets' \
                  && /bin/gofer token whoami >/dev/null && echo 'knows who it is' \
                  && printf \"$GOFER_TOKEN\" | /bin/gofer run object put \"$GOFER_PIPELINE_ID\" \"$GOFER_RUN_ID\" token - \
                  >/dev/null";
    gofer.register(json!({
        "id": "cli-handoff",
        "tasks": [
            { "id": "parent", "image": crate::images::gofer_cli(), "command": ["/bin/sh", "-c", parent],
              "inject_api_token": true },
            { "id": "child", "image": "busybox:latest", "command": ["sh", "-c", "echo \"child got: $REPORT\""],
              "variables": { "REPORT": "run_object{{report}}" }, "depends_on": { "parent": "Success" } }
        ]
    }));
    let run = gofer.start_run("cli-handoff", &[]);
    let done = gofer.wait_run("cli-handoff", run);
    let parent_log = String::from_utf8(gofer.logs("cli-handoff", run, "parent")).unwrap();
    assert_eq!(done["status"], "successful", "{done:#}\n{parent_log}");
    assert!(parent_log.starts_with("token: ***\n"), "the token is masked: {parent_log}");
    assert!(parent_log.ends_with("may read its pipeline\nmay not read secrets\nknows who it is\n"), "{parent_log}");
    // The token ended with the run (the task left it in a run object, for this check only).
    let token = gofer.cli_ok(&["run", "object", "get", "cli-handoff", &run.to_string(), "token"]);
    assert_eq!(token.len(), 64, "{token}");
    let url = format!("{}/api/tokens/whoami", gofer.url);
    let (status, body) = http_raw("GET", &url, &[("Authorization", &format!("Bearer {token}"))], b"").unwrap();
    assert_eq!(status, 401, "a finished run's token is refused: {body}");

    // A token that is presented is checked, in development mode too.
    let url = format!("{}/api/namespaces/default/pipelines", gofer.url);
    let (status, body) = http_raw("GET", &url, &[("Authorization", "Bearer not-a-token")], b"").unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown or was revoked"), "{body}");
    assert_eq!(gofer.logs("cli-handoff", run, "child"), b"child got: the report\n");
}

#[test]
fn bad_object_input_is_refused_and_deleting_the_pipeline_deletes_the_bytes() {
    let gofer = Server::start_with(&[("GOFER_OBJECTS__MAX_OBJECT_BYTES", "1000")]);
    gofer.register(script_pipeline("p", "true"));
    let base = format!("{}/api/namespaces/default/pipelines/p/objects", gofer.url);
    let put = |key: &str, body: &[u8]| http_raw("PUT", &format!("{base}/{key}"), &[], body).unwrap();
    for key in ["..", "..%2F..%2Fetc%2Fpasswd", "a%2Fb", "%2E%2E"] {
        let (status, text) = put(key, b"x");
        assert_eq!(status, 400, "{key}: {text}");
        assert!(text.contains("invalid object key"), "{text}");
    }
    let (status, text) = put("big", &[7u8; 2000]);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("objects.max_object_bytes"), "{text}");
    assert_eq!(put("ok", b"fine").0, 200);
    assert_eq!(api(&gofer, "GET", "/api/namespaces/default/pipelines/p/objects/nope", None).0, 404);
    assert_eq!(api(&gofer, "GET", "/api/namespaces/default/pipelines/ghost/objects", None).0, 404);
    assert_eq!(api(&gofer, "GET", "/api/namespaces/default/pipelines/p/runs/99/objects", None).0, 404);

    let folder = gofer.data_path().join("objects/pipelines/default/p");
    assert_eq!(files_under(&folder), 1);
    gofer.cli_ok(&["pipeline", "delete", "p"]);
    assert_eq!(files_under(&folder), 0, "the bytes went with the pipeline");
}

/// How many files are under `dir` (0 if it does not exist).
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { files_under(&p) } else { 1 }).sum()
}

/// The server's peak resident memory (VmHWM) in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_one_gib_object_streams_through_with_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    let gofer = Server::start();
    gofer.register(script_pipeline("big", "true"));
    let host = gofer.url.trim_start_matches("http://").to_string();
    let chunk: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let mut stream = TcpStream::connect(&host).unwrap();
    write!(
        stream,
        "PUT /api/namespaces/default/pipelines/big/objects/huge HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Length: {SIZE}\r\n\r\n"
    )
    .unwrap();
    for _ in 0..(SIZE >> 20) {
        stream.write_all(&chunk).unwrap();
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut download = TcpStream::connect(&host).unwrap();
    write!(
        download,
        "GET /api/namespaces/default/pipelines/big/objects/huge HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buffer = vec![0u8; 1 << 20];
    let (mut header, mut body_bytes, mut sum) = (Vec::new(), 0u64, 0u64);
    loop {
        let n = download.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        let mut data = &buffer[..n];
        if !header.ends_with(b"\r\n\r\n") {
            let split = data.iter().position(|_| false).unwrap_or(0);
            header.extend_from_slice(&data[split..]);
            if let Some(end) = header.windows(4).position(|w| w == b"\r\n\r\n") {
                let body_start = header.len() - (end + 4);
                data = &data[n - body_start..];
                header.truncate(end + 4);
            } else {
                continue;
            }
        }
        for b in data {
            sum = sum.wrapping_mul(31).wrapping_add(u64::from(*b));
        }
        body_bytes += data.len() as u64;
    }
    assert!(String::from_utf8_lossy(&header).starts_with("HTTP/1.1 200"));
    assert_eq!(body_bytes, SIZE);
    let mut expected = 0u64;
    for _ in 0..(SIZE >> 20) {
        for b in &chunk {
            expected = expected.wrapping_mul(31).wrapping_add(u64::from(*b));
        }
    }
    assert_eq!(sum, expected, "the same bytes came back");
    let peak = peak_rss_kib(gofer.pid());
    assert!(peak < 100 * 1024, "peak server memory {} MiB while moving 1 GiB", peak / 1024);
}

/// A moto S3 server on a free port, killed on drop.
struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server is missing; run scripts/ensure-s3.sh (pip install 'moto[server]')");
    let moto = Moto(child, port);
    wait_for("moto to answer", Duration::from_secs(30), || {
        http_raw("PUT", &format!("http://127.0.0.1:{port}/gofer-objects"), &[], b"").ok().filter(|(s, _)| *s == 200)
    });
    moto
}

#[test]
fn objects_work_the_same_on_an_s3_compatible_server() {
    let moto = moto();
    let endpoint = format!("http://127.0.0.1:{}", moto.1);
    let gofer = Server::start_with(&[
        ("GOFER_OBJECTS__STORE", "s3"),
        ("GOFER_OBJECTS__S3__ENDPOINT", &endpoint),
        ("GOFER_OBJECTS__S3__BUCKET", "gofer-objects"),
        ("GOFER_OBJECTS__S3__ACCESS_KEY_ID", "testing"),
        ("GOFER_OBJECTS__S3__SECRET_ACCESS_KEY", "testing"),
        ("GOFER_OBJECTS__S3__ALLOW_HTTP", "true"),
    ]);
    gofer.register(script_pipeline("p", "true"));
    round_trip(&gofer);
    // The bytes are in the bucket, not in the data dir.
    gofer.cli_ok(&["pipeline", "object", "put", "p", "kept", "-"]);
    let (status, listing) = http_raw("GET", &format!("{endpoint}/gofer-objects?list-type=2"), &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(listing.contains("pipelines/default/p/objects/kept"), "{listing}");
    assert!(!gofer.data_path().join("objects").exists());
}

#[test]
fn deleting_a_namespace_deletes_its_pipelines_secrets_objects_and_logs() {
    let gofer = Server::start();
    gofer.cli_ok(&["namespace", "create", "doomed"]);
    fn ns<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [args, &["--namespace", "doomed"]].concat()
    }
    let config = script_pipeline("p", "echo ran");
    let base = "/api/namespaces/doomed/pipelines/p";
    assert_eq!(api(&gofer, "POST", &format!("{base}/configs"), Some(&json!({ "config": config }))).0, 201);
    assert_eq!(api(&gofer, "POST", &format!("{base}/configs/1/deploy"), None).0, 201);
    gofer.cli_ok(&ns(&["secret", "pipeline", "put", "p", "K", "doomed-secret-value"]));
    let put = gofer.cli_with_stdin(&ns(&["pipeline", "object", "put", "p", "obj", "-"]), b"doomed object");
    assert!(put.status.success(), "{put:?}");
    let run = gofer.cli_json(&ns(&["run", "start", "p"]))["run_id"].as_u64().unwrap();
    wait_for("the run", Duration::from_secs(60), || {
        (gofer.cli_json(&ns(&["run", "get", "p", &run.to_string()]))["state"] == "complete").then_some(())
    });
    let data = gofer.data_path();
    assert_eq!(files_under(&data.join("objects/pipelines/doomed")), 1);
    assert!(files_under(&data.join("logs/doomed")) >= 1);

    let (status, body) = api(&gofer, "DELETE", "/api/namespaces/default", None);
    assert_eq!(status, 400, "{body}");
    gofer.cli_ok(&["namespace", "delete", "doomed"]);
    assert_eq!(api(&gofer, "GET", "/api/namespaces/doomed", None).0, 404);
    assert_eq!(files_under(&data.join("objects/pipelines/doomed")), 0, "object bytes are gone");
    assert_eq!(files_under(&data.join("logs/doomed")), 0, "logs are gone");
    // Re-created, it starts empty: no secret came back.
    gofer.cli_ok(&["namespace", "create", "doomed"]);
    assert_eq!(api(&gofer, "POST", &format!("{base}/configs"), Some(&json!({ "config": config }))).0, 201);
    assert!(gofer.cli_json(&ns(&["secret", "pipeline", "list", "p"])).as_array().unwrap().is_empty());
}
