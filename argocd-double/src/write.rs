//! Every write the double makes: a JSON patch on the main resource (the CRD
//! has no status subresource), conditional on the resourceVersion it was
//! computed from, recomputed from a fresh GET and retried on 409 Conflict.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::future::BoxFuture;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, core::Status};
use serde_json::{Value, json};
use tracing::debug;

use crate::Error;
use crate::app::{AppKey, resource_version};
use crate::journal::{Journal, Request, WriteInstants};

/// Argo CD's field manager, so `managedFields` read like Argo CD's.
const FIELD_MANAGER: &str = "argocd-application-controller";
/// Conflicts tolerated for one write before giving up (the reconcile is then
/// retried by the controller).
const MAX_ATTEMPTS: u32 = 32;

/// Which write the double is about to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WriteKind {
    /// O1: `operationState = {operation, phase: Running, startedAt}`.
    OperationStart,
    /// O2-O4 and retries: an intermediate `operationState` write.
    OperationProgress,
    /// O5: the `history` append before a successful final write.
    History,
    /// O5: the completed `operationState` and the removal of `.operation`.
    OperationFinal,
    /// REFRESH: `sync`, `health`, `reconciledAt`, conditions.
    Refresh,
    /// REFRESH: removal of the refresh annotations.
    RefreshAnnotations,
    /// REFRESH: the auto-sync `operation`.
    AutoSync,
}

/// A function the double awaits before each write attempt, given the
/// Application, the kind of write and the attempt number (1 for the first).
/// Tests use it to interleave a concurrent writer deterministically.
#[derive(Clone)]
pub struct WriteHook(pub Arc<WriteHookFn>);

/// The function inside a [`WriteHook`].
pub type WriteHookFn = dyn Fn(&AppKey, WriteKind, u32) -> BoxFuture<'static, ()> + Send + Sync;

impl WriteHook {
    pub fn new(
        f: impl Fn(&AppKey, WriteKind, u32) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for WriteHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHook")
    }
}

/// What to write, computed from the current object.
pub(crate) enum Plan {
    /// Nothing to change.
    Skip,
    /// The write no longer applies (e.g. the operation it belonged to is gone).
    Abort,
    /// JSON patch operations.
    Ops(Vec<Value>),
}

/// How a write ended.
pub(crate) enum Written {
    Done {
        app: Value,
        instants: WriteInstants,
    },
    Skipped(Value),
    Aborted(Value),
    /// The Application was deleted.
    Gone,
}

pub(crate) struct Writer {
    client: Client,
    resource: ApiResource,
    journal: Journal,
    hook: Option<WriteHook>,
}

impl Writer {
    pub(crate) fn new(
        client: Client,
        resource: ApiResource,
        journal: Journal,
        hook: Option<WriteHook>,
    ) -> Self {
        Self {
            client,
            resource,
            journal,
            hook,
        }
    }

    fn api(&self, key: &AppKey) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &key.namespace, &self.resource)
    }

    /// The Application as the API server has it now; `None` if deleted.
    pub(crate) async fn get(&self, key: &AppKey) -> Result<Option<Value>, Error> {
        self.journal.count(key, Request::Read);
        match self.api(key).get_opt(&key.name).await? {
            Some(obj) => Ok(Some(serde_json::to_value(obj)?)),
            None => Ok(None),
        }
    }

    /// Writes `plan(current)` conditionally on `current`'s resourceVersion;
    /// on a conflict, re-reads and recomputes.
    pub(crate) async fn write(
        &self,
        key: &AppKey,
        kind: WriteKind,
        mut current: Value,
        mut plan: impl FnMut(&Value) -> Plan,
    ) -> Result<Written, Error> {
        for attempt in 1..=MAX_ATTEMPTS {
            let mut ops = match plan(&current) {
                Plan::Skip => return Ok(Written::Skipped(current)),
                Plan::Abort => return Ok(Written::Aborted(current)),
                Plan::Ops(ops) => ops,
            };
            if let Some(rv) = resource_version(&current) {
                // The patched object carries this resourceVersion, so the API
                // server refuses the write with 409 if the object changed.
                ops.insert(
                    0,
                    json!({"op": "replace", "path": "/metadata/resourceVersion", "value": rv}),
                );
            }
            match self.send(key, kind, attempt, ops).await? {
                Ok(done) => return Ok(done),
                Err(status) if status.is_conflict() => {
                    debug!(app = %key, ?kind, attempt, "conflict; re-reading");
                    self.journal.count(key, Request::Conflict);
                    current = match self.get(key).await? {
                        Some(app) => app,
                        None => return Ok(Written::Gone),
                    };
                }
                Err(status) if status.is_not_found() => return Ok(Written::Gone),
                Err(status) => {
                    self.journal.count(key, Request::Rejected);
                    return Err(Error::Kube(kube::Error::Api(status)));
                }
            }
        }
        Err(Error::Conflicts {
            app: key.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Sends JSON patch `ops` once, with no resourceVersion condition. A
    /// refusal by the API server comes back as `Ok(Err(status))`.
    pub(crate) async fn patch_once(
        &self,
        key: &AppKey,
        kind: WriteKind,
        ops: Vec<Value>,
    ) -> Result<Result<Written, Box<Status>>, Error> {
        let result = self.send(key, kind, 1, ops).await?;
        if let Err(status) = &result {
            let request = if status.is_conflict() {
                Request::Conflict
            } else {
                Request::Rejected
            };
            self.journal.count(key, request);
        }
        Ok(result)
    }

    async fn send(
        &self,
        key: &AppKey,
        kind: WriteKind,
        attempt: u32,
        ops: Vec<Value>,
    ) -> Result<Result<Written, Box<Status>>, Error> {
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))?;
        if let Some(hook) = &self.hook {
            (hook.0)(key, kind, attempt).await;
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let sent = Instant::now();
        match self
            .api(key)
            .patch(&key.name, &params, &Patch::Json::<()>(patch))
            .await
        {
            Ok(obj) => {
                let acknowledged = Instant::now();
                let acknowledged_at = SystemTime::now();
                self.journal.count(key, Request::Write(kind));
                let resource_version = obj.metadata.resource_version.clone();
                Ok(Ok(Written::Done {
                    app: serde_json::to_value(obj)?,
                    instants: WriteInstants {
                        sent,
                        acknowledged,
                        acknowledged_at,
                        resource_version,
                    },
                }))
            }
            Err(kube::Error::Api(status)) => Ok(Err(status)),
            Err(e) => Err(e.into()),
        }
    }
}
