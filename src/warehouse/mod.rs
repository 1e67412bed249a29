//! Warehouses: what discovers Freight. Discovery per subscription kind
//! (git, image, chart), the tag selection they share, and the name a
//! Freight of given artifacts gets, as Kargo computes it.

pub mod constraint;
pub mod discovered;
pub mod freight;
pub mod freight_name;
pub mod git;
pub mod paths;
pub mod schedule;
pub mod tags;
