//! The API's published contract: the checked-in OpenAPI document and config schema match the code, and every
//! route declares the access it requires.

use std::collections::BTreeSet;
use std::path::PathBuf;

use gofer_api::permissions::{Access, Action};
use gofer_server::api;

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name)
}

/// Compares a generated document with its checked-in copy; `GOFER_UPDATE_DOCS=1` rewrites the copy.
fn assert_checked_in(name: &str, generated: &str, command: &str) {
    let path = repo_file(name);
    if std::env::var_os("GOFER_UPDATE_DOCS").is_some() {
        std::fs::write(&path, generated).expect("write the document");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/{name} does not match the code; regenerate it with `{command}` (or GOFER_UPDATE_DOCS=1 cargo test)"
    );
}

#[test]
fn the_checked_in_openapi_document_matches_the_code() {
    assert_checked_in(
        "openapi.json",
        &api::openapi_json(),
        "cargo run -p gofer -- service openapi > docs/openapi.json",
    );
}

#[test]
fn the_checked_in_config_schema_matches_the_code() {
    assert_checked_in(
        "pipeline-config.schema.json",
        &api::pipeline_config_schema_json(),
        "cargo run -p gofer -- service config-schema > docs/pipeline-config.schema.json",
    );
}

/// Routes are declared once, on their handlers; every operation of the document declares a valid access, so the
/// route table the token check reads has every route.
#[test]
fn every_documented_operation_declares_a_valid_access() {
    let doc = serde_json::to_value(api::openapi()).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let access = op["x-gofer-access"].as_str().unwrap_or_else(|| panic!("{method} {path} declares no access"));
            access.parse::<Access>().unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    let table: BTreeSet<(String, String)> =
        api::route_table().into_iter().map(|r| (r.method.to_string(), r.path)).collect();
    assert_eq!(table, operations, "the route table has every documented operation");
    assert!(operations.len() >= 71, "{} operations", operations.len());
}

#[test]
fn only_reads_are_public_and_changes_never_need_only_read() {
    for route in api::route_table() {
        match route.access {
            // The one-time bootstrap is the only public change: it is how the first token comes to be.
            Access::Public if route.path == "/api/tokens/bootstrap" => assert_eq!(route.method, "POST"),
            Access::Public => assert_eq!(route.method, "GET", "{} {} is public", route.method, route.path),
            Access::Requires(permission) => {
                if route.method != "GET" {
                    assert_ne!(
                        permission.action,
                        Action::Read,
                        "{} {} changes state but only asks for read",
                        route.method,
                        route.path
                    );
                }
            }
        }
    }
}

#[test]
fn the_config_schema_describes_tasks_and_edges() {
    let schema = api::pipeline_config_schema();
    let text = schema.to_string();
    assert!(!text.contains("#/components/"), "references point into $defs");
    assert_eq!(schema["required"], serde_json::json!(["id"]), "{schema:#}");
    assert!(schema["$defs"]["config.Task"]["properties"]["depends_on"].is_object(), "{schema:#}");
    assert!(text.contains("Failure"), "the edge conditions are listed");
}

/// Clients learn from the document which errors to expect: every operation that takes input declares 400, every
/// operation that needs a token declares 401 and 403, and every operation has a `default` error response.
#[test]
fn every_operation_declares_the_errors_it_can_give() {
    let doc = serde_json::to_value(api::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let takes_input = op.get("parameters").and_then(|p| p.as_array()).is_some_and(|p| !p.is_empty())
                || op.get("requestBody").is_some();
            if takes_input {
                assert!(responses.contains_key("400"), "{method} {path} takes input but declares no 400");
            }
            if op["x-gofer-access"] != "public" {
                for code in ["401", "403"] {
                    assert!(responses.contains_key(code), "{method} {path} needs a token but declares no {code}");
                }
            }
            assert!(responses.contains_key("default"), "{method} {path} has no default error response");
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} operations");
}
