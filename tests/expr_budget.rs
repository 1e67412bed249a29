//! The evaluation budget end to end: hostile expressions stop with
//! `ExprError::Budget` (steps, memory or nesting) instead of running away.
//!
//! Measured on a debug build (`cargo test`) on a 2-core machine shared with
//! other builds and a fuzzer (so times vary up to 2-3x between runs),
//! default limits; time to the error and peak RSS growth of the process
//! (`EXPR_MEASURE=<expr> cargo test --test expr_budget -- --ignored measure
//! --nocapture`):
//!
//! | expression | stopped by | time | peak RSS |
//! |---|---|---|---|
//! | `len(map(1..3000000, {# * #}))` | steps (range refused before it is built) | 0.2 ms | +1.4 MiB |
//! | `repeat("x", 1e9)` | memory (refused before allocating) | 0.2 ms | +1.4 MiB |
//! | string doubling `let b = a + a; ...` 17 times | memory | 20-56 ms | +33 MiB |
//! | `reduce(1..100000, #acc + #acc, "x")` | memory | 13-64 ms | +15 MiB |
//! | `reduce(1..100000, [#acc], 0)` | nesting (200 levels) | 4-9 ms | +3 MiB |
//! | `(((…1…)))` 5000 deep | nesting (parser) | 2 ms | +2 MiB |
//! | `map(1..1000, map(1..1000, map(1..1000, #)))` | steps | 59-68 ms | +5 MiB |
//! | `toJSON` of 1000 references to a 1 MB string | steps (output capped while written) | 45-80 ms | +10 MiB |
//! | `s matches "a*b"` 10000 times on 100 KB | steps | 60-110 ms | +4 MiB |
//! | 2000 distinct regexes | steps | 72-100 ms | +5 MiB |
//! | `sort(map(1..100000, -#))` | steps | 61-105 ms | +6 MiB |
//! | `split(repeat("ab", 500000), "")` | steps | 50-85 ms | +17 MiB |
//! | `sortBy(map(1..100000, {{a: -#}}), .a)` | memory | 60-140 ms | +27 MiB |
//! | `fromJSON(toJSON(map(1..100000, #)))` | steps | 60-100 ms | +4 MiB |
//! | `len(uniq(1..10000))` | steps | 21-65 ms | +1 MiB |
//! | `map(1..100000, date("Mon, 14 Aug 2023 13:45:00 GMT"))` (the last of expr-lang's layouts) | steps | 50 ms | +4 MiB |
//! | `map(1..100000, duration(repeat("1h", 10000)))` | steps | 60-110 ms | +4 MiB |
//! | `map(1..100000, now().Format(repeat("Monday January ", 1000)))` | steps | 30 ms | +5 MiB |
//! | `map(1..100000, date(s, "2006-01-02 15:04 MST", "Europe/Zurich"))` (abbreviation looked up in the zone) | steps | 40 ms | +4 MiB |
//!
//! Without a budget, `len(map(1..100000, {# * #}))` takes 24-36 ms: one step
//! of fuel is about 40-60 ns of a debug build, so the default 1,000,000
//! steps is about 50-100 ms, and 32 MiB of charged values keeps the peak
//! under 64 MiB.

use std::time::Instant;

use barge::expr::{Engine, Env, ExprError, Limit, Limits, Scope};

fn limit_of(src: &str) -> Option<Limit> {
    match Engine::default().evaluate(src, &Env::default(), Scope::Config) {
        Err(ExprError::Budget { limit, .. }) => Some(limit),
        Err(e) => panic!("{src}: not a budget error: {e}"),
        Ok(v) => panic!("{src}: not stopped: {v}"),
    }
}

fn steps() -> Option<Limit> {
    Some(Limit::Steps(Limits::default().max_steps))
}

fn memory() -> Option<Limit> {
    Some(Limit::Memory(Limits::default().max_memory))
}

#[test]
fn map_over_three_million_is_stopped_by_steps() {
    assert_eq!(limit_of("len(map(1..3000000, {# * #}))"), steps());
}

#[test]
fn parsing_dates_in_a_loop_is_stopped_by_steps() {
    assert_eq!(
        limit_of("map(1..100000, date(\"Mon, 14 Aug 2023 13:45:00 GMT\"))"),
        steps()
    );
    assert_eq!(
        limit_of("map(1..100000, duration(repeat(\"1h\", 10000)))"),
        steps()
    );
}

#[test]
fn repeat_a_billion_times_is_stopped_by_memory() {
    assert_eq!(limit_of("repeat(\"x\", 1e9)"), memory());
}

#[test]
fn exponential_string_doubling_is_stopped_by_memory() {
    let lets: String = (b'b'..=b'r')
        .map(|c| format!("let {} = {p} + {p}; ", c as char, p = (c - 1) as char))
        .collect();
    let src = format!("let a = repeat(\"x\", 1000); {lets}len(r)");
    assert_eq!(limit_of(&src), memory());
}

#[test]
fn doubling_in_a_reduce_is_stopped_by_memory() {
    assert_eq!(limit_of("reduce(1..100000, #acc + #acc, \"x\")"), memory());
}

#[test]
fn nesting_values_in_a_reduce_is_stopped_by_depth() {
    assert!(matches!(
        limit_of("reduce(1..100000, [#acc], 0)"),
        Some(Limit::Depth(_))
    ));
}

#[test]
fn deep_parentheses_are_stopped_by_depth() {
    let src = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(matches!(limit_of(&src), Some(Limit::Depth(_))));
}

#[test]
fn nested_maps_are_stopped_by_steps() {
    assert_eq!(
        limit_of("map(1..1000, map(1..1000, map(1..1000, #)))"),
        steps()
    );
}

#[test]
fn printing_shared_big_strings_is_stopped_while_printing() {
    assert_eq!(
        limit_of("let x = repeat(\"y\", 1000000); len(toJSON(map(1..1000, x)))"),
        steps()
    );
}

#[test]
fn regex_matching_over_big_text_is_stopped_by_steps() {
    assert_eq!(
        limit_of("let s = repeat(\"a\", 100000); len(map(1..10000, s matches \"a*b\"))"),
        steps()
    );
}

#[test]
fn compiling_many_regexes_is_stopped_by_steps() {
    assert_eq!(
        limit_of("len(map(1..2000, string(#) matches string(#) + \".*\"))"),
        steps()
    );
}

#[test]
fn exploding_a_big_string_is_stopped() {
    assert!(limit_of("len(split(repeat(\"ab\", 500000), \"\"))").is_some());
}

#[test]
fn quadratic_uniq_is_stopped_by_steps() {
    assert_eq!(limit_of("len(uniq(1..10000))"), steps());
}

#[test]
fn many_small_maps_are_stopped() {
    assert!(limit_of("sortBy(map(1..100000, {{a: -#}}), .a)").is_some());
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Prints the time and peak memory of one expression (in its own process,
/// for a clean peak): `EXPR_MEASURE='<expr>' cargo test --test expr_budget
/// -- --ignored measure --nocapture`. `EXPR_UNLIMITED=1` lifts the steps
/// and memory limits.
#[test]
#[ignore = "measurement, run by hand"]
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
    let start = Instant::now();
    let result = engine.evaluate(&src, &Env::default(), Scope::Config);
    let elapsed = start.elapsed();
    let after = peak_rss_kib();
    let shown: String = match &result {
        Ok(v) => v.to_string().chars().take(40).collect(),
        Err(e) => e.to_string().chars().take(220).collect(),
    };
    println!(
        "MEASURE\t{elapsed:?}\tpeak +{} KiB\t{shown}",
        after.saturating_sub(before)
    );
}
