//! Compatibility corpus: expressions and templates whose results were
//! recorded from the Go implementations Kargo uses — expr-lang v1.17.8
//! (`expr.Compile` + `expr.Run`, in the environment of
//! `tests/support/expr_env.rs`) and Kargo v1.11.2's
//! `expressions.EvaluateTemplate` — and must come out the same here. The
//! cases are data, in `tests/fixtures/expr_compat/`: `[source, result]`
//! pairs, the result Go's JSON as text, or `null` where Go reported an
//! error (the messages differ and are not compared). Left out on purpose, because Go's static type checker rejects
//! them for literal operand types while it accepts the same operations on
//! environment values (which behave here as Go's runtime does): `nil
//! contains "a"`, `true && 1`, `nil in nil`, `max()`, `first(nil)`, `get(nil,
//! "x")`; and where Go builds a value its own `json.Marshal` cannot write
//! (`groupBy` and `fromPairs` maps with non-string keys), which here are
//! maps keyed by the key's text (so a number indexes any map by its text
//! here: `vars.m[1]` is nil rather than Go's error); and `split(s, sep, 0)`,
//! which is `[]` here and `null` (a nil slice) in Go.
//!
//! `dates.json` holds expr-lang's date functions, operators and methods
//! (`now()` fixed at `expr_env::NOW` on both sides; random Go layouts
//! formatted and parsed back), `kargo_functions.json` Kargo's
//! `semverParse()` and data functions as templates, recorded with the
//! ConfigMaps, Secrets, Stages and Freight of `expr_env::project_data` in
//! controller-runtime's fake client. Left out there: comparisons Go's type
//! checker refuses for a literal operand (`now().Month() == 3`,
//! `duration("1h") == 3600000000000`, `now() == 1`, `now().Month() in [3]`),
//! false here as at Go's run time; `string()` of a location, which Go prints
//! as the `time.Location` struct's internals and Barge as its name;
//! `now().Local().Location().String()`, which depends on the Go process's
//! local zone (`Local` is UTC here); and `configMap("")`, `{}` from the fake
//! client but an error from a real API server (and here).

#[path = "support/expr_env.rs"]
mod expr_env;

use barge::expr::{Engine, Evaluator, Scope, template};
use expr_env::env;
use serde_json::Value as Json;

/// Loose JSON equality: numbers by value (Go writes 3.0 as 3).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// One recorded case: the source, and Go's result as JSON (`None`: an error).
type Case = (String, Option<String>);

/// Cases recorded from Go, as `[source, result or null]` pairs in a JSON file.
fn corpus(json: &str) -> Vec<Case> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("the recorded corpus: {e}"))
}

/// (expression, Go's result as JSON, or None for an error)
fn expressions() -> Vec<Case> {
    corpus(include_str!("fixtures/expr_compat/expressions.json"))
}

/// (template, Kargo's result as JSON, or None for an error)
fn templates() -> Vec<Case> {
    corpus(include_str!("fixtures/expr_compat/templates.json"))
}

/// (expression with dates, Go's result as JSON, or None for an error)
fn dates() -> Vec<Case> {
    corpus(include_str!("fixtures/expr_compat/dates.json"))
}

/// (template using `semverParse` or a data function, Kargo's result as
/// JSON, or None for an error)
fn kargo_functions() -> Vec<Case> {
    corpus(include_str!("fixtures/expr_compat/kargo_functions.json"))
}

/// Evaluates every case and asserts that each agrees with what Go recorded;
/// `show` writes a source in the failure list.
fn assert_agree<E: std::fmt::Debug>(
    cases: &[Case],
    show: fn(&str) -> String,
    evaluate: impl Fn(&str) -> Result<Json, E>,
) {
    let mut failures = Vec::new();
    for (src, expected) in cases {
        let got = evaluate(src);
        let ok = match (expected, &got) {
            (None, Err(_)) => true,
            (Some(text), Ok(v)) => {
                serde_json::from_str::<Json>(text).is_ok_and(|want| same(&want, v))
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: expected {expected:?}, got {got:?}", show(src)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn expressions_evaluate_as_in_expr_lang() {
    let engine = Engine::default();
    let env = env();
    assert_agree(
        &expressions(),
        |src| src.to_string(),
        |src| {
            engine
                .session(&env, Scope::Config)
                .and_then(|mut s| s.evaluate(src))
        },
    );
}

#[test]
fn templates_evaluate_as_in_kargo() {
    let env = env();
    assert_agree(
        &templates(),
        |src| format!("{src:?}"),
        |src| template::evaluate_string(src, &env, Scope::Config),
    );
}

#[test]
fn dates_evaluate_as_in_expr_lang() {
    let engine = Engine::default();
    let env = env();
    assert_agree(
        &dates(),
        |src| src.to_string(),
        |src| {
            engine
                .session(&env, Scope::Config)
                .and_then(|mut s| s.evaluate(src))
        },
    );
}

#[test]
fn kargo_functions_evaluate_as_in_kargo() {
    let env = env();
    assert_agree(
        &kargo_functions(),
        |src| format!("{src:?}"),
        |src| template::evaluate_string(src, &env, Scope::Config),
    );
}
