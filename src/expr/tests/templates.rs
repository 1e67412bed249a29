//! Kargo's template typing rules (`EvaluateTemplate`), config walking and
//! `if` conditions.

use serde_json::{Value as Json, json};

use super::env;
use crate::expr::template::{
    evaluate_bool, evaluate_condition, evaluate_config, evaluate_string, evaluate_string_with,
    has_expression,
};
use crate::expr::{Env, Evaluator, ExprError, Scope, Session, StepStatuses};

fn render(template: &str) -> Json {
    match evaluate_string(template, &env(), Scope::Config) {
        Ok(v) => v,
        Err(e) => panic!("{template}: {e}"),
    }
}

#[test]
fn a_string_without_delimiters_is_unchanged() {
    assert_eq!(render("42"), json!("42"));
    assert_eq!(render("true"), json!("true"));
    assert_eq!(
        render("{{ not an expression }}"),
        json!("{{ not an expression }}")
    );
}

#[test]
fn two_numbers_side_by_side_become_the_number_12() {
    assert_eq!(render("${{1}}${{2}}"), json!(12));
}

#[test]
fn a_string_true_becomes_the_bool_true() {
    assert_eq!(render("${{ 'true' }}"), json!(true));
}

#[test]
fn quote_forces_a_string() {
    assert_eq!(render("${{ quote(42) }}"), json!("42"));
    assert_eq!(render("${{ quote(true) }}"), json!("true"));
    assert_eq!(render("${{ quote(vars.s) }}"), json!("str"));
}

#[test]
fn quote_of_a_string_with_quotes_keeps_go_escapes() {
    // Kargo's quote() uses Go's %q; the template only strips the outer quotes.
    assert_eq!(render(r#"${{ quote('a"b') }}"#), json!(r#"a\"b"#));
}

#[test]
fn unsafe_quote_keeps_the_json_quotes() {
    assert_eq!(render("${{ unsafeQuote('ab') }}"), json!("\"ab\""));
}

#[test]
fn as_json_gives_indented_json_text() {
    assert_eq!(render("${{ asJSON({a: 1}) }}"), json!("{\n  \"a\": 1\n}\n"));
}

#[test]
fn a_quoted_result_with_a_trailing_newline_keeps_the_newline() {
    assert_eq!(render("${{ quote('x') }}\n"), json!("x\n"));
}

#[test]
fn a_trailing_newline_is_ignored_when_typing() {
    assert_eq!(render("${{ 1 }}\n"), json!(1));
}

#[test]
fn a_plain_string_result_keeps_its_trailing_newline() {
    assert_eq!(render("${{ 'x' }}\n"), json!("x\n"));
}

#[test]
fn whole_floats_become_json_integers() {
    assert_eq!(render("${{ 1.0 }}"), json!(1));
    assert_eq!(render("${{ vars.n }}"), json!(3));
}

#[test]
fn fractional_floats_stay_floats() {
    assert_eq!(render("${{ vars.n / 2 }}"), json!(1.5));
}

#[test]
fn go_float_syntax_is_a_number() {
    assert_eq!(render("${{ '1_000' }}"), json!(1000));
    assert_eq!(render("${{ '.5' }}"), json!(0.5));
    assert_eq!(render("${{ '+5' }}"), json!(5));
}

#[test]
fn one_and_zero_are_numbers_not_bools() {
    assert_eq!(render("${{ '1' }}"), json!(1));
}

#[test]
fn go_bool_spellings_are_bools() {
    for (text, b) in [
        ("t", true),
        ("T", true),
        ("TRUE", true),
        ("True", true),
        ("f", false),
        ("F", false),
        ("FALSE", false),
        ("False", false),
    ] {
        assert_eq!(render(&format!("${{{{ '{text}' }}}}")), json!(b), "{text}");
    }
    assert_eq!(render("${{ 'yes' }}"), json!("yes"));
}

#[test]
fn json_text_becomes_json() {
    assert_eq!(
        render("${{ vars.m }}"),
        json!({"a": 1, "b-c": {"d": "deep"}})
    );
    assert_eq!(render("${{ '[1, \"x\"]' }}"), json!([1, "x"]));
    assert_eq!(render("${{ nil }}"), json!(null));
    assert_eq!(render("${{ ' 12 ' }}"), json!(12));
}

#[test]
fn invalid_json_stays_a_string() {
    assert_eq!(render("${{ '[1, 2' }}"), json!("[1, 2"));
}

#[test]
fn text_around_expressions_is_kept() {
    assert_eq!(
        render("nginx:${{ vars.s }}-${{ vars.n }}"),
        json!("nginx:str-3")
    );
}

#[test]
fn non_string_results_are_inserted_as_json() {
    assert_eq!(render("list=${{ vars.list }}"), json!("list=[1,2,3]"));
    assert_eq!(render("v${{ 1e21 }}"), json!("v1e+21"));
}

#[test]
fn the_percent_delimiters_allow_closing_braces_inside() {
    assert_eq!(render("${% '}}' %}"), json!("}}"));
    assert_eq!(render("${% 1 %}${{ 2 }}"), json!(12));
}

#[test]
fn an_unclosed_expression_is_an_error() {
    let e = evaluate_string("${{ 1 + ", &env(), Scope::Config).err();
    assert_eq!(
        e.map(|e| e.to_string()).as_deref(),
        Some("unclosed expression: expected \"}}\" but reached end of template")
    );
}

#[test]
fn an_empty_expression_stops_evaluation_as_in_kargo() {
    assert_eq!(render("a${{}}b${{ 1 }}"), json!("ab${{ 1 }}"));
}

#[test]
fn an_expression_error_names_the_expression() {
    let e = evaluate_string("x-${{ vars.nope.x }}", &env(), Scope::Config).err();
    assert!(
        matches!(&e, Some(ExprError::Eval { expression, .. }) if expression == " vars.nope.x "),
        "{e:?}"
    );
}

#[test]
fn infinity_cannot_be_a_value() {
    let e = evaluate_string("${{ 1 / 0 }}", &env(), Scope::Config).err();
    assert_eq!(
        e.map(|e| e.to_string()).as_deref(),
        Some("error evaluating expression \" 1 / 0 \": json: unsupported value: +Inf")
    );
}

#[test]
fn config_values_are_evaluated_recursively_but_keys_are_not() {
    let config = json!({
        "${{ 'key' }}": "${{ vars.s }}",
        "nested": {"list": ["${{ 1 + 1 }}", 5, true, null, {"x": "${{ quote(7) }}"}]},
        "plain": "42",
    });
    let out = evaluate_config(&config, &env(), Scope::Config).ok();
    assert_eq!(
        out,
        Some(json!({
            "${{ 'key' }}": "str",
            "nested": {"list": [2, 5, true, null, {"x": "7"}]},
            "plain": "42",
        }))
    );
}

#[test]
fn a_config_without_expressions_is_returned_as_is() {
    let config = json!({"a": [1, "two", {"b": null}]});
    assert_eq!(
        evaluate_config(&config, &Env::default(), Scope::Config).ok(),
        Some(config)
    );
}

#[test]
fn conditions_evaluate_to_bools() {
    assert_eq!(evaluate_bool("${{ vars.n > 2 }}", &env()).ok(), Some(true));
    assert_eq!(evaluate_bool("${{ 'false' }}", &env()).ok(), Some(false));
}

#[test]
fn a_non_bool_condition_is_an_error_naming_the_go_type() {
    let got = |t: &str| match evaluate_bool(t, &env()) {
        Err(ExprError::NotBoolean { got, .. }) => got,
        other => panic!("{t}: {other:?}"),
    };
    assert_eq!(got("${{ vars.s }}"), "string");
    assert_eq!(got("${{ 1 }}"), "float64");
    assert_eq!(got("${{ vars.m }}"), "map[string]interface {}");
    assert_eq!(got("${{ nil }}"), "<nil>");
    // Without delimiters the text is a string, as in Kargo.
    assert_eq!(got("true"), "string");
    assert_eq!(
        evaluate_bool("${{ 1 }}", &env())
            .err()
            .map(|e| e.to_string())
            .as_deref(),
        Some("expression must evaluate to a boolean, got float64")
    );
}

#[test]
fn an_empty_condition_runs_the_step_unless_an_earlier_step_failed() {
    let mut env = env();
    assert_eq!(evaluate_condition("", &env).ok(), Some(true));
    env.statuses = StepStatuses::from_metadata(&[json!({"alias": "step-1", "status": "Failed"})]);
    assert_eq!(evaluate_condition("", &env).ok(), Some(false));
    assert_eq!(evaluate_condition("${{ always() }}", &env).ok(), Some(true));
}

#[test]
fn has_expression_looks_for_either_start_delimiter() {
    assert!(has_expression("a ${{ b"));
    assert!(has_expression("${% b"));
    assert!(!has_expression("$ {{ b }}"));
}

/// A stand-in engine: every expression evaluates to its own text, trimmed.
struct Echo;

struct EchoSession;

impl Session for EchoSession {
    fn evaluate(&mut self, expression: &str) -> Result<Json, ExprError> {
        Ok(Json::String(expression.trim().to_string()))
    }
}

impl Evaluator for Echo {
    fn check(&self, _expression: &str) -> Result<(), ExprError> {
        Ok(())
    }

    fn session<'a>(
        &'a self,
        _env: &'a Env,
        _scope: Scope,
    ) -> Result<Box<dyn Session + 'a>, ExprError> {
        Ok(Box::new(EchoSession))
    }
}

#[test]
fn templates_work_with_any_evaluator() {
    let v = evaluate_string_with(&Echo, "${{ 4 }}${{ 2 }}", &Env::default(), Scope::Vars);
    assert_eq!(v.ok(), Some(json!(42)));
}
