//! Extensions start runs: a subscription `(pipeline, extension, label, settings)` asks an extension to trigger the
//! pipeline. Every extension sits behind one trait that mirrors the extension protocol (info, subscribe,
//! unsubscribe, shutdown), so built-in extensions run in-process and container extensions can be driven over
//! HTTP through the same calls. Built in: `interval` and `cron`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gofer_api::epoch_millis;
use gofer_api::models::{Extension as ExtensionInfo, ExtensionKind, ExtensionParameter, Subscription};
use gofer_storage::{Storage, SubscriptionKey};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Starts a run on behalf of a subscription; implemented by the services, handed to extensions.
#[async_trait]
pub trait Trigger: Send + Sync {
    /// Records that the subscription fired at `at`, then starts a run of its pipeline.
    async fn fire(&self, key: &SubscriptionKey, at: u64);
}

/// What Gofer asks of an extension.
#[async_trait]
pub trait Extension: Send + Sync {
    fn id(&self) -> &str;
    fn kind(&self) -> ExtensionKind;
    /// What the extension does, in its own words.
    fn documentation(&self) -> String;
    /// The settings a subscription may give.
    fn subscription_params(&self) -> Vec<ExtensionParameter>;
    /// Checks a subscription's settings; the message says what is wrong and how to fix it.
    fn validate(&self, settings: &BTreeMap<String, String>) -> std::result::Result<(), String>;
    /// Starts triggering for a subscription (also called to restore subscriptions at startup).
    async fn subscribe(&self, subscription: Subscription, trigger: Arc<dyn Trigger>)
    -> std::result::Result<(), String>;
    /// Stops triggering for a subscription; once it returns, the subscription starts no more runs. Unknown
    /// subscriptions are ignored.
    async fn unsubscribe(&self, key: &SubscriptionKey);
    /// Stops everything.
    async fn shutdown(&self);
}

/// Parses durations such as `90s`, `5m`, `1h30m`, `2d` or `250ms`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let invalid = || format!("'{text}' is not a duration; write it like 30s, 5m, 1h30m or 2d");
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        total += scale.checked_mul(u32::try_from(number).map_err(|_| invalid())?).ok_or_else(invalid)?;
        rest = &rest[unit..];
    }
    Ok(total)
}

/// Renders a duration the way `parse_duration` reads it.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = duration.as_secs();
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            text.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if text.is_empty() { "0s".into() } else { text }
}

/// The next tick after a time (epoch milliseconds), if there is one.
type NextTick = Box<dyn Fn(u64) -> Option<u64> + Send + Sync>;

/// One subscription's ticking task.
struct Timer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Timer {
    /// Stops the timer and waits for a tick in progress to finish, so no run starts after this returns.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The ticking subscriptions of a time-based extension.
#[derive(Default)]
struct Timers {
    running: Mutex<HashMap<SubscriptionKey, Timer>>,
}

impl Timers {
    /// Ticks for a subscription. The schedule continues from the last tick fired, so a restart neither repeats
    /// nor skips it; ticks missed while Gofer was down are coalesced into one, now.
    async fn start(&self, subscription: &Subscription, next_tick: NextTick, trigger: Arc<dyn Trigger>) {
        let key = SubscriptionKey::of(subscription);
        self.stop(&key).await;
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        let timer_key = key.clone();
        let last_fired = subscription.last_fired;
        let task = tokio::spawn(async move {
            let key = timer_key;
            let mut next = next_tick(if last_fired == 0 { epoch_millis() } else { last_fired });
            while let Some(at) = next {
                let wait = Duration::from_millis(at.saturating_sub(epoch_millis()));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancelled.cancelled() => return,
                }
                let fired = epoch_millis();
                trigger.fire(&key, fired).await;
                next = next_tick(fired);
            }
        });
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Timer { stop, task });
    }

    async fn stop(&self, key: &SubscriptionKey) {
        let timer = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        if let Some(timer) = timer {
            timer.stop().await;
        }
    }

    async fn stop_all(&self) {
        let timers: Vec<Timer> =
            self.running.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, t)| t).collect();
        for timer in timers {
            timer.stop().await;
        }
    }
}

/// The built-in interval extension: starts a run every `every`, no more often than the operator's minimum.
pub struct Interval {
    min_interval: Duration,
    timers: Timers,
}

impl Interval {
    pub const ID: &'static str = "interval";

    pub fn new(min_interval: Duration) -> Self {
        Self { min_interval, timers: Timers::default() }
    }

    fn every(&self, settings: &BTreeMap<String, String>) -> std::result::Result<Duration, String> {
        let every = settings.get("every").ok_or("the setting 'every' is required, for example -s every=5m")?;
        let every = parse_duration(every)?;
        if every < self.min_interval {
            return Err(format!(
                "every={} is shorter than this server's minimum of {} (extensions.interval.min_interval)",
                format_duration(every),
                format_duration(self.min_interval)
            ));
        }
        if let Some(unknown) = settings.keys().find(|k| k.as_str() != "every") {
            return Err(format!("unknown setting '{unknown}'; the interval extension takes only 'every'"));
        }
        Ok(every)
    }
}

#[async_trait]
impl Extension for Interval {
    fn id(&self) -> &str {
        Self::ID
    }

    fn kind(&self) -> ExtensionKind {
        ExtensionKind::Builtin
    }

    fn documentation(&self) -> String {
        format!(
            "Starts a run of the pipeline every `every` (at least {}). Ticks missed while Gofer was down are run \
             once at startup, however many were missed; a tick never starts two runs.",
            format_duration(self.min_interval)
        )
    }

    fn subscription_params(&self) -> Vec<ExtensionParameter> {
        vec![ExtensionParameter {
            key: "every".into(),
            required: true,
            documentation: "How often to start a run, e.g. 30s, 5m, 1h30m.".into(),
        }]
    }

    fn validate(&self, settings: &BTreeMap<String, String>) -> std::result::Result<(), String> {
        self.every(settings).map(drop)
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        trigger: Arc<dyn Trigger>,
    ) -> std::result::Result<(), String> {
        let every = self.every(&subscription.settings)?.as_millis() as u64;
        self.timers.start(&subscription, Box::new(move |after| Some(after + every)), trigger).await;
        Ok(())
    }

    async fn unsubscribe(&self, key: &SubscriptionKey) {
        self.timers.stop(key).await;
    }

    async fn shutdown(&self) {
        self.timers.stop_all().await;
    }
}

/// A parsed cron subscription: a standard 5-field expression in a time zone.
struct CronSchedule {
    cron: croner::Cron,
    zone: jiff::tz::TimeZone,
}

impl CronSchedule {
    fn parse(settings: &BTreeMap<String, String>) -> std::result::Result<Self, String> {
        let expression = settings
            .get("expression")
            .ok_or("the setting 'expression' is required, for example -s expression='0 3 * * *'")?;
        if expression.split_whitespace().count() != 5 {
            return Err(format!(
                "expression '{expression}' must have 5 fields: minute hour day-of-month month day-of-week"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| format!("expression '{expression}' is not a valid cron expression: {e}"))?;
        let zone_name = settings.get("timezone").map(String::as_str).unwrap_or("UTC");
        let zone = jiff::tz::TimeZone::get(zone_name)
            .map_err(|_| format!("timezone '{zone_name}' is unknown; use an IANA name such as Europe/Berlin"))?;
        if let Some(unknown) = settings.keys().find(|k| !["expression", "timezone"].contains(&k.as_str())) {
            return Err(format!("unknown setting '{unknown}'; the cron extension takes 'expression' and 'timezone'"));
        }
        Ok(Self { cron, zone })
    }

    /// The first matching minute strictly after `after_ms` (epoch milliseconds), in the schedule's time zone.
    fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = jiff::Timestamp::from_millisecond(i64::try_from(after_ms).ok()?).ok()?.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp().as_millisecond()).ok()
    }
}

/// The built-in cron extension: starts a run at the minutes a 5-field cron expression names, in a time zone.
#[derive(Default)]
pub struct Cron {
    timers: Timers,
}

impl Cron {
    pub const ID: &'static str = "cron";
}

#[async_trait]
impl Extension for Cron {
    fn id(&self) -> &str {
        Self::ID
    }

    fn kind(&self) -> ExtensionKind {
        ExtensionKind::Builtin
    }

    fn documentation(&self) -> String {
        "Starts a run at the times a standard 5-field cron expression names (minute hour day-of-month month \
         day-of-week), in the given time zone (UTC by default). Ticks missed while Gofer was down are run once at \
         startup; a tick never starts two runs."
            .into()
    }

    fn subscription_params(&self) -> Vec<ExtensionParameter> {
        vec![
            ExtensionParameter {
                key: "expression".into(),
                required: true,
                documentation: "A 5-field cron expression, e.g. '0 3 * * *' (03:00 every day).".into(),
            },
            ExtensionParameter {
                key: "timezone".into(),
                required: false,
                documentation: "An IANA time zone such as Europe/Berlin; UTC when not given.".into(),
            },
        ]
    }

    fn validate(&self, settings: &BTreeMap<String, String>) -> std::result::Result<(), String> {
        CronSchedule::parse(settings).map(drop)
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        trigger: Arc<dyn Trigger>,
    ) -> std::result::Result<(), String> {
        let schedule = CronSchedule::parse(&subscription.settings)?;
        self.timers.start(&subscription, Box::new(move |after| schedule.next_after(after)), trigger).await;
        Ok(())
    }

    async fn unsubscribe(&self, key: &SubscriptionKey) {
        self.timers.stop(key).await;
    }

    async fn shutdown(&self) {
        self.timers.stop_all().await;
    }
}

/// The installed extensions, their switches and their subscriptions' timers.
#[derive(Clone)]
pub struct Extensions {
    storage: Arc<dyn Storage>,
    installed: Arc<BTreeMap<String, Arc<dyn Extension>>>,
}

impl Extensions {
    pub fn new(storage: Arc<dyn Storage>, installed: Vec<Arc<dyn Extension>>) -> Self {
        let installed = installed.into_iter().map(|e| (e.id().to_string(), e)).collect();
        Self { storage, installed: Arc::new(installed) }
    }

    pub fn get(&self, id: &str) -> Result<Arc<dyn Extension>> {
        self.installed.get(id).cloned().ok_or_else(|| Error::NotFound {
            what: format!(
                "extension '{id}' (installed: {})",
                self.installed.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    pub async fn is_enabled(&self, id: &str) -> Result<bool> {
        Ok(self.storage.get_extension_enabled(id).await?.unwrap_or(true))
    }

    pub async fn describe(&self, extension: &dyn Extension) -> Result<ExtensionInfo> {
        Ok(ExtensionInfo {
            id: extension.id().to_string(),
            kind: extension.kind(),
            enabled: self.is_enabled(extension.id()).await?,
            documentation: extension.documentation(),
            subscription_params: extension.subscription_params(),
        })
    }

    pub async fn list(&self) -> Result<Vec<ExtensionInfo>> {
        let mut all = Vec::with_capacity(self.installed.len());
        for extension in self.installed.values() {
            all.push(self.describe(extension.as_ref()).await?);
        }
        Ok(all)
    }

    /// Starts triggering every enabled subscription of `extension` (all extensions when `None`).
    pub async fn restore(&self, extension: Option<&str>, trigger: Arc<dyn Trigger>) -> Result<()> {
        for (id, ext) in self.installed.iter() {
            if extension.is_some_and(|e| e != id) || !self.is_enabled(id).await? {
                continue;
            }
            for subscription in self.storage.list_extension_subscriptions(id).await? {
                if !subscription.enabled {
                    continue;
                }
                let key = SubscriptionKey::of(&subscription);
                if let Err(message) = ext.subscribe(subscription, trigger.clone()).await {
                    tracing::warn!(%key, %message, "could not restore a subscription");
                }
            }
        }
        Ok(())
    }

    /// Stops triggering every subscription of an extension.
    pub async fn stop_all(&self, extension: &str) -> Result<()> {
        let ext = self.get(extension)?;
        for subscription in self.storage.list_extension_subscriptions(extension).await? {
            ext.unsubscribe(&SubscriptionKey::of(&subscription)).await;
        }
        Ok(())
    }

    pub async fn shutdown(&self) {
        for extension in self.installed.values() {
            extension.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, secs) in [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172_800), ("1m1s", 61)] {
            assert_eq!(parse_duration(text).unwrap(), Duration::from_secs(secs), "{text}");
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
        }
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "5", "m", "5x", "1.5s", "-1s", "99999999999h"] {
            assert!(parse_duration(bad).unwrap_err().contains("is not a duration"), "{bad}");
        }
    }

    fn cron(expression: &str, zone: Option<&str>) -> std::result::Result<CronSchedule, String> {
        let mut settings = BTreeMap::from([("expression".to_string(), expression.to_string())]);
        if let Some(zone) = zone {
            settings.insert("timezone".into(), zone.into());
        }
        CronSchedule::parse(&settings)
    }

    fn millis(text: &str) -> u64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
    }

    #[test]
    fn cron_ticks_follow_the_expression_in_its_time_zone() {
        let daily = cron("0 3 * * *", Some("Europe/Berlin")).unwrap();
        // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
        assert_eq!(daily.next_after(millis("2026-01-10T12:00:00Z")), Some(millis("2026-01-11T02:00:00Z")));
        assert_eq!(daily.next_after(millis("2026-07-10T12:00:00Z")), Some(millis("2026-07-11T01:00:00Z")));
        let quarter = cron("*/15 * * * *", None).unwrap();
        assert_eq!(quarter.next_after(millis("2026-03-01T10:07:30Z")), Some(millis("2026-03-01T10:15:00Z")));
        assert_eq!(
            quarter.next_after(millis("2026-03-01T10:15:00Z")),
            Some(millis("2026-03-01T10:30:00Z")),
            "strictly after"
        );
        let weekdays = cron("30 9 * * 1-5", None).unwrap();
        // 2026-11-28 is a Saturday: the next weekday 09:30 is Monday the 30th.
        assert_eq!(weekdays.next_after(millis("2026-11-28T10:00:00Z")), Some(millis("2026-11-30T09:30:00Z")));
    }

    #[test]
    fn bad_cron_settings_say_what_is_wrong() {
        assert!(cron("* * * *", None).err().unwrap().contains("must have 5 fields"));
        assert!(cron("0 0 * * * *", None).err().unwrap().contains("must have 5 fields"));
        assert!(cron("61 * * * *", None).err().unwrap().contains("not a valid cron expression"));
        assert!(cron("0 3 * * *", Some("Mars/Olympus")).err().unwrap().contains("timezone 'Mars/Olympus' is unknown"));
        assert!(CronSchedule::parse(&BTreeMap::new()).err().unwrap().contains("'expression' is required"));
    }

    #[test]
    fn interval_settings_are_checked_against_the_minimum() {
        let interval = Interval::new(Duration::from_secs(60));
        let settings = |every: &str| BTreeMap::from([("every".to_string(), every.to_string())]);
        interval.validate(&settings("5m")).unwrap();
        let err = interval.validate(&settings("10s")).unwrap_err();
        assert!(err.contains("shorter than this server's minimum of 1m"), "{err}");
        assert!(interval.validate(&BTreeMap::new()).unwrap_err().contains("'every' is required"));
        let mut extra = settings("5m");
        extra.insert("cron".into(), "x".into());
        assert!(interval.validate(&extra).unwrap_err().contains("unknown setting 'cron'"));
    }
}
