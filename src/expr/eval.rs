//! The tree-walking evaluator, with expr-lang v1.17's runtime semantics
//! (`vm/vm.go`, `vm/runtime`): nil for missing map keys, errors for member
//! access on nil, `/` always a float, wrapping integer arithmetic, `&&`
//! and `||` requiring a bool on the left, predicates with `#`.
//!
//! Every node visit spends a step of fuel; built-ins spend more per element
//! and per byte; every value created is charged to the memory budget.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use regex::Regex;

use super::ast::{BinOp, Expr, Node, UnOp};
use super::budget::{Budget, ELEMENT_SIZE, ENTRY_OVERHEAD, MAX_STACK, stack_position};
use super::builtins;
use super::error::{Fault, Res};
use super::methods;
use super::value::{self, Value};

/// Functions provided by the environment (Kargo's `quote`, `commitFrom`,
/// `success`, ...), looked up after the built-ins, and the instant `now()`
/// returns.
pub(crate) trait Host {
    /// Calls the function `name`, or returns `None` if there is none.
    fn call(&self, name: &str, args: &[Value], budget: &mut Budget) -> Option<Res<Value>>;

    /// Whether `object.name` (e.g. `request.header`) is a function of the
    /// environment, called with [`Host::call`] under that name.
    fn has_member_function(&self, _qualified: &str) -> bool {
        false
    }

    /// What `now()` returns: the same instant throughout an evaluation.
    fn now(&self) -> Timestamp;
}

/// Compiled regular expressions of one evaluation, by pattern.
pub(crate) type RegexCache = HashMap<String, Arc<Regex>>;

/// The largest compiled program a `matches` pattern may produce.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// What compiling a pattern is charged, besides its length.
/// Compiling takes about 2 ms in a debug build.
const REGEX_COMPILE_STEPS: u64 = 30_000;
const REGEX_COMPILE_BYTES: u64 = 256 * 1024;

/// The element a predicate is looking at.
struct Frame {
    item: Value,
    index: usize,
    acc: Option<Value>,
}

/// One evaluation of one expression tree.
pub(crate) struct Interp<'p, 'h> {
    pub budget: &'h mut Budget,
    root: &'h Value,
    host: &'h dyn Host,
    regexes: &'h mut RegexCache,
    lets: Vec<(&'p str, Value)>,
    frames: Vec<Frame>,
    /// Where the stack was when evaluation started.
    stack_base: usize,
}

/// How many characters of a string [`brief`] shows.
pub(crate) const BRIEF_CHARS: usize = 80;

/// A short rendering of a value for messages (`cannot fetch x from ...`).
pub(crate) fn brief(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => super::golang::format_float_v(*f),
        Value::Str(s) => super::error::clip(&s.chars().take(BRIEF_CHARS).collect::<String>()),
        other => other.go_type().to_string(),
    }
}

/// expr-lang's `runtime.ToInt`.
pub(crate) fn to_int(v: &Value) -> Res<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) => Ok(*f as i64),
        other => Err(Fault::msg(format!(
            "invalid operation: int({})",
            other.go_type()
        ))),
    }
}

/// expr-lang's `runtime.ToFloat64`.
pub(crate) fn to_float(v: &Value) -> Res<f64> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        other => Err(Fault::msg(format!(
            "invalid operation: float({})",
            other.go_type()
        ))),
    }
}

fn expect_bool(v: &Value, what: &str) -> Res<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(Fault::msg(format!(
            "{what} must be a bool, got {} ({})",
            other.go_type(),
            brief(other)
        ))),
    }
}

/// expr-lang's arithmetic on Go's times and durations (`runtime.Add`,
/// `Subtract`, `Multiply`): a time plus or minus a duration, the duration
/// between two times, durations added, subtracted and multiplied (by an
/// int, a duration; by a float gives a float). `None` when neither operand
/// is a time or a duration.
fn time_arithmetic(op: BinOp, a: &Value, b: &Value) -> Option<Res<Value>> {
    use Value::{Duration, Float, Int, Time};
    let time = |t: Option<super::gotime::Time>| {
        t.map(|t| Time(Arc::new(t)))
            .ok_or_else(|| Fault::msg("time out of range"))
    };
    Some(Ok(match (op, a, b) {
        (BinOp::Add, Time(t), Duration(d)) | (BinOp::Add, Duration(d), Time(t)) => {
            return Some(time(t.add(*d)));
        }
        (BinOp::Sub, Time(t), Duration(d)) => return Some(time(t.add(d.wrapping_neg()))),
        (BinOp::Sub, Time(t), Time(u)) => Duration(t.sub(u)),
        (BinOp::Add, Duration(x), Duration(y)) => Duration(x.wrapping_add(*y)),
        (BinOp::Sub, Duration(x), Duration(y)) => Duration(x.wrapping_sub(*y)),
        (BinOp::Mul, Duration(x), Duration(y) | Int(y)) | (BinOp::Mul, Int(y), Duration(x)) => {
            Duration(x.wrapping_mul(*y))
        }
        (BinOp::Mul, Duration(x), Float(y)) | (BinOp::Mul, Float(y), Duration(x)) => {
            Float(*x as f64 * y)
        }
        _ if a.is_go_typed() || b.is_go_typed() => {
            return Some(Err(mismatched(op.symbol(), a, b)));
        }
        _ => return None,
    }))
}

/// expr-lang's type checker's error for an operator whose operands' types
/// do not go together.
fn mismatched(op: &str, a: &Value, b: &Value) -> Fault {
    Fault::msg(format!(
        "invalid operation: {op} (mismatched types {} and {})",
        a.go_type(),
        b.go_type()
    ))
}

/// expr-lang's arithmetic (`runtime.Add`, ...): ints wrap like Go's, mixing
/// an int and a float gives a float, `+` also joins strings.
pub(crate) fn arithmetic(op: BinOp, a: &Value, b: &Value, budget: &mut Budget) -> Res<Value> {
    use Value::{Float, Int};
    if let Some(result) = time_arithmetic(op, a, b) {
        return result;
    }
    let invalid = || {
        Fault::msg(format!(
            "invalid operation: {} {} {}",
            a.go_type(),
            op.symbol(),
            b.go_type()
        ))
    };
    let floats = || -> Option<(f64, f64)> {
        match (a, b) {
            (Int(x), Float(y)) => Some((*x as f64, *y)),
            (Float(x), Int(y)) => Some((*x, *y as f64)),
            (Float(x), Float(y)) => Some((*x, *y)),
            (Int(x), Int(y)) => Some((*x as f64, *y as f64)),
            _ => None,
        }
    };
    Ok(match op {
        BinOp::Add => match (a, b) {
            (Int(x), Int(y)) => Int(x.wrapping_add(*y)),
            (Value::Str(x), Value::Str(y)) => {
                budget.alloc_str(x.len() + y.len())?;
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(x);
                s.push_str(y);
                Value::string(s)
            }
            _ => floats().map(|(x, y)| Float(x + y)).ok_or_else(invalid)?,
        },
        BinOp::Sub => match (a, b) {
            (Int(x), Int(y)) => Int(x.wrapping_sub(*y)),
            _ => floats().map(|(x, y)| Float(x - y)).ok_or_else(invalid)?,
        },
        BinOp::Mul => match (a, b) {
            (Int(x), Int(y)) => Int(x.wrapping_mul(*y)),
            _ => floats().map(|(x, y)| Float(x * y)).ok_or_else(invalid)?,
        },
        BinOp::Div => floats().map(|(x, y)| Float(x / y)).ok_or_else(invalid)?,
        BinOp::Mod => match (a, b) {
            (Int(_), Int(0)) => {
                return Err(Fault::msg("runtime error: integer divide by zero"));
            }
            (Int(x), Int(y)) => Int(x.wrapping_rem(*y)),
            _ => return Err(invalid()),
        },
        BinOp::Pow => Float(to_float(a)?.powf(to_float(b)?)),
        _ => return Err(invalid()),
    })
}

impl<'p, 'h> Interp<'p, 'h> {
    pub(crate) fn new(
        budget: &'h mut Budget,
        root: &'h Value,
        host: &'h dyn Host,
        regexes: &'h mut RegexCache,
    ) -> Self {
        Interp {
            budget,
            root,
            host,
            regexes,
            lets: Vec::new(),
            frames: Vec::new(),
            stack_base: stack_position(),
        }
    }

    /// Evaluates a node, spending a step and locating errors at the node.
    pub(crate) fn eval(&mut self, node: &'p Node) -> Res<Value> {
        self.budget.step(1)?;
        if stack_position().abs_diff(self.stack_base) > MAX_STACK {
            return Err(Fault::Budget(super::error::Limit::Depth(
                self.budget.limits().max_depth,
            )));
        }
        self.eval_expr(node).map_err(|f| f.locate(node.at))
    }

    fn eval_expr(&mut self, node: &'p Node) -> Res<Value> {
        match &node.expr {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Ident(name) => Ok(self.ident(name)),
            Expr::Env => Ok(self.root.clone()),
            Expr::Pointer(name) => self.pointer(name.as_deref()),
            Expr::Unary(op, operand) => self.unary(*op, operand),
            Expr::Binary(op, left, right) => self.binary(*op, left, right),
            Expr::Comparisons { operands, ops } => self.comparisons(operands, ops),
            Expr::Member {
                object,
                property,
                optional,
            } => self.member(object, property, *optional),
            Expr::Slice { object, from, to } => self.slice(object, from.as_deref(), to.as_deref()),
            Expr::Chain(inner) => match self.eval(inner) {
                Err(Fault::NilChain) => Ok(Value::Nil),
                other => other,
            },
            Expr::Call { name, args } => self.call(name, args),
            Expr::MethodCall { callee, args } => self.method_call(callee, args),
            Expr::Predicate(body) => self.eval(body),
            Expr::Array(items) => self.array(items),
            Expr::Map(pairs) => self.map(pairs),
            Expr::Conditional {
                cond,
                then,
                otherwise,
            } => {
                let c = self.eval(cond)?;
                if expect_bool(&c, "condition")? {
                    self.eval(then)
                } else {
                    self.eval(otherwise)
                }
            }
            Expr::Let { name, value, body } => {
                let v = self.eval(value)?;
                self.lets.push((name.as_str(), v));
                let r = self.eval(body);
                self.lets.pop();
                r
            }
            Expr::Sequence(nodes) => {
                let mut last = Value::Nil;
                for n in nodes {
                    last = self.eval(n)?;
                }
                Ok(last)
            }
        }
    }

    fn ident(&self, name: &str) -> Value {
        if let Some((_, v)) = self.lets.iter().rev().find(|(n, _)| *n == name) {
            return v.clone();
        }
        match self.root {
            Value::Map(m) => m.entries.get(name).cloned().unwrap_or(Value::Nil),
            _ => Value::Nil,
        }
    }

    fn pointer(&self, name: Option<&str>) -> Res<Value> {
        let Some(frame) = self.frames.last() else {
            return Err(Fault::msg("cannot use pointer accessor outside predicate"));
        };
        match name {
            None => Ok(frame.item.clone()),
            Some("index") => Ok(Value::Int(frame.index as i64)),
            Some("acc") => Ok(frame.acc.clone().unwrap_or(Value::Nil)),
            Some(other) => Err(Fault::msg(format!("unknown pointer #{other}"))),
        }
    }

    fn unary(&mut self, op: UnOp, operand: &'p Node) -> Res<Value> {
        let v = self.eval(operand)?;
        match op {
            UnOp::Not => Ok(Value::Bool(!expect_bool(&v, "operand of not")?)),
            UnOp::Plus => Ok(v),
            UnOp::Neg => match v {
                Value::Int(i) => Ok(Value::Int(i.wrapping_neg())),
                Value::Float(f) => Ok(Value::Float(-f)),
                other => Err(Fault::msg(format!(
                    "invalid operation: - {}",
                    other.go_type()
                ))),
            },
        }
    }

    fn binary(&mut self, op: BinOp, left: &'p Node, right: &'p Node) -> Res<Value> {
        match op {
            BinOp::Or | BinOp::And => {
                let l = self.eval(left)?;
                let lb = expect_bool(&l, &format!("left operand of {}", op.symbol()))?;
                if (op == BinOp::Or) == lb {
                    return Ok(Value::Bool(lb));
                }
                // expr-lang yields the right operand as it is.
                return self.eval(right);
            }
            BinOp::Coalesce => {
                let l = self.eval(left)?;
                if !l.is_nil() {
                    return Ok(l);
                }
                return self.eval(right);
            }
            _ => {}
        }
        let a = self.eval(left)?;
        let b = self.eval(right)?;
        match op {
            BinOp::Eq => Ok(Value::Bool(value::equal(&a, &b, self.budget)?)),
            BinOp::Ne => Ok(Value::Bool(!value::equal(&a, &b, self.budget)?)),
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                Ok(Value::Bool(self.ordered(op, &a, &b)?))
            }
            BinOp::In => self.contains_element(&a, &b).map(Value::Bool),
            BinOp::Matches => self.matches(&a, &b),
            BinOp::Contains | BinOp::StartsWith | BinOp::EndsWith => {
                let (Value::Str(x), Value::Str(y)) = (&a, &b) else {
                    if a.is_nil() || b.is_nil() {
                        return Ok(Value::Bool(false));
                    }
                    return Err(Fault::msg(format!(
                        "invalid operation: {} {} {}",
                        a.go_type(),
                        op.symbol(),
                        b.go_type()
                    )));
                };
                self.budget.work(x.len())?;
                Ok(Value::Bool(match op {
                    BinOp::Contains => x.contains(&**y),
                    BinOp::StartsWith => x.starts_with(&**y),
                    _ => x.ends_with(&**y),
                }))
            }
            BinOp::Range => self.range(&a, &b),
            _ => arithmetic(op, &a, &b, self.budget),
        }
    }

    fn ordered(&mut self, op: BinOp, a: &Value, b: &Value) -> Res<bool> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let ord = value::compare(a, b, op.symbol(), self.budget)?;
        Ok(match op {
            BinOp::Lt => ord == Some(Less),
            BinOp::Gt => ord == Some(Greater),
            BinOp::Le => matches!(ord, Some(Less | Equal)),
            _ => matches!(ord, Some(Greater | Equal)),
        })
    }

    fn comparisons(&mut self, operands: &'p [Node], ops: &[BinOp]) -> Res<Value> {
        let Some(first) = operands.first() else {
            return Ok(Value::Bool(true));
        };
        let mut left = self.eval(first)?;
        for (op, node) in ops.iter().zip(&operands[1..]) {
            let right = self.eval(node)?;
            if !self
                .ordered(*op, &left, &right)
                .map_err(|f| f.locate(node.at))?
            {
                return Ok(Value::Bool(false));
            }
            left = right;
        }
        Ok(Value::Bool(true))
    }

    /// expr-lang's `in` (`runtime.In`).
    fn contains_element(&mut self, needle: &Value, haystack: &Value) -> Res<bool> {
        match haystack {
            Value::Nil => Ok(false),
            Value::Array(a) => {
                for item in &a.items {
                    if value::equal(item, needle, self.budget)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Value::Map(m) => match needle {
                Value::Str(k) => Ok(m.entries.contains_key(&**k)),
                Value::Nil => Ok(m.entries.contains_key("")),
                other => Err(Fault::msg(format!(
                    "cannot use {} as a key of map[string]interface {{}}",
                    other.go_type()
                ))),
            },
            Value::Struct(s) => match needle {
                Value::Str(k) => Ok(s.fields.iter().any(|f| f.name == **k)),
                other => Err(Fault::msg(format!(
                    "cannot use {} as field name of {}",
                    other.go_type(),
                    s.type_name
                ))),
            },
            other => Err(Fault::msg(format!(
                "operator \"in\" not defined on {}",
                other.go_type()
            ))),
        }
    }

    fn matches(&mut self, a: &Value, b: &Value) -> Res<Value> {
        if a.is_nil() || b.is_nil() {
            return Ok(Value::Bool(false));
        }
        let (Value::Str(text), Value::Str(pattern)) = (a, b) else {
            return Err(Fault::msg(format!(
                "invalid operation: {} matches {}",
                a.go_type(),
                b.go_type()
            )));
        };
        let re = self.regex(pattern)?;
        // Matching is linear in the text, with a factor for the pattern;
        // in a debug build it takes about a step's time per byte.
        let factor = 1 + pattern.len() as u64 / 8;
        self.budget
            .step((1 + text.len() as u64).saturating_mul(factor))?;
        Ok(Value::Bool(re.is_match(text)))
    }

    fn regex(&mut self, pattern: &str) -> Res<Arc<Regex>> {
        if let Some(re) = self.regexes.get(pattern) {
            return Ok(re.clone());
        }
        self.budget
            .step(REGEX_COMPILE_STEPS + 100 * pattern.len() as u64)?;
        self.budget
            .alloc(REGEX_COMPILE_BYTES + pattern.len() as u64)?;
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(self.budget.limits().max_depth.min(250) as u32)
            .build()
            .map_err(|e| Fault::msg(format!("invalid regular expression: {e}")))?;
        let re = Arc::new(re);
        self.regexes.insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    fn range(&mut self, a: &Value, b: &Value) -> Res<Value> {
        let (lo, hi) = (to_int(a)?, to_int(b)?);
        let size = (i128::from(hi) - i128::from(lo) + 1).max(0);
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        // Charged before anything is built: `1..1e9` stops here.
        self.budget.step(size)?;
        self.budget.alloc(size.saturating_mul(ELEMENT_SIZE))?;
        let items = (0..size)
            .map(|i| Value::Int(lo.wrapping_add(i as i64)))
            .collect();
        Value::array(items)
    }

    /// `object.name(args)`: a method of a Go value (a time, a duration, a
    /// version, ...); anything else has no methods, and a member that is
    /// not a function cannot be called.
    fn method_call(&mut self, callee: &'p Node, args: &'p [Node]) -> Res<Value> {
        if let Expr::Member {
            object,
            property,
            optional,
        } = &callee.expr
        {
            self.budget.step(1)?;
            let obj = self.eval(object)?;
            if *optional && obj.is_nil() {
                return Err(Fault::NilChain);
            }
            let key = self.eval(property)?;
            if methods::has_methods(&obj)
                && let Value::Str(name) = &key
            {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(self.eval(a)?);
                }
                return methods::call(&obj, name, &values, self.budget)
                    .map_err(|f| f.locate(callee.at));
            }
            // A function the environment offers as a member of one of its
            // objects (a webhook's `request.header("X")`).
            if let (Expr::Ident(root), Value::Str(name)) = (&object.expr, &key) {
                let qualified = format!("{root}.{name}");
                if self.host.has_member_function(&qualified) {
                    let mut values = Vec::with_capacity(args.len());
                    for a in args {
                        values.push(self.eval(a)?);
                    }
                    if let Some(result) = self.host.call(&qualified, &values, self.budget) {
                        return result.map_err(|f| f.locate(callee.at));
                    }
                }
            }
            let member = fetch(&obj, &key).map_err(|f| f.locate(callee.at))?;
            return Err(not_callable(&member));
        }
        Err(not_callable(&self.eval(callee)?))
    }

    fn member(&mut self, object: &'p Node, property: &'p Node, optional: bool) -> Res<Value> {
        let obj = self.eval(object)?;
        if optional && obj.is_nil() {
            return Err(Fault::NilChain);
        }
        let key = self.eval(property)?;
        fetch(&obj, &key)
    }

    fn slice(
        &mut self,
        object: &'p Node,
        from: Option<&'p Node>,
        to: Option<&'p Node>,
    ) -> Res<Value> {
        let obj = self.eval(object)?;
        let from = match from {
            Some(n) => Some(self.eval(n)?),
            None => None,
        };
        let to = match to {
            Some(n) => Some(self.eval(n)?),
            None => None,
        };
        let len = match &obj {
            Value::Array(a) => a.items.len(),
            Value::Str(s) => s.len(),
            other => {
                return Err(Fault::msg(format!("cannot slice {}", other.go_type())));
            }
        };
        let bound = |v: Option<Value>, default: usize| -> Res<i64> {
            match v {
                Some(v) => to_int(&v),
                None => Ok(default as i64),
            }
        };
        let len_i = len as i64;
        let mut a = bound(from, 0)?;
        let mut b = bound(to, len)?;
        if a < 0 {
            a = a.saturating_add(len_i);
        }
        a = a.max(0);
        if b < 0 {
            b = b.saturating_add(len_i);
        }
        b = b.clamp(0, len_i);
        a = a.min(b);
        let (a, b) = (a as usize, b as usize);
        match &obj {
            Value::Array(arr) => {
                self.budget.alloc_array(b - a)?;
                self.budget.step((b - a) as u64)?;
                Value::array(arr.items[a..b].to_vec())
            }
            Value::Str(s) => {
                self.budget.alloc_str(b - a)?;
                let bytes = &s.as_bytes()[a..b];
                Ok(Value::string(String::from_utf8_lossy(bytes).into_owned()))
            }
            _ => Ok(Value::Nil),
        }
    }

    fn array(&mut self, items: &'p [Node]) -> Res<Value> {
        let mut out = Vec::with_capacity(items.len());
        for n in items {
            out.push(self.eval(n)?);
        }
        self.budget.alloc_array(out.len())?;
        Value::array(out)
    }

    fn map(&mut self, pairs: &'p [(Node, Node)]) -> Res<Value> {
        self.budget.alloc_map(0, 0)?;
        let mut entries = BTreeMap::new();
        for (k, v) in pairs {
            let key = match self.eval(k)? {
                Value::Str(s) => s.to_string(),
                other => {
                    return Err(Fault::msg(format!(
                        "map key must be a string, got {}",
                        other.go_type()
                    ))
                    .locate(k.at));
                }
            };
            let value = self.eval(v)?;
            self.budget
                .alloc(key.len() as u64 + ENTRY_OVERHEAD + ELEMENT_SIZE)?;
            entries.insert(key, value);
        }
        Value::map(entries)
    }

    fn call(&mut self, name: &str, args: &'p [Node]) -> Res<Value> {
        if builtins::is_predicate(name) {
            return self.predicate_builtin(name, args);
        }
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(self.eval(a)?);
        }
        if let Some(result) = builtins::call(name, &values, self.host.now(), self.budget) {
            return result;
        }
        if let Some(result) = self.host.call(name, &values, self.budget) {
            return result;
        }
        Err(Fault::msg(format!("unknown function {name}")))
    }

    fn array_arg(&mut self, node: &'p Node, name: &str) -> Res<Arc<value::Array>> {
        match self.eval(node)? {
            Value::Array(a) => Ok(a),
            other => Err(
                Fault::msg(format!("{name}: cannot iterate over {}", other.go_type()))
                    .locate(node.at),
            ),
        }
    }

    /// Evaluates `predicate` for element `index` (in the current frame).
    fn apply(&mut self, predicate: &'p Node, item: &Value, index: usize) -> Res<Value> {
        self.budget.step(1)?;
        if let Some(frame) = self.frames.last_mut() {
            frame.item = item.clone();
            frame.index = index;
        }
        self.eval(predicate)
    }

    fn predicate_builtin(&mut self, name: &str, args: &'p [Node]) -> Res<Value> {
        let Some(first) = args.first() else {
            return Err(Fault::msg(format!("{name}: missing arguments")));
        };
        let array = self.array_arg(first, name)?;
        // sortBy's order and reduce's initial value are evaluated before
        // the loop, outside the predicate's frame.
        let extra = match args.get(2) {
            Some(n) => Some(self.eval(n)?),
            None => None,
        };
        self.frames.push(Frame {
            item: Value::Nil,
            index: 0,
            acc: None,
        });
        let result = self.predicate_loop(name, &array.items, args.get(1), extra);
        self.frames.pop();
        result
    }

    /// One piece: one `match` arm per built-in that walks a collection with
    /// a predicate (`all`, `any`, `filter`, `map`, `reduce`, ...), sharing the
    /// budget checks; split up, each arm would repeat them.
    fn predicate_loop(
        &mut self,
        name: &str,
        items: &[Value],
        predicate: Option<&'p Node>,
        extra: Option<Value>,
    ) -> Res<Value> {
        // `count` and `sum` may omit the predicate: the element itself.
        let pred = |ip: &mut Self, item: &Value, i: usize| -> Res<Value> {
            match predicate {
                Some(p) => ip.apply(p, item, i),
                None => {
                    ip.budget.step(1)?;
                    Ok(item.clone())
                }
            }
        };
        let pred_bool = |ip: &mut Self, item: &Value, i: usize| -> Res<bool> {
            let v = pred(ip, item, i)?;
            expect_bool(&v, "predicate")
        };
        match name {
            "all" | "none" | "any" => {
                let want_true = name == "any";
                for (i, item) in items.iter().enumerate() {
                    let r = pred_bool(self, item, i)?;
                    match name {
                        "all" if !r => return Ok(Value::Bool(false)),
                        "none" if r => return Ok(Value::Bool(false)),
                        "any" if r => return Ok(Value::Bool(true)),
                        _ => {}
                    }
                }
                Ok(Value::Bool(!want_true))
            }
            "one" | "count" => {
                let mut n: i64 = 0;
                for (i, item) in items.iter().enumerate() {
                    if pred_bool(self, item, i)? {
                        n += 1;
                    }
                }
                Ok(if name == "one" {
                    Value::Bool(n == 1)
                } else {
                    Value::Int(n)
                })
            }
            "filter" | "map" => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if name == "map" {
                        out.push(pred(self, item, i)?);
                    } else if pred_bool(self, item, i)? {
                        out.push(item.clone());
                    }
                    self.budget.alloc(ELEMENT_SIZE)?;
                }
                self.budget.alloc_array(0)?;
                Value::array(out)
            }
            "find" | "findIndex" => {
                for (i, item) in items.iter().enumerate() {
                    if pred_bool(self, item, i)? {
                        return Ok(if name == "find" {
                            item.clone()
                        } else {
                            Value::Int(i as i64)
                        });
                    }
                }
                Ok(Value::Nil)
            }
            "findLast" | "findLastIndex" => {
                for (i, item) in items.iter().enumerate().rev() {
                    if pred_bool(self, item, i)? {
                        return Ok(if name == "findLast" {
                            item.clone()
                        } else {
                            Value::Int(i as i64)
                        });
                    }
                }
                Ok(Value::Nil)
            }
            "sum" => {
                let mut acc = Value::Int(0);
                for (i, item) in items.iter().enumerate() {
                    let v = pred(self, item, i)?;
                    acc = arithmetic(BinOp::Add, &v, &acc, self.budget)?;
                }
                Ok(acc)
            }
            "groupBy" => {
                let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                for (i, item) in items.iter().enumerate() {
                    let key = match pred(self, item, i)? {
                        Value::Str(s) => s.to_string(),
                        other => value::format_v(&other, self.budget)?,
                    };
                    self.budget.alloc(ELEMENT_SIZE)?;
                    if !groups.contains_key(&key) {
                        self.budget.alloc(key.len() as u64 + ENTRY_OVERHEAD)?;
                    }
                    groups.entry(key).or_default().push(item.clone());
                }
                self.budget.alloc_map(0, 0)?;
                let mut entries = BTreeMap::new();
                for (k, v) in groups {
                    self.budget.alloc_array(0)?;
                    entries.insert(k, Value::array(v)?);
                }
                Value::map(entries)
            }
            "sortBy" => {
                let desc = match extra {
                    None => false,
                    Some(Value::Str(s)) if &*s == "asc" => false,
                    Some(Value::Str(s)) if &*s == "desc" => true,
                    Some(Value::Str(_)) => {
                        return Err(Fault::msg("unknown order, use asc or desc"));
                    }
                    Some(_) => return Err(Fault::msg("sortBy order argument must be a string")),
                };
                let mut keyed = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    keyed.push((pred(self, item, i)?, item.clone()));
                }
                self.budget.alloc_array(items.len().saturating_mul(2))?;
                let sorted = builtins::merge_sort(keyed, self.budget, |a, b, budget| {
                    if desc {
                        value::less(&b.0, &a.0, budget)
                    } else {
                        value::less(&a.0, &b.0, budget)
                    }
                })?;
                Value::array(sorted.into_iter().map(|(_, v)| v).collect())
            }
            "reduce" => {
                let (mut acc, start) = match extra {
                    Some(init) => (init, 0),
                    None => match items.first() {
                        Some(first) => (first.clone(), 1),
                        None => {
                            return Err(Fault::msg("reduce of empty array with no initial value"));
                        }
                    },
                };
                for (i, item) in items.iter().enumerate().skip(start) {
                    if let Some(frame) = self.frames.last_mut() {
                        frame.acc = Some(acc.clone());
                    }
                    acc = pred(self, item, i)?;
                }
                Ok(acc)
            }
            _ => Err(Fault::msg(format!("unknown builtin {name}"))),
        }
    }
}

/// expr-lang's member access (`runtime.Fetch`): arrays and strings by
/// (negative) index, maps by key (nil when missing), structs by field; an
/// error on anything else, including nil.
pub(crate) fn fetch(obj: &Value, key: &Value) -> Res<Value> {
    match obj {
        Value::Array(a) => {
            let i = index_in(to_int(key)?, a.items.len())?;
            Ok(a.items[i].clone())
        }
        Value::Str(s) => {
            // Go indexes strings by byte.
            let i = index_in(to_int(key)?, s.len())?;
            Ok(Value::Int(i64::from(s.as_bytes()[i])))
        }
        Value::Map(m) => {
            // A missing key reads as the zero value of the map's values.
            let zero = || {
                if m.kind != value::MapKind::Any {
                    Value::str("")
                } else {
                    Value::Nil
                }
            };
            match key {
                Value::Str(k) => Ok(m.entries.get(&**k).cloned().unwrap_or_else(zero)),
                Value::Nil => Ok(m.entries.get("").cloned().unwrap_or_else(zero)),
                // Keys of maps built by groupBy/fromPairs from numbers or bools
                // are their text: `groupBy(xs, len(#))[1]` works as in Go.
                Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                    Ok(m.entries.get(&brief(key)).cloned().unwrap_or_else(zero))
                }
                other => Err(Fault::msg(format!(
                    "cannot use {} ({}) as a key of {}",
                    brief(other),
                    other.go_type(),
                    obj.go_type()
                ))),
            }
        }
        Value::Struct(s) => match key {
            Value::Str(k) => s.field(k).cloned().ok_or_else(|| {
                Fault::msg(format!("cannot fetch {} from {}", brief(key), s.type_name))
            }),
            other => Err(Fault::msg(format!(
                "cannot fetch {} from {}",
                brief(other),
                s.type_name
            ))),
        },
        other => match key {
            Value::Str(name) if methods::is_method(other, name) => Err(Fault::msg(format!(
                "{name} is a method of {}: call it, {name}()",
                other.go_type()
            ))),
            _ => Err(Fault::msg(format!(
                "cannot fetch {} from {}",
                brief(key),
                other.go_type()
            ))),
        },
    }
}

/// The error for calling a value that is not a function.
fn not_callable(v: &Value) -> Fault {
    match v {
        Value::Nil => Fault::msg("invalid operation: cannot call nil"),
        other => Fault::msg(format!(
            "invalid operation: cannot call non-function of type {}",
            other.go_type()
        )),
    }
}

/// Resolves a possibly negative index against `len`.
fn index_in(i: i64, len: usize) -> Res<usize> {
    let len_i = len as i64;
    let j = if i < 0 { i.saturating_add(len_i) } else { i };
    if j < 0 || j >= len_i {
        return Err(Fault::msg(format!(
            "index out of range: {j} (array length is {len})"
        )));
    }
    Ok(j as usize)
}
