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
//!   ([`FreightSnapshot`], [`StepStatuses`], [`ProjectData`]) and the
//!   instant `now()` returns. Evaluation is synchronous and does no I/O:
//!   fetch what the functions need first.
//! - Go's time values (`now()`, `date()`, `duration()`, their operators
//!   and methods) and Kargo's `semverParse()` versions are values here
//!   too, with Go's formatting, parsing and JSON.
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
pub(crate) mod gotime;
mod lexer;
mod methods;
mod parser;
pub(crate) mod semver;
pub mod template;
mod value;

#[cfg(test)]
mod tests;

use serde_json::Value as Json;

pub use budget::Limits;
pub use env::{
    Ctx, DataByName, Document, Env, FreightSnapshot, MetadataByName, ProjectData, Scope,
    StepStatus, StepStatuses,
};
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
        let now = env.now.unwrap_or_else(jiff::Timestamp::now);
        Ok(EngineSession {
            engine: self,
            functions: KargoFunctions { env, scope, now },
            root,
            budget: Budget::new(self.limits),
            regexes: RegexCache::new(),
            secrets: masked_texts(env.data.secret_values()),
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
    /// Texts no error message may show (Secret values and the forms
    /// messages write them in), longest first.
    secrets: Vec<String>,
}

/// The texts to mask for these Secret values: each value as it is, as
/// messages quote it (Go's `%q`, JSON, time's quoting) and clipped as
/// messages clip long values.
fn masked_texts<'s>(values: impl Iterator<Item = &'s str>) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    for v in values.filter(|v| !v.is_empty()) {
        let mut json = String::new();
        golang::push_json_string(&mut json, v);
        let quoted = golang::quote(v);
        let forms = [
            v.to_string(),
            json[1..json.len() - 1].to_string(),
            quoted[1..quoted.len() - 1].to_string(),
            v.chars().take(eval::BRIEF_CHARS).collect(),
        ];
        for form in forms {
            if !form.is_empty() && !texts.contains(&form) {
                texts.push(form);
            }
        }
    }
    texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    texts
}

/// `text` with every Secret value of `data` (in the forms error messages
/// could show it) replaced by `***`.
pub(crate) fn redact_secrets(text: &str, data: &ProjectData) -> String {
    mask(text, &masked_texts(data.secret_values()))
}

/// `text` with every occurrence of each of `secrets` (ignoring ASCII case)
/// replaced by `***`.
fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        let needle = secret.to_ascii_lowercase();
        let mut from = 0;
        loop {
            let hay = out.to_ascii_lowercase();
            let Some(i) = hay[from..].find(&needle).map(|i| i + from) else {
                break;
            };
            out.replace_range(i..i + needle.len(), "***");
            from = i + 3;
        }
    }
    out
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
            .map_err(|fault| self.error(fault, source))
    }

    /// The error for `fault`, its message masked.
    fn error(&self, fault: Fault, source: &str) -> ExprError {
        let mut err = fault.into_error(source);
        if let ExprError::Eval { message, .. } = &mut err
            && !self.secrets.is_empty()
        {
            *message = mask(message, &self.secrets);
        }
        err
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
        value::to_json(&v).map_err(|message| self.error(Fault::msg(message), expression))
    }

    fn evaluate_text(&mut self, expression: &str) -> Result<String, ExprError> {
        match self.run(expression)? {
            Value::Str(s) => Ok(s.to_string()),
            other => match value::marshal(&other, false, &mut self.budget) {
                Ok(text) => Ok(text),
                Err(fault) => Err(self.error(fault, expression)),
            },
        }
    }
}
