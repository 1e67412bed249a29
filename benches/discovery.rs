//! Push → Freight → first Stage's Promotion: how long a new image tag takes
//! to become Freight and to start the dev Promotion, with the Warehouse's
//! interval an hour and the controller's backstop an hour, so only the push
//! event can make it happen. Two modes in one run, side by side:
//!
//! - `webhook`: the real CNCF distribution registry sends its own push
//!   notification to Barge's `distribution` receiver, which refreshes the
//!   subscribed Warehouse (the whole path a user sets up).
//! - `refresh`: a registry without notifications; the bench sets
//!   `barge.dev/refresh` on the Warehouse right after the push, as a
//!   receiver does: Barge's own part, without the registry's delivery.
//!
//! Each sample: start = the push's last request (the manifest PUT)
//! answered; `freight` = this process's Freight watch sees the Freight of
//! that tag; `promotion` = its Promotion watch sees the dev Promotion of
//! that Freight. Pushes are sequential (the next after the previous
//! Promotion is seen).
//!
//! `make bench-discovery` runs it; it prints a table and writes
//! target/bench/discovery.json. It needs the registry (`make registry`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barge::api::{Freight, Promotion, Warehouse};
use barge::controller::{self, Metrics, Settings};
use barge_testenv::registry::{NotificationEndpoint, Registry, RegistryOptions};
use barge_testenv::{StoppableTask, TestEnv};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

mod support;
use support::summarize;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PUSHES: usize = 30;
/// `BARGE_BENCH_SMOKE=1`: a couple of pushes, so CI keeps the bench working.
const SMOKE_PUSHES: usize = 2;

fn smoke() -> bool {
    std::env::var("BARGE_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn pushes() -> usize {
    if smoke() { SMOKE_PUSHES } else { PUSHES }
}
const CREATED: &str = "2026-11-30T00:00:00Z";
const PATIENCE: Duration = Duration::from_secs(60);
const AUTH: &str = "Bearer bench-t0ken";

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

async fn apply(client: &Client, ns: &str, docs: Value) -> BenchResult<()> {
    for doc in docs.as_array().cloned().unwrap_or_default() {
        barge_testenv::apply(client, doc, ns, "barge-bench").await?;
    }
    Ok(())
}

/// Waits on a watch for the first object satisfying `condition`.
async fn first<K>(
    client: &Client,
    ns: &str,
    what: &str,
    condition: impl Fn(&K) -> bool + Send + Sync,
) -> BenchResult<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    let mut stream = watcher(api, watcher::Config::default())
        .applied_objects()
        .try_filter(|o| futures::future::ready(condition(o)))
        .boxed();
    match tokio::time::timeout(PATIENCE, stream.try_next()).await {
        Ok(Ok(Some(o))) => Ok(o),
        Ok(Ok(None)) => Err(format!("{what}: the watch ended").into()),
        Ok(Err(e)) => Err(format!("{what}: {e}").into()),
        Err(_) => Err(format!("{what}: not within {PATIENCE:?}").into()),
    }
}

struct Samples {
    freight: Vec<f64>,
    promotion: Vec<f64>,
}

/// One mode: PUSHES sequential pushes of `repository` on `registry`, each
/// followed by a refresh annotation when `annotate`.
async fn measure(
    client: &Client,
    ns: &str,
    registry: &Registry,
    repository: &str,
    annotate: bool,
) -> BenchResult<Samples> {
    let image = format!("{}/{repository}", registry.host());
    registry
        .push_image(repository, "1.0.0", ("linux", "amd64"), CREATED)
        .await?;
    let note = json!({"as": "note", "uses": "compose-output",
                      "config": {"tag": format!("${{{{ imageFrom('{image}').Tag }}}}")}});
    apply(
        client,
        ns,
        json!([
            {"apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
             "metadata": {"name": "demo"},
             "spec": {"interval": "1h", "subscriptions": [{"image": {"repoURL": image}}]}},
            {"apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
             "metadata": {"name": "dev"},
             "spec": {"autoPromotion": true,
                      "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "demo"},
                                            "sources": {"direct": true}}],
                      "promotionTemplate": {"spec": {"steps": [note]}}}},
        ]),
    )
    .await?;
    first::<Promotion>(client, ns, "the first dev Promotion", |p| {
        p.spec.stage == "dev"
    })
    .await?;
    let warehouses: Api<Warehouse> = Api::namespaced(client.clone(), ns);
    let mut samples = Samples {
        freight: Vec::new(),
        promotion: Vec::new(),
    };
    for i in 1..=pushes() {
        let tag = format!("1.{i}.0");
        // Both watches open before the push, so neither misses its event.
        let freight = {
            let (client, ns, tag) = (client.clone(), ns.to_string(), tag.clone());
            tokio::spawn(async move {
                let f =
                    first::<Freight>(&client, &ns, "the pushed tag's Freight", |f: &Freight| {
                        f.spec.images.iter().any(|im| im.tag == tag)
                    })
                    .await?;
                let seen = Instant::now();
                let name = f.name_any();
                let p = first::<Promotion>(&client, &ns, "its dev Promotion", |p: &Promotion| {
                    p.spec.stage == "dev" && p.spec.freight == name
                })
                .await;
                BenchResult::Ok((seen, p.map(|_| Instant::now())?))
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        registry
            .push_image(repository, &tag, ("linux", "amd64"), CREATED)
            .await?;
        let pushed = Instant::now();
        if annotate {
            warehouses
                .patch(
                    "demo",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {"barge.dev/refresh": tag}}})),
                )
                .await?;
        }
        let (freight_seen, promotion_seen) = freight.await??;
        samples.freight.push(ms(pushed, freight_seen));
        samples.promotion.push(ms(pushed, promotion_seen));
    }
    Ok(samples)
}

fn main() -> BenchResult<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let env = TestEnv::shared().await?;
        env.apply_crd_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
            .await?;
        // The Stage controller watches Applications, even with none to sync.
        env.apply_crds(barge_argocd_double::CRD_YAML).await?;
        let client = env.client();
        let metrics = Arc::new(Metrics::default());
        let endpoint = barge::webhook::start(
            client.clone(),
            None,
            ([127, 0, 0, 1], 0).into(),
            None,
            metrics.clone(),
        )
        .await?;
        let settings = Settings {
            backstop: Duration::from_secs(3600),
            receivers: endpoint.receivers.clone(),
            wakers: Some(endpoint.wakers.clone()),
            ..Settings::default()
        };
        let controller = {
            let client = client.clone();
            StoppableTask::spawn(|stopped| controller::run(client, settings, metrics, stopped))
        };

        // webhook: the registry's own notification, through the receiver.
        let webhook_ns = env.namespace().await?;
        apply(
            &client,
            &webhook_ns,
            json!([
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-webhook"},
                 "stringData": {"auth-header": AUTH}},
                {"apiVersion": "barge.dev/v1alpha1", "kind": "ProjectConfig",
                 "metadata": {"name": webhook_ns},
                 "spec": {"webhookReceivers": [{"name": "registry",
                          "distribution": {"secretRef": {"name": "registry-webhook"}}}]}},
            ]),
        )
        .await?;
        let config =
            first::<barge::api::ProjectConfig>(&client, &webhook_ns, "the receiver's path", |c| {
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
        let mut notify =
            NotificationEndpoint::new("barge", &format!("http://{}{path}", endpoint.addr));
        notify.authorization = Some(AUTH.to_string());
        let notifying = Registry::start_with(RegistryOptions {
            notifications: vec![notify],
            ..RegistryOptions::default()
        })
        .await?;
        eprintln!("discovery: webhook mode ({} pushes)", pushes());
        let webhook = measure(&client, &webhook_ns, &notifying, "bench-webhook", false).await?;
        notifying.stop();

        // refresh: the annotation a receiver sets, right after the push.
        let refresh_ns = env.namespace().await?;
        let quiet = Registry::start().await?;
        eprintln!("discovery: refresh mode ({} pushes)", pushes());
        let refresh = measure(&client, &refresh_ns, &quiet, "bench-refresh", true).await?;
        quiet.stop();
        controller.stop().await;

        let rows = [
            ("webhook: push → Freight", summarize(webhook.freight)),
            (
                "webhook: push → dev Promotion",
                summarize(webhook.promotion),
            ),
            ("refresh: push → Freight", summarize(refresh.freight)),
            (
                "refresh: push → dev Promotion",
                summarize(refresh.promotion),
            ),
        ];
        println!("| interval | n | p50 ms | p95 ms | max ms |");
        println!("|---|---|---|---|---|");
        for (what, s) in &rows {
            println!(
                "| {what} | {} | {:.1} | {:.1} | {:.1} |",
                s.n, s.p50_ms, s.p95_ms, s.max_ms
            );
        }
        let json = json!({
            "webhook": {"freight": rows[0].1, "promotion": rows[1].1},
            "refresh": {"freight": rows[2].1, "promotion": rows[3].1},
        });
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&out)?;
        std::fs::write(
            out.join(if smoke() {
                "discovery-smoke.json"
            } else {
                "discovery.json"
            }),
            serde_json::to_string_pretty(&json)?,
        )?;
        println!("{}", serde_json::to_string(&json)?);
        env.control_plane().stop();
        BenchResult::Ok(())
    })
}
