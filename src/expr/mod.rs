//! Expressions: Kargo's `${{ ... }}` language (expr-lang v1.17) with our own
//! evaluator, a hard evaluation budget, and Kargo's templates and
//! functions.
//!
//! - [`template`] is what the rest of Barge calls: it evaluates a step's
//!   `config` ([`template::evaluate_config`]), a var's value
//!   ([`template::evaluate_string`]) and a step's `if`
//!   ([`template::evaluate_bool`], [`template::evaluate_condition`]) with
//!   Kargo's typing rules.
//! - [`Env`] is what an expression sees (`ctx`, `vars`, `outputs`,
//!   `task.outputs`, `stepMetas`) plus the snapshots the functions read
//!   ([`FreightSnapshot`], [`StepStatuses`]). Evaluation is synchronous and
//!   does no I/O: fetch what the functions need first.
//! - [`Evaluator`] is the seam: templates work with any implementation;
//!   [`Engine`] is ours.
//!
//! Why our own engine: every evaluation runs on a budget ([`Limits`]):
//! fuel (steps) and memory (bytes of values created), plus caps on source
//! length and nesting. A hostile or runaway expression such as
//! `len(map(1..3000000, {# * #}))` or `repeat("x", 1e9)` stops with
//! [`ExprError::Budget`] within milliseconds instead of taking seconds and
//! hundreds of megabytes.

mod ast;
mod budget;
mod builtins;
mod env;
mod error;
mod eval;
pub(crate) mod functions;
pub(crate) mod golang;
mod lexer;
mod parser;
pub mod template;
mod value;

#[cfg(test)]
mod tests;

use serde_json::Value as Json;

pub use budget::Limits;
pub use env::{Ctx, Document, Env, FreightSnapshot, Scope, StepStatus, StepStatuses};
pub use error::{ExprError, Limit};

use budget::Budget;
use error::{Fault, clip, line_column};
use eval::{Interp, RegexCache};
use functions::KargoFunctions;
use parser::ParseFault;
use value::Value;

/// An expression engine: parses expressions and evaluates them against an
/// [`Env`]. The seam between templates and the expression language, so the
/// engine can be replaced.
pub trait Evaluator {
    /// Checks that `expression` (without delimiters) parses; for validating
    /// configs before running them.
    fn check(&self, expression: &str) -> Result<(), ExprError>;

    /// Starts an evaluation against `env` with the functions of `scope`. All
    /// expressions evaluated in one session share one budget.
    fn session<'a>(
        &'a self,
        env: &'a Env,
        scope: Scope,
    ) -> Result<Box<dyn Session + 'a>, ExprError>;
}

/// One evaluation in progress (see [`Evaluator::session`]).
pub trait Session {
    /// Evaluates `expression` (without delimiters) to JSON.
    fn evaluate(&mut self, expression: &str) -> Result<Json, ExprError>;

    /// Evaluates `expression` to the text a template inserts: a string as it
    /// is, anything else as JSON written the way Go's `encoding/json`
    /// writes it (what Kargo does).
    fn evaluate_text(&mut self, expression: &str) -> Result<String, ExprError> {
        match self.evaluate(expression)? {
            Json::String(s) => Ok(s),
            other => Ok(go_json_text(&other)),
        }
    }
}

/// Go's JSON text of a JSON value (floats written as Go writes them).
fn go_json_text(v: &Json) -> String {
    let mut budget = Budget::new(Limits {
        max_memory: u64::MAX,
        max_steps: u64::MAX,
        ..Limits::default()
    });
    value::from_json(v)
        .ok()
        .and_then(|v| value::marshal(&v, false, &mut budget).ok())
        .unwrap_or_else(|| v.to_string())
}

/// A parsed expression.
#[derive(Clone, Debug)]
pub struct Program {
    source: String,
    root: ast::Node,
}

impl Program {
    /// The expression's source text.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Barge's expression engine: an expr-lang evaluator with [`Limits`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Engine {
    limits: Limits,
}

impl Engine {
    /// An engine with the given limits.
    pub fn new(limits: Limits) -> Engine {
        Engine { limits }
    }

    /// The limits every evaluation runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses `source` (an expression without delimiters). Errors carry the
    /// position; over-long or over-deep sources give
    /// [`ExprError::Budget`].
    pub fn compile(&self, source: &str) -> Result<Program, ExprError> {
        if source.len() > self.limits.max_source_len {
            return Err(ExprError::Budget {
                expression: clip(source),
                limit: Limit::SourceLength(self.limits.max_source_len),
            });
        }
        match parser::parse(source, self.limits.max_depth) {
            Ok(root) => Ok(Program {
                source: source.to_string(),
                root,
            }),
            Err(ParseFault::TooDeep) => Err(ExprError::Budget {
                expression: clip(source),
                limit: Limit::Depth(self.limits.max_depth),
            }),
            Err(ParseFault::Syntax { message, at }) => {
                let (line, column) = line_column(source, at);
                Err(ExprError::Parse {
                    expression: clip(source),
                    message,
                    offset: at,
                    line,
                    column,
                })
            }
        }
    }

    /// Evaluates one expression (without delimiters) to JSON, in its own
    /// session.
    pub fn evaluate(&self, source: &str, env: &Env, scope: Scope) -> Result<Json, ExprError> {
        self.start(env, scope)?.evaluate(source)
    }

    fn start<'a>(&'a self, env: &'a Env, scope: Scope) -> Result<EngineSession<'a>, ExprError> {
        let root = env.root().map_err(|message| ExprError::Eval {
            expression: String::new(),
            message: format!("invalid environment: {message}"),
            offset: None,
            column: None,
        })?;
        Ok(EngineSession {
            engine: self,
            functions: KargoFunctions { env, scope },
            root,
            budget: Budget::new(self.limits),
            regexes: RegexCache::new(),
        })
    }
}

impl Evaluator for Engine {
    fn check(&self, expression: &str) -> Result<(), ExprError> {
        self.compile(expression).map(|_| ())
    }

    fn session<'a>(
        &'a self,
        env: &'a Env,
        scope: Scope,
    ) -> Result<Box<dyn Session + 'a>, ExprError> {
        Ok(Box::new(self.start(env, scope)?))
    }
}

/// An [`Engine`] evaluation: the environment converted once, one budget.
struct EngineSession<'a> {
    engine: &'a Engine,
    functions: KargoFunctions<'a>,
    root: Value,
    budget: Budget,
    regexes: RegexCache,
}

impl EngineSession<'_> {
    fn run(&mut self, source: &str) -> Result<Value, ExprError> {
        let program = self.engine.compile(source)?;
        let mut interp = Interp::new(
            &mut self.budget,
            &self.root,
            &self.functions,
            &mut self.regexes,
        );
        interp
            .eval(&program.root)
            .map_err(|fault| fault.into_error(source))
    }

    /// Steps and bytes charged so far (for tests and measurements).
    #[cfg(test)]
    fn used(&self) -> (u64, u64) {
        (self.budget.steps_used(), self.budget.memory_used())
    }
}

impl Session for EngineSession<'_> {
    fn evaluate(&mut self, expression: &str) -> Result<Json, ExprError> {
        let v = self.run(expression)?;
        value::to_json(&v).map_err(|message| Fault::msg(message).into_error(expression))
    }

    fn evaluate_text(&mut self, expression: &str) -> Result<String, ExprError> {
        match self.run(expression)? {
            Value::Str(s) => Ok(s.to_string()),
            other => value::marshal(&other, false, &mut self.budget)
                .map_err(|fault| fault.into_error(expression)),
        }
    }
}
