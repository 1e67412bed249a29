//! The Stage reconciler's decisions, against an API server in memory:
//! given these objects, the reconcile writes this.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::reconcile;
use crate::api::{Freight, Promotion, Stage};
use crate::argocd::{AppHealthCheck, HealthCheckRecord};
use crate::controller::fixtures::{
    BACKSTOP, FakeApi, Fixture, application, freight, promotion, stage, stage_context,
};
use crate::stage::auto_promotion_name;

/// A Promotion of `freight` that succeeded, having synced Application
/// `dev-app` to `revision`.
fn succeeded(name: &str, freight: &str, finished: &str, revision: &str) -> Promotion {
    let record = HealthCheckRecord {
        apps: vec![AppHealthCheck {
            name: "dev-app".into(),
            namespace: "argocd".into(),
            desired_revisions: vec![revision.into()],
        }],
    };
    promotion(name, 0)
        .set("/spec/freight", json!(freight))
        .set("/status/phase", json!("Succeeded"))
        .set(
            "/status/freight",
            json!({"name": freight, "origin": {"kind": "Warehouse", "name": "w"}}),
        )
        .set("/status/finishedAt", json!(finished))
        .set(
            "/status/healthChecks",
            json!([{"uses": "argocd-update", "config": record}]),
        )
        .build()
}

fn dev() -> Fixture<Stage> {
    stage(json!([{"uses": "argocd-update"}]))
}

/// The merge patches written to Freight `name`'s status.
fn freight_patches(api: &FakeApi, name: &str) -> Vec<Value> {
    api.status_writes::<Freight>("demo", name)
        .into_iter()
        .map(|w| w.body["status"].clone())
        .collect()
}

fn stage_status(api: &FakeApi) -> Value {
    api.status_writes::<Stage>("demo", "dev")
        .last()
        .map(|w| w.body["status"].clone())
        .unwrap_or_else(|| panic!("no status was written to Stage dev"))
}

#[tokio::test]
async fn a_stage_nothing_was_promoted_to_reports_it_and_touches_no_freight() {
    let dev = dev().build();
    let f1 = freight("f1", 0).build();
    let api = FakeApi::default().with(&dev).with(&f1);
    let ctx = stage_context(&api, vec![], vec![f1], vec![]);

    let action = reconcile(Arc::new(dev), ctx).await;

    assert!(matches!(action, Ok(a) if a == Action::requeue(BACKSTOP)));
    let status = stage_status(&api);
    assert!(status.get("lastPromotion").is_none_or(Value::is_null));
    assert!(freight_patches(&api, "f1").is_empty());
    assert!(api.created::<Promotion>("demo").is_empty());
}

#[tokio::test]
async fn a_stage_whose_app_runs_the_promoted_revision_healthy_verifies_its_freight() {
    let dev = dev().build();
    let f1 = freight("f1", 0).build();
    let p1 = succeeded("p1", "f1", "2027-01-15T08:00:00Z", "rev-1");
    let app = application("dev-app", "rev-1", "Healthy").build();
    let api = FakeApi::default().with(&dev).with(&f1).with(&p1);
    let ctx = stage_context(&api, vec![p1], vec![f1], vec![app]);

    reconcile(Arc::new(dev), ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        stage_status(&api)["health"]["status"],
        "Healthy",
        "{}",
        stage_status(&api)
    );
    let patches = freight_patches(&api, "f1");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(
        patches[0]["currentlyIn"]["dev"]["since"],
        "2027-01-15T08:00:00Z"
    );
    assert!(patches[0]["verifiedIn"]["dev"]["verifiedAt"].is_string());
    // A change of the Application wakes the Stage.
    assert_eq!(
        ctx.index
            .read()
            .waiters("Application", "argocd", "dev-app", &BTreeMap::new()),
        [("demo".to_string(), "dev".to_string())]
    );
}

#[tokio::test]
async fn an_app_still_progressing_places_the_freight_without_verifying_it() {
    let dev = dev().build();
    let f1 = freight("f1", 0).build();
    let p1 = succeeded("p1", "f1", "2027-01-15T08:00:00Z", "rev-1");
    let app = application("dev-app", "rev-1", "Progressing").build();
    let api = FakeApi::default().with(&dev).with(&f1).with(&p1);
    let ctx = stage_context(&api, vec![p1], vec![f1], vec![app]);

    reconcile(Arc::new(dev), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(stage_status(&api)["health"]["status"], "Progressing");
    let patches = freight_patches(&api, "f1");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert!(patches[0]["currentlyIn"]["dev"].is_object());
    assert!(patches[0].get("verifiedIn").is_none());
}

#[tokio::test]
async fn an_app_healthy_at_an_older_revision_does_not_verify_the_new_freight() {
    let dev = dev().build();
    let f1 = freight("f1", 0).build();
    let p1 = succeeded("p1", "f1", "2027-01-15T08:00:00Z", "rev-2");
    let app = application("dev-app", "rev-1", "Healthy").build();
    let api = FakeApi::default().with(&dev).with(&f1).with(&p1);
    let ctx = stage_context(&api, vec![p1], vec![f1], vec![app]);

    reconcile(Arc::new(dev), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_ne!(stage_status(&api)["health"]["status"], "Healthy");
    assert!(
        freight_patches(&api, "f1")
            .iter()
            .all(|p| p.get("verifiedIn").is_none())
    );
}

#[tokio::test]
async fn freight_replaced_on_the_stage_is_no_longer_currently_in_it() {
    let dev = dev().build();
    let f1 = freight("f1", 0)
        .set(
            "/status/currentlyIn",
            json!({"dev": {"since": "2027-01-15T08:00:00Z"}}),
        )
        .set("/status/verifiedIn", json!({"dev": {}}))
        .build();
    let f2 = freight("f2", 60).build();
    let p1 = succeeded("p1", "f1", "2027-01-15T08:00:00Z", "rev-1");
    let p2 = succeeded("p2", "f2", "2027-01-15T09:00:00Z", "rev-2");
    let app = application("dev-app", "rev-2", "Healthy").build();
    let api = FakeApi::default().with(&dev).with(&f1).with(&f2);
    let ctx = stage_context(&api, vec![p1, p2], vec![f1, f2], vec![app]);

    reconcile(Arc::new(dev), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        freight_patches(&api, "f1"),
        [json!({"currentlyIn": {"dev": null}})]
    );
    let f2_patches = freight_patches(&api, "f2");
    assert!(
        f2_patches[0]["currentlyIn"]["dev"].is_object(),
        "{f2_patches:?}"
    );
}

#[tokio::test]
async fn auto_promotion_creates_one_promotion_per_new_freight_owned_by_the_stage() {
    let dev = dev().set("/spec/autoPromotion", json!(true)).build();
    let f1 = freight("f1", 0).build();
    let api = FakeApi::default().with(&dev).with(&f1);
    let ctx = stage_context(&api, vec![], vec![f1], vec![]);

    reconcile(Arc::new(dev), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let created = api.created::<Promotion>("demo");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(
        created[0]["metadata"]["name"],
        auto_promotion_name("dev", "f1")
    );
    assert_eq!(created[0]["metadata"]["labels"]["barge.dev/stage"], "dev");
    assert_eq!(
        created[0]["metadata"]["ownerReferences"][0]["uid"],
        "uid-dev"
    );
    assert_eq!(created[0]["spec"], json!({"stage": "dev", "freight": "f1"}));
}

#[tokio::test]
async fn an_auto_promotion_another_reconcile_created_first_is_not_an_error() {
    let dev = dev().set("/spec/autoPromotion", json!(true)).build();
    let f1 = freight("f1", 0).build();
    let raced = promotion(&auto_promotion_name("dev", "f1"), 0).build();
    let api = FakeApi::default().with(&dev).with(&f1).with(&raced);
    let ctx = stage_context(&api, vec![], vec![f1], vec![]);

    let action = reconcile(Arc::new(dev), ctx).await;

    assert!(action.is_ok(), "{action:?}");
}

#[tokio::test]
async fn a_stage_without_auto_promotion_creates_nothing() {
    let dev = dev().build();
    let f1 = freight("f1", 0).build();
    let api = FakeApi::default().with(&dev).with(&f1);
    let ctx = stage_context(&api, vec![], vec![f1], vec![]);

    reconcile(Arc::new(dev), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert!(api.created::<Promotion>("demo").is_empty());
}

#[tokio::test]
async fn an_unchanged_stage_is_not_rewritten() {
    let f1 = freight("f1", 0).build();
    let p1 = succeeded("p1", "f1", "2027-01-15T08:00:00Z", "rev-1");
    let app = application("dev-app", "rev-1", "Progressing").build();
    let api = FakeApi::default().with(&dev().build()).with(&f1).with(&p1);
    let ctx = stage_context(&api, vec![p1.clone()], vec![f1.clone()], vec![app.clone()]);
    reconcile(Arc::new(dev().build()), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The Stage and Freight as the watches bring them back after the first writes.
    let dev = dev().set("/status", stage_status(&api)).build();
    let f1 = freight("f1", 0)
        .set(
            "/status/currentlyIn",
            json!({"dev": {"since": "2027-01-15T08:00:00Z"}}),
        )
        .build();
    let writes_before = api.writes().len();

    let ctx = stage_context(&api, vec![p1], vec![f1], vec![app]);
    reconcile(Arc::new(dev), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(api.writes().len(), writes_before, "{:?}", api.writes());
}
