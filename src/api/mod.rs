//! The `barge.dev/v1alpha1` API: one file per kind, plus the types they share.
//!
//! Field names follow Kargo (`kargo.akuity.io/v1alpha1`), so Kargo manifests
//! work after changing only `apiVersion`. Malformed objects are rejected at
//! admission by the CRDs' schemas and CEL rules ([`validation`]).

pub mod cluster_promotion_task;
pub mod free_form;
pub mod freight;
pub mod project;
pub mod project_config;
pub mod promotion;
pub mod promotion_task;
pub mod schema;
pub mod stage;
pub mod step;
pub mod validation;
pub mod warehouse;

pub use cluster_promotion_task::{ClusterPromotionTask, ClusterPromotionTaskSpec};
pub use freight::{
    ArtifactReference, Chart, Freight, FreightCollection, FreightItems, FreightOrigin,
    FreightOriginKind, FreightReference, FreightSpec, FreightStatus, GitCommit, Image,
};
pub use project::{Project, ProjectStatus};
pub use project_config::{
    ProjectConfig, ProjectConfigSpec, ProjectConfigStatus, WebhookReceiverConfig,
    WebhookReceiverDetails,
};
pub use promotion::{
    AwaitedObject, HealthCheckStep, Promotion, PromotionPhase, PromotionPlan, PromotionSpec,
    PromotionStatus, PromotionStepStatus, StepExecutionMetadata,
};
pub use promotion_task::{PromotionTask, PromotionTaskSpec};
pub use stage::{
    FreightRequest, FreightSources, Health, HealthState, PromotionReference, PromotionTemplate,
    PromotionTemplateSpec, Stage, StageSpec, StageStatus,
};
pub use step::{
    ExpressionVariable, PromotionStep, PromotionStepRetry, PromotionTaskReference, TaskKind,
};
pub use warehouse::{Warehouse, WarehouseSpec, WarehouseStatus};

/// The API group of every Barge kind.
pub const GROUP: &str = "barge.dev";
/// The API version of every Barge kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Barge object.
pub const API_VERSION: &str = "barge.dev/v1alpha1";

/// Label: the shard a Stage or Promotion belongs to (Promotion's Shard column).
pub const LABEL_SHARD: &str = "barge.dev/shard";
/// Annotation: the user who created a Promotion. Believed (and passed to
/// Argo CD as a manual sync's user) only with the create-actor admission
/// policy installed, which makes it the authenticated creator.
pub const ANNOTATION_CREATE_ACTOR: &str = "barge.dev/create-actor";
/// Annotation: set to `terminate` to abort a Promotion.
pub const ANNOTATION_ABORT: &str = "barge.dev/abort";
/// The value of [`ANNOTATION_ABORT`] that aborts a Promotion.
pub const ABORT_TERMINATE: &str = "terminate";
/// Annotation: any new value forces a reconcile; the handled value is
/// recorded in `status.lastHandledRefresh`.
pub const ANNOTATION_REFRESH: &str = "barge.dev/refresh";

/// The `barge.dev/refresh` value an object carries, if any: setting or
/// changing it makes the controller reconcile the object at once, and the
/// status's `lastHandledRefresh` says when it has.
pub fn refresh_requested(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REFRESH))
        .map(String::as_str)
}

#[cfg(test)]
mod tests;
