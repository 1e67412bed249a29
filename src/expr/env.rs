//! What an expression can see: Kargo's environment (`ctx`, `vars`,
//! `outputs`, `task.outputs`, `stepMetas`) and the snapshots the functions
//! read (Freight, step statuses, the project's ConfigMaps, Secrets and
//! metadata, the instant `now()` returns). Everything is plain data
//! prepared by the caller before evaluating: evaluation never does I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use super::value::{self, StructDef, Value, Zero};

/// Separates a task's alias from its steps' aliases (`deploy::update`).
const ALIAS_SEPARATOR: &str = "::";

/// Which kind of evaluation an expression is part of. It decides which
/// functions are in scope, as in Kargo (`pkg/promotion/evaluator.go`):
/// the status functions (`success()`, `failure()`, `always()`,
/// `status()`) exist in `if` conditions and step config, not in vars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Promotion-level or step-level `vars`.
    Vars,
    /// A step's `if`.
    Condition,
    /// A step's `config`.
    Config,
    /// A generic webhook receiver's expressions: the request's functions
    /// (`request.header()`, `request.headers()`, `request.params()`) and the
    /// URL normalizers (`normalizeGit()`, `normalizeImage()`,
    /// `normalizeChart()`), over a [`Document`] holding `request` and
    /// `params`.
    Webhook,
}

impl Scope {
    pub(crate) fn has_status_functions(self) -> bool {
        matches!(self, Scope::Condition | Scope::Config)
    }
}

/// The `ctx` object. Flat here; [`Ctx::to_json`] gives Kargo's nested
/// shape: `{uiBaseUrl, project, stage, promotion, targetFreight{name, alias,
/// origin{name}}, meta{promotion{actor, rollback}, step{alias}}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ctx {
    /// Base URL of the UI, if any.
    pub ui_base_url: String,
    /// The project (namespace).
    pub project: String,
    /// The Stage being promoted to.
    pub stage: String,
    /// The Promotion's name.
    pub promotion: String,
    /// The Freight being promoted.
    pub target_freight_name: String,
    /// The Freight's alias.
    pub target_freight_alias: String,
    /// The name of the Freight's origin (Warehouse).
    pub target_freight_origin: String,
    /// Who asked for the Promotion.
    pub actor: String,
    /// Whether the Promotion is a rollback.
    pub rollback: bool,
    /// The alias of the step being evaluated (`step-1`, `deploy::update`);
    /// empty for promotion-level vars. Also decides `task.outputs` and the
    /// scope of `status()`.
    pub step_alias: String,
}

impl Ctx {
    /// Kargo's `ctx` object.
    pub fn to_json(&self) -> Json {
        json!({
            "uiBaseUrl": self.ui_base_url,
            "project": self.project,
            "stage": self.stage,
            "promotion": self.promotion,
            "targetFreight": {
                "name": self.target_freight_name,
                "alias": self.target_freight_alias,
                "origin": {"name": self.target_freight_origin},
            },
            "meta": {
                "promotion": {"actor": self.actor, "rollback": self.rollback},
                "step": {"alias": self.step_alias},
            },
        })
    }
}

/// The Freight that `commitFrom()`, `imageFrom()` and `chartFrom()` look
/// in: the Promotion's Freight collection, fetched before evaluating. Each
/// entry is a Freight (or FreightReference) as JSON with Kargo's field
/// names: `origin{kind, name}`, `commits[{repoURL, id, branch, tag,
/// message, ...}]`, `images[{repoURL, tag, digest, ...}]`,
/// `charts[{repoURL, name, version, ...}]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FreightSnapshot {
    /// The Freight objects.
    pub freight: Vec<Json>,
}

/// One step's execution state, as the status functions need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The step's alias (`step-1`, `deploy::update`).
    pub alias: String,
    /// Kargo's step status: `Running`, `Succeeded`, `Failed`, `Errored`,
    /// `Aborted`, `Skipped`.
    #[serde(default)]
    pub status: String,
    /// A failure of this step does not count against `success()`.
    #[serde(default)]
    pub continue_on_error: bool,
}

/// The statuses of the steps that have run so far (Kargo's
/// `stepExecutionMetadata`), for `success()`, `failure()` and `status()`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStatuses {
    /// In execution order.
    pub steps: Vec<StepStatus>,
}

impl StepStatuses {
    /// Reads Kargo-shaped `stepExecutionMetadata` entries (`alias`,
    /// `status`, `continueOnError`); other fields are ignored.
    pub fn from_metadata(metadata: &[Json]) -> StepStatuses {
        StepStatuses {
            steps: metadata
                .iter()
                .filter_map(|m| serde_json::from_value(m.clone()).ok())
                .collect(),
        }
    }

    /// Kargo's `HasFailures`: whether a step that is not `continueOnError`
    /// Errored or Failed. `success()` is its negation; an empty `if` skips a
    /// step exactly when this holds.
    pub fn has_failures(&self) -> bool {
        self.steps
            .iter()
            .any(|s| !s.continue_on_error && matches!(s.status.as_str(), "Errored" | "Failed"))
    }

    /// `status(alias)`: the status of the step `alias` in the same task
    /// namespace as `current_alias` (or outside any task), `""` if none.
    pub fn status_in_namespace(&self, current_alias: &str, alias: &str) -> String {
        let namespace = alias_namespace(current_alias);
        self.steps
            .iter()
            .find(|s| {
                let (ns, short) = split_alias(&s.alias);
                ns == namespace && short == alias
            })
            .map(|s| s.status.clone())
            .unwrap_or_default()
    }
}

/// Kargo's `getAliasNamespace`: the part before `::` when the alias has
/// exactly one separator, else `""`.
fn alias_namespace(alias: &str) -> &str {
    split_alias(alias).0
}

fn split_alias(alias: &str) -> (&str, &str) {
    let mut parts = alias.split(ALIAS_SEPARATOR);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(short), None) => (ns, short),
        _ => ("", alias),
    }
}

/// ConfigMap or Secret data: name → key → value.
pub type DataByName = BTreeMap<String, BTreeMap<String, String>>;

/// Stage or Freight metadata: name → key → JSON value.
pub type MetadataByName = BTreeMap<String, Map<String, Json>>;

/// The objects of the project (and of the shared resources namespace) that
/// Kargo's data functions read, fetched from the API server before
/// evaluating. Every map is empty by default: every object is then
/// missing, and the functions answer as Kargo does for a missing object.
///
/// Its `Debug` output names the Secrets and their keys, never their values.
/// The engine's error messages mask every Secret value as `***` (as it is,
/// in any ASCII case, quoted, or clipped as messages clip long values);
/// text merely derived from a value (a slice, its base64) is not tracked.
#[derive(Clone, Default, PartialEq)]
pub struct ProjectData {
    /// `configMap(name)`: each ConfigMap of the project's namespace by
    /// name, its `data`. A ConfigMap missing here reads as an empty map, as
    /// in Kargo; one present with no data as Go's nil map (JSON `null`); a
    /// missing key reads as `""` (Go's `map[string]string`).
    pub config_maps: DataByName,
    /// `secret(name)`: each Secret of the project's namespace by name, its
    /// `data` decoded from base64 into text (bytes that are not UTF-8 are
    /// replaced, U+FFFD). Missing Secrets and keys read as for ConfigMaps.
    pub secrets: DataByName,
    /// `sharedConfigMap(name)`: the ConfigMaps of the shared resources
    /// namespace (Kargo's `SHARED_RESOURCES_NAMESPACE`), as `config_maps`.
    pub shared_config_maps: DataByName,
    /// `sharedSecret(name)`: the Secrets of the shared resources namespace
    /// labelled `kargo.akuity.io/cred-type: generic`, as `secrets`. Leave
    /// other Secrets out: Kargo gives an empty map for them.
    pub shared_secrets: DataByName,
    /// `stageMetadata(name)`: each Stage of the project by name, its
    /// `status.metadata` (values as stored, any JSON). A Stage missing
    /// here, or with no metadata (an empty map), reads as nil, as in Kargo.
    pub stage_metadata: MetadataByName,
    /// `freightMetadata(name)`: each Freight of the project by name, its
    /// `status.metadata`, as `stage_metadata`.
    pub freight_metadata: MetadataByName,
}

impl ProjectData {
    /// Every Secret value (project and shared): what error messages mask.
    pub(crate) fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secrets
            .values()
            .chain(self.shared_secrets.values())
            .flat_map(|data| data.values().map(String::as_str))
    }
}

impl fmt::Debug for ProjectData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys_only = |data: &DataByName| -> BTreeMap<String, Vec<String>> {
            data.iter()
                .map(|(name, kv)| (name.clone(), kv.keys().cloned().collect()))
                .collect()
        };
        f.debug_struct("ProjectData")
            .field("config_maps", &self.config_maps)
            .field("secrets", &keys_only(&self.secrets))
            .field("shared_config_maps", &self.shared_config_maps)
            .field("shared_secrets", &keys_only(&self.shared_secrets))
            .field("stage_metadata", &self.stage_metadata)
            .field("freight_metadata", &self.freight_metadata)
            .finish()
    }
}

/// Everything one evaluation can see. Build it once per step (or per
/// promotion-level var pass) from data fetched beforehand.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Env {
    /// The `ctx` object.
    pub ctx: Ctx,
    /// `vars`: the variables evaluated so far.
    pub vars: Map<String, Json>,
    /// `outputs`: step alias → output (the Promotion's `status.state`).
    /// `None` where Kargo does not provide it (promotion-level vars); then
    /// `task.outputs` and `stepMetas` are absent too.
    pub outputs: Option<Map<String, Json>>,
    /// `stepMetas`: step alias → StepExecutionMetadata JSON (`alias`,
    /// `startedAt`, `finishedAt`, `errorCount`, `status`, `message`,
    /// `continueOnError`). Readable with Go field names
    /// (`stepMetas['x'].Status`) as in Kargo, or with JSON names.
    pub step_metas: Option<Map<String, Json>>,
    /// The Freight the Freight functions look in.
    pub freight: FreightSnapshot,
    /// The step statuses the status functions look at.
    pub statuses: StepStatuses,
    /// A parsed file (`yaml-parse`, `json-parse`): when set, identifiers
    /// resolve against its top-level keys, and `outputs` is the whole
    /// document, instead of the Promotion's context.
    pub document: Option<Document>,
    /// The ConfigMaps, Secrets and metadata the data functions read
    /// (shared, as an environment is cloned for every step).
    pub data: Arc<ProjectData>,
    /// What `now()` returns. `None`: the clock, read once when an
    /// evaluation session starts, so every `now()` in one session agrees.
    pub now: Option<Timestamp>,
}

/// A parsed file an expression looks into.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    pub fields: Map<String, Json>,
    /// Whole numbers are ints (YAML, as Go's YAML decoder), not floats (JSON).
    pub integers: bool,
}

/// Kargo's `StepExecutionMetadata`, so `stepMetas` entries read like Go
/// structs.
const STEP_METADATA: StructDef = StructDef {
    type_name: "v1alpha1.StepExecutionMetadata",
    fields: &[
        ("alias", Zero::Str, true),
        ("startedAt", Zero::Nil, true),
        ("finishedAt", Zero::Nil, true),
        ("errorCount", Zero::Int, true),
        ("status", Zero::Str, true),
        ("message", Zero::Str, true),
        ("continueOnError", Zero::Bool, true),
    ],
};

impl Env {
    /// `task.outputs`: when the current step belongs to a task
    /// (`ns::alias`), the outputs of that task's steps with the prefix
    /// stripped.
    pub fn task_outputs(&self) -> Option<Map<String, Json>> {
        let outputs = self.outputs.as_ref()?;
        let namespace = alias_namespace(&self.ctx.step_alias);
        if namespace.is_empty() {
            return None;
        }
        Some(
            outputs
                .iter()
                .filter_map(|(k, v)| {
                    let (ns, short) = split_alias(k);
                    (ns == namespace).then(|| (short.to_string(), v.clone()))
                })
                .collect(),
        )
    }

    /// The environment as one map value: what identifiers resolve against.
    pub(crate) fn root(&self) -> Result<Value, String> {
        if let Some(document) = &self.document {
            let convert = if document.integers {
                value::from_yaml_json
            } else {
                value::from_json
            };
            let mut root = BTreeMap::new();
            root.insert(
                "outputs".to_string(),
                convert(&Json::Object(document.fields.clone()))?,
            );
            for (key, v) in &document.fields {
                root.insert(key.clone(), convert(v)?);
            }
            return Value::map(root).map_err(|_| "document nests too deep".to_string());
        }
        let mut root = BTreeMap::new();
        root.insert("ctx".to_string(), value::from_json(&self.ctx.to_json())?);
        root.insert(
            "vars".to_string(),
            value::from_json(&Json::Object(self.vars.clone()))?,
        );
        if let Some(outputs) = &self.outputs {
            root.insert(
                "outputs".to_string(),
                value::from_json(&Json::Object(outputs.clone()))?,
            );
            if let Some(task_outputs) = self.task_outputs() {
                let mut task = BTreeMap::new();
                task.insert(
                    "outputs".to_string(),
                    value::from_json(&Json::Object(task_outputs))?,
                );
                root.insert(
                    "task".to_string(),
                    Value::map(task).map_err(|_| "task outputs nest too deep".to_string())?,
                );
            }
        }
        if let Some(metas) = &self.step_metas {
            let mut entries = BTreeMap::new();
            for (alias, meta) in metas {
                let v = match meta {
                    Json::Object(obj) => STEP_METADATA.build(obj)?,
                    other => value::from_json(other)?,
                };
                entries.insert(alias.clone(), v);
            }
            root.insert(
                "stepMetas".to_string(),
                Value::map(entries).map_err(|_| "stepMetas nest too deep".to_string())?,
            );
        }
        Value::map(root).map_err(|_| "environment nests too deep".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs() -> Map<String, Json> {
        let v = json!({"step-1": {"a": 1}, "deploy::build": {"b": 2}, "other::x": {"c": 3}});
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn task_outputs_exist_only_for_steps_inside_a_task() {
        let mut env = Env {
            outputs: Some(outputs()),
            ..Env::default()
        };
        env.ctx.step_alias = "step-2".into();
        assert_eq!(env.task_outputs(), None);
        env.ctx.step_alias = "deploy::update".into();
        let task = env.task_outputs().unwrap_or_default();
        assert_eq!(Json::Object(task), json!({"build": {"b": 2}}));
    }

    #[test]
    fn has_failures_ignores_continue_on_error_steps() {
        let statuses = StepStatuses::from_metadata(&[
            json!({"alias": "a", "status": "Failed", "continueOnError": true}),
            json!({"alias": "b", "status": "Succeeded"}),
        ]);
        assert!(!statuses.has_failures());
        let statuses = StepStatuses::from_metadata(&[json!({"alias": "a", "status": "Errored"})]);
        assert!(statuses.has_failures());
    }

    #[test]
    fn status_is_scoped_to_the_current_task_namespace() {
        let statuses = StepStatuses::from_metadata(&[
            json!({"alias": "build", "status": "Succeeded"}),
            json!({"alias": "deploy::build", "status": "Failed"}),
        ]);
        assert_eq!(
            statuses.status_in_namespace("deploy::push", "build"),
            "Failed"
        );
        assert_eq!(statuses.status_in_namespace("step-3", "build"), "Succeeded");
        assert_eq!(statuses.status_in_namespace("step-3", "missing"), "");
    }
}
