//! Per-Application knobs: annotations under `double.barge.dev/` that script
//! what the double does with one Application. Every knob is optional; a
//! missing one falls back to [`DoubleConfig`](crate::DoubleConfig). A
//! malformed value is logged and ignored (the default applies), never fatal.
//!
//! | annotation | values | default |
//! |---|---|---|
//! | `double.barge.dev/sync-delay` | Go duration (`0s`, `500ms`, `2s`) between the "tasks are running" write and the end of the sync | `DoubleConfig::sync_delay` |
//! | `double.barge.dev/outcome` | `succeed` \| `fail:<msg>` \| `error:<msg>` \| `hang`; a `;`-separated list scripts successive attempts (retries), the last entry repeating: `fail:quota exceeded; succeed` | `succeed` |
//! | `double.barge.dev/health-after-sync` | `healthy` \| `progressing-then-healthy` \| `progressing` \| `degraded` \| `suspended` \| `missing` \| `unknown` | `DoubleConfig::health_after_sync` |
//! | `double.barge.dev/progressing-for` | Go duration that `progressing-then-healthy` stays Progressing | `DoubleConfig::progressing_for` |
//! | `double.barge.dev/initial-health` | health status of an Application never synced by the double (same names as above, without the `-then-`) | `DoubleConfig::initial_health` |
//! | `double.barge.dev/window-blocked` | `"true"`: a sync window blocks syncs (manual and automated); the operation stays Running with `Sync operation blocked by sync window` until the knob is removed | `"false"` |
//! | `double.barge.dev/resolve` | revision table `ref=resolved,...`, e.g. `main=abc123,v1.2=def456`; `HEAD` also names the empty targetRevision. Revisions not in the table resolve to themselves | `DoubleConfig::resolve` |
//! | `double.barge.dev/unresolvable` | `,`-separated revisions that cannot be resolved (`*` for all): the refresh raises a `ComparisonError` and a sync ends in `Error` | none |
//! | `double.barge.dev/retry` | `"false"`: ignore `operation.retry` (fail at once) | `DoubleConfig::honor_retry` |
//! | `double.barge.dev/live-health` | a health status the workload has now, whatever the last sync left: every refresh reports it (a recovery, or a later degradation) | none |
//! | `double.barge.dev/permanent-diff` | `"true"`: the live state never matches the target (a field the API server drops or defaults), so every refresh reports `OutOfSync`, even right after a successful sync, as real Argo CD does | `"false"` |
//! | `double.barge.dev/post-sync-refresh` | `immediate` \| Go duration (delay it) \| `skip` (leave `reconciledAt < finishedAt` until something else triggers a refresh) | `immediate` |

use std::collections::BTreeMap;
use std::time::Duration;

use crate::DoubleConfig;

/// The prefix every knob annotation starts with.
pub const PREFIX: &str = "double.barge.dev/";
pub const SYNC_DELAY: &str = "double.barge.dev/sync-delay";
pub const OUTCOME: &str = "double.barge.dev/outcome";
pub const HEALTH_AFTER_SYNC: &str = "double.barge.dev/health-after-sync";
pub const PROGRESSING_FOR: &str = "double.barge.dev/progressing-for";
pub const INITIAL_HEALTH: &str = "double.barge.dev/initial-health";
pub const WINDOW_BLOCKED: &str = "double.barge.dev/window-blocked";
pub const RESOLVE: &str = "double.barge.dev/resolve";
pub const UNRESOLVABLE: &str = "double.barge.dev/unresolvable";
pub const RETRY: &str = "double.barge.dev/retry";
pub const POST_SYNC_REFRESH: &str = "double.barge.dev/post-sync-refresh";
pub const LIVE_HEALTH: &str = "double.barge.dev/live-health";
pub const PERMANENT_DIFF: &str = "double.barge.dev/permanent-diff";

/// How one sync attempt ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `Succeeded`, `successfully synced (all tasks run)`.
    Succeed,
    /// `Failed`, `one or more objects failed to apply, reason: <msg>`.
    Fail(String),
    /// `Error`, `<msg>`.
    Error(String),
    /// Stays `Running` ("one or more tasks are running") until terminated.
    Hang,
}

impl Outcome {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (kind, message) = match text.split_once(':') {
            Some((kind, message)) => (kind.trim(), Some(message.trim().to_string())),
            None => (text, None),
        };
        match (kind, message) {
            ("succeed", None) => Some(Self::Succeed),
            ("hang", None) => Some(Self::Hang),
            ("fail", message) => Some(Self::Fail(
                message.unwrap_or_else(|| "the double was told to fail".into()),
            )),
            ("error", message) => Some(Self::Error(
                message.unwrap_or_else(|| "the double was told to error".into()),
            )),
            _ => None,
        }
    }
}

/// Argo CD's (gitops-engine's) health statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Progressing,
    Degraded,
    Suspended,
    Missing,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "Healthy",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::Suspended => "Suspended",
            Self::Missing => "Missing",
            Self::Unknown => "Unknown",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "healthy" => Some(Self::Healthy),
            "progressing" => Some(Self::Progressing),
            "degraded" => Some(Self::Degraded),
            "suspended" => Some(Self::Suspended),
            "missing" => Some(Self::Missing),
            "unknown" => Some(Self::Unknown),
            _ => None,
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health the refresh after a successful sync reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthAfterSync {
    /// This status at once, kept until the next sync.
    Status(HealthStatus),
    /// `Progressing` at once, `Healthy` after `progressing_for`.
    ProgressingThenHealthy,
}

impl HealthAfterSync {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "progressing-then-healthy" => Some(Self::ProgressingThenHealthy),
            other => HealthStatus::parse(other).map(Self::Status),
        }
    }
}

/// When the refresh after a completed operation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostSyncRefresh {
    Immediate,
    After(Duration),
    /// Not at all: `reconciledAt` stays older than `finishedAt` until a
    /// refresh is requested (the stale-health case).
    Skip,
}

/// A revision the double cannot resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolvable(pub String);

/// The knobs of one Application, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knobs {
    pub sync_delay: Duration,
    /// One entry per attempt (`operationState.retryCount`); the last repeats.
    pub outcomes: Vec<Outcome>,
    pub health_after_sync: HealthAfterSync,
    pub progressing_for: Duration,
    pub initial_health: HealthStatus,
    pub window_blocked: bool,
    pub resolve: BTreeMap<String, String>,
    /// Revisions that cannot be resolved; `"*"` matches all.
    pub unresolvable: Vec<String>,
    pub honor_retry: bool,
    pub post_sync_refresh: PostSyncRefresh,
    /// The workload's health now: reported by every refresh when set.
    pub live_health: Option<HealthStatus>,
    /// The live state never compares equal to the target.
    pub permanent_diff: bool,
}

impl Knobs {
    /// The knobs from an Application's annotations over `config`'s defaults.
    /// Malformed values are reported (as `(annotation, problem)`) and ignored.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        config: &DoubleConfig,
    ) -> (Self, Vec<(String, String)>) {
        let mut knobs = Self {
            sync_delay: config.sync_delay,
            outcomes: vec![Outcome::Succeed],
            health_after_sync: config.health_after_sync,
            progressing_for: config.progressing_for,
            initial_health: config.initial_health,
            window_blocked: false,
            resolve: config.resolve.clone(),
            unresolvable: Vec::new(),
            honor_retry: config.honor_retry,
            post_sync_refresh: PostSyncRefresh::Immediate,
            live_health: None,
            permanent_diff: false,
        };
        let mut problems = Vec::new();
        let mut bad = |key: &str, problem: String| problems.push((key.to_string(), problem));
        for (key, value) in annotations {
            if !key.starts_with(PREFIX) {
                continue;
            }
            match key.as_str() {
                SYNC_DELAY => match parse_duration(value) {
                    Ok(d) => knobs.sync_delay = d,
                    Err(e) => bad(key, e),
                },
                PROGRESSING_FOR => match parse_duration(value) {
                    Ok(d) => knobs.progressing_for = d,
                    Err(e) => bad(key, e),
                },
                OUTCOME => {
                    let parsed: Option<Vec<Outcome>> = value
                        .split(';')
                        .filter(|s| !s.trim().is_empty())
                        .map(Outcome::parse)
                        .collect();
                    match parsed {
                        Some(list) if !list.is_empty() => knobs.outcomes = list,
                        _ => bad(
                            key,
                            format!(
                                "{value:?}: expected succeed, fail:<msg>, error:<msg> or hang, separated by ';'"
                            ),
                        ),
                    }
                }
                HEALTH_AFTER_SYNC => match HealthAfterSync::parse(value) {
                    Some(h) => knobs.health_after_sync = h,
                    None => bad(
                        key,
                        format!("{value:?}: expected a health status or progressing-then-healthy"),
                    ),
                },
                LIVE_HEALTH => match HealthStatus::parse(value) {
                    Some(h) => knobs.live_health = Some(h),
                    None => bad(key, format!("{value:?}: expected a health status")),
                },
                INITIAL_HEALTH => match HealthStatus::parse(value) {
                    Some(h) => knobs.initial_health = h,
                    None => bad(key, format!("{value:?}: expected a health status")),
                },
                WINDOW_BLOCKED => match parse_bool(value) {
                    Some(b) => knobs.window_blocked = b,
                    None => bad(key, format!("{value:?}: expected true or false")),
                },
                PERMANENT_DIFF => match parse_bool(value) {
                    Some(b) => knobs.permanent_diff = b,
                    None => bad(key, format!("{value:?}: expected true or false")),
                },
                RETRY => match parse_bool(value) {
                    Some(b) => knobs.honor_retry = b,
                    None => bad(key, format!("{value:?}: expected true or false")),
                },
                RESOLVE => {
                    for entry in value.split(',').filter(|e| !e.trim().is_empty()) {
                        match entry.split_once('=') {
                            Some((from, to)) if !from.trim().is_empty() => {
                                knobs
                                    .resolve
                                    .insert(from.trim().to_string(), to.trim().to_string());
                            }
                            _ => bad(key, format!("{entry:?}: expected ref=resolved")),
                        }
                    }
                }
                UNRESOLVABLE => {
                    knobs.unresolvable = value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                POST_SYNC_REFRESH => match value.trim() {
                    "immediate" => knobs.post_sync_refresh = PostSyncRefresh::Immediate,
                    "skip" => knobs.post_sync_refresh = PostSyncRefresh::Skip,
                    other => match parse_duration(other) {
                        Ok(d) => knobs.post_sync_refresh = PostSyncRefresh::After(d),
                        Err(e) => bad(key, format!("expected immediate, skip or a duration: {e}")),
                    },
                },
                _ => bad(key, "unknown knob".into()),
            }
        }
        (knobs, problems)
    }

    /// The outcome of attempt `retry_count` (0 for the first).
    pub fn outcome(&self, retry_count: i64) -> &Outcome {
        let index = usize::try_from(retry_count).unwrap_or(0);
        self.outcomes
            .get(index)
            .or(self.outcomes.last())
            .unwrap_or(&Outcome::Succeed)
    }

    /// Resolves a requested revision (a branch, tag, SHA or chart version) the
    /// way the repo server would: through the table, else to itself. The empty
    /// revision is `HEAD`.
    pub fn resolve(&self, revision: &str) -> Result<String, Unresolvable> {
        let revision = if revision.is_empty() {
            "HEAD"
        } else {
            revision
        };
        if self.unresolvable.iter().any(|u| u == "*" || u == revision) {
            return Err(Unresolvable(revision.to_string()));
        }
        Ok(self
            .resolve
            .get(revision)
            .cloned()
            .unwrap_or_else(|| revision.to_string()))
    }
}

/// A Go duration (`1.5s`, `300ms`, `2m`), not negative.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d: kube::core::Duration = text.trim().parse().map_err(|e| format!("{text:?}: {e}"))?;
    if d.is_negative() {
        return Err(format!("{text:?}: negative duration"));
    }
    Ok(d.into())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs(pairs: &[(&str, &str)]) -> (Knobs, Vec<(String, String)>) {
        let annotations = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Knobs::from_annotations(&annotations, &DoubleConfig::default())
    }

    #[test]
    fn no_annotations_give_the_config_defaults() {
        let (k, problems) = knobs(&[("unrelated/annotation", "x")]);
        let config = DoubleConfig::default();
        assert!(problems.is_empty());
        assert_eq!(k.sync_delay, config.sync_delay);
        assert_eq!(k.outcome(0), &Outcome::Succeed);
        assert_eq!(k.health_after_sync, config.health_after_sync);
        assert!(!k.window_blocked);
        assert_eq!(k.post_sync_refresh, PostSyncRefresh::Immediate);
    }

    #[test]
    fn outcome_list_scripts_successive_attempts_and_the_last_repeats() {
        let (k, problems) = knobs(&[(OUTCOME, "fail: disk full ; error:boom;succeed")]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(k.outcome(0), &Outcome::Fail("disk full".into()));
        assert_eq!(k.outcome(1), &Outcome::Error("boom".into()));
        assert_eq!(k.outcome(2), &Outcome::Succeed);
        assert_eq!(k.outcome(7), &Outcome::Succeed);
    }

    #[test]
    fn malformed_knobs_are_reported_and_ignored() {
        let (k, problems) = knobs(&[
            (OUTCOME, "explode"),
            (SYNC_DELAY, "soon"),
            (WINDOW_BLOCKED, "maybe"),
            ("double.barge.dev/typo", "1"),
        ]);
        assert_eq!(k.outcome(0), &Outcome::Succeed);
        assert_eq!(k.sync_delay, DoubleConfig::default().sync_delay);
        assert!(!k.window_blocked);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn resolve_uses_the_table_then_identity_and_head_for_empty() {
        let (k, _) = knobs(&[
            (RESOLVE, "main=abc123, v1.2=def456,HEAD=fff000"),
            (UNRESOLVABLE, "gone"),
        ]);
        assert_eq!(k.resolve("main"), Ok("abc123".into()));
        assert_eq!(k.resolve("v1.2"), Ok("def456".into()));
        assert_eq!(k.resolve(""), Ok("fff000".into()));
        assert_eq!(k.resolve("0123abcd"), Ok("0123abcd".into()));
        assert_eq!(k.resolve("gone"), Err(Unresolvable("gone".into())));
    }

    #[test]
    fn star_makes_every_revision_unresolvable() {
        let (k, _) = knobs(&[(UNRESOLVABLE, "*")]);
        assert!(k.resolve("main").is_err());
    }

    #[test]
    fn health_and_refresh_knobs_parse() {
        let (k, problems) = knobs(&[
            (HEALTH_AFTER_SYNC, "progressing-then-healthy"),
            (PROGRESSING_FOR, "1500ms"),
            (INITIAL_HEALTH, "Degraded"),
            (POST_SYNC_REFRESH, "skip"),
            (RETRY, "false"),
            (WINDOW_BLOCKED, "true"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(k.health_after_sync, HealthAfterSync::ProgressingThenHealthy);
        assert_eq!(k.progressing_for, Duration::from_millis(1500));
        assert_eq!(k.initial_health, HealthStatus::Degraded);
        assert_eq!(k.post_sync_refresh, PostSyncRefresh::Skip);
        assert!(!k.honor_retry);
        assert!(k.window_blocked);
        let (k, _) = knobs(&[(POST_SYNC_REFRESH, "3s")]);
        assert_eq!(
            k.post_sync_refresh,
            PostSyncRefresh::After(Duration::from_secs(3))
        );
    }
}
