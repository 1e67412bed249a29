//! Promotions with argocd-update against a real kube-apiserver and the Argo
//! CD double, with the controller's backstop requeue at one hour: every
//! Promotion here finishes only if the controller is woken by watch events.

mod support;

use std::time::Duration;

use barge::api::{PromotionPhase, PromotionStepStatus};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use support::{COMMIT, Harness, PATIENCE, TestResult, hang, message, promotion, step, step_status};

/// The double's knob that makes a sync take `delay`.
fn sync_delay(delay: &str) -> Value {
    json!({ "double.barge.dev/sync-delay": delay })
}

#[tokio::test]
async fn a_cluster_promotion_task_naming_the_app_by_expression_succeeds_as_soon_as_the_sync_ends()
-> TestResult {
    let h = Harness::start(|c| c).await?;
    let task = format!("argocd-sync-{}", h.ns);
    let cluster_task = json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "ClusterPromotionTask",
        "metadata": {"name": task},
        "spec": {
            "vars": [{"name": "argocdAppName", "value": "${{ ctx.project }}-${{ ctx.stage }}"}],
            "steps": [Harness::update_app("${{ vars.argocdAppName }}")],
        },
    });
    let objects = vec![cluster_task, h.application(&h.app_name("dev"), "dev")];
    let steps = json!([{"task": {"name": task, "kind": "ClusterPromotionTask"}, "as": "deploy"}]);
    h.promote_to_dev(objects, "c0ffee1", steps).await?;

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
    h.promote_app(json!({})).await?;
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
    let app = h.app_name("dev");
    let mut update = Harness::update_app("${{ vars.app }}");
    update["config"]["apps"][0]["sources"][0]["desiredRevision"] = json!("${{ vars.revision }}");
    let task = json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "PromotionTask",
        "metadata": {"name": "sync"},
        "spec": {
            "vars": [
                {"name": "app"},
                {"name": "revision", "value": "${{ commitFrom(\"https://git.example.com/demo/app.git\").id }}"},
            ],
            "steps": [update],
        },
    });
    let steps = json!([{"task": {"name": "sync"}, "vars": [{"name": "app", "value": app}]}]);
    h.promote_to_dev(vec![task, h.application(&app, "dev")], "feed123", steps)
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

/// The `update` step of the Applications labelled `team: web`.
fn update_team_web() -> Value {
    Harness::update_step(json!({"selector": {"matchLabels": {"team": "web"}}}))
}

#[tokio::test]
async fn an_app_chosen_by_label_selector_succeeds() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = h.app_name("dev");
    let web = json!({"team": "web"});
    let apps = vec![
        h.application_with(&app, "dev", web.clone(), json!({})),
        h.application_with("unauthorized", "other", web, json!({})),
    ];
    h.promote_to_dev(apps, COMMIT, json!([update_team_web()]))
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
    let first = h.app_name("dev");
    let second = format!("{first}-extra");
    let apps = vec![
        h.application_with(&first, "dev", json!({"team": "web"}), hang()),
        h.application_with(&second, "dev", json!({"team": "none"}), json!({})),
    ];
    h.promote_to_dev(apps, COMMIT, json!([update_team_web()]))
        .await?;
    h.reaches("p1", PromotionPhase::Running).await?;
    // Relabel the second Application while the first one's sync is held.
    let apps: Api<DynamicObject> =
        barge_argocd_double::fixtures::applications(h.client.clone(), &h.argocd_ns);
    apps.patch(
        &second,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "web"}}})),
    )
    .await?;
    let ns = h.argocd_ns.clone();
    h.journal
        .wait_for(PATIENCE, |j| !j.syncs_for(&ns, &second).is_empty())
        .await?;
    h.release(&first).await?;

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
    let (a, b) = (h.app_name("a"), h.app_name("b"));
    let mut update = Harness::update_app(&a);
    let mut second = update["config"]["apps"][0].clone();
    second["name"] = json!(b);
    if let Some(apps) = update["config"]["apps"].as_array_mut() {
        apps.push(second);
    }
    let apps = vec![h.application(&a, "dev"), h.application(&b, "dev")];
    h.promote_to_dev(apps, COMMIT, json!([update])).await?;
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
    h.promote_app(json!({"double.barge.dev/outcome": "fail:quota exceeded"}))
        .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let message = message(&p);
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
    let app = h.app_name("dev");
    let unauthorized = vec![h.application(&app, "some-other-stage")];
    h.promote_to_dev(unauthorized, COMMIT, json!([Harness::update_app(&app)]))
        .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let message = message(&p);
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
    h.promote_to_dev(vec![], COMMIT, json!([Harness::update_app("nowhere")]))
        .await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let message = message(&p);
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
    let mut update = Harness::update_app(&h.app_name("dev"));
    update["retry"] = json!({"timeout": "3s"});
    h.promote_to_dev(vec![h.dev_application(hang())], COMMIT, json!([update]))
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
    h.promote_app(hang()).await?;
    // Abort while the step is waiting on Argo CD.
    h.until_awaiting("p1").await?;
    h.abort("p1").await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Aborted);
    assert_eq!(
        step_status(&p, "update"),
        Some(PromotionStepStatus::Aborted)
    );
    h.shutdown().await;
    Ok(())
}

/// The step `report`, which always succeeds.
fn report() -> Value {
    step("report", "compose-output", json!({"done": true}))
}

#[tokio::test]
async fn continue_on_error_lets_the_promotion_succeed() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let mut failing = Harness::update_app("nowhere");
    failing["continueOnError"] = json!(true);
    h.promote_to_dev(vec![], COMMIT, json!([failing, report()]))
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
    let failing = Harness::update_app("nowhere");
    h.promote_to_dev(vec![], COMMIT, json!([failing, report(), always]))
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
    let app = h.promote_app(sync_delay("3s")).await?;
    h.reaches("p1", PromotionPhase::Running).await?;
    let ns = h.argocd_ns.clone();
    h.journal
        .wait_for(Duration::from_secs(30), |j| {
            !j.syncs_for(&ns, &app).is_empty()
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
    let app = h.app_name("dev");
    // p1's sync is held until p2 has been seen queued behind it.
    let objects = vec![h.dev_application(hang()), h.freight("f2", "bbb2222")];
    h.promote_to_dev(objects, "aaa1111", json!([Harness::update_app(&app)]))
        .await?;
    h.reaches("p1", PromotionPhase::Running).await?;
    h.apply(promotion("p2", "dev", "f2")).await?;
    let waiting = h
        .until("p2", "waiting Pending behind p1", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(PromotionPhase::Pending) && !s.awaiting.is_empty())
        })
        .await?;
    h.release(&app).await?;
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
    let app = h.app_name("dev");
    let progressing_then_healthy = json!({
        "double.barge.dev/health-after-sync": "progressing-then-healthy",
        "double.barge.dev/progressing-for": "2s",
    });
    let steps = json!([
        Harness::update_app(&app),
        step(
            "wait",
            "argocd-wait",
            json!({"apps": [{"name": app, "waitFor": ["health", "sync"]}]})
        ),
    ]);
    h.promote_to_dev(
        vec![h.dev_application(progressing_then_healthy)],
        COMMIT,
        steps,
    )
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
    let boom = step(
        "boom",
        "compose-output",
        json!({"n": "${{ len(map(1..3000000, {# * #})) }}"}),
    );
    h.promote_to_dev(vec![], COMMIT, json!([boom])).await?;
    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored);
    let message = message(&p);
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
    h.promote_app(hang()).await?;
    h.until_awaiting("p1").await?;
    let (refresh, at) = ("barge.dev/refresh", "2026-11-29T18:00:00Z");
    h.annotate::<barge::api::Promotion>("p1", refresh, at)
        .await?;
    h.annotate::<barge::api::Stage>("dev", refresh, at).await?;
    let p = h
        .until("p1", "the refresh recorded", move |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.last_handled_refresh == at)
        })
        .await?;
    assert_eq!(
        p.phase(),
        PromotionPhase::Running,
        "a refresh does not end the wait"
    );
    h.stage_until("dev", "the refresh recorded", move |s| {
        s.status
            .as_ref()
            .is_some_and(|s| s.last_handled_refresh == at)
    })
    .await?;
    h.shutdown().await;
    Ok(())
}
