//! What the double did, for tests and benchmarks: every sync operation it
//! started (with the operation's `info`, the resolved revisions and the
//! instants of its final `operationState` write) and every API request it
//! made. A [`Journal`] is a cheap, cloneable handle; waiting on it is driven
//! by a notification on every change, never by polling.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::app::AppKey;
use crate::write::WriteKind;

/// The `operation.info` entry naming the Promotion that requested a sync.
pub const PROMOTION_INFO: &str = "barge.dev/promotion";

/// One `operation.info` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoEntry {
    pub name: String,
    pub value: String,
}

/// A sync operation the double started (O1) for one Application.
#[derive(Clone, Debug)]
pub struct SyncRecord {
    pub app: AppKey,
    /// `operationState.startedAt` (RFC 3339, seconds).
    pub started_at: String,
    /// When the double's O1 write was acknowledged.
    pub started: Instant,
    /// `operation.info`, in order.
    pub info: Vec<InfoEntry>,
    /// `operation.initiatedBy.username`.
    pub initiated_by: Option<String>,
    /// `operation.initiatedBy.automated`.
    pub automated: bool,
    /// The revisions requested (`operation.sync.revision(s)`, else the
    /// sources' targetRevisions), as of the last attempt.
    pub requested_revisions: Vec<String>,
    /// The revisions they resolved to (`syncResult.revision(s)`), once known.
    pub resolved_revisions: Option<Vec<String>>,
    /// Attempts started (1 + retries).
    pub attempts: u32,
    /// The final phase (Succeeded, Failed, Error), once completed.
    pub phase: Option<String>,
    /// The final `operationState.message`.
    pub message: Option<String>,
    /// `operationState.finishedAt` of the final write.
    pub finished_at: Option<String>,
    /// The final `operationState` write (the one that removes `.operation`).
    pub final_write: Option<WriteInstants>,
    /// The operation state vanished (someone cleared it) before it completed.
    pub abandoned: bool,
}

impl SyncRecord {
    /// The value of the `info` entry `name`.
    pub fn info(&self, name: &str) -> Option<&str> {
        self.info
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.value.as_str())
    }

    /// The Promotion named by the [`PROMOTION_INFO`] entry.
    pub fn promotion(&self) -> Option<&str> {
        self.info(PROMOTION_INFO)
    }

    pub fn is_completed(&self) -> bool {
        self.phase.is_some()
    }
}

/// When a write was sent and when the API server acknowledged it.
#[derive(Clone, Debug)]
pub struct WriteInstants {
    pub sent: Instant,
    pub acknowledged: Instant,
    /// Wall-clock time of the acknowledgement.
    pub acknowledged_at: SystemTime,
    /// The Application's resourceVersion after the write.
    pub resource_version: Option<String>,
}

/// API requests made by the double.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Successful writes (PATCH).
    pub writes: u64,
    /// Writes refused with 409 Conflict (then recomputed and retried).
    pub conflicts: u64,
    /// Other refused writes (e.g. 422 from a `test` op).
    pub rejected: u64,
    /// GETs.
    pub reads: u64,
}

impl RequestCounts {
    fn add(&mut self, other: &RequestCounts) {
        self.writes += other.writes;
        self.conflicts += other.conflicts;
        self.rejected += other.rejected;
        self.reads += other.reads;
    }
}

#[derive(Default)]
struct Data {
    syncs: Vec<SyncRecord>,
    requests: BTreeMap<AppKey, RequestCounts>,
    writes: BTreeMap<(AppKey, WriteKind), u64>,
}

/// A cloneable handle on the double's records.
#[derive(Clone)]
pub struct Journal {
    data: Arc<Mutex<Data>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Journal {
    fn default() -> Self {
        Self {
            data: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.lock();
        f.debug_struct("Journal")
            .field("syncs", &data.syncs.len())
            .finish()
    }
}

/// The condition was not met in time.
#[derive(Debug, thiserror::Error)]
#[error("journal condition not met after {0:?}")]
pub struct WaitTimeout(pub Duration);

/// Which request a count is about.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Request {
    Write(WriteKind),
    Conflict,
    Rejected,
    Read,
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Data> {
        // A panic while holding this lock cannot leave the data half-updated
        // in a way that matters to readers, so a poisoned lock is still used.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Every sync operation started, in start order.
    pub fn syncs(&self) -> Vec<SyncRecord> {
        self.lock().syncs.clone()
    }

    /// The sync operations started on one Application.
    pub fn syncs_for(&self, namespace: &str, name: &str) -> Vec<SyncRecord> {
        self.lock()
            .syncs
            .iter()
            .filter(|s| s.app.namespace == namespace && s.app.name == name)
            .cloned()
            .collect()
    }

    /// The sync operations whose `info` names Promotion `promotion`.
    pub fn syncs_for_promotion(&self, promotion: &str) -> Vec<SyncRecord> {
        self.lock()
            .syncs
            .iter()
            .filter(|s| s.promotion() == Some(promotion))
            .cloned()
            .collect()
    }

    /// API requests made for all Applications.
    pub fn requests(&self) -> RequestCounts {
        let mut total = RequestCounts::default();
        for counts in self.lock().requests.values() {
            total.add(counts);
        }
        total
    }

    /// API requests made for one Application.
    pub fn requests_for(&self, namespace: &str, name: &str) -> RequestCounts {
        self.lock()
            .requests
            .get(&AppKey::new(namespace, name))
            .copied()
            .unwrap_or_default()
    }

    /// Successful writes of one kind to one Application (e.g. exactly one
    /// [`WriteKind::OperationStart`] per sync operation).
    pub fn writes_of(&self, namespace: &str, name: &str, kind: WriteKind) -> u64 {
        self.lock()
            .writes
            .get(&(AppKey::new(namespace, name), kind))
            .copied()
            .unwrap_or_default()
    }

    /// A receiver that changes whenever the journal does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until `condition` holds, re-checking on every journal change.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Journal) -> bool,
    ) -> Result<(), WaitTimeout> {
        let mut rx = self.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if condition(self) {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The sender lives as long as this journal: unreachable,
                    // but never spin.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| WaitTimeout(timeout))
    }

    pub(crate) fn count(&self, app: &AppKey, request: Request) {
        {
            let mut data = self.lock();
            if let Request::Write(kind) = request {
                *data.writes.entry((app.clone(), kind)).or_default() += 1;
            }
            let counts = data.requests.entry(app.clone()).or_default();
            match request {
                Request::Write(_) => counts.writes += 1,
                Request::Conflict => counts.conflicts += 1,
                Request::Rejected => counts.rejected += 1,
                Request::Read => counts.reads += 1,
            }
        }
        self.bump();
    }

    pub(crate) fn started(&self, record: SyncRecord) {
        self.lock().syncs.push(record);
        self.bump();
    }

    /// Updates the newest record of `app` started at `started_at`.
    pub(crate) fn update(&self, app: &AppKey, started_at: &str, f: impl FnOnce(&mut SyncRecord)) {
        {
            let mut data = self.lock();
            if let Some(record) = data.syncs.iter_mut().rev().find(|s| {
                &s.app == app && s.started_at == started_at && !s.is_completed() && !s.abandoned
            }) {
                f(record);
            }
        }
        self.bump();
    }
}
