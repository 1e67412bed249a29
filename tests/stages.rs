//! Stages against a real kube-apiserver and the Argo CD double, backstop one
//! hour: Freight flows dev → staging → prod on its own, held back by an
//! unhealthy Stage, and health is never believed from a stale Argo CD status.

mod support;

use std::time::{Duration, Instant};

use barge::api::{Freight, HealthState, Promotion, PromotionPhase};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use support::{Harness, TestResult, current_freight, healthy_with, stage_health};

const SYNC_DELAY: Duration = Duration::from_millis(300);

async fn pipeline(h: &Harness, dev_annotations: serde_json::Value) -> TestResult {
    h.apply(json!([
        h.application_with(&format!("{}-dev", h.ns), "dev", json!({}), dev_annotations),
        h.application(&format!("{}-staging", h.ns), "staging"),
        h.application(&format!("{}-prod", h.ns), "prod"),
        h.auto_stage("dev", None),
        h.auto_stage("staging", Some("dev")),
        h.auto_stage("prod", Some("staging")),
    ]))
    .await
}

#[tokio::test]
async fn one_freight_flows_from_dev_to_prod_on_its_own() -> TestResult {
    let h = Harness::start(|c| c.with_sync_delay(SYNC_DELAY)).await?;
    pipeline(&h, json!({})).await?;
    let start = Instant::now();
    h.apply(h.freight("f1", "c0ffee1")).await?;
    let prod = h
        .stage_until("prod", "healthy on f1", healthy_with("f1"))
        .await?;
    let took = start.elapsed();
    println!(
        "dev → staging → prod: {took:?} for 3 syncs of {SYNC_DELAY:?} each; overhead {:?}",
        took.saturating_sub(SYNC_DELAY * 3)
    );

    for stage in ["dev", "staging", "prod"] {
        let app = format!("{}-{stage}", h.ns);
        let syncs = h.journal.syncs_for(&h.argocd_ns, &app);
        assert_eq!(syncs.len(), 1, "{stage} synced {} times", syncs.len());
        assert_eq!(syncs[0].promotion(), Some(format!("{stage}.f1").as_str()));
    }
    let everywhere = |f: Option<&Freight>| {
        let status = f.and_then(|f| f.status.clone()).unwrap_or_default();
        ["dev", "staging", "prod"]
            .iter()
            .all(|s| status.currently_in.contains_key(*s) && status.verified_in.contains_key(*s))
    };
    let freight = Api::<Freight>::namespaced(h.client.clone(), &h.ns);
    let wait = kube::runtime::wait::await_condition(freight, "f1", everywhere);
    tokio::time::timeout(support::PATIENCE, wait)
        .await
        .map_err(|_| "f1 is not recorded as current and verified in every Stage")??;
    let conditions = prod.status.map(|s| s.conditions).unwrap_or_default();
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone());
    assert_eq!(ready.as_deref(), Some("True"));
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_degraded_application_holds_freight_back_until_it_recovers() -> TestResult {
    let h = Harness::start(|c| c.with_sync_delay(SYNC_DELAY)).await?;
    pipeline(
        &h,
        json!({"double.barge.dev/health-after-sync": "degraded"}),
    )
    .await?;
    h.apply(h.freight("f1", "c0ffee1")).await?;

    let dev = h
        .stage_until("dev", "Unhealthy on f1", |s| {
            stage_health(s) == Some(HealthState::Unhealthy)
                && current_freight(s).as_deref() == Some("f1")
        })
        .await?;
    let healthy = dev
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Healthy"));
    assert_eq!(healthy.map(|c| c.status).as_deref(), Some("False"));
    let promotions = Api::<Promotion>::namespaced(h.client.clone(), &h.ns)
        .list(&ListParams::default())
        .await?;
    assert!(
        promotions.items.iter().all(|p| p.spec.stage == "dev"),
        "Freight went past an unhealthy Stage"
    );

    // The workload recovers; Argo CD reports it on its next refresh.
    let apps: Api<DynamicObject> =
        barge_argocd_double::fixtures::applications(h.client.clone(), &h.argocd_ns);
    let recover = json!({"metadata": {"annotations": {
        "double.barge.dev/live-health": "healthy",
        "argocd.argoproj.io/refresh": "normal",
    }}});
    apps.patch(
        &format!("{}-dev", h.ns),
        &PatchParams::default(),
        &Patch::Merge(recover),
    )
    .await?;

    let result = h
        .stage_until("prod", "healthy on f1", healthy_with("f1"))
        .await;
    if result.is_err() {
        let dev = Api::<barge::api::Stage>::namespaced(h.client.clone(), &h.ns)
            .get("dev")
            .await?;
        let app = apps.get(&format!("{}-dev", h.ns)).await?;
        eprintln!(
            "dev Stage health: {:?}\ndev Application: {}",
            dev.status.and_then(|s| s.health),
            serde_json::to_string(&app.data)?
        );
    }
    result?;
    h.shutdown().await;
    Ok(())
}

/// Kargo's NewestFreight: each look promotes the newest Freight available.
/// Whether dev saw f1 alone before f2 arrived depends on when it looked,
/// so it gets one or two Promotions; either way never f1 after f2, never
/// one Freight twice, one at a time, and f2 reaches prod.
#[tokio::test]
async fn two_freights_back_to_back_end_with_the_newest_everywhere_promoted_one_at_a_time()
-> TestResult {
    let h = Harness::start(|c| c.with_sync_delay(SYNC_DELAY)).await?;
    pipeline(&h, json!({})).await?;
    h.apply(h.freight("f1", "aaaa111")).await?;
    h.apply(h.freight("f2", "bbbb222")).await?;

    h.stage_until("prod", "healthy on f2", healthy_with("f2"))
        .await?;
    let promotions = Api::<Promotion>::namespaced(h.client.clone(), &h.ns)
        .list(&ListParams::default())
        .await?;
    let dev: Vec<&Promotion> = promotions
        .items
        .iter()
        .filter(|p| p.spec.stage == "dev")
        .collect();
    assert!(dev.iter().all(|p| p.phase() == PromotionPhase::Succeeded));
    let span = |p: &Promotion| {
        let s = p.status.clone().unwrap_or_default();
        (s.started_at.map(|t| t.0), s.finished_at.map(|t| t.0))
    };
    let find = |name: &str| {
        dev.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .copied()
    };
    let p2 = find("dev.f2").ok_or("no dev.f2")?;
    let mut expected = vec![vec!["bbbb222".to_string()]];
    if let Some(p1) = find("dev.f1") {
        assert_eq!(dev.len(), 2, "dev gets at most one Promotion per Freight");
        assert!(
            span(p2).0 >= span(p1).1,
            "dev.f2 started before dev.f1 finished"
        );
        expected.insert(0, vec!["aaaa111".to_string()]);
    } else {
        assert_eq!(dev.len(), 1, "only the newest Freight");
    }
    let app = format!("{}-dev", h.ns);
    let revisions: Vec<_> = h
        .journal
        .syncs_for(&h.argocd_ns, &app)
        .into_iter()
        .filter_map(|s| s.resolved_revisions)
        .collect();
    assert_eq!(revisions, expected);
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn health_is_never_reported_healthy_from_a_stale_argo_cd_status() -> TestResult {
    let h = Harness::start(|c| c.with_sync_delay(SYNC_DELAY)).await?;
    // Argo CD never compares the Application after the sync on its own:
    // reconciledAt stays earlier than the sync's finishedAt.
    h.apply(json!([
        h.application_with(
            &format!("{}-dev", h.ns),
            "dev",
            json!({}),
            json!({"double.barge.dev/post-sync-refresh": "skip"})
        ),
        h.auto_stage("dev", None),
        h.freight("f1", "c0ffee1"),
    ]))
    .await?;
    let stale = h
        .stage_until("dev", "health reported for f1", |s| {
            current_freight(s).as_deref() == Some("f1") && stage_health(s).is_some()
        })
        .await?;
    // The Stage must not call it healthy; it asks Argo CD for a refresh
    // instead, and believes the health reported after it.
    assert_ne!(
        stage_health(&stale),
        Some(HealthState::Healthy),
        "{:?}",
        stale.status
    );
    let healthy = h
        .stage_until("dev", "healthy on f1", healthy_with("f1"))
        .await?;
    assert_eq!(stage_health(&healthy), Some(HealthState::Healthy));
    h.shutdown().await;
    Ok(())
}

/// The controller caches ended Promotions thin and keeps each Stage's newest
/// in full: when the newest is deleted, the Stage reads the one before it
/// in full from the API server and shows it as its last, health checks and
/// all, with its Freight current again.
#[tokio::test]
async fn a_stage_whose_last_promotion_is_deleted_shows_the_one_before_in_full() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let app = h.app_name("dev");
    h.apply(json!([
        h.application(&app, "dev"),
        support::stage("dev", json!([Harness::update_app(&app)])),
        h.freight("f1", "c0ffee1"),
        h.freight("f2", "c0ffee2"),
        support::promotion("p1", "dev", "f1"),
    ]))
    .await?;
    h.finished("p1").await?;
    h.apply(support::promotion("p2", "dev", "f2")).await?;
    h.finished("p2").await?;
    h.stage_until("dev", "p2 is its last Promotion", |s| {
        last_promotion(s).is_some_and(|p| p.name == "p2")
    })
    .await?;

    Api::<Promotion>::namespaced(h.client.clone(), &h.ns)
        .delete("p2", &Default::default())
        .await?;
    let dev = h
        .stage_until("dev", "p1 is its last Promotion again", |s| {
            last_promotion(s).is_some_and(|p| p.name == "p1")
        })
        .await?;
    let last = last_promotion(&dev)
        .and_then(|p| p.status)
        .unwrap_or_default();
    assert_eq!(last.phase, Some(PromotionPhase::Succeeded));
    assert_eq!(last.health_checks.len(), 1, "{last:?}");
    assert_eq!(last.step_execution_metadata.len(), 1, "{last:?}");
    assert_eq!(current_freight(&dev).as_deref(), Some("f1"));
    h.shutdown().await;
    Ok(())
}

fn last_promotion(stage: &barge::api::Stage) -> Option<barge::api::PromotionReference> {
    stage.status.as_ref()?.last_promotion.clone()
}
