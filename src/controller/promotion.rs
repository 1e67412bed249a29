//! The Promotion reconciler: the imperative shell around the engine. It
//! decides whose turn it is on the Stage, freezes the plan on the first
//! reconcile, runs steps through the executor, and writes what changed in
//! its status (a merge patch, conditional on the resourceVersion) only when
//! something did.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, cache_ready, project_data};
use crate::api::{
    ABORT_TERMINATE, ANNOTATION_ABORT, AwaitedObject, ClusterPromotionTask, Freight,
    FreightCollection, HealthCheckStep, Promotion, PromotionPhase, PromotionPlan, PromotionStatus,
    PromotionTask, Stage, StepExecutionMetadata, TaskKind, free_form,
};
use crate::await_index::{AwaitTarget, PULL_REQUEST};
use crate::inflate::{self, TaskMap, TaskSpec};
use crate::promotion::engine::{self, FinalPhase, Progress, StepMeta};
use crate::promotion::evaluate::{ExprEvaluator, PromotionFacts};
use crate::stage::promotion_collection;
use crate::steps::executor::{self, Stop, Subject};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = crate::CONTROLLER_NAME;

pub async fn reconcile(promotion: Arc<Promotion>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconcile_started(&key(&promotion));
    let result = match reconcile_inner(&promotion, &ctx).await {
        // Nothing was written: the newer Promotion's watch event brings it back.
        Err(Error::Stale { what }) => {
            tracing::debug!(%what, "reconciled from a stale cache; waiting for the newer object");
            Ok(Action::requeue(ctx.backstop))
        }
        // Retrying the same write cannot help: end with what the server has.
        Err(Error::StatusRefused { message }) => {
            let status = promotion.status.clone().unwrap_or_default();
            finish(&promotion, &ctx, status, PromotionPhase::Errored, message)
                .await
                .map(|()| Action::await_change())
        }
        other => other,
    };
    ctx.metrics
        .reconciled("promotion", started.elapsed(), result.is_err());
    if result.is_ok() {
        ctx.backoff.succeeded(&key(&promotion));
    }
    result
}

pub fn error_policy(promotion: Arc<Promotion>, error: &Error, ctx: Arc<Context>) -> Action {
    let wait = ctx.backoff.after_failure(key(&promotion), error);
    tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "promotion reconcile failed");
    Action::requeue(wait)
}

fn key(promotion: &Promotion) -> (String, String) {
    (
        promotion.namespace().unwrap_or_default(),
        promotion.name_any(),
    )
}

async fn reconcile_inner(promotion: &Promotion, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = key(promotion);
    let status = promotion.status.clone().unwrap_or_default();
    if promotion.is_terminal() {
        ctx.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    // Steps read the Application cache: deciding from a cache that has not
    // listed yet (just started, or just became leader) would see nothing.
    if !cache_ready(&ctx.services.applications).await {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    if is_abort_requested(promotion) {
        return abort(promotion, ctx, status).await;
    }

    // A Promotion that started keeps its turn: sent back to wait, its
    // Stage's queue could wait on itself (those queued behind it waited for
    // it to end, and it would now wait for one of them).
    if promotion.phase() != PromotionPhase::Running
        && let Some(blocker) = blocker(promotion, ctx).await?
    {
        return wait_for_turn(promotion, ctx, status, &blocker).await;
    }

    let mut status = status;
    if let Some(refresh) = crate::api::refresh_requested(&promotion.metadata) {
        // This reconcile is the refresh; the status write records it.
        status.last_handled_refresh = refresh.to_string();
    }
    let Some(plan) = status.plan.clone() else {
        return start(promotion, ctx, status).await;
    };

    // What the plan's configMap(), secret() and metadata functions read.
    let uses = project_data::Uses::of(&serde_json::to_string(&plan.steps).unwrap_or_default());
    let data = if uses.any() {
        let namespace = promotion.namespace().unwrap_or_default();
        Some(
            project_data::fetch(&ctx.services.client, &namespace, uses)
                .await
                .map_err(|source| Error::Read {
                    what: "what the plan's expressions read (ConfigMaps, Secrets, metadata)".into(),
                    source,
                })?,
        )
    } else {
        None
    };
    let mut stop = run_steps(promotion, ctx, &plan, &mut status, data.as_ref()).await;
    if let Some(data) = &data {
        // The message becomes the status's and an Event's.
        let (Stop::Finished { message, .. } | Stop::Waiting { message, .. }) = &mut stop;
        *message = message
            .take()
            .map(|m| crate::expr::redact_secrets(&m, data));
    }
    let now = Timestamp::now();
    match stop {
        Stop::Finished { phase, message } => {
            let phase = match phase {
                FinalPhase::Succeeded => PromotionPhase::Succeeded,
                FinalPhase::Failed => PromotionPhase::Failed,
                FinalPhase::Errored => PromotionPhase::Errored,
                FinalPhase::Aborted => PromotionPhase::Aborted,
            };
            finish(promotion, ctx, status, phase, message.unwrap_or_default()).await?;
            Ok(Action::await_change())
        }
        Stop::Waiting {
            alias,
            awaiting,
            message,
            wake_at,
        } => {
            let backstop = add(now, ctx.backstop);
            let deadline = record_wait(
                &mut status,
                &alias,
                &awaiting,
                message,
                wake_at.map_or(backstop, |w| w.min(backstop)),
                now,
            );
            ctx.index_set(&namespace, &name, awaiting);
            write_status(promotion, ctx, status).await?;
            let wait = deadline.duration_since(now).unsigned_abs();
            Ok(Action::requeue(wait.max(Duration::from_millis(10))))
        }
    }
}

/// Runs the plan's steps from where the Promotion stands until one waits or
/// all are done, recording their progress in `status` and their durations
/// in the metrics.
async fn run_steps(
    promotion: &Promotion,
    ctx: &Context,
    plan: &PromotionPlan,
    status: &mut PromotionStatus,
    data: Option<&crate::expr::ProjectData>,
) -> Stop {
    let (namespace, name) = key(promotion);
    let mut progress = progress_from(status);
    let freight: Vec<_> = status
        .freight_collection
        .as_ref()
        .map(|c| c.items.values().cloned().collect())
        .unwrap_or_default();
    let subject = Subject {
        namespace: &namespace,
        promotion: &name,
        promotion_uid: promotion.metadata.uid.as_deref().unwrap_or_default(),
        stage: &promotion.spec.stage,
        actor: actor(promotion, ctx),
        freight: &freight,
    };
    let facts = PromotionFacts {
        namespace: &namespace,
        stage: &promotion.spec.stage,
        promotion: &name,
        actor: actor(promotion, ctx),
        freight: status.freight.as_ref(),
        freight_alias: &plan.freight_alias,
        collection: status.freight_collection.as_ref(),
        // Not fetched yet: the data functions see every object missing.
        data,
        now: None,
    };
    let evaluator = ExprEvaluator::new(&facts, &plan.vars);
    let metas_before = progress.metas.clone();
    let stop = executor::execute(
        &subject,
        &plan.steps,
        &mut progress,
        &ctx.registry,
        &ctx.services,
        &evaluator,
    )
    .await;
    for step in executor::finished_since(&plan.steps, &metas_before, &progress.metas) {
        ctx.metrics
            .step_finished(&step.kind, &step.status, step.took);
    }
    apply_progress(status, &progress);
    if let Some(data) = data {
        redact(status, data);
    }
    stop
}

/// Takes every Secret value out of what the status shows: outputs and
/// messages (a step may have copied one there).
fn redact(status: &mut PromotionStatus, data: &crate::expr::ProjectData) {
    fn walk(value: &mut serde_json::Value, data: &crate::expr::ProjectData) {
        match value {
            serde_json::Value::String(text) => *text = crate::expr::redact_secrets(text, data),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, data)),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(|v| walk(v, data)),
            _ => {}
        }
    }
    for output in status.state.values_mut() {
        walk(output, data);
    }
    for meta in &mut status.step_execution_metadata {
        meta.message = crate::expr::redact_secrets(&meta.message, data);
    }
}

/// Records in status that step `alias` waits on `awaiting` until
/// `deadline` (its timeout or the backstop), keeping the instant the wait
/// began across reconciles. Returns the deadline.
fn record_wait(
    status: &mut PromotionStatus,
    alias: &str,
    awaiting: &[AwaitTarget],
    message: Option<String>,
    deadline: Timestamp,
    now: Timestamp,
) -> Timestamp {
    let previous = status.awaiting.iter().find(|a| a.alias == alias);
    let since = previous.and_then(|a| a.since.clone()).map_or(now, |t| t.0);
    // A wait that goes on keeps its deadline while it lies ahead, so a
    // wake-up that changes nothing does not rewrite status.
    let deadline = previous
        .and_then(|a| a.deadline.clone())
        .map(|t| t.0)
        .filter(|kept| *kept > now && *kept <= deadline)
        .unwrap_or(deadline);
    let message = message.unwrap_or_default();
    status.phase = Some(PromotionPhase::Running);
    status.awaiting = awaiting
        .iter()
        .map(|target| awaited(alias, target, &message, since, deadline))
        .collect();
    status.message = message;
    deadline
}

/// First reconcile of its turn: resolve the Stage, Freight and tasks,
/// inflate, and freeze the plan. Bad input ends the Promotion Errored; an
/// API server that did not answer is retried.
async fn start(
    promotion: &Promotion,
    ctx: &Context,
    mut status: PromotionStatus,
) -> Result<Action, Error> {
    let name = promotion.name_any();
    let planned = plan(promotion, ctx).await;
    let now = Timestamp::now();
    status.started_at = Some(Time(now));
    match planned {
        Ok((plan, freight, collection)) => {
            status.phase = Some(PromotionPhase::Running);
            status.message = String::new();
            status.freight = Some(freight.reference());
            status.freight_collection = Some(collection);
            status.current_step = 0;
            status.plan = Some(plan);
            let note = format!(
                "Promotion {name} started running {} steps",
                status.plan.as_ref().map_or(0, |p| p.steps.len())
            );
            // The status first: the Event is one more round trip, and
            // nothing waits on it.
            write_status(promotion, ctx, status).await?;
            ctx.publish(promotion, EventType::Normal, "PromotionStarted", note)
                .await;
            // The status write comes back as a watch event, which runs the first step.
            Ok(Action::requeue(ctx.backstop))
        }
        // The API server will answer again: retry, the Promotion is not at fault.
        Err(PlanError::Api(e)) => Err(e),
        // No event marks the instant the Freight has soaked: a timer does.
        Err(e @ PlanError::Soaking { at, .. }) => {
            let message = e.to_string();
            if status.phase != Some(PromotionPhase::Pending) || status.message != message {
                status.started_at = None;
                status.phase = Some(PromotionPhase::Pending);
                status.message = message;
                write_status(promotion, ctx, status).await?;
            }
            let wait = at.duration_since(now).unsigned_abs();
            Ok(Action::requeue(
                wait.max(Duration::from_millis(10)).min(ctx.backstop),
            ))
        }
        Err(e) => {
            let message = e.to_string();
            finish(promotion, ctx, status, PromotionPhase::Errored, message).await?;
            Ok(Action::await_change())
        }
    }
}

/// Why a Promotion could not be planned.
#[derive(Debug, thiserror::Error)]
enum PlanError {
    #[error("spec.stage: Stage \"{name}\" not found in namespace \"{namespace}\"")]
    StageNotFound { namespace: String, name: String },
    #[error("spec.freight: Freight \"{name}\" not found in namespace \"{namespace}\"")]
    FreightNotFound { namespace: String, name: String },
    #[error(
        "spec.freight: Freight \"{freight}\" is not available to Stage \"{stage}\": it is not approved for it, not from an origin it takes directly, and not verified (and soaked) in the upstream Stages it takes Freight from"
    )]
    Unavailable { freight: String, stage: String },
    /// Still soaking in an upstream Stage: the Promotion waits for the instant.
    #[error(
        "Freight \"{freight}\" becomes available to Stage \"{stage}\" at {at}, once it has soaked in the upstream Stage for the Stage's requiredSoakTime"
    )]
    Soaking {
        freight: String,
        stage: String,
        at: Timestamp,
    },
    /// The object is there but cannot be decoded (nested deeper than the
    /// JSON reader allows, say): reading it again would not help.
    #[error("{what} cannot be read: {reason}")]
    Unreadable { what: String, reason: String },
    #[error(transparent)]
    Inflate(#[from] inflate::InflateError),
    /// The API server did not answer: not the Promotion's fault, so retried.
    #[error(transparent)]
    Api(#[from] Error),
}

fn read_error(what: String) -> impl FnOnce(kube::Error) -> PlanError {
    move |source| match source {
        kube::Error::SerdeError(e) => PlanError::Unreadable {
            what,
            reason: e.to_string(),
        },
        source => PlanError::Api(Error::Read { what, source }),
    }
}

/// The plan, the Freight and the freight collection of a Promotion.
type Planned = (PromotionPlan, Freight, FreightCollection);

async fn plan(promotion: &Promotion, ctx: &Context) -> Result<Planned, PlanError> {
    let (namespace, _) = key(promotion);
    let client = ctx.services.client.clone();
    let stage_name = &promotion.spec.stage;
    let stage = Api::<Stage>::namespaced(client.clone(), &namespace)
        .get_opt(stage_name)
        .await
        .map_err(read_error(format!("Stage \"{stage_name}\"")))?
        .ok_or_else(|| PlanError::StageNotFound {
            namespace: namespace.clone(),
            name: stage_name.clone(),
        })?;
    let freight_name = &promotion.spec.freight;
    let freight = Api::<Freight>::namespaced(client.clone(), &namespace)
        .get_opt(freight_name)
        .await
        .map_err(read_error(format!("Freight \"{freight_name}\"")))?
        .ok_or_else(|| PlanError::FreightNotFound {
            namespace: namespace.clone(),
            name: freight_name.clone(),
        })?;
    // Cut when read (see crate::api::free_form): expressions would see part of it.
    if let Some(i) = freight
        .spec
        .artifacts
        .iter()
        .position(|a| a.metadata.as_ref().is_some_and(free_form::too_deep))
    {
        return Err(PlanError::Unreadable {
            what: format!("Freight \"{freight_name}\""),
            reason: format!("artifacts[{i}].metadata {}", free_form::too_deep_message()),
        });
    }

    // What Kargo's admission webhook refuses: Freight the Stage may not take.
    match crate::availability::availability(&stage, &freight, Timestamp::now()) {
        crate::availability::Availability::Now => {}
        crate::availability::Availability::At(at) => {
            return Err(PlanError::Soaking {
                freight: freight_name.clone(),
                stage: stage_name.clone(),
                at,
            });
        }
        crate::availability::Availability::No => {
            return Err(PlanError::Unavailable {
                freight: freight_name.clone(),
                stage: stage_name.clone(),
            });
        }
    }

    let request =
        inflate::Request::for_promotion(&namespace, stage_name, &stage.spec, Some(&promotion.spec));
    let mut tasks = TaskMap::new();
    for step in request.steps {
        let Some(task) = &step.task else { continue };
        let spec = match task.kind {
            TaskKind::PromotionTask => Api::<PromotionTask>::namespaced(client.clone(), &namespace)
                .get_opt(&task.name)
                .await
                .map(|t| t.map(|t| t.spec)),
            TaskKind::ClusterPromotionTask => Api::<ClusterPromotionTask>::all(client.clone())
                .get_opt(&task.name)
                .await
                .map(|t| t.map(|t| TaskSpec::from(t.spec))),
        }
        .map_err(read_error(format!("{} \"{}\"", task.kind, task.name)))?;
        if let Some(spec) = spec {
            tasks.insert(task.kind, task.name.clone(), spec);
        }
    }
    let mut plan = crate::cpu_bound::cpu_bound(|| inflate::inflate(&request, &tasks))?;
    plan.freight_alias = freight.spec.alias.clone().unwrap_or_default();
    let collection = promotion_collection(&stage, freight.reference());
    Ok((plan, freight, collection))
}

/// The Promotion that must finish before this one may run: one Promotion
/// runs per Stage, Running first, then the rest in creation order. A queued
/// Promotion waits on the one directly ahead of it, so when one ends only the
/// next wakes, and the rest of the queue keeps its recorded wait instead of
/// each rewriting it for every turn. The cache may lag, so a blocker is
/// confirmed against the API server.
async fn blocker(promotion: &Promotion, ctx: &Context) -> Result<Option<Promotion>, Error> {
    let (namespace, name) = key(promotion);
    let order = |p: &Promotion| {
        (
            p.phase() != PromotionPhase::Running,
            p.metadata.creation_timestamp.clone().map(|t| t.0),
            p.name_any(),
        )
    };
    let mine = order(promotion);
    let mut ahead: Vec<Arc<Promotion>> = ctx
        .promotions
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| {
            p.spec.stage == promotion.spec.stage && p.name_any() != name && !p.is_terminal()
        })
        .filter(|p| order(p) < mine)
        .collect();
    // Nearest first.
    ahead.sort_by_key(|p| std::cmp::Reverse(order(p)));
    let api = Api::<Promotion>::namespaced(ctx.services.client.clone(), &namespace);
    for candidate in ahead {
        match api.get_opt(&candidate.name_any()).await? {
            Some(live) if !live.is_terminal() => return Ok(Some(live)),
            _ => continue,
        }
    }
    Ok(None)
}

async fn wait_for_turn(
    promotion: &Promotion,
    ctx: &Context,
    mut status: PromotionStatus,
    blocker: &Promotion,
) -> Result<Action, Error> {
    let (namespace, name) = key(promotion);
    let now = Timestamp::now();
    let blocker_name = blocker.name_any();
    let message = format!(
        "waiting for Promotion \"{blocker_name}\" ({}) to finish: one Promotion runs per Stage at a time",
        blocker.phase()
    );
    let target = AwaitTarget::Named {
        kind: "Promotion".into(),
        namespace: namespace.clone(),
        name: blocker_name,
    };
    let since = status
        .awaiting
        .first()
        .and_then(|a| a.since.clone())
        .map_or(now, |t| t.0);
    status.phase = Some(PromotionPhase::Pending);
    status.message = message.clone();
    status.awaiting = vec![awaited(
        "",
        &target,
        &message,
        since,
        add(now, ctx.backstop),
    )];
    if status.awaiting.first().map(|a| &a.name)
        == promotion
            .status
            .as_ref()
            .and_then(|s| s.awaiting.first())
            .map(|a| &a.name)
    {
        // Keep the earlier deadline so an unchanged wait does not rewrite status.
        if let Some(old) = promotion.status.as_ref().and_then(|s| s.awaiting.first()) {
            status.awaiting[0].deadline = old.deadline.clone();
        }
    }
    ctx.index_set(&namespace, &name, vec![target]);
    write_status(promotion, ctx, status).await?;
    Ok(Action::requeue(ctx.backstop))
}

async fn abort(
    promotion: &Promotion,
    ctx: &Context,
    mut status: PromotionStatus,
) -> Result<Action, Error> {
    let mut progress = progress_from(&status);
    let steps = status
        .plan
        .as_ref()
        .map(|p| p.steps.clone())
        .unwrap_or_default();
    engine::abort(&mut progress, &steps, Timestamp::now());
    apply_progress(&mut status, &progress);
    let message =
        format!("Promotion aborted: annotation {ANNOTATION_ABORT} is \"{ABORT_TERMINATE}\"");
    finish(promotion, ctx, status, PromotionPhase::Aborted, message).await?;
    Ok(Action::await_change())
}

fn is_abort_requested(promotion: &Promotion) -> bool {
    let Some(value) = promotion.annotations().get(ANNOTATION_ABORT) else {
        return false;
    };
    if value.trim() == ABORT_TERMINATE {
        return true;
    }
    // Kargo also accepts a JSON request: {"action": "terminate", ...}.
    serde_json::from_str::<serde_json::Value>(value)
        .ok()
        .is_some_and(|v| v.get("action").and_then(|a| a.as_str()) == Some(ABORT_TERMINATE))
}

/// Ends the Promotion: terminal phase, message, finishedAt, an Event, and a
/// wake-up for whoever waits on it.
async fn finish(
    promotion: &Promotion,
    ctx: &Context,
    mut status: PromotionStatus,
    phase: PromotionPhase,
    message: String,
) -> Result<(), Error> {
    let (namespace, name) = key(promotion);
    status.phase = Some(phase);
    status.message = message.clone();
    status.awaiting.clear();
    status.finished_at = Some(Time(Timestamp::now()));
    let (type_, reason) = match phase {
        PromotionPhase::Succeeded => (EventType::Normal, "PromotionSucceeded"),
        PromotionPhase::Failed => (EventType::Warning, "PromotionFailed"),
        PromotionPhase::Aborted => (EventType::Warning, "PromotionAborted"),
        _ => (EventType::Warning, "PromotionErrored"),
    };
    let note = if message.is_empty() {
        format!("Promotion {name} {phase}")
    } else {
        format!("Promotion {name} {phase}: {message}")
    };
    write_status(promotion, ctx, status).await?;
    if let Some(uid) = promotion.uid() {
        ctx.services.work_dirs.remove(&uid);
    }
    ctx.metrics.promotion_finished(phase);
    ctx.publish(promotion, type_, reason, note).await;
    ctx.forget(&namespace, &name);
    Ok(())
}

/// Writes what changed in the status, skipped when nothing changed so a
/// reconcile never triggers itself: a JSON merge patch of the changed
/// fields only (the frozen plan and the freight collection travel once, in
/// the first write), conditional on the resourceVersion the reconcile
/// started from, so the status it is computed against is the server's.
async fn write_status(
    promotion: &Promotion,
    ctx: &Context,
    status: PromotionStatus,
) -> Result<(), Error> {
    if promotion.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let (namespace, name) = key(promotion);
    let api = Api::<Promotion>::namespaced(ctx.services.client.clone(), &namespace);
    let before = match &promotion.status {
        Some(before) => serde_json::to_value(before)?,
        None => json!({}),
    };
    let changed = merge_patch(&before, &serde_json::to_value(&status)?);
    // The resourceVersion makes the write conditional: a reconcile that
    // started from a cache older than the last write must not undo it
    // (finish twice, revive a finished Promotion, move finishedAt), and the
    // patch only holds against the status it was computed from.
    let mut body = json!({"status": changed.unwrap_or_else(|| json!({}))});
    if let Some(version) = &promotion.metadata.resource_version {
        body["metadata"] = json!({"resourceVersion": version});
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let written = api.patch_status(&name, &params, &Patch::Merge(&body)).await;
    match written {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Stale {
            what: format!("Promotion {namespace}/{name}"),
        }),
        Err(kube::Error::Api(refusal)) if refused_for_content(&refusal) => {
            Err(Error::StatusRefused {
                message: refusal_message(promotion.status.as_ref(), &status, &refusal),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the API server refused a write for what it held: too large
/// (413; or 500 with etcd's "request is too large", or with its gRPC
/// client's "trying to send message larger than max") or not valid against
/// the CRD (422). Unlike a conflict or an outage, writing it again cannot
/// succeed.
fn refused_for_content(refusal: &kube::core::Status) -> bool {
    refusal.code == 413
        || refusal.code == 422
        || refusal.message.contains("too large")
        || refusal.message.contains("message larger than max")
}

/// The message of a Promotion whose status was refused: for a status too
/// large, the largest part the write added or changed (a step's output or
/// message, the plan, the status message), which names the step when it is
/// a step's; for an invalid one, the API server's reason, which names the
/// field.
fn refusal_message(
    before: Option<&PromotionStatus>,
    after: &PromotionStatus,
    refusal: &kube::core::Status,
) -> String {
    let reason: String = refusal.message.chars().take(400).collect();
    if refusal.code == 422 {
        return format!("the API server refused the Promotion's status: {reason}");
    }
    let mut parts: Vec<(usize, String)> = Vec::new();
    if let Some(plan) = &after.plan
        && before.and_then(|b| b.plan.as_ref()) != Some(plan)
    {
        let what = format!("the plan of {} steps", plan.steps.len());
        parts.push((json_size(plan), what));
    }
    for (alias, output) in &after.state {
        if before.and_then(|b| b.state.get(alias)) != Some(output) {
            parts.push((json_size(output), format!("step \"{alias}\": its output")));
        }
    }
    for meta in &after.step_execution_metadata {
        let what = format!("step \"{}\": its message", meta.alias);
        parts.push((meta.message.len(), what));
    }
    // The Promotion's message ends with the step's that ended it: name the step.
    let from_a_step = after
        .step_execution_metadata
        .iter()
        .any(|m| !m.message.is_empty() && after.message.ends_with(&m.message));
    if !from_a_step {
        parts.push((after.message.len(), "the Promotion's message".to_string()));
    }
    let (bytes, what) = parts
        .into_iter()
        .max_by_key(|(bytes, _)| *bytes)
        .unwrap_or_default();
    format!(
        "{what} is {bytes} bytes, more than the Promotion's status can hold (the API server refused it: {reason})"
    )
}

/// The size of a value as JSON.
fn json_size<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len())
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`, `None` when
/// they are equal: objects are compared field by field, a field `to` lacks
/// is removed (`null`), anything else that differs is sent whole.
fn merge_patch(from: &serde_json::Value, to: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match (from, to) {
        (Value::Object(from), Value::Object(to)) => {
            let mut patch = serde_json::Map::new();
            for (field, value) in to {
                let change = match from.get(field) {
                    Some(old) => merge_patch(old, value),
                    None => Some(value.clone()),
                };
                if let Some(change) = change {
                    patch.insert(field.clone(), change);
                }
            }
            for field in from.keys().filter(|f| !to.contains_key(*f)) {
                patch.insert(field.clone(), Value::Null);
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (from, to) if from == to => None,
        (_, to) => Some(to.clone()),
    }
}

/// Who created the Promotion, when that can be believed: only the
/// create-actor admission policy stops anyone from writing any name.
fn actor<'p>(promotion: &'p Promotion, ctx: &Context) -> Option<&'p str> {
    if !ctx.trust_create_actor {
        return None;
    }
    promotion
        .annotations()
        .get(crate::api::ANNOTATION_CREATE_ACTOR)
        .map(String::as_str)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn awaited(
    alias: &str,
    target: &AwaitTarget,
    message: &str,
    since: Timestamp,
    deadline: Timestamp,
) -> AwaitedObject {
    let (kind, namespace, name, selector, repo_url) = match target {
        AwaitTarget::Named {
            kind,
            namespace,
            name,
        } => (
            kind.clone(),
            namespace.clone(),
            Some(name.clone()),
            None,
            None,
        ),
        AwaitTarget::Selected {
            kind,
            namespace,
            selector,
        } => (
            kind.clone(),
            namespace.clone(),
            None,
            Some(selector.clone()),
            None,
        ),
        AwaitTarget::PullRequest {
            namespace,
            repo_url,
            number,
        } => (
            PULL_REQUEST.to_string(),
            namespace.clone(),
            Some(number.to_string()),
            None,
            Some(repo_url.clone()),
        ),
    };
    AwaitedObject {
        alias: alias.to_string(),
        kind,
        namespace,
        name,
        selector,
        repo_url,
        message: message.to_string(),
        since: Some(Time(since)),
        deadline: Some(Time(deadline)),
    }
}

/// The wait targets recorded in a Promotion's status: what the index is
/// rebuilt from after a restart.
pub fn recorded_targets(promotion: &Promotion) -> Vec<AwaitTarget> {
    if promotion.is_terminal() {
        return Vec::new();
    }
    promotion
        .status
        .iter()
        .flat_map(|s| &s.awaiting)
        .filter_map(|a| match (&a.name, &a.selector) {
            (Some(name), _) if a.kind == PULL_REQUEST => Some(AwaitTarget::PullRequest {
                namespace: a.namespace.clone(),
                repo_url: a.repo_url.clone()?,
                number: name.parse().ok()?,
            }),
            (Some(name), _) => Some(AwaitTarget::Named {
                kind: a.kind.clone(),
                namespace: a.namespace.clone(),
                name: name.clone(),
            }),
            (None, Some(selector)) => Some(AwaitTarget::Selected {
                kind: a.kind.clone(),
                namespace: a.namespace.clone(),
                selector: selector.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn progress_from(status: &PromotionStatus) -> Progress {
    Progress {
        current_step: usize::try_from(status.current_step).unwrap_or(0),
        metas: status
            .step_execution_metadata
            .iter()
            .map(|m| StepMeta {
                alias: m.alias.clone(),
                started_at: m.started_at.as_ref().map(|t| t.0),
                finished_at: m.finished_at.as_ref().map(|t| t.0),
                error_count: m.error_count,
                status: m.status,
                message: (!m.message.is_empty()).then(|| m.message.clone()),
                continue_on_error: m.continue_on_error,
            })
            .collect(),
        state: status.state.clone().into_iter().collect(),
        health_checks: status
            .health_checks
            .iter()
            .map(|h| (h.uses.clone(), h.config.clone().unwrap_or_default()))
            .collect(),
    }
}

fn apply_progress(status: &mut PromotionStatus, progress: &Progress) {
    status.current_step = i64::try_from(progress.current_step).unwrap_or(i64::MAX);
    status.step_execution_metadata = progress
        .metas
        .iter()
        .map(|m| StepExecutionMetadata {
            alias: m.alias.clone(),
            started_at: m.started_at.map(Time),
            finished_at: m.finished_at.map(Time),
            error_count: m.error_count,
            status: m.status,
            message: m.message.clone().unwrap_or_default(),
            continue_on_error: m.continue_on_error,
        })
        .collect();
    status.state = progress.state.clone().into_iter().collect();
    status.health_checks = progress
        .health_checks
        .iter()
        .map(|(uses, config)| HealthCheckStep {
            uses: uses.clone(),
            config: Some(config.clone()),
        })
        .collect();
}

impl Context {
    fn index_set(&self, namespace: &str, name: &str, targets: Vec<AwaitTarget>) {
        self.index
            .set((namespace.to_string(), name.to_string()), targets);
    }

    /// Drops the Promotion from the index and wakes whoever waits on it.
    fn forget(&self, namespace: &str, name: &str) {
        self.index
            .remove(&(namespace.to_string(), name.to_string()));
        super::wake_all(
            &self.index,
            &self.wake,
            "Promotion",
            namespace,
            name,
            &Default::default(),
        );
    }

    async fn publish(&self, promotion: &Promotion, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Promote".into(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &promotion.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

#[cfg(test)]
#[path = "promotion_tests.rs"]
mod reconcile_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> AwaitTarget {
        AwaitTarget::Named {
            kind: "Application".into(),
            namespace: "argocd".into(),
            name: name.into(),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_merge_patch_carries_only_what_changed_and_removes_what_went() {
        let from = json!({"phase": "Running", "plan": {"steps": [1, 2]}, "awaiting": [{"name": "a"}],
                          "state": {"update": {"apps": 1}, "old": true}, "message": "waiting"});
        let to = json!({"phase": "Succeeded", "plan": {"steps": [1, 2]},
                        "state": {"update": {"apps": 2}}, "message": "waiting", "finishedAt": "now"});
        let patch = merge_patch(&from, &to);
        assert_eq!(
            patch,
            Some(
                json!({"phase": "Succeeded", "awaiting": null, "finishedAt": "now",
                        "state": {"update": {"apps": 2}, "old": null}})
            )
        );
        assert_eq!(merge_patch(&to, &to), None);
        // Applied to where it came from, it gives where it goes.
        let mut applied = from.clone();
        json_patch::merge(&mut applied, &patch.unwrap_or_default());
        assert_eq!(applied, to);
    }

    #[test]
    fn a_wait_is_recorded_with_what_it_waits_on_and_until_when() {
        let mut status = PromotionStatus::default();
        let message = Some("waiting for demo-dev".to_string());
        let deadline = record_wait(
            &mut status,
            "update",
            &[app("demo-dev")],
            message,
            at(300),
            at(0),
        );
        assert_eq!(deadline, at(300));
        assert_eq!(status.phase, Some(PromotionPhase::Running));
        assert_eq!(status.message, "waiting for demo-dev");
        let waited = &status.awaiting[0];
        assert_eq!(
            (waited.alias.as_str(), waited.name.as_deref()),
            ("update", Some("demo-dev"))
        );
        assert_eq!(waited.since.as_ref().map(|t| t.0), Some(at(0)));
        assert_eq!(waited.deadline.as_ref().map(|t| t.0), Some(at(300)));
    }

    #[test]
    fn a_step_still_waiting_keeps_the_instant_it_began_to_wait() {
        let mut status = PromotionStatus::default();
        record_wait(&mut status, "update", &[app("a")], None, at(300), at(0));
        record_wait(
            &mut status,
            "update",
            &[app("a"), app("b")],
            None,
            at(310),
            at(10),
        );
        assert!(
            status
                .awaiting
                .iter()
                .all(|a| a.since.as_ref().map(|t| t.0) == Some(at(0)))
        );
        assert_eq!(status.awaiting.len(), 2);
        // The next step's wait starts now.
        record_wait(&mut status, "wait", &[app("a")], None, at(320), at(20));
        assert_eq!(status.awaiting[0].since.as_ref().map(|t| t.0), Some(at(20)));
    }

    #[test]
    fn a_wait_that_goes_on_keeps_its_deadline_until_it_passes() {
        let mut status = PromotionStatus::default();
        record_wait(&mut status, "update", &[app("a")], None, at(300), at(0));
        // Woken at 10 s with nothing changed: the backstop is not pushed back.
        let kept = record_wait(&mut status, "update", &[app("a")], None, at(310), at(10));
        assert_eq!(kept, at(300));
        // A nearer deadline (a step timeout) wins.
        let nearer = record_wait(&mut status, "update", &[app("a")], None, at(100), at(20));
        assert_eq!(nearer, at(100));
        // Once it passed, the wait gets a new one.
        let renewed = record_wait(&mut status, "update", &[app("a")], None, at(400), at(100));
        assert_eq!(renewed, at(400));
    }
}
