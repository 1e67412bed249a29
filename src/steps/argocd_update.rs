//! `argocd-update`: points Argo CD Applications at the Freight's revisions,
//! asks Argo CD to sync them, and completes the moment the syncs finish.
//!
//! Config and behaviour follow Kargo's step of the same name. What it waits
//! on is recorded as resolved Application names (or its selector), so the
//! controller wakes it on exactly those Applications' changes.

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use super::applications::{
    ARGOCD_STEP_DEFAULTS, AppEntry, describe, parse_apps_config, resolve_all,
};
use super::{BuiltinStep, StepContext, StepRun, api_error, retryable, terminal};
use crate::argocd::{
    AppHealthCheck, Application, HealthCheckRecord, Requester, SourceUpdate, SyncDecision,
    decide_sync, desired_revisions, is_authorized, sync_patch, updated_sources,
};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "argocd-update";

/// Kargo's `argocd-update` config; unknown fields are rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub apps: Vec<AppUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    #[serde(default)]
    pub sources: Vec<SourceUpdate>,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .with_defaults(ARGOCD_STEP_DEFAULTS)
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    let config: Config = match parse_apps_config(ctx.config, |c: &Config| c.apps.len()) {
        Ok(c) => c,
        Err(e) => return StepRun::done(Err(e)),
    };
    let entries = config
        .apps
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            (
                AppEntry::of(&entry.name, &entry.namespace, &entry.selector),
                index,
            )
        })
        .collect();
    let (targets, awaiting) = match resolve_all(ctx, entries, true).await {
        Ok(resolved) => resolved,
        Err(run) => return run,
    };
    // Every matched Application must accept the source updates before any is touched.
    for (index, app) in &targets {
        if let Err(e) = updated_sources(app, &config.apps[*index].sources) {
            let message = format!("{}: config.apps[{index}].sources: {e}", describe(app));
            return StepRun {
                result: Err(terminal(message)),
                awaiting,
            };
        }
    }

    let output = json!({"apps": targets.iter().map(|(_, a)| json!({
        "name": a.metadata.name, "namespace": a.metadata.namespace,
    })).collect::<Vec<_>>()});
    let (waiting, health) = match sync_each(ctx, &config, &targets).await {
        Ok(progress) => progress,
        Err(e) => {
            return StepRun {
                result: Err(e),
                awaiting,
            };
        }
    };

    if !waiting.is_empty() {
        let mut result = StepResult::new(StepStatus::Running);
        result.message = Some(format!("waiting for {}", waiting.join("; ")));
        result.output = Some(output);
        return StepRun {
            result: Ok(result),
            awaiting,
        };
    }
    let mut result = StepResult::new(StepStatus::Succeeded);
    result.output = Some(output);
    let record = HealthCheckRecord { apps: health };
    result.health_check = Some((KIND.to_string(), json!(record)));
    StepRun::done(Ok(result))
}

/// Decides, and where needed requests, the sync of each Application: what
/// the step still waits for, and the health checks of those synced.
async fn sync_each(
    ctx: &StepContext<'_>,
    config: &Config,
    targets: &[(usize, Arc<Application>)],
) -> Result<(Vec<String>, Vec<AppHealthCheck>), StepError> {
    let mut waiting = Vec::new();
    let mut health = Vec::new();
    for (index, app) in targets {
        let sources = &config.apps[*index].sources;
        let desired = desired_revisions(app, sources);
        let decision = match decide_sync(app, requester(ctx), &desired) {
            SyncDecision::Sync | SyncDecision::Resync { .. } => {
                request_sync(ctx, app, sources).await?
            }
            other => other,
        };
        match decision {
            SyncDecision::Failed { message } => {
                return Err(terminal(format!(
                    "{} failed with: {message}",
                    describe(app)
                )));
            }
            SyncDecision::Succeeded => health.push(AppHealthCheck {
                name: app.metadata.name.clone().unwrap_or_default(),
                namespace: app.metadata.namespace.clone().unwrap_or_default(),
                desired_revisions: desired,
            }),
            SyncDecision::Running { phase } => {
                waiting.push(format!("{} to finish syncing ({phase})", describe(app)))
            }
            SyncDecision::WaitForeign { phase } => waiting.push(format!(
                "another operation on {} to finish ({phase})",
                describe(app)
            )),
            SyncDecision::Sync => waiting.push(format!("{} to start syncing", describe(app))),
            SyncDecision::Resync { message } => {
                waiting.push(format!("{} to sync again ({message})", describe(app)))
            }
        }
    }
    Ok((waiting, health))
}

fn requester<'a>(ctx: &StepContext<'a>) -> Requester<'a> {
    Requester {
        namespace: ctx.subject.namespace,
        name: ctx.subject.promotion,
        uid: ctx.subject.promotion_uid,
    }
}

/// How many times a sync is requested again at once when the Application
/// changed between our read and our write.
const CONFLICT_ATTEMPTS: usize = 3;

/// Writes the sync operation, after deciding again on the live object: the
/// cache may not show our own last write yet, and a sync must never be
/// requested twice for one Promotion. A conflict (someone wrote the
/// Application between our read and write) reads and decides again at once.
async fn request_sync(
    ctx: &StepContext<'_>,
    cached: &Application,
    sources: &[SourceUpdate],
) -> Result<SyncDecision, StepError> {
    for _ in 1..CONFLICT_ATTEMPTS {
        if let Some(decision) = try_request_sync(ctx, cached, sources).await? {
            return Ok(decision);
        }
    }
    // Still conflicting: the Application keeps changing, and each change
    // wakes the step (its wait was registered before the first read).
    Ok(try_request_sync(ctx, cached, sources)
        .await?
        .unwrap_or(SyncDecision::Running {
            phase: "Conflict".into(),
        }))
}

/// One read, decision and write; `None` on a conflict.
async fn try_request_sync(
    ctx: &StepContext<'_>,
    cached: &Application,
    sources: &[SourceUpdate],
) -> Result<Option<SyncDecision>, StepError> {
    let name = cached.metadata.name.clone().unwrap_or_default();
    let namespace = cached.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Application> = Api::namespaced(ctx.services.client.clone(), &namespace);
    let live = match api.get_opt(&name).await {
        Ok(Some(app)) => app,
        Ok(None) => return Err(retryable(format!("{} not found", describe(cached)))),
        Err(e) => return Err(api_error(format_args!("reading {}", describe(cached)), &e)),
    };
    let desired = desired_revisions(&live, sources);
    let again = match decide_sync(&live, requester(ctx), &desired) {
        SyncDecision::Sync => None,
        SyncDecision::Resync { message } => Some(message),
        other => return Ok(Some(other)),
    };
    if !is_authorized(&live, ctx.subject.namespace, ctx.subject.stage) {
        return Err(terminal(format!(
            "{} is no longer authorized for this Stage",
            describe(&live)
        )));
    }
    let new_sources = updated_sources(&live, sources)
        .map_err(|e| terminal(format!("{}: {e}", describe(&live))))?;
    let patch: Value = sync_patch(
        &live,
        requester(ctx),
        ctx.subject.actor,
        new_sources,
        &desired,
    );
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            crate::fault::point(crate::fault::AFTER_SYNC_REQUEST);
            tracing::info!(application = %name, app_namespace = %namespace, promotion = %ctx.subject.promotion, again = again.is_some(), "requested Argo CD sync");
            Ok(Some(match again {
                None => SyncDecision::Running {
                    phase: "Requested".into(),
                },
                Some(message) => SyncDecision::Resync { message },
            }))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(e) => Err(api_error(
            format_args!("requesting a sync of {}", describe(&live)),
            &e,
        )),
    }
}
