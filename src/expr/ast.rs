//! The syntax tree. Every node keeps the byte offset it starts at (for error
//! positions) and its depth (so the parser can refuse trees deep enough to
//! exhaust the stack when evaluated).

use super::value::Value;

/// A node of the syntax tree.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub expr: Expr,
    /// Byte offset in the expression source.
    pub at: usize,
    /// 1 for a leaf; 1 + the deepest child otherwise.
    pub depth: usize,
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnOp {
    Not,
    Neg,
    Plus,
}

/// Binary operators (the pipe, the ternary and `not in` style negations are
/// resolved by the parser).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Matches,
    Contains,
    StartsWith,
    EndsWith,
    Range,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Coalesce,
}

impl BinOp {
    /// The operator as written (for messages).
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Matches => "matches",
            BinOp::Contains => "contains",
            BinOp::StartsWith => "startsWith",
            BinOp::EndsWith => "endsWith",
            BinOp::Range => "..",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::Coalesce => "??",
        }
    }
}

/// What a node is.
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    /// A literal: nil, bool, int, float or string.
    Lit(Value),
    /// A variable: a `let` name or a key of the environment.
    Ident(String),
    /// `$env`: the whole environment as a map.
    Env,
    /// `#` (the current element of a predicate), `#index`, `#acc`, or the
    /// implicit element of `.field` inside a predicate.
    Pointer(Option<String>),
    Unary(UnOp, Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    /// `a < b <= c ...`: each operator applied to neighbouring operands,
    /// all of which must hold (evaluated left to right, stopping at the first
    /// false).
    Comparisons {
        operands: Vec<Node>,
        ops: Vec<BinOp>,
    },
    /// `object.property`, `object[property]`, `object?.property`.
    Member {
        object: Box<Node>,
        property: Box<Node>,
        optional: bool,
    },
    /// `object[from:to]`.
    Slice {
        object: Box<Node>,
        from: Option<Box<Node>>,
        to: Option<Box<Node>>,
    },
    /// The extent of an optional chain: a `?.` meeting nil makes the whole
    /// chain nil.
    Chain(Box<Node>),
    /// A call of a built-in or an environment function by name.
    Call {
        name: String,
        args: Vec<Node>,
    },
    /// `value.method(...)`: parsed as expr-lang does, always an error when
    /// evaluated (values have no methods here).
    MethodCall {
        callee: Box<Node>,
        args: Vec<Node>,
    },
    /// The predicate argument of `map`, `filter`, ... (evaluated per element).
    Predicate(Box<Node>),
    Array(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// `cond ? then : otherwise` and `if cond { then } else { otherwise }`.
    Conditional {
        cond: Box<Node>,
        then: Box<Node>,
        otherwise: Box<Node>,
    },
    /// `let name = value; body`.
    Let {
        name: String,
        value: Box<Node>,
        body: Box<Node>,
    },
    /// `a; b; c`: evaluates all, yields the last.
    Sequence(Vec<Node>),
}

impl Node {
    /// A node at byte offset `at`, with its depth computed from its children.
    pub(crate) fn new(expr: Expr, at: usize) -> Node {
        let child = |n: &Node| n.depth;
        let opt = |n: &Option<Box<Node>>| n.as_ref().map_or(0, |n| n.depth);
        let deepest = match &expr {
            Expr::Lit(_) | Expr::Ident(_) | Expr::Env | Expr::Pointer(_) => 0,
            Expr::Unary(_, n) | Expr::Chain(n) | Expr::Predicate(n) => child(n),
            Expr::Binary(_, a, b) => child(a).max(child(b)),
            Expr::Member {
                object, property, ..
            } => child(object).max(child(property)),
            Expr::Slice { object, from, to } => child(object).max(opt(from)).max(opt(to)),
            Expr::Call { args, .. }
            | Expr::Array(args)
            | Expr::Sequence(args)
            | Expr::Comparisons { operands: args, .. } => args.iter().map(child).max().unwrap_or(0),
            Expr::MethodCall { callee, args } => {
                args.iter().map(child).max().unwrap_or(0).max(child(callee))
            }
            Expr::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| child(k).max(child(v)))
                .max()
                .unwrap_or(0),
            Expr::Conditional {
                cond,
                then,
                otherwise,
            } => child(cond).max(child(then)).max(child(otherwise)),
            Expr::Let { value, body, .. } => child(value).max(child(body)),
        };
        Node {
            expr,
            at,
            depth: deepest + 1,
        }
    }
}
