//! The controllers: the imperative shell around the pure core.

pub mod await_index;
