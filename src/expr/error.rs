//! Errors of parsing, evaluating and templating expressions.

use std::fmt;

/// The longest expression text an error carries (in characters); longer
/// expressions are clipped with `…` so status messages stay readable.
const MAX_QUOTED_CHARS: usize = 200;

/// Which evaluation budget an expression exceeded. Each carries the limit
/// that was in force, for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// CPU: the step counter (one per syntax-tree node visited, plus one per
    /// element or per 64 bytes handled by built-ins) ran out.
    Steps(u64),
    /// Memory: the values created (strings, arrays, maps) exceeded this many
    /// bytes.
    Memory(u64),
    /// The expression's source is longer than this many bytes.
    SourceLength(usize),
    /// The expression nests deeper than this many levels.
    Depth(usize),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Steps(n) => write!(f, "{n} steps"),
            Limit::Memory(n) => write!(f, "{n} bytes of memory"),
            Limit::SourceLength(n) => write!(f, "{n} bytes of source"),
            Limit::Depth(n) => write!(f, "{n} levels of nesting"),
        }
    }
}

/// An error from [`crate::expr`]. Every variant names the expression (or
/// template) it is about, so it can be shown to a user as it is.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The expression is not valid expr-lang syntax.
    #[error("invalid expression \"{expression}\": {message} (line {line}, column {column})")]
    Parse {
        /// The expression text (clipped when very long).
        expression: String,
        /// What is wrong, in expr-lang's words where known.
        message: String,
        /// Byte offset of the offending token in the expression.
        offset: usize,
        /// 1-based line of the offending token.
        line: usize,
        /// 1-based column (in characters) of the offending token.
        column: usize,
    },
    /// The expression failed while being evaluated (a type error, a missing
    /// field on nil, a function error, ...).
    #[error("error evaluating expression \"{expression}\"{}: {message}", at_column(*.column))]
    Eval {
        /// The expression text (clipped when very long).
        expression: String,
        /// What went wrong.
        message: String,
        /// Byte offset of the failing sub-expression, when known.
        offset: Option<usize>,
        /// 1-based column (in characters) of the failing sub-expression.
        column: Option<usize>,
    },
    /// The expression exceeded one of its [`crate::expr::Limits`]. Distinct
    /// from [`ExprError::Eval`] so callers can tell a hostile or runaway
    /// expression from a wrong one.
    #[error("expression \"{expression}\" exceeded its evaluation budget of {limit}")]
    Budget {
        /// The expression text (clipped when very long).
        expression: String,
        /// The limit that was exceeded.
        limit: Limit,
    },
    /// A template opened `${{` (or `${%`) and never closed it.
    #[error("unclosed expression: expected \"{delimiter}\" but reached end of template")]
    Unclosed {
        /// The template text (clipped when very long).
        template: String,
        /// The closing delimiter that was expected.
        delimiter: &'static str,
    },
    /// An `if` condition evaluated to something other than a boolean. `got`
    /// is named as Kargo names it (Go's `%T`: `string`, `float64`, ...).
    #[error("expression must evaluate to a boolean, got {got}")]
    NotBoolean {
        /// The template text (clipped when very long).
        template: String,
        /// The Go type name of the result.
        got: String,
    },
}

fn at_column(column: Option<usize>) -> String {
    match column {
        Some(c) => format!(" at column {c}"),
        None => String::new(),
    }
}

/// The expression text as errors carry it: clipped to a readable length.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

/// 1-based (line, column) of a byte offset; the column counts characters.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut line = 1;
    let mut line_start = 0;
    for (i, b) in text.bytes().enumerate().take(offset) {
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
    }
    let column = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(offset - line_start)
        + 1;
    (line, column)
}

/// An evaluation failure before it is attached to its expression text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Fault {
    /// An ordinary error, located at a byte offset when known.
    Error { message: String, at: Option<usize> },
    /// A budget ran out.
    Budget(Limit),
    /// `?.` met nil: the enclosing chain evaluates to nil. Never escapes a
    /// chain node.
    NilChain,
}

impl Fault {
    /// An error without a location yet; the evaluator attaches the location
    /// of the node that was being evaluated.
    pub(crate) fn msg(message: impl Into<String>) -> Fault {
        Fault::Error {
            message: message.into(),
            at: None,
        }
    }

    /// Attaches `offset` if the fault has no location yet.
    pub(crate) fn locate(self, offset: usize) -> Fault {
        match self {
            Fault::Error { message, at: None } => Fault::Error {
                message,
                at: Some(offset),
            },
            other => other,
        }
    }

    /// The user-facing error for this fault in `expression`.
    pub(crate) fn into_error(self, expression: &str) -> ExprError {
        match self {
            Fault::Error { message, at } => {
                let column = at.map(|o| line_column(expression, o).1);
                ExprError::Eval {
                    expression: clip(expression),
                    message,
                    offset: at,
                    column,
                }
            }
            Fault::Budget(limit) => ExprError::Budget {
                expression: clip(expression),
                limit,
            },
            // A chain always catches this; reaching here would be a bug, so
            // report it as the nil it stands for.
            Fault::NilChain => ExprError::Eval {
                expression: clip(expression),
                message: "cannot fetch from <nil>".to_string(),
                offset: None,
                column: None,
            },
        }
    }
}

/// Shorthand for evaluator results.
pub(crate) type Res<T> = Result<T, Fault>;
