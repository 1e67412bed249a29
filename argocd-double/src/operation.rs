//! The OPERATION loop (Argo CD's operation loop, steps O0-O6): runs the sync an Application's
//! `.operation` asks for and reports it in `status.operationState`.
//!
//! The state of a sync lives in the object, as in Argo CD: the phase, whether
//! `syncResult` is written yet, `finishedAt` on a Running state (a retry is
//! waiting) and `retryCount`. The only thing kept in memory is when the
//! current attempt's sync delay ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use serde_json::{Map, Value, json};
use tracing::{debug, info};

use crate::Error;
use crate::app::{
    AppKey, ERROR, FAILED, RUNNING, Revisions, SUCCEEDED, Sources, TERMINATING, at,
    blocking_conditions, phase, resolve, retry_allowed, retry_backoff, revision_history_limit,
    str_at,
};
use crate::double::{Ctx, HealthPlan, RefreshRequest, SyncTimer, key_of};
use crate::journal::{InfoEntry, SyncRecord};
use crate::knobs::{Knobs, Outcome, PostSyncRefresh};
use crate::time;
use crate::write::{Plan, WriteKind, Written};

pub(crate) const BLOCKED_BY_WINDOW: &str = "Sync operation blocked by sync window";
pub(crate) const TASKS_RUNNING: &str = "one or more tasks are running";
pub(crate) const SUCCESS: &str = "successfully synced (all tasks run)";
pub(crate) const NO_OPERATION: &str = "Invalid operation request: no operation specified";
pub(crate) const TERMINATED: &str = "Operation terminated";

pub(crate) async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = key_of(&obj)?;
    // Argo CD's operation queue only takes Applications with an operation.
    if obj.data.get("operation").is_none_or(Value::is_null) {
        return Ok(Action::await_change());
    }
    // Always decide on the object as the API server has it now.
    let Some(app) = ctx.writer.get(&key).await? else {
        ctx.forget(&key);
        return Ok(Action::await_change());
    };
    if at(&app, "/operation").is_none() {
        return Ok(Action::await_change());
    }
    let app = match phase(&app) {
        // O0: an operation is in progress. Continue it; the `.operation`
        // written over it is dropped when it completes.
        Some(RUNNING | TERMINATING) => app,
        _ => match start(&ctx, &key, app).await? {
            Some(app) => app,
            None => return Ok(Action::await_change()),
        },
    };
    drive(&ctx, &key, app).await
}

fn ensure_status(app: &Value) -> Vec<Value> {
    if at(app, "/status").is_none() {
        vec![json!({"op": "add", "path": "/status", "value": {}})]
    } else {
        Vec::new()
    }
}

fn retry_count(state: &Value) -> i64 {
    state.get("retryCount").and_then(Value::as_i64).unwrap_or(0)
}

/// Whether `cur` still has the operation state started at `started_at`, in
/// progress.
fn still_ours(cur: &Value, started_at: &str) -> bool {
    str_at(cur, "/status/operationState/startedAt") == Some(started_at)
        && matches!(phase(cur), Some(RUNNING | TERMINATING))
}

/// O1: `operationState = {operation: <copy>, phase: Running, startedAt: now}`.
async fn start(ctx: &Ctx, key: &AppKey, app: Value) -> Result<Option<Value>, Error> {
    let written = ctx
        .writer
        .write(key, WriteKind::OperationStart, app, |cur| {
            let Some(operation) = at(cur, "/operation") else {
                return Plan::Abort;
            };
            if matches!(phase(cur), Some(RUNNING | TERMINATING)) {
                return Plan::Abort;
            }
            let mut ops = ensure_status(cur);
            ops.push(json!({
                "op": "add",
                "path": "/status/operationState",
                "value": {
                    "operation": operation,
                    "phase": RUNNING,
                    "startedAt": time::format(time::now()),
                },
            }));
            Plan::Ops(ops)
        })
        .await?;
    match written {
        Written::Done { app, instants } => {
            let state = at(&app, "/status/operationState")
                .cloned()
                .unwrap_or_default();
            let operation = state.get("operation").cloned().unwrap_or_default();
            let record = SyncRecord {
                app: key.clone(),
                started_at: str_at(&state, "/startedAt").unwrap_or_default().to_string(),
                started: instants.acknowledged,
                info: info_entries(&operation),
                initiated_by: str_at(&operation, "/initiatedBy/username").map(String::from),
                automated: operation
                    .pointer("/initiatedBy/automated")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                requested_revisions: Vec::new(),
                resolved_revisions: None,
                attempts: 1,
                phase: None,
                message: None,
                finished_at: None,
                final_write: None,
                abandoned: false,
            };
            info!(app = %key, started_at = %record.started_at, promotion = ?record.promotion(), "sync operation started");
            ctx.journal.started(record);
            ctx.with_memory(key, |m| m.sync_timer = None);
            Ok(Some(app))
        }
        // Someone else's write started it between our read and write.
        Written::Aborted(app) if matches!(phase(&app), Some(RUNNING | TERMINATING)) => {
            Ok(Some(app))
        }
        Written::Aborted(_) | Written::Skipped(_) | Written::Gone => Ok(None),
    }
}

fn info_entries(operation: &Value) -> Vec<InfoEntry> {
    operation
        .get("info")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|i| InfoEntry {
                    name: str_at(i, "/name").unwrap_or_default().to_string(),
                    value: str_at(i, "/value").unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How an attempt ends (before retry is considered).
struct Completion {
    phase: &'static str,
    message: String,
    /// The `syncResult` to report; `None` removes it.
    sync_result: Option<Value>,
}

/// O2-O5 for an operation state in progress.
async fn drive(ctx: &Ctx, key: &AppKey, mut app: Value) -> Result<Action, Error> {
    loop {
        let Some(state) = at(&app, "/status/operationState").cloned() else {
            return Ok(Action::await_change());
        };
        let started_at = str_at(&state, "/startedAt").unwrap_or_default().to_string();
        let knobs = ctx.knobs(key, &app);
        let retries = retry_count(&state);
        match phase(&app) {
            Some(TERMINATING) => {
                let completion = Completion {
                    phase: FAILED,
                    message: TERMINATED.into(),
                    sync_result: state.get("syncResult").cloned(),
                };
                return complete(ctx, key, app, &knobs, completion, true).await;
            }
            Some(RUNNING) => {}
            _ => return Ok(Action::await_change()),
        }

        // A retry is waiting (Running with finishedAt).
        if let Some(finished) = str_at(&state, "/finishedAt").and_then(time::parse) {
            let retry = state.pointer("/operation/retry");
            let retry_at = time::add(finished, retry_backoff(retry, retries));
            let wait = time::until(jiff::Timestamp::now(), retry_at);
            if !wait.is_zero() {
                return Ok(Action::requeue(wait));
            }
            let refresh = retry
                .and_then(|r| r.get("refresh"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let message = if refresh {
                format!("Retrying operation with latest revisions. Attempt #{retries}")
            } else {
                format!("Retrying operation. Attempt #{retries}")
            };
            let done = progress(ctx, key, app, &started_at, |state| {
                state.insert("message".into(), json!(message));
                state.remove("finishedAt");
                state.remove("syncResult");
                if refresh
                    && let Some(sync) = state
                        .get_mut("operation")
                        .and_then(|o| o.get_mut("sync"))
                        .and_then(Value::as_object_mut)
                {
                    sync.remove("revision");
                    sync.remove("revisions");
                }
            })
            .await?;
            match done {
                Some(next) => {
                    ctx.journal.update(key, &started_at, |r| r.attempts += 1);
                    app = next;
                    continue;
                }
                None => return Ok(Action::await_change()),
            }
        }

        // O2: sync window.
        if knobs.window_blocked {
            if str_at(&state, "/message") != Some(BLOCKED_BY_WINDOW) {
                progress(ctx, key, app, &started_at, |state| {
                    state.insert("message".into(), json!(BLOCKED_BY_WINDOW));
                })
                .await?;
            }
            // Re-checked on the next change (e.g. the knob's removal).
            return Ok(Action::await_change());
        }

        // O3: validate.
        let operation = state.get("operation").cloned().unwrap_or_default();
        let Some(sync) = at(&operation, "/sync").cloned() else {
            let completion = Completion {
                phase: ERROR,
                message: NO_OPERATION.into(),
                sync_result: None,
            };
            return complete(ctx, key, app, &knobs, completion, false).await;
        };
        let spec_sources = Sources::of(at(&app, "/spec"));
        let sync_sources = Sources::of(Some(&sync));
        let sources = if sync_sources.is_none() {
            spec_sources
        } else {
            sync_sources
        };
        let requested = requested_revisions(&sync, &sources);
        let resolved = match resolve(&knobs, &sources, &requested) {
            Ok(resolved) => resolved,
            Err(message) => {
                let completion = Completion {
                    phase: ERROR,
                    message: format!("ComparisonError: {message}"),
                    sync_result: None,
                };
                return complete(ctx, key, app, &knobs, completion, false).await;
            }
        };
        // The sync's own comparison supersedes ComparisonErrors from an
        // earlier refresh; other spec errors stop the sync.
        if let Some(message) = blocking_conditions(&app).filter(|m| m.contains("InvalidSpecError"))
        {
            let completion = Completion {
                phase: ERROR,
                message,
                sync_result: None,
            };
            return complete(ctx, key, app, &knobs, completion, false).await;
        }

        // O4: running, with the resolved revisions.
        if at(&state, "/syncResult").is_none() {
            let mut result = Map::new();
            resolved.put(&mut result, true);
            sources.put(&mut result);
            let result = Value::Object(result);
            let done = progress(ctx, key, app, &started_at, |state| {
                state.insert("syncResult".into(), result.clone());
                state.insert("message".into(), json!(TASKS_RUNNING));
            })
            .await?;
            let resolved_list = resolved.list();
            ctx.journal.update(key, &started_at, |r| {
                r.requested_revisions = requested.clone();
                r.resolved_revisions = Some(resolved_list);
            });
            let due = Instant::now() + knobs.sync_delay;
            ctx.with_memory(key, |m| {
                m.sync_timer = Some(SyncTimer {
                    started_at: started_at.clone(),
                    retry_count: retries,
                    due,
                })
            });
            match done {
                Some(next) => {
                    app = next;
                    continue;
                }
                None => return Ok(Action::await_change()),
            }
        }

        let outcome = knobs.outcome(retries).clone();
        if outcome == Outcome::Hang {
            // Runs until terminated.
            return Ok(Action::await_change());
        }
        let due = ctx.with_memory(key, |m| match &m.sync_timer {
            Some(t) if t.started_at == started_at && t.retry_count == retries => t.due,
            // Not started by this process (e.g. after a restart): start now.
            _ => {
                let due = Instant::now() + knobs.sync_delay;
                m.sync_timer = Some(SyncTimer {
                    started_at: started_at.clone(),
                    retry_count: retries,
                    due,
                });
                due
            }
        });
        let now = Instant::now();
        if due > now {
            return Ok(Action::requeue(due - now));
        }

        // O5: finish.
        let mut sync_result = state.get("syncResult").cloned().unwrap_or_default();
        let completion = match outcome {
            Outcome::Succeed => {
                if let Some(result) = sync_result.as_object_mut() {
                    result.insert("resources".into(), resources(&app, key, "Synced", None));
                }
                Completion {
                    phase: SUCCEEDED,
                    message: SUCCESS.into(),
                    sync_result: Some(sync_result),
                }
            }
            Outcome::Fail(reason) => {
                if let Some(result) = sync_result.as_object_mut() {
                    result.insert(
                        "resources".into(),
                        resources(&app, key, "SyncFailed", Some(&reason)),
                    );
                }
                Completion {
                    phase: FAILED,
                    message: format!("one or more objects failed to apply, reason: {reason}"),
                    sync_result: Some(sync_result),
                }
            }
            Outcome::Error(message) => Completion {
                phase: ERROR,
                message,
                sync_result: Some(sync_result),
            },
            Outcome::Hang => return Ok(Action::await_change()),
        };
        return complete(ctx, key, app, &knobs, completion, false).await;
    }
}

/// `operation.sync.revision(s)` where set, else the sources' targetRevisions.
fn requested_revisions(sync: &Value, sources: &Sources) -> Vec<String> {
    let targets = sources.target_revisions();
    match sources {
        Sources::Multi(_) => {
            let requested: Vec<&str> = sync
                .get("revisions")
                .and_then(Value::as_array)
                .map(|l| l.iter().map(|r| r.as_str().unwrap_or_default()).collect())
                .unwrap_or_default();
            targets
                .iter()
                .enumerate()
                .map(|(i, target)| match requested.get(i) {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => target.clone(),
                })
                .collect()
        }
        _ => match str_at(sync, "/revision") {
            Some(r) if !r.is_empty() => vec![r.to_string()],
            _ => vec![targets.into_iter().next().unwrap_or_default()],
        },
    }
}

/// `syncResult.resources`: the one Deployment the double pretends each
/// Application manages, named after it, in its destination namespace.
fn resources(app: &Value, key: &AppKey, status: &str, message: Option<&str>) -> Value {
    let namespace = str_at(app, "/spec/destination/namespace").unwrap_or_default();
    let message = message
        .map(String::from)
        .unwrap_or_else(|| format!("deployment.apps/{} configured", key.name));
    json!([{
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
        "namespace": namespace,
        "name": key.name,
        "status": status,
        "message": message,
        "hookPhase": RUNNING,
        "syncPhase": "Sync",
    }])
}

/// Writes a changed copy of the operation state started at `started_at`.
/// Returns the updated Application, or `None` if the state is no longer
/// ours (it was replaced or cleared) or the Application is gone.
async fn progress(
    ctx: &Ctx,
    key: &AppKey,
    app: Value,
    started_at: &str,
    change: impl Fn(&mut Map<String, Value>),
) -> Result<Option<Value>, Error> {
    let written = ctx
        .writer
        .write(key, WriteKind::OperationProgress, app, |cur| {
            if !still_ours(cur, started_at) || phase(cur) != Some(RUNNING) {
                return Plan::Abort;
            }
            let Some(mut state) = at(cur, "/status/operationState")
                .and_then(Value::as_object)
                .cloned()
            else {
                return Plan::Abort;
            };
            change(&mut state);
            Plan::Ops(vec![json!({
                "op": "add",
                "path": "/status/operationState",
                "value": state,
            })])
        })
        .await?;
    match written {
        Written::Done { app, .. } => Ok(Some(app)),
        Written::Aborted(app) => {
            abandoned(ctx, key, &app, started_at);
            Ok(None)
        }
        Written::Skipped(app) => Ok(Some(app)),
        Written::Gone => Ok(None),
    }
}

fn abandoned(ctx: &Ctx, key: &AppKey, app: &Value, started_at: &str) {
    if str_at(app, "/status/operationState/startedAt") != Some(started_at) {
        info!(app = %key, %started_at, "operation state replaced before it completed");
        ctx.journal.update(key, started_at, |r| r.abandoned = true);
    }
}

/// O5: ends an attempt. A Failed or Error attempt with retries left goes
/// back to Running (with `finishedAt`, waiting for its backoff); otherwise a
/// success appends history first, then one write completes the state and
/// removes `.operation`, and a refresh is requested (O6).
async fn complete(
    ctx: &Ctx,
    key: &AppKey,
    app: Value,
    knobs: &Knobs,
    completion: Completion,
    terminating: bool,
) -> Result<Action, Error> {
    let Some(state) = at(&app, "/status/operationState").cloned() else {
        return Ok(Action::await_change());
    };
    let started_at = str_at(&state, "/startedAt").unwrap_or_default().to_string();
    let retries = retry_count(&state);
    let retry = state.pointer("/operation/retry");

    if completion.phase != SUCCEEDED
        && !terminating
        && knobs.honor_retry
        && retry_allowed(retry, retries)
    {
        let attempt = retries + 1;
        let wait = retry_backoff(retry, attempt);
        let now = time::now();
        let message = format!(
            "{}. Retrying attempt #{attempt} at {}.",
            completion.message,
            time::kitchen(time::add(now, wait))
        );
        debug!(app = %key, attempt, ?wait, "retrying");
        progress(ctx, key, app, &started_at, |state| {
            state.insert("phase".into(), json!(RUNNING));
            state.insert("finishedAt".into(), json!(time::format(now)));
            state.insert("retryCount".into(), json!(attempt));
            state.insert("message".into(), json!(message));
            match &completion.sync_result {
                Some(result) => state.insert("syncResult".into(), result.clone()),
                None => state.remove("syncResult"),
            };
        })
        .await?;
        return Ok(Action::requeue(wait.max(Duration::from_millis(1))));
    }

    let message = if completion.phase != SUCCEEDED && retries > 0 {
        format!("{} (retried {retries} times).", completion.message)
    } else {
        completion.message
    };

    let operation = state.get("operation").cloned().unwrap_or_default();
    let dry_run = operation
        .pointer("/sync/dryRun")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let partial = operation
        .pointer("/sync/resources")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    let finished = std::cmp::max(
        time::now(),
        time::parse(&started_at).unwrap_or_else(time::now),
    );
    let finished_at = time::format(finished);

    let mut app = app;
    if completion.phase == SUCCEEDED
        && !dry_run
        && !partial
        && let Some(result) = &completion.sync_result
    {
        // History first, with its own write, as Argo CD does.
        let mut entry = Map::new();
        if let Some(revisions) = Revisions::read(result) {
            revisions.put(&mut entry, false);
        }
        Sources::of(Some(result)).put(&mut entry);
        entry.insert("deployStartedAt".into(), json!(started_at));
        entry.insert("deployedAt".into(), json!(finished_at));
        if let Some(by) = at(&operation, "/initiatedBy") {
            entry.insert("initiatedBy".into(), by.clone());
        }
        let entry = Value::Object(entry);
        let written = ctx
            .writer
            .write(key, WriteKind::History, app, |cur| {
                if !still_ours(cur, &started_at) {
                    return Plan::Abort;
                }
                let history: Vec<Value> = cur
                    .pointer("/status/history")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let history = crate::app::append_history(
                    &history,
                    entry.clone(),
                    revision_history_limit(cur),
                );
                Plan::Ops(vec![json!({
                    "op": "add",
                    "path": "/status/history",
                    "value": history,
                })])
            })
            .await?;
        app = match written {
            Written::Done { app, .. } | Written::Skipped(app) => app,
            Written::Aborted(app) => {
                abandoned(ctx, key, &app, &started_at);
                return Ok(Action::await_change());
            }
            Written::Gone => return Ok(Action::await_change()),
        };
        // The manifests are applied: from now on any comparison sees the
        // workload the sync left, as Argo CD computes health from live
        // resources, not from the operation's state.
        let now = Instant::now();
        ctx.with_memory(key, |m| {
            m.health_plan = Some(HealthPlan::after_sync(knobs, now))
        });
    }

    // O6 is requested before the final write, so the refresh its watch
    // event triggers finds the request.
    let request_id = ctx.next_id();
    let refresh_due = match knobs.post_sync_refresh {
        PostSyncRefresh::Immediate => Some(Instant::now()),
        PostSyncRefresh::After(d) => Some(Instant::now() + d),
        PostSyncRefresh::Skip => None,
    };
    if let Some(due) = refresh_due {
        ctx.with_memory(key, |m| {
            m.refresh_request = Some(RefreshRequest {
                id: request_id,
                due,
                succeeded: completion.phase == SUCCEEDED,
                started_at: started_at.clone(),
                finished_at: finished_at.clone(),
            })
        });
    }

    let phase_name = completion.phase;
    let sync_result = completion.sync_result;
    let written = ctx
        .writer
        .write(key, WriteKind::OperationFinal, app, |cur| {
            if !still_ours(cur, &started_at) {
                return Plan::Abort;
            }
            let Some(mut state) = at(cur, "/status/operationState")
                .and_then(Value::as_object)
                .cloned()
            else {
                return Plan::Abort;
            };
            state.insert("phase".into(), json!(phase_name));
            state.insert("message".into(), json!(message));
            state.insert("finishedAt".into(), json!(finished_at));
            match &sync_result {
                Some(result) => state.insert("syncResult".into(), result.clone()),
                None => state.remove("syncResult"),
            };
            Plan::Ops(vec![
                json!({"op": "add", "path": "/status/operationState", "value": state}),
                json!({"op": "add", "path": "/operation", "value": null}),
            ])
        })
        .await?;
    match written {
        Written::Done { instants, .. } => {
            info!(app = %key, phase = phase_name, %message, "sync operation completed");
            let resolved = sync_result
                .as_ref()
                .and_then(Revisions::read)
                .map(|r| r.list());
            ctx.journal.update(key, &started_at, |r| {
                r.phase = Some(phase_name.to_string());
                r.message = Some(message.clone());
                r.finished_at = Some(finished_at.clone());
                r.final_write = Some(instants);
                if resolved.is_some() {
                    r.resolved_revisions = resolved;
                }
            });
            ctx.with_memory(key, |m| m.sync_timer = None);
        }
        Written::Aborted(app) => {
            abandoned(ctx, key, &app, &started_at);
            ctx.with_memory(key, |m| {
                if m.refresh_request
                    .as_ref()
                    .is_some_and(|r| r.id == request_id)
                {
                    m.refresh_request = None;
                }
            });
        }
        Written::Skipped(_) | Written::Gone => {}
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_revisions_prefer_the_operation_then_the_source() {
        let single = Sources::Single(json!({"repoURL": "r", "targetRevision": "main"}));
        assert_eq!(requested_revisions(&json!({}), &single), vec!["main"]);
        assert_eq!(
            requested_revisions(&json!({"revision": "v2"}), &single),
            vec!["v2"]
        );
        let multi = Sources::Multi(vec![
            json!({"repoURL": "a", "targetRevision": "1.0"}),
            json!({"repoURL": "b", "targetRevision": "main"}),
        ]);
        assert_eq!(
            requested_revisions(&json!({"revisions": ["", "abc"]}), &multi),
            vec!["1.0", "abc"]
        );
        assert_eq!(
            requested_revisions(&json!({"revisions": []}), &multi),
            vec!["1.0", "main"]
        );
    }

    #[test]
    fn ownership_requires_same_start_and_progress() {
        let app = json!({"status": {"operationState": {"startedAt": "2026-01-01T00:00:00Z", "phase": "Running"}}});
        assert!(still_ours(&app, "2026-01-01T00:00:00Z"));
        assert!(!still_ours(&app, "2026-01-01T00:00:01Z"));
        let done = json!({"status": {"operationState": {"startedAt": "2026-01-01T00:00:00Z", "phase": "Succeeded"}}});
        assert!(!still_ours(&done, "2026-01-01T00:00:00Z"));
    }
}
