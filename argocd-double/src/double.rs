//! The double itself: configuration, the shared context of its two loops,
//! and the kube-runtime controllers that drive them from watch events.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use tracing::{debug, info, warn};

use crate::Error;
use crate::app::{AppKey, annotations};
use crate::journal::Journal;
use crate::knobs::{HealthAfterSync, HealthStatus, Knobs};
use crate::write::{WriteHook, Writer};
use crate::{api_resource, operation, refresh};

/// Defaults for every Application, and what to watch. Per-Application knobs
/// ([`crate::knobs`]) override the defaults.
#[derive(Clone, Debug)]
pub struct DoubleConfig {
    /// The namespace to watch; `None` watches all namespaces.
    pub namespace: Option<String>,
    /// Time between the "one or more tasks are running" write and the end
    /// of the sync.
    pub sync_delay: Duration,
    /// Health reported by the refresh after a successful sync.
    pub health_after_sync: HealthAfterSync,
    /// How long `progressing-then-healthy` stays Progressing.
    pub progressing_for: Duration,
    /// Health of an Application the double has not synced.
    pub initial_health: HealthStatus,
    /// Revision table (`ref -> resolved`) under every Application's own.
    pub resolve: BTreeMap<String, String>,
    /// Whether `operation.retry` is honoured.
    pub honor_retry: bool,
    /// Argo CD's periodic resync (`timeout.reconciliation`): refresh when
    /// `reconciledAt` is older than this. `None` (the default) disables it,
    /// so the double does no periodic work.
    pub resync: Option<Duration>,
    /// Awaited before every write attempt (tests interleave writers with it).
    pub write_hook: Option<WriteHook>,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            sync_delay: Duration::ZERO,
            health_after_sync: HealthAfterSync::Status(HealthStatus::Healthy),
            progressing_for: Duration::from_secs(1),
            initial_health: HealthStatus::Healthy,
            resolve: BTreeMap::new(),
            honor_retry: true,
            resync: None,
            write_hook: None,
        }
    }
}

impl DoubleConfig {
    /// Watches Applications in `namespace` only.
    pub fn namespaced(namespace: impl Into<String>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            ..Self::default()
        }
    }

    /// Watches Applications in every namespace.
    pub fn all_namespaces() -> Self {
        Self::default()
    }

    pub fn with_sync_delay(mut self, delay: Duration) -> Self {
        self.sync_delay = delay;
        self
    }

    pub fn with_health_after_sync(mut self, health: HealthAfterSync) -> Self {
        self.health_after_sync = health;
        self
    }

    pub fn with_write_hook(mut self, hook: WriteHook) -> Self {
        self.write_hook = Some(hook);
        self
    }
}

/// When the current attempt's sync ends (O4 → O5).
#[derive(Clone, Debug)]
pub(crate) struct SyncTimer {
    pub started_at: String,
    pub retry_count: i64,
    pub due: Instant,
}

/// A refresh the operation loop asked for after an operation completed (O6).
#[derive(Clone, Debug)]
pub(crate) struct RefreshRequest {
    pub id: u64,
    pub due: Instant,
    pub succeeded: bool,
    /// The completed operation state it is about.
    pub started_at: String,
    pub finished_at: String,
}

/// Health the refreshes after a successful sync report: `first` at once,
/// then `then.1` from instant `then.0`.
#[derive(Clone, Debug)]
pub(crate) struct HealthPlan {
    pub first: HealthStatus,
    pub then: Option<(Instant, HealthStatus)>,
}

impl HealthPlan {
    pub(crate) fn after_sync(knobs: &Knobs, now: Instant) -> Self {
        match knobs.health_after_sync {
            HealthAfterSync::Status(status) => Self {
                first: status,
                then: None,
            },
            HealthAfterSync::ProgressingThenHealthy => Self {
                first: HealthStatus::Progressing,
                then: Some((now + knobs.progressing_for, HealthStatus::Healthy)),
            },
        }
    }

    pub(crate) fn current(&self, now: Instant) -> HealthStatus {
        match self.then {
            Some((at, status)) if at <= now => status,
            _ => self.first,
        }
    }

    /// Whether a later refresh still has something to report.
    pub(crate) fn pending(&self, now: Instant) -> Option<Instant> {
        self.then.map(|(at, _)| at).filter(|at| *at > now)
    }
}

/// What the double remembers about one Application between reconciles.
/// Everything else is read from the object, as Argo CD does.
#[derive(Default, Debug)]
pub(crate) struct Memory {
    pub sync_timer: Option<SyncTimer>,
    pub refresh_request: Option<RefreshRequest>,
    pub health_plan: Option<HealthPlan>,
}

/// Shared by both loops.
pub(crate) struct Ctx {
    pub writer: Writer,
    pub config: DoubleConfig,
    pub journal: Journal,
    memory: Mutex<HashMap<AppKey, Memory>>,
    next_id: AtomicU64,
}

impl Ctx {
    pub(crate) fn with_memory<R>(&self, key: &AppKey, f: impl FnOnce(&mut Memory) -> R) -> R {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        f(memory.entry(key.clone()).or_default())
    }

    pub(crate) fn forget(&self, key: &AppKey) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.remove(key);
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The knobs of `app`, logging malformed ones.
    pub(crate) fn knobs(&self, key: &AppKey, app: &serde_json::Value) -> Knobs {
        let (knobs, problems) = Knobs::from_annotations(&annotations(app), &self.config);
        for (annotation, problem) in problems {
            warn!(app = %key, %annotation, %problem, "ignoring malformed knob");
        }
        knobs
    }
}

pub(crate) fn key_of(obj: &DynamicObject) -> Result<AppKey, Error> {
    match (&obj.metadata.namespace, &obj.metadata.name) {
        (Some(namespace), Some(name)) => Ok(AppKey::new(namespace, name)),
        _ => Err(Error::NoKey),
    }
}

/// An Argo CD application-controller double. See the crate documentation.
pub struct Double {
    client: Client,
    config: DoubleConfig,
    journal: Journal,
}

impl Double {
    pub fn new(client: Client, config: DoubleConfig) -> Self {
        Self {
            client,
            config,
            journal: Journal::default(),
        }
    }

    /// A handle on what the double did, valid before, during and after
    /// [`run`](Self::run).
    pub fn journal(&self) -> Journal {
        self.journal.clone()
    }

    pub fn config(&self) -> &DoubleConfig {
        &self.config
    }

    /// Watches Applications and runs the REFRESH and OPERATION loops until
    /// the future is dropped. Watch errors (e.g. the CRD not installed yet)
    /// are logged and retried with backoff.
    pub async fn run(self) -> Result<(), Error> {
        let resource = api_resource();
        let api: Api<DynamicObject> = match &self.config.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let writer = Writer::new(
            self.client.clone(),
            resource.clone(),
            self.journal.clone(),
            self.config.write_hook.clone(),
        );
        info!(namespace = ?self.config.namespace, "Argo CD double starting");
        let ctx = Arc::new(Ctx {
            writer,
            config: self.config,
            journal: self.journal,
            memory: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let refresh =
            Controller::new_with(api.clone(), watcher::Config::default(), resource.clone())
                .run(refresh::reconcile, error_policy, ctx.clone())
                .for_each(|result| async move { report("refresh", result) });
        let operation = Controller::new_with(api, watcher::Config::default(), resource)
            .run(operation::reconcile, error_policy, ctx)
            .for_each(|result| async move { report("operation", result) });
        tokio::join!(refresh, operation);
        Ok(())
    }

    /// Runs the double on a tokio task; dropping the handle stops it.
    pub fn spawn(self) -> DoubleHandle {
        let journal = self.journal();
        DoubleHandle {
            journal,
            task: Some(tokio::spawn(self.run())),
        }
    }
}

/// A running double. Dropping it stops the double.
pub struct DoubleHandle {
    journal: Journal,
    task: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl DoubleHandle {
    pub fn journal(&self) -> Journal {
        self.journal.clone()
    }

    /// Stops the double and waits until its tasks have ended.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // An aborted task ends with a cancellation error: expected.
            let _ = task.await;
        }
    }
}

impl Drop for DoubleHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn error_policy(obj: Arc<DynamicObject>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(
        app = ?obj.metadata.name,
        namespace = ?obj.metadata.namespace,
        %error,
        "reconcile failed; retrying in 1s"
    );
    Action::requeue(Duration::from_secs(1))
}

fn report<T: std::fmt::Debug>(
    loop_name: &str,
    result: Result<T, controller::Error<Error, watcher::Error>>,
) {
    match result {
        Ok(done) => debug!(loop_name, ?done, "reconciled"),
        Err(controller::Error::ObjectNotFound(_)) => {}
        Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(e) => warn!(loop_name, error = %e, "controller error"),
    }
}
