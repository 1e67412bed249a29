//! What a Stage's status should say, and which Freight it should promote
//! next, as pure functions of the Stage, its Promotions, the Freight and the
//! health of what it deployed.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::api::stage::{CONDITION_HEALTHY, CONDITION_PROMOTING, CONDITION_READY};
use crate::argocd::{AppHealthCheck, HealthCheckRecord};
use crate::availability::{Availability, availability};

/// The step whose health checks a Stage's health is judged from.
const ARGOCD_UPDATE: &str = "argocd-update";
use crate::api::{
    Freight, FreightCollection, FreightReference, Health, HealthState, Promotion, PromotionPhase,
    PromotionReference, Stage, StageStatus,
};

/// How many Freight collections a Stage remembers.
pub const FREIGHT_HISTORY_LIMIT: usize = 10;

fn finished(p: &Promotion) -> Option<Timestamp> {
    p.status.as_ref()?.finished_at.as_ref().map(|t| t.0)
}

fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

/// A Promotion as a Stage records it.
pub fn reference(p: &Promotion) -> PromotionReference {
    PromotionReference {
        name: p.name_any(),
        freight: p.status.as_ref().and_then(|s| s.freight.clone()),
        status: p.status.clone().map(Box::new),
        finished_at: p.status.as_ref().and_then(|s| s.finished_at.clone()),
    }
}

/// The Stage's Promotions: the one running (or next in line), and the one
/// that ended last.
pub fn current_and_last<'a>(
    promotions: &[&'a Promotion],
) -> (Option<&'a Promotion>, Option<&'a Promotion>) {
    let current = promotions
        .iter()
        .copied()
        .find(|p| p.phase() == PromotionPhase::Running);
    let last = promotions
        .iter()
        .copied()
        .filter(|p| p.is_terminal())
        .max_by_key(|p| (finished(p), p.name_any()));
    (current, last)
}

/// One Freight collection per succeeded Promotion, newest first, without
/// repeating the same Freight twice in a row, at most 10.
pub fn freight_history(promotions: &[&Promotion]) -> Vec<FreightCollection> {
    let mut succeeded: Vec<&Promotion> = promotions
        .iter()
        .copied()
        .filter(|p| p.phase() == PromotionPhase::Succeeded)
        .collect();
    succeeded.sort_by_key(|p| std::cmp::Reverse((finished(p), p.name_any())));
    let mut history: Vec<FreightCollection> = Vec::new();
    for p in succeeded {
        let status = p.status.as_ref();
        let collection = match (
            status.and_then(|s| s.freight_collection.clone()),
            status.and_then(|s| s.freight.clone()),
        ) {
            (Some(collection), _) if !collection.items.is_empty() => collection,
            (_, Some(freight)) => collection_of(freight),
            _ => continue,
        };
        if history.last().is_some_and(|c| c.id == collection.id) {
            continue;
        }
        history.push(collection);
        if history.len() == FREIGHT_HISTORY_LIMIT {
            break;
        }
    }
    history
}

/// The Freight a Promotion works with (Kargo's freight collection): the
/// Stage's current Freight of each origin it still requests, with the
/// promoted Freight in place of its own origin's.
pub fn promotion_collection(stage: &Stage, target: FreightReference) -> FreightCollection {
    let requested: Vec<String> = stage
        .spec
        .requested_freight
        .iter()
        .map(|r| r.origin.key())
        .collect();
    let mut items: BTreeMap<String, FreightReference> = stage
        .status
        .as_ref()
        .and_then(|s| s.freight_history.first())
        .map(|current| current.items.clone())
        .unwrap_or_default();
    items.retain(|origin, _| requested.contains(origin));
    items.insert(target.origin.key(), target);
    FreightCollection {
        id: collection_id(&items),
        items,
        verification_history: Vec::new(),
    }
}

/// A collection's id: the names of its Freight, sorted, joined by `,`.
fn collection_id(items: &BTreeMap<String, FreightReference>) -> String {
    let mut names: Vec<&str> = items.values().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    names.join(",")
}

fn collection_of(freight: FreightReference) -> FreightCollection {
    let key = freight.origin.key();
    FreightCollection {
        id: freight.name.clone(),
        items: BTreeMap::from([(key, freight)]),
        verification_history: Vec::new(),
    }
}

/// A condition, keeping `lastTransitionTime` when its status did not change
/// so that an unchanged Stage never rewrites its status.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let old = previous.iter().find(|c| c.type_ == type_);
    let since = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The Stage's overall health from the health of each Application checked.
pub fn merge_health(results: &[(String, HealthState, Option<String>)]) -> Health {
    if results.is_empty() {
        return Health {
            status: Some(HealthState::NotApplicable),
            ..Health::default()
        };
    }
    let status = results
        .iter()
        .fold(HealthState::Healthy, |acc, (_, s, _)| acc.merge(*s));
    let issues = results
        .iter()
        .filter_map(|(what, _, issue)| issue.as_ref().map(|i| format!("{what}: {i}")))
        .collect();
    Health {
        status: Some(status),
        issues,
        ..Health::default()
    }
}

/// The Freight this Stage should get Promotions for: Freight of an origin it
/// requests, available to it now (directly, approved, or verified and
/// soaked in an upstream Stage), newer than what it has, and not promoted to
/// it before. Oldest first, so Promotions queue in the order the Freight
/// appeared. Also the instant the next such Freight finishes soaking, if
/// one is soaking: the Stage must look again then.
pub fn auto_promotion_candidates<'a>(
    stage: &Stage,
    current: Option<&FreightReference>,
    freight: &[&'a Freight],
    promoted: &[String],
    now: Timestamp,
) -> (Vec<&'a Freight>, Option<Timestamp>) {
    if !stage.spec.auto_promotion {
        return (Vec::new(), None);
    }
    let newest_known = current
        .and_then(|c| freight.iter().find(|f| f.name_any() == c.name))
        .map(|f| (created(&f.metadata), f.name_any()));
    let mut out: Vec<&Freight> = Vec::new();
    let mut next: Option<Timestamp> = None;
    for f in freight.iter().copied() {
        let fresh = !promoted.contains(&f.name_any())
            && newest_known
                .as_ref()
                .is_none_or(|known| (created(&f.metadata), f.name_any()) > *known);
        if !fresh {
            continue;
        }
        match availability(stage, f, now) {
            Availability::Now => out.push(f),
            Availability::At(at) => next = Some(next.map_or(at, |n| n.min(at))),
            Availability::No => {}
        }
    }
    out.sort_by_key(|f| (created(&f.metadata), f.name_any()));
    (out, next)
}

/// A Stage without promotion steps: Kargo's control-flow Stage, which
/// promotes nothing and passes on every Freight available to it as
/// verified, so several downstream Stages can fan out from one gate.
pub fn is_control_flow(stage: &Stage) -> bool {
    stage
        .spec
        .promotion_template
        .as_ref()
        .is_none_or(|t| t.spec.steps.is_empty())
}

/// The Freight a control-flow Stage marks verified now: available to it and
/// not verified in it yet. Also the instant the next soaking one becomes
/// available.
pub fn passed_through<'a>(
    stage: &Stage,
    freight: &[&'a Freight],
    now: Timestamp,
) -> (Vec<&'a Freight>, Option<Timestamp>) {
    let name = stage.name_any();
    let mut ready = Vec::new();
    let mut next: Option<Timestamp> = None;
    for f in freight.iter().copied() {
        let verified = f
            .status
            .as_ref()
            .is_some_and(|s| s.verified_in.contains_key(&name));
        if verified {
            continue;
        }
        match availability(stage, f, now) {
            Availability::Now => ready.push(f),
            Availability::At(at) => next = Some(next.map_or(at, |n| n.min(at))),
            Availability::No => {}
        }
    }
    (ready, next)
}

/// The deterministic name of the automatic Promotion of `freight` to
/// `stage`, so racing reconciles can never create two.
pub fn auto_promotion_name(stage: &str, freight: &str) -> String {
    let name = format!("{stage}.{freight}");
    if name.len() <= 253 {
        return name;
    }
    // Keep it a valid name: cut and add a short, stable digest of the whole.
    let digest = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{}-{digest:016x}", &name[..236])
}

/// What the Stage reconciler found: what runs and ran on the Stage, and its health.
#[derive(Default)]
pub struct Observed<'a> {
    pub current: Option<&'a Promotion>,
    pub last: Option<&'a Promotion>,
    pub history: Vec<FreightCollection>,
    pub health: Option<Health>,
}

/// The Stage's whole status from what was observed; conditions keep their
/// transition time while their status holds, and a `barge.dev/refresh`
/// value is recorded as handled.
///
/// One piece: most of its length is the three conditions written out.
pub fn stage_status(stage: &Stage, observed: Observed<'_>, now: Timestamp) -> StageStatus {
    let Observed {
        current,
        last,
        history,
        health,
    } = observed;
    let previous = stage.status.clone().unwrap_or_default();
    let previous = &previous;
    let refresh = crate::api::refresh_requested(&stage.metadata);
    let generation = stage.metadata.generation;
    let health_state = health.as_ref().and_then(|h| h.status);
    let current_freight = history
        .first()
        .and_then(|c| c.items.values().next().cloned());
    let promoting = current.map(|p| p.name_any());
    let healthy_text = match health_state {
        Some(HealthState::Healthy) | Some(HealthState::NotApplicable) => "True",
        Some(HealthState::Unhealthy) | Some(HealthState::Progressing) => "False",
        _ => "Unknown",
    };
    let issues = health
        .as_ref()
        .map(|h| h.issues.join("; "))
        .unwrap_or_default();
    let running = promoting
        .as_ref()
        .map(|p| format!("Promotion {p} is running"));
    let conditions = vec![
        condition(
            &previous.conditions,
            CONDITION_PROMOTING,
            if promoting.is_some() { "True" } else { "False" },
            if promoting.is_some() {
                "ActivePromotion"
            } else {
                "NoActivePromotion"
            },
            running.clone().unwrap_or_default(),
            generation,
            now,
        ),
        condition(
            &previous.conditions,
            CONDITION_HEALTHY,
            healthy_text,
            &health_state
                .map(|s| s.to_string())
                .unwrap_or_else(|| "NoFreight".into()),
            issues.clone(),
            generation,
            now,
        ),
        condition(
            &previous.conditions,
            CONDITION_READY,
            if promoting.is_none() && healthy_text == "True" {
                "True"
            } else {
                "False"
            },
            match (&promoting, healthy_text) {
                (Some(_), _) => "Promoting",
                (None, "True") => "Ready",
                (None, _) if current_freight.is_none() => "NoFreight",
                _ => "NotHealthy",
            },
            match (running, healthy_text) {
                (Some(running), _) => running,
                (None, "True") => String::new(),
                _ => issues,
            },
            generation,
            now,
        ),
    ];
    StageStatus {
        conditions,
        last_handled_refresh: refresh
            .map(String::from)
            .unwrap_or_else(|| previous.last_handled_refresh.clone()),
        observed_generation: generation,
        freight_summary: current_freight
            .as_ref()
            .map(|f| f.name.clone())
            .unwrap_or_default(),
        freight_history: history,
        health,
        current_promotion: current.map(reference),
        last_promotion: last.map(reference),
        // Steps own the metadata; the Stage's own status never carries it.
        metadata: Default::default(),
    }
}

/// What a Stage's health is judged from.
#[derive(Debug, PartialEq)]
pub enum HealthBasis {
    /// No Promotion ever ended on the Stage.
    Nothing,
    /// A verdict that needs no Application: a Promotion runs, or the last
    /// one did not succeed.
    Fixed(Health),
    /// The Applications the last Promotion's `argocd-update` steps synced;
    /// `unreadable` holds (what, why) for checks that could not be read;
    /// `config` is the checks as recorded, for `status.health.config`.
    Apps {
        apps: Vec<AppHealthCheck>,
        unreadable: Vec<(String, String)>,
        config: serde_json::Value,
    },
}

pub fn health_basis(current: Option<&Promotion>, last: Option<&Promotion>) -> HealthBasis {
    let unknown = |issue: String| {
        HealthBasis::Fixed(Health {
            status: Some(HealthState::Unknown),
            issues: vec![issue],
            ..Health::default()
        })
    };
    if let Some(p) = current {
        return unknown(format!("Promotion {} is running", p.name_any()));
    }
    let Some(last) = last else {
        return HealthBasis::Nothing;
    };
    if last.phase() != PromotionPhase::Succeeded {
        return unknown(format!(
            "last Promotion {} ended {}",
            last.name_any(),
            last.phase()
        ));
    }
    let checks = last
        .status
        .as_ref()
        .map(|s| s.health_checks.as_slice())
        .unwrap_or_default();
    let (mut apps, mut unreadable) = (Vec::new(), Vec::new());
    for check in checks.iter().filter(|c| c.uses == ARGOCD_UPDATE) {
        let record = check
            .config
            .clone()
            .map(serde_json::from_value::<HealthCheckRecord>)
            .transpose();
        match record {
            Ok(record) => apps.extend(record.unwrap_or_default().apps),
            Err(e) => unreadable.push((
                format!("health check of {}", last.name_any()),
                format!("unreadable: {e}"),
            )),
        }
    }
    let config = serde_json::json!(
        checks
            .iter()
            .map(|c| serde_json::json!({"uses": c.uses, "config": c.config}))
            .collect::<Vec<_>>()
    );
    HealthBasis::Apps {
        apps,
        unreadable,
        config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn promotion(name: &str, phase: &str, freight: &str, finished: i64) -> Promotion {
        let mut p: Promotion = serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"stage": "dev", "freight": freight},
            "status": {"phase": phase, "freight": {"name": freight, "origin": {"kind": "Warehouse", "name": "w"}}},
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"));
        if let Some(s) = p.status.as_mut() {
            s.finished_at = Timestamp::from_second(1_800_000_000 + finished)
                .ok()
                .map(Time);
        }
        p
    }

    fn freight(name: &str, created: i64, verified_in: &[&str]) -> Freight {
        let verified: serde_json::Map<String, serde_json::Value> = verified_in
            .iter()
            .map(|s| (s.to_string(), json!({})))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": name, "namespace": "demo",
                         "creationTimestamp": Timestamp::from_second(1_800_000_000 + created).map(|t| t.to_string()).unwrap_or_default()},
            "origin": {"kind": "Warehouse", "name": "w"},
            "commits": [{"repoURL": "https://git.example/x", "id": name}],
            "status": {"verifiedIn": verified},
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_001_000).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn stage(direct: bool, upstream: &[&str]) -> Stage {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
            "metadata": {"name": "dev", "namespace": "demo"},
            "spec": {"autoPromotion": true, "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "w"},
                     "sources": {"direct": direct, "stages": upstream}}]},
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    #[test]
    fn history_is_newest_first_without_repeats_and_bounded() {
        let mut ps: Vec<Promotion> = (0..15)
            .map(|i| promotion(&format!("p{i}"), "Succeeded", &format!("f{i}"), i))
            .collect();
        ps.push(promotion("again", "Succeeded", "f14", 100));
        ps.push(promotion("failed", "Errored", "f99", 200));
        let refs: Vec<&Promotion> = ps.iter().collect();
        let history = freight_history(&refs);
        assert_eq!(history.len(), FREIGHT_HISTORY_LIMIT);
        assert_eq!(history[0].id, "f14");
        assert_eq!(history[1].id, "f13");
    }

    #[test]
    fn the_running_promotion_is_current_and_the_latest_finished_is_last() {
        let ps = [
            promotion("a", "Succeeded", "f1", 1),
            promotion("b", "Errored", "f2", 5),
            promotion("c", "Running", "f3", 0),
        ];
        let refs: Vec<&Promotion> = ps.iter().collect();
        let (current, last) = current_and_last(&refs);
        assert_eq!(current.map(|p| p.name_any()).as_deref(), Some("c"));
        assert_eq!(last.map(|p| p.name_any()).as_deref(), Some("b"));
    }

    #[test]
    fn direct_stages_promote_every_newer_freight_oldest_first() {
        let fs = [
            freight("f1", 1, &[]),
            freight("f3", 3, &[]),
            freight("f2", 2, &[]),
        ];
        let refs: Vec<&Freight> = fs.iter().collect();
        let current = FreightReference {
            name: "f1".into(),
            ..FreightReference::default()
        };
        let picked: Vec<String> =
            auto_promotion_candidates(&stage(true, &[]), Some(&current), &refs, &[], now())
                .0
                .iter()
                .map(|f| f.name_any())
                .collect();
        assert_eq!(picked, vec!["f2", "f3"]);
    }

    #[test]
    fn downstream_stages_promote_only_freight_verified_upstream_and_not_yet_promoted() {
        let fs = [
            freight("f1", 1, &["dev"]),
            freight("f2", 2, &[]),
            freight("f3", 3, &["dev"]),
        ];
        let refs: Vec<&Freight> = fs.iter().collect();
        let picked: Vec<String> = auto_promotion_candidates(
            &stage(false, &["dev"]),
            None,
            &refs,
            &["f1".to_string()],
            now(),
        )
        .0
        .iter()
        .map(|f| f.name_any())
        .collect();
        assert_eq!(picked, vec!["f3"]);
    }

    #[test]
    fn lasting_conditions_keep_their_transition_time() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let t1 = Timestamp::from_second(1_800_000_100).unwrap_or(Timestamp::UNIX_EPOCH);
        let first = condition(
            &[],
            "Healthy",
            "True",
            "Healthy",
            String::new(),
            Some(1),
            t0,
        );
        let same = condition(
            std::slice::from_ref(&first),
            "Healthy",
            "True",
            "Healthy",
            String::new(),
            Some(1),
            t1,
        );
        assert_eq!(same.last_transition_time, Time(t0));
        let flipped = condition(
            &[first],
            "Healthy",
            "False",
            "Unhealthy",
            String::new(),
            Some(1),
            t1,
        );
        assert_eq!(flipped.last_transition_time, Time(t1));
    }

    #[test]
    fn long_names_stay_valid_and_stable() {
        let long = "x".repeat(300);
        let a = auto_promotion_name("dev", &long);
        assert!(a.len() <= 253);
        assert_eq!(a, auto_promotion_name("dev", &long));
        assert_eq!(auto_promotion_name("dev", "f1"), "dev.f1");
    }

    fn condition_of<'a>(status: &'a StageStatus, kind: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("no {kind} condition"))
    }

    fn healthy() -> Health {
        Health {
            status: Some(HealthState::Healthy),
            ..Health::default()
        }
    }

    /// The Stage as the reconciler sees it: generation 1, the given status.
    fn observed_stage(status: Option<StageStatus>, refresh: Option<&str>) -> Stage {
        let mut s = stage(true, &[]);
        s.metadata.generation = Some(1);
        if let Some(value) = refresh {
            s.metadata.annotations =
                Some([("barge.dev/refresh".to_string(), value.to_string())].into());
        }
        s.status = status;
        s
    }

    fn succeeded_on_f1<'a>(last: &'a Promotion) -> Observed<'a> {
        Observed {
            current: None,
            last: Some(last),
            history: freight_history(&[last]),
            health: Some(healthy()),
        }
    }

    #[test]
    fn a_stage_healthy_with_its_last_freight_and_nothing_running_is_ready() {
        let last = promotion("p1", "Succeeded", "f1", 10);
        let status = stage_status(
            &observed_stage(None, None),
            succeeded_on_f1(&last),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(status.freight_summary, "f1");
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(condition_of(&status, CONDITION_READY).status, "True");
        assert_eq!(condition_of(&status, CONDITION_HEALTHY).status, "True");
        assert_eq!(condition_of(&status, CONDITION_PROMOTING).status, "False");
        assert_eq!(status.last_promotion.map(|p| p.name), Some("p1".into()));
    }

    #[test]
    fn a_running_promotion_makes_the_stage_promoting_and_not_ready() {
        let last = promotion("p1", "Succeeded", "f1", 10);
        let mut running = promotion("p2", "Running", "f2", 0);
        if let Some(s) = running.status.as_mut() {
            s.finished_at = None;
        }
        let observed = Observed {
            current: Some(&running),
            ..succeeded_on_f1(&last)
        };
        let status = stage_status(&observed_stage(None, None), observed, Timestamp::UNIX_EPOCH);
        let ready = condition_of(&status, CONDITION_READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Promoting")
        );
        assert_eq!(ready.message, "Promotion p2 is running");
        assert_eq!(condition_of(&status, CONDITION_PROMOTING).status, "True");
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let last = promotion("p1", "Succeeded", "f1", 10);
        let at = |s| Timestamp::from_second(s).unwrap_or_else(|e| panic!("{e}"));
        let first = stage_status(&observed_stage(None, None), succeeded_on_f1(&last), at(100));
        let again = stage_status(
            &observed_stage(Some(first.clone()), None),
            succeeded_on_f1(&last),
            at(200),
        );
        assert_eq!(
            condition_of(&again, CONDITION_READY).last_transition_time,
            condition_of(&first, CONDITION_READY).last_transition_time
        );
        assert_eq!(first, again, "nothing changed, so nothing is written");
    }

    #[test]
    fn a_refresh_request_is_recorded_as_handled_and_kept_once_removed() {
        let handled = stage_status(
            &observed_stage(None, Some("now")),
            Observed::default(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(handled.last_handled_refresh, "now");
        let later = stage_status(
            &observed_stage(Some(handled), None),
            Observed::default(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(later.last_handled_refresh, "now");
    }

    #[test]
    fn a_stage_without_freight_is_not_ready_for_lack_of_it() {
        let status = stage_status(
            &observed_stage(None, None),
            Observed::default(),
            Timestamp::UNIX_EPOCH,
        );
        let ready = condition_of(&status, CONDITION_READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "NoFreight")
        );
    }

    #[test]
    fn a_running_promotion_makes_health_unknown_without_reading_applications() {
        let mut running = promotion("p2", "Running", "f2", 0);
        if let Some(s) = running.status.as_mut() {
            s.finished_at = None;
        }
        let HealthBasis::Fixed(health) = health_basis(Some(&running), None) else {
            panic!("expected a fixed verdict");
        };
        assert_eq!(health.status, Some(HealthState::Unknown));
        assert_eq!(health.issues, vec!["Promotion p2 is running".to_string()]);
    }

    #[test]
    fn health_is_judged_from_the_apps_the_last_successful_promotion_synced() {
        let mut last = promotion("p1", "Succeeded", "f1", 10);
        if let Some(s) = last.status.as_mut() {
            s.health_checks = serde_json::from_value(json!([
                {"uses": "argocd-update", "config": {"apps": [{"name": "demo-dev", "namespace": "argocd", "desiredRevisions": ["abc"]}]}},
                {"uses": "argocd-update", "config": {"apps": "not a list"}},
                {"uses": "something-else", "config": {}},
            ]))
            .unwrap_or_else(|e| panic!("bad fixture: {e}"));
        }
        let HealthBasis::Apps {
            apps, unreadable, ..
        } = health_basis(None, Some(&last))
        else {
            panic!("expected Applications to judge");
        };
        assert_eq!(
            apps,
            vec![AppHealthCheck {
                name: "demo-dev".into(),
                namespace: "argocd".into(),
                desired_revisions: vec!["abc".into()],
            }]
        );
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    }

    #[test]
    fn a_failed_last_promotion_and_no_promotion_at_all_are_told_apart() {
        let failed = promotion("p1", "Failed", "f1", 10);
        assert!(matches!(
            health_basis(None, Some(&failed)),
            HealthBasis::Fixed(_)
        ));
        assert_eq!(health_basis(None, None), HealthBasis::Nothing);
    }
}
