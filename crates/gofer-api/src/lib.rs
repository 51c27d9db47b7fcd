//! The types of Gofer's HTTP API: resources, requests, responses, errors and permissions.
//!
//! The server serializes these and the CLI deserializes the same types, so nothing is copied by hand between them.
//! This crate knows nothing of HTTP frameworks, databases or container engines.

pub mod attach;
pub mod error;
pub mod models;
pub mod permissions;
pub mod protocol;
pub mod requests;

pub use gofer_sdk::config;

/// Milliseconds since the Unix epoch: the unit of every timestamp in the API.
pub fn epoch_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
