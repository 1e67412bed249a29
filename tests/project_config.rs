//! Projects configured as Kargo configures them, against a real
//! kube-apiserver and the Argo CD double: auto-promotion switched on per
//! Stage by the ProjectConfig's `promotionPolicies` (the Stages themselves
//! say nothing), a selector policy switching it off, a policy change taking
//! effect at once, and both auto-promotion selection policies.

mod support;

use barge::api::{ProjectConfig, Promotion, Stage};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, TestResult, auto_stage_with, healthy_with, promotion};

/// A Stage of `name` syncing `<ns>-<name>`, taking Freight directly or from
/// `upstream`, with no auto-promotion of its own.
fn stage(h: &Harness, name: &str, upstream: Option<&str>, labels: Value, options: Value) -> Value {
    let app = h.app_name(name);
    let update = json!({"as": "update", "uses": "argocd-update",
        "config": Harness::argocd_update(json!({"name": app}))});
    let mut stage = auto_stage_with(name, upstream, json!([update]));
    if let Some(spec) = stage["spec"].as_object_mut() {
        spec.remove("autoPromotion");
    }
    stage["metadata"]["labels"] = labels;
    if !options.is_null() {
        stage["spec"]["requestedFreight"][0]["sources"]["autoPromotionOptions"] = options;
    }
    stage
}

fn project_config(h: &Harness, policies: Value) -> Value {
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "ProjectConfig",
        "metadata": {"name": h.ns},
        "spec": {"promotionPolicies": policies},
    })
}

fn auto_promotion_condition(stage: &Stage) -> Option<(String, String, String)> {
    stage
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "AutoPromotion")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn promotions_of(h: &Harness, stage: &str) -> Result<Vec<Promotion>, support::Error> {
    Ok(Api::<Promotion>::namespaced(h.client.clone(), &h.ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.spec.stage == stage)
        .collect())
}

/// Asks the Stage to be looked at again and waits until it has: the
/// reconcile that handled the value saw everything before it.
async fn refreshed(h: &Harness, stage: &str, value: &str) -> Result<Stage, support::Error> {
    h.annotate::<Stage>(stage, "barge.dev/refresh", value)
        .await?;
    let value = value.to_string();
    h.stage_until(stage, "the refresh handled", move |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.last_handled_refresh == value)
    })
    .await
}

#[tokio::test]
async fn a_pipeline_configured_only_through_project_config_auto_promotes_dev_staging_prod()
-> TestResult {
    let h = Harness::start(|c| c).await?;
    let mut objects = vec![project_config(
        &h,
        json!([
            {"stage": "dev", "autoPromotionEnabled": true},
            {"stageSelector": {"name": "regex:^staging$"}, "autoPromotionEnabled": true},
            {"stageSelector": {"matchLabels": {"tier": "production"}}, "autoPromotionEnabled": true},
        ]),
    )];
    for (name, upstream, labels) in [
        ("dev", None, json!({})),
        ("staging", Some("dev"), json!({})),
        ("prod", Some("staging"), json!({"tier": "production"})),
    ] {
        objects.push(h.application(&h.app_name(name), name));
        objects.push(stage(&h, name, upstream, labels, Value::Null));
    }
    objects.push(h.freight("f1", "abc1234"));
    h.apply(Value::Array(objects)).await?;

    for name in ["dev", "staging", "prod"] {
        let s = h
            .stage_until(name, "healthy with f1", healthy_with("f1"))
            .await?;
        assert!(
            s.status
                .as_ref()
                .is_some_and(|st| st.auto_promotion_enabled)
        );
        let (status, reason, message) =
            auto_promotion_condition(&s).ok_or("no AutoPromotion condition")?;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "ProjectConfigPolicy")
        );
        assert!(
            message.contains(&format!("ProjectConfig {} promotionPolicies[", h.ns)),
            "{message}"
        );
    }
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(h.client.clone(), &h.ns)
        .list(&ListParams::default())
        .await?;
    let auto_promoted = |stage: &str| {
        events.items.iter().any(|e| {
            e.reason.as_deref() == Some("AutoPromoted")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(stage)
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("promotionPolicies["))
        })
    };
    for name in ["dev", "staging", "prod"] {
        assert!(
            auto_promoted(name),
            "no AutoPromoted Event naming the policy on {name}"
        );
    }
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_stage_a_selector_policy_disables_is_not_auto_promoted_until_the_policy_changes()
-> TestResult {
    let h = Harness::start(|c| c).await?;
    let policies = |prod_enabled: bool| {
        json!([
            {"stageSelector": {"matchLabels": {"tier": "production"}}, "autoPromotionEnabled": prod_enabled},
            {"stageSelector": {"name": "glob:*"}, "autoPromotionEnabled": true},
        ])
    };
    let mut prod = stage(
        &h,
        "prod",
        Some("dev"),
        json!({"tier": "production"}),
        Value::Null,
    );
    // The Stage's own field does not override a matching policy.
    prod["spec"]["autoPromotion"] = json!(true);
    h.apply(json!([
        project_config(&h, policies(false)),
        h.application(&h.app_name("dev"), "dev"),
        h.application(&h.app_name("prod"), "prod"),
        stage(&h, "dev", None, json!({}), Value::Null),
        prod,
        h.freight("f1", "abc1234"),
    ]))
    .await?;
    h.stage_until("dev", "healthy with f1", healthy_with("f1"))
        .await?;
    // f1 is verified in dev; prod looks again after that, and declines.
    let prod = refreshed(&h, "prod", "after-dev").await?;
    let (status, reason, message) =
        auto_promotion_condition(&prod).ok_or("no AutoPromotion condition")?;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ProjectConfigPolicy")
    );
    assert!(
        message.contains("promotionPolicies[0]") && message.contains("disables"),
        "{message}"
    );
    assert!(
        !prod
            .status
            .as_ref()
            .is_some_and(|s| s.auto_promotion_enabled)
    );
    assert!(
        promotions_of(&h, "prod").await?.is_empty(),
        "prod was auto-promoted"
    );

    // Switching the policy on wakes the Stage (the ProjectConfig's watch).
    let configs = Api::<ProjectConfig>::namespaced(h.client.clone(), &h.ns);
    configs
        .patch(
            &h.ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"promotionPolicies": policies(true)}})),
        )
        .await?;
    h.stage_until("prod", "healthy with f1", healthy_with("f1"))
        .await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn match_upstream_follows_the_upstream_stage_back_while_newest_freight_keeps_the_newest()
-> TestResult {
    let h = Harness::start(|c| c).await?;
    let mut objects = vec![project_config(
        &h,
        json!([
            {"stage": "dev", "autoPromotionEnabled": false},
            {"stageSelector": {"name": "glob:*"}, "autoPromotionEnabled": true},
        ]),
    )];
    for (name, upstream, options) in [
        ("dev", None, Value::Null),
        (
            "mirror",
            Some("dev"),
            json!({"selectionPolicy": "MatchUpstream"}),
        ),
        (
            "newest",
            Some("dev"),
            json!({"selectionPolicy": "NewestFreight"}),
        ),
    ] {
        objects.push(h.application(&h.app_name(name), name));
        objects.push(stage(&h, name, upstream, json!({}), options));
    }
    let mut f1 = h.freight("f1", "abc1234");
    f1["discoveredAt"] = json!("2026-11-01T00:00:00Z");
    let mut f2 = h.freight("f2", "def5678");
    f2["discoveredAt"] = json!("2026-11-02T00:00:00Z");
    objects.extend([f1, f2, promotion("dev-f2", "dev", "f2")]);
    h.apply(Value::Array(objects)).await?;
    for name in ["dev", "mirror", "newest"] {
        h.stage_until(name, "healthy with f2", healthy_with("f2"))
            .await?;
    }

    // dev goes back to the older f1 (f1 was never in dev: a new Promotion).
    h.apply(json!([promotion("dev-f1", "dev", "f1")])).await?;
    h.stage_until("dev", "healthy with f1", healthy_with("f1"))
        .await?;
    // MatchUpstream follows dev to f1.
    h.stage_until("mirror", "healthy with f1", healthy_with("f1"))
        .await?;
    // NewestFreight keeps f2, the newest Freight verified in dev: looked at
    // again after mirror moved (the Freight cache they share then knew f1
    // was in dev), it promotes nothing.
    let newest = refreshed(&h, "newest", "after-mirror").await?;
    assert_eq!(support::current_freight(&newest).as_deref(), Some("f2"));
    let freight: Vec<String> = promotions_of(&h, "newest")
        .await?
        .iter()
        .map(|p| p.spec.freight.clone())
        .collect();
    assert_eq!(freight, vec!["f2"]);
    h.shutdown().await;
    Ok(())
}
