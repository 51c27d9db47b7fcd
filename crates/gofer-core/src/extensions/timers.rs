//! The time-based built-in extensions: `interval` and `cron`. Each subscription gets a timer task that fires at
//! its next tick; the schedule continues from the last tick fired, so restarts neither repeat nor skip one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gofer_api::models::{ExtensionKind, Subscription};
use gofer_api::protocol::Documentation;
use gofer_storage::SubscriptionKey;
use tokio_util::sync::CancellationToken;

use super::{Error, Extension, Fired, Firing, Trigger, format_duration, only_known, param, parse_duration};
use crate::background::Background;
use crate::clock::Clock;

/// The next tick after a time (epoch milliseconds), if there is one.
pub type NextTick = Box<dyn Fn(u64) -> Option<u64> + Send + Sync>;

/// One subscription's ticking task.
struct Timer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// The next tick (epoch milliseconds), 0 when there is none.
    next: Arc<AtomicU64>,
    /// The settings it ticks by.
    settings: BTreeMap<String, String>,
}

impl Timer {
    /// Stops the timer and waits for a tick in progress to finish, so no run starts after this returns.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The ticking subscriptions of a time-based extension.
struct Timers {
    running: Mutex<HashMap<SubscriptionKey, Timer>>,
    /// Where the timer tasks run.
    background: Background,
    clock: Arc<dyn Clock>,
}

impl Timers {
    /// Ticks for a subscription. The schedule continues from the last tick recorded, so a restart neither repeats
    /// nor skips one; ticks missed while Gofer was down are coalesced into one (the latest), fired at once. Each tick
    /// is recorded with compare-and-set, so of several servers firing it, one starts the run.
    async fn start(&self, subscription: &Subscription, next_tick: NextTick, trigger: Arc<dyn Trigger>) {
        let key = SubscriptionKey::of(subscription);
        self.stop(&key).await;
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        let timer_key = key.clone();
        let mut last = subscription.last_fired;
        // The schedule starts when the subscription does, not when its task first runs.
        let now = self.clock.now();
        let mut next = if last == 0 { next_tick(now) } else { due(&next_tick, last, now) };
        let next_at = Arc::new(AtomicU64::new(next.unwrap_or(0)));
        let shown = next_at.clone();
        let clock = self.clock.clone();
        let task = self.background.spawn(async move {
            let key = timer_key;
            while let Some(at) = next {
                shown.store(at, Ordering::Relaxed);
                tokio::select! {
                    () = clock.sleep_until(at) => {}
                    () = cancelled.cancelled() => return,
                }
                // Woken late (a suspended machine, a busy one): the ticks passed meanwhile become one, the latest.
                let at = due(&next_tick, last, clock.now()).unwrap_or(at);
                last = match trigger.fire(&key, Firing::Tick { previous: last, at }, BTreeMap::new()).await {
                    Ok(Fired::Run(_)) => at,
                    Ok(Fired::Already { last_fired }) => last_fired,
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "a tick started no run");
                        at
                    }
                };
                next = due(&next_tick, last, clock.now());
            }
            shown.store(0, Ordering::Relaxed);
        });
        let settings = subscription.settings.clone();
        let timer = Timer { stop, task, next: next_at, settings };
        // Two starts of one subscription at once (an API call and a reconcile): the one replaced is stopped too.
        let replaced = self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(key, timer);
        if let Some(replaced) = replaced {
            replaced.stop().await;
        }
    }

    async fn stop(&self, key: &SubscriptionKey) {
        let timer = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        if let Some(timer) = timer {
            timer.stop().await;
        }
    }

    /// The next tick of a subscription, if it has one.
    fn next(&self, key: &SubscriptionKey) -> Option<u64> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(key).map(|timer| timer.next.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }

    /// The subscriptions ticking here, with their settings.
    fn active(&self) -> Vec<(SubscriptionKey, BTreeMap<String, String>)> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.iter().map(|(key, timer)| (key.clone(), timer.settings.clone())).collect()
    }

    /// One line per subscription with its next tick, for `gofer extension debug`.
    fn describe(&self) -> String {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines: Vec<String> = running
            .iter()
            .map(|(key, timer)| match timer.next.load(Ordering::Relaxed) {
                0 => format!("{key}: no further tick"),
                at => format!(
                    "{key}: next tick in {}",
                    format_duration(Duration::from_millis(at.saturating_sub(self.clock.now())))
                ),
            })
            .collect();
        lines.sort();
        if lines.is_empty() { "no active subscriptions".into() } else { lines.join("\n") }
    }

    async fn stop_all(&self) {
        let timers: Vec<Timer> =
            self.running.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, t)| t).collect();
        for timer in timers {
            timer.stop().await;
        }
    }
}

/// The tick to fire next after the one at `last`: the next one, or when several passed already (Gofer was down),
/// the latest of those, so that missed ticks become one run. Several servers that recorded the same `last` compute
/// the same tick.
fn due(next_tick: &NextTick, last: u64, now: u64) -> Option<u64> {
    /// Ticks skipped one by one at most, before the schedule starts again from now.
    const MAX_SKIPPED: u32 = 100_000;
    let mut tick = next_tick(last)?;
    for _ in 0..MAX_SKIPPED {
        match next_tick(tick) {
            Some(following) if following <= now => tick = following,
            _ => return Some(tick),
        }
    }
    Some(now)
}

/// What sets a time-based extension apart: its id, its documentation, and the ticks a subscription's settings
/// name. [`Timed`] does the rest.
pub trait Schedule: Send + Sync + 'static {
    const ID: &'static str;
    fn documentation(&self) -> Documentation;
    /// The next tick after a time, from a subscription's settings; refuses bad settings with a message.
    fn next_tick(&self, settings: &BTreeMap<String, String>) -> std::result::Result<NextTick, String>;
}

/// A built-in extension that fires each subscription on the ticks its [`Schedule`] names.
pub struct Timed<S> {
    schedule: S,
    timers: Timers,
}

/// The built-in interval extension: starts a run every `every`, no more often than the operator's minimum.
pub type Interval = Timed<Every>;
/// The built-in cron extension: starts a run at the minutes a 5-field cron expression names, in a time zone.
pub type Cron = Timed<CronExpressions>;

impl<S: Schedule> Timed<S> {
    pub const ID: &'static str = S::ID;

    /// The extension, its timers running in `background` on `clock`.
    pub fn with(schedule: S, background: Background, clock: Arc<dyn Clock>) -> Self {
        Self { schedule, timers: Timers { running: Mutex::default(), background, clock } }
    }
}

impl Interval {
    pub fn new(min_interval: Duration, background: Background, clock: Arc<dyn Clock>) -> Self {
        Self::with(Every { min_interval }, background, clock)
    }
}

impl Cron {
    pub fn new(background: Background, clock: Arc<dyn Clock>) -> Self {
        Self::with(CronExpressions, background, clock)
    }
}

#[async_trait]
impl<S: Schedule> Extension for Timed<S> {
    fn id(&self) -> &str {
        S::ID
    }

    fn kind(&self) -> ExtensionKind {
        ExtensionKind::Builtin
    }

    fn documentation(&self) -> Documentation {
        self.schedule.documentation()
    }

    fn validate(&self, settings: &BTreeMap<String, String>) -> std::result::Result<(), Error> {
        self.schedule.next_tick(settings).map(drop).map_err(Error::Settings)
    }

    async fn subscribe(&self, subscription: Subscription, trigger: Arc<dyn Trigger>) -> std::result::Result<(), Error> {
        let next_tick = self.schedule.next_tick(&subscription.settings).map_err(Error::Settings)?;
        self.timers.start(&subscription, next_tick, trigger).await;
        Ok(())
    }

    async fn unsubscribe(&self, key: &SubscriptionKey) {
        self.timers.stop(key).await;
    }

    fn next_fire(&self, key: &SubscriptionKey) -> Option<u64> {
        self.timers.next(key)
    }

    fn active(&self) -> Option<Vec<(SubscriptionKey, BTreeMap<String, String>)>> {
        Some(self.timers.active())
    }

    async fn debug(&self) -> std::result::Result<String, Error> {
        Ok(self.timers.describe())
    }

    async fn shutdown(&self) {
        self.timers.stop_all().await;
    }
}

/// The interval schedule: every `every`, at least `min_interval`.
pub struct Every {
    min_interval: Duration,
}

impl Every {
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
        only_known(Self::ID, settings, &["every"])?;
        Ok(every)
    }
}

impl Schedule for Every {
    const ID: &'static str = "interval";

    fn documentation(&self) -> Documentation {
        Documentation {
            body: format!(
                "Starts a run of the pipeline every `every` (at least {}). Ticks missed while Gofer was down are run \
                 once at startup, however many were missed; a tick never starts two runs.",
                format_duration(self.min_interval)
            ),
            config_params: Vec::new(),
            pipeline_subscription_params: vec![param("every", true, "How often to start a run, e.g. 30s, 5m, 1h30m.")],
        }
    }

    fn next_tick(&self, settings: &BTreeMap<String, String>) -> std::result::Result<NextTick, String> {
        let every = self.every(settings)?.as_millis() as u64;
        Ok(Box::new(move |after| Some(after + every)))
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
        only_known(CronExpressions::ID, settings, &["expression", "timezone"])?;
        Ok(Self { cron, zone })
    }

    /// The first matching minute strictly after `after_ms` (epoch milliseconds), in the schedule's time zone.
    fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = jiff::Timestamp::from_millisecond(i64::try_from(after_ms).ok()?).ok()?.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp().as_millisecond()).ok()
    }
}

/// The cron schedule: the minutes a 5-field expression names, in a time zone.
pub struct CronExpressions;

impl Schedule for CronExpressions {
    const ID: &'static str = "cron";

    fn documentation(&self) -> Documentation {
        Documentation {
            body: "Starts a run at the times a standard 5-field cron expression names (minute hour day-of-month \
                   month day-of-week), in the given time zone (UTC by default). Ticks missed while Gofer was down \
                   are run once at startup; a tick never starts two runs."
                .into(),
            config_params: Vec::new(),
            pipeline_subscription_params: vec![
                param("expression", true, "A 5-field cron expression, e.g. '0 3 * * *' (03:00 every day)."),
                param("timezone", false, "An IANA time zone such as Europe/Berlin; UTC when not given."),
            ],
        }
    }

    fn next_tick(&self, settings: &BTreeMap<String, String>) -> std::result::Result<NextTick, String> {
        let schedule = CronSchedule::parse(settings)?;
        Ok(Box::new(move |after| schedule.next_after(after)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_next_due_tick_skips_missed_ones_to_the_latest() {
        let every_10: NextTick = Box::new(|after| Some(after + 10));
        assert_eq!(due(&every_10, 100, 105), Some(110), "the next one, still to come");
        assert_eq!(due(&every_10, 100, 110), Some(110));
        assert_eq!(due(&every_10, 100, 135), Some(130), "missed ticks become the latest of them");
        let never: NextTick = Box::new(|_| None);
        assert_eq!(due(&never, 100, 135), None);
    }

    #[test]
    fn interval_settings_are_checked_against_the_minimum() {
        let interval = Interval::new(
            Duration::from_secs(60),
            crate::background::Background::root(),
            Arc::new(crate::clock::SystemClock),
        );
        let settings = |every: &str| BTreeMap::from([("every".to_string(), every.to_string())]);
        interval.validate(&settings("5m")).unwrap();
        let refused = |settings: &BTreeMap<String, String>| match interval.validate(settings) {
            Err(Error::Settings(message)) => message,
            other => panic!("expected refused settings, got {other:?}"),
        };
        assert!(refused(&settings("10s")).contains("shorter than this server's minimum of 1m"));
        assert!(refused(&BTreeMap::new()).contains("'every' is required"));
        let mut extra = settings("5m");
        extra.insert("cron".into(), "x".into());
        assert!(refused(&extra).contains("unknown setting 'cron'"));
    }
}
