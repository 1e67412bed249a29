//! Properties of the expression engine and templates, over generated input.

use barge::expr::template::{evaluate_config, evaluate_string};
use barge::expr::{Engine, Env, ExprError, Limit, Limits, Scope};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

fn env() -> Env {
    let vars = json!({"n": 3, "s": "str", "list": [1, 2, 3], "m": {"a": {"b": [true, null]}}});
    Env {
        vars: vars.as_object().cloned().unwrap_or_default(),
        outputs: Some(serde_json::Map::new()),
        ..Env::default()
    }
}

/// Token soup: mostly well-formed pieces of expressions, so the generator
/// reaches the evaluator and not only the parser.
fn expression() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "1",
        "2.5",
        "-",
        "+",
        "*",
        "/",
        "%",
        "**",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        "?",
        "??",
        "?.",
        ".",
        "..",
        "#",
        "#index",
        "#acc",
        "'s'",
        "\"x\"",
        "nil",
        "true",
        "false",
        "vars",
        "vars.list",
        "vars.m",
        "vars.s",
        "vars.n",
        "a",
        "b",
        " in ",
        " not ",
        "!",
        "&&",
        "||",
        "==",
        "!=",
        "<",
        ">=",
        " matches ",
        " contains ",
        "let x = 1; ",
        "x",
        "map(",
        "filter(",
        "reduce(",
        "sortBy(",
        "groupBy(",
        "len(",
        "string(",
        "toJSON(",
        "fromJSON(",
        "split(",
        "join(",
        "repeat(",
        "quote(",
        "max(",
        "sum(",
        "keys(",
        "|",
        "1..100",
        "$env",
        "upper(",
        "int(",
        "float(",
        ";",
        "now()",
        "date('2023-08-14')",
        "date(",
        "duration('1h')",
        "duration(",
        "timezone('Europe/Zurich')",
        ".Year()",
        ".Format('2006-01-02 MST')",
        ".AddDate(1, 2, 3)",
        ".Hours()",
        "semverParse('1.2.3')",
        ".IncMinor()",
    ]);
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

/// Go layouts and values to parse with them: layout elements, separators,
/// digits, signs, letters and multi-byte characters.
fn date_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "2006",
        "06",
        "01",
        "1",
        "Jan",
        "January",
        "02",
        "_2",
        "__2",
        "002",
        "15",
        "03",
        "3",
        "04",
        "05",
        "PM",
        "pm",
        "Mon",
        "Monday",
        "MST",
        "-0700",
        "-07:00",
        "-07",
        "-07:00:00",
        "Z07:00",
        "Z0700",
        "Z",
        ".000",
        ".999",
        ",9",
        " ",
        "-",
        ":",
        "+",
        "T",
        "2023",
        "14",
        "1999",
        "Aug",
        "CET",
        "GMT+5",
        "UTC",
        ".5",
        "é",
        "日",
        "\u{1F600}",
        "0",
        "9",
        "x",
    ]);
    prop::collection::vec(piece, 0..10).prop_map(|t| t.concat())
}

/// Arbitrary JSON without template delimiters in it.
fn plain_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i32>().prop_map(Json::from),
        "[a-z0-9 {}%$]{0,12}"
            .prop_filter("no delimiters", |s| !s.contains("${{")
                && !s.contains("${%"))
            .prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::from),
            prop::collection::btree_map("[a-z$]{1,6}", inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn a_string_without_delimiters_is_returned_unchanged(s in "\\PC*") {
        prop_assume!(!s.contains("${{") && !s.contains("${%"));
        prop_assert_eq!(evaluate_string(&s, &env(), Scope::Vars).ok(), Some(Json::String(s)));
    }

    #[test]
    fn a_config_without_expressions_is_returned_unchanged(config in plain_json()) {
        prop_assert_eq!(evaluate_config(&config, &env(), Scope::Config).ok(), Some(config));
    }

    #[test]
    fn evaluating_arbitrary_text_never_panics(s in "\\PC{0,64}") {
        let _ = Engine::default().evaluate(&s, &env(), Scope::Config);
        let _ = evaluate_string(&s, &env(), Scope::Config);
    }

    #[test]
    fn parsing_and_formatting_dates_never_panics(value in date_text(), layout in date_text()) {
        let (value, layout) = (Json::from(value).to_string(), Json::from(layout).to_string());
        for src in [
            format!("date({value}, {layout})"),
            format!("date({value}, {layout}, 'America/St_Johns')"),
            format!("date({value})"),
            format!("now().Format({layout})"),
            format!("date('0001-01-01').Add(duration('-1000000h')).Format({layout})"),
            format!("duration({value})"),
        ] {
            let _ = Engine::default().evaluate(&src, &env(), Scope::Config);
        }
    }

    #[test]
    fn evaluating_token_soup_never_panics_and_stays_in_budget(s in expression()) {
        let engine = Engine::new(Limits { max_steps: 100_000, ..Limits::default() });
        let _ = engine.evaluate(&s, &env(), Scope::Config);
        let _ = evaluate_string(&format!("${{{{ {s} }}}}"), &env(), Scope::Config);
    }

    #[test]
    fn integer_arithmetic_wraps_like_go(a in any::<i64>(), b in any::<i64>()) {
        let engine = Engine::default();
        let got = engine.evaluate(&format!("[({a}) + ({b}), ({a}) - ({b}), ({a}) * ({b})]"), &env(), Scope::Config);
        // Literals are parsed without sign, so i64::MIN cannot be written.
        prop_assume!(a != i64::MIN && b != i64::MIN);
        prop_assert_eq!(
            got.ok(),
            Some(json!([a.wrapping_add(b), a.wrapping_sub(b), a.wrapping_mul(b)]))
        );
    }

    #[test]
    fn any_range_is_either_built_or_refused_by_the_budget(lo in -10_000_000i64..10_000_000, len in 0i64..3_000_000) {
        let src = format!("len(({lo})..({lo} + {len}))");
        match Engine::default().evaluate(&src, &env(), Scope::Config) {
            Ok(v) => prop_assert_eq!(v, json!(len + 1)),
            Err(ExprError::Budget { limit: Limit::Steps(_) | Limit::Memory(_), .. }) => {}
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
