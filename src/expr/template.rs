//! Kargo's templates: `${{ expr }}` (and `${% expr %}` for expressions
//! containing `}}`) inside JSON values, with Kargo's typing rules
//! (`pkg/expressions/json_templates.go`, `EvaluateTemplate`):
//!
//! 1. A string without a start delimiter is returned unchanged (`"42"`
//!    stays a string).
//! 2. Otherwise each expression is evaluated; a string result is inserted as
//!    it is, anything else as its JSON. The pieces are joined with the text
//!    around them.
//! 3. The joined text is then read, ignoring one trailing newline: wrapped
//!    in `"..."` (as `quote()` makes it) → the string inside (the newline
//!    kept); else a Go float (`strconv.ParseFloat`) → a number (a JSON
//!    integer when it is whole); else a Go bool (`strconv.ParseBool`:
//!    `1 t T TRUE true True 0 f F FALSE false False`) → a bool; else valid
//!    JSON → that value; else the text (the newline kept).
//!
//! There is no whole-string versus embedded distinction: `"${{1}}${{2}}"`
//! is the number 12 and `"${{ 'true' }}"` the bool true. Only values are
//! evaluated, never keys, recursively through maps and arrays.
//!
//! Each call below runs in one [`Session`]: one budget for the whole config
//! (or string, or condition).

use serde_json::Value as Json;

use super::env::{Env, Scope};
use super::error::{ExprError, clip};
use super::golang;
use super::{Engine, Evaluator, Session};

/// The delimiters Kargo supports, in the order it looks for them.
const DELIMITERS: [(&str, &str); 2] = [("${{", "}}"), ("${%", "%}")];

/// Deeper configs are refused rather than walked (JSON from the API server
/// is at most 128 levels deep anyway).
const MAX_CONFIG_DEPTH: usize = 256;

/// Whether `s` contains an expression (a start delimiter), i.e. whether
/// templating could change it.
pub fn has_expression(s: &str) -> bool {
    DELIMITERS.iter().any(|(start, _)| s.contains(start))
}

/// Evaluates every expression in the string values of `config` (a step's
/// `config`), recursively through objects and arrays; keys are left alone.
/// Uses the default [`Engine`].
pub fn evaluate_config(config: &Json, env: &Env, scope: Scope) -> Result<Json, ExprError> {
    evaluate_config_with(&Engine::default(), config, env, scope)
}

/// [`evaluate_config`] with a given evaluator.
pub fn evaluate_config_with(
    evaluator: &dyn Evaluator,
    config: &Json,
    env: &Env,
    scope: Scope,
) -> Result<Json, ExprError> {
    if !contains_expression(config, 0) {
        return Ok(config.clone());
    }
    let mut session = evaluator.session(env, scope)?;
    walk(session.as_mut(), config, 0)
}

/// Evaluates one template string (a var's `value`) to a JSON value with
/// Kargo's typing rules. Uses the default [`Engine`].
pub fn evaluate_string(template: &str, env: &Env, scope: Scope) -> Result<Json, ExprError> {
    evaluate_string_with(&Engine::default(), template, env, scope)
}

/// [`evaluate_string`] with a given evaluator.
pub fn evaluate_string_with(
    evaluator: &dyn Evaluator,
    template: &str,
    env: &Env,
    scope: Scope,
) -> Result<Json, ExprError> {
    if !has_expression(template) {
        return Ok(Json::String(template.to_string()));
    }
    let mut session = evaluator.session(env, scope)?;
    evaluate_template(session.as_mut(), template).and_then(|c| c.into_json(template))
}

/// Evaluates a step's `if` (a template, e.g. `${{ success() && vars.go }}`)
/// to a bool, with the status functions in scope. Anything but a bool is an
/// error: `expression must evaluate to a boolean, got <Go type>` (so a
/// plain `"true"` without delimiters is a string, and an error, as in
/// Kargo). Uses the default [`Engine`].
pub fn evaluate_bool(template: &str, env: &Env) -> Result<bool, ExprError> {
    evaluate_bool_with(&Engine::default(), template, env)
}

/// [`evaluate_bool`] with a given evaluator.
pub fn evaluate_bool_with(
    evaluator: &dyn Evaluator,
    template: &str,
    env: &Env,
) -> Result<bool, ExprError> {
    let coerced = if has_expression(template) {
        let mut session = evaluator.session(env, Scope::Condition)?;
        evaluate_template(session.as_mut(), template)?
    } else {
        Coerced::Json(Json::String(template.to_string()))
    };
    let got = match coerced {
        Coerced::Json(Json::Bool(b)) => return Ok(b),
        Coerced::Json(Json::String(_)) => "string",
        Coerced::Json(Json::Number(_)) | Coerced::NonFinite(_) => "float64",
        Coerced::Json(Json::Array(_)) => "[]interface {}",
        Coerced::Json(Json::Object(_)) => "map[string]interface {}",
        Coerced::Json(Json::Null) => "<nil>",
    };
    Err(ExprError::NotBoolean {
        template: clip(template),
        got: got.to_string(),
    })
}

/// Whether a step should run, given its `if` field: an empty `if` runs the
/// step only if no earlier step failed (Kargo's default, the same as
/// `${{ success() }}`); otherwise [`evaluate_bool`].
pub fn evaluate_condition(if_field: &str, env: &Env) -> Result<bool, ExprError> {
    if if_field.is_empty() {
        return Ok(!env.statuses.has_failures());
    }
    evaluate_bool(if_field, env)
}

fn contains_expression(v: &Json, depth: usize) -> bool {
    if depth > MAX_CONFIG_DEPTH {
        return true;
    }
    match v {
        Json::String(s) => has_expression(s),
        Json::Array(items) => items.iter().any(|i| contains_expression(i, depth + 1)),
        Json::Object(obj) => obj.values().any(|i| contains_expression(i, depth + 1)),
        _ => false,
    }
}

fn walk(session: &mut dyn Session, v: &Json, depth: usize) -> Result<Json, ExprError> {
    if depth > MAX_CONFIG_DEPTH {
        return Err(ExprError::Budget {
            expression: String::new(),
            limit: super::Limit::Depth(MAX_CONFIG_DEPTH),
        });
    }
    Ok(match v {
        Json::String(s) if has_expression(s) => {
            evaluate_template(session, s).and_then(|c| c.into_json(s))?
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| walk(session, i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(obj) => Json::Object(
            obj.iter()
                .map(|(k, i)| Ok((k.clone(), walk(session, i, depth + 1)?)))
                .collect::<Result<_, ExprError>>()?,
        ),
        other => other.clone(),
    })
}

/// A template's value after typing: JSON, or a float JSON cannot hold
/// (`NaN`, `±Inf`), which is an error except where only the type matters.
enum Coerced {
    Json(Json),
    NonFinite(f64),
}

impl Coerced {
    fn into_json(self, template: &str) -> Result<Json, ExprError> {
        match self {
            Coerced::Json(v) => Ok(v),
            Coerced::NonFinite(f) => Err(ExprError::Eval {
                expression: clip(template),
                message: golang::unsupported_float(f),
                offset: None,
                column: None,
            }),
        }
    }
}

/// Splits `template` into text and expressions as Kargo does, evaluates
/// the expressions and types the result.
fn evaluate_template(session: &mut dyn Session, template: &str) -> Result<Coerced, ExprError> {
    let mut out = String::new();
    let mut rest = template;
    loop {
        let next = DELIMITERS
            .iter()
            .filter_map(|&(start, end)| rest.find(start).map(|i| (i, start, end)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, start, end)) = next else {
            out.push_str(rest);
            break;
        };
        let expr_start = i + start.len();
        let Some(len) = rest[expr_start..].find(end) else {
            return Err(ExprError::Unclosed {
                template: clip(template),
                delimiter: end,
            });
        };
        let expression = &rest[expr_start..expr_start + len];
        let after = &rest[expr_start + len + end.len()..];
        out.push_str(&rest[..i]);
        if expression.is_empty() {
            // Kargo stops at an empty expression and keeps the rest as text.
            out.push_str(after);
            break;
        }
        out.push_str(&session.evaluate_text(expression)?);
        rest = after;
    }
    Ok(coerce(out))
}

/// Kargo's typing of a template's text (see the module documentation).
fn coerce(mut text: String) -> Coerced {
    let removed_newline = text.ends_with('\n');
    if removed_newline {
        text.pop();
    }
    if text.len() > 1 && text.starts_with('"') && text.ends_with('"') {
        let mut inner = text[1..text.len() - 1].to_string();
        if removed_newline {
            inner.push('\n');
        }
        return Coerced::Json(Json::String(inner));
    }
    if let Some(f) = golang::parse_float(&text) {
        return match go_number(f) {
            Some(n) => Coerced::Json(n),
            None => Coerced::NonFinite(f),
        };
    }
    if let Some(b) = golang::parse_bool(&text) {
        return Coerced::Json(Json::Bool(b));
    }
    if let Ok(v) = serde_json::from_str::<Json>(&text) {
        return Coerced::Json(go_numbers(v));
    }
    if removed_newline {
        text.push('\n');
    }
    Coerced::Json(Json::String(text))
}

/// A float64 as JSON: an integer when it is whole and fits, which is how
/// Go's `encoding/json` writes it.
fn go_number(f: f64) -> Option<Json> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        return Some(Json::from(f as i64));
    }
    serde_json::Number::from_f64(f).map(Json::Number)
}

/// Go unmarshals every JSON number into a float64; do the same, so big
/// integers round as they would in Kargo.
fn go_numbers(v: Json) -> Json {
    match v {
        Json::Number(n) => n.as_f64().and_then(go_number).unwrap_or(Json::Null),
        Json::Array(items) => Json::Array(items.into_iter().map(go_numbers).collect()),
        Json::Object(obj) => {
            Json::Object(obj.into_iter().map(|(k, v)| (k, go_numbers(v))).collect())
        }
        other => other,
    }
}
