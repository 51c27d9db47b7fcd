//! Limits on the free text people give Gofer (names, descriptions, labels), shared with the SDK so that a config
//! is judged the same on both sides.

pub use gofer_api::config::{MAX_DESCRIPTION_LEN as MAX_DESCRIPTION, MAX_NAME_LEN as MAX_NAME};

/// Refuses text longer than `max` characters or holding control characters (descriptions may hold line breaks).
pub fn check(what: &str, value: &str, max: usize) -> crate::Result<()> {
    gofer_api::config::validate_text(what, value, max).map_err(|e| crate::Error::invalid(e.to_string()))
}
