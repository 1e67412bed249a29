//! expr-lang's dates: `now()`, `date()`, `duration()`, `timezone()`, their
//! operators and the methods of Go's `time.Time` and `time.Duration`, with
//! Go's formats. `now()` is 2024-03-15T13:04:05.123456789Z here.

use serde_json::json;

use super::{env, eval, eval_err, message};
use crate::expr::template::evaluate_string;
use crate::expr::{Engine, Env, Evaluator, Scope};

#[test]
fn now_is_the_instant_of_the_environment() {
    assert_eq!(eval("now()"), json!("2024-03-15T13:04:05.123456789Z"));
}

#[test]
fn now_reads_the_clock_once_per_session_without_an_instant() {
    let env = Env::default();
    let engine = Engine::default();
    let Ok(mut session) = engine.session(&env, Scope::Config) else {
        panic!("no session");
    };
    let first = session.evaluate("now()").ok();
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert!(first.is_some());
    assert_eq!(session.evaluate("now()").ok(), first);
}

#[test]
fn now_takes_a_location() {
    assert_eq!(
        eval("now(timezone('Asia/Tokyo'))"),
        json!("2024-03-15T22:04:05.123456789+09:00")
    );
}

#[test]
fn times_write_json_as_rfc3339_with_trimmed_nanoseconds() {
    assert_eq!(
        eval("date('2024-03-15T13:04:05.5Z')"),
        json!("2024-03-15T13:04:05.5Z")
    );
    assert_eq!(eval("date('2024-03-15')"), json!("2024-03-15T00:00:00Z"));
}

#[test]
fn times_past_year_9999_cannot_be_written_as_json() {
    assert_eq!(
        message(&eval_err("date('9999-12-31').Add(duration('24h'))")),
        "json: error calling MarshalJSON for type time.Time: Time.MarshalJSON: year outside of range [0,9999]"
    );
}

#[test]
fn durations_write_json_as_nanoseconds() {
    assert_eq!(eval("duration('1h30m')"), json!(5_400_000_000_000i64));
}

#[test]
fn string_of_a_time_and_a_duration_is_gos_string() {
    assert_eq!(
        eval("[string(now()), string(duration('1h30m')), string(duration('1.5us'))]"),
        json!([
            "2024-03-15 13:04:05.123456789 +0000 UTC",
            "1h30m0s",
            "1.5µs"
        ])
    );
}

#[test]
fn a_time_in_a_template_is_its_text_alone_or_quoted_inside_text() {
    let env = env();
    assert_eq!(
        evaluate_string("${{ now() }}", &env, Scope::Config).ok(),
        Some(json!("2024-03-15T13:04:05.123456789Z"))
    );
    // Kargo inserts the JSON of a non-string, quotes included.
    assert_eq!(
        evaluate_string("at ${{ now() }}", &env, Scope::Config).ok(),
        Some(json!("at \"2024-03-15T13:04:05.123456789Z\""))
    );
    assert_eq!(
        evaluate_string("${{ duration('1s') }}", &env, Scope::Config).ok(),
        Some(json!(1_000_000_000))
    );
}

#[test]
fn date_without_a_layout_tries_expr_langs_layouts() {
    assert_eq!(
        eval(
            "[date('2023-08-14 13:45:00'), date('15:04:05'), date('Mon, 14 Aug 2023 13:45:00 GMT')]"
        ),
        json!([
            "2023-08-14T13:45:00Z",
            "0000-01-01T15:04:05Z",
            "2023-08-14T13:45:00Z"
        ])
    );
    assert_eq!(
        message(&eval_err("date('14.08.2023')")),
        "invalid date 14.08.2023"
    );
}

#[test]
fn date_parses_with_a_go_layout() {
    assert_eq!(
        eval("date('8/14/23 3:04PM', '1/2/06 3:04PM')"),
        json!("2023-08-14T15:04:00Z")
    );
    assert_eq!(
        eval("date('2024-060', '2006-002')"),
        json!("2024-02-29T00:00:00Z")
    );
}

#[test]
fn date_parse_errors_are_gos() {
    assert_eq!(
        message(&eval_err(
            "date('2023-08-14 13:45:00.12', '2006-01-02 15:04:05.000')"
        )),
        r#"parsing time "2023-08-14 13:45:00.12" as "2006-01-02 15:04:05.000": cannot parse ".12" as ".000""#
    );
    assert_eq!(
        message(&eval_err("date('2023-13-14', '2006-01-02')")),
        r#"parsing time "2023-13-14": month out of range"#
    );
}

#[test]
fn date_in_a_zone_takes_the_zones_offset_at_that_date() {
    assert_eq!(
        eval(
            "[date('2023-08-14', '2006-01-02', 'Europe/Zurich'), date('2023-01-14', '2006-01-02', 'Europe/Zurich')]"
        ),
        json!(["2023-08-14T00:00:00+02:00", "2023-01-14T00:00:00+01:00"])
    );
}

#[test]
fn local_times_in_a_gap_move_forward_and_in_a_fold_take_the_later_offset() {
    assert_eq!(
        eval("date('2023-03-26 02:30', '2006-01-02 15:04', 'Europe/Zurich')"),
        json!("2023-03-26T03:30:00+02:00")
    );
    assert_eq!(
        eval("date('2023-10-29 02:30', '2006-01-02 15:04', 'Europe/Zurich')"),
        json!("2023-10-29T02:30:00+01:00")
    );
}

#[test]
fn an_unknown_zone_abbreviation_keeps_its_name_with_offset_zero() {
    assert_eq!(
        eval("string(date('Mon, 14 Aug 2023 13:45:00 PST'))"),
        json!("2023-08-14 13:45:00 +0000 PST")
    );
}

#[test]
fn a_zone_abbreviation_of_the_location_gives_its_offset() {
    assert_eq!(
        eval("date('2023-08-14 13:45 CET', '2006-01-02 15:04 MST', 'Europe/Zurich')"),
        json!("2023-08-14T14:45:00+02:00")
    );
}

#[test]
fn a_date_preceded_by_a_location_is_read_in_it() {
    assert_eq!(
        eval("date(timezone('Asia/Tokyo'), '2023-08-14')"),
        json!("2023-08-14T00:00:00+09:00")
    );
}

#[test]
fn timezone_names_are_exact() {
    assert_eq!(
        eval("timezone('Europe/Zurich').String()"),
        json!("Europe/Zurich")
    );
    assert_eq!(eval("timezone('').String()"), json!("UTC"));
    assert_eq!(
        message(&eval_err("timezone('europe/zurich')")),
        "unknown time zone europe/zurich"
    );
}

#[test]
fn format_follows_go_reference_layouts() {
    assert_eq!(
        eval("now().Format('Monday, January _2 2006 3:04:05.000 PM -07:00 MST')"),
        json!("Friday, March 15 2024 1:04:05.123 PM +00:00 UTC")
    );
    assert_eq!(
        eval("now(timezone('America/St_Johns')).Format('15:04 Z07:00 MST')"),
        json!("10:34 -02:30 NDT")
    );
}

#[test]
fn format_writes_a_fixed_zone_without_a_name_as_its_offset() {
    assert_eq!(
        eval("date('2023-08-14T00:00:00+05:30').Format('MST')"),
        json!("+0530")
    );
}

#[test]
fn duration_parses_go_duration_strings() {
    assert_eq!(
        eval("[duration('1h2m3.5s'), duration('-1.5h'), duration('1µs'), duration('0')]"),
        json!([3_723_500_000_000i64, -5_400_000_000_000i64, 1000, 0])
    );
    assert_eq!(
        message(&eval_err("duration('1x')")),
        r#"time: unknown unit "x" in duration "1x""#
    );
    assert_eq!(
        message(&eval_err("duration('1')")),
        r#"time: missing unit in duration "1""#
    );
}

#[test]
fn subtracting_times_gives_a_duration() {
    assert_eq!(
        eval("now() - date('2024-03-15')"),
        json!(47_045_123_456_789i64)
    );
}

#[test]
fn adding_a_duration_to_a_time_gives_a_time() {
    assert_eq!(
        eval("[now() + duration('1h'), duration('1h') + now(), now() - duration('1h')]"),
        json!([
            "2024-03-15T14:04:05.123456789Z",
            "2024-03-15T14:04:05.123456789Z",
            "2024-03-15T12:04:05.123456789Z"
        ])
    );
}

#[test]
fn durations_add_and_multiply_by_ints_and_floats() {
    assert_eq!(
        eval(
            "[duration('1h') + duration('30m'), duration('1h') * 2, 2 * duration('1h'), duration('1h') * 1.5]"
        ),
        json!([
            5_400_000_000_000i64,
            7_200_000_000_000i64,
            7_200_000_000_000i64,
            5.4e12
        ])
    );
}

#[test]
fn durations_do_not_divide_or_mix_with_numbers() {
    assert_eq!(
        message(&eval_err("duration('1h') / 2")),
        "invalid operation: / (mismatched types time.Duration and int)"
    );
    assert_eq!(
        message(&eval_err("now() + 1")),
        "invalid operation: + (mismatched types time.Time and int)"
    );
}

#[test]
fn times_and_durations_compare() {
    assert_eq!(
        eval(
            "[now() > date('2024-01-01'), now() - duration('1h') < now(), duration('1h') >= duration('60m')]"
        ),
        json!([true, true, true])
    );
}

#[test]
fn times_are_equal_when_they_are_the_same_instant() {
    assert_eq!(
        eval("date('2024-03-15T14:04:05.123456789+01:00') == now()"),
        json!(true)
    );
}

#[test]
fn a_time_does_not_compare_with_a_number() {
    assert_eq!(
        message(&eval_err("now() < 1")),
        "invalid operation: < (mismatched types time.Time and int)"
    );
}

#[test]
fn times_sort_and_durations_have_a_maximum() {
    assert_eq!(
        eval("sort([now(), date('2020-01-01')])"),
        json!(["2020-01-01T00:00:00Z", "2024-03-15T13:04:05.123456789Z"])
    );
    assert_eq!(
        eval("max(duration('1h'), duration('2h'))"),
        json!(7_200_000_000_000i64)
    );
}

#[test]
fn time_methods_give_the_fields_in_the_times_location() {
    assert_eq!(
        eval(
            "[now().Year(), now().Day(), now().Hour(), now().Minute(), now().Second(), now().Nanosecond(), now().YearDay()]"
        ),
        json!([2024, 15, 13, 4, 5, 123_456_789, 75])
    );
    assert_eq!(
        eval("now().In(timezone('America/New_York')).Hour()"),
        json!(9)
    );
}

#[test]
fn month_and_weekday_are_numbers_in_json_and_names_as_text() {
    assert_eq!(eval("[now().Month(), now().Weekday()]"), json!([3, 5]));
    assert_eq!(
        eval("[string(now().Month()), now().Weekday().String()]"),
        json!(["March", "Friday"])
    );
    assert_eq!(eval("int(now().Month())"), json!(3));
}

#[test]
fn unix_methods_count_from_the_epoch() {
    assert_eq!(
        eval("[now().Unix(), now().UnixMilli(), now().UnixNano()]"),
        json!([
            1_710_507_845i64,
            1_710_507_845_123i64,
            1_710_507_845_123_456_789i64
        ])
    );
}

#[test]
fn add_date_normalises_like_go() {
    assert_eq!(
        eval("date('2024-01-31').AddDate(0, 1, 0)"),
        json!("2024-03-02T00:00:00Z")
    );
}

#[test]
fn truncate_and_round_count_from_gos_zero_time() {
    // Multiples of a week since January 1 of year 1, a Monday.
    assert_eq!(
        eval("date('2024-03-15').Truncate(duration('168h'))"),
        json!("2024-03-11T00:00:00Z")
    );
    assert_eq!(
        eval("now().Round(duration('1h'))"),
        json!("2024-03-15T13:00:00Z")
    );
}

#[test]
fn sub_before_after_and_compare_take_a_time() {
    assert_eq!(
        eval(
            "[now().Sub(date('2024-03-15')), now().Before(date('2025-01-01')), now().After(date('2025-01-01')), now().Compare(date('2025-01-01'))]"
        ),
        json!([47_045_123_456_789i64, true, false, -1])
    );
}

#[test]
fn sub_saturates_at_the_longest_duration() {
    assert_eq!(eval("now().Sub(date('1000-01-01'))"), json!(i64::MAX));
}

#[test]
fn duration_methods_convert_units() {
    assert_eq!(
        eval(
            "[duration('90m').Hours(), duration('90m').Minutes(), duration('1.5s').Seconds(), duration('1.5s').Milliseconds()]"
        ),
        json!([1.5, 90.0, 1.5, 1500])
    );
    assert_eq!(
        eval(
            "[duration('1h').Round(duration('7m')), duration('1h').Truncate(duration('7m')), duration('-1h').Abs()]"
        ),
        json!([
            3_780_000_000_000i64,
            3_360_000_000_000i64,
            3_600_000_000_000i64
        ])
    );
}

#[test]
fn method_arguments_are_checked_like_expr_langs_checker() {
    assert_eq!(
        message(&eval_err("now().Add(3600)")),
        "cannot use int as argument (type time.Duration) to call Add"
    );
    assert_eq!(
        message(&eval_err("now().Year(1)")),
        "too many arguments to call Year"
    );
    assert_eq!(
        message(&eval_err("now().Hours()")),
        "type time.Time has no method Hours"
    );
}

#[test]
fn a_method_read_without_calling_it_is_an_error() {
    assert_eq!(
        message(&eval_err("now().Year")),
        "Year is a method of time.Time: call it, Year()"
    );
}

#[test]
fn methods_chain_after_optional_chaining() {
    assert_eq!(eval("now()?.Year()"), json!(2024));
    assert_eq!(eval("vars.missing?.Year()"), json!(null));
}

#[test]
fn type_names_the_go_types() {
    assert_eq!(
        eval("[type(now()), type(duration('1s')), type(now().Month()), type(timezone('UTC'))]"),
        json!(["time.Time", "time.Duration", "time.Month", "time.Location"])
    );
}

#[test]
fn to_json_and_as_yaml_write_times_and_durations_as_go_does() {
    assert_eq!(
        eval("toJSON({t: now(), d: duration('1s')})"),
        json!("{\n  \"d\": 1000000000,\n  \"t\": \"2024-03-15T13:04:05.123456789Z\"\n}")
    );
    let env = env();
    assert_eq!(
        evaluate_string(
            "${{ asYAML({t: now(), d: duration('90m')}) }}",
            &env,
            Scope::Config
        )
        .ok(),
        Some(json!("d: 1h30m0s\nt: 2024-03-15T13:04:05.123456789Z\n"))
    );
}
