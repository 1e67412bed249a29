//! `make sandbox`: Barge end to end on this machine. Starts a real etcd and
//! kube-apiserver, installs Barge's CRDs and the Application CRD, runs the
//! Argo CD double and the controller, applies `examples/quickstart`, and
//! shows the promotions progressing dev → staging → prod.
//!
//! On a terminal it keeps the sandbox up afterwards (Ctrl-C tears it down).
//! With `SANDBOX_EXIT=1`, or when stdout is not a terminal, it prints plain
//! progress lines and exits 0 once every quickstart promotion succeeded, or
//! 1 with the reason if they have not within 5 minutes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barge::api::{Promotion, PromotionPhase, Stage};
use barge::controller::{self, Metrics, Settings};
use barge_argocd_double::{Double, DoubleConfig, HealthAfterSync};
use barge_testenv::{ControlPlane, TestEnv};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;

const NAMESPACE: &str = "barge-demo";
const STAGES: [&str; 3] = ["dev", "staging", "prod"];
const DEADLINE: Duration = Duration::from_secs(300);

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

async fn run() -> Result<ExitCode, Error> {
    let interactive = std::io::stdout().is_terminal()
        && std::env::var("SANDBOX_EXIT").ok().as_deref() != Some("1");
    let started = Instant::now();
    say(started, "starting etcd and kube-apiserver");
    let env = TestEnv::from(ControlPlane::start().await?);
    say(
        started,
        &format!(
            "control plane ready in {:?}",
            env.control_plane().startup_time()
        ),
    );

    env.apply_crd_dir(&repo_path("crds")).await?;
    env.apply_crds(barge_argocd_double::CRD_YAML).await?;
    say(
        started,
        "installed Barge's CRDs and the Argo CD Application CRD",
    );

    let client = env.client();
    apply_dir(&client, &repo_path("examples/quickstart"), |kind| {
        kind != "Freight"
    })
    .await?;
    say(
        started,
        "applied examples/quickstart (the Freight comes once the controller runs)",
    );

    let double = Double::new(
        client.clone(),
        DoubleConfig::namespaced("argocd")
            .with_sync_delay(Duration::from_secs(2))
            .with_health_after_sync(HealthAfterSync::ProgressingThenHealthy),
    )
    .spawn();
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let settings = Settings {
        namespace: Some(NAMESPACE.into()),
        ..Settings::default()
    };
    let controller = tokio::spawn(controller::run(
        client.clone(),
        settings,
        Arc::new(Metrics::default()),
        async move {
            let _ = stop_rx.await;
        },
    ));
    say(started, "Argo CD double and Barge controller running");
    apply_dir(&client, &repo_path("examples/quickstart"), |kind| {
        kind == "Freight"
    })
    .await?;
    say(
        started,
        "Freight created: watch it flow dev → staging → prod",
    );

    let outcome = tokio::select! {
        r = progress(&client, started, interactive) => r,
        _ = tokio::time::sleep(DEADLINE) => Err(format!("the quickstart promotions did not all succeed within {DEADLINE:?}").into()),
    };
    let code = match outcome {
        Ok(()) => {
            say(started, "every quickstart promotion succeeded");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sandbox: {e}");
            ExitCode::FAILURE
        }
    };
    if interactive && code == ExitCode::SUCCESS {
        println!();
        println!("The sandbox stays up. In another terminal:");
        println!("  export KUBECONFIG={}", env.kubeconfig_path().display());
        println!("  export PATH={}:$PATH", env.bin_dir().display());
        println!("  kubectl get stages,promotions -n {NAMESPACE}");
        println!("Press Ctrl-C to stop and clean up.");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(());
    let _ = controller.await;
    double.stop().await;
    env.control_plane().stop();
    say(started, "stopped; nothing left behind");
    Ok(code)
}

fn say(started: Instant, message: &str) {
    println!("[{:>6.1}s] {message}", started.elapsed().as_secs_f64());
}

/// Server-side applies the manifests of a directory whose kind passes `keep`.
async fn apply_dir(client: &Client, dir: &Path, keep: impl Fn(&str) -> bool) -> Result<(), Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let docs: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(&file)?)?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            if !keep(&kind) {
                continue;
            }
            let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let plural = match kind.as_str() {
                "Freight" => "freights".to_string(),
                "ClusterPromotionTask" => "clusterpromotiontasks".to_string(),
                "PromotionTask" => "promotiontasks".to_string(),
                other => format!("{}s", other.to_ascii_lowercase()),
            };
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, &kind),
                &plural,
            );
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let object: DynamicObject = serde_json::from_value(doc)?;
            api.patch(
                &name,
                &PatchParams::apply("barge-sandbox").force(),
                &Patch::Apply(&object),
            )
            .await?;
        }
    }
    Ok(())
}

#[derive(Clone, Default, PartialEq)]
struct Row {
    promotion: String,
    phase: String,
    step: String,
    health: String,
}

/// Follows Promotions and Stages and reports each change, until every Stage
/// is healthy with a succeeded Promotion.
async fn progress(client: &Client, started: Instant, interactive: bool) -> Result<(), Error> {
    let promotions = watcher(
        Api::<Promotion>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default(),
    )
    .applied_objects()
    .map(|r| r.map(|p| Either::Promotion(Box::new(p))));
    let stages = watcher(
        Api::<Stage>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default(),
    )
    .applied_objects()
    .map(|r| r.map(|s| Either::Stage(Box::new(s))));
    let mut events = futures::stream::select(promotions.boxed(), stages.boxed());
    let mut rows: BTreeMap<&str, Row> = STAGES.iter().map(|s| (*s, Row::default())).collect();
    let mut shown: BTreeMap<&str, Row> = BTreeMap::new();
    while let Some(event) = events.next().await {
        let event = event?;
        match &event {
            Either::Promotion(p) => {
                let Some(row) = STAGES
                    .iter()
                    .position(|s| *s == p.spec.stage)
                    .and_then(|i| rows.get_mut(STAGES[i]))
                else {
                    continue;
                };
                let status = p.status.clone().unwrap_or_default();
                row.promotion = p.name_any();
                row.phase = p.phase().to_string();
                row.step = if p.phase() == PromotionPhase::Running || !status.message.is_empty() {
                    let current = status
                        .step_execution_metadata
                        .last()
                        .map(|m| m.alias.clone())
                        .unwrap_or_default();
                    format!("{current} {}", status.message).trim().to_string()
                } else {
                    String::new()
                };
            }
            Either::Stage(s) => {
                let Some(row) = STAGES
                    .iter()
                    .position(|n| *n == s.name_any())
                    .and_then(|i| rows.get_mut(STAGES[i]))
                else {
                    continue;
                };
                row.health = s
                    .status
                    .as_ref()
                    .and_then(|st| st.health.as_ref())
                    .and_then(|h| h.status)
                    .map(|h| h.to_string())
                    .unwrap_or_default();
            }
        }
        if interactive {
            draw(started, &rows);
        } else {
            for (stage, row) in &rows {
                if shown.get(stage) != Some(row) && !row.promotion.is_empty() {
                    say(
                        started,
                        &format!(
                            "{stage:<8} {:<28} {:<10} health={:<12} {}",
                            row.promotion, row.phase, row.health, row.step
                        ),
                    );
                }
            }
            shown = rows.clone();
        }
        let done = rows
            .values()
            .all(|r| r.phase == "Succeeded" && r.health == "Healthy");
        if done {
            return Ok(());
        }
        if let Some((stage, row)) = rows
            .iter()
            .find(|(_, r)| matches!(r.phase.as_str(), "Failed" | "Errored" | "Aborted"))
        {
            return Err(format!(
                "Promotion {} to {stage} ended {}: {}",
                row.promotion, row.phase, row.step
            )
            .into());
        }
    }
    Err("the watch ended".into())
}

enum Either {
    Promotion(Box<Promotion>),
    Stage(Box<Stage>),
}

fn draw(started: Instant, rows: &BTreeMap<&str, Row>) {
    let mut out = String::from("\x1b[2J\x1b[H");
    out.push_str(&format!(
        "Barge sandbox — {NAMESPACE}, {:.1}s\n\n",
        started.elapsed().as_secs_f64()
    ));
    out.push_str(&format!(
        "{:<8} {:<28} {:<10} {:<12} {}\n",
        "STAGE", "PROMOTION", "PHASE", "HEALTH", "STEP"
    ));
    for stage in STAGES {
        let row = rows.get(stage).cloned().unwrap_or_default();
        out.push_str(&format!(
            "{stage:<8} {:<28} {:<10} {:<12} {}\n",
            row.promotion, row.phase, row.health, row.step
        ));
    }
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}
