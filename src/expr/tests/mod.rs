//! Unit tests of the expression engine, one behaviour per test. Semantics
//! follow expr-lang v1.17.8 and Kargo v1.11; `tests/expr_compat.rs` holds
//! cases recorded from those implementations.

mod budget;
mod dates;
mod functions;
mod language;
mod templates;

use serde_json::{Value as Json, json};

use super::{Ctx, Engine, Env, ExprError, FreightSnapshot, Scope, StepStatuses};

fn object(v: Json) -> serde_json::Map<String, Json> {
    v.as_object().cloned().unwrap_or_default()
}

/// An environment with a little of everything.
fn env() -> Env {
    Env {
        ctx: Ctx {
            project: "kargo-demo".into(),
            stage: "prod".into(),
            promotion: "prod.01abc.f00d".into(),
            target_freight_name: "f00d".into(),
            target_freight_alias: "wonky-wombat".into(),
            target_freight_origin: "wh".into(),
            actor: "admin".into(),
            step_alias: "step-3".into(),
            ..Ctx::default()
        },
        vars: object(json!({
            "n": 3,
            "s": "str",
            "list": [1, 2, 3],
            "m": {"a": 1, "b-c": {"d": "deep"}},
            "users": [{"name": "ann", "age": 30}, {"name": "bob", "age": 20}],
        })),
        outputs: Some(object(json!({
            "step-1": {"commit": "abc123"},
            "deploy::build": {"image": "nginx:1.0"},
        }))),
        step_metas: Some(object(json!({
            "step-1": {"alias": "step-1", "status": "Succeeded", "errorCount": 0},
        }))),
        freight: FreightSnapshot::default(),
        statuses: StepStatuses::default(),
        document: None,
        data: Default::default(),
        now: NOW.parse().ok(),
    }
}

/// What `now()` returns in [`env`].
const NOW: &str = "2024-03-15T13:04:05.123456789Z";

/// Evaluates an expression (no delimiters) against [`env`] in config scope.
fn eval(src: &str) -> Json {
    match Engine::default().evaluate(src, &env(), Scope::Config) {
        Ok(v) => v,
        Err(e) => panic!("{src}: {e}"),
    }
}

/// The error evaluating `src` gives.
fn eval_err(src: &str) -> ExprError {
    match Engine::default().evaluate(src, &env(), Scope::Config) {
        Ok(v) => panic!("{src}: expected an error, got {v}"),
        Err(e) => e,
    }
}

/// The message of an evaluation error, or of any error's display.
fn message(e: &ExprError) -> String {
    match e {
        ExprError::Eval { message, .. } | ExprError::Parse { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
