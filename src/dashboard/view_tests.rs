#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn object<K: serde::de::DeserializeOwned>(value: Value) -> Arc<K> {
    Arc::new(serde_json::from_value(value).unwrap())
}

fn stage(name: &str, sources: Value, status: Value) -> Arc<Stage> {
    object(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"requestedFreight": [{"origin": {"kind": "Warehouse", "name": "app"}, "sources": sources}]},
        "status": status,
    }))
}

fn freight_ref(name: &str, commit: &str) -> Value {
    json!({"name": name, "origin": {"kind": "Warehouse", "name": "app"},
           "commits": [{"repoURL": "https://git.example.com/app.git", "id": commit}]})
}

fn promotion(name: &str, stage: &str, created: &str, status: Value) -> Arc<Promotion> {
    object(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
        "spec": {"stage": stage, "freight": "f2"},
        "status": status,
    }))
}

fn pipeline() -> Snapshot {
    Snapshot {
        stages: vec![
            stage(
                "dev",
                json!({"direct": true}),
                json!({
                    "health": {"status": "Healthy"},
                    "freightHistory": [
                        {"items": {"Warehouse/app": freight_ref("f2", "bbbbbbbbbb")}},
                        {"items": {"Warehouse/app": freight_ref("f1", "aaaaaaaaaa")}},
                    ],
                }),
            ),
            stage("staging", json!({"stages": ["dev"]}), json!({})),
            stage("prod", json!({"stages": ["staging", "dev"]}), json!({})),
        ],
        freight: vec![object(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": "f2", "namespace": "shop"},
            "alias": "quiet-otter",
            "origin": {"kind": "Warehouse", "name": "app"},
        }))],
        ..Default::default()
    }
}

#[test]
fn stages_sit_one_column_past_their_furthest_upstream_and_warehouses_named_only_by_stages_appear() {
    let view = build(&pipeline());
    assert_eq!(view.projects.len(), 1);
    let project = &view.projects[0];
    assert_eq!(project.namespace, "shop");
    let columns: Vec<(&str, usize)> = project
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.place.column))
        .collect();
    assert_eq!(columns, vec![("dev", 1), ("prod", 3), ("staging", 2)]);
    assert_eq!(project.warehouses.len(), 1);
    let warehouse = &project.warehouses[0];
    assert_eq!((warehouse.name.as_str(), warehouse.exists), ("app", false));
    assert_eq!(warehouse.freight_count, 1);
    let edges: Vec<(&str, &str)> = project
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(
        edges,
        vec![
            ("dev", "prod"),
            ("dev", "staging"),
            ("staging", "prod"),
            ("app", "dev")
        ]
    );
}

#[test]
fn a_stage_shows_its_health_its_current_freight_by_alias_and_what_it_had_before() {
    let view = build(&pipeline());
    let dev = &view.projects[0].stages[0];
    assert_eq!(dev.health, "Healthy");
    assert_eq!(dev.current.len(), 1);
    assert_eq!(dev.current[0].alias, "quiet-otter");
    assert_eq!(dev.current[0].artifacts, vec!["bbbbbbb".to_string()]);
    assert_eq!(dev.history.len(), 1);
    assert_eq!(dev.history[0][0].name, "f1");
    let staging = &view.projects[0].stages[2];
    assert_eq!(staging.health, "Unknown");
    assert!(staging.current.is_empty());
}

#[test]
fn a_stage_upstream_of_itself_still_gets_a_place() {
    let snapshot = Snapshot {
        stages: vec![
            stage("a", json!({"stages": ["b"]}), json!({})),
            stage("b", json!({"stages": ["a"]}), json!({})),
        ],
        ..Default::default()
    };
    let view = build(&snapshot);
    assert!(view.projects[0].stages.iter().all(|s| s.place.column >= 1));
}

#[test]
fn a_running_promotion_shows_each_step_and_what_the_waiting_one_waits_on() {
    let mut snapshot = pipeline();
    snapshot.promotions = vec![promotion(
        "p2",
        "dev",
        "2026-11-30T10:00:00Z",
        json!({
            "phase": "Running",
            "plan": {"steps": [
                {"uses": "git-clone", "as": "clone"},
                {"uses": "argocd-update", "as": "update"},
                {"uses": "argocd-wait"},
            ]},
            "currentStep": 1,
            "stepExecutionMetadata": [
                {"alias": "clone", "status": "Succeeded"},
                {"alias": "update", "status": "Running", "message": "sync running"},
            ],
            "awaiting": [{"alias": "update", "kind": "Application", "namespace": "argocd",
                          "name": "shop-dev", "message": "operation in progress",
                          "since": "2026-11-30T10:00:01Z"}],
        }),
    )];
    let view = build(&snapshot);
    let dev = &view.projects[0].stages[0];
    assert_eq!(dev.promoting.as_deref(), Some("p2"));
    let steps = &dev.promotions[0].steps;
    let summary: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s.alias.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("clone", "Succeeded"),
            ("update", "Running"),
            ("step-2", "Pending")
        ]
    );
    assert_eq!(steps[1].waiting_on.len(), 1);
    assert_eq!(steps[1].waiting_on[0].target, "Application argocd/shop-dev");
    assert_eq!(steps[1].waiting_on[0].message, "operation in progress");
    assert!(steps[1].waiting_on[0].since.is_some());
}

#[test]
fn promotions_are_newest_first_and_an_ended_one_cached_without_its_plan_keeps_its_message() {
    let mut snapshot = pipeline();
    snapshot.promotions = vec![
        promotion(
            "p1",
            "dev",
            "2026-11-30T09:00:00Z",
            json!({"phase": "Failed", "message": "step \"update\": Application not authorized"}),
        ),
        promotion("p2", "dev", "2026-11-30T10:00:00Z", json!({})),
        promotion("other", "staging", "2026-11-30T11:00:00Z", json!({})),
    ];
    let view = build(&snapshot);
    let dev = &view.projects[0].stages[0];
    let names: Vec<(&str, &str)> = dev
        .promotions
        .iter()
        .map(|p| (p.name.as_str(), p.phase.as_str()))
        .collect();
    assert_eq!(names, vec![("p2", "Pending"), ("p1", "Failed")]);
    assert!(dev.promotions[1].message.contains("not authorized"));
    assert!(dev.promotions[1].steps.is_empty());
    assert_eq!(dev.promoting, None);
}

#[test]
fn warehouses_list_their_repositories_and_each_namespace_is_its_own_pipeline() {
    let mut snapshot = pipeline();
    snapshot.warehouses = vec![
        object(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
            "metadata": {"name": "app", "namespace": "shop"},
            "spec": {"subscriptions": [{"git": {"repoURL": "https://git.example.com/app.git"}}]},
        })),
        object(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
            "metadata": {"name": "lonely", "namespace": "other"},
            "spec": {"subscriptions": []},
        })),
    ];
    let view = build(&snapshot);
    let namespaces: Vec<&str> = view.projects.iter().map(|p| p.namespace.as_str()).collect();
    assert_eq!(namespaces, vec!["other", "shop"]);
    let app = &view.projects[1].warehouses[0];
    assert!(app.exists);
    assert_eq!(
        app.subscriptions,
        vec!["git: https://git.example.com/app.git"]
    );
    assert!(view.projects[0].stages.is_empty());
}

#[test]
fn an_ended_promotion_cached_without_its_steps_shows_those_its_stage_copied() {
    let mut snapshot = pipeline();
    snapshot.stages[0] = stage(
        "dev",
        json!({"direct": true}),
        json!({"lastPromotion": {"name": "p1", "status": {
            "phase": "Succeeded",
            "stepExecutionMetadata": [{"alias": "update", "status": "Succeeded"}],
        }}}),
    );
    snapshot.promotions = vec![promotion(
        "p1",
        "dev",
        "2026-11-30T09:00:00Z",
        json!({"phase": "Succeeded"}),
    )];
    let view = build(&snapshot);
    let steps = &view.projects[0].stages[0].promotions[0].steps;
    assert_eq!(steps.len(), 1);
    assert_eq!(
        (steps[0].alias.as_str(), steps[0].status.as_str()),
        ("update", "Succeeded")
    );
}

fn warehouse(conditions: Value) -> Arc<Warehouse> {
    object(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
        "metadata": {"name": "app", "namespace": "shop"},
        "spec": {"subscriptions": [{"image": {"repoURL": "registry.example.com/app"}}]},
        "status": {"conditions": conditions},
    }))
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

#[test]
fn a_warehouse_that_is_not_ready_shows_why() {
    let mut snapshot = pipeline();
    snapshot.warehouses = vec![warehouse(json!([
        condition(
            "Healthy",
            "False",
            "DiscoveryFailed",
            "ignored: Ready says it"
        ),
        condition(
            "Ready",
            "False",
            "DiscoveryFailed",
            "spec.subscriptions[0].image: registry.example.com: connection refused"
        ),
    ]))];
    let node = &build(&snapshot).projects[0].warehouses[0];
    assert!(node.exists);
    assert_eq!(
        node.problem.as_deref(),
        Some("spec.subscriptions[0].image: registry.example.com: connection refused")
    );

    snapshot.warehouses = vec![warehouse(json!([condition(
        "Ready", "False", "Pending", ""
    )]))];
    let node = &build(&snapshot).projects[0].warehouses[0];
    assert_eq!(node.problem.as_deref(), Some("Pending"));

    snapshot.warehouses = vec![warehouse(json!([condition(
        "Ready",
        "True",
        "ArtifactsDiscovered",
        ""
    )]))];
    assert_eq!(build(&snapshot).projects[0].warehouses[0].problem, None);
}
