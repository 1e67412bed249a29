//! Running a Promotion: the pure step engine and the executor around it.

pub mod engine;
pub mod evaluate;
pub mod executor;

#[cfg(test)]
mod engine_tests;
