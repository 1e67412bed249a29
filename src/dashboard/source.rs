//! Where the dashboard reads from: four reflector stores and a change
//! signal. The controller hands over its own caches (`barge run
//! --dashboard-addr`); `barge dashboard` fills its own with the user's
//! credentials ([`watch`]). The dashboard code is the same for both.

use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt};
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use super::view::Snapshot;
use crate::api::{Freight, Promotion, Stage, Warehouse};
use crate::controller::relist;

/// The caches the view is built from.
#[derive(Clone)]
pub struct Caches {
    pub stages: Store<Stage>,
    pub promotions: Store<Promotion>,
    pub freight: Store<Freight>,
    pub warehouses: Store<Warehouse>,
}

/// A handle on the caches (once someone attached them) and their change
/// signal. Cheap to clone; every clone sees the same caches.
#[derive(Clone)]
pub struct Feed {
    caches: Arc<Mutex<Option<Caches>>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            caches: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
        }
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("changes", &*self.changes.borrow())
            .finish()
    }
}

impl Feed {
    /// Shows these caches from now on (a controller that starts, or starts
    /// leading again).
    pub fn attach(&self, caches: Caches) {
        *self.caches.lock().unwrap_or_else(PoisonError::into_inner) = Some(caches);
        self.changed();
    }

    /// Shows nothing until caches are attached again.
    pub fn detach(&self) {
        *self.caches.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.changed();
    }

    /// Something in the caches changed: watchers rebuild the view.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Tells of each change after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// What the caches hold now (nothing when none are attached).
    pub fn snapshot(&self) -> Snapshot {
        let caches = self
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match caches {
            Some(c) => Snapshot {
                stages: c.stages.state(),
                promotions: c.promotions.state(),
                freight: c.freight.state(),
                warehouses: c.warehouses.state(),
            },
            None => Snapshot::default(),
        }
    }

    /// Whether caches are attached.
    pub fn attached(&self) -> bool {
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// Watches the four kinds in `namespace` (all when `None`) into fresh
/// caches attached to `feed`, poking it on every change. Runs until dropped.
pub async fn watch(client: Client, namespace: Option<String>, feed: Feed) {
    let (stages, s) = cache::<Stage>(&client, &namespace, &feed);
    let (promotions, p) = cache::<Promotion>(&client, &namespace, &feed);
    let (freight, f) = cache::<Freight>(&client, &namespace, &feed);
    let (warehouses, w) = cache::<Warehouse>(&client, &namespace, &feed);
    feed.attach(Caches {
        stages,
        promotions,
        freight,
        warehouses,
    });
    futures::join!(s, p, f, w);
}

fn cache<K>(
    client: &Client,
    namespace: &Option<String>,
    feed: &Feed,
) -> (Store<K>, impl std::future::Future<Output = ()> + use<K>)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store::<K>();
    // The controller's watch: an expired watch (a restarted API server) lists
    // again at once instead of after a backoff.
    let events = relist::reflect(
        relist::watch(api, watcher::Config::default().any_semantic())
            .modify(|o| o.meta_mut().managed_fields = None),
        writer,
    );
    let feed = feed.clone();
    (store, drive(events, feed, K::kind(&()).to_string()))
}

/// Polls the watch (which fills the store) and pokes the feed after each
/// event, once the store has it.
async fn drive<S, K>(events: S, feed: Feed, kind: String)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(_) => feed.changed(),
            Err(error) => tracing::warn!(%error, kind, "dashboard watch error"),
        }
    }
}
