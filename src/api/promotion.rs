//! `Promotion`: a request to move one Freight into one Stage, and the record
//! of doing so. Its `spec` is immutable and its plan is frozen in status on
//! the first reconcile, so a Promotion is a snapshot: later edits to its Stage or tasks never
//! change it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::freight::{FreightCollection, FreightReference};
use crate::api::step::{ExpressionVariable, PromotionStep};
use crate::api::validation;

/// What to promote, where, and (optionally) how.
// kube's attributes repeat keys such as `type_` across printer columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "barge.dev",
    version = "v1alpha1",
    kind = "Promotion",
    plural = "promotions",
    namespaced,
    status = "PromotionStatus",
    shortname = "promo",
    shortname = "promos",
    derive = "PartialEq",
    derive = "Default",
    doc = "Promotion moves one Freight into one Stage by running steps. Its spec is immutable; the \
           steps it runs are fixed (inflated and frozen in status.plan) when it is first reconciled.",
    printcolumn(
        name = "Shard",
        type_ = "string",
        json_path = ".metadata.labels.barge\\.dev/shard"
    ),
    printcolumn(name = "Stage", type_ = "string", json_path = ".spec.stage"),
    printcolumn(name = "Freight", type_ = "string", json_path = ".spec.freight"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    // Steps are recorded as they are reached, so the last record is the step
    // running now, or the one the Promotion ended on.
    printcolumn(
        name = "Step",
        type_ = "string",
        json_path = ".status.stepExecutionMetadata[-1:].alias"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::immutable_spec)]
pub struct PromotionSpec {
    /// The Stage to promote to, in the Promotion's namespace.
    #[schemars(length(min = 1, max = 253), pattern(validation::DNS_SUBDOMAIN_PATTERN))]
    pub stage: String,

    /// The Freight to promote, in the Promotion's namespace.
    #[schemars(length(min = 1, max = 253), pattern(validation::DNS_SUBDOMAIN_PATTERN))]
    pub freight: String,

    /// Variables available as `vars.<name>` to every step; they override the
    /// Stage's and its template's vars of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,

    /// The steps to run. When absent, the Stage's `promotionTemplate` steps
    /// are used. Either way, task references are expanded once, on the first
    /// reconcile, into `status.plan`. The same rules as for a Stage template
    /// apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = validation::template_steps)]
    pub steps: Vec<PromotionStep>,
}

/// The frozen plan of a Promotion: the promotion-level vars and the concrete
/// steps, each with `uses` and `as` set and no `task`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionPlan {
    /// Stage vars, then template vars, then Promotion vars (later entries of
    /// the same name win).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,

    /// The steps, in execution order, with task references expanded; the
    /// steps of a task are aliased `<taskAlias>::<stepAlias>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<PromotionStep>,

    /// The promoted Freight's alias (`ctx.targetFreight.alias`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub freight_alias: String,
}

impl PromotionPlan {
    /// A plan of these vars and steps (the Freight's alias is added once the
    /// Freight is known).
    pub fn new(vars: Vec<ExpressionVariable>, steps: Vec<PromotionStep>) -> Self {
        Self {
            vars,
            steps,
            freight_alias: String::new(),
        }
    }
}

/// The phase of a Promotion.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, JsonSchema)]
pub enum PromotionPhase {
    /// Waiting for its turn (one Promotion runs per Stage at a time).
    #[default]
    Pending,
    /// Running its steps.
    Running,
    /// Every step succeeded or was skipped.
    Succeeded,
    /// A step failed.
    Failed,
    /// A step errored (could not be carried out).
    Errored,
    /// Aborted by a user (`barge.dev/abort: terminate`).
    Aborted,
}

impl PromotionPhase {
    /// Whether the Promotion has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PromotionPhase::Succeeded
                | PromotionPhase::Failed
                | PromotionPhase::Errored
                | PromotionPhase::Aborted
        )
    }

    /// The phase a Promotion ends in when `status` is the worst status of its
    /// steps that do not continue on error (Kargo's `DetermineFinalPhase`).
    pub fn from_step_status(status: PromotionStepStatus) -> PromotionPhase {
        match status {
            PromotionStepStatus::Succeeded | PromotionStepStatus::Skipped => {
                PromotionPhase::Succeeded
            }
            PromotionStepStatus::Running => PromotionPhase::Running,
            PromotionStepStatus::Aborted => PromotionPhase::Aborted,
            PromotionStepStatus::Failed => PromotionPhase::Failed,
            PromotionStepStatus::Errored => PromotionPhase::Errored,
        }
    }
}

impl std::fmt::Display for PromotionPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PromotionPhase::Pending => "Pending",
            PromotionPhase::Running => "Running",
            PromotionPhase::Succeeded => "Succeeded",
            PromotionPhase::Failed => "Failed",
            PromotionPhase::Errored => "Errored",
            PromotionPhase::Aborted => "Aborted",
        })
    }
}

/// The status of one step. Compared by severity, as Kargo's
/// `PromotionStepStatus.Compare`: Succeeded < Skipped < Running < Aborted <
/// Failed < Errored, so `max` picks the worst.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, JsonSchema)]
pub enum PromotionStepStatus {
    /// Still running (waiting for something).
    Running,
    /// Done.
    Succeeded,
    /// Did what it could, and the result is a failure.
    Failed,
    /// Could not be carried out.
    Errored,
    /// Stopped by an abort.
    Aborted,
    /// Not run (its `if` was false, or an earlier step failed).
    Skipped,
}

impl PromotionStepStatus {
    /// The severity: 0 for Succeeded up to 5 for Errored.
    pub fn severity(self) -> u8 {
        match self {
            PromotionStepStatus::Succeeded => 0,
            PromotionStepStatus::Skipped => 1,
            PromotionStepStatus::Running => 2,
            PromotionStepStatus::Aborted => 3,
            PromotionStepStatus::Failed => 4,
            PromotionStepStatus::Errored => 5,
        }
    }

    /// Whether the step has ended.
    pub fn is_terminal(self) -> bool {
        self != PromotionStepStatus::Running
    }

    /// Whether the step counts as a failure for `success()` / `failure()`.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            PromotionStepStatus::Failed | PromotionStepStatus::Errored
        )
    }
}

impl PartialOrd for PromotionStepStatus {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PromotionStepStatus {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.severity().cmp(&other.severity())
    }
}

impl std::fmt::Display for PromotionStepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PromotionStepStatus::Running => "Running",
            PromotionStepStatus::Succeeded => "Succeeded",
            PromotionStepStatus::Failed => "Failed",
            PromotionStepStatus::Errored => "Errored",
            PromotionStepStatus::Aborted => "Aborted",
            PromotionStepStatus::Skipped => "Skipped",
        })
    }
}

/// What the controller observed and did for a Promotion. Progress lives here,
/// so a restarted controller resumes where it stopped.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The value of the `barge.dev/refresh` annotation last handled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_handled_refresh: String,

    /// The Promotion's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PromotionPhase>,

    /// Why the Promotion is in its phase; for a failure, names the step alias
    /// and the field at fault.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,

    /// The plan this Promotion runs: its steps with task references expanded,
    /// frozen on the first reconcile. Later edits to the Stage or to tasks do
    /// not change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PromotionPlan>,

    /// The index in `plan.steps` of the step to run next (where to resume).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub current_step: i64,

    /// Per step: when it started and finished, its status, message and error
    /// count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_execution_metadata: Vec<StepExecutionMetadata>,

    /// Step outputs by step alias (`outputs.<alias>` in expressions). A task's
    /// `compose-output` also writes under the task's alias.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::api::free_form::map"
    )]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub state: BTreeMap<String, serde_json::Value>,

    /// The objects the running step waits on. Watch events of these objects
    /// wake the Promotion; the index of waiting Promotions is rebuilt from
    /// this record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<AwaitedObject>,

    /// Health checks contributed by succeeded steps; the Stage's health is
    /// computed from those of its last successful Promotion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheckStep>,

    /// The Freight being promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freight: Option<FreightReference>,

    /// The Freight being promoted together with the Stage's current Freight
    /// of its other requested origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freight_collection: Option<FreightCollection>,

    /// When the Promotion started running.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub started_at: Option<Time>,

    /// When the Promotion ended.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub finished_at: Option<Time>,

    /// The Promotion's conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = validation::conditions)]
    pub conditions: Vec<Condition>,
}

impl PromotionStatus {
    /// The execution record of the step with this alias, once it has started.
    pub fn step_record(&self, alias: &str) -> Option<&StepExecutionMetadata> {
        self.step_execution_metadata
            .iter()
            .find(|m| m.alias == alias)
    }
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// The execution record of one step.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepExecutionMetadata {
    /// The step's alias.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,

    /// When the step first started.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub started_at: Option<Time>,

    /// When the step ended.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub finished_at: Option<Time>,

    /// Consecutive errors so far; the step ends Errored when this reaches its
    /// error threshold.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    #[schemars(schema_with = "crate::api::schema::uint32")]
    pub error_count: u32,

    /// The step's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PromotionStepStatus>,

    /// Why the step is in its status.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,

    /// Whether a failure of the step is ignored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
}

/// An object (by name) or a set of objects (by label selector) a step waits
/// on, resolved by the step itself when it started waiting.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwaitedObject {
    /// The alias of the waiting step.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,

    /// The kind of the object(s), for example `Application` or `Promotion`;
    /// `PullRequest` for a pull request on a Git host.
    pub kind: String,

    /// The namespace of the object(s); for a pull request, the Promotion's
    /// own (whose webhook receivers report it).
    pub namespace: String,

    /// The object's name (a pull request's number). Exactly one of `name`
    /// and `selector` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// The repository of a pull request.
    #[serde(default, rename = "repoURL", skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,

    /// The labels of the objects. Exactly one of `name` and `selector` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// What the step waits for, for example `sync of revision 8f3c2a9 to
    /// finish`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,

    /// Since when the step waits.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub since: Option<Time>,

    /// When the step will next be looked at without an event: its timeout or
    /// the controller's backstop, whichever is sooner.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub deadline: Option<Time>,
}

impl AwaitedObject {
    /// The selector's labels as `k=v,k=v`, as people read them (the CLI and
    /// the live view show them).
    pub fn selector_labels(&self) -> Option<String> {
        let selector = self.selector.as_ref()?;
        Some(
            selector
                .match_labels
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// A health check contributed by a succeeded step.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckStep {
    /// The kind of health check, for example `argocd-update`.
    pub uses: String,

    /// The health check's configuration.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::free_form::option"
    )]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub config: Option<serde_json::Value>,
}

impl Promotion {
    /// The Promotion's phase; `Pending` until the controller sets one.
    pub fn phase(&self) -> PromotionPhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }

    /// Whether the Promotion has ended.
    pub fn is_terminal(&self) -> bool {
        self.phase().is_terminal()
    }
}
