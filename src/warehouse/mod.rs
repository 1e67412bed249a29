//! Warehouses: what discovers Freight. Discovery per subscription kind
//! (git, image, chart), the tag selection they share, when to discover,
//! and the Freight made of what was found, named as Kargo names it.

pub mod chart;
pub mod constraint;
pub mod discover;
pub mod discovered;
pub mod freight;
pub mod freight_name;
pub mod git;
pub mod image;
pub mod oci;
pub mod paths;
pub mod schedule;
pub mod tags;

/// The credentials discoveries take, and how they are chosen among a
/// namespace's labelled Secrets.
pub use crate::git::credentials::{
    CredentialKind, CredentialSecret, Credentials, CredentialsError, select_for,
};
