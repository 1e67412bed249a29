//! `PromotionTask`: a reusable, namespaced list of steps that Stage templates
//! and Promotions reference with `- task: {name: ...}`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::step::{ExpressionVariable, PromotionStep};
use crate::api::validation;

/// The variables and steps of a PromotionTask.
// kube's attributes repeat keys such as `type_` across printer columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "barge.dev",
    version = "v1alpha1",
    kind = "PromotionTask",
    plural = "promotiontasks",
    namespaced,
    shortname = "promotask",
    shortname = "promotasks",
    derive = "PartialEq",
    derive = "Default",
    doc = "PromotionTask is a reusable list of promotion steps, referenced from the Stages and \
           Promotions of its namespace. Its steps are expanded in place of the reference when a \
           Promotion starts.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PromotionTaskSpec {
    /// The task's parameters, available as `vars.<name>` to its steps. A var
    /// with a value is a default; a var without one is required and must be
    /// set by the Stage, its template, the Promotion or the `- task:` step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<ExpressionVariable>,

    /// The task's steps, run in order. Each must set `uses`: a task cannot
    /// reference another task. When expanded, a step's alias becomes
    /// `<taskAlias>::<as>` (or `<taskAlias>::step-N`).
    #[schemars(transform = validation::task_steps)]
    pub steps: Vec<PromotionStep>,
}

impl From<crate::api::ClusterPromotionTaskSpec> for PromotionTaskSpec {
    fn from(spec: crate::api::ClusterPromotionTaskSpec) -> Self {
        PromotionTaskSpec {
            vars: spec.vars,
            steps: spec.steps,
        }
    }
}
