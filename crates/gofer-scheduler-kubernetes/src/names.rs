//! Kubernetes' naming rules, which Gofer's ids do not follow: a pod name is a DNS label (63 lowercase letters,
//! digits and `-`), a label value at most 63 characters that start and end with a letter or digit. Gofer ids may hold
//! capitals and `_`, and a container name joins six of them. Names that do not fit are shortened and made unique by
//! a hash of the whole; the exact values travel in annotations.

use sha2::{Digest, Sha256};

/// The longest DNS label (a pod's or a service's name) and label value.
pub const MAX_LABEL: usize = 63;

/// Ten hex digits of the SHA-256 of `text`: unique enough among one installation's names.
fn short_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))[..10].to_string()
}

/// The pod name for a Gofer container name: the name itself when it is a DNS label already, else a lowercase form
/// (other characters become `-`), cut to fit, with a hash of the original so that `Run_1` and `run-1` differ.
pub fn pod_name(name: &str) -> String {
    let lowered: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let trimmed = lowered.trim_matches('-');
    if trimmed == name && name.len() <= MAX_LABEL {
        return name.to_string();
    }
    let hash = short_hash(name);
    let room = MAX_LABEL - hash.len() - 1;
    let head = trimmed[..trimmed.len().min(room)].trim_end_matches('-');
    if head.is_empty() { format!("g-{hash}") } else { format!("{head}-{hash}") }
}

/// Whether `name` is a DNS label (a namespace's, a pod's or a service's name).
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `value` is a valid label value as it is.
fn is_label_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.is_empty()
        || (value.len() <= MAX_LABEL
            && edge(value.chars().next())
            && edge(value.chars().last())
            && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// A label value standing for `value`: the value itself when valid, else a shortened form with a hash of the
/// original (selectors match on it; the exact value is in the annotation of the same key).
pub fn label_value(value: &str) -> String {
    if is_label_value(value) {
        return value.to_string();
    }
    let hash = short_hash(value);
    let kept: String = value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .collect();
    let room = MAX_LABEL - hash.len() - 1;
    let head = kept[..kept.len().min(room)].trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() { hash } else { format!("{head}-{hash}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_dns_labels_and_distinct() {
        assert_eq!(pod_name("gofer-abc-default-dag-1-build-1"), "gofer-abc-default-dag-1-build-1");
        let long = format!("gofer-{}-default-dag-1-build-1", "a".repeat(64));
        let names = [
            "gofer-abc-Default-dag-1-build-1",
            "gofer-abc-default-dag-1-build_1",
            "gofer-abc-default-dag-1-build-1_",
            "_",
            "gofer-abc-default-dag-1-Build-1",
            long.as_str(),
        ];
        let made: Vec<String> = names.iter().map(|n| pod_name(n)).collect();
        for (name, pod) in names.iter().zip(&made) {
            assert!(is_dns_label(pod), "{name} → {pod}");
        }
        let distinct: std::collections::BTreeSet<&String> = made.iter().collect();
        assert_eq!(distinct.len(), made.len(), "{made:?}");
        assert_eq!(pod_name(&long), pod_name(&long), "stable");
        assert!(made[0].starts_with("gofer-abc-default-dag-1-build-1-"), "readable: {}", made[0]);
    }

    #[test]
    fn label_values_are_valid_and_stand_for_their_value() {
        for fine in ["", "default", "Build_1", "a.b-c", &"x".repeat(63)] {
            assert_eq!(label_value(fine), fine);
        }
        for odd in ["trailing_", "-lead", &"y".repeat(64), "sp ace", "_"] {
            let value = label_value(odd);
            assert!(is_label_value(&value) && !value.is_empty(), "{odd} → {value}");
            assert_ne!(value, odd);
        }
        assert_ne!(label_value(&"y".repeat(64)), label_value(&"y".repeat(65)));
    }
}
