//! The `barge.dev/v1alpha1` API: one file per kind, plus the types they share.

pub mod schema;
pub mod step;

pub use step::{
    ExpressionVariable, PromotionStep, PromotionStepRetry, PromotionTaskReference, TaskKind,
};

/// The API group of every Barge kind.
pub const GROUP: &str = "barge.dev";
/// The API version of every Barge kind.
pub const VERSION: &str = "v1alpha1";
