//! The Stage reconciler's decisions, against an API server in memory:
//! given these objects, the reconcile writes this.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::{StageContext, reconcile};
use crate::api::{Freight, Promotion, Stage};
use crate::argocd::{AppHealthCheck, Application, HealthCheckRecord};
use crate::controller::Error;
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

/// Stage `dev` and the objects around it, as the caches and the API server
/// both hold them.
struct Given {
    stage: Stage,
    freight: Vec<Freight>,
    promotions: Vec<Promotion>,
    apps: Vec<Application>,
}

impl Given {
    fn dev(configure: impl FnOnce(Fixture<Stage>) -> Fixture<Stage>) -> Self {
        Self {
            stage: configure(stage(json!([{"uses": "argocd-update"}]))).build(),
            freight: vec![freight("f1", 0).build()],
            promotions: Vec::new(),
            apps: Vec::new(),
        }
    }

    fn with_freight(mut self, freight: Fixture<Freight>) -> Self {
        let freight = freight.build();
        self.freight
            .retain(|f| f.metadata.name != freight.metadata.name);
        self.freight.push(freight);
        self
    }

    fn promoted(mut self, promotion: Promotion) -> Self {
        self.promotions.push(promotion);
        self
    }

    /// Application `dev-app` running `revision` with `health`.
    fn app(mut self, revision: &str, health: &str) -> Self {
        self.apps = vec![application("dev-app", revision, health).build()];
        self
    }

    fn api(&self) -> FakeApi {
        let api = FakeApi::default().with(&self.stage);
        let api = self.freight.iter().fold(api, FakeApi::with);
        self.promotions.iter().fold(api, FakeApi::with)
    }

    async fn reconcile(self) -> Reconciled {
        let api = self.api();
        self.reconcile_on(api).await
    }

    async fn reconcile_on(self, api: FakeApi) -> Reconciled {
        let ctx = stage_context(&api, self.promotions, self.freight, self.apps);
        let action = reconcile(Arc::new(self.stage), ctx.clone()).await;
        Reconciled { action, api, ctx }
    }
}

struct Reconciled {
    action: Result<Action, Error>,
    api: FakeApi,
    ctx: Arc<StageContext>,
}

impl Reconciled {
    /// The Stage status written, which must have been.
    fn status(&self) -> Value {
        assert!(self.action.is_ok(), "reconcile failed: {:?}", self.action);
        self.api
            .status_writes::<Stage>("demo", "dev")
            .last()
            .map(|w| w.body["status"].clone())
            .unwrap_or_else(|| panic!("no status was written to Stage dev"))
    }

    /// The merge patches written to Freight `name`'s status.
    fn freight_patches(&self, name: &str) -> Vec<Value> {
        self.api
            .status_writes::<Freight>("demo", name)
            .into_iter()
            .map(|w| w.body["status"].clone())
            .collect()
    }

    fn created(&self) -> Vec<Value> {
        self.api.created::<Promotion>("demo")
    }
}

const EIGHT: &str = "2027-01-15T08:00:00Z";

#[tokio::test]
async fn a_stage_nothing_was_promoted_to_reports_it_and_touches_no_freight() {
    let run = Given::dev(|s| s).reconcile().await;

    assert!(matches!(&run.action, Ok(a) if *a == Action::requeue(BACKSTOP)));
    assert!(run.status().get("lastPromotion").is_none_or(Value::is_null));
    assert!(run.freight_patches("f1").is_empty());
    assert!(run.created().is_empty());
}

#[tokio::test]
async fn a_stage_whose_app_runs_the_promoted_revision_healthy_verifies_its_freight() {
    let run = Given::dev(|s| s)
        .promoted(succeeded("p1", "f1", EIGHT, "rev-1"))
        .app("rev-1", "Healthy")
        .reconcile()
        .await;

    assert_eq!(run.status()["health"]["status"], "Healthy");
    let patches = run.freight_patches("f1");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0]["currentlyIn"]["dev"]["since"], EIGHT);
    assert!(patches[0]["verifiedIn"]["dev"]["verifiedAt"].is_string());
    // A change of the Application wakes the Stage.
    assert_eq!(
        run.ctx
            .index
            .read()
            .waiters("Application", "argocd", "dev-app", &BTreeMap::new()),
        [("demo".to_string(), "dev".to_string())]
    );
}

#[tokio::test]
async fn an_app_still_progressing_places_the_freight_without_verifying_it() {
    let run = Given::dev(|s| s)
        .promoted(succeeded("p1", "f1", EIGHT, "rev-1"))
        .app("rev-1", "Progressing")
        .reconcile()
        .await;

    assert_eq!(run.status()["health"]["status"], "Progressing");
    let patches = run.freight_patches("f1");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert!(patches[0]["currentlyIn"]["dev"].is_object());
    assert!(patches[0].get("verifiedIn").is_none());
}

#[tokio::test]
async fn an_app_healthy_at_an_older_revision_does_not_verify_the_new_freight() {
    let run = Given::dev(|s| s)
        .promoted(succeeded("p1", "f1", EIGHT, "rev-2"))
        .app("rev-1", "Healthy")
        .reconcile()
        .await;

    assert_ne!(run.status()["health"]["status"], "Healthy");
    let patches = run.freight_patches("f1");
    assert!(patches.iter().all(|p| p.get("verifiedIn").is_none()));
}

#[tokio::test]
async fn freight_replaced_on_the_stage_is_no_longer_in_it_and_keeps_its_longest_stay() {
    let f1_in_dev = freight("f1", 0)
        .set("/status/currentlyIn", json!({"dev": {"since": EIGHT}}))
        .set("/status/verifiedIn", json!({"dev": {}}));
    let run = Given::dev(|s| s)
        .with_freight(f1_in_dev)
        .with_freight(freight("f2", 60))
        .promoted(succeeded("p1", "f1", EIGHT, "rev-1"))
        .promoted(succeeded("p2", "f2", "2027-01-15T09:00:00Z", "rev-2"))
        .app("rev-2", "Healthy")
        .reconcile()
        .await;

    assert_eq!(
        run.freight_patches("f1"),
        [json!({"currentlyIn": {"dev": null}, "verifiedIn": {"dev": {"longestSoak": "1h0m0s"}}})]
    );
    let f2_patches = run.freight_patches("f2");
    assert!(
        f2_patches[0]["currentlyIn"]["dev"].is_object(),
        "{f2_patches:?}"
    );
}

#[tokio::test]
async fn auto_promotion_creates_one_promotion_per_new_freight_owned_by_the_stage() {
    let run = Given::dev(|s| s.set("/spec/autoPromotion", json!(true)))
        .reconcile()
        .await;

    let created = run.created();
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
    let given = Given::dev(|s| s.set("/spec/autoPromotion", json!(true)));
    // Created by a racing reconcile: in the API server, not yet in the cache.
    let raced = promotion(&auto_promotion_name("dev", "f1"), 0).build();
    let api = given.api().with(&raced);

    let run = given.reconcile_on(api).await;

    assert!(run.action.is_ok(), "{:?}", run.action);
}

#[tokio::test]
async fn a_stage_without_auto_promotion_creates_nothing() {
    let run = Given::dev(|s| s).reconcile().await;

    assert!(run.created().is_empty());
}

#[tokio::test]
async fn an_unchanged_stage_is_not_rewritten() {
    let first = Given::dev(|s| s)
        .promoted(succeeded("p1", "f1", EIGHT, "rev-1"))
        .app("rev-1", "Progressing")
        .reconcile()
        .await;
    // The Stage and Freight as the watches bring them back after the first writes.
    let status = first.status();
    let f1_in_dev = freight("f1", 0).set("/status/currentlyIn", json!({"dev": {"since": EIGHT}}));

    let second = Given::dev(|s| s.set("/status", status))
        .with_freight(f1_in_dev)
        .promoted(succeeded("p1", "f1", EIGHT, "rev-1"))
        .app("rev-1", "Progressing")
        .reconcile()
        .await;

    assert!(second.action.is_ok(), "{:?}", second.action);
    assert!(second.api.writes().is_empty(), "{:?}", second.api.writes());
}

#[tokio::test]
async fn health_of_an_application_outside_the_watched_namespace_says_why_it_is_unknown() {
    let mut p1 = succeeded("p1", "f1", EIGHT, "rev-1");
    if let Some(check) = p1.status.as_mut().and_then(|s| s.health_checks.first_mut()) {
        check.config = Some(
            json!({"apps": [{"name": "dev-app", "namespace": "elsewhere",
                                               "desiredRevisions": ["rev-1"]}]}),
        );
    }
    let run = Given::dev(|s| s).promoted(p1).reconcile().await;

    let health = &run.status()["health"];
    assert_eq!(health["status"], "Unknown");
    assert!(
        health["issues"][0]
            .as_str()
            .is_some_and(|i| i.contains("only in namespace \"argocd\"")),
        "{health}"
    );
}

/// `dev` taking Freight from `staging` once it has soaked there for an hour.
fn soaking_dev(stage: Fixture<Stage>) -> Fixture<Stage> {
    stage.set("/spec/autoPromotion", json!(true)).set(
        "/spec/requestedFreight",
        json!([{"origin": {"kind": "Warehouse", "name": "w"},
                "sources": {"stages": ["staging"], "requiredSoakTime": "1h"}}]),
    )
}

#[tokio::test]
async fn freight_still_soaking_upstream_is_not_promoted_and_the_stage_looks_again_when_it_has_soaked()
 {
    let since = Timestamp::now() - jiff::SignedDuration::from_mins(10);
    let in_staging = freight("f1", 0)
        .set(
            "/status/currentlyIn",
            json!({"staging": {"since": since.to_string()}}),
        )
        .set("/status/verifiedIn", json!({"staging": {}}));

    let run = Given::dev(soaking_dev)
        .with_freight(in_staging)
        .reconcile()
        .await;

    assert!(run.created().is_empty(), "{:?}", run.created());
    let Ok(action) = &run.action else {
        panic!("{:?}", run.action)
    };
    // 50 minutes less the moments the test took: the instant f1 has soaked.
    let wait = requeue_secs(action);
    assert!(
        wait.is_some_and(|w| (2990.0..=3000.0).contains(&w)),
        "{action:?}"
    );
}

/// The seconds after which `action` looks again (kube's Action shows them
/// only in its Debug form).
fn requeue_secs(action: &Action) -> Option<f64> {
    let text = format!("{action:?}");
    let start = text.find("requeue_after: Some(")? + "requeue_after: Some(".len();
    let rest = &text[start..];
    let end = rest.find("s)")?;
    rest[..end].parse().ok()
}

#[tokio::test]
async fn freight_that_has_soaked_upstream_long_enough_is_promoted() {
    let in_staging = freight("f1", 0).set(
        "/status/verifiedIn",
        json!({"staging": {"longestSoak": "2h0m0s"}}),
    );

    let run = Given::dev(soaking_dev)
        .with_freight(in_staging)
        .reconcile()
        .await;

    assert_eq!(run.created().len(), 1, "{:?}", run.created());
}

#[tokio::test]
async fn a_stage_without_promotion_steps_passes_on_available_freight_as_verified() {
    let control_flow = |s: Fixture<Stage>| s.set("/spec/promotionTemplate/spec/steps", json!([]));

    let run = Given::dev(control_flow)
        .with_freight(freight("f2", 60))
        .reconcile()
        .await;

    assert!(
        run.created().is_empty(),
        "a control-flow Stage promotes nothing"
    );
    for name in ["f1", "f2"] {
        let patches = run.freight_patches(name);
        assert!(
            patches
                .iter()
                .any(|p| p["verifiedIn"]["dev"]["verifiedAt"].is_string()),
            "{name}: {patches:?}"
        );
    }
}

#[tokio::test]
async fn freight_promoted_again_stays_in_the_stage_instead_of_leaving_for_its_older_stay() {
    // f1, then f2, then f1 again (a rollback): f1 is current and in dev.
    let f1_in_dev = freight("f1", 0).set("/status/currentlyIn", json!({"dev": {"since": EIGHT}}));
    let f2_in_dev = freight("f2", 60).set("/status/currentlyIn", json!({"dev": {"since": EIGHT}}));
    let run = Given::dev(|s| s)
        .with_freight(f1_in_dev)
        .with_freight(f2_in_dev)
        .promoted(succeeded("p1", "f1", EIGHT, "rev-1"))
        .promoted(succeeded("p2", "f2", "2027-01-15T09:00:00Z", "rev-2"))
        .promoted(succeeded("p3", "f1", "2027-01-15T10:00:00Z", "rev-1"))
        .app("rev-1", "Progressing")
        .reconcile()
        .await;

    assert!(run.action.is_ok(), "{:?}", run.action);
    // Nothing to change on f1: already in dev, not yet verified.
    assert_eq!(run.freight_patches("f1"), Vec::<Value>::new());
    assert_eq!(
        run.freight_patches("f2"),
        [json!({"currentlyIn": {"dev": null}})]
    );
}
