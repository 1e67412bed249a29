//! Which Promotions wait on which objects, derived from what each waiting
//! step recorded in `status.awaiting`. Watch events of Applications and
//! Promotions are mapped through it to the exact Promotions to reconcile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

/// A Promotion, by namespace and name.
pub type PromotionKey = (String, String);

/// One thing a Promotion waits on.
#[derive(Clone, Debug, PartialEq)]
pub enum AwaitTarget {
    /// A named object of `kind` (e.g. `Application`, `Promotion`).
    Named {
        kind: String,
        namespace: String,
        name: String,
    },
    /// Any object of `kind` in `namespace` whose labels match.
    Selected {
        kind: String,
        namespace: String,
        selector: LabelSelector,
    },
    /// Pull request `number` of the repository at `repo_url`, as reported
    /// by the webhook receivers of `namespace`.
    PullRequest {
        namespace: String,
        repo_url: String,
        number: u64,
    },
}

/// The kind recorded in `status.awaiting` for a pull request.
pub const PULL_REQUEST: &str = "PullRequest";

#[derive(Default, Debug)]
pub struct AwaitIndex {
    named: HashMap<(String, String, String), HashSet<PromotionKey>>,
    selected: HashMap<(String, String), HashMap<PromotionKey, Vec<Selector>>>,
    /// By repository key (`urls::repository_key`) and number.
    pull_requests: HashMap<(String, u64), HashSet<PromotionKey>>,
    by_promotion: HashMap<PromotionKey, Vec<AwaitTarget>>,
}

impl AwaitIndex {
    /// Replaces what `promotion` waits on; an empty list removes it.
    pub fn set(&mut self, promotion: PromotionKey, targets: Vec<AwaitTarget>) {
        if self.by_promotion.get(&promotion) == Some(&targets) {
            return;
        }
        self.remove(&promotion);
        for target in &targets {
            match target {
                AwaitTarget::Named {
                    kind,
                    namespace,
                    name,
                } => {
                    self.named
                        .entry((kind.clone(), namespace.clone(), name.clone()))
                        .or_default()
                        .insert(promotion.clone());
                }
                AwaitTarget::Selected {
                    kind,
                    namespace,
                    selector,
                } => {
                    // A selector the apiserver would reject can match nothing.
                    let Ok(selector) = Selector::try_from(selector.clone()) else {
                        continue;
                    };
                    self.selected
                        .entry((kind.clone(), namespace.clone()))
                        .or_default()
                        .entry(promotion.clone())
                        .or_default()
                        .push(selector);
                }
                AwaitTarget::PullRequest {
                    repo_url, number, ..
                } => {
                    self.pull_requests
                        .entry((crate::urls::repository_key(repo_url), *number))
                        .or_default()
                        .insert(promotion.clone());
                }
            }
        }
        if !targets.is_empty() {
            self.by_promotion.insert(promotion, targets);
        }
    }

    /// Forgets a Promotion (it ended or was deleted).
    pub fn remove(&mut self, promotion: &PromotionKey) {
        for target in self.by_promotion.remove(promotion).into_iter().flatten() {
            match target {
                AwaitTarget::Named {
                    kind,
                    namespace,
                    name,
                } => {
                    let key = (kind, namespace, name);
                    if let Some(set) = self.named.get_mut(&key) {
                        set.remove(promotion);
                        if set.is_empty() {
                            self.named.remove(&key);
                        }
                    }
                }
                AwaitTarget::Selected {
                    kind, namespace, ..
                } => {
                    let key = (kind, namespace);
                    if let Some(map) = self.selected.get_mut(&key) {
                        map.remove(promotion);
                        if map.is_empty() {
                            self.selected.remove(&key);
                        }
                    }
                }
                AwaitTarget::PullRequest {
                    repo_url, number, ..
                } => {
                    let key = (crate::urls::repository_key(&repo_url), number);
                    if let Some(set) = self.pull_requests.get_mut(&key) {
                        set.remove(promotion);
                        if set.is_empty() {
                            self.pull_requests.remove(&key);
                        }
                    }
                }
            }
        }
    }

    /// The Promotions waiting on this object: by name, or by a selector that
    /// matches its labels.
    pub fn waiters(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<PromotionKey> {
        let mut hits: Vec<PromotionKey> = self
            .named
            .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(map) = self
            .selected
            .get(&(kind.to_string(), namespace.to_string()))
        {
            for (promotion, selectors) in map {
                if selectors.iter().any(|s| s.matches(labels)) && !hits.contains(promotion) {
                    hits.push(promotion.clone());
                }
            }
        }
        hits
    }

    /// The Promotions of `namespace` waiting on pull request `number` of
    /// the repository any of `repo_urls` names (a webhook names it by its
    /// clone and web URLs).
    pub fn pull_request_waiters(
        &self,
        namespace: &str,
        repo_urls: &[String],
        number: u64,
    ) -> Vec<PromotionKey> {
        let mut hits: Vec<PromotionKey> = Vec::new();
        let mut keys: Vec<String> = repo_urls
            .iter()
            .map(|u| crate::urls::repository_key(u))
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            for promotion in self.pull_requests.get(&(key, number)).into_iter().flatten() {
                if promotion.0 == namespace && !hits.contains(promotion) {
                    hits.push(promotion.clone());
                }
            }
        }
        hits
    }
}

/// The index shared by the watches and the reconcilers. A panic while one
/// of them held the lock must not switch wake-ups off for good, so a
/// poisoned lock is recovered: every method leaves the index consistent.
#[derive(Clone, Default, Debug)]
pub struct SharedAwaitIndex(Arc<RwLock<AwaitIndex>>);

impl SharedAwaitIndex {
    /// Replaces what `promotion` waits on; an empty list removes it.
    pub fn set(&self, promotion: PromotionKey, targets: Vec<AwaitTarget>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .set(promotion, targets);
    }

    /// Forgets `promotion`.
    pub fn remove(&self, promotion: &PromotionKey) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(promotion);
    }

    /// The index as it is now, to ask who waits on an object.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, AwaitIndex> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PromotionKey {
        ("demo".into(), name.into())
    }

    fn app(name: &str) -> AwaitTarget {
        AwaitTarget::Named {
            kind: "Application".into(),
            namespace: "argocd".into(),
            name: name.into(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(pairs: &[(&str, &str)]) -> AwaitTarget {
        AwaitTarget::Selected {
            kind: "Application".into(),
            namespace: "argocd".into(),
            selector: LabelSelector {
                match_labels: Some(labels(pairs)),
                match_expressions: None,
            },
        }
    }

    fn pull_request(repo_url: &str, number: u64) -> AwaitTarget {
        AwaitTarget::PullRequest {
            namespace: "demo".into(),
            repo_url: repo_url.into(),
            number,
        }
    }

    #[test]
    fn a_pull_request_wait_is_found_by_any_url_of_its_repository_in_its_namespace_only() {
        let mut index = AwaitIndex::default();
        index.set(
            key("p1"),
            vec![pull_request("https://git.example.com/Team/App.git", 7)],
        );
        let urls = vec![
            "http://git.example.com/team/app.git".to_string(),
            "http://git.example.com/team/app".to_string(),
        ];
        assert_eq!(
            index.pull_request_waiters("demo", &urls, 7),
            vec![key("p1")]
        );
        assert!(index.pull_request_waiters("demo", &urls, 8).is_empty());
        assert!(
            index
                .pull_request_waiters("other-team", &urls, 7)
                .is_empty()
        );
    }

    #[test]
    fn a_named_wait_maps_the_application_to_its_promotion() {
        let mut index = AwaitIndex::default();
        index.set(key("p1"), vec![app("demo-dev")]);
        assert_eq!(
            index.waiters("Application", "argocd", "demo-dev", &labels(&[])),
            vec![key("p1")]
        );
        assert!(
            index
                .waiters("Application", "argocd", "demo-prod", &labels(&[]))
                .is_empty()
        );
        assert!(
            index
                .waiters("Promotion", "argocd", "demo-dev", &labels(&[]))
                .is_empty()
        );
    }

    #[test]
    fn a_selector_wait_matches_on_current_labels() {
        let mut index = AwaitIndex::default();
        index.set(key("p1"), vec![selector(&[("team", "web")])]);
        assert_eq!(
            index.waiters("Application", "argocd", "any", &labels(&[("team", "web")])),
            vec![key("p1")]
        );
        assert!(
            index
                .waiters("Application", "argocd", "any", &labels(&[("team", "db")]))
                .is_empty()
        );
        assert!(
            index
                .waiters("Application", "other", "any", &labels(&[("team", "web")]))
                .is_empty()
        );
    }

    #[test]
    fn setting_again_replaces_the_old_waits() {
        let mut index = AwaitIndex::default();
        index.set(key("p1"), vec![app("a"), app("b")]);
        index.set(key("p1"), vec![app("c")]);
        assert!(
            index
                .waiters("Application", "argocd", "a", &labels(&[]))
                .is_empty()
        );
        assert_eq!(
            index.waiters("Application", "argocd", "c", &labels(&[])),
            vec![key("p1")]
        );
        index.set(
            key("p1"),
            vec![pull_request("https://git.example.com/a/b", 3)],
        );
        index.set(key("p1"), vec![]);
        assert!(index.by_promotion.is_empty());
        assert!(index.named.is_empty() && index.selected.is_empty());
        assert!(index.pull_requests.is_empty());
    }

    #[test]
    fn two_promotions_on_one_application_are_both_woken_once() {
        let mut index = AwaitIndex::default();
        index.set(key("p1"), vec![app("a")]);
        index.set(key("p2"), vec![app("a"), selector(&[("x", "y")])]);
        let mut hits = index.waiters("Application", "argocd", "a", &labels(&[("x", "y")]));
        hits.sort();
        assert_eq!(hits, vec![key("p1"), key("p2")]);
    }

    #[test]
    fn a_panic_while_the_index_is_locked_does_not_switch_wake_ups_off() {
        let shared = SharedAwaitIndex::default();
        let poisoner = shared.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.0.write();
            panic!("a bug while holding the lock");
        })
        .join();
        let target = AwaitTarget::Named {
            kind: "Application".into(),
            namespace: "argocd".into(),
            name: "demo".into(),
        };
        shared.set(("ns".into(), "p1".into()), vec![target]);
        assert_eq!(
            shared
                .read()
                .waiters("Application", "argocd", "demo", &BTreeMap::new()),
            vec![("ns".to_string(), "p1".to_string())]
        );
    }
}
