//! `argocd-update`: points Argo CD Applications at the Freight's revisions,
//! asks Argo CD to sync them, and completes the moment the syncs finish.
//!
//! Config and behaviour follow Kargo's step of the same name. What it waits
//! on is recorded as resolved Application names (or its selector), so the
//! controller wakes it on exactly those Applications' changes.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::ObjectRef;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use super::{StepContext, StepRun, StepRunner, parse_config, retryable, terminal};
use crate::argocd::{
    AUTHORIZED_STAGE_ANNOTATION, Application, SourceUpdate, SyncDecision, decide_sync,
    desired_revisions, is_authorized, sync_patch, updated_sources,
};
use crate::controller::await_index::AwaitTarget;
use crate::promotion::engine::{StepDefaults, StepError, StepResult, StepStatus};

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

pub struct ArgoCdUpdate;

impl StepRunner for ArgoCdUpdate {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn defaults(&self) -> StepDefaults {
        StepDefaults {
            timeout: Some(Duration::from_secs(300)),
            error_threshold: 1,
        }
    }

    fn run<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepRun> {
        run(ctx).boxed()
    }
}

fn describe(app: &Application) -> String {
    format!(
        "Argo CD Application \"{}\" in namespace \"{}\"",
        app.metadata.name.as_deref().unwrap_or_default(),
        app.metadata.namespace.as_deref().unwrap_or_default()
    )
}

/// The Applications one `apps[]` entry resolves to, and what the step waits on for it.
fn resolve(
    ctx: &StepContext<'_>,
    index: usize,
    entry: &AppUpdate,
) -> (Result<Vec<Arc<Application>>, StepError>, AwaitTarget) {
    let namespace = entry
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ctx.services.argocd_namespace.clone());
    let stage = format!("{}:{}", ctx.namespace, ctx.stage);
    match (&entry.name, &entry.selector) {
        (Some(name), None) => {
            let target = AwaitTarget::Named {
                kind: "Application".into(),
                namespace: namespace.clone(),
                name: name.clone(),
            };
            let found = ctx
                .services
                .applications
                .get(&ObjectRef::new(name).within(&namespace));
            let result = match found {
                None => Err(retryable(format!(
                    "Argo CD Application \"{name}\" in namespace \"{namespace}\" not found (config.apps[{index}].name)"
                ))),
                Some(app) if !is_authorized(&app, ctx.namespace, ctx.stage) => {
                    Err(terminal(format!(
                        "{} is not authorized for Stage \"{stage}\": its annotation {AUTHORIZED_STAGE_ANNOTATION} must list \"{stage}\"",
                        describe(&app)
                    )))
                }
                Some(app) => Ok(vec![app]),
            };
            (result, target)
        }
        (None, Some(selector)) => {
            let target = AwaitTarget::Selected {
                kind: "Application".into(),
                namespace: namespace.clone(),
                selector: selector.clone(),
            };
            if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && selector
                    .match_expressions
                    .as_ref()
                    .is_none_or(|e| e.is_empty())
            {
                let message =
                    format!("config.apps[{index}].selector: needs matchLabels or matchExpressions");
                return (Err(terminal(message)), target);
            }
            let parsed = match Selector::try_from(selector.clone()) {
                Ok(s) => s,
                Err(e) => {
                    let message = format!("config.apps[{index}].selector: {e}");
                    return (Err(terminal(message)), target);
                }
            };
            let mut apps: Vec<Arc<Application>> = ctx
                .services
                .applications
                .state()
                .into_iter()
                .filter(|a| a.metadata.namespace.as_deref() == Some(namespace.as_str()))
                .filter(|a| {
                    parsed.matches(a.metadata.labels.as_ref().unwrap_or(&Default::default()))
                })
                .filter(|a| is_authorized(a, ctx.namespace, ctx.stage))
                .collect();
            apps.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let result = if apps.is_empty() {
                Err(retryable(format!(
                    "no Argo CD Application in namespace \"{namespace}\" authorized for Stage \"{stage}\" matches config.apps[{index}].selector"
                )))
            } else {
                Ok(apps)
            };
            (result, target)
        }
        _ => {
            let target = AwaitTarget::Named {
                kind: "Application".into(),
                namespace,
                name: String::new(),
            };
            let message =
                format!("config.apps[{index}]: exactly one of name and selector must be set");
            (Err(terminal(message)), target)
        }
    }
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    let config: Config = match parse_config(ctx.config) {
        Ok(c) => c,
        Err(e) => return StepRun::done(Err(e)),
    };
    if config.apps.is_empty() {
        return StepRun::done(Err(terminal(
            "config.apps: at least one Application is required",
        )));
    }

    let mut awaiting = Vec::new();
    let mut targets: Vec<(usize, Arc<Application>)> = Vec::new();
    for (index, entry) in config.apps.iter().enumerate() {
        let (resolved, target) = resolve(ctx, index, entry);
        awaiting.push(target);
        match resolved {
            Ok(apps) => targets.extend(apps.into_iter().map(|a| (index, a))),
            Err(e) => {
                return StepRun {
                    result: Err(e),
                    awaiting,
                };
            }
        }
    }
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
    let mut waiting = Vec::new();
    let mut health = Vec::new();
    for (index, app) in &targets {
        let sources = &config.apps[*index].sources;
        let desired = desired_revisions(app, sources);
        let decision = match decide_sync(app, ctx.namespace, ctx.promotion, &desired) {
            SyncDecision::Sync => match request_sync(ctx, app, sources).await {
                Ok(decision) => decision,
                Err(e) => {
                    return StepRun {
                        result: Err(e),
                        awaiting,
                    };
                }
            },
            other => other,
        };
        match decision {
            SyncDecision::Failed { message } => {
                let message = format!("{} failed with: {message}", describe(app));
                return StepRun { result: Err(terminal(message)), awaiting };
            }
            SyncDecision::Succeeded => health.push(json!({
                "name": app.metadata.name, "namespace": app.metadata.namespace, "desiredRevisions": desired,
            })),
            SyncDecision::Running { phase } => waiting.push(format!("{} to finish syncing ({phase})", describe(app))),
            SyncDecision::WaitForeign { phase } => {
                waiting.push(format!("another operation on {} to finish ({phase})", describe(app)))
            }
            SyncDecision::Sync => waiting.push(format!("{} to start syncing", describe(app))),
        }
    }

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
    result.health_check = Some((KIND.to_string(), json!({"apps": health})));
    StepRun::done(Ok(result))
}

/// Writes the sync operation, after deciding again on the live object: the
/// cache may not show our own last write yet, and a sync must never be
/// requested twice for one Promotion.
async fn request_sync(
    ctx: &StepContext<'_>,
    cached: &Application,
    sources: &[SourceUpdate],
) -> Result<SyncDecision, StepError> {
    let name = cached.metadata.name.clone().unwrap_or_default();
    let namespace = cached.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Application> = Api::namespaced(ctx.services.client.clone(), &namespace);
    let live = match api.get_opt(&name).await {
        Ok(Some(app)) => app,
        Ok(None) => return Err(retryable(format!("{} not found", describe(cached)))),
        Err(e) => return Err(retryable(format!("reading {}: {e}", describe(cached)))),
    };
    let desired = desired_revisions(&live, sources);
    let decision = decide_sync(&live, ctx.namespace, ctx.promotion, &desired);
    if decision != SyncDecision::Sync {
        return Ok(decision);
    }
    if !is_authorized(&live, ctx.namespace, ctx.stage) {
        return Err(terminal(format!(
            "{} is no longer authorized for this Stage",
            describe(&live)
        )));
    }
    let new_sources = updated_sources(&live, sources)
        .map_err(|e| terminal(format!("{}: {e}", describe(&live))))?;
    let patch: Value = sync_patch(&live, ctx.namespace, ctx.promotion, ctx.actor, new_sources);
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(application = %name, app_namespace = %namespace, promotion = %ctx.promotion, "requested Argo CD sync");
            Ok(SyncDecision::Running {
                phase: "Requested".into(),
            })
        }
        // Someone changed the Application between our read and write; its
        // watch event wakes the step to decide again.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(SyncDecision::Running {
            phase: "Conflict".into(),
        }),
        Err(e) => Err(retryable(format!(
            "requesting a sync of {}: {e}",
            describe(&live)
        ))),
    }
}
