//! The environment the expression compatibility corpus was recorded with
//! (`tests/expr_compat.rs`) and the differential harness evaluates in
//! (`tests/expr_oracle.rs`): the Go side runs with the same.

use barge::expr::Env;
use serde_json::json;

pub fn env() -> Env {
    let vars = json!({"n": 3.0, "s": "str", "list": [1.0, 2.0, 3.0], "m": {"a": 1.0}});
    let outputs = json!({"step-1": {"x": "y"}});
    Env {
        vars: vars.as_object().cloned().unwrap_or_default(),
        outputs: outputs.as_object().cloned(),
        ..Env::default()
    }
}
