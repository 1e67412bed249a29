//! expr-lang's built-in functions (`builtin/builtin.go`, `builtin/lib.go`
//! in expr-lang v1.17), except the predicate ones, which the evaluator runs
//! (`map`, `filter`, ...). Each charges the budget for the work and the
//! memory it takes, before taking it where the size is known.
//!
//! The date functions (`now`, `date`, `duration`, `timezone`) return Go's
//! time values ([`super::gotime`]); `now()` is the instant the evaluation
//! was given, not the clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use jiff::Timestamp;

use super::budget::{Budget, ELEMENT_SIZE, ENTRY_OVERHEAD};
use super::error::{Fault, Limit, Res};
use super::eval::{brief, fetch, to_int};
use super::golang;
use super::gotime::{self, Location, Time};
use super::value::{self, Value};

/// Built-ins whose second argument is a predicate.
pub(crate) fn is_predicate(name: &str) -> bool {
    matches!(
        name,
        "all"
            | "none"
            | "any"
            | "one"
            | "filter"
            | "map"
            | "count"
            | "sum"
            | "find"
            | "findIndex"
            | "findLast"
            | "findLastIndex"
            | "groupBy"
            | "sortBy"
            | "reduce"
    )
}

fn arity(name: &str, args: &[Value], min: usize, max: usize) -> Res<()> {
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            min.to_string()
        } else {
            format!("{min} to {max}")
        };
        return Err(Fault::msg(format!(
            "invalid number of arguments for {name} (expected {expected}, got {})",
            args.len()
        )));
    }
    Ok(())
}

fn string_arg<'a>(name: &str, args: &'a [Value], i: usize) -> Res<&'a str> {
    match args.get(i) {
        Some(Value::Str(s)) => Ok(s),
        Some(other) => Err(Fault::msg(format!(
            "{name}: argument {} must be a string, got {}",
            i + 1,
            other.go_type()
        ))),
        None => Err(Fault::msg(format!("{name}: missing argument {}", i + 1))),
    }
}

fn array_arg<'a>(name: &str, args: &'a [Value], i: usize) -> Res<&'a [Value]> {
    match args.get(i) {
        Some(Value::Array(a)) => Ok(&a.items),
        Some(other) => Err(Fault::msg(format!(
            "{name}: argument {} must be an array, got {}",
            i + 1,
            other.go_type()
        ))),
        None => Err(Fault::msg(format!("{name}: missing argument {}", i + 1))),
    }
}

fn new_string(s: String, budget: &mut Budget) -> Res<Value> {
    budget.alloc_str(s.len())?;
    Ok(Value::string(s))
}

fn new_array(items: Vec<Value>, budget: &mut Budget) -> Res<Value> {
    budget.alloc_array(items.len())?;
    budget.step(items.len() as u64)?;
    Value::array(items)
}

/// Calls the built-in `name`, or returns `None` if there is no such
/// built-in. `now` is what `now()` returns.
pub(crate) fn call(
    name: &str,
    args: &[Value],
    now: Timestamp,
    budget: &mut Budget,
) -> Option<Res<Value>> {
    let result = match name {
        "len" => len(args, budget),
        "type" => arity(name, args, 1, 1).map(|_| Value::str(args[0].type_name())),
        "abs" => abs(args),
        "ceil" | "floor" | "round" => rounding(name, args),
        "int" => int(args),
        "float" => float(args),
        "string" => arity(name, args, 1, 1)
            .and_then(|_| value::format_v(&args[0], budget))
            .map(Value::string),
        "trim" | "trimPrefix" | "trimSuffix" => trim(name, args, budget),
        "upper" | "lower" => case(name, args, budget),
        "split" | "splitAfter" => split(name, args, budget),
        "replace" => replace(args, budget),
        "repeat" => repeat(args, budget),
        "join" => join(args, budget),
        "indexOf" | "lastIndexOf" | "hasPrefix" | "hasSuffix" => search(name, args, budget),
        "max" | "min" => min_max(name, args, budget),
        "mean" | "median" => mean_median(name, args, budget),
        "toJSON" => arity(name, args, 1, 1)
            .and_then(|_| value::marshal(&args[0], true, budget))
            .map(Value::string),
        "fromJSON" => from_json(args, budget),
        "toBase64" => arity(name, args, 1, 1)
            .and_then(|_| string_arg(name, args, 0))
            .and_then(|s| new_string(base64::engine::general_purpose::STANDARD.encode(s), budget)),
        "fromBase64" => from_base64(args, budget),
        "first" | "last" => arity(name, args, 1, 1).map(|_| {
            let index = if name == "first" { 0 } else { -1 };
            fetch(&args[0], &Value::Int(index)).unwrap_or(Value::Nil)
        }),
        "get" => get(args),
        "take" => take(args, budget),
        "keys" | "values" | "toPairs" => map_parts(name, args, budget),
        "fromPairs" => from_pairs(args, budget),
        "reverse" => arity(name, args, 1, 1)
            .and_then(|_| array_arg(name, args, 0))
            .and_then(|items| new_array(items.iter().rev().cloned().collect(), budget)),
        "uniq" => uniq(args, budget),
        "concat" => concat(args, budget),
        "flatten" => arity(name, args, 1, 1)
            .and_then(|_| array_arg(name, args, 0))
            .and_then(|items| {
                let mut out = Vec::new();
                flatten_into(items, &mut out, budget)?;
                new_array(out, budget)
            }),
        "sort" => sort(args, budget),
        "bitand" | "bitor" | "bitxor" | "bitnand" | "bitshl" | "bitshr" | "bitushr" => {
            bits(name, args)
        }
        "bitnot" => arity(name, args, 1, 1).and_then(|_| match &args[0] {
            Value::Int(x) => Ok(Value::Int(!x)),
            other => Err(Fault::msg(format!(
                "cannot use {} as argument (type int) to call bitnot",
                other.go_type()
            ))),
        }),
        "now" => now_fn(args, now),
        "date" => date(args, budget),
        "duration" => arity(name, args, 1, 1)
            .and_then(|_| string_arg(name, args, 0))
            .and_then(|s| {
                // About two steps' time per byte in a debug build.
                budget.step(PARSE_STEPS + 2 * s.len() as u64)?;
                gotime::parse_duration(s).map_err(Fault::msg)
            })
            .map(Value::Duration),
        "timezone" => arity(name, args, 1, 1)
            .and_then(|_| string_arg(name, args, 0))
            .and_then(|s| {
                // Loading a zone reads and parses its file.
                budget.step(1_000)?;
                Location::load(s).map_err(Fault::msg)
            })
            .map(|l| Value::Location(Arc::new(l))),
        _ => return None,
    };
    Some(result)
}

/// What parsing a date or a duration costs besides a step per byte (the
/// elements, the error text of a layout that does not fit).
const PARSE_STEPS: u64 = 32;

/// What looking an abbreviation up among a zone's transitions costs.
const ZONE_SCAN_STEPS: u64 = 2_000;

/// The steps parsing `text` against `layout` is charged: a step per byte
/// of either, as it takes about a step's time per byte in a debug build.
fn parse_steps(text: &str, layout: &str) -> u64 {
    PARSE_STEPS + (text.len() + layout.len()) as u64
}

/// `now()`, or `now(tz)` in a location.
fn now_fn(args: &[Value], now: Timestamp) -> Res<Value> {
    let loc = match args {
        [] => Arc::new(Location::Utc),
        [Value::Location(l)] => l.clone(),
        _ => {
            return Err(Fault::msg(format!(
                "invalid number of arguments (expected 0, got {})",
                args.len()
            )));
        }
    };
    Ok(Value::Time(Arc::new(Time::from_timestamp(now, loc))))
}

/// `date(s)`, `date(s, layout)`, `date(s, layout, zone)`, each optionally
/// preceded by a location: Go's `time.Parse` (or `ParseInLocation`), or
/// without a layout the first of expr-lang's layouts that fits.
fn date(args: &[Value], budget: &mut Budget) -> Res<Value> {
    let (tz, args) = match args {
        [Value::Location(l), rest @ ..] => (Some(l.clone()), rest),
        _ => (None, args),
    };
    if args.is_empty() || args.len() > 3 {
        let (expected, got) = if args.is_empty() {
            ("at least 1", args.len())
        } else {
            ("at most 3", args.len())
        };
        return Err(Fault::msg(format!(
            "invalid number of arguments (expected {expected}, got {got})"
        )));
    }
    let text = string_arg("date", args, 0)?;
    let utc = Arc::new(Location::Utc);
    let parsed = match args {
        [_, _, _] => {
            let layout = string_arg("date", args, 1)?;
            let zone = string_arg("date", args, 2)?;
            budget.step(1_000)?;
            let loc = Arc::new(Location::load(zone).map_err(Fault::msg)?);
            budget.step(parse_steps(text, layout))?;
            if layout.contains("MST") {
                // An abbreviation is looked up among the zone's transitions.
                budget.step(ZONE_SCAN_STEPS)?;
            }
            gotime::parse(layout, text, &loc, &loc).map_err(Fault::msg)?
        }
        [_, _] => {
            let layout = string_arg("date", args, 1)?;
            budget.step(parse_steps(text, layout))?;
            if tz.is_some() && layout.contains("MST") {
                budget.step(ZONE_SCAN_STEPS)?;
            }
            match &tz {
                Some(loc) => gotime::parse(layout, text, loc, loc),
                None => gotime::parse(layout, text, &utc, &utc),
            }
            .map_err(Fault::msg)?
        }
        _ => {
            let (default, local) = match &tz {
                Some(loc) => (loc, loc),
                None => (&utc, &utc),
            };
            let mut found = None;
            for layout in gotime::DEFAULT_LAYOUTS {
                budget.step(parse_steps(text, layout))?;
                if let Ok(t) = gotime::parse(layout, text, default, local) {
                    found = Some(t);
                    break;
                }
            }
            found.ok_or_else(|| Fault::msg(format!("invalid date {text}")))?
        }
    };
    Ok(Value::Time(Arc::new(parsed)))
}

fn len(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("len", args, 1, 1)?;
    Ok(Value::Int(match &args[0] {
        Value::Array(a) => a.items.len() as i64,
        Value::Map(m) => m.entries.len() as i64,
        Value::Str(s) => {
            budget.work(s.len())?;
            s.chars().count() as i64
        }
        other => {
            return Err(Fault::msg(format!(
                "invalid argument for len (type {})",
                other.go_type()
            )));
        }
    }))
}

fn abs(args: &[Value]) -> Res<Value> {
    arity("abs", args, 1, 1)?;
    match &args[0] {
        Value::Int(i) => Ok(Value::Int(i.wrapping_abs())),
        Value::Float(f) => Ok(Value::Float(if *f < 0.0 { -f } else { *f })),
        other => Err(Fault::msg(format!(
            "invalid argument for abs (type {})",
            other.go_type()
        ))),
    }
}

fn rounding(name: &str, args: &[Value]) -> Res<Value> {
    arity(name, args, 1, 1)?;
    let f = match &args[0] {
        Value::Int(i) => return Ok(Value::Float(*i as f64)),
        Value::Float(f) => *f,
        other => {
            return Err(Fault::msg(format!(
                "invalid argument for {name} (type {})",
                other.go_type()
            )));
        }
    };
    Ok(Value::Float(match name {
        "ceil" => f.ceil(),
        "floor" => f.floor(),
        _ => f.round(),
    }))
}

fn int(args: &[Value]) -> Res<Value> {
    arity("int", args, 1, 1)?;
    match &args[0] {
        Value::Int(i) | Value::Duration(i) => Ok(Value::Int(*i)),
        Value::Named(n) => Ok(Value::Int(n.number())),
        Value::Float(f) => Ok(Value::Int(*f as i64)),
        Value::Str(s) => golang::atoi(s)
            .map(Value::Int)
            .ok_or_else(|| Fault::msg(format!("invalid operation: int({})", brief(&args[0])))),
        other => Err(Fault::msg(format!(
            "invalid operation: int({})",
            other.go_type()
        ))),
    }
}

fn float(args: &[Value]) -> Res<Value> {
    arity("float", args, 1, 1)?;
    match &args[0] {
        Value::Int(i) => Ok(Value::Float(*i as f64)),
        Value::Float(f) => Ok(Value::Float(*f)),
        Value::Str(s) => golang::parse_float(s)
            .map(Value::Float)
            .ok_or_else(|| Fault::msg(format!("invalid operation: float({})", brief(&args[0])))),
        other => Err(Fault::msg(format!(
            "invalid operation: float({})",
            other.go_type()
        ))),
    }
}

fn trim(name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity(name, args, 1, 2)?;
    let s = string_arg(name, args, 0)?;
    budget.work(s.len())?;
    let out = match name {
        "trim" => match args.get(1) {
            None => s.trim(),
            Some(_) => {
                let cutset = string_arg(name, args, 1)?;
                s.trim_matches(|c| cutset.contains(c))
            }
        },
        _ => {
            let affix = match args.get(1) {
                None => " ",
                Some(_) => string_arg(name, args, 1)?,
            };
            if name == "trimPrefix" {
                s.strip_prefix(affix).unwrap_or(s)
            } else {
                s.strip_suffix(affix).unwrap_or(s)
            }
        }
    };
    new_string(out.to_string(), budget)
}

/// Go's `strings.ToUpper` / `ToLower` map rune by rune (no `ß` → `SS`).
fn case(name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity(name, args, 1, 1)?;
    let s = string_arg(name, args, 0)?;
    budget.alloc_str(s.len().saturating_mul(2))?;
    let map_char = |c: char| -> char {
        let mut mapped = if name == "upper" {
            c.to_uppercase().collect::<Vec<_>>()
        } else {
            c.to_lowercase().collect::<Vec<_>>()
        };
        if mapped.len() == 1 {
            mapped.pop().unwrap_or(c)
        } else {
            c
        }
    };
    Ok(Value::string(s.chars().map(map_char).collect()))
}

/// Go's `strings.Split`/`SplitN`/`SplitAfter`/`SplitAfterN`.
fn split(name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity(name, args, 2, 3)?;
    let s = string_arg(name, args, 0)?;
    let sep = string_arg(name, args, 1)?;
    let n = match args.get(2) {
        Some(v) => to_int(v)?,
        None => -1,
    };
    budget.work(s.len())?;
    if n == 0 {
        return new_array(Vec::new(), budget);
    }
    let after = name == "splitAfter";
    let limit = if n < 0 { usize::MAX } else { n as usize };
    let mut out = Vec::new();
    // Each part is charged before it is made (allocating and later freeing
    // a small string takes a few steps' time in a debug build).
    let mut push = |part: &str, out: &mut Vec<Value>| -> Res<()> {
        budget.step(6)?;
        budget.alloc(part.len() as u64 + super::budget::STRING_OVERHEAD + ELEMENT_SIZE)?;
        out.push(Value::str(part));
        Ok(())
    };
    let mut rest = s;
    if sep.is_empty() {
        // Explode into characters; the last part takes the rest.
        while !rest.is_empty() {
            if out.len() + 1 == limit {
                push(rest, &mut out)?;
                break;
            }
            let w = rest.chars().next().map_or(1, char::len_utf8);
            push(&rest[..w], &mut out)?;
            rest = &rest[w..];
        }
    } else {
        while out.len() + 1 < limit {
            let Some(i) = rest.find(sep) else { break };
            let cut = if after { i + sep.len() } else { i };
            push(&rest[..cut], &mut out)?;
            rest = &rest[i + sep.len()..];
        }
        push(rest, &mut out)?;
    }
    budget.alloc_array(0)?;
    Value::array(out)
}

/// Go's `strings.Replace` (with `n`) and `ReplaceAll`; the result's size is
/// computed and charged before it is built.
fn replace(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("replace", args, 3, 4)?;
    let s = string_arg("replace", args, 0)?;
    let old = string_arg("replace", args, 1)?;
    let new = string_arg("replace", args, 2)?;
    let n = match args.get(3) {
        Some(v) => to_int(v)?,
        None => -1,
    };
    budget.work(s.len())?;
    let limit = if n < 0 { usize::MAX } else { n as usize };
    let found = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    let count = found.min(limit);
    let size = (s.len() as u128 + count as u128 * new.len() as u128)
        .saturating_sub(count as u128 * old.len() as u128);
    budget.alloc_str(usize::try_from(size).unwrap_or(usize::MAX))?;
    if old.is_empty() {
        budget.step(count as u64)?;
        // Go inserts `new` before each rune (and at the end), `count` times.
        let mut out = String::with_capacity(size as usize);
        let mut done = 0;
        for c in s.chars() {
            if done < count {
                out.push_str(new);
                done += 1;
            }
            out.push(c);
        }
        if done < count {
            out.push_str(new);
        }
        return Ok(Value::string(out));
    }
    Ok(Value::string(s.replacen(old, new, count)))
}

fn repeat(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("repeat", args, 2, 2)?;
    let s = string_arg("repeat", args, 0)?;
    let n = to_int(&args[1])?;
    if n < 0 {
        return Err(Fault::msg(format!(
            "invalid argument for repeat (expected positive integer, got {n})"
        )));
    }
    // expr-lang refuses more than a million repetitions outright.
    if n > 1_000_000 {
        return Err(Fault::Budget(Limit::Memory(budget.limits().max_memory)));
    }
    let size = (s.len() as u64).saturating_mul(n as u64);
    budget.alloc_str(usize::try_from(size).unwrap_or(usize::MAX))?;
    Ok(Value::string(s.repeat(n as usize)))
}

fn join(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("join", args, 1, 2)?;
    let items = match &args[0] {
        Value::Array(a) => &a.items,
        other => {
            return Err(Fault::msg(format!(
                "invalid argument for join (type {})",
                other.go_type()
            )));
        }
    };
    let glue = match args.get(1) {
        Some(_) => string_arg("join", args, 1)?,
        None => "",
    };
    let mut size: u64 = 0;
    for item in items {
        match item {
            Value::Str(s) => size = size.saturating_add(s.len() as u64 + glue.len() as u64),
            other => {
                return Err(Fault::msg(format!(
                    "join: elements must be strings, got {}",
                    other.go_type()
                )));
            }
        }
    }
    budget.step(items.len() as u64)?;
    budget.alloc_str(usize::try_from(size).unwrap_or(usize::MAX))?;
    let mut out = String::with_capacity(size as usize);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(glue);
        }
        if let Value::Str(s) = item {
            out.push_str(s);
        }
    }
    Ok(Value::string(out))
}

fn search(name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity(name, args, 2, 2)?;
    let s = string_arg(name, args, 0)?;
    let sub = string_arg(name, args, 1)?;
    budget.work(s.len())?;
    // Go's strings.Index and LastIndex give byte offsets.
    Ok(match name {
        "indexOf" => Value::Int(s.find(sub).map_or(-1, |i| i as i64)),
        "lastIndexOf" => Value::Int(s.rfind(sub).map_or(-1, |i| i as i64)),
        "hasPrefix" => Value::Bool(s.starts_with(sub)),
        _ => Value::Bool(s.ends_with(sub)),
    })
}

/// expr-lang's `max`/`min`: over numbers and (nested) arrays of numbers; a
/// single non-numeric argument is returned as it is.
fn min_max(name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    fn visit(name: &str, v: &Value, best: &mut Option<Value>, budget: &mut Budget) -> Res<()> {
        budget.step(1)?;
        match v {
            Value::Int(_) | Value::Float(_) | Value::Duration(_) => {
                let replace = match best {
                    None => true,
                    Some(b) if name == "max" => value::less(b, v, budget)?,
                    Some(b) => value::less(v, b, budget)?,
                };
                if replace {
                    *best = Some(v.clone());
                }
                Ok(())
            }
            Value::Array(a) => {
                for item in &a.items {
                    visit(name, item, best, budget)?;
                }
                Ok(())
            }
            other => Err(Fault::msg(format!(
                "invalid argument for {name} (type {})",
                other.go_type()
            ))),
        }
    }
    if let [single] = args
        && !matches!(
            single,
            Value::Int(_) | Value::Float(_) | Value::Duration(_) | Value::Array(_)
        )
    {
        return Ok(single.clone());
    }
    let mut best = None;
    for arg in args {
        visit(name, arg, &mut best, budget)?;
    }
    Ok(best.unwrap_or(Value::Nil))
}

fn numbers_into(name: &str, v: &Value, out: &mut Vec<f64>, budget: &mut Budget) -> Res<()> {
    budget.step(1)?;
    match v {
        Value::Int(i) => out.push(*i as f64),
        Value::Float(f) => out.push(*f),
        Value::Array(a) => {
            for item in &a.items {
                numbers_into(name, item, out, budget)?;
            }
        }
        other => {
            return Err(Fault::msg(format!(
                "invalid argument for {name} (type {})",
                other.go_type()
            )));
        }
    }
    Ok(())
}

fn mean_median(name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    let mut nums = Vec::new();
    for arg in args {
        numbers_into(name, arg, &mut nums, budget)?;
    }
    budget.alloc_array(nums.len())?;
    if nums.is_empty() {
        return Ok(Value::Float(0.0));
    }
    if name == "mean" {
        return Ok(Value::Float(nums.iter().sum::<f64>() / nums.len() as f64));
    }
    budget.step(nums.len() as u64 * 8)?;
    nums.sort_by(f64::total_cmp);
    let n = nums.len();
    Ok(Value::Float(if n % 2 == 1 {
        nums[n / 2]
    } else {
        (nums[n / 2 - 1] + nums[n / 2]) / 2.0
    }))
}

fn from_json(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("fromJSON", args, 1, 1)?;
    let s = string_arg("fromJSON", args, 0)?;
    // serde_json's tree takes up to ~16 times the text, and parsing takes
    // about a step's time per byte in a debug build; charge both first.
    budget.alloc((s.len() as u64).saturating_mul(16))?;
    budget.step(s.len() as u64)?;
    let parsed: serde_json::Value =
        serde_json::from_str(s).map_err(|e| Fault::msg(e.to_string()))?;
    value::from_json(&parsed).map_err(Fault::msg)
}

fn from_base64(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("fromBase64", args, 1, 1)?;
    let s = string_arg("fromBase64", args, 0)?;
    budget.alloc_str(s.len())?;
    // Go's decoder skips newlines.
    let cleaned: String = s.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| Fault::msg(format!("illegal base64 data: {e}")))?;
    Ok(Value::string(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Like member access, but nil instead of an error.
fn get(args: &[Value]) -> Res<Value> {
    if args.len() < 2 {
        return Err(Fault::msg(format!(
            "invalid number of arguments (expected 2, got {})",
            args.len()
        )));
    }
    match (&args[0], &args[1]) {
        // Nil for a missing key, whatever the map's values (unlike `m.x`,
        // which gives `""` from a `map[string]string`).
        (Value::Map(m), Value::Str(k)) => Ok(m.entries.get(&**k).cloned().unwrap_or(Value::Nil)),
        (Value::Map(m), Value::Nil) => Ok(m.entries.get("").cloned().unwrap_or(Value::Nil)),
        (Value::Array(_) | Value::Str(_), Value::Int(_) | Value::Float(_))
        | (Value::Struct(_), Value::Str(_)) => Ok(fetch(&args[0], &args[1]).unwrap_or(Value::Nil)),
        _ => Ok(Value::Nil),
    }
}

fn take(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("take", args, 2, 2)?;
    let items = match &args[0] {
        Value::Array(a) => &a.items,
        other => {
            return Err(Fault::msg(format!("cannot take from {}", other.go_type())));
        }
    };
    let n = match &args[1] {
        Value::Int(n) => *n,
        other => {
            return Err(Fault::msg(format!(
                "cannot take {} elements",
                other.go_type()
            )));
        }
    };
    if n < 0 {
        return Err(Fault::msg(format!("slice bounds out of range [:{n}]")));
    }
    let n = (n as u64).min(items.len() as u64) as usize;
    new_array(items[..n].to_vec(), budget)
}

fn map_parts(name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity(name, args, 1, 1)?;
    let Value::Map(m) = &args[0] else {
        let what = match name {
            "keys" => "cannot get keys from",
            "values" => "cannot get values from",
            _ => "cannot transform to pairs",
        };
        return Err(Fault::msg(format!("{what} {}", args[0].go_type())));
    };
    let mut out = Vec::with_capacity(m.entries.len());
    for (k, v) in &m.entries {
        match name {
            "keys" => {
                budget.step(4)?;
                budget.alloc(k.len() as u64 + super::budget::STRING_OVERHEAD)?;
                out.push(Value::str(k));
            }
            "values" => out.push(v.clone()),
            _ => {
                budget.alloc_array(2)?;
                out.push(Value::array(vec![Value::str(k), v.clone()])?);
            }
        }
    }
    new_array(out, budget)
}

fn from_pairs(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("fromPairs", args, 1, 1)?;
    let items = array_arg("fromPairs", args, 0)?;
    budget.alloc_map(0, 0)?;
    let mut entries = BTreeMap::new();
    for pair in items {
        let Value::Array(p) = pair else {
            return Err(Fault::msg(format!("invalid pair {}", brief(pair))));
        };
        let [k, v] = p.items.as_slice() else {
            return Err(Fault::msg(format!("invalid pair length {}", p.items.len())));
        };
        let key = match k {
            Value::Str(s) => s.to_string(),
            other => value::format_v(other, budget)?,
        };
        budget.alloc(key.len() as u64 + ENTRY_OVERHEAD + ELEMENT_SIZE)?;
        budget.step(1)?;
        entries.insert(key, v.clone());
    }
    Value::map(entries)
}

fn uniq(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("uniq", args, 1, 1)?;
    let items = array_arg("uniq", args, 0)?;
    let mut out: Vec<Value> = Vec::new();
    for item in items {
        let mut seen = false;
        for kept in &out {
            if value::equal(item, kept, budget)? {
                seen = true;
                break;
            }
        }
        if !seen {
            out.push(item.clone());
        }
    }
    new_array(out, budget)
}

fn concat(args: &[Value], budget: &mut Budget) -> Res<Value> {
    if args.is_empty() {
        return Err(Fault::msg(
            "invalid number of arguments (expected at least 1, got 0)",
        ));
    }
    let mut total: usize = 0;
    for (i, _) in args.iter().enumerate() {
        total = total.saturating_add(array_arg("concat", args, i)?.len());
    }
    budget.alloc_array(total)?;
    budget.step(total as u64)?;
    let mut out = Vec::with_capacity(total);
    for (i, _) in args.iter().enumerate() {
        out.extend_from_slice(array_arg("concat", args, i)?);
    }
    Value::array(out)
}

fn flatten_into(items: &[Value], out: &mut Vec<Value>, budget: &mut Budget) -> Res<()> {
    for item in items {
        budget.step(1)?;
        match item {
            Value::Array(a) => flatten_into(&a.items, out, budget)?,
            other => {
                budget.alloc(ELEMENT_SIZE)?;
                out.push(other.clone());
            }
        }
    }
    Ok(())
}

fn sort(args: &[Value], budget: &mut Budget) -> Res<Value> {
    arity("sort", args, 1, 2)?;
    let desc = match args.get(1) {
        None => false,
        Some(Value::Str(s)) if &**s == "asc" => false,
        Some(Value::Str(s)) if &**s == "desc" => true,
        Some(Value::Str(s)) => {
            return Err(Fault::msg(format!(
                "invalid order {s}, expected asc or desc"
            )));
        }
        Some(other) => {
            return Err(Fault::msg(format!(
                "sort order argument must be a string (got {})",
                other.go_type()
            )));
        }
    };
    let items = match &args[0] {
        Value::Array(a) => a.items.clone(),
        _ => Vec::new(),
    };
    budget.alloc_array(items.len())?;
    let sorted = merge_sort(items, budget, |a, b, budget| {
        if desc {
            value::less(b, a, budget)
        } else {
            value::less(a, b, budget)
        }
    })?;
    Value::array(sorted)
}

fn bits(name: &str, args: &[Value]) -> Res<Value> {
    arity(name, args, 2, 2)?;
    let (Value::Int(x), Value::Int(y)) = (&args[0], &args[1]) else {
        return Err(Fault::msg(format!(
            "invalid argument for {name} (expected int, int, got {}, {})",
            args[0].go_type(),
            args[1].go_type()
        )));
    };
    let (x, y) = (*x, *y);
    let shift = || -> Res<u32> {
        if y < 0 {
            return Err(Fault::msg(format!(
                "invalid operation: negative shift count {y} (type int)"
            )));
        }
        Ok(u32::try_from(y).unwrap_or(u32::MAX))
    };
    Ok(Value::Int(match name {
        "bitand" => x & y,
        "bitor" => x | y,
        "bitxor" => x ^ y,
        "bitnand" => x & !y,
        "bitshl" => x.checked_shl(shift()?).unwrap_or(0),
        "bitshr" => x
            .checked_shr(shift()?)
            .unwrap_or(if x < 0 { -1 } else { 0 }),
        _ => ((x as u64).checked_shr(shift()?).unwrap_or(0)) as i64,
    }))
}

/// A stable merge sort with a fallible, budget-charging comparison. (The
/// standard library's sorts may panic on inconsistent orders such as NaN;
/// this one never does.)
pub(crate) fn merge_sort<T: Clone>(
    items: Vec<T>,
    budget: &mut Budget,
    less: impl Fn(&T, &T, &mut Budget) -> Res<bool>,
) -> Res<Vec<T>> {
    let n = items.len();
    let mut src = items;
    let mut width = 1;
    while width < n {
        let mut dst = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut l, mut r) = (start, mid);
            while l < mid && r < end {
                budget.step(1)?;
                if less(&src[r], &src[l], budget)? {
                    dst.push(src[r].clone());
                    r += 1;
                } else {
                    dst.push(src[l].clone());
                    l += 1;
                }
            }
            dst.extend_from_slice(&src[l..mid]);
            dst.extend_from_slice(&src[r..end]);
            start = end;
        }
        src = dst;
        width *= 2;
    }
    Ok(src)
}
