//! The Promotion reconciler's decisions, against an API server in memory:
//! given these objects, the reconcile writes this.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use futures::channel::mpsc;
use jiff::Timestamp;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};

use super::reconcile;
use crate::api::PromotionStepStatus;
use crate::api::{Promotion, Stage};
use crate::argocd::Application;
use crate::await_index::AwaitTarget;
use crate::controller::fixtures::{
    BACKSTOP, FakeApi, Fixture, ScriptedStep, application, fails, freight, promotion,
    promotion_context, registry, scripted, stage, succeeds, waits_on_application,
};
use crate::controller::{Context, Error};
use crate::promotion::engine::StepResult;
use crate::steps::{Registry, StepRun};

fn update_steps() -> Value {
    json!([{"uses": "test-update", "as": "update", "config": {"app": "${{ ctx.stage }}-app"}}])
}

/// The Promotions a change of this object wakes.
fn waiting_on(kind: &str, namespace: &str, name: &str, ctx: &Context) -> Vec<(String, String)> {
    ctx.index
        .read()
        .waiters(kind, namespace, name, &BTreeMap::new())
}

#[tokio::test]
async fn a_new_promotion_freezes_its_plan_with_its_freight_and_starts_running() {
    let p1 = promotion("p1", 0).build();
    let api = FakeApi::default()
        .with(&stage(update_steps()).build())
        .with(&freight("f1", 0).build())
        .with(&p1);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p1.clone()], vec![]);

    let action = reconcile(Arc::new(p1), ctx).await;

    assert!(matches!(action, Ok(a) if a == Action::requeue(BACKSTOP)));
    let status = api.promotion_status("p1");
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["freight"]["name"], "f1");
    assert_eq!(status["plan"]["steps"][0]["uses"], "test-update");
    // Expressions are evaluated when each step runs, not frozen into the plan.
    assert_eq!(
        status["plan"]["steps"][0]["config"]["app"],
        "${{ ctx.stage }}-app"
    );
    assert_eq!(api.event_reasons(), ["PromotionStarted"]);
}

/// Stage `dev` taking Freight from `staging` once soaked there an hour.
fn dev_after_staging() -> Stage {
    stage(update_steps())
        .set(
            "/spec/requestedFreight",
            json!([{"origin": {"kind": "Warehouse", "name": "w"},
                    "sources": {"stages": ["staging"], "requiredSoakTime": "1h"}}]),
        )
        .build()
}

#[tokio::test]
async fn a_promotion_of_freight_still_soaking_upstream_waits_pending_until_the_instant_it_has_soaked()
 {
    let since = Timestamp::now() - jiff::SignedDuration::from_mins(10);
    let soaking = freight("f1", 0)
        .set("/status/verifiedIn", json!({"staging": {}}))
        .set(
            "/status/currentlyIn",
            json!({"staging": {"since": since.to_string()}}),
        )
        .build();
    let p1 = promotion("p1", 0).build();
    let api = FakeApi::default()
        .with(&dev_after_staging())
        .with(&soaking)
        .with(&p1);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p1.clone()], vec![]);

    let action = reconcile(Arc::new(p1), ctx).await;

    let status = api.promotion_status("p1");
    assert_eq!(status["phase"], "Pending", "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("becomes available to Stage \"dev\" at")),
        "{status}"
    );
    let Ok(action) = action else {
        panic!("{action:?}")
    };
    assert_ne!(
        action,
        Action::requeue(BACKSTOP),
        "a timer at the instant, not the backstop"
    );
    assert!(status.get("plan").is_none(), "nothing runs before then");
}

#[tokio::test]
async fn a_promotion_of_freight_not_verified_upstream_ends_errored_naming_the_field() {
    let p1 = promotion("p1", 0).build();
    let api = FakeApi::default()
        .with(&dev_after_staging())
        .with(&freight("f1", 0).build())
        .with(&p1);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p1.clone()], vec![]);

    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let status = api.promotion_status("p1");
    assert_eq!(status["phase"], "Errored");
    assert!(
        status["message"].as_str().is_some_and(
            |m| m.starts_with("spec.freight: Freight \"f1\" is not available to Stage \"dev\"")
        ),
        "{status}"
    );
}

#[tokio::test]
async fn a_promotion_to_a_missing_stage_ends_errored_naming_the_field() {
    let p1 = promotion("p1", 0).build();
    let api = FakeApi::default().with(&freight("f1", 0).build()).with(&p1);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p1.clone()], vec![]);

    let action = reconcile(Arc::new(p1), ctx).await;

    assert!(matches!(action, Ok(a) if a == Action::await_change()));
    let status = api.promotion_status("p1");
    assert_eq!(status["phase"], "Errored");
    assert_eq!(
        status["message"],
        "spec.stage: Stage \"dev\" not found in namespace \"demo\""
    );
    assert_eq!(api.event_reasons(), ["PromotionErrored"]);
}

#[tokio::test]
async fn a_stage_the_api_server_cannot_read_is_retried_and_nothing_is_written() {
    let p1 = promotion("p1", 0).build();
    let api = FakeApi::default()
        .with(&freight("f1", 0).build())
        .with(&p1)
        .failing::<Stage>(Some("demo"), "dev");
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p1.clone()], vec![]);

    let action = reconcile(Arc::new(p1), ctx).await;

    assert!(matches!(action, Err(Error::Read { what, .. }) if what == "Stage \"dev\""));
    assert!(api.writes().is_empty(), "wrote {:?}", api.writes());
}

/// `levels` objects, each `{"a": ...}`, around a string.
fn nested_objects(levels: usize) -> serde_json::Value {
    let mut deep = json!("leaf");
    for _ in 0..levels {
        deep = json!({ "a": deep });
    }
    deep
}

/// Reconciles `p1` once against `api`; its status after.
async fn planned_once(api: &FakeApi, p1: Promotion) -> serde_json::Value {
    let (ctx, _) = promotion_context(api, registry(vec![]), vec![p1.clone()], vec![]);
    let action = reconcile(Arc::new(p1), ctx).await;
    // Not retried: reading it again would find the same.
    assert!(
        matches!(&action, Ok(a) if *a == Action::await_change()),
        "{action:?}"
    );
    api.promotion_status("p1")
}

#[tokio::test]
async fn a_stage_config_nested_deeper_than_the_controller_reads_errors_the_promotion_naming_the_step()
 {
    let steps =
        json!([{"uses": "test-update", "as": "update", "config": {"v": nested_objects(200)}}]);
    let p1 = promotion("p1", 0).build();
    let api = FakeApi::default()
        .with(&stage(steps).build())
        .with(&freight("f1", 0).build())
        .with(&p1);

    let status = planned_once(&api, p1).await;

    assert_eq!(status["phase"], "Errored");
    assert_eq!(
        status["message"],
        "steps[1] (alias \"update\"): config: nests deeper than 100 levels of arrays and objects, the most a free-form value may",
    );
}

#[tokio::test]
async fn a_freight_whose_artifact_metadata_nests_too_deep_errors_the_promotion_naming_it() {
    let p1 = promotion("p1", 0).build();
    let freight = freight("f1", 0)
        .set(
            "/artifacts",
            json!([{"subscriptionName": "s", "version": "1", "metadata": nested_objects(300)}]),
        )
        .build();
    let api = FakeApi::default()
        .with(&stage(update_steps()).build())
        .with(&freight)
        .with(&p1);

    let status = planned_once(&api, p1).await;

    assert_eq!(status["phase"], "Errored");
    assert_eq!(
        status["message"],
        "Freight \"f1\" cannot be read: artifacts[0].metadata nests deeper than 100 levels of arrays and objects",
    );
}

#[tokio::test]
async fn a_promotion_queued_behind_a_running_one_waits_pending_on_it() {
    let p0 = promotion("p0", 0).running(update_steps()).build();
    let p1 = promotion("p1", 10).build();
    let api = FakeApi::default()
        .with(&stage(update_steps()).build())
        .with(&freight("f1", 0).build())
        .with(&p0)
        .with(&p1);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p0, p1.clone()], vec![]);

    reconcile(Arc::new(p1), ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let status = api.promotion_status("p1");
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["awaiting"][0]["kind"], "Promotion");
    assert_eq!(status["awaiting"][0]["name"], "p0");
    assert!(status.get("plan").is_none_or(Value::is_null));
    // Its turn comes from p0's end, not from the backstop.
    assert_eq!(
        waiting_on("Promotion", "demo", "p0", &ctx),
        [("demo".to_string(), "p1".to_string())]
    );
}

#[tokio::test]
async fn a_promotion_third_in_the_queue_waits_on_the_one_directly_ahead() {
    let p0 = promotion("p0", 0).running(update_steps()).build();
    let p1 = promotion("p1", 10).build();
    let p2 = promotion("p2", 20).build();
    let api = FakeApi::default()
        .with(&stage(update_steps()).build())
        .with(&freight("f1", 0).build())
        .with(&p0)
        .with(&p1)
        .with(&p2);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p0, p1, p2.clone()], vec![]);

    reconcile(Arc::new(p2), ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // p0's end wakes p1 alone; p2's recorded wait stays true until p1 ends.
    let status = api.promotion_status("p2");
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["awaiting"][0]["name"], "p1");
    assert_eq!(
        waiting_on("Promotion", "demo", "p1", &ctx),
        [("demo".to_string(), "p2".to_string())]
    );
    assert!(waiting_on("Promotion", "demo", "p0", &ctx).is_empty());
}

#[tokio::test]
async fn a_blocker_the_cache_still_shows_running_but_that_ended_does_not_block() {
    let cached_p0 = promotion("p0", 0).running(update_steps()).build();
    let live_p0 = promotion("p0", 0)
        .running(update_steps())
        .set("/status/phase", json!("Succeeded"))
        .build();
    let p1 = promotion("p1", 10).build();
    let api = FakeApi::default()
        .with(&stage(update_steps()).build())
        .with(&freight("f1", 0).build())
        .with(&live_p0)
        .with(&p1);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![cached_p0, p1.clone()], vec![]);

    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(api.promotion_status("p1")["phase"], "Running");
}

/// Two Promotions of one Stage both started (each decided from a cache
/// that did not show the other yet): the later keeps its turn instead of
/// going back to wait, where the Promotions queued behind it would wait on
/// it and it on them.
#[tokio::test]
async fn a_started_promotion_keeps_its_turn_when_another_started_one_sorts_ahead() {
    let p0 = promotion("p0", 0).running(update_steps()).build();
    let p1 = promotion("p1", 10).running(update_steps()).build();
    let api = FakeApi::default()
        .with(&stage(update_steps()).build())
        .with(&freight("f1", 0).build())
        .with(&p0)
        .with(&p1);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p0, p1.clone()], vec![]);

    let _ = reconcile(Arc::new(p1), ctx.clone()).await;

    assert_ne!(api.promotion_status("p1")["phase"], "Pending");
    assert!(waiting_on("Promotion", "demo", "p0", &ctx).is_empty());
}

/// A running Promotion `p1` with the plan `steps`, reconciled once with the
/// step kinds `kinds`, alone on its Stage.
struct RunOnce {
    action: Result<Action, Error>,
    api: FakeApi,
    ctx: Arc<Context>,
    woken: mpsc::UnboundedReceiver<ObjectRef<Promotion>>,
}

impl RunOnce {
    async fn of(p1: Fixture<Promotion>, kinds: Vec<ScriptedStep>) -> Self {
        Self::given(p1, kinds, |_| {}).await
    }

    /// With `before` run on the context first (to register other waiters).
    async fn given(
        p1: Fixture<Promotion>,
        kinds: Vec<ScriptedStep>,
        before: impl FnOnce(&Context),
    ) -> Self {
        let p1 = p1.build();
        let api = FakeApi::default().with(&p1);
        let (ctx, woken) = promotion_context(&api, registry(kinds), vec![p1.clone()], vec![]);
        before(&ctx);
        let action = reconcile(Arc::new(p1), ctx.clone()).await;
        Self {
            action,
            api,
            ctx,
            woken,
        }
    }

    /// The status written, which must have been.
    fn status(&self) -> Value {
        assert!(self.action.is_ok(), "reconcile failed: {:?}", self.action);
        self.api.promotion_status("p1")
    }
}

/// The metric line of one Promotion that finished Succeeded.
const FINISHED_ONCE: &str = "barge_promotions_finished_total{phase=\"Succeeded\"} 1";

fn running(steps: Value) -> Fixture<Promotion> {
    promotion("p1", 0).running(steps)
}

#[tokio::test]
async fn a_step_that_waits_records_what_it_waits_on_and_is_woken_by_it() {
    let run = RunOnce::of(
        running(update_steps()),
        vec![waits_on_application("test-update", "dev-app")],
    )
    .await;

    assert!(matches!(&run.action, Ok(a) if *a != Action::await_change()));
    let status = run.status();
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["awaiting"][0]["alias"], "update");
    assert_eq!(status["awaiting"][0]["kind"], "Application");
    assert_eq!(status["awaiting"][0]["name"], "dev-app");
    assert_eq!(status["stepExecutionMetadata"][0]["status"], "Running");
    assert_eq!(
        waiting_on("Application", "argocd", "dev-app", &run.ctx),
        [("demo".to_string(), "p1".to_string())]
    );
}

#[tokio::test]
async fn a_wake_up_that_changes_nothing_writes_nothing() {
    let waits = || vec![waits_on_application("test-update", "dev-app")];
    let first = RunOnce::of(running(update_steps()), waits()).await;
    // The Promotion as the watch brings it back after the first write.
    let p1 = running(update_steps()).set("/status", first.status());

    let second = RunOnce::of(p1, waits()).await;

    assert!(second.action.is_ok(), "{:?}", second.action);
    assert!(second.api.writes().is_empty(), "{:?}", second.api.writes());
}

#[tokio::test]
async fn when_every_step_succeeds_the_promotion_succeeds_and_the_next_in_line_is_woken() {
    let p2_waits_on_p1 = AwaitTarget::Named {
        kind: "Promotion".into(),
        namespace: "demo".into(),
        name: "p1".into(),
    };
    let mut run = RunOnce::given(
        running(update_steps()),
        vec![succeeds("test-update", json!({"synced": true}))],
        |ctx| {
            ctx.index
                .set(("demo".into(), "p2".into()), vec![p2_waits_on_p1])
        },
    )
    .await;

    assert!(matches!(&run.action, Ok(a) if *a == Action::await_change()));
    let status = run.status();
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["state"]["update"]["synced"], true);
    assert!(status["awaiting"].as_array().is_none_or(Vec::is_empty));
    assert_eq!(run.api.event_reasons(), ["PromotionSucceeded"]);
    assert!(run.ctx.metrics.encode().contains(FINISHED_ONCE));
    assert_eq!(
        run.woken.next().await,
        Some(ObjectRef::<Promotion>::new("p2").within("demo"))
    );
}

#[tokio::test]
async fn a_step_that_fails_for_good_errors_the_promotion_with_its_message() {
    let run = RunOnce::of(
        running(update_steps()),
        vec![fails("test-update", "the app does not exist")],
    )
    .await;

    let status = run.status();
    assert_eq!(status["phase"], "Errored");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("the app does not exist")),
        "{status}"
    );
    assert_eq!(run.api.event_reasons(), ["PromotionErrored"]);
}

/// One reconcile of a running Promotion whose step kinds are `kinds`,
/// against an API server that refuses any write over 4 KiB as too large
/// for etcd; what was written, once it is known the refusal is not
/// retried (the same write would be refused again).
async fn reconcile_refusing_large_writes(kinds: Vec<ScriptedStep>) -> (FakeApi, Value) {
    let p1 = running(update_steps()).build();
    let api = FakeApi::default().with(&p1).refusing_writes_over(4096);
    let (ctx, _) = promotion_context(&api, registry(kinds), vec![p1.clone()], vec![]);

    let action = reconcile(Arc::new(p1), ctx).await;

    assert!(
        matches!(&action, Ok(a) if *a == Action::await_change()),
        "{action:?}"
    );
    let status = api.promotion_status("p1");
    (api, status)
}

#[tokio::test]
async fn a_status_too_large_for_the_api_server_errors_the_promotion_naming_the_step() {
    let kinds = vec![succeeds("test-update", json!({"blob": "x".repeat(10_000)}))];
    let (api, status) = reconcile_refusing_large_writes(kinds).await;

    assert_eq!(status["phase"], "Errored");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "step \"update\": its output is 10011 bytes, more than the Promotion's status can hold"
        ) && message.ends_with("(the API server refused it: etcdserver: request is too large)"),
        "{message}"
    );
    assert_eq!(status["state"]["update"], Value::Null);
    assert_eq!(api.event_reasons(), ["PromotionErrored"]);
}

#[tokio::test]
async fn a_step_message_too_large_for_the_status_is_named_by_its_step() {
    let message: &'static str = Box::leak("m".repeat(10_000).into_boxed_str());
    let (_, status) = reconcile_refusing_large_writes(vec![fails("test-update", message)]).await;

    assert_eq!(status["phase"], "Errored");
    let text = status["message"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("step \"update\": its message is 100"),
        "{text}"
    );
}

#[tokio::test]
async fn a_step_kind_nobody_registered_errors_the_promotion_naming_uses() {
    let plan = json!([{"uses": "git-clone", "as": "clone"}]);
    let run = RunOnce::of(running(plan), vec![succeeds("test-update", json!({}))]).await;

    let status = run.status();
    assert_eq!(status["phase"], "Errored");
    let expected = "uses: step kind \"git-clone\" is not registered (known kinds: test-update)";
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains(expected)),
        "{status}"
    );
}

#[tokio::test]
async fn an_expression_that_fails_errors_the_step_naming_the_field() {
    let plan = json!([{"uses": "test-update", "as": "update",
                       "config": {"apps": [{"name": "${{ nope( }}"}]}}]);
    let run = RunOnce::of(running(plan), vec![succeeds("test-update", json!({}))]).await;

    let status = run.status();
    assert_eq!(status["phase"], "Errored");
    assert!(
        status["stepExecutionMetadata"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("config.apps[0].name: ")),
        "{status}"
    );
}

#[tokio::test]
async fn an_abort_request_aborts_the_promotion_and_its_running_step() {
    let p1 = running(update_steps())
        .set(
            "/metadata/annotations",
            json!({"barge.dev/abort": "terminate"}),
        )
        .set(
            "/status/stepExecutionMetadata",
            json!([{"alias": "update", "status": "Running", "startedAt": "2027-01-15T08:00:00Z"}]),
        );
    let run = RunOnce::of(p1, vec![waits_on_application("test-update", "dev-app")]).await;

    let status = run.status();
    assert_eq!(status["phase"], "Aborted");
    assert_eq!(status["stepExecutionMetadata"][0]["status"], "Aborted");
    assert_eq!(run.api.event_reasons(), ["PromotionAborted"]);
}

#[tokio::test]
async fn a_finished_promotion_is_left_alone() {
    let p1 = running(update_steps()).set("/status/phase", json!("Succeeded"));
    let run = RunOnce::of(p1, vec![fails("test-update", "must not run")]).await;

    assert!(matches!(&run.action, Ok(a) if *a == Action::await_change()));
    assert!(run.api.writes().is_empty(), "wrote {:?}", run.api.writes());
}

#[tokio::test]
async fn a_refresh_request_is_recorded_as_handled() {
    let p1 =
        running(update_steps()).set("/metadata/annotations", json!({"barge.dev/refresh": "r-1"}));
    let run = RunOnce::of(p1, vec![waits_on_application("test-update", "dev-app")]).await;

    assert_eq!(run.status()["lastHandledRefresh"], "r-1");
}

/// `argocd-update` of Application `dev-app`, with the built-in steps, over
/// an API server that serves the Application.
fn syncing_dev_app() -> (Promotion, Application, FakeApi) {
    let p1 = running(json!([{"uses": "argocd-update", "as": "update",
                             "config": {"apps": [{"name": "dev-app"}]}}]))
    .build();
    let app = application("dev-app", "rev-1", "Healthy")
        .set(
            "/metadata/annotations",
            json!({"barge.dev/authorized-stage": "demo:dev"}),
        )
        .set("/metadata/resourceVersion", json!("7"))
        .build();
    let api = FakeApi::default().with(&p1).with(&app);
    (p1, app, api)
}

fn application_path() -> String {
    format!("{}/dev-app", Application::url_path(&(), Some("argocd")))
}

#[tokio::test]
async fn the_sync_is_requested_only_once_the_promotion_waits_on_the_application() {
    let (p1, app, api) = syncing_dev_app();
    let (ctx, _) = promotion_context(&api, Registry::builtin(), vec![p1.clone()], vec![app]);
    // What an Application event caused by the sync would wake, at the
    // moment the sync reaches the API server.
    let woken_by_the_sync = Arc::new(Mutex::new(None));
    let (seen, index, path) = (
        woken_by_the_sync.clone(),
        ctx.index.clone(),
        application_path(),
    );
    api.on_write(move |write| {
        if write.path == path {
            let waiters =
                index
                    .read()
                    .waiters("Application", "argocd", "dev-app", &BTreeMap::new());
            *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(waiters);
        }
    });

    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        *woken_by_the_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
        Some(vec![("demo".to_string(), "p1".to_string())]),
        "the sync was written before the Promotion waited on the Application"
    );
}

#[tokio::test]
async fn a_sync_refused_with_a_conflict_is_read_and_requested_again_at_once() {
    let (p1, app, api) = syncing_dev_app();
    let api = api.conflict_once::<Application>(Some("argocd"), "dev-app");
    let (ctx, _) = promotion_context(&api, Registry::builtin(), vec![p1.clone()], vec![app]);

    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let patches: Vec<_> = api
        .writes()
        .into_iter()
        .filter(|w| w.path == application_path())
        .collect();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(patches[1].body["operation"]["info"][3]["value"], "uid-p1");
    let status = api.promotion_status("p1");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("to finish syncing (Requested)")),
        "{status}"
    );
}

#[tokio::test]
async fn a_reconcile_from_a_cache_older_than_the_last_write_does_not_finish_twice() {
    // The API server has p1 Succeeded; the cache still shows it Running.
    let finished = running(update_steps())
        .set("/metadata/resourceVersion", json!("2"))
        .set("/status/phase", json!("Succeeded"))
        .set("/status/finishedAt", json!("2027-01-15T08:00:00Z"))
        .build();
    let stale = running(update_steps())
        .set("/metadata/resourceVersion", json!("1"))
        .build();
    let api = FakeApi::default().with(&finished);
    let steps = registry(vec![succeeds("test-update", json!({}))]);
    let (ctx, _) = promotion_context(&api, steps, vec![stale.clone()], vec![]);

    let action = reconcile(Arc::new(stale), ctx.clone()).await;

    assert!(
        matches!(&action, Ok(a) if *a == Action::requeue(BACKSTOP)),
        "{action:?}"
    );
    assert!(api.event_reasons().is_empty(), "{:?}", api.event_reasons());
    assert!(
        !ctx.metrics
            .encode()
            .contains("barge_promotions_finished_total{phase=\"Succeeded\"} 1"),
        "{}",
        ctx.metrics.encode()
    );
    // The refused write left the finished Promotion as it was.
    let refused = api.status_writes::<Promotion>("demo", "p1");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].body["metadata"]["resourceVersion"], "1");
}

#[tokio::test]
async fn two_compose_output_steps_of_one_task_both_reach_the_tasks_outputs() {
    let plan = json!([
        {"uses": "compose-output", "as": "deploy::first", "config": {"image": "web:1"}},
        {"uses": "compose-output", "as": "deploy::second", "config": {"chart": "2.0"}},
        {"uses": "test-update", "as": "after",
         "config": {"both": "${{ outputs.deploy.image }} ${{ outputs.deploy.chart }}"}},
    ]);
    let p1 = running(plan).build();
    let api = FakeApi::default().with(&p1);
    let mut kinds = Registry::builtin();
    kinds.register(Arc::new(scripted("test-update", |ctx| {
        let mut result = StepResult::new(PromotionStepStatus::Succeeded);
        result.output = Some(ctx.config.clone());
        StepRun::done(Ok(result))
    })));
    let (ctx, _) = promotion_context(&api, kinds, vec![p1.clone()], vec![]);

    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let status = api.promotion_status("p1");
    assert_eq!(status["phase"], "Succeeded", "{status}");
    assert_eq!(
        status["state"]["deploy"],
        json!({"image": "web:1", "chart": "2.0"})
    );
    assert_eq!(status["state"]["after"]["both"], "web:1 2.0");
}

#[tokio::test]
async fn a_step_after_a_failure_is_skipped_without_evaluating_its_vars() {
    let plan = json!([
        {"uses": "test-update", "as": "build"},
        {"uses": "test-update", "as": "deploy",
         "vars": [{"name": "image", "value": "${{ upper(outputs.build.image) }}"}]},
    ]);
    let run = RunOnce::of(running(plan), vec![fails("test-update", "no image")]).await;

    let status = run.status();
    assert_eq!(status["stepExecutionMetadata"][0]["status"], "Errored");
    assert_eq!(
        status["stepExecutionMetadata"][1]["status"], "Skipped",
        "{status}"
    );
    assert_eq!(status["phase"], "Errored");
}

#[tokio::test]
async fn an_application_outside_the_watched_namespace_is_refused_not_waited_on_forever() {
    let p1 = running(json!([{"uses": "argocd-update", "as": "update",
                             "config": {"apps": [{"name": "dev-app", "namespace": "elsewhere"}]}}]))
    .build();
    // The API server has it; the watch (of "argocd" only) never will.
    let app = application("dev-app", "rev-1", "Healthy")
        .set("/metadata/namespace", json!("elsewhere"))
        .set(
            "/metadata/annotations",
            json!({"barge.dev/authorized-stage": "demo:dev"}),
        )
        .build();
    let api = FakeApi::default().with(&p1).with(&app);
    let (ctx, _) = promotion_context(&api, Registry::builtin(), vec![p1.clone()], vec![]);

    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let status = api.promotion_status("p1");
    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("config.apps[0].namespace")
            && message.contains("only in namespace \"argocd\""),
        "{message}"
    );
}

/// The sync `argocd-update` writes for a Promotion whose annotation names
/// alice as its creator.
async fn sync_of_alices_promotion(trust_create_actor: bool) -> Value {
    let (_, app, api) = syncing_dev_app();
    let p1 = running(json!([{"uses": "argocd-update", "as": "update",
                             "config": {"apps": [{"name": "dev-app"}]}}]))
    .set(
        "/metadata/annotations",
        json!({"barge.dev/create-actor": "alice"}),
    )
    .build();
    let api = api.with(&p1);
    let (mut ctx, _) = promotion_context(&api, Registry::builtin(), vec![p1.clone()], vec![app]);
    if let Some(ctx) = Arc::get_mut(&mut ctx) {
        ctx.trust_create_actor = trust_create_actor;
    }
    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    api.writes()
        .into_iter()
        .find(|w| w.path == application_path())
        .map(|w| w.body["operation"]["initiatedBy"].clone())
        .unwrap_or_else(|| panic!("no sync was written"))
}

#[tokio::test]
async fn the_creator_is_passed_to_argo_cd_only_when_the_admission_policy_vouches_for_it() {
    assert_eq!(
        sync_of_alices_promotion(false).await,
        json!({"username": crate::CONTROLLER_NAME, "automated": true})
    );
    assert_eq!(
        sync_of_alices_promotion(true).await,
        json!({"username": "alice", "automated": false})
    );
}

/// Freight `name` from Warehouse `warehouse` with one commit of `repo`.
fn freight_of(name: &str, warehouse: &str, repo: &str) -> Value {
    json!({"name": name, "origin": {"kind": "Warehouse", "name": warehouse},
           "commits": [{"repoURL": repo, "id": format!("{name}-sha")}]})
}

#[tokio::test]
async fn a_promotion_carries_the_stages_freight_of_its_other_origins() {
    let two_origins = json!([
        {"origin": {"kind": "Warehouse", "name": "w"}, "sources": {"direct": true}},
        {"origin": {"kind": "Warehouse", "name": "config"}, "sources": {"direct": true}},
    ]);
    let current = json!([{"id": "c1,f0", "items": {
        "Warehouse/w": freight_of("f0", "w", "https://git.example/app.git"),
        "Warehouse/config": freight_of("c1", "config", "https://git.example/config.git"),
        "Warehouse/gone": freight_of("x9", "gone", "https://git.example/gone.git"),
    }}]);
    let dev = stage(update_steps())
        .set("/spec/requestedFreight", two_origins)
        .set("/status/freightHistory", current)
        .build();
    let f1 = freight("f1", 0)
        .set("/alias", json!("wonky-wombat"))
        .build();
    let p1 = promotion("p1", 0).build();
    let api = FakeApi::default().with(&dev).with(&f1).with(&p1);
    let (ctx, _) = promotion_context(&api, registry(vec![]), vec![p1.clone()], vec![]);

    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let status = api.promotion_status("p1");
    let items = &status["freightCollection"]["items"];
    assert_eq!(items["Warehouse/w"]["name"], "f1");
    assert_eq!(items["Warehouse/config"]["name"], "c1");
    assert!(items.get("Warehouse/gone").is_none(), "{items}");
    assert_eq!(status["plan"]["freightAlias"], "wonky-wombat");
}

#[tokio::test]
async fn expressions_find_commits_of_every_origin_in_the_collection() {
    let collection = json!({"id": "c1,f1", "items": {
        "Warehouse/w": freight_of("f1", "w", "https://git.example/app.git"),
        "Warehouse/config": freight_of("c1", "config", "https://git.example/config.git"),
    }});
    let plan = json!([{"uses": "test-update", "as": "update", "config": {
        "config": "${{ commitFrom(\"https://git.example/config.git\").id }}",
        "alias": "${{ ctx.targetFreight.alias }}",
    }}]);
    let p1 = running(plan)
        .set("/status/freightCollection", collection)
        .set("/status/plan/freightAlias", json!("wonky-wombat"));
    let echo = scripted("test-update", |ctx| {
        let mut result = StepResult::new(PromotionStepStatus::Succeeded);
        result.output = Some(ctx.config.clone());
        StepRun::done(Ok(result))
    });
    let run = RunOnce::of(p1, vec![echo]).await;

    let status = run.status();
    assert_eq!(status["state"]["update"]["config"], "c1-sha", "{status}");
    assert_eq!(status["state"]["update"]["alias"], "wonky-wombat");
}

#[tokio::test]
async fn a_fail_step_fails_the_promotion_with_its_message() {
    let plan =
        json!([{"uses": "fail", "as": "stop", "config": {"message": "chart name mismatch"}}]);
    let p1 = running(plan).build();
    let api = FakeApi::default().with(&p1);
    let (ctx, _) = promotion_context(&api, Registry::builtin(), vec![p1.clone()], vec![]);

    reconcile(Arc::new(p1), ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let status = api.promotion_status("p1");
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["message"], "step \"stop\": chart name mismatch");
}
