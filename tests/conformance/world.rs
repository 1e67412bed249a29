//! What a conformance scenario deploys and does, written once and played
//! against either Argo CD: real git repositories (served over `file://`),
//! Applications whose workloads behave as the scenario needs, and the few
//! actions a test takes on the world (release a held sync, change a
//! workload's health). Against real Argo CD the behaviour comes from the
//! manifests in git and the Widget kind's health check; against the double,
//! from its knobs. Assertions read only what both write: the Application's
//! status and the Promotion.

use std::collections::BTreeMap;
use std::sync::Mutex;

use barge_testenv::argocd::widget_resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::{ArgoCdKind, Error, Harness, TestResult, promotion, stage};

/// How an Application's workload behaves once synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A ConfigMap: Healthy as soon as it exists.
    Ready,
    /// A Widget that reports no health: Progressing until the test sets it.
    Progressing,
    /// A ConfigMap behind a PreSync hook that stays Progressing: the sync
    /// runs until the test releases it.
    HeldSync,
    /// A Widget the API server rejects (`spec.size: -1`): the sync fails.
    Rejected,
    /// A Widget with a field the API server prunes: every comparison after a
    /// successful sync says OutOfSync (a permanent diff).
    PermanentDiff,
}

impl Workload {
    /// The manifests for one commit, naming the main resource `name`;
    /// `generation` makes each commit differ.
    fn manifests(self, name: &str, generation: u32) -> Vec<(String, String)> {
        let config_map = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  generation: \"{generation}\"\n"
        );
        let widget = |spec: &str| {
            format!(
                "apiVersion: test.barge.dev/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  message: \"generation {generation}\"\n{spec}"
            )
        };
        let file = format!("{name}.yaml");
        match self {
            Self::Ready => vec![(file, config_map)],
            Self::Progressing => vec![(file, widget("  size: 1\n"))],
            Self::HeldSync => vec![
                (file, config_map),
                (
                    "hold.yaml".into(),
                    "apiVersion: test.barge.dev/v1\nkind: Widget\nmetadata:\n  name: hold\n  annotations:\n    argocd.argoproj.io/hook: PreSync\nspec:\n  size: 1\n".into(),
                ),
            ],
            Self::Rejected => vec![(file, widget("  size: -1\n"))],
            Self::PermanentDiff => vec![(
                file,
                widget("  size: 1\n  pruned: \"the API server drops this field\"\n"),
            )],
        }
    }

    /// The double's knobs that make it behave as real Argo CD does with
    /// [`Workload::manifests`].
    fn knobs(self) -> Value {
        match self {
            Self::Ready => json!({}),
            Self::Progressing => json!({"double.barge.dev/health-after-sync": "progressing"}),
            Self::HeldSync => json!({"double.barge.dev/outcome": "hang"}),
            Self::Rejected => json!({
                "double.barge.dev/outcome": "fail:Widget.test.barge.dev \"app\" is invalid: spec.size: Invalid value: -1: spec.size in body should be greater than or equal to 0",
            }),
            Self::PermanentDiff => json!({"double.barge.dev/permanent-diff": "true"}),
        }
    }
}

/// A git repository of the test's own whose commits hold one workload.
pub struct GitRepo {
    repo: barge_testenv::git::GitRepo,
    generation: Mutex<u32>,
    workload: Workload,
    resource: String,
}

impl GitRepo {
    /// A repository whose `main` holds the workload's first commit, its
    /// main resource named `app`.
    pub fn new(workload: Workload) -> Result<Self, Error> {
        Self::named(workload, "app")
    }

    /// As [`GitRepo::new`], the main resource named `resource` (two sources
    /// of one Application must not deploy the same object).
    pub fn named(workload: Workload, resource: &str) -> Result<Self, Error> {
        let repo = Self {
            repo: barge_testenv::git::GitRepo::init()?,
            generation: Mutex::new(0),
            workload,
            resource: resource.to_string(),
        };
        repo.commit()?;
        Ok(repo)
    }

    pub fn url(&self) -> String {
        self.repo.url()
    }

    /// Commits the workload's next generation to `main`; returns the commit's SHA.
    pub fn commit(&self) -> Result<String, Error> {
        let generation = {
            let mut g = self.generation.lock().map_err(|_| "poisoned")?;
            *g += 1;
            *g
        };
        for (file, text) in self.workload.manifests(&self.resource, generation) {
            self.repo.write(&file, &text)?;
        }
        Ok(self.repo.commit(&format!("generation {generation}"))?)
    }
}

/// What [`World::promote_once`] set up.
pub struct Promoted {
    /// The Application of Stage `dev`.
    pub app: String,
    /// Held while the scenario runs: Argo CD fetches from it.
    pub _repo: GitRepo,
    /// The commit Freight `f1` names.
    pub sha: String,
}

/// The harness, plus the destinations and repositories of the scenario.
pub struct World {
    pub h: Harness,
    pub kind: ArgoCdKind,
    destinations: Mutex<BTreeMap<String, String>>,
}

impl World {
    pub async fn start(kind: ArgoCdKind) -> Result<Self, Error> {
        let h = Harness::start_on(kind, |c| c).await?;
        Ok(Self {
            h,
            kind,
            destinations: Mutex::new(BTreeMap::new()),
        })
    }

    pub async fn shutdown(self) {
        self.h.shutdown().await;
    }

    /// The name a Stage's Application has: `<project>-<stage>`.
    pub fn app_name(&self, stage: &str) -> String {
        format!("{}-{stage}", self.h.ns)
    }

    /// An Application authorizing `stage`, deploying `repos` (one source
    /// each; several make a multi-source Application) to a namespace of its
    /// own, with the workload's double knobs.
    pub async fn application(
        &self,
        name: &str,
        stage: &str,
        repos: &[&GitRepo],
        extra: Value,
    ) -> Result<Value, Error> {
        let destination = self.h.env.namespace().await?;
        self.destinations
            .lock()
            .map_err(|_| "poisoned")?
            .insert(name.to_string(), destination.clone());
        let mut annotations =
            json!({"barge.dev/authorized-stage": format!("{}:{stage}", self.h.ns)});
        for repo in repos {
            if let (Some(all), Some(knobs)) = (
                annotations.as_object_mut(),
                repo.workload.knobs().as_object(),
            ) {
                all.extend(knobs.clone());
            }
        }
        let sources: Vec<Value> = repos
            .iter()
            .map(|r| json!({"repoURL": r.url(), "path": ".", "targetRevision": "main"}))
            .collect();
        let mut app = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": self.h.argocd_ns, "annotations": annotations},
            "spec": {
                "project": barge_testenv::argocd::PROJECT,
                "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
            },
        });
        if sources.len() == 1 {
            app["spec"]["source"] = sources[0].clone();
        } else {
            app["spec"]["sources"] = Value::Array(sources);
        }
        merge(&mut app, extra);
        Ok(app)
    }

    /// Applies `objects` (Applications, tasks) with Freight `f1` naming
    /// `commits`, Stage `dev` promoting with `steps`, and Promotion `p1` of
    /// `f1` to `dev`.
    pub async fn promote_to_dev(
        &self,
        mut objects: Vec<Value>,
        commits: &[(&GitRepo, &str)],
        steps: Value,
    ) -> TestResult {
        objects.extend([
            self.freight("f1", commits),
            stage("dev", steps),
            promotion("p1", "dev", "f1"),
        ]);
        self.h.apply(Value::Array(objects)).await
    }

    /// The common setup: a repository of `workload` and a new commit of it;
    /// Stage `dev` whose template is `steps(app, repo)`, its Application
    /// `app` deploying the repository, Freight `f1` at the commit and
    /// Promotion `p1` of it.
    pub async fn promote_once(
        &self,
        workload: Workload,
        steps: impl FnOnce(&str, &GitRepo) -> Value,
    ) -> Result<Promoted, Error> {
        let repo = GitRepo::new(workload)?;
        let sha = repo.commit()?;
        let app = self.app_name("dev");
        let objects = vec![self.application(&app, "dev", &[&repo], json!({})).await?];
        self.promote_to_dev(objects, &[(&repo, &sha)], steps(&app, &repo))
            .await?;
        Ok(Promoted {
            app,
            _repo: repo,
            sha,
        })
    }

    /// Freight naming one commit per repository.
    pub fn freight(&self, name: &str, commits: &[(&GitRepo, &str)]) -> Value {
        let commits: Vec<Value> = commits
            .iter()
            .map(|(repo, sha)| json!({"repoURL": repo.url(), "id": sha}))
            .collect();
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": name},
            "origin": {"kind": "Warehouse", "name": "demo"},
            "commits": commits,
        })
    }

    /// The API of the scenario's Applications.
    pub fn applications(&self) -> Api<DynamicObject> {
        barge_argocd_double::fixtures::applications(self.h.client.clone(), &self.h.argocd_ns)
    }

    /// The Application as Argo CD (or the double) left it.
    pub async fn app(&self, name: &str) -> Result<Value, Error> {
        let api = self.applications();
        Ok(serde_json::to_value(api.get(name).await?)?)
    }

    /// How many times Argo CD's own history says `revision` was deployed.
    pub async fn deployments_of(&self, app: &str, revision: &str) -> Result<usize, Error> {
        let app = self.app(app).await?;
        let history = app
            .pointer("/status/history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(history
            .iter()
            .filter(|entry| {
                entry.get("revision").and_then(Value::as_str) == Some(revision)
                    || entry
                        .get("revisions")
                        .and_then(Value::as_array)
                        .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(revision)))
            })
            .count())
    }

    /// Waits until Argo CD has started the Application's sync (its operation
    /// state is Running).
    pub async fn until_sync_running(&self, app: &str) -> TestResult {
        self.until_app(app, "Argo CD syncing", |a| {
            a.pointer("/status/operationState/phase")
                .and_then(Value::as_str)
                == Some("Running")
        })
        .await
    }

    /// Waits until Argo CD reports the Application synced to `revisions`
    /// (one per source). Argo CD compares after the sync's final write, so
    /// a Promotion can succeed a moment before this shows.
    pub async fn until_synced_to(&self, app: &str, revisions: &[&str]) -> TestResult {
        let want: Vec<String> = revisions.iter().map(|r| r.to_string()).collect();
        self.until_app(
            app,
            &format!("Argo CD reporting {want:?} synced"),
            move |a| synced_revisions(a) == want,
        )
        .await
    }

    /// Waits (on watch events) until `condition` holds for the Application,
    /// given as JSON.
    pub async fn until_app(
        &self,
        app: &str,
        what: &str,
        condition: impl Fn(&Value) -> bool + Send + 'static,
    ) -> TestResult {
        let api = self.applications();
        let holds = move |o: Option<&DynamicObject>| {
            o.and_then(|o| serde_json::to_value(o).ok())
                .is_some_and(|v| condition(&v))
        };
        let wait = kube::runtime::wait::await_condition(api, app, holds);
        tokio::time::timeout(crate::support::PATIENCE, wait)
            .await
            .map_err(|_| {
                format!(
                    "{app}: {what} did not happen within {:?}",
                    crate::support::PATIENCE
                )
            })??;
        Ok(())
    }

    /// Lets a [`Workload::HeldSync`] sync finish.
    pub async fn release_sync(&self, app: &str) -> TestResult {
        match self.kind {
            ArgoCdKind::Double => {
                self.annotate(app, "double.barge.dev/outcome", "succeed")
                    .await
            }
            ArgoCdKind::Real => self.set_widget_health(app, "hold", "Healthy").await,
        }
    }

    /// Makes the Application's workload report `health` from now on.
    pub async fn set_health(&self, app: &str, health: &str) -> TestResult {
        match self.kind {
            ArgoCdKind::Double => {
                self.annotate(app, "double.barge.dev/live-health", health)
                    .await
            }
            ArgoCdKind::Real => self.set_widget_health(app, "app", health).await,
        }
    }

    async fn annotate(&self, app: &str, key: &str, value: &str) -> TestResult {
        let api = self.applications();
        let patch = json!({"metadata": {"annotations": {key: value}}});
        api.patch(app, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    async fn set_widget_health(&self, app: &str, widget: &str, health: &str) -> TestResult {
        let destination = self
            .destinations
            .lock()
            .map_err(|_| "poisoned")?
            .get(app)
            .cloned()
            .ok_or_else(|| format!("no destination recorded for {app}"))?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.h.client.clone(), &destination, &widget_resource());
        // The hook exists once Argo CD has created it; wait for it.
        let exists = kube::runtime::wait::await_condition(
            api.clone(),
            widget,
            |o: Option<&DynamicObject>| o.is_some(),
        );
        tokio::time::timeout(crate::support::PATIENCE, exists)
            .await
            .map_err(|_| format!("Widget {widget} never appeared in {destination}"))??;
        let patch = json!({"status": {"health": health, "message": format!("set by the test to {health}")}});
        api.patch(widget, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }
}

/// The revision(s) Argo CD reports the Application synced to.
fn synced_revisions(app: &Value) -> Vec<String> {
    let sync = &app["status"]["sync"];
    match sync["revisions"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|r| r.as_str().map(String::from))
            .collect(),
        _ => sync["revision"]
            .as_str()
            .map(String::from)
            .into_iter()
            .collect(),
    }
}

/// Deep-merges `extra` into `target` (objects merge, everything else replaces).
fn merge(target: &mut Value, extra: Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, v) in e {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, e) => *t = e,
    }
}

/// An `argocd-update` step's app entry that moves every source in `repos`
/// to its commit in the Freight.
pub fn update_sources(repos: &[&GitRepo]) -> Value {
    Value::Array(
        repos
            .iter()
            .map(|r| {
                json!({
                    "repoURL": r.url(),
                    "desiredRevision": format!("${{{{ commitFrom(\"{}\").id }}}}", r.url()),
                    "updateTargetRevision": true,
                })
            })
            .collect(),
    )
}
