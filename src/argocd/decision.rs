//! What to do about an Application, decided from its cached state alone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::{
    AUTHORIZED_STAGE_ANNOTATION, Application, Info, KARGO_AUTHORIZED_STAGE_ANNOTATION,
    PROMOTION_INFO, REFRESH_ANNOTATION,
};

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
    /// Our operation succeeded at other revisions than the step wants (a
    /// branch that moved on, another step that synced the Application):
    /// sync again, as Kargo does, until the step's timeout.
    Resync { message: String },
    /// Our operation ended Failed or Error.
    Failed { message: String },
}

/// The info entry carrying the Promotion's UID: a Promotion deleted and
/// created again under its old name (as auto-promotion names them) must
/// not take the old one's operation for its own.
pub const PROMOTION_UID_INFO: &str = "barge.dev/promotion-uid";

/// The Promotion asking for a sync.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

impl Requester<'_> {
    fn wrote(&self, info: &[Info]) -> bool {
        let value = |key: &str| {
            info.iter()
                .find(|i| i.name == key)
                .map(|i| i.value.as_str())
        };
        if value(PROMOTION_INFO) != Some(self.name) {
            return false;
        }
        match value(PROMOTION_UID_INFO) {
            Some(uid) => uid == self.uid,
            // Written before the UID entry existed: the name and namespace decide.
            None => value(PROMOTION_NAMESPACE_INFO).is_none_or(|ns| ns == self.namespace),
        }
    }
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
    requester: Requester<'_>,
    desired: &[String],
) -> SyncDecision {
    if let Some(operation) = &app.operation {
        return if requester.wrote(&requested_info(operation)) {
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
    if !requester.wrote(info) {
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
                    return SyncDecision::Resync {
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

/// Whether an Application lets a Stage change it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    Allowed,
    /// The annotation is missing or lists other Stages.
    NotListed,
    /// The annotation cannot be read: why.
    Invalid(String),
}

/// The Stages (`(namespace, stage)`) the Application's authorized-stage
/// annotation lists: `<namespace>:<stage>` entries separated by commas,
/// whitespace around entries and parts ignored. One malformed entry, or a
/// glob (no longer supported), makes the whole annotation invalid.
pub fn authorized_stages(app: &Application) -> Result<Vec<(String, String)>, String> {
    let value = app
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| {
            a.get(AUTHORIZED_STAGE_ANNOTATION)
                .or_else(|| a.get(KARGO_AUTHORIZED_STAGE_ANNOTATION))
        })
        .map(String::as_str)
        .unwrap_or_default();
    let mut stages = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parts = entry.split_once(':').map(|(ns, st)| (ns.trim(), st.trim()));
        let Some((namespace, stage)) = parts.filter(|(ns, st)| !ns.is_empty() && !st.is_empty())
        else {
            return Err(format!(
                "invalid entry \"{entry}\": expected \"<namespace>:<stage>\""
            ));
        };
        if entry.contains('*') {
            return Err(format!(
                "invalid entry \"{entry}\": glob expressions are not supported"
            ));
        }
        stages.push((namespace.to_string(), stage.to_string()));
    }
    Ok(stages)
}

/// Whether the Application lets Stage `namespace/stage` change it.
pub fn authorization(app: &Application, namespace: &str, stage: &str) -> Authorization {
    match authorized_stages(app) {
        Err(why) => {
            Authorization::Invalid(format!("annotation {AUTHORIZED_STAGE_ANNOTATION}: {why}"))
        }
        Ok(stages) if stages.iter().any(|(ns, st)| ns == namespace && st == stage) => {
            Authorization::Allowed
        }
        Ok(_) => Authorization::NotListed,
    }
}

/// True when the Application lets Stage `namespace/stage` change it.
pub fn is_authorized(app: &Application, namespace: &str, stage: &str) -> bool {
    authorization(app, namespace, stage) == Authorization::Allowed
}

/// The merge patch that asks Argo CD to sync on the Promotion's behalf: new
/// sources (if any), a hard refresh, the operation naming the Promotion, and
/// `status.operationState` cleared so a stale result can't be mistaken for
/// the new one. The resourceVersion makes the write fail rather than race.
pub fn sync_patch(
    app: &Application,
    requester: Requester<'_>,
    actor: Option<&str>,
    sources: Option<Value>,
    desired: &[String],
) -> Value {
    let sync_policy = app.spec.get("syncPolicy");
    let mut sync = requested_revisions(app, sources.as_ref(), desired);
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
            {"name": PROMOTION_INFO, "value": requester.name},
            {"name": PROMOTION_NAMESPACE_INFO, "value": requester.namespace},
            {"name": PROMOTION_UID_INFO, "value": requester.uid},
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

/// `operation.sync.revision` (one source) or `revisions` (several): each
/// source's desired revision where the step names one, else its
/// targetRevision after the update, as Kargo asks. Argo CD then deploys
/// exactly that, never a branch head the Freight does not name.
fn requested_revisions(app: &Application, updated: Option<&Value>, desired: &[String]) -> Value {
    let sources: Vec<&Value> = match updated {
        Some(Value::Array(sources)) => sources.iter().collect(),
        Some(source @ Value::Object(_)) => vec![source],
        _ => app.sources(),
    };
    let revisions: Vec<String> = sources
        .iter()
        .enumerate()
        .map(
            |(i, source)| match desired.get(i).filter(|d| !d.is_empty()) {
                Some(want) => want.clone(),
                None => source
                    .get("targetRevision")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            },
        )
        .collect();
    if app.has_multiple_sources() {
        json!({"revisions": revisions})
    } else {
        json!({"revision": revisions.into_iter().next().unwrap_or_default()})
    }
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
pub fn stale_comparison(app: &Application) -> Option<AppHealth> {
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
