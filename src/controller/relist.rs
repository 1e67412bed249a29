//! Watch events in step with the cache they fill, across relists.
//!
//! When a watch cannot resume (its resourceVersion expired, the API server
//! restarted), the watcher lists again and reports each listed object as
//! `InitApply`, but the cache shows none of them until `InitDone`, when the
//! reflector swaps the whole list in. Acting on those events as they come
//! reads the old cache: a reconcile for an object created during the outage
//! finds nothing and kube drops it (nothing triggers it again: the Promotion
//! waits for the backstop), and a wake-up for an object that changed reads
//! it unchanged. An object deleted during the outage gets no event at all.
//!
//! [`reflect`] fills the cache as `kube`'s reflector does, but passes each
//! event on only once the cache shows it: the listed objects right after
//! `InitDone`, followed by a `Delete` for every object the list no longer
//! has.
//!
//! [`watch`] lists again at once when a watch expires, as client-go's
//! reflectors do, instead of backing off first: the expiry is how a watch
//! learns to relist, not a failure (a restarted API server expires every
//! watch).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use futures::future::{Either, ready};
use futures::{Stream, StreamExt, stream};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{Lookup, ObjectRef, store::Writer};
use kube::runtime::watcher::{self, Event};

/// `kube`'s watcher with its default backoff, except that an expired watch
/// (410 Gone) relists at once; a second expiry in a row is backed off, so a
/// server that keeps expiring watches is not hammered.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send,
{
    relist_at_once(watcher::watcher(api, config)).default_backoff()
}

/// Drops a watch's expiry from the stream (the watcher has already gone
/// back to listing), unless the one before was an expiry too.
fn relist_at_once<K, S>(events: S) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Send,
    S: Stream<Item = watcher::Result<Event<K>>> + Send,
{
    let mut expired_before = false;
    events.filter(move |event| {
        let expired = is_expiry(event);
        let pass = !expired || expired_before;
        expired_before = expired;
        if !pass {
            tracing::debug!("watch expired: listing again at once");
        }
        ready(pass)
    })
}

fn is_expiry<K>(event: &watcher::Result<Event<K>>) -> bool {
    matches!(event, Err(watcher::Error::WatchError(status)) if status.code == 410)
}

/// Applies `events` to `writer`'s cache and passes them on, each once the
/// cache shows it (see the module documentation).
pub fn reflect<K, S>(
    events: S,
    mut writer: Writer<K>,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    S: Stream<Item = watcher::Result<Event<K>>> + Send,
{
    let cache = writer.as_reader();
    // The keys of the list in progress: only keys, as the cache holds the
    // objects until they are passed on.
    let mut listed: Vec<ObjectRef<K>> = Vec::new();
    events.flat_map(move |event| {
        let event = match event {
            Ok(event) => event,
            Err(e) => return Either::Left(stream::iter(Some(Err(e)))),
        };
        match event {
            Event::Init => {
                listed.clear();
                writer.apply_watcher_event(&Event::Init);
                Either::Left(stream::iter(Some(Ok(Event::Init))))
            }
            Event::InitApply(object) => {
                listed.push(object.to_object_ref(Default::default()));
                writer.apply_watcher_event(&Event::InitApply(object));
                Either::Left(stream::iter(None))
            }
            Event::InitDone => {
                let before = cache.state();
                writer.apply_watcher_event(&Event::InitDone);
                let keys = std::mem::take(&mut listed);
                let kept: HashSet<&ObjectRef<K>> = keys.iter().collect();
                let vanished: Vec<Arc<K>> = before
                    .into_iter()
                    .filter(|o| !kept.contains(&o.to_object_ref(Default::default())))
                    .collect();
                let cache = cache.clone();
                // Cloned one at a time as they are consumed, not all at once.
                let applied = stream::iter(keys).filter_map(move |key| {
                    ready(cache.get(&key).map(|o| Ok(Event::InitApply((*o).clone()))))
                });
                let deleted = stream::iter(vanished).map(|o| Ok(Event::Delete((*o).clone())));
                Either::Right(
                    applied
                        .chain(deleted)
                        .chain(stream::iter(Some(Ok(Event::InitDone)))),
                )
            }
            event @ (Event::Apply(_) | Event::Delete(_)) => {
                writer.apply_watcher_event(&event);
                Either::Left(stream::iter(Some(Ok(event))))
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector::{self, Store};

    use super::*;

    fn cm(name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn version_in(cache: &Store<ConfigMap>, name: &str) -> Option<String> {
        cache
            .get(&ObjectRef::new(name).within("ns"))
            .and_then(|o| o.metadata.resource_version.clone())
    }

    /// Runs `events` through [`reflect`]; for each event passed on, what it
    /// says and what the cache shows of its object at that moment.
    async fn seen(
        before: Vec<ConfigMap>,
        events: Vec<Event<ConfigMap>>,
    ) -> (Vec<(String, String, Option<String>)>, Store<ConfigMap>) {
        let (cache, writer) = reflector::store::<ConfigMap>();
        let mut initial: Vec<_> = vec![Event::Init];
        initial.extend(before.into_iter().map(Event::InitApply));
        initial.push(Event::InitDone);
        let all = initial.into_iter().chain(events).map(Ok);
        let out = reflect(stream::iter(all), writer)
            .map(|e| match e.unwrap() {
                Event::Apply(o) => ("apply", o),
                Event::InitApply(o) => ("init-apply", o),
                Event::Delete(o) => ("delete", o),
                Event::Init => ("init", cm("-", "-")),
                Event::InitDone => ("init-done", cm("-", "-")),
            })
            .map(|(kind, o)| {
                let name = o.metadata.name.clone().unwrap_or_default();
                let version = o.metadata.resource_version.clone().unwrap_or_default();
                let shown = version_in(&cache, &name);
                (format!("{kind} {name}"), version, shown)
            })
            .collect::<Vec<_>>()
            .await;
        (out, cache)
    }

    fn expired() -> watcher::Result<Event<ConfigMap>> {
        let mut status = kube::core::Status::failure("too old resource version", "Expired");
        status.code = 410;
        Err(watcher::Error::WatchError(Box::new(status)))
    }

    #[tokio::test]
    async fn an_expired_watch_is_not_backed_off_unless_it_expires_again_at_once() {
        let events = vec![
            expired(),
            Ok(Event::Apply(cm("a", "1"))),
            expired(),
            expired(),
            Ok(Event::Apply(cm("a", "2"))),
        ];
        let passed: Vec<&str> = relist_at_once(stream::iter(events))
            .map(|e| match e {
                Ok(_) => "event",
                Err(_) => "error",
            })
            .collect()
            .await;
        assert_eq!(passed, vec!["event", "error", "event"]);
    }

    #[tokio::test]
    async fn an_object_listed_again_is_passed_on_once_the_cache_shows_the_new_list() {
        let relist = vec![
            Event::Init,
            Event::InitApply(cm("kept", "5")),
            Event::InitApply(cm("created-meanwhile", "6")),
            Event::InitDone,
        ];
        let (out, _) = seen(vec![cm("kept", "1")], relist).await;
        let relisted: Vec<_> = out
            .iter()
            .skip_while(|(what, _, _)| what != "init-done -")
            .skip(2)
            .filter(|(what, _, _)| what.starts_with("init-apply"))
            .collect();
        assert_eq!(relisted.len(), 2, "{out:?}");
        for (what, version, shown) in relisted {
            assert_eq!(
                shown.as_deref(),
                Some(version.as_str()),
                "{what}: the cache lagged"
            );
        }
    }

    #[tokio::test]
    async fn an_object_gone_from_the_list_is_passed_on_as_deleted_after_the_cache_dropped_it() {
        let relist = vec![
            Event::Init,
            Event::InitApply(cm("kept", "5")),
            Event::InitDone,
        ];
        let (out, cache) = seen(vec![cm("kept", "1"), cm("deleted-meanwhile", "2")], relist).await;
        let deletes: Vec<_> = out
            .iter()
            .filter(|(w, _, _)| w.starts_with("delete"))
            .collect();
        assert_eq!(
            deletes,
            vec![&(
                "delete deleted-meanwhile".to_string(),
                "2".to_string(),
                None
            )]
        );
        assert_eq!(cache.state().len(), 1);
    }

    #[tokio::test]
    async fn the_relisted_objects_come_before_init_done_is_passed_on() {
        let relist = vec![Event::Init, Event::InitApply(cm("a", "5")), Event::InitDone];
        let (out, _) = seen(vec![], relist).await;
        let kinds: Vec<&str> = out.iter().map(|(w, _, _)| w.as_str()).collect();
        assert_eq!(
            kinds,
            vec![
                "init -",
                "init-done -",
                "init -",
                "init-apply a",
                "init-done -"
            ]
        );
    }

    #[tokio::test]
    async fn applied_and_deleted_objects_pass_on_after_the_cache_took_them() {
        let events = vec![Event::Apply(cm("a", "7")), Event::Delete(cm("a", "8"))];
        let (out, _) = seen(vec![cm("a", "1")], events).await;
        assert_eq!(
            &out[3..],
            &[
                (
                    "apply a".to_string(),
                    "7".to_string(),
                    Some("7".to_string())
                ),
                ("delete a".to_string(), "8".to_string(), None),
            ]
        );
    }
}
