//! A real control plane, the Argo CD double and a Barge controller scoped to
//! one test's namespaces, plus builders for the objects a scenario needs.
#![allow(dead_code)]

pub mod examples;

use std::sync::Arc;
use std::time::Duration;

use barge::api::{Promotion, PromotionPhase};
use barge::controller::{self, Metrics, Settings};
use barge_argocd_double::{Double, DoubleConfig, DoubleHandle, Journal};
use barge_testenv::{StoppableTask, TestEnv};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type TestResult = Result<(), Error>;

/// Long enough that a missed wake-up fails the test instead of passing slowly.
pub const BACKSTOP: Duration = Duration::from_secs(3600);
/// How long a test waits for a Promotion to end.
pub const PATIENCE: Duration = Duration::from_secs(60);

const REPO: &str = "https://git.example.com/demo/app.git";

/// The commit of Freight `f1` in the one-Stage scenario ([`Harness::promote_app`]).
pub const COMMIT: &str = "abc1234";

pub struct Harness {
    pub env: &'static TestEnv,
    pub client: Client,
    /// The project namespace: Stages, Promotions, Freight.
    pub ns: String,
    /// Where the Applications live.
    pub argocd_ns: String,
    pub double: Option<DoubleHandle>,
    pub journal: Journal,
    controller: Option<StoppableTask>,
    pub settings: Settings,
    /// The running controller's metrics.
    pub metrics: Arc<Metrics>,
    /// The controller's work directory, its own: a controller sweeps the
    /// directories of Promotions it does not know, which would include those
    /// of controllers in other tests (other namespaces, other API servers).
    _work_dir: tempfile::TempDir,
}

async fn install_crds(env: &TestEnv) -> TestResult {
    env.apply_crd_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
        .await?;
    // Where Argo CD is built, every test uses its own Application CRD (the
    // double runs on it too), so tests of both kinds can share one binary.
    if barge_testenv::argocd::is_built() {
        let crd = barge_testenv::argocd::argocd_dir().join("crds/application-crd.yaml");
        env.apply_crd_files(&[&crd]).await?;
    } else {
        env.apply_crds(barge_argocd_double::CRD_YAML).await?;
    }
    Ok(())
}

/// Which Argo CD a harness runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgoCdKind {
    /// The project's double, in this process.
    Double,
    /// The real application-controller and repo-server, one per test binary.
    Real,
}

impl Harness {
    /// Namespaces, CRDs, the double (with `config` applied) and a controller.
    pub async fn start(double: impl FnOnce(DoubleConfig) -> DoubleConfig) -> Result<Self, Error> {
        Self::start_on(ArgoCdKind::Double, double).await
    }

    /// As [`Harness::start`], against the double or real Argo CD. With real
    /// Argo CD there is no journal: tests read Argo CD's own `status.history`.
    pub async fn start_on(
        kind: ArgoCdKind,
        double: impl FnOnce(DoubleConfig) -> DoubleConfig,
    ) -> Result<Self, Error> {
        let env = TestEnv::shared().await?;
        install_crds(env).await?;
        let ns = env.namespace().await?;
        let client = env.client();
        let (argocd_ns, double, journal) = match kind {
            ArgoCdKind::Double => {
                let argocd_ns = env.namespace().await?;
                let config = double(
                    DoubleConfig::namespaced(&argocd_ns)
                        .with_sync_delay(Duration::from_millis(300)),
                );
                let double = Double::new(client.clone(), config).spawn();
                let journal = double.journal();
                (argocd_ns, Some(double), journal)
            }
            ArgoCdKind::Real => {
                env.argocd().await?;
                (env.argocd_namespace().await?, None, Journal::default())
            }
        };
        let work_dir = tempfile::tempdir()?;
        let settings = Settings {
            backstop: BACKSTOP,
            argocd_namespace: argocd_ns.clone(),
            namespace: Some(ns.clone()),
            tools: rendering_tools(),
            work_dir: work_dir.path().to_path_buf(),
            ..Settings::default()
        };
        let mut harness = Self {
            env,
            client,
            ns,
            argocd_ns,
            double,
            journal,
            controller: None,
            settings,
            metrics: Arc::new(Metrics::default()),
            _work_dir: work_dir,
        };
        harness.start_controller();
        Ok(harness)
    }

    pub fn start_controller(&mut self) {
        self.start_controller_with(self.env.client());
    }

    /// Starts the controller on `client` (one with a layer of the test's).
    pub fn start_controller_with(&mut self, client: Client) {
        let settings = self.settings.clone();
        let metrics = self.metrics.clone();
        self.controller = Some(StoppableTask::spawn(|stopped| {
            controller::run(client, settings, metrics, stopped)
        }));
    }

    /// Stops the controller at once, as if killed, and waits until it has.
    pub async fn stop_controller(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.kill().await;
        }
    }

    /// Server-side applies objects given as JSON (one or a list), in the
    /// project namespace unless they are cluster-scoped or name their own.
    pub async fn apply(&self, objects: Value) -> TestResult {
        barge_testenv::apply(&self.client, objects, &self.ns, "barge-test").await?;
        Ok(())
    }

    /// Waits (on watch events) until the Promotion reaches a terminal phase.
    pub async fn finished(&self, name: &str) -> Result<Promotion, Error> {
        self.finished_within(name, PATIENCE).await
    }

    /// [`Harness::finished`], for Promotions expensive by design.
    pub async fn finished_within(
        &self,
        name: &str,
        patience: Duration,
    ) -> Result<Promotion, Error> {
        let api = Api::<Promotion>::namespaced(self.client.clone(), &self.ns);
        let done = |p: Option<&Promotion>| p.is_some_and(|p| p.is_terminal());
        let promotion = tokio::time::timeout(patience, await_condition(api, name, done)).await;
        match promotion {
            Ok(Ok(Some(p))) => Ok(p),
            Ok(Ok(None)) => Err(format!("Promotion {name} disappeared").into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let now = Api::<Promotion>::namespaced(self.client.clone(), &self.ns)
                    .get_opt(name)
                    .await?;
                Err(format!(
                    "Promotion {name} did not finish within {patience:?}; status: {:?}",
                    now.and_then(|p| p.status)
                )
                .into())
            }
        }
    }

    /// Waits until `condition` holds for the Promotion.
    pub async fn until(
        &self,
        name: &str,
        what: &str,
        condition: impl Fn(&Promotion) -> bool + Send + 'static,
    ) -> Result<Promotion, Error> {
        let api = Api::<Promotion>::namespaced(self.client.clone(), &self.ns);
        let cond = move |p: Option<&Promotion>| p.is_some_and(&condition);
        match tokio::time::timeout(PATIENCE, await_condition(api, name, cond)).await {
            Ok(Ok(Some(p))) => Ok(p),
            Ok(Ok(None)) => Err(format!("Promotion {name} disappeared").into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                Err(format!("Promotion {name}: {what} did not happen within {PATIENCE:?}").into())
            }
        }
    }

    /// Waits until the Promotion reaches `phase` (terminal or not).
    pub async fn reaches(&self, name: &str, phase: PromotionPhase) -> Result<Promotion, Error> {
        let api = Api::<Promotion>::namespaced(self.client.clone(), &self.ns);
        let cond = move |p: Option<&Promotion>| p.is_some_and(|p| p.phase() == phase);
        match tokio::time::timeout(PATIENCE, await_condition(api, name, cond)).await {
            Ok(Ok(Some(p))) => Ok(p),
            Ok(Ok(None)) => Err(format!("Promotion {name} disappeared").into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                Err(format!("Promotion {name} did not reach {phase} within {PATIENCE:?}").into())
            }
        }
    }

    /// The sync operations the double started for a Promotion.
    pub fn syncs_for(&self, promotion: &str) -> usize {
        self.journal.syncs_for_promotion(promotion).len()
    }

    pub async fn shutdown(mut self) {
        self.stop_controller().await;
        if let Some(double) = self.double.take() {
            double.stop().await;
        }
    }

    // ---- fixtures ----

    pub fn freight(&self, name: &str, commit: &str) -> Value {
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": name},
            "origin": {"kind": "Warehouse", "name": "demo"},
            "commits": [{"repoURL": REPO, "id": commit}],
        })
    }

    /// An Application the Stage is authorized to change.
    pub fn application(&self, name: &str, stage: &str) -> Value {
        self.application_with(name, stage, json!({}), json!({}))
    }

    pub fn application_with(
        &self,
        name: &str,
        stage: &str,
        labels: Value,
        annotations: Value,
    ) -> Value {
        let mut all = json!({"barge.dev/authorized-stage": format!("{}:{stage}", self.ns)});
        if let (Some(all), Some(extra)) = (all.as_object_mut(), annotations.as_object()) {
            all.extend(extra.clone());
        }
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": self.argocd_ns, "labels": labels, "annotations": all},
            "spec": {
                "project": "default",
                "source": {"repoURL": REPO, "path": "deploy", "targetRevision": "main"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
            },
        })
    }

    /// The argocd-update config syncing `app` (by name or any JSON selector) to the Freight's commit.
    pub fn argocd_update(app: Value) -> Value {
        let mut entry = app;
        entry["sources"] = json!([{
            "repoURL": REPO,
            "desiredRevision": format!("${{{{ commitFrom(\"{REPO}\").id }}}}"),
            "updateTargetRevision": true,
        }]);
        json!({"apps": [entry]})
    }

    /// `<ns>-<stage>`: the name of the Application a Stage's steps sync.
    pub fn app_name(&self, stage: &str) -> String {
        format!("{}-{stage}", self.ns)
    }

    /// The Application `<ns>-dev`, authorizing Stage `dev`, with the
    /// double's `knobs` as annotations.
    pub fn dev_application(&self, knobs: Value) -> Value {
        self.application_with(&self.app_name("dev"), "dev", json!({}), knobs)
    }

    /// The step `update`: argocd-update of `app` (`{"name": ...}` or any
    /// JSON selector) to the Freight's commit.
    pub fn update_step(app: Value) -> Value {
        step("update", "argocd-update", Self::argocd_update(app))
    }

    /// The step `update` of the Application named `app`.
    pub fn update_app(app: &str) -> Value {
        Self::update_step(json!({ "name": app }))
    }

    /// Applies `objects` (Applications, tasks, more Freight) with
    /// Freight `f1` at `commit`, Stage `dev` promoting with `steps`, and
    /// Promotion `p1` of `f1` to `dev`.
    pub async fn promote_to_dev(
        &self,
        mut objects: Vec<Value>,
        commit: &str,
        steps: Value,
    ) -> TestResult {
        objects.extend([
            self.freight("f1", commit),
            stage("dev", steps),
            promotion("p1", "dev", "f1"),
        ]);
        self.apply(Value::Array(objects)).await
    }

    /// The one-Stage scenario: [`Harness::dev_application`] with `knobs`,
    /// synced by Stage `dev`'s one step `update` to Freight `f1` at
    /// [`COMMIT`], promoted by `p1`. Returns the Application's name.
    pub async fn promote_app(&self, knobs: Value) -> Result<String, Error> {
        let app = self.app_name("dev");
        self.promote_to_dev(
            vec![self.dev_application(knobs)],
            COMMIT,
            json!([Self::update_app(&app)]),
        )
        .await?;
        Ok(app)
    }

    /// Waits until the Promotion waits on something (`status.awaiting` is
    /// not empty), such as the Application its step syncs.
    pub async fn until_awaiting(&self, name: &str) -> Result<Promotion, Error> {
        self.until(name, "waiting on the Application", |p| {
            p.status.as_ref().is_some_and(|s| !s.awaiting.is_empty())
        })
        .await
    }

    /// Merge-patches an annotation onto an object of the project namespace.
    pub async fn annotate<K>(&self, name: &str, key: &str, value: &str) -> TestResult
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        Api::<K>::namespaced(self.client.clone(), &self.ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// Asks Barge to abort the Promotion (`barge.dev/abort: terminate`).
    /// Lets the held syncs (see [`hang`]) of Application `app` succeed.
    pub async fn release(&self, app: &str) -> TestResult {
        let apps =
            barge_argocd_double::fixtures::applications(self.client.clone(), &self.argocd_ns);
        let patch = json!({"metadata": {"annotations": {"double.barge.dev/outcome": "succeed"}}});
        apps.patch(
            app,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }

    pub async fn abort(&self, name: &str) -> TestResult {
        self.annotate::<Promotion>(name, "barge.dev/abort", "terminate")
            .await
    }
}

impl Harness {
    /// A Stage that promotes automatically: directly from the Warehouse, or
    /// from Freight verified in `upstream`; its one step syncs `<ns>-<name>`.
    pub fn auto_stage(&self, name: &str, upstream: Option<&str>) -> Value {
        let app = format!("{}-{name}", self.ns);
        let update = json!({"as": "update", "uses": "argocd-update", "config": Self::argocd_update(json!({"name": app}))});
        auto_stage_with(name, upstream, json!([update]))
    }

    /// Waits until `condition` holds for the Stage.
    pub async fn stage_until(
        &self,
        name: &str,
        what: &str,
        condition: impl Fn(&barge::api::Stage) -> bool + Send + 'static,
    ) -> Result<barge::api::Stage, Error> {
        let api = Api::<barge::api::Stage>::namespaced(self.client.clone(), &self.ns);
        let cond = move |s: Option<&barge::api::Stage>| s.is_some_and(&condition);
        match tokio::time::timeout(PATIENCE, await_condition(api.clone(), name, cond)).await {
            Ok(Ok(Some(s))) => Ok(s),
            Ok(Ok(None)) => Err(format!("Stage {name} disappeared").into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let now = api.get_opt(name).await?.and_then(|s| s.status);
                Err(format!(
                    "Stage {name}: {what} did not happen within {PATIENCE:?}; status: {now:?}"
                )
                .into())
            }
        }
    }
}

/// A step of a promotion template.
/// The double's knob that keeps a sync running until released
/// ([`Harness::release`]).
pub fn hang() -> Value {
    json!({"double.barge.dev/outcome": "hang"})
}

pub fn step(alias: &str, uses: &str, config: Value) -> Value {
    json!({"as": alias, "uses": uses, "config": config})
}

/// A Stage that takes Freight directly from the Warehouse and promotes it
/// with `steps`.
pub fn stage(name: &str, steps: Value) -> Value {
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "demo"}, "sources": {"direct": true}}],
            "promotionTemplate": {"spec": {"steps": steps}},
        },
    })
}

/// A Promotion of `freight` to `stage`.
pub fn promotion(name: &str, stage: &str, freight: &str) -> Value {
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": name},
        "spec": {"stage": stage, "freight": freight},
    })
}

/// The Promotion's status message.
pub fn message(p: &Promotion) -> String {
    p.status
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_default()
}

/// A Stage that promotes automatically with `steps`: directly from the
/// Warehouse, or from Freight verified in `upstream`.
pub fn auto_stage_with(name: &str, upstream: Option<&str>, steps: Value) -> Value {
    let sources = match upstream {
        Some(up) => json!({"stages": [up]}),
        None => json!({"direct": true}),
    };
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "autoPromotion": true,
            "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "demo"}, "sources": sources}],
            "promotionTemplate": {"spec": {"steps": steps}},
        },
    })
}

/// The standard output of a tool that must have succeeded; else an error
/// naming it (`what`) with its exit status and both outputs.
pub fn succeeded(what: &str, output: std::process::Output) -> Result<String, Error> {
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The status of the step `alias` of a Promotion, if it ran.
pub fn step_status(
    p: &barge::api::Promotion,
    alias: &str,
) -> Option<barge::api::PromotionStepStatus> {
    p.status
        .as_ref()?
        .step_execution_metadata
        .iter()
        .find(|m| m.alias == alias)?
        .status
}

/// The Stage's health status, if reported.
pub fn stage_health(stage: &barge::api::Stage) -> Option<barge::api::HealthState> {
    stage.status.as_ref()?.health.as_ref()?.status
}

/// Whether a Stage is Healthy with `freight` as its current Freight.
pub fn healthy_with(freight: &'static str) -> impl Fn(&barge::api::Stage) -> bool + Send + 'static {
    move |s| {
        stage_health(s) == Some(barge::api::HealthState::Healthy)
            && current_freight(s).as_deref() == Some(freight)
    }
}

/// The Stage's current Freight.
pub fn current_freight(stage: &barge::api::Stage) -> Option<String> {
    let summary = stage.status.as_ref()?.freight_summary.clone();
    (!summary.is_empty()).then_some(summary)
}

/// kustomize and helm as `make control-plane` built them.
pub fn rendering_tools() -> barge::controller::Tools {
    let bin = barge_testenv::bin_dir();
    barge::controller::Tools {
        kustomize: bin.join("kustomize"),
        helm: bin.join("helm"),
        ..barge::controller::Tools::default()
    }
}
