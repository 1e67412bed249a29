//! `make sandbox`: Barge end to end on this machine. Starts a real etcd and
//! kube-apiserver, installs Barge's CRDs, runs an Argo CD and the controller,
//! applies `examples/quickstart` with a Warehouse watching a git repository
//! of the sandbox's own, and shows the promotions progressing dev → staging
//! → prod as the Warehouse discovers the first version; then it commits a
//! second version, asks the Warehouse to look (as a push webhook does), and
//! shows that version flow the same way, with how long each took.
//!
//! `SANDBOX_ARGOCD` picks the Argo CD:
//!
//! - `real` (the default): Argo CD's own application-controller, repo-server
//!   and a redis-compatible server, built once from Go modules by
//!   `hack/argocd/build.sh` into `~/.cache/barge/argocd-<version>` (the
//!   sandbox runs the script when they are missing: 5–10 minutes on 2
//!   cores). The sandbox makes a git repository of its own in a temporary
//!   directory, one directory per environment holding a ConfigMap, and
//!   rewrites the quickstart in memory to use it: the Applications move to a
//!   namespace real Argo CD reconciles (`argocd-apps-*`) and deploy
//!   `file://<repository>/<stage>`. Argo CD really syncs the ConfigMaps
//!   into `guestbook-<stage>`. Its logs are in the directory printed once it
//!   runs (removed on exit).
//! - `double`: the project's Argo CD double and the quickstart's
//!   Applications as the files say (only the Warehouse reads the git
//!   repository).
//!
//! Either way the quickstart's hand-written Freight is left out: the
//! Warehouse `demo` (a git subscription to the repository's `main`) makes
//! it, and the Stages' `repoURL` names the repository.
//!
//! On a terminal it keeps the sandbox up afterwards (Ctrl-C tears it down).
//! With `SANDBOX_EXIT=1`, or when stdout is not a terminal, it prints plain
//! progress lines and exits 0 once every quickstart promotion succeeded and
//! prod is Healthy, or 1 with the reason if not within 5 minutes of the
//! Freight's creation. Every process it starts ends with it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use barge::api::{Promotion, PromotionPhase, Stage};
use barge::controller::{self, Metrics, Settings};
use barge_argocd_double::{Double, DoubleConfig, DoubleHandle, HealthAfterSync};
use barge_testenv::argocd::{self, ARGOCD_VERSION};
use barge_testenv::git::GitRepo;
use barge_testenv::{ControlPlane, StoppableTask, TestEnv};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NAMESPACE: &str = "barge-demo";
const STAGES: [&str; 3] = ["dev", "staging", "prod"];
const WAREHOUSE: &str = "demo";
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

/// Which Argo CD reconciles the quickstart's Applications.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ArgoCdKind {
    Real,
    Double,
}

impl ArgoCdKind {
    /// From `SANDBOX_ARGOCD`: unset or empty means `real`.
    fn from_env() -> Result<Self, Error> {
        let value = match std::env::var("SANDBOX_ARGOCD") {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => String::new(),
            Err(std::env::VarError::NotUnicode(value)) => value.to_string_lossy().into_owned(),
        };
        match value.as_str() {
            "" | "real" => Ok(Self::Real),
            "double" => Ok(Self::Double),
            other => Err(format!(
                "SANDBOX_ARGOCD={other:?} is not accepted: use `real` (the default, Argo CD {ARGOCD_VERSION}) or `double` (the Argo CD double)"
            )
            .into()),
        }
    }
}

async fn run() -> Result<ExitCode, Error> {
    let kind = ArgoCdKind::from_env()?;
    let interactive = std::io::stdout().is_terminal()
        && std::env::var("SANDBOX_EXIT").ok().as_deref() != Some("1");
    let started = Instant::now();
    if kind == ArgoCdKind::Real {
        build_argocd(started).await?;
    }
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
    let mut docs = load_dir(&repo_path("examples/quickstart"))?;
    // The Freight comes from a Warehouse watching this repository (the
    // real Argo CD also deploys from it); held until the end.
    let repo = DemoRepo::create()?;
    let mut argocd_dir = None;
    let argocd_namespace = match kind {
        ArgoCdKind::Double => {
            env.apply_crds(barge_argocd_double::CRD_YAML).await?;
            say(
                started,
                "installed Barge's CRDs and the Argo CD Application CRD",
            );
            Settings::default().argocd_namespace
        }
        ArgoCdKind::Real => {
            say(started, "installed Barge's CRDs; starting Argo CD");
            let argocd = env.argocd().await?;
            say(
                started,
                &format!(
                    "Argo CD {ARGOCD_VERSION} (application-controller, repo-server, redis) ready in {:?}; its CRDs installed; logs in {}",
                    argocd.startup_time(),
                    argocd.dir().display()
                ),
            );
            argocd_dir = Some(argocd.dir().to_path_buf());
            let namespace = env.argocd_namespace().await?;
            for_real_argocd(&mut docs, &repo, &namespace)?;
            namespace
        }
    };
    say(
        started,
        &format!(
            "git repository {} at {} (a ConfigMap per Stage)",
            repo.url(),
            &repo.sha[..7]
        ),
    );
    from_warehouse(&mut docs, &repo)?;

    let client = env.client();
    apply(&client, docs.iter().filter(|d| d["kind"] != "Warehouse")).await?;
    say(
        started,
        "applied examples/quickstart (its Freight comes from the Warehouse once the controller runs)",
    );

    let double = (kind == ArgoCdKind::Double).then(|| spawn_double(&client));
    let dashboard = barge::dashboard::Feed::default();
    let dashboard_url = serve_dashboard(dashboard.clone()).await?;
    say(
        started,
        &format!("live view of the pipeline (from the controller's caches): {dashboard_url}"),
    );
    let settings = Settings {
        dashboard: Some(dashboard),
        namespace: Some(NAMESPACE.into()),
        argocd_namespace: argocd_namespace.clone(),
        // kustomize and helm as `make control-plane` built them.
        tools: barge::controller::Tools {
            kustomize: barge_testenv::bin_dir().join("kustomize"),
            helm: barge_testenv::bin_dir().join("helm"),
            ..barge::controller::Tools::default()
        },
        ..Settings::default()
    };
    let metrics = Arc::new(Metrics::default());
    let controller =
        StoppableTask::spawn(|stopped| controller::run(client.clone(), settings, metrics, stopped));
    say(
        started,
        match kind {
            ArgoCdKind::Real => "Barge controller running next to Argo CD",
            ArgoCdKind::Double => "Argo CD double and Barge controller running",
        },
    );
    let argocd_name = match kind {
        ArgoCdKind::Real => format!("real Argo CD {ARGOCD_VERSION}"),
        ArgoCdKind::Double => "Argo CD double".to_string(),
    };
    let outcome = tokio::select! {
        r = two_versions(&client, &repo, started, interactive, &argocd_name) => r,
        _ = tokio::time::sleep(DEADLINE) => Err(format!("the quickstart promotions did not all succeed within {DEADLINE:?}").into()),
    };
    let code = match outcome {
        Ok(()) => {
            if kind == ArgoCdKind::Real {
                report_deployed(&client, &docs, &argocd_namespace, started).await?;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sandbox: {e}");
            if kind == ArgoCdKind::Real
                && let Ok(argocd) = env.argocd().await
            {
                eprintln!(
                    "sandbox: the last lines of Argo CD's application-controller log:\n{}",
                    argocd.log_tail("application-controller", 20)
                );
            }
            ExitCode::FAILURE
        }
    };
    if let Some(dir) = &argocd_dir {
        say(
            started,
            &format!(
                "Argo CD's logs: {} (application-controller.log, repo-server.log, miniredis.log; removed on exit)",
                dir.display()
            ),
        );
    }
    if interactive && code == ExitCode::SUCCESS {
        println!();
        println!("The sandbox stays up. Live view: {dashboard_url}");
        println!("In another terminal:");
        println!("  export KUBECONFIG={}", env.kubeconfig_path().display());
        println!("  export PATH={}:$PATH", env.bin_dir().display());
        println!("  kubectl get warehouses,freight,stages,promotions -n {NAMESPACE}");
        println!("  cargo run -q --bin barge -- get stages -n {NAMESPACE}");
        println!(
            "  cargo run -q --bin barge -- promote --stage dev --freight <alias> -n {NAMESPACE} --wait"
        );
        println!(
            "  git -C {} commit --allow-empty -m 'a new version' && cargo run -q --bin barge -- refresh --warehouse {WAREHOUSE} -n {NAMESPACE}",
            repo.path().display()
        );
        if kind == ArgoCdKind::Real {
            println!("  kubectl get applications -n {argocd_namespace}");
            println!("  kubectl get configmaps -n guestbook-prod");
        }
        println!("Press Ctrl-C to stop and clean up.");
        let _ = tokio::signal::ctrl_c().await;
    }
    controller.stop().await;
    if let Some(double) = double {
        double.stop().await;
    }
    env.control_plane().stop();
    // Stops Argo CD (when it runs) and removes its directory.
    drop(env);
    drop(repo);
    say(started, "stopped; nothing left behind");
    Ok(code)
}

fn say(started: Instant, message: &str) {
    println!("[{:>6.1}s] {message}", started.elapsed().as_secs_f64());
}

fn spawn_double(client: &Client) -> DoubleHandle {
    Double::new(
        client.clone(),
        DoubleConfig::namespaced("argocd")
            .with_sync_delay(Duration::from_secs(2))
            .with_health_after_sync(HealthAfterSync::ProgressingThenHealthy),
    )
    .spawn()
}

/// Runs `hack/argocd/build.sh` unless Argo CD is built already.
async fn build_argocd(started: Instant) -> Result<(), Error> {
    if argocd::is_built() {
        return Ok(());
    }
    say(
        started,
        &format!(
            "building Argo CD {ARGOCD_VERSION} from Go modules into {}: once, it takes 5–10 minutes on 2 cores",
            argocd::argocd_dir().display()
        ),
    );
    let building = Instant::now();
    let script = repo_path("hack/argocd/build.sh");
    // tokio's `output()` would capture stderr too: spawn, so the build's
    // progress reaches the terminal.
    let child = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("bash {}: {e}", script.display()))?;
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        return Err(format!("bash {} failed: {}", script.display(), output.status).into());
    }
    if !argocd::is_built() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        return Err(format!(
            "bash {} built Argo CD into {}, but the sandbox looks for it in {} (BARGE_ARGOCD_DIR)",
            script.display(),
            stdout.lines().last().unwrap_or("?"),
            argocd::argocd_dir().display()
        )
        .into());
    }
    say(
        started,
        &format!("built Argo CD in {:.0}s", building.elapsed().as_secs_f64()),
    );
    Ok(())
}

/// The git repository the real Argo CD deploys from: on `main`, one
/// directory per Stage, each holding a ConfigMap `guestbook`.
struct DemoRepo {
    repo: GitRepo,
    sha: String,
}

/// The ConfigMap a Stage deploys, at one version.
fn guestbook(stage: &str, version: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guestbook\n  labels:\n    app.kubernetes.io/name: guestbook\ndata:\n  stage: {stage}\n  version: {version}\n  greeting: \"Hello from {stage}, deployed by Argo CD for Barge\"\n"
    )
}

impl DemoRepo {
    fn create() -> Result<Self, Error> {
        let repo = GitRepo::init()?;
        for stage in STAGES {
            repo.write(
                &format!("{stage}/guestbook.yaml"),
                &guestbook(stage, "first light"),
            )?;
        }
        let sha = repo.commit("guestbook: first light")?;
        Ok(Self { repo, sha })
    }

    fn url(&self) -> String {
        self.repo.url()
    }

    fn path(&self) -> &Path {
        self.repo.path()
    }
}

/// Rewrites the quickstart for the real Argo CD: Applications in `namespace`
/// deploying `<repo>/<stage>`.
fn for_real_argocd(docs: &mut [Value], repo: &DemoRepo, namespace: &str) -> Result<(), Error> {
    let url = repo.url();
    let mut applications = 0;
    for doc in docs.iter_mut().filter(|d| d["kind"] == "Application") {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let stage = STAGES
            .iter()
            .find(|s| name == format!("{NAMESPACE}-{s}"))
            .ok_or_else(|| {
                format!("quickstart Application {name:?} is not named <{NAMESPACE}>-<stage>")
            })?;
        doc["metadata"]["namespace"] = json!(namespace);
        doc["spec"]["project"] = json!(argocd::PROJECT);
        doc["spec"]["source"] = json!({"repoURL": url, "path": stage, "targetRevision": "main"});
        applications += 1;
    }
    if applications != STAGES.len() {
        return Err(format!(
            "the quickstart has {applications} Applications, expected one per Stage ({})",
            STAGES.join(", ")
        )
        .into());
    }
    Ok(())
}

/// Rewrites the quickstart to take its Freight from a Warehouse watching
/// the sandbox's repository (applied once the controller runs): the
/// hand-written Freight goes, the Stages' `repoURL` and the Applications'
/// source name the repository.
fn from_warehouse(docs: &mut Vec<Value>, repo: &DemoRepo) -> Result<(), Error> {
    let url = repo.url();
    docs.retain(|d| d["kind"] != "Freight");
    // (The real Argo CD's Applications are rewritten to deploy from it too.)
    for doc in docs.iter_mut().filter(|d| d["kind"] == "Application") {
        doc["spec"]["source"]["repoURL"] = json!(url);
    }
    for doc in docs.iter_mut().filter(|d| d["kind"] == "Stage") {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let vars = doc["spec"]["vars"]
            .as_array_mut()
            .ok_or_else(|| format!("quickstart Stage {name:?} has no spec.vars"))?;
        let var = vars
            .iter_mut()
            .find(|v| v["name"] == "repoURL")
            .ok_or_else(|| format!("quickstart Stage {name:?} has no repoURL var"))?;
        var["value"] = json!(url);
    }
    Ok(())
}

/// The Warehouse finds the repository's first version, which flows dev →
/// staging → prod; then the sandbox commits a second version and asks the
/// Warehouse to look (what a push webhook does), and the new Freight flows
/// the same way. Reports how long each took.
async fn two_versions(
    client: &Client,
    repo: &DemoRepo,
    started: Instant,
    interactive: bool,
    argocd: &str,
) -> Result<(), Error> {
    let warehouse = Instant::now();
    let docs = [json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
        "metadata": {"name": WAREHOUSE, "namespace": NAMESPACE},
        "spec": {
            "interval": "5m0s",
            "subscriptions": [{"git": {
                "repoURL": repo.url(), "branch": "main",
                "commitSelectionStrategy": "NewestFromBranch",
            }}],
        },
    })];
    apply(client, docs.iter()).await?;
    let first = freight_from(client, &repo.sha).await?;
    say(
        started,
        &format!(
            "Warehouse {WAREHOUSE} discovered {} and created Freight {} in {:.0} ms: watch it flow dev → staging → prod",
            &repo.sha[..7],
            first.alias,
            first.at.duration_since(warehouse).as_secs_f64() * 1000.0
        ),
    );
    let healthy = progress(client, started, interactive, &first.name).await?;
    say(
        started,
        &format!(
            "Freight created → prod Healthy in {:.1}s ({argocd})",
            healthy.duration_since(first.at).as_secs_f64()
        ),
    );

    // A new version, as a developer would push it.
    for stage in STAGES {
        repo.repo.write(
            &format!("{stage}/guestbook.yaml"),
            &guestbook(stage, "second light"),
        )?;
    }
    let pushed = Instant::now();
    let sha = repo.repo.commit("guestbook: second light")?;
    say(
        started,
        &format!(
            "committed {} (\"guestbook: second light\"); asking the Warehouse to look, as a push webhook does",
            &sha[..7]
        ),
    );
    let api: Api<barge::api::Warehouse> = Api::namespaced(client.clone(), NAMESPACE);
    api.patch(
        WAREHOUSE,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"barge.dev/refresh": sha}}})),
    )
    .await?;
    let second = freight_from(client, &sha).await?;
    say(
        started,
        &format!(
            "commit → Freight {} in {:.0} ms",
            second.alias,
            second.at.duration_since(pushed).as_secs_f64() * 1000.0
        ),
    );
    let healthy = progress(client, started, interactive, &second.name).await?;
    say(
        started,
        "every quickstart promotion succeeded, for both versions",
    );
    say(
        started,
        &format!(
            "commit → prod Healthy on the new version in {:.1}s ({argocd})",
            healthy.duration_since(pushed).as_secs_f64()
        ),
    );
    Ok(())
}

struct Found {
    name: String,
    alias: String,
    at: Instant,
}

/// Waits on the Freight watch for the Freight of `commit`.
async fn freight_from(client: &Client, commit: &str) -> Result<Found, Error> {
    let freight = watcher(
        Api::<barge::api::Freight>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default(),
    )
    .applied_objects();
    let mut freight = std::pin::pin!(freight);
    while let Some(f) = freight.next().await {
        let f = f?;
        if f.spec.commits.iter().any(|c| c.id == commit) {
            return Ok(Found {
                name: f.name_any(),
                alias: f.spec.alias.clone().unwrap_or_default(),
                at: Instant::now(),
            });
        }
    }
    Err("the Freight watch ended".into())
}

/// What Argo CD deployed: each Application's revision and health, and the
/// ConfigMap it synced into its destination namespace.
async fn report_deployed(
    client: &Client,
    docs: &[Value],
    namespace: &str,
    started: Instant,
) -> Result<(), Error> {
    let applications: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &barge_argocd_double::api_resource(),
    );
    for doc in docs.iter().filter(|d| d["kind"] == "Application") {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let destination = doc["spec"]["destination"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let app = applications.get(name).await?;
        let field = |pointer: &str| {
            app.data
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        let revision = field("/status/sync/revision");
        let config_map = match Api::<ConfigMap>::namespaced(client.clone(), destination)
            .get_opt("guestbook")
            .await?
        {
            Some(cm) => format!(
                "ConfigMap {destination}/guestbook stage={}",
                cm.data
                    .as_ref()
                    .and_then(|d| d.get("stage"))
                    .map(String::as_str)
                    .unwrap_or("?")
            ),
            None => format!("no ConfigMap {destination}/guestbook"),
        };
        say(
            started,
            &format!(
                "Application {name}: {} {} at {}; {config_map}",
                field("/status/sync/status"),
                field("/status/health/status"),
                revision.get(..7).unwrap_or(&revision),
            ),
        );
    }
    Ok(())
}

/// Every document of the directory's `*.yaml` files, in name order.
fn load_dir(dir: &Path) -> Result<Vec<Value>, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    Ok(docs)
}

/// Server-side applies the manifests, in order.
async fn apply(client: &Client, docs: impl Iterator<Item = &Value>) -> Result<(), Error> {
    for doc in docs {
        barge_testenv::apply(client, doc.clone(), NAMESPACE, "barge-sandbox").await?;
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
/// is healthy with a succeeded Promotion; returns when that was seen.
async fn progress(
    client: &Client,
    started: Instant,
    interactive: bool,
    freight: &str,
) -> Result<Instant, Error> {
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
            Either::Promotion(p) if p.spec.freight == freight => {
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
            Either::Promotion(_) => continue,
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
            return Ok(Instant::now());
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

/// Where the sandbox serves the dashboard: $SANDBOX_DASHBOARD_ADDR, else
/// 127.0.0.1:8090, else (taken) a free port. Returns its URL.
async fn serve_dashboard(
    feed: barge::dashboard::Feed,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let wanted =
        std::env::var("SANDBOX_DASHBOARD_ADDR").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let addr: std::net::SocketAddr = wanted.parse()?;
    let served = match barge::dashboard::serve(addr, feed.clone(), std::future::pending()).await {
        Ok(served) => served,
        Err(_) => {
            barge::dashboard::serve(([127, 0, 0, 1], 0).into(), feed, std::future::pending())
                .await?
        }
    };
    Ok(format!("http://{}/", served.0))
}
