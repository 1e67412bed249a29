//! The Warehouse reconciler: the shell around discovery. It decides when
//! to discover (`warehouse::schedule`), reads the credentials Secrets the
//! subscriptions need, discovers, writes `status.discoveredArtifacts` and
//! the conditions, and, with `freightCreationPolicy: Automatic`, creates
//! the Freight of the newest artifacts (`warehouse::freight`). A failing
//! source backs off; a broken subscription waits for the Warehouse to
//! change. Never a discovery because of its own status write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::Error;
use super::promotion::FIELD_MANAGER;
use crate::api::warehouse::{FreightCreationPolicy, Subscription};
use crate::api::{Freight, Warehouse, WarehouseStatus};
use crate::metrics::Metrics;
use crate::stage::condition;
use crate::warehouse::discover::{CredentialSecrets, Discoverer, credential_types};
use crate::warehouse::discovered::DiscoveredArtifacts;
use crate::warehouse::freight::{criteria_satisfied, newest_freight};
use crate::warehouse::schedule::{self, Next};

pub struct WarehouseContext {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub discoverer: Discoverer,
    /// Failed discoveries in a row, and when to retry, by Warehouse UID.
    failures: Mutex<HashMap<String, (u32, Timestamp)>>,
}

impl WarehouseContext {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        discoverer: Discoverer,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            discoverer,
            failures: Mutex::default(),
        }
    }

    fn retry_at(&self, uid: &str) -> Option<Timestamp> {
        self.failures
            .lock()
            .ok()
            .and_then(|f| f.get(uid).map(|(_, at)| *at))
    }

    /// Records a failure; the backoff before the next try.
    fn failed(&self, uid: &str, interval: Duration, now: Timestamp) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return schedule::FIRST_BACKOFF;
        };
        let count = failures.get(uid).map_or(0, |(n, _)| *n) + 1;
        let wait = schedule::backoff(count, interval);
        let at = jiff::SignedDuration::try_from(wait)
            .ok()
            .and_then(|w| now.checked_add(w).ok())
            .unwrap_or(now);
        failures.insert(uid.to_string(), (count, at));
        wait
    }

    fn succeeded(&self, uid: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(uid);
        }
    }
}

pub fn error_policy(_w: Arc<Warehouse>, error: &Error, _ctx: Arc<WarehouseContext>) -> Action {
    tracing::warn!(%error, "warehouse reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

pub async fn reconcile(
    warehouse: Arc<Warehouse>,
    ctx: Arc<WarehouseContext>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&warehouse, &ctx).await;
    ctx.metrics
        .reconciled("warehouse", started.elapsed(), result.is_err());
    result
}

/// What one reconcile concluded, before it is written.
struct Outcome {
    status: WarehouseStatus,
    /// A Warning Event to post (reason, message), when the news is bad and new.
    warning: Option<(&'static str, String)>,
    created: Option<Freight>,
    requeue: Duration,
}

async fn reconcile_inner(warehouse: &Warehouse, ctx: &WarehouseContext) -> Result<Action, Error> {
    if warehouse.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let uid = warehouse.uid().unwrap_or_else(|| warehouse.name_any());
    let generation = warehouse.metadata.generation;
    let previous = warehouse.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    if let Some(token) = crate::api::refresh_requested(&warehouse.metadata) {
        status.last_handled_refresh = token.to_string();
    }

    let subscriptions: Result<Vec<Subscription>, String> = warehouse
        .subscriptions()
        .into_iter()
        .collect::<Result<_, _>>();
    let checked = schedule::interval(warehouse).and_then(|i| subscriptions.map(|s| (i, s)));
    let (interval, subscriptions) = match checked {
        Ok(ok) => ok,
        Err(message) => {
            // Nothing to retry until someone edits the Warehouse.
            status.observed_generation = generation;
            set(
                &mut status,
                "Ready",
                "False",
                "InvalidSpec",
                &message,
                generation,
                now,
            );
            set(
                &mut status,
                "Healthy",
                "False",
                "InvalidSpec",
                &message,
                generation,
                now,
            );
            let outcome = Outcome {
                warning: Some(("InvalidSpec", message)),
                status,
                created: None,
                requeue: Duration::ZERO,
            };
            write(warehouse, &previous, outcome, ctx).await?;
            return Ok(Action::await_change());
        }
    };

    let why = match schedule::next_discovery(warehouse, interval, ctx.retry_at(&uid), now) {
        Next::At(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or(interval);
            return Ok(Action::requeue(wait.max(Duration::from_millis(10))));
        }
        Next::Now { why } => why,
    };
    tracing::debug!(warehouse = %warehouse.name_any(), why, "discovering");

    let namespace = warehouse.namespace().unwrap_or_default();
    let mut secrets = CredentialSecrets::default();
    for cred_type in credential_types(&subscriptions) {
        let found = crate::steps::repository::labelled_secrets(&ctx.client, &namespace, cred_type)
            .await
            .map_err(|source| Error::Read {
                what: format!("{cred_type} credentials Secrets"),
                source,
            })?;
        secrets.by_type.insert(cred_type, found);
    }
    let last: Option<DiscoveredArtifacts> = (previous.observed_generation == generation)
        .then(|| {
            previous
                .discovered_artifacts
                .clone()
                .and_then(|v| serde_json::from_value(v).ok())
        })
        .flatten();
    let began = Instant::now();
    let (mut artifacts, failures) = ctx
        .discoverer
        .discover(warehouse, &subscriptions, &secrets, last.as_ref())
        .await;
    ctx.metrics.warehouse_discovery(
        began.elapsed(),
        if failures.is_empty() {
            "success"
        } else {
            failures[0].reason()
        },
    );

    if !failures.is_empty() {
        let message = failures
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let all_config = failures
            .iter()
            .all(|e| matches!(e, crate::warehouse::discovered::DiscoveryError::Config(_)));
        let requeue = if all_config {
            // Retrying cannot help a subscription written wrong.
            status.observed_generation = generation;
            Duration::ZERO
        } else {
            ctx.failed(&uid, interval, now)
        };
        let reason = failures[0].reason();
        let retry = if requeue.is_zero() {
            String::new()
        } else {
            format!(" (retrying in {}s)", requeue.as_secs())
        };
        set(
            &mut status,
            "Healthy",
            "False",
            "DiscoveryFailed",
            &format!("Unable to discover artifacts: {message}"),
            generation,
            now,
        );
        set(
            &mut status,
            "Ready",
            "False",
            reason,
            &format!("Artifact discovery failed: {message}{retry}"),
            generation,
            now,
        );
        let outcome = Outcome {
            warning: Some(("DiscoveryFailed", message)),
            status,
            created: None,
            requeue,
        };
        write(warehouse, &previous, outcome, ctx).await?;
        return Ok(if requeue.is_zero() {
            Action::await_change()
        } else {
            Action::requeue(requeue)
        });
    }
    ctx.succeeded(&uid);

    artifacts.discovered_at = now.to_string();
    status.discovered_artifacts = serde_json::to_value(&artifacts).ok();
    status.observed_generation = generation;
    let mut outcome = Outcome {
        status,
        warning: None,
        created: None,
        requeue: interval,
    };
    conclude(warehouse, &artifacts, &mut outcome, now, ctx).await?;
    let requeue = outcome.requeue;
    write(warehouse, &previous, outcome, ctx).await?;
    Ok(Action::requeue(requeue))
}

/// After a successful discovery: the Freight, if one is to be made, and
/// the conditions saying how it went.
async fn conclude(
    warehouse: &Warehouse,
    artifacts: &DiscoveredArtifacts,
    outcome: &mut Outcome,
    now: Timestamp,
    ctx: &WarehouseContext,
) -> Result<(), Error> {
    let generation = warehouse.metadata.generation;
    let status = &mut outcome.status;
    let mut candidate = match newest_freight(warehouse, artifacts, now) {
        Ok(f) => f,
        Err(missing) => {
            set(
                status,
                "Healthy",
                "False",
                missing.reason,
                &missing.message,
                generation,
                now,
            );
            set(
                status,
                "Ready",
                "False",
                missing.reason,
                &missing.message,
                generation,
                now,
            );
            return Ok(());
        }
    };
    remove(status, "FreightCreated");
    remove(status, "FreightCreationCriteriaSatisfied");
    if warehouse.spec.freight_creation_policy == FreightCreationPolicy::Automatic {
        let expression = warehouse
            .spec
            .freight_creation_criteria
            .as_ref()
            .map(|c| c.expression.as_str())
            .unwrap_or_default();
        match criteria_satisfied(expression, &candidate) {
            Err(e) => {
                let message = format!(
                    "Evaluation of Freight creation criteria failed: spec.freightCreationCriteria.expression: {e}"
                );
                set(
                    status,
                    "Healthy",
                    "False",
                    "CriteriaEvaluationFailed",
                    &message,
                    generation,
                    now,
                );
                set(
                    status,
                    "Ready",
                    "False",
                    "CriteriaEvaluationFailed",
                    &message,
                    generation,
                    now,
                );
                outcome.warning = Some(("CriteriaEvaluationFailed", message));
                return Ok(());
            }
            Ok(false) => set(
                status,
                "FreightCreationCriteriaSatisfied",
                "False",
                "CriteriaNotSatisfied",
                "Freight creation criteria were not satisfied",
                generation,
                now,
            ),
            Ok(true) => {
                if !expression.trim().is_empty() {
                    set(
                        status,
                        "FreightCreationCriteriaSatisfied",
                        "True",
                        "CriteriaSatisfied",
                        "Freight creation criteria satisfied",
                        generation,
                        now,
                    );
                }
                let api: Api<Freight> = Api::namespaced(
                    ctx.client.clone(),
                    &warehouse.namespace().unwrap_or_default(),
                );
                let name = candidate.name_any();
                let previous = &status.last_freight_id;
                if !previous.is_empty() && *previous != name {
                    let before = api
                        .get_opt(previous)
                        .await?
                        .and_then(|f| f.spec.discovered_at)
                        .map(|t| t.0);
                    candidate.spec.discovered_at =
                        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            discovered_after(before, now),
                        ));
                }
                match api.create(&PostParams::default(), &candidate).await {
                    Ok(_) => {
                        set(
                            status,
                            "FreightCreated",
                            "True",
                            "NewFreight",
                            "No Freight composed of the newest artifacts already existed",
                            generation,
                            now,
                        );
                        ctx.metrics.freight_created();
                        outcome.created = Some(candidate);
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => set(
                        status,
                        "FreightCreated",
                        "False",
                        "AlreadyExists",
                        "Freight composed of the newest artifacts already exists",
                        generation,
                        now,
                    ),
                    Err(e) => {
                        let message = format!("Error creating Freight {name:?}: {e}");
                        set(
                            status,
                            "Ready",
                            "False",
                            "FreightCreationFailure",
                            &message,
                            generation,
                            now,
                        );
                        outcome.warning = Some(("FreightCreationFailure", message));
                        outcome.requeue = schedule::FIRST_BACKOFF;
                        return Ok(());
                    }
                }
                status.last_freight_id = name;
            }
        }
    }
    let subscriptions = warehouse.spec.subscriptions.len();
    set(
        status,
        "Healthy",
        "True",
        "ReconciliationSucceeded",
        "",
        generation,
        now,
    );
    set(
        status,
        "Ready",
        "True",
        "ArtifactsDiscovered",
        &format!("Successfully discovered artifacts from {subscriptions} subscriptions"),
        generation,
        now,
    );
    Ok(())
}

/// When new Freight was discovered, as written (whole seconds): at least a
/// second after the Warehouse's previous Freight, so that "newest" (which
/// auto-promotion takes) keeps the order of discovery when two come within
/// one second.
pub fn discovered_after(previous: Option<Timestamp>, now: Timestamp) -> Timestamp {
    let whole = |t: Timestamp| t.as_second();
    match previous {
        Some(before) if whole(before) >= whole(now) => {
            Timestamp::from_second(whole(before).saturating_add(1)).unwrap_or(now)
        }
        _ => now,
    }
}

fn set(
    status: &mut WarehouseStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let c: Condition = condition(
        &status.conditions,
        type_,
        value,
        reason,
        message.to_string(),
        generation,
        now,
    );
    match status.conditions.iter_mut().find(|old| old.type_ == type_) {
        Some(old) => *old = c,
        None => status.conditions.push(c),
    }
}

fn remove(status: &mut WarehouseStatus, type_: &str) {
    status.conditions.retain(|c| c.type_ != type_);
}

/// Writes the status (when it changed) and posts the Events.
async fn write(
    warehouse: &Warehouse,
    previous: &WarehouseStatus,
    outcome: Outcome,
    ctx: &WarehouseContext,
) -> Result<(), Error> {
    let namespace = warehouse.namespace().unwrap_or_default();
    if outcome.status != *previous {
        let api: Api<Warehouse> = Api::namespaced(ctx.client.clone(), &namespace);
        let body = json!({
            "apiVersion": Warehouse::api_version(&()),
            "kind": Warehouse::kind(&()),
            "status": outcome.status,
        });
        api.patch_status(
            &warehouse.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    }
    let reference = warehouse.object_ref(&());
    if let Some(f) = &outcome.created {
        let alias = f.spec.alias.clone().unwrap_or_default();
        let event = Event {
            type_: EventType::Normal,
            reason: "FreightCreated".into(),
            note: Some(format!(
                "Freight {} ({alias}) created from discovered artifacts",
                f.name_any()
            )),
            action: "Discover".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }
    // A Warning once per new message, not once per retry.
    let was = previous.conditions.iter().any(|c| {
        c.status == "False"
            && outcome
                .warning
                .as_ref()
                .is_some_and(|(_, m)| c.message.contains(m.as_str()))
    });
    if let Some((reason, message)) = &outcome.warning
        && !was
    {
        let event = Event {
            type_: EventType::Warning,
            reason: (*reason).into(),
            note: Some(clip(message)),
            action: "Discover".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }
    Ok(())
}

/// An Event's note is at most 1 kB.
fn clip(message: &str) -> String {
    if message.len() <= 1000 {
        return message.to_string();
    }
    let mut end = 1000;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn new_freight_is_discovered_after_the_previous_even_within_one_second() {
        let now = t("2026-11-30T00:00:10.300Z");
        assert_eq!(discovered_after(None, now), now);
        assert_eq!(discovered_after(Some(t("2026-11-30T00:00:09Z")), now), now);
        assert_eq!(
            discovered_after(Some(t("2026-11-30T00:00:10Z")), now),
            t("2026-11-30T00:00:11Z")
        );
        assert_eq!(
            discovered_after(Some(t("2026-11-30T00:00:11Z")), now),
            t("2026-11-30T00:00:12Z")
        );
    }
}
