//! The built-in GitHub extension through the external-events listener: deliveries shaped like GitHub's own,
//! signed with HMAC-SHA256 here, start runs with `GOFER_EXTENSION_GITHUB_*` variables; anything unsigned,
//! mis-signed, malformed or oversized is refused and triggers nothing.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::harness::{Server, api, http_raw, script_pipeline};

pub(crate) const SECRET: &str = "It's a Secret to Everybody";
pub(crate) const REPO: &str = "octo-org/hello-world";
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

fn github_server() -> Server {
    Server::start_with(&[
        ("GOFER_EXTENSIONS__GITHUB__WEBHOOK_SECRET", SECRET),
        ("GOFER_EXTERNAL_EVENTS__MAX_BODY_BYTES", "65536"),
    ])
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts a delivery the way GitHub does, with `signature` (None: sign it properly).
pub(crate) fn deliver(gofer: &Server, event: &str, body: &[u8], signature: Option<&str>) -> (u16, String) {
    let signed = sign(body);
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("User-Agent", "GitHub-Hookshot/044aadd"),
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-GitHub-Hook-ID", "292430182"),
    ];
    match signature {
        None => headers.push(("X-Hub-Signature-256", &signed)),
        Some("") => {}
        Some(other) => headers.push(("X-Hub-Signature-256", other)),
    }
    http_raw("POST", &format!("{}/api/external/github", gofer.external_url), &headers, body).unwrap()
}

pub(crate) fn push_payload(repository: &str) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": SHA,
        "created": false, "deleted": false, "forced": false,
        "compare": format!("https://github.com/{repository}/compare/abc...611372"),
        "repository": {
            "id": 1296269, "name": "hello-world", "full_name": repository, "private": false,
            "owner": { "name": "octo-org", "login": "octo-org" },
            "default_branch": "main"
        },
        "pusher": { "name": "mona", "email": "mona@example.com" },
        "sender": { "login": "mona", "id": 1, "type": "User" },
        "head_commit": {
            "id": SHA, "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
            "message": "Update README.md", "timestamp": "2026-11-28T10:00:00Z",
            "author": { "name": "Mona Lisa", "email": "mona@example.com", "username": "mona" },
            "committer": { "name": "GitHub", "email": "noreply@github.com", "username": "web-flow" },
            "added": [], "removed": [], "modified": ["README.md"]
        },
        "commits": []
    })
    .to_string()
    .into_bytes()
}

fn pull_request_payload(action: &str) -> Vec<u8> {
    json!({
        "action": action,
        "number": 42,
        "pull_request": {
            "url": format!("https://api.github.com/repos/{REPO}/pulls/42"),
            "number": 42, "state": "open", "title": "Add a feature", "draft": false,
            "user": { "login": "octocat", "id": 583231, "type": "User" },
            "head": { "label": "octocat:feature", "ref": "feature", "sha": "aaaabbbbccccddddeeeeffff0000111122223333" },
            "base": { "label": "octo-org:main", "ref": "main", "sha": SHA }
        },
        "repository": { "id": 1296269, "name": "hello-world", "full_name": REPO },
        "sender": { "login": "octocat", "id": 583231 }
    })
    .to_string()
    .into_bytes()
}

fn runs(gofer: &Server, pipeline: &str) -> Vec<Value> {
    gofer.cli_json(&["run", "list", pipeline]).as_array().unwrap().clone()
}

const PRINT: &str = "echo $GOFER_EXTENSION_GITHUB_EVENT $GOFER_EXTENSION_GITHUB_ACTION $GOFER_EXTENSION_GITHUB_REPOSITORY \
                     $GOFER_EXTENSION_GITHUB_REF $GOFER_EXTENSION_GITHUB_HEAD_SHA $GOFER_EXTENSION_GITHUB_AUTHOR";

#[test]
fn signed_deliveries_start_the_matching_subscriptions_with_github_variables() {
    let gofer = github_server();
    gofer.register(script_pipeline("on-push", PRINT));
    gofer.register(script_pipeline("on-pr", PRINT));
    gofer.cli_ok(&[
        "pipeline",
        "subscribe",
        "on-push",
        "github",
        "main",
        "-s",
        &format!("repository={REPO}"),
        "-s",
        "events=push",
    ]);
    gofer.cli_ok(&[
        "pipeline",
        "subscribe",
        "on-pr",
        "github",
        "prs",
        "-s",
        "repository=Octo-Org/Hello-World",
        "-s",
        "events=pull_request/opened,synchronize",
    ]);

    let (status, body) = deliver(&gofer, "ping", br#"{"zen":"Keep it logically awesome."}"#, None);
    assert_eq!((status, body.contains("pong")), (200, true), "{body}");

    let (status, body) = deliver(&gofer, "push", &push_payload(REPO), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 run(s) started"), "{body}");
    let run = gofer.wait_run("on-push", 1);
    assert_eq!(run["status"], "successful", "{run:#}");
    assert_eq!(run["initiator"], json!({ "kind": "extension", "name": "github" }));
    let logs = String::from_utf8(gofer.logs("on-push", 1, "main")).unwrap();
    assert_eq!(logs, format!("push {REPO} refs/heads/main {SHA} mona\n"));
    assert!(runs(&gofer, "on-pr").is_empty(), "a push is not a pull request");

    // An action the filter does not name, and another repository: nothing.
    let (status, body) = deliver(&gofer, "pull_request", &pull_request_payload("closed"), None);
    assert_eq!((status, body.contains("0 run(s) started")), (200, true), "{body}");
    let (status, _) = deliver(&gofer, "push", &push_payload("octo-org/other"), None);
    assert_eq!(status, 200);
    assert_eq!(runs(&gofer, "on-push").len(), 1);
    assert!(runs(&gofer, "on-pr").is_empty());

    let (status, body) = deliver(&gofer, "pull_request", &pull_request_payload("synchronize"), None);
    assert_eq!(status, 200, "{body}");
    gofer.wait_run("on-pr", 1);
    let logs = String::from_utf8(gofer.logs("on-pr", 1, "main")).unwrap();
    assert_eq!(
        logs,
        format!("pull_request synchronize {REPO} feature aaaabbbbccccddddeeeeffff0000111122223333 octocat\n")
    );

    // Events the extension does not handle are accepted and ignored.
    let (status, body) =
        deliver(&gofer, "issues", br#"{"action":"opened","repository":{"full_name":"octo-org/hello-world"}}"#, None);
    assert_eq!((status, body.contains("ignored")), (200, true), "{body}");
    assert_eq!(runs(&gofer, "on-push").len() + runs(&gofer, "on-pr").len(), 2);
}

#[test]
fn bad_deliveries_are_refused_and_trigger_nothing() {
    let gofer = github_server();
    gofer.register(script_pipeline("guarded", "true"));
    gofer.cli_ok(&[
        "pipeline",
        "subscribe",
        "guarded",
        "github",
        "main",
        "-s",
        &format!("repository={REPO}"),
        "-s",
        "events=push",
    ]);
    let body = push_payload(REPO);

    let (status, text) = deliver(&gofer, "push", &body, Some(""));
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("missing X-Hub-Signature-256"), "{text}");
    let (status, text) = deliver(&gofer, "push", &body, Some(&sign(b"another body")));
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("does not match"), "{text}");
    let (status, _) = deliver(&gofer, "push", &body, Some("sha256=not-hex"));
    assert_eq!(status, 401);

    let (status, text) = deliver(&gofer, "push", b"payload=%7B%7D", None);
    assert_eq!(status, 400, "signed but not JSON: {text}");
    assert!(text.contains("not JSON"), "{text}");

    let huge = vec![b'x'; 100_000];
    let (status, text) = deliver(&gofer, "push", &huge, None);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("external_events.max_body_bytes"), "{text}");

    let url = format!("{}/api/external/nope", gofer.external_url);
    let (status, text) = http_raw("POST", &url, &[("Content-Type", "application/json")], b"{}").unwrap();
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("extension 'nope'"), "{text}");
    // The API is not served on the external listener.
    let (status, _) = http_raw("GET", &format!("{}/api/extensions", gofer.external_url), &[], b"").unwrap();
    assert_eq!(status, 404);

    assert!(runs(&gofer, "guarded").is_empty(), "nothing was triggered");

    // Bad subscription settings are refused with the extension's words, and nothing is stored.
    let base = "/api/namespaces/default/pipelines/guarded/subscriptions";
    for (settings, expected) in [
        (json!({ "repository": "no-slash", "events": "push" }), "must be written owner/name"),
        (json!({ "repository": REPO, "events": "pull_request/open" }), "'open' is not an action of 'pull_request'"),
        (json!({ "repository": REPO }), "'events' is required"),
    ] {
        let request = json!({ "extension_id": "github", "label": "bad", "settings": settings });
        let (status, answer) = api(&gofer, "POST", base, Some(&request));
        assert_eq!(status, 400, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(expected), "{answer}");
    }
    assert_eq!(gofer.cli_json(&["pipeline", "subscriptions", "guarded"]).as_array().unwrap().len(), 1);
}

#[test]
fn without_a_webhook_secret_the_github_extension_is_not_installed() {
    let gofer = Server::start();
    assert_eq!(gofer.extension_ids(), ["cron", "interval"]);
    let (status, _) = http_raw("POST", &format!("{}/api/external/github", gofer.external_url), &[], b"{}").unwrap();
    assert_eq!(status, 404);
}
