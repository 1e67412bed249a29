//! Barge: a Kubernetes promotion controller whose every wait is driven by
//! watch events.

/// The controller's name: the field manager of its writes, the reporter of
/// its Events, the default holder of its Lease and the user its automated
/// Argo CD syncs name.
pub const CONTROLLER_NAME: &str = "barge-controller";

pub mod admission;
pub mod api;
pub mod api_requests;
mod approval;
pub mod argocd;
mod availability;
mod await_index;
pub mod cli;
pub mod controller;
mod cpu_bound;
pub mod crdgen;
pub mod dashboard;
mod expand;
pub mod expr;
pub mod fault;
mod git;
pub mod inflate;
mod metrics;
mod promotion;
pub mod runtime;
mod stage;
mod steps;
mod urls;
pub mod warehouse;
pub mod webhook;
