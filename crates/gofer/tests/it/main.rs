//! End-to-end tests: the real `gofer` binary, the real CLI, the real Docker engine and the `busybox:latest` image
//! (scripts/ensure-docker.sh provides both).

#![allow(clippy::unwrap_used)]

mod ahead;
mod auth;
mod bad_input;
mod browser;
mod crash;
mod deployments;
mod extensions;
mod github;
mod harness;
mod images;
mod kubernetes;
mod local;
mod metrics;
mod nomad;
mod objects;
mod operating;
mod pipelines;
mod postgres;
mod resources;
mod runs;
mod sdks;
mod secrets;
mod server;
mod storage_trouble;
mod triggers;
mod ui;
