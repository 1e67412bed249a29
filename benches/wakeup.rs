//! Wake-up latency: from the moment Argo CD's final `operationState` write
//! (the sync finished) is seen to the moment the Promotion's Succeeded status
//! is seen. Measured three times in one run, side by side:
//!
//! - `event`: the Argo CD double syncs; Barge's Application watch wakes the
//!   waiting Promotion (backstop 1 h).
//! - `backstop_only`: the same, with the Application watch's wake-ups
//!   disabled, so only a 10 s backstop requeue notices (the behaviour behind
//!   Kargo's "always 300 s").
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
//! the first promotion starts.
//!
//! `make bench` runs it; it prints a table and writes target/bench/wakeup.json.
//! It needs real Argo CD: `make argocd` builds it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use barge::api::{Promotion, PromotionPhase};
use barge::argocd::{PROMOTION_INFO, PROMOTION_NAMESPACE_INFO};
use barge::controller::{self, Metrics, Settings};
use barge_argocd_double::{Double, DoubleConfig, Journal};
use barge_testenv::{StoppableTask, TestEnv};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PROMOTIONS: usize = 200;
const IN_FLIGHT: usize = 20;
/// The double resolves any revision; nothing is fetched from this URL.
const DOUBLE_REPO: &str = "https://git.example.com/bench/app.git";
const DOUBLE_COMMIT: &str = "c0ffee1";
/// How long one wave of IN_FLIGHT promotions, or Argo CD's first comparison
/// of every Application, may take.
const PATIENCE: Duration = Duration::from_secs(300);

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

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        to.duration_since(from).as_secs_f64() * 1000.0
    } else {
        -(from.duration_since(to).as_secs_f64() * 1000.0)
    }
}

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

struct Mode<'a> {
    argocd: ArgoCd<'a>,
    backstop: Duration,
    wake_on_application_events: bool,
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

type Shared = Arc<(Mutex<Seen>, tokio::sync::Notify)>;

fn with_seen<T>(shared: &Shared, f: impl FnOnce(&mut Seen) -> T) -> BenchResult<T> {
    let mut seen = shared
        .0
        .lock()
        .map_err(|_| "a watch task panicked holding the lock")?;
    Ok(f(&mut seen))
}

/// Waits, on the watches' notifications, until `done` says so (`Err` ends
/// the wait with that message).
async fn wait_for(
    shared: &Shared,
    what: &str,
    done: impl Fn(&Seen) -> Result<bool, String>,
) -> BenchResult<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let notified = shared.1.notified();
        if with_seen(shared, |s| done(s))?? {
            return Ok(());
        }
        let now = Instant::now();
        if now > deadline {
            return Err(format!("{what}: not done within {} s", PATIENCE.as_secs()).into());
        }
        let _ = tokio::time::timeout(deadline - now, notified).await;
    }
}

/// The Promotion (of namespace `ns`) whose sync operation the Application
/// reports Succeeded and finished, if any.
fn finished_sync_of(app: &DynamicObject, ns: &str) -> Option<String> {
    let state = app.data.pointer("/status/operationState")?;
    if state.get("phase").and_then(Value::as_str) != Some("Succeeded") {
        return None;
    }
    state
        .get("finishedAt")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())?;
    let info = state.pointer("/operation/info")?.as_array()?;
    let entry = |name: &str| {
        info.iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|i| i.get("value").and_then(Value::as_str))
    };
    if entry(PROMOTION_NAMESPACE_INFO).is_some_and(|n| n != ns) {
        return None;
    }
    entry(PROMOTION_INFO).map(String::from)
}

/// Watches `api`: for each object seen that is `relevant`, `note`s it, with
/// the instant it was seen, in what the watches saw and wakes the waiters.
fn watch<K>(
    api: Api<K>,
    what: &'static str,
    shared: Shared,
    relevant: impl Fn(&K) -> bool + Send + 'static,
    note: impl Fn(&K, Instant, &mut Seen) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            let now = Instant::now();
            let object = match event {
                Ok(object) => object,
                Err(e) => {
                    eprintln!("wakeup: {what} watch: {e}");
                    continue;
                }
            };
            if !relevant(&object) {
                continue;
            }
            let Ok(mut seen) = shared.0.lock() else {
                return;
            };
            note(&object, now, &mut seen);
            drop(seen);
            shared.1.notify_waiters();
        }
    })
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
    watch(
        api,
        "Application",
        shared,
        |_| true,
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
    let ended = |p: &Promotion| p.phase().is_terminal();
    watch(api, "Promotion", shared, ended, |p, now, seen| {
        let phase = p.phase();
        if phase == PromotionPhase::Succeeded {
            seen.succeeded.entry(p.name_any()).or_insert(now);
        } else {
            let message = p.status.as_ref().map(|s| s.message.clone());
            seen.failed
                .entry(p.name_any())
                .or_insert_with(|| format!("{phase:?}: {}", message.unwrap_or_default()));
        }
    })
}

async fn apply(client: &Client, ns: &str, object: Value) -> BenchResult<()> {
    barge_testenv::apply(client, object, ns, "barge-bench").await?;
    Ok(())
}

/// One measured mode: PROMOTIONS promotions, IN_FLIGHT at a time, each on
/// its own Stage and Application.
async fn measure(env: &TestEnv, mode: Mode<'_>) -> BenchResult<Measured> {
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

    let shared: Shared = Arc::default();
    let app_watch = watch_applications(&client, &argocd_ns, &ns, shared.clone());
    let promotion_watch = watch_promotions(&client, &ns, shared.clone());

    let settings = Settings {
        backstop: mode.backstop,
        argocd_namespace: argocd_ns.clone(),
        namespace: Some(ns.clone()),
        wake_on_application_events: mode.wake_on_application_events,
        ..Settings::default()
    };
    let metrics = Arc::new(Metrics::default());
    let controller =
        StoppableTask::spawn(|stopped| controller::run(client.clone(), settings, metrics, stopped));

    apply(&client, &ns, json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Freight", "metadata": {"name": "f1"},
        "origin": {"kind": "Warehouse", "name": "bench"}, "commits": [{"repoURL": repo_url, "id": commit}],
    })).await?;
    let commit_expr = format!("${{{{ commitFrom(\"{repo_url}\").id }}}}");
    let mut apps = Vec::with_capacity(PROMOTIONS);
    for i in 0..PROMOTIONS {
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
    wait_for(
        &shared,
        "Argo CD's first comparison of every Application",
        |s| Ok(apps.iter().all(|a| s.compared.contains(a))),
    )
    .await?;
    eprintln!(
        "wakeup:   {PROMOTIONS} Applications compared {:.1} s after the last was created",
        compared_since.elapsed().as_secs_f64()
    );

    let promotions_since = Instant::now();
    let mut samples = Vec::new();
    let mut acknowledged = Vec::new();
    // From a wave's creation to each sync seen finished: where the time goes.
    let mut to_sync = Vec::new();
    let mut missing = 0usize;
    let mut negative = 0usize;
    for wave in (0..PROMOTIONS).collect::<Vec<_>>().chunks(IN_FLIGHT) {
        let created = Instant::now();
        for i in wave {
            apply(&client, &ns, json!({
                "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": format!("p{i}")},
                "spec": {"stage": format!("s{i}"), "freight": "f1"},
            })).await?;
        }
        let names: Vec<String> = wave.iter().map(|i| format!("p{i}")).collect();
        wait_for(&shared, &format!("promotions {names:?}"), |s| {
            if let Some((name, how)) = names
                .iter()
                .find_map(|n| s.failed.get(n).map(|how| (n, how)))
            {
                return Err(format!("Promotion {name} ended {how}"));
            }
            Ok(names
                .iter()
                .all(|n| s.succeeded.contains_key(n) && s.synced.contains_key(n)))
        })
        .await?;
        for name in &names {
            let (synced, seen) = with_seen(&shared, |s| {
                (s.synced.get(name).copied(), s.succeeded.get(name).copied())
            })?;
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

    report_syncs(&client, &argocd_ns, &commit).await?;

    controller.stop().await;
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
    if !barge_testenv::argocd::is_built() {
        return Err(format!(
            "wakeup: the event_argocd mode needs real Argo CD, which is not built in {}; run `make argocd` first",
            barge_testenv::argocd::argocd_dir().display()
        )
        .into());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let env = TestEnv::shared().await?;
        env.apply_crd_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
            .await?;
        // Real Argo CD's Application CRD, for every mode: the double runs on
        // it too (Argo CD re-applies the same one when it starts).
        let application_crd =
            barge_testenv::argocd::argocd_dir().join("crds/application-crd.yaml");
        env.apply_crd_files(&[&application_crd]).await?;

        eprintln!(
            "wakeup: {PROMOTIONS} promotions, {IN_FLIGHT} in flight, Argo CD double, event-driven (backstop 1 h)"
        );
        let event = measure(
            env,
            Mode {
                argocd: ArgoCd::Double,
                backstop: Duration::from_secs(3600),
                wake_on_application_events: true,
            },
        )
        .await?;
        report_acknowledged(&event);
        eprintln!("wakeup: same with the Application watch's wake-ups disabled (backstop 10 s)");
        let backstop = measure(
            env,
            Mode {
                argocd: ArgoCd::Double,
                backstop: Duration::from_secs(10),
                wake_on_application_events: false,
            },
        )
        .await?;
        report_acknowledged(&backstop);

        // Started only now, so that its cluster cache does not load the
        // double's modes.
        let argocd = env.argocd().await?;
        eprintln!(
            "wakeup: real Argo CD {} started in {:.1} s; {PROMOTIONS} promotions, {IN_FLIGHT} in flight, event-driven (backstop 1 h)",
            barge_testenv::argocd::ARGOCD_VERSION,
            argocd.startup_time().as_secs_f64()
        );
        let repo = GitRepo::new()?;
        let event_argocd = measure(
            env,
            Mode {
                argocd: ArgoCd::Real(&repo),
                backstop: Duration::from_secs(3600),
                wake_on_application_events: true,
            },
        )
        .await?;

        let (event, backstop, event_argocd) =
            (event.watched, backstop.watched, event_argocd.watched);
        println!("| mode | n | p50 ms | p95 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|");
        for (mode, s) in [
            ("event", &event),
            ("backstop_only (10 s)", &backstop),
            ("event_argocd", &event_argocd),
        ] {
            println!(
                "| {mode} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.n, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            );
        }
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&out)?;
        let json = json!({"event": event, "backstop_only": backstop, "event_argocd": event_argocd});
        std::fs::write(
            out.join("wakeup.json"),
            serde_json::to_string_pretty(&json)?,
        )?;
        println!("{}", serde_json::to_string(&json)?);
        Ok(())
    })
}
