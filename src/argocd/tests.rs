//! Specifications of the Argo CD decisions, over hand-built Applications.

use serde_json::{Value, json};

use super::*;

fn app(value: Value) -> Application {
    match serde_json::from_value(value) {
        Ok(app) => app,
        Err(e) => panic!("bad fixture: {e}"),
    }
}

fn state(phase: &str, promotion: Option<&str>, revision: &str, finished: bool) -> Value {
    let mut info = vec![json!({"name": "Reason", "value": "x"})];
    if let Some(p) = promotion {
        info.push(json!({"name": PROMOTION_INFO, "value": p}));
        info.push(json!({"name": "barge.dev/promotion-namespace", "value": "demo"}));
        info.push(json!({"name": PROMOTION_UID_INFO, "value": format!("uid-{p}")}));
    }
    let mut s = json!({
        "operation": {"info": info, "sync": {}},
        "phase": phase,
        "message": format!("{phase} message"),
        "startedAt": "2026-11-25T10:00:00Z",
        "syncResult": {"revision": revision},
    });
    if finished {
        s["finishedAt"] = json!("2026-11-25T10:00:05Z");
    }
    s
}

/// Promotion `name` in `namespace`; in `demo` it is the one the fixtures'
/// operations were written for, elsewhere another Promotion of that name.
fn who(namespace: &'static str, name: &'static str) -> Requester<'static> {
    let uid = match (namespace, name) {
        ("demo", "p0") => "uid-p0",
        ("demo", "p1") => "uid-p1",
        _ => "uid-of-another-promotion",
    };
    Requester {
        namespace,
        name,
        uid,
    }
}

fn with_state(op_state: Value) -> Application {
    app(json!({
        "metadata": {"name": "demo-dev", "namespace": "argocd", "resourceVersion": "7"},
        "spec": {"source": {"repoURL": "https://git.example/app.git", "targetRevision": "main"}},
        "status": {"operationState": op_state},
    }))
}

#[test]
fn an_application_never_synced_needs_a_sync() {
    let a = app(json!({"metadata": {"name": "a"}, "spec": {}}));
    assert_eq!(decide_sync(&a, who("demo", "p1"), &[]), SyncDecision::Sync);
}

#[test]
fn our_requested_operation_is_running_until_argo_cd_reports() {
    let mut a = with_state(Value::Null);
    a.status = None;
    a.operation = Some(json!({"info": [{"name": PROMOTION_INFO, "value": "p1"}], "sync": {}}));
    assert!(matches!(
        decide_sync(&a, who("demo", "p1"), &[]),
        SyncDecision::Running { .. }
    ));
}

#[test]
fn a_foreign_requested_operation_is_waited_for() {
    let mut a = with_state(Value::Null);
    a.operation = Some(json!({"info": [{"name": "Reason", "value": "manual"}], "sync": {}}));
    assert!(matches!(
        decide_sync(&a, who("demo", "p1"), &[]),
        SyncDecision::WaitForeign { .. }
    ));
}

#[test]
fn a_foreign_running_operation_is_waited_for() {
    let a = with_state(state("Running", None, "abc", false));
    assert!(matches!(
        decide_sync(&a, who("demo", "p1"), &[]),
        SyncDecision::WaitForeign { .. }
    ));
}

#[test]
fn another_promotions_finished_operation_means_we_sync() {
    let a = with_state(state("Succeeded", Some("p0"), "abc", true));
    assert_eq!(decide_sync(&a, who("demo", "p1"), &[]), SyncDecision::Sync);
}

#[test]
fn a_same_named_promotion_in_another_namespace_is_not_us() {
    let a = with_state(state("Succeeded", Some("p1"), "abc", true));
    assert_eq!(decide_sync(&a, who("other", "p1"), &[]), SyncDecision::Sync);
}

#[test]
fn our_running_operation_keeps_the_step_running() {
    let a = with_state(state("Running", Some("p1"), "abc", false));
    assert_eq!(
        decide_sync(&a, who("demo", "p1"), &[]),
        SyncDecision::Running {
            phase: "Running".into()
        }
    );
}

#[test]
fn our_operation_retrying_with_finished_at_set_is_still_running() {
    let a = with_state(state("Running", Some("p1"), "abc", true));
    assert!(matches!(
        decide_sync(&a, who("demo", "p1"), &[]),
        SyncDecision::Running { .. }
    ));
}

#[test]
fn our_succeeded_operation_at_the_desired_revision_succeeds() {
    let a = with_state(state("Succeeded", Some("p1"), "abc", true));
    assert_eq!(
        decide_sync(&a, who("demo", "p1"), &["abc".into()]),
        SyncDecision::Succeeded
    );
}

#[test]
fn our_succeeded_operation_at_another_revision_syncs_again_saying_why() {
    let a = with_state(state("Succeeded", Some("p1"), "zzz", true));
    let SyncDecision::Resync { message } = decide_sync(&a, who("demo", "p1"), &["abc".into()])
    else {
        panic!("expected Resync");
    };
    assert!(
        message.contains("zzz") && message.contains("abc"),
        "{message}"
    );
}

#[test]
fn a_promotion_created_again_under_its_old_name_does_not_take_the_old_operation_for_its_own() {
    let a = with_state(state("Succeeded", Some("p1"), "abc", true));
    let again = Requester {
        uid: "uid-of-the-new-p1",
        ..who("demo", "p1")
    };
    assert_eq!(decide_sync(&a, again, &["abc".into()]), SyncDecision::Sync);
    let failed = with_state(state("Failed", Some("p1"), "abc", true));
    assert_eq!(decide_sync(&failed, again, &[]), SyncDecision::Sync);
}

#[test]
fn an_operation_written_without_a_uid_is_ours_by_name_and_namespace() {
    let mut op = state("Succeeded", Some("p1"), "abc", true);
    if let Some(info) = op["operation"]["info"].as_array_mut() {
        info.retain(|i| i["name"] != PROMOTION_UID_INFO);
    }
    let a = with_state(op);
    assert_eq!(
        decide_sync(&a, who("demo", "p1"), &[]),
        SyncDecision::Succeeded
    );
    assert_eq!(decide_sync(&a, who("other", "p1"), &[]), SyncDecision::Sync);
}

#[test]
fn our_failed_operation_fails_with_argo_cds_message() {
    for phase in ["Failed", "Error"] {
        let a = with_state(state(phase, Some("p1"), "abc", true));
        assert_eq!(
            decide_sync(&a, who("demo", "p1"), &[]),
            SyncDecision::Failed {
                message: format!("{phase} message")
            }
        );
    }
}

#[test]
fn authorization_accepts_a_comma_separated_list_only_exactly() {
    let a = app(
        json!({"metadata": {"name": "a", "annotations": {AUTHORIZED_STAGE_ANNOTATION: "demo:dev, demo:staging"}}}),
    );
    assert!(is_authorized(&a, "demo", "dev"));
    assert!(is_authorized(&a, "demo", "staging"));
    assert!(!is_authorized(&a, "demo", "prod"));
    assert!(!is_authorized(&a, "other", "dev"));
    let none = app(json!({"metadata": {"name": "a"}}));
    assert!(!is_authorized(&none, "demo", "dev"));
}

fn annotated(value: &str) -> Application {
    app(json!({"metadata": {"name": "a", "annotations": {AUTHORIZED_STAGE_ANNOTATION: value}}}))
}

#[test]
fn whitespace_around_authorized_stages_and_their_parts_is_ignored() {
    let a = annotated(" demo : dev ,demo:  staging ,, ");
    assert_eq!(authorization(&a, "demo", "dev"), Authorization::Allowed);
    assert_eq!(authorization(&a, "demo", "staging"), Authorization::Allowed);
}

#[test]
fn one_malformed_authorized_stage_makes_the_whole_annotation_invalid() {
    for (value, why) in [
        ("demo:dev, staging", "invalid entry \"staging\""),
        ("demo:dev, :prod", "invalid entry \":prod\""),
        ("demo:dev, demo:", "invalid entry \"demo:\""),
        ("demo:*", "glob expressions are not supported"),
        ("*:dev", "glob expressions are not supported"),
    ] {
        let Authorization::Invalid(message) = authorization(&annotated(value), "demo", "dev")
        else {
            panic!("{value:?} was accepted");
        };
        assert!(message.contains(why), "{value:?}: {message}");
        assert!(message.contains(AUTHORIZED_STAGE_ANNOTATION), "{message}");
    }
}

#[test]
fn the_sync_patch_names_the_promotion_clears_the_old_state_and_asks_for_a_hard_refresh() {
    let mut a = with_state(state("Succeeded", Some("p0"), "abc", true));
    a.spec["syncPolicy"] = json!({"syncOptions": ["CreateNamespace=true"], "retry": {"limit": 2}});
    let patch = sync_patch(&a, who("demo", "p1"), None, None, &[]);
    assert_eq!(patch["metadata"]["annotations"][REFRESH_ANNOTATION], "hard");
    assert_eq!(patch["metadata"]["resourceVersion"], "7");
    assert_eq!(patch["status"]["operationState"], Value::Null);
    assert!(
        patch["status"]
            .as_object()
            .is_some_and(|s| s.contains_key("operationState"))
    );
    assert_eq!(
        patch["operation"]["sync"]["syncOptions"],
        json!(["CreateNamespace=true"])
    );
    assert_eq!(patch["operation"]["retry"], json!({"limit": 2}));
    assert_eq!(patch["operation"]["initiatedBy"]["automated"], true);
    let info: Vec<Info> =
        serde_json::from_value(patch["operation"]["info"].clone()).unwrap_or_default();
    assert!(
        info.iter()
            .any(|i| i.name == PROMOTION_INFO && i.value == "p1")
    );
    assert!(
        info.iter()
            .any(|i| i.name == PROMOTION_UID_INFO && i.value == "uid-p1")
    );
    assert!(patch.get("spec").is_none());
}

#[test]
fn the_sync_asks_for_the_desired_revision_not_the_branch_head() {
    let a = with_state(state("Succeeded", Some("p0"), "abc", true));
    let patch = sync_patch(&a, who("demo", "p1"), None, None, &["abc".into()]);
    assert_eq!(patch["operation"]["sync"]["revision"], "abc");
    // Without a desired revision: the source's targetRevision, as Kargo asks.
    let patch = sync_patch(&a, who("demo", "p1"), None, None, &[]);
    assert_eq!(patch["operation"]["sync"]["revision"], "main");
}

#[test]
fn each_source_of_a_multi_source_sync_gets_its_desired_or_updated_target_revision() {
    let a = app(json!({
        "metadata": {"name": "a"},
        "spec": {"sources": [
            {"repoURL": "https://git.example/one.git", "targetRevision": "main"},
            {"repoURL": "https://git.example/two.git", "targetRevision": "main"},
        ]},
    }));
    let updated = json!([
        {"repoURL": "https://git.example/one.git", "targetRevision": "main"},
        {"repoURL": "https://git.example/two.git", "targetRevision": "v2"},
    ]);
    let patch = sync_patch(
        &a,
        who("demo", "p1"),
        None,
        Some(updated),
        &["abc".into(), "".into()],
    );
    assert_eq!(
        patch["operation"]["sync"]["revisions"],
        json!(["abc", "v2"])
    );
    assert!(patch["operation"]["sync"].get("revision").is_none());
}

#[test]
fn the_sync_patch_leaves_status_alone_when_the_application_has_none() {
    let a = app(json!({"metadata": {"name": "a"}, "spec": {}}));
    assert!(
        sync_patch(&a, who("demo", "p1"), None, None, &[])
            .get("status")
            .is_none()
    );
}

#[test]
fn update_target_revision_sets_the_matching_source_ignoring_dot_git() {
    let a = with_state(Value::Null);
    let update = SourceUpdate {
        repo_url: "https://GIT.example/app".into(),
        desired_revision: Some("abc".into()),
        update_target_revision: true,
        ..SourceUpdate::default()
    };
    let new = updated_sources(&a, std::slice::from_ref(&update));
    assert_eq!(
        new,
        Ok(Some(
            json!({"repoURL": "https://git.example/app.git", "targetRevision": "abc"})
        ))
    );
    assert_eq!(desired_revisions(&a, &[update]), vec!["abc".to_string()]);
}

#[test]
fn a_source_is_matched_through_credentials_and_scp_style_urls() {
    let a = app(json!({
        "metadata": {"name": "a"},
        "spec": {"sources": [
            {"repoURL": "https://github.com/example/app.git", "targetRevision": "main"},
            {"repoURL": "ssh://git@github.com/example/config", "targetRevision": "main"},
        ]},
    }));
    let update = |url: &str, rev: &str| SourceUpdate {
        repo_url: url.into(),
        desired_revision: Some(rev.into()),
        ..SourceUpdate::default()
    };
    let updates = [
        update("https://token@GitHub.com/Example/App", "abc"),
        update("git@github.com:example/config.git", "def"),
    ];
    assert_eq!(desired_revisions(&a, &updates), vec!["abc", "def"]);
}

#[test]
fn a_source_update_for_an_unknown_repository_is_an_error() {
    let a = with_state(Value::Null);
    let update = SourceUpdate {
        repo_url: "https://elsewhere/x".into(),
        ..SourceUpdate::default()
    };
    assert!(matches!(
        updated_sources(&a, &[update]),
        Err(SourceError::NoMatchingSource { .. })
    ));
}

#[test]
fn helm_images_are_upserted_and_kustomize_images_replaced() {
    let a = app(json!({"metadata": {"name": "a"}, "spec": {"sources": [
        {"repoURL": "https://charts.example", "chart": "web", "helm": {"parameters": [{"name": "image.tag", "value": "1"}, {"name": "keep", "value": "k"}]}},
        {"repoURL": "https://git.example/cfg", "kustomize": {"images": ["old:1"]}}
    ]}}));
    let updates = vec![
        SourceUpdate {
            repo_url: "https://charts.example".into(),
            chart: Some("web".into()),
            helm: Some(HelmUpdate {
                images: vec![
                    HelmImageUpdate {
                        key: "image.tag".into(),
                        value: "2".into(),
                    },
                    HelmImageUpdate {
                        key: "image.repo".into(),
                        value: "r".into(),
                    },
                ],
            }),
            ..SourceUpdate::default()
        },
        SourceUpdate {
            repo_url: "https://git.example/cfg".into(),
            kustomize: Some(KustomizeUpdate {
                images: vec![KustomizeImageUpdate {
                    repo_url: "img".into(),
                    tag: Some("2".into()),
                    new_name: Some("mirror/img".into()),
                    ..KustomizeImageUpdate::default()
                }],
            }),
            ..SourceUpdate::default()
        },
    ];
    let Ok(Some(new)) = updated_sources(&a, &updates) else {
        panic!("expected new sources")
    };
    assert_eq!(
        new[0]["helm"]["parameters"],
        json!([{"name": "image.tag", "value": "2"}, {"name": "keep", "value": "k"}, {"name": "image.repo", "value": "r"}])
    );
    assert_eq!(new[1]["kustomize"]["images"], json!(["img=mirror/img:2"]));
}

fn healthy_app(reconciled: &str, revision: &str, health: &str) -> Application {
    let mut a = with_state(state("Succeeded", Some("p1"), revision, true));
    let status = a.status.get_or_insert_with(Default::default);
    status.reconciled_at = serde_json::from_value(json!(reconciled)).ok();
    status.sync = Some(SyncStatus {
        status: "Synced".into(),
        revision: Some(revision.into()),
        revisions: vec![],
    });
    status.health = Some(HealthStatus {
        status: health.into(),
        message: None,
    });
    a
}

#[test]
fn health_is_unknown_and_asks_for_refresh_while_argo_cd_status_is_stale() {
    let a = healthy_app("2026-11-25T10:00:04Z", "abc", "Healthy");
    assert!(matches!(
        assess_health(Some(&a), &["abc".into()]),
        AppHealth::Unknown { refresh: true, .. }
    ));
}

#[test]
fn health_is_healthy_when_reconciled_at_the_second_the_sync_finished() {
    let a = healthy_app("2026-11-25T10:00:05Z", "abc", "Healthy");
    assert_eq!(assess_health(Some(&a), &["abc".into()]), AppHealth::Healthy);
}

#[test]
fn health_at_another_revision_is_unhealthy() {
    let a = healthy_app("2026-11-25T10:00:09Z", "old", "Healthy");
    assert!(matches!(
        assess_health(Some(&a), &["abc".into()]),
        AppHealth::Unhealthy(_)
    ));
}

#[test]
fn degraded_is_unhealthy_and_progressing_is_progressing() {
    let a = healthy_app("2026-11-25T10:00:09Z", "abc", "Degraded");
    assert!(matches!(
        assess_health(Some(&a), &[]),
        AppHealth::Unhealthy(_)
    ));
    let a = healthy_app("2026-11-25T10:00:09Z", "abc", "Progressing");
    assert!(matches!(
        assess_health(Some(&a), &[]),
        AppHealth::Progressing(_)
    ));
}

#[test]
fn heavy_status_fields_are_dropped_when_parsed() {
    let a = app(json!({"metadata": {"name": "a"}, "spec": {}, "status": {
        "resources": [{"kind": "Deployment"}], "history": [{"id": 1}], "summary": {"images": ["x"]},
        "sync": {"status": "Synced"}
    }}));
    let back = serde_json::to_value(&a).unwrap_or_default();
    assert_eq!(back["status"], json!({"sync": {"status": "Synced"}}));
}

#[test]
fn health_from_a_comparison_in_the_same_second_as_the_sync_is_not_believed_until_synced() {
    let mut a = healthy_app("2026-11-25T10:00:05Z", "abc", "Healthy");
    if let Some(sync) = a.status.as_mut().and_then(|s| s.sync.as_mut()) {
        sync.status = "OutOfSync".into();
    }
    assert!(matches!(
        assess_health(Some(&a), &[]),
        AppHealth::Unknown { refresh: true, .. }
    ));
}

#[test]
fn health_after_a_successful_sync_that_left_a_permanent_diff_is_believed_from_a_later_comparison() {
    let mut a = healthy_app("2026-11-25T10:00:09Z", "abc", "Healthy");
    if let Some(sync) = a.status.as_mut().and_then(|s| s.sync.as_mut()) {
        sync.status = "OutOfSync".into();
    }
    assert_eq!(assess_health(Some(&a), &["abc".into()]), AppHealth::Healthy);
    assert_eq!(assess_health(Some(&a), &[]), AppHealth::Healthy);
}

#[test]
fn an_out_of_sync_application_is_judged_by_the_revision_its_last_sync_deployed() {
    // The branch moved on (Argo CD compares against the new head), but what
    // runs is what the Promotion's sync deployed.
    let mut a = healthy_app("2026-11-25T10:00:09Z", "abc", "Healthy");
    if let Some(sync) = a.status.as_mut().and_then(|s| s.sync.as_mut()) {
        sync.status = "OutOfSync".into();
        sync.revision = Some("newer".into());
    }
    assert_eq!(assess_health(Some(&a), &["abc".into()]), AppHealth::Healthy);
    assert!(matches!(
        assess_health(Some(&a), &["newer".into()]),
        AppHealth::Unhealthy(_)
    ));
}

#[test]
fn kargos_authorized_stage_annotation_counts_when_barges_is_absent() {
    let kargo = app(json!({"metadata": {"name": "a", "annotations": {
        "kargo.akuity.io/authorized-stage": "demo:dev"}}}));
    assert_eq!(
        authorized_stages(&kargo),
        Ok(vec![("demo".to_string(), "dev".to_string())])
    );
    let both = app(json!({"metadata": {"name": "a", "annotations": {
        "kargo.akuity.io/authorized-stage": "demo:dev",
        AUTHORIZED_STAGE_ANNOTATION: "demo:prod"}}}));
    assert_eq!(
        authorized_stages(&both),
        Ok(vec![("demo".to_string(), "prod".to_string())])
    );
}

#[test]
fn the_cache_keeps_the_spec_only_of_applications_a_stage_may_update() {
    let spec =
        json!({"source": {"repoURL": "https://git.example.com/a.git", "targetRevision": "main"}});
    let status = json!({"health": {"status": "Healthy"}});
    let mut unmanaged = app(json!({"metadata": {"name": "other"}, "spec": spec, "status": status}));
    unmanaged.slim_for_cache();
    assert_eq!(unmanaged.spec, Value::Null);
    assert!(unmanaged.status.is_some());

    for key in [
        AUTHORIZED_STAGE_ANNOTATION,
        KARGO_AUTHORIZED_STAGE_ANNOTATION,
    ] {
        let mut managed = app(json!({
            "metadata": {"name": "demo-dev", "annotations": {key: "demo:dev"}},
            "spec": spec, "status": status,
        }));
        managed.slim_for_cache();
        assert_eq!(managed.spec, spec, "{key}");
    }
}

#[test]
fn an_application_with_times_at_the_end_of_year_9999_is_still_read() {
    // The API server accepts them; a timestamp here ends two days earlier.
    let a = app(json!({
        "metadata": {"name": "odd", "namespace": "argocd"},
        "status": {
            "reconciledAt": "9999-12-31T23:59:59Z",
            "operationState": {"phase": "Succeeded", "startedAt": "2026-11-25T10:00:00Z",
                               "finishedAt": "9999-12-31T23:59:59Z"},
        },
    }));
    let status = a.status.unwrap_or_default();
    assert_eq!(
        status.reconciled_at.map(|t| t.0),
        Some(jiff::Timestamp::MAX)
    );
    let state = status.operation_state.unwrap_or_default();
    assert_eq!(state.finished_at.map(|t| t.0), Some(jiff::Timestamp::MAX));
    assert_eq!(
        state.started_at.map(|t| t.0.to_string()),
        Some("2026-11-25T10:00:00Z".to_string())
    );
}

#[test]
fn an_application_time_that_is_not_a_time_reads_as_absent() {
    let a = app(json!({
        "metadata": {"name": "odd", "namespace": "argocd"},
        "status": {"reconciledAt": "yesterday", "operationState": {"phase": "Running", "startedAt": 17}},
    }));
    let status = a.status.unwrap_or_default();
    assert_eq!(status.reconciled_at, None);
    assert_eq!(status.operation_state.unwrap_or_default().started_at, None);
}

/// An Application as the controller reads one from the API server, its
/// first source's Helm values nested `levels` deep.
fn app_with_values_nested(levels: usize) -> Application {
    let deep = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    let text = format!(
        r#"{{"items": [{{"metadata": {{"name": "a", "namespace": "argocd"}},
            "spec": {{"source": {{"repoURL": "https://git.example/app.git", "targetRevision": "main",
                                  "helm": {{"valuesObject": {{"v": {deep}}}}}}}}}}}]}}"#
    );
    #[derive(serde::Deserialize)]
    struct List {
        items: Vec<Application>,
    }
    match serde_json::from_str::<List>(&text) {
        Ok(mut list) => list.items.remove(0),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn an_application_nested_past_the_bound_reads_but_its_sources_are_not_rewritten() {
    let update = SourceUpdate {
        repo_url: "https://git.example/app".into(),
        desired_revision: Some("abc".into()),
        update_target_revision: true,
        ..SourceUpdate::default()
    };
    let deep = app_with_values_nested(5_000);
    assert_eq!(deep.metadata.name.as_deref(), Some("a"));
    assert_eq!(
        desired_revisions(&deep, std::slice::from_ref(&update)),
        vec!["abc".to_string()]
    );
    let refused = updated_sources(&deep, std::slice::from_ref(&update));
    assert_eq!(refused, Err(SourceError::TooDeep));
    assert_eq!(
        SourceError::TooDeep.to_string(),
        "spec nests deeper than 100 levels of arrays and objects: its sources are not rewritten"
    );
    // Within the bound, the values are written back whole.
    let within = app_with_values_nested(90);
    let Ok(Some(new)) = updated_sources(&within, &[update]) else {
        panic!("no sources")
    };
    assert_eq!(new["helm"], within.spec["source"]["helm"]);
}
