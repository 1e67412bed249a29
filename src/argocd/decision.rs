//! What to do about an Application, decided from its cached state alone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::{AUTHORIZED_STAGE_ANNOTATION, Application, Info, PROMOTION_INFO, REFRESH_ANNOTATION};

/// The info entry naming the Promotion's namespace: Promotion names are only
/// unique per namespace, and one Application may serve several.
pub const PROMOTION_NAMESPACE_INFO: &str = "barge.dev/promotion-namespace";

/// Argo CD's `operationState.phase`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationPhase {
    Running,
    Terminating,
    Failed,
    Error,
    Succeeded,
    Other(String),
}

impl OperationPhase {
    pub fn parse(phase: &str) -> Self {
        match phase {
            "Running" => Self::Running,
            "Terminating" => Self::Terminating,
            "Failed" => Self::Failed,
            "Error" => Self::Error,
            "Succeeded" => Self::Succeeded,
            other => Self::Other(other.to_string()),
        }
    }

    /// Argo CD's "completed": Failed, Error or Succeeded.
    pub fn completed(&self) -> bool {
        matches!(self, Self::Failed | Self::Error | Self::Succeeded)
    }
}

impl std::fmt::Display for OperationPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Running => f.write_str("Running"),
            Self::Terminating => f.write_str("Terminating"),
            Self::Failed => f.write_str("Failed"),
            Self::Error => f.write_str("Error"),
            Self::Succeeded => f.write_str("Succeeded"),
            Self::Other(p) if p.is_empty() => f.write_str("(none)"),
            Self::Other(p) => f.write_str(p),
        }
    }
}

/// What argocd-update should do next for one Application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncDecision {
    /// Write a sync operation: none of ours exists, or the last one is stale.
    Sync,
    /// An operation someone else started is still running; ours must wait.
    WaitForeign { phase: String },
    /// Our operation is requested or running.
    Running { phase: String },
    /// Our operation succeeded at the desired revisions.
    Succeeded,
    /// Our operation ended Failed or Error, or synced something else.
    Failed { message: String },
}

fn names_promotion(info: &[Info], namespace: &str, promotion: &str) -> bool {
    let named = info
        .iter()
        .any(|i| i.name == PROMOTION_INFO && i.value == promotion);
    // Operations written without the namespace entry still count as ours by name.
    let same_namespace = info
        .iter()
        .find(|i| i.name == PROMOTION_NAMESPACE_INFO)
        .is_none_or(|i| i.value == namespace);
    named && same_namespace
}

fn requested_info(operation: &Value) -> Vec<Info> {
    operation
        .get("info")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// Decides from the Application alone whether the Promotion's sync must be
/// written, is under way, or has ended (Kargo's `mustPerformUpdate`, except
/// that a completed failure of our own ends the step instead of re-syncing).
pub fn decide_sync(
    app: &Application,
    namespace: &str,
    promotion: &str,
    desired: &[String],
) -> SyncDecision {
    if let Some(operation) = &app.operation {
        return if names_promotion(&requested_info(operation), namespace, promotion) {
            SyncDecision::Running {
                phase: "Requested".into(),
            }
        } else {
            SyncDecision::WaitForeign {
                phase: "Requested".into(),
            }
        };
    }
    let Some(state) = app.status.as_ref().and_then(|s| s.operation_state.as_ref()) else {
        return SyncDecision::Sync;
    };
    let phase = OperationPhase::parse(&state.phase);
    let info = state
        .operation
        .as_ref()
        .map(|o| o.info.as_slice())
        .unwrap_or_default();
    if !names_promotion(info, namespace, promotion) {
        return if phase.completed() {
            SyncDecision::Sync
        } else {
            SyncDecision::WaitForeign {
                phase: phase.to_string(),
            }
        };
    }
    match phase {
        OperationPhase::Failed | OperationPhase::Error => SyncDecision::Failed {
            message: state
                .message
                .clone()
                .unwrap_or_else(|| format!("sync ended {phase}")),
        },
        OperationPhase::Succeeded => {
            let Some(result) = &state.sync_result else {
                return SyncDecision::Sync;
            };
            let synced: Vec<&str> = if result.revisions.is_empty() {
                vec![result.revision.as_str()]
            } else {
                result.revisions.iter().map(String::as_str).collect()
            };
            for (i, want) in desired.iter().enumerate() {
                let got = synced.get(i).copied().unwrap_or_default();
                if !want.is_empty() && got != want {
                    return SyncDecision::Failed {
                        message: format!(
                            "Argo CD synced revision \"{got}\" but the step wants \"{want}\""
                        ),
                    };
                }
            }
            SyncDecision::Succeeded
        }
        other => SyncDecision::Running {
            phase: other.to_string(),
        },
    }
}

/// The Stages (`"<namespace>:<stage>"`) the Application authorizes.
pub fn authorized_stages(app: &Application) -> Vec<String> {
    app.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(AUTHORIZED_STAGE_ANNOTATION))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// True when the Application lets Stage `namespace/stage` change it.
pub fn is_authorized(app: &Application, namespace: &str, stage: &str) -> bool {
    let wanted = format!("{namespace}:{stage}");
    authorized_stages(app).contains(&wanted)
}

/// The merge patch that asks Argo CD to sync on the Promotion's behalf: new
/// sources (if any), a hard refresh, the operation naming the Promotion, and
/// `status.operationState` cleared so a stale result can't be mistaken for
/// the new one. The resourceVersion makes the write fail rather than race.
pub fn sync_patch(
    app: &Application,
    namespace: &str,
    promotion: &str,
    actor: Option<&str>,
    sources: Option<Value>,
) -> Value {
    let sync_policy = app.spec.get("syncPolicy");
    let mut sync = json!({});
    if let Some(options) = sync_policy.and_then(|p| p.get("syncOptions")) {
        sync["syncOptions"] = options.clone();
    }
    let mut operation = json!({
        "initiatedBy": match actor {
            Some(user) => json!({"username": user, "automated": false}),
            None => json!({"username": crate::CONTROLLER_NAME, "automated": true}),
        },
        "info": [
            {"name": "Reason", "value": "Promotion triggered a sync of this Application resource."},
            {"name": PROMOTION_INFO, "value": promotion},
            {"name": PROMOTION_NAMESPACE_INFO, "value": namespace},
        ],
        "sync": sync,
    });
    if let Some(retry) = sync_policy.and_then(|p| p.get("retry")) {
        operation["retry"] = retry.clone();
    }
    let mut patch = json!({
        "metadata": {
            "annotations": {REFRESH_ANNOTATION: "hard"},
            "resourceVersion": app.metadata.resource_version,
        },
        "operation": operation,
    });
    if let Some(sources) = sources {
        let key = if app.has_multiple_sources() {
            "sources"
        } else {
            "source"
        };
        patch["spec"] = json!({ key: sources });
    }
    if app.status.is_some() {
        patch["status"] = json!({"operationState": null});
    }
    patch
}

/// Health of one Application as a Stage or argocd-wait sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppHealth {
    Healthy,
    Progressing(String),
    /// Not known yet; `refresh` asks for Argo CD to compare again first.
    Unknown {
        reason: String,
        refresh: bool,
    },
    Unhealthy(String),
}

fn seconds(t: &Time) -> i64 {
    t.0.as_second()
}

/// The revision(s) the Application runs: those its last sync deployed when
/// that sync succeeded, else those Argo CD compared against when it reports
/// them Synced; `None` when neither tells.
fn deployed_revisions(app: &Application) -> Option<Vec<String>> {
    let status = app.status.as_ref()?;
    let from_sync_result = status
        .operation_state
        .as_ref()
        .filter(|o| o.phase == "Succeeded")
        .and_then(|o| o.sync_result.as_ref())
        .map(|r| {
            if app.has_multiple_sources() {
                r.revisions.clone()
            } else {
                vec![r.revision.clone()]
            }
        });
    if from_sync_result.is_some() {
        return from_sync_result;
    }
    let sync = status.sync.as_ref().filter(|s| s.status == "Synced")?;
    Some(if app.has_multiple_sources() {
        sync.revisions.clone()
    } else {
        sync.revision.clone().into_iter().collect()
    })
}

/// Kargo's Application health check, made strict about staleness: health is
/// only believed once Argo CD compared after the last operation finished.
pub fn assess_health(app: Option<&Application>, desired: &[String]) -> AppHealth {
    let Some(app) = app else {
        return AppHealth::Unknown {
            reason: "Application not found".into(),
            refresh: false,
        };
    };
    if let Some(unknown) = stale_comparison(app) {
        return unknown;
    }
    let errors = app.comparison_errors();
    if !errors.is_empty() {
        return AppHealth::Unhealthy(errors.join("; "));
    }
    if let Some(verdict) = revision_mismatch(app, desired) {
        return verdict;
    }
    let health = app
        .status
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .map(|h| h.status.as_str())
        .unwrap_or_default();
    match health {
        "Healthy" => AppHealth::Healthy,
        "" => AppHealth::Progressing("Application health is not reported".into()),
        "Progressing" | "Suspended" => {
            AppHealth::Progressing(format!("Application health is {health}"))
        }
        other => AppHealth::Unhealthy(format!("Application health is {other}")),
    }
}

/// Unknown (asking for a refresh) while Argo CD's last comparison may
/// predate the last operation's end.
fn stale_comparison(app: &Application) -> Option<AppHealth> {
    let status = app.status.as_ref()?;
    let state = status.operation_state.as_ref()?;
    let finished = seconds(state.finished_at.as_ref()?);
    let stale = AppHealth::Unknown {
        reason: "Argo CD has not compared the Application since its last sync finished".into(),
        refresh: true,
    };
    let reconciled = status.reconciled_at.as_ref().map(seconds);
    if reconciled.is_none_or(|r| r < finished) {
        return Some(stale);
    }
    // Timestamps have second precision, so a comparison made in the same
    // second as the sync may still predate it: until Argo CD reports the
    // Application Synced, ask it to compare again. A later comparison is
    // believed even when it says OutOfSync: a permanent diff (a field the
    // API server drops or defaults) or a branch that moved on must not
    // leave health unknown forever; which revision was deployed is checked
    // against the sync result, not the sync status.
    let synced = status.sync.as_ref().is_some_and(|s| s.status == "Synced");
    (state.phase == "Succeeded" && !synced && reconciled == Some(finished)).then_some(stale)
}

/// When the step wants revisions: not known during a sync, unhealthy when
/// the Application runs other ones.
fn revision_mismatch(app: &Application, desired: &[String]) -> Option<AppHealth> {
    if desired.iter().all(String::is_empty) {
        return None;
    }
    let unknown = |reason: String| {
        Some(AppHealth::Unknown {
            reason,
            refresh: false,
        })
    };
    if app.operation_in_progress() {
        return unknown("a sync is in progress".into());
    }
    let Some(live) = deployed_revisions(app) else {
        return unknown("Application is OutOfSync and its last sync did not succeed".into());
    };
    if live.len() != desired.len() {
        return unknown(format!(
            "Application reports {} revisions, {} desired",
            live.len(),
            desired.len()
        ));
    }
    desired
        .iter()
        .zip(&live)
        .find(|(want, got)| !want.is_empty() && want != got)
        .map(|(want, got)| {
            AppHealth::Unhealthy(format!(
                "Application is at revision \"{got}\", desired \"{want}\""
            ))
        })
}
