//! The shared test vectors (`sdk/testdata/vectors.json`): configs that the Rust SDK and the Go SDK (`sdk/go`) must
//! judge alike — the same ones valid, the same message for each invalid one — and write out as the same bytes.
//! `GOFER_UPDATE_VECTORS=1 cargo test -p gofer-sdk --test vectors` records the Rust SDK's verdicts after a deliberate
//! change; the Go SDK's test (`go test ./...` in sdk/go) is then held to them.

#![allow(clippy::unwrap_used)]

use gofer_sdk::config::Pipeline;
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/testdata/vectors.json");

/// What the Rust SDK makes of one vector: its error, or the config written out.
fn verdict(config: &Value) -> (Value, Value) {
    let pipeline: Pipeline = serde_json::from_value(config.clone()).unwrap_or_else(|e| panic!("{e}: {config}"));
    match pipeline.validate() {
        Ok(()) => (Value::Null, Value::String(serde_json::to_string(&pipeline).unwrap())),
        Err(e) => (Value::String(e.to_string()), Value::Null),
    }
}

#[test]
fn the_shared_vectors_are_judged_as_recorded() {
    let text = std::fs::read_to_string(VECTORS).unwrap();
    let mut vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    if std::env::var_os("GOFER_UPDATE_VECTORS").is_some() {
        for vector in &mut vectors {
            let (error, json) = verdict(&vector["config"]);
            vector["error"] = error;
            vector["json"] = json;
        }
        std::fs::write(VECTORS, serde_json::to_string_pretty(&vectors).unwrap() + "\n").unwrap();
        return;
    }
    let (mut valid, mut invalid) = (0, 0);
    for vector in &vectors {
        let (error, json) = verdict(&vector["config"]);
        assert_eq!((&error, &json), (&vector["error"], &vector["json"]), "vector '{}'", vector["name"]);
        if error.is_null() {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(valid >= 5 && invalid >= 40, "{valid} valid and {invalid} invalid vectors");
}

#[test]
fn what_the_rust_sdk_writes_matches_the_published_schema_shape() {
    // Every valid vector's output reads back as the same config (nothing lost or renamed on the way).
    let vectors: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    for vector in vectors.iter().filter(|v| v["error"].is_null()) {
        let written = vector["json"].as_str().unwrap();
        let again: Pipeline = serde_json::from_str(written).unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), written, "vector '{}'", vector["name"]);
    }
}
