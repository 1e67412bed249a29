//! Three of Kargo's own public example pipelines, with only their
//! `apiVersion` changed (`kargo.akuity.io/v1alpha1` → `barge.dev/v1alpha1`),
//! copied into `tests/fixtures/public-pipelines/` (its README.md lists every
//! file with its source):
//!
//! - `yaml-parse-update`: akuity/kargo-examples at
//!   b164e6af2e70abae0057d6b39ca0207bedf2eeef,
//!   `03-features/03-yaml-parse-update/kargo.yaml` (git-clone of two
//!   checkouts, yaml-parse, yaml-update, git-commit, git-push), with the
//!   files it reads and writes from the same directory's `testdata/`.
//! - `monorepo`: akuity/kargo-examples at the same commit,
//!   `02-git-driven/03-kustomize-driven/01-image-only/02-monorepo/kargo.yaml`
//!   (a PromotionTask of git-clone, kustomize-set-image, git-commit,
//!   git-push, argocd-update; 20 apps × 3 Stages) and its `argocd.yaml`
//!   ApplicationSet; the GitOps content is krancour/kargo-demo-gitops's
//!   `kustomize` branch at 961cfaedbc53aacdb65110028839a2c1c281290d, laid out
//!   per app under `apps/app-NN/` on a branch `monorepo` (that branch is not
//!   published; the README says why this layout).
//! - `kargo-advanced`: akuity/kargo-advanced at
//!   7de9a099297025d5e2033ff44030e244ea180e8f, `kargo/*.yaml` (a
//!   PromotionTask of git-clone, git-clear, kustomize-set-image,
//!   kustomize-build, git-commit, git-push, argocd-update; eight Stages, one
//!   of them the control-flow Stage `prod`), `argocd/appset.yaml`, and the
//!   same repository's `base/` and `env/`.
//!
//! For each, `barge expand -f <its manifests>` must exit 0 (every step's
//! kind and config checked), and the pipeline must run against a real
//! kube-apiserver, the local git server and the real Argo CD
//! application-controller and repo-server (yaml-parse-update has no Argo CD
//! step: it runs on the same harness, against the git server only). Each
//! run prints how long it took from the apply of its manifests.
//!
//! Where Barge lacks something a pipeline needs, its test fails saying what
//! (nothing is worked around to make it pass):
//!
//! - monorepo: its PromotionTask's `git-commit` has
//!   `messageFromSteps: [update-image]`, naming a step of the task by its
//!   alias there. Kargo 1.2 to 1.4 (the field was removed in 1.5) skip an
//!   alias without output (here: all of them, since the task's steps are
//!   `task-1::…` in the Promotion) and write "Kargo made some changes";
//!   Barge ends the Promotion Errored at that step.
//! - kargo-advanced: Barge has no control-flow Stages (`prod` has no
//!   `promotionTemplate`): `barge expand` of the pipeline fails on it, and
//!   Freight available to it is never verified there, so it never becomes
//!   available to the Stages downstream of it. The run test goes on past
//!   the latter by approving the Freight for those Stages, checks the rest,
//!   and fails at the end listing it.
//!
//! What the test does at run time, and nothing more:
//!
//! - **Substitutions in the Kargo manifests** (the personalisation the
//!   examples ask of their users): each example's repository URL
//!   (`https://github.com/<github-username>/kargo-examples.git`,
//!   `https://github.com/<github-username>/kargo-demo-gitops.git`,
//!   `https://github.com/akuity/kargo-advanced.git`) becomes the local git
//!   server's `file://` URL of the published copy; the credentials Secrets'
//!   remaining `<github-username>` and `<github-pat>` become `barge-test` and
//!   `unused` (`file://` needs no credentials); every object's
//!   `metadata.namespace` (the Kargo Project's name) becomes the test's
//!   namespace.
//! - **Not applied**: `Warehouse` and Argo Rollouts' `AnalysisTemplate`
//!   (Barge has no such kinds yet: Warehouses and analysis are later issues),
//!   and `Project`, which Barge has (`tests/projects.rs`, including the
//!   monorepo's pre-v1.3 `spec.promotionPolicies`) but which names its own
//!   namespace while the test runs in its own. They are carried in the
//!   files, and `barge expand` skips them. So the test creates the Freight
//!   each Warehouse would have discovered, and creates the Promotions
//!   itself (the other two examples promote by hand anyway). `kargo-advanced`'s `verification`
//!   (AnalysisTemplate `pokemon-xp`, which calls pokeapi.co) is accepted by
//!   Barge and not run.
//! - **Applications**: ApplicationSets are not available in the test
//!   environment, so the test makes the Applications each example's
//!   ApplicationSet template would generate (its `{{…}}` parameters filled
//!   in as the generator would), in the test's own Argo CD namespace instead
//!   of `argocd` (so Application names need no change), with the project part
//!   of `kargo.akuity.io/authorized-stage` set to the test's namespace. Barge
//!   reads only its own key, `barge.dev/authorized-stage`, so the test adds
//!   that key with the same value (keeping Kargo's): without it every
//!   argocd-update is refused.
//!   For `kargo-advanced` the destination server (which its `personalize.sh`
//!   asks for) is the in-cluster one, and the project is `default`: the test
//!   Argo CD reconciles Applications only in namespaces its `default`
//!   AppProject lists, which the example's `guestbook` AppProject does not.
//!   For `monorepo`, only app-01's three Applications are made, and only the
//!   app-01 chain (app-01-test → app-01-uat → app-01-prod) is promoted; all
//!   60 Stages are applied.
//! - **Approvals**: the cluster runs no workload controllers, so the rendered
//!   Deployments never become Healthy, the Stages that deploy them never
//!   become Healthy, and Freight is never verified in them. Kargo admits a
//!   Promotion only of Freight available to its Stage, so before promoting to
//!   a Stage that takes Freight from such an upstream Stage the test approves
//!   the Freight for it (`status.approvedFor`, what `kargo approve` writes).
//!   For the same reason these Stages' health is not asserted; what is: the
//!   Promotion Succeeded, the pushed commit's content and message, and the
//!   Application synced to the pushed commit. kargo-advanced's control-flow
//!   Stage `prod` gets no Promotion (Kargo refuses them): the test approves
//!   the Freight for it, and from there Kargo verifies the Freight in `prod`
//!   by itself, which makes it available to the three `prod-*` Stages
//!   without approval.
//! - **Argo CD renders Kustomize**: the monorepo Applications point at
//!   Kustomize directories, so the test environment's repo-server has the
//!   kustomize (and helm) that `make control-plane` built on its `PATH`, as
//!   Argo CD's image has its own.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use barge::api::{Freight, PromotionPhase};
use barge_testenv::git::GitRepo;
use barge_testenv::git_server::{GitServer, Login};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};
use support::{ArgoCdKind, Error, Harness, TestResult};

/// Kargo's annotation naming the Stages that may change an Application.
const KARGO_AUTHORIZED_STAGE: &str = "kargo.akuity.io/authorized-stage";
/// Barge's, the only one it reads.
const BARGE_AUTHORIZED_STAGE: &str = "barge.dev/authorized-stage";

/// Kinds in the examples' files that Barge does not have yet: carried, not
/// applied.
const NOT_ACTED_ON: [&str; 3] = ["Project", "Warehouse", "AnalysisTemplate"];

/// The three pipelines run one at a time, so that each one's run time is its
/// own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/public-pipelines")
        .join(path)
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Writes every file under the fixture directory `from` into `repo` under
/// `to` (a path inside the repository, `""` for its root).
fn copy_into(repo: &GitRepo, from: &str, to: &str) -> Result<(), Error> {
    let root = fixture(from);
    for file in support::examples::files_under(&root)? {
        let relative = file.strip_prefix(&root)?.display().to_string();
        let target = if to.is_empty() {
            relative
        } else {
            format!("{to}/{relative}")
        };
        repo.write(&target, &read(&file)?)?;
    }
    Ok(())
}

// ---- barge expand ----

/// Runs `barge expand` with `args`: (exited 0, stdout, stderr).
fn barge_expand(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_barge"))
        .arg("expand")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run barge: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `barge expand -f <dir>` as the example ships (no Freight: expressions
/// that need one stay as written, with a note) must exit 0; then with
/// `freight` (written to a file) as well, whose plan is returned.
fn expand_with_and_without(dir: &str, freight: &Value) -> String {
    let path = fixture(dir).display().to_string();
    let (ok, stdout, stderr) = barge_expand(&["-f", &path]);
    assert!(ok, "barge expand -f {path} failed:\n{stderr}\n{stdout}");
    assert!(stdout.starts_with("---\n"), "{stdout}");

    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let freight_file = tmp.path().join("freight.yaml");
    std::fs::write(
        &freight_file,
        serde_saphyr::to_string(freight).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let freight_file = freight_file.display().to_string();
    let (ok, stdout, stderr) = barge_expand(&["-f", &path, &freight_file]);
    assert!(
        ok,
        "barge expand -f {path} {freight_file} failed:\n{stderr}\n{stdout}"
    );
    stdout
}

/// The plans of `stdout` (a YAML stream of expanded Promotions).
fn plans(stdout: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(stdout)
        .unwrap_or_else(|e| panic!("barge expand printed no YAML stream: {e}\n{stdout}"))
        .into_iter()
        .filter(|p| !p.is_null())
        .collect()
}

fn plan_of<'p>(plans: &'p [Value], stage: &str) -> &'p Value {
    plans
        .iter()
        .find(|p| p["stage"] == stage)
        .unwrap_or_else(|| panic!("no plan for Stage {stage}"))
}

/// The config of the step at `index` of `plan`, which must use `uses`.
fn step_config<'p>(plan: &'p Value, index: usize, uses: &str) -> &'p Value {
    let step = &plan["steps"][index];
    assert_eq!(step["uses"], uses, "{plan}");
    &step["config"]
}

// ---- what the test creates in the Warehouses' and ApplicationSets' stead ----

/// A Freight as a Warehouse of `origin` would have discovered it.
fn freight(name: &str, namespace: &str, origin: &str, artifacts: Value) -> Value {
    let mut freight = json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
        "metadata": {"name": name, "namespace": namespace},
        "alias": name,
        "origin": {"kind": "Warehouse", "name": origin},
    });
    if let (Some(f), Some(a)) = (freight.as_object_mut(), artifacts.as_object()) {
        f.extend(a.clone());
    }
    freight
}

/// The example's Kargo manifests in `files` as the test applies them: each
/// `(from, to)` substitution made in the text, then every object moved into
/// `namespace`. Returns them and the kinds and names carried but not
/// applied.
fn kargo_objects(
    files: &[PathBuf],
    substitutions: &[(&str, &str)],
    namespace: &str,
) -> Result<(Vec<Value>, Vec<String>), Error> {
    let (mut objects, mut carried) = (Vec::new(), Vec::new());
    for file in files {
        let mut text = read(file)?;
        for (from, to) in substitutions {
            text = text.replace(from, to);
        }
        for mut object in serde_saphyr::from_multiple::<Value>(&text)? {
            if object.is_null() {
                continue;
            }
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            if NOT_ACTED_ON.contains(&kind.as_str()) {
                carried.push(format!(
                    "{kind} {}",
                    object["metadata"]["name"].as_str().unwrap_or_default()
                ));
                continue;
            }
            object["metadata"]["namespace"] = json!(namespace);
            objects.push(object);
        }
    }
    Ok((objects, carried))
}

/// The ApplicationSet in `file` (after `substitutions`).
fn application_set(file: &Path, substitutions: &[(&str, &str)]) -> Result<Value, Error> {
    let mut text = read(file)?;
    for (from, to) in substitutions {
        text = text.replace(from, to);
    }
    let appset: Value = serde_saphyr::from_str(&text)?;
    assert_eq!(appset["kind"], "ApplicationSet", "{}", file.display());
    Ok(appset)
}

/// The Application the ApplicationSet's template generates for `params`
/// (`{{name}}` → value), in the test's Argo CD namespace, authorizing the
/// test namespace's Stage under both Kargo's and Barge's annotation.
fn generated_application(
    h: &Harness,
    appset: &Value,
    params: &[(&str, &str)],
) -> Result<Value, Error> {
    let mut text = serde_json::to_string(&appset["spec"]["template"])?;
    for (name, value) in params {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    let mut app: Value = serde_json::from_str(&text)?;
    app["apiVersion"] = json!("argoproj.io/v1alpha1");
    app["kind"] = json!("Application");
    app["metadata"]["namespace"] = json!(h.argocd_ns);
    let authorized = app["metadata"]["annotations"][KARGO_AUTHORIZED_STAGE]
        .as_str()
        .and_then(|v| v.split_once(':'))
        .map(|(_, stage)| format!("{}:{stage}", h.ns))
        .ok_or(format!("template without {KARGO_AUTHORIZED_STAGE}: {app}"))?;
    app["metadata"]["annotations"][KARGO_AUTHORIZED_STAGE] = json!(authorized);
    app["metadata"]["annotations"][BARGE_AUTHORIZED_STAGE] = json!(authorized);
    Ok(app)
}

// ---- promoting ----

/// Creates Promotion `<stage>.<freight>` and waits until it ends; it must
/// have Succeeded. Returns its uid.
async fn promote(h: &Harness, stage: &str, freight: &str) -> Result<String, Error> {
    let name = format!("{stage}.{freight}");
    h.apply(support::promotion(&name, stage, freight)).await?;
    let promotion = h.finished(&name).await?;
    if promotion.phase() != PromotionPhase::Succeeded {
        return Err(format!(
            "Promotion {name} ended {}: {}",
            promotion.phase(),
            support::message(&promotion)
        )
        .into());
    }
    Ok(promotion.metadata.uid.unwrap_or_default())
}

/// Promotes `freight` to each Stage at once; returns each Promotion's uid.
async fn promote_all(h: &Harness, stages: &[&str], freight: &str) -> Result<Vec<String>, Error> {
    futures::future::try_join_all(stages.iter().map(|s| promote(h, s, freight))).await
}

/// Approves `freight` for `stage`, as `kargo approve` does.
async fn approve(h: &Harness, freight: &str, stage: &str) -> TestResult {
    let patch = json!({"status": {"approvedFor": {stage: {"approvedAt": jiff::Timestamp::now().to_string()}}}});
    Api::<Freight>::namespaced(h.client.clone(), &h.ns)
        .patch_status(freight, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Whether `freight` becomes verified in `stage` within `patience`.
async fn verified_within(
    h: &Harness,
    freight: &str,
    stage: &str,
    patience: Duration,
) -> Result<bool, Error> {
    let api = Api::<Freight>::namespaced(h.client.clone(), &h.ns);
    let stage = stage.to_string();
    let cond = move |f: Option<&Freight>| {
        f.and_then(|f| f.status.as_ref())
            .is_some_and(|s| s.verified_in.contains_key(&stage))
    };
    match tokio::time::timeout(patience, await_condition(api, freight, cond)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Ok(false),
    }
}

/// The Application `name` of the test's Argo CD namespace.
async fn application(h: &Harness, name: &str) -> Result<Value, Error> {
    let apps = barge_argocd_double::fixtures::applications(h.client.clone(), &h.argocd_ns);
    Ok(serde_json::to_value(apps.get(name).await?)?)
}

/// Asserts that Argo CD's last sync of Application `name` (the one
/// argocd-update asked for) succeeded at `revision`. Not that the
/// Application compares Synced: a Deployment no controller ever updates may
/// compare OutOfSync for a while after the sync, and the Promotion does not
/// wait for that (as Kargo's does not).
async fn assert_synced_to(h: &Harness, name: &str, revision: &str) -> TestResult {
    let app = application(h, name).await?;
    let operation = &app["status"]["operationState"];
    assert_eq!(operation["phase"], "Succeeded", "{name}: {app:#}");
    assert_eq!(
        operation["syncResult"]["revision"], revision,
        "{name}: {app:#}"
    );
    Ok(())
}

/// Prints how long the pipeline took since `started` (the manifests'
/// apply).
fn took(pipeline: &str, started: Instant) {
    println!("{pipeline}: ran in {} ms", started.elapsed().as_millis());
}

// =====================================================================
// akuity/kargo-examples 03-features/03-yaml-parse-update
// =====================================================================

const YAML_FREIGHT: &str = "source-v2-0-0";
const YAML_STAGE: &str = "yaml-parse-update";
const YAML_DIR: &str = "03-features/03-yaml-parse-update/testdata";

/// The Freight of Warehouse `git-source-file`: the commit of `main` that
/// touched `source.yaml`.
fn yaml_freight(namespace: &str, repo_url: &str, commit: &str) -> Value {
    freight(
        YAML_FREIGHT,
        namespace,
        "git-source-file",
        json!({"commits": [{"repoURL": repo_url, "id": commit, "branch": "main"}]}),
    )
}

#[test]
fn barge_expand_accepts_kargo_examples_yaml_parse_update() {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let url = "https://github.com/<github-username>/kargo-examples.git";
    let stdout = expand_with_and_without(
        "yaml-parse-update",
        &yaml_freight("kargo-demo-17", url, commit),
    );
    let plans = plans(&stdout);
    let plan = plan_of(&plans, YAML_STAGE);
    let clone = step_config(plan, 0, "git-clone");
    assert_eq!(clone["repoURL"], url, "{plan}");
    assert_eq!(clone["checkout"][0]["commit"], commit, "{plan}");
    assert_eq!(clone["checkout"][1]["branch"], "main", "{plan}");
    step_config(plan, 1, "yaml-parse");
    step_config(plan, 2, "yaml-update");
    step_config(plan, 3, "git-commit");
    assert_eq!(step_config(plan, 4, "git-push")["path"], "./dst", "{plan}");
}

/// One Promotion: `main` gains a commit setting the destination file's
/// `image.tag` to the source file's `version` at the Freight's commit. (The
/// Stage has no health checks: Barge reports its health NotApplicable and so
/// does not mark the Freight verified in it, where Kargo's aggregate of no
/// checks is Healthy and verifies it. Nothing downstream depends on it here,
/// so the test does not assert it.)
#[tokio::test]
async fn kargo_examples_yaml_parse_update_runs_against_the_git_server() -> TestResult {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = GitServer::start(Login {
        username: "barge-test".into(),
        password: "unused".into(),
    })
    .await?;
    let repo = GitRepo::init()?;
    copy_into(&repo, "yaml-parse-update/testdata", YAML_DIR)?;
    let commit = repo.commit("kargo-examples' yaml-parse-update test data")?;
    server.publish("kargo-examples", &repo)?;
    let url = server.file_url("kargo-examples");

    let h = Harness::start_on(ArgoCdKind::Real, |c| c).await?;
    let started = Instant::now();
    let (mut objects, carried) = kargo_objects(
        &[fixture("yaml-parse-update/kargo.yaml")],
        &[
            (
                "https://github.com/<github-username>/kargo-examples.git",
                &url,
            ),
            ("<github-username>", "barge-test"),
            ("<github-pat>", "unused"),
        ],
        &h.ns,
    )?;
    assert_eq!(
        carried,
        ["Project kargo-demo-17", "Warehouse git-source-file"]
    );
    objects.push(yaml_freight(&h.ns, &url, &commit));
    h.apply(Value::Array(objects)).await?;

    let uid = promote(&h, YAML_STAGE, YAML_FREIGHT).await?;
    h.stage_until(YAML_STAGE, "using the Freight", |s| {
        support::current_freight(s).as_deref() == Some(YAML_FREIGHT)
    })
    .await?;
    took("kargo-examples yaml-parse-update", started);

    // main gained one commit: the destination file with the source's version.
    let destination = server.git(
        "kargo-examples",
        &["show", &format!("main:{YAML_DIR}/destination.yaml")],
    )?;
    assert_eq!(destination, "image:\n  tag: v2.0.0\n");
    let source = server.git(
        "kargo-examples",
        &["show", &format!("main:{YAML_DIR}/source.yaml")],
    )?;
    assert_eq!(
        source,
        read(&fixture("yaml-parse-update/testdata/source.yaml"))?
    );
    let parent = server.git("kargo-examples", &["rev-parse", "main~1"])?;
    assert_eq!(parent.trim(), commit);
    let message = server.git("kargo-examples", &["log", "-1", "--format=%B", "main"])?;
    assert!(
        message.starts_with("Update image tag to v2.0.0\n"),
        "{message}"
    );
    assert!(
        message.contains(&format!("Barge-Promotion: {uid}")),
        "{message}"
    );
    h.shutdown().await;
    Ok(())
}

// =====================================================================
// akuity/kargo-examples 02-git-driven/03-kustomize-driven/01-image-only/02-monorepo
// =====================================================================

const MONO_FREIGHT: &str = "nginx-1-29-1";
const MONO_TAG: &str = "1.29.1";
/// The app chain the test promotes.
const MONO_STAGES: [&str; 3] = ["test", "uat", "prod"];

/// The Freight of Warehouse `kargo-demo`: a tag of `public.ecr.aws/nginx/nginx`
/// within `^1.24.0`.
fn mono_freight(namespace: &str) -> Value {
    freight(
        MONO_FREIGHT,
        namespace,
        "kargo-demo",
        json!({"images": [{"repoURL": "public.ecr.aws/nginx/nginx", "tag": MONO_TAG}]}),
    )
}

#[test]
fn barge_expand_accepts_kargo_examples_monorepo() {
    let stdout = expand_with_and_without("monorepo", &mono_freight("kargo-demo-14"));
    let plans = plans(&stdout);
    assert_eq!(plans.len(), 60, "one plan per Stage");
    for app in 1..=20 {
        for stage in MONO_STAGES {
            let plan = plan_of(&plans, &format!("app-{app:02}-{stage}"));
            let set_image = step_config(plan, 1, "kustomize-set-image");
            assert_eq!(
                set_image["path"],
                format!("./src/apps/app-{app:02}/stages/{stage}"),
                "{plan}"
            );
            assert_eq!(set_image["images"][0]["tag"], MONO_TAG, "{plan}");
            step_config(plan, 2, "git-commit");
            step_config(plan, 3, "git-push");
            let update = step_config(plan, 4, "argocd-update");
            assert_eq!(
                update["apps"][0]["name"],
                format!("kargo-demo-14-{app:02}-{stage}"),
                "{plan}"
            );
        }
    }
}

/// The app-01 chain, test → uat → prod: each Promotion sets the image in its
/// app's Stage overlay on `monorepo`, pushes, and syncs its Application.
/// Fails today: Barge errors on the task's `messageFromSteps` (see the
/// module's doc).
#[tokio::test]
async fn kargo_examples_monorepo_app_01_runs_against_real_argo_cd() -> TestResult {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = GitServer::start(Login {
        username: "barge-test".into(),
        password: "unused".into(),
    })
    .await?;
    let repo = GitRepo::init()?;
    for app in 1..=20 {
        copy_into(&repo, "monorepo/gitops", &format!("apps/app-{app:02}"))?;
    }
    repo.commit("krancour/kargo-demo-gitops' kustomize branch, once per app")?;
    server.publish("kargo-demo-gitops", &repo)?;
    server.git("kargo-demo-gitops", &["branch", "-m", "main", "monorepo"])?;
    let url = server.file_url("kargo-demo-gitops");
    let substitutions = [
        (
            "https://github.com/<github-username>/kargo-demo-gitops.git",
            url.as_str(),
        ),
        ("<github-username>", "barge-test"),
        ("<github-pat>", "unused"),
    ];

    let h = Harness::start_on(ArgoCdKind::Real, |c| c).await?;
    let started = Instant::now();
    let (mut objects, carried) =
        kargo_objects(&[fixture("monorepo/kargo.yaml")], &substitutions, &h.ns)?;
    assert_eq!(carried, ["Project kargo-demo-14", "Warehouse kargo-demo"]);
    assert_eq!(objects.iter().filter(|o| o["kind"] == "Stage").count(), 60);
    let appset = application_set(&fixture("monorepo/argocd/argocd.yaml"), &substitutions)?;
    for stage in MONO_STAGES {
        objects.push(generated_application(
            &h,
            &appset,
            &[("app", "01"), ("stage", stage)],
        )?);
    }
    objects.push(mono_freight(&h.ns));
    h.apply(Value::Array(objects)).await?;

    let mut upstream: Option<&str> = None;
    for stage in MONO_STAGES {
        let stage_name = format!("app-01-{stage}");
        if upstream.is_some() {
            approve(&h, MONO_FREIGHT, &stage_name).await?;
        }
        let uid = promote(&h, &stage_name, MONO_FREIGHT).await?;
        upstream = Some(stage);

        // The head of `monorepo` is this Promotion's commit: the app's Stage
        // overlay now sets the image, and nothing else changed.
        let head = server
            .git("kargo-demo-gitops", &["rev-parse", "monorepo"])?
            .trim()
            .to_string();
        let overlay = format!("apps/app-01/stages/{stage}/kustomization.yaml");
        let kustomization = server.git(
            "kargo-demo-gitops",
            &["show", &format!("monorepo:{overlay}")],
        )?;
        assert!(
            kustomization.contains("- name: public.ecr.aws/nginx/nginx\n")
                && kustomization.contains(&format!("newTag: {MONO_TAG}\n")),
            "{kustomization}"
        );
        let changed = server.git(
            "kargo-demo-gitops",
            &["diff", "--name-only", "monorepo~1", "monorepo"],
        )?;
        assert_eq!(changed.trim(), overlay);
        // The message comes from `messageFromSteps: [update-image]`, which
        // names a step of the task by its alias there: Kargo 1.2 to 1.4 look
        // it up among the Promotion's aliases (`task-1::update-image`), find
        // nothing, and write "Kargo made some changes". Only Barge's trailer
        // is asserted.
        let message = server.git(
            "kargo-demo-gitops",
            &["log", "-1", "--format=%B", "monorepo"],
        )?;
        assert!(
            message.contains(&format!("Barge-Promotion: {uid}")),
            "{message}"
        );
        // argocd-update synced the app's Application at that head.
        assert_synced_to(&h, &format!("kargo-demo-14-01-{stage}"), &head).await?;
    }
    took("kargo-examples monorepo (app-01 chain)", started);
    let untouched = server.git(
        "kargo-demo-gitops",
        &[
            "diff",
            "--stat",
            "monorepo~3",
            "monorepo",
            "--",
            "apps/app-02",
        ],
    )?;
    assert_eq!(untouched, "", "only app-01 was promoted");
    h.shutdown().await;
    Ok(())
}

// =====================================================================
// akuity/kargo-advanced
// =====================================================================

const ADV_FREIGHT: &str = "guestbook-v0-0-2";
const ADV_TAG: &str = "v0.0.2";
const ADV_IMAGE: &str = "ghcr.io/akuity/guestbook";

fn adv_freight(namespace: &str, repo_url: &str, commit: &str) -> Value {
    freight(
        ADV_FREIGHT,
        namespace,
        "guestbook",
        json!({
            "images": [{"repoURL": ADV_IMAGE, "tag": ADV_TAG}],
            "commits": [{"repoURL": repo_url, "id": commit, "branch": "main"}],
        }),
    )
}

/// The Stages with an `env/<stage>` overlay, each its own Application.
fn adv_env_stages() -> Result<Vec<String>, Error> {
    let mut stages = Vec::new();
    for entry in std::fs::read_dir(fixture("kargo-advanced/gitops/env"))? {
        stages.push(entry?.file_name().to_string_lossy().into_owned());
    }
    stages.sort();
    Ok(stages)
}

/// The control-flow Stage: no promotion template.
const ADV_CONTROL_FLOW: &str = "prod";

#[test]
fn barge_expand_accepts_kargo_advanced() {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let url = "https://github.com/akuity/kargo-advanced.git";
    let dir = fixture("kargo-advanced/kargo").display().to_string();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let freight_file = tmp.path().join("freight.yaml");
    let freight = adv_freight("kargo-advanced", url, commit);
    std::fs::write(
        &freight_file,
        serde_saphyr::to_string(&freight).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let freight_file = freight_file.display().to_string();

    // Each Stage with steps, one at a time.
    for stage in adv_env_stages().unwrap_or_else(|e| panic!("{e}")) {
        let (ok, stdout, stderr) = barge_expand(&["-f", &dir, &freight_file, "--stage", &stage]);
        assert!(
            ok,
            "barge expand --stage {stage} failed:\n{stderr}\n{stdout}"
        );
        let plans = plans(&stdout);
        let plan = plan_of(&plans, &stage);
        let clone = step_config(plan, 0, "git-clone");
        assert_eq!(clone["checkout"][0]["commit"], commit, "{plan}");
        assert_eq!(
            clone["checkout"][1]["branch"],
            format!("env/{stage}"),
            "{plan}"
        );
        step_config(plan, 1, "git-clear");
        assert_eq!(
            step_config(plan, 2, "kustomize-set-image")["images"][0]["tag"],
            ADV_TAG,
            "{plan}"
        );
        step_config(plan, 3, "kustomize-build");
        step_config(plan, 4, "git-commit");
        step_config(plan, 5, "git-push");
        let update = step_config(plan, 6, "argocd-update");
        assert_eq!(
            update["apps"][0]["name"],
            format!("guestbook-{stage}"),
            "{plan}"
        );
    }

    // The whole pipeline as published, which includes the control-flow
    // Stage `prod`: Kargo promotes nothing to it (its webhook refuses such
    // Promotions) and verifies Freight there as soon as it is available, so
    // there is nothing to expand for it, and nothing wrong.
    for args in [vec!["-f", &dir], vec!["-f", &dir, &freight_file]] {
        let (ok, stdout, stderr) = barge_expand(&args);
        assert!(
            ok,
            "barge expand {} rejects kargo-advanced as published, because of its \
             control-flow Stage \"{ADV_CONTROL_FLOW}\" (a Stage without promotionTemplate, \
             which Kargo supports): Barge lacks control-flow Stages in expand.\n\
             stderr:\n{stderr}\nstdout:\n{stdout}",
            args.join(" ")
        );
    }
}

/// All eight Stages in the pipeline's order, each of the seven with steps
/// rendering its own `env/<stage>` branch and syncing its Application.
/// Fails today, after checking all of that: Barge has no control-flow Stages
/// (see the module's doc).
#[tokio::test]
async fn kargo_advanced_runs_every_stage_against_real_argo_cd() -> TestResult {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = GitServer::start(Login {
        username: "barge-test".into(),
        password: "unused".into(),
    })
    .await?;
    let repo = GitRepo::init()?;
    copy_into(&repo, "kargo-advanced/gitops", "")?;
    let commit = repo.commit("akuity/kargo-advanced's base/ and env/")?;
    server.publish("kargo-advanced", &repo)?;
    let url = server.file_url("kargo-advanced");
    let substitutions = [("https://github.com/akuity/kargo-advanced.git", url.as_str())];

    let h = Harness::start_on(ArgoCdKind::Real, |c| c).await?;
    let started = Instant::now();
    let files: Vec<PathBuf> = [
        "project",
        "warehouse",
        "promotiontasks",
        "stages",
        "analysis",
    ]
    .iter()
    .map(|f| fixture(&format!("kargo-advanced/kargo/{f}.yaml")))
    .collect();
    let (mut objects, carried) = kargo_objects(&files, &substitutions, &h.ns)?;
    assert_eq!(
        carried,
        [
            "Project kargo-advanced",
            "Warehouse guestbook",
            "AnalysisTemplate pokemon-xp"
        ]
    );
    let appset = application_set(
        &fixture("kargo-advanced/argocd/appset.yaml"),
        &substitutions,
    )?;
    let env_stages = adv_env_stages()?;
    for stage in &env_stages {
        let mut app = generated_application(&h, &appset, &[("path.basename", stage)])?;
        app["spec"]["destination"]["server"] = json!("https://kubernetes.default.svc");
        app["spec"]["project"] = json!(barge_testenv::argocd::PROJECT);
        objects.push(app);
    }
    objects.push(adv_freight(&h.ns, &url, &commit));
    h.apply(Value::Array(objects)).await?;

    // What Barge lacks to run the pipeline as Kargo does; the test goes on
    // past each (saying how) to check the rest, and fails at the end.
    let mut lacking: Vec<String> = Vec::new();

    // The pipeline's order: dev, staging, the two A/B test Stages at once,
    // the control-flow Stage prod, then the three regions at once.
    promote(&h, "dev", ADV_FREIGHT).await?;
    approve(&h, ADV_FREIGHT, "staging").await?;
    promote(&h, "staging", ADV_FREIGHT).await?;
    let ab = ["ab-test-a", "ab-test-b"];
    for stage in ab {
        approve(&h, ADV_FREIGHT, stage).await?;
    }
    promote_all(&h, &ab, ADV_FREIGHT).await?;

    // prod has no steps: Kargo refuses Promotions to it, and its control-flow
    // reconciler marks Freight available to it (here: approved for it, since
    // the A/B Stages never verify it) as verified in it, which is what makes
    // the Freight available to the regions.
    approve(&h, ADV_FREIGHT, ADV_CONTROL_FLOW).await?;
    let regions = ["prod-west", "prod-central", "prod-east"];
    let waiting = Instant::now();
    let verified =
        verified_within(&h, ADV_FREIGHT, ADV_CONTROL_FLOW, Duration::from_secs(30)).await?;
    let waited = waiting.elapsed();
    if !verified {
        lacking.push(format!(
            "control-flow Stages: Freight {ADV_FREIGHT}, approved for the control-flow Stage \
             \"{ADV_CONTROL_FLOW}\" (no promotionTemplate), was not verified there within 30 s, \
             so it never becomes available to {regions:?}, which request it from \
             \"{ADV_CONTROL_FLOW}\" (Kargo's ControlFlowStageReconciler verifies it at once); \
             the test approved it for each region instead"
        ));
        for stage in regions {
            approve(&h, ADV_FREIGHT, stage).await?;
        }
    }
    promote_all(&h, &regions, ADV_FREIGHT).await?;
    took(
        "kargo-advanced (7 Stages with steps + control-flow prod)",
        started,
    );
    println!(
        "kargo-advanced: of which {} ms waiting for prod to verify the Freight",
        waited.as_millis()
    );

    for stage in &env_stages {
        // env/<stage> holds exactly what Kustomize rendered from the
        // Freight's commit with the new image, in one commit on a new branch.
        let branch = format!("env/{stage}");
        let files = server.git("kargo-advanced", &["ls-tree", "-r", "--name-only", &branch])?;
        let mut rendered = String::new();
        for file in files.lines() {
            rendered += &server.git("kargo-advanced", &["show", &format!("{branch}:{file}")])?;
        }
        assert!(
            rendered.contains(&format!("image: {ADV_IMAGE}:{ADV_TAG}")),
            "{branch}: {files}\n{rendered}"
        );
        assert!(
            rendered.contains(&format!("namespace: guestbook-{stage}")),
            "{branch}: {rendered}"
        );
        assert!(
            !rendered.contains("kind: Kustomization"),
            "{branch}: {rendered}"
        );
        let count = server.git("kargo-advanced", &["rev-list", "--count", &branch])?;
        assert_eq!(count.trim(), "1", "{branch}");
        let message = server.git("kargo-advanced", &["log", "-1", "--format=%B", &branch])?;
        assert!(
            message.contains(&format!("{ADV_IMAGE}:{ADV_TAG}")),
            "{branch}: {message}"
        );
        let head = server.git("kargo-advanced", &["rev-parse", &branch])?;
        assert_synced_to(&h, &format!("guestbook-{stage}"), head.trim()).await?;
    }
    // main is as published: the pipeline writes only its env/ branches.
    let main = server.git("kargo-advanced", &["rev-parse", "main"])?;
    assert_eq!(main.trim(), commit);
    h.shutdown().await;
    assert!(
        lacking.is_empty(),
        "kargo-advanced ran, but Barge lacks:\n- {}",
        lacking.join("\n- ")
    );
    Ok(())
}
