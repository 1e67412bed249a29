//! What the reconcilers' unit tests are built from: an API server in
//! memory that answers reads from the objects it was given and records
//! every write, caches filled without a watch, builders for the objects, and
//! step runners whose outcome the test chooses. "Given these objects, the
//! reconcile writes this", without a real API server.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Context;
use super::stage::StageContext;
use crate::api::{Freight, Promotion, Stage};
use crate::argocd::{AppScope, Application};
use crate::await_index::{AwaitTarget, SharedAwaitIndex};
use crate::metrics::Metrics;
use crate::promotion::engine::{StepError, StepResult};
use crate::steps::tools::Tools;
use crate::steps::workdir::WorkDirs;
use crate::steps::{Registry, Services, StepContext, StepRun, StepRunner};

/// The backstop of the reconcilers under test: long, so a requeue that
/// depends on it is told apart from one that does not.
pub const BACKSTOP: Duration = Duration::from_secs(3600);

/// One request the reconcile made.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The query string, empty if there is none.
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// What a test runs when a write reaches the server.
type WriteHook = dyn Fn(&Recorded) + Send + Sync;

#[derive(Default)]
struct State {
    /// Object path → the object.
    objects: BTreeMap<String, Value>,
    /// Object paths whose reads fail as if the API server were down.
    failing: BTreeSet<String>,
    requests: Vec<Recorded>,
    next_uid: u64,
    /// Object paths whose next write is refused with 409 Conflict.
    conflicting: BTreeSet<String>,
    /// Writes whose body is larger are refused, as etcd refuses them.
    largest_write: Option<usize>,
    /// Called with every write as it arrives, before it is answered.
    on_write: Option<Arc<WriteHook>>,
}

/// An API server in memory.
#[derive(Clone, Default)]
pub struct FakeApi(Arc<Mutex<State>>);

fn object_path<K: Resource<DynamicType = ()>>(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", K::url_path(&(), namespace))
}

impl FakeApi {
    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked holding the lock has failed already.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serves `object` to reads.
    pub fn with<K>(self, object: &K) -> Self
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let path = object_path::<K>(object.meta().namespace.as_deref(), &object.name_any());
        let mut value = serde_json::to_value(object).unwrap_or_else(|e| panic!("fixture: {e}"));
        if value.pointer("/metadata/resourceVersion").is_none() {
            value["metadata"]["resourceVersion"] = json!("1");
        }
        self.state().objects.insert(path, value);
        self
    }

    /// Reads of this object fail with 500 Internal Server Error.
    pub fn failing<K: Resource<DynamicType = ()>>(
        self,
        namespace: Option<&str>,
        name: &str,
    ) -> Self {
        self.state()
            .failing
            .insert(object_path::<K>(namespace, name));
        self
    }

    /// The next write to this object is refused with 409 Conflict, as when
    /// someone else wrote it after our read.
    pub fn conflict_once<K: Resource<DynamicType = ()>>(
        self,
        namespace: Option<&str>,
        name: &str,
    ) -> Self {
        self.state()
            .conflicting
            .insert(object_path::<K>(namespace, name));
        self
    }

    /// Writes whose JSON body is more than `bytes` are refused as the API
    /// server refuses an object too large for etcd (500, "etcdserver:
    /// request is too large").
    pub fn refusing_writes_over(self, bytes: usize) -> Self {
        self.state().largest_write = Some(bytes);
        self
    }

    /// Calls `hook` with every write at the moment it reaches the server.
    pub fn on_write(&self, hook: impl Fn(&Recorded) + Send + Sync + 'static) {
        self.state().on_write = Some(Arc::new(hook));
    }

    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.serve(request).await) }
        });
        Client::new(service, "default")
    }

    /// The object at `path` as the server holds it now.
    pub fn object<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) -> Value {
        let path = object_path::<K>(Some(namespace), name);
        self.state()
            .objects
            .get(&path)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Every request that was not a read.
    pub fn writes(&self) -> Vec<Recorded> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method != "GET")
            .cloned()
            .collect()
    }

    /// The writes to one object's status, in order.
    pub fn status_writes<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<Recorded> {
        let path = format!("{}/status", object_path::<K>(Some(namespace), name));
        self.writes()
            .into_iter()
            .filter(|w| w.path == path)
            .collect()
    }

    /// The status the last write to one Promotion's status left (the
    /// writes are merge patches of what changed).
    pub fn promotion_status(&self, name: &str) -> Value {
        if self.status_writes::<Promotion>("demo", name).is_empty() {
            panic!("no status was written to Promotion {name}");
        }
        self.object::<Promotion>("demo", name)["status"].clone()
    }

    /// The objects created in a collection.
    pub fn created<K: Resource<DynamicType = ()>>(&self, namespace: &str) -> Vec<Value> {
        let collection = K::url_path(&(), Some(namespace));
        self.writes()
            .into_iter()
            .filter(|w| w.method == "POST" && w.path == collection)
            .map(|w| w.body)
            .collect()
    }

    /// The reasons of the Events published, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.writes()
            .into_iter()
            .filter(|w| w.path.starts_with("/apis/events.k8s.io/"))
            .map(|w| w.body["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(e) => return answer(StatusCode::BAD_REQUEST, &status_body(400, &e.to_string())),
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let recorded = Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body,
        };
        let hook = self.state().on_write.clone();
        if let Some(hook) = hook.filter(|_| recorded.method != "GET") {
            hook(&recorded);
        }
        let mut state = self.state();
        state.requests.push(recorded.clone());
        state.answer(&recorded)
    }
}

impl State {
    fn answer(&mut self, request: &Recorded) -> Response<Body> {
        let path = request.path.as_str();
        match request.method.as_str() {
            "GET" if self.failing.contains(path) => answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &status_body(500, "etcd is down"),
            ),
            "GET" if is_collection(path) => self.list(path, &request.query),
            "GET" => match self.objects.get(path) {
                Some(object) => answer(StatusCode::OK, object),
                None => not_found(path),
            },
            "PATCH" | "POST" if self.conflicting.remove(path) => answer(
                StatusCode::CONFLICT,
                &status_body(409, "the object has been modified"),
            ),
            "PATCH" | "POST"
                if self
                    .largest_write
                    .is_some_and(|n| request.body.to_string().len() > n) =>
            {
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &status_body(500, "etcdserver: request is too large"),
                )
            }
            "POST" => self.create(path, &request.body),
            "PATCH" => self.patch(path, &request.content_type, &request.body),
            _ => answer(StatusCode::METHOD_NOT_ALLOWED, &status_body(405, path)),
        }
    }

    /// The objects of a collection whose labels have every `key=value` of
    /// the selector.
    fn list(&self, collection: &str, query: &str) -> Response<Body> {
        let selector = query
            .split('&')
            .find_map(|p| p.strip_prefix("labelSelector="))
            .unwrap_or_default()
            .replace("%3D", "=")
            .replace("%2F", "/")
            .replace("%2C", ",");
        let wanted: Vec<(&str, &str)> = selector
            .split(',')
            .filter_map(|term| term.split_once('='))
            .collect();
        let prefix = format!("{collection}/");
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(path, _)| {
                path.strip_prefix(&prefix)
                    .is_some_and(|name| !name.contains('/'))
            })
            .filter(|(_, object)| {
                wanted
                    .iter()
                    .all(|(k, v)| object["metadata"]["labels"][*k] == *v)
            })
            .map(|(_, object)| object.clone())
            .collect();
        answer(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
        )
    }

    fn create(&mut self, collection: &str, body: &Value) -> Response<Body> {
        let name = body["metadata"]["name"].as_str().unwrap_or_default();
        let path = format!("{collection}/{name}");
        if self.objects.contains_key(&path) {
            let message = format!("{path} already exists");
            return answer(StatusCode::CONFLICT, &status_body(409, &message));
        }
        self.next_uid += 1;
        let mut object = body.clone();
        object["metadata"]["uid"] = json!(format!("uid-{}", self.next_uid));
        self.objects.insert(path, object.clone());
        answer(StatusCode::CREATED, &object)
    }

    fn patch(&mut self, path: &str, content_type: &str, body: &Value) -> Response<Body> {
        let object_path = path.strip_suffix("/status").unwrap_or(path);
        if object_path.starts_with("/apis/events.k8s.io/") {
            return answer(StatusCode::OK, body);
        }
        let Some(object) = self.objects.get_mut(object_path) else {
            return not_found(object_path);
        };
        // A resourceVersion in the patch is a precondition, as on the API server.
        let current = object["metadata"]["resourceVersion"].clone();
        if let Some(expected) = body.pointer("/metadata/resourceVersion")
            && *expected != current
        {
            let message = format!("{object_path}: the object has been modified");
            return answer(StatusCode::CONFLICT, &status_body(409, &message));
        }
        let next = current
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(1, |v| v + 1);
        if content_type.starts_with("application/json-patch") {
            let applied = serde_json::from_value::<json_patch::Patch>(body.clone())
                .map_err(|e| e.to_string())
                .and_then(|p| json_patch::patch(object, &p).map_err(|e| e.to_string()));
            if let Err(e) = applied {
                return answer(StatusCode::UNPROCESSABLE_ENTITY, &status_body(422, &e));
            }
        } else if content_type.starts_with("application/apply-patch") {
            // The controller applies its whole status: what it leaves out it no longer owns.
            object["status"] = body["status"].clone();
        } else {
            merge(object, body);
        }
        object["metadata"]["resourceVersion"] = json!(next.to_string());
        answer(StatusCode::OK, object)
    }
}

/// Whether `path` names a collection (`/api/v1/namespaces/demo/secrets`)
/// rather than one object.
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let namespaced = parts.get(2) == Some(&"namespaces") || parts.get(3) == Some(&"namespaces");
    match (parts.first().copied(), namespaced) {
        (Some("api"), true) => parts.len() == 5,
        (Some("api"), false) => parts.len() == 3,
        (Some("apis"), true) => parts.len() == 6,
        (Some("apis"), false) => parts.len() == 4,
        _ => false,
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if let Value::Object(map) = target {
            if value.is_null() {
                map.remove(key);
            } else {
                merge(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn status_body(code: u16, message: &str) -> Value {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        _ => "InternalError",
    };
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "reason": reason, "code": code, "message": message})
}

fn not_found(path: &str) -> Response<Body> {
    answer(
        StatusCode::NOT_FOUND,
        &status_body(404, &format!("{path} not found")),
    )
}

fn answer(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string().into_bytes()));
    *response.status_mut() = status;
    response
}

/// A cache that has listed `objects`, as a reflector fills it.
pub fn cache<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store::<K>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// The Promotion reconciler's context over `api`, with the step kinds of
/// `registry`, and the receiver of the wake-ups it sends.
pub fn promotion_context(
    api: &FakeApi,
    registry: Registry,
    promotions: Vec<Promotion>,
    applications: Vec<Application>,
) -> (Arc<Context>, mpsc::UnboundedReceiver<ObjectRef<Promotion>>) {
    let client = api.client();
    let (wake, woken) = mpsc::unbounded();
    let index = SharedAwaitIndex::default();
    let ctx = Context {
        services: Services {
            client: client.clone(),
            applications: cache(applications),
            argocd_namespace: "argocd".into(),
            waits: index.clone(),
            app_scope: AppScope::Only("argocd".into()),
            work_dirs: WorkDirs::new(unique_work_root()),
            tools: test_tools(),
            receivers: crate::webhook::Receivers::default(),
        },
        registry,
        promotions: cache(promotions),
        index,
        wake,
        recorder: Recorder::new(client, Reporter::from(crate::CONTROLLER_NAME)),
        backstop: BACKSTOP,
        metrics: Arc::new(Metrics::default()),
        trust_create_actor: false,
        backoff: Default::default(),
    };
    (Arc::new(ctx), woken)
}

/// The rendering tools: those `make control-plane` built when
/// `BARGE_K8S_BIN` names their directory, else whatever is on PATH.
fn test_tools() -> Tools {
    match std::env::var_os("BARGE_K8S_BIN") {
        Some(bin) => {
            let bin = std::path::PathBuf::from(bin);
            Tools {
                kustomize: bin.join("kustomize"),
                helm: bin.join("helm"),
                ..Tools::default()
            }
        }
        None => Tools::default(),
    }
}

/// A work-directory root no other test uses.
fn unique_work_root() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir()
        .join("barge-unit-tests")
        .join(format!("{}-{n}", std::process::id()))
}

/// The Stage reconciler's context over `api`.
pub fn stage_context(
    api: &FakeApi,
    promotions: Vec<Promotion>,
    freight: Vec<Freight>,
    applications: Vec<Application>,
) -> Arc<StageContext> {
    // As the watch does: the newest ended Promotions kept in full, the cache thin.
    let last_promotions = Arc::new(super::last_promotions::LastPromotions::default());
    let promotions = promotions
        .into_iter()
        .map(|mut p| {
            last_promotions.observe(&p);
            super::slim_promotion(&mut p);
            p
        })
        .collect();
    Arc::new(StageContext {
        recorder: kube::runtime::events::Recorder::new(
            api.client(),
            kube::runtime::events::Reporter::from(crate::CONTROLLER_NAME),
        ),
        project_configs: cache(Vec::new()),
        client: api.client(),
        applications: cache(applications),
        app_scope: AppScope::Only("argocd".into()),
        promotions: cache(promotions),
        last_promotions,
        freight: cache(freight),
        index: SharedAwaitIndex::default(),
        backstop: BACKSTOP,
        metrics: Arc::new(Metrics::default()),
        freight_writes: Default::default(),
        backoff: Default::default(),
    })
}

/// An object of the tests, written as its JSON.
pub struct Fixture<K> {
    json: Value,
    kind: std::marker::PhantomData<K>,
}

impl<K: DeserializeOwned> Fixture<K> {
    fn new(json: Value) -> Self {
        Self {
            json,
            kind: std::marker::PhantomData,
        }
    }

    /// Sets the field at a JSON pointer (`/spec/stage`), creating objects on the way.
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        let mut at = &mut self.json;
        for key in pointer.split('/').skip(1) {
            if !at.is_object() {
                *at = json!({});
            }
            at = match at {
                Value::Object(map) => map.entry(key.to_string()).or_insert(Value::Null),
                _ => unreachable!("made an object above"),
            };
        }
        *at = value;
        self
    }

    /// A fixture that does not parse is a broken test, never a default.
    pub fn build(self) -> K {
        serde_json::from_value(self.json).unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }
}

fn at(second: i64) -> String {
    jiff::Timestamp::from_second(1_800_000_000 + second)
        .map(|t| t.to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Promotion `name` of Freight `f1` to Stage `dev` in namespace `demo`,
/// created at second `created` of the tests' clock.
pub fn promotion(name: &str, created: i64) -> Fixture<Promotion> {
    Fixture::new(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-{name}"),
                     "creationTimestamp": at(created)},
        "spec": {"stage": "dev", "freight": "f1"},
    }))
}

impl Fixture<Promotion> {
    /// Running with its plan frozen: `steps` as they were inflated.
    pub fn running(self, steps: Value) -> Self {
        self.set("/status/phase", json!("Running"))
            .set("/status/plan", json!({"steps": steps}))
            .set(
                "/status/freight",
                json!({"name": "f1", "origin": {"kind": "Warehouse", "name": "w"}}),
            )
    }
}

/// Stage `dev` in namespace `demo`, whose promotion template runs `steps`.
pub fn stage(steps: Value) -> Fixture<Stage> {
    Fixture::new(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
        "metadata": {"name": "dev", "namespace": "demo", "uid": "uid-dev"},
        "spec": {"requestedFreight": [{"origin": {"kind": "Warehouse", "name": "w"}, "sources": {"direct": true}}],
                 "promotionTemplate": {"spec": {"steps": steps}}},
    }))
}

/// Freight `name` from Warehouse `w` in namespace `demo`, created at second
/// `created` of the tests' clock.
pub fn freight(name: &str, created: i64) -> Fixture<Freight> {
    Fixture::new(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
        "metadata": {"name": name, "namespace": "demo", "creationTimestamp": at(created)},
        "origin": {"kind": "Warehouse", "name": "w"},
        "commits": [{"repoURL": "https://git.example/app.git", "id": name}],
    }))
}

/// Application `name` in namespace `argocd`, synced to `revision` and
/// reporting `health`.
pub fn application(name: &str, revision: &str, health: &str) -> Fixture<Application> {
    Fixture::new(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"source": {"repoURL": "https://git.example/app.git", "targetRevision": revision}},
        "status": {
            "sync": {"status": "Synced", "revision": revision},
            "health": {"status": health},
            "operationState": {"phase": "Succeeded", "syncResult": {"revision": revision},
                               "startedAt": at(0), "finishedAt": at(5)},
            "reconciledAt": at(10),
        },
    }))
}

/// What a scripted step does when it runs.
pub type Script = dyn Fn(&StepContext<'_>) -> StepRun + Send + Sync;

/// A step kind whose every run the test decides.
pub struct ScriptedStep {
    kind: &'static str,
    script: Box<Script>,
}

impl StepRunner for ScriptedStep {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn run<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepRun> {
        let run = (self.script)(ctx);
        Box::pin(async move { run })
    }
}

/// A registry of exactly the scripted kinds given.
pub fn registry(steps: Vec<ScriptedStep>) -> Registry {
    let mut registry = Registry::default();
    for step in steps {
        registry.register(Arc::new(step));
    }
    registry
}

/// `kind` runs as `script` says.
pub fn scripted(
    kind: &'static str,
    script: impl Fn(&StepContext<'_>) -> StepRun + Send + Sync + 'static,
) -> ScriptedStep {
    ScriptedStep {
        kind,
        script: Box::new(script),
    }
}

/// `kind` succeeds at once with `output`.
pub fn succeeds(kind: &'static str, output: Value) -> ScriptedStep {
    scripted(kind, move |_| {
        let mut result = StepResult::new(crate::api::PromotionStepStatus::Succeeded);
        result.output = Some(output.clone());
        StepRun::done(Ok(result))
    })
}

/// `kind` fails for good with `message`.
pub fn fails(kind: &'static str, message: &'static str) -> ScriptedStep {
    scripted(kind, move |_| {
        StepRun::done(Err(StepError {
            message: message.into(),
            terminal: true,
            unavailable: false,
        }))
    })
}

/// `kind` keeps running, waiting on Application `app` in `argocd`.
pub fn waits_on_application(kind: &'static str, app: &'static str) -> ScriptedStep {
    scripted(kind, move |_| StepRun {
        result: Ok(StepResult::new(crate::api::PromotionStepStatus::Running)),
        awaiting: vec![AwaitTarget::Named {
            kind: "Application".into(),
            namespace: "argocd".into(),
            name: app.into(),
        }],
    })
}

/// Runs `plan` (built-in steps, and `hold`, which keeps the Promotion
/// running) for p1 over a work directory holding `files`; returns the
/// status written and the work directory.
pub async fn run_in_work_dir(plan: Value, files: &[&str]) -> (Value, std::path::PathBuf) {
    let files: Vec<(&str, &str)> = files.iter().map(|f| (*f, "x")).collect();
    run_over_files(plan, &files).await
}

/// [`run_in_work_dir`] with the files' contents.
pub async fn run_over_files(plan: Value, files: &[(&str, &str)]) -> (Value, std::path::PathBuf) {
    let mut run = PlanRun::default();
    for (path, text) in files {
        run = run.file(path, text);
    }
    run.run(plan).await
}

/// One reconcile of p1 running a plan over a work directory: the built-in
/// steps, `hold` (which keeps the Promotion running), the test's own steps,
/// and the objects the steps read (Secrets, say).
pub struct PlanRun {
    api: FakeApi,
    kinds: Registry,
    files: Vec<(String, String)>,
    resumed_at: usize,
    collection: Option<Value>,
    work_dir_limit: Option<u64>,
}

impl Default for PlanRun {
    fn default() -> Self {
        let mut kinds = Registry::builtin();
        kinds.register(Arc::new(waits_on_application("hold", "dev-app")));
        Self {
            api: FakeApi::default(),
            kinds,
            files: Vec::new(),
            resumed_at: 0,
            collection: None,
            work_dir_limit: None,
        }
    }
}

impl PlanRun {
    /// Serves `object` to the steps' reads.
    pub fn with<K>(mut self, object: &K) -> Self
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        self.api = self.api.with(object);
        self
    }

    /// The API server the run talks to.
    pub fn api(&self) -> FakeApi {
        self.api.clone()
    }

    /// Adds a step kind of the test's own.
    pub fn step(mut self, step: ScriptedStep) -> Self {
        self.kinds.register(Arc::new(step));
        self
    }

    /// Puts `text` at `path` in the work directory before the run.
    pub fn file(mut self, path: &str, text: &str) -> Self {
        self.files.push((path.to_string(), text.to_string()));
        self
    }

    /// The Freight the Stage will hold, by origin key, as the Promotion's
    /// `status.freightCollection.items`.
    pub fn freight_collection(mut self, items: Value) -> Self {
        self.collection = Some(json!({"id": "c1", "items": items}));
        self
    }

    /// Limits the Promotion's files to `bytes`.
    pub fn work_dir_limit(mut self, bytes: u64) -> Self {
        self.work_dir_limit = Some(bytes);
        self
    }

    /// Starts from step `step`, every earlier one recorded Succeeded, as a
    /// controller that restarted finds the Promotion.
    pub fn resumed_at(mut self, step: usize) -> Self {
        self.resumed_at = step;
        self
    }

    /// Reconciles p1 once; returns the status written and the work
    /// directory (gone unless the Promotion still runs).
    pub async fn run(self, plan: Value) -> (Value, std::path::PathBuf) {
        let done: Vec<Value> = plan
            .as_array()
            .into_iter()
            .flatten()
            .take(self.resumed_at)
            .map(|step| json!({"alias": step["as"], "status": "Succeeded"}))
            .collect();
        let p1 = promotion("p1", 0)
            .running(plan)
            .set("/status/currentStep", json!(self.resumed_at))
            .set("/status/stepExecutionMetadata", json!(done))
            .set(
                "/status/freightCollection",
                self.collection.unwrap_or(Value::Null),
            )
            .build();
        let api = self.api.with(&p1);
        let (ctx, _) = promotion_context(&api, self.kinds, vec![p1.clone()], vec![]);
        let ctx = match (self.work_dir_limit, Arc::try_unwrap(ctx)) {
            (Some(limit), Ok(mut ctx)) => {
                ctx.services.work_dirs = ctx.services.work_dirs.clone().with_limit(limit);
                Arc::new(ctx)
            }
            (_, Ok(ctx)) => Arc::new(ctx),
            (_, Err(ctx)) => ctx,
        };
        let dir = ctx.services.work_dirs.of("uid-p1");
        for (file, text) in &self.files {
            let path = dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        }
        super::promotion::reconcile(Arc::new(p1), ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (api.promotion_status("p1"), dir)
    }
}
