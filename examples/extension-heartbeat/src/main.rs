//! `heartbeat`: an example extension written with the Gofer extension SDK.
//!
//! A subscription with `-s every=2s` starts a run of its pipeline every two seconds, with the variables
//! `HEARTBEAT_BEAT` (1, 2, ...) and `HEARTBEAT_GREETING` (the operator's `greeting` setting given at install).
//! A request to Gofer's external-events listener at `POST /api/external/<id>` starts one run of every
//! subscription at once. Package it as an image and install it with
//! `gofer extension install heartbeat <image> -s greeting=hello`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gofer_extension::{
    Context, Documentation, Extension, ExtensionParameter, ExternalEventRequest, Gofer, Subscription, SubscriptionKey,
};

/// The shortest heartbeat it accepts.
const MIN_EVERY: Duration = Duration::from_secs(1);

/// Each subscription's period and the task that beats for it.
type Beats = HashMap<SubscriptionKey, (Duration, tokio::task::JoinHandle<()>)>;

struct Heartbeat {
    gofer: Gofer,
    greeting: String,
    beats: Arc<Mutex<Beats>>,
}

fn parse_every(settings: &BTreeMap<String, String>) -> Result<Duration, String> {
    let every = settings.get("every").ok_or("the setting 'every' is required, e.g. -s every=5s")?;
    let duration = if let Some(ms) = every.strip_suffix("ms") {
        ms.parse().map(Duration::from_millis)
    } else if let Some(s) = every.strip_suffix('s') {
        s.parse().map(Duration::from_secs)
    } else {
        return Err(format!("every={every} needs a unit: write it like 5s or 1500ms"));
    }
    .map_err(|_| format!("every={every} is not a number of seconds or milliseconds"))?;
    if duration < MIN_EVERY {
        return Err(format!("every={every} is shorter than the heartbeat's minimum of 1s"));
    }
    Ok(duration)
}

/// The variables of a run the heartbeat starts (beat 0: one asked for from outside).
fn variables(beat: u64, greeting: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("HEARTBEAT_BEAT".to_string(), beat.to_string()),
        ("HEARTBEAT_GREETING".to_string(), greeting.to_string()),
    ])
}

#[gofer_extension::async_trait]
impl Extension for Heartbeat {
    fn documentation(&self) -> Documentation {
        let param = |key: &str, required: bool, documentation: &str| ExtensionParameter {
            key: key.into(),
            required,
            documentation: documentation.into(),
        };
        Documentation {
            body: "Starts a run every `every`; a request to its external-events address starts one run of every \
                   subscription at once."
                .into(),
            config_params: vec![param("greeting", false, "Passed to runs as HEARTBEAT_GREETING.")],
            pipeline_subscription_params: vec![param("every", true, "How often, e.g. 2s or 1500ms; at least 1s.")],
        }
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), String> {
        let every = parse_every(&subscription.settings)?;
        let gofer = self.gofer.clone();
        let key = subscription.key.clone();
        let greeting = self.greeting.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            for beat in 1.. {
                ticks.tick().await;
                match gofer.start_run(&key, variables(beat, &greeting)).await {
                    Ok(run) => tracing::info!(subscription = %key, run, beat, "started a run"),
                    Err(message) => tracing::warn!(subscription = %key, %message, "could not start a run"),
                }
            }
        });
        let previous = self.beats.lock().unwrap_or_else(|p| p.into_inner()).insert(subscription.key, (every, task));
        if let Some((_, task)) = previous {
            task.abort();
        }
        Ok(())
    }

    async fn unsubscribe(&self, key: SubscriptionKey) {
        if let Some((_, task)) = self.beats.lock().unwrap_or_else(|p| p.into_inner()).remove(&key) {
            task.abort();
        }
    }

    async fn external_event(&self, event: ExternalEventRequest) -> Result<String, (u16, String)> {
        if event.body.is_empty() {
            return Err((400, "send a body (any bytes) to make the heartbeat beat".into()));
        }
        let keys: Vec<SubscriptionKey> = self.beats.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let mut started = Vec::new();
        for key in keys {
            match self.gofer.start_run(&key, variables(0, &self.greeting)).await {
                Ok(run) => started.push(format!("{key} run {run}")),
                Err(message) => return Err((502, message)),
            }
        }
        Ok(format!("started {} run(s): {}", started.len(), started.join(", ")))
    }

    async fn debug(&self) -> String {
        let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines: Vec<String> = beats.iter().map(|(key, (every, _))| format!("{key}: every {every:?}")).collect();
        lines.sort();
        format!("greeting: {}\nsubscriptions:\n{}", self.greeting, lines.join("\n"))
    }
}

#[tokio::main]
async fn main() -> Result<(), gofer_extension::Error> {
    gofer_extension::run(|context: Context| Heartbeat {
        gofer: context.gofer,
        greeting: gofer_extension::setting("greeting").unwrap_or_else(|| "hello".into()),
        beats: Arc::default(),
    })
    .await
}
