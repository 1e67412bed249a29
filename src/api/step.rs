//! Types shared by every kind that carries promotion steps: Stage templates,
//! Promotions and (Cluster)PromotionTasks. Field names follow Kargo so that its
//! manifests work with only the `apiVersion` changed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One step of a promotion: either a step runner (`uses`) or a reference to a
/// PromotionTask / ClusterPromotionTask (`task`) whose steps replace it when a
/// Promotion first runs (the plan is then frozen in the Promotion's status).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStep {
    /// The kind of step to run, for example `argocd-update`. Exactly one of
    /// `uses` and `task` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub uses: Option<String>,

    /// A PromotionTask or ClusterPromotionTask whose steps are expanded in place
    /// of this step. Exactly one of `uses` and `task` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<PromotionTaskReference>,

    /// The step's alias, used to refer to its output (`outputs.<alias>`) and
    /// status. Defaults to `step-N` (or `task-N` for a task reference), where N
    /// is the step's 1-based position. Names matching `^(step|task)-\d+$` are
    /// reserved.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,

    /// An expression that decides whether the step runs, for example
    /// `${{ always() }}`. When empty, the step runs only if no earlier step
    /// failed (the same as `${{ success() }}`).
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub if_: Option<String>,

    /// When true, a failure of this step does not fail the Promotion and does
    /// not cause later steps to be skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,

    /// How long the step may run and how many consecutive errors it tolerates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<PromotionStepRetry>,

    /// Variables available to this step's expressions as `vars.<name>`; they
    /// override variables of the same name from the Stage, the template and
    /// the task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,

    /// The step's configuration: free-form, specific to the step kind. String
    /// values may contain `${{ }}` expressions.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::free_form::option"
    )]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub config: Option<serde_json::Value>,
}

/// A reference from a step to the task whose steps replace it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionTaskReference {
    /// The name of the PromotionTask (in the Stage's namespace) or of the
    /// ClusterPromotionTask.
    #[schemars(
        length(min = 1, max = 253),
        pattern(crate::api::validation::DNS_SUBDOMAIN_PATTERN)
    )]
    pub name: String,

    /// The kind of the referenced task.
    #[serde(default)]
    pub kind: TaskKind,
}

/// The kinds of task a step may reference.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum TaskKind {
    /// A namespaced task in the same namespace as the Stage.
    #[default]
    PromotionTask,
    /// A cluster-scoped task shared by every namespace.
    ClusterPromotionTask,
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskKind::PromotionTask => "PromotionTask",
            TaskKind::ClusterPromotionTask => "ClusterPromotionTask",
        })
    }
}

/// Retry and timeout settings of a step.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStepRetry {
    /// The longest the step may keep running, as a Go-style duration such as
    /// `5m` or `90s`. `0` means no timeout. When unset, the step kind's
    /// default applies (5m for argocd-update).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::bounded_duration",
        serialize_with = "crate::api::validation::serialize_go_duration"
    )]
    #[schemars(
        length(max = crate::api::validation::DURATION_MAX_LENGTH),
        pattern(crate::api::validation::DURATION_PATTERN)
    )]
    pub timeout: Option<kube::core::Duration>,

    /// How many consecutive errors the step tolerates before the Promotion
    /// ends Errored. `0` means the step kind's default (at least 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "crate::api::schema::uint32")]
    pub error_threshold: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A named value available to expressions as `vars.<name>`. The value may
/// itself contain expressions. In a task, a variable without a value is
/// required and must be supplied by the Stage, the Promotion or the task
/// reference.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub struct ExpressionVariable {
    /// The variable's name: letters, digits and underscores, not starting
    /// with a digit.
    #[schemars(length(min = 1), pattern(crate::api::validation::VAR_NAME_PATTERN))]
    pub name: String,

    /// The variable's value; expressions such as `${{ ctx.stage }}` are
    /// allowed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}
