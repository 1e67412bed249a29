//! Step behaviour specifications, run through the reconciler.

mod files;
mod git;
mod render;
