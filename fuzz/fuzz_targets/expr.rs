//! Fuzz target `expr`: arbitrary input through the expression engine with
//! the default limits, as a raw expression, as a template, as an `if`
//! condition and inside a config. Nothing may panic, overflow the stack or
//! run away (the budget must stop it).

#![no_main]

use barge::expr::{Ctx, Engine, Env, FreightSnapshot, Scope, StepStatuses, template};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fn env() -> Env {
    let object = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    Env {
        ctx: Ctx {
            project: "p".into(),
            stage: "dev".into(),
            step_alias: "deploy::update".into(),
            ..Ctx::default()
        },
        vars: object(
            json!({"n": 3, "s": "str", "list": [1, 2, 3], "m": {"a": {"b": [true, null]}}}),
        ),
        outputs: Some(object(
            json!({"deploy::build": {"x": "y"}, "step-1": {"n": 1.5}}),
        )),
        step_metas: Some(object(
            json!({"step-1": {"alias": "step-1", "status": "Succeeded"}}),
        )),
        freight: FreightSnapshot {
            freight: vec![
                json!({"origin": {"kind": "Warehouse", "name": "w1"},
                       "commits": [{"repoURL": "https://github.com/a/b.git", "id": "abc"}],
                       "images": [{"repoURL": "nginx", "tag": "1.0"}],
                       "charts": [{"repoURL": "oci://c", "version": "1.2.3"}]}),
                json!({"origin": {"kind": "Warehouse", "name": "w2"},
                       "images": [{"repoURL": "nginx", "tag": "2.0"}]}),
            ],
        },
        statuses: StepStatuses::from_metadata(&[
            json!({"alias": "step-1", "status": "Succeeded"}),
            json!({"alias": "deploy::build", "status": "Failed", "continueOnError": true}),
        ]),
        ..Env::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let env = env();
    let engine = Engine::default();
    let _ = engine.evaluate(&input, &env, Scope::Config);
    let _ = template::evaluate_string(&input, &env, Scope::Vars);
    let _ = template::evaluate_bool(&input, &env);
    let _ = template::evaluate_config(&json!({"k": [input.as_ref()]}), &env, Scope::Config);
});
