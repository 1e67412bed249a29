//! Wake-up latency: from the moment Argo CD's final `operationState` write
//! (the sync finished) is seen to the moment the Promotion's Succeeded status
//! is seen. Measured in up to four modes in one run, side by side:
//!
//! - `event`: the controller runs as its own process (`barge run`, the
//!   binary built with this bench); the Argo CD double, in this process,
//!   syncs; Barge's Application watch wakes the waiting Promotion (backstop
//!   1 h). This is the figure the target is about.
//! - `event_in_process`: the same with the controller in this process,
//!   sharing its runtime threads with the double and the two watches that
//!   measure: how much the harness itself adds.
//! - `backstop_only`: as `event`, with the Application watch's wake-ups
//!   disabled (`--no-application-wakeups`), so only a 10 s backstop requeue
//!   notices (the behaviour behind Kargo's "always 300 s").
//! - `event_argocd`: as `event`, but real Argo CD (application-controller and
//!   repo-server built by `make argocd`) syncs, from a git repository of the
//!   bench's own served over `file://`.
//!
//! Every mode measures the same interval, with two watches in this process:
//! start = the instant this process's watch on the Applications first sees
//! the Promotion's sync operation (its `operationState.operation.info` names
//! the Promotion) with `operationState.phase: Succeeded` and `finishedAt`
//! set, i.e. Argo CD's final `operationState` write as delivered by a watch;
//! end = the instant this process's watch on the Promotions first sees the
//! Promotion's `status.phase: Succeeded`. Both instants include one watch
//! delivery, so the interval is Barge's wake-up, reconcile and status write
//! (plus the difference between the two deliveries). A sample can be
//! slightly negative when the Promotion's event overtakes the Application's.
//! For the double, the interval from the double's own acknowledged write
//! (its journal) is printed too, on stderr, as a cross-check.
//!
//! Each mode runs PROMOTIONS promotions, IN_FLIGHT at a time, each on its own
//! Stage and Application, which moves from `targetRevision: main` to the
//! Freight's commit. Applications are created and compared by Argo CD before
//! the first promotion starts. Per mode, the API server's own request
//! counters (`apiserver_request_total`, `apiserver_request_duration_seconds`)
//! are read before and after, and what was asked per promotion is printed;
//! for a controller of its own process, its `/metrics` (reconcile durations,
//! wake-up latency) too. A child controller's log is in
//! target/bench/wakeup-logs/<mode>/barge.log.
//!
//! Sizes and modes, from the environment:
//! - `BARGE_BENCH_PROMOTIONS` (200), `BARGE_BENCH_IN_FLIGHT` (20);
//! - `BARGE_BENCH_MODES`: a comma-separated subset of the modes above (all);
//! - `BARGE_BENCH_SMOKE=1`: a tiny run for CI (`cargo test --bench wakeup`):
//!   4 promotions, 2 in flight, a 2 s backstop, real Argo CD only when built,
//!   and nothing written to target/bench.
//!
//! `make bench` runs it; it prints a table and writes target/bench/wakeup.json.
//! The `event_argocd` mode needs real Argo CD: `make argocd` builds it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use barge::api::{Promotion, PromotionPhase};
use barge::controller::{self, Metrics, Settings};
use barge_argocd_double::{Double, DoubleConfig, Journal};
use barge_testenv::process::{Server, free_port};
use barge_testenv::{StoppableTask, TestEnv};
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

mod support;
use support::watched::{Watched, finished_sync_of};
use support::{Summary, signed_ms, summarize};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Promotions per mode, and how many run at once, unless the environment
/// says otherwise (`BARGE_BENCH_PROMOTIONS`, `BARGE_BENCH_IN_FLIGHT`).
const PROMOTIONS: usize = 200;
const IN_FLIGHT: usize = 20;
/// The modes, in the order they run.
const MODES: [&str; 5] = [
    "event",
    "event_in_process",
    "backstop_only",
    "event_argocd",
    "event_compare",
];
/// The double resolves any revision; nothing is fetched from this URL.
const DOUBLE_REPO: &str = "https://git.example.com/bench/app.git";
const DOUBLE_COMMIT: &str = "c0ffee1";
/// How long one wave of IN_FLIGHT promotions, or Argo CD's first comparison
/// of every Application, may take.
const PATIENCE: Duration = Duration::from_secs(300);

/// A git repository of the bench's own, with one commit on `main`: a
/// ConfigMap, which Argo CD deploys into each Application's destination.
struct GitRepo {
    repo: barge_testenv::git::GitRepo,
    head: String,
}

impl GitRepo {
    fn new() -> BenchResult<Self> {
        let repo = barge_testenv::git::GitRepo::init()?;
        repo.write(
            "configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bench\ndata:\n  release: \"1\"\n",
        )?;
        let head = repo.commit("bench release 1")?;
        Ok(Self { repo, head })
    }

    fn url(&self) -> String {
        self.repo.url()
    }
}

/// Who plays Argo CD in a mode.
enum ArgoCd<'a> {
    /// The project's double, in this process, in a namespace of its own.
    Double,
    /// The real application-controller, syncing from this repository.
    Real(&'a GitRepo),
}

/// Where the controller runs in a mode.
#[derive(Clone, Copy, PartialEq)]
enum Placement {
    /// `barge run`, a process of its own.
    Child,
    /// `controller::run` on this process's runtime, beside the double and
    /// the measuring watches.
    InProcess,
}

struct Mode<'a> {
    name: &'static str,
    argocd: ArgoCd<'a>,
    backstop: Duration,
    wake_on_application_events: bool,
    placement: Placement,
    /// The `barge` a child controller runs.
    binary: PathBuf,
}

/// Sizes and modes of this run, from the environment.
struct Plan {
    promotions: usize,
    in_flight: usize,
    smoke: bool,
    modes: Vec<&'static str>,
    /// `BARGE_BENCH_COMPARE_BIN`: another build of `barge` (an earlier
    /// commit's), run as mode `event_compare`, so a change is measured
    /// against what it replaced in one run, under the same load.
    compare: Option<PathBuf>,
}

impl Plan {
    fn from_env() -> BenchResult<Self> {
        let smoke = std::env::var("BARGE_BENCH_SMOKE").is_ok_and(|v| v == "1");
        let number = |name: &str, default: usize| -> BenchResult<usize> {
            match std::env::var(name) {
                Ok(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{name}: {v:?} is not a positive number").into()),
                },
                Err(_) => Ok(default),
            }
        };
        let (promotions, in_flight) = if smoke {
            (4, 2)
        } else {
            (PROMOTIONS, IN_FLIGHT)
        };
        let promotions = number("BARGE_BENCH_PROMOTIONS", promotions)?;
        let in_flight = number("BARGE_BENCH_IN_FLIGHT", in_flight)?;
        let mut modes = match std::env::var("BARGE_BENCH_MODES") {
            Ok(list) => {
                let mut modes = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let Some(mode) = MODES.iter().find(|m| **m == name) else {
                        return Err(format!(
                            "BARGE_BENCH_MODES: unknown mode {name:?} (modes: {})",
                            MODES.join(", ")
                        )
                        .into());
                    };
                    modes.push(*mode);
                }
                modes
            }
            Err(_) => MODES.to_vec(),
        };
        let compare = std::env::var_os("BARGE_BENCH_COMPARE_BIN").map(PathBuf::from);
        if compare.is_none() && modes.contains(&"event_compare") {
            if std::env::var_os("BARGE_BENCH_MODES").is_some() {
                return Err(
                    "BARGE_BENCH_MODES: event_compare needs BARGE_BENCH_COMPARE_BIN".into(),
                );
            }
            modes.retain(|m| *m != "event_compare");
        }
        Ok(Self {
            promotions,
            in_flight,
            smoke,
            modes,
            compare,
        })
    }
}

/// `barge run` as a child process, killed when dropped, and by its wrapper
/// whenever this process ends, however it ends.
struct ChildController {
    server: Server,
    port: u16,
}

impl ChildController {
    async fn start(
        env: &TestEnv,
        mode: &Mode<'_>,
        namespace: &str,
        argocd_namespace: &str,
    ) -> BenchResult<Self> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/bench/wakeup-logs")
            .join(mode.name);
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let backstop = format!("{}ms", mode.backstop.as_millis());
        let mut args: Vec<String> = [
            "run",
            "--kubeconfig",
            &env.kubeconfig_path().display().to_string(),
            "--namespace",
            namespace,
            "--argocd-namespace",
            argocd_namespace,
            "--backstop",
            &backstop,
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-addr",
            "",
            "--work-dir",
            &dir.join("work").display().to_string(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if !mode.wake_on_application_events {
            args.push("--no-application-wakeups".into());
        }
        let log = std::env::var("BARGE_BENCH_CHILD_LOG").unwrap_or_else(|_| "info".into());
        let server =
            Server::spawn_with_env(&dir, "barge", &mode.binary, &args, &[("RUST_LOG", log)])?;
        let child = Self { server, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !child.server.alive() {
                return Err(child.server.exited_error().into());
            }
            if matches!(child.get("/readyz").await, Ok((200, _))) {
                return Ok(child);
            }
            if Instant::now() > deadline {
                return Err("the barge child was not ready within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One plain HTTP/1.1 GET of the child's endpoints: status and body.
    async fn get(&self, path: &str) -> BenchResult<(u16, String)> {
        let port = self.port;
        let path = path.to_string();
        tokio::task::spawn_blocking(move || -> BenchResult<(u16, String)> {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            Ok((status, body.to_string()))
        })
        .await?
    }

    /// What the child's /metrics says of its reconciles and wake-ups.
    async fn report(&self) -> BenchResult<()> {
        let (_, body) = self.get("/metrics").await?;
        let series = parse_metrics(&body);
        let mean_ms = |sum: f64, count: f64| {
            if count > 0.0 {
                sum / count * 1000.0
            } else {
                0.0
            }
        };
        for controller in ["promotion", "stage", "freight"] {
            let value = |suffix: &str| {
                series
                    .iter()
                    .filter(|(name, labels, _)| {
                        name == &format!("barge_reconcile_duration_seconds_{suffix}")
                            && labels.get("controller").map(String::as_str) == Some(controller)
                    })
                    .map(|(_, _, v)| v)
                    .sum::<f64>()
            };
            let (sum, count) = (value("sum"), value("count"));
            eprintln!(
                "wakeup:   controller: {count:.0} {controller} reconciles, mean {:.2} ms",
                mean_ms(sum, count)
            );
        }
        let value = |name: &str| {
            series
                .iter()
                .filter(|(n, _, _)| n == name)
                .map(|(_, _, v)| v)
                .sum::<f64>()
        };
        let (sum, count) = (
            value("barge_wakeup_latency_seconds_sum"),
            value("barge_wakeup_latency_seconds_count"),
        );
        eprintln!(
            "wakeup:   controller: {count:.0} wake-ups (Application change -> reconcile start), mean {:.2} ms",
            mean_ms(sum, count)
        );
        Ok(())
    }

    fn stop(mut self) {
        self.server.stop();
    }
}

/// The controller of a mode, wherever it runs.
enum RunningController {
    Child(ChildController),
    InProcess(StoppableTask),
}

impl RunningController {
    async fn stop(self) -> BenchResult<()> {
        match self {
            RunningController::Child(child) => {
                let report = child.report().await;
                child.stop();
                report
            }
            RunningController::InProcess(task) => {
                task.stop().await;
                Ok(())
            }
        }
    }
}

/// Prometheus text: (name, labels, value) per sample.
fn parse_metrics(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Label values here hold no commas or quotes.
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once('=') {
                map.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        samples.push((name.to_string(), map, value));
    }
    samples
}

/// The API server's request counters: (verb, resource[/subresource]) →
/// (requests, seconds spent serving them). Watches are left out.
type Requests = BTreeMap<(String, String), (f64, f64)>;

async fn apiserver_requests(client: &Client) -> BenchResult<Requests> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut requests = Requests::new();
    for (name, labels, value) in parse_metrics(&text) {
        let verb = labels.get("verb").cloned().unwrap_or_default();
        if verb == "WATCH" || labels.get("component").map(String::as_str) != Some("apiserver") {
            continue;
        }
        let mut resource = labels.get("resource").cloned().unwrap_or_default();
        if let Some(sub) = labels.get("subresource").filter(|s| !s.is_empty()) {
            resource = format!("{resource}/{sub}");
        }
        let entry = requests.entry((verb, resource)).or_default();
        match name.as_str() {
            "apiserver_request_total" => entry.0 += value,
            "apiserver_request_duration_seconds_sum" => entry.1 += value,
            _ => {}
        }
    }
    Ok(requests)
}

/// What was asked of the API server between two readings, per promotion.
fn report_requests(before: &Requests, after: &Requests, promotions: usize) {
    let mut rows: Vec<(String, f64, f64)> = after
        .iter()
        .filter_map(|(key, (n, secs))| {
            let (n0, secs0) = before.get(key).copied().unwrap_or_default();
            let n = n - n0;
            (n >= 1.0).then(|| (format!("{} {}", key.0, key.1), n, secs - secs0))
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let per = promotions.max(1) as f64;
    for (what, n, secs) in rows.iter().take(14) {
        eprintln!(
            "wakeup:   API server: {what}: {:.2} per promotion, served in {:.2} ms on average",
            n / per,
            secs / n * 1000.0
        );
    }
}

/// What one mode measured.
struct Measured {
    /// From the Application watch's Succeeded to the Promotion watch's.
    watched: Summary,
    /// With the double: from its acknowledged final write to the Promotion
    /// watch's Succeeded.
    acknowledged: Option<Summary>,
}

/// What the two watches saw, each entry the first instant it was seen.
#[derive(Default)]
struct Seen {
    /// Promotion → its sync operation seen Succeeded with `finishedAt`.
    synced: HashMap<String, Instant>,
    /// Applications Argo CD has compared (`status.reconciledAt` set).
    compared: HashSet<String>,
    /// Promotion → seen Succeeded.
    succeeded: HashMap<String, Instant>,
    /// Promotion → how it ended, when not Succeeded.
    failed: HashMap<String, String>,
}

type Shared = Watched<Seen>;

fn progress(s: &Seen) -> String {
    format!(
        "seen: {} syncs finished, {} Promotions Succeeded",
        s.synced.len(),
        s.succeeded.len()
    )
}

/// Watches the Applications of `argocd_ns`, noting finished syncs and
/// comparisons.
fn watch_applications(
    client: &Client,
    argocd_ns: &str,
    ns: &str,
    shared: Shared,
) -> tokio::task::JoinHandle<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        argocd_ns,
        &barge_argocd_double::api_resource(),
    );
    let ns = ns.to_string();
    shared.watch(
        api,
        watcher::Config::default(),
        "Application",
        move |app, now, seen| {
            if let Some(promotion) = finished_sync_of(app, &ns) {
                seen.synced.entry(promotion).or_insert(now);
            }
            let compared = app
                .data
                .pointer("/status/reconciledAt")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty());
            if compared {
                seen.compared.insert(app.name_any());
            }
        },
    )
}

/// Watches the Promotions of `ns`, noting when each ends.
fn watch_promotions(client: &Client, ns: &str, shared: Shared) -> tokio::task::JoinHandle<()> {
    let api = Api::<Promotion>::namespaced(client.clone(), ns);
    shared.watch(
        api,
        watcher::Config::default(),
        "Promotion",
        |p, now, seen| {
            let phase = p.phase();
            if !phase.is_terminal() {
                return;
            }
            if phase == PromotionPhase::Succeeded {
                seen.succeeded.entry(p.name_any()).or_insert(now);
            } else {
                let message = p.status.as_ref().map(|s| s.message.clone());
                seen.failed
                    .entry(p.name_any())
                    .or_insert_with(|| format!("{phase:?}: {}", message.unwrap_or_default()));
            }
        },
    )
}

async fn apply(client: &Client, ns: &str, object: Value) -> BenchResult<()> {
    barge_testenv::apply(client, object, ns, "barge-bench").await?;
    Ok(())
}

/// One measured mode: `plan.promotions` promotions, `plan.in_flight` at a
/// time, each on its own Stage and Application.
async fn measure(env: &TestEnv, plan: &Plan, mode: Mode<'_>) -> BenchResult<Measured> {
    let (promotions, in_flight) = (plan.promotions, plan.in_flight);
    let client = env.client();
    let ns = env.namespace().await?;
    let (argocd_ns, double, repo_url, commit) = match mode.argocd {
        ArgoCd::Double => {
            let argocd_ns = env.namespace().await?;
            let double = Double::new(
                client.clone(),
                DoubleConfig::namespaced(&argocd_ns).with_sync_delay(Duration::from_millis(50)),
            )
            .spawn();
            (
                argocd_ns,
                Some(double),
                DOUBLE_REPO.to_string(),
                DOUBLE_COMMIT.to_string(),
            )
        }
        ArgoCd::Real(repo) => (
            env.argocd_namespace().await?,
            None,
            repo.url(),
            repo.head.clone(),
        ),
    };
    let journal: Option<Journal> = double.as_ref().map(|d| d.journal());

    let shared = Shared::default();
    let app_watch = watch_applications(&client, &argocd_ns, &ns, shared.clone());
    let promotion_watch = watch_promotions(&client, &ns, shared.clone());

    let controller = match mode.placement {
        Placement::Child => {
            RunningController::Child(ChildController::start(env, &mode, &ns, &argocd_ns).await?)
        }
        Placement::InProcess => {
            let settings = Settings {
                backstop: mode.backstop,
                argocd_namespace: argocd_ns.clone(),
                namespace: Some(ns.clone()),
                wake_on_application_events: mode.wake_on_application_events,
                ..Settings::default()
            };
            let metrics = Arc::new(Metrics::default());
            RunningController::InProcess(StoppableTask::spawn(|stopped| {
                controller::run(client.clone(), settings, metrics, stopped)
            }))
        }
    };

    apply(&client, &ns, json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Freight", "metadata": {"name": "f1"},
        "origin": {"kind": "Warehouse", "name": "bench"}, "commits": [{"repoURL": repo_url, "id": commit}],
    })).await?;
    let commit_expr = format!("${{{{ commitFrom(\"{repo_url}\").id }}}}");
    let mut apps = Vec::with_capacity(promotions);
    for i in 0..promotions {
        let stage = format!("s{i}");
        let app = format!("{ns}-{stage}");
        // Real Argo CD deploys the ConfigMap: each Application gets a
        // namespace of its own so that none shares a resource.
        let destination = match mode.argocd {
            ArgoCd::Double => "bench".to_string(),
            ArgoCd::Real(_) => env.namespace().await?,
        };
        apply(&client, &argocd_ns, json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": app, "annotations": {"barge.dev/authorized-stage": format!("{ns}:{stage}")}},
            "spec": {"project": "default", "source": {"repoURL": repo_url, "path": ".", "targetRevision": "main"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": destination}},
        })).await?;
        apply(&client, &ns, json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage", "metadata": {"name": stage},
            "spec": {
                "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "bench"}, "sources": {"direct": true}}],
                "promotionTemplate": {"spec": {"steps": [{"uses": "argocd-update", "as": "update", "config": {"apps": [{
                    "name": "${{ ctx.project }}-${{ ctx.stage }}",
                    "sources": [{"repoURL": repo_url, "desiredRevision": commit_expr, "updateTargetRevision": true}],
                }]}}]}},
            },
        })).await?;
        apps.push(app);
    }
    let compared_since = Instant::now();
    shared
        .wait_for(
            "Argo CD's first comparison of every Application",
            PATIENCE,
            |s| Ok(apps.iter().all(|a| s.compared.contains(a))),
            progress,
        )
        .await?;
    eprintln!(
        "wakeup:   {promotions} Applications compared {:.1} s after the last was created",
        compared_since.elapsed().as_secs_f64()
    );

    let requests_before = apiserver_requests(&client).await?;
    let promotions_since = Instant::now();
    let mut samples = Vec::new();
    let mut acknowledged = Vec::new();
    // From a wave's creation to each sync seen finished: where the time goes.
    let mut to_sync = Vec::new();
    let mut missing = 0usize;
    let mut negative = 0usize;
    for wave in (0..promotions).collect::<Vec<_>>().chunks(in_flight) {
        let created = Instant::now();
        for i in wave {
            apply(&client, &ns, json!({
                "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": format!("p{i}")},
                "spec": {"stage": format!("s{i}"), "freight": "f1"},
            })).await?;
        }
        let names: Vec<String> = wave.iter().map(|i| format!("p{i}")).collect();
        let what = format!("promotions {names:?}");
        shared
            .wait_for(
                &what,
                PATIENCE,
                |s| {
                    if let Some((name, how)) = names
                        .iter()
                        .find_map(|n| s.failed.get(n).map(|how| (n, how)))
                    {
                        return Err(format!("Promotion {name} ended {how}"));
                    }
                    Ok(names
                        .iter()
                        .all(|n| s.succeeded.contains_key(n) && s.synced.contains_key(n)))
                },
                progress,
            )
            .await?;
        for name in &names {
            let (synced, seen) =
                shared.with(|s| (s.synced.get(name).copied(), s.succeeded.get(name).copied()))?;
            let (Some(synced), Some(seen)) = (synced, seen) else {
                missing += 1;
                continue;
            };
            to_sync.push(signed_ms(created, synced));
            let ms = signed_ms(synced, seen);
            if ms < 0.0 {
                negative += 1;
            }
            samples.push(ms);
            let written = journal.as_ref().and_then(|j| {
                j.syncs_for_promotion(name)
                    .last()
                    .and_then(|s| s.final_write.clone())
            });
            if let Some(written) = written {
                acknowledged.push(signed_ms(written.acknowledged, seen));
            }
        }
    }
    let to_sync = summarize(to_sync);
    eprintln!(
        "wakeup:   promotions took {:.1} s in all; wave created -> sync seen finished: p50 {:.0} ms, max {:.0} ms",
        promotions_since.elapsed().as_secs_f64(),
        to_sync.p50_ms,
        to_sync.max_ms
    );
    if missing > 0 || negative > 0 {
        eprintln!(
            "wakeup:   {missing} promotions without a sample, {negative} samples negative (the Promotion's event came first)"
        );
    }

    let requests_after = apiserver_requests(&client).await?;
    report_requests(&requests_before, &requests_after, promotions);
    report_syncs(&client, &argocd_ns, &commit).await?;

    controller.stop().await?;
    app_watch.abort();
    promotion_watch.abort();
    if let Some(double) = double {
        double.stop().await;
    }
    Ok(Measured {
        watched: summarize(samples),
        acknowledged: journal.map(|_| summarize(acknowledged)),
    })
}

/// What Argo CD itself says it did: how many Applications' last sync
/// resolved to the Freight's commit, and applied resources.
async fn report_syncs(client: &Client, argocd_ns: &str, commit: &str) -> BenchResult<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        argocd_ns,
        &barge_argocd_double::api_resource(),
    );
    let apps = api.list(&Default::default()).await?;
    let result = |a: &DynamicObject| a.data.pointer("/status/operationState/syncResult").cloned();
    let at_commit = apps
        .items
        .iter()
        .filter_map(result)
        .filter(|r| r.get("revision").and_then(Value::as_str) == Some(commit))
        .count();
    let applied = apps
        .items
        .iter()
        .filter_map(result)
        .filter(|r| {
            r.get("resources")
                .and_then(Value::as_array)
                .is_some_and(|list| !list.is_empty())
        })
        .count();
    eprintln!(
        "wakeup:   Argo CD's syncs: {at_commit} of {} Applications at {commit}, {applied} with applied resources",
        apps.items.len()
    );
    Ok(())
}

fn report_acknowledged(m: &Measured) {
    if let Some(s) = &m.acknowledged {
        eprintln!(
            "wakeup:   from the double's acknowledged final write instead: n {} p50 {:.1} p95 {:.1} p99 {:.1} max {:.1} ms",
            s.n, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
        );
    }
}

fn main() -> BenchResult<()> {
    let plan = Plan::from_env()?;
    let mut modes = plan.modes.clone();
    if modes.contains(&"event_argocd") && !barge_testenv::argocd::is_built() {
        let where_ = barge_testenv::argocd::argocd_dir();
        if !plan.smoke {
            return Err(format!(
                "wakeup: the event_argocd mode needs real Argo CD, which is not built in {}; run `make argocd` first (or leave the mode out with BARGE_BENCH_MODES)",
                where_.display()
            )
            .into());
        }
        eprintln!(
            "wakeup: smoke run without real Argo CD (not built in {}): event_argocd left out",
            where_.display()
        );
        modes.retain(|m| *m != "event_argocd");
    }
    let (promotions, in_flight) = (plan.promotions, plan.in_flight);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let env = TestEnv::shared().await?;
        env.apply_crd_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
            .await?;
        // Real Argo CD's Application CRD, for every mode: the double runs on
        // it too (Argo CD re-applies the same one when it starts). Without
        // real Argo CD built (a smoke run), the double's own.
        if barge_testenv::argocd::is_built() {
            let application_crd =
                barge_testenv::argocd::argocd_dir().join("crds/application-crd.yaml");
            env.apply_crd_files(&[&application_crd]).await?;
        } else {
            env.apply_crds(barge_argocd_double::CRD_YAML).await?;
        }

        let backstop = if plan.smoke {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(10)
        };
        let mut results: Vec<(&str, Summary)> = Vec::new();
        for name in modes {
            let built = PathBuf::from(env!("CARGO_BIN_EXE_barge"));
            let mode = |argocd, placement, backstop, wake| Mode {
                name,
                argocd,
                backstop,
                wake_on_application_events: wake,
                placement,
                binary: built.clone(),
            };
            let hour = Duration::from_secs(3600);
            let measured = match name {
                "event" => {
                    eprintln!(
                        "wakeup: event: {promotions} promotions, {in_flight} in flight, Argo CD double, `barge run` in a process of its own, event-driven (backstop 1 h)"
                    );
                    measure(env, &plan, mode(ArgoCd::Double, Placement::Child, hour, true)).await?
                }
                "event_in_process" => {
                    eprintln!(
                        "wakeup: event_in_process: the same with the controller in this process, beside the double and the measuring watches"
                    );
                    measure(env, &plan, mode(ArgoCd::Double, Placement::InProcess, hour, true))
                        .await?
                }
                "event_compare" => {
                    let binary = plan.compare.clone().unwrap_or_default();
                    eprintln!(
                        "wakeup: event_compare: as event, with the controller {}",
                        binary.display()
                    );
                    let mode = Mode {
                        binary,
                        ..mode(ArgoCd::Double, Placement::Child, hour, true)
                    };
                    measure(env, &plan, mode).await?
                }
                "backstop_only" => {
                    eprintln!(
                        "wakeup: backstop_only: as event, with the Application watch's wake-ups disabled (backstop {} s)",
                        backstop.as_secs()
                    );
                    measure(env, &plan, mode(ArgoCd::Double, Placement::Child, backstop, false))
                        .await?
                }
                _ => {
                    // Started only now, so that its cluster cache does not
                    // load the double's modes.
                    let argocd = env.argocd().await?;
                    eprintln!(
                        "wakeup: event_argocd: real Argo CD {} started in {:.1} s; {promotions} promotions, {in_flight} in flight, `barge run` in a process of its own, event-driven (backstop 1 h)",
                        barge_testenv::argocd::ARGOCD_VERSION,
                        argocd.startup_time().as_secs_f64()
                    );
                    let repo = GitRepo::new()?;
                    measure(env, &plan, mode(ArgoCd::Real(&repo), Placement::Child, hour, true))
                        .await?
                }
            };
            report_acknowledged(&measured);
            results.push((name, measured.watched));
        }

        println!("| mode | n | p50 ms | p95 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|");
        for (mode, s) in &results {
            let mode = if *mode == "backstop_only" {
                format!("backstop_only ({} s)", backstop.as_secs())
            } else {
                mode.to_string()
            };
            println!(
                "| {mode} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.n, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            );
        }
        let mut json = serde_json::Map::new();
        json.insert("promotions".into(), json!(promotions));
        json.insert("in_flight".into(), json!(in_flight));
        for (mode, s) in &results {
            json.insert(mode.to_string(), serde_json::to_value(s)?);
        }
        let json = Value::Object(json);
        println!("{}", serde_json::to_string(&json)?);
        if plan.smoke {
            // A smoke run only shows that every mode works end to end.
            return Ok(());
        }
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&out)?;
        std::fs::write(
            out.join("wakeup.json"),
            serde_json::to_string_pretty(&json)?,
        )?;
        Ok(())
    })
}
