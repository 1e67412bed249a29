//! The controllers: the imperative shell around the pure core. One watch of
//! Applications fills the Application cache and wakes exactly the Promotions
//! that wait on a changed Application; the Promotion watch keeps the wait
//! index in step with `status.awaiting` and wakes Promotions queued behind
//! one that ended.

pub mod promotion;
pub mod stage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Future, FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::api::{Freight, Promotion, Stage};
use crate::argocd::Application;
use crate::await_index::SharedAwaitIndex;
pub use crate::metrics::Metrics;
use crate::steps::{Registry, Services};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Waits a little for a cache's first list; false if it has not come yet
/// (the caller looks again shortly: this only happens right after start-up).
/// Bounded because `Store::wait_until_ready` keeps one waker only: with
/// several tasks waiting, all but the last can miss the wake-up.
pub(crate) async fn cache_ready<K>(store: &kube::runtime::reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(
        tokio::time::timeout(Duration::from_secs(2), store.wait_until_ready()).await,
        Ok(Ok(()))
    )
}

/// How the controllers run; every field has a flag and an env var in `barge run`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The longest a waiting Promotion goes without a reconcile when no event
    /// arrives. Only a safety net: waits are woken by watch events.
    pub backstop: Duration,
    /// Where Applications live when a step names no namespace.
    pub argocd_namespace: String,
    /// Watch Applications in every namespace instead of only `argocd_namespace`.
    pub argocd_all_namespaces: bool,
    /// Only reconcile Promotions in this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Map Application changes to waiting Promotions. Off only to measure
    /// what the backstop alone gives.
    pub wake_on_application_events: bool,
    /// Only reconcile Stages and Promotions labelled `barge.dev/shard=<shard>`.
    pub shard: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backstop: Duration::from_secs(300),
            argocd_namespace: "argocd".into(),
            argocd_all_namespaces: false,
            namespace: None,
            concurrency: 16,
            wake_on_application_events: true,
            shard: None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub services: Services,
    pub registry: Registry,
    pub promotions: Store<Promotion>,
    pub index: SharedAwaitIndex,
    wake: mpsc::UnboundedSender<ObjectRef<Promotion>>,
    recorder: Recorder,
    pub backstop: Duration,
    pub metrics: Arc<Metrics>,
}

fn wake_all(
    index: &SharedAwaitIndex,
    wake: &mpsc::UnboundedSender<ObjectRef<Promotion>>,
    kind: &str,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let waiters = index.waiters(kind, namespace, name, labels);
    for (ns, promotion) in &waiters {
        let _ = wake.unbounded_send(ObjectRef::new(promotion).within(ns));
    }
    waiters
}

fn wake_stages(
    index: &SharedAwaitIndex,
    wake: &mpsc::UnboundedSender<ObjectRef<Stage>>,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) {
    let waiters = index.waiters("Application", namespace, name, labels);
    for (ns, stage) in waiters {
        let _ = wake.unbounded_send(ObjectRef::new(&stage).within(&ns));
    }
}

fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the Promotion and Stage controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let mut background = Vec::new();
    let index = SharedAwaitIndex::default();
    let stage_index = SharedAwaitIndex::default();
    let (wake_tx, wake_rx) = mpsc::unbounded::<ObjectRef<Promotion>>();
    let (stage_wake_tx, stage_wake_rx) = mpsc::unbounded::<ObjectRef<Stage>>();

    // Stages: their own cache, read to fan Freight changes out.
    let (stages, stage_writer) = reflector::store::<Stage>();
    let sharded = match &settings.shard {
        Some(shard) => watcher::Config::default()
            .any_semantic()
            .labels(&format!("{}={shard}", crate::api::LABEL_SHARD)),
        None => watcher::Config::default().any_semantic(),
    };
    let stage_events = watcher(
        scoped::<Stage>(&client, &settings.namespace),
        sharded.clone(),
    )
    .default_backoff()
    .modify(|s| s.managed_fields_mut().clear())
    .reflect(stage_writer)
    .touched_objects();

    // Applications: cached as a partial type, each change mapped to the
    // Promotions waiting on it and the Stages whose health depends on it.
    let (applications, app_writer) = reflector::store::<Application>();
    let app_api: Api<Application> = if settings.argocd_all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &settings.argocd_namespace)
    };
    let app_events = watcher(app_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|app| app.managed_fields_mut().clear())
        .reflect(app_writer)
        .touched_objects();
    {
        let index = index.clone();
        let stage_index = stage_index.clone();
        let wake = wake_tx.clone();
        let stage_wake = stage_wake_tx.clone();
        let metrics = metrics.clone();
        let wake_on_events = settings.wake_on_application_events;
        background.push(tokio::spawn(app_events.for_each(move |event| {
            match event {
                Ok(app) if wake_on_events => {
                    let labels = app.labels().clone();
                    let namespace = app.namespace().unwrap_or_default();
                    let name = app.name_any();
                    let woken = wake_all(&index, &wake, "Application", &namespace, &name, &labels);
                    wake_stages(&stage_index, &stage_wake, &namespace, &name, &labels);
                    metrics.application_event(&woken);
                    metrics.watch_ok();
                }
                Ok(_) => metrics.watch_ok(),
                Err(e) => {
                    metrics.watch_error("application");
                    tracing::warn!(error = %e, "Application watch error");
                }
            }
            futures::future::ready(())
        })));
    }

    // Freight: cached for auto-promotion; a change wakes the namespace's Stages.
    let (freight, freight_writer) = reflector::store::<Freight>();
    {
        let stages = stages.clone();
        let stage_wake = stage_wake_tx.clone();
        let metrics = metrics.clone();
        let events = watcher(
            scoped::<Freight>(&client, &settings.namespace),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .modify(|f| f.managed_fields_mut().clear())
        .reflect(freight_writer)
        .touched_objects();
        background.push(tokio::spawn(events.for_each(move |event| {
            match event {
                Ok(f) => {
                    metrics.watch_ok();
                    let namespace = f.namespace();
                    for stage in stages.state().iter().filter(|s| s.namespace() == namespace) {
                        let _ = stage_wake.unbounded_send(ObjectRef::from(stage.as_ref()));
                    }
                }
                Err(e) => {
                    metrics.watch_error("freight");
                    tracing::warn!(error = %e, "Freight watch error");
                }
            }
            futures::future::ready(())
        })));
    }

    // Promotions: the controller's own cache; every event keeps the wait
    // index equal to what `status.awaiting` records, wakes the Promotion's
    // Stage, and an ended or deleted Promotion wakes the Promotions queued
    // behind it.
    let (promotions, promotion_writer) = reflector::store::<Promotion>();
    let promotion_events = {
        let index = index.clone();
        let metrics = metrics.clone();
        let wake = wake_tx.clone();
        let stage_wake = stage_wake_tx.clone();
        watcher(scoped::<Promotion>(&client, &settings.namespace), sharded)
            .default_backoff()
            .modify(|p| p.managed_fields_mut().clear())
            .reflect(promotion_writer)
            .inspect(move |event| {
                let (promotion, deleted) = match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
                    Ok(watcher::Event::Delete(p)) => (p, true),
                    _ => return,
                };
                let key = (
                    promotion.namespace().unwrap_or_default(),
                    promotion.name_any(),
                );
                metrics.promotion_phase(key.clone(), (!deleted).then(|| promotion.phase()));
                if deleted {
                    index.remove(&key);
                } else {
                    index.set(key.clone(), promotion::recorded_targets(promotion));
                }
                if deleted || promotion.is_terminal() {
                    wake_all(&index, &wake, "Promotion", &key.0, &key.1, &BTreeMap::new());
                }
                let _ =
                    stage_wake.unbounded_send(ObjectRef::new(&promotion.spec.stage).within(&key.0));
            })
            .touched_objects()
    };

    let ctx = Arc::new(Context {
        services: Services {
            client: client.clone(),
            applications: applications.clone(),
            argocd_namespace: settings.argocd_namespace.clone(),
        },
        registry: Registry::builtin(),
        promotions: promotions.clone(),
        index,
        wake: wake_tx,
        recorder: Recorder::new(client.clone(), Reporter::from("barge-controller")),
        backstop: settings.backstop,
        metrics: metrics.clone(),
    });
    // Ready once every cache has its first full list.
    {
        let (a, p, s, f, metrics) = (
            applications.clone(),
            promotions.clone(),
            stages.clone(),
            freight.clone(),
            metrics.clone(),
        );
        background.push(tokio::spawn(async move {
            // Store::wait_until_ready keeps a single waker, so with reconciles
            // also waiting on the same stores a wake-up can be lost: look
            // again every second until every cache has listed.
            let synced = |store_ready: Result<Result<(), _>, _>| matches!(store_ready, Ok(Ok(())));
            let second = Duration::from_secs(1);
            loop {
                let states = futures::future::join4(
                    tokio::time::timeout(second, a.wait_until_ready()),
                    tokio::time::timeout(second, p.wait_until_ready()),
                    tokio::time::timeout(second, s.wait_until_ready()),
                    tokio::time::timeout(second, f.wait_until_ready()),
                )
                .await;
                // A dropped writer means the controllers are stopping.
                let stopping = [
                    matches!(states.0, Ok(Err(_))),
                    matches!(states.1, Ok(Err(_))),
                    matches!(states.2, Ok(Err(_))),
                    matches!(states.3, Ok(Err(_))),
                ];
                if stopping.iter().any(|s| *s) {
                    return;
                }
                if synced(states.0) && synced(states.1) && synced(states.2) && synced(states.3) {
                    metrics.set_ready(true);
                    return;
                }
            }
        }));
    }
    let stage_ctx = Arc::new(stage::StageContext {
        client,
        applications,
        promotions: promotions.clone(),
        freight,
        index: stage_index,
        backstop: settings.backstop,
        metrics: metrics.clone(),
    });
    let watch_metrics = metrics.clone();
    let promotion_controller = Controller::for_stream(promotion_events, promotions)
        .reconcile_on(wake_rx)
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(promotion::reconcile, promotion::error_policy, ctx)
        .for_each(|result| {
            report(&watch_metrics, "promotion", result.err());
            futures::future::ready(())
        });
    let stage_controller = Controller::for_stream(stage_events, stages)
        .reconcile_on(stage_wake_rx)
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(stage::reconcile, stage::error_policy, stage_ctx)
        .for_each(|result| {
            report(&watch_metrics, "stage", result.err());
            futures::future::ready(())
        });
    futures::join!(promotion_controller, stage_controller);
    // The watches outside the controllers end with them.
    for task in background {
        task.abort();
    }
}

/// Logs a controller's error; a watch failure also counts against `/healthz`.
fn report<E: std::fmt::Display>(metrics: &Metrics, controller: &str, error: Option<E>) {
    let Some(error) = error else { return };
    let text = error.to_string();
    if text.contains("watch") || text.contains("Watch") {
        metrics.watch_error(controller);
        tracing::warn!(controller, error = %text, "watch error");
    } else {
        tracing::debug!(controller, error = %text, "controller");
    }
}
