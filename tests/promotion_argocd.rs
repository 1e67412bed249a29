//! Promotions with argocd-update against a real kube-apiserver and the Argo
//! CD double, with the controller's backstop requeue at one hour: every
//! Promotion here finishes only if the controller is woken by watch events.

mod support;

use std::time::Duration;

use barge::api::{PromotionPhase, PromotionStepStatus};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;
use support::{Harness, TestResult, step_status};

fn step(alias: &str, uses: &str, config: serde_json::Value) -> serde_json::Value {
    json!({"as": alias, "uses": uses, "config": config})
}

fn app_name(h: &Harness, stage: &str) -> String {
    format!("{}-{stage}", h.ns)
}

#[tokio::test]
async fn a_cluster_promotion_task_naming_the_app_by_expression_succeeds_as_soon_as_the_sync_ends()
-> TestResult {
    let h = Harness::start(|c| c).await?;
    let task = format!("argocd-sync-{}", h.ns);
    h.apply(json!([
        {
            "apiVersion": "barge.dev/v1alpha1", "kind": "ClusterPromotionTask",
            "metadata": {"name": task},
            "spec": {
                "vars": [{"name": "argocdAppName", "value": "${{ ctx.project }}-${{ ctx.stage }}"}],
                "steps": [step("update", "argocd-update", Harness::argocd_update(json!({"name": "${{ vars.argocdAppName }}"})))],
            },
        },
        h.application(&app_name(&h, "dev"), "dev"),
        h.freight("f1", "c0ffee1"),
        h.stage("dev", json!([{"task": {"name": task, "kind": "ClusterPromotionTask"}, "as": "deploy"}]), json!([])),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;

    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(
        step_status(&p, "deploy::update"),
        Some(PromotionStepStatus::Succeeded)
    );
    assert_eq!(h.syncs_for("p1"), 1);
    let syncs = h.journal.syncs_for_promotion("p1");
    assert_eq!(
        syncs[0].resolved_revisions.as_deref(),
        Some(&["c0ffee1".to_string()][..])
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_step_written_directly_in_the_stage_succeeds() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    h.apply(json!([
        h.application(&app, "dev"),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(json!({"name": app}))
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(h.syncs_for("p1"), 1);
    let checks = p.status.map(|s| s.health_checks).unwrap_or_default();
    assert_eq!(
        checks.len(),
        1,
        "a succeeded argocd-update registers a health check"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_namespaced_promotion_task_with_a_commit_from_var_succeeds() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    let mut config = Harness::argocd_update(json!({"name": "${{ vars.app }}"}));
    config["apps"][0]["sources"][0]["desiredRevision"] = json!("${{ vars.revision }}");
    h.apply(json!([
        {
            "apiVersion": "barge.dev/v1alpha1", "kind": "PromotionTask",
            "metadata": {"name": "sync"},
            "spec": {
                "vars": [
                    {"name": "app"},
                    {"name": "revision", "value": "${{ commitFrom(\"https://git.example.com/demo/app.git\").id }}"},
                ],
                "steps": [step("update", "argocd-update", config)],
            },
        },
        h.application(&app, "dev"),
        h.freight("f1", "feed123"),
        h.stage("dev", json!([{"task": {"name": "sync"}, "vars": [{"name": "app", "value": app}]}]), json!([])),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(
        step_status(&p, "task-1::update"),
        Some(PromotionStepStatus::Succeeded)
    );
    let syncs = h.journal.syncs_for_promotion("p1");
    assert_eq!(syncs.len(), 1);
    assert_eq!(
        syncs[0].resolved_revisions.as_deref(),
        Some(&["feed123".to_string()][..])
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_app_chosen_by_label_selector_succeeds() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    let selector = json!({"selector": {"matchLabels": {"team": "web"}}});
    h.apply(json!([
        h.application_with(&app, "dev", json!({"team": "web"}), json!({})),
        h.application_with("unauthorized", "other", json!({"team": "web"}), json!({})),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(selector)
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    let syncs = h.journal.syncs_for_promotion("p1");
    assert_eq!(syncs.len(), 1, "only the authorized Application is synced");
    assert_eq!(syncs[0].app.name, app);
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_app_whose_labels_change_to_match_while_the_step_waits_is_synced_too() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let first = app_name(&h, "dev");
    let second = format!("{first}-extra");
    let selector = json!({"selector": {"matchLabels": {"team": "web"}}});
    h.apply(json!([
        h.application_with(
            &first,
            "dev",
            json!({"team": "web"}),
            json!({"double.barge.dev/sync-delay": "3s"})
        ),
        h.application_with(&second, "dev", json!({"team": "none"}), json!({})),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(selector)
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    h.reaches("p1", PromotionPhase::Running).await?;
    // Relabel the second Application while the first one's sync is running.
    let apps: Api<DynamicObject> =
        barge_argocd_double::fixtures::applications(h.client.clone(), &h.argocd_ns);
    apps.patch(
        &second,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "web"}}})),
    )
    .await?;

    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    let mut synced: Vec<String> = h
        .journal
        .syncs_for_promotion("p1")
        .into_iter()
        .map(|s| s.app.name)
        .collect();
    synced.sort();
    assert_eq!(synced, vec![first, second]);
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn two_apps_in_one_step_are_both_synced_once() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let (a, b) = (app_name(&h, "a"), app_name(&h, "b"));
    let mut config = Harness::argocd_update(json!({"name": a}));
    let mut second = config["apps"][0].clone();
    second["name"] = json!(b);
    if let Some(apps) = config["apps"].as_array_mut() {
        apps.push(second);
    }
    h.apply(json!([
        h.application(&a, "dev"),
        h.application(&b, "dev"),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step("update", "argocd-update", config)]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(h.journal.syncs_for(&h.argocd_ns, &a).len(), 1);
    assert_eq!(h.journal.syncs_for(&h.argocd_ns, &b).len(), 1);
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_failed_sync_errors_the_promotion_with_argo_cds_message() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    h.apply(json!([
        h.application_with(
            &app,
            "dev",
            json!({}),
            json!({"double.barge.dev/outcome": "fail:quota exceeded"})
        ),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(json!({"name": app}))
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let message = p.status.map(|s| s.message).unwrap_or_default();
    assert!(
        message.contains("quota exceeded") && message.contains("\"update\""),
        "{message}"
    );
    assert_eq!(
        h.syncs_for("p1"),
        1,
        "a failed sync is not retried by Barge"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_application_without_the_authorization_errors_naming_the_annotation() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    h.apply(json!([
        h.application(&app, "some-other-stage"),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(json!({"name": app}))
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let message = p.status.map(|s| s.message).unwrap_or_default();
    assert!(
        message.contains("barge.dev/authorized-stage") && message.contains("not authorized"),
        "{message}"
    );
    assert_eq!(h.syncs_for("p1"), 0);
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_missing_application_errors_the_promotion() -> TestResult {
    let h = Harness::start(|c| c).await?;
    h.apply(json!([
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(json!({"name": "nowhere"}))
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let message = p.status.map(|s| s.message).unwrap_or_default();
    assert!(
        message.contains("\"nowhere\"") && message.contains("not found"),
        "{message}"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_three_second_timeout_fires_within_a_second_of_its_deadline() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    let mut update = step(
        "update",
        "argocd-update",
        Harness::argocd_update(json!({"name": app})),
    );
    update["retry"] = json!({"timeout": "3s"});
    h.apply(json!([
        h.application_with(
            &app,
            "dev",
            json!({}),
            json!({"double.barge.dev/outcome": "hang"})
        ),
        h.freight("f1", "abc1234"),
        h.stage("dev", json!([update]), json!([])),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let status = p.status.unwrap_or_default();
    assert!(
        status.message.contains("timed out after 3s"),
        "{}",
        status.message
    );
    let meta = &status.step_execution_metadata[0];
    let (Some(started), Some(finished)) = (&meta.started_at, &meta.finished_at) else {
        return Err("step times missing".into());
    };
    // Timestamps have second precision: 3 s after the start, at most 4 s.
    let took = finished.0.as_second() - started.0.as_second();
    assert!((3..=4).contains(&took), "timed out {took}s after the start");
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn abort_while_running_ends_the_promotion_aborted() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    h.apply(json!([
        h.application_with(
            &app,
            "dev",
            json!({}),
            json!({"double.barge.dev/outcome": "hang"})
        ),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(json!({"name": app}))
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    // Abort while the step is waiting on Argo CD.
    h.until("p1", "waiting on the Application", |p| {
        p.status.as_ref().is_some_and(|s| !s.awaiting.is_empty())
    })
    .await?;
    let promotions: Api<barge::api::Promotion> = Api::namespaced(h.client.clone(), &h.ns);
    let abort = json!({"metadata": {"annotations": {"barge.dev/abort": "terminate"}}});
    promotions
        .patch("p1", &PatchParams::default(), &Patch::Merge(abort))
        .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Aborted);
    assert_eq!(
        step_status(&p, "update"),
        Some(PromotionStepStatus::Aborted)
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn continue_on_error_lets_the_promotion_succeed() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let mut failing = step(
        "update",
        "argocd-update",
        Harness::argocd_update(json!({"name": "nowhere"})),
    );
    failing["continueOnError"] = json!(true);
    h.apply(json!([
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([
                failing,
                step("report", "compose-output", json!({"done": true}))
            ]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(
        step_status(&p, "update"),
        Some(PromotionStepStatus::Errored)
    );
    assert_eq!(
        step_status(&p, "report"),
        Some(PromotionStepStatus::Succeeded)
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn steps_after_a_failure_are_skipped_unless_they_run_always() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let mut always = step("cleanup", "compose-output", json!({"cleaned": true}));
    always["if"] = json!("${{ always() }}");
    h.apply(json!([
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([
                step(
                    "update",
                    "argocd-update",
                    Harness::argocd_update(json!({"name": "nowhere"}))
                ),
                step("report", "compose-output", json!({"done": true})),
                always,
            ]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    assert_eq!(
        step_status(&p, "report"),
        Some(PromotionStepStatus::Skipped)
    );
    assert_eq!(
        step_status(&p, "cleanup"),
        Some(PromotionStepStatus::Succeeded)
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_restarted_controller_completes_the_promotion_with_exactly_one_sync() -> TestResult {
    let mut h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    h.apply(json!([
        h.application_with(
            &app,
            "dev",
            json!({}),
            json!({"double.barge.dev/sync-delay": "3s"})
        ),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(json!({"name": app}))
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    h.reaches("p1", PromotionPhase::Running).await?;
    let (ns, name) = (h.argocd_ns.clone(), app.clone());
    h.journal
        .wait_for(Duration::from_secs(30), |j| {
            !j.syncs_for(&ns, &name).is_empty()
        })
        .await?;
    h.stop_controller().await;
    h.start_controller();
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(h.syncs_for("p1"), 1);
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn promotions_of_one_stage_run_one_at_a_time_in_creation_order() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    h.apply(json!([
        h.application_with(
            &app,
            "dev",
            json!({}),
            json!({"double.barge.dev/sync-delay": "1s"})
        ),
        h.freight("f1", "aaa1111"),
        h.freight("f2", "bbb2222"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(json!({"name": app}))
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    h.reaches("p1", PromotionPhase::Running).await?;
    h.apply(h.promotion("p2", "dev", "f2")).await?;
    let waiting = h
        .until("p2", "waiting Pending behind p1", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(PromotionPhase::Pending) && !s.awaiting.is_empty())
        })
        .await?;
    let awaited = waiting.status.map(|s| s.awaiting).unwrap_or_default();
    assert_eq!(
        awaited.first().and_then(|a| a.name.clone()).as_deref(),
        Some("p1")
    );

    let first = h.finished("p1").await?;
    let second = h.finished("p2").await?;
    assert_eq!(first.phase(), PromotionPhase::Succeeded);
    assert_eq!(second.phase(), PromotionPhase::Succeeded);
    let (Some(end1), Some(start2)) = (
        first.status.and_then(|s| s.finished_at),
        second.status.and_then(|s| s.started_at),
    ) else {
        return Err("missing times".into());
    };
    assert!(start2.0 >= end1.0, "p2 started before p1 ended");
    let syncs = h.journal.syncs_for(&h.argocd_ns, &app);
    let revisions: Vec<_> = syncs
        .iter()
        .filter_map(|s| s.resolved_revisions.clone())
        .collect();
    assert_eq!(
        revisions,
        vec![vec!["aaa1111".to_string()], vec!["bbb2222".to_string()]]
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn argocd_wait_succeeds_once_the_synced_application_turns_healthy() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    h.apply(json!([
        h.application_with(
            &app,
            "dev",
            json!({}),
            json!({"double.barge.dev/health-after-sync": "progressing-then-healthy", "double.barge.dev/progressing-for": "2s"})
        ),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([
                step("update", "argocd-update", Harness::argocd_update(json!({"name": app}))),
                step("wait", "argocd-wait", json!({"apps": [{"name": app, "waitFor": ["health", "sync"]}]})),
            ]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    let outputs = p.status.map(|s| s.state).unwrap_or_default();
    assert_eq!(outputs["wait"]["apps"][0]["health"], json!("Healthy"));
    h.shutdown().await;
    Ok(())
}

// argocd-wait failing when health turns Degraded after the sync is the
// conformance scenario `health_that_turns_degraded_after_the_sync_fails_argocd_wait`
// (tests/conformance), which holds the workload Progressing until the test
// turns it Degraded, against the double and real Argo CD alike.

#[tokio::test]
async fn a_hostile_expression_is_cut_off_and_the_promotion_errors_saying_so() -> TestResult {
    let h = Harness::start(|c| c).await?;
    h.apply(json!([
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "boom",
                "compose-output",
                json!({"n": "${{ len(map(1..3000000, {# * #})) }}"})
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let message = p.status.map(|s| s.message).unwrap_or_default();
    assert!(
        message.contains("budget") && message.contains("\"boom\"") && message.contains("config.n"),
        "{message}"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_refresh_annotation_is_handled_at_once_by_a_waiting_promotion_and_its_stage() -> TestResult
{
    let h = Harness::start(|c| c).await?;
    let app = app_name(&h, "dev");
    h.apply(json!([
        h.application_with(
            &app,
            "dev",
            json!({}),
            json!({"double.barge.dev/outcome": "hang"})
        ),
        h.freight("f1", "abc1234"),
        h.stage(
            "dev",
            json!([step(
                "update",
                "argocd-update",
                Harness::argocd_update(json!({"name": app}))
            )]),
            json!([])
        ),
        h.promotion("p1", "dev", "f1"),
    ]))
    .await?;
    h.until("p1", "waiting on the Application", |p| {
        p.status.as_ref().is_some_and(|s| !s.awaiting.is_empty())
    })
    .await?;
    let refresh =
        json!({"metadata": {"annotations": {"barge.dev/refresh": "2026-11-29T18:00:00Z"}}});
    Api::<barge::api::Promotion>::namespaced(h.client.clone(), &h.ns)
        .patch("p1", &PatchParams::default(), &Patch::Merge(&refresh))
        .await?;
    Api::<barge::api::Stage>::namespaced(h.client.clone(), &h.ns)
        .patch("dev", &PatchParams::default(), &Patch::Merge(&refresh))
        .await?;
    let p = h
        .until("p1", "the refresh recorded", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.last_handled_refresh == "2026-11-29T18:00:00Z")
        })
        .await?;
    assert_eq!(
        p.phase(),
        PromotionPhase::Running,
        "a refresh does not end the wait"
    );
    h.stage_until("dev", "the refresh recorded", |s| {
        s.status
            .as_ref()
            .is_some_and(|s| s.last_handled_refresh == "2026-11-29T18:00:00Z")
    })
    .await?;
    h.shutdown().await;
    Ok(())
}
