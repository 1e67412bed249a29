//! The controllers: the imperative shell around the pure core. One watch of
//! Applications fills the Application cache and wakes exactly the Promotions
//! that wait on a changed Application; the Promotion watch keeps the wait
//! index in step with `status.awaiting` and wakes Promotions queued behind
//! one that ended.

pub mod await_index;
pub mod metrics;
pub mod promotion;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Future, StreamExt};
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::api::Promotion;
use crate::argocd::Application;
use crate::steps::{Registry, Services};
use await_index::AwaitIndex;
pub use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
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
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub services: Services,
    pub registry: Registry,
    pub promotions: Store<Promotion>,
    pub index: Arc<RwLock<AwaitIndex>>,
    wake: mpsc::UnboundedSender<ObjectRef<Promotion>>,
    recorder: Recorder,
    pub backstop: Duration,
    pub metrics: Arc<Metrics>,
}

fn wake_all(
    index: &RwLock<AwaitIndex>,
    wake: &mpsc::UnboundedSender<ObjectRef<Promotion>>,
    kind: &str,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> usize {
    let waiters = match index.read() {
        Ok(index) => index.waiters(kind, namespace, name, labels),
        Err(_) => return 0,
    };
    for (ns, promotion) in &waiters {
        let _ = wake.unbounded_send(ObjectRef::new(promotion).within(ns));
    }
    waiters.len()
}

/// Runs the Promotion controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let index = Arc::new(RwLock::new(AwaitIndex::default()));
    let (wake_tx, wake_rx) = mpsc::unbounded::<ObjectRef<Promotion>>();

    // Applications: cached as a partial type, each change mapped to its waiters.
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
        let wake = wake_tx.clone();
        let metrics = metrics.clone();
        let wake_on_events = settings.wake_on_application_events;
        tokio::spawn(app_events.for_each(move |event| {
            match event {
                Ok(app) if wake_on_events => {
                    let labels = app.labels().clone();
                    let namespace = app.namespace().unwrap_or_default();
                    let woken = wake_all(
                        &index,
                        &wake,
                        "Application",
                        &namespace,
                        &app.name_any(),
                        &labels,
                    );
                    metrics.application_event(woken);
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.watch_error("application");
                    tracing::warn!(error = %e, "Application watch error");
                }
            }
            futures::future::ready(())
        }));
    }

    // Promotions: the controller's own cache; every event keeps the wait
    // index equal to what `status.awaiting` records, and an ended or deleted
    // Promotion wakes the Promotions queued behind it.
    let promotion_api: Api<Promotion> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (promotions, promotion_writer) = reflector::store::<Promotion>();
    let promotion_events = {
        let index = index.clone();
        let wake = wake_tx.clone();
        watcher(promotion_api, watcher::Config::default().any_semantic())
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
                if let Ok(mut index) = index.write() {
                    if deleted {
                        index.remove(&key);
                    } else {
                        index.set(key.clone(), promotion::recorded_targets(promotion));
                    }
                }
                if deleted || promotion.is_terminal() {
                    wake_all(&index, &wake, "Promotion", &key.0, &key.1, &BTreeMap::new());
                }
            })
            .touched_objects()
    };

    let ctx = Arc::new(Context {
        services: Services {
            client: client.clone(),
            applications,
            argocd_namespace: settings.argocd_namespace.clone(),
        },
        registry: Registry::builtin(),
        promotions: promotions.clone(),
        index,
        wake: wake_tx,
        recorder: Recorder::new(client, Reporter::from("barge-controller")),
        backstop: settings.backstop,
        metrics,
    });
    Controller::for_stream(promotion_events, promotions)
        .reconcile_on(wake_rx)
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(promotion::reconcile, promotion::error_policy, ctx)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "promotion controller");
            }
            futures::future::ready(())
        })
        .await;
}
