//! Method calls on the Go values expressions can hold (`now().Year()`,
//! `duration("90m").Hours()`, `semverParse(v).IncMinor().String()`):
//! the methods of `time.Time`, `time.Duration`, `*time.Location`,
//! `time.Month`, `time.Weekday` and `*semver.Version` that return one value
//! (or a value and an error), with expr-lang's checks of the arguments.

use std::sync::Arc;

use super::budget::Budget;
use super::error::{Fault, Res};
use super::gotime::{self, Location, Time};
use super::semver::Version;
use super::value::{Named, Value};

/// Whether method calls on `v` are dispatched here.
pub(crate) fn has_methods(v: &Value) -> bool {
    v.is_go_typed()
}

/// The methods of each type that can be called from an expression.
fn methods_of(v: &Value) -> &'static [&'static str] {
    match v {
        Value::Time(_) => &[
            "Add",
            "AddDate",
            "After",
            "Before",
            "Compare",
            "Day",
            "Equal",
            "Format",
            "Hour",
            "ISOWeek",
            "In",
            "IsDST",
            "IsZero",
            "Local",
            "Location",
            "Minute",
            "Month",
            "Nanosecond",
            "Round",
            "Second",
            "String",
            "Sub",
            "Truncate",
            "UTC",
            "Unix",
            "UnixMicro",
            "UnixMilli",
            "UnixNano",
            "Weekday",
            "Year",
            "YearDay",
            "Zone",
        ],
        Value::Duration(_) => &[
            "Abs",
            "Hours",
            "Microseconds",
            "Milliseconds",
            "Minutes",
            "Nanoseconds",
            "Round",
            "Seconds",
            "String",
            "Truncate",
        ],
        Value::Location(_) | Value::Named(_) => &["String"],
        Value::Version(v) if v.pointer => &[
            "Compare",
            "Equal",
            "GreaterThan",
            "GreaterThanEqual",
            "IncMajor",
            "IncMinor",
            "IncPatch",
            "LessThan",
            "LessThanEqual",
            "Major",
            "Metadata",
            "Minor",
            "Original",
            "Patch",
            "Prerelease",
            "SetMetadata",
            "SetPrerelease",
            "String",
        ],
        // Go's value-receiver methods only.
        Value::Version(_) => &[
            "IncMajor",
            "IncMinor",
            "IncPatch",
            "Major",
            "Metadata",
            "Minor",
            "Patch",
            "Prerelease",
            "SetMetadata",
            "SetPrerelease",
            "String",
        ],
        _ => &[],
    }
}

/// Whether `name` is a method of `v` (reading one without calling it is an
/// error).
pub(crate) fn is_method(v: &Value, name: &str) -> bool {
    methods_of(v).contains(&name)
}

/// Go's name of a value's type in checker messages (`time.Time`,
/// `semver.Version`).
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Location(_) => "time.Location",
        Value::Version(_) => "semver.Version",
        other => other.go_type(),
    }
}

/// The arguments a method takes.
#[derive(Clone, Copy)]
enum Param {
    Int,
    Str,
    Duration,
    Time,
    Location,
    Version,
}

impl Param {
    fn go_name(self) -> &'static str {
        match self {
            Param::Int => "int",
            Param::Str => "string",
            Param::Duration => "time.Duration",
            Param::Time => "time.Time",
            Param::Location => "*time.Location",
            Param::Version => "*semver.Version",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (Param::Int, Value::Int(_))
                | (Param::Str, Value::Str(_))
                | (Param::Duration, Value::Duration(_))
                | (Param::Time, Value::Time(_))
                | (Param::Location, Value::Location(_))
        ) || matches!((self, v), (Param::Version, Value::Version(v)) if v.pointer)
    }
}

/// expr-lang's checks of a call's arguments against the method's
/// parameters.
fn check(name: &str, args: &[Value], params: &[Param]) -> Res<()> {
    if args.len() > params.len() {
        return Err(Fault::msg(format!("too many arguments to call {name}")));
    }
    if args.len() < params.len() {
        return Err(Fault::msg(format!("not enough arguments to call {name}")));
    }
    for (arg, param) in args.iter().zip(params) {
        if !param.accepts(arg) {
            return Err(Fault::msg(format!(
                "cannot use {} as argument (type {}) to call {name}",
                arg.go_type(),
                param.go_name()
            )));
        }
    }
    Ok(())
}

fn int_at(args: &[Value], i: usize) -> i64 {
    match args.get(i) {
        Some(Value::Int(n) | Value::Duration(n)) => *n,
        _ => 0,
    }
}

fn str_at(args: &[Value], i: usize) -> &str {
    match args.get(i) {
        Some(Value::Str(s)) => s,
        _ => "",
    }
}

/// What a method call costs.
const METHOD_STEPS: u64 = 16;

fn out_of_range() -> Fault {
    Fault::msg("time out of range")
}

fn time_value(t: Option<Time>) -> Res<Value> {
    t.map(|t| Value::Time(Arc::new(t))).ok_or_else(out_of_range)
}

/// Calls method `name` of `obj` with `args`.
pub(crate) fn call(obj: &Value, name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    if !is_method(obj, name) {
        return Err(Fault::msg(format!(
            "type {} has no method {name}",
            type_name(obj)
        )));
    }
    // A call computes the time's fields in its zone: a few steps' time.
    budget.step(METHOD_STEPS)?;
    match obj {
        Value::Time(t) => time_method(t, name, args, budget),
        Value::Duration(d) => duration_method(*d, name, args),
        Value::Location(l) => {
            check(name, args, &[])?;
            Ok(Value::str(l.name()))
        }
        Value::Named(n) => {
            check(name, args, &[])?;
            Ok(Value::string(n.name()))
        }
        Value::Version(v) => version_method(v, name, args),
        _ => Err(Fault::msg(format!(
            "type {} has no method {name}",
            obj.go_type()
        ))),
    }
}

fn time_method(t: &Time, name: &str, args: &[Value], budget: &mut Budget) -> Res<Value> {
    let other = |args: &[Value]| match args.first() {
        Some(Value::Time(u)) => u.clone(),
        _ => Arc::new(t.clone()),
    };
    let params: &[Param] = match name {
        "Add" | "Round" | "Truncate" => &[Param::Duration],
        "AddDate" => &[Param::Int, Param::Int, Param::Int],
        "After" | "Before" | "Compare" | "Equal" | "Sub" => &[Param::Time],
        "Format" => &[Param::Str],
        "In" => &[Param::Location],
        _ => &[],
    };
    check(name, args, params)?;
    Ok(match name {
        "Year" => Value::Int(t.year()),
        "Month" => Value::Named(Named::Month(t.month())),
        "Day" => Value::Int(t.day()),
        "Hour" => Value::Int(t.hour()),
        "Minute" => Value::Int(t.minute()),
        "Second" => Value::Int(t.second()),
        "Nanosecond" => Value::Int(t.nanosecond()),
        "Weekday" => Value::Named(Named::Weekday(t.weekday())),
        "YearDay" => Value::Int(t.year_day()),
        // Go returns (year, week); expr-lang keeps the first.
        "ISOWeek" => Value::Int(t.iso_week_year()),
        "Unix" => Value::Int(t.unix()),
        "UnixMilli" => Value::Int(t.unix_nanos().div_euclid(1_000_000) as i64),
        "UnixMicro" => Value::Int(t.unix_nanos().div_euclid(1_000) as i64),
        "UnixNano" => Value::Int(t.unix_nanos() as i64),
        "IsZero" => Value::Bool(t.is_zero()),
        "IsDST" => Value::Bool(t.is_dst()),
        // Go returns (name, offset); expr-lang keeps the first.
        "Zone" => Value::string(t.zone_name()),
        "Location" => Value::Location(t.location().clone()),
        // The local zone is UTC here.
        "UTC" | "Local" => Value::Time(Arc::new(t.in_location(Arc::new(Location::Utc)))),
        "In" => match args.first() {
            Some(Value::Location(l)) => Value::Time(Arc::new(t.in_location(l.clone()))),
            _ => Value::Nil,
        },
        "Add" => time_value(t.add(int_at(args, 0)))?,
        "AddDate" => time_value(t.add_date(int_at(args, 0), int_at(args, 1), int_at(args, 2)))?,
        "Truncate" => time_value(t.truncate(int_at(args, 0)))?,
        "Round" => time_value(t.round(int_at(args, 0)))?,
        "Sub" => Value::Duration(t.sub(&other(args))),
        "Before" => Value::Bool(t.cmp_instant(&other(args)).is_lt()),
        "After" => Value::Bool(t.cmp_instant(&other(args)).is_gt()),
        "Equal" => Value::Bool(t.cmp_instant(&other(args)).is_eq()),
        "Compare" => Value::Int(t.cmp_instant(&other(args)) as i64),
        "Format" => {
            let layout = str_at(args, 0);
            // Formatting takes about a step's time per byte of the layout.
            budget.step(layout.len() as u64)?;
            let s = t.format(layout);
            budget.alloc_str(s.len())?;
            Value::string(s)
        }
        "String" => Value::string(t.string()),
        _ => Value::Nil,
    })
}

fn duration_method(d: i64, name: &str, args: &[Value]) -> Res<Value> {
    let params: &[Param] = match name {
        "Round" | "Truncate" => &[Param::Duration],
        _ => &[],
    };
    check(name, args, params)?;
    Ok(match name {
        "Hours" => Value::Float(gotime::duration_in(d, gotime::UNIT_HOUR)),
        "Minutes" => Value::Float(gotime::duration_in(d, gotime::UNIT_MINUTE)),
        "Seconds" => Value::Float(gotime::duration_in(d, gotime::UNIT_SECOND)),
        "Milliseconds" => Value::Int(d / 1_000_000),
        "Microseconds" => Value::Int(d / 1_000),
        "Nanoseconds" => Value::Int(d),
        "Abs" => Value::Duration(gotime::duration_abs(d)),
        "Round" => Value::Duration(gotime::duration_round(d, int_at(args, 0))),
        "Truncate" => Value::Duration(gotime::duration_truncate(d, int_at(args, 0))),
        "String" => Value::string(gotime::duration_string(d)),
        _ => Value::Nil,
    })
}

fn version_method(v: &Version, name: &str, args: &[Value]) -> Res<Value> {
    let params: &[Param] = match name {
        "SetPrerelease" | "SetMetadata" => &[Param::Str],
        "Compare" | "Equal" | "GreaterThan" | "GreaterThanEqual" | "LessThan" | "LessThanEqual" => {
            &[Param::Version]
        }
        _ => &[],
    };
    check(name, args, params)?;
    let other = || match args.first() {
        Some(Value::Version(o)) => v.compare(o),
        _ => std::cmp::Ordering::Equal,
    };
    let version = |next: Version| Value::Version(Arc::new(next));
    Ok(match name {
        "Major" => Value::Int(v.major as i64),
        "Minor" => Value::Int(v.minor as i64),
        "Patch" => Value::Int(v.patch as i64),
        "Prerelease" => Value::str(&v.pre),
        "Metadata" => Value::str(&v.metadata),
        "Original" => Value::str(&v.original),
        "String" => Value::string(v.string()),
        "IncMajor" => version(v.inc_major()),
        "IncMinor" => version(v.inc_minor()),
        "IncPatch" => version(v.inc_patch()),
        "SetPrerelease" => version(v.set_prerelease(str_at(args, 0)).map_err(Fault::msg)?),
        "SetMetadata" => version(v.set_metadata(str_at(args, 0)).map_err(Fault::msg)?),
        "Compare" => Value::Int(other() as i64),
        "Equal" => Value::Bool(other().is_eq()),
        "LessThan" => Value::Bool(other().is_lt()),
        "LessThanEqual" => Value::Bool(other().is_le()),
        "GreaterThan" => Value::Bool(other().is_gt()),
        "GreaterThanEqual" => Value::Bool(other().is_ge()),
        _ => Value::Nil,
    })
}
