//! API tokens: a random secret handed out once, and only its SHA-256 kept. Gofer makes some for its own use
//! (extensions, run tasks); people make the rest through the API (bootstrap once, then create).

use gofer_api::permissions::{Token, system_roles};
use gofer_api::requests::{CreateTokenRequest, CreatedToken};
use sha2::{Digest, Sha256};

use crate::Gofer;
use crate::error::{Error, Result};

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

/// The longest a token may be made to last: a hundred years.
pub const MAX_EXPIRY_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// A short random id for a token.
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal("make a token id", std::io::Error::other(e)))?;
    Ok(format!("t-{}", hex::encode(bytes)))
}

impl Gofer {
    /// Makes a token and returns its secret, once.
    async fn mint(
        &self,
        user: &str,
        roles: Vec<String>,
        expires_in_seconds: Option<u64>,
        metadata: std::collections::BTreeMap<String, String>,
        bootstrap: bool,
    ) -> Result<CreatedToken> {
        let secret = new_secret().map_err(|e| Error::internal("make a token", std::io::Error::other(e)))?;
        let now = self.clock.now();
        let token = Token {
            id: new_id()?,
            hash: token_hash(&secret),
            user: user.into(),
            roles,
            created: now,
            expires: expires_in_seconds.map_or(0, |s| now.saturating_add(s.saturating_mul(1000))),
            disabled: false,
            metadata,
        };
        if bootstrap {
            self.storage.insert_bootstrap_token(&token).await.map_err(|e| match e {
                gofer_storage::Error::Exists { .. } => Error::conflict(
                    "this Gofer was bootstrapped already; ask an admin for a token (gofer token create)",
                ),
                other => other.into(),
            })?;
        } else {
            self.storage.put_token(&token).await?;
        }
        Ok(CreatedToken { token, secret })
    }

    /// The first admin token of a Gofer: works once.
    pub async fn bootstrap_token(&self) -> Result<CreatedToken> {
        self.mint("bootstrap", vec!["admin".into()], None, Default::default(), true).await
    }

    /// Makes a token for `request.user` with `request.roles`. Nobody hands out more power than they hold: a caller
    /// needs to hold `admin` or every role it grants (development mode's anonymous caller may grant any).
    pub async fn create_token(&self, caller: Option<&Token>, request: CreateTokenRequest) -> Result<CreatedToken> {
        let user = request.user.trim();
        if user.is_empty() {
            return Err(Error::invalid("a token needs the user who holds it, e.g. --user ci-robot"));
        }
        if user.starts_with("run:") || user.starts_with("extension:") || user == "bootstrap" {
            return Err(Error::invalid(format!("user '{user}' is reserved for tokens Gofer makes itself")));
        }
        if request.roles.is_empty() {
            return Err(Error::invalid("a token needs at least one role, e.g. --role read_only"));
        }
        crate::text::check("token user", user, crate::text::MAX_NAME)?;
        if let Some(seconds) = request.expires_in_seconds.filter(|s| *s == 0 || *s > MAX_EXPIRY_SECONDS) {
            return Err(Error::invalid(format!(
                "expires_in_seconds {seconds} is out of range: give 1 to {MAX_EXPIRY_SECONDS} (100 years), or leave it \
                 out for a token that does not expire"
            )));
        }
        if request.metadata.len() > 32 {
            return Err(Error::invalid("a token takes at most 32 metadata entries"));
        }
        for (key, value) in &request.metadata {
            crate::text::check("token metadata key", key, crate::text::MAX_NAME)?;
            crate::text::check(&format!("token metadata '{key}'"), value, crate::text::MAX_NAME)?;
        }
        let builtin = system_roles();
        for role in &request.roles {
            let known = builtin.iter().any(|r| &r.id == role) || self.storage.get_role(role).await.is_ok();
            if !known {
                return Err(Error::invalid(format!(
                    "role '{role}' does not exist; the built-in roles are admin, user and read_only"
                )));
            }
        }
        if let Some(caller) = caller
            && !caller.roles.iter().any(|r| r == "admin")
            && let Some(extra) = request.roles.iter().find(|r| !caller.roles.contains(r))
        {
            return Err(Error::Forbidden {
                message: format!("you may not grant role '{extra}', which your own token does not hold"),
            });
        }
        self.mint(user, request.roles, request.expires_in_seconds, request.metadata, false).await
    }

    pub async fn list_tokens(&self) -> Result<Vec<Token>> {
        Ok(self.storage.list_tokens().await?)
    }

    pub async fn get_token(&self, id: &str) -> Result<Token> {
        Ok(self.storage.get_token(id).await?)
    }

    /// Disables (or enables again) a token; a disabled token gets 401.
    pub async fn set_token_disabled(&self, id: &str, disabled: bool) -> Result<Token> {
        let mut token = self.storage.get_token(id).await?;
        token.disabled = disabled;
        self.storage.put_token(&token).await?;
        Ok(token)
    }

    pub async fn delete_token(&self, id: &str) -> Result<()> {
        Ok(self.storage.delete_token(id).await?)
    }
}
