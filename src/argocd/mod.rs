//! Argo CD as Barge sees it: a partial, read-mostly view of `Application`
//! and the pure decisions the `argocd-update` and `argocd-wait` steps and
//! Stage health make from it.

mod application;
mod decision;
mod health_check;
mod refresh;
mod sources;

pub use application::{
    Application, ApplicationStatus, Condition, HealthStatus, Info, OperationRef, OperationState,
    SyncResult, SyncStatus,
};
pub use decision::{
    AppHealth, Authorization, OperationPhase, PROMOTION_NAMESPACE_INFO, PROMOTION_UID_INFO,
    Requester, SyncDecision, assess_health, authorization, authorized_stages, decide_sync,
    is_authorized, stale_comparison, sync_patch,
};
pub use health_check::{AppHealthCheck, HealthCheckRecord};
pub use refresh::request_refresh;
pub use sources::{
    HelmImageUpdate, HelmUpdate, KustomizeImageUpdate, KustomizeUpdate, SourceError, SourceUpdate,
    desired_revisions, updated_sources,
};

/// The annotation through which an Application authorizes Stages to change it:
/// `"<namespace>:<stage>"`, or a comma-separated list of them.
pub const AUTHORIZED_STAGE_ANNOTATION: &str = "barge.dev/authorized-stage";
/// Kargo's key for the same, read when Barge's is absent, so Applications
/// set up for Kargo work unchanged.
pub const KARGO_AUTHORIZED_STAGE_ANNOTATION: &str = "kargo.akuity.io/authorized-stage";

/// The `operation.info` entry that marks a sync as started by a Promotion.
pub const PROMOTION_INFO: &str = "barge.dev/promotion";

/// Argo CD's refresh request annotation.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

#[cfg(test)]
mod tests;

/// The namespaces whose Applications Barge watches. An Application outside
/// them would never wake anyone, so it is refused with this reason instead
/// of being "not found" forever.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AppScope {
    /// Every namespace (`--argocd-all-namespaces`).
    #[default]
    All,
    /// Only this one (`--argocd-namespace`).
    Only(String),
}

impl AppScope {
    /// `None` when Applications in `namespace` are watched, else why not.
    pub fn refuses(&self, namespace: &str) -> Option<String> {
        match self {
            Self::Only(watched) if watched != namespace => Some(format!(
                "Barge watches Argo CD Applications only in namespace \"{watched}\", not \"{namespace}\" (run it with --argocd-all-namespaces to use other namespaces)"
            )),
            _ => None,
        }
    }
}
