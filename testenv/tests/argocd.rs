//! The real Argo CD harness: it starts next to the control plane, deploys
//! from a git repository served over `file://`, computes the Widget kind's
//! health from its Lua check, and leaves nothing running however the test
//! binary ends.

use std::time::Duration;

use barge_testenv::TestEnv;
use barge_testenv::argocd::{ARGOCD_VERSION, PROJECT, widget_resource};
use barge_testenv::git::GitRepo;
use barge_testenv::process::{panicking_child, wait_gone};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn env() -> &'static TestEnv {
    match TestEnv::shared().await {
        Ok(env) => env,
        Err(e) => panic!("control plane did not start: {e}"),
    }
}

fn applications() -> ApiResource {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    ApiResource::from_gvk_with_plural(&gvk, "applications")
}

#[test]
fn pinned_version_matches_the_go_wrapper_module() {
    let go_mod = include_str!("../../hack/argocd/go.mod");
    let wanted = format!("github.com/argoproj/argo-cd/v3 v{ARGOCD_VERSION}");
    assert!(
        go_mod
            .lines()
            .any(|l| l.trim().trim_start_matches("require").trim() == wanted),
        "hack/argocd/go.mod does not require {wanted}"
    );
}

#[tokio::test]
async fn argo_cd_syncs_a_git_commit_and_reports_widget_health_from_its_lua_check() -> TestResult {
    let env = env().await;
    let argocd = env.argocd().await?;
    let [controller, repo_server, redis] = argocd.rss_kib();
    println!(
        "Argo CD: started in {:?}; RSS application-controller {} KiB, repo-server {} KiB, miniredis {} KiB",
        argocd.startup_time(),
        controller.unwrap_or(0),
        repo_server.unwrap_or(0),
        redis.unwrap_or(0)
    );

    let repo = GitRepo::init()?;
    repo.write(
        "widget.yaml",
        "apiVersion: test.barge.dev/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 1\n",
    )?;
    let sha = repo.commit("one widget")?;

    let apps_ns = env.argocd_namespace().await?;
    let destination = env.namespace().await?;
    let api: Api<DynamicObject> = Api::namespaced_with(env.client(), &apps_ns, &applications());
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "harness", "namespace": apps_ns},
        "spec": {
            "project": PROJECT,
            "source": {"repoURL": repo.url(), "path": ".", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
        },
        "operation": {"sync": {"revision": sha}, "initiatedBy": {"username": "harness-test"}},
    }))?;
    api.patch(
        "harness",
        &PatchParams::apply("harness-test"),
        &Patch::Apply(&app),
    )
    .await?;

    let health_is = |want: &'static str| {
        move |o: Option<&DynamicObject>| {
            o.and_then(|o| o.data.pointer("/status/health/status"))
                .and_then(Value::as_str)
                == Some(want)
                && o.and_then(|o| o.data.pointer("/status/operationState/phase"))
                    .and_then(Value::as_str)
                    == Some("Succeeded")
        }
    };
    let wait = |want: &'static str| {
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(api.clone(), "harness", health_is(want)),
        )
    };
    wait("Progressing").await??;
    let synced = api.get("harness").await?;
    assert_eq!(
        synced.data.pointer("/status/sync/revision"),
        Some(&json!(sha))
    );

    // The Lua health check reads the Widget's status.health.
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(env.client(), &destination, &widget_resource());
    let patch = json!({"status": {"health": "Degraded", "message": "broken on purpose"}});
    widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    wait("Degraded").await??;
    Ok(())
}

/// Run only as a child of the test below: starts the control plane and Argo
/// CD, reports their process ids and directories, then panics.
#[tokio::test]
#[ignore = "run by argo_cd_is_stopped_when_a_test_binary_panics"]
async fn child_that_panics_with_argo_cd_running() {
    if std::env::var_os("BARGE_TESTENV_CHILD").is_none() {
        return;
    }
    let env = env().await;
    let argocd = match env.argocd().await {
        Ok(a) => a,
        Err(e) => panic!("Argo CD did not start: {e}"),
    };
    let (etcd, apiserver) = env.control_plane().pids();
    let [controller, repo_server, redis] = argocd.pids();
    println!(
        "PIDS {etcd} {apiserver} {controller} {repo_server} {redis} DIRS {} {}",
        env.control_plane().dir().display(),
        argocd.dir().display()
    );
    panic!("deliberate failure with Argo CD running");
}

#[tokio::test]
async fn argo_cd_is_stopped_when_a_test_binary_panics() -> TestResult {
    let words = panicking_child("child_that_panics_with_argo_cd_running").await?;
    let pids: Vec<u32> = words[1..6]
        .iter()
        .map(|w| w.parse())
        .collect::<Result<_, _>>()?;
    let dirs: Vec<std::path::PathBuf> = words[7..9].iter().map(Into::into).collect();

    // The lifelines see the child's pipes close; give them a moment.
    assert!(
        wait_gone(&pids, &dirs, Duration::from_secs(10)),
        "a server or directory outlived the failing test binary"
    );
    Ok(())
}
