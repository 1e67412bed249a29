//! The controllers: the imperative shell around the pure core. One watch of
//! Applications fills the Application cache and wakes exactly the Promotions
//! that wait on a changed Application; the Promotion watch keeps the wait
//! index in step with `status.awaiting` and wakes Promotions queued behind
//! one that ended.

mod backoff;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod freight;
mod last_promotions;
pub mod project;
mod project_data;
pub mod promotion;
pub(crate) mod relist;
pub mod stage;
pub mod warehouse;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Future, FutureExt, StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::api::{Freight, ProjectConfig, Promotion, Stage};
use crate::argocd::{AppScope, Application};
use crate::await_index::{AwaitTarget, SharedAwaitIndex};
pub use crate::metrics::Metrics;
pub use crate::steps::tools::Tools;
use crate::steps::workdir::WorkDirs;
use crate::steps::{Registry, Services};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Reading what a reconcile needs failed; retried with backoff.
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The reconcile started from a cached object older than the API
    /// server's: its status write was refused, and the newer object's watch
    /// event reconciles again.
    #[error("{what} changed since the cached copy this reconcile started from")]
    Stale { what: String },
    /// An object the reconciler writes could not be built.
    #[error("building an object: {0}")]
    Build(#[from] serde_json::Error),
    /// The API server refused a Promotion's status for what it held (too
    /// large, or not valid against the CRD): the same write would be
    /// refused again, so the Promotion ends Errored with `message`.
    #[error("{message}")]
    StatusRefused { message: String },
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
    /// Believe `barge.dev/create-actor` (the create-actor admission policy
    /// is installed); otherwise every sync is an automated one.
    pub trust_create_actor: bool,
    /// Where each Promotion gets a directory for its files (removed when it
    /// ends).
    pub work_dir: std::path::PathBuf,
    /// Most bytes one Promotion's files may take.
    pub work_dir_limit: u64,
    /// The programs the rendering steps run.
    pub tools: Tools,
    /// The webhook receivers this process serves (empty without
    /// `--webhook-addr`).
    pub receivers: crate::webhook::Receivers,
    /// Where the webhook endpoint wakes Promotions: the controllers hand it
    /// their wait index while they run.
    pub wakers: Option<crate::webhook::Wakers>,
    /// Create each Project's namespace and ProjectConfig, and delete the
    /// namespace with the Project (needs rights on namespaces).
    pub manage_projects: bool,
    /// The longest one Warehouse subscription's discovery may take.
    pub discovery_timeout: Duration,
    /// Where the dashboard (`--dashboard-addr`) reads: the controllers
    /// attach their caches while they run and poke it on every change.
    pub dashboard: Option<crate::dashboard::Feed>,
}

/// The backstop requeue when none is configured.
pub const DEFAULT_BACKSTOP: Duration = Duration::from_secs(300);
/// Where Applications are looked up when none is configured.
pub const DEFAULT_ARGOCD_NAMESPACE: &str = "argocd";
/// Warehouse discoveries at once.
pub const WAREHOUSE_CONCURRENCY: u16 = 4;
/// Reconciles at once when none is configured.
pub const DEFAULT_CONCURRENCY: u16 = 16;

impl Settings {
    /// Where Applications are watched.
    pub fn app_scope(&self) -> AppScope {
        if self.argocd_all_namespaces {
            AppScope::All
        } else {
            AppScope::Only(self.argocd_namespace.clone())
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backstop: DEFAULT_BACKSTOP,
            argocd_namespace: DEFAULT_ARGOCD_NAMESPACE.into(),
            argocd_all_namespaces: false,
            namespace: None,
            concurrency: DEFAULT_CONCURRENCY,
            wake_on_application_events: true,
            shard: None,
            trust_create_actor: false,
            work_dir: std::env::temp_dir().join(crate::CONTROLLER_NAME),
            work_dir_limit: 1 << 30,
            tools: Tools::default(),
            receivers: crate::webhook::Receivers::default(),
            wakers: None,
            manage_projects: false,
            discovery_timeout: crate::warehouse::discover::DEFAULT_TIMEOUT,
            dashboard: None,
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
    /// Whether `barge.dev/create-actor` can be believed.
    pub trust_create_actor: bool,
    /// How long a failed reconcile waits, per Promotion.
    pub backoff: backoff::ErrorBackoff,
}

fn wake_all(
    index: &SharedAwaitIndex,
    wake: &mpsc::UnboundedSender<ObjectRef<Promotion>>,
    kind: &str,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let waiters = index.read().waiters(kind, namespace, name, labels);
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
    let waiters = index.read().waiters("Application", namespace, name, labels);
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

/// Where reconciles are requested outside the controllers' own watches.
#[derive(Clone)]
struct Wakers {
    promotions: mpsc::UnboundedSender<ObjectRef<Promotion>>,
    stages: mpsc::UnboundedSender<ObjectRef<Stage>>,
}

/// What one Promotion watch event means for the wait index and for whom
/// must be woken: decided from the event alone.
#[derive(Debug, PartialEq)]
pub struct PromotionEventEffects {
    pub key: (String, String),
    /// What the Promotion now waits on; `None`: forget it (deleted).
    pub awaiting: Option<Vec<AwaitTarget>>,
    /// It ended or went away: the Promotions queued behind it get their turn.
    pub wake_queued: bool,
    /// Its Stage, whose current and last Promotion may have changed.
    pub stage: ObjectRef<Stage>,
}

pub fn promotion_event_effects(promotion: &Promotion, deleted: bool) -> PromotionEventEffects {
    let key = (
        promotion.namespace().unwrap_or_default(),
        promotion.name_any(),
    );
    PromotionEventEffects {
        awaiting: (!deleted).then(|| promotion::recorded_targets(promotion)),
        wake_queued: deleted || promotion.is_terminal(),
        stage: ObjectRef::new(&promotion.spec.stage).within(&key.0),
        key,
    }
}

/// What no reconcile reads, taken off every cached object: managed fields
/// and kubectl's copy of the last applied object, often the larger part of
/// an object's metadata.
fn slim<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A Promotion as the cache keeps it. An ended one keeps what the Stage
/// reads of every ended Promotion (phase, times, Freight) and drops the rest:
/// its Stage reads the newest in full from `LastPromotions`, and only
/// running it reads its plan, steps, outputs and conditions. Ended
/// Promotions are most of a cluster's.
fn slim_promotion(promotion: &mut Promotion) {
    slim(promotion);
    if !promotion.is_terminal() {
        return;
    }
    promotion.spec.steps = Vec::new();
    promotion.spec.vars = Vec::new();
    if let Some(status) = promotion.status.as_mut() {
        status.plan = None;
        status.health_checks = Vec::new();
        status.state = BTreeMap::new();
        status.step_execution_metadata = Vec::new();
        status.conditions = Vec::new();
        status.awaiting = Vec::new();
        if crate::stage::collection_is_its_freight(status) {
            status.freight_collection = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Runs the Promotion and Stage controllers until `shutdown` resolves.
/// One piece: it only wires the watches (one function each), the caches and
/// the two controllers together, in the order they depend on each other.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let index = SharedAwaitIndex::default();
    let stage_index = SharedAwaitIndex::default();
    let (wake_tx, wake_rx) = mpsc::unbounded::<ObjectRef<Promotion>>();
    let (stage_wake_tx, stage_wake_rx) = mpsc::unbounded::<ObjectRef<Stage>>();
    let wakers = Wakers {
        promotions: wake_tx.clone(),
        stages: stage_wake_tx,
    };
    let sharded = match &settings.shard {
        Some(shard) => watcher::Config::default()
            .any_semantic()
            .labels(&format!("{}={shard}", crate::api::LABEL_SHARD)),
        None => watcher::Config::default().any_semantic(),
    };

    let sharded_for_warehouses = sharded.clone();
    // Stages: their own cache, read to fan Freight changes out.
    let (stages, stage_writer) = reflector::store::<Stage>();
    let stage_events = relist::reflect(
        relist::watch(
            scoped::<Stage>(&client, &settings.namespace),
            sharded.clone(),
        )
        .modify(slim),
        stage_writer,
    )
    .touched_objects()
    .inspect(poke(&settings.dashboard));
    let (applications, app_task) = watch_applications(
        &client,
        &settings,
        index.clone(),
        stage_index.clone(),
        wakers.clone(),
        metrics.clone(),
    );
    let (project_configs, project_config_task) = watch_waking_stages::<ProjectConfig>(
        &client,
        &settings,
        stages.clone(),
        None,
        wakers.clone(),
        metrics.clone(),
        "projectconfig",
    );
    let (freight, freight_task) = watch_waking_stages::<Freight>(
        &client,
        &settings,
        stages.clone(),
        Some(reads_freight_changes(project_configs.clone())),
        wakers.clone(),
        metrics.clone(),
        "freight",
    );
    let last_promotions = Arc::new(last_promotions::LastPromotions::default());
    let (promotions, promotion_events) = watch_promotions(
        &client,
        &settings,
        sharded,
        (index.clone(), last_promotions.clone()),
        wakers,
        metrics.clone(),
    );
    let ready_task = report_ready(
        (
            applications.clone(),
            promotions.clone(),
            stages.clone(),
            freight.clone(),
        ),
        metrics.clone(),
    );

    let sweep_task = sweep_work_dirs(WorkDirs::new(&settings.work_dir), promotions.clone());
    let ctx = Arc::new(Context {
        services: Services {
            client: client.clone(),
            applications: applications.clone(),
            argocd_namespace: settings.argocd_namespace.clone(),
            waits: index.clone(),
            app_scope: settings.app_scope(),
            work_dirs: WorkDirs::new(&settings.work_dir).with_limit(settings.work_dir_limit),
            tools: settings.tools.clone(),
            receivers: settings.receivers.clone(),
        },
        registry: Registry::builtin(),
        promotions: promotions.clone(),
        index,
        wake: wake_tx,
        recorder: Recorder::new(client.clone(), Reporter::from(crate::CONTROLLER_NAME)),
        backstop: settings.backstop,
        metrics: metrics.clone(),
        trust_create_actor: settings.trust_create_actor,
        backoff: Default::default(),
    });
    let warehouse_ctx = crate::warehouse::oci::OciClient::new().map(|oci| {
        Arc::new(warehouse::WarehouseContext::new(
            client.clone(),
            Recorder::new(client.clone(), Reporter::from(crate::CONTROLLER_NAME)),
            metrics.clone(),
            crate::warehouse::discover::Discoverer {
                oci,
                cache_dir: settings.work_dir.join("warehouses"),
                timeout: settings.discovery_timeout,
            },
        ))
    });
    let warehouse_api = scoped::<crate::api::Warehouse>(&client, &settings.namespace);
    // Backed off like every other watch: the CRD may not be installed yet.
    let (warehouses, warehouse_writer) = reflector::store::<crate::api::Warehouse>();
    let warehouse_events = relist::reflect(
        relist::watch(warehouse_api, sharded_for_warehouses).modify(slim),
        warehouse_writer,
    )
    .touched_objects()
    .inspect(poke(&settings.dashboard));
    let warehouse_store = warehouses.clone();
    let freight_ctx = Arc::new(freight::FreightContext {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from(crate::CONTROLLER_NAME)),
    });
    let freight_api = scoped::<Freight>(&client, &settings.namespace);
    let client_for_projects = client.clone();
    let shutdown_for_projects = shutdown.clone();
    let project_metrics = metrics.clone();
    let stage_ctx = Arc::new(stage::StageContext {
        recorder: Recorder::new(client.clone(), Reporter::from(crate::CONTROLLER_NAME)),
        project_configs,
        client,
        applications,
        app_scope: settings.app_scope(),
        promotions: promotions.clone(),
        last_promotions,
        freight,
        index: stage_index,
        backstop: settings.backstop,
        metrics: metrics.clone(),
        freight_writes: Default::default(),
        backoff: Default::default(),
    });
    if let Some(wakers) = &settings.wakers {
        wakers.set_local(Some(crate::webhook::PullRequestWaker {
            index: ctx.index.clone(),
            wake: ctx.wake.clone(),
            metrics: ctx.metrics.clone(),
        }));
    }
    let watch_metrics = metrics.clone();
    let promotion_store = promotions.clone();
    let promotion_events = promotion_events.inspect(poke(&settings.dashboard));
    let promotion_controller = Controller::for_stream(promotion_events, promotions)
        .reconcile_on(wake_rx)
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(promotion::reconcile, promotion::error_policy, ctx)
        .for_each(|result| {
            report(&watch_metrics, "promotion", result.err());
            futures::future::ready(())
        });
    // Discovery is network-bound and memory-hungry for large repositories:
    // a few at once, whatever the reconcile concurrency.
    let warehouse_shutdown = shutdown.clone();
    let warehouse_metrics = metrics.clone();
    let warehouse_controller = bounded_shutdown(
        async move {
            let ctx = match warehouse_ctx {
                Ok(ctx) => ctx,
                Err(error) => {
                    tracing::error!(%error, "Warehouses cannot discover: no HTTP client");
                    return;
                }
            };
            Controller::for_stream(warehouse_events, warehouse_store)
                .with_config(
                    controller::Config::default()
                        .concurrency(settings.concurrency.min(WAREHOUSE_CONCURRENCY)),
                )
                .graceful_shutdown_on(warehouse_shutdown)
                .run(warehouse::reconcile, warehouse::error_policy, ctx)
                .for_each(|result| {
                    report(&warehouse_metrics, "warehouse", result.err());
                    futures::future::ready(())
                })
                .await;
        },
        shutdown.clone(),
        "warehouse",
    );
    let (freight_store, freight_writer) = reflector::store::<Freight>();
    let freight_events = relist::reflect(
        relist::watch(freight_api, watcher::Config::default().any_semantic()).modify(slim),
        freight_writer,
    )
    .touched_objects()
    .inspect(poke(&settings.dashboard));
    if let Some(feed) = &settings.dashboard {
        feed.attach(crate::dashboard::Caches {
            stages: stages.clone(),
            promotions: promotion_store,
            freight: freight_store.clone(),
            warehouses,
        });
    }
    let freight_controller = bounded_shutdown(
        Controller::for_stream(freight_events, freight_store)
            .graceful_shutdown_on(shutdown.clone())
            .run(freight::reconcile, freight::error_policy, freight_ctx)
            .for_each(|result| {
                report(&watch_metrics, "freight", result.err());
                futures::future::ready(())
            }),
        shutdown.clone(),
        "freight",
    );
    let stage_controller = Controller::for_stream(stage_events, stages)
        .reconcile_on(stage_wake_rx)
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(stage::reconcile, stage::error_policy, stage_ctx)
        .for_each(|result| {
            report(&watch_metrics, "stage", result.err());
            futures::future::ready(())
        });
    let project_controller = async {
        if !settings.manage_projects {
            return;
        }
        let projects = Api::<crate::api::Project>::all(client_for_projects);
        let ctx = Arc::new(project::ProjectContext {
            client: projects.clone().into_client(),
            backstop: settings.backstop,
        });
        Controller::new(projects, watcher::Config::default().any_semantic())
            .graceful_shutdown_on(shutdown_for_projects)
            .run(project::reconcile, project::error_policy, ctx)
            .for_each(|result| {
                report(&project_metrics, "project", result.err());
                futures::future::ready(())
            })
            .await;
    };
    futures::join!(
        promotion_controller,
        stage_controller,
        warehouse_controller,
        freight_controller,
        project_controller
    );
    if let Some(wakers) = &settings.wakers {
        wakers.set_local(None);
    }
    if let Some(feed) = &settings.dashboard {
        feed.detach();
    }
    // The watches outside the controllers end with them.
    for task in [
        app_task,
        freight_task,
        project_config_task,
        ready_task,
        sweep_task,
    ] {
        task.abort();
    }
}

/// Tells the dashboard (when one is served) that a cache changed: called
/// on a watch event after the cache has taken it.
fn poke<T>(feed: &Option<crate::dashboard::Feed>) -> impl FnMut(&T) + use<T> {
    let feed = feed.clone();
    move |_| {
        if let Some(feed) = &feed {
            feed.changed();
        }
    }
}

/// How long a controller may take to stop after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs a controller until it ends, or until [`SHUTDOWN_GRACE`] after
/// `shutdown`: kube's runner waits for its cache's first list before it
/// can finish, which never comes when the kind's CRD appeared while the
/// watch was backing off; its reconciles are idempotent, so dropping it
/// loses nothing.
async fn bounded_shutdown(
    run: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
    name: &'static str,
) {
    let grace = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = run => {}
        () = grace => tracing::warn!(controller = name, "did not stop within the grace period; dropped"),
    }
}

/// Applications: cached as a partial type, each change mapped to the
/// Promotions waiting on it and the Stages whose health depends on it.
fn watch_applications(
    client: &Client,
    settings: &Settings,
    index: SharedAwaitIndex,
    stage_index: SharedAwaitIndex,
    wakers: Wakers,
    metrics: Arc<Metrics>,
) -> (Store<Application>, JoinHandle<()>) {
    let (applications, writer) = reflector::store::<Application>();
    let api: Api<Application> = if settings.argocd_all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &settings.argocd_namespace)
    };
    let wake_on_events = settings.wake_on_application_events;
    let events = relist::reflect(
        relist::watch(api, watcher::Config::default().any_semantic()).modify(|app| {
            slim(app);
            app.slim_for_cache();
        }),
        writer,
    )
    .touched_objects();
    let task = tokio::spawn(events.for_each(move |event| {
        match event {
            Ok(app) if wake_on_events => {
                let labels = app.labels().clone();
                let namespace = app.namespace().unwrap_or_default();
                let name = app.name_any();
                let woken = wake_all(
                    &index,
                    &wakers.promotions,
                    "Application",
                    &namespace,
                    &name,
                    &labels,
                );
                wake_stages(&stage_index, &wakers.stages, &namespace, &name, &labels);
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
    }));
    (applications, task)
}

/// Which Stages a change to a Freight they have seen before concerns.
type ReadsChanges = Arc<dyn Fn(&Stage) -> bool + Send + Sync>;

/// The Stages whose reconcile reads other Freight than its own history's:
/// those that may auto-promote and the control-flow ones. A Stage only
/// records where its own Freight is, which its own Promotions' events
/// bring; so a Freight's `currentlyIn` moving, one write per Promotion,
/// does not wake every Stage of the namespace.
fn reads_freight_changes(project_configs: Store<ProjectConfig>) -> ReadsChanges {
    Arc::new(move |stage: &Stage| {
        let namespace = stage.namespace().unwrap_or_default();
        let config = project_configs.get(&ObjectRef::new(&namespace).within(&namespace));
        crate::stage::is_control_flow(stage)
            || crate::stage::auto_promotion_policy(stage, config.as_deref()).enabled
    })
}

/// A cache of `K` (Freight for auto-promotion, ProjectConfigs for its
/// policies) whose changes wake the Stages of the object's namespace: a
/// new object (or the first sight of one) and a deleted one wake every one
/// of them, a change to an object seen before those `on_change` selects
/// (all without it).
/// `resource` names it in metrics and logs.
fn watch_waking_stages<K>(
    client: &Client,
    settings: &Settings,
    stages: Store<Stage>,
    on_change: Option<ReadsChanges>,
    wakers: Wakers,
    metrics: Arc<Metrics>,
    resource: &'static str,
) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = relist::reflect(
        relist::watch(
            scoped::<K>(client, &settings.namespace),
            watcher::Config::default().any_semantic(),
        )
        .modify(slim),
        writer,
    )
    .touched_objects();
    let mut seen = std::collections::HashSet::<ObjectRef<K>>::new();
    let cached = store.clone();
    let task = tokio::spawn(events.for_each(move |event| {
        match event {
            Ok(object) => {
                metrics.watch_ok();
                let key = ObjectRef::from(&object);
                // Gone from the cache the event just updated: deleted.
                let first_sight = if cached.get(&key).is_none() {
                    seen.remove(&key);
                    true
                } else {
                    seen.insert(key)
                };
                let namespace = object.namespace();
                for stage in stages.state().iter().filter(|s| s.namespace() == namespace) {
                    let concerned = first_sight || on_change.as_ref().is_none_or(|f| f(stage));
                    if concerned {
                        let _ = wakers
                            .stages
                            .unbounded_send(ObjectRef::from(stage.as_ref()));
                    }
                }
            }
            Err(e) => {
                metrics.watch_error(resource);
                tracing::warn!(error = %e, resource, "watch error");
            }
        }
        futures::future::ready(())
    }));
    (store, task)
}

/// Promotions: the controller's own cache; every event keeps the wait index
/// equal to what `status.awaiting` records, wakes the Promotion's Stage, and
/// an ended or deleted Promotion wakes the Promotions queued behind it.
/// Each Stage's newest ended Promotion is kept in full before the cache
/// slims it.
fn watch_promotions(
    client: &Client,
    settings: &Settings,
    config: watcher::Config,
    (index, last_promotions): (SharedAwaitIndex, Arc<last_promotions::LastPromotions>),
    wakers: Wakers,
    metrics: Arc<Metrics>,
) -> (
    Store<Promotion>,
    impl futures::Stream<Item = Result<Promotion, watcher::Error>> + Send + 'static,
) {
    let (promotions, writer) = reflector::store::<Promotion>();
    let events = relist::watch(scoped::<Promotion>(client, &settings.namespace), config).map_ok({
        let last_promotions = last_promotions.clone();
        move |event| {
            if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = &event {
                last_promotions.observe(p)
            }
            event.modify(slim_promotion)
        }
    });
    let events = relist::reflect(events, writer)
        .inspect(move |event| {
            let (promotion, deleted) = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
                // After the cache: a Promotion deleted while the watch was
                // down is only reported by the relist.
                Ok(watcher::Event::Delete(p)) => {
                    last_promotions.forget(p);
                    (p, true)
                }
                _ => return,
            };
            let effects = promotion_event_effects(promotion, deleted);
            let (namespace, name) = &effects.key;
            metrics.promotion_phase(effects.key.clone(), (!deleted).then(|| promotion.phase()));
            match effects.awaiting {
                Some(targets) => index.set(effects.key.clone(), targets),
                None => index.remove(&effects.key),
            }
            if effects.wake_queued {
                let none = BTreeMap::new();
                wake_all(
                    &index,
                    &wakers.promotions,
                    "Promotion",
                    namespace,
                    name,
                    &none,
                );
            }
            let _ = wakers.stages.unbounded_send(effects.stage);
        })
        .touched_objects();
    (promotions, events)
}

/// Once the Promotion cache has listed, removes the work directories of
/// Promotions that ended or went away while the controller was not running.
fn sweep_work_dirs(work_dirs: WorkDirs, promotions: Store<Promotion>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match tokio::time::timeout(Duration::from_secs(1), promotions.wait_until_ready()).await
            {
                Ok(Ok(())) => break,
                // The writer is gone: the controllers are stopping.
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
        let live: std::collections::HashSet<String> = promotions
            .state()
            .iter()
            .filter(|p| !p.is_terminal())
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        work_dirs.sweep(|uid| live.contains(uid));
    })
}

/// Marks the controller ready once every cache has its first full list.
fn report_ready(
    (a, p, s, f): (
        Store<Application>,
        Store<Promotion>,
        Store<Stage>,
        Store<Freight>,
    ),
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
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
    })
}

/// Logs a controller's error; a watch failure also counts against `/healthz`.
fn report<R, Q>(metrics: &Metrics, controller: &str, error: Option<controller::Error<R, Q>>)
where
    R: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    match error {
        None => {}
        Some(controller::Error::QueueError(e)) => {
            metrics.watch_error(controller);
            tracing::warn!(controller, error = %e, "watch error");
        }
        Some(e) => tracing::debug!(controller, error = %e, "controller"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn promotion(status: serde_json::Value) -> Promotion {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "p1", "namespace": "demo"},
            "spec": {"stage": "dev", "freight": "f1"},
            "status": status,
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    #[test]
    fn a_waiting_promotion_indexes_what_its_status_records_and_wakes_its_stage() {
        let p = promotion(json!({"phase": "Running", "awaiting": [
            {"alias": "update", "kind": "Application", "namespace": "argocd", "name": "demo-dev", "message": "", "since": null, "deadline": null},
        ]}));
        let effects = promotion_event_effects(&p, false);
        assert_eq!(effects.key, ("demo".to_string(), "p1".to_string()));
        assert_eq!(
            effects.awaiting,
            Some(vec![AwaitTarget::Named {
                kind: "Application".into(),
                namespace: "argocd".into(),
                name: "demo-dev".into(),
            }])
        );
        assert!(!effects.wake_queued);
        assert_eq!(effects.stage, ObjectRef::new("dev").within("demo"));
    }

    #[test]
    fn a_finished_promotion_waits_on_nothing_and_lets_the_queue_move() {
        let p = promotion(json!({"phase": "Succeeded", "awaiting": [
            {"alias": "update", "kind": "Application", "namespace": "argocd", "name": "demo-dev", "message": "", "since": null, "deadline": null},
        ]}));
        let effects = promotion_event_effects(&p, false);
        assert_eq!(effects.awaiting, Some(vec![]));
        assert!(effects.wake_queued);
    }

    #[tokio::test]
    async fn the_work_dir_sweep_stops_with_the_controllers_instead_of_spinning() {
        let (promotions, writer) = reflector::store::<Promotion>();
        drop(writer);
        let root = std::env::temp_dir().join(format!("barge-sweep-{}", std::process::id()));
        let sweep = sweep_work_dirs(WorkDirs::new(&root), promotions);
        // A spinning task would never end; this one returns at once.
        let ended = tokio::time::timeout(Duration::from_secs(30), sweep).await;
        assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
    }

    #[test]
    fn cached_objects_keep_their_annotations_but_not_what_kubectl_and_apply_recorded() {
        let mut p = promotion(json!({}));
        p.metadata.annotations = Some(
            [
                (LAST_APPLIED.to_string(), "{\"big\": true}".to_string()),
                ("barge.dev/abort".to_string(), "terminate".to_string()),
            ]
            .into(),
        );
        p.metadata.managed_fields = Some(vec![Default::default()]);
        slim(&mut p);
        assert_eq!(p.metadata.managed_fields, None);
        assert_eq!(
            p.metadata
                .annotations
                .map(|a| a.into_keys().collect::<Vec<_>>()),
            Some(vec!["barge.dev/abort".to_string()])
        );
    }

    #[test]
    fn an_ended_promotion_is_cached_thin_and_a_running_one_whole() {
        let freight = json!({"name": "f1", "origin": {"kind": "Warehouse", "name": "shop"}});
        let whole = json!({
            "plan": {"steps": [{"uses": "argocd-update", "as": "update"}]},
            "healthChecks": [{"uses": "argocd-update", "config": {"apps": []}}],
            "state": {"update": {"ok": true}},
            "stepExecutionMetadata": [{"alias": "update", "status": "Succeeded"}],
            "freight": freight,
            "freightCollection": {"id": "f1", "items": {"Warehouse/shop": freight}},
            "finishedAt": "2026-11-20T10:00:05Z",
            "message": "done",
        });
        let with_phase = |phase: &str| {
            let mut status = whole.clone();
            status["phase"] = json!(phase);
            status
        };
        let mut running = promotion(with_phase("Running"));
        let before = running.clone();
        slim_promotion(&mut running);
        assert_eq!(running, before);

        let mut ended = promotion(with_phase("Succeeded"));
        slim_promotion(&mut ended);
        let status = ended.status.unwrap_or_default();
        assert_eq!(status.plan, None);
        assert!(status.health_checks.is_empty() && status.state.is_empty());
        assert!(status.step_execution_metadata.is_empty());
        // The history reads the same from the Freight alone.
        assert_eq!(status.freight_collection, None);
        assert_eq!(status.freight.map(|f| f.name).as_deref(), Some("f1"));
        assert_eq!(status.message, "done");
        assert!(status.finished_at.is_some());
    }

    #[test]
    fn an_ended_promotion_keeps_a_freight_collection_of_more_than_its_freight() {
        let f1 = json!({"name": "f1", "origin": {"kind": "Warehouse", "name": "shop"}});
        let c1 = json!({"name": "c1", "origin": {"kind": "Warehouse", "name": "config"}});
        let mut ended = promotion(json!({
            "phase": "Succeeded",
            "freight": f1,
            "freightCollection": {"id": "c1,f1", "items": {"Warehouse/shop": f1, "Warehouse/config": c1}},
        }));
        slim_promotion(&mut ended);
        let collection = ended.status.and_then(|s| s.freight_collection);
        assert_eq!(collection.map(|c| c.items.len()), Some(2));
    }

    #[test]
    fn a_deleted_promotion_is_forgotten_and_lets_the_queue_move() {
        let effects = promotion_event_effects(&promotion(json!({"phase": "Running"})), true);
        assert_eq!(effects.awaiting, None);
        assert!(effects.wake_queued);
    }
}
