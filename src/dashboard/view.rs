//! The dashboard's view model: a pure function of cached objects, so what
//! the page shows is decided (and unit-tested) without a server or browser.
//! The page only draws what this returns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{
    Freight, FreightCollection, FreightReference, Promotion, PromotionReference, PromotionStatus,
    Stage, Warehouse,
};

/// Promotions shown per Stage, newest first: enough to see the last failure
/// next to the running one.
pub const PROMOTIONS_PER_STAGE: usize = 5;

/// What the caches hold at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub stages: Vec<Arc<Stage>>,
    pub promotions: Vec<Arc<Promotion>>,
    pub freight: Vec<Arc<Freight>>,
    pub warehouses: Vec<Arc<Warehouse>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct View {
    /// One pipeline per namespace (Kargo's project), by name.
    pub projects: Vec<Project>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Project {
    pub namespace: String,
    pub warehouses: Vec<WarehouseNode>,
    pub stages: Vec<StageNode>,
    pub edges: Vec<Edge>,
}

/// Where a node sits in the graph: columns by distance from the Warehouses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Place {
    pub column: usize,
    pub row: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WarehouseNode {
    pub name: String,
    pub place: Place,
    /// False when only Stages or Freight name it (no such object cached).
    pub exists: bool,
    /// The repositories it subscribes to.
    pub subscriptions: Vec<String>,
    /// How many Freight it has produced, as cached.
    pub freight_count: usize,
    /// Why it is not Ready (discovery failing, a subscription written
    /// wrong), from its `Ready` condition.
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageNode {
    pub name: String,
    pub place: Place,
    /// The Stage's health (`Unknown` until reported).
    pub health: String,
    /// Health issues, when any.
    pub issues: Vec<String>,
    /// The Freight in use now (one per requested origin).
    pub current: Vec<FreightLabel>,
    /// Earlier Freight, newest first (the current one excluded).
    pub history: Vec<Vec<FreightLabel>>,
    /// The Promotion running now, if any.
    pub promoting: Option<String>,
    pub promotions: Vec<PromotionView>,
}

/// A Freight as people recognise it: alias, or name, and its artifacts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FreightLabel {
    pub name: String,
    pub alias: String,
    pub origin: String,
    /// Short forms: a commit's first 7 characters, `image:tag`, `chart@version`.
    pub artifacts: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PromotionView {
    pub name: String,
    pub phase: String,
    pub message: String,
    pub freight: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub steps: Vec<StepView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepView {
    pub alias: String,
    pub uses: String,
    /// The step's status, or `Pending` before it starts.
    pub status: String,
    pub message: String,
    pub waiting_on: Vec<WaitView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WaitView {
    /// `Application argocd/shop-dev`, or the selector it matches.
    pub target: String,
    pub message: String,
    pub since: Option<String>,
    pub deadline: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    /// `Warehouse` or `Stage`.
    pub from_kind: &'static str,
    pub from: String,
    /// A Stage.
    pub to: String,
}

/// The whole view, every namespace of the snapshot.
pub fn build(snapshot: &Snapshot) -> View {
    let mut namespaces = BTreeSet::new();
    namespaces.extend(
        snapshot
            .stages
            .iter()
            .map(|s| s.namespace().unwrap_or_default()),
    );
    namespaces.extend(
        snapshot
            .warehouses
            .iter()
            .map(|w| w.namespace().unwrap_or_default()),
    );
    View {
        projects: namespaces
            .into_iter()
            .map(|ns| project(snapshot, &ns))
            .collect(),
    }
}

fn in_ns<'a, K: kube::Resource>(
    objects: &'a [Arc<K>],
    namespace: &'a str,
) -> impl Iterator<Item = &'a Arc<K>> + 'a {
    objects
        .iter()
        .filter(move |o| o.meta().namespace.as_deref().unwrap_or_default() == namespace)
}

fn project(snapshot: &Snapshot, namespace: &str) -> Project {
    let mut stages: Vec<&Stage> = in_ns(&snapshot.stages, namespace)
        .map(|s| s.as_ref())
        .collect();
    stages.sort_by_key(|s| s.name_any());
    let freight: BTreeMap<String, &Freight> = in_ns(&snapshot.freight, namespace)
        .map(|f| (f.name_any(), f.as_ref()))
        .collect();

    let edges = edges(&stages);
    let columns = columns(&stages, &edges);

    // Warehouses: those cached, and those only named by a Stage's request.
    let mut warehouses: BTreeMap<String, WarehouseNode> = in_ns(&snapshot.warehouses, namespace)
        .map(|w| {
            let node = WarehouseNode {
                name: w.name_any(),
                exists: true,
                subscriptions: w.spec.subscriptions.iter().filter_map(repository).collect(),
                problem: not_ready(w),
                ..Default::default()
            };
            (node.name.clone(), node)
        })
        .collect();
    for edge in edges.iter().filter(|e| e.from_kind == "Warehouse") {
        warehouses
            .entry(edge.from.clone())
            .or_insert_with(|| WarehouseNode {
                name: edge.from.clone(),
                ..Default::default()
            });
    }
    for f in freight.values() {
        if let Some(w) = warehouses.get_mut(&f.spec.origin.name) {
            w.freight_count += 1;
        }
    }
    let mut warehouses: Vec<WarehouseNode> = warehouses.into_values().collect();
    for (row, w) in warehouses.iter_mut().enumerate() {
        w.place = Place { column: 0, row };
    }

    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let stages = stages
        .iter()
        .map(|stage| {
            let column = columns.get(&stage.name_any()).copied().unwrap_or(1);
            let row = rows.entry(column).or_default();
            let place = Place { column, row: *row };
            *row += 1;
            stage_node(stage, place, &snapshot.promotions, &freight)
        })
        .collect();

    Project {
        namespace: namespace.to_string(),
        warehouses,
        stages,
        edges,
    }
}

/// The repository a subscription (free-form JSON, one key naming its type)
/// watches.
fn repository(subscription: &serde_json::Value) -> Option<String> {
    let (kind, body) = subscription
        .as_object()?
        .iter()
        .find(|(k, _)| *k != "name")?;
    let url = body.get("repoURL").and_then(|u| u.as_str()).unwrap_or("");
    Some(format!("{kind}: {url}"))
}

/// One edge per source of each requested Freight, deduplicated.
fn edges(stages: &[&Stage]) -> Vec<Edge> {
    let mut edges = BTreeSet::new();
    for stage in stages {
        for request in &stage.spec.requested_freight {
            if request.sources.direct {
                edges.insert(Edge {
                    from_kind: "Warehouse",
                    from: request.origin.name.clone(),
                    to: stage.name_any(),
                });
            }
            for upstream in &request.sources.stages {
                edges.insert(Edge {
                    from_kind: "Stage",
                    from: upstream.clone(),
                    to: stage.name_any(),
                });
            }
        }
    }
    edges.into_iter().collect()
}

/// The message of a Warehouse's `Ready` condition when it is `False` (its
/// reason when it has no message).
fn not_ready(w: &Warehouse) -> Option<String> {
    let ready = w
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False")?;
    Some(if ready.message.is_empty() {
        ready.reason.clone()
    } else {
        ready.message.clone()
    })
}

/// Each Stage's column: one past its furthest upstream Stage, Warehouses
/// being column 0. A cycle (which admission does not rule out) or an
/// unknown upstream counts as column 0, so every Stage gets a place.
fn columns(stages: &[&Stage], edges: &[Edge]) -> BTreeMap<String, usize> {
    let names: BTreeSet<String> = stages.iter().map(|s| s.name_any()).collect();
    let mut upstream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in edges.iter().filter(|e| e.from_kind == "Stage") {
        if names.contains(&e.from) {
            upstream
                .entry(e.to.as_str())
                .or_default()
                .push(e.from.as_str());
        }
    }
    let mut columns = BTreeMap::new();
    for name in &names {
        let mut visiting = BTreeSet::new();
        column_of(name, &upstream, &mut columns, &mut visiting);
    }
    columns
}

fn column_of<'a>(
    name: &'a str,
    upstream: &BTreeMap<&'a str, Vec<&'a str>>,
    columns: &mut BTreeMap<String, usize>,
    visiting: &mut BTreeSet<&'a str>,
) -> usize {
    if let Some(c) = columns.get(name) {
        return *c;
    }
    if !visiting.insert(name) {
        return 0;
    }
    let deepest = upstream
        .get(name)
        .into_iter()
        .flatten()
        .map(|up| column_of(up, upstream, columns, visiting))
        .max()
        .unwrap_or(0);
    visiting.remove(name);
    columns.insert(name.to_string(), deepest + 1);
    deepest + 1
}

fn stage_node(
    stage: &Stage,
    place: Place,
    promotions: &[Arc<Promotion>],
    freight: &BTreeMap<String, &Freight>,
) -> StageNode {
    let namespace = stage.namespace().unwrap_or_default();
    let name = stage.name_any();
    let status = stage.status.clone().unwrap_or_default();
    let health = status.health.as_ref();
    let mut history = status
        .freight_history
        .iter()
        .map(|c| collection(c, freight));
    let current = history.next().unwrap_or_default();

    let mut mine: Vec<&Promotion> = in_ns(promotions, &namespace)
        .filter(|p| p.spec.stage == name)
        .map(|p| p.as_ref())
        .collect();
    // Newest first; names break ties within the same second.
    mine.sort_by(|a, b| {
        let key = |p: &Promotion| (p.metadata.creation_timestamp.clone(), p.name_any());
        key(b).cmp(&key(a))
    });
    let running = mine
        .iter()
        .find(|p| p.phase() == crate::api::PromotionPhase::Running)
        .map(|p| p.name_any());
    StageNode {
        name,
        place,
        health: health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "Unknown".into()),
        issues: health.map(|h| h.issues.clone()).unwrap_or_default(),
        current,
        history: history.collect(),
        promotions: mine
            .iter()
            .take(PROMOTIONS_PER_STAGE)
            .map(|p| promotion_view(p, status.last_promotion.as_ref()))
            .collect(),
        promoting: status.current_promotion.map(|p| p.name).or(running),
    }
}

fn collection(c: &FreightCollection, freight: &BTreeMap<String, &Freight>) -> Vec<FreightLabel> {
    c.items
        .values()
        .map(|r| label(r, freight.get(&r.name).copied()))
        .collect()
}

fn label(reference: &FreightReference, cached: Option<&Freight>) -> FreightLabel {
    let commits = reference
        .commits
        .iter()
        .map(|c| c.id.chars().take(7).collect::<String>());
    let images = reference.images.iter().map(|i| {
        let version = if i.tag.is_empty() { &i.digest } else { &i.tag };
        format!("{}:{version}", last_segment(&i.repo_url))
    });
    let charts = reference
        .charts
        .iter()
        .map(|c| format!("{}@{}", chart_name(c), c.version));
    FreightLabel {
        name: reference.name.clone(),
        alias: cached
            .and_then(|f| f.spec.alias.clone())
            .unwrap_or_default(),
        origin: reference.origin.name.clone(),
        artifacts: commits.chain(images).chain(charts).collect(),
    }
}

fn chart_name(chart: &crate::api::Chart) -> &str {
    if chart.name.is_empty() {
        last_segment(&chart.repo_url)
    } else {
        &chart.name
    }
}

fn last_segment(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

fn time(t: &Option<Time>) -> Option<String> {
    t.as_ref().map(|t| t.0.to_string())
}

/// `last` is the Stage's copy of its last Promotion's status: the
/// controller's cache keeps ended Promotions without their steps, so a
/// Stage's newest ended one shows its steps from there.
fn promotion_view(p: &Promotion, last: Option<&PromotionReference>) -> PromotionView {
    let mut status = p.status.clone().unwrap_or_default();
    if status.step_execution_metadata.is_empty()
        && let Some(copy) = last
            .filter(|l| l.name == p.name_any())
            .and_then(|l| l.status.as_deref())
    {
        status.step_execution_metadata = copy.step_execution_metadata.clone();
    }
    PromotionView {
        name: p.name_any(),
        phase: p.phase().to_string(),
        message: status.message.clone(),
        freight: p.spec.freight.clone(),
        started_at: time(&status.started_at),
        finished_at: time(&status.finished_at),
        steps: steps(p, &status),
    }
}

/// The frozen plan's steps with what the status records of each; before the
/// plan is frozen, the Promotion's own steps. Steps recorded but absent from
/// the plan (an ended Promotion cached without its plan) follow.
fn steps(p: &Promotion, status: &PromotionStatus) -> Vec<StepView> {
    let planned = status
        .plan
        .as_ref()
        .map(|plan| plan.steps.as_slice())
        .unwrap_or(p.spec.steps.as_slice());
    let mut views: Vec<StepView> = planned
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let alias = step.alias.clone().unwrap_or_else(|| format!("step-{i}"));
            let uses = match (&step.uses, &step.task) {
                (Some(uses), _) => uses.clone(),
                (None, Some(task)) => format!("task {}", task.name),
                (None, None) => String::new(),
            };
            StepView {
                alias,
                uses,
                status: "Pending".into(),
                ..Default::default()
            }
        })
        .collect();
    for meta in &status.step_execution_metadata {
        let index = match views.iter().position(|v| v.alias == meta.alias) {
            Some(i) => i,
            None => {
                views.push(StepView {
                    alias: meta.alias.clone(),
                    ..Default::default()
                });
                views.len() - 1
            }
        };
        let view = &mut views[index];
        view.status = meta
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "Running".into());
        view.message = meta.message.clone();
    }
    for awaited in &status.awaiting {
        if let Some(view) = views.iter_mut().find(|v| v.alias == awaited.alias) {
            view.waiting_on.push(WaitView {
                target: wait_target(awaited),
                message: awaited.message.clone(),
                since: time(&awaited.since),
                deadline: time(&awaited.deadline),
            });
        }
    }
    views
}

fn wait_target(a: &crate::api::AwaitedObject) -> String {
    let scope = if a.namespace.is_empty() {
        String::new()
    } else {
        format!("{}/", a.namespace)
    };
    match (&a.name, &a.repo_url, &a.selector) {
        (Some(name), _, _) => format!("{} {scope}{name}", a.kind),
        (None, Some(repo), _) => format!("{} {repo}", a.kind),
        (None, None, Some(_)) => format!(
            "{} {scope}[{}]",
            a.kind,
            a.selector_labels().unwrap_or_default()
        ),
        (None, None, None) => a.kind.clone(),
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
