//! How long a reconcile that failed waits before it runs again.
//!
//! When the API server pushes back (429 from throttling or from priority and
//! fairness, with `retryAfterSeconds`), it is given the time it asked for;
//! otherwise each failure in a row doubles the wait, from half a second up
//! to five minutes, per object. A success forgets the object's failures.
//! Either way the object is reconciled again: a wake-up that arrived while
//! it was failing is not lost, since every reconcile reads the caches anew.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::Error;

const FIRST: Duration = Duration::from_millis(500);
const LONGEST: Duration = Duration::from_secs(300);

/// Failures in a row, by object.
#[derive(Default)]
pub struct ErrorBackoff {
    failures: Mutex<HashMap<(String, String), u32>>,
}

impl ErrorBackoff {
    /// The wait after `error`, one more failure in a row of the object's.
    pub fn after_failure(&self, key: (String, String), error: &Error) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        retry_after(error).unwrap_or_else(|| doubled(*count))
    }

    /// The object reconciled: its next failure starts the backoff again.
    pub fn succeeded(&self, key: &(String, String)) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// `FIRST` doubled for each failure after the first, at most `LONGEST`.
fn doubled(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << doublings).min(LONGEST)
}

/// What the API server asked for when it throttled the request.
fn retry_after(error: &Error) -> Option<Duration> {
    let status = match error {
        Error::Kube(kube::Error::Api(status))
        | Error::Read {
            source: kube::Error::Api(status),
            ..
        } => status,
        _ => return None,
    };
    if status.code != 429 {
        return None;
    }
    let seconds = status
        .details
        .as_ref()
        .map(|d| u64::from(d.retry_after_seconds))
        .filter(|s| *s > 0)
        .unwrap_or(1);
    Some(Duration::from_secs(seconds).min(LONGEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (String, String) {
        ("demo".into(), "p1".into())
    }

    fn throttled(retry_after_seconds: u32) -> Error {
        let status = kube::core::Status::failure("too many requests", "TooManyRequests")
            .with_code(429)
            .with_details(kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds,
            });
        Error::Kube(kube::Error::Api(Box::new(status)))
    }

    fn failed() -> Error {
        Error::Stale {
            what: "Promotion".into(),
        }
    }

    #[test]
    fn failures_in_a_row_double_the_wait_up_to_five_minutes() {
        let backoff = ErrorBackoff::default();
        let waits: Vec<Duration> = (0..12)
            .map(|_| backoff.after_failure(key(), &failed()))
            .collect();
        assert_eq!(waits[0], Duration::from_millis(500));
        assert_eq!(waits[1], Duration::from_secs(1));
        assert_eq!(waits[3], Duration::from_secs(4));
        assert_eq!(waits[11], Duration::from_secs(300));
    }

    #[test]
    fn a_success_starts_the_backoff_again() {
        let backoff = ErrorBackoff::default();
        for _ in 0..5 {
            backoff.after_failure(key(), &failed());
        }
        backoff.succeeded(&key());
        assert_eq!(
            backoff.after_failure(key(), &failed()),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_throttled_request_waits_as_long_as_the_api_server_asked() {
        let backoff = ErrorBackoff::default();
        assert_eq!(
            backoff.after_failure(key(), &throttled(7)),
            Duration::from_secs(7)
        );
        // Throttled without saying how long: a second.
        assert_eq!(
            backoff.after_failure(key(), &throttled(0)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn objects_back_off_each_on_its_own() {
        let backoff = ErrorBackoff::default();
        for _ in 0..4 {
            backoff.after_failure(key(), &failed());
        }
        assert_eq!(
            backoff.after_failure(("demo".into(), "p2".into()), &failed()),
            Duration::from_millis(500)
        );
    }
}
