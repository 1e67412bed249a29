//! Hostile input, end to end: every fixture of `tests/fixtures/hostile/`
//! (one YAML file per case) is sent through a real kube-apiserver to one
//! controller, and must end its Promotion in the expected phase with a
//! message containing the expected text, or be refused by the API server
//! when the fixture says it is (`expect.admission`). Meanwhile ordinary
//! Promotions on other Stages must still succeed: they run once before the
//! hostile cases (the baseline), after every 15 cases created and once
//! more when all are (under load), and their latencies (created → seen
//! Succeeded) are printed, not asserted. A last round after every case has
//! ended shows the controller survived them all.
//!
//! A fixture holds:
//!
//! - `about`: what the case is;
//! - `stage`: the promotion template (`steps`, and `vars` as the Stage's
//!   `spec.vars`) of Stage `<case>`, which takes Freight from Warehouse
//!   `demo` directly;
//! - `promotion`: fields added to the spec of Promotion `<case>` (of Freight
//!   `f1`, commit `abc1234`, to Stage `<case>`), which is created unless
//!   `objects` brings its own Promotion;
//! - `objects`: more objects (tasks, Freight, ConfigMaps, a Promotion);
//! - `applications`: Applications authorizing Stage `<case>`, with a
//!   `status` to start from;
//! - `repo`: files of the shared git repository `${REPO}`, under `<case>/`:
//!   their text, or `{text, times, prefix, suffix}` as in `generate`;
//! - `generate`: what is too big to commit, built into the objects above:
//!   `{object: Kind/name, at: /json/pointer}` and one of `repeat: N, item:
//!   <value>` (a list of N items, `{i}` and `{prev}` in its strings replaced
//!   by 1..=N and i-1), `text: <s>, times: N` (a string, between optional
//!   `prefix` and `suffix`), or `nest: N, leaf: <value>` (N nested lists, or
//!   objects with `key`);
//! - `raw`: JSON texts sent as they are (`{resource: stages, json: ...}`),
//!   for what serde cannot write (lone surrogates, duplicate keys);
//! - `expect`: `phase` and `message` (a substring, or a list of them), or
//!   `admission` (a substring of the API server's refusal).
//!
//! Fixtures in `pending/` (none at present) are not run: each documents a defect not fixed
//! yet (what was seen, what is expected).
//!
//! In the fixtures' text, `${NS}`, `${ARGOCD_NS}`, `${CASE}` and `${REPO}`
//! are replaced before parsing.
//!
//! `HOSTILE_CASES=<name>,<name>` runs only those fixtures (to look into one),
//! and `HOSTILE_LOG=<filter>` (as `RUST_LOG`) prints the controller's log.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use barge::api::PromotionPhase;
use barge_testenv::git::GitRepo;
use kube::Client;
use serde::Deserialize;
use serde_json::{Value, json};
use support::{Harness, TestResult, message};

/// Ordinary Stages, each with its own Application.
const ORDINARY: usize = 4;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    about: String,
    #[serde(default)]
    stage: Option<Value>,
    #[serde(default)]
    promotion: Option<Value>,
    #[serde(default)]
    objects: Vec<Value>,
    #[serde(default)]
    applications: Vec<AppFixture>,
    /// Read by [`repository`], before the placeholders are filled in.
    #[serde(default)]
    #[allow(dead_code)]
    repo: BTreeMap<String, Value>,
    #[serde(default)]
    generate: Vec<Generate>,
    #[serde(default)]
    raw: Vec<Raw>,
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppFixture {
    name: String,
    #[serde(default)]
    status: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generate {
    #[serde(default)]
    object: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    repeat: Option<usize>,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    times: Option<usize>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    suffix: String,
    #[serde(default)]
    nest: Option<usize>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    leaf: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    resource: String,
    json: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    message: Option<Substrings>,
    #[serde(default)]
    admission: Option<String>,
}

/// What a message must contain: one substring or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Substrings {
    One(String),
    All(Vec<String>),
}

impl Substrings {
    fn all(&self) -> Vec<&str> {
        match self {
            Substrings::One(one) => vec![one],
            Substrings::All(all) => all.iter().map(String::as_str).collect(),
        }
    }
}

/// One fixture, named by its file.
struct Case {
    name: String,
    fixture: Fixture,
}

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

/// Every fixture, with the placeholders filled in.
fn load(h: &Harness, repo_url: &str) -> Result<Vec<Case>, support::Error> {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let only: Option<Vec<String>> = std::env::var("HOSTILE_CASES")
        .ok()
        .map(|names| names.split(',').map(|n| n.trim().to_string()).collect());
    let mut cases = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("fixture name")?
            .to_string();
        if only.as_ref().is_some_and(|only| !only.contains(&name)) {
            continue;
        }
        let text = std::fs::read_to_string(&file)?
            .replace("${NS}", &h.ns)
            .replace("${ARGOCD_NS}", &h.argocd_ns)
            .replace("${CASE}", &name)
            .replace("${REPO}", repo_url);
        let value: Value = serde_saphyr::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        let fixture: Fixture = serde_json::from_value(value).map_err(|e| format!("{name}: {e}"))?;
        cases.push(Case { name, fixture });
    }
    Ok(cases)
}

/// The git repository every case's `repo` files are in, under `<case>/`.
fn repository() -> Result<GitRepo, support::Error> {
    let repo = GitRepo::init()?;
    repo.write("README.md", "hostile fixtures\n")?;
    for entry in std::fs::read_dir(fixture_dir())? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let text = std::fs::read_to_string(&path)?;
        let value: Value = serde_saphyr::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        if let Some(files) = value.get("repo").and_then(Value::as_object) {
            for (file, content) in files {
                let text = match content {
                    Value::String(text) => text.clone(),
                    spec => match serde_json::from_value::<Generate>(spec.clone())?.value()? {
                        Value::String(text) => text,
                        other => other.to_string(),
                    },
                };
                repo.write(&format!("{name}/{file}"), &text)?;
            }
        }
    }
    repo.commit("hostile fixtures")?;
    Ok(repo)
}

impl Case {
    /// The objects of the case, generated parts included, Promotion last.
    fn objects(&self, h: &Harness) -> Result<Vec<Value>, support::Error> {
        let f = &self.fixture;
        let mut objects = f.objects.clone();
        for app in &f.applications {
            let mut object = h.application(&app.name, &self.name);
            if let Some(status) = &app.status {
                object["status"] = status.clone();
            }
            objects.push(object);
        }
        if let Some(stage) = &f.stage {
            let mut object = support::stage(&self.name, stage["steps"].clone());
            if let Some(vars) = stage.get("vars") {
                object["spec"]["vars"] = vars.clone();
            }
            objects.push(object);
        }
        if !objects.iter().any(|o| o["kind"] == "Promotion") {
            let mut object = support::promotion(&self.name, &self.name, "f1");
            if let Some(Value::Object(extra)) = &f.promotion {
                for (k, v) in extra {
                    object["spec"][k] = v.clone();
                }
            }
            objects.push(object);
        }
        for generate in &f.generate {
            let target = objects
                .iter_mut()
                .find(|o| {
                    format!(
                        "{}/{}",
                        o["kind"].as_str().unwrap_or(""),
                        o["metadata"]["name"].as_str().unwrap_or("")
                    ) == generate.object
                })
                .ok_or_else(|| format!("{}: no object {}", self.name, generate.object))?;
            set(target, &generate.at, generate.value()?);
        }
        // Promotions last: what they refer to exists when they start.
        objects.sort_by_key(|o| o["kind"] == "Promotion");
        Ok(objects)
    }

    /// The Promotion the case ends.
    fn promotion(&self) -> String {
        self.fixture
            .objects
            .iter()
            .find(|o| o["kind"] == "Promotion")
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap_or(&self.name)
            .to_string()
    }

    /// Creates the case's objects; the API server's refusal, if any.
    async fn create(&self, h: &Harness) -> Result<Option<String>, support::Error> {
        for raw in &self.fixture.raw {
            let path = collection_path(&h.ns, "barge.dev/v1alpha1", &raw.resource);
            if let Err(e) = post(&h.client, &path, raw.json.clone().into_bytes()).await {
                return Ok(Some(e));
            }
        }
        for object in self.objects(h)? {
            if let Err(e) = create(h, &object).await {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

impl Generate {
    fn value(&self) -> Result<Value, support::Error> {
        if let (Some(n), Some(item)) = (self.repeat, &self.item) {
            return Ok(Value::Array((1..=n).map(|i| numbered(item, i)).collect()));
        }
        if let (Some(text), Some(times)) = (&self.text, self.times) {
            return Ok(Value::String(format!(
                "{}{}{}",
                self.prefix,
                text.repeat(times),
                self.suffix
            )));
        }
        if let Some(depth) = self.nest {
            let mut value = self.leaf.clone().unwrap_or(json!(1));
            for _ in 0..depth {
                value = match &self.key {
                    Some(key) => json!({ key: value }),
                    None => json!([value]),
                };
            }
            return Ok(value);
        }
        Err(format!("generate at {}: nothing to generate", self.at).into())
    }
}

/// `item` with `{i}` and `{prev}` replaced by `i` and `i - 1`, in keys and
/// strings.
fn numbered(item: &Value, i: usize) -> Value {
    let fill = |s: &str| {
        s.replace("{i}", &i.to_string())
            .replace("{prev}", &(i - 1).to_string())
    };
    match item {
        Value::String(s) => Value::String(fill(s)),
        Value::Array(items) => Value::Array(items.iter().map(|v| numbered(v, i)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (fill(k), numbered(v, i))).collect())
        }
        other => other.clone(),
    }
}

/// Sets `value` at JSON pointer `at`, creating the objects on the way.
fn set(target: &mut Value, at: &str, value: Value) {
    let mut here = target;
    let tokens: Vec<&str> = at.split('/').skip(1).collect();
    for (n, token) in tokens.iter().enumerate() {
        let last = n + 1 == tokens.len();
        here = match here {
            Value::Array(items) => {
                let i: usize = token.parse().unwrap();
                &mut items[i]
            }
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                let map = other.as_object_mut().unwrap();
                map.entry(token.to_string()).or_insert(Value::Null)
            }
        };
        if last {
            *here = value;
            return;
        }
    }
}

fn collection_path(ns: &str, api_version: &str, plural: &str) -> String {
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    if plural == "clusterpromotiontasks" {
        format!("{prefix}/{plural}")
    } else {
        format!("{prefix}/namespaces/{ns}/{plural}")
    }
}

/// POSTs a body as it is; the API server's refusal as text.
async fn post(client: &Client, path: &str, body: Vec<u8>) -> Result<(), String> {
    let request = http::Request::post(path)
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Creates an object from its JSON, read back by nobody here: a reply
/// serde could not read (too deep, say) must not fail the test.
async fn create(h: &Harness, object: &Value) -> Result<(), String> {
    let kind = object["kind"].as_str().unwrap_or("");
    let plural = format!("{}s", kind.to_lowercase());
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let ns = object["metadata"]["namespace"].as_str().unwrap_or(&h.ns);
    let path = collection_path(ns, api_version, &plural);
    let body = serde_json::to_vec(object).map_err(|e| e.to_string())?;
    post(&h.client, &path, body).await
}

/// Ordinary Stage `ordinary-k`, syncing its own Application.
fn ordinary_objects(h: &Harness) -> Vec<Value> {
    let mut objects = vec![h.freight("f1", support::COMMIT)];
    for k in 1..=ORDINARY {
        let app = h.app_name(&format!("ordinary-{k}"));
        objects.push(h.application(&app, &format!("ordinary-{k}")));
        objects.push(support::stage(
            &format!("ordinary-{k}"),
            json!([Harness::update_app(&app)]),
        ));
    }
    objects
}

/// Promotes `f1` to every ordinary Stage at once; each one's time from
/// creation to Succeeded, as seen through a watch.
/// How long a case may take to end. The cases are expensive by design (a
/// chain of 10,000 vars, plans at the step limit), and CI runs this beside
/// other test binaries and builds; each case's time is printed.
const CASE_PATIENCE: Duration = Duration::from_secs(300);

async fn ordinary_round(h: &Harness, round: &str) -> Result<Vec<Duration>, support::Error> {
    let names: Vec<String> = (1..=ORDINARY).map(|k| format!("{round}-{k}")).collect();
    let mut waits = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let created = Instant::now();
        h.apply(support::promotion(
            name,
            &format!("ordinary-{}", k + 1),
            "f1",
        ))
        .await?;
        waits.push(async move {
            let p = h.finished(name).await?;
            Ok::<_, support::Error>((created.elapsed(), p))
        });
    }
    let mut latencies = Vec::new();
    for (name, result) in names.iter().zip(futures::future::join_all(waits).await) {
        let (took, p) = result?;
        assert_eq!(
            p.phase(),
            PromotionPhase::Succeeded,
            "ordinary Promotion {name}: {}",
            message(&p)
        );
        latencies.push(took);
    }
    Ok(latencies)
}

fn summary(latencies: &[Duration]) -> String {
    let ms: Vec<String> = latencies
        .iter()
        .map(|d| d.as_millis().to_string())
        .collect();
    let max = latencies.iter().max().copied().unwrap_or_default();
    format!("[{}] ms, max {} ms", ms.join(", "), max.as_millis())
}

/// A message cut for the table, on one line.
fn short(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut cut: String = one_line.chars().take(240).collect();
    if cut.len() < one_line.len() {
        cut.push('…');
    }
    cut
}

/// What went wrong with a case, if anything, and its row of the table,
/// with the time from the Promotion's creation to its end (the API
/// server's clock, whole seconds; printed, not asserted).
async fn verify(h: &Harness, case: &Case, refused: Option<String>) -> (String, Option<String>) {
    let expect = &case.fixture.expect;
    if let Some(admission) = &expect.admission {
        return match refused {
            Some(e) if e.contains(admission.as_str()) => (
                format!("{} | refused at admission | {}", case.name, short(&e)),
                None,
            ),
            Some(e) => (
                format!("{} | refused | {}", case.name, short(&e)),
                Some(format!(
                    "{}: refused, but not with {admission:?}: {e}",
                    case.name
                )),
            ),
            None => (
                format!("{} | accepted", case.name),
                Some(format!(
                    "{}: accepted, expected a refusal with {admission:?}",
                    case.name
                )),
            ),
        };
    }
    if let Some(e) = refused {
        return (
            format!("{} | refused | {}", case.name, short(&e)),
            Some(format!("{}: refused by the API server: {e}", case.name)),
        );
    }
    let promotion = case.promotion();
    let p = match h.finished_within(&promotion, CASE_PATIENCE).await {
        Ok(p) => p,
        Err(e) => {
            return (
                format!("{} | did not finish |", case.name),
                Some(format!("{}: {}", case.name, short(&e.to_string()))),
            );
        }
    };
    let phase = p.phase().to_string();
    let text = message(&p);
    let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let finished = p
        .status
        .as_ref()
        .and_then(|s| s.finished_at.as_ref())
        .map(|t| t.0);
    let took = match (created, finished) {
        (Some(c), Some(f)) => format!("{} s", f.duration_since(c).as_secs()),
        _ => "?".to_string(),
    };
    let row = format!("{} | {phase} | {took} | {}", case.name, short(&text));
    let mut wrong = Vec::new();
    if let Some(want) = &expect.phase
        && *want != phase
    {
        wrong.push(format!("phase {phase}, expected {want}"));
    }
    for want in expect.message.iter().flat_map(Substrings::all) {
        if !text.contains(want) {
            wrong.push(format!("message lacks {want:?}"));
        }
    }
    let problem = (!wrong.is_empty()).then(|| {
        format!(
            "{}: {}; message: {}",
            case.name,
            wrong.join(", "),
            short(&text)
        )
    });
    (row, problem)
}

// Multi-threaded, as `barge run` runs the controllers: heavy evaluation
// hands the other Promotions to another thread (crate::cpu_bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_end_with_a_clear_message_while_ordinary_promotions_keep_going() -> TestResult
{
    if let Ok(filter) = std::env::var("HOSTILE_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
    let began = Instant::now();
    let h = Harness::start(|c| c).await?;
    let repo = repository()?;
    let cases = load(&h, &repo.url())?;
    assert!(!cases.is_empty());

    h.apply(Value::Array(ordinary_objects(&h))).await?;
    let baseline = ordinary_round(&h, "baseline").await?;

    let mut refusals = Vec::new();
    let mut loaded = Vec::new();
    for case in &cases {
        refusals.push(case.create(&h).await?);
        // Ordinary Promotions every 15 cases, while the controller works
        // through the cases created before them.
        if refusals.len() % 15 == 0 {
            let round = format!("loaded{}", refusals.len());
            loaded.extend(ordinary_round(&h, &round).await?);
        }
    }
    println!("{} cases created after {:?}", cases.len(), began.elapsed());
    loaded.extend(ordinary_round(&h, "loaded").await?);

    let checks = cases
        .iter()
        .zip(refusals)
        .map(|(case, refused)| verify(&h, case, refused));
    let results = futures::future::join_all(checks).await;
    println!("every case ended after {:?}", began.elapsed());
    println!("case | phase | created → finished | message");
    let mut problems = Vec::new();
    for (row, problem) in results {
        println!("{row}");
        problems.extend(problem);
    }
    let after = ordinary_round(&h, "after").await?;
    let admitted = cases
        .iter()
        .filter(|c| c.fixture.expect.admission.is_none())
        .count();
    println!(
        "{} cases ({admitted} past admission)\nordinary Promotions, created → Succeeded:\n  baseline: {}\n  under hostile load: {}\n  after: {}",
        cases.len(),
        summary(&baseline),
        summary(&loaded),
        summary(&after)
    );
    for case in &cases {
        if case.fixture.about.is_empty() {
            problems.push(format!("{}: no `about`", case.name));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    h.shutdown().await;
    Ok(())
}
