//! `ClusterPromotionTask`: a reusable, cluster-scoped list of steps that the
//! Stages and Promotions of every namespace may reference with
//! `- task: {kind: ClusterPromotionTask, name: ...}`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::step::{ExpressionVariable, PromotionStep};
use crate::api::validation;

/// The variables and steps of a ClusterPromotionTask (the same shape as a
/// PromotionTask's).
// kube's attributes repeat keys such as `type_` across printer columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "barge.dev",
    version = "v1alpha1",
    kind = "ClusterPromotionTask",
    plural = "clusterpromotiontasks",
    shortname = "clusterpromotask",
    shortname = "clusterpromotasks",
    derive = "PartialEq",
    derive = "Default",
    doc = "ClusterPromotionTask is a reusable list of promotion steps shared by every namespace. Its \
           steps are expanded in place of the reference when a Promotion starts.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPromotionTaskSpec {
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

impl From<crate::api::PromotionTaskSpec> for ClusterPromotionTaskSpec {
    fn from(spec: crate::api::PromotionTaskSpec) -> Self {
        ClusterPromotionTaskSpec {
            vars: spec.vars,
            steps: spec.steps,
        }
    }
}
