//! The layering ARCHITECTURE.md describes, checked against every crate's `Cargo.toml`: dependencies point inward,
//! and the core knows no SQL, HTTP server framework or container engine API.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The crates from innermost to outermost: each may depend only on crates before it.
const LAYERS: &[&str] = &[
    "gofer-sdk",
    "gofer-api",
    "gofer-storage",
    "gofer-storage-sqlite",
    "gofer-storage-postgres",
    "gofer-scheduler",
    "gofer-scheduler-docker",
    "gofer-scheduler-kubernetes",
    "gofer-scheduler-nomad",
    "gofer-core",
    "gofer-runtime",
    "gofer-server",
    "gofer-client",
    "gofer-cli",
    "gofer-local",
    "gofer",
];

/// Crates that must not use these libraries (their boundaries are traits).
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("gofer-sdk", &["gofer-api", "tokio", "reqwest", "axum"]),
    ("gofer-api", &["axum", "rusqlite", "bollard", "tokio"]),
    ("gofer-storage", &["rusqlite", "axum", "bollard"]),
    ("gofer-storage-postgres", &["rusqlite", "axum", "bollard", "gofer-core"]),
    ("gofer-scheduler", &["bollard", "axum", "rusqlite", "kube", "k8s-openapi"]),
    ("gofer-scheduler-kubernetes", &["bollard", "rusqlite", "gofer-core", "gofer-storage"]),
    ("gofer-scheduler-nomad", &["rusqlite", "kube", "gofer-core", "gofer-storage"]),
    (
        "gofer-core",
        &[
            "rusqlite",
            "axum",
            "hyper",
            "bollard",
            "kube",
            "k8s-openapi",
            "gofer-storage-sqlite",
            "gofer-scheduler-docker",
            "gofer-scheduler-kubernetes",
            "gofer-scheduler-nomad",
        ],
    ),
    ("gofer-runtime", &["axum", "hyper"]),
    (
        "gofer-cli",
        &["gofer-core", "gofer-runtime", "gofer-server", "gofer-storage", "axum", "rusqlite", "bollard", "utoipa"],
    ),
    ("gofer-local", &["axum", "hyper", "rusqlite", "bollard", "gofer-server"]),
    (
        "gofer-client",
        &["gofer-core", "gofer-runtime", "gofer-server", "gofer-storage", "axum", "rusqlite", "bollard", "tokio"],
    ),
    ("gofer-extension-sdk", &["gofer-core", "gofer-server", "gofer-storage", "gofer-sdk"]),
];

fn crates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The names in a crate's `[dependencies]` table (not dev- or build-dependencies).
fn dependencies(krate: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(crates_dir().join(krate).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut names = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once(['.', '=']) {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn dependencies_point_inward() {
    for (position, krate) in LAYERS.iter().enumerate() {
        for dependency in dependencies(krate).iter().filter(|d| d.starts_with("gofer")) {
            let at = LAYERS.iter().position(|l| l == dependency);
            assert!(
                at.is_some_and(|at| at < position),
                "{krate} depends on {dependency}, which is not an inner layer (see ARCHITECTURE.md)"
            );
        }
    }
}

#[test]
fn boundaries_are_traits_not_libraries() {
    for (krate, forbidden) in FORBIDDEN {
        let dependencies = dependencies(krate);
        assert!(!dependencies.is_empty(), "{krate} has no dependencies? the check reads the wrong file");
        for name in *forbidden {
            assert!(!dependencies.contains(*name), "{krate} must not depend on {name} (see ARCHITECTURE.md)");
        }
    }
}
