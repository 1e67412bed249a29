//! Wake-up latency: from the Argo CD double's final `operationState` write
//! (the sync finished) to the Promotion's Succeeded status, seen through a
//! watch. Measured twice in one run: with the Application watch waking
//! Promotions (Barge), and with it disabled so only a 10 s backstop requeue
//! notices (the behaviour behind Kargo's "always 300 s").
//!
//! `make bench` runs it; it prints a table and writes target/bench/wakeup.json.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barge::api::{Promotion, PromotionPhase};
use barge::controller::{self, Metrics, Settings};
use barge_argocd_double::{Double, DoubleConfig};
use barge_testenv::TestEnv;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PROMOTIONS: usize = 200;
const IN_FLIGHT: usize = 20;
const REPO: &str = "https://git.example.com/bench/app.git";

#[derive(Debug, Clone, serde::Serialize)]
struct Summary {
    n: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn summarize(mut samples: Vec<f64>) -> Summary {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    Summary {
        n: samples.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

async fn apply(client: &Client, ns: &str, object: Value) -> BenchResult<()> {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let (group, version, plural) = match kind.as_str() {
        "Application" => ("argoproj.io", "v1alpha1", "applications"),
        "Freight" => ("barge.dev", "v1alpha1", "freights"),
        "Stage" => ("barge.dev", "v1alpha1", "stages"),
        _ => ("barge.dev", "v1alpha1", "promotions"),
    };
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, &kind), plural);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object: DynamicObject = serde_json::from_value(object)?;
    api.patch(
        &name,
        &PatchParams::apply("barge-bench").force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

/// One measured run: PROMOTIONS promotions, IN_FLIGHT at a time, each on its
/// own Stage and Application.
async fn measure(
    env: &TestEnv,
    settings_for: impl Fn(&str, &str) -> Settings,
) -> BenchResult<Summary> {
    let client = env.client();
    let ns = env.namespace().await?;
    let argocd_ns = env.namespace().await?;
    let double = Double::new(
        client.clone(),
        DoubleConfig::namespaced(&argocd_ns).with_sync_delay(Duration::from_millis(50)),
    )
    .spawn();
    let journal = double.journal();
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let settings = settings_for(&ns, &argocd_ns);
    let controller = tokio::spawn(controller::run(
        client.clone(),
        settings,
        Arc::new(Metrics::default()),
        async move {
            let _ = stop_rx.await;
        },
    ));

    // Watch Promotions and note when each is first seen Succeeded.
    let succeeded: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let watch = {
        let api = Api::<Promotion>::namespaced(client.clone(), &ns);
        let succeeded = succeeded.clone();
        let notify = notify.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Ok(Some(p)) = events.try_next().await {
                if p.phase() == PromotionPhase::Succeeded
                    && let Ok(mut seen) = succeeded.lock()
                {
                    seen.entry(p.name_any()).or_insert_with(Instant::now);
                    notify.notify_waiters();
                }
            }
        })
    };

    apply(&client, &ns, json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Freight", "metadata": {"name": "f1"},
        "origin": {"kind": "Warehouse", "name": "bench"}, "commits": [{"repoURL": REPO, "id": "c0ffee1"}],
    })).await?;
    for i in 0..PROMOTIONS {
        let stage = format!("s{i}");
        let app = format!("{ns}-{stage}");
        apply(&client, &argocd_ns, json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": app, "annotations": {"barge.dev/authorized-stage": format!("{ns}:{stage}")}},
            "spec": {"project": "default", "source": {"repoURL": REPO, "targetRevision": "main"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "bench"}},
        })).await?;
        apply(&client, &ns, json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage", "metadata": {"name": stage},
            "spec": {
                "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "bench"}, "sources": {"direct": true}}],
                "promotionTemplate": {"spec": {"steps": [{"uses": "argocd-update", "as": "update", "config": {"apps": [{
                    "name": "${{ ctx.project }}-${{ ctx.stage }}",
                    "sources": [{"repoURL": REPO, "desiredRevision": "${{ commitFrom(\"https://git.example.com/bench/app.git\").id }}", "updateTargetRevision": true}],
                }]}}]}},
            },
        })).await?;
    }

    let mut samples = Vec::new();
    for wave in (0..PROMOTIONS).collect::<Vec<_>>().chunks(IN_FLIGHT) {
        for i in wave {
            apply(&client, &ns, json!({
                "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": format!("p{i}")},
                "spec": {"stage": format!("s{i}"), "freight": "f1"},
            })).await?;
        }
        let names: Vec<String> = wave.iter().map(|i| format!("p{i}")).collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let notified = notify.notified();
            let done = succeeded
                .lock()
                .map(|s| names.iter().all(|n| s.contains_key(n)))
                .unwrap_or(false);
            if done {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("wave {wave:?} did not finish within 120 s").into());
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
        for name in &names {
            let Some(seen) = succeeded.lock().ok().and_then(|s| s.get(name).copied()) else {
                continue;
            };
            let syncs = journal.syncs_for_promotion(name);
            let Some(written) = syncs.last().and_then(|s| s.final_write.clone()) else {
                continue;
            };
            samples.push(
                seen.saturating_duration_since(written.acknowledged)
                    .as_secs_f64()
                    * 1000.0,
            );
        }
    }

    let _ = stop_tx.send(());
    let _ = controller.await;
    watch.abort();
    double.stop().await;
    Ok(summarize(samples))
}

fn main() -> BenchResult<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let env = TestEnv::shared().await?;
        env.apply_crd_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
            .await?;
        env.apply_crds(barge_argocd_double::CRD_YAML).await?;

        eprintln!(
            "wakeup: {PROMOTIONS} promotions, {IN_FLIGHT} in flight, event-driven (backstop 1 h)"
        );
        let event = measure(env, |ns, argocd| Settings {
            backstop: Duration::from_secs(3600),
            argocd_namespace: argocd.into(),
            namespace: Some(ns.into()),
            ..Settings::default()
        })
        .await?;
        eprintln!("wakeup: same with the Application watch's wake-ups disabled (backstop 10 s)");
        let backstop = measure(env, |ns, argocd| Settings {
            backstop: Duration::from_secs(10),
            argocd_namespace: argocd.into(),
            namespace: Some(ns.into()),
            wake_on_application_events: false,
            ..Settings::default()
        })
        .await?;

        println!("| mode | n | p50 ms | p95 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|");
        for (mode, s) in [("event", &event), ("backstop_only (10 s)", &backstop)] {
            println!(
                "| {mode} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.n, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            );
        }
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&out)?;
        let json = json!({"event": event, "backstop_only": backstop});
        std::fs::write(
            out.join("wakeup.json"),
            serde_json::to_string_pretty(&json)?,
        )?;
        println!("{}", serde_json::to_string(&json)?);
        Ok(())
    })
}
