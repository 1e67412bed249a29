//! The expr-lang language: literals, operators, member access, predicates,
//! built-ins, errors with positions.

use serde_json::json;

use super::{eval, eval_err, message};
use crate::expr::{Engine, ExprError};

#[test]
fn integer_literals_accept_hex_octal_binary_and_underscores() {
    assert_eq!(
        eval("[42, 0x2A, 0o52, 0b101010, 4_2]"),
        json!([42, 42, 42, 42, 42])
    );
}

#[test]
fn float_literals_accept_a_leading_dot_and_exponents() {
    assert_eq!(eval("[.5, 1.5, 1e3]"), json!([0.5, 1.5, 1000.0]));
}

#[test]
fn strings_take_single_or_double_quotes_and_go_escapes() {
    assert_eq!(eval(r#"'it' + "\"s\"\t\u00e9\x41""#), json!("it\"s\"\téA"));
}

#[test]
fn backtick_strings_are_raw() {
    assert_eq!(eval(r"`a\n${x}`"), json!(r"a\n${x}"));
}

#[test]
fn division_always_gives_a_float() {
    assert_eq!(eval("6 / 3"), json!(2.0));
    assert_eq!(eval("7 / 2"), json!(3.5));
}

#[test]
fn integer_overflow_wraps_like_go() {
    assert_eq!(eval("9223372036854775807 + 1"), json!(i64::MIN));
}

#[test]
fn modulo_by_zero_is_an_error() {
    assert!(message(&eval_err("1 % 0")).contains("integer divide by zero"));
}

#[test]
fn modulo_of_a_float_is_an_error_as_in_go() {
    // Numbers from JSON (vars, outputs) are floats, as in Kargo.
    assert!(message(&eval_err("vars.n % 2")).contains("invalid operation"));
}

#[test]
fn both_power_operators_give_floats() {
    assert_eq!(eval("[2 ** 10, 2 ^ 3]"), json!([1024.0, 8.0]));
}

#[test]
fn unary_minus_binds_looser_than_power() {
    assert_eq!(eval("-2 ** 2"), json!(-4.0));
}

#[test]
fn plus_concatenates_strings() {
    assert_eq!(eval("vars.s + '-' + 'x'"), json!("str-x"));
}

#[test]
fn plus_between_string_and_number_is_an_error() {
    assert_eq!(
        message(&eval_err("vars.s + 1")),
        "invalid operation: string + int"
    );
}

#[test]
fn comparisons_chain_like_and() {
    assert_eq!(eval("[1 < 2 < 3, 1 < 3 < 2]"), json!([true, false]));
}

#[test]
fn ints_and_floats_compare_equal() {
    assert_eq!(eval("vars.n == 3 && 1 == 1.0"), json!(true));
}

#[test]
fn arrays_compare_loosely_but_maps_deeply() {
    assert_eq!(
        eval("[[1] == [1.0], {a: 1} == {a: 1.0}]"),
        json!([true, false])
    );
}

#[test]
fn and_or_short_circuit() {
    assert_eq!(eval("false && vars.nope.x"), json!(false));
    assert_eq!(eval("true or vars.nope.x"), json!(true));
}

#[test]
fn and_requires_a_bool_on_the_left() {
    assert!(message(&eval_err("nil && true")).contains("must be a bool"));
}

#[test]
fn not_and_bang_negate_bools() {
    assert_eq!(
        eval("[not true, !false, not not true]"),
        json!([false, true, true])
    );
}

#[test]
fn in_looks_in_arrays_and_map_keys() {
    assert_eq!(
        eval("[2 in vars.list, 5 in vars.list, 'a' in vars.m, 'z' not in vars.m]"),
        json!([true, false, true, true])
    );
}

#[test]
fn string_operators_are_false_on_nil() {
    assert_eq!(
        eval(
            "[vars.nope contains 'a', 'abc' startsWith 'ab', 'abc' endsWith 'bc', 'abc' not contains 'b']"
        ),
        json!([false, true, true, false])
    );
}

#[test]
fn matches_uses_regular_expressions() {
    assert_eq!(
        eval(r#"'v1.2.3' matches '^v\\d+\\.\\d+\\.\\d+$'"#),
        json!(true)
    );
}

#[test]
fn an_invalid_regular_expression_is_an_error() {
    assert!(message(&eval_err("'a' matches '['")).contains("invalid regular expression"));
}

#[test]
fn ternary_and_elvis() {
    assert_eq!(
        eval("[vars.n > 2 ? 'big' : 'small', false ?: 'fallback']"),
        json!(["big", "fallback"])
    );
}

#[test]
fn ternary_condition_must_be_a_bool() {
    assert!(message(&eval_err("vars.nope ? 1 : 2")).contains("must be a bool"));
}

#[test]
fn nil_coalescing_takes_the_first_non_nil() {
    assert_eq!(
        eval("vars.nope ?? vars.missing ?? 'default'"),
        json!("default")
    );
}

#[test]
fn coalescing_mixed_with_another_operator_needs_parentheses() {
    let e = eval_err("vars.a ?? 1 + 2");
    assert!(message(&e).contains("cannot be mixed"), "{e}");
}

#[test]
fn ranges_are_inclusive_and_empty_when_reversed() {
    assert_eq!(eval("[1..3, 3..1]"), json!([[1, 2, 3], []]));
}

#[test]
fn missing_map_key_is_nil() {
    assert_eq!(eval("vars.m.zzz"), json!(null));
}

#[test]
fn keys_with_dashes_need_brackets() {
    assert_eq!(eval("vars.m['b-c'].d"), json!("deep"));
}

#[test]
fn member_access_on_nil_is_an_error_with_its_column() {
    let e = eval_err("vars.nope.x");
    let ExprError::Eval {
        message, column, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(message, "cannot fetch x from <nil>");
    assert_eq!(*column, Some(11));
}

#[test]
fn optional_chaining_makes_the_whole_chain_nil() {
    assert_eq!(eval("vars.nope?.x.y.z"), json!(null));
}

#[test]
fn optional_index_makes_the_chain_nil() {
    assert_eq!(eval("vars.nope?.['x']"), json!(null));
}

#[test]
fn plain_index_after_an_optional_chain_still_fails_on_nil() {
    // expr-lang ends the chain before `[`: `a?.b[0]` fetches from nil.
    assert!(message(&eval_err("vars.nope?.x[0]")).contains("cannot fetch 0 from <nil>"));
}

#[test]
fn negative_indexes_count_from_the_end() {
    assert_eq!(eval("vars.list[-1]"), json!(3.0));
}

#[test]
fn an_index_out_of_range_is_an_error() {
    assert_eq!(
        message(&eval_err("vars.list[3]")),
        "index out of range: 3 (array length is 3)"
    );
}

#[test]
fn slices_clamp_like_go() {
    assert_eq!(
        eval("[[1,2,3][1:], [1,2,3][:2], [1,2,3][1:-1], [1,2,3][5:10], 'hello'[1:3]]"),
        json!([[2, 3], [1, 2], [2], [], "el"])
    );
}

#[test]
fn indexing_a_string_gives_a_byte() {
    assert_eq!(eval("vars.s[0]"), json!(115));
}

#[test]
fn undefined_identifiers_are_nil() {
    assert_eq!(eval("undefinedThing"), json!(null));
}

#[test]
fn dollar_env_is_the_whole_environment() {
    assert_eq!(eval("$env['vars'].s"), json!("str"));
}

#[test]
fn let_binds_names_for_the_rest_of_the_expression() {
    assert_eq!(eval("let x = 2; let y = x * 3; y + 1"), json!(7));
}

#[test]
fn sequences_yield_their_last_expression() {
    assert_eq!(eval("1; 2; 3"), json!(3));
}

#[test]
fn if_else_is_an_expression() {
    assert_eq!(
        eval("if vars.n > 5 { 'a' } else if vars.n > 2 { 'b' } else { 'c' }"),
        json!("b")
    );
}

#[test]
fn pipe_passes_the_left_side_as_first_argument() {
    assert_eq!(eval("vars.list | map(# * 2) | sum()"), json!(12.0));
    assert_eq!(eval("'A,B' | lower() | split(',')"), json!(["a", "b"]));
}

#[test]
fn map_literals_take_names_strings_numbers_and_parenthesised_keys() {
    assert_eq!(
        eval("{a: 1, 'b-c': 2, 3: 3, ('d' + 'e'): 4}"),
        json!({"a": 1, "b-c": 2, "3": 3, "de": 4})
    );
}

#[test]
fn predicates_see_the_element_as_hash_or_dot_field() {
    assert_eq!(
        eval("[map(vars.users, .name), map(vars.users, #.age), filter(vars.list, # > 1)]"),
        json!([["ann", "bob"], [30.0, 20.0], [2.0, 3.0]])
    );
}

#[test]
fn predicates_see_the_index() {
    assert_eq!(eval("map(['a', 'b'], #index)"), json!([0, 1]));
}

#[test]
fn nested_predicates_see_their_own_element() {
    assert_eq!(
        eval("map(1..2, map(1..2, # * 10))"),
        json!([[10, 20], [10, 20]])
    );
}

#[test]
fn quantifiers_all_any_none_one() {
    assert_eq!(
        eval(
            "[all(vars.list, # > 0), any(vars.list, # > 2), none(vars.list, # > 5), one(vars.list, # > 2), all([], false)]"
        ),
        json!([true, true, true, true, true])
    );
}

#[test]
fn predicate_results_must_be_bools() {
    assert!(message(&eval_err("filter(vars.list, 1)")).contains("must be a bool"));
}

#[test]
fn count_counts_matches_or_true_elements() {
    assert_eq!(
        eval("[count(vars.list, # > 1), count([true, false, true])]"),
        json!([2, 2])
    );
}

#[test]
fn find_family_returns_element_index_or_nil() {
    assert_eq!(
        eval(
            "[find(vars.list, # > 1), findIndex(vars.list, # > 1), findLast(vars.list, # > 1), findLastIndex(vars.list, # > 1), find(vars.list, # > 9), findIndex(vars.list, # > 9)]"
        ),
        json!([2.0, 1, 3.0, 2, null, null])
    );
}

#[test]
fn sum_adds_with_expr_lang_addition() {
    assert_eq!(
        eval("[sum([1, 2]), sum([1, 2.5]), sum([]), sum(vars.users, .age)]"),
        json!([3, 3.5, 0, 50.0])
    );
}

#[test]
fn group_by_groups_under_the_key_text() {
    assert_eq!(
        eval("groupBy(['a', 'bb', 'c'], len(#))"),
        json!({"1": ["a", "c"], "2": ["bb"]})
    );
    assert_eq!(
        eval("groupBy(['a', 'bb', 'c'], len(#))[1]"),
        json!(["a", "c"])
    );
}

#[test]
fn sort_by_sorts_by_the_predicate_in_either_order() {
    assert_eq!(
        eval("[map(sortBy(vars.users, .age), .name), sortBy([1, 3, 2], #, 'desc')]"),
        json!([["bob", "ann"], [3, 2, 1]])
    );
}

#[test]
fn reduce_folds_with_acc_from_the_first_element_or_an_initial_value() {
    assert_eq!(
        eval("[reduce(1..4, #acc + #), reduce(1..4, #acc + #, 10)]"),
        json!([10, 20])
    );
}

#[test]
fn reduce_of_an_empty_array_without_initial_value_is_an_error() {
    assert!(message(&eval_err("reduce([], #acc)")).contains("empty array"));
}

#[test]
fn iterating_nil_is_an_error() {
    assert!(message(&eval_err("map(vars.nope, #)")).contains("cannot iterate"));
}

#[test]
fn string_builtins() {
    assert_eq!(
        eval(
            "[upper('ab'), lower('AB'), trim('  x '), trim('__x_', '_'), trimPrefix('v1.0', 'v'), trimSuffix('a.yaml', '.yaml'), repeat('ab', 2), indexOf('apple pie', 'pie'), lastIndexOf('a-b-c', '-'), hasPrefix('abc', 'a'), hasSuffix('abc', 'c')]"
        ),
        json!(["AB", "ab", "x", "x", "1.0", "a", "abab", 6, 3, true, true])
    );
}

#[test]
fn split_join_and_replace_follow_go() {
    assert_eq!(
        eval(
            "[split('a,b,c', ','), split('a,b,c', ',', 2), split('ab', ''), splitAfter('a,b', ','), join(['a', 'b'], '-'), replace('aaa', 'a', 'b', 2), replace('ab', '', '-')]"
        ),
        json!([
            ["a", "b", "c"],
            ["a", "b,c"],
            ["a", "b"],
            ["a,", "b"],
            "a-b",
            "bba",
            "-a-b-"
        ])
    );
}

#[test]
fn len_counts_characters_elements_and_entries() {
    assert_eq!(
        eval("[len('héllo'), len(vars.list), len(vars.m)]"),
        json!([5, 3, 2])
    );
}

#[test]
fn conversions_follow_go() {
    assert_eq!(
        eval(
            "[int('12'), int(1.9), float('1.5'), string(1.5), string(3.0), string(1e6), string([1, 'a']), string(nil)]"
        ),
        json!([12, 1, 1.5, "1.5", "3", "1e+06", "[1 a]", "<nil>"])
    );
}

#[test]
fn int_of_a_non_number_string_is_an_error() {
    assert_eq!(
        message(&eval_err("int('1.5')")),
        "invalid operation: int(1.5)"
    );
}

#[test]
fn number_builtins() {
    assert_eq!(
        eval(
            "[abs(-3), abs(-1.5), ceil(1.2), floor(1.8), round(2.5), max(1, 5, 3), min([4, 2]), mean([1, 2, 3, 4]), median([3, 1, 2])]"
        ),
        json!([3, 1.5, 2.0, 1.0, 3.0, 5, 2, 2.5, 2.0])
    );
}

#[test]
fn collection_builtins() {
    assert_eq!(
        eval(
            "[keys({b: 1, a: 2}), values({b: 1, a: 2}), first([1, 2]), last([1, 2]), first([]), get([1], 5), take([1, 2, 3], 2), reverse([1, 2]), uniq([1, 2, 1]), concat([1], [2]), flatten([1, [2, [3]]]), sort([3, 1, 2]), sort(['b', 'a'], 'desc'), toPairs({a: 1}), fromPairs([['a', 1]])]"
        ),
        json!([["a", "b"], [2, 1], 1, 2, null, null, [1, 2], [2, 1], [1, 2], [1, 2], [1, 2, 3], [1, 2, 3], ["b", "a"], [["a", 1]], {"a": 1}])
    );
}

#[test]
fn json_and_base64_builtins() {
    assert_eq!(
        eval(
            r#"[toJSON({a: [1]}), fromJSON('{"x": [1, true]}'), toBase64('Hello World'), fromBase64('SGVsbG8gV29ybGQ=')]"#
        ),
        json!(["{\n  \"a\": [\n    1\n  ]\n}", {"x": [1.0, true]}, "SGVsbG8gV29ybGQ=", "Hello World"])
    );
}

#[test]
fn type_names_values_as_expr_lang_does() {
    assert_eq!(
        eval(
            "[type(1), type(1.5), type('s'), type(nil), type([]), type({}), type(true), type(vars.n)]"
        ),
        json!([
            "int", "float", "string", "nil", "array", "map", "bool", "float"
        ])
    );
}

#[test]
fn bitwise_builtins() {
    assert_eq!(
        eval(
            "[bitand(12, 10), bitor(12, 10), bitxor(12, 10), bitnand(12, 10), bitnot(12), bitshl(1, 3), bitshr(16, 2)]"
        ),
        json!([8, 14, 6, 4, -13, 8, 4])
    );
}

#[test]
fn unknown_functions_are_an_error() {
    assert_eq!(
        message(&eval_err("frobnicate(1)")),
        "unknown function frobnicate"
    );
}

#[test]
fn method_calls_are_an_error() {
    // As in expr-lang: the method is looked up as a member first.
    assert_eq!(
        message(&eval_err("vars.s.upper()")),
        "invalid operation: int(string)"
    );
    assert_eq!(
        message(&eval_err("vars.m.zz()")),
        "invalid operation: cannot call nil"
    );
}

#[test]
fn nan_cannot_be_returned_as_json() {
    assert_eq!(
        message(&eval_err("0 / 0.0")),
        "json: unsupported value: NaN"
    );
}

#[test]
fn parse_errors_carry_line_and_column() {
    let e = Engine::default().compile("1 +\n  (2 ,").err();
    let Some(ExprError::Parse {
        line,
        column,
        message,
        ..
    }) = e
    else {
        panic!("{e:?}")
    };
    assert_eq!((line, column), (2, 6));
    assert_eq!(message, "unexpected token Operator(\",\")");
}

#[test]
fn parse_errors_name_the_expression() {
    let e = Engine::default()
        .compile("a b")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("invalid expression \"a b\": unexpected token Identifier(\"b\") (line 1, column 3)")
    );
}

#[test]
fn pointers_outside_predicates_do_not_parse() {
    assert!(matches!(
        Engine::default().compile("# + 1"),
        Err(ExprError::Parse { .. })
    ));
}

#[test]
fn predicates_with_sequences_need_braces() {
    assert!(Engine::default().compile("map(1..2, # ; 1)").is_err());
    assert_eq!(eval("map(1..2, {#; # * 2})"), json!([2, 4]));
}
