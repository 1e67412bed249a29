//! Warehouses: what discovers Freight. Discovery per subscription kind
//! (git, image, chart), the tag selection they share, and the name a
//! Freight of given artifacts gets, as Kargo computes it.

pub mod chart;
pub mod constraint;
pub mod discovered;
pub mod freight_name;
pub mod image;
pub mod oci;
pub mod tags;
