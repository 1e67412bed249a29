//! Each Stage's newest ended Promotion, in full.
//!
//! Ended Promotions are most of a cluster's, and the Promotion cache keeps
//! them thin: a Stage reads only its newest ended one in full (its health
//! checks and the status it shows as `lastPromotion`). The watch shows every
//! Promotion in full before the cache slims it, so the newest per Stage is
//! kept here; when the one a Stage now sees as last is another (the newest
//! was deleted), it is read from the API server once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::api::Promotion;
use crate::stage::ended_order;

/// By namespace and Stage name.
#[derive(Default)]
pub struct LastPromotions {
    by_stage: Mutex<HashMap<(String, String), Arc<Promotion>>>,
}

impl LastPromotions {
    /// A Promotion as the watch shows it, before the cache slims it: kept
    /// when it ended and is its Stage's newest ended one.
    pub fn observe(&self, promotion: &Promotion) {
        if !promotion.is_terminal() {
            return;
        }
        self.keep(full_record(promotion.clone()));
    }

    /// A deleted Promotion is no longer anyone's last.
    pub fn forget(&self, promotion: &Promotion) {
        let mut by_stage = self.lock();
        let key = stage_key(promotion);
        if by_stage
            .get(&key)
            .is_some_and(|kept| same_version(kept, promotion))
        {
            by_stage.remove(&key);
        }
    }

    /// The full record of `last`, the Stage's newest ended Promotion as the
    /// cache has it, when the watch showed it; `None` when it must be read.
    pub fn lookup(&self, last: &Promotion) -> Option<Arc<Promotion>> {
        self.lock()
            .get(&stage_key(last))
            .filter(|kept| same_version(kept, last))
            .cloned()
    }

    /// The full record of `last`: kept from the watch, or read from the API
    /// server (and kept) when the watch showed another.
    pub async fn full(
        &self,
        client: &Client,
        last: &Promotion,
    ) -> Result<Arc<Promotion>, kube::Error> {
        if let Some(kept) = self.lookup(last) {
            return Ok(kept);
        }
        let namespace = last.namespace().unwrap_or_default();
        let api = Api::<Promotion>::namespaced(client.clone(), &namespace);
        match api.get_opt(&last.name_any()).await? {
            Some(read) if read.is_terminal() => Ok(self.remember_read(full_record(read))),
            // Gone or changed since: its watch event wakes the Stage again.
            _ => Ok(Arc::new(last.clone())),
        }
    }

    /// What was read because the cache's last is not the one kept: the
    /// cache decided it is the Stage's last, so it replaces the kept one
    /// even when that one ended later (its deletion went unseen while the
    /// watch was down); were the watch ahead of the cache instead, the next
    /// reconcile reads again.
    fn remember_read(&self, promotion: Promotion) -> Arc<Promotion> {
        let promotion = Arc::new(promotion);
        self.lock().insert(stage_key(&promotion), promotion.clone());
        promotion
    }

    /// Keeps `promotion` unless its Stage's kept one ended later; returns
    /// it either way.
    fn keep(&self, promotion: Promotion) -> Arc<Promotion> {
        let promotion = Arc::new(promotion);
        let mut by_stage = self.lock();
        let key = stage_key(&promotion);
        let newer = by_stage
            .get(&key)
            .is_none_or(|kept| ended_order(&promotion) >= ended_order(kept));
        if newer {
            by_stage.insert(key, promotion.clone());
        }
        promotion
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Promotion>>> {
        self.by_stage.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn stage_key(promotion: &Promotion) -> (String, String) {
    (
        promotion.namespace().unwrap_or_default(),
        promotion.spec.stage.clone(),
    )
}

fn same_version(a: &Promotion, b: &Promotion) -> bool {
    a.metadata.uid == b.metadata.uid && a.metadata.resource_version == b.metadata.resource_version
}

/// What a Stage shows of its last Promotion: all but the plan, which only
/// running it reads, and what only kubectl and apply read.
fn full_record(mut promotion: Promotion) -> Promotion {
    super::slim(&mut promotion);
    if let Some(status) = promotion.status.as_mut() {
        status.plan = None;
    }
    promotion
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ended(name: &str, finished: &str, version: &str) -> Promotion {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-{name}"), "resourceVersion": version},
            "spec": {"stage": "dev", "freight": "f1"},
            "status": {"phase": "Succeeded", "finishedAt": finished,
                       "plan": {"steps": [{"uses": "argocd-update", "as": "update"}]},
                       "healthChecks": [{"uses": "argocd-update", "config": {"apps": []}}]},
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_ended_promotion_is_kept_in_full_without_its_plan() {
        let last = LastPromotions::default();
        last.observe(&ended("p2", "2026-11-20T10:05:00Z", "2"));
        last.observe(&ended("p1", "2026-11-20T10:00:00Z", "1"));

        let kept = last
            .lookup(&ended("p2", "2026-11-20T10:05:00Z", "2"))
            .unwrap();
        let status = kept.status.clone().unwrap_or_default();
        assert_eq!(status.health_checks.len(), 1);
        assert_eq!(status.plan, None);
        assert_eq!(last.lookup(&ended("p1", "2026-11-20T10:00:00Z", "1")), None);
        assert_eq!(last.len(), 1);
    }

    #[test]
    fn a_running_promotion_is_not_anyones_last() {
        let last = LastPromotions::default();
        let mut running = ended("p1", "2026-11-20T10:00:00Z", "1");
        running.status.as_mut().unwrap().phase = Some(crate::api::PromotionPhase::Running);
        last.observe(&running);
        assert_eq!(last.len(), 0);
    }

    #[test]
    fn a_changed_last_promotion_is_not_answered_from_its_older_version() {
        let last = LastPromotions::default();
        last.observe(&ended("p1", "2026-11-20T10:00:00Z", "1"));
        assert_eq!(last.lookup(&ended("p1", "2026-11-20T10:00:00Z", "7")), None);

        last.observe(&ended("p1", "2026-11-20T10:00:00Z", "7"));
        assert!(
            last.lookup(&ended("p1", "2026-11-20T10:00:00Z", "7"))
                .is_some()
        );
    }

    #[test]
    fn a_deleted_last_promotion_leaves_its_stage_to_read_the_one_before() {
        let last = LastPromotions::default();
        let newest = ended("p2", "2026-11-20T10:05:00Z", "2");
        last.observe(&ended("p1", "2026-11-20T10:00:00Z", "1"));
        last.observe(&newest);
        last.forget(&newest);
        assert_eq!(last.len(), 0);
        // The one before was never kept: the Stage reads it from the API server.
        assert_eq!(last.lookup(&ended("p1", "2026-11-20T10:00:00Z", "1")), None);
    }

    #[test]
    fn a_promotion_read_replaces_a_newer_one_whose_deletion_the_watch_missed() {
        let last = LastPromotions::default();
        last.observe(&ended("p2", "2026-11-20T10:05:00Z", "2"));
        let read = ended("p1", "2026-11-20T10:00:00Z", "1");
        last.remember_read(full_record(read.clone()));
        assert!(last.lookup(&read).is_some());
        assert_eq!(last.len(), 1);
    }

    #[test]
    fn forgetting_an_older_promotion_keeps_the_newest() {
        let last = LastPromotions::default();
        last.observe(&ended("p2", "2026-11-20T10:05:00Z", "2"));
        last.forget(&ended("p1", "2026-11-20T10:00:00Z", "1"));
        assert_eq!(last.len(), 1);
    }
}
