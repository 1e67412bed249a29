//! A read-only live view of the pipelines: Warehouses → Stages as a graph,
//! each Stage's health, Freight and Promotions, pushed to the browser as
//! the caches change. Served by the controller from its own caches (`barge
//! run --dashboard-addr`) or by `barge dashboard` from caches of its own.
//!
//! [`view`] is the pure core; [`source`] and [`server`] are the shell.

pub mod server;
pub mod source;
pub mod view;

pub use server::{COALESCE, serve};
pub use source::{Caches, Feed};
