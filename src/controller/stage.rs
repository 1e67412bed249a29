//! The Stage reconciler: reports what runs and ran on the Stage, its health
//! from the Applications its last Promotion deployed (woken by their
//! changes), where each Freight is and is verified, and creates the
//! Promotions of auto-promotion.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::{Error, cache_ready};
use crate::api::{Freight, Health, HealthState, ProjectConfig, Promotion, Stage};
use crate::argocd::{
    AppHealth, AppHealthCheck, AppScope, Application, assess_health, request_refresh,
};
use crate::await_index::{AwaitTarget, SharedAwaitIndex};
use crate::metrics::Metrics;
use crate::stage::{
    AutoPromotionPolicy, HealthBasis, Observed, auto_promotion_candidates, auto_promotion_name,
    auto_promotion_policy, current_and_last, freight_history, health_basis, merge_health,
    stage_status,
};

use super::promotion::FIELD_MANAGER;

/// What every Stage reconcile shares.
pub struct StageContext {
    pub client: Client,
    /// Events on Stages: each auto-promotion, saying why.
    pub recorder: Recorder,
    /// Each namespace's ProjectConfig: its promotion policies.
    pub project_configs: Store<ProjectConfig>,
    pub applications: Store<Application>,
    /// Where the Application cache has Applications from.
    pub app_scope: AppScope,
    pub promotions: Store<Promotion>,
    /// Each Stage's newest ended Promotion in full (the cache keeps ended
    /// ones thin).
    pub last_promotions: Arc<super::last_promotions::LastPromotions>,
    pub freight: Store<Freight>,
    /// Application → Stages whose health depends on it.
    pub index: SharedAwaitIndex,
    pub backstop: Duration,
    pub metrics: Arc<Metrics>,
    /// One Freight status write at a time per Freight.
    pub freight_writes: FreightWrites,
    /// How long a failed reconcile waits, per Stage.
    pub backoff: super::backoff::ErrorBackoff,
}

/// Many Stages promoting the same Freight at once all patch its status: sent
/// together, the API server retries each against the others' writes (every
/// attempt decoding and encoding the object again), which under load took
/// seconds per write. Queued here, they reach it one after another.
#[derive(Default)]
pub struct FreightWrites {
    /// By namespace and Freight name.
    locks: std::sync::Mutex<std::collections::HashMap<(String, String), FreightLock>>,
}

type FreightLock = Arc<tokio::sync::Mutex<()>>;

impl FreightWrites {
    fn lock_for(&self, namespace: &str, name: &str) -> FreightLock {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the locks nobody holds or waits for, so the map stays small.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
            .clone()
    }
}

pub async fn reconcile(stage: Arc<Stage>, ctx: Arc<StageContext>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&stage, &ctx).await;
    ctx.metrics
        .reconciled("stage", started.elapsed(), result.is_err());
    if result.is_ok() {
        ctx.backoff.succeeded(&stage_key(&stage));
    }
    result
}

pub fn error_policy(stage: Arc<Stage>, error: &Error, ctx: Arc<StageContext>) -> Action {
    let wait = ctx.backoff.after_failure(stage_key(&stage), error);
    tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "stage reconcile failed");
    Action::requeue(wait)
}

fn stage_key(stage: &Stage) -> (String, String) {
    (stage.namespace().unwrap_or_default(), stage.name_any())
}

async fn reconcile_inner(stage: &Stage, ctx: &StageContext) -> Result<Action, Error> {
    // Health, history and auto-promotion read the caches: wait for their first list.
    let ready = cache_ready(&ctx.applications).await
        && cache_ready(&ctx.promotions).await
        && cache_ready(&ctx.freight).await
        && cache_ready(&ctx.project_configs).await;
    if !ready {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let namespace = stage.namespace().unwrap_or_default();
    let name = stage.name_any();
    let now = Timestamp::now();
    let promotions: Vec<Arc<Promotion>> = ctx
        .promotions
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()) && p.spec.stage == name)
        .collect();
    let refs: Vec<&Promotion> = promotions.iter().map(|p| p.as_ref()).collect();
    let (current, last) = current_and_last(&refs);
    let last_in_full = match last {
        Some(last) => Some(ctx.last_promotions.full(&ctx.client, last).await?),
        None => None,
    };
    let last = last_in_full.as_deref();
    let history = freight_history(&refs);
    let current_freight: Vec<String> = history
        .first()
        .map(|c| c.items.values().map(|f| f.name.clone()).collect())
        .unwrap_or_default();

    let health = assess(stage, ctx, current, last).await;
    let health_state = health.as_ref().and_then(|h| h.status);
    let config = ctx
        .project_configs
        .get(&ObjectRef::new(&namespace).within(&namespace));
    let policy = auto_promotion_policy(stage, config.as_deref());
    let observed = Observed {
        current,
        last,
        history: history.clone(),
        health,
        auto_promotion: policy.clone(),
    };
    let status = stage_status(stage, observed, now);
    // The metadata is the steps' (set-metadata), not this reconciler's.
    let written = stage.status.clone().map(|mut s| {
        s.metadata.clear();
        s
    });
    if written.as_ref() != Some(&status) {
        let api = Api::<Stage>::namespaced(ctx.client.clone(), &namespace);
        let body = json!({"apiVersion": Stage::api_version(&()), "kind": Stage::kind(&()), "status": status});
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    }

    record_freight_location(ctx, &namespace, &name, &history, last, health_state).await?;
    let soaked_at = if crate::stage::is_control_flow(stage) {
        pass_through(stage, ctx, &namespace, now).await?
    } else {
        auto_promote(stage, ctx, &policy, &current_freight, &refs, now).await?
    };
    // Freight soaking upstream becomes available at an exact instant that no
    // watch event marks: a timer for it, not a poll.
    let wait = soaked_at
        .and_then(|at| std::time::Duration::try_from(at.duration_since(now)).ok())
        .map_or(ctx.backstop, |until| {
            until.max(Duration::from_millis(1)).min(ctx.backstop)
        });
    Ok(Action::requeue(wait))
}

/// Health from the last Promotion's health checks, only when it succeeded
/// and nothing runs now. Registers the Applications as what wakes the Stage.
async fn assess(
    stage: &Stage,
    ctx: &StageContext,
    current: Option<&Promotion>,
    last: Option<&Promotion>,
) -> Option<Health> {
    let key = (stage.namespace().unwrap_or_default(), stage.name_any());
    let (apps, unreadable, config) = match health_basis(current, last) {
        HealthBasis::Nothing => return None,
        HealthBasis::Fixed(health) => {
            ctx.index.set(key, Vec::new());
            return Some(health);
        }
        HealthBasis::Apps {
            apps,
            unreadable,
            config,
        } => (apps, unreadable, config),
    };
    let mut results: Vec<(String, HealthState, Option<String>)> = unreadable
        .into_iter()
        .map(|(what, why)| (what, HealthState::Unknown, Some(why)))
        .collect();
    let mut targets = Vec::new();
    for AppHealthCheck {
        name,
        namespace,
        desired_revisions: desired,
    } in apps
    {
        targets.push(AwaitTarget::Named {
            kind: "Application".into(),
            namespace: namespace.clone(),
            name: name.clone(),
        });
        let cached = ctx
            .applications
            .get(&ObjectRef::new(&name).within(&namespace));
        let what = format!("Application {namespace}/{name}");
        if let Some(why) = ctx.app_scope.refuses(&namespace) {
            results.push((what, HealthState::Unknown, Some(why)));
            continue;
        }
        let (state, issue) = match assess_health(cached.as_deref(), &desired) {
            AppHealth::Healthy => (HealthState::Healthy, None),
            AppHealth::Progressing(why) => (HealthState::Progressing, Some(why)),
            AppHealth::Unhealthy(why) => (HealthState::Unhealthy, Some(why)),
            AppHealth::Unknown { reason, refresh } => {
                if refresh && let Some(app) = cached.as_deref() {
                    request_refresh(&ctx.client, app).await;
                }
                (HealthState::Unknown, Some(reason))
            }
        };
        results.push((what, state, issue));
    }
    ctx.index.set(key, targets);
    let mut health = merge_health(&results);
    health.config = Some(config);
    Some(health)
}

/// `currentlyIn` on the Stage's current Freight (and off the Freight it
/// replaced), and `verifiedIn` once the Stage is healthy with it.
async fn record_freight_location(
    ctx: &StageContext,
    namespace: &str,
    stage: &str,
    history: &[crate::api::FreightCollection],
    last: Option<&Promotion>,
    health: Option<HealthState>,
) -> Result<(), Error> {
    let api = Api::<Freight>::namespaced(ctx.client.clone(), namespace);
    let cached = |name: &str| ctx.freight.get(&ObjectRef::new(name).within(namespace));
    // A Freight promoted again (a rollback) is both current and further down
    // the history: it is current, and is looked at once. Taking it out of the
    // Stage for its older entry would undo the current one's write, and each
    // write wakes the Stage again.
    let mut current = BTreeSet::new();
    let mut names = Vec::new();
    for (i, collection) in history.iter().enumerate() {
        for freight in collection.items.values() {
            if i == 0 {
                current.insert(freight.name.clone());
            }
            if !names.contains(&freight.name) {
                names.push(freight.name.clone());
            }
        }
    }
    for freight_name in &names {
        let Some(freight) = cached(freight_name) else {
            continue;
        };
        let status = freight.status.clone().unwrap_or_default();
        let mut patch = serde_json::Map::new();
        if current.contains(freight_name) {
            if !status.currently_in.contains_key(stage) {
                let since = last
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.finished_at.clone());
                patch.insert("currentlyIn".into(), json!({stage: {"since": since}}));
            }
            if health == Some(HealthState::Healthy) && !status.verified_in.contains_key(stage) {
                patch.insert(
                    "verifiedIn".into(),
                    json!({stage: {"verifiedAt": Time(Timestamp::now())}}),
                );
            }
        } else if let Some(stay) = status.currently_in.get(stage) {
            patch.insert("currentlyIn".into(), json!({stage: null}));
            // Its stay ended: a verified Freight keeps its longest one, which
            // counts toward requiredSoakTime downstream.
            if let (Some(verified), Some(since)) = (status.verified_in.get(stage), &stay.since) {
                // It left when the Freight that replaced it arrived.
                let left = last
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.finished_at.as_ref())
                    .map_or_else(Timestamp::now, |t| t.0);
                let lasted = crate::availability::stay(since.0, left);
                let longer = verified.longest_soak.is_none_or(|longest| {
                    lasted.parse::<kube::core::Duration>().is_ok_and(|l| {
                        std::time::Duration::from(l) > std::time::Duration::from(longest)
                    })
                });
                if longer {
                    patch.insert("verifiedIn".into(), json!({stage: {"longestSoak": lasted}}));
                }
            }
        }
        if !patch.is_empty() {
            let body = json!({"status": patch});
            let lock = ctx.freight_writes.lock_for(namespace, freight_name);
            let _turn = lock.lock().await;
            api.patch_status(freight_name, &PatchParams::default(), &Patch::Merge(&body))
                .await?;
        }
    }
    Ok(())
}

/// A control-flow Stage marks every Freight available to it verified in it
/// (Kargo's), so downstream Stages may take it; returns when the next
/// soaking one becomes available.
async fn pass_through(
    stage: &Stage,
    ctx: &StageContext,
    namespace: &str,
    now: Timestamp,
) -> Result<Option<Timestamp>, Error> {
    let freight: Vec<Arc<Freight>> = ctx
        .freight
        .state()
        .into_iter()
        .filter(|f| f.namespace().as_deref() == Some(namespace))
        .collect();
    let refs: Vec<&Freight> = freight.iter().map(|f| f.as_ref()).collect();
    let (ready, next) = crate::stage::passed_through(stage, &refs, now);
    let api = Api::<Freight>::namespaced(ctx.client.clone(), namespace);
    let name = stage.name_any();
    for f in ready {
        let body = json!({"status": {"verifiedIn": {&name: {"verifiedAt": Time(now)}}}});
        api.patch_status(&f.name_any(), &PatchParams::default(), &Patch::Merge(&body))
            .await?;
    }
    Ok(next)
}

/// Creates the Promotions of auto-promotion, named after Stage and Freight
/// so that racing reconciles can never create two, each with an Event on
/// the Stage saying why.
async fn auto_promote(
    stage: &Stage,
    ctx: &StageContext,
    policy: &AutoPromotionPolicy,
    current: &[String],
    promotions: &[&Promotion],
    now: Timestamp,
) -> Result<Option<Timestamp>, Error> {
    if !policy.enabled {
        return Ok(None);
    }
    let namespace = stage.namespace().unwrap_or_default();
    let name = stage.name_any();
    let freight: Vec<Arc<Freight>> = ctx
        .freight
        .state()
        .into_iter()
        .filter(|f| f.namespace().as_deref() == Some(namespace.as_str()))
        .collect();
    let refs: Vec<&Freight> = freight.iter().map(|f| f.as_ref()).collect();
    let promoted: Vec<String> = promotions.iter().map(|p| p.spec.freight.clone()).collect();
    let api = Api::<Promotion>::namespaced(ctx.client.clone(), &namespace);
    let (candidates, soaked_at) = auto_promotion_candidates(stage, current, &refs, &promoted, now);
    for candidate in candidates {
        let freight_name = candidate.name_any();
        let promotion_name = auto_promotion_name(&name, &freight_name);
        let mut labels = json!({"barge.dev/stage": name});
        if let Some(shard) = stage.labels().get(crate::api::LABEL_SHARD) {
            labels[crate::api::LABEL_SHARD] = json!(shard);
        }
        let promotion = json!({
            "apiVersion": Promotion::api_version(&()),
            "kind": Promotion::kind(&()),
            "metadata": {
                "name": promotion_name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [owner(stage)],
            },
            "spec": {"stage": name, "freight": freight_name},
        });
        let promotion: Promotion = match serde_json::from_value(promotion) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "could not build an automatic Promotion");
                continue;
            }
        };
        match api.create(&PostParams::default(), &promotion).await {
            Ok(_) => {
                tracing::info!(stage = %name, freight = %freight_name, "auto-promotion created a Promotion");
                let note = format!(
                    "Promotion {promotion_name} of Freight {freight_name} created: {}",
                    policy.message
                );
                let event = Event {
                    type_: EventType::Normal,
                    reason: "AutoPromoted".into(),
                    note: Some(note),
                    action: "AutoPromote".into(),
                    secondary: None,
                };
                if let Err(e) = ctx.recorder.publish(&event, &stage.object_ref(&())).await {
                    tracing::warn!(error = %e, "could not publish event");
                }
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(soaked_at)
}

fn owner(stage: &Stage) -> OwnerReference {
    OwnerReference {
        api_version: Stage::api_version(&()).to_string(),
        kind: Stage::kind(&()).to_string(),
        name: stage.name_any(),
        uid: stage.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod reconcile_tests;
