//! The evaluation budget: steps, memory, source length and nesting, all
//! reported as `ExprError::Budget`. (End-to-end timings of hostile
//! expressions are in `tests/expr_budget.rs`.)

use serde_json::json;

use super::{env, eval};
use crate::expr::{Engine, Env, ExprError, Limit, Limits, Scope, Session};

fn limit_of(src: &str, engine: &Engine) -> Option<Limit> {
    match engine.evaluate(src, &env(), Scope::Config) {
        Err(ExprError::Budget { limit, .. }) => Some(limit),
        _ => None,
    }
}

fn default_limit_of(src: &str) -> Option<Limit> {
    limit_of(src, &Engine::default())
}

#[test]
fn a_huge_range_is_refused_before_it_is_built() {
    assert_eq!(
        default_limit_of("len(map(1..3000000, {# * #}))"),
        Some(Limit::Steps(Limits::default().max_steps))
    );
}

#[test]
fn the_budget_message_names_the_expression_and_the_limit() {
    let e = Engine::default()
        .evaluate(
            "len(map(1..3000000, {# * #}))",
            &Env::default(),
            Scope::Config,
        )
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "expression \"len(map(1..3000000, {# * #}))\" exceeded its evaluation budget of 1000000 steps"
        )
    );
}

#[test]
fn repeating_a_billion_times_is_refused_by_memory() {
    assert!(matches!(
        default_limit_of("repeat('x', 1e9)"),
        Some(Limit::Memory(_))
    ));
}

#[test]
fn a_large_repeat_within_budget_works() {
    assert_eq!(eval("len(repeat('ab', 100000))"), json!(200000));
}

#[test]
fn doubling_a_string_is_cut_off_by_memory() {
    let src = "let a = repeat('x', 1024); let b = a + a; let c = b + b; let d = c + c; \
               let e = d + d; let f = e + e; let g = f + f; let h = g + g; let i = h + h; \
               let j = i + i; let k = j + j; let l = k + k; let m = l + l; let n = m + m; \
               let o = n + n; let p = o + o; let q = p + p; len(q + q)";
    assert!(matches!(default_limit_of(src), Some(Limit::Memory(_))));
}

#[test]
fn building_values_nested_too_deep_is_refused() {
    assert!(matches!(
        default_limit_of("reduce(1..1000, [#acc], 0)"),
        Some(Limit::Depth(_))
    ));
}

#[test]
fn deep_parentheses_are_refused_by_depth() {
    let src = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(default_limit_of(&src), Some(Limit::Depth(64)));
}

#[test]
fn a_long_left_leaning_sum_is_refused_by_depth() {
    // No recursion while parsing, but the tree would be 3000 deep.
    let src = vec!["1"; 3000].join("+");
    assert_eq!(default_limit_of(&src), Some(Limit::Depth(64)));
}

#[test]
fn a_long_member_chain_is_refused_by_depth() {
    let src = format!("vars{}", ".a".repeat(3000));
    assert_eq!(default_limit_of(&src), Some(Limit::Depth(64)));
}

#[test]
fn an_over_long_source_is_refused() {
    let src = format!("'{}'", "x".repeat(20_000));
    assert_eq!(
        default_limit_of(&src),
        Some(Limit::SourceLength(Limits::default().max_source_len))
    );
}

#[test]
fn limits_are_configurable() {
    let tight = Engine::new(Limits {
        max_steps: 10,
        ..Limits::default()
    });
    assert_eq!(
        limit_of("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", &tight),
        Some(Limit::Steps(10))
    );
    assert_eq!(limit_of("[1, 2]", &tight), None);
}

#[test]
fn one_session_shares_one_budget() {
    let engine = Engine::new(Limits {
        max_steps: 1_000,
        ..Limits::default()
    });
    let env = env();
    let Ok(mut session) = engine.start(&env, Scope::Config) else {
        panic!("session")
    };
    let mut budget_hit = false;
    for _ in 0..20 {
        match session.evaluate("len(1..100)") {
            Ok(_) => {}
            Err(ExprError::Budget { .. }) => {
                budget_hit = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(budget_hit);
}

#[test]
fn steps_are_counted_per_node_and_per_element() {
    let env = env();
    let engine = Engine::default();
    let Ok(mut session) = engine.start(&env, Scope::Config) else {
        panic!("session")
    };
    let _ = session.evaluate("1 + 2");
    assert_eq!(session.used().0, 3);
    let Ok(mut session) = engine.start(&env, Scope::Config) else {
        panic!("session")
    };
    let _ = session.evaluate("1..10");
    // Three nodes and ten elements.
    assert_eq!(session.used().0, 13);
}

#[test]
fn the_deepest_accepted_expressions_evaluate_on_a_small_stack() {
    // 64 levels of each construct must fit easily in 512 KiB of stack (tokio's
    // worker threads have 2 MiB) in a debug build.
    let sources = [
        format!("{}1{}", "(".repeat(60), ")".repeat(60)),
        format!("{}1{}", "[".repeat(60), "]".repeat(60)),
        format!("{}true", "!".repeat(60)),
        format!("{}1{}", "{a: ".repeat(60), "}".repeat(60)),
        format!("{}1{}", "map([1], ".repeat(30), ")".repeat(30)),
        format!("{}1{}", "len(string(".repeat(30), "))".repeat(30)),
        format!("{}0", "let x = 1; ".repeat(60)),
        vec!["1"; 60].join("+"),
        format!("vars{}", "?.a".repeat(60)),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let engine = Engine::default();
            sources
                .iter()
                .map(|s| engine.evaluate(s, &env(), Scope::Config).is_ok())
                .collect::<Vec<_>>()
        });
    let Ok(handle) = handle else { panic!("spawn") };
    let results = handle.join().unwrap_or_default();
    assert_eq!(results.len(), 9);
    assert!(results.iter().all(|ok| *ok), "{results:?}");
}

#[test]
#[ignore = "measurement, run by hand: STACK_PROBE=<form>:<KiB>:<depth>"]
fn measure_stack_per_level() {
    let Ok(probe) = std::env::var("STACK_PROBE") else {
        return;
    };
    let parts: Vec<&str> = probe.split(':').collect();
    let (name, kib, n) = (
        parts[0],
        parts[1].parse::<usize>().unwrap_or(0),
        parts[2].parse::<usize>().unwrap_or(0),
    );
    let src = match name {
        "parens" => format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        "arrays" => format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        "nots" => format!("{}true", "!".repeat(n)),
        "maps" => format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)),
        "preds" => format!("{}1{}", "map([1], ".repeat(n / 2), ")".repeat(n / 2)),
        "calls" => format!("{}1{}", "len(string(".repeat(n / 2), "))".repeat(n / 2)),
        "lets" => format!("{}0", "let x = 1; ".repeat(n)),
        "sum" => vec!["1"; n].join("+"),
        _ => format!("vars{}", "?.a".repeat(n)),
    };
    let engine = Engine::new(Limits {
        max_depth: 10_000,
        ..Limits::default()
    });
    let ok = std::thread::Builder::new()
        .stack_size(kib * 1024)
        .spawn(move || {
            if std::env::var("PARSE_ONLY").is_ok() {
                engine.compile(&src).map(|_| ())
            } else {
                engine.evaluate(&src, &env(), Scope::Config).map(|_| ())
            }
        })
        .map(|h| h.join().is_ok())
        .unwrap_or(false);
    println!("PROBE {name} {kib} KiB depth {n} ok={ok}");
}
