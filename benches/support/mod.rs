//! What the benchmarks share: percentiles of latency samples, and what
//! their watches saw.

// Not every benchmark runs a controller process, or watches.
#[allow(dead_code)]
pub mod controller;
#[allow(dead_code)]
pub mod watched;

#[allow(dead_code)]
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

use std::time::Instant;

/// Latency samples summarized, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentiles; all zero for no samples.
pub fn summarize(mut samples: Vec<f64>) -> Summary {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    Summary {
        n: samples.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// `to - from` in milliseconds, negative when `to` came first.
#[allow(dead_code)]
pub fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        to.duration_since(from).as_secs_f64() * 1000.0
    } else {
        -(from.duration_since(to).as_secs_f64() * 1000.0)
    }
}
