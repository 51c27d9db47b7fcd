//! Production mode (`development.bypass_auth = false`) on the real binary: every route but health and the one-time
//! bootstrap needs a token; tokens are checked (disabled, expired, malformed → 401) and held to their roles (403);
//! and every operation of the served OpenAPI document is walked to prove it.

use serde_json::{Value, json};

use crate::harness::{Server, http_raw};

const KEY: &str = "qUEvqSn4dQxDQ7RhTDbn3RQnsJeJQq5rRZIhE0O8X0M=";

fn production() -> Server {
    Server::start_with(&[("GOFER_DEVELOPMENT__BYPASS_AUTH", "false"), ("GOFER_SECRETS__KEY", KEY)])
}

/// A raw call with an optional bearer token and a JSON body.
fn call(gofer: &Server, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, text) = http_raw(method, &format!("{}{path}", gofer.url), &headers, payload.as_bytes()).unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn create_token(gofer: &Server, admin: &str, user: &str, roles: &[&str], expires: Option<u64>) -> (String, String) {
    let request = json!({ "user": user, "roles": roles, "expires_in_seconds": expires });
    let (status, body) = call(gofer, "POST", "/api/tokens", Some(admin), Some(&request));
    assert_eq!(status, 201, "{body}");
    (body["token"]["id"].as_str().unwrap().into(), body["secret"].as_str().unwrap().into())
}

fn bootstrap(gofer: &Server) -> String {
    let created = gofer.cli_json(&["token", "bootstrap"]);
    created["secret"].as_str().unwrap().to_string()
}

#[test]
fn production_mode_needs_tokens_and_holds_them_to_their_roles() {
    let gofer = production();
    assert_eq!(call(&gofer, "GET", "/api/health", None, None).0, 200, "health needs no token");
    let refused = gofer.cli(&["pipeline", "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs a token granting pipelines:read"), "{refused:?}");

    let admin = bootstrap(&gofer);
    let again = gofer.cli(&["token", "bootstrap"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("bootstrapped already"), "works once: {again:?}");
    let me = gofer.cli_json(&["token", "whoami", "--token", &admin]);
    assert_eq!(me["roles"], json!(["admin"]));
    let robot = gofer.cli_json(&[
        "token",
        "create",
        "--user",
        "ci",
        "--role",
        "user",
        "--metadata",
        "team=ops",
        "--token",
        &admin,
    ]);
    assert_eq!(robot["token"]["metadata"], json!({ "team": "ops" }));
    assert!(robot["token"].get("hash").is_none(), "the hash is never shown");
    let context = gofer.cli_ok(&["context", "--token", &admin]);
    assert!(context.contains("bootstrap") && context.contains(&gofer.url), "{context}");

    gofer.cli_ok(&["namespace", "create", "team-a", "--token", &admin]);
    let updated = gofer.cli_json(&["namespace", "update", "team-a", "--name", "Team A", "--token", &admin]);
    assert_eq!(updated["name"], "Team A");
    let (_, reader) = create_token(&gofer, &admin, "auditor", &["read_only"], None);
    assert_eq!(call(&gofer, "GET", "/api/namespaces/default/pipelines", Some(&reader), None).0, 200);
    let config = json!({ "config": crate::harness::script_pipeline("p", "true") });
    let (status, body) =
        call(&gofer, "POST", "/api/namespaces/default/pipelines/p/configs", Some(&reader), Some(&config));
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("does not grant configs:write"), "{body}");

    // Nobody grants more than they hold; unknown roles are refused.
    let (_, user) = create_token(&gofer, &admin, "dev", &["user"], None);
    let (status, body) =
        call(&gofer, "POST", "/api/tokens", Some(&user), Some(&json!({ "user": "x", "roles": ["admin"] })));
    assert_eq!(status, 403, "{body}");
    let (status, body) =
        call(&gofer, "POST", "/api/tokens", Some(&admin), Some(&json!({ "user": "x", "roles": ["wizard"] })));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("role 'wizard' does not exist"), "{body}");

    // Disabled, expired, unknown and malformed tokens: 401.
    let (id, doomed) = create_token(&gofer, &admin, "temp", &["read_only"], None);
    gofer.cli_ok(&["token", "disable", &id, "--token", &admin]);
    let (status, body) = call(&gofer, "GET", "/api/namespaces", Some(&doomed), None);
    assert_eq!((status, body["message"].as_str().unwrap()), (401, "the token is disabled"));
    gofer.cli_ok(&["token", "enable", &id, "--token", &admin]);
    assert_eq!(call(&gofer, "GET", "/api/namespaces", Some(&doomed), None).0, 200);
    let (short_id, short) = create_token(&gofer, &admin, "brief", &["read_only"], Some(3600));
    assert_eq!(call(&gofer, "GET", "/api/namespaces", Some(&short), None).0, 200, "usable until it expires");
    gofer.expire_token(&short_id);
    let (status, body) = call(&gofer, "GET", "/api/namespaces", Some(&short), None);
    assert_eq!((status, body["message"].as_str().unwrap()), (401, "the token has expired"));
    assert_eq!(call(&gofer, "GET", "/api/namespaces", Some("made-up"), None).0, 401);
    let url = format!("{}/api/namespaces", gofer.url);
    let (status, _) = http_raw("GET", &url, &[("Authorization", "Basic YWRtaW46YWRtaW4=")], b"").unwrap();
    assert_eq!(status, 401, "a malformed Authorization header");
    gofer.cli_ok(&["token", "delete", &id, "--token", &admin]);
    assert_eq!(call(&gofer, "GET", "/api/namespaces", Some(&doomed), None).0, 401, "deleted");
}

/// Fills a path's parameters with plausible values.
fn concrete(path: &str) -> String {
    let values = [
        ("{namespace_id}", "default"),
        ("{pipeline_id}", "p"),
        ("{run_id}", "1"),
        ("{task_id}", "t"),
        ("{extension_id}", "interval"),
        ("{label}", "l"),
        ("{key}", "k"),
        ("{version}", "1"),
        ("{deployment_id}", "1"),
        ("{token_id}", "t-0"),
        ("{role_id}", "r"),
    ];
    let mut path = path.to_string();
    for (name, value) in values {
        path = path.replace(name, value);
    }
    assert!(!path.contains('{'), "a parameter the walk does not know: {path}");
    path
}

#[test]
fn every_operation_of_the_api_refuses_missing_and_insufficient_tokens() {
    let gofer = production();
    let admin = bootstrap(&gofer);
    let (_, reader) = create_token(&gofer, &admin, "auditor", &["read_only"], None);
    // Everything, but only in namespace team-a; the walk aims at namespace `default`.
    let grant = json!([{ "actions": ["read", "write", "delete"], "namespaces": ["team-a"] }]);
    let role = json!({ "id": "team-a-all", "description": "", "grants": grant, "system_role": false });
    assert_eq!(call(&gofer, "POST", "/api/roles", Some(&admin), Some(&role)).0, 201);
    let (_, other_team) = create_token(&gofer, &admin, "team-a", &["team-a-all"], None);
    let (disabled_id, disabled) = create_token(&gofer, &admin, "off", &["admin"], None);
    gofer.cli_ok(&["token", "disable", &disabled_id, "--token", &admin]);
    let (expired_id, expired) = create_token(&gofer, &admin, "old", &["admin"], Some(3600));
    gofer.expire_token(&expired_id);

    let (status, doc) = call(&gofer, "GET", "/api/openapi.json", None, None);
    assert_eq!(status, 200);
    let (mut checked, mut public) = (0, 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let access =
                operation["x-gofer-access"].as_str().unwrap_or_else(|| panic!("{method} {path} declares no access"));
            let url = concrete(path);
            if access == "public" {
                public += 1;
                continue;
            }
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            let body = body.as_ref();
            for (who, token) in
                [("no token", None), ("a disabled token", Some(&disabled)), ("an expired token", Some(&expired))]
            {
                let (status, answer) = call(&gofer, &method, &url, token.map(String::as_str), body);
                assert_eq!(status, 401, "{method} {url} with {who}: {answer}");
            }
            let (status, answer) = call(&gofer, &method, &url, Some(&reader), body);
            if access.ends_with(":read") {
                assert!(status != 401 && status != 403, "{method} {url} ({access}) read-only: {status} {answer}");
            } else {
                assert_eq!(status, 403, "{method} {url} ({access}) with a read-only token: {answer}");
            }
            if path.contains("{namespace_id}") {
                let (status, answer) = call(&gofer, &method, &url, Some(&other_team), body);
                assert!(
                    status == 403 || status == 404,
                    "{method} {url} with another namespace's token: {status} {answer}"
                );
            }
            checked += 1;
        }
    }
    println!("checked {checked} operations that need a token ({public} public)");
    assert!(checked >= 60, "only {checked} operations found; were routes dropped from the document?");
}

#[test]
fn a_token_scoped_to_one_namespace_cannot_reach_another() {
    let gofer = production();
    let admin = bootstrap(&gofer);
    for ns in ["team-a", "team-b"] {
        gofer.cli_ok(&["namespace", "create", ns, "--token", &admin]);
    }
    gofer.cli_ok(&[
        "role",
        "create",
        "team-a-dev",
        "--token",
        &admin,
        "--resource",
        "pipelines",
        "--resource",
        "configs",
        "--resource",
        "runs",
        "--resource",
        "namespaces",
        "--action",
        "read",
        "--action",
        "write",
        "--namespace-pattern",
        "team-a",
    ]);
    let listed = gofer.cli_json(&["role", "get", "team-a-dev", "--token", &admin]);
    assert_eq!(listed["grants"][0]["namespaces"], json!(["team-a"]));
    let (_, dev) = create_token(&gofer, &admin, "alice", &["team-a-dev"], None);

    let config = |ns: &str| json!({ "config": crate::harness::script_pipeline(&format!("{ns}-p"), "true") });
    let (status, body) =
        call(&gofer, "POST", "/api/namespaces/team-a/pipelines/team-a-p/configs", Some(&dev), Some(&config("team-a")));
    assert_eq!(status, 201, "its own namespace: {body}");
    let (status, _) = call(
        &gofer,
        "POST",
        "/api/namespaces/team-b/pipelines/team-b-p/configs",
        Some(&admin),
        Some(&config("team-b")),
    );
    assert_eq!(status, 201);
    for (method, path) in [
        ("GET", "/api/namespaces/team-b/pipelines"),
        ("GET", "/api/namespaces/team-b/pipelines/team-b-p"),
        ("POST", "/api/namespaces/team-b/pipelines/team-b-p/runs"),
        ("GET", "/api/namespaces/team-a/pipelines/team-a-p/secrets"),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let (status, answer) = call(&gofer, method, path, Some(&dev), body.as_ref());
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(!answer.to_string().contains("team-b-p\","), "never the data: {answer}");
    }
    assert_eq!(call(&gofer, "GET", "/api/namespaces/team-a/pipelines", Some(&dev), None).0, 200);
    // Lists show only what the token may see.
    let (status, listed) = call(&gofer, "GET", "/api/namespaces", Some(&dev), None);
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed["namespaces"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["team-a"]);
    let (_, everything) = call(&gofer, "GET", "/api/namespaces", Some(&admin), None);
    assert_eq!(everything["namespaces"].as_array().unwrap().len(), 3);

    // A role scoped to some pipelines sees only those in the pipeline list.
    for p in ["backup-db", "deploy-web"] {
        let config = json!({ "config": crate::harness::script_pipeline(p, "true") });
        let path = format!("/api/namespaces/team-a/pipelines/{p}/configs");
        assert_eq!(call(&gofer, "POST", &path, Some(&admin), Some(&config)).0, 201);
    }
    let backups = json!({ "id": "backups", "description": "", "system_role": false,
        "grants": [{ "resources": ["pipelines"], "actions": ["read"], "namespaces": ["team-a"], "pipelines": ["backup-*"] }] });
    assert_eq!(call(&gofer, "POST", "/api/roles", Some(&admin), Some(&backups)).0, 201);
    let (_, backup_reader) = create_token(&gofer, &admin, "bob", &["backups"], None);
    let (status, listed) = call(&gofer, "GET", "/api/namespaces/team-a/pipelines", Some(&backup_reader), None);
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> =
        listed["pipelines"].as_array().unwrap().iter().map(|p| p["pipeline_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["backup-db"]);
    assert_eq!(call(&gofer, "GET", "/api/namespaces/team-a/pipelines/deploy-web", Some(&backup_reader), None).0, 403);
    assert_eq!(call(&gofer, "GET", "/api/namespaces/team-b/pipelines", Some(&backup_reader), None).0, 403);

    // Bad roles are refused and nothing is stored.
    for (role, expected) in [
        (
            json!({ "id": "bad", "description": "", "grants": [{ "actions": ["read"], "namespaces": ["team/.*"] }], "system_role": false }),
            "not valid",
        ),
        (
            json!({ "id": "bad", "description": "", "grants": [{ "resources": ["nukes"], "actions": ["read"] }], "system_role": false }),
            "nukes",
        ),
        (
            json!({ "id": "admin", "description": "", "grants": [{ "actions": ["read"] }], "system_role": false }),
            "Gofer's own",
        ),
    ] {
        let (status, body) = call(&gofer, "POST", "/api/roles", Some(&admin), Some(&role));
        assert!(status == 400 || status == 409, "{status} {body}");
        assert!(body.to_string().contains(expected), "{body}");
    }
    assert_eq!(call(&gofer, "GET", "/api/roles/bad", Some(&admin), None).0, 404);
}

#[test]
fn guessing_tokens_is_slowed_down_but_valid_tokens_get_through() {
    let gofer = production();
    let admin = bootstrap(&gofer);
    let statuses: Vec<u16> =
        (0..25).map(|i| call(&gofer, "GET", "/api/namespaces", Some(&format!("guess-{i}")), None).0).collect();
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    // Clients behind one proxy share an address: the guesser there must not lock out the others.
    let (status, body) = call(&gofer, "GET", "/api/namespaces", Some(&admin), None);
    assert_eq!(status, 200, "a valid token is let through from a blocked address: {body}");
    assert_eq!(call(&gofer, "GET", "/api/health", None, None).0, 200, "requests without a token are not guesses");
}

/// The sequences by which a token could reach beyond its holder: deleting and re-making a role it holds with more
/// grants, making a role wider than itself, widening a role by changing it, and a deleted role's id coming back.
#[test]
fn no_sequence_of_role_changes_gives_a_token_more_than_its_holder_has() {
    let gofer = production();
    let admin = bootstrap(&gofer);
    let role = |id: &str, grants: Value| json!({ "id": id, "grants": grants });
    let roles_admin = json!([{ "resources": ["roles"], "actions": ["read", "write", "delete"] }]);
    let runner = json!([{ "resources": ["runs"], "actions": ["read"], "namespaces": ["default"] }]);
    let everything = json!([{ "actions": ["read", "write", "delete", "reveal"] }]);
    assert_eq!(call(&gofer, "POST", "/api/roles", Some(&admin), Some(&role("role-admin", roles_admin))).0, 201);
    assert_eq!(call(&gofer, "POST", "/api/roles", Some(&admin), Some(&role("runner", runner.clone()))).0, 201);
    let (_, mallory) = create_token(&gofer, &admin, "mallory", &["role-admin", "runner"], None);

    // Delete a role it holds, then make it again with every grant: refused, and the token holds nothing more.
    assert_eq!(call(&gofer, "DELETE", "/api/roles/runner", Some(&mallory), None).0, 204);
    let (status, body) = call(&gofer, "POST", "/api/roles", Some(&mallory), Some(&role("runner", everything.clone())));
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("your own token does not hold"), "{body}");
    let (status, me) = call(&gofer, "GET", "/api/tokens/whoami", Some(&mallory), None);
    assert_eq!((status, me["roles"].clone()), (200, json!(["role-admin"])), "the deleted role left the token");
    // Not even the grant it held before: that went with the role.
    assert_eq!(call(&gofer, "POST", "/api/roles", Some(&mallory), Some(&role("runner", runner.clone()))).0, 403);
    assert_eq!(call(&gofer, "GET", "/api/namespaces/default/pipelines/p/runs", Some(&mallory), None).0, 403);

    // A role within what it holds is fine; widening it afterwards is not, narrowing is.
    let reader = json!([{ "resources": ["roles"], "actions": ["read"] }]);
    assert_eq!(call(&gofer, "POST", "/api/roles", Some(&mallory), Some(&role("role-reader", reader))).0, 201);
    let widen = json!({ "grants": everything });
    let (status, body) = call(&gofer, "PATCH", "/api/roles/role-reader", Some(&mallory), Some(&widen));
    assert_eq!(status, 403, "{body}");
    let scoped = json!([{ "resources": ["roles"], "actions": ["read"], "namespaces": ["team-*"] }]);
    let (status, body) =
        call(&gofer, "PATCH", "/api/roles/role-reader", Some(&mallory), Some(&json!({ "grants": scoped })));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["grants"][0]["namespaces"], json!(["team-*"]));

    // A role deleted and made again by an admin does not come back to the tokens that held it.
    assert_eq!(
        call(&gofer, "POST", "/api/roles", Some(&admin), Some(&role("ops", json!([{ "actions": ["read"] }])))).0,
        201
    );
    let (_, ops) = create_token(&gofer, &admin, "ops", &["ops"], None);
    assert_eq!(call(&gofer, "GET", "/api/namespaces", Some(&ops), None).0, 200);
    assert_eq!(call(&gofer, "DELETE", "/api/roles/ops", Some(&admin), None).0, 204);
    assert_eq!(call(&gofer, "POST", "/api/roles", Some(&admin), Some(&role("ops", everything))).0, 201);
    let (status, me) = call(&gofer, "GET", "/api/tokens/whoami", Some(&ops), None);
    assert_eq!((status, me["roles"].clone()), (200, json!([])));
    assert_eq!(call(&gofer, "GET", "/api/namespaces", Some(&ops), None).0, 403, "it holds nothing now");

    // A misspelt grant field is refused, not read as "everywhere".
    let typo = json!({ "id": "typo", "grants": [{ "actions": ["read"], "namespace": ["team-a"] }] });
    let (status, body) = call(&gofer, "POST", "/api/roles", Some(&admin), Some(&typo));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("unknown field `namespace`"), "{body}");
}

/// Secret values are for admins (and tasks, by reference): `read_only` and `user` tokens see metadata only.
#[test]
fn secret_values_are_not_for_readers() {
    let gofer = production();
    let admin = bootstrap(&gofer);
    let config = json!({ "config": crate::harness::script_pipeline("p", "true") });
    assert_eq!(call(&gofer, "POST", "/api/namespaces/default/pipelines/p/configs", Some(&admin), Some(&config)).0, 201);
    let value = json!({ "value": "hunter2" });
    let pipeline_secret = "/api/namespaces/default/pipelines/p/secrets/db";
    assert_eq!(call(&gofer, "PUT", pipeline_secret, Some(&admin), Some(&value)).0, 200);
    let global = json!({ "value": "hunter3", "namespaces": ["*"] });
    assert_eq!(call(&gofer, "PUT", "/api/secrets/shared", Some(&admin), Some(&global)).0, 200);
    let (_, reader) = create_token(&gofer, &admin, "auditor", &["read_only"], None);
    let (_, user) = create_token(&gofer, &admin, "dev", &["user"], None);
    for path in [pipeline_secret, "/api/secrets/shared"] {
        for (who, token) in [("read_only", &reader), ("user", &user)] {
            let (status, body) = call(&gofer, "GET", path, Some(token), None);
            assert_eq!(status, 200, "{who} reads the metadata of {path}: {body}");
            assert!(body.get("value").is_none(), "{body}");
            let (status, body) = call(&gofer, "GET", &format!("{path}?include_secret=true"), Some(token), None);
            assert_eq!(status, 403, "{who} may not read the value of {path}: {body}");
            assert!(body["message"].as_str().unwrap().contains("secrets:reveal"), "{body}");
            assert!(!body.to_string().contains("hunter"), "{body}");
        }
        let (status, body) = call(&gofer, "GET", &format!("{path}?include_secret=true"), Some(&admin), None);
        assert_eq!(status, 200, "{body}");
        assert!(body["value"].as_str().unwrap().starts_with("hunter"), "{body}");
    }
    // A custom role can be given `reveal` for one pipeline's secrets.
    let revealer = json!({ "id": "revealer", "grants": [{ "resources": ["secrets"], "actions": ["read", "reveal"],
        "namespaces": ["default"], "pipelines": ["p"] }] });
    assert_eq!(call(&gofer, "POST", "/api/roles", Some(&admin), Some(&revealer)).0, 201);
    let (_, holder) = create_token(&gofer, &admin, "holder", &["revealer"], None);
    let url = format!("{pipeline_secret}?include_secret=true");
    assert_eq!(call(&gofer, "GET", &url, Some(&holder), None).1["value"], "hunter2");
    assert_eq!(call(&gofer, "GET", "/api/secrets/shared?include_secret=true", Some(&holder), None).0, 403);
}
