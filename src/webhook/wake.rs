//! Waking the Promotions a pull-request event concerns. The replica that
//! runs the controllers looks them up in its wait index and queues them
//! at once; a replica that does not (a standby, or the controllers not yet
//! started) finds them through the API server and annotates them
//! `barge.dev/refresh`, whose watch event wakes them on the leader.

use std::sync::{Arc, PoisonError, RwLock};

use futures::channel::mpsc;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::api::{ANNOTATION_REFRESH, Promotion};
use crate::await_index::{AwaitIndex, AwaitTarget, SharedAwaitIndex};
use crate::urls::repository_key;

/// The running controllers' wait index and queue.
#[derive(Clone)]
pub struct PullRequestWaker {
    pub index: SharedAwaitIndex,
    pub wake: mpsc::UnboundedSender<ObjectRef<Promotion>>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// How this replica wakes Promotions.
#[derive(Clone)]
pub struct Wakers {
    client: Client,
    local: Arc<RwLock<Option<PullRequestWaker>>>,
}

impl std::fmt::Debug for Wakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let local = self
            .local
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        f.debug_struct("Wakers").field("local", &local).finish()
    }
}

impl Wakers {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            local: Arc::default(),
        }
    }

    /// The client wakes go through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Refreshes the Warehouses of `namespace` a push concerns; their
    /// names.
    pub async fn warehouses(
        &self,
        namespace: &str,
        push: &super::event::Push,
    ) -> Result<Vec<String>, kube::Error> {
        super::warehouses::refresh_subscribers(&self.client, namespace, push).await
    }

    /// The controllers started in this process: wake through their index.
    pub fn set_local(&self, waker: Option<PullRequestWaker>) {
        *self.local.write().unwrap_or_else(PoisonError::into_inner) = waker;
    }

    /// Wakes the Promotions of `namespace` waiting on pull request
    /// `number` of the repository `repo_urls` name; how many.
    pub async fn pull_request(
        &self,
        namespace: &str,
        repo_urls: &[String],
        number: u64,
    ) -> Result<usize, kube::Error> {
        let local = self
            .local
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(local) = local {
            let waiters = local
                .index
                .read()
                .pull_request_waiters(namespace, repo_urls, number);
            for (ns, name) in &waiters {
                let _ = local.wake.unbounded_send(ObjectRef::new(name).within(ns));
            }
            return Ok(waiters.len());
        }
        self.refresh_through_api(namespace, repo_urls, number).await
    }

    async fn refresh_through_api(
        &self,
        namespace: &str,
        repo_urls: &[String],
        number: u64,
    ) -> Result<usize, kube::Error> {
        let api: Api<Promotion> = Api::namespaced(self.client.clone(), namespace);
        let promotions = api.list(&ListParams::default()).await?;
        // The same matching as the controllers' index, over what each
        // Promotion recorded.
        let mut index = AwaitIndex::default();
        for promotion in &promotions.items {
            let targets: Vec<AwaitTarget> =
                crate::controller::promotion::recorded_targets(promotion)
                    .into_iter()
                    .filter(|t| matches!(t, AwaitTarget::PullRequest { .. }))
                    .collect();
            index.set((namespace.to_string(), promotion.name_any()), targets);
        }
        let waiters = index.pull_request_waiters(namespace, repo_urls, number);
        let stamp = jiff::Timestamp::now().to_string();
        for (_, name) in &waiters {
            let patch = json!({ "metadata": { "annotations": { ANNOTATION_REFRESH: stamp } } });
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        tracing::debug!(namespace, keys = ?repo_urls.iter().map(|u| repository_key(u)).collect::<Vec<_>>(), number, woken = waiters.len(), "refreshed through the API server");
        Ok(waiters.len())
    }
}
