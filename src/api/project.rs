//! `Project`: Kargo's cluster-scoped project, whose namespace holds its
//! Stages, Freight and Promotions. With `--manage-projects`, Barge creates
//! the namespace (labelled as Kargo labels it) and an empty ProjectConfig,
//! and deletes the namespace with the Project unless told to keep it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::validation;

/// The label Kargo puts on a project's namespace; a namespace that exists
/// without it is not taken over.
pub const LABEL_PROJECT: &str = "kargo.akuity.io/project";
/// On a Project or its namespace: keep the namespace when the Project goes.
pub const ANNOTATION_KEEP_NAMESPACE: &str = "kargo.akuity.io/keep-namespace";
/// Barge's finalizer: the namespace is dealt with before the Project goes.
pub const FINALIZER: &str = "barge.dev/project";

// kube's attributes repeat keys such as `type_` across printer columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "barge.dev",
    version = "v1alpha1",
    kind = "Project",
    plural = "projects",
    no_spec,
    status = "ProjectStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Project is a namespace of Stages, Freight and Promotions, as Kargo declares one. With \
           --manage-projects Barge creates its namespace and ProjectConfig.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ProjectFields {
    /// Optional, as in Kargo (whose current Projects have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ProjectSpec>,
}

/// A Project's spec as Kargo before v1.3 wrote it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// Kargo before v1.3 kept promotion policies here; they now belong in
    /// the ProjectConfig. With `--manage-projects` they are copied into a
    /// ProjectConfig that has none, as Kargo migrated them; otherwise they
    /// are not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub promotion_policies: Vec<crate::api::project_config::PromotionPolicy>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// `Ready`: the namespace and ProjectConfig exist; otherwise why not
    /// (for example a namespace of that name that is not a project's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = validation::conditions)]
    pub conditions: Vec<Condition>,
}
