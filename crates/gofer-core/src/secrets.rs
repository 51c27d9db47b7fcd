//! The secret store: pipeline secrets and global secrets, sealed with AES-256-GCM before they reach storage.
//!
//! Each value gets a fresh random 96-bit nonce (stored in front of the ciphertext) and is bound to where it lives
//! (scope and key, as associated data), so a sealed value copied to another row does not open. A known value
//! sealed with the key (the key check) lets Gofer refuse to start with the wrong key instead of failing later on
//! every secret. Values never appear in logs; the API returns one only when asked with `include_secret`.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use gofer_api::config::validate_identifier;
use gofer_api::epoch_millis;
use gofer_api::models::Secret;
pub use gofer_api::permissions::pattern_matches;
use gofer_api::permissions::validate_pattern;
use gofer_storage::{SealedSecret, SecretScope, Storage};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const NONCE_LEN: usize = 12;
const KEY_CHECK: &[u8] = b"gofer secret key check v1";

/// A 256-bit secret key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(redacted)")
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::internal("make a secret key", std::io::Error::other(e)))?;
        Ok(Self(key))
    }

    /// Reads a key written as base64 (what `openssl rand -base64 32` prints).
    pub fn from_base64(text: &str) -> std::result::Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("the secret key is not base64 ({e}); make one with `openssl rand -base64 32`"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!("the secret key is {} bytes; it must be 32 (`openssl rand -base64 32`)", bytes.len())
        })?;
        Ok(Self(key))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

/// Seals and opens values with one key.
#[derive(Clone)]
struct Cipher(Arc<Aes256Gcm>);

impl Cipher {
    fn new(key: &SecretKey) -> Self {
        Self(Arc::new(Aes256Gcm::new(&key.0.into())))
    }

    fn seal(&self, context: &str, value: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::internal("make a nonce", std::io::Error::other(e)))?;
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: value, aad: context.as_bytes() })
            .map_err(|_| Error::internal("seal a secret", std::io::Error::other("encryption failed")))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    /// None when the key (or the place the value was sealed for) is not the right one.
    fn open(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.0.decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() }).ok()
    }
}

/// What a sealed value is bound to.
fn context(scope: &SecretScope, key: &str) -> String {
    match scope {
        SecretScope::Pipeline { namespace_id, pipeline_id } => format!("pipeline/{namespace_id}/{pipeline_id}/{key}"),
        SecretScope::Global => format!("global/{key}"),
    }
}

fn metadata(secret: &SealedSecret, value: Option<String>) -> Secret {
    Secret {
        key: secret.key.clone(),
        namespaces: secret.namespaces.clone(),
        created: secret.created,
        modified: secret.modified,
        value,
    }
}

pub use gofer_api::config::Reference;

/// Why a task cannot have a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    Missing,
    /// A global secret whose patterns do not match the namespace.
    NotAllowed,
}

/// The secret store. Cheap to clone.
#[derive(Clone)]
pub struct Secrets {
    storage: Arc<dyn Storage>,
    cipher: Cipher,
    /// Keys the fingerprints of registry passwords, so equal passwords are recognised without storing a guessable
    /// hash of them.
    fingerprint_key: Arc<[u8; 32]>,
    max_value_bytes: usize,
}

/// Where a registry password of a pipeline config is sealed: a pipeline secret under a key no user key can take
/// (user keys are identifiers, without `:`), never listed.
const REGISTRY_PREFIX: &str = "registry:";

/// What a config's `registry_auth.pass` holds once its password is sealed: `sealed{{<task>:<fingerprint>}}`.
const SEALED_KIND: &str = "sealed";

/// The sealed-password marker of a registry password, if `pass` is one: its secret key.
pub fn sealed_registry_key(pass: &str) -> Option<String> {
    let inner = pass.trim().strip_prefix(SEALED_KIND)?.strip_prefix("{{")?.strip_suffix("}}")?;
    let (task, fingerprint) = inner.split_once(':')?;
    let valid = validate_identifier("task id", task).is_ok()
        && fingerprint.len() == 32
        && fingerprint.chars().all(|c| c.is_ascii_hexdigit());
    valid.then(|| format!("{REGISTRY_PREFIX}{task}:{fingerprint}"))
}

impl Secrets {
    /// Opens the store with `key`. The first time, the key check is stored; after that a different key is
    /// refused, so secrets never become silently unreadable.
    pub async fn open(storage: Arc<dyn Storage>, key: &SecretKey, max_value_bytes: usize) -> Result<Self> {
        let cipher = Cipher::new(key);
        match storage.get_secret_key_check().await? {
            Some(sealed) => {
                if cipher.open("key-check", &sealed).as_deref() != Some(KEY_CHECK) {
                    return Err(Error::invalid(
                        "the configured secret key is not the one the stored secrets were sealed with; start with \
                         the right key (secrets.key or secrets.key_file; servers sharing one database all need the \
                         same key), or rotate keys with `gofer service rotate-secret-key` using the old one",
                    ));
                }
            }
            None => storage.set_secret_key_check(&cipher.seal("key-check", KEY_CHECK)?).await?,
        }
        let fingerprint_key =
            Arc::new(Sha256::new().chain_update(b"gofer fingerprint v1").chain_update(key.0).finalize().into());
        Ok(Self { storage, cipher, fingerprint_key, max_value_bytes })
    }

    /// Seals a registry password of a pipeline's task as an unlisted pipeline secret and returns what the stored
    /// config holds instead: `sealed{{<task>:<fingerprint>}}`. The same password for the same task gives the same
    /// marker, so registering an unchanged config stays a no-op.
    pub async fn seal_registry_password(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        task_id: &str,
        password: &str,
    ) -> Result<(String, SealedSecret)> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.fingerprint_key.as_slice())
            .map_err(|e| Error::internal("fingerprint a password", std::io::Error::other(e.to_string())))?;
        mac.update(format!("{namespace_id}/{pipeline_id}/{task_id}\0{password}").as_bytes());
        let fingerprint = hex::encode(&mac.finalize().into_bytes()[..16]);
        let key = format!("{REGISTRY_PREFIX}{task_id}:{fingerprint}");
        let scope = SecretScope::Pipeline { namespace_id: namespace_id.into(), pipeline_id: pipeline_id.into() };
        let now = epoch_millis();
        let sealed = self.cipher.seal(&context(&scope, &key), password.as_bytes())?;
        let secret = SealedSecret { scope, key, sealed, namespaces: Vec::new(), created: now, modified: now };
        Ok((format!("{SEALED_KIND}{{{{{task_id}:{fingerprint}}}}}"), secret))
    }

    /// Seals a value Gofer keeps for itself in the shared store (a container extension's bearer secret), bound to
    /// `context` so it opens nowhere else.
    pub fn seal_internal(&self, context: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.cipher.seal(&format!("internal:{context}"), value)
    }

    /// Opens what [`Secrets::seal_internal`] sealed under the same `context`.
    pub fn open_internal(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.cipher.open(&format!("internal:{context}"), sealed)
    }

    /// Stores what [`Secrets::seal_registry_password`] sealed (once the pipeline exists).
    pub async fn store_sealed(&self, secret: &SealedSecret) -> Result<()> {
        Ok(self.storage.put_secret(secret).await?)
    }

    /// Whether a sealed registry password exists for `marker` in the pipeline.
    pub async fn has_registry_password(&self, namespace_id: &str, pipeline_id: &str, marker: &str) -> Result<bool> {
        let Some(key) = sealed_registry_key(marker) else { return Ok(false) };
        match self.for_pipeline(namespace_id, pipeline_id, &key).await? {
            Ok(_) => Ok(true),
            Err(_) => Ok(false),
        }
    }

    /// Re-seals every secret with `new` in one transaction; returns how many there were. `old` must be the key
    /// they are sealed with now.
    pub async fn rotate(storage: Arc<dyn Storage>, old: &SecretKey, new: &SecretKey) -> Result<usize> {
        let current = Self::open(storage.clone(), old, usize::MAX).await?;
        let next = Cipher::new(new);
        let mut secrets = storage.all_secrets().await?;
        for secret in &mut secrets {
            let context = context(&secret.scope, &secret.key);
            let value = current.cipher.open(&context, &secret.sealed).ok_or_else(|| {
                Error::invalid(format!("{} secret '{}' does not open with the old key", secret.scope, secret.key))
            })?;
            secret.sealed = next.seal(&context, &value)?;
        }
        storage.reseal_secrets(&secrets, &next.seal("key-check", KEY_CHECK)?).await?;
        Ok(secrets.len())
    }

    fn open_value(&self, secret: &SealedSecret) -> Result<String> {
        let bytes = self.cipher.open(&context(&secret.scope, &secret.key), &secret.sealed).ok_or_else(|| {
            Error::internal(
                format!("open {} secret '{}'", secret.scope, secret.key),
                std::io::Error::other("it does not open with the current key"),
            )
        })?;
        String::from_utf8(bytes).map_err(|e| Error::internal("read a secret", e))
    }

    /// Stores a secret (replacing its value if the key exists).
    pub async fn put(&self, scope: SecretScope, key: &str, value: &str, namespaces: Vec<String>) -> Result<Secret> {
        validate_identifier("secret key", key).map_err(|e| Error::invalid(e.to_string()))?;
        if value.len() > self.max_value_bytes {
            return Err(Error::TooLarge {
                message: format!(
                    "secret '{key}' is {} bytes; this server takes at most {} (secrets.max_value_bytes)",
                    value.len(),
                    self.max_value_bytes
                ),
            });
        }
        if value.contains('\0') {
            return Err(Error::invalid(format!(
                "secret '{key}' contains a NUL byte, which no environment variable can"
            )));
        }
        match scope {
            SecretScope::Global => {
                if namespaces.is_empty() {
                    return Err(Error::invalid(format!(
                        "global secret '{key}' needs the namespaces that may use it, e.g. --namespaces 'team-*'"
                    )));
                }
                for pattern in &namespaces {
                    validate_pattern("namespace", pattern).map_err(Error::invalid)?;
                }
            }
            SecretScope::Pipeline { .. } if !namespaces.is_empty() => {
                return Err(Error::invalid("namespace patterns are for global secrets only"));
            }
            SecretScope::Pipeline { .. } => {}
        }
        let now = epoch_millis();
        let sealed = self.cipher.seal(&context(&scope, key), value.as_bytes())?;
        let secret = SealedSecret { scope, key: key.into(), sealed, namespaces, created: now, modified: now };
        self.storage.put_secret(&secret).await?;
        let stored = self.storage.get_secret(&secret.scope, key).await?;
        Ok(metadata(&stored, None))
    }

    /// A secret's metadata; with `include_value`, its value too.
    pub async fn get(&self, scope: &SecretScope, key: &str, include_value: bool) -> Result<Secret> {
        validate_identifier("secret key", key).map_err(|e| Error::invalid(e.to_string()))?;
        let secret = self.storage.get_secret(scope, key).await?;
        let value = if include_value { Some(self.open_value(&secret)?) } else { None };
        Ok(metadata(&secret, value))
    }

    /// The secrets people stored (sealed registry passwords of configs are not listed).
    pub async fn list(&self, scope: &SecretScope) -> Result<Vec<Secret>> {
        let all = self.storage.list_secrets(scope).await?;
        Ok(all.iter().filter(|s| !s.key.starts_with(REGISTRY_PREFIX)).map(|s| metadata(s, None)).collect())
    }

    pub async fn delete(&self, scope: &SecretScope, key: &str) -> Result<()> {
        validate_identifier("secret key", key).map_err(|e| Error::invalid(e.to_string()))?;
        Ok(self.storage.delete_secret(scope, key).await?)
    }

    /// The value of a pipeline secret for a task of that pipeline.
    pub async fn for_pipeline(
        &self,
        namespace_id: &str,
        pipeline_id: &str,
        key: &str,
    ) -> Result<std::result::Result<String, Unavailable>> {
        let scope = SecretScope::Pipeline { namespace_id: namespace_id.into(), pipeline_id: pipeline_id.into() };
        match self.storage.get_secret(&scope, key).await {
            Ok(secret) => Ok(Ok(self.open_value(&secret)?)),
            Err(gofer_storage::Error::NotFound { .. }) => Ok(Err(Unavailable::Missing)),
            Err(e) => Err(e.into()),
        }
    }

    /// The value of a global secret for a task in `namespace_id`, if its patterns let that namespace use it.
    pub async fn for_namespace(
        &self,
        namespace_id: &str,
        key: &str,
    ) -> Result<std::result::Result<String, Unavailable>> {
        match self.storage.get_secret(&SecretScope::Global, key).await {
            Ok(secret) if secret.namespaces.iter().any(|p| pattern_matches(p, namespace_id)) => {
                Ok(Ok(self.open_value(&secret)?))
            }
            Ok(_) => Ok(Err(Unavailable::NotAllowed)),
            Err(gofer_storage::Error::NotFound { .. }) => Ok(Err(Unavailable::Missing)),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_place() {
        let key = SecretKey::generate().unwrap();
        let cipher = Cipher::new(&key);
        let a = cipher.seal("pipeline/ns/p/A", b"hunter2").unwrap();
        let b = cipher.seal("pipeline/ns/p/A", b"hunter2").unwrap();
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.windows(7).any(|w| w == b"hunter2"), "not in plain text");
        assert_eq!(cipher.open("pipeline/ns/p/A", &a).as_deref(), Some(&b"hunter2"[..]));
        assert_eq!(cipher.open("pipeline/ns/p/B", &a), None, "bound to its place");
        assert_eq!(Cipher::new(&SecretKey::generate().unwrap()).open("pipeline/ns/p/A", &a), None);
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(cipher.open("pipeline/ns/p/A", &tampered), None, "authenticated");
    }

    #[test]
    fn keys_are_base64_of_32_bytes() {
        let key = SecretKey::generate().unwrap();
        assert_eq!(SecretKey::from_base64(&key.to_base64()).unwrap().0, key.0);
        assert!(SecretKey::from_base64("c2hvcnQ=").unwrap_err().contains("it must be 32"));
        assert!(SecretKey::from_base64("not base64!").unwrap_err().contains("not base64"));
        assert_eq!(format!("{key:?}"), "SecretKey(redacted)");
    }

    #[test]
    fn namespace_patterns_match_whole_ids() {
        assert!(pattern_matches("team-*", "team-a"));
        assert!(pattern_matches("team-*", "team-"));
        assert!(!pattern_matches("team-*", "my-team-a"), "anchored at the start");
        assert!(!pattern_matches("prod", "production"), "anchored at the end");
        assert!(pattern_matches("prod", "prod"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("env-?", "env-1"));
        assert!(!pattern_matches("env-?", "env-12"));
        assert!(validate_pattern("namespace", "team-*").is_ok());
        assert!(validate_pattern("namespace", "team/.*").is_err());
        assert!(validate_pattern("namespace", "").is_err());
    }
}
