//! The evaluation budget, end to end: hostile expressions stop with
//! `ExprError::Budget` instead of running away.

use std::time::Instant;

use barge::expr::{Engine, Env, ExprError, Limits, Scope};

fn run(engine: &Engine, src: &str) -> (Result<serde_json::Value, ExprError>, std::time::Duration) {
    let env = Env::default();
    let start = Instant::now();
    let r = engine.evaluate(src, &env, Scope::Config);
    (r, start.elapsed())
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "measurement, run by hand: EXPR_MEASURE=<expression>"]
fn measure() {
    let Ok(src) = std::env::var("EXPR_MEASURE") else {
        return;
    };
    let engine = if std::env::var("EXPR_UNLIMITED").is_ok() {
        Engine::new(Limits {
            max_steps: u64::MAX,
            max_memory: u64::MAX,
            ..Limits::default()
        })
    } else {
        Engine::default()
    };
    let before = peak_rss_kib();
    let (r, t) = run(&engine, &src);
    let after = peak_rss_kib();
    let shown: String = match &r {
        Ok(v) => v.to_string().chars().take(40).collect(),
        Err(e) => e.to_string().chars().take(220).collect(),
    };
    println!(
        "MEASURE\t{t:?}\tpeak +{} KiB\t{shown}",
        after.saturating_sub(before)
    );
}
