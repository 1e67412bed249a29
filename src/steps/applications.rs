//! Resolving a step's `apps[]` entry (a name or a label selector) to cached
//! Applications, and what the step waits on for it. Shared by argocd-update
//! (which also requires authorization) and argocd-wait (read-only).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::ObjectRef;

use serde::de::DeserializeOwned;

use super::{StepContext, StepRun, api_error, parse_config, retryable, terminal};
use crate::argocd::{
    AUTHORIZED_STAGE_ANNOTATION, Application, Authorization, authorization, is_authorized,
};
use crate::await_index::AwaitTarget;
use crate::promotion::engine::{StepDefaults, StepError};

/// Steps that wait on Argo CD give up after Kargo's five minutes unless
/// their `retry.timeout` says otherwise.
pub const ARGOCD_STEP_DEFAULTS: StepDefaults = StepDefaults {
    timeout: Some(std::time::Duration::from_secs(300)),
    error_threshold: 1,
};

/// `Argo CD Application "<name>" in namespace "<namespace>"`, for messages.
pub fn describe(app: &Application) -> String {
    format!(
        "Argo CD Application \"{}\" in namespace \"{}\"",
        app.metadata.name.as_deref().unwrap_or_default(),
        app.metadata.namespace.as_deref().unwrap_or_default()
    )
}

/// One `apps[]` entry as written.
pub struct AppEntry<'a> {
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub selector: Option<&'a LabelSelector>,
}

impl<'a> AppEntry<'a> {
    pub fn of(
        name: &'a Option<String>,
        namespace: &'a Option<String>,
        selector: &'a Option<LabelSelector>,
    ) -> Self {
        Self {
            name: name.as_deref(),
            namespace: namespace.as_deref(),
            selector: selector.as_ref(),
        }
    }
}

/// Every entry's Applications, each tagged with what its entry asks of it,
/// and what the step waits on. The wait is registered before anything is
/// read or written, so that no change the step sees late, or causes, goes
/// by without waking it. An error comes as the step's run, still waiting
/// on the targets, so a retry is woken.
pub async fn resolve_all<T: Clone>(
    ctx: &StepContext<'_>,
    entries: Vec<(AppEntry<'_>, T)>,
    authorize: bool,
) -> Result<(Vec<(T, Arc<Application>)>, Vec<AwaitTarget>), StepRun> {
    let awaiting: Vec<AwaitTarget> = entries.iter().map(|(e, _)| target(ctx, e)).collect();
    ctx.register_waits(&awaiting);
    let mut found = Vec::new();
    for (index, (entry, tag)) in entries.into_iter().enumerate() {
        match resolve(ctx, index, &entry, authorize).await {
            Ok(apps) => found.extend(apps.into_iter().map(|a| (tag.clone(), a))),
            Err(e) => {
                return Err(StepRun {
                    result: Err(e),
                    awaiting,
                });
            }
        }
    }
    Ok((found, awaiting))
}

/// A step's config, which must name at least one Application.
pub fn parse_apps_config<C: DeserializeOwned>(
    config: &serde_json::Value,
    apps: impl Fn(&C) -> usize,
) -> Result<C, StepError> {
    let config: C = parse_config(config)?;
    if apps(&config) == 0 {
        return Err(terminal(
            "config.apps: at least one Application is required",
        ));
    }
    Ok(config)
}

/// The Applications entry `index` names, and what to wait on for it. With
/// `authorize`, only Applications authorizing the Promotion's Stage count:
/// a named one that does not is an error; selected ones that do not are
/// skipped.
pub async fn resolve(
    ctx: &StepContext<'_>,
    index: usize,
    entry: &AppEntry<'_>,
    authorize: bool,
) -> Result<Vec<Arc<Application>>, StepError> {
    let namespace = entry_namespace(ctx, entry);
    if let Some(why) = ctx.services.app_scope.refuses(&namespace) {
        return Err(terminal(format!("config.apps[{index}].namespace: {why}")));
    }
    match (entry.name, entry.selector) {
        (Some(name), None) => resolve_named(ctx, index, name, &namespace, authorize).await,
        (None, Some(selector)) => {
            resolve_selected(ctx, index, selector, &namespace, authorize).await
        }
        _ => Err(terminal(format!(
            "config.apps[{index}]: exactly one of name and selector must be set"
        ))),
    }
}

fn entry_namespace(ctx: &StepContext<'_>, entry: &AppEntry<'_>) -> String {
    entry
        .namespace
        .filter(|n| !n.is_empty())
        .map(String::from)
        .unwrap_or_else(|| ctx.services.argocd_namespace.clone())
}

/// What a change of the entry's Applications is known by.
fn target(ctx: &StepContext<'_>, entry: &AppEntry<'_>) -> AwaitTarget {
    let namespace = entry_namespace(ctx, entry);
    match (entry.name, entry.selector) {
        (None, Some(selector)) => AwaitTarget::Selected {
            kind: "Application".into(),
            namespace,
            selector: selector.clone(),
        },
        (name, _) => AwaitTarget::Named {
            kind: "Application".into(),
            namespace,
            name: name.unwrap_or_default().to_string(),
        },
    }
}

/// A named Application: from the cache, else from the API server (the cache
/// may not have seen one created a moment ago).
async fn resolve_named(
    ctx: &StepContext<'_>,
    index: usize,
    name: &str,
    namespace: &str,
    authorize: bool,
) -> Result<Vec<Arc<Application>>, StepError> {
    let stage = format!("{}:{}", ctx.subject.namespace, ctx.subject.stage);
    let cached = ctx
        .services
        .applications
        .get(&ObjectRef::new(name).within(namespace));
    // The cache may not have seen an Application created a moment ago:
    // ask the API server before calling it missing.
    let found = match cached {
        Some(app) => Some(app),
        None => {
            let api: Api<Application> = Api::namespaced(ctx.services.client.clone(), namespace);
            match api.get_opt(name).await {
                Ok(app) => app.map(Arc::new),
                Err(e) => {
                    return Err(api_error(
                        format_args!(
                            "reading Argo CD Application \"{name}\" in namespace \"{namespace}\""
                        ),
                        &e,
                    ));
                }
            }
        }
    };
    match found {
        None => Err(retryable(format!(
            "Argo CD Application \"{name}\" in namespace \"{namespace}\" not found (config.apps[{index}].name)"
        ))),
        Some(app) if !authorize => Ok(vec![app]),
        Some(app) => match authorization(&app, ctx.subject.namespace, ctx.subject.stage) {
            Authorization::Allowed => Ok(vec![app]),
            Authorization::NotListed => Err(terminal(format!(
                "{} is not authorized for Stage \"{stage}\": its annotation {AUTHORIZED_STAGE_ANNOTATION} must list \"{stage}\"",
                describe(&app)
            ))),
            Authorization::Invalid(why) => Err(terminal(format!("{}: {why}", describe(&app)))),
        },
    }
}

/// The Applications a label selector matches (only those authorizing the
/// Stage, with `authorize`), sorted by name.
async fn resolve_selected(
    ctx: &StepContext<'_>,
    index: usize,
    selector: &LabelSelector,
    namespace: &str,
    authorize: bool,
) -> Result<Vec<Arc<Application>>, StepError> {
    let stage = format!("{}:{}", ctx.subject.namespace, ctx.subject.stage);
    let allowed = |app: &Application| {
        !authorize || is_authorized(app, ctx.subject.namespace, ctx.subject.stage)
    };
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if empty {
        let message =
            format!("config.apps[{index}].selector: needs matchLabels or matchExpressions");
        return Err(terminal(message));
    }
    let parsed = match Selector::try_from(selector.clone()) {
        Ok(s) => s,
        Err(e) => {
            return Err(terminal(format!("config.apps[{index}].selector: {e}")));
        }
    };
    let mut apps: Vec<Arc<Application>> = ctx
        .services
        .applications
        .state()
        .into_iter()
        .filter(|a| a.metadata.namespace.as_deref() == Some(namespace))
        .filter(|a| parsed.matches(a.metadata.labels.as_ref().unwrap_or(&Default::default())))
        .filter(|a| allowed(a))
        .collect();
    if apps.is_empty() {
        // As for names: confirm with the API server before giving up.
        let api: Api<Application> = Api::namespaced(ctx.services.client.clone(), namespace);
        let params = ListParams::default().labels(&parsed.to_string());
        if let Ok(list) = api.list(&params).await {
            apps = list
                .items
                .into_iter()
                .filter(|a| allowed(a))
                .map(Arc::new)
                .collect();
        }
    }
    apps.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if apps.is_empty() {
        let which = if authorize {
            format!(" authorized for Stage \"{stage}\"")
        } else {
            String::new()
        };
        Err(retryable(format!(
            "no Argo CD Application in namespace \"{namespace}\"{which} matches config.apps[{index}].selector"
        )))
    } else {
        Ok(apps)
    }
}
