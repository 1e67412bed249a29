//! Chaos: Promotions keep moving while the cluster breaks under them, and
//! none is lost, none syncs twice and none is left for the backstop.
//!
//! A control plane of the run's own, two `barge run` replicas with leader
//! election (lease 4 s, backstop 1 h: a missed wake-up is a stuck Promotion,
//! not a slow one) that reach the API server through a TCP proxy, and a
//! supervisor that restarts a replica whenever it exits, as the kubelet
//! would. Promotions are created in rounds, one per Stage per round, while
//! the harness injects, in a shuffled order (`BARGE_CHAOS_SEED`):
//!
//! - `apiserver-restart`: kube-apiserver killed and started again;
//! - `etcd-restart`: etcd killed and started again under the API server;
//! - `controller-kill`: the leader killed with SIGKILL at a random moment;
//! - `kill-mid-sync`: the leader killed by the fault point between its
//!   Argo CD write and the status write that records it (`src/fault.rs`,
//!   compiled only with the `fault-hooks` feature);
//! - `leader-failover`: the leader stopped with SIGTERM; the standby takes
//!   over;
//! - `proxy-cut`: every connection between the replicas and the API server
//!   dropped, and new ones refused, for 5–30 s;
//! - `proxy-stall`: every byte held, both ways, for 5–30 s.
//!
//! After each fault a probe Promotion (a Stage of its own) is created. The
//! time to resume is from the fault's end to the first Promotion seen
//! ending after it; the probe's time to Succeeded adds working off what
//! piled up meanwhile.
//! At the end every Promotion must have Succeeded ("lost" counts those that
//! ended otherwise or vanished, "stuck" those not ended), each must have
//! synced its Application exactly once ("double syncs" counts the extra
//! ones), and each Application's syncs must follow its Promotions' order.
//!
//! Runs (`BARGE_CHAOS_RUN`): `full` (`make chaos`: 500 Promotions over 50
//! Stages, against the Argo CD double), `argocd` (`make chaos-argocd`:
//! smaller, against real Argo CD) and `short` (CI: two faults of each
//! kind). Writes target/bench/chaos[-<run>].json; the last line reads
//! `chaos: <n> promotions, <l> lost, <d> double syncs, <s> stuck, <f> faults`,
//! and the run fails unless the first three counts after `<n>` are 0.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use barge::api::{Promotion, PromotionPhase};
use barge_argocd_double::{Double, DoubleConfig, Journal};
use barge_testenv::proxy::TcpProxy;
use barge_testenv::{ControlPlane, TestEnv};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

mod support;
use support::controller::{ControllerArgs, ControllerProcess};
use support::watched::Watched;
use support::{BenchResult, summarize};

/// The double resolves any revision; nothing is fetched from this URL.
const DOUBLE_REPO: &str = "https://git.example.com/chaos/deploy.git";
const LEASE: &str = "barge-chaos";
const LEASE_DURATION: &str = "4s";
const REPLICAS: [&str; 2] = ["barge-a", "barge-b"];
const PROBE_STAGE: &str = "probe";

/// One run's size.
#[derive(Clone, Debug)]
struct Plan {
    name: &'static str,
    stages: usize,
    rounds: usize,
    /// How long one round of Promotions takes to create: one per Stage,
    /// evenly spaced, so that work is in flight through the faults.
    round_interval: Duration,
    real_argocd: bool,
    /// How many of each fault.
    faults: Vec<(FaultKind, usize)>,
    /// The range of a proxy fault's length.
    outage: (Duration, Duration),
    /// The range of the quiet time before each fault.
    gap: (Duration, Duration),
    /// How long the last Promotions may take to end after the last fault.
    patience: Duration,
}

impl Plan {
    /// The run `BARGE_CHAOS_RUN` names; `BARGE_CHAOS_FAULTS`
    /// (`kind:count,...`) replaces its faults, to chase one kind.
    fn from_env() -> BenchResult<Self> {
        let mut plan =
            Self::named(&std::env::var("BARGE_CHAOS_RUN").unwrap_or_else(|_| "full".into()))?;
        if let Ok(list) = std::env::var("BARGE_CHAOS_FAULTS") {
            plan.faults = list
                .split(',')
                .map(|entry| {
                    let (kind, n) = entry.split_once(':').unwrap_or((entry, "1"));
                    let kind = FaultKind::ALL
                        .into_iter()
                        .find(|k| k.name() == kind.trim())
                        .ok_or_else(|| format!("BARGE_CHAOS_FAULTS: no fault kind {kind}"))?;
                    Ok((kind, n.trim().parse()?))
                })
                .collect::<BenchResult<_>>()?;
        }
        Ok(plan)
    }

    fn named(run: &str) -> BenchResult<Self> {
        use FaultKind::*;
        let secs = Duration::from_secs;
        Ok(match run {
            "full" => Self {
                name: "full",
                stages: 50,
                rounds: 10,
                round_interval: secs(36),
                real_argocd: false,
                faults: vec![
                    (ApiserverRestart, 3),
                    (EtcdRestart, 1),
                    (ControllerKill, 6),
                    (KillMidSync, 4),
                    (LeaderFailover, 5),
                    (ProxyCut, 3),
                    (ProxyStall, 3),
                ],
                outage: (secs(5), secs(30)),
                gap: (secs(2), secs(6)),
                patience: secs(600),
            },
            "argocd" => Self {
                name: "argocd",
                stages: 5,
                rounds: 8,
                round_interval: secs(25),
                real_argocd: true,
                faults: vec![
                    (ApiserverRestart, 1),
                    (EtcdRestart, 1),
                    (ControllerKill, 2),
                    (KillMidSync, 2),
                    (LeaderFailover, 2),
                    (ProxyCut, 1),
                    (ProxyStall, 1),
                ],
                outage: (secs(5), secs(15)),
                gap: (secs(2), secs(6)),
                patience: secs(600),
            },
            "short" => Self {
                name: "short",
                stages: 5,
                rounds: 6,
                round_interval: secs(18),
                real_argocd: false,
                faults: vec![
                    (ApiserverRestart, 2),
                    (EtcdRestart, 2),
                    (ControllerKill, 2),
                    (KillMidSync, 2),
                    (LeaderFailover, 2),
                    (ProxyCut, 2),
                    (ProxyStall, 2),
                ],
                outage: (secs(5), secs(6)),
                gap: (secs(1), secs(2)),
                patience: secs(300),
            },
            other => {
                return Err(format!("BARGE_CHAOS_RUN={other}: not full, argocd or short").into());
            }
        })
    }

    fn promotions(&self) -> usize {
        self.stages * self.rounds
    }

    fn fault_count(&self) -> usize {
        self.faults.iter().map(|(_, n)| n).sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum FaultKind {
    ApiserverRestart,
    EtcdRestart,
    ControllerKill,
    KillMidSync,
    LeaderFailover,
    ProxyCut,
    ProxyStall,
}

impl FaultKind {
    const ALL: [Self; 7] = [
        Self::ApiserverRestart,
        Self::EtcdRestart,
        Self::ControllerKill,
        Self::KillMidSync,
        Self::LeaderFailover,
        Self::ProxyCut,
        Self::ProxyStall,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::ApiserverRestart => "apiserver-restart",
            Self::EtcdRestart => "etcd-restart",
            Self::ControllerKill => "controller-kill",
            Self::KillMidSync => "kill-mid-sync",
            Self::LeaderFailover => "leader-failover",
            Self::ProxyCut => "proxy-cut",
            Self::ProxyStall => "proxy-stall",
        }
    }
}

/// A small deterministic generator: the run is repeatable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between(&mut self, (low, high): (Duration, Duration)) -> Duration {
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(self.below(span + 1))
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

fn hex(seed: usize) -> String {
    let mut x = (seed as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = String::new();
    while out.len() < 40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(40);
    out
}

// ---------------------------------------------------------------------------
// Who plays Argo CD, and the revisions Promotions move to.

enum ArgoCd {
    Double(barge_argocd_double::DoubleHandle),
    /// The real application-controller; the repository's commits.
    Real {
        _argocd: Box<barge_testenv::argocd::ArgoCd>,
        _repo: barge_testenv::git::GitRepo,
    },
}

/// The revisions: one per round, then one per probe.
struct Revisions {
    repo_url: String,
    commits: Vec<String>,
    rounds: usize,
}

impl Revisions {
    fn of_round(&self, round: usize) -> &str {
        &self.commits[round]
    }

    fn of_probe(&self, probe: usize) -> &str {
        &self.commits[self.rounds + probe]
    }
}

// ---------------------------------------------------------------------------
// The objects.

fn stage(name: &str, repo_url: &str) -> Value {
    let commit = format!("${{{{ commitFrom(\"{repo_url}\").id }}}}");
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Stage", "metadata": {"name": name},
        "spec": {
            "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "chaos"}, "sources": {"direct": true}}],
            "promotionTemplate": {"spec": {"steps": [{"uses": "argocd-update", "as": "update", "config": {"apps": [{
                "name": "${{ ctx.project }}-${{ ctx.stage }}",
                "sources": [{"repoURL": repo_url, "desiredRevision": commit, "updateTargetRevision": true}],
            }]}}]}},
        },
    })
}

fn application(ns: &str, stage: &str, repo_url: &str, destination: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": format!("{ns}-{stage}"), "annotations": {"barge.dev/authorized-stage": format!("{ns}:{stage}")}},
        "spec": {"project": "default", "source": {"repoURL": repo_url, "path": ".", "targetRevision": "main"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
                 // Argo CD's own writes fail while the API server or etcd is
                 // down, and a sync it cannot record ends in Error; Barge
                 // reports that as the step's failure, as Kargo does. Argo
                 // CD retries it, as production Applications are set to.
                 "syncPolicy": {"retry": {"limit": 5, "backoff": {"duration": "1s", "factor": 2, "maxDuration": "10s"}}},
                 // Every sync of the run stays in the history that is checked.
                 "revisionHistoryLimit": 1000},
    })
}

fn freight(name: &str, repo_url: &str, commit: &str) -> Value {
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Freight", "metadata": {"name": name},
        "origin": {"kind": "Warehouse", "name": "chaos"}, "commits": [{"repoURL": repo_url, "id": commit}],
    })
}

fn promotion(name: &str, stage: &str, freight: &str) -> Value {
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": name},
        "spec": {"stage": stage, "freight": freight},
    })
}

fn stage_name(i: usize) -> String {
    format!("s{i:02}")
}

fn promotion_name(stage: usize, round: usize) -> String {
    // Zero-padded: a Stage's Promotions sort by name in creation order.
    format!("s{stage:02}-r{round:02}")
}

/// The API resource of `kind` (plural: the kind in lower case, plus "s").
fn resource(api_version: &str, kind: &str) -> kube::discovery::ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    }
}

/// Creates `object`, again and again while the API server is away; one that
/// already exists was created by an attempt whose answer was lost.
async fn create(client: &Client, ns: &str, object: Value) -> BenchResult<()> {
    let resource = resource(
        object["apiVersion"].as_str().unwrap_or_default(),
        object["kind"].as_str().unwrap_or_default(),
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object: DynamicObject = serde_json::from_value(object)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("creating {}: {e}", object.name_any()).into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

// ---------------------------------------------------------------------------
// What the run saw: each Promotion's phase, and when it first ended.

#[derive(Default)]
struct Seen {
    phases: HashMap<String, PromotionPhase>,
    ended_at: HashMap<String, Instant>,
    /// Every first end, in the order seen.
    ends: Vec<Instant>,
}

fn watch_promotions(
    client: &Client,
    ns: &str,
    seen: &Watched<Seen>,
) -> tokio::task::JoinHandle<()> {
    seen.watch(
        Api::<Promotion>::namespaced(client.clone(), ns),
        watcher::Config::default(),
        "Promotion",
        |p: &Promotion, at, s: &mut Seen| {
            let phase = p.phase();
            if phase.is_terminal() && !s.ended_at.contains_key(&p.name_any()) {
                s.ended_at.insert(p.name_any(), at);
                s.ends.push(at);
            }
            s.phases.insert(p.name_any(), phase);
        },
    )
}

fn progress(s: &Seen) -> String {
    let mut by_phase: BTreeMap<String, usize> = BTreeMap::new();
    for phase in s.phases.values() {
        *by_phase.entry(format!("{phase:?}")).or_default() += 1;
    }
    format!("{by_phase:?}")
}

// ---------------------------------------------------------------------------
// The replicas, and their supervisor.

struct Replicas {
    slots: Vec<ControllerProcess>,
    /// Processes started per slot, counting the first.
    incarnations: Vec<usize>,
}

struct ReplicaSetup {
    kubeconfig: PathBuf,
    ns: String,
    argocd_ns: String,
    dir: PathBuf,
    fault_dir: PathBuf,
}

impl ReplicaSetup {
    fn spawn(&self, slot: usize, incarnation: usize) -> BenchResult<ControllerProcess> {
        let dir = self.dir.join(format!("{}-{incarnation}", REPLICAS[slot]));
        let mut args = ControllerArgs::new(&self.kubeconfig, &self.ns, &self.argocd_ns, &dir);
        args.extra = [
            "--leader-election",
            "--lease-namespace",
            &self.ns,
            "--lease-name",
            LEASE,
            "--lease-duration",
            LEASE_DURATION,
            "--identity",
            REPLICAS[slot],
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.env = vec![("BARGE_FAULT_DIR", self.fault_dir.display().to_string())];
        ControllerProcess::spawn(&args)
    }
}

type SharedReplicas = Arc<Mutex<Replicas>>;

fn lock(replicas: &SharedReplicas) -> BenchResult<std::sync::MutexGuard<'_, Replicas>> {
    replicas
        .lock()
        .map_err(|_| "the supervisor panicked holding the replicas".into())
}

/// Restarts any replica that exited, as the kubelet would; returns when
/// `stop` is set.
fn supervise(
    replicas: SharedReplicas,
    setup: Arc<ReplicaSetup>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<BenchResult<usize>> {
    tokio::spawn(async move {
        let mut restarts = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            {
                let mut r = lock(&replicas)?;
                for (slot, name) in REPLICAS.iter().enumerate() {
                    if !r.slots[slot].alive() {
                        eprintln!(
                            "chaos: {name} exited; last log lines:\n{}",
                            r.slots[slot].log_tail(5)
                        );
                        r.incarnations[slot] += 1;
                        let n = r.incarnations[slot];
                        r.slots[slot] = setup.spawn(slot, n)?;
                        restarts += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(restarts)
    })
}

/// The slot of the replica holding the lease, once one does.
async fn leader(client: &Client, ns: &str) -> BenchResult<usize> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(lease)) = leases.get_opt(LEASE).await
            && let Some(holder) = lease.spec.and_then(|s| s.holder_identity)
            && let Some(slot) = REPLICAS.iter().position(|r| *r == holder)
        {
            return Ok(slot);
        }
        if Instant::now() > deadline {
            return Err("no replica took the lease".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the process in `slot` is no longer `pid` (the supervisor
/// restarted it); returns when.
async fn replaced(
    replicas: &SharedReplicas,
    slot: usize,
    pid: u32,
    patience: Duration,
) -> BenchResult<Instant> {
    let deadline = Instant::now() + patience;
    loop {
        if lock(replicas)?.slots[slot].pid() != pid {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("{} was not restarted", REPLICAS[slot]).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

// ---------------------------------------------------------------------------
// The faults.

struct Cluster<'a> {
    control_plane: &'a ControlPlane,
    proxy: &'a TcpProxy,
    client: Client,
    ns: String,
    replicas: SharedReplicas,
    fault_dir: PathBuf,
}

#[derive(serde::Serialize)]
struct FaultRecord {
    kind: &'static str,
    /// Seconds since the run started.
    at_s: f64,
    /// How long the fault itself lasted (the outage, or until the
    /// component was back).
    fault_ms: f64,
    /// From the fault's end to the first Promotion seen ending after it:
    /// the controller works again. (No Promotion can end while the API
    /// server, etcd or the network is down: its status write is the end.)
    resume_ms: f64,
    /// From the fault's end to the probe Promotion's Succeeded: includes
    /// working off what piled up during the fault.
    probe_ms: f64,
}

impl Cluster<'_> {
    /// Injects one fault; returns when it has ended (the component is back,
    /// or its replacement started).
    async fn inject(
        &self,
        kind: FaultKind,
        outage: Duration,
        rng: &mut Rng,
        arm_probe: impl AsyncFnOnce() -> BenchResult<()>,
    ) -> BenchResult<Instant> {
        let patience = Duration::from_secs(120);
        match kind {
            FaultKind::ApiserverRestart => {
                self.control_plane.restart_apiserver().await?;
                arm_probe().await?;
            }
            FaultKind::EtcdRestart => {
                self.control_plane.restart_etcd().await?;
                arm_probe().await?;
            }
            FaultKind::ControllerKill => {
                // A random moment: work is in flight most of the time.
                tokio::time::sleep(Duration::from_millis(rng.below(2000))).await;
                let slot = leader(&self.client, &self.ns).await?;
                let pid = lock(&self.replicas)?.slots[slot].pid();
                signal(pid, "-KILL");
                replaced(&self.replicas, slot, pid, patience).await?;
                arm_probe().await?;
            }
            FaultKind::KillMidSync => {
                // The probe's own sync request (if no other comes first) is
                // where the leader dies.
                let slot = leader(&self.client, &self.ns).await?;
                let pid = lock(&self.replicas)?.slots[slot].pid();
                let armed = self.fault_dir.join(barge::fault::AFTER_SYNC_REQUEST);
                std::fs::write(&armed, b"")?;
                arm_probe().await?;
                let deadline = Instant::now() + patience;
                while armed.exists() {
                    if Instant::now() > deadline {
                        return Err("the armed fault point was never reached".into());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // The replica that reached it is the one that died: the
                // leader, unless leadership moved meanwhile.
                let died = {
                    let r = lock(&self.replicas)?;
                    (0..r.slots.len())
                        .find(|s| !r.slots[*s].alive())
                        .unwrap_or(slot)
                };
                let pid = if died == slot {
                    pid
                } else {
                    lock(&self.replicas)?.slots[died].pid()
                };
                replaced(&self.replicas, died, pid, patience).await?;
            }
            FaultKind::LeaderFailover => {
                let slot = leader(&self.client, &self.ns).await?;
                let pid = lock(&self.replicas)?.slots[slot].pid();
                signal(pid, "-TERM");
                replaced(&self.replicas, slot, pid, patience).await?;
                arm_probe().await?;
            }
            FaultKind::ProxyCut => {
                self.proxy.refuse(true);
                tokio::time::sleep(outage).await;
                self.proxy.refuse(false);
                arm_probe().await?;
            }
            FaultKind::ProxyStall => {
                self.proxy.stall(true);
                tokio::time::sleep(outage).await;
                self.proxy.stall(false);
                arm_probe().await?;
            }
        }
        Ok(Instant::now())
    }
}

// ---------------------------------------------------------------------------
// Counting.

/// Syncs per Promotion and the revisions each Application synced, in order.
struct Syncs {
    per_promotion: HashMap<String, usize>,
    revisions: HashMap<String, Vec<String>>,
}

/// The double's own journal: sync operations it started, per Promotion. A
/// second operation for one Promotion is a double sync. (The journal can
/// miss a sync whose start was written but whose answer was lost in an API
/// server restart, so the history is what counts syncs and their order.)
fn double_syncs_in_journal(journal: &Journal, argocd_ns: &str) -> usize {
    let mut per_promotion: HashMap<String, usize> = HashMap::new();
    for sync in journal.syncs() {
        if sync.app.namespace == argocd_ns
            && let Some(p) = sync.promotion()
        {
            *per_promotion.entry(p.to_string()).or_default() += 1;
        }
    }
    per_promotion.values().map(|n| n.saturating_sub(1)).sum()
}

/// Syncs per Promotion (`<stage>@<revision index>`: each round's revision is
/// new), from each Application's `status.history` as the API server holds
/// it: one entry per sync, in order, whoever plays Argo CD. An entry written
/// twice for one operation (the answer to its write lost in an API server
/// restart, then written again) has the same `deployStartedAt` and counts
/// once.
async fn syncs_from_history(
    client: &Client,
    argocd_ns: &str,
    ns: &str,
    revisions: &Revisions,
    stages: &[String],
) -> BenchResult<Syncs> {
    let apps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        argocd_ns,
        &resource("argoproj.io/v1alpha1", "Application"),
    );
    let mut per_promotion = HashMap::new();
    let mut synced = HashMap::new();
    let names: HashMap<&str, String> = (0..revisions.commits.len())
        .map(|k| (revisions.commits[k].as_str(), k.to_string()))
        .collect();
    for stage in stages {
        let name = format!("{ns}-{stage}");
        let app = apps.get(&name).await?;
        let history = app
            .data
            .pointer("/status/history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut entries = std::collections::HashSet::new();
        let list: Vec<String> = history
            .iter()
            .filter(|h| {
                entries.insert((
                    h.get("revision").cloned(),
                    h.get("deployStartedAt").cloned(),
                ))
            })
            .filter_map(|h| h.get("revision").and_then(Value::as_str).map(String::from))
            .collect();
        for revision in &list {
            let key = format!(
                "{stage}@{}",
                names
                    .get(revision.as_str())
                    .cloned()
                    .unwrap_or_else(|| revision.clone())
            );
            *per_promotion.entry(key).or_default() += 1;
        }
        synced.insert(name, list);
    }
    Ok(Syncs {
        per_promotion,
        revisions: synced,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------

fn main() -> BenchResult<()> {
    let plan = Plan::from_env()?;
    let seed: u64 = std::env::var("BARGE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos");
    std::fs::create_dir_all(&out_dir)?;
    // The proxy runs on a runtime of its own, so this process's work
    // cannot slow the bytes it passes.
    let proxy_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(plan, seed, &out_dir, &proxy_runtime))
}

async fn run(
    plan: Plan,
    seed: u64,
    out_dir: &Path,
    proxy_runtime: &tokio::runtime::Runtime,
) -> BenchResult<()> {
    let started = Instant::now();
    eprintln!(
        "chaos: run {} (seed {seed}): {} Promotions over {} Stages, {} faults",
        plan.name,
        plan.promotions(),
        plan.stages,
        plan.fault_count()
    );
    if plan.real_argocd && !barge_testenv::argocd::is_built() {
        return Err(format!(
            "chaos: the argocd run needs real Argo CD, not built in {}; run `make argocd`",
            barge_testenv::argocd::argocd_dir().display()
        )
        .into());
    }
    let env = TestEnv::from(ControlPlane::start().await?);
    let control_plane = env.control_plane();
    let client = env.client();
    env.apply_crd_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
        .await?;
    let ns = env.namespace().await?;

    // Argo CD and the revisions.
    let (argocd, argocd_ns, revisions) = if plan.real_argocd {
        let argocd = barge_testenv::argocd::ArgoCd::start(control_plane).await?;
        let repo = barge_testenv::git::GitRepo::init()?;
        let mut commits = Vec::new();
        for k in 0..plan.rounds + plan.fault_count() {
            repo.write("configmap.yaml", &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: chaos\ndata:\n  release: \"{k}\"\n"))?;
            commits.push(repo.commit(&format!("release {k}"))?);
        }
        let repo_url = repo.url();
        (
            ArgoCd::Real {
                _argocd: Box::new(argocd),
                _repo: repo,
            },
            env.argocd_namespace().await?,
            Revisions {
                repo_url,
                commits,
                rounds: plan.rounds,
            },
        )
    } else {
        env.apply_crds(barge_argocd_double::CRD_YAML).await?;
        let argocd_ns = env.namespace().await?;
        // Syncs take a while, so that faults find some running.
        let double = Double::new(
            client.clone(),
            DoubleConfig::namespaced(&argocd_ns).with_sync_delay(Duration::from_millis(500)),
        )
        .spawn();
        let commits = (0..plan.rounds + plan.fault_count()).map(hex).collect();
        (
            ArgoCd::Double(double),
            argocd_ns,
            Revisions {
                repo_url: DOUBLE_REPO.into(),
                commits,
                rounds: plan.rounds,
            },
        )
    };
    let repo_url = revisions.repo_url.clone();

    let mut stages: Vec<String> = (0..plan.stages).map(stage_name).collect();
    stages.push(PROBE_STAGE.into());
    for stage_name in &stages {
        let destination = if plan.real_argocd {
            env.namespace().await?
        } else {
            "chaos".into()
        };
        create(
            &client,
            &argocd_ns,
            application(&ns, stage_name, &repo_url, &destination),
        )
        .await?;
        create(&client, &ns, stage(stage_name, &repo_url)).await?;
    }
    for round in 0..plan.rounds {
        create(
            &client,
            &ns,
            freight(
                &format!("f{round:02}"),
                &repo_url,
                revisions.of_round(round),
            ),
        )
        .await?;
    }

    let seen: Watched<Seen> = Watched::default();
    let watch = watch_promotions(&client, &ns, &seen);

    // The proxy and the replicas.
    let api_addr = control_plane.api_addr()?;
    let proxy = proxy_runtime
        .spawn(async move { TcpProxy::start(api_addr).await })
        .await??;
    let fault_dir = out_dir.join("faults");
    let _ = std::fs::remove_dir_all(&fault_dir);
    std::fs::create_dir_all(&fault_dir)?;
    let setup = Arc::new(ReplicaSetup {
        kubeconfig: control_plane.kubeconfig_via(proxy.addr())?,
        ns: ns.clone(),
        argocd_ns: argocd_ns.clone(),
        dir: out_dir.join("replicas"),
        fault_dir: fault_dir.clone(),
    });
    let mut slots = Vec::new();
    for slot in 0..REPLICAS.len() {
        slots.push(setup.spawn(slot, 1)?);
    }
    let replicas: SharedReplicas = Arc::new(Mutex::new(Replicas {
        slots,
        incarnations: vec![1; REPLICAS.len()],
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let supervisor = supervise(replicas.clone(), setup.clone(), stop.clone());
    let first = leader(&client, &ns).await?;
    eprintln!(
        "chaos: {} leads after {:.1} s",
        REPLICAS[first],
        started.elapsed().as_secs_f64()
    );

    // Promotions, round after round, while the faults go on.
    let creator = {
        let (client, ns, plan) = (client.clone(), ns.clone(), plan.clone());
        tokio::spawn(async move {
            let spacing = plan.round_interval / plan.stages.max(1) as u32;
            for round in 0..plan.rounds {
                for s in 0..plan.stages {
                    create(
                        &client,
                        &ns,
                        promotion(
                            &promotion_name(s, round),
                            &stage_name(s),
                            &format!("f{round:02}"),
                        ),
                    )
                    .await?;
                    tokio::time::sleep(spacing).await;
                }
            }
            BenchResult::Ok(())
        })
    };

    let mut kinds: Vec<FaultKind> = plan
        .faults
        .iter()
        .flat_map(|(k, n)| std::iter::repeat_n(*k, *n))
        .collect();
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    rng.shuffle(&mut kinds);
    let cluster = Cluster {
        control_plane,
        proxy: &proxy,
        client: client.clone(),
        ns: ns.clone(),
        replicas: replicas.clone(),
        fault_dir,
    };
    let mut records = Vec::new();
    for (probe, kind) in kinds.iter().enumerate() {
        tokio::time::sleep(rng.between(plan.gap)).await;
        let outage = rng.between(plan.outage);
        let fault_start = Instant::now();
        let probe_name = format!("probe-{probe:02}");
        let probe_freight = format!("pf{probe:02}");
        create(
            &client,
            &ns,
            freight(&probe_freight, &repo_url, revisions.of_probe(probe)),
        )
        .await?;
        let arm_probe = async || {
            create(
                &client,
                &ns,
                promotion(&probe_name, PROBE_STAGE, &probe_freight),
            )
            .await
        };
        let fault_end = cluster.inject(*kind, outage, &mut rng, arm_probe).await?;
        let name = probe_name.clone();
        // A probe that does not end is counted stuck at the end; the faults
        // go on.
        if let Err(e) = seen
            .wait_for(
                &format!("{probe_name} after {}", kind.name()),
                plan.patience,
                move |s| Ok(s.ended_at.contains_key(&name)),
                progress,
            )
            .await
        {
            eprintln!("chaos: {e}");
        }
        let (phase, ended, first_end) = seen.with(|s| {
            (
                s.phases.get(&probe_name).copied(),
                s.ended_at.get(&probe_name).copied(),
                s.ends.iter().find(|e| **e >= fault_end).copied(),
            )
        })?;
        if phase != Some(PromotionPhase::Succeeded) {
            eprintln!("chaos: {probe_name} after {} is {phase:?}", kind.name());
        }
        let since_end = |at: Option<Instant>| {
            at.map(|e| support::signed_ms(fault_end, e))
                .unwrap_or_default()
        };
        let record = FaultRecord {
            kind: kind.name(),
            at_s: round3(fault_start.duration_since(started).as_secs_f64()),
            fault_ms: round3(support::signed_ms(fault_start, fault_end)),
            resume_ms: round3(since_end(first_end)),
            probe_ms: round3(since_end(ended)),
        };
        eprintln!(
            "chaos: fault {}/{}: {} at {:.1} s, lasted {:.0} ms, resumed {:.0} ms later, probe done {:.0} ms later ({})",
            probe + 1,
            kinds.len(),
            record.kind,
            record.at_s,
            record.fault_ms,
            record.resume_ms,
            record.probe_ms,
            seen.with(|s| progress(s))?
        );
        records.push(record);
    }
    creator.await??;

    // Every Promotion ends, or the run says which did not.
    let mut names: Vec<String> = (0..plan.stages)
        .flat_map(|s| (0..plan.rounds).map(move |r| promotion_name(s, r)))
        .collect();
    names.extend((0..kinds.len()).map(|p| format!("probe-{p:02}")));
    let wanted = names.clone();
    let waited = seen
        .wait_for(
            "every Promotion to end",
            plan.patience,
            move |s| Ok(wanted.iter().all(|n| s.ended_at.contains_key(n))),
            progress,
        )
        .await;
    if let Err(e) = &waited {
        eprintln!("chaos: {e}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let restarts = supervisor.await??;

    let (lost, stuck): (Vec<String>, Vec<String>) = seen.with(|s| {
        let lost = names
            .iter()
            .filter(|n| {
                s.phases
                    .get(*n)
                    .is_some_and(|p| p.is_terminal() && *p != PromotionPhase::Succeeded)
                    || !s.phases.contains_key(*n)
            })
            .cloned()
            .collect();
        let stuck = names
            .iter()
            .filter(|n| s.phases.get(*n).is_some_and(|p| !p.is_terminal()))
            .cloned()
            .collect();
        (lost, stuck)
    })?;
    let syncs = syncs_from_history(&client, &argocd_ns, &ns, &revisions, &stages).await?;
    let journal_double_syncs = match &argocd {
        ArgoCd::Double(double) => double_syncs_in_journal(&double.journal(), &argocd_ns),
        ArgoCd::Real { .. } => 0,
    };
    let double_syncs: usize = syncs
        .per_promotion
        .values()
        .map(|n| n.saturating_sub(1))
        .sum::<usize>()
        + journal_double_syncs;
    let twice: Vec<&String> = syncs
        .per_promotion
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, _)| p)
        .collect();
    // Each Stage's Application synced its rounds' revisions, in order, once each.
    let mut out_of_order = Vec::new();
    for s in 0..plan.stages {
        let app = format!("{ns}-{}", stage_name(s));
        let want: Vec<String> = (0..plan.rounds)
            .map(|r| revisions.of_round(r).to_string())
            .collect();
        let got = syncs.revisions.get(&app).cloned().unwrap_or_default();
        if got != want {
            out_of_order.push(format!("{app}: {got:?}"));
        }
    }
    let per_kind = |ms: fn(&FaultRecord) -> f64| -> BTreeMap<&str, support::Summary> {
        let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for r in &records {
            by_kind.entry(r.kind).or_default().push(ms(r));
        }
        by_kind
            .into_iter()
            .map(|(k, v)| (k, summarize(v)))
            .collect()
    };
    let (resume, probe) = (per_kind(|r| r.resume_ms), per_kind(|r| r.probe_ms));
    let total = names.len();
    let report = json!({
        "run": plan.name,
        "seed": seed,
        "argocd": if plan.real_argocd { "real" } else { "double" },
        "promotions": total,
        "stages": plan.stages,
        "lost": lost.len(),
        "double_syncs": double_syncs,
        "journal_double_syncs": journal_double_syncs,
        "stuck": stuck.len(),
        "out_of_order": out_of_order.len(),
        "faults": records.len(),
        "replica_restarts": restarts,
        "resume_ms": resume,
        "probe_ms": probe,
        "fault_log": records,
        "duration_s": round3(started.elapsed().as_secs_f64()),
    });
    let json_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&json_dir)?;
    let file = json_dir.join(if plan.name == "full" {
        "chaos.json".to_string()
    } else {
        format!("chaos-{}.json", plan.name)
    });
    std::fs::write(&file, serde_json::to_string_pretty(&report)?)?;
    println!("{}", serde_json::to_string(&report)?);
    println!();
    println!(
        "| fault | count | resume p50 (ms) | resume max (ms) | probe p50 (ms) | probe max (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for (kind, summary) in &resume {
        let p = &probe[kind];
        println!(
            "| {kind} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            summary.n, summary.p50_ms, summary.max_ms, p.p50_ms, p.max_ms
        );
    }
    println!();
    println!(
        "replica restarts by the supervisor: {restarts}; out of order: {}; run took {:.0} s; wrote {}",
        out_of_order.len(),
        started.elapsed().as_secs_f64(),
        file.display()
    );
    for (what, list) in [
        ("lost", &lost),
        ("stuck", &stuck),
        ("synced out of order or not at all", &out_of_order),
    ] {
        if !list.is_empty() {
            println!("{what}: {}", list.join(", "));
        }
    }
    if !twice.is_empty() {
        println!("synced more than once: {twice:?}");
    }
    watch.abort();
    drop(replicas);
    if let ArgoCd::Double(double) = argocd {
        double.stop().await;
    }
    println!(
        "chaos: {total} promotions, {} lost, {double_syncs} double syncs, {} stuck, {} faults",
        lost.len(),
        stuck.len(),
        records.len()
    );
    if !lost.is_empty() || double_syncs > 0 || !stuck.is_empty() || !out_of_order.is_empty() {
        return Err(
            "chaos: Promotions were lost, synced twice, stuck or synced out of order".into(),
        );
    }
    Ok(())
}
