//! The conformance suite: every scenario runs, with the same assertions,
//! against real Argo CD (application-controller and repo-server built by
//! `make argocd`, deploying from git repositories served over `file://`) and
//! against the project's Argo CD double. Where they disagree the double is
//! wrong. The controller's backstop requeue is one hour, so every Promotion
//! here finishes only if watch events wake it.

#[path = "../support/mod.rs"]
mod support;
mod world;

use barge::api::{PromotionPhase, PromotionStepStatus};
use serde_json::{Value, json};
use support::{ArgoCdKind, TestResult, auto_stage_with, healthy_with, message, step, step_status};
use world::{GitRepo, Workload, World, update_sources};

/// `argocd-update` of one Application (by name or selector) to the Freight's commits.
fn update(app: Value, repos: &[&GitRepo]) -> Value {
    let mut entry = app;
    entry["sources"] = update_sources(repos);
    json!({"apps": [entry]})
}

/// The `update` step: `argocd-update` of Application `app` to the Freight's commits.
fn update_app(app: &str, repos: &[&GitRepo]) -> Value {
    step(
        "update",
        "argocd-update",
        update(json!({ "name": app }), repos),
    )
}

/// Only the `update` step, of `app` to its commit in `repo`.
fn just_update(app: &str, repo: &GitRepo) -> Value {
    json!([update_app(app, &[repo])])
}

/// `update`, then `wait` (`argocd-wait` with its default `waitFor`:
/// health, sync and no operation).
fn update_and_wait(app: &str, repo: &GitRepo) -> Value {
    update_and_wait_for(json!(null))(app, repo)
}

/// `update`, then `wait` for `wait_for` (null: the default).
fn update_and_wait_for(wait_for: Value) -> impl Fn(&str, &GitRepo) -> Value {
    move |app, repo| {
        let mut entry = json!({"name": app});
        if !wait_for.is_null() {
            entry["waitFor"] = wait_for.clone();
        }
        json!([
            update_app(app, &[repo]),
            step("wait", "argocd-wait", json!({ "apps": [entry] })),
        ])
    }
}

// 1
async fn a_cluster_promotion_task_names_the_app_through_a_task_var(kind: ArgoCdKind) -> TestResult {
    let w = World::start(kind).await?;
    let repo = GitRepo::new(Workload::Ready)?;
    let sha = repo.commit()?;
    let task = format!("argocd-sync-{}", w.h.ns);
    let cluster_task = json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "ClusterPromotionTask",
        "metadata": {"name": task},
        "spec": {
            "vars": [{"name": "argocdAppName", "value": "${{ ctx.project }}-${{ ctx.stage }}"}],
            "steps": [update_app("${{ vars.argocdAppName }}", &[&repo])],
        },
    });
    let app = w.app_name("dev");
    let objects = vec![
        cluster_task,
        w.application(&app, "dev", &[&repo], json!({})).await?,
    ];
    let steps = json!([{"task": {"name": task, "kind": "ClusterPromotionTask"}, "as": "deploy"}]);
    w.promote_to_dev(objects, &[(&repo, &sha)], steps).await?;

    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(
        step_status(&p, "deploy::update"),
        Some(PromotionStepStatus::Succeeded)
    );
    w.until_synced_to(&app, &[&sha]).await?;
    let argo = w.app(&app).await?;
    assert_eq!(argo["spec"]["source"]["targetRevision"], json!(sha));
    assert_eq!(w.deployments_of(&app, &sha).await?, 1);
    // The hard refresh Barge asks for with the sync is consumed: a pending
    // request would stop Barge from asking again when health is stale.
    w.until_app(&app, "the refresh annotation removed", |app| {
        app.pointer("/metadata/annotations/argocd.argoproj.io~1refresh")
            .is_none()
    })
    .await?;
    w.shutdown().await;
    Ok(())
}

// 2
async fn applications_chosen_by_label_selector_are_synced_if_authorized(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    let repo = GitRepo::new(Workload::Ready)?;
    let sha = repo.commit()?;
    let labels = json!({"metadata": {"labels": {"team": "web"}}});
    let (ours, other) = (w.app_name("dev"), format!("{}-other", w.h.ns));
    let objects = vec![
        w.application(&ours, "dev", &[&repo], labels.clone())
            .await?,
        w.application(&other, "other", &[&repo], labels).await?,
    ];
    let selector = json!({"selector": {"matchLabels": {"team": "web"}}});
    let steps = json!([step("update", "argocd-update", update(selector, &[&repo]))]);
    w.promote_to_dev(objects, &[(&repo, &sha)], steps).await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(w.deployments_of(&ours, &sha).await?, 1);
    assert_eq!(
        w.deployments_of(&other, &sha).await?,
        0,
        "an Application not authorizing the Stage was synced"
    );
    let outputs = p.status.map(|s| s.state).unwrap_or_default();
    assert_eq!(
        outputs["update"]["apps"],
        json!([{"name": ours, "namespace": w.h.argocd_ns}])
    );
    w.shutdown().await;
    Ok(())
}

// 3
async fn two_applications_in_one_step_are_each_synced_once(kind: ArgoCdKind) -> TestResult {
    let w = World::start(kind).await?;
    let repo = GitRepo::new(Workload::Ready)?;
    let sha = repo.commit()?;
    let (a, b) = (format!("{}-a", w.h.ns), format!("{}-b", w.h.ns));
    let mut config = update(json!({"name": a}), &[&repo]);
    config["apps"]
        .as_array_mut()
        .ok_or("apps")?
        .push(json!({"name": b, "sources": update_sources(&[&repo])}));
    let objects = vec![
        w.application(&a, "dev", &[&repo], json!({})).await?,
        w.application(&b, "dev", &[&repo], json!({})).await?,
    ];
    let steps = json!([step("update", "argocd-update", config)]);
    w.promote_to_dev(objects, &[(&repo, &sha)], steps).await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    for app in [&a, &b] {
        assert_eq!(w.deployments_of(app, &sha).await?, 1, "{app}");
        w.until_synced_to(app, &[&sha]).await?;
    }
    w.shutdown().await;
    Ok(())
}

// 4
async fn a_sync_the_api_server_rejects_fails_the_promotion_with_argo_cds_message(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    let dev = w.promote_once(Workload::Rejected, just_update).await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored, "{:?}", p.status);
    let argo = w.app(&dev.app).await?;
    assert_eq!(
        argo["status"]["operationState"]["phase"],
        json!("Failed"),
        "{}",
        argo["status"]["operationState"]
    );
    let argo_message = argo["status"]["operationState"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(!argo_message.is_empty());
    println!("{kind:?}: Argo CD's message: {argo_message}");
    let message = message(&p);
    assert!(
        message.contains(argo_message),
        "Promotion message {message:?} lacks Argo CD's {argo_message:?}"
    );
    assert!(message.contains(&dev.app), "{message}");
    assert_eq!(w.deployments_of(&dev.app, &dev.sha).await?, 0);
    w.shutdown().await;
    Ok(())
}

// 5
async fn health_that_turns_degraded_after_the_sync_fails_argocd_wait(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    let dev = w
        .promote_once(Workload::Progressing, update_and_wait)
        .await?;
    // Held: the synced workload reports Progressing until the test says otherwise.
    w.h.until(
        "p1",
        "argocd-wait seeing the Application Progressing",
        |p| {
            step_status(p, "wait") == Some(PromotionStepStatus::Running)
                && p.status
                    .as_ref()
                    .is_some_and(|s| s.state["wait"]["apps"][0]["health"] == json!("Progressing"))
        },
    )
    .await?;
    w.set_health(&dev.app, "Degraded").await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored, "{:?}", p.status);
    assert_eq!(
        step_status(&p, "update"),
        Some(PromotionStepStatus::Succeeded)
    );
    assert_eq!(step_status(&p, "wait"), Some(PromotionStepStatus::Errored));
    assert!(message(&p).contains("Degraded"), "{}", message(&p));
    w.shutdown().await;
    Ok(())
}

// 6
async fn a_controller_killed_mid_sync_and_restarted_syncs_exactly_once(
    kind: ArgoCdKind,
) -> TestResult {
    let mut w = World::start(kind).await?;
    let dev = w.promote_once(Workload::HeldSync, just_update).await?;
    w.until_sync_running(&dev.app).await?;
    w.h.stop_controller().await;
    w.h.start_controller();
    // Whether the restarted controller first sees the sync running or
    // finished, it must recognise it as its own and never start another.
    w.release_sync(&dev.app).await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(
        w.deployments_of(&dev.app, &dev.sha).await?,
        1,
        "Argo CD's history"
    );
    w.shutdown().await;
    Ok(())
}

// 7
async fn abort_ends_a_promotion_waiting_on_a_sync(kind: ArgoCdKind) -> TestResult {
    let w = World::start(kind).await?;
    let dev = w.promote_once(Workload::HeldSync, just_update).await?;
    w.until_sync_running(&dev.app).await?;
    w.h.until_awaiting("p1").await?;
    w.h.abort("p1").await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Aborted, "{:?}", p.status);
    assert_eq!(
        step_status(&p, "update"),
        Some(PromotionStepStatus::Aborted)
    );
    w.release_sync(&dev.app).await?;
    w.shutdown().await;
    Ok(())
}

// 8
async fn a_step_timeout_ends_a_sync_that_does_not_finish(kind: ArgoCdKind) -> TestResult {
    let w = World::start(kind).await?;
    let update_within_5s = |app: &str, repo: &GitRepo| {
        let mut update = update_app(app, &[repo]);
        update["retry"] = json!({"timeout": "5s"});
        json!([update])
    };
    let dev = w.promote_once(Workload::HeldSync, update_within_5s).await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored, "{:?}", p.status);
    assert!(
        message(&p).contains("timed out after 5s"),
        "{}",
        message(&p)
    );
    assert_eq!(w.deployments_of(&dev.app, &dev.sha).await?, 0);
    w.release_sync(&dev.app).await?;
    w.shutdown().await;
    Ok(())
}

// 9
async fn freight_flows_dev_staging_prod_by_auto_promotion_and_health(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    let repo = GitRepo::new(Workload::Ready)?;
    let sha = repo.commit()?;
    let steps = json!([update_app("${{ ctx.project }}-${{ ctx.stage }}", &[&repo])]);
    let auto_stage =
        |name: &str, upstream: Option<&str>| auto_stage_with(name, upstream, steps.clone());
    let mut objects = Vec::new();
    for name in ["dev", "staging", "prod"] {
        objects.push(
            w.application(&w.app_name(name), name, &[&repo], json!({}))
                .await?,
        );
    }
    objects.push(auto_stage("dev", None));
    objects.push(auto_stage("staging", Some("dev")));
    objects.push(auto_stage("prod", Some("staging")));
    w.h.apply(Value::Array(objects)).await?;
    let started = std::time::Instant::now();
    w.h.apply(w.freight("f1", &[(&repo, &sha)])).await?;
    w.h.stage_until("prod", "Healthy with f1", healthy_with("f1"))
        .await?;
    println!(
        "{kind:?}: Freight → prod Healthy in {:?}",
        started.elapsed()
    );
    for name in ["dev", "staging", "prod"] {
        assert_eq!(
            w.deployments_of(&w.app_name(name), &sha).await?,
            1,
            "{name}"
        );
    }
    w.shutdown().await;
    Ok(())
}

// 10
async fn a_multi_source_application_moves_each_source_to_its_commit(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    // Differently named objects, so both sources deploy side by side.
    let (first, second) = (
        GitRepo::named(Workload::Ready, "first")?,
        GitRepo::named(Workload::Ready, "second")?,
    );
    let (a, b) = (first.commit()?, second.commit()?);
    let app = w.app_name("dev");
    let objects = vec![
        w.application(&app, "dev", &[&first, &second], json!({}))
            .await?,
    ];
    let steps = json!([update_app(&app, &[&first, &second])]);
    w.promote_to_dev(objects, &[(&first, &a), (&second, &b)], steps)
        .await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    w.until_synced_to(&app, &[&a, &b]).await?;
    let argo = w.app(&app).await?;
    assert_eq!(argo["spec"]["sources"][0]["targetRevision"], json!(a));
    assert_eq!(argo["spec"]["sources"][1]["targetRevision"], json!(b));
    assert_eq!(w.deployments_of(&app, &a).await?, 1);
    w.shutdown().await;
    Ok(())
}

// 11
async fn an_application_with_automated_sync_is_promoted_to_the_freights_commit(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    let repo = GitRepo::new(Workload::Ready)?;
    let sha = repo.commit()?;
    let app = w.app_name("dev");
    let automated = json!({"spec": {"syncPolicy": {"automated": {"prune": true}}}});
    w.h.apply(w.application(&app, "dev", &[&repo], automated).await?)
        .await?;
    // Argo CD deploys main on its own first.
    let synced = |o: Option<&kube::api::DynamicObject>| {
        o.and_then(|o| o.data.pointer("/status/sync/status"))
            .and_then(Value::as_str)
            == Some("Synced")
    };
    tokio::time::timeout(
        support::PATIENCE,
        kube::runtime::wait::await_condition(w.applications(), &app, synced),
    )
    .await
    .map_err(|_| "the automated Application never synced on its own")??;
    // A newer commit lands on main; the Freight names the older one.
    let newer = repo.commit()?;
    w.promote_to_dev(vec![], &[(&repo, &sha)], just_update(&app, &repo))
        .await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    w.until_synced_to(&app, &[&sha]).await?;
    let argo = w.app(&app).await?;
    assert_eq!(argo["spec"]["source"]["targetRevision"], json!(sha));
    assert_eq!(
        w.deployments_of(&app, &newer).await?,
        0,
        "the branch head was deployed"
    );
    w.shutdown().await;
    Ok(())
}

// 12
async fn an_application_that_stays_out_of_sync_after_its_sync_is_healthy(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    // A permanent diff never reports Synced: the wait is for health.
    let for_health = update_and_wait_for(json!(["health", "operation"]));
    let dev = w.promote_once(Workload::PermanentDiff, for_health).await?;
    // The widget reports itself healthy once it exists.
    w.set_health(&dev.app, "Healthy").await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    let argo = w.app(&dev.app).await?;
    assert_eq!(
        argo["status"]["sync"]["status"],
        json!("OutOfSync"),
        "the scenario needs a permanent diff"
    );
    w.h.stage_until("dev", "Healthy with f1", healthy_with("f1"))
        .await?;
    w.shutdown().await;
    Ok(())
}

/// Each scenario once against the double and once against real Argo CD.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod double {
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() -> TestResult {
                    super::$scenario(ArgoCdKind::Double).await
                }
            )*
        }
        mod real_argocd {
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() -> TestResult {
                    super::$scenario(ArgoCdKind::Real).await
                }
            )*
        }
    };
}

conformance!(
    a_cluster_promotion_task_names_the_app_through_a_task_var,
    applications_chosen_by_label_selector_are_synced_if_authorized,
    two_applications_in_one_step_are_each_synced_once,
    a_sync_the_api_server_rejects_fails_the_promotion_with_argo_cds_message,
    health_that_turns_degraded_after_the_sync_fails_argocd_wait,
    a_controller_killed_mid_sync_and_restarted_syncs_exactly_once,
    abort_ends_a_promotion_waiting_on_a_sync,
    a_step_timeout_ends_a_sync_that_does_not_finish,
    freight_flows_dev_staging_prod_by_auto_promotion_and_health,
    a_multi_source_application_moves_each_source_to_its_commit,
    an_application_with_automated_sync_is_promoted_to_the_freights_commit,
    an_application_that_stays_out_of_sync_after_its_sync_is_healthy,
);

// Declared after the macro, which it uses.
mod semantics;
