//! The harness itself: a real apiserver, watches, CRDs, kubectl, helm, and
//! clean-up however the test binary ends.

use std::time::Duration;

use barge_testenv::argocd::{WIDGET_CRD_YAML, widget_resource};
use barge_testenv::process::{panicking_child, rss_kib, wait_gone};
use barge_testenv::{KUBERNETES_VERSION, TestEnv};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn env() -> &'static TestEnv {
    match TestEnv::shared().await {
        Ok(env) => env,
        Err(e) => panic!("control plane did not start: {e}"),
    }
}

#[test]
fn pinned_version_matches_the_go_wrapper_module() {
    let go_mod = include_str!("../../hack/control-plane/kube/go.mod");
    let wanted = format!("k8s.io/kubernetes v{KUBERNETES_VERSION}");
    assert!(
        go_mod
            .lines()
            .any(|l| l.trim().trim_start_matches("require").trim() == wanted),
        "go.mod does not require {wanted}"
    );
}

#[tokio::test]
async fn a_configmap_change_arrives_as_a_watch_event() -> TestResult {
    let env = env().await;
    let ns = env.namespace().await?;
    let api = Api::<ConfigMap>::namespaced(env.client(), &ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"}, "data": {"colour": "blue"}
    }))?;
    api.create(&PostParams::default(), &cm).await?;

    let mut events = watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=settings"),
    )
    .applied_objects()
    .boxed();
    let first = tokio::time::timeout(Duration::from_secs(30), events.try_next()).await??;
    assert_eq!(
        first
            .and_then(|c| c.data)
            .and_then(|d| d.get("colour").cloned())
            .as_deref(),
        Some("blue")
    );

    api.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"colour": "green"}})),
    )
    .await?;
    let changed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(cm) = events.try_next().await? {
            if cm
                .data
                .as_ref()
                .and_then(|d| d.get("colour"))
                .map(String::as_str)
                == Some("green")
            {
                return Ok::<_, watcher::Error>(true);
            }
        }
        Ok(false)
    })
    .await??;
    assert!(changed, "the watch ended before the change arrived");
    Ok(())
}

#[tokio::test]
async fn a_crd_becomes_established_and_serves_its_kind() -> TestResult {
    let env = env().await;
    // The testenv's own Widget kind (see `argocd`): `spec.size` must not be negative.
    let names = env.apply_crds(WIDGET_CRD_YAML).await?;
    assert_eq!(names, vec!["widgets.test.barge.dev".to_string()]);

    let ns = env.namespace().await?;
    let api = Api::<DynamicObject>::namespaced_with(env.client(), &ns, &widget_resource());
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.barge.dev/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))?;
    api.create(&PostParams::default(), &widget).await?;

    let listed = api.list(&ListParams::default()).await?;
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|w| w.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["w1".to_string()]);

    let invalid: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.barge.dev/v1", "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"size": -1}
    }))?;
    let err = api
        .create(&PostParams::default(), &invalid)
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("spec.size")),
        "schema not enforced: {err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_reads_from_the_control_plane() -> TestResult {
    let env = env().await;
    let ns = env.namespace().await?;
    let out = env.kubectl(&["get", "namespace", &ns, "-o", "jsonpath={.metadata.name}"])?;
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), ns);

    let version = env.kubectl(&["version", "-o", "json"])?;
    let version: serde_json::Value = serde_json::from_slice(&version.stdout)?;
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        format!("v{KUBERNETES_VERSION}")
    );
    Ok(())
}

#[tokio::test]
async fn helm_runs_against_the_control_plane() -> TestResult {
    let env = env().await;
    let out = env.helm(&["version", "--short"])?;
    assert!(
        out.status.success(),
        "helm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("v3."));

    let ns = env.namespace().await?;
    let out = env.helm(&["list", "--namespace", &ns, "--output", "json"])?;
    assert!(
        out.status.success(),
        "helm list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    Ok(())
}

#[tokio::test]
async fn rbac_limits_an_unprivileged_user() -> TestResult {
    let env = env().await;
    let ns = env.namespace().await?;
    let kubeconfig = env.control_plane().user_kubeconfig("nobody", &[])?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let api = Api::<ConfigMap>::namespaced(kube::Client::try_from(config)?, &ns);
    let err = api.list(&ListParams::default()).await.err();
    assert!(
        matches!(&err, Some(kube::Error::Api(s)) if s.code == 403),
        "expected Forbidden, got {err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn reports_start_up_time_and_memory() -> TestResult {
    let env = env().await;
    let cp = env.control_plane();
    let (etcd, apiserver) = cp.pids();
    println!(
        "control plane: started in {:?}; RSS etcd {} KiB, kube-apiserver {} KiB",
        cp.startup_time(),
        rss_kib(etcd).unwrap_or(0),
        rss_kib(apiserver).unwrap_or(0)
    );
    assert!(
        rss_kib(etcd).is_some() && rss_kib(apiserver).is_some(),
        "servers are not running"
    );
    Ok(())
}

/// Run only as a child of the test below: starts a control plane, reports
/// its process ids and directory, then panics.
#[tokio::test]
#[ignore = "run by servers_are_stopped_when_a_test_binary_panics"]
async fn child_that_panics_with_a_running_control_plane() {
    if std::env::var_os("BARGE_TESTENV_CHILD").is_none() {
        return;
    }
    let env = env().await;
    let (etcd, apiserver) = env.control_plane().pids();
    println!(
        "PIDS {etcd} {apiserver} DIR {}",
        env.control_plane().dir().display()
    );
    panic!("deliberate failure with a running control plane");
}

#[tokio::test]
async fn servers_are_stopped_when_a_test_binary_panics() -> TestResult {
    let words = panicking_child("child_that_panics_with_a_running_control_plane").await?;
    let pids: Vec<u32> = vec![words[1].parse()?, words[2].parse()?];
    let dir = std::path::PathBuf::from(&words[4]);

    // The watchdog gets EOF when the child exits; give it a moment to finish.
    assert!(
        wait_gone(&pids, std::slice::from_ref(&dir), Duration::from_secs(10)),
        "etcd, kube-apiserver or {} outlived the failing test binary",
        dir.display()
    );
    Ok(())
}

#[tokio::test]
async fn restarted_apiserver_and_etcd_come_back_with_the_data_and_new_processes() -> TestResult {
    // A control plane of its own: the restarts would break other tests' watches.
    let cp = barge_testenv::ControlPlane::start().await?;
    let api = Api::<ConfigMap>::namespaced(cp.client(), "default");
    let kept: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "kept"}, "data": {"k": "v"}}))?;
    api.create(&PostParams::default(), &kept).await?;
    let (etcd, apiserver) = cp.pids();

    cp.restart_apiserver().await?;
    assert_ne!(cp.pids().1, apiserver, "the apiserver was not restarted");
    assert_eq!(cp.pids().0, etcd);
    cp.restart_etcd().await?;
    assert_ne!(cp.pids().0, etcd, "etcd was not restarted");

    let read = Api::<ConfigMap>::namespaced(cp.client(), "default")
        .get("kept")
        .await?;
    assert_eq!(
        read.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v")
    );
    Ok(())
}
