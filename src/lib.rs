//! Barge: a Kubernetes promotion controller whose every wait is driven by
//! watch events.

pub mod api;
pub mod argocd;
pub mod await_index;
pub mod cli;
pub mod controller;
pub mod crdgen;
pub mod expand;
pub mod expr;
pub mod inflate;
pub mod metrics;
pub mod promotion;
pub mod runtime;
pub mod stage;
pub mod steps;
