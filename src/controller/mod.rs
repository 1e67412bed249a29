//! The controllers: the imperative shell around the pure core. One watch of
//! Applications fills the Application cache and wakes exactly the Promotions
//! that wait on a changed Application; the Promotion watch keeps the wait
//! index in step with `status.awaiting` and wakes Promotions queued behind
//! one that ended.

pub mod await_index;
pub mod metrics;

use std::time::Duration;

pub use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// How the controllers run; every field has a flag and an env var in `barge run`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The longest a waiting Promotion goes without a reconcile when no event
    /// arrives. Only a safety net: waits are woken by watch events.
    pub backstop: Duration,
    /// Where Applications live when a step names no namespace.
    pub argocd_namespace: String,
    /// Watch Applications in every namespace instead of only `argocd_namespace`.
    pub argocd_all_namespaces: bool,
    /// Only reconcile Promotions in this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Map Application changes to waiting Promotions. Off only to measure
    /// what the backstop alone gives.
    pub wake_on_application_events: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backstop: Duration::from_secs(300),
            argocd_namespace: "argocd".into(),
            argocd_all_namespaces: false,
            namespace: None,
            concurrency: 16,
            wake_on_application_events: true,
        }
    }
}
