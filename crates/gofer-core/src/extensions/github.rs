//! The built-in GitHub extension: webhooks arrive through the external-events listener at
//! `POST /api/external/github`, are verified with HMAC-SHA256 against the operator's webhook secret, and start a
//! run of every subscription whose repository and event filter match, with `GOFER_EXTENSION_GITHUB_*` variables
//! describing the event.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gofer_api::epoch_millis;
use gofer_api::models::{ExtensionKind, Subscription};
use gofer_api::protocol::Documentation;
use gofer_storage::SubscriptionKey;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{Error, Extension, ExternalEvent, ExternalResponse, Fired, Firing, Trigger, only_known, param};

/// The events the extension handles, with the actions GitHub sends for each (empty: the event has no action).
const EVENTS: &[(&str, &[&str])] = &[
    ("push", &[]),
    (
        "pull_request",
        &[
            "assigned",
            "auto_merge_disabled",
            "auto_merge_enabled",
            "closed",
            "converted_to_draft",
            "demilestoned",
            "dequeued",
            "edited",
            "enqueued",
            "labeled",
            "locked",
            "milestoned",
            "opened",
            "ready_for_review",
            "reopened",
            "review_request_removed",
            "review_requested",
            "synchronize",
            "unassigned",
            "unlabeled",
            "unlocked",
        ],
    ),
    ("release", &["created", "deleted", "edited", "prereleased", "published", "released", "unpublished"]),
];

/// Which deliveries a subscription wants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    /// `owner/name`, compared without regard to case as GitHub does.
    repository: String,
    event: String,
    /// Empty: any action.
    actions: Vec<String>,
    /// The settings it was made from (servers sharing their state compare them with the stored ones).
    settings: BTreeMap<String, String>,
}

impl Filter {
    fn parse(settings: &BTreeMap<String, String>) -> Result<Self, String> {
        only_known(GitHub::ID, settings, &["repository", "events"])?;
        let repository = settings
            .get("repository")
            .ok_or("the setting 'repository' is required, for example -s repository=octo-org/hello-world")?;
        let (owner, name) = repository.split_once('/').unwrap_or_default();
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return Err(format!("repository '{repository}' must be written owner/name, e.g. octo-org/hello-world"));
        }
        let filter = settings.get("events").ok_or(
            "the setting 'events' is required: an event and optional actions, e.g. push, \
             pull_request/opened,synchronize or release/published",
        )?;
        let (event, actions) = filter.split_once('/').unwrap_or((filter.as_str(), ""));
        let known: Vec<&str> = EVENTS.iter().map(|(e, _)| *e).collect();
        let Some((_, valid)) = EVENTS.iter().find(|(e, _)| *e == event.trim()) else {
            return Err(format!("event '{event}' is not one the github extension handles ({})", known.join(", ")));
        };
        let actions: Vec<String> =
            actions.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect();
        if valid.is_empty() && !actions.is_empty() {
            return Err(format!("event '{event}' has no actions; write just '{event}'"));
        }
        if let Some(bad) = actions.iter().find(|a| !valid.contains(&a.as_str())) {
            return Err(format!("'{bad}' is not an action of '{event}'; GitHub sends {}", valid.join(", ")));
        }
        Ok(Self {
            repository: repository.to_ascii_lowercase(),
            event: event.trim().into(),
            actions,
            settings: settings.clone(),
        })
    }

    fn matches(&self, event: &str, action: &str, repository: &str) -> bool {
        self.event == event
            && self.repository == repository.to_ascii_lowercase()
            && (self.actions.is_empty() || self.actions.iter().any(|a| a == action))
    }
}

/// The built-in GitHub webhook extension.
pub struct GitHub {
    webhook_secret: String,
    subscriptions: Mutex<HashMap<SubscriptionKey, Filter>>,
}

impl GitHub {
    pub const ID: &'static str = "github";

    pub fn new(webhook_secret: impl Into<String>) -> Self {
        Self { webhook_secret: webhook_secret.into(), subscriptions: Mutex::default() }
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, HashMap<SubscriptionKey, Filter>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks `X-Hub-Signature-256` (`sha256=<hex HMAC of the body>`) in constant time.
    fn verify(&self, event: &ExternalEvent) -> Result<(), ExternalResponse> {
        let Some(header) = event.headers.get("x-hub-signature-256") else {
            return Err(ExternalResponse::new(
                401,
                "missing X-Hub-Signature-256: give the webhook a secret equal to extensions.github.webhook_secret",
            ));
        };
        let signature = header.strip_prefix("sha256=").and_then(|hex| hex::decode(hex.trim()).ok());
        let mut mac = Hmac::<Sha256>::new_from_slice(self.webhook_secret.as_bytes())
            .map_err(|_| ExternalResponse::new(500, "the webhook secret cannot key an HMAC"))?;
        mac.update(&event.body);
        match signature {
            Some(signature) if mac.verify_slice(&signature).is_ok() => Ok(()),
            _ => Err(ExternalResponse::new(
                401,
                "X-Hub-Signature-256 does not match the body: the webhook's secret differs from \
                 extensions.github.webhook_secret",
            )),
        }
    }
}

/// A string at a JSON pointer, if there is one.
fn text(payload: &Value, pointer: &str) -> Option<String> {
    match payload.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `GOFER_EXTENSION_GITHUB_*` variables of a delivery.
fn variables(event: &str, delivery: &str, payload: &Value) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut set = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            vars.insert(format!("GOFER_EXTENSION_GITHUB_{name}"), value);
        }
    };
    set("EVENT", Some(event.into()));
    set("DELIVERY", (!delivery.is_empty()).then(|| delivery.into()));
    set("ACTION", text(payload, "/action"));
    set("REPOSITORY", text(payload, "/repository/full_name"));
    set("SENDER", text(payload, "/sender/login"));
    match event {
        "push" => {
            let git_ref = text(payload, "/ref");
            set("BRANCH", git_ref.as_deref().and_then(|r| r.strip_prefix("refs/heads/")).map(str::to_string));
            set("TAG", git_ref.as_deref().and_then(|r| r.strip_prefix("refs/tags/")).map(str::to_string));
            set("REF", git_ref);
            set("HEAD_SHA", text(payload, "/after"));
            set("AUTHOR", text(payload, "/head_commit/author/username").or_else(|| text(payload, "/pusher/name")));
            set("HEAD_COMMIT_ID", text(payload, "/head_commit/id"));
            set("HEAD_COMMIT_MESSAGE", text(payload, "/head_commit/message"));
            for (who, path) in [("AUTHOR", "author"), ("COMMITTER", "committer")] {
                for field in ["name", "email", "username"] {
                    let name = format!("HEAD_COMMIT_{who}_{}", field.to_ascii_uppercase());
                    set(&name, text(payload, &format!("/head_commit/{path}/{field}")));
                }
            }
        }
        "pull_request" => {
            for (name, pointer) in [
                ("REF", "/pull_request/head/ref"),
                ("HEAD_SHA", "/pull_request/head/sha"),
                ("AUTHOR", "/pull_request/user/login"),
                ("PULLREQUEST_NUMBER", "/pull_request/number"),
                ("PULLREQUEST_HEAD_REF", "/pull_request/head/ref"),
                ("PULLREQUEST_BRANCH", "/pull_request/head/ref"),
                ("PULLREQUEST_HEAD_SHA", "/pull_request/head/sha"),
                ("PULLREQUEST_BASE_REF", "/pull_request/base/ref"),
                ("PULLREQUEST_AUTHOR_USERNAME", "/pull_request/user/login"),
                ("PULLREQUEST_TITLE", "/pull_request/title"),
            ] {
                set(name, text(payload, pointer));
            }
        }
        "release" => {
            set("REF", text(payload, "/release/tag_name").map(|tag| format!("refs/tags/{tag}")));
            for (name, pointer) in [
                ("AUTHOR", "/release/author/login"),
                ("RELEASE_TAG_NAME", "/release/tag_name"),
                ("RELEASE_TARGET_COMMITISH", "/release/target_commitish"),
                ("RELEASE_AUTHOR_LOGIN", "/release/author/login"),
                ("RELEASE_CREATED_AT", "/release/created_at"),
                ("RELEASE_PUBLISHED_AT", "/release/published_at"),
            ] {
                set(name, text(payload, pointer));
            }
        }
        _ => {}
    }
    vars
}

#[async_trait]
impl Extension for GitHub {
    fn id(&self) -> &str {
        Self::ID
    }

    fn kind(&self) -> ExtensionKind {
        ExtensionKind::Builtin
    }

    fn documentation(&self) -> Documentation {
        Documentation {
            body: "Starts runs on GitHub webhooks. Point a repository's (or organization's) webhook at \
                   `<external events address>/api/external/github` with content type application/json and the \
                   secret set in extensions.github.webhook_secret. Handles push, pull_request and release; runs get \
                   GOFER_EXTENSION_GITHUB_EVENT, _ACTION, _REPOSITORY, _REF, _HEAD_SHA, _AUTHOR and more."
                .into(),
            config_params: vec![param(
                "webhook_secret",
                true,
                "Server config extensions.github.webhook_secret (env GOFER_EXTENSIONS__GITHUB__WEBHOOK_SECRET).",
            )],
            pipeline_subscription_params: vec![
                param("repository", true, "owner/name of the repository, e.g. octo-org/hello-world."),
                param(
                    "events",
                    true,
                    "An event and optional actions: push, pull_request/opened,synchronize, release/published.",
                ),
            ],
        }
    }

    fn validate(&self, settings: &BTreeMap<String, String>) -> Result<(), Error> {
        Filter::parse(settings).map(drop).map_err(Error::Settings)
    }

    async fn subscribe(&self, subscription: Subscription, _trigger: Arc<dyn Trigger>) -> Result<(), Error> {
        let filter = Filter::parse(&subscription.settings).map_err(Error::Settings)?;
        self.subscriptions().insert(SubscriptionKey::of(&subscription), filter);
        Ok(())
    }

    async fn unsubscribe(&self, key: &SubscriptionKey) {
        self.subscriptions().remove(key);
    }

    fn active(&self) -> Option<Vec<(SubscriptionKey, BTreeMap<String, String>)>> {
        Some(self.subscriptions().iter().map(|(key, filter)| (key.clone(), filter.settings.clone())).collect())
    }

    async fn external_event(&self, event: ExternalEvent, trigger: Arc<dyn Trigger>) -> ExternalResponse {
        if let Err(refused) = self.verify(&event) {
            return refused;
        }
        let Some(kind) = event.headers.get("x-github-event").cloned() else {
            return ExternalResponse::new(
                400,
                "missing X-GitHub-Event header: this does not look like a GitHub webhook",
            );
        };
        if kind == "ping" {
            return ExternalResponse::new(200, "pong");
        }
        let content_type = event.headers.get("content-type").map(String::as_str).unwrap_or("application/json");
        if !content_type.starts_with("application/json") {
            return ExternalResponse::new(
                415,
                format!(
                    "content type '{content_type}' is not supported: set the webhook's content type to application/json"
                ),
            );
        }
        let payload: Value = match serde_json::from_slice(&event.body) {
            Ok(payload) => payload,
            Err(e) => return ExternalResponse::new(400, format!("the body is not JSON: {e}")),
        };
        if !EVENTS.iter().any(|(e, _)| *e == kind) {
            return ExternalResponse::new(
                200,
                format!("ignored: the github extension does not handle '{kind}' events"),
            );
        }
        let Some(repository) = text(&payload, "/repository/full_name") else {
            return ExternalResponse::new(400, "the payload has no repository.full_name");
        };
        let action = text(&payload, "/action").unwrap_or_default();
        let matching: Vec<SubscriptionKey> = self
            .subscriptions()
            .iter()
            .filter(|(_, filter)| filter.matches(&kind, &action, &repository))
            .map(|(key, _)| key.clone())
            .collect();
        let delivery = event.headers.get("x-github-delivery").cloned().unwrap_or_default();
        let vars = variables(&kind, &delivery, &payload);
        let mut started = Vec::new();
        let mut failed = Vec::new();
        for key in &matching {
            match trigger.fire(key, Firing::Event { at: epoch_millis() }, vars.clone()).await {
                Ok(Fired::Run(run)) => started.push(format!("{}/{} run {run}", key.namespace_id, key.pipeline_id)),
                Ok(Fired::Already { .. }) => {}
                Err(e) => failed.push(format!("{key}: {e}")),
            }
        }
        let mut message = format!("{} run(s) started", started.len());
        if !started.is_empty() {
            message.push_str(&format!(": {}", started.join(", ")));
        }
        if !failed.is_empty() {
            message.push_str(&format!("; not started: {}", failed.join("; ")));
        }
        ExternalResponse::new(200, message)
    }

    async fn debug(&self) -> Result<String, Error> {
        let mut lines: Vec<String> = self
            .subscriptions()
            .iter()
            .map(|(key, f)| {
                let actions = if f.actions.is_empty() { "any action".into() } else { f.actions.join(",") };
                format!("{key}: {} {} ({actions})", f.repository, f.event)
            })
            .collect();
        lines.sort();
        Ok(if lines.is_empty() { "no active subscriptions".into() } else { lines.join("\n") })
    }

    async fn shutdown(&self) {
        self.subscriptions().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(repository: &str, events: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("repository".into(), repository.into()), ("events".into(), events.into())])
    }

    #[test]
    fn filters_parse_and_say_what_is_wrong() {
        let pr = Filter::parse(&settings("Octo-Org/Hello", "pull_request/opened,synchronize")).unwrap();
        assert!(pr.matches("pull_request", "opened", "octo-org/hello"));
        assert!(pr.matches("pull_request", "synchronize", "OCTO-ORG/HELLO"));
        assert!(!pr.matches("pull_request", "closed", "octo-org/hello"));
        assert!(!pr.matches("push", "", "octo-org/hello"));
        assert!(!pr.matches("pull_request", "opened", "octo-org/other"));
        let push = Filter::parse(&settings("a/b", "push")).unwrap();
        assert!(push.matches("push", "", "a/b"));

        let err = |r: &str, e: &str| Filter::parse(&settings(r, e)).unwrap_err();
        assert!(err("nope", "push").contains("must be written owner/name"));
        assert!(err("a/b", "issues").contains("event 'issues' is not one the github extension handles"));
        assert!(err("a/b", "push/opened").contains("has no actions"));
        assert!(err("a/b", "pull_request/open").contains("'open' is not an action of 'pull_request'"));
        assert!(Filter::parse(&BTreeMap::new()).unwrap_err().contains("'repository' is required"));
        let mut extra = settings("a/b", "push");
        extra.insert("branch".into(), "main".into());
        assert!(Filter::parse(&extra).unwrap_err().contains("unknown setting 'branch'"));
    }

    #[test]
    fn signatures_are_checked() {
        let github = GitHub::new("It's a Secret to Everybody");
        // The example from GitHub's documentation on validating webhook deliveries.
        let body = bytes::Bytes::from_static(b"Hello, World!");
        let signed = |signature: &str| ExternalEvent {
            headers: BTreeMap::from([("x-hub-signature-256".into(), signature.into())]),
            body: body.clone(),
        };
        github.verify(&signed("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")).unwrap();
        for bad in ["sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18", "sha256=zz", "md5=1"] {
            assert_eq!(github.verify(&signed(bad)).unwrap_err().status, 401, "{bad}");
        }
        let unsigned = ExternalEvent { headers: BTreeMap::new(), body };
        assert!(github.verify(&unsigned).unwrap_err().message.contains("missing X-Hub-Signature-256"));
    }

    #[test]
    fn push_variables_describe_the_commit() {
        let payload = serde_json::json!({
            "ref": "refs/heads/main",
            "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "repository": { "full_name": "octo-org/hello" },
            "pusher": { "name": "octocat" },
            "sender": { "login": "octocat" },
            "head_commit": {
                "id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                "message": "Fix all the bugs",
                "author": { "name": "Mona", "email": "mona@example.com", "username": "mona" },
                "committer": { "name": "GitHub", "email": "noreply@github.com", "username": "web-flow" }
            }
        });
        let vars = variables("push", "d-1", &payload);
        let get = |k: &str| vars.get(&format!("GOFER_EXTENSION_GITHUB_{k}")).map(String::as_str);
        assert_eq!(get("EVENT"), Some("push"));
        assert_eq!(get("REF"), Some("refs/heads/main"));
        assert_eq!(get("BRANCH"), Some("main"));
        assert_eq!(get("TAG"), None);
        assert_eq!(get("HEAD_SHA"), Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"));
        assert_eq!(get("AUTHOR"), Some("mona"));
        assert_eq!(get("HEAD_COMMIT_COMMITTER_USERNAME"), Some("web-flow"));
        assert_eq!(get("DELIVERY"), Some("d-1"));
        assert_eq!(get("ACTION"), None);
    }
}
