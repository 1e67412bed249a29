//! The REFRESH loop (Argo CD's refresh loop): compares the spec with "git" (the
//! knobs' revision table) and writes `status.sync`, `status.health`,
//! conditions and `reconciledAt`, then removes the refresh annotations, then
//! optionally starts an automated sync. It never touches `operation` or
//! `operationState` except to start an automated sync.

use std::sync::Arc;
use std::time::Instant;

use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use serde_json::{Map, Value, json};
use tracing::debug;

use crate::Error;
use crate::app::{
    AppKey, ERROR, FAILED, REFRESH_ANNOTATION, REFRESH_TIMESTAMP_ANNOTATION, Revisions, Sources,
    annotations, at, escape, phase, resolve, str_at,
};
use crate::double::{Ctx, HealthPlan, RefreshRequest, key_of};
use crate::knobs::{HealthStatus, Knobs};
use crate::time;
use crate::write::{Plan, WriteKind, Written};

/// When the next refresh is due.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    Now(&'static str),
    At(Instant),
    Never,
}

pub(crate) async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = key_of(&obj)?;
    let cached = serde_json::to_value(&*obj)?;
    if let Some(action) = not_due(&ctx, &key, &cached) {
        return Ok(action);
    }
    // The cache may lag behind our own last writes: decide on a fresh read.
    let Some(app) = ctx.writer.get(&key).await? else {
        ctx.forget(&key);
        return Ok(Action::await_change());
    };
    if let Some(action) = not_due(&ctx, &key, &app) {
        return Ok(action);
    }
    let knobs = ctx.knobs(&key, &app);

    // Decided per attempt, from the object the attempt writes over: an
    // internal request (O6) is consumed only by a refresh of the completed
    // operation it was made for, which then starts the health after sync.
    let mut consumed: Option<u64> = None;
    let mut next_plan: Option<HealthPlan> = None;
    let mut planned_at = Instant::now();
    let written = ctx
        .writer
        .write(&key, WriteKind::Refresh, app, |cur| {
            let now = Instant::now();
            let (request, mut plan) =
                ctx.with_memory(&key, |m| (m.refresh_request.clone(), m.health_plan.clone()));
            consumed = None;
            // Any comparison after the sync sees the workload it deployed:
            // a refresh someone requested before the double's own post-sync
            // refresh was due serves that request too, as in Argo CD.
            if let Some(request) = request {
                match request_state(cur, &request) {
                    RequestState::Applies => {
                        if request.succeeded {
                            plan = Some(HealthPlan::after_sync(&knobs, now));
                        }
                        consumed = Some(request.id);
                    }
                    RequestState::Stale => consumed = Some(request.id),
                    RequestState::NotYet => {}
                }
            }
            let health = plan.as_ref().map(|p| p.current(now));
            next_plan = plan;
            planned_at = now;
            refresh_plan(cur, &knobs, health)
        })
        .await?;
    let app = match written {
        Written::Done { app, .. } | Written::Skipped(app) | Written::Aborted(app) => app,
        Written::Gone => {
            ctx.forget(&key);
            return Ok(Action::await_change());
        }
    };
    ctx.with_memory(&key, |m| {
        if consumed.is_some() && m.refresh_request.as_ref().map(|r| r.id) == consumed {
            m.refresh_request = None;
        }
        m.health_plan = next_plan.filter(|p| p.pending(planned_at).is_some());
    });

    let app = remove_refresh_annotations(&ctx, &key, app).await?;
    auto_sync(&ctx, &key, app.clone(), &knobs).await?;
    // Timers (a delayed post-sync refresh, Healthy after Progressing) wake
    // this loop at their instant; everything else arrives as an event.
    Ok(not_due(&ctx, &key, &app).unwrap_or_else(Action::await_change))
}

/// `Some(action)` when no refresh is due now.
fn not_due(ctx: &Ctx, key: &AppKey, app: &Value) -> Option<Action> {
    match due(ctx, key, app) {
        Due::Now(reason) => {
            debug!(app = %key, reason, "refresh due");
            None
        }
        Due::At(at) => Some(Action::requeue(
            at.saturating_duration_since(Instant::now())
                .max(std::time::Duration::from_millis(1)),
        )),
        Due::Never => Some(Action::await_change()),
    }
}

/// Argo CD's `needRefreshAppStatus`, plus the double's timers.
fn due(ctx: &Ctx, key: &AppKey, app: &Value) -> Due {
    if at(app, "/status/reconciledAt").is_none() {
        return Due::Now("never reconciled");
    }
    if annotations(app).contains_key(REFRESH_ANNOTATION) {
        return Due::Now("refresh requested by annotation");
    }
    if compared_to(app) != at(app, "/status/sync/comparedTo").cloned() {
        return Due::Now("spec differs from comparedTo");
    }
    // Argo CD watches the resources it manages: a workload whose health
    // changed makes it compare again at once.
    if let Some(live) = ctx.knobs(key, app).live_health
        && str_at(app, "/status/health/status") != Some(live.as_str())
    {
        return Due::Now("the workload's health changed");
    }
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
    let (request, health_change) = ctx.with_memory(key, |m| {
        (
            m.refresh_request.clone(),
            m.health_plan.as_ref().and_then(|p| p.then.map(|t| t.0)),
        )
    });
    // A request waits for the object to show the completion it is about.
    if let Some(request) = request
        && request_state(app, &request) != RequestState::NotYet
    {
        if request.due <= now {
            return Due::Now("requested after an operation");
        }
        consider(request.due);
    }
    if let Some(at) = health_change {
        if at <= now {
            return Due::Now("health changes");
        }
        consider(at);
    }
    if let Some(period) = ctx.config.resync
        && let Some(reconciled) = str_at(app, "/status/reconciledAt").and_then(time::parse)
    {
        let wait = time::until(jiff::Timestamp::now(), time::add(reconciled, period));
        if wait.is_zero() {
            return Due::Now("periodic resync");
        }
        consider(now + wait);
    }
    next.map_or(Due::Never, Due::At)
}

/// Whether an O6 refresh request can be served on `app`.
#[derive(Debug, PartialEq, Eq)]
enum RequestState {
    /// `app` shows the completed operation the request is about.
    Applies,
    /// The operation is not completed in `app` yet (our own final write may
    /// still be on its way to this cache).
    NotYet,
    /// `app` has another operation state: the request is moot.
    Stale,
}

fn request_state(app: &Value, request: &RefreshRequest) -> RequestState {
    if str_at(app, "/status/operationState/startedAt") != Some(request.started_at.as_str()) {
        return RequestState::Stale;
    }
    if str_at(app, "/status/operationState/finishedAt") == Some(request.finished_at.as_str())
        && at(app, "/operation").is_none()
    {
        RequestState::Applies
    } else {
        RequestState::NotYet
    }
}

/// `status.sync.comparedTo` for the current spec.
fn compared_to(app: &Value) -> Option<Value> {
    let spec = at(app, "/spec");
    let mut out = Map::new();
    Sources::of(spec).put(&mut out);
    out.insert(
        "destination".into(),
        spec.and_then(|s| at(s, "/destination"))
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    if let Some(ignore) = spec.and_then(|s| at(s, "/ignoreDifferences")) {
        out.insert("ignoreDifferences".into(), ignore.clone());
    }
    Some(Value::Object(out))
}

/// Synced when the last successful sync (the newest history entry) used the
/// same resolved revisions and the same sources.
fn synced(app: &Value, revisions: &Revisions, sources: &Sources) -> bool {
    let Some(last) = app
        .pointer("/status/history")
        .and_then(Value::as_array)
        .and_then(|h| h.last())
    else {
        return false;
    };
    Revisions::read(last).as_ref() == Some(revisions) && &Sources::of(Some(last)) == sources
}

/// The refresh's status write, or `Skip` if nothing changes.
fn refresh_plan(cur: &Value, knobs: &Knobs, health: Option<HealthStatus>) -> Plan {
    let spec = at(cur, "/spec");
    let sources = Sources::of(spec);
    let now = time::now();
    // Keep reconciledAt >= finishedAt even across clock steps.
    let reconciled = str_at(cur, "/status/operationState/finishedAt")
        .and_then(time::parse)
        .map_or(now, |f| f.max(now));
    let now_text = time::format(now);

    let mut conditions: Vec<Value> = cur
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old_condition = |kind: &str, message: &str| {
        conditions
            .iter()
            .find(|c| str_at(c, "/type") == Some(kind) && str_at(c, "/message") == Some(message))
            .and_then(|c| c.get("lastTransitionTime").cloned())
    };
    // Recomputed by every refresh, keeping lastTransitionTime when unchanged.
    let mut fresh_conditions = Vec::new();

    let mut sync = Map::new();
    match resolve(knobs, &sources, &sources.target_revisions()) {
        Ok(revisions) => {
            let status = if synced(cur, &revisions, &sources) && !knobs.permanent_diff {
                "Synced"
            } else {
                "OutOfSync"
            };
            sync.insert("status".into(), json!(status));
            if let AutoSync::AlreadyFailed(message) =
                auto_sync_decision(cur, knobs, Some(status), Some(&revisions))
            {
                fresh_conditions.push(("SyncError", message));
            }
            revisions.put(&mut sync, false);
        }
        Err(message) => {
            sync.insert("status".into(), json!("Unknown"));
            fresh_conditions.push(("ComparisonError", message));
        }
    }
    let fresh_conditions: Vec<Value> = fresh_conditions
        .into_iter()
        .map(|(kind, message)| {
            let since = old_condition(kind, &message).unwrap_or_else(|| json!(now_text));
            json!({"type": kind, "message": message, "lastTransitionTime": since})
        })
        .collect();
    conditions.retain(|c| !matches!(str_at(c, "/type"), Some("ComparisonError" | "SyncError")));
    conditions.extend(fresh_conditions);
    if let Some(compared) = compared_to(cur) {
        sync.insert("comparedTo".into(), compared);
    }
    let sync = Value::Object(sync);

    let old_health = at(cur, "/status/health");
    let old_status = old_health
        .and_then(|h| str_at(h, "/status"))
        .filter(|s| !s.is_empty());
    let status = match (knobs.live_health.or(health), old_status) {
        (Some(planned), _) => planned.as_str().to_string(),
        (None, Some(old)) => old.to_string(),
        (None, None) => knobs.initial_health.as_str().to_string(),
    };
    let mut new_health = Map::new();
    new_health.insert("status".into(), json!(status));
    if old_status == Some(status.as_str()) {
        // lastTransitionTime changes only with the status.
        for key in ["lastTransitionTime", "message"] {
            if let Some(v) = old_health.and_then(|h| at(h, &format!("/{key}"))) {
                new_health.insert(key.into(), v.clone());
            }
        }
    } else {
        new_health.insert("lastTransitionTime".into(), json!(now_text));
    }
    let new_health = Value::Object(new_health);

    let mut ops = Vec::new();
    if at(cur, "/status").is_none() {
        ops.push(json!({"op": "add", "path": "/status", "value": {}}));
    }
    if at(cur, "/status/sync") != Some(&sync) {
        ops.push(json!({"op": "add", "path": "/status/sync", "value": sync}));
    }
    if at(cur, "/status/health") != Some(&new_health) {
        ops.push(json!({"op": "add", "path": "/status/health", "value": new_health}));
    }
    let old_conditions = at(cur, "/status/conditions");
    if conditions.is_empty() {
        if old_conditions.is_some() {
            ops.push(json!({"op": "remove", "path": "/status/conditions"}));
        }
    } else if old_conditions != Some(&Value::Array(conditions.clone())) {
        ops.push(json!({"op": "add", "path": "/status/conditions", "value": conditions}));
    }
    let reconciled = time::format(reconciled);
    if str_at(cur, "/status/reconciledAt") != Some(reconciled.as_str()) {
        ops.push(json!({"op": "add", "path": "/status/reconciledAt", "value": reconciled}));
    }
    if ops.is_empty() {
        Plan::Skip
    } else {
        Plan::Ops(ops)
    }
}

/// Step 5: after the status write, remove `refresh` and `refresh-timestamp`
/// (the latter guarded by a `test`: a 422 means a newer request arrived, and
/// both annotations stay).
async fn remove_refresh_annotations(ctx: &Ctx, key: &AppKey, app: Value) -> Result<Value, Error> {
    let annotations = annotations(&app);
    let mut ops = Vec::new();
    let path = |name: &str| format!("/metadata/annotations/{}", escape(name));
    if let Some(stamp) = annotations.get(REFRESH_TIMESTAMP_ANNOTATION) {
        ops.push(json!({"op": "test", "path": path(REFRESH_TIMESTAMP_ANNOTATION), "value": stamp}));
        ops.push(json!({"op": "remove", "path": path(REFRESH_TIMESTAMP_ANNOTATION)}));
    }
    if annotations.contains_key(REFRESH_ANNOTATION) {
        ops.push(json!({"op": "remove", "path": path(REFRESH_ANNOTATION)}));
    }
    if ops.is_empty() {
        return Ok(app);
    }
    match ctx
        .writer
        .patch_once(key, WriteKind::RefreshAnnotations, ops)
        .await?
    {
        Ok(Written::Done { app, .. }) => Ok(app),
        Ok(_) => Ok(app),
        Err(status) => {
            debug!(app = %key, reason = %status.reason, "refresh annotations left in place");
            Ok(app)
        }
    }
}

/// Whether `spec.syncPolicy.automated` is on (`enabled` unset or true).
fn automated(app: &Value) -> Option<&Value> {
    let automated = at(app, "/spec/syncPolicy/automated")?;
    match automated.get("enabled").and_then(Value::as_bool) {
        Some(false) => None,
        _ => Some(automated),
    }
}

/// Step 6: Argo CD's auto-sync, for an OutOfSync Application with automated
/// sync on, no operation and no earlier attempt at the same revisions and
/// sources (a failed one raises a `SyncError` condition instead).
async fn auto_sync(ctx: &Ctx, key: &AppKey, app: Value, knobs: &Knobs) -> Result<(), Error> {
    if automated(&app).is_none() || knobs.window_blocked {
        return Ok(());
    }
    let written = ctx
        .writer
        .write(key, WriteKind::AutoSync, app, |cur| {
            auto_sync_plan(cur, knobs)
        })
        .await?;
    if let Written::Done { .. } = written {
        debug!(app = %key, "automated sync requested");
    }
    Ok(())
}

/// Argo CD's auto-sync decision for an Application whose comparison gave
/// `status` at `revisions`.
#[derive(Debug, PartialEq, Eq)]
enum AutoSync {
    Skip,
    Start,
    /// The same revisions and sources were attempted and failed: not
    /// retried; reported as a `SyncError` condition with this message.
    AlreadyFailed(String),
}

fn auto_sync_decision(
    cur: &Value,
    knobs: &Knobs,
    status: Option<&str>,
    revisions: Option<&Revisions>,
) -> AutoSync {
    if automated(cur).is_none()
        || knobs.window_blocked
        || at(cur, "/operation").is_some()
        || status != Some("OutOfSync")
    {
        return AutoSync::Skip;
    }
    let Some(revisions) = revisions else {
        return AutoSync::Skip;
    };
    let sources = Sources::of(at(cur, "/spec"));
    if let Some(last) = at(cur, "/status/operationState/syncResult")
        && Revisions::read(last).as_ref() == Some(revisions)
        && Sources::of(Some(last)) == sources
    {
        if matches!(phase(cur), Some(FAILED | ERROR)) {
            return AutoSync::AlreadyFailed(format!(
                "Failed last sync attempt to [{}]: {}",
                revisions.list().join(" "),
                str_at(cur, "/status/operationState/message").unwrap_or_default()
            ));
        }
        return AutoSync::Skip;
    }
    AutoSync::Start
}

/// Step 6's write: `operation` for the automated sync, and
/// `status.operationState = null`, in one update.
fn auto_sync_plan(cur: &Value, knobs: &Knobs) -> Plan {
    let revisions = at(cur, "/status/sync").and_then(Revisions::read);
    let status = str_at(cur, "/status/sync/status");
    if auto_sync_decision(cur, knobs, status, revisions.as_ref()) != AutoSync::Start {
        return Plan::Skip;
    }
    let (Some(automated), Some(revisions)) = (automated(cur), revisions) else {
        return Plan::Skip;
    };
    let mut sync = Map::new();
    revisions.put(&mut sync, false);
    Sources::of(at(cur, "/spec")).put(&mut sync);
    if let Some(prune) = automated.get("prune") {
        sync.insert("prune".into(), prune.clone());
    }
    if let Some(options) = at(cur, "/spec/syncPolicy/syncOptions") {
        sync.insert("syncOptions".into(), options.clone());
    }
    let retry = at(cur, "/spec/syncPolicy/retry")
        .cloned()
        .unwrap_or_else(|| json!({"limit": 5}));
    let mut ops = vec![json!({
        "op": "add",
        "path": "/operation",
        "value": {
            "sync": sync,
            "initiatedBy": {"automated": true},
            "retry": retry,
        },
    })];
    if at(cur, "/status/operationState").is_some() {
        ops.push(json!({"op": "remove", "path": "/status/operationState"}));
    }
    Plan::Ops(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DoubleConfig;

    fn knobs() -> Knobs {
        Knobs::from_annotations(&Default::default(), &DoubleConfig::default()).0
    }

    fn app(status: Value) -> Value {
        json!({
            "metadata": {"name": "a", "namespace": "n", "resourceVersion": "1"},
            "spec": {
                "project": "default",
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "dev"},
                "source": {"repoURL": "https://example.com/r.git", "targetRevision": "v2"},
            },
            "status": status,
        })
    }

    fn ops(plan: Plan) -> Vec<Value> {
        match plan {
            Plan::Ops(ops) => ops,
            Plan::Skip => Vec::new(),
            Plan::Abort => panic!("refresh never aborts"),
        }
    }

    fn value_at<'a>(ops: &'a [Value], path: &str) -> Option<&'a Value> {
        ops.iter().find(|o| o["path"] == path).map(|o| &o["value"])
    }

    #[test]
    fn new_spec_is_out_of_sync_at_the_resolved_revision() {
        let cur = app(
            json!({"history": [{"id": 0, "revision": "v1", "deployedAt": "2026-01-01T00:00:00Z",
            "source": {"repoURL": "https://example.com/r.git", "targetRevision": "v1"}}]}),
        );
        let ops = ops(refresh_plan(&cur, &knobs(), None));
        let sync = value_at(&ops, "/status/sync").cloned().unwrap_or_default();
        assert_eq!(sync["status"], "OutOfSync");
        assert_eq!(sync["revision"], "v2");
        assert_eq!(sync["comparedTo"]["source"]["targetRevision"], "v2");
        assert_eq!(sync["comparedTo"]["destination"]["namespace"], "dev");
        assert!(value_at(&ops, "/status/reconciledAt").is_some());
    }

    #[test]
    fn last_history_entry_at_same_revision_and_source_is_synced() {
        let cur = app(
            json!({"history": [{"id": 3, "revision": "v2", "deployedAt": "2026-01-01T00:00:00Z",
            "source": {"repoURL": "https://example.com/r.git", "targetRevision": "v2"}}]}),
        );
        let ops = ops(refresh_plan(&cur, &knobs(), None));
        assert_eq!(
            value_at(&ops, "/status/sync").map(|s| &s["status"]),
            Some(&json!("Synced"))
        );
    }

    #[test]
    fn missing_status_is_created_first() {
        let mut cur = app(json!(null));
        if let Some(o) = cur.as_object_mut() {
            o.remove("status");
        }
        let ops = ops(refresh_plan(&cur, &knobs(), None));
        assert_eq!(ops[0], json!({"op": "add", "path": "/status", "value": {}}));
        assert_eq!(
            value_at(&ops, "/status/health").map(|h| &h["status"]),
            Some(&json!("Healthy"))
        );
    }

    #[test]
    fn health_transition_time_changes_only_with_status() {
        let health = json!({"status": "Healthy", "lastTransitionTime": "2020-01-01T00:00:00Z"});
        let cur = app(json!({"health": health}));
        let same = ops(refresh_plan(&cur, &knobs(), Some(HealthStatus::Healthy)));
        assert!(value_at(&same, "/status/health").is_none());
        let changed = ops(refresh_plan(&cur, &knobs(), Some(HealthStatus::Degraded)));
        let h = value_at(&changed, "/status/health")
            .cloned()
            .unwrap_or_default();
        assert_eq!(h["status"], "Degraded");
        assert_ne!(h["lastTransitionTime"], "2020-01-01T00:00:00Z");
    }

    #[test]
    fn unresolvable_revision_raises_comparison_error_and_unknown() {
        let (k, _) = Knobs::from_annotations(
            &[(crate::knobs::UNRESOLVABLE.to_string(), "v2".to_string())].into(),
            &DoubleConfig::default(),
        );
        let ops = ops(refresh_plan(&app(json!({})), &k, None));
        assert_eq!(
            value_at(&ops, "/status/sync").map(|s| &s["status"]),
            Some(&json!("Unknown"))
        );
        let conditions = value_at(&ops, "/status/conditions")
            .cloned()
            .unwrap_or_default();
        assert_eq!(conditions[0]["type"], "ComparisonError");
        assert!(
            conditions[0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Failed to load target state: "))
        );
    }

    #[test]
    fn auto_sync_writes_operation_and_clears_state_once_per_revision() {
        let mut cur = app(json!({"sync": {"status": "OutOfSync", "revision": "v2"},
            "operationState": {"phase": "Succeeded", "startedAt": "2026-01-01T00:00:00Z", "operation": {},
                "syncResult": {"revision": "v1", "source": {"repoURL": "https://example.com/r.git", "targetRevision": "v1"}}}}));
        cur["spec"]["syncPolicy"] = json!({"automated": {"prune": true}});
        let first = ops(auto_sync_plan(&cur, &knobs()));
        let op = value_at(&first, "/operation").cloned().unwrap_or_default();
        assert_eq!(op["sync"]["revision"], "v2");
        assert_eq!(op["sync"]["prune"], true);
        assert_eq!(op["initiatedBy"]["automated"], true);
        assert_eq!(op["retry"]["limit"], 5);
        assert!(
            first
                .iter()
                .any(|o| o["op"] == "remove" && o["path"] == "/status/operationState")
        );
    }

    #[test]
    fn failed_auto_sync_at_the_same_revision_is_not_retried_but_reported() {
        let mut cur = app(json!({"sync": {"status": "OutOfSync", "revision": "v2"},
            "operationState": {"phase": "Failed", "message": "boom", "startedAt": "2026-01-01T00:00:00Z", "operation": {},
                "syncResult": {"revision": "v2", "source": {"repoURL": "https://example.com/r.git", "targetRevision": "v2"}}}}));
        cur["spec"]["syncPolicy"] = json!({"automated": {}});
        assert!(ops(auto_sync_plan(&cur, &knobs())).is_empty());
        let refresh = ops(refresh_plan(&cur, &knobs(), None));
        let conditions = value_at(&refresh, "/status/conditions")
            .cloned()
            .unwrap_or_default();
        assert_eq!(conditions[0]["type"], "SyncError");
        assert_eq!(
            conditions[0]["message"],
            "Failed last sync attempt to [v2]: boom"
        );
    }
}
