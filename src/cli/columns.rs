//! The rows `barge get` prints for each kind: pure functions of the objects
//! (and of the other kinds they need), so they are tested without a cluster.

use jiff::Timestamp;
use kube::ResourceExt;

use super::table::{age, cell, list_cell, short};
use crate::api::{Freight, Promotion, Stage, Warehouse};

/// Headers and rows of one table.
pub type Table = (Vec<&'static str>, Vec<Vec<String>>);

fn created<K: kube::Resource>(object: &K) -> Option<Timestamp> {
    object.meta().creation_timestamp.as_ref().map(|t| t.0)
}

fn condition_status(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> String {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map_or_else(|| "<unknown>".to_string(), |c| c.status.clone())
}

/// The Promotion of the Stage's status named `name`, among `promotions`.
fn promotion_named<'a>(
    promotions: &'a [Promotion],
    namespace: &str,
    name: &str,
) -> Option<&'a Promotion> {
    promotions
        .iter()
        .find(|p| p.name_any() == name && p.namespace().as_deref() == Some(namespace))
}

/// The Stage's running Promotion, else its last one: name and phase.
pub fn stage_promotion(stage: &Stage, promotions: &[Promotion]) -> Option<(String, String)> {
    let status = stage.status.as_ref()?;
    let namespace = stage.namespace().unwrap_or_default();
    if let Some(current) = &status.current_promotion {
        let phase = promotion_named(promotions, &namespace, &current.name)
            .map_or_else(|| "Running".to_string(), |p| p.phase().to_string());
        return Some((current.name.clone(), phase));
    }
    let last = status.last_promotion.as_ref()?;
    let phase = promotion_named(promotions, &namespace, &last.name)
        .map(|p| p.phase().to_string())
        .or_else(|| {
            last.status
                .as_ref()
                .and_then(|s| s.phase)
                .map(|p| p.to_string())
        })
        .unwrap_or_else(|| "<unknown>".to_string());
    Some((last.name.clone(), phase))
}

/// A Freight's alias when it has one, else `name` itself.
fn alias_of(name: &str, namespace: Option<String>, freight: &[Freight]) -> String {
    freight
        .iter()
        .find(|f| f.name_any() == name && f.namespace() == namespace)
        .and_then(|f| f.spec.alias.clone())
        .unwrap_or_else(|| name.to_string())
}

/// Stages: the Freight each uses (by alias, as people know it), its
/// health, and how its running or last Promotion goes.
pub fn stages(
    stages: &[Stage],
    promotions: &[Promotion],
    freight: &[Freight],
    wide: bool,
    now: Timestamp,
) -> Table {
    let mut headers = vec!["name", "freight", "health", "promotion", "age"];
    if wide {
        headers.extend(["freight name", "promotion name", "ready", "auto-promotion"]);
    }
    let rows = stages
        .iter()
        .map(|s| {
            let status = s.status.clone().unwrap_or_default();
            let health = status
                .health
                .as_ref()
                .and_then(|h| h.status)
                .map_or_else(|| "<none>".to_string(), |h| h.to_string());
            let promotion = stage_promotion(s, promotions);
            let mut row = vec![
                s.name_any(),
                cell(&alias_of(&status.freight_summary, s.namespace(), freight)),
                health,
                promotion
                    .as_ref()
                    .map_or_else(|| "<none>".to_string(), |(_, phase)| phase.clone()),
                age(created(s), now),
            ];
            if wide {
                row.extend([
                    cell(&status.freight_summary),
                    promotion.map_or_else(|| "<none>".to_string(), |(name, _)| name),
                    condition_status(&status.conditions, "Ready"),
                    status.auto_promotion_enabled.to_string(),
                ]);
            }
            row
        })
        .collect();
    (headers, rows)
}

/// Where a Promotion is in its plan: `2/3 update` while running, the count
/// of ended steps once over, empty before the plan is made.
pub fn step_progress(p: &Promotion) -> String {
    let Some(status) = &p.status else {
        return String::new();
    };
    let Some(plan) = &status.plan else {
        return String::new();
    };
    let total = plan.steps.len();
    if p.is_terminal() {
        let ended = status
            .step_execution_metadata
            .iter()
            .filter(|m| m.status.is_some_and(|s| s.is_terminal()))
            .count();
        return format!("{ended}/{total}");
    }
    let index = usize::try_from(status.current_step).unwrap_or(0);
    let alias = plan
        .steps
        .get(index)
        .and_then(|s| s.alias.clone())
        .unwrap_or_default();
    format!("{}/{total} {alias}", (index + 1).min(total.max(1)))
        .trim_end()
        .to_string()
}

/// The promoted Freight as people know it: its alias, else its name.
pub fn promotion_freight(p: &Promotion) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.plan.as_ref())
        .map(|plan| plan.freight_alias.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| p.spec.freight.clone())
}

/// Promotions: which Freight to which Stage, the phase and the step.
pub fn promotions(promotions: &[Promotion], wide: bool, now: Timestamp) -> Table {
    let mut headers = vec!["name", "stage", "freight", "phase", "step", "age"];
    if wide {
        headers.extend(["freight name", "message"]);
    }
    let rows = promotions
        .iter()
        .map(|p| {
            let mut row = vec![
                p.name_any(),
                p.spec.stage.clone(),
                promotion_freight(p),
                p.phase().to_string(),
                cell(&step_progress(p)),
                age(created(p), now),
            ];
            if wide {
                let message = p
                    .status
                    .as_ref()
                    .map(|s| s.message.clone())
                    .unwrap_or_default();
                row.extend([p.spec.freight.clone(), cell(&message)]);
            }
            row
        })
        .collect();
    (headers, rows)
}

/// What a Freight carries, briefly: commits and image and chart versions.
pub fn artifacts(f: &Freight) -> Vec<String> {
    let spec = &f.spec;
    let commits = spec
        .commits
        .iter()
        .map(|c| format!("{}@{}", repo_name(&c.repo_url), short(&c.id)));
    let images = spec.images.iter().map(|i| {
        let version = if i.tag.is_empty() {
            short(&i.digest).to_string()
        } else {
            i.tag.clone()
        };
        format!("{}:{version}", repo_name(&i.repo_url))
    });
    let charts = spec.charts.iter().map(|c| {
        let name = if c.name.is_empty() {
            repo_name(&c.repo_url).to_string()
        } else {
            c.name.clone()
        };
        format!("{name}:{}", c.version)
    });
    commits.chain(images).chain(charts).collect()
}

/// The last path segment of a repository URL.
fn repo_name(url: &str) -> &str {
    let trimmed = url.trim_end_matches('/').trim_end_matches(".git");
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// Freight: alias, origin, and the Stages it is in and verified in.
pub fn freight(freight: &[Freight], wide: bool, now: Timestamp) -> Table {
    let mut headers = vec![
        "name",
        "alias",
        "origin",
        "current in",
        "verified in",
        "age",
    ];
    if wide {
        headers.extend(["approved for", "artifacts"]);
    }
    let rows = freight
        .iter()
        .map(|f| {
            let status = f.status.clone().unwrap_or_default();
            let keys = |m: Vec<&String>| list_cell(&m);
            let mut row = vec![
                f.name_any(),
                cell(f.spec.alias.as_deref().unwrap_or_default()),
                f.spec.origin.to_string(),
                keys(status.currently_in.keys().collect()),
                keys(status.verified_in.keys().collect()),
                age(created(f), now),
            ];
            if wide {
                row.extend([
                    keys(status.approved_for.keys().collect()),
                    list_cell(&artifacts(f)),
                ]);
            }
            row
        })
        .collect();
    (headers, rows)
}

/// When a Freight was discovered: `discoveredAt`, else its creation.
pub fn discovered(f: &Freight) -> Option<Timestamp> {
    f.spec
        .discovered_at
        .as_ref()
        .map(|t| t.0)
        .or_else(|| created(f))
}

/// The Freight of a Warehouse, newest first.
pub fn freight_of<'a>(warehouse: &Warehouse, freight: &'a [Freight]) -> Vec<&'a Freight> {
    let mut own: Vec<&Freight> = freight
        .iter()
        .filter(|f| {
            f.spec.origin.name == warehouse.name_any() && f.namespace() == warehouse.namespace()
        })
        .collect();
    own.sort_by_key(|f| std::cmp::Reverse((discovered(f), f.name_any())));
    own
}

/// Warehouses: how much Freight each made, the newest and when.
pub fn warehouses(
    warehouses: &[Warehouse],
    freight: &[Freight],
    wide: bool,
    now: Timestamp,
) -> Table {
    let mut headers = vec![
        "name",
        "freight",
        "latest",
        "last discovery",
        "ready",
        "age",
    ];
    if wide {
        headers.extend(["subscriptions", "message"]);
    }
    let rows = warehouses
        .iter()
        .map(|w| {
            let own = freight_of(w, freight);
            let latest = own.first();
            let conditions = w
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let mut row = vec![
                w.name_any(),
                own.len().to_string(),
                latest.map_or_else(
                    || "<none>".to_string(),
                    |f| f.spec.alias.clone().unwrap_or_else(|| f.name_any()),
                ),
                latest.map_or_else(|| "<none>".to_string(), |f| age(discovered(f), now)),
                condition_status(&conditions, "Ready"),
                age(created(w), now),
            ];
            if wide {
                let message = conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                row.extend([w.spec.subscriptions.len().to_string(), cell(&message)]);
            }
            row
        })
        .collect();
    (headers, rows)
}

/// A table with a NAMESPACE column first (for `-A`).
pub fn with_namespaces(table: Table, namespaces: &[String]) -> Table {
    let (mut headers, rows) = table;
    headers.insert(0, "namespace");
    let rows = rows
        .into_iter()
        .zip(namespaces)
        .map(|(mut row, ns)| {
            row.insert(0, ns.clone());
            row
        })
        .collect();
    (headers, rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn now() -> Timestamp {
        "2026-01-01T10:05:00Z".parse().unwrap()
    }

    fn promotion(name: &str, phase: &str, current: i64, ran: Value) -> Promotion {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": name, "namespace": "demo", "creationTimestamp": "2026-01-01T10:00:00Z"},
            "spec": {"stage": "dev", "freight": "f1"},
            "status": {
                "phase": phase, "currentStep": current,
                "plan": {"steps": [{"as": "a", "uses": "x"}, {"as": "b", "uses": "y"}]},
                "stepExecutionMetadata": ran,
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_running_promotion_shows_its_step_and_an_ended_one_how_many_ran() {
        let running = promotion(
            "p",
            "Running",
            1,
            json!([{"alias": "a", "status": "Succeeded"}, {"alias": "b", "status": "Running"}]),
        );
        assert_eq!(step_progress(&running), "2/2 b");
        let failed = promotion(
            "p",
            "Failed",
            0,
            json!([{"alias": "a", "status": "Failed"}]),
        );
        assert_eq!(step_progress(&failed), "1/2");
    }

    #[test]
    fn promotions_list_stage_freight_phase_step_and_age() {
        let p = promotion(
            "p1",
            "Running",
            0,
            json!([{"alias": "a", "status": "Running"}]),
        );
        let (headers, rows) = promotions(&[p], false, now());
        assert_eq!(
            headers,
            ["name", "stage", "freight", "phase", "step", "age"]
        );
        assert_eq!(rows, [["p1", "dev", "f1", "Running", "1/2 a", "5m"]]);
    }

    #[test]
    fn a_stage_shows_the_phase_of_its_running_promotion_else_its_last() {
        let stage = |status: Value| -> Stage {
            serde_json::from_value(json!({
                "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
                "metadata": {"name": "dev", "namespace": "demo"},
                "spec": {"requestedFreight": [{"origin": {"kind": "Warehouse", "name": "w"}, "sources": {"direct": true}}]},
                "status": status,
            }))
            .unwrap()
        };
        let running = promotion("p2", "Running", 0, json!([]));
        let with_current = stage(
            json!({"currentPromotion": {"name": "p2"}, "lastPromotion": {"name": "p1", "status": {"phase": "Succeeded"}}}),
        );
        assert_eq!(
            stage_promotion(&with_current, std::slice::from_ref(&running)),
            Some(("p2".into(), "Running".into()))
        );
        let only_last =
            stage(json!({"lastPromotion": {"name": "p1", "status": {"phase": "Failed"}}}));
        assert_eq!(
            stage_promotion(&only_last, &[]),
            Some(("p1".into(), "Failed".into()))
        );
        let (_, rows) = stages(&[only_last], &[], &[], true, now());
        assert_eq!(rows[0][..4], ["dev", "<none>", "<none>", "Failed"]);
        assert_eq!(rows[0][6], "p1");
    }

    #[test]
    fn freight_shows_its_alias_origin_and_stages() {
        let f: Freight = serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": "f1", "namespace": "demo", "creationTimestamp": "2026-01-01T09:05:00Z"},
            "alias": "brave-otter",
            "origin": {"kind": "Warehouse", "name": "w"},
            "commits": [{"repoURL": "https://git.example.com/demo/app.git", "id": "8f3c2a9bd41e"}],
            "images": [{"repoURL": "registry.example.com/app", "tag": "1.2.0"}],
            "status": {"currentlyIn": {"dev": {}}, "verifiedIn": {"dev": {}, "staging": {}}},
        }))
        .unwrap();
        let (_, rows) = freight(&[f], true, now());
        assert_eq!(
            rows,
            [[
                "f1",
                "brave-otter",
                "Warehouse/w",
                "dev",
                "dev,staging",
                "60m",
                "<none>",
                "app@8f3c2a9,app:1.2.0"
            ]]
        );
    }
}
