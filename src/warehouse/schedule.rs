//! When a Warehouse discovers: at once when it has never discovered, when
//! its spec changed since, or when a refresh was asked for (a push webhook
//! or `barge.dev/refresh`); otherwise once its interval has passed since
//! the last discovery. After a failure, not before its backoff ends unless
//! something new asks. Pure: the controller turns the answer into a
//! requeue, so status writes never cause discoveries.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::Warehouse;

/// The shortest interval honoured: a Warehouse asking for less discovers
/// this often, so one Warehouse cannot keep a registry busy.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The first retry after a failed discovery; each further failure doubles
/// it, up to the interval (and never beyond [`MAX_BACKOFF`]).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Discover now; `why` goes to logs and the Reconciling condition.
    Now { why: &'static str },
    /// Nothing to do until then.
    At(Timestamp),
}

/// The Warehouse's interval, at least [`MIN_INTERVAL`]; `spec.interval`
/// names what is wrong with one that cannot be read.
pub fn interval(warehouse: &Warehouse) -> Result<Duration, String> {
    let text = warehouse.spec.interval.trim();
    let nanos =
        crate::expr::gotime::parse_duration(text).map_err(|e| format!("spec.interval: {e}"))?;
    let nanos =
        u64::try_from(nanos).map_err(|_| "spec.interval: must not be negative".to_string())?;
    Ok(Duration::from_nanos(nanos).max(MIN_INTERVAL))
}

/// A failed discovery's retry time, after `failures` failures in a row.
pub fn backoff(failures: u32, interval: Duration) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(interval).min(MAX_BACKOFF)
}

/// When the Warehouse next discovers. `retry_at`: when the backoff of a
/// failed discovery ends, if the last one failed.
pub fn next_discovery(
    warehouse: &Warehouse,
    interval: Duration,
    retry_at: Option<Timestamp>,
    now: Timestamp,
) -> Next {
    let status = warehouse.status.clone().unwrap_or_default();
    let refresh = crate::api::refresh_requested(&warehouse.metadata).unwrap_or_default();
    if !refresh.is_empty() && refresh != status.last_handled_refresh {
        return Next::Now {
            why: "RefreshRequested",
        };
    }
    if status.observed_generation != warehouse.metadata.generation {
        return Next::Now { why: "SpecChanged" };
    }
    if let Some(at) = retry_at {
        return if at <= now {
            Next::Now { why: "Retry" }
        } else {
            Next::At(at)
        };
    }
    let last = status
        .discovered_artifacts
        .as_ref()
        .and_then(|a| a.get("discoveredAt"))
        .and_then(|t| t.as_str())
        .and_then(|t| t.parse::<Timestamp>().ok());
    let Some(last) = last else {
        return Next::Now {
            why: "NeverDiscovered",
        };
    };
    let due = SignedDuration::try_from(interval)
        .ok()
        .and_then(|i| last.checked_add(i).ok())
        .unwrap_or(now);
    if due <= now {
        Next::Now { why: "Interval" }
    } else {
        Next::At(due)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn warehouse(status: Value, generation: i64, refresh: Option<&str>) -> Warehouse {
        let mut annotations = serde_json::Map::new();
        if let Some(r) = refresh {
            annotations.insert("barge.dev/refresh".into(), r.into());
        }
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
            "metadata": {"name": "w", "namespace": "demo", "generation": generation,
                         "annotations": annotations},
            "spec": {"interval": "5m", "subscriptions": [{"image": {"repoURL": "x"}}]},
            "status": status,
        }))
        .unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn discovered_at(at: &str, generation: i64, refresh: &str) -> Value {
        json!({"observedGeneration": generation, "lastHandledRefresh": refresh,
               "discoveredArtifacts": {"discoveredAt": at}})
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    #[test]
    fn a_new_warehouse_discovers_at_once() {
        let w = warehouse(json!({}), 1, None);
        assert!(matches!(
            next_discovery(&w, FIVE_MIN, None, t("2026-11-30T00:00:00Z")),
            Next::Now { .. }
        ));
    }

    #[test]
    fn a_discovered_warehouse_waits_for_its_interval() {
        let w = warehouse(discovered_at("2026-11-30T00:00:00Z", 1, ""), 1, None);
        assert_eq!(
            next_discovery(&w, FIVE_MIN, None, t("2026-11-30T00:01:00Z")),
            Next::At(t("2026-11-30T00:05:00Z"))
        );
        assert_eq!(
            next_discovery(&w, FIVE_MIN, None, t("2026-11-30T00:05:00Z")),
            Next::Now { why: "Interval" }
        );
    }

    #[test]
    fn a_new_refresh_token_or_a_changed_spec_discovers_before_the_interval() {
        let now = t("2026-11-30T00:01:00Z");
        let refreshed = warehouse(discovered_at("2026-11-30T00:00:00Z", 1, "a"), 1, Some("b"));
        assert_eq!(
            next_discovery(&refreshed, FIVE_MIN, None, now),
            Next::Now {
                why: "RefreshRequested"
            }
        );
        let handled = warehouse(discovered_at("2026-11-30T00:00:00Z", 1, "b"), 1, Some("b"));
        assert!(matches!(
            next_discovery(&handled, FIVE_MIN, None, now),
            Next::At(_)
        ));
        let edited = warehouse(discovered_at("2026-11-30T00:00:00Z", 1, ""), 2, None);
        assert_eq!(
            next_discovery(&edited, FIVE_MIN, None, now),
            Next::Now { why: "SpecChanged" }
        );
    }

    #[test]
    fn a_failed_discovery_waits_for_its_backoff_unless_refreshed() {
        let w = warehouse(discovered_at("2026-11-30T00:00:00Z", 1, ""), 1, None);
        let retry = t("2026-11-30T00:10:10Z");
        assert_eq!(
            next_discovery(&w, FIVE_MIN, Some(retry), t("2026-11-30T00:10:00Z")),
            Next::At(retry)
        );
        let refreshed = warehouse(discovered_at("2026-11-30T00:00:00Z", 1, ""), 1, Some("x"));
        assert!(matches!(
            next_discovery(&refreshed, FIVE_MIN, Some(retry), t("2026-11-30T00:10:00Z")),
            Next::Now { .. }
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_interval_and_five_minutes() {
        assert_eq!(backoff(1, FIVE_MIN), Duration::from_secs(5));
        assert_eq!(backoff(2, FIVE_MIN), Duration::from_secs(10));
        assert_eq!(backoff(4, FIVE_MIN), Duration::from_secs(40));
        assert_eq!(backoff(30, FIVE_MIN), FIVE_MIN);
        assert_eq!(
            backoff(30, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(backoff(30, Duration::from_secs(3600)), MAX_BACKOFF);
    }

    #[test]
    fn intervals_read_as_go_durations_with_a_floor() {
        let mut w = warehouse(json!({}), 1, None);
        assert_eq!(interval(&w).unwrap(), FIVE_MIN);
        w.spec.interval = "1s".into();
        assert_eq!(interval(&w).unwrap(), MIN_INTERVAL);
        w.spec.interval = "soon".into();
        assert!(
            interval(&w)
                .unwrap_err()
                .starts_with("spec.interval: time: invalid duration")
        );
    }
}
