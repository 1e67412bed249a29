//! Step behaviour specifications, run through the reconciler.

mod chart;
mod data;
mod edits;
mod files;
mod git;
mod http;
mod metadata;
mod pull_requests;
mod render;
