//! How a new version of a pipeline replaces the live one: at once, after verification runs (blue/green), or by
//! sending a share of new runs to it and judging them (canary). A pipeline program may declare its default with
//! [`crate::config::Pipeline::deploy_strategy`]; `gofer pipeline deploy --strategy …` overrides it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The most verification runs a blue/green deployment may ask for, and the most runs a canary stage may require.
pub const MAX_JUDGED_RUNS: u32 = 1000;
/// The longest a canary stage may bake: a week.
pub const MAX_BAKE_SECONDS: u64 = 7 * 24 * 3600;
/// The most stages a canary may have.
pub const MAX_STEPS: usize = 10;

/// How a deployment moves new runs from the live version to the candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::Strategy))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Strategy {
    /// The candidate becomes live at once.
    Immediate,
    /// The candidate gets `verify_runs` runs of its own while the live version takes every other run; when all of
    /// them succeed it becomes live, and the first failure ends the deployment with the live version untouched.
    BlueGreen(BlueGreen),
    /// A share of new runs goes to the candidate, stage by stage; each stage is judged by the candidate's success
    /// rate, and the candidate is rolled back as soon as that rate can no longer be reached.
    Canary(Canary),
}

// Thresholds are checked to be finite numbers (JSON has no NaN), so equality is total.
impl Eq for Strategy {}

/// Blue/green settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::BlueGreen))]
#[serde(deny_unknown_fields)]
pub struct BlueGreen {
    /// How many verification runs of the candidate must succeed.
    pub verify_runs: u32,
    /// Run variables the verification runs are started with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// Canary settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = config::Canary))]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The percentage of new runs the candidate takes in each stage, rising (e.g. `[10, 50, 100]`); one stage
    /// for a plain canary. Runs started with an explicit version are not routed.
    pub steps: Vec<u8>,
    /// Candidate runs that must have completed in a stage before it is judged.
    pub min_runs: u32,
    /// The share of the candidate's completed runs in a stage that must succeed, from 0 (exclusive) to 1.
    pub success_threshold: f64,
    /// The least time a stage lasts, in seconds, however many runs it had.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bake_seconds: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Strategy {
    /// Blue/green with `verify_runs` verification runs.
    pub fn blue_green(verify_runs: u32) -> Self {
        Self::BlueGreen(BlueGreen { verify_runs, variables: BTreeMap::new() })
    }

    /// A one-stage canary: `weight` % of new runs to the candidate; promoted once `min_runs` of them completed
    /// with at least `success_threshold` (0–1) of them successful.
    pub fn canary(weight: u8, min_runs: u32, success_threshold: f64) -> Self {
        Self::Canary(Canary { steps: vec![weight], min_runs, success_threshold, bake_seconds: 0 })
    }

    /// Canary only: the weight of each stage, replacing the single weight, e.g. `[10, 50, 100]`.
    pub fn steps(mut self, steps: impl IntoIterator<Item = u8>) -> Self {
        if let Self::Canary(canary) = &mut self {
            canary.steps = steps.into_iter().collect();
        }
        self
    }

    /// Canary only: the least time each stage lasts (rounded up to whole seconds).
    pub fn bake(mut self, bake: Duration) -> Self {
        if let Self::Canary(canary) = &mut self {
            canary.bake_seconds = bake.as_secs() + u64::from(bake.subsec_nanos() > 0);
        }
        self
    }

    /// Blue/green only: a run variable for the verification runs.
    pub fn verify_variable(mut self, key: &str, value: &str) -> Self {
        if let Self::BlueGreen(blue_green) = &mut self {
            blue_green.variables.insert(key.to_string(), value.to_string());
        }
        self
    }

    /// The name used on the command line and in messages: `immediate`, `blue-green` or `canary`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Immediate => "immediate",
            Self::BlueGreen(_) => "blue-green",
            Self::Canary(_) => "canary",
        }
    }

    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::InvalidPipeline { field: field.into(), reason };
        match self {
            Self::Immediate => Ok(()),
            Self::BlueGreen(b) => {
                if b.verify_runs == 0 || b.verify_runs > MAX_JUDGED_RUNS {
                    return Err(invalid(
                        "deploy strategy verify_runs",
                        format!("{} is out of range; give 1 to {MAX_JUDGED_RUNS}", b.verify_runs),
                    ));
                }
                for key in b.variables.keys() {
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        return Err(invalid(
                            "deploy strategy variables",
                            format!("variable name '{key}' must be non-empty and contain no '=' or NUL"),
                        ));
                    }
                }
                Ok(())
            }
            Self::Canary(c) => {
                if c.steps.is_empty() || c.steps.len() > MAX_STEPS {
                    return Err(invalid(
                        "deploy strategy steps",
                        format!("{} stages given; give 1 to {MAX_STEPS} weights", c.steps.len()),
                    ));
                }
                for (i, &weight) in c.steps.iter().enumerate() {
                    if weight == 0 || weight > 100 {
                        return Err(invalid(
                            "deploy strategy weight",
                            format!("{weight} is not a percentage of runs; give 1 to 100"),
                        ));
                    }
                    if i > 0 && weight <= c.steps[i - 1] {
                        return Err(invalid(
                            "deploy strategy steps",
                            format!("{:?} does not rise; each stage must take more runs than the one before", c.steps),
                        ));
                    }
                }
                if c.min_runs == 0 || c.min_runs > MAX_JUDGED_RUNS {
                    return Err(invalid(
                        "deploy strategy min_runs",
                        format!("{} is out of range; give 1 to {MAX_JUDGED_RUNS}", c.min_runs),
                    ));
                }
                if !(c.success_threshold > 0.0 && c.success_threshold <= 1.0) {
                    return Err(invalid(
                        "deploy strategy success_threshold",
                        format!(
                            "{} is not a share of runs; give a number above 0 and at most 1, e.g. 0.9",
                            c.success_threshold
                        ),
                    ));
                }
                if c.bake_seconds > MAX_BAKE_SECONDS {
                    return Err(invalid(
                        "deploy strategy bake_seconds",
                        format!("{} is longer than a week ({MAX_BAKE_SECONDS})", c.bake_seconds),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Canary {
    /// The success threshold in parts per ten thousand, so that judging is exact integer arithmetic.
    pub fn threshold_basis_points(&self) -> u64 {
        (self.success_threshold * 10_000.0).round().clamp(1.0, 10_000.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_read_back_what_they_write_and_refuse_unknown_fields() {
        for strategy in [
            Strategy::Immediate,
            Strategy::blue_green(3).verify_variable("SMOKE", "1"),
            Strategy::canary(20, 5, 0.9).steps([10, 50, 100]).bake(Duration::from_millis(1500)),
        ] {
            strategy.validate().unwrap();
            let json = serde_json::to_string(&strategy).unwrap();
            assert_eq!(serde_json::from_str::<Strategy>(&json).unwrap(), strategy, "{json}");
        }
        let json = serde_json::to_value(Strategy::canary(20, 5, 0.9)).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "canary", "steps": [20], "min_runs": 5, "success_threshold": 0.9}));
        let err = serde_json::from_str::<Strategy>(
            r#"{"kind":"canary","steps":[5],"min_runs":1,"success_threshold":1,"weight":3}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `weight`"), "{err}");
        let err = serde_json::from_str::<Strategy>(r#"{"kind":"rolling"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `rolling`"), "{err}");
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        for (strategy, field) in [
            (Strategy::blue_green(0), "verify_runs"),
            (Strategy::blue_green(1).verify_variable("A=B", "x"), "variables"),
            (Strategy::canary(0, 5, 0.9), "weight"),
            (Strategy::canary(101, 5, 0.9), "weight"),
            (Strategy::canary(20, 5, 0.9).steps([50, 10]), "steps"),
            (Strategy::canary(20, 5, 0.9).steps([]), "steps"),
            (Strategy::canary(20, 0, 0.9), "min_runs"),
            (Strategy::canary(20, 5, 0.0), "success_threshold"),
            (Strategy::canary(20, 5, 1.5), "success_threshold"),
            (Strategy::canary(20, 5, f64::NAN), "success_threshold"),
            (Strategy::canary(20, 5, 0.9).bake(Duration::from_secs(MAX_BAKE_SECONDS + 1)), "bake_seconds"),
        ] {
            let err = strategy.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{strategy:?}: {err}");
        }
    }
}
