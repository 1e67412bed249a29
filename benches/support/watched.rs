//! What a benchmark's watches saw, each entry the instant it was first
//! seen, shared with the code that waits on it: a lock for the record and a
//! notification for every change, so a wait wakes on the event it waits for.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use barge::argocd::{PROMOTION_INFO, PROMOTION_NAMESPACE_INFO};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The record `S` of what the watches saw.
pub struct Watched<S>(Arc<(Mutex<S>, tokio::sync::Notify)>);

impl<S> Clone for Watched<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: Default> Default for Watched<S> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<S: Send + 'static> Watched<S> {
    /// `f` over the record.
    pub fn with<T>(&self, f: impl FnOnce(&mut S) -> T) -> Result<T, Error> {
        let mut seen = self
            .0
            .0
            .lock()
            .map_err(|_| "a watch task panicked holding the lock")?;
        Ok(f(&mut seen))
    }

    /// Waits, on the watches' notifications, until `done` says so (`Err`
    /// ends the wait with that message); past `patience`, fails saying
    /// what was awaited and what the record shows (`progress`).
    pub async fn wait_for(
        &self,
        what: &str,
        patience: Duration,
        done: impl Fn(&S) -> Result<bool, String>,
        progress: impl Fn(&S) -> String,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + patience;
        loop {
            let notified = self.0.1.notified();
            if self.with(|s| done(s))?? {
                return Ok(());
            }
            let now = Instant::now();
            if now > deadline {
                let seen = self.with(|s| progress(s))?;
                return Err(
                    format!("{what}: not done within {} s ({seen})", patience.as_secs()).into(),
                );
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    /// Watches `api` (`config` selects): `note`s each object seen, with the
    /// instant it was seen, and wakes the waiters.
    pub fn watch<K>(
        &self,
        api: Api<K>,
        config: watcher::Config,
        what: &'static str,
        note: impl Fn(&K, Instant, &mut S) + Send + 'static,
    ) -> tokio::task::JoinHandle<()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        let shared = self.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let object = match event {
                    Ok(object) => object,
                    Err(e) => {
                        eprintln!("bench: {what} watch: {e}");
                        continue;
                    }
                };
                let Ok(mut seen) = shared.0.0.lock() else {
                    return;
                };
                note(&object, now, &mut seen);
                drop(seen);
                shared.0.1.notify_waiters();
            }
        })
    }
}

/// The Promotion whose sync operation the Application reports Succeeded
/// and finished, if any, when it is of namespace `ns`.
pub fn finished_sync_of(app: &DynamicObject, ns: &str) -> Option<String> {
    let state = app.data.pointer("/status/operationState")?;
    if state.get("phase").and_then(Value::as_str) != Some("Succeeded") {
        return None;
    }
    state
        .get("finishedAt")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())?;
    let info = state.pointer("/operation/info")?.as_array()?;
    let entry = |name: &str| {
        info.iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|i| i.get("value").and_then(Value::as_str))
    };
    if entry(PROMOTION_NAMESPACE_INFO).is_some_and(|n| n != ns) {
        return None;
    }
    entry(PROMOTION_INFO).map(String::from)
}
