//! `barge expand`: the plan a Promotion would run, inflated and evaluated
//! offline from manifests on disk — how a user debugs a template before
//! applying it. No cluster, no webhook.
//!
//! Expressions that need what only a running Promotion has (outputs of
//! earlier steps, say) are left as written, with a note saying why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api::{
    ClusterPromotionTask, Freight, Promotion, PromotionStepStatus, PromotionTask, Stage, TaskKind,
};
use crate::expr::Scope;
use crate::inflate::{self, TaskMap};
use crate::promotion::engine::{Progress, StepMeta, alias_of};
use crate::promotion::evaluate::{ExprEvaluator, PromotionFacts, evaluate_tree};
use crate::steps::{ConfigError, Registry, StepRunner};

#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Input(String),
}

/// What to expand.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Files or directories of manifests (`.yaml`, `.yml`, `.json`).
    pub paths: Vec<PathBuf>,
    /// Only Stages (or Promotions) of this Stage.
    pub stage: Option<String>,
    /// The Freight to promote when no Promotion is given (default: the last
    /// Freight in the input that the Stage requests).
    pub freight: Option<String>,
    /// Namespace for objects that name none.
    pub namespace: Option<String>,
}

#[derive(Default)]
struct Manifests {
    stages: Vec<Stage>,
    promotions: Vec<Promotion>,
    tasks: Vec<PromotionTask>,
    cluster_tasks: Vec<ClusterPromotionTask>,
    freight: Vec<Freight>,
}

/// One expanded plan, as printed.
#[derive(Debug, Serialize)]
pub struct Expanded {
    pub promotion: String,
    pub namespace: String,
    pub stage: String,
    pub freight: String,
    pub vars: Map<String, Value>,
    pub steps: Vec<ExpandedStep>,
}

#[derive(Debug, Serialize)]
pub struct ExpandedStep {
    #[serde(rename = "as")]
    pub alias: String,
    pub uses: String,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub if_: Option<String>,
    #[serde(rename = "continueOnError", skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub vars: Map<String, Value>,
    pub config: Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ExpandError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| ExpandError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn typed<T: DeserializeOwned>(path: &Path, index: usize, doc: Value) -> Result<T, ExpandError> {
    serde_path_to_error::deserialize(doc).map_err(|e| ExpandError::File {
        path: path.to_path_buf(),
        message: format!("document {}: {}: {}", index + 1, e.path(), e.inner()),
    })
}

fn load(options: &Options) -> Result<Manifests, ExpandError> {
    let mut m = Manifests::default();
    for path in files(&options.paths)? {
        let text = std::fs::read_to_string(&path).map_err(|e| ExpandError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| ExpandError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
        for (i, mut doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            // Kargo's own manifests expand too: only the group differs.
            if !(api_version.starts_with("barge.dev/")
                || api_version.starts_with("kargo.akuity.io/"))
            {
                continue;
            }
            doc["apiVersion"] = Value::String(crate::api::API_VERSION.to_string());
            if let (Some(ns), true) = (&options.namespace, doc["metadata"]["namespace"].is_null()) {
                doc["metadata"]["namespace"] = Value::String(ns.clone());
            }
            match doc["kind"].as_str().unwrap_or_default() {
                "Stage" => m.stages.push(typed(&path, i, doc)?),
                "Promotion" => m.promotions.push(typed(&path, i, doc)?),
                "PromotionTask" => m.tasks.push(typed(&path, i, doc)?),
                "ClusterPromotionTask" => m.cluster_tasks.push(typed(&path, i, doc)?),
                "Freight" => m.freight.push(typed(&path, i, doc)?),
                _ => {}
            }
        }
    }
    Ok(m)
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

/// Expands every Promotion in the input, or, when there is none, a preview
/// Promotion for every Stage.
pub fn expand(options: &Options) -> Result<Vec<Expanded>, ExpandError> {
    let m = load(options)?;
    let wanted_stage = |s: &str| options.stage.as_deref().is_none_or(|w| w == s);
    let mut targets: Vec<(String, String, String, Option<String>)> = Vec::new();
    for p in &m.promotions {
        if wanted_stage(&p.spec.stage) {
            let name = p.metadata.name.clone().unwrap_or_default();
            targets.push((
                namespace_of(&p.metadata),
                name,
                p.spec.stage.clone(),
                Some(p.spec.freight.clone()),
            ));
        }
    }
    if m.promotions.is_empty() {
        for s in &m.stages {
            let name = s.metadata.name.clone().unwrap_or_default();
            // A control-flow Stage runs no Promotions: nothing to expand.
            if wanted_stage(&name) && !crate::stage::is_control_flow(s) {
                targets.push((
                    namespace_of(&s.metadata),
                    format!("{name}-preview"),
                    name,
                    options.freight.clone(),
                ));
            }
        }
    }
    if targets.is_empty() {
        return Err(ExpandError::Input(
            "no Promotion or Stage to expand in the given files".into(),
        ));
    }
    targets
        .into_iter()
        .map(|(namespace, promotion, stage, freight)| {
            expand_one(&m, &namespace, &promotion, &stage, freight.as_deref())
        })
        .collect()
}

fn expand_one(
    m: &Manifests,
    namespace: &str,
    promotion_name: &str,
    stage_name: &str,
    freight_name: Option<&str>,
) -> Result<Expanded, ExpandError> {
    let stage = m
        .stages
        .iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(stage_name) && namespace_of(&s.metadata) == namespace
        })
        .ok_or_else(|| {
            ExpandError::Input(format!(
                "Stage \"{stage_name}\" in namespace \"{namespace}\" is not in the given files"
            ))
        })?;
    let promotion = m.promotions.iter().find(|p| {
        p.metadata.name.as_deref() == Some(promotion_name) && namespace_of(&p.metadata) == namespace
    });
    let freight = find_freight(m, namespace, stage, freight_name)?;
    let tasks = task_map(m, namespace);
    let request = inflate::Request::for_promotion(
        namespace,
        stage_name,
        &stage.spec,
        promotion.map(|p| &p.spec),
    );
    let plan = inflate::inflate(&request, &tasks)
        .map_err(|e| ExpandError::Input(format!("Promotion \"{promotion_name}\": {e}")))?;

    let reference = freight.map(Freight::reference);
    let collection = reference
        .clone()
        .map(|target| crate::stage::promotion_collection(stage, target));
    let facts = PromotionFacts {
        namespace,
        stage: stage_name,
        promotion: promotion_name,
        actor: None,
        freight: reference.as_ref(),
        freight_alias: freight
            .and_then(|f| f.spec.alias.as_deref())
            .unwrap_or_default(),
        collection: collection.as_ref(),
        // Offline: no ConfigMaps, Secrets or metadata to read.
        data: None,
        now: None,
    };
    let evaluator = ExprEvaluator::new(&facts, &plan.vars);
    let mut progress = Progress::default();
    let promotion_vars = evaluator
        .env(None, "", &progress)
        .map(|env| env.vars)
        .map_err(|e| ExpandError::Input(format!("Promotion \"{promotion_name}\": {e}")))?;

    let mut expanded_steps = Vec::new();
    for (index, step) in plan.steps.iter().enumerate() {
        let alias = alias_of(&plan.steps, index);
        expanded_steps.push(preview_step(&evaluator, step, &alias, &progress));
        // Later steps are previewed as if this one succeeded.
        progress.metas.push(StepMeta {
            alias,
            status: Some(PromotionStepStatus::Succeeded),
            continue_on_error: step.continue_on_error,
            ..StepMeta::default()
        });
    }
    Ok(Expanded {
        promotion: promotion_name.to_string(),
        namespace: namespace.to_string(),
        stage: stage_name.to_string(),
        freight: reference.map(|f| f.name).unwrap_or_default(),
        vars: promotion_vars,
        steps: expanded_steps,
    })
}

/// The Freight to preview with: the one named, else the newest in the
/// namespace from an origin the Stage requests.
fn find_freight<'m>(
    m: &'m Manifests,
    namespace: &str,
    stage: &Stage,
    freight_name: Option<&str>,
) -> Result<Option<&'m Freight>, ExpandError> {
    let origins: Vec<String> = stage
        .spec
        .requested_freight
        .iter()
        .map(|r| r.origin.name.clone())
        .collect();
    let freight = match freight_name {
        Some(name) => Some(
            m.freight
                .iter()
                .find(|f| {
                    f.metadata.name.as_deref() == Some(name)
                        && namespace_of(&f.metadata) == namespace
                })
                .ok_or_else(|| {
                    ExpandError::Input(format!(
                        "Freight \"{name}\" in namespace \"{namespace}\" is not in the given files"
                    ))
                })?,
        ),
        None => m.freight.iter().rev().find(|f| {
            namespace_of(&f.metadata) == namespace && origins.contains(&f.spec.origin.name)
        }),
    };

    Ok(freight)
}

/// The namespace's PromotionTasks and every ClusterPromotionTask given.
fn task_map(m: &Manifests, namespace: &str) -> TaskMap {
    let mut tasks = TaskMap::new();
    for t in m
        .tasks
        .iter()
        .filter(|t| namespace_of(&t.metadata) == namespace)
    {
        tasks.insert(
            TaskKind::PromotionTask,
            t.metadata.name.clone().unwrap_or_default(),
            t.spec.clone(),
        );
    }
    for t in &m.cluster_tasks {
        tasks.insert(
            TaskKind::ClusterPromotionTask,
            t.metadata.name.clone().unwrap_or_default(),
            t.spec.clone(),
        );
    }
    tasks
}

/// One step as it would run: its own vars and its config with every
/// expression that needs no running Promotion evaluated; notes say what
/// stayed as written.
fn preview_step(
    evaluator: &ExprEvaluator,
    step: &crate::api::PromotionStep,
    alias: &str,
    progress: &Progress,
) -> ExpandedStep {
    let mut notes = Vec::new();
    let (vars, config) = match evaluator.env(Some(step), alias, progress) {
        Ok(env) => {
            let own: BTreeMap<&str, ()> = step.vars.iter().map(|v| (v.name.as_str(), ())).collect();
            let vars: Map<String, Value> = env
                .vars
                .iter()
                .filter(|(k, _)| own.contains_key(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let config = step
                .config
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new()));
            let config = evaluate_leaves(&config, &env, "config", &mut notes);
            (vars, config)
        }
        Err(e) => {
            notes.push(format!("{e} (left unevaluated)"));
            (Map::new(), step.config.clone().unwrap_or_default())
        }
    };
    ExpandedStep {
        alias: alias.to_string(),
        uses: step.uses.clone().unwrap_or_default(),
        if_: step.if_.clone(),
        continue_on_error: step.continue_on_error,
        vars,
        config,
        notes,
    }
}

/// Evaluates each string on its own, so one that needs a running
/// Promotion stays as written (with a note) without hiding the others.
fn evaluate_leaves(
    value: &Value,
    env: &crate::expr::Env,
    path: &str,
    notes: &mut Vec<String>,
) -> Value {
    match value {
        Value::String(_) => match evaluate_tree(value, env, Scope::Config, path) {
            Ok(v) => v,
            Err(e) => {
                notes.push(format!("{e} (left unevaluated)"));
                value.clone()
            }
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| evaluate_leaves(v, env, &format!("{path}[{i}]"), notes))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        evaluate_leaves(v, env, &format!("{path}.{k}"), notes),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What is wrong with the expanded plans' steps: a kind no runner has, or
/// a config that does not fit its step's schema. A value left as an
/// expression (it needs a running Promotion) may turn out to be of any
/// type, so it only counts against the config if no type would fit.
pub fn check(plans: &[Expanded], registry: &Registry) -> Vec<String> {
    let mut problems = Vec::new();
    for plan in plans {
        for step in &plan.steps {
            let at = format!(
                "Promotion \"{}\" in namespace \"{}\", step \"{}\"",
                plan.promotion, plan.namespace, step.alias
            );
            let Some(runner) = registry.get(&step.uses) else {
                problems.push(format!("{at}: uses: unknown step kind \"{}\"", step.uses));
                continue;
            };
            if let Err(e) = check_step(runner.as_ref(), &step.config) {
                problems.push(format!("{at} ({}): {e}", step.uses));
            }
        }
    }
    problems
}

/// Values an unevaluated expression is tried as, one after the other.
fn placeholders() -> [Value; 5] {
    [
        Value::Bool(false),
        Value::from(0),
        Value::Object(Map::new()),
        Value::Array(Vec::new()),
        Value::String(String::new()),
    ]
}

fn check_step(runner: &dyn StepRunner, config: &Value) -> Result<(), ConfigError> {
    let mut config = config.clone();
    let mut tried: BTreeMap<String, usize> = BTreeMap::new();
    let mut first: Option<ConfigError> = None;
    loop {
        let Err(e) = runner.check_config(&config) else {
            return Ok(());
        };
        let fail = |first: Option<ConfigError>| Err(first.unwrap_or_else(|| e.clone()));
        let Some(leaf) = leaf_mut(&mut config, &e.path) else {
            return fail(first);
        };
        let expression = matches!(&*leaf, Value::String(s) if s.contains("${{"));
        if !expression && !tried.contains_key(&e.path) {
            return Err(e);
        }
        let attempt = tried.entry(e.path.clone()).or_insert(0);
        let Some(candidate) = placeholders().into_iter().nth(*attempt) else {
            return fail(first);
        };
        *attempt += 1;
        first.get_or_insert_with(|| e.clone());
        *leaf = candidate;
    }
}

/// The value at serde's path (`a.b[0].c`) in `value`.
fn leaf_mut<'v>(value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    if path == "." {
        return Some(value);
    }
    let mut at = value;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            at = at.get_mut(key)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            at = at.get_mut(index)?;
        }
    }
    Some(at)
}

/// The expanded plans as a YAML stream.
pub fn to_yaml(plans: &[Expanded]) -> Result<String, ExpandError> {
    let mut out = String::new();
    for plan in plans {
        let text = serde_saphyr::to_string(plan).map_err(|e| ExpandError::Input(e.to_string()))?;
        out.push_str("---\n");
        out.push_str(&text);
    }
    Ok(out)
}
