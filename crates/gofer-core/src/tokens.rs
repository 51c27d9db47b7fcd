//! API tokens Gofer makes for its own use: a random secret handed out once, and only its SHA-256 kept.

use sha2::{Digest, Sha256};

/// A new random secret (256 bits, hex).
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("could not make a secret: {e}"))?;
    Ok(hex::encode(bytes))
}

/// The stored form of a token's secret.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Who holds the tokens of a run's tasks (`inject_api_token`); they are deleted together when the run's objects
/// expire.
pub fn run_token_user(namespace_id: &str, pipeline_id: &str, run_id: u64) -> String {
    format!("{}{run_id}", run_token_prefix(namespace_id, pipeline_id))
}

/// What the holders of a pipeline's run tokens start with; the run id follows.
pub fn run_token_prefix(namespace_id: &str, pipeline_id: &str) -> String {
    format!("run:{namespace_id}/{pipeline_id}/")
}

/// The role run tokens carry: read their own pipeline, read and write their own run's objects (enforced by the
/// auth layer, which reads the scope from the token's holder).
pub const RUN_TOKEN_ROLE: &str = "run_task";
