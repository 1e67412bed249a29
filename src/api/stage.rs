//! `Stage`: an environment that Freight is promoted to, with the template
//! of the steps that promote it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::freight::{FreightCollection, FreightOrigin, FreightReference};
use crate::api::promotion::PromotionStatus;
use crate::api::step::{ExpressionVariable, PromotionStep};
use crate::api::validation;

/// Condition type: the Stage is ready (reconciled without error).
pub const CONDITION_READY: &str = "Ready";
/// Whether the Stage auto-promotes, and which policy decided.
pub const CONDITION_AUTO_PROMOTION: &str = "AutoPromotion";
/// Condition type: the Stage is reconciling.
pub const CONDITION_RECONCILING: &str = "Reconciling";
/// Condition type: the Stage cannot make progress.
pub const CONDITION_STALLED: &str = "Stalled";
/// Condition type: the Stage's health checks pass.
pub const CONDITION_HEALTHY: &str = "Healthy";
/// Condition type: a Promotion to the Stage is running.
pub const CONDITION_PROMOTING: &str = "Promoting";
/// Condition type: the Stage's current Freight has been verified.
pub const CONDITION_VERIFIED: &str = "Verified";

/// What a Stage asks for and how Freight is promoted to it.
// kube's attributes repeat keys such as `type_` across printer columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "barge.dev",
    version = "v1alpha1",
    kind = "Stage",
    plural = "stages",
    namespaced,
    status = "StageStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Stage is an environment (or any target) that Freight is promoted to. It names the Freight \
           it accepts and the steps that promote Freight to it.",
    printcolumn(name = "Shard", type_ = "string", json_path = ".spec.shard"),
    printcolumn(
        name = "Current Freight",
        type_ = "string",
        json_path = ".status.freightSummary"
    ),
    printcolumn(name = "Health", type_ = "string", json_path = ".status.health.status"),
    printcolumn(
        name = "Promoting",
        type_ = "string",
        json_path = ".status.currentPromotion.name"
    ),
    printcolumn(
        name = "Last Promotion",
        type_ = "string",
        json_path = ".status.lastPromotion.status.phase"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StageSpec {
    /// The shard this Stage belongs to. Empty means the default shard.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shard: String,

    /// Variables available as `vars.<name>` to the expressions of this Stage's
    /// promotion steps (and tasks they reference). Template vars, task-reference
    /// vars and step vars of the same name override them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,

    /// The Freight this Stage uses, one entry per origin (Warehouse), and
    /// where each may come from: directly from the Warehouse or from upstream
    /// Stages. At least one entry; each origin at most once.
    #[schemars(
        length(min = 1, max = validation::MAX_REQUESTED_FREIGHT),
        transform = validation::requested_freight
    )]
    pub requested_freight: Vec<FreightRequest>,

    /// How Freight is promoted to this Stage: the steps each Promotion runs
    /// unless it lists its own. A Stage without a template is a control-flow
    /// Stage: Freight reaches it without running steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_template: Option<PromotionTemplate>,

    /// How to verify the Stage's current Freight (Kargo's Argo Rollouts
    /// analysis). Accepted for compatibility; Barge does not run
    /// verifications yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,

    /// When true, new Freight available to this Stage (directly, or once it
    /// is healthy in an upstream Stage) is promoted automatically. A Barge
    /// shortcut: Kargo enables this in the project's ProjectConfig
    /// (`promotionPolicies`), whose matching policy, if any, decides instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_promotion: bool,
}

/// A Stage's need for Freight of one origin.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreightRequest {
    /// The origin the Freight must come from.
    pub origin: FreightOrigin,

    /// Where the Freight may be obtained from.
    pub sources: FreightSources,
}

/// Where requested Freight may come from. At least one of `direct` and
/// `stages` must be set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::freight_sources)]
pub struct FreightSources {
    /// The Freight may be promoted straight from its origin (Warehouse).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,

    /// Upstream Stages the Freight may come from once verified there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = validation::MAX_UPSTREAM_STAGES),
        inner(length(min = 1, max = 253), pattern(validation::DNS_SUBDOMAIN_PATTERN))
    )]
    pub stages: Vec<String>,

    /// How long the Freight must have been used continuously by an upstream
    /// Stage before it is available here, as a Go-style duration (`1h`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::bounded_duration"
    )]
    #[schemars(
        length(max = validation::DURATION_MAX_LENGTH),
        pattern(validation::DURATION_PATTERN)
    )]
    pub required_soak_time: Option<kube::core::Duration>,

    /// With several upstream Stages: whether the Freight must be verified in
    /// `All` of them or in `OneOf` them (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_strategy: Option<AvailabilityStrategy>,

    /// Options for automatic promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_options: Option<AutoPromotionOptions>,
}

/// How Freight from several upstream Stages becomes available.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum AvailabilityStrategy {
    /// The Freight must be verified (and soaked) in every upstream Stage.
    All,
    /// The Freight must be verified (and soaked) in at least one upstream Stage.
    #[default]
    OneOf,
}

/// Options for automatic promotion.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoPromotionOptions {
    /// Which Freight is promoted automatically: `NewestFreight` (the default)
    /// or `MatchUpstream` (what the single upstream Stage uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_policy: Option<SelectionPolicy>,
}

/// Which Freight auto-promotion picks.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum SelectionPolicy {
    /// The newest Freight available to the Stage.
    #[default]
    NewestFreight,
    /// The Freight the (single) upstream Stage currently uses.
    MatchUpstream,
}

/// The template of the Promotions of a Stage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionTemplate {
    /// What each Promotion of the Stage runs.
    pub spec: PromotionTemplateSpec,
}

/// The variables and steps of a Stage's Promotions.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionTemplateSpec {
    /// Variables available as `vars.<name>` to every step; they override the
    /// Stage's vars of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,

    /// The steps, run in order. Each has exactly one of `uses` (a step
    /// runner) or `task` (a PromotionTask or ClusterPromotionTask whose steps
    /// replace it when a Promotion is created). Aliases (`as`) are unique and
    /// must not look like `step-N` or `task-N`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = validation::template_steps)]
    pub steps: Vec<PromotionStep>,
}

/// How a Stage's Freight is verified (Kargo's Argo Rollouts analysis).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// The AnalysisTemplates to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_templates: Vec<AnalysisTemplateReference>,

    /// Labels and annotations for the AnalysisRuns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,

    /// Arguments added to every AnalysisRun.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
}

/// A reference to an AnalysisTemplate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateReference {
    /// The template's name, in the Stage's namespace for an AnalysisTemplate.
    pub name: String,

    /// `AnalysisTemplate` (the default) or `ClusterAnalysisTemplate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AnalysisTemplateKind>,
}

/// The kinds of analysis template.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum AnalysisTemplateKind {
    /// A namespaced AnalysisTemplate.
    #[default]
    AnalysisTemplate,
    /// A cluster-scoped ClusterAnalysisTemplate.
    ClusterAnalysisTemplate,
}

/// Metadata applied to AnalysisRuns.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunMetadata {
    /// Labels to add to each AnalysisRun.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations to add to each AnalysisRun.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An argument of an AnalysisRun.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunArgument {
    /// The argument's name.
    pub name: String,

    /// The argument's value.
    pub value: String,
}

/// What the controller observed about a Stage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// The Stage's conditions: `Ready`, `Healthy`, `Promoting`, and others
    /// (see the `CONDITION_*` constants).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = validation::conditions)]
    pub conditions: Vec<Condition>,

    /// The value of the `barge.dev/refresh` annotation last handled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_handled_refresh: String,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// A one-line summary of the current Freight, shown by `kubectl get
    /// stages`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub freight_summary: String,

    /// The Freight the Stage used, newest first (at most 10 entries). The
    /// first entry is the current Freight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freight_history: Vec<FreightCollection>,

    /// The Stage's health, from the health checks of its last successful
    /// Promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,

    /// The Promotion running now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_promotion: Option<PromotionReference>,

    /// The Promotion that finished last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promotion: Option<PromotionReference>,

    /// Whether new Freight is promoted to the Stage automatically; the
    /// `AutoPromotion` condition says which policy decided.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_promotion_enabled: bool,

    /// Free-form metadata that `set-metadata` steps write and
    /// `stageMetadata()` reads, by key.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::api::free_form::map"
    )]
    #[schemars(schema_with = "crate::api::schema::free_form_map")]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// A Stage's health.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The overall health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HealthState>,

    /// What is wrong, when not Healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<String>,

    /// The health checks that produced this result.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::free_form::option"
    )]
    #[schemars(schema_with = "crate::api::schema::any_json")]
    pub config: Option<serde_json::Value>,

    /// The health checks' detailed output.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::free_form::option"
    )]
    #[schemars(schema_with = "crate::api::schema::any_json")]
    pub output: Option<serde_json::Value>,
}

/// The health of a Stage, ordered from best to worst.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    Deserialize,
    Serialize,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
pub enum HealthState {
    /// Everything checked is healthy.
    Healthy,
    /// The Stage has nothing to check.
    NotApplicable,
    /// Something checked is still progressing.
    Progressing,
    /// The health cannot be determined.
    #[default]
    Unknown,
    /// Something checked is unhealthy.
    Unhealthy,
}

impl HealthState {
    /// The worse of two states (Kargo's `HealthState.Merge`): Healthy <
    /// NotApplicable < Progressing < Unknown < Unhealthy.
    pub fn merge(self, other: HealthState) -> HealthState {
        self.max(other)
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthState::Healthy => "Healthy",
            HealthState::NotApplicable => "NotApplicable",
            HealthState::Progressing => "Progressing",
            HealthState::Unknown => "Unknown",
            HealthState::Unhealthy => "Unhealthy",
        })
    }
}

/// A Promotion, as a Stage's status records it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionReference {
    /// The Promotion's name.
    pub name: String,

    /// The Freight it promotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freight: Option<FreightReference>,

    /// A copy of the Promotion's status without its plan: set for the last
    /// Promotion, not for the current one, whose every step would rewrite
    /// the Stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<PromotionStatus>>,

    /// When the Promotion finished.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub finished_at: Option<Time>,
}

/// One verification of a Freight collection.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationInfo {
    /// Identifies the verification.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,

    /// Who started it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,

    /// When it started.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub start_time: Option<Time>,

    /// Its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VerificationPhase>,

    /// Why it is in that phase.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,

    /// The AnalysisRun that carries it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run: Option<AnalysisRunReference>,

    /// When it finished.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub finish_time: Option<Time>,
}

/// The phases of a verification.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum VerificationPhase {
    /// Not started.
    Pending,
    /// Running.
    Running,
    /// Passed.
    Successful,
    /// Did not pass.
    Failed,
    /// Could not be carried out.
    Error,
    /// Aborted.
    Aborted,
    /// Neither passed nor failed.
    Inconclusive,
}

impl VerificationPhase {
    /// Whether the verification has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            VerificationPhase::Pending | VerificationPhase::Running
        )
    }
}

/// A reference to an AnalysisRun.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunReference {
    /// Its namespace.
    pub namespace: String,

    /// Its name.
    pub name: String,

    /// Its phase.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
}

impl Stage {
    /// The steps of the Stage's promotion template, empty for a control-flow
    /// Stage.
    pub fn template_steps(&self) -> &[PromotionStep] {
        self.spec
            .promotion_template
            .as_ref()
            .map(|t| t.spec.steps.as_slice())
            .unwrap_or_default()
    }

    /// Whether the Stage has no promotion steps (Kargo's control-flow Stage).
    pub fn is_control_flow(&self) -> bool {
        self.template_steps().is_empty()
    }
}
