//! An Argo CD application-controller double, for Barge's tests, benchmarks
//! and local sandbox, following Argo CD's application controller; the
//! conformance suite (`tests/conformance/`) holds it to real Argo CD.
//!
//! Where real Argo CD is not needed (fast tests, the benchmark, fault
//! injection), this double plays its application controller
//! against a real kube-apiserver: it watches `argoproj.io/v1alpha1`
//! Applications and runs Argo CD's two independent loops on every change.
//!
//! - **REFRESH**: when `reconciledAt` is
//!   missing, the `argocd.argoproj.io/refresh` annotation is present, the
//!   spec's source(s) or destination differ from `status.sync.comparedTo`,
//!   or the operation loop asked for it. It resolves the target revisions,
//!   writes `status.sync` (`Synced` when the newest history entry has the
//!   same revisions and sources, else `OutOfSync`; `Unknown` plus a
//!   `ComparisonError` condition when a revision cannot be resolved),
//!   `status.health` (`lastTransitionTime` only when the status changes)
//!   and `reconciledAt`, then removes the refresh annotations, then starts
//!   an automated sync if `spec.syncPolicy.automated` asks for one.
//! - **OPERATION**: when `.operation` is
//!   set, re-reads the Application and either continues the operation in
//!   progress (a request written over it is dropped when it completes) or
//!   starts one: `operationState = {operation, phase: Running, startedAt}`,
//!   then the sync window, validation, `syncResult` with the resolved
//!   revisions and `one or more tasks are running`, the sync delay, and the
//!   end: a success appends `status.history` first, then one write sets
//!   `Succeeded`, `finishedAt` and `syncResult.resources` and removes
//!   `.operation`; failures end `Failed` or `Error`, or go back to
//!   `Running` for a retry with Argo CD's backoff; `Terminating` ends
//!   `Failed` (`Operation terminated`). Then a refresh reports
//!   `reconciledAt >= finishedAt`, `Synced` and the health after sync.
//!
//! All writes are JSON patches on the main resource (the CRD has no status
//! subresource), conditional on the resourceVersion they were computed from
//! and recomputed on 409 Conflict. Timestamps are RFC 3339 UTC at second
//! precision. Work is driven by watch events through two
//! `kube::runtime::Controller`s; the only timers are exact requeues (a sync
//! delay, a retry backoff, Progressing → Healthy).
//!
//! Per-Application behaviour is scripted with annotations ([`knobs`]); the
//! [`Journal`] records every sync operation started and every API request;
//! [`fixtures`] builds Applications and makes the writes other parties make
//! (a Barge-style sync request, a foreign operation, a termination).
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), barge_argocd_double::Error> {
//! use barge_argocd_double::{Double, DoubleConfig};
//! let double = Double::new(client, DoubleConfig::namespaced("argocd")).spawn();
//! let journal = double.journal();
//! // ... promote ...
//! assert_eq!(journal.syncs_for_promotion("dev.01abc").len(), 1);
//! # Ok(()) }
//! ```

mod app;
mod double;
pub mod fixtures;
mod journal;
pub mod knobs;
mod operation;
mod refresh;
mod time;
mod write;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};

pub use app::AppKey;
pub use double::{Double, DoubleConfig, DoubleHandle};
pub use journal::{
    InfoEntry, Journal, PROMOTION_INFO, RequestCounts, SyncRecord, WaitTimeout, WriteInstants,
};
pub use knobs::{HealthAfterSync, HealthStatus, Knobs, Outcome, PostSyncRefresh};
pub use write::{WriteHook, WriteKind};

/// The project's Application CRD (`applications.argoproj.io`).
pub const CRD_YAML: &str = include_str!("../crds/application.yaml");

/// The CRD's name.
pub const CRD_NAME: &str = "applications.argoproj.io";

/// Errors of the double and its fixtures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{app}: write still conflicting after {attempts} attempts")]
    Conflicts { app: String, attempts: u32 },
    #[error("object without namespace or name")]
    NoKey,
    #[error("Application CRD: {0}")]
    Crd(String),
    #[error("{0}: another operation is already in progress")]
    OperationInProgress(String),
    #[error("{0}: no operation in progress")]
    NoOperationInProgress(String),
    #[error("{0}: not found")]
    NotFound(String),
    #[error("watch: {0}")]
    Watch(String),
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
}

/// `argoproj.io/v1alpha1`, kind `Application`, plural `applications`.
pub fn api_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    ApiResource::from_gvk_with_plural(&gvk, "applications")
}

/// Applies [`CRD_YAML`] (server-side apply) and waits until it is
/// Established.
pub async fn install_crd(client: kube::Client, timeout: Duration) -> Result<(), Error> {
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(CRD_YAML).map_err(|e| Error::Crd(e.to_string()))?;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    api.patch(
        CRD_NAME,
        &PatchParams::apply("argocd-double").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let established = await_condition(api, CRD_NAME, conditions::is_crd_established());
    match tokio::time::timeout(timeout, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Crd(e.to_string())),
        Err(_) => Err(Error::Timeout {
            what: format!("CRD {CRD_NAME} to be Established"),
            timeout,
        }),
    }
}
