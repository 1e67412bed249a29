//! The values expressions compute with, and their conversions: from and to
//! JSON (`serde_json`), to Go's `%v` text and to Go's `encoding/json` text.
//!
//! Containers are shared (`Arc`), so passing a value around never copies
//! it; every container records its nesting depth, which is capped so that
//! no recursive walk over a value (dropping, printing, comparing) can
//! exhaust the stack.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::budget::Budget;
use super::error::{Fault, Limit, Res};
use super::golang;
use super::gotime;
use super::semver;

/// The deepest nesting of arrays, maps and structs a value may have. JSON
/// parsed by `serde_json` is limited to 128 levels already.
pub(crate) const MAX_VALUE_DEPTH: usize = 200;

/// A value: what expr-lang's `any` holds in Kargo's environment.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// `Arc<String>` rather than `Arc<str>`: wrapping a freshly built
    /// string then moves it instead of copying it (no transient double).
    Str(Arc<String>),
    Array(Arc<Array>),
    Map(Arc<Map>),
    /// A Go struct from Kargo's API (a commit, an image, a Freight origin,
    /// step metadata): fields are read by their Go name (`.ID`, `.Tag`) or
    /// their JSON name, and it marshals to JSON with its JSON names.
    Struct(Arc<Struct>),
    /// A Go `time.Time` (`now()`, `date()`).
    Time(Arc<gotime::Time>),
    /// A Go `time.Duration`, in nanoseconds (`duration()`, `t1 - t2`).
    Duration(i64),
    /// A Go `*time.Location` (`timezone()`, `t.Location()`).
    Location(Arc<gotime::Location>),
    /// A Go integer type whose values have names (`t.Month()`,
    /// `t.Weekday()`): JSON writes the number, `string()` the name.
    Named(Named),
    /// A semantic version (`semverParse()`).
    Version(Arc<semver::Version>),
}

/// The Go integer types with named values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    /// `time.Month`: 1 is January.
    Month(i64),
    /// `time.Weekday`: 0 is Sunday.
    Weekday(i64),
}

impl Named {
    pub(crate) fn number(self) -> i64 {
        match self {
            Named::Month(n) | Named::Weekday(n) => n,
        }
    }

    /// `String()`: the English name.
    pub(crate) fn name(self) -> String {
        match self {
            Named::Month(n) => gotime::month_name(n),
            Named::Weekday(n) => gotime::weekday_name(n),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Named::Month(_) => "time.Month",
            Named::Weekday(_) => "time.Weekday",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Array {
    pub items: Vec<Value>,
    depth: usize,
}

#[derive(Debug)]
pub(crate) struct Map {
    pub entries: BTreeMap<String, Value>,
    /// What Go map type it is.
    pub kind: MapKind,
    depth: usize,
}

/// The Go types of maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapKind {
    /// `map[string]any`: a missing key reads as nil.
    Any,
    /// `map[string]string` (what `configMap()` and `secret()` return): a
    /// missing key reads as `""`, the zero string.
    Strings,
    /// A nil `map[string]string` (the data of a ConfigMap that has none):
    /// as `Strings`, but JSON writes it as `null`.
    NilStrings,
}

#[derive(Debug)]
pub(crate) struct Struct {
    /// Go's name of the type, e.g. `v1alpha1.GitCommit`.
    pub type_name: &'static str,
    pub fields: Vec<Field>,
    depth: usize,
}

#[derive(Debug)]
pub(crate) struct Field {
    /// The Go field name (`RepoURL`).
    pub name: String,
    /// The JSON name (`repoURL`).
    pub json: String,
    /// Whether JSON leaves the field out when it is empty.
    pub omit_empty: bool,
    pub value: Value,
}

fn too_deep() -> Fault {
    Fault::Budget(Limit::Depth(MAX_VALUE_DEPTH))
}

impl Value {
    pub(crate) fn str(s: &str) -> Value {
        Value::Str(Arc::new(s.to_string()))
    }

    pub(crate) fn string(s: String) -> Value {
        Value::Str(Arc::new(s))
    }

    /// An array; fails if it would nest too deep.
    pub(crate) fn array(items: Vec<Value>) -> Res<Value> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        Ok(Value::Array(Arc::new(Array { items, depth })))
    }

    /// A map; fails if it would nest too deep.
    pub(crate) fn map(entries: BTreeMap<String, Value>) -> Res<Value> {
        let depth = 1 + entries.values().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        Ok(Value::Map(Arc::new(Map {
            entries,
            kind: MapKind::Any,
            depth,
        })))
    }

    /// A Go `map[string]string`: missing keys read as `""`. `nil_if_empty`:
    /// an empty one is Go's nil map (JSON `null`).
    pub(crate) fn string_map(entries: &BTreeMap<String, String>, nil_if_empty: bool) -> Value {
        let kind = if nil_if_empty && entries.is_empty() {
            MapKind::NilStrings
        } else {
            MapKind::Strings
        };
        Value::Map(Arc::new(Map {
            entries: entries
                .iter()
                .map(|(k, v)| (k.clone(), Value::str(v)))
                .collect(),
            kind,
            depth: 1,
        }))
    }

    /// A struct; fails if it would nest too deep.
    pub(crate) fn structure(type_name: &'static str, fields: Vec<Field>) -> Res<Value> {
        let depth = 1 + fields.iter().map(|f| f.value.depth()).max().unwrap_or(0);
        if depth > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        Ok(Value::Struct(Arc::new(Struct {
            type_name,
            fields,
            depth,
        })))
    }

    pub(crate) fn depth(&self) -> usize {
        match self {
            Value::Array(a) => a.depth,
            Value::Map(m) => m.depth,
            Value::Struct(s) => s.depth,
            _ => 0,
        }
    }

    pub(crate) fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Go's `%T` of the value as Kargo would hold it, for messages.
    pub(crate) fn go_type(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Array(_) => "[]interface {}",
            Value::Map(m) if m.kind != MapKind::Any => "map[string]string",
            Value::Map(_) => "map[string]interface {}",
            Value::Struct(s) => s.type_name,
            Value::Time(_) => "time.Time",
            Value::Duration(_) => "time.Duration",
            Value::Location(_) => "*time.Location",
            Value::Named(n) => n.type_name(),
            Value::Version(v) if v.pointer => "*semver.Version",
            Value::Version(_) => "semver.Version",
        }
    }

    /// What expr-lang's `type()` returns.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Struct(s) => s.type_name,
            Value::Time(_) => "time.Time",
            Value::Duration(_) => "time.Duration",
            Value::Location(_) => "time.Location",
            Value::Named(n) => n.type_name(),
            Value::Version(_) => "github.com/Masterminds/semver/v3.Version",
        }
    }

    /// Whether the value is one of Go's typed values from the `time` and
    /// `semver` packages, which expr-lang's type checker keeps apart from
    /// plain numbers, strings and bools.
    pub(crate) fn is_go_typed(&self) -> bool {
        matches!(
            self,
            Value::Time(_)
                | Value::Duration(_)
                | Value::Location(_)
                | Value::Named(_)
                | Value::Version(_)
        )
    }

    /// Whether Go's `omitempty` leaves this value out.
    fn is_empty(&self) -> bool {
        match self {
            Value::Nil => true,
            Value::Bool(b) => !b,
            Value::Int(i) => *i == 0,
            Value::Float(f) => *f == 0.0,
            Value::Str(s) => s.is_empty(),
            Value::Array(a) => a.items.is_empty(),
            Value::Map(m) => m.entries.is_empty(),
            Value::Duration(d) => *d == 0,
            Value::Named(n) => n.number() == 0,
            Value::Struct(_) | Value::Time(_) | Value::Location(_) | Value::Version(_) => false,
        }
    }
}

impl Struct {
    /// The field called `name` (Go name first, then JSON name).
    pub(crate) fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .or_else(|| self.fields.iter().find(|f| f.json == name))
            .map(|f| &f.value)
    }
}

/// The Go field name Kargo's types use for a JSON name: `repoURL` →
/// `RepoURL`, `id` → `ID`.
pub(crate) fn go_field_name(json: &str) -> String {
    if json == "id" {
        return "ID".to_string();
    }
    let mut chars = json.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The zero value of a known struct field, used when the JSON leaves it
/// out (Go's structs always have every field).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Zero {
    Str,
    Int,
    Bool,
    Nil,
}

/// A Kargo API struct: its Go name and fields (JSON name, zero value,
/// omitempty).
pub(crate) struct StructDef {
    pub type_name: &'static str,
    pub fields: &'static [(&'static str, Zero, bool)],
}

impl StructDef {
    /// Builds the struct from a JSON object: known fields take their zero
    /// value when absent; unknown keys are kept (Go name derived).
    pub(crate) fn build(
        &self,
        obj: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Value, String> {
        let mut fields = Vec::with_capacity(self.fields.len());
        for &(json, zero, omit_empty) in self.fields {
            let value = match obj.get(json) {
                Some(v) => from_json(v)?,
                None => match zero {
                    Zero::Str => Value::str(""),
                    Zero::Int => Value::Int(0),
                    Zero::Bool => Value::Bool(false),
                    Zero::Nil => Value::Nil,
                },
            };
            fields.push(Field {
                name: go_field_name(json),
                json: json.to_string(),
                omit_empty,
                value,
            });
        }
        for (key, v) in obj {
            if self.fields.iter().any(|f| f.0 == key) {
                continue;
            }
            fields.push(Field {
                name: go_field_name(key),
                json: key.clone(),
                omit_empty: true,
                value: from_json(v)?,
            });
        }
        Value::structure(self.type_name, fields).map_err(|_| too_deep_message())
    }
}

fn too_deep_message() -> String {
    format!("value nests deeper than {MAX_VALUE_DEPTH} levels")
}

/// Converts JSON into a value. Numbers become floats, as they do when Go
/// unmarshals JSON into `any` (which is how Kargo holds vars and outputs).
pub(crate) fn from_json(v: &serde_json::Value) -> Result<Value, String> {
    from_json_at(v, 0, false)
}

/// As [`from_json`], but whole numbers become ints, as Go's YAML decoder
/// makes them (its JSON decoder makes every number a float64).
pub(crate) fn from_yaml_json(v: &serde_json::Value) -> Result<Value, String> {
    from_json_at(v, 0, true)
}

fn from_json_at(v: &serde_json::Value, depth: usize, ints: bool) -> Result<Value, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(too_deep_message());
    }
    Ok(match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64().filter(|_| ints) {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Array(items) => {
            let items = items
                .iter()
                .map(|v| from_json_at(v, depth + 1, ints))
                .collect::<Result<Vec<_>, _>>()?;
            Value::array(items).map_err(|_| too_deep_message())?
        }
        serde_json::Value::Object(obj) => {
            let entries = obj
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_json_at(v, depth + 1, ints)?)))
                .collect::<Result<BTreeMap<_, _>, String>>()?;
            Value::map(entries).map_err(|_| too_deep_message())?
        }
    })
}

/// Converts a value into JSON. Non-finite floats cannot be JSON (Go's
/// `encoding/json` refuses them with the same message).
pub(crate) fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| golang::unsupported_float(*f))?,
        Value::Str(s) => serde_json::Value::String(s.to_string()),
        Value::Array(a) => {
            serde_json::Value::Array(a.items.iter().map(to_json).collect::<Result<Vec<_>, _>>()?)
        }
        Value::Map(m) if m.kind == MapKind::NilStrings => serde_json::Value::Null,
        Value::Map(m) => serde_json::Value::Object(
            m.entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<serde_json::Map<_, _>, String>>()?,
        ),
        Value::Struct(s) => serde_json::Value::Object(
            s.fields
                .iter()
                .filter(|f| !(f.omit_empty && f.value.is_empty()))
                .map(|f| Ok((f.json.clone(), to_json(&f.value)?)))
                .collect::<Result<serde_json::Map<_, _>, String>>()?,
        ),
        Value::Time(t) => serde_json::Value::String(t.marshal_json()?),
        Value::Duration(d) => serde_json::Value::from(*d),
        // Go's Location has no exported fields.
        Value::Location(_) => serde_json::Value::Object(serde_json::Map::new()),
        Value::Named(n) => serde_json::Value::from(n.number()),
        Value::Version(v) => serde_json::Value::String(v.string()),
    })
}

/// How many bytes of printed output one step of fuel pays for (printing
/// escapes character by character, which is slow in debug builds).
const PRINTED_BYTES_PER_STEP: u64 = 8;

/// A string being written under a cap (from the memory and the fuel left),
/// so printing a value made of many references to one large string cannot
/// run away.
struct Capped {
    out: String,
    cap: usize,
}

impl Capped {
    fn push(&mut self, s: &str) -> Res<()> {
        if self.out.len() + s.len() > self.cap {
            return Err(Fault::Budget(Limit::Memory(0)));
        }
        self.out.push_str(s);
        Ok(())
    }
}

/// Runs a printer under the budget's remaining memory, then charges what it
/// wrote.
fn print_capped(budget: &mut Budget, f: impl FnOnce(&mut Capped) -> Res<()>) -> Res<String> {
    let cap = budget
        .memory_left()
        .min(budget.steps_left().saturating_mul(PRINTED_BYTES_PER_STEP));
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut w = Capped {
        out: String::new(),
        cap,
    };
    match f(&mut w) {
        Err(Fault::Budget(Limit::Memory(_))) => {
            // Whichever budget the cap came from is the one exceeded.
            if budget.memory_left() <= cap as u64 {
                Err(Fault::Budget(Limit::Memory(budget.limits().max_memory)))
            } else {
                Err(Fault::Budget(Limit::Steps(budget.limits().max_steps)))
            }
        }
        Err(e) => Err(e),
        Ok(()) => {
            budget.step(w.out.len() as u64 / PRINTED_BYTES_PER_STEP)?;
            budget.alloc_str(w.out.len())?;
            Ok(w.out)
        }
    }
}

/// Go's `fmt.Sprintf("%v", v)`: what `string(v)` returns.
pub(crate) fn format_v(v: &Value, budget: &mut Budget) -> Res<String> {
    print_capped(budget, |w| write_v(v, w))
}

fn write_v(v: &Value, w: &mut Capped) -> Res<()> {
    match v {
        Value::Nil => w.push("<nil>"),
        Value::Bool(b) => w.push(if *b { "true" } else { "false" }),
        Value::Int(i) => w.push(&i.to_string()),
        Value::Float(f) => w.push(&golang::format_float_v(*f)),
        Value::Str(s) => w.push(s),
        Value::Array(a) => {
            w.push("[")?;
            for (i, item) in a.items.iter().enumerate() {
                if i > 0 {
                    w.push(" ")?;
                }
                write_v(item, w)?;
            }
            w.push("]")
        }
        Value::Map(m) => {
            w.push("map[")?;
            for (i, (k, item)) in m.entries.iter().enumerate() {
                if i > 0 {
                    w.push(" ")?;
                }
                w.push(k)?;
                w.push(":")?;
                write_v(item, w)?;
            }
            w.push("]")
        }
        Value::Struct(s) => {
            w.push("{")?;
            for (i, f) in s.fields.iter().enumerate() {
                if i > 0 {
                    w.push(" ")?;
                }
                write_v(&f.value, w)?;
            }
            w.push("}")
        }
        Value::Time(t) => w.push(&t.string()),
        Value::Duration(d) => w.push(&gotime::duration_string(*d)),
        // Go prints the Location struct's internals; its name says more.
        Value::Location(l) => w.push(l.name()),
        Value::Named(n) => w.push(&n.name()),
        Value::Version(v) => w.push(&v.string()),
    }
}

/// Go's `json.Marshal` (or `json.MarshalIndent(v, "", "  ")` when
/// `indent`): sorted map keys, HTML-safe strings, Go's float format, and an
/// error for NaN and infinities.
pub(crate) fn marshal(v: &Value, indent: bool, budget: &mut Budget) -> Res<String> {
    print_capped(budget, |w| write_json(v, indent, 0, w))
}

fn newline(w: &mut Capped, indent: bool, level: usize) -> Res<()> {
    if indent {
        w.push("\n")?;
        for _ in 0..level {
            w.push("  ")?;
        }
    }
    Ok(())
}

fn write_json(v: &Value, indent: bool, level: usize, w: &mut Capped) -> Res<()> {
    match v {
        Value::Nil => w.push("null"),
        Value::Bool(b) => w.push(if *b { "true" } else { "false" }),
        Value::Int(i) => w.push(&i.to_string()),
        Value::Float(f) => match golang::format_float_json(*f) {
            Some(s) => w.push(&s),
            None => Err(Fault::msg(golang::unsupported_float(*f))),
        },
        Value::Str(s) => {
            let mut quoted = String::with_capacity(s.len() + 2);
            golang::push_json_string(&mut quoted, s);
            w.push(&quoted)
        }
        Value::Array(a) => {
            if a.items.is_empty() {
                return w.push("[]");
            }
            w.push("[")?;
            for (i, item) in a.items.iter().enumerate() {
                if i > 0 {
                    w.push(",")?;
                }
                newline(w, indent, level + 1)?;
                write_json(item, indent, level + 1, w)?;
            }
            newline(w, indent, level)?;
            w.push("]")
        }
        Value::Map(m) if m.kind == MapKind::NilStrings => w.push("null"),
        Value::Map(m) => write_object(
            m.entries.iter().map(|(k, v)| (k.as_str(), v)),
            m.entries.is_empty(),
            indent,
            level,
            w,
        ),
        Value::Struct(s) => {
            let fields: Vec<(&str, &Value)> = s
                .fields
                .iter()
                .filter(|f| !(f.omit_empty && f.value.is_empty()))
                .map(|f| (f.json.as_str(), &f.value))
                .collect();
            let empty = fields.is_empty();
            write_object(fields.into_iter(), empty, indent, level, w)
        }
        Value::Time(t) => {
            let text = t.marshal_json().map_err(Fault::msg)?;
            w.push("\"")?;
            w.push(&text)?;
            w.push("\"")
        }
        Value::Duration(d) => w.push(&d.to_string()),
        Value::Location(_) => w.push("{}"),
        Value::Named(n) => w.push(&n.number().to_string()),
        Value::Version(v) => {
            let mut quoted = String::new();
            golang::push_json_string(&mut quoted, &v.string());
            w.push(&quoted)
        }
    }
}

fn write_object<'v>(
    entries: impl Iterator<Item = (&'v str, &'v Value)>,
    empty: bool,
    indent: bool,
    level: usize,
    w: &mut Capped,
) -> Res<()> {
    if empty {
        return w.push("{}");
    }
    w.push("{")?;
    for (i, (k, item)) in entries.enumerate() {
        if i > 0 {
            w.push(",")?;
        }
        newline(w, indent, level + 1)?;
        let mut key = String::with_capacity(k.len() + 2);
        golang::push_json_string(&mut key, k);
        w.push(&key)?;
        w.push(if indent { ": " } else { ":" })?;
        write_json(item, indent, level + 1, w)?;
    }
    newline(w, indent, level)?;
    w.push("}")
}

/// expr-lang's `==` (`runtime.Equal`): numbers compare across int and
/// float, arrays element by element with `==`, anything else must be deeply
/// identical (Go's `reflect.DeepEqual`).
pub(crate) fn equal(a: &Value, b: &Value, budget: &mut Budget) -> Res<bool> {
    budget.step(1)?;
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(x), Value::Float(y)) => (*x as f64) == *y,
        (Value::Float(x), Value::Int(y)) => *x == (*y as f64),
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => {
            budget.work(x.len().min(y.len()))?;
            x == y
        }
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Nil, Value::Nil) => true,
        // Times are equal when they are the same instant, whatever their
        // locations (Go's `t.Equal(u)`).
        (Value::Time(x), Value::Time(y)) => x.cmp_instant(y).is_eq(),
        (Value::Duration(x), Value::Duration(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            if x.items.len() != y.items.len() {
                return Ok(false);
            }
            for (p, q) in x.items.iter().zip(&y.items) {
                if !equal(p, q, budget)? {
                    return Ok(false);
                }
            }
            true
        }
        _ => deep_equal(a, b, budget)?,
    })
}

/// Go's `reflect.DeepEqual` over values: same kinds all the way down.
fn deep_equal(a: &Value, b: &Value, budget: &mut Budget) -> Res<bool> {
    budget.step(1)?;
    Ok(match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => {
            budget.work(x.len().min(y.len()))?;
            x == y
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.items.len() != y.items.len() {
                return Ok(false);
            }
            for (p, q) in x.items.iter().zip(&y.items) {
                if !deep_equal(p, q, budget)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Map(x), Value::Map(y)) => {
            if x.entries.len() != y.entries.len() || x.kind != y.kind {
                return Ok(false);
            }
            for ((k1, v1), (k2, v2)) in x.entries.iter().zip(&y.entries) {
                budget.work(k1.len())?;
                if k1 != k2 || !deep_equal(v1, v2, budget)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Struct(x), Value::Struct(y)) => {
            if x.type_name != y.type_name || x.fields.len() != y.fields.len() {
                return Ok(false);
            }
            for (f1, f2) in x.fields.iter().zip(&y.fields) {
                if f1.name != f2.name || !deep_equal(&f1.value, &f2.value, budget)? {
                    return Ok(false);
                }
            }
            true
        }
        // The same instant in the same location.
        (Value::Time(x), Value::Time(y)) => {
            x.cmp_instant(y).is_eq() && x.location().name() == y.location().name()
        }
        (Value::Duration(x), Value::Duration(y)) => x == y,
        (Value::Location(x), Value::Location(y)) => x.name() == y.name(),
        (Value::Named(x), Value::Named(y)) => x == y,
        (Value::Version(x), Value::Version(y)) => x == y,
        _ => false,
    })
}

/// expr-lang's ordering (`runtime.Less` and friends): numbers (across int
/// and float) and strings; anything else is an error naming the operator.
pub(crate) fn compare(
    a: &Value,
    b: &Value,
    op: &str,
    budget: &mut Budget,
) -> Res<Option<std::cmp::Ordering>> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => {
            budget.work(x.len().min(y.len()))?;
            Some(x.as_bytes().cmp(y.as_bytes()))
        }
        (Value::Time(x), Value::Time(y)) => Some(x.cmp_instant(y)),
        (Value::Duration(x), Value::Duration(y)) => Some(x.cmp(y)),
        _ if a.is_go_typed() || b.is_go_typed() => {
            return Err(Fault::msg(format!(
                "invalid operation: {op} (mismatched types {} and {})",
                a.go_type(),
                b.go_type()
            )));
        }
        _ => {
            return Err(Fault::msg(format!(
                "invalid operation: {} {op} {}",
                a.go_type(),
                b.go_type()
            )));
        }
    })
}

/// `a < b` as expr-lang's `runtime.Less` decides it (NaN is never less).
pub(crate) fn less(a: &Value, b: &Value, budget: &mut Budget) -> Res<bool> {
    Ok(compare(a, b, "<", budget)? == Some(std::cmp::Ordering::Less))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Limits;

    #[test]
    fn json_numbers_become_floats_as_in_go() {
        let v = from_json(&serde_json::json!({"n": 3}));
        let Ok(Value::Map(m)) = v else {
            panic!("not a map")
        };
        assert!(matches!(m.entries.get("n"), Some(Value::Float(f)) if *f == 3.0));
    }

    #[test]
    fn marshal_writes_go_json() {
        let mut budget = Budget::new(Limits::default());
        let v = from_json(&serde_json::json!({"b": [1, 2.5], "a": "<x>"})).unwrap_or(Value::Nil);
        assert_eq!(
            marshal(&v, false, &mut budget).ok().as_deref(),
            Some(r#"{"a":"\u003cx\u003e","b":[1,2.5]}"#)
        );
        assert_eq!(
            marshal(&v, true, &mut budget).ok().as_deref(),
            Some("{\n  \"a\": \"\\u003cx\\u003e\",\n  \"b\": [\n    1,\n    2.5\n  ]\n}")
        );
    }

    #[test]
    fn deep_arrays_are_refused() {
        let mut v = Value::Nil;
        let mut refused = false;
        for _ in 0..=MAX_VALUE_DEPTH {
            match Value::array(vec![v.clone()]) {
                Ok(next) => v = next,
                Err(_) => {
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused);
    }
}
