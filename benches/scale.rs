//! Barge at scale, with the controller in a process of its own (`barge run`,
//! the binary this build produced) so that its memory, CPU time and API
//! requests are its own:
//!
//! 1. **Load**: 10,000 Applications of realistic size (a few dozen resources,
//!    history, a sync result, a kubectl last-applied annotation), 1,000
//!    Stages, 1,000 Freight and 10,000 finished Promotions. The 1,001
//!    Applications of Stages are in the namespace the Argo CD double syncs;
//!    the rest in another, and the controller watches all namespaces.
//! 2. **Start**: the controller starts (backstop 1 h); `ready_s` is the time
//!    from spawn to `/readyz`, i.e. every cache listed. Once its start-up
//!    work has settled, its resident memory is `rss_mib`.
//! 3. **1,000 in flight**: 1,000 Promotions at once over 100 Stages (ten
//!    queued per Stage), the Argo CD double syncing instantly. Latency is
//!    from this process's watch first seeing the Promotion's sync finished to
//!    it first seeing the Promotion Succeeded; throughput is Promotions
//!    completed per second. The controller's own request counter
//!    (`barge_api_requests_total`) and CPU time give requests by verb and CPU
//!    milliseconds per Promotion; the API server's `apiserver_request_total`
//!    checks the counts of what only the controller does.
//! 4. **A cut**: every connection between the controller and the API server
//!    is dropped (a TCP proxy sits between them) and a Promotion is created
//!    at once: the time to its Succeeded is the time to resume.
//! 5. **Idle**: a controller with the production backstop (5 min) and 1,000
//!    Promotions waiting on syncs that do not end: requests it sends in 60 s
//!    besides its open watches, and its memory then (`rss_mib`; the heap
//!    alone, `rss_anon_mib`; the pages of the binary and libraries,
//!    `rss_file_mib`).
//!
//! `make bench-scale` runs it and writes target/bench/scale.json.
//! `BARGE_BENCH_SMOKE=1` runs a tiny version (CI keeps it working; its
//! figures mean nothing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use barge::api::{Promotion, PromotionPhase, PromotionStatus};
use barge_argocd_double::{Double, DoubleConfig};
use barge_testenv::TestEnv;
use barge_testenv::proxy::TcpProxy;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

mod support;
use support::controller::{ControllerArgs, ControllerProcess, label_of};
use support::watched::{Watched, finished_sync_of};
use support::{signed_ms, summarize};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const REPO: &str = "https://git.example.com/platform/deploy.git";
/// How long any one phase may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(600);
/// Marks the Applications of Stages, the only ones this process watches.
const STAGE_APP_LABEL: &str = "bench.barge.dev/stage-app";
/// The Stage the resume-after-a-cut Promotion runs on; its Application is
/// the one after the numbered Stages' ones.
const RESUME_STAGE: &str = "resume";
/// Requests in flight while loading.
const LOAD_CONCURRENCY: usize = 32;

/// How much of everything; `BARGE_BENCH_SMOKE=1` shrinks it.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    applications: usize,
    stages: usize,
    freight: usize,
    finished: usize,
    in_flight: usize,
    in_flight_stages: usize,
    waiting: usize,
    idle_window: Duration,
}

impl Sizes {
    fn from_env() -> Self {
        if std::env::var("BARGE_BENCH_SMOKE").is_ok_and(|v| v == "1") {
            return Self {
                applications: 60,
                stages: 20,
                freight: 10,
                finished: 60,
                in_flight: 20,
                in_flight_stages: 5,
                waiting: 10,
                idle_window: Duration::from_secs(3),
            };
        }
        Self {
            applications: 10_000,
            stages: 1_000,
            freight: 1_000,
            finished: 10_000,
            in_flight: 1_000,
            in_flight_stages: 100,
            waiting: 1_000,
            idle_window: Duration::from_secs(60),
        }
    }
}

fn hex(seed: usize, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut x = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

fn commit_of(freight: usize) -> String {
    hex(freight + 1, 40)
}

// ---------------------------------------------------------------------------
// The objects: realistic in size and shape.

fn app_name(ns: &str, i: usize) -> String {
    format!("{ns}-app-{i}")
}

/// An Application as Argo CD leaves it after a few dozen syncs.
fn application(ns: &str, i: usize, stage: Option<&str>) -> Value {
    let name = app_name(ns, i);
    let team = format!("team-{}", i % 40);
    let spec = json!({
        "project": "default",
        "source": {"repoURL": REPO, "path": format!("envs/{name}"), "targetRevision": "main",
                   "kustomize": {"images": [format!("registry.example.com/{team}/svc-{i}:1.4.{}", i % 17)]}},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": team},
        "syncPolicy": {"syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
                        "retry": {"limit": 5, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}}},
    });
    let kinds = [
        ("apps", "Deployment"),
        ("", "Service"),
        ("", "ConfigMap"),
        ("networking.k8s.io", "Ingress"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("policy", "PodDisruptionBudget"),
    ];
    let resources: Vec<Value> = (0..36)
        .map(|k| {
            let (group, kind) = kinds[k % kinds.len()];
            json!({"group": group, "version": "v1", "kind": kind, "namespace": team,
                   "name": format!("svc-{i}-{k}"), "status": "Synced",
                   "health": {"status": "Healthy"}})
        })
        .collect();
    let results: Vec<Value> = (0..36)
        .map(|k| {
            let (group, kind) = kinds[k % kinds.len()];
            json!({"group": group, "version": "v1", "kind": kind, "namespace": team,
                   "name": format!("svc-{i}-{k}"), "status": "Synced",
                   "message": format!("{}/svc-{i}-{k} serverside-applied", kind.to_lowercase()),
                   "hookPhase": "Running", "syncPhase": "Sync"})
        })
        .collect();
    let history: Vec<Value> = (0..10)
        .map(|h| {
            json!({"id": h, "revision": hex(i * 31 + h, 40),
                   "deployStartedAt": "2026-11-20T10:00:00Z", "deployedAt": "2026-11-20T10:00:05Z",
                   "source": {"repoURL": REPO, "path": format!("envs/{name}"), "targetRevision": "main"},
                   "initiatedBy": {"automated": true}})
        })
        .collect();
    let revision = hex(i * 31 + 9, 40);
    let mut annotations = json!({
        "kubectl.kubernetes.io/last-applied-configuration":
            serde_json::to_string(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                                          "metadata": {"name": name}, "spec": spec}))
                .unwrap_or_default(),
    });
    let mut labels = json!({"team": team, "app.kubernetes.io/part-of": "shop"});
    if let Some(stage) = stage {
        annotations["barge.dev/authorized-stage"] = json!(format!("{ns}:{stage}"));
        // What this process watches: the other 9,000 are the controller's to cache.
        labels[STAGE_APP_LABEL] = json!("true");
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": spec,
        "status": {
            "resources": resources,
            "sync": {"status": "Synced", "revision": revision,
                     "comparedTo": {"source": {"repoURL": REPO, "path": format!("envs/{name}"), "targetRevision": "main"},
                                    "destination": {"server": "https://kubernetes.default.svc", "namespace": team}}},
            "health": {"status": "Healthy", "lastTransitionTime": "2026-11-20T10:00:09Z"},
            "history": history,
            "reconciledAt": "2026-11-20T10:10:00Z",
            "operationState": {
                "operation": {"sync": {"revision": revision, "syncOptions": ["ServerSideApply=true"]},
                              "initiatedBy": {"automated": true}, "retry": {"limit": 5}},
                "phase": "Succeeded", "message": "successfully synced (all tasks run)",
                "syncResult": {"resources": results, "revision": revision,
                               "source": {"repoURL": REPO, "path": format!("envs/{name}"), "targetRevision": "main"}},
                "startedAt": "2026-11-20T10:00:00Z", "finishedAt": "2026-11-20T10:00:05Z",
            },
            "sourceType": "Kustomize",
            "summary": {"images": (0..8).map(|k| format!("registry.example.com/{team}/svc-{i}-{k}:1.4.{}", i % 17)).collect::<Vec<_>>()},
            "controllerNamespace": "argocd",
        },
    })
}

fn stage(ns: &str, name: &str, app: &str) -> Value {
    let _ = ns;
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
        "metadata": {"name": name, "labels": {"tier": "bench"}},
        "spec": {
            "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "shop"}, "sources": {"direct": true}}],
            "promotionTemplate": {"spec": {"vars": [{"name": "app", "value": app}],
                "steps": [{"uses": "argocd-update", "as": "update", "config": {"apps": [{
                    "name": "${{ vars.app }}",
                    "sources": [{"repoURL": REPO, "desiredRevision": format!("${{{{ commitFrom(\"{REPO}\").id }}}}"),
                                 "updateTargetRevision": true}],
                }]}}]}},
        },
    })
}

fn freight(i: usize) -> Value {
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
        "metadata": {"name": format!("f{i}")},
        "alias": format!("release-{i}"),
        "origin": {"kind": "Warehouse", "name": "shop"},
        "commits": [{"repoURL": REPO, "id": commit_of(i), "branch": "main",
                     "message": format!("release {i}"), "author": "Release Bot <bot@example.com>"}],
        "images": [{"repoURL": "registry.example.com/shop/web", "tag": format!("1.{i}.0"),
                    "digest": format!("sha256:{}", hex(i, 64))}],
    })
}

/// A Promotion's status as the controller leaves it after one argocd-update.
fn finished_status(
    ns: &str,
    stage: &str,
    app: &str,
    freight: usize,
) -> BenchResult<PromotionStatus> {
    let reference = json!({"name": format!("f{freight}"), "origin": {"kind": "Warehouse", "name": "shop"},
                           "commits": [{"repoURL": REPO, "id": commit_of(freight), "branch": "main"}]});
    let status = json!({
        "phase": "Succeeded",
        "plan": {"vars": [{"name": "app", "value": app}],
                 "steps": [{"uses": "argocd-update", "as": "update", "config": {"apps": [{
                     "name": "${{ vars.app }}",
                     "sources": [{"repoURL": REPO, "desiredRevision": format!("${{{{ commitFrom(\"{REPO}\").id }}}}"),
                                  "updateTargetRevision": true}]}]}}],
                 "freightAlias": format!("release-{freight}")},
        "currentStep": 1,
        "stepExecutionMetadata": [{"alias": "update", "startedAt": "2026-11-20T10:00:00Z",
                                   "finishedAt": "2026-11-20T10:00:05Z", "status": "Succeeded"}],
        "healthChecks": [{"uses": "argocd-update", "config": {"apps": [{"name": app, "namespace": ns,
                          "sources": [{"repoURL": REPO, "desiredRevision": commit_of(freight)}]}]}}],
        "freight": reference,
        "freightCollection": {"id": format!("f{freight}"), "items": {"Warehouse/shop": reference}},
        "startedAt": "2026-11-20T10:00:00Z", "finishedAt": "2026-11-20T10:00:05Z",
        "message": format!("promoted to {stage}"),
    });
    Ok(serde_json::from_value(status)?)
}

async fn create_all(
    api: Api<DynamicObject>,
    objects: impl Iterator<Item = Value>,
) -> BenchResult<()> {
    futures::stream::iter(objects.map(|o| {
        let api = api.clone();
        async move {
            let object: DynamicObject = serde_json::from_value(o)?;
            created(api.create(&PostParams::default(), &object).await)?;
            BenchResult::Ok(())
        }
    }))
    .buffer_unordered(LOAD_CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(())
}

/// A create that kube's client retried after a timeout may find its own
/// first attempt done: that is a success.
fn created<K>(result: Result<K, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn dynamic(client: &Client, ns: &str, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk(group, "v1alpha1", kind);
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Everything the controller will find when it starts.
async fn load(
    client: &Client,
    ns: &str,
    (argocd_ns, other_ns): (&str, &str),
    sizes: Sizes,
) -> BenchResult<()> {
    let started = Instant::now();
    let stage_apps = sizes.stages + 1;
    create_all(
        dynamic(
            client,
            argocd_ns,
            "argoproj.io",
            "Application",
            "applications",
        ),
        (0..stage_apps).map(|i| {
            let stage = match i {
                i if i < sizes.stages => format!("s{i}"),
                _ => RESUME_STAGE.to_string(),
            };
            application(ns, i, Some(&stage))
        }),
    )
    .await?;
    // The rest, no Stage's, in a namespace of their own: the controller
    // watches every namespace (as with Argo CD's apps in any namespace) and
    // caches them, while the Argo CD double, which is this process's and not
    // what is measured, only syncs the Stages' ones.
    create_all(
        dynamic(
            client,
            other_ns,
            "argoproj.io",
            "Application",
            "applications",
        ),
        (stage_apps..sizes.applications).map(|i| application(ns, i, None)),
    )
    .await?;
    eprintln!(
        "scale: {} Applications created in {:.1} s",
        sizes.applications,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    create_all(
        dynamic(client, ns, "barge.dev", "Freight", "freights"),
        (0..sizes.freight).map(freight),
    )
    .await?;
    create_all(
        dynamic(client, ns, "barge.dev", "Stage", "stages"),
        (0..sizes.stages)
            .map(|i| stage(ns, &format!("s{i}"), &app_name(ns, i)))
            .chain([stage(ns, RESUME_STAGE, &app_name(ns, sizes.stages))]),
    )
    .await?;
    eprintln!(
        "scale: {} Freight and {} Stages created in {:.1} s",
        sizes.freight,
        sizes.stages,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let promotions = Api::<Promotion>::namespaced(client.clone(), ns);
    futures::stream::iter((0..sizes.finished).map(|k| {
        let promotions = promotions.clone();
        async move {
            let stage_index = k % sizes.stages;
            let stage = format!("s{stage_index}");
            let freight = k % sizes.freight;
            let name = format!("done-{k}");
            let object: Promotion = serde_json::from_value(json!({
                "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
                "metadata": {"name": name},
                "spec": {"stage": stage, "freight": format!("f{freight}")},
            }))?;
            created(promotions.create(&PostParams::default(), &object).await)?;
            let status = finished_status(ns, &stage, &app_name(ns, stage_index), freight)?;
            promotions
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await?;
            BenchResult::Ok(())
        }
    }))
    .buffer_unordered(LOAD_CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    eprintln!(
        "scale: {} finished Promotions created in {:.1} s",
        sizes.finished,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `after - before`, by verb.
fn by_verb(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (key, n) in after {
        let delta = n - before.get(key).copied().unwrap_or(0.0);
        if delta > 0.0 {
            *out.entry(key.0.clone()).or_insert(0.0) += delta;
        }
    }
    out
}

/// `after - before`, by "verb resource".
fn by_verb_and_resource(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (key, n) in after {
        let delta = n - before.get(key).copied().unwrap_or(0.0);
        if delta > 0.0 {
            out.insert(format!("{} {}", key.0, key.1), delta);
        }
    }
    out
}

/// The API server's `apiserver_request_total` for `(verb, resource,
/// subresource)`, summed over codes and scopes.
async fn apiserver_requests(
    client: &Client,
) -> BenchResult<HashMap<(String, String, String), f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| label_of(labels, name);
        let key = (label("verb"), label("resource"), label("subresource"));
        *out.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// What this process's watches see.

#[derive(Default)]
struct Seen {
    /// Promotion → first seen its sync finished.
    synced: HashMap<String, Instant>,
    /// Promotion → first seen Succeeded.
    succeeded: HashMap<String, Instant>,
    /// Promotion → how it ended, when not Succeeded.
    failed: HashMap<String, String>,
    /// Promotions seen Running with a wait recorded.
    waiting: HashSet<String>,
    /// Promotion → its phase and message as last seen.
    last: HashMap<String, String>,
}

type Shared = Watched<Seen>;

fn progress(s: &Seen) -> String {
    format!(
        "seen: {} syncs finished, {} Promotions Succeeded, {} waiting",
        s.synced.len(),
        s.succeeded.len(),
        s.waiting.len()
    )
}

fn watch_all(
    client: &Client,
    ns: &str,
    argocd_ns: &str,
    shared: Shared,
) -> Vec<tokio::task::JoinHandle<()>> {
    let apps = dynamic(
        client,
        argocd_ns,
        "argoproj.io",
        "Application",
        "applications",
    );
    let stage_apps = watcher::Config::default().labels(&format!("{STAGE_APP_LABEL}=true"));
    let ns_of_promotions = ns.to_string();
    let app_task = shared.watch(apps, stage_apps, "Application", move |app, now, seen| {
        if let Some(promotion) = finished_sync_of(app, &ns_of_promotions) {
            seen.synced.entry(promotion).or_insert(now);
        }
    });
    let promotions = Api::<Promotion>::namespaced(client.clone(), ns);
    let promotion_task = shared.watch(
        promotions,
        watcher::Config::default(),
        "Promotion",
        |p, now, seen| {
            let phase = p.phase();
            let name = p.name_any();
            let message = p
                .status
                .as_ref()
                .map(|s| s.message.as_str())
                .unwrap_or_default();
            seen.last
                .insert(name.clone(), format!("{phase}: {message}"));
            if phase == PromotionPhase::Succeeded {
                seen.succeeded.entry(name).or_insert(now);
            } else if phase.is_terminal() {
                let message = p
                    .status
                    .as_ref()
                    .map(|s| s.message.clone())
                    .unwrap_or_default();
                seen.failed
                    .entry(name)
                    .or_insert_with(|| format!("{phase}: {message}"));
            } else if phase == PromotionPhase::Running
                && p.status.as_ref().is_some_and(|s| !s.awaiting.is_empty())
            {
                seen.waiting.insert(name);
            }
        },
    );
    vec![app_task, promotion_task]
}

async fn create_promotions(
    client: &Client,
    ns: &str,
    specs: Vec<(String, String, String)>,
) -> BenchResult<()> {
    let api = Api::<Promotion>::namespaced(client.clone(), ns);
    futures::stream::iter(specs.into_iter().map(|(name, stage, freight)| {
        let api = api.clone();
        async move {
            let object: Promotion = serde_json::from_value(json!({
                "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
                "metadata": {"name": name}, "spec": {"stage": stage, "freight": freight},
            }))?;
            created(api.create(&PostParams::default(), &object).await)?;
            BenchResult::Ok(())
        }
    }))
    .buffer_unordered(LOAD_CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(())
}

/// Waits until every named Promotion succeeded (and its sync was seen).
async fn all_succeeded(shared: &Shared, names: &[String]) -> BenchResult<()> {
    let done = |s: &Seen| {
        if let Some((name, how)) = names.iter().find_map(|n| s.failed.get(n).map(|h| (n, h))) {
            return Err(format!("Promotion {name} ended {how}"));
        }
        Ok(names
            .iter()
            .all(|n| s.succeeded.contains_key(n) && s.synced.contains_key(n)))
    };
    // Which are not done, and how they were last seen.
    let stuck = |s: &Seen| {
        let not_done: Vec<String> = names
            .iter()
            .filter(|n| !(s.succeeded.contains_key(*n) && s.synced.contains_key(*n)))
            .take(5)
            .map(|n| {
                let last = s.last.get(n).map_or("never seen", String::as_str);
                format!(
                    "{n} ({last}; sync seen finished: {})",
                    s.synced.contains_key(n)
                )
            })
            .collect();
        format!("{}; not done: {}", progress(s), not_done.join(", "))
    };
    shared
        .wait_for("the Promotions", PATIENCE, done, stuck)
        .await
}

fn main() -> BenchResult<()> {
    let sizes = Sizes::from_env();
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let env = TestEnv::shared().await?;
        let client = env.client();
        env.apply_crd_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")).await?;
        barge_argocd_double::install_crd(client.clone(), Duration::from_secs(60)).await?;
        let ns = env.namespace().await?;
        let argocd_ns = env.namespace().await?;
        let other_ns = env.namespace().await?;
        eprintln!("scale: {sizes:?}");

        load(&client, &ns, (&argocd_ns, &other_ns), sizes).await?;
        let double = Double::new(client.clone(), DoubleConfig::namespaced(&argocd_ns)).spawn();
        let shared = Shared::default();
        let watches = watch_all(&client, &ns, &argocd_ns, shared.clone());

        let mut controller = ControllerProcess::spawn(&ControllerArgs {
            backstop: "1h",
            ..ControllerArgs::new(env.kubeconfig_path(), &ns, &argocd_ns, &out_dir.join("scale-controller"))
        })?;
        let ready_s = controller.wait_ready().await?;
        let settle_s = controller.settle(Duration::from_secs(3)).await?;
        let rss_loaded = controller.rss_mib()?;
        eprintln!("scale: controller ready in {ready_s:.2} s, settled {settle_s:.1} s later; RSS {rss_loaded:.1} MiB");

        // 1,000 in flight over 100 Stages.
        let requests_before = controller.requests().await?;
        let apiserver_before = apiserver_requests(&client).await?;
        let cpu_before = controller.cpu_ms()?;
        let specs: Vec<(String, String, String)> = (0..sizes.in_flight)
            .map(|k| {
                let round = k / sizes.in_flight_stages;
                (format!("p{k}"), format!("s{}", k % sizes.in_flight_stages), format!("f{}", round % sizes.freight))
            })
            .collect();
        let names: Vec<String> = specs.iter().map(|s| s.0.clone()).collect();
        let started = Instant::now();
        create_promotions(&client, &ns, specs).await?;
        let created_s = started.elapsed().as_secs_f64();
        all_succeeded(&shared, &names).await?;
        let (samples, last) = shared.with(|s| {
            let samples: Vec<f64> = names.iter().filter_map(|n| Some(signed_ms(*s.synced.get(n)?, *s.succeeded.get(n)?))).collect();
            let last = names.iter().filter_map(|n| s.succeeded.get(n)).max().copied();
            (samples, last)
        })?;
        let took_s = last.map_or(0.0, |l| l.duration_since(started).as_secs_f64());
        let promotions_per_s = sizes.in_flight as f64 / took_s.max(f64::EPSILON);
        // Let the tail (Stage status, Events) finish before counting.
        controller.settle(Duration::from_secs(2)).await?;
        let cpu_ms = controller.cpu_ms()? - cpu_before;
        let requests_after = controller.requests().await?;
        let apiserver_after = apiserver_requests(&client).await?;
        let per = |m: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
            m.into_iter().map(|(k, v)| (k, (v / sizes.in_flight as f64 * 100.0).round() / 100.0)).collect()
        };
        let per_verb = per(by_verb(&requests_before, &requests_after));
        let per_resource = per(by_verb_and_resource(&requests_before, &requests_after));
        // What only the controller does, counted by the API server too.
        // The API server counts a server-side apply as APPLY, a merge patch as PATCH.
        let server_delta = |verbs: &[&str], resource: &str, sub: &str| {
            verbs
                .iter()
                .map(|verb| {
                    let key = (verb.to_string(), resource.to_string(), sub.to_string());
                    apiserver_after.get(&key).copied().unwrap_or(0.0)
                        - apiserver_before.get(&key).copied().unwrap_or(0.0)
                })
                .sum::<f64>()
        };
        let client_delta = |verb: &str, resource: &str| {
            let key = (verb.to_string(), resource.to_string());
            requests_after.get(&key).copied().unwrap_or(0.0) - requests_before.get(&key).copied().unwrap_or(0.0)
        };
        let cross_check = json!({
            "patch promotions/status": {"controller": client_delta("patch", "promotions/status"), "apiserver": server_delta(&["PATCH", "APPLY"], "promotions", "status")},
            "patch stages/status": {"controller": client_delta("patch", "stages/status"), "apiserver": server_delta(&["PATCH", "APPLY"], "stages", "status")},
            "patch freights/status": {"controller": client_delta("patch", "freights/status"), "apiserver": server_delta(&["PATCH", "APPLY"], "freights", "status")},
            "get stages": {"controller": client_delta("get", "stages"), "apiserver": server_delta(&["GET"], "stages", "")},
            "get freights": {"controller": client_delta("get", "freights"), "apiserver": server_delta(&["GET"], "freights", "")},
        });
        let latency = summarize(samples);
        let rss_after_run = controller.rss_mib()?;
        eprintln!(
            "scale: {} Promotions over {} Stages: created in {created_s:.1} s, all Succeeded {took_s:.1} s after the first; {promotions_per_s:.1}/s; sync seen -> Succeeded seen p50 {:.1} p99 {:.1} max {:.1} ms; CPU {:.1} ms per Promotion; RSS {rss_after_run:.1} MiB",
            sizes.in_flight, sizes.in_flight_stages, latency.p50_ms, latency.p99_ms, latency.max_ms, cpu_ms / sizes.in_flight as f64
        );
        eprintln!("scale: API requests per Promotion: {per_resource:?}");
        eprintln!("scale: client vs API server counts: {cross_check}");

        controller.kill();

        // Idle: the production backstop, 1,000 Promotions waiting on syncs that do not end.
        let apps = dynamic(&client, &argocd_ns, "argoproj.io", "Application", "applications");
        let waiting_stages: Vec<usize> = (0..sizes.waiting).map(|i| i % sizes.stages).collect();
        futures::stream::iter(waiting_stages.iter().map(|i| {
            let apps = apps.clone();
            let name = app_name(&ns, *i);
            async move {
                apps.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {
                    barge_argocd_double::knobs::SYNC_DELAY: "24h"}}})))
                    .await?;
                BenchResult::Ok(())
            }
        }))
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
        // This controller reaches the API server through a proxy that can cut
        // it off, on a runtime of its own so this process's work cannot slow it.
        let proxy_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let api_addr = env.control_plane().api_addr()?;
        let proxy = proxy_runtime.spawn(async move { TcpProxy::start(api_addr).await }).await??;
        let kubeconfig = env.control_plane().kubeconfig_via(proxy.addr())?;
        let mut controller = ControllerProcess::spawn(&ControllerArgs {
            backstop: "5m",
            ..ControllerArgs::new(&kubeconfig, &ns, &argocd_ns, &out_dir.join("scale-controller-idle"))
        })?;
        let ready_again_s = controller.wait_ready().await?;
        let waiting: Vec<String> = (0..sizes.waiting).map(|k| format!("w{k}")).collect();
        let specs = waiting_stages
            .iter()
            .zip(&waiting)
            .map(|(i, name)| (name.clone(), format!("s{i}"), format!("f{}", sizes.freight - 1)))
            .collect();
        create_promotions(&client, &ns, specs).await?;
        let all_waiting = |s: &Seen| {
            if let Some((name, how)) = waiting.iter().find_map(|n| s.failed.get(n).map(|h| (n, h))) {
                return Err(format!("Promotion {name} ended {how}"));
            }
            Ok(waiting.iter().all(|n| s.waiting.contains(n)))
        };
        shared
            .wait_for("the waiting Promotions", PATIENCE, all_waiting, progress)
            .await?;
        controller.settle(Duration::from_secs(3)).await?;
        let idle_before = controller.requests().await?;
        let server_idle_before = apiserver_requests(&client).await?;
        tokio::time::sleep(sizes.idle_window).await;
        let idle_after = controller.requests().await?;
        let server_idle_after = apiserver_requests(&client).await?;
        let idle = by_verb_and_resource(&idle_before, &idle_after);
        let idle_requests: f64 = idle
            .iter()
            .filter(|(k, _)| !k.starts_with("watch "))
            .map(|(_, v)| v)
            .sum::<f64>()
            .abs();
        let watched: Vec<&str> = ["promotions", "stages", "freights", "applications", "warehouses", "projectconfigs", "events"].into();
        let server_idle: f64 = server_idle_after
            .iter()
            .filter(|((verb, resource, _), _)| verb != "WATCH" && watched.contains(&resource.as_str()))
            .map(|(k, v)| v - server_idle_before.get(k).copied().unwrap_or(0.0))
            .sum();
        let rss_mib = controller.rss_mib()?;
        let peak_rss_mib = controller.peak_rss_mib()?;
        // The heap, and the pages of the binary and libraries it touched.
        let (rss_anon_mib, rss_file_mib) =
            (controller.rss_anon_mib()?, controller.rss_file_mib()?);
        eprintln!(
            "scale: {} Promotions waiting, backstop 5 min: {idle_requests} requests in {} s besides watches ({idle:?}); the API server saw {server_idle} on those resources; RSS {rss_mib:.1} MiB (peak {peak_rss_mib:.1})",
            sizes.waiting, sizes.idle_window.as_secs()
        );
        // A cut: every connection dropped, then a Promotion at once.
        let resume_stage = RESUME_STAGE.to_string();
        let lists_before = controller.requests().await?;
        proxy.cut();
        let cut_at = Instant::now();
        create_promotions(&client, &ns, vec![("after-cut".into(), resume_stage, "f0".into())]).await?;
        all_succeeded(&shared, &["after-cut".to_string()]).await?;
        let resume_ms = shared.with(|s| s.succeeded.get("after-cut").map(|t| signed_ms(cut_at, *t)))?.unwrap_or(0.0);
        let lists_after = controller.requests().await?;
        let relisted = by_verb(&lists_before, &lists_after);
        eprintln!("scale: connections cut; a new Promotion Succeeded {resume_ms:.0} ms later (requests meanwhile: {relisted:?})");

        controller.kill();
        for task in watches {
            task.abort();
        }
        double.stop().await;
        drop(proxy);
        proxy_runtime.shutdown_background();

        let objects = sizes.applications + sizes.stages + sizes.freight + sizes.finished + sizes.in_flight + sizes.waiting;
        let result = json!({
            "machine": machine(),
            "objects": {"applications": sizes.applications, "stages": sizes.stages, "freight": sizes.freight,
                        "promotions": sizes.finished + sizes.in_flight + 1 + sizes.waiting, "total": objects},
            "rss_mib": round1(rss_mib),
            "rss_anon_mib": round1(rss_anon_mib),
            "rss_file_mib": round1(rss_file_mib),
            "peak_rss_mib": round1(peak_rss_mib),
            "rss_mib_after_start": round1(rss_loaded),
            "ready_s": round2(ready_s),
            "ready_again_s": round2(ready_again_s),
            "in_flight_1000": {"n": latency.n, "stages": sizes.in_flight_stages, "p50_ms": round1(latency.p50_ms),
                               "p95_ms": round1(latency.p95_ms), "p99_ms": round1(latency.p99_ms), "max_ms": round1(latency.max_ms),
                               "promotions_per_s": round1(promotions_per_s), "cpu_ms_per_promotion": round2(cpu_ms / sizes.in_flight as f64)},
            "api_requests_per_promotion": per_verb,
            "api_requests_per_promotion_by_resource": per_resource,
            "api_request_counts_checked": cross_check,
            "resume_after_cut_ms": round1(resume_ms),
            "idle_requests_60s": idle_requests,
            "idle_window_s": sizes.idle_window.as_secs(),
            "idle_apiserver_requests": server_idle,
        });
        println!("| figure | value |");
        println!("|---|---|");
        println!("| objects loaded | {objects} |");
        println!("| controller RSS, steady state (MiB) | {rss_mib:.1} (peak {peak_rss_mib:.1}; heap {rss_anon_mib:.1}, binary and libraries {rss_file_mib:.1}) |");
        println!("| start-up to ready (s) | {ready_s:.2} |");
        println!("| {} in flight over {} Stages: p50 / p99 (ms) | {:.1} / {:.1} |", sizes.in_flight, sizes.in_flight_stages, latency.p50_ms, latency.p99_ms);
        println!("| Promotions completed per second | {promotions_per_s:.1} |");
        println!("| CPU per Promotion (ms) | {:.2} |", cpu_ms / sizes.in_flight as f64);
        println!("| API requests per Promotion | {} |", per_verb.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
        println!("| resume after the connections are cut (ms) | {resume_ms:.0} |");
        println!("| requests in {} s idle, besides watches | {idle_requests} |", sizes.idle_window.as_secs());
        let path: PathBuf = out_dir.join(if std::env::var("BARGE_BENCH_SMOKE").is_ok_and(|v| v == "1") { "scale-smoke.json" } else { "scale.json" });
        std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
        println!("{}", serde_json::to_string(&result)?);
        Ok(())
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What the figures were measured on.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.to_string()))
        .unwrap_or_default();
    json!({"cpu": cpu, "cores": cores, "memory": memory.trim_start_matches("MemTotal:").trim()})
}
