//! What a Stage's status should say, and which Freight it should promote
//! next, as pure functions of the Stage, its Promotions, the Freight and the
//! health of what it deployed.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::api::stage::{
    CONDITION_AUTO_PROMOTION, CONDITION_HEALTHY, CONDITION_PROMOTING, CONDITION_READY,
};
use crate::argocd::{AppHealthCheck, HealthCheckRecord};
use crate::availability::{Availability, availability};

/// The step whose health checks a Stage's health is judged from.
const ARGOCD_UPDATE: &str = "argocd-update";
use crate::api::stage::SelectionPolicy;
use crate::api::{
    Freight, FreightCollection, FreightItems, FreightReference, Health, HealthState, ProjectConfig,
    Promotion, PromotionPhase, PromotionReference, Stage, StageStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

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
        .max_by_key(|p| ended_order(p));
    (current, last)
}

/// How ended Promotions are ordered: the last to finish is a Stage's last
/// Promotion (by name among those finished at the same time).
pub fn ended_order(p: &Promotion) -> (Option<Timestamp>, String) {
    (finished(p), p.name_any())
}

/// One Freight collection per succeeded Promotion, newest first, without
/// repeating the same Freight twice in a row, at most 10.
pub fn freight_history(promotions: &[&Promotion]) -> Vec<FreightCollection> {
    let mut succeeded: Vec<&Promotion> = promotions
        .iter()
        .copied()
        .filter(|p| p.phase() == PromotionPhase::Succeeded)
        .collect();
    succeeded.sort_by_key(|p| std::cmp::Reverse(ended_order(p)));
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
    let mut items: FreightItems = stage
        .status
        .as_ref()
        .and_then(|s| s.freight_history.first())
        .map(|current| current.items.clone())
        .unwrap_or_default();
    items.retain(|origin, _| requested.iter().any(|r| r == origin));
    items.insert(target.origin.key(), target);
    FreightCollection {
        id: collection_id(&items),
        items,
        verification_history: Vec::new(),
    }
}

/// A collection's id: the names of its Freight, sorted, joined by `,`.
fn collection_id(items: &FreightItems) -> String {
    let mut names: Vec<&str> = items.values().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    names.join(",")
}

/// Whether a Promotion's Freight collection says no more than its Freight:
/// the Stage's history reads the same from the Freight alone.
pub fn collection_is_its_freight(status: &crate::api::PromotionStatus) -> bool {
    match (&status.freight_collection, &status.freight) {
        (Some(collection), Some(freight)) => *collection == collection_of(freight.clone()),
        _ => false,
    }
}

fn collection_of(freight: FreightReference) -> FreightCollection {
    let key = freight.origin.key();
    FreightCollection {
        id: freight.name.clone(),
        items: FreightItems::from([(key, freight)]),
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

/// Whether a Stage auto-promotes, and why (for its `AutoPromotion`
/// condition and its Events).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoPromotionPolicy {
    pub enabled: bool,
    /// `ProjectConfigPolicy`, `StageSpec`, `NoPolicy` or `InvalidPolicy`.
    pub reason: &'static str,
    pub message: String,
}

/// Kargo's rule: the first of the ProjectConfig's `promotionPolicies` that
/// matches the Stage (by name, exact, `regex:` or `glob:`, and by labels)
/// decides. Barge adds one rule after it: a Stage no policy matches
/// auto-promotes when its own `spec.autoPromotion` is true.
pub fn auto_promotion_policy(stage: &Stage, config: Option<&ProjectConfig>) -> AutoPromotionPolicy {
    let name = stage.name_any();
    let config_name = config.map(|c| c.name_any()).unwrap_or_default();
    for (i, policy) in config
        .map(|c| c.spec.promotion_policies.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("ProjectConfig {config_name} promotionPolicies[{i}]");
        let name_pattern = policy
            .stage_selector
            .as_ref()
            .and_then(|s| s.name.clone())
            .or_else(|| policy.stage.clone());
        let name_matches = match name_pattern.as_deref().filter(|p| !p.is_empty()) {
            None => true,
            Some(pattern) => match NamePattern::parse(pattern) {
                Ok(matcher) => matcher.matches(&name),
                Err(why) => {
                    return AutoPromotionPolicy {
                        enabled: false,
                        reason: "InvalidPolicy",
                        message: format!("{field}: stage name pattern {pattern:?}: {why}"),
                    };
                }
            },
        };
        let labels_match = match policy.stage_selector.as_ref() {
            Some(selector)
                if selector.match_labels.is_some() || selector.match_expressions.is_some() =>
            {
                let selector = LabelSelector {
                    match_labels: selector.match_labels.clone(),
                    match_expressions: selector.match_expressions.clone(),
                };
                match kube::core::Selector::try_from(selector) {
                    Ok(selector) => {
                        use kube::core::SelectorExt;
                        selector.matches(stage.labels())
                    }
                    Err(e) => {
                        return AutoPromotionPolicy {
                            enabled: false,
                            reason: "InvalidPolicy",
                            message: format!("{field}: stageSelector: {e}"),
                        };
                    }
                }
            }
            _ => true,
        };
        if name_matches && labels_match {
            let verdict = if policy.auto_promotion_enabled {
                "enables"
            } else {
                "disables"
            };
            return AutoPromotionPolicy {
                enabled: policy.auto_promotion_enabled,
                reason: "ProjectConfigPolicy",
                message: format!("{field} matches the Stage and {verdict} auto-promotion"),
            };
        }
    }
    if stage.spec.auto_promotion {
        return AutoPromotionPolicy {
            enabled: true,
            reason: "StageSpec",
            message: "no ProjectConfig promotion policy matches the Stage; its spec.autoPromotion enables auto-promotion".into(),
        };
    }
    AutoPromotionPolicy {
        enabled: false,
        reason: "NoPolicy",
        message: match config {
            Some(_) => {
                format!("no promotion policy of ProjectConfig {config_name} matches the Stage")
            }
            None => {
                "the namespace has no ProjectConfig enabling auto-promotion for the Stage".into()
            }
        },
    }
}

/// Kargo's name patterns: `glob:`, `regex:` / `regexp:` (unanchored, as
/// Go's `MatchString`), or an exact name.
enum NamePattern {
    Exact(String),
    Regex(regex::Regex),
    Glob(globset::GlobMatcher),
}

impl NamePattern {
    fn parse(pattern: &str) -> Result<Self, String> {
        if let Some(glob) = pattern.strip_prefix("glob:") {
            let glob = globset::Glob::new(glob).map_err(|e| e.to_string())?;
            return Ok(Self::Glob(glob.compile_matcher()));
        }
        if let Some(re) = pattern
            .strip_prefix("regex:")
            .or_else(|| pattern.strip_prefix("regexp:"))
        {
            return regex::Regex::new(re)
                .map(Self::Regex)
                .map_err(|e| e.to_string());
        }
        Ok(Self::Exact(pattern.to_string()))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Regex(re) => re.is_match(name),
            Self::Glob(glob) => glob.is_match(name),
        }
    }
}

/// The Freight this Stage should get Promotions for, as Kargo picks it:
/// per requested origin, the newest Freight available to the Stage
/// (`NewestFreight`, by discovery time, then name), or the one its single
/// upstream Stage uses now (`MatchUpstream`); each unless the Stage holds
/// it already or a Promotion of it to the Stage exists. Also the instant
/// the next Freight still soaking upstream becomes available: the Stage
/// must look again then.
pub fn auto_promotion_candidates<'a>(
    stage: &Stage,
    current: &[String],
    freight: &[&'a Freight],
    promoted: &[String],
    now: Timestamp,
) -> (Vec<&'a Freight>, Option<Timestamp>) {
    let mut out: Vec<&Freight> = Vec::new();
    let mut next: Option<Timestamp> = None;
    for request in &stage.spec.requested_freight {
        let mut available: Vec<&Freight> = Vec::new();
        for f in freight.iter().copied() {
            if f.spec.origin.kind != request.origin.kind
                || f.spec.origin.name != request.origin.name
            {
                continue;
            }
            match availability(stage, f, now) {
                Availability::Now => available.push(f),
                Availability::At(at) => next = Some(next.map_or(at, |n| n.min(at))),
                Availability::No => {}
            }
        }
        let match_upstream = request
            .sources
            .auto_promotion_options
            .as_ref()
            .and_then(|o| o.selection_policy)
            == Some(SelectionPolicy::MatchUpstream);
        let pick = if match_upstream {
            let upstream = request.sources.stages.first();
            let used: Vec<&Freight> = available
                .into_iter()
                .filter(|f| {
                    upstream.is_some_and(|up| {
                        f.status
                            .as_ref()
                            .is_some_and(|s| s.currently_in.contains_key(up))
                    })
                })
                .collect();
            // Two at once: the upstream Stage is between Freight (its
            // Promotion ended, the old one is not released yet); the next
            // look sees one.
            if used.len() == 1 {
                used.first().copied()
            } else {
                None
            }
        } else {
            available
                .into_iter()
                .max_by_key(|f| (discovered(f), f.name_any()))
        };
        if let Some(f) = pick {
            let name = f.name_any();
            if !current.contains(&name)
                && !promoted.contains(&name)
                && !out.iter().any(|o| o.name_any() == name)
            {
                out.push(f);
            }
        }
    }
    (out, next)
}

/// When Freight was discovered: `discoveredAt`, else its creation.
fn discovered(f: &Freight) -> Option<Timestamp> {
    f.spec
        .discovered_at
        .as_ref()
        .map(|t| t.0)
        .or_else(|| created(&f.metadata))
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
    pub auto_promotion: AutoPromotionPolicy,
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
        auto_promotion,
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
        condition(
            &previous.conditions,
            CONDITION_AUTO_PROMOTION,
            if auto_promotion.enabled {
                "True"
            } else {
                "False"
            },
            auto_promotion.reason,
            auto_promotion.message,
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
        // Its name and Freight only (Kargo's): a copy of a running
        // Promotion's status would change with each of its status writes,
        // and the Stage's write would follow each one.
        current_promotion: current.map(|p| PromotionReference {
            status: None,
            ..reference(p)
        }),
        last_promotion: last.map(reference),
        // Steps own the metadata; the Stage's own status never carries it.
        metadata: Default::default(),
        auto_promotion_enabled: auto_promotion.enabled,
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

    fn picked(stage: &Stage, current: &[&str], fs: &[Freight], promoted: &[&str]) -> Vec<String> {
        let refs: Vec<&Freight> = fs.iter().collect();
        let current: Vec<String> = current.iter().map(|c| c.to_string()).collect();
        let promoted: Vec<String> = promoted.iter().map(|c| c.to_string()).collect();
        auto_promotion_candidates(stage, &current, &refs, &promoted, now())
            .0
            .iter()
            .map(|f| f.name_any())
            .collect()
    }

    fn currently_in(mut f: Freight, stage: &str) -> Freight {
        let mut status = f.status.take().unwrap_or_default();
        status.currently_in.insert(stage.into(), Default::default());
        f.status = Some(status);
        f
    }

    fn match_upstream(mut stage: Stage) -> Stage {
        stage.spec.requested_freight[0]
            .sources
            .auto_promotion_options = Some(crate::api::stage::AutoPromotionOptions {
            selection_policy: Some(SelectionPolicy::MatchUpstream),
        });
        stage
    }

    #[test]
    fn newest_freight_promotes_only_the_newest_available_not_every_newer_one() {
        let fs = [
            freight("f1", 1, &[]),
            freight("f3", 3, &[]),
            freight("f2", 2, &[]),
        ];
        assert_eq!(picked(&stage(true, &[]), &["f1"], &fs, &[]), vec!["f3"]);
    }

    #[test]
    fn newest_freight_promotes_nothing_when_the_newest_is_current_or_was_promoted() {
        let fs = [freight("f1", 1, &[]), freight("f2", 2, &[])];
        assert!(picked(&stage(true, &[]), &["f2"], &fs, &[]).is_empty());
        assert!(picked(&stage(true, &[]), &["f1"], &fs, &["f2"]).is_empty());
    }

    #[test]
    fn downstream_stages_take_the_newest_freight_verified_upstream() {
        let fs = [
            freight("f1", 1, &["dev"]),
            freight("f2", 2, &[]),
            freight("f3", 3, &["dev"]),
        ];
        assert_eq!(
            picked(&stage(false, &["dev"]), &[], &fs, &["f1"]),
            vec!["f3"]
        );
    }

    #[test]
    fn match_upstream_takes_what_the_upstream_stage_uses_even_if_older() {
        let fs = [
            currently_in(freight("f1", 1, &["dev"]), "dev"),
            freight("f3", 3, &["dev"]),
        ];
        let stage = match_upstream(stage(false, &["dev"]));
        assert_eq!(picked(&stage, &["f3"], &fs, &["f3"]), vec!["f1"]);
        // NewestFreight would keep f3.
        assert!(picked(&self::stage(false, &["dev"]), &["f3"], &fs, &["f3"]).is_empty());
    }

    #[test]
    fn match_upstream_waits_while_the_upstream_stage_is_between_two_freight() {
        let fs = [
            currently_in(freight("f1", 1, &["dev"]), "dev"),
            currently_in(freight("f2", 2, &["dev"]), "dev"),
        ];
        let stage = match_upstream(stage(false, &["dev"]));
        assert!(picked(&stage, &[], &fs, &[]).is_empty());
    }

    fn config(policies: serde_json::Value) -> ProjectConfig {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "ProjectConfig",
            "metadata": {"name": "demo", "namespace": "demo"},
            "spec": {"promotionPolicies": policies},
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    fn labelled(name: &str, labels: serde_json::Value, auto: bool) -> Stage {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
            "metadata": {"name": name, "namespace": "demo", "labels": labels},
            "spec": {"autoPromotion": auto, "requestedFreight": []},
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    #[test]
    fn the_first_matching_policy_decides_by_name_pattern_or_labels() {
        let c = config(json!([
            {"stageSelector": {"matchLabels": {"tier": "prod"}}, "autoPromotionEnabled": false},
            {"stageSelector": {"name": "glob:prod-*"}, "autoPromotionEnabled": true},
            {"stage": "dev", "autoPromotionEnabled": true},
            {"stageSelector": {"name": "regex:^qa-[0-9]+$"}, "autoPromotionEnabled": true},
        ]));
        let decide = |stage: &Stage| auto_promotion_policy(stage, Some(&c));
        let eu = decide(&labelled("prod-eu", json!({"tier": "prod"}), false));
        assert!(!eu.enabled);
        assert_eq!(eu.reason, "ProjectConfigPolicy");
        assert!(
            eu.message.contains("promotionPolicies[0]"),
            "{}",
            eu.message
        );
        let us = decide(&labelled("prod-us", json!({}), false));
        assert!(
            us.enabled && us.message.contains("promotionPolicies[1]"),
            "{}",
            us.message
        );
        assert!(decide(&labelled("dev", json!({}), false)).enabled);
        assert!(decide(&labelled("qa-12", json!({}), false)).enabled);
        assert!(!decide(&labelled("qa-x", json!({}), false)).enabled);
    }

    #[test]
    fn a_matching_policy_wins_over_the_stages_own_field_and_no_match_falls_back_to_it() {
        let c = config(json!([{"stage": "prod", "autoPromotionEnabled": false}]));
        let prod = auto_promotion_policy(&labelled("prod", json!({}), true), Some(&c));
        assert!(!prod.enabled);
        let dev = auto_promotion_policy(&labelled("dev", json!({}), true), Some(&c));
        assert!(dev.enabled);
        assert_eq!(dev.reason, "StageSpec");
        let off = auto_promotion_policy(&labelled("dev", json!({}), false), None);
        assert!(!off.enabled);
        assert_eq!(off.reason, "NoPolicy");
    }

    #[test]
    fn a_policy_with_a_broken_pattern_disables_and_names_it() {
        let c =
            config(json!([{"stageSelector": {"name": "regex:(["}, "autoPromotionEnabled": true}]));
        let decision = auto_promotion_policy(&labelled("dev", json!({}), true), Some(&c));
        assert!(!decision.enabled);
        assert_eq!(decision.reason, "InvalidPolicy");
        assert!(
            decision
                .message
                .contains("promotionPolicies[0]: stage name pattern"),
            "{}",
            decision.message
        );
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
            auto_promotion: AutoPromotionPolicy {
                enabled: false,
                reason: "NoPolicy",
                message: String::new(),
            },
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
