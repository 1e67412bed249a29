//! Fixtures for tests, benchmarks and the sandbox: an Application builder,
//! the writes other parties make (a Barge/Kargo-style sync request, a
//! foreign operation as the Argo CD API or CLI writes it, a termination, a
//! refresh request), and event-driven waits on an Application.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::app::{REFRESH_ANNOTATION, str_at};
use crate::journal::PROMOTION_INFO;
use crate::{Error, api_resource};

/// The `operation.info` entry naming the Promotion's namespace.
pub const PROMOTION_NAMESPACE_INFO: &str = "barge.dev/promotion-namespace";

const CONFLICT_ATTEMPTS: u32 = 16;

/// Applications in `namespace`.
pub fn applications(client: Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &api_resource())
}

/// Builds an Application. Defaults: project `default`, destination the
/// in-cluster server and a namespace named after the Application, one git
/// source `https://github.com/example/gitops.git` at path `<name>`,
/// targetRevision `main`, no status.
#[derive(Clone, Debug)]
pub struct ApplicationBuilder {
    name: String,
    namespace: Option<String>,
    project: String,
    destination: Value,
    source: Value,
    sources: Option<Vec<Value>>,
    annotations: BTreeMap<String, String>,
    sync_policy: Option<Value>,
    revision_history_limit: Option<i64>,
    status: Option<Value>,
    deployed: Option<Vec<String>>,
    operation: Option<Value>,
}

impl ApplicationBuilder {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            namespace: None,
            project: "default".into(),
            destination: json!({"server": "https://kubernetes.default.svc", "namespace": name}),
            source: json!({
                "repoURL": "https://github.com/example/gitops.git",
                "path": name,
                "targetRevision": "main",
            }),
            sources: None,
            annotations: BTreeMap::new(),
            sync_policy: None,
            revision_history_limit: None,
            status: None,
            deployed: None,
            operation: None,
        }
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn project(mut self, project: &str) -> Self {
        self.project = project.into();
        self
    }

    pub fn destination_namespace(mut self, namespace: &str) -> Self {
        self.destination["namespace"] = json!(namespace);
        self
    }

    pub fn repo_url(mut self, url: &str) -> Self {
        self.source["repoURL"] = json!(url);
        self
    }

    pub fn path(mut self, path: &str) -> Self {
        self.source["path"] = json!(path);
        self
    }

    pub fn target_revision(mut self, revision: &str) -> Self {
        self.source["targetRevision"] = json!(revision);
        self
    }

    /// Replaces the single source (e.g. a Helm chart source).
    pub fn source(mut self, source: Value) -> Self {
        self.source = source;
        self
    }

    /// Multiple sources (`spec.sources`), which win over `spec.source`.
    pub fn sources(mut self, sources: Vec<Value>) -> Self {
        self.sources = Some(sources);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// A double knob (see [`crate::knobs`]); the same as [`annotation`](Self::annotation).
    pub fn knob(self, key: &str, value: &str) -> Self {
        self.annotation(key, value)
    }

    /// `spec.syncPolicy.automated`.
    pub fn auto_sync(mut self, prune: bool) -> Self {
        let policy = self.sync_policy.get_or_insert_with(|| json!({}));
        policy["automated"] = json!({"prune": prune});
        self
    }

    /// `spec.syncPolicy.retry` with a backoff base duration (factor 2).
    pub fn retry(mut self, limit: i64, backoff: &str) -> Self {
        let policy = self.sync_policy.get_or_insert_with(|| json!({}));
        policy["retry"] = json!({
            "limit": limit,
            "backoff": {"duration": backoff, "factor": 2, "maxDuration": "3m"},
        });
        self
    }

    /// `spec.syncPolicy.syncOptions`.
    pub fn sync_options(mut self, options: &[&str]) -> Self {
        let policy = self.sync_policy.get_or_insert_with(|| json!({}));
        policy["syncOptions"] = json!(options);
        self
    }

    pub fn revision_history_limit(mut self, limit: i64) -> Self {
        self.revision_history_limit = Some(limit);
        self
    }

    /// A status written as-is on create (the CRD has no status subresource).
    pub fn status(mut self, status: Value) -> Self {
        self.status = Some(status);
        self
    }

    /// A status as Argo CD leaves it after a successful sync of the current
    /// sources at `revisions` (one per source) an hour ago: history,
    /// operationState Succeeded, Synced, Healthy, reconciled.
    pub fn deployed(mut self, revisions: &[&str]) -> Self {
        self.deployed = Some(revisions.iter().map(|r| r.to_string()).collect());
        self
    }

    /// `.operation` on create.
    pub fn operation(mut self, operation: Value) -> Self {
        self.operation = Some(operation);
        self
    }

    fn deployed_status(&self, revisions: &[String]) -> Value {
        let then = crate::time::format(
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(3600))
                .unwrap_or_else(|_| jiff::Timestamp::now()),
        );
        let mut revision = serde_json::Map::new();
        match &self.sources {
            Some(sources) => {
                revision.insert("revisions".into(), json!(revisions));
                revision.insert("sources".into(), json!(sources));
            }
            None => {
                revision.insert(
                    "revision".into(),
                    json!(revisions.first().cloned().unwrap_or_default()),
                );
                revision.insert("source".into(), self.source.clone());
            }
        }
        let mut history = revision.clone();
        history.insert("id".into(), json!(0));
        history.insert("deployStartedAt".into(), json!(then));
        history.insert("deployedAt".into(), json!(then));
        history.insert("initiatedBy".into(), json!({"username": "admin"}));
        let mut sync_result = revision.clone();
        if self.sources.is_some() {
            sync_result.insert("revision".into(), json!(""));
        }
        let mut sync = serde_json::Map::new();
        sync.insert("status".into(), json!("Synced"));
        let mut compared = serde_json::Map::new();
        match &self.sources {
            Some(sources) => {
                sync.insert("revisions".into(), json!(revisions));
                compared.insert("sources".into(), json!(sources));
            }
            None => {
                sync.insert(
                    "revision".into(),
                    json!(revisions.first().cloned().unwrap_or_default()),
                );
                compared.insert("source".into(), self.source.clone());
            }
        }
        compared.insert("destination".into(), self.destination.clone());
        sync.insert("comparedTo".into(), Value::Object(compared));
        json!({
            "sync": sync,
            "health": {"status": "Healthy", "lastTransitionTime": then},
            "history": [history],
            "operationState": {
                "operation": {"sync": {}, "initiatedBy": {"username": "admin"}},
                "phase": "Succeeded",
                "message": "successfully synced (all tasks run)",
                "startedAt": then,
                "finishedAt": then,
                "syncResult": sync_result,
            },
            "reconciledAt": then,
        })
    }

    pub fn build(self) -> DynamicObject {
        let mut spec = json!({
            "project": self.project,
            "destination": self.destination,
        });
        match &self.sources {
            Some(sources) => spec["sources"] = json!(sources),
            None => spec["source"] = self.source.clone(),
        }
        if let Some(policy) = &self.sync_policy {
            spec["syncPolicy"] = policy.clone();
        }
        if let Some(limit) = self.revision_history_limit {
            spec["revisionHistoryLimit"] = json!(limit);
        }
        let mut data = json!({"spec": spec});
        let status = match &self.deployed {
            Some(revisions) => Some(self.deployed_status(revisions)),
            None => self.status.clone(),
        };
        if let Some(status) = status {
            data["status"] = status;
        }
        if let Some(operation) = &self.operation {
            data["operation"] = operation.clone();
        }
        let mut obj = DynamicObject::new(&self.name, &api_resource()).data(data);
        obj.metadata = ObjectMeta {
            name: Some(self.name.clone()),
            namespace: self.namespace.clone(),
            annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
            ..ObjectMeta::default()
        };
        obj
    }

    /// Creates the Application in `namespace`.
    pub async fn create(self, client: Client, namespace: &str) -> Result<DynamicObject, Error> {
        let obj = self.namespace(namespace).build();
        Ok(applications(client, namespace)
            .create(&PostParams::default(), &obj)
            .await?)
    }
}

/// A sync request as Barge's `argocd-update` writes it (after Kargo): one
/// merge patch, conditional on the resourceVersion and retried on conflict,
/// with the `refresh: hard` annotation, the new targetRevision, the
/// `operation` (with the Promotion in `info`) and `status.operationState =
/// null` when `status` exists.
#[derive(Clone, Debug)]
pub struct SyncRequest {
    pub promotion: Option<String>,
    pub promotion_namespace: Option<String>,
    /// `initiatedBy.username`; `None` writes `barge-controller`, automated.
    pub username: Option<String>,
    /// New `spec.source.targetRevision` (single-source Applications).
    pub target_revision: Option<String>,
    /// `operation.sync.revision`; empty means the spec's targetRevision.
    pub revision: Option<String>,
    /// Extra `info` entries.
    pub info: Vec<(String, String)>,
    /// Write the `argocd.argoproj.io/refresh: hard` annotation.
    pub refresh: bool,
    /// Write `status.operationState = null` (only when `status` exists).
    pub clear_operation_state: bool,
    /// Also write `operation.retry`.
    pub retry: Option<Value>,
    /// Leave `operation.sync` out (an invalid request).
    pub without_sync: bool,
}

impl Default for SyncRequest {
    fn default() -> Self {
        Self {
            promotion: None,
            promotion_namespace: None,
            username: None,
            target_revision: None,
            revision: None,
            info: Vec::new(),
            refresh: true,
            clear_operation_state: true,
            retry: None,
            without_sync: false,
        }
    }
}

impl SyncRequest {
    /// A request for Promotion `name` in `namespace`.
    pub fn for_promotion(namespace: &str, name: &str) -> Self {
        Self {
            promotion: Some(name.into()),
            promotion_namespace: Some(namespace.into()),
            ..Self::default()
        }
    }

    pub fn target_revision(mut self, revision: &str) -> Self {
        self.target_revision = Some(revision.into());
        self
    }

    pub fn revision(mut self, revision: &str) -> Self {
        self.revision = Some(revision.into());
        self
    }

    pub fn username(mut self, username: &str) -> Self {
        self.username = Some(username.into());
        self
    }

    fn operation(&self, app: &Value) -> Value {
        let mut info = vec![json!({
            "name": "Reason",
            "value": "Promotion triggered a sync of this Application resource.",
        })];
        if let Some(promotion) = &self.promotion {
            info.push(json!({"name": PROMOTION_INFO, "value": promotion}));
        }
        if let Some(namespace) = &self.promotion_namespace {
            info.push(json!({"name": PROMOTION_NAMESPACE_INFO, "value": namespace}));
        }
        for (name, value) in &self.info {
            info.push(json!({"name": name, "value": value}));
        }
        let mut sync = json!({});
        if let Some(revision) = &self.revision {
            sync["revision"] = json!(revision);
        }
        if let Some(options) = app.pointer("/spec/syncPolicy/syncOptions") {
            sync["syncOptions"] = options.clone();
        }
        let mut operation = json!({
            "initiatedBy": match &self.username {
                Some(user) => json!({"username": user, "automated": false}),
                None => json!({"username": "barge-controller", "automated": true}),
            },
            "info": info,
        });
        if !self.without_sync {
            operation["sync"] = sync;
        }
        if let Some(retry) = self
            .retry
            .clone()
            .or_else(|| app.pointer("/spec/syncPolicy/retry").cloned())
        {
            operation["retry"] = retry;
        }
        operation
    }
}

/// Patches `name` with `patch(current)` as a merge patch carrying the
/// current resourceVersion, retrying on conflict.
async fn merge_with_retry(
    api: &Api<DynamicObject>,
    name: &str,
    mut patch: impl FnMut(&Value) -> Result<Value, Error>,
) -> Result<DynamicObject, Error> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let Some(current) = api.get_opt(name).await? else {
            return Err(Error::NotFound(name.into()));
        };
        let current = serde_json::to_value(current)?;
        let mut body = patch(&current)?;
        body["metadata"]["resourceVersion"] = json!(str_at(&current, "/metadata/resourceVersion"));
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(obj) => return Ok(obj),
            Err(kube::Error::Api(status)) if status.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflicts {
        app: name.into(),
        attempts: CONFLICT_ATTEMPTS,
    })
}

/// Writes a sync request (see [`SyncRequest`]).
pub async fn request_sync(
    api: &Api<DynamicObject>,
    name: &str,
    request: &SyncRequest,
) -> Result<DynamicObject, Error> {
    merge_with_retry(api, name, |current| {
        let mut body = json!({"operation": request.operation(current)});
        if request.refresh {
            body["metadata"] = json!({"annotations": {REFRESH_ANNOTATION: "hard"}});
        }
        if let Some(revision) = &request.target_revision {
            body["spec"] = json!({"source": {"targetRevision": revision}});
        }
        if request.clear_operation_state && current.get("status").is_some_and(|s| !s.is_null()) {
            body["status"] = json!({"operationState": null});
        }
        Ok(body)
    })
    .await
}

/// Writes an operation as the Argo CD API server (UI, CLI, another tool)
/// does: refused when `.operation` is set, otherwise `operation = {sync:
/// {}, initiatedBy: {username}}` with no `info`, and `status.operationState
/// = null`.
pub async fn write_foreign_operation(
    api: &Api<DynamicObject>,
    name: &str,
    username: &str,
) -> Result<DynamicObject, Error> {
    merge_with_retry(api, name, |current| {
        if current.get("operation").is_some_and(|o| !o.is_null()) {
            return Err(Error::OperationInProgress(name.into()));
        }
        let mut body = json!({"operation": {
            "sync": {},
            "initiatedBy": {"username": username},
        }});
        if current.get("status").is_some_and(|s| !s.is_null()) {
            body["status"] = json!({"operationState": null});
        }
        Ok(body)
    })
    .await
}

/// Argo CD's `TerminateOperation`: `operationState.phase = Terminating`,
/// `message = "operation is terminating"`, for an operation in progress.
pub async fn terminate_operation(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<DynamicObject, Error> {
    merge_with_retry(api, name, |current| {
        match str_at(current, "/status/operationState/phase") {
            Some("Running") if current.get("operation").is_some_and(|o| !o.is_null()) => {}
            _ => return Err(Error::NoOperationInProgress(name.into())),
        }
        Ok(json!({"status": {"operationState": {
            "phase": "Terminating",
            "message": "operation is terminating",
        }}}))
    })
    .await
}

/// Requests a refresh with the `argocd.argoproj.io/refresh` annotation.
pub async fn request_refresh(
    api: &Api<DynamicObject>,
    name: &str,
    hard: bool,
) -> Result<DynamicObject, Error> {
    let kind = if hard { "hard" } else { "normal" };
    let body = json!({"metadata": {"annotations": {REFRESH_ANNOTATION: kind}}});
    Ok(api
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await?)
}

/// Sets (`Some`) or removes (`None`) an annotation, e.g. a knob.
pub async fn set_annotation(
    api: &Api<DynamicObject>,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<DynamicObject, Error> {
    let body = json!({"metadata": {"annotations": {key: value}}});
    Ok(api
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await?)
}

/// Waits, on watch events, until Application `name` satisfies `condition`
/// (given the whole object as JSON), and returns it.
pub async fn wait_for(
    api: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
    condition: impl Fn(&Value) -> bool,
) -> Result<Value, Error> {
    let matches = |obj: Option<&DynamicObject>| {
        obj.and_then(|o| serde_json::to_value(o).ok())
            .is_some_and(|v| condition(&v))
    };
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, matches)).await {
        Ok(Ok(Some(obj))) => Ok(serde_json::to_value(obj)?),
        Ok(Ok(None)) => Err(Error::NotFound(name.into())),
        Ok(Err(e)) => Err(Error::Watch(e.to_string())),
        Err(_) => Err(Error::Timeout {
            what: format!("Application {name}"),
            timeout,
        }),
    }
}

/// Records every version of one Application seen on a watch, in order, so
/// a test can assert the sequence of writes. Stops when dropped.
pub struct Recorder {
    versions: Arc<Mutex<Vec<Value>>>,
    changed: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts watching `name` (which may not exist yet) and returns once the
    /// watch is established, so no later write is missed.
    pub async fn start(api: &Api<DynamicObject>, name: &str) -> Result<Self, Error> {
        let versions: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (tx, changed) = watch::channel(0usize);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher(api.clone(), config);
        let sink = versions.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let obj = match event {
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => obj,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                        continue;
                    }
                    Ok(_) | Err(_) => continue,
                };
                let Ok(value) = serde_json::to_value(&obj) else {
                    continue;
                };
                let mut list = sink.lock().unwrap_or_else(|e| e.into_inner());
                // A relist repeats versions already seen.
                if list.iter().any(|v| {
                    v["metadata"]["resourceVersion"] == value["metadata"]["resourceVersion"]
                }) {
                    continue;
                }
                list.push(value);
                let len = list.len();
                drop(list);
                tx.send_replace(len);
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(30), ready_rx).await;
        Ok(Self {
            versions,
            changed,
            task,
        })
    }

    /// Every version seen so far.
    pub fn versions(&self) -> Vec<Value> {
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the versions seen satisfy `condition`; returns them.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        condition: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>, Error> {
        let wait = async {
            loop {
                self.changed.borrow_and_update();
                let versions = self.versions();
                if condition(&versions) {
                    return Ok(versions);
                }
                if self.changed.changed().await.is_err() {
                    return Err(Error::Watch("recorder stopped".into()));
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                what: format!(
                    "recorded versions to match (last: {})",
                    self.versions().last().cloned().unwrap_or_default()
                ),
                timeout,
            }),
        }
    }

    /// Waits until the newest version satisfies `condition`; returns it.
    pub async fn wait_latest(
        &mut self,
        timeout: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Result<Value, Error> {
        let versions = self
            .wait_for(timeout, |v| v.last().is_some_and(&condition))
            .await?;
        versions
            .last()
            .cloned()
            .ok_or_else(|| Error::NotFound("recorded version".into()))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
