//! Running a Promotion, purely: the step engine and expression evaluation.
//! The executor that drives them with real step runners is `steps::executor`.

pub mod engine;
pub mod evaluate;

#[cfg(test)]
mod engine_tests;
