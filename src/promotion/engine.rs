//! Kargo's step execution model as pure functions over a Promotion's
//! progress: which step comes next, what a step's result does to the
//! progress, and which phase the Promotion ends in. No I/O, no clock: the
//! caller passes `now`.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::api::PromotionStep;

/// The status of one step, ordered by Kargo's severity.
pub use crate::api::PromotionStepStatus as StepStatus;

/// The phase a Promotion ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalPhase {
    Succeeded,
    Failed,
    Errored,
    Aborted,
}

/// What the engine remembers about one step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepMeta {
    pub alias: String,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub error_count: u32,
    pub status: Option<StepStatus>,
    pub message: Option<String>,
    pub continue_on_error: bool,
}

/// A Promotion's progress through its plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Index of the first step not finished yet.
    pub current_step: usize,
    pub metas: Vec<StepMeta>,
    /// Step alias → the step's output.
    pub state: Map<String, Value>,
    /// Health checks of succeeded steps: `(uses, config)`.
    pub health_checks: Vec<(String, Value)>,
}

/// What a step runner reports for one run.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    pub status: StepStatus,
    pub message: Option<String>,
    pub output: Option<Value>,
    /// A health check to register if the step succeeds: `(uses, config)`.
    pub health_check: Option<(String, Value)>,
    /// For a Running step that polls something nothing wakes it for (an
    /// HTTP endpoint): when to run it again.
    pub poll_after: Option<Duration>,
}

impl StepResult {
    pub fn new(status: StepStatus) -> Self {
        Self {
            status,
            message: None,
            output: None,
            health_check: None,
            poll_after: None,
        }
    }

    /// A Succeeded result with `output`.
    pub fn succeeded_with(output: Value) -> Self {
        Self {
            output: Some(output),
            ..Self::new(StepStatus::Succeeded)
        }
    }
}

/// A step run that went wrong. A terminal error ends the step at once; any
/// other counts against the step's error threshold and is retried, except
/// when the Kubernetes API server did not answer (`unavailable`: overloaded,
/// throttling, unreachable): not the step's fault, so it is retried without
/// counting, until the step's timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepError {
    pub message: String,
    pub terminal: bool,
    pub unavailable: bool,
}

/// The step kind's defaults, used when the step's `retry` leaves them unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepDefaults {
    /// `None`: no timeout.
    pub timeout: Option<Duration>,
    /// At least 1.
    pub error_threshold: u32,
}

impl Default for StepDefaults {
    fn default() -> Self {
        Self {
            timeout: None,
            error_threshold: 1,
        }
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The step has not started: evaluate its `if`, then run it.
    Start(usize),
    /// The step is running: run it again to see how far it got.
    Resume(usize),
    /// Every step is finished.
    Done {
        phase: FinalPhase,
        message: Option<String>,
    },
}

/// After recording a result: go on with the next step, or stop until woken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    Continue,
    /// The step is still running; `wake_at` is the latest moment it must be
    /// looked at again (its timeout deadline or its retry backoff), if any.
    Wait {
        wake_at: Option<Timestamp>,
    },
}

fn meta_mut<'a>(
    progress: &'a mut Progress,
    plan: &[PromotionStep],
    index: usize,
) -> &'a mut StepMeta {
    let alias = alias_of(plan, index);
    let position = match progress.metas.iter().position(|m| m.alias == alias) {
        Some(p) => p,
        None => {
            progress.metas.push(StepMeta {
                alias,
                continue_on_error: plan.get(index).is_some_and(|s| s.continue_on_error),
                ..StepMeta::default()
            });
            progress.metas.len() - 1
        }
    };
    &mut progress.metas[position]
}

/// The alias the plan gives step `index` (inflation sets every alias).
pub fn alias_of(plan: &[PromotionStep], index: usize) -> String {
    plan.get(index)
        .and_then(|s| s.alias.clone())
        .unwrap_or_else(|| format!("step-{}", index + 1))
}

/// The step to work on, or the final phase once every step is finished.
pub fn next(plan: &[PromotionStep], progress: &Progress) -> Next {
    if progress.current_step >= plan.len() {
        let (phase, message) = final_phase(progress);
        return Next::Done { phase, message };
    }
    let alias = alias_of(plan, progress.current_step);
    let started = progress
        .metas
        .iter()
        .find(|m| m.alias == alias)
        .is_some_and(|m| m.started_at.is_some());
    if started {
        Next::Resume(progress.current_step)
    } else {
        Next::Start(progress.current_step)
    }
}

/// Marks a step that has not started as Skipped (its `if` was false).
pub fn skip(progress: &mut Progress, plan: &[PromotionStep], index: usize, now: Timestamp) {
    let meta = meta_mut(progress, plan, index);
    meta.status = Some(StepStatus::Skipped);
    meta.finished_at = Some(now);
    progress.current_step = index + 1;
}

/// Ends a step Errored before its runner could run: its `if`, vars or config
/// could not be evaluated, or its kind is unknown.
pub fn error_before_run(
    progress: &mut Progress,
    plan: &[PromotionStep],
    index: usize,
    message: String,
    now: Timestamp,
) {
    let meta = meta_mut(progress, plan, index);
    meta.started_at.get_or_insert(now);
    meta.status = Some(StepStatus::Errored);
    meta.message = Some(message);
    meta.finished_at = Some(now);
    progress.current_step = index + 1;
}

/// Marks a step as started; the error count starts again only here.
pub fn start(progress: &mut Progress, plan: &[PromotionStep], index: usize, now: Timestamp) {
    let meta = meta_mut(progress, plan, index);
    if meta.started_at.is_none() {
        meta.started_at = Some(now);
        meta.error_count = 0;
    }
    meta.status = Some(StepStatus::Running);
}

fn timeout_of(step: &PromotionStep, defaults: StepDefaults) -> Option<Duration> {
    match step.retry.as_ref().and_then(|r| r.timeout) {
        Some(t) => {
            let t = Duration::from(t);
            (!t.is_zero()).then_some(t)
        }
        None => defaults.timeout,
    }
}

fn threshold_of(step: &PromotionStep, defaults: StepDefaults) -> u32 {
    match step.retry.as_ref().map(|r| r.error_threshold) {
        Some(n) if n > 0 => n,
        _ => defaults.error_threshold.max(1),
    }
}

/// The moment a running step times out, if it has a timeout.
pub fn deadline(
    step: &PromotionStep,
    meta: &StepMeta,
    defaults: StepDefaults,
) -> Option<Timestamp> {
    let timeout = timeout_of(step, defaults)?;
    let started = meta.started_at?;
    let span = jiff::SignedDuration::try_from(timeout).ok()?;
    started.checked_add(span).ok()
}

/// Go-style rendering of a duration for messages, e.g. `5m0s`, `3s`.
pub fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let millis = d.subsec_millis();
    let secs = if millis > 0 {
        format!("{s}.{millis:03}s")
    } else {
        format!("{s}s")
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Retry backoff after `errors` consecutive errors: 1 s, 2 s, 4 s, … up to 1 min.
fn backoff(errors: u32) -> Duration {
    Duration::from_secs(1u64 << errors.saturating_sub(1).min(6))
}

/// A retryable error below the threshold: the step stays Running and is
/// looked at again after its backoff, or at its deadline if that is sooner.
fn retry_later(
    meta: &mut StepMeta,
    step: &PromotionStep,
    defaults: StepDefaults,
    message: String,
    now: Timestamp,
) -> Recorded {
    meta.status = Some(StepStatus::Running);
    meta.message = Some(format!("{message}; step will be retried"));
    let retry_at = jiff::SignedDuration::try_from(backoff(meta.error_count))
        .ok()
        .and_then(|b| now.checked_add(b).ok());
    let wake_at = match (retry_at, deadline(step, meta, defaults)) {
        (Some(r), Some(d)) => Some(r.min(d)),
        (r, d) => r.or(d),
    };
    Recorded::Wait { wake_at }
}

/// Records one run of step `index` (Kargo's `determineStepCompletion`).
/// One piece: the completion rules, one arm per outcome of a run, are
/// easier to check against Kargo's read together.
pub fn record(
    progress: &mut Progress,
    plan: &[PromotionStep],
    index: usize,
    result: Result<StepResult, StepError>,
    defaults: StepDefaults,
    now: Timestamp,
) -> Recorded {
    let Some(step) = plan.get(index) else {
        return Recorded::Continue;
    };
    let alias = alias_of(plan, index);
    if let Ok(StepResult {
        output: Some(output),
        ..
    }) = &result
    {
        progress.state.insert(alias.clone(), output.clone());
    }
    let meta = meta_mut(progress, plan, index);
    meta.started_at.get_or_insert(now);
    let finish = |meta: &mut StepMeta, status: StepStatus, message: Option<String>| {
        meta.status = Some(status);
        meta.message = message;
        meta.finished_at = Some(now);
    };
    let timed_out = |meta: &StepMeta| deadline(step, meta, defaults).is_some_and(|d| now >= d);
    let timeout_message = || {
        format!(
            "step \"{alias}\" timed out after {}",
            go_duration(timeout_of(step, defaults).unwrap_or_default())
        )
    };

    match result {
        Ok(result) => match result.status {
            StepStatus::Running => {
                if timed_out(meta) {
                    finish(meta, StepStatus::Errored, Some(timeout_message()));
                } else {
                    meta.status = Some(StepStatus::Running);
                    meta.message = result.message;
                    let poll_at = result
                        .poll_after
                        .and_then(|p| jiff::SignedDuration::try_from(p).ok())
                        .and_then(|p| now.checked_add(p).ok());
                    let wake_at = match (poll_at, deadline(step, meta, defaults)) {
                        (Some(p), Some(d)) => Some(p.min(d)),
                        (p, d) => p.or(d),
                    };
                    return Recorded::Wait { wake_at };
                }
            }
            status => {
                finish(meta, status, result.message);
                if status == StepStatus::Succeeded
                    && let Some(check) = result.health_check
                {
                    progress.health_checks.push(check);
                }
            }
        },
        Err(StepError {
            message,
            terminal: true,
            ..
        }) => {
            finish(
                meta,
                StepStatus::Errored,
                Some(format!("an unrecoverable error occurred: {message}")),
            );
        }
        Err(StepError {
            message,
            terminal: false,
            unavailable: true,
        }) => {
            if timed_out(meta) {
                finish(meta, StepStatus::Errored, Some(timeout_message()));
            } else {
                return retry_later(meta, step, defaults, message, now);
            }
        }
        Err(StepError {
            message,
            terminal: false,
            unavailable: false,
        }) => {
            meta.error_count = meta.error_count.saturating_add(1);
            let threshold = threshold_of(step, defaults);
            if meta.error_count >= threshold {
                let text =
                    format!("step \"{alias}\" met error threshold of {threshold}: {message}");
                finish(meta, StepStatus::Errored, Some(text));
            } else if timed_out(meta) {
                finish(meta, StepStatus::Errored, Some(timeout_message()));
            } else {
                return retry_later(meta, step, defaults, message, now);
            }
        }
    }
    progress.current_step = index + 1;
    Recorded::Continue
}

/// Aborts the running step (if any) and every later one stays unrun.
pub fn abort(progress: &mut Progress, plan: &[PromotionStep], now: Timestamp) {
    if progress.current_step < plan.len() {
        let meta = meta_mut(progress, plan, progress.current_step);
        if meta.status == Some(StepStatus::Running) {
            meta.status = Some(StepStatus::Aborted);
            meta.finished_at = Some(now);
        }
    }
}

/// Kargo's `DetermineFinalPhase`: the worst status of the steps that do not
/// continue on error decides (the first such step, when several are as
/// bad), and that step's message explains it. A step still Running when the
/// Promotion ends did not finish its work: Errored.
pub fn final_phase(progress: &Progress) -> (FinalPhase, Option<String>) {
    let worst = progress
        .metas
        .iter()
        .filter(|m| !m.continue_on_error)
        .filter_map(|m| m.status.map(|s| (s, m)))
        .min_by_key(|(s, _)| std::cmp::Reverse(s.severity()));
    match worst {
        None => (FinalPhase::Succeeded, None),
        Some((status, meta)) => {
            let phase = match status {
                StepStatus::Succeeded | StepStatus::Skipped => FinalPhase::Succeeded,
                StepStatus::Running => FinalPhase::Errored,
                StepStatus::Aborted => FinalPhase::Aborted,
                StepStatus::Failed => FinalPhase::Failed,
                StepStatus::Errored => FinalPhase::Errored,
            };
            let message = match phase {
                FinalPhase::Succeeded => None,
                _ => meta.message.clone().map(|m| {
                    let prefix = format!("step \"{}\"", meta.alias);
                    if m.starts_with(&prefix) {
                        m
                    } else {
                        format!("{prefix}: {m}")
                    }
                }),
            };
            (phase, message)
        }
    }
}
