//! Warehouses: what discovers Freight. So far, the name a Freight of given
//! artifacts gets, as Kargo computes it.

pub mod constraint;
pub mod freight_name;
pub mod tags;
