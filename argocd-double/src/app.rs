//! Reading an Application as plain JSON (the whole object, so that paths in
//! JSON patches match what is read), and the pure parts of Argo CD's logic
//! the two loops share.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::knobs::{Knobs, Unresolvable};

/// `status.operationState.phase` values.
pub(crate) const RUNNING: &str = "Running";
pub(crate) const TERMINATING: &str = "Terminating";
pub(crate) const SUCCEEDED: &str = "Succeeded";
pub(crate) const FAILED: &str = "Failed";
pub(crate) const ERROR: &str = "Error";

pub(crate) const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";
pub(crate) const REFRESH_TIMESTAMP_ANNOTATION: &str = "argocd.argoproj.io/refresh-timestamp";

/// An Application's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppKey {
    pub namespace: String,
    pub name: String,
}

impl AppKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

pub(crate) fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// A present, non-null value at `pointer`.
pub(crate) fn at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer).filter(|v| !v.is_null())
}

pub(crate) fn annotations(app: &Value) -> BTreeMap<String, String> {
    app.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn resource_version(app: &Value) -> Option<&str> {
    str_at(app, "/metadata/resourceVersion")
}

/// `status.operationState.phase`, if there is an operation state.
pub(crate) fn phase(app: &Value) -> Option<&str> {
    at(app, "/status/operationState").and_then(|s| str_at(s, "/phase"))
}

/// Escapes a JSON pointer segment (RFC 6901).
pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The sources of a spec or an operation: `sources` when non-empty (Argo
/// CD's `HasMultipleSources`), else `source`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Sources {
    Single(Value),
    Multi(Vec<Value>),
    None,
}

impl Sources {
    /// From an object with `source` / `sources` keys (spec, operation.sync).
    pub(crate) fn of(holder: Option<&Value>) -> Self {
        let Some(holder) = holder else {
            return Self::None;
        };
        match holder.get("sources").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => Self::Multi(list.clone()),
            _ => match holder.get("source") {
                Some(source) if source.is_object() => Self::Single(source.clone()),
                _ => Self::None,
            },
        }
    }

    pub(crate) fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// Target revisions, one per source.
    pub(crate) fn target_revisions(&self) -> Vec<String> {
        let rev = |s: &Value| {
            s.get("targetRevision")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match self {
            Self::Single(s) => vec![rev(s)],
            Self::Multi(list) => list.iter().map(rev).collect(),
            Self::None => Vec::new(),
        }
    }

    /// Writes `source` or `sources` into `object`.
    pub(crate) fn put(&self, object: &mut serde_json::Map<String, Value>) {
        match self {
            Self::Single(s) => {
                object.insert("source".into(), s.clone());
            }
            Self::Multi(list) => {
                object.insert("sources".into(), Value::Array(list.clone()));
            }
            Self::None => {}
        }
    }
}

/// Revisions, resolved or requested, shaped like the sources they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Revisions {
    Single(String),
    Multi(Vec<String>),
}

impl Revisions {
    pub(crate) fn list(&self) -> Vec<String> {
        match self {
            Self::Single(r) => vec![r.clone()],
            Self::Multi(list) => list.clone(),
        }
    }

    /// Writes `revision` or `revisions` into `object`. Argo CD's
    /// `syncResult.revision` is required, so multi-source results also carry
    /// an empty `revision`.
    pub(crate) fn put(&self, object: &mut serde_json::Map<String, Value>, always_revision: bool) {
        match self {
            Self::Single(r) => {
                object.insert("revision".into(), json!(r));
            }
            Self::Multi(list) => {
                if always_revision {
                    object.insert("revision".into(), json!(""));
                }
                object.insert("revisions".into(), json!(list));
            }
        }
    }

    /// `revision` / `revisions` read back from an object such as a history
    /// entry or a sync result.
    pub(crate) fn read(object: &Value) -> Option<Self> {
        match object.get("revisions").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => Some(Self::Multi(
                list.iter()
                    .map(|r| r.as_str().unwrap_or_default().to_string())
                    .collect(),
            )),
            _ => object
                .get("revision")
                .and_then(Value::as_str)
                .map(|r| Self::Single(r.to_string())),
        }
    }
}

/// Why revisions could not be resolved, as Argo CD words it in the
/// `ComparisonError` condition.
pub(crate) fn resolve_failure_message(failed: &Unresolvable, index: usize, count: usize) -> String {
    format!(
        "Failed to load target state: failed to generate manifest for source {} of {}: rpc error: code = Unknown desc = unable to resolve '{}' to a commit SHA",
        index + 1,
        count.max(1),
        failed.0
    )
}

/// Resolves `requested` revisions (one per source) with the knobs. The shape
/// follows `sources`.
pub(crate) fn resolve(
    knobs: &Knobs,
    sources: &Sources,
    requested: &[String],
) -> Result<Revisions, String> {
    let count = requested.len();
    let mut resolved = Vec::with_capacity(count);
    for (i, rev) in requested.iter().enumerate() {
        match knobs.resolve(rev) {
            Ok(r) => resolved.push(r),
            Err(failed) => return Err(resolve_failure_message(&failed, i, count)),
        }
    }
    Ok(match sources {
        Sources::Multi(_) => Revisions::Multi(resolved),
        _ => Revisions::Single(resolved.into_iter().next().unwrap_or_default()),
    })
}

/// `spec.revisionHistoryLimit`, default 10.
pub(crate) fn revision_history_limit(app: &Value) -> usize {
    app.pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .map(|n| usize::try_from(n).unwrap_or(0))
        .unwrap_or(10)
}

/// Argo CD's `history` append: `id = last.id + 1` (0 for the first), trimmed
/// to the newest `limit` entries.
pub(crate) fn append_history(history: &[Value], mut entry: Value, limit: usize) -> Vec<Value> {
    let next_id = history
        .last()
        .and_then(|h| h.get("id"))
        .and_then(Value::as_i64)
        .map(|id| id + 1)
        .unwrap_or(0);
    if let Some(object) = entry.as_object_mut() {
        object.insert("id".into(), json!(next_id));
    }
    let mut out: Vec<Value> = history.to_vec();
    out.push(entry);
    if out.len() > limit {
        out.drain(..out.len() - limit);
    }
    out
}

/// The wait before retry attempt `retry_count` (1 for the first retry):
/// `duration * factor^(retry_count-1)`, capped at `maxDuration`, with Argo
/// CD's defaults 5s, 2 and 3m.
pub(crate) fn retry_backoff(retry: Option<&Value>, retry_count: i64) -> Duration {
    let backoff = retry.and_then(|r| r.get("backoff"));
    let duration_of = |key: &str, default: Duration| {
        backoff
            .and_then(|b| b.get(key))
            .and_then(Value::as_str)
            .and_then(|s| crate::knobs::parse_duration(s).ok())
            .unwrap_or(default)
    };
    let base = duration_of("duration", Duration::from_secs(5));
    let max = duration_of("maxDuration", Duration::from_secs(180));
    let factor = backoff
        .and_then(|b| b.get("factor"))
        .and_then(Value::as_i64)
        .unwrap_or(2)
        .max(1);
    let exponent = i32::try_from((retry_count - 1).max(0)).unwrap_or(i32::MAX);
    let wait = base.as_secs_f64() * (factor as f64).powi(exponent);
    if !max.is_zero() && wait > max.as_secs_f64() {
        return max;
    }
    Duration::try_from_secs_f64(wait).unwrap_or(max)
}

/// Whether an attempt that ended Failed or Error is retried: `retryCount <
/// retry.limit`, or `limit < 0` (forever).
pub(crate) fn retry_allowed(retry: Option<&Value>, retry_count: i64) -> bool {
    let Some(limit) = retry.and_then(|r| r.get("limit")).and_then(Value::as_i64) else {
        return false;
    };
    limit < 0 || retry_count < limit
}

/// Argo CD's `FormatAppConditions` for the conditions that stop a sync
/// (`ComparisonError`, `InvalidSpecError`): `"<Type>: <msg>"`, joined by `;`.
pub(crate) fn blocking_conditions(app: &Value) -> Option<String> {
    let list = app
        .pointer("/status/conditions")
        .and_then(Value::as_array)?;
    let messages: Vec<String> = list
        .iter()
        .filter_map(|c| {
            let kind = c.get("type").and_then(Value::as_str)?;
            matches!(kind, "ComparisonError" | "InvalidSpecError").then(|| {
                format!(
                    "{kind}: {}",
                    c.get("message").and_then(Value::as_str).unwrap_or_default()
                )
            })
        })
        .collect();
    (!messages.is_empty()).then(|| messages.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_ids_continue_and_trim_keeps_the_newest() {
        let history: Vec<Value> = (0..3).map(|id| json!({"id": id})).collect();
        let out = append_history(&history, json!({"revision": "x"}), 3);
        let ids: Vec<i64> = out.iter().filter_map(|h| h["id"].as_i64()).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(out[2]["revision"], "x");
        let first = append_history(&[], json!({}), 10);
        assert_eq!(first[0]["id"], 0);
    }

    #[test]
    fn backoff_follows_argo_defaults_and_caps() {
        assert_eq!(retry_backoff(None, 1), Duration::from_secs(5));
        assert_eq!(retry_backoff(None, 2), Duration::from_secs(10));
        assert_eq!(retry_backoff(None, 10), Duration::from_secs(180));
        let retry =
            json!({"limit": 3, "backoff": {"duration": "1s", "factor": 3, "maxDuration": "5s"}});
        assert_eq!(retry_backoff(Some(&retry), 1), Duration::from_secs(1));
        assert_eq!(retry_backoff(Some(&retry), 2), Duration::from_secs(3));
        assert_eq!(retry_backoff(Some(&retry), 3), Duration::from_secs(5));
    }

    #[test]
    fn retry_limit_semantics() {
        assert!(!retry_allowed(None, 0));
        assert!(retry_allowed(Some(&json!({"limit": 2})), 1));
        assert!(!retry_allowed(Some(&json!({"limit": 2})), 2));
        assert!(retry_allowed(Some(&json!({"limit": -1})), 99));
    }

    #[test]
    fn multiple_sources_win_over_source() {
        let spec = json!({"source": {"repoURL": "a"}, "sources": [{"repoURL": "b", "targetRevision": "v1"}, {"repoURL": "c"}]});
        let sources = Sources::of(Some(&spec));
        assert!(matches!(sources, Sources::Multi(ref l) if l.len() == 2));
        assert_eq!(
            sources.target_revisions(),
            vec!["v1".to_string(), String::new()]
        );
        let spec = json!({"source": {"repoURL": "a", "targetRevision": "main"}, "sources": []});
        assert_eq!(
            Sources::of(Some(&spec)).target_revisions(),
            vec!["main".to_string()]
        );
    }

    #[test]
    fn blocking_conditions_are_formatted_like_argo() {
        let app = json!({"status": {"conditions": [
            {"type": "ComparisonError", "message": "a"},
            {"type": "SyncError", "message": "ignored"},
            {"type": "InvalidSpecError", "message": "b"},
        ]}});
        assert_eq!(
            blocking_conditions(&app).as_deref(),
            Some("ComparisonError: a;InvalidSpecError: b")
        );
        assert_eq!(blocking_conditions(&json!({})), None);
    }
}
