//! Differential harness (ignored; run by hand): evaluates each line of the
//! file named by `EXPR_CASES` and prints `<line>\tOK\t<json>` or
//! `<line>\tERR\t<message>`. With `EXPR_TEMPLATES=1` each line is a Kargo
//! template instead (`evaluate_string`; `\n` in a line stands for a newline).
//!
//! The same lines run through the Go implementations give the reference
//! output that `tests/expr_compat.rs` records (in
//! `tests/fixtures/expr_compat/`). The Go side is a small program (module
//! requiring `github.com/expr-lang/expr v1.17.8`, or
//! `github.com/akuity/kargo v1.11.2` for templates) that reads lines from
//! stdin and, for each, runs `expr.Compile(line)` + `expr.Run(program, env)`
//! (or `expressions.EvaluateTemplate(line, env)`) with the environment of
//! `tests/support/expr_env.rs`, printing `json.Marshal` of the result the
//! same way. Diff the two outputs, comparing JSON values.
//!
//! For the date cases the Go side replaces `now` (`expr.DisableBuiltin("now")`
//! and an `expr.Function("now", ...)` returning `expr_env::NOW`, in the
//! given location when called with one) and runs with `TZ=UTC`. For Kargo's
//! data functions it passes `function.DataOperations` and
//! `UtilityOperations` to `EvaluateTemplate`, over controller-runtime's fake
//! client holding the objects of `expr_env::project_data` (namespace
//! `kargo-demo`, `SHARED_RESOURCES_NAMESPACE=kargo-shared-resources`).

#[path = "support/expr_env.rs"]
mod expr_env;

use barge::expr::{Engine, Evaluator, Scope, template};
use expr_env::env;

#[test]
#[ignore = "differential harness, run by hand with EXPR_CASES=<file>"]
fn print_results_for_comparison() {
    let Ok(path) = std::env::var("EXPR_CASES") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let templates = std::env::var("EXPR_TEMPLATES").is_ok();
    let engine = Engine::default();
    let env = env();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if templates {
            let line = line.replace("\\n", "\n");
            match template::evaluate_string(&line, &env, Scope::Config) {
                Ok(v) => println!("{line:?}\tOK\t{v}"),
                Err(e) => println!("{line:?}\tERR\t{e}"),
            }
            continue;
        }
        let result = engine.session(&env, Scope::Config).and_then(|mut s| {
            let v = s.evaluate(line)?;
            Ok(match v {
                serde_json::Value::String(_) => v.to_string(),
                _ => s.evaluate_text(line)?,
            })
        });
        match result {
            Ok(text) => println!("{line}\tOK\t{text}"),
            Err(e) => println!("{line}\tERR\t{e}"),
        }
    }
}
