//! Warehouses in the controller, against a real kube-apiserver: discovery
//! from a real OCI registry and real git repositories makes Freight, a push
//! webhook (the registry's own notification) discovers at once, a Stage
//! taking Freight directly promotes it, and failures become conditions that
//! clear once the source works. The controller's backstop is an hour and
//! every Warehouse's interval is an hour: nothing here happens by waiting.

mod support;

use std::time::{Duration, Instant};

use barge::api::{Freight, Promotion, Warehouse};
use barge_testenv::git::GitRepo;
use barge_testenv::registry::{NotificationEndpoint, Registry, RegistryOptions};
use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use support::{Error, Harness, TestResult, auto_stage_with, step};

/// How long the test waits for one thing to happen.
const PATIENCE: Duration = Duration::from_secs(60);
const CREATED: &str = "2026-11-30T00:00:00Z";

fn warehouse(name: &str, subscriptions: Value) -> Value {
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
        "metadata": {"name": name},
        "spec": {"interval": "1h", "subscriptions": subscriptions},
    })
}

/// A dev Stage taking Freight from the Warehouse `demo` directly and
/// promoting it automatically; its step reads the image tag.
fn dev_stage(image: &str) -> Value {
    let note = step(
        "note",
        "compose-output",
        json!({"tag": format!("${{{{ imageFrom('{image}').Tag }}}}")}),
    );
    auto_stage_with("dev", None, json!([note]))
}

/// Waits on watch events until an object of the namespace satisfies
/// `condition`.
async fn until<K>(
    h: &Harness,
    what: &str,
    condition: impl Fn(&K) -> bool + Send + Sync,
) -> Result<K, Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let api = Api::<K>::namespaced(h.client.clone(), &h.ns);
    let mut stream = watcher(api, watcher::Config::default())
        .applied_objects()
        .try_filter(|o| futures::future::ready(condition(o)))
        .boxed();
    match tokio::time::timeout(PATIENCE, stream.try_next()).await {
        Ok(Ok(Some(o))) => Ok(o),
        Ok(Ok(None)) => Err(format!("{what}: the watch ended").into()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(format!("{what}: not within {PATIENCE:?}").into()),
    }
}

fn condition<'a>(
    w: &'a Warehouse,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    w.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

fn has_tag(f: &Freight, tag: &str) -> bool {
    f.spec.images.iter().any(|i| i.tag == tag)
}

#[tokio::test]
async fn a_pushed_image_tag_reaches_the_dev_promotion_through_the_registrys_webhook() -> TestResult
{
    // The controller with the webhook endpoint beside it, as `barge run`.
    let mut h = Harness::start(|c| c).await?;
    h.stop_controller().await;
    let endpoint = barge::webhook::start(
        h.client.clone(),
        Some(h.ns.clone()),
        ([127, 0, 0, 1], 0).into(),
        None,
        h.metrics.clone(),
    )
    .await?;
    h.settings.receivers = endpoint.receivers.clone();
    h.settings.wakers = Some(endpoint.wakers.clone());
    h.start_controller();

    // A distribution receiver; its path goes into the registry's
    // notification endpoint, with the header the Secret holds.
    let auth = "Bearer registry-t0ken";
    h.apply(json!([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-webhook"},
         "stringData": {"auth-header": auth}},
        {"apiVersion": "barge.dev/v1alpha1", "kind": "ProjectConfig",
         "metadata": {"name": h.ns},
         "spec": {"webhookReceivers": [{"name": "registry",
                  "distribution": {"secretRef": {"name": "registry-webhook"}}}]}},
    ]))
    .await?;
    let config = until::<barge::api::ProjectConfig>(&h, "the receiver's path", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.webhook_receivers.iter().any(|r| !r.path.is_empty()))
    })
    .await?;
    let path = config
        .status
        .and_then(|s| s.webhook_receivers.into_iter().next())
        .map(|r| r.path)
        .ok_or("no receiver path")?;
    let mut notify = NotificationEndpoint::new("barge", &format!("http://{}{path}", endpoint.addr));
    notify.authorization = Some(auth.to_string());
    let registry = Registry::start_with(RegistryOptions {
        notifications: vec![notify],
        ..RegistryOptions::default()
    })
    .await?;
    let image = format!("{}/guestbook", registry.host());

    // The first version, and the Warehouse that finds it.
    registry
        .push_image("guestbook", "1.0.0", ("linux", "amd64"), CREATED)
        .await?;
    h.apply(json!([
        warehouse(
            "demo",
            json!([{"image": {"repoURL": image, "constraint": "^1"}}])
        ),
        dev_stage(&image),
    ]))
    .await?;
    until::<Promotion>(&h, "the dev Promotion of 1.0.0", |p| {
        p.spec.stage == "dev" && p.phase() == barge::api::PromotionPhase::Succeeded
    })
    .await?;

    // A new tag: the registry's notification, not the hour-long interval,
    // makes its Freight and the dev Promotion.
    let pushed = Instant::now();
    let second = registry
        .push_image("guestbook", "1.1.0", ("linux", "amd64"), CREATED)
        .await?;
    let freight = until::<Freight>(&h, "the Freight of 1.1.0", |f| has_tag(f, "1.1.0")).await?;
    let freight_after = pushed.elapsed();
    let name = freight.name_any();
    let started = until::<Promotion>(&h, "the dev Promotion of 1.1.0", |p| {
        p.spec.stage == "dev" && p.spec.freight == name
    })
    .await?;
    let promotion_after = pushed.elapsed();
    eprintln!(
        "push → Freight {name} seen in {:.0} ms; → dev Promotion {} seen in {:.0} ms",
        freight_after.as_secs_f64() * 1000.0,
        started.name_any(),
        promotion_after.as_secs_f64() * 1000.0
    );
    assert_eq!(freight.spec.images[0].digest, second.digest);
    assert_eq!(freight.spec.images[0].repo_url, image);
    // The Warehouse records its Freight after creating it, so the Stage may
    // have started the Promotion first.
    let w = until::<Warehouse>(&h, "the Warehouse recording the Freight of 1.1.0", |w| {
        w.metadata.name.as_deref() == Some("demo")
            && w.status.as_ref().is_some_and(|s| s.last_freight_id == name)
    })
    .await?;
    let status = w.status.clone().unwrap_or_default();
    assert!(
        !status.last_handled_refresh.is_empty(),
        "the webhook's refresh was handled: {status:?}"
    );
    let done = until::<Promotion>(&h, "the dev Promotion of 1.1.0 succeeded", |p| {
        p.spec.freight == name && p.phase() == barge::api::PromotionPhase::Succeeded
    })
    .await?;
    let output = done
        .status
        .as_ref()
        .and_then(|s| s.state.get("note"))
        .cloned();
    assert_eq!(output, Some(json!({"tag": "1.1.0"})), "{done:?}");
    registry.stop();
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_git_warehouse_makes_freight_of_the_branch_head_and_again_when_refreshed() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let repo = GitRepo::init()?;
    repo.write("app/config.yaml", "replicas: 1\n")?;
    let first = repo.commit("first")?;
    h.apply(json!([warehouse(
        "demo",
        json!([{"git": {"repoURL": repo.url(), "branch": "main"}}])
    )]))
    .await?;
    let f1 = until::<Freight>(&h, "the first commit's Freight", |f| {
        f.spec.commits.iter().any(|c| c.id == first)
    })
    .await?;
    assert_eq!(f1.spec.commits[0].message, "first");
    assert_eq!(f1.spec.commits[0].branch, "main");
    assert_eq!(
        f1.name_any(),
        barge::warehouse::freight_name::freight_name(
            &f1.spec.origin,
            &f1.spec.commits,
            &[],
            &[],
            &[]
        )
    );

    repo.write("app/config.yaml", "replicas: 2\n")?;
    let second = repo.commit("second")?;
    h.annotate::<Warehouse>("demo", "barge.dev/refresh", "after-second")
        .await?;
    until::<Freight>(&h, "the second commit's Freight", |f| {
        f.spec.commits.iter().any(|c| c.id == second)
    })
    .await?;
    let w = until::<Warehouse>(&h, "the refresh handled", |w| {
        w.status
            .as_ref()
            .is_some_and(|s| s.last_handled_refresh == "after-second")
    })
    .await?;
    let ready = condition(&w, "Ready").ok_or("no Ready condition")?;
    assert_eq!(ready.status, "True", "{ready:?}");
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_registry_makes_the_warehouse_unready_with_the_reason_until_it_is_fixed()
-> TestResult {
    let h = Harness::start(|c| c).await?;
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    h.apply(json!([warehouse(
        "demo",
        json!([{"image": {"repoURL": format!("{closed}/app")}}])
    )]))
    .await?;
    let w = until::<Warehouse>(&h, "the failure in a condition", |w| {
        condition(w, "Ready").is_some_and(|c| c.status == "False" && c.reason == "Unavailable")
    })
    .await?;
    let ready = condition(&w, "Ready").ok_or("no Ready condition")?;
    assert!(
        ready.message.contains("spec.subscriptions[0].image") || ready.message.contains("app"),
        "{ready:?}"
    );
    assert!(ready.message.contains("retrying in"), "{ready:?}");

    // Pointed at a registry that has the image, it recovers at once (a
    // changed spec does not wait for the backoff).
    let registry = Registry::shared().await?;
    let repository = format!("recovers-{}", h.ns);
    registry
        .push_image(&repository, "1.0.0", ("linux", "amd64"), CREATED)
        .await?;
    h.apply(json!([warehouse(
        "demo",
        json!([{"image": {"repoURL": format!("{}/{repository}", registry.host())}}])
    )]))
    .await?;
    until::<Freight>(&h, "Freight from the fixed Warehouse", |f| {
        has_tag(f, "1.0.0")
    })
    .await?;
    until::<Warehouse>(&h, "Ready again", |w| {
        condition(w, "Ready").is_some_and(|c| c.status == "True")
    })
    .await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_subscription_written_wrong_is_named_and_not_retried() -> TestResult {
    let h = Harness::start(|c| c).await?;
    h.apply(json!([warehouse(
        "demo",
        json!([{"image": {"repoURL": "registry.example/app", "constraint": "^^1"}}])
    )]))
    .await?;
    let w = until::<Warehouse>(&h, "the bad constraint named", |w| {
        condition(w, "Ready").is_some_and(|c| c.status == "False")
    })
    .await?;
    let ready = condition(&w, "Ready").ok_or("no Ready condition")?;
    assert!(
        ready
            .message
            .contains("spec.subscriptions[0].image.constraint"),
        "{ready:?}"
    );
    assert!(!ready.message.contains("retrying"), "{ready:?}");
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_manual_warehouse_lists_what_it_found_and_makes_no_freight() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let registry = Registry::shared().await?;
    let repository = format!("manual-{}", h.ns);
    for tag in ["1.0.0", "1.2.0", "1.1.0"] {
        registry
            .push_image(&repository, tag, ("linux", "amd64"), CREATED)
            .await?;
    }
    let mut w = warehouse(
        "demo",
        json!([{"image": {"repoURL": format!("{}/{repository}", registry.host())}}]),
    );
    w["spec"]["freightCreationPolicy"] = json!("Manual");
    h.apply(json!([w])).await?;
    let w = until::<Warehouse>(&h, "the discovered artifacts", |w| {
        w.status
            .as_ref()
            .is_some_and(|s| s.discovered_artifacts.is_some())
    })
    .await?;
    let artifacts = w
        .status
        .and_then(|s| s.discovered_artifacts)
        .ok_or("no artifacts")?;
    let tags: Vec<&str> = artifacts["images"][0]["references"]
        .as_array()
        .ok_or("no references")?
        .iter()
        .filter_map(|r| r["tag"].as_str())
        .collect();
    assert_eq!(tags, ["1.2.0", "1.1.0", "1.0.0"]);
    let freight: Api<Freight> = Api::namespaced(h.client.clone(), &h.ns);
    assert!(freight.list(&Default::default()).await?.items.is_empty());
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn freight_approved_by_annotation_is_promoted_past_the_stage_it_skipped() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let noop = json!([step("note", "compose-output", json!({"ok": true}))]);
    // prod takes Freight verified in dev, which never promotes anything.
    let mut dev = auto_stage_with("dev", None, noop.clone());
    dev["spec"]["autoPromotion"] = json!(false);
    h.apply(json!([
        dev,
        auto_stage_with("prod", Some("dev"), noop),
        h.freight("hotfix", &"a".repeat(40)),
    ]))
    .await?;
    h.annotate::<Freight>("hotfix", "barge.dev/approve", "prod")
        .await?;
    let approved = until::<Freight>(&h, "the approval recorded", |f| {
        f.status
            .as_ref()
            .is_some_and(|s| s.approved_for.contains_key("prod"))
    })
    .await?;
    assert!(
        !approved
            .status
            .unwrap_or_default()
            .approved_for
            .contains_key("dev")
    );
    until::<Promotion>(&h, "prod promoting the approved Freight", |p| {
        p.spec.stage == "prod" && p.spec.freight == "hotfix"
    })
    .await?;
    h.shutdown().await;
    Ok(())
}

/// Runs the `barge` binary against the test's API server.
fn barge(h: &Harness, args: &[&str]) -> Result<String, Error> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(args)
        .args(["-n", &h.ns, "--kubeconfig"])
        .arg(h.env.kubeconfig_path())
        .output()?;
    support::succeeded(&format!("barge {args:?}"), out)
}

#[tokio::test]
async fn barge_approve_takes_a_freight_by_alias_and_barge_refresh_makes_a_warehouse_look()
-> TestResult {
    let h = Harness::start(|c| c).await?;
    let mut freight = h.freight("hotfix", &"b".repeat(40));
    freight["alias"] = json!("brave-otter");
    h.apply(json!([freight])).await?;
    let said = barge(
        &h,
        &["approve", "--freight", "brave-otter", "--stage", "prod"],
    )?;
    assert!(said.contains("Freight hotfix approved for prod"), "{said}");
    let f: Freight = Api::namespaced(h.client.clone(), &h.ns)
        .get("hotfix")
        .await?;
    assert!(
        f.status
            .unwrap_or_default()
            .approved_for
            .contains_key("prod")
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .args([
            "approve",
            "--freight",
            "nope",
            "--stage",
            "prod",
            "-n",
            &h.ns,
            "--kubeconfig",
        ])
        .arg(h.env.kubeconfig_path())
        .output()?;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no Freight named or aliased \"nope\""),
        "{missing:?}"
    );

    let repo = GitRepo::init()?;
    repo.write("a.txt", "1\n")?;
    repo.commit("one")?;
    h.apply(json!([warehouse(
        "demo",
        json!([{"git": {"repoURL": repo.url()}}])
    )]))
    .await?;
    until::<Warehouse>(&h, "the first discovery", |w| {
        w.status
            .as_ref()
            .is_some_and(|s| !s.last_freight_id.is_empty())
    })
    .await?;
    repo.write("a.txt", "2\n")?;
    let second = repo.commit("two")?;
    barge(&h, &["refresh", "--warehouse", "demo"])?;
    until::<Freight>(&h, "the refreshed Warehouse's new Freight", |f| {
        f.spec.commits.iter().any(|c| c.id == second)
    })
    .await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_source_that_never_answers_fails_the_discovery_at_its_timeout_and_holds_no_one_up()
-> TestResult {
    let mut h = Harness::start(|c| c).await?;
    h.stop_controller().await;
    h.settings.discovery_timeout = Duration::from_secs(2);
    h.start_controller();
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = silent.local_addr()?;
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let repo = GitRepo::init()?;
    repo.write("a.txt", "1\n")?;
    let commit = repo.commit("one")?;
    h.apply(json!([
        warehouse(
            "silent",
            json!([{"git": {"repoURL": format!("http://{addr}/team/app.git")}}])
        ),
        warehouse("demo", json!([{"git": {"repoURL": repo.url()}}])),
    ]))
    .await?;
    // The other Warehouse is not held up.
    until::<Freight>(&h, "the answering repository's Freight", |f| {
        f.spec.commits.iter().any(|c| c.id == commit)
    })
    .await?;
    let w = until::<Warehouse>(&h, "the silent source's timeout", |w| {
        w.name_any() == "silent" && condition(w, "Ready").is_some_and(|c| c.status == "False")
    })
    .await?;
    let ready = condition(&w, "Ready").ok_or("no Ready condition")?;
    assert_eq!(ready.reason, "Unavailable", "{ready:?}");
    assert!(
        ready.message.contains("did not finish within 2s"),
        "{ready:?}"
    );
    held.abort();
    h.shutdown().await;
    Ok(())
}
