//! The chart's RBAC is exactly enough (least privilege).
//!
//! The chart's ServiceAccount, ClusterRole, Roles and bindings are rendered
//! with `helm template` and applied with kubectl; the controller then runs
//! in-process with a token the API server issued for that ServiceAccount
//! (TokenRequest), so RBAC decides every request it makes. The Argo CD
//! double runs as admin.
//!
//! The controller runs as the chart runs it with leader election on
//! (`barge::runtime::run` on the release's Lease), watching every namespace
//! in the first run.
//!
//! The scenario is both examples at once: the quickstart (three Stages
//! promoting one Freight automatically through a ClusterPromotionTask) and
//! `examples/promotion-task` (a PromotionTask selecting its Application by
//! labels), plus a second Promotion queued on the same Stage, a Promotion
//! reading project data, and a webhook receiver with a Promotion waiting on a
//! pull request (woken as a standby replica wakes it), a Warehouse a
//! push event refreshes, and a Warehouse discovering a git repository. It
//! checks ten behaviours. With the chart's RBAC every behaviour holds and no request is
//! forbidden. Then, for every rule the chart grants the controller (the
//! ClusterRole's, the Argo CD Role's and the leader-election Role's), a run
//! with a ClusterRole or Role missing just that rule must see a request
//! forbidden that only that rule allowed, and a behaviour fail. The test
//! prints which rule broke which behaviour.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use barge::api::{HealthState, Promotion, PromotionPhase, Stage};
use barge::controller::{Metrics, Settings};
use barge::runtime::{self, LeaderElection};
use barge_argocd_double::{Double, DoubleConfig};
use barge_testenv::TestEnv;
use futures::channel::oneshot;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use support::{Error, TestResult, succeeded};

/// Long enough that a missed wake-up fails instead of hiding behind a timer.
const BACKSTOP: Duration = Duration::from_secs(3600);
/// How long the run with the chart's full RBAC may take: it ends as soon as
/// every behaviour holds, so this only bounds a failing run. 90 s was once
/// not enough with the whole suite and other builds on the 2-core machine.
const BASELINE_PATIENCE: Duration = Duration::from_secs(240);
/// How long a run with one rule removed is given to show every behaviour.
const REMOVED_RULE_PATIENCE: Duration = Duration::from_secs(20);
/// Runs with one rule removed that run at once.
const PARALLEL: usize = 8;
/// The double's sync time: long enough that the second Promotion on `uat`
/// is reconciled while the first still runs.
const SYNC_DELAY: Duration = Duration::from_millis(500);

/// The behaviours the scenario checks, in report order.
const QUICKSTART: &str = "quickstart";
const TASK: &str = "promotion-task";
const QUEUE: &str = "queue";
const HEALTH: &str = "health";
const EVENTS: &str = "events";
const DATA: &str = "data";
const RECEIVERS: &str = "webhook-receivers";
const STANDBY_WAKE: &str = "standby-wake";
const WAREHOUSE_REFRESH: &str = "warehouse-refresh";
const DISCOVERY: &str = "warehouse-discovery";
const BEHAVIOURS: [(&str, &str); 10] = [
    (
        QUICKSTART,
        "dev, staging and prod each got an automatic Promotion that Succeeded",
    ),
    (
        TASK,
        "both uat Promotions (PromotionTask, label-selected Application) Succeeded",
    ),
    (
        QUEUE,
        "one uat Promotion reported waiting for the other (Pending, awaiting it)",
    ),
    (HEALTH, "all four Stages report Healthy"),
    (
        EVENTS,
        "every Succeeded Promotion has a PromotionSucceeded Event",
    ),
    (
        DATA,
        "a Promotion's expressions read a ConfigMap and a generic Secret of its namespace",
    ),
    (
        RECEIVERS,
        "a ProjectConfig's webhook receiver is served and its path published in its status",
    ),
    (
        STANDBY_WAKE,
        "a pull-request event delivered to a standby replica marks the waiting Promotion for refresh",
    ),
    (
        WAREHOUSE_REFRESH,
        "a push event marks the Warehouse subscribed to the pushed repository for refresh",
    ),
    (
        DISCOVERY,
        "a Warehouse discovered its repository's commit, made its Freight and recorded it in its status",
    ),
];

/// A Warehouse subscribed to a local repository, which makes Freight.
const DISCOVERING_WAREHOUSE: &str = "discovers";

/// A Promotion whose git-wait-for-pr cannot reach its host (nothing
/// listens on the port): it keeps waiting on the pull request, retrying.
const PR_PROMOTION: &str = "pr-waiter";
const PR_REPO: &str = "http://127.0.0.1:9/barge/app.git";

const DATA_PROMOTION: &str = "data-reader";

/// A Warehouse subscribed to [`PUSHED_REPO`], which a push event refreshes.
const PUSHED_WAREHOUSE: &str = "pushed";
const PUSHED_REPO: &str = "http://127.0.0.1:9/barge/pushed.git";

const UAT_FIRST: &str = "uat-guestbook-5d4c3b2";
const UAT_SECOND: &str = "uat-guestbook-next";
/// The uat Stage's Application, whose syncs the double holds until the
/// queue has been seen, so that seeing it never depends on timing.
const UAT_APP: &str = "guestbook-uat";
const OUTCOME: &str = "double.barge.dev/outcome";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Which requests were forbidden: a client layer that records every 403.

/// A forbidden request, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Denied {
    verb: String,
    group: String,
    /// `plural` or `plural/subresource`.
    resource: String,
    namespace: String,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {}.{}", self.verb, self.resource, group)
    }
}

/// Maps a request to RBAC's verb, group and resource.
fn attributes(method: &http::Method, uri: &http::Uri) -> Option<Denied> {
    let a = barge::api_requests::RequestAttributes::of(method, uri)?;
    Some(Denied {
        verb: a.verb,
        group: a.group,
        resource: a.resource,
        namespace: a.namespace,
    })
}

#[derive(Clone, Default)]
struct Denials(Arc<Mutex<Vec<Denied>>>);

impl Denials {
    fn all(&self) -> Vec<Denied> {
        let mut all = self.0.lock().map(|d| d.clone()).unwrap_or_default();
        all.sort();
        all.dedup();
        all
    }
}

impl<S> tower::Layer<S> for Denials {
    type Service = RecordDenials<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordDenials {
            inner,
            denials: self.clone(),
        }
    }
}

struct RecordDenials<S> {
    inner: S,
    denials: Denials,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RecordDenials<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let what = attributes(request.method(), request.uri());
        let denials = self.denials.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if response.status() == http::StatusCode::FORBIDDEN
                && let Some(what) = what
                && let Ok(mut all) = denials.0.lock()
            {
                all.push(what);
            }
            Ok(response)
        })
    }
}

// ---------------------------------------------------------------------------
// The chart's RBAC, rendered, optionally without one rule, and applied.

/// One rule the chart grants the controller: where it is and what it allows.
#[derive(Clone, Debug)]
struct Rule {
    /// `ClusterRole` or `Role`.
    kind: String,
    /// The object's name without the release prefix (`barge`, `barge-argocd`).
    role: String,
    index: usize,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

impl Rule {
    fn from_json(kind: &str, role: &str, index: usize, rule: &Value) -> Self {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        Rule {
            kind: kind.into(),
            role: role.into(),
            index,
            groups: strings("apiGroups"),
            resources: strings("resources"),
            verbs: strings("verbs"),
        }
    }

    fn allows(&self, denied: &Denied) -> bool {
        self.groups.contains(&denied.group)
            && self.resources.contains(&denied.resource)
            && self.verbs.contains(&denied.verb)
    }

    fn describe(&self) -> String {
        let group = match self.groups.first().map(String::as_str) {
            Some("") | None => "core",
            Some(g) => g,
        };
        format!(
            "{}/{} #{}: {} {} [{}]",
            self.kind,
            self.role,
            self.index,
            group,
            self.resources.join(","),
            self.verbs.join(",")
        )
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await?
}

async fn helm(env: &'static TestEnv, args: Vec<String>) -> Result<String, Error> {
    blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        succeeded(&format!("helm {}", args.join(" ")), env.helm(&args)?)
    })
    .await
}

async fn kubectl(env: &'static TestEnv, args: Vec<String>) -> Result<String, Error> {
    blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        succeeded(&format!("kubectl {}", args.join(" ")), env.kubectl(&args)?)
    })
    .await
}

const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The ServiceAccount and RBAC objects of `helm template <release>`.
async fn render_rbac(
    env: &'static TestEnv,
    release: &str,
    release_ns: &str,
    argocd_ns: &str,
) -> Result<Vec<Value>, Error> {
    let chart = root().join("charts/barge");
    let yaml = helm(
        env,
        vec![
            "template".into(),
            release.into(),
            chart.display().to_string(),
            "--namespace".into(),
            release_ns.into(),
            "--set".into(),
            "crds.install=false".into(),
            "--set".into(),
            format!("controller.argocd.namespace={argocd_ns}"),
            "--set".into(),
            "controller.leaderElection.enabled=true".into(),
        ],
    )
    .await?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml)?;
    Ok(docs
        .into_iter()
        .filter(|d| RBAC_KINDS.iter().any(|k| d["kind"] == *k))
        .collect())
}

/// Every rule of the roles bound to the controller: the ClusterRole, the
/// Argo CD Role and the leader-election Role.
fn rules_of(docs: &[Value], release: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let role = name.replacen(&format!("rbac-{release}-"), "", 1);
        for (i, rule) in doc["rules"].as_array().into_iter().flatten().enumerate() {
            rules.push(Rule::from_json(kind, &role, i, rule));
        }
    }
    rules
}

/// Applies the rendered objects, without `removed`, and returns a token the
/// API server issued for the ServiceAccount.
async fn apply_rbac(
    env: &'static TestEnv,
    mut docs: Vec<Value>,
    removed: Option<&Rule>,
    release: &str,
    release_ns: &str,
) -> Result<String, Error> {
    let mut service_account = None;
    for doc in &mut docs {
        if doc["kind"] == "ServiceAccount" {
            service_account = doc["metadata"]["name"].as_str().map(String::from);
        }
        let Some(rule) = removed else { continue };
        let matches = doc["kind"] == rule.kind.as_str()
            && doc["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(&rule.role));
        if matches && let Some(rules) = doc["rules"].as_array_mut() {
            if rule.index >= rules.len() {
                return Err(format!("{} has no rule #{}", rule.role, rule.index).into());
            }
            rules.remove(rule.index);
        }
    }
    let Some(service_account) = service_account else {
        return Err(format!("release {release} renders no ServiceAccount").into());
    };
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rbac.yaml");
    let mut text = String::new();
    for doc in &docs {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(doc)?);
        text.push('\n');
    }
    std::fs::write(&file, text)?;
    kubectl(
        env,
        vec!["apply".into(), "-f".into(), file.display().to_string()],
    )
    .await?;
    let token = kubectl(
        env,
        vec![
            "create".into(),
            "token".into(),
            service_account,
            "-n".into(),
            release_ns.into(),
            "--duration".into(),
            "1h".into(),
        ],
    )
    .await?;
    Ok(token.trim().to_string())
}

/// A client that authenticates with `token` and records forbidden requests.
async fn client_with_token(
    env: &'static TestEnv,
    token: &str,
    denials: &Denials,
) -> Result<kube::Client, Error> {
    let admin = Kubeconfig::read_from(env.kubeconfig_path())?;
    let ca = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority.clone())
        .ok_or("the admin kubeconfig names no certificate authority")?;
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "barge-test", "cluster": {
            "server": env.control_plane().server(),
            "certificate-authority": ca,
        }}],
        "users": [{"name": "controller", "user": {"token": token}}],
        "contexts": [{"name": "controller", "context": {"cluster": "barge-test", "user": "controller"}}],
        "current-context": "controller",
    });
    let kubeconfig = Kubeconfig::from_yaml(&serde_json::to_string(&kubeconfig)?)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(denials)
        .build())
}

// ---------------------------------------------------------------------------
// The scenario: both examples in one project namespace.

/// The example manifests, moved into this run's namespaces.
fn scenario(ns: &str, argocd_ns: &str, discovered_repo: &str) -> Result<String, Error> {
    let mut text = String::new();
    let mut add_dir = |dir: &str, project: &str| -> Result<(), Error> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples").join(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let yaml = std::fs::read_to_string(&file)?
                .replace(project, ns)
                .replace("namespace: argocd\n", &format!("namespace: {argocd_ns}\n"))
                .replace("argocd-sync", &format!("argocd-sync-{ns}"));
            for mut doc in serde_saphyr::from_multiple::<Value>(&yaml)? {
                if doc.is_null() || doc["kind"] == "Namespace" {
                    continue;
                }
                if doc["kind"] == "ProjectConfig" {
                    // The quickstart's, with a webhook receiver besides its
                    // promotion policies.
                    doc["spec"]["webhookReceivers"] = json!([
                        {"name": "gitea", "gitea": {"secretRef": {"name": "gitea-webhook"}}}
                    ]);
                }
                if doc["kind"] == "Application" && doc["metadata"]["name"] == UAT_APP {
                    // Held until the second uat Promotion is seen queued.
                    doc["metadata"]["annotations"][OUTCOME] = json!("hang");
                }
                text.push_str("---\n");
                text.push_str(&serde_json::to_string(&doc)?);
                text.push('\n');
            }
        }
        Ok(())
    };
    add_dir("quickstart", "barge-demo")?;
    add_dir("promotion-task", "barge-tasks")?;
    // A second Freight and a second Promotion on `uat`, queued behind the first;
    // a Stage whose Promotion reads a ConfigMap and a generic Secret.
    for doc in [
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": "guestbook-next", "namespace": ns},
            "origin": {"kind": "Warehouse", "name": "guestbook"},
            "commits": [{"repoURL": "https://github.com/argoproj/argocd-example-apps.git",
                         "id": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"}],
        }),
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": UAT_SECOND, "namespace": ns},
            "spec": {"stage": "uat", "freight": "guestbook-next"},
        }),
        // After the Freight it promotes, which must exist when it starts.
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": ns},
            "data": {"color": "teal"},
        }),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "token", "namespace": ns,
                         "labels": {"barge.dev/cred-type": "generic"}},
            "stringData": {"value": "s3cret"},
        }),
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
            "metadata": {"name": "data", "namespace": ns},
            "spec": {
                "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "guestbook"},
                                      "sources": {"direct": true}}],
                "promotionTemplate": {"spec": {"steps": [{"uses": "compose-output", "as": "read",
                    "config": {"color": "${{ configMap('settings').color }}",
                               "tokenLength": "${{ len(secret('token').value) }}"}}]}},
            },
        }),
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": DATA_PROMOTION, "namespace": ns},
            "spec": {"stage": "data", "freight": "guestbook-next"},
        }),
        // A webhook receiver, and a Promotion waiting on a pull request.
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "gitea-webhook", "namespace": ns},
            "stringData": {"secret": "webhook-s3cret"},
        }),
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
            "metadata": {"name": "reviewed", "namespace": ns},
            "spec": {
                "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "guestbook"},
                                      "sources": {"direct": true}}],
                "promotionTemplate": {"spec": {"steps": [{"uses": "git-wait-for-pr", "as": "wait-pr",
                    "config": {"repoURL": PR_REPO, "provider": "gitea", "prNumber": 1}}]}},
            },
        }),
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": PR_PROMOTION, "namespace": ns},
            "spec": {"stage": "reviewed", "freight": "guestbook-next"},
        }),
        // A Warehouse a push event refreshes.
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
            "metadata": {"name": PUSHED_WAREHOUSE, "namespace": ns},
            "spec": {"interval": "24h", "subscriptions": [{"git": {"repoURL": PUSHED_REPO}}]},
        }),
        // A Warehouse that discovers.
        json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
            "metadata": {"name": DISCOVERING_WAREHOUSE, "namespace": ns},
            "spec": {"interval": "24h", "subscriptions": [{"git": {"repoURL": discovered_repo}}]},
        }),
    ] {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(&doc)?);
        text.push('\n');
    }
    Ok(text)
}

/// Which behaviours hold now.
async fn behaviours(
    client: &kube::Client,
    ns: &str,
    queued: &AtomicBool,
    standby: &barge::webhook::Wakers,
    standby_woke: &AtomicBool,
) -> Result<BTreeMap<&'static str, bool>, Error> {
    let promotions = Api::<Promotion>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let succeeded = |p: &Promotion| p.phase() == PromotionPhase::Succeeded;
    let quickstart = ["dev", "staging", "prod"].iter().all(|stage| {
        promotions
            .iter()
            .any(|p| p.spec.stage == *stage && succeeded(p))
    });
    let task = [UAT_FIRST, UAT_SECOND].iter().all(|name| {
        promotions
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(name) && succeeded(p))
    });
    let stages = Api::<Stage>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let healthy = |name: &str| {
        stages.iter().any(|s| {
            s.metadata.name.as_deref() == Some(name)
                && s.status
                    .as_ref()
                    .and_then(|st| st.health.as_ref())
                    .and_then(|h| h.status)
                    == Some(HealthState::Healthy)
        })
    };
    let health = ["dev", "staging", "prod", "uat"].iter().all(|s| healthy(s));
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let done: Vec<&Promotion> = promotions.iter().filter(|p| succeeded(p)).collect();
    let events_ok = !done.is_empty()
        && done.iter().all(|p| {
            events.iter().any(|e| {
                e.reason.as_deref() == Some("PromotionSucceeded")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                        == p.metadata.name.as_deref()
            })
        });
    let data = promotions.iter().any(|p| {
        p.metadata.name.as_deref() == Some(DATA_PROMOTION)
            && succeeded(p)
            && p.status.as_ref().is_some_and(|s| {
                s.state.get("read") == Some(&json!({"color": "teal", "tokenLength": 6}))
            })
    });
    let receivers = Api::<barge::api::ProjectConfig>::namespaced(client.clone(), ns)
        .get_opt(ns)
        .await?
        .and_then(|c| c.status)
        .is_some_and(|s| {
            s.webhook_receivers.len() == 1 && s.webhook_receivers[0].path.starts_with("/gitea/")
        });
    let waiting_on_pr = promotions.iter().any(|p| {
        p.metadata.name.as_deref() == Some(PR_PROMOTION)
            && p.status.as_ref().is_some_and(|s| {
                s.awaiting
                    .iter()
                    .any(|a| a.kind == "PullRequest" && a.repo_url.as_deref() == Some(PR_REPO))
            })
    });
    // As a standby replica wakes: through the API server, with the
    // controller's identity. Once: every wake runs the waiting step again,
    // and its failures against the closed port add up.
    if !standby_woke.load(Ordering::SeqCst)
        && waiting_on_pr
        && matches!(
            standby.pull_request(ns, &[PR_REPO.to_string()], 1).await,
            Ok(1)
        )
        && Api::<Promotion>::namespaced(client.clone(), ns)
            .get(PR_PROMOTION)
            .await?
            .metadata
            .annotations
            .is_some_and(|a| a.contains_key(barge::api::ANNOTATION_REFRESH))
    {
        standby_woke.store(true, Ordering::SeqCst);
    }
    let standby_wake = standby_woke.load(Ordering::SeqCst);
    // A push to the Warehouse's repository, as a receiver hands it on: the
    // Warehouses are listed and the subscribed one annotated.
    let push = barge::webhook::event::Push {
        artifact: barge::webhook::event::Artifact::Git,
        repo_urls: vec![PUSHED_REPO.to_string()],
        changed_files: Vec::new(),
        refs: vec!["refs/heads/main".to_string()],
    };
    let warehouse_refresh = matches!(
        standby.warehouses(ns, &push).await.as_deref(),
        Ok([name]) if name == PUSHED_WAREHOUSE
    ) && Api::<barge::api::Warehouse>::namespaced(client.clone(), ns)
        .get(PUSHED_WAREHOUSE)
        .await?
        .metadata
        .annotations
        .is_some_and(|a| a.contains_key(barge::api::ANNOTATION_REFRESH));
    let made = Api::<barge::api::Freight>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|f| f.spec.origin.name == DISCOVERING_WAREHOUSE)
        .and_then(|f| f.metadata.name);
    let discovery = made.is_some()
        && Api::<barge::api::Warehouse>::namespaced(client.clone(), ns)
            .get(DISCOVERING_WAREHOUSE)
            .await?
            .status
            .is_some_and(|s| Some(s.last_freight_id) == made);
    Ok(BTreeMap::from([
        (DISCOVERY, discovery),
        (WAREHOUSE_REFRESH, warehouse_refresh),
        (RECEIVERS, receivers),
        (STANDBY_WAKE, standby_wake),
        (DATA, data),
        (QUICKSTART, quickstart),
        (TASK, task),
        (QUEUE, queued.load(Ordering::SeqCst)),
        (HEALTH, health),
        (EVENTS, events_ok),
    ]))
}

/// Sets `queued` once either uat Promotion reports waiting for the other,
/// then releases the uat Application's held sync.
fn watch_queue(
    client: kube::Client,
    ns: &str,
    argocd_ns: &str,
    queued: Arc<AtomicBool>,
) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let apps: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        argocd_ns,
        &barge_argocd_double::api_resource(),
    );
    let api = Api::<Promotion>::namespaced(client, ns);
    let watch = watcher(api, watcher::Config::default())
        .applied_objects()
        .try_for_each(move |p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let other = if name == UAT_FIRST {
                UAT_SECOND
            } else {
                UAT_FIRST
            };
            let waiting = p.status.as_ref().is_some_and(|s| {
                s.phase == Some(PromotionPhase::Pending)
                    && s.awaiting
                        .iter()
                        .any(|a| a.kind == "Promotion" && a.name.as_deref() == Some(other))
            });
            let release = (name == UAT_FIRST || name == UAT_SECOND)
                && waiting
                && !queued.swap(true, Ordering::SeqCst);
            let apps = apps.clone();
            async move {
                if release {
                    let patch = json!({"metadata": {"annotations": {OUTCOME: "succeed"}}});
                    if let Err(e) = apps
                        .patch(UAT_APP, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        eprintln!("could not release {UAT_APP}: {e}");
                    }
                }
                Ok(())
            }
        });
    tokio::spawn(async move {
        tokio::select! {
            _ = watch => {}
            _ = stopped => {}
        }
    });
    stop
}

/// What one run saw.
struct Outcome {
    behaviours: BTreeMap<&'static str, bool>,
    denied: Vec<Denied>,
    took: Duration,
    syncs: Vec<(String, usize)>,
    /// Why the controller stopped on its own, if it did.
    error: Option<String>,
}

impl Outcome {
    fn failed(&self) -> Vec<&'static str> {
        self.behaviours
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(name, _)| *name)
            .collect()
    }
}

/// One run: fresh namespaces and release, the chart's RBAC without
/// `removed`, the double, the controller with the ServiceAccount's token,
/// and the scenario, until every behaviour holds or `patience` runs out.
async fn run(
    env: &'static TestEnv,
    release: String,
    removed: Option<Rule>,
    scoped: bool,
    patience: Duration,
) -> Result<Outcome, Error> {
    let admin = env.client();
    let release_ns = env.namespace().await?;
    let ns = env.namespace().await?;
    let argocd_ns = env.namespace().await?;
    let docs = render_rbac(env, &format!("rbac-{release}"), &release_ns, &argocd_ns).await?;
    let token = apply_rbac(
        env,
        docs,
        removed.as_ref(),
        &format!("rbac-{release}"),
        &release_ns,
    )
    .await?;
    let denials = Denials::default();
    let client = client_with_token(env, &token, &denials).await?;
    // The webhook endpoint, as `barge run` serves it beside the controllers,
    // and the waker of a replica that does not reconcile.
    let endpoint = barge::webhook::start(
        client.clone(),
        scoped.then(|| ns.clone()),
        ([127, 0, 0, 1], 0).into(),
        None,
        Arc::new(Metrics::default()),
    )
    .await?;
    let standby = barge::webhook::Wakers::new(client.clone());
    let standby_woke = AtomicBool::new(false);

    let double = Double::new(
        admin.clone(),
        DoubleConfig::namespaced(&argocd_ns).with_sync_delay(SYNC_DELAY),
    )
    .spawn();
    let journal = double.journal();
    // Its own work directory: the controller sweeps those of Promotions it
    // does not know, which would include other tests' (support::Harness).
    let work_dir = tempfile::tempdir()?;
    let settings = Settings {
        backstop: BACKSTOP,
        argocd_namespace: argocd_ns.clone(),
        namespace: scoped.then(|| ns.clone()),
        work_dir: work_dir.path().to_path_buf(),
        receivers: endpoint.receivers.clone(),
        wakers: Some(endpoint.wakers.clone()),
        ..Settings::default()
    };
    // As the chart runs it with leader election: on the release's Lease.
    let leader = LeaderElection {
        namespace: release_ns.clone(),
        lease: format!("rbac-{release}-barge"),
        identity: format!("rbac-{release}-0"),
        duration: Duration::from_secs(15),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped_with = Arc::new(Mutex::new(None::<String>));
    let mut controller = {
        let stopped_with = stopped_with.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let metrics = Arc::new(Metrics::default());
            if let Err(e) = runtime::run(client, settings, metrics, Some(leader), shutdown).await
                && let Ok(mut stopped_with) = stopped_with.lock()
            {
                // The API error's first sentence is enough for the report.
                let text = e.to_string();
                let short = text.split(" (Status {").next().unwrap_or(&text);
                *stopped_with = Some(short.to_string());
            }
        })
    };
    let queued = Arc::new(AtomicBool::new(false));
    let stop_queue_watch = watch_queue(admin.clone(), &ns, &argocd_ns, queued.clone());

    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("scenario.yaml");
    let repo = barge_testenv::git::GitRepo::init()?;
    repo.write("app/config.yaml", "replicas: 1\n")?;
    repo.commit("the repository a Warehouse discovers")?;
    std::fs::write(&file, scenario(&ns, &argocd_ns, &repo.url())?)?;
    kubectl(
        env,
        vec!["apply".into(), "-f".into(), file.display().to_string()],
    )
    .await?;

    let deadline = started + patience;
    let mut seen = behaviours(&admin, &ns, &queued, &standby, &standby_woke).await?;
    while seen.values().any(|ok| !ok) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        seen = behaviours(&admin, &ns, &queued, &standby, &standby_woke).await?;
    }
    let took = started.elapsed();

    let _ = stop.send(());
    // Let it release the Lease, then make sure it is gone.
    if tokio::time::timeout(Duration::from_secs(5), &mut controller)
        .await
        .is_err()
    {
        controller.abort();
        let _ = controller.await;
    }
    let error = stopped_with.lock().ok().and_then(|e| e.clone());
    let _ = stop_queue_watch.send(());
    double.stop().await;
    drop(endpoint);

    let promotions = Api::<Promotion>::namespaced(admin.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items;
    let syncs = promotions
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .map(|name| {
            let n = journal.syncs_for_promotion(&name).len();
            (name, n)
        })
        .collect();
    Ok(Outcome {
        behaviours: seen,
        denied: denials.all(),
        took,
        syncs,
        error,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_and_every_rule_is_needed() -> TestResult {
    let env = TestEnv::shared().await?;
    let mut crd_files: Vec<PathBuf> = std::fs::read_dir(root().join("crds"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    crd_files.sort();
    let paths: Vec<&Path> = crd_files.iter().map(PathBuf::as_path).collect();
    env.apply_crd_files(&paths).await?;
    env.apply_crds(barge_argocd_double::CRD_YAML).await?;

    // 1. The chart's RBAC as rendered, the controller watching every
    //    namespace as the chart runs it: every behaviour, nothing forbidden.
    let full = run(env, "full".into(), None, false, BASELINE_PATIENCE).await?;
    println!(
        "chart RBAC: every behaviour held after {:?}; forbidden: {:?}; syncs per Promotion: {:?}",
        full.took, full.denied, full.syncs
    );
    assert!(
        full.error.is_none(),
        "the controller stopped: {:?}",
        full.error
    );
    assert!(
        full.failed().is_empty(),
        "with the chart's RBAC, behaviours failed: {:?} (forbidden: {:?})",
        full.failed(),
        full.denied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    assert!(
        full.denied.is_empty(),
        "with the chart's RBAC, requests were forbidden: {:?}",
        full.denied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    assert!(
        full.syncs
            .iter()
            .all(|(p, n)| *n == usize::from(p != DATA_PROMOTION && p != PR_PROMOTION)),
        "one Argo CD sync per Promotion that syncs: {:?}",
        full.syncs
    );

    // 2. Each rule removed in turn (each run scoped to its own namespaces so
    //    that runs cannot help each other).
    let docs = render_rbac(env, "rbac-list", "default", "argocd").await?;
    let rules = rules_of(&docs, "list");
    assert!(rules.len() >= 10, "the chart grants {} rules", rules.len());
    let runs = futures::stream::iter(rules.iter().cloned().enumerate().map(|(i, rule)| {
        let release = format!("r{i}");
        async move {
            let outcome = run(
                env,
                release,
                Some(rule.clone()),
                true,
                REMOVED_RULE_PATIENCE,
            )
            .await;
            (rule, outcome)
        }
    }))
    .buffer_unordered(PARALLEL)
    .collect::<Vec<_>>()
    .await;

    let mut report = String::from("\nrule removed → forbidden requests → behaviours that failed\n");
    let mut problems = Vec::new();
    let mut results: Vec<(Rule, Outcome)> = Vec::new();
    for (rule, outcome) in runs {
        match outcome {
            Ok(outcome) => results.push((rule, outcome)),
            Err(e) => problems.push(format!("{}: the run failed: {e}", rule.describe())),
        }
    }
    results.sort_by_key(|(rule, _)| (rule.kind.clone(), rule.role.clone(), rule.index));
    let mut failed_with = Vec::new();
    for (rule, outcome) in &results {
        let own: Vec<String> = outcome
            .denied
            .iter()
            .filter(|d| rule.allows(d))
            .map(ToString::to_string)
            .collect();
        let failed = outcome.failed();
        if let Some(error) = &outcome.error {
            failed_with.push(format!("{}: controller stopped: {error}", rule.describe()));
        }
        report.push_str(&format!(
            "- {}\n    forbidden: {}\n    failed: {} (after {:.1?})\n",
            rule.describe(),
            if own.is_empty() {
                "nothing".to_string()
            } else {
                own.join(", ")
            },
            if failed.is_empty() {
                "nothing".to_string()
            } else {
                failed.join(", ")
            },
            outcome.took
        ));
        if own.is_empty() {
            problems.push(format!(
                "{}: no request needed it (forbidden: {:?}); the rule may be unnecessary",
                rule.describe(),
                outcome
                    .denied
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ));
        }
        if failed.is_empty() {
            problems.push(format!(
                "{}: every behaviour still held without it",
                rule.describe()
            ));
        }
    }
    for line in &failed_with {
        report.push_str(&format!("{line}\n"));
    }
    report.push_str("behaviours:\n");
    for (name, what) in BEHAVIOURS {
        report.push_str(&format!("  {name}: {what}\n"));
    }
    println!("{report}");
    assert!(problems.is_empty(), "{report}\n{}", problems.join("\n"));
    Ok(())
}
