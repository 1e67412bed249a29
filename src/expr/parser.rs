//! A Pratt parser for expr-lang, following expr-lang v1.17's
//! `parser/parser.go` (precedences, predicates, optional chains, the
//! `??`-mixing rule, comparison chains) so that the same sources give the
//! same trees. Nesting is bounded twice: by recursion depth while parsing and
//! by the depth of the resulting tree.

use super::ast::{BinOp, Expr, Node, UnOp};
use super::budget::{MAX_STACK, stack_position};
use super::lexer::{Kind, Token, tokenize};
use super::value::Value;

/// Why parsing failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ParseFault {
    /// A syntax error at a byte offset.
    Syntax { message: String, at: usize },
    /// The expression nests deeper than the limit.
    TooDeep,
}

/// Faults are boxed (and nodes returned boxed) to keep the recursive
/// functions' stack frames small: in a debug build every temporary takes
/// its own slot.
type PResult<T> = Result<T, Box<ParseFault>>;

/// Parses `source` into a tree no deeper than `max_depth`.
pub(crate) fn parse(source: &str, max_depth: usize) -> Result<Node, ParseFault> {
    let toks = tokenize(source).map_err(|e| ParseFault::Syntax {
        message: e.message,
        at: e.offset,
    })?;
    let mut p = Parser {
        toks,
        pos: 0,
        predicate_depth: 0,
        level: 0,
        max_depth,
        stack_base: stack_position(),
    };
    let node = p.sequence().map_err(|e| *e)?;
    if p.cur().kind != Kind::Eof {
        return p.unexpected().map_err(|e| *e);
    }
    Ok(*node)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Assoc {
    Left,
    Right,
}

/// expr-lang's binary operator table: precedence and associativity.
fn binary(op: &str) -> Option<(u32, Assoc)> {
    Some(match op {
        "|" => (0, Assoc::Left),
        "or" | "||" => (10, Assoc::Left),
        "and" | "&&" => (15, Assoc::Left),
        "==" | "!=" | "<" | ">" | ">=" | "<=" | "in" | "matches" | "contains" | "startsWith"
        | "endsWith" => (20, Assoc::Left),
        ".." => (25, Assoc::Left),
        "+" | "-" => (30, Assoc::Left),
        "*" | "/" | "%" => (60, Assoc::Left),
        "**" | "^" => (100, Assoc::Right),
        "??" => (500, Assoc::Left),
        _ => return None,
    })
}

fn bin_op(op: &str) -> Option<BinOp> {
    Some(match op {
        "or" | "||" => BinOp::Or,
        "and" | "&&" => BinOp::And,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        ">" => BinOp::Gt,
        "<=" => BinOp::Le,
        ">=" => BinOp::Ge,
        "in" => BinOp::In,
        "matches" => BinOp::Matches,
        "contains" => BinOp::Contains,
        "startsWith" => BinOp::StartsWith,
        "endsWith" => BinOp::EndsWith,
        ".." => BinOp::Range,
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        "**" | "^" => BinOp::Pow,
        "??" => BinOp::Coalesce,
        _ => return None,
    })
}

fn unary(op: &str) -> Option<(u32, UnOp)> {
    Some(match op {
        "not" | "!" => (50, UnOp::Not),
        "-" => (90, UnOp::Neg),
        "+" => (90, UnOp::Plus),
        _ => return None,
    })
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "<" | ">" | ">=" | "<=")
}

fn allowed_negate_suffix(op: &str) -> bool {
    matches!(
        op,
        "contains" | "matches" | "startsWith" | "endsWith" | "in"
    )
}

/// Argument shapes of the predicate built-ins: `true` marks the predicate,
/// and the number is how many arguments are required.
fn predicate_args(name: &str) -> Option<(&'static [bool], usize)> {
    const EP: &[bool] = &[false, true];
    const EPE: &[bool] = &[false, true, false];
    Some(match name {
        "all" | "none" | "any" | "one" | "filter" | "map" | "find" | "findIndex" | "findLast"
        | "findLastIndex" | "groupBy" => (EP, 2),
        "count" | "sum" => (EP, 1),
        "sortBy" | "reduce" => (EPE, 2),
        _ => return None,
    })
}

/// Whether a word can follow `.` as a property name although it lexes as an
/// operator (`a.not`, `a.in`).
fn is_valid_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c == '$' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c == '$' || c.is_alphanumeric())
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    /// > 0 inside a predicate, where `#` and `.field` are allowed.
    predicate_depth: usize,
    /// Current recursion depth of `expression`.
    level: usize,
    max_depth: usize,
    /// Where the stack was when parsing started.
    stack_base: usize,
}

impl Parser {
    fn cur(&self) -> &Token {
        // The token list always ends with EOF and `next` never passes it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek(&self, n: usize) -> &Token {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)]
    }

    fn next(&mut self) {
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
    }

    fn error<T>(&self, message: impl Into<String>, at: usize) -> PResult<T> {
        Err(Box::new(ParseFault::Syntax {
            message: message.into(),
            at,
        }))
    }

    fn unexpected<T>(&self) -> PResult<T> {
        let tok = self.cur();
        self.error(format!("unexpected token {tok}"), tok.start)
    }

    fn expect(&mut self, kind: Kind, value: &str) -> PResult<()> {
        if self.cur().is(kind, value) {
            self.next();
            Ok(())
        } else {
            self.unexpected()
        }
    }

    fn expect_kind(&mut self, kind: Kind) -> PResult<Token> {
        if self.cur().kind == kind {
            let tok = self.cur().clone();
            self.next();
            Ok(tok)
        } else {
            self.unexpected()
        }
    }

    /// Builds a node, refusing trees deeper than the limit.
    fn node(&self, expr: Expr, at: usize) -> PResult<Box<Node>> {
        let node = Node::new(expr, at);
        if node.depth > self.max_depth {
            return Err(Box::new(ParseFault::TooDeep));
        }
        Ok(Box::new(node))
    }

    fn sequence(&mut self) -> PResult<Box<Node>> {
        let first = self.expression(0)?;
        if !self.cur().is_op(";") {
            return Ok(first);
        }
        let at = first.at;
        let mut nodes = vec![*first];
        while self.cur().is_op(";") {
            self.next();
            if self.cur().kind == Kind::Eof {
                break;
            }
            nodes.push(*self.expression(0)?);
        }
        if nodes.len() == 1 {
            return Ok(Box::new(nodes.remove(0)));
        }
        self.node(Expr::Sequence(nodes), at)
    }

    fn expression(&mut self, precedence: u32) -> PResult<Box<Node>> {
        self.level += 1;
        if self.level > self.max_depth || stack_position().abs_diff(self.stack_base) > MAX_STACK {
            return Err(Box::new(ParseFault::TooDeep));
        }
        let result = self.expression_inner(precedence);
        self.level -= 1;
        result
    }

    fn expression_inner(&mut self, precedence: u32) -> PResult<Box<Node>> {
        if precedence == 0 && self.cur().is_op("let") {
            return self.let_declaration();
        }
        if precedence == 0 && self.cur().is_op("if") {
            return self.conditional_if();
        }
        let mut left = self.primary()?;
        let mut prev_op = String::new();
        loop {
            let mut op_tok = self.cur().clone();
            if op_tok.kind != Kind::Operator {
                break;
            }
            let mut negate = None;
            if op_tok.is_op("not") {
                let suffix = self.peek(1).clone();
                if suffix.kind == Kind::Operator && allowed_negate_suffix(&suffix.value) {
                    match binary(&suffix.value) {
                        Some((p, _)) if p >= precedence => {
                            self.next();
                            negate = Some(op_tok.start);
                            op_tok = suffix;
                        }
                        _ => break,
                    }
                } else {
                    self.next();
                    return self.unexpected();
                }
            }
            let Some((op_prec, assoc)) = binary(&op_tok.value) else {
                break;
            };
            if op_prec < precedence {
                break;
            }
            self.next();
            if op_tok.value == "|" {
                let ident = self.expect_kind(Kind::Identifier)?;
                left = self.call(&ident, vec![*left])?;
            } else {
                if prev_op == "??" && op_tok.value != "??" {
                    return self.error(
                        format!(
                            "Operator ({}) and coalesce expressions (??) cannot be mixed. Wrap either by parentheses.",
                            op_tok.value
                        ),
                        op_tok.start,
                    );
                }
                if is_comparison(&op_tok.value) {
                    left = self.comparison(*left, op_tok.clone(), op_prec)?;
                } else {
                    let right = match assoc {
                        Assoc::Left => self.expression(op_prec + 1)?,
                        Assoc::Right => self.expression(op_prec)?,
                    };
                    let Some(op) = bin_op(&op_tok.value) else {
                        return self.error(format!("unexpected token {op_tok}"), op_tok.start);
                    };
                    left = self.node(Expr::Binary(op, left, right), op_tok.start)?;
                    if let Some(at) = negate {
                        left = self.node(Expr::Unary(UnOp::Not, left), at)?;
                    }
                }
            }
            prev_op = op_tok.value;
        }
        if precedence == 0 {
            left = self.conditional(left)?;
        }
        Ok(left)
    }

    /// `a < b < c` means `a < b && b < c`; the shared operand is kept once
    /// (expr-lang shares the node too) so chains cannot blow the tree up.
    fn comparison(&mut self, left: Node, mut tok: Token, precedence: u32) -> PResult<Box<Node>> {
        let at = tok.start;
        let mut operands = vec![left];
        let mut ops = Vec::new();
        loop {
            ops.push(bin_op(&tok.value).unwrap_or(BinOp::Lt));
            operands.push(*self.expression(precedence + 1)?);
            tok = self.cur().clone();
            if !(tok.kind == Kind::Operator && is_comparison(&tok.value)) {
                break;
            }
            self.next();
        }
        if ops.len() == 1 {
            let right = operands.pop();
            let left = operands.pop();
            if let (Some(left), Some(right)) = (left, right) {
                return self.node(Expr::Binary(ops[0], Box::new(left), Box::new(right)), at);
            }
        }
        self.node(Expr::Comparisons { operands, ops }, at)
    }

    fn let_declaration(&mut self) -> PResult<Box<Node>> {
        self.expect(Kind::Operator, "let")?;
        let name = self.expect_kind(Kind::Identifier)?;
        self.expect(Kind::Operator, "=")?;
        let value = self.expression(0)?;
        self.expect(Kind::Operator, ";")?;
        let body = self.sequence()?;
        self.node(
            Expr::Let {
                name: name.value,
                value,
                body,
            },
            name.start,
        )
    }

    fn conditional_if(&mut self) -> PResult<Box<Node>> {
        let at = self.cur().start;
        self.next();
        let cond = self.expression(0)?;
        self.expect(Kind::Bracket, "{")?;
        let then = self.sequence()?;
        self.expect(Kind::Bracket, "}")?;
        self.expect(Kind::Operator, "else")?;
        let otherwise = if self.cur().is_op("if") {
            self.level += 1;
            if self.level > self.max_depth || stack_position().abs_diff(self.stack_base) > MAX_STACK
            {
                return Err(Box::new(ParseFault::TooDeep));
            }
            let r = self.conditional_if();
            self.level -= 1;
            r?
        } else {
            self.expect(Kind::Bracket, "{")?;
            let e = self.sequence()?;
            self.expect(Kind::Bracket, "}")?;
            e
        };
        self.node(
            Expr::Conditional {
                cond,
                then,
                otherwise,
            },
            at,
        )
    }

    fn conditional(&mut self, mut node: Box<Node>) -> PResult<Box<Node>> {
        while self.cur().is_op("?") {
            let at = self.cur().start;
            self.next();
            let (then, otherwise) = if !self.cur().is_op(":") {
                let then = self.expression(0)?;
                self.expect(Kind::Operator, ":")?;
                (then, self.expression(0)?)
            } else {
                // `a ?: b` is `a ? a : b`; `a` must be a bool, so when it is
                // chosen it is `true`.
                self.next();
                let yes = self.node(Expr::Lit(Value::Bool(true)), at)?;
                (yes, self.expression(0)?)
            };
            node = self.node(
                Expr::Conditional {
                    cond: node,
                    then,
                    otherwise,
                },
                at,
            )?;
        }
        Ok(node)
    }

    fn primary(&mut self) -> PResult<Box<Node>> {
        let tok = self.cur().clone();
        if tok.kind == Kind::Operator
            && let Some((prec, op)) = unary(&tok.value)
        {
            self.next();
            let operand = self.expression(prec)?;
            let node = self.node(Expr::Unary(op, operand), tok.start)?;
            return self.postfix(node);
        }
        if tok.is_bracket("(") {
            self.next();
            let inner = self.sequence()?;
            self.expect(Kind::Bracket, ")")?;
            return self.postfix(inner);
        }
        if self.predicate_depth > 0 && (tok.is_op("#") || tok.is_op(".")) {
            let mut name = None;
            if tok.is_op("#") {
                self.next();
                if self.cur().kind == Kind::Identifier {
                    name = Some(self.cur().value.clone());
                    self.next();
                }
            }
            let node = self.node(Expr::Pointer(name), tok.start)?;
            return self.postfix(node);
        }
        if tok.is_op("::") {
            self.next();
            let ident = self.expect_kind(Kind::Identifier)?;
            let call = self.call(&ident, Vec::new())?;
            return self.postfix(call);
        }
        self.secondary()
    }

    fn secondary(&mut self) -> PResult<Box<Node>> {
        let tok = self.cur().clone();
        let node = match tok.kind {
            Kind::Identifier => {
                self.next();
                match tok.value.as_str() {
                    "true" => return self.node(Expr::Lit(Value::Bool(true)), tok.start),
                    "false" => return self.node(Expr::Lit(Value::Bool(false)), tok.start),
                    "nil" => return self.node(Expr::Lit(Value::Nil), tok.start),
                    _ => {
                        if self.cur().is_bracket("(") {
                            self.call(&tok, Vec::new())?
                        } else if tok.value == "$env" {
                            self.node(Expr::Env, tok.start)?
                        } else {
                            self.node(Expr::Ident(tok.value.clone()), tok.start)?
                        }
                    }
                }
            }
            Kind::Number => {
                self.next();
                let value = number_literal(&tok.value).map_err(|message| ParseFault::Syntax {
                    message,
                    at: tok.start,
                })?;
                return self.node(Expr::Lit(value), tok.start);
            }
            Kind::String => {
                self.next();
                self.node(Expr::Lit(Value::str(&tok.value)), tok.start)?
            }
            _ if tok.is_bracket("[") => self.array(&tok)?,
            _ if tok.is_bracket("{") => self.map(&tok)?,
            _ => return self.unexpected(),
        };
        self.postfix(node)
    }

    fn call(&mut self, ident: &Token, mut args: Vec<Node>) -> PResult<Box<Node>> {
        if let Some((shape, required)) = predicate_args(&ident.value) {
            self.expect(Kind::Bracket, "(")?;
            let remaining = &shape[args.len().min(shape.len())..];
            let required = required.saturating_sub(args.len());
            for (i, &is_predicate) in remaining.iter().enumerate() {
                if self.cur().is_bracket(")") {
                    if i >= required {
                        break;
                    }
                    return self.error(
                        format!(
                            "expected at least {} arguments",
                            remaining.len().min(required)
                        ),
                        self.cur().start,
                    );
                }
                if i > 0 {
                    self.expect(Kind::Operator, ",")?;
                }
                let arg = if is_predicate {
                    self.predicate()?
                } else {
                    self.expression(0)?
                };
                let arg = *arg;
                args.push(arg);
            }
            if self.cur().is_op(",") {
                self.next();
            }
            self.expect(Kind::Bracket, ")")?;
        } else {
            args = self.arguments(args)?;
        }
        self.node(
            Expr::Call {
                name: ident.value.clone(),
                args,
            },
            ident.start,
        )
    }

    fn arguments(&mut self, mut args: Vec<Node>) -> PResult<Vec<Node>> {
        let offset = args.len();
        self.expect(Kind::Bracket, "(")?;
        while !self.cur().is_bracket(")") {
            if self.cur().kind == Kind::Eof {
                return self.unexpected();
            }
            if args.len() > offset {
                self.expect(Kind::Operator, ",")?;
            }
            if self.cur().is_bracket(")") {
                break;
            }
            args.push(*self.expression(0)?);
        }
        self.expect(Kind::Bracket, ")")?;
        Ok(args)
    }

    fn predicate(&mut self) -> PResult<Box<Node>> {
        let at = self.cur().start;
        let braces = self.cur().is_bracket("{");
        if braces {
            self.next();
        }
        self.predicate_depth += 1;
        let body = if braces {
            self.sequence()
        } else {
            let body = self.expression(0);
            if body.is_ok() && self.cur().is_op(";") {
                let at = self.cur().start;
                self.predicate_depth -= 1;
                return self.error("wrap predicate with brackets { and }", at);
            }
            body
        };
        self.predicate_depth -= 1;
        let body = body?;
        if braces {
            self.expect(Kind::Bracket, "}")?;
        }
        self.node(Expr::Predicate(body), at)
    }

    fn array(&mut self, open: &Token) -> PResult<Box<Node>> {
        self.expect(Kind::Bracket, "[")?;
        let nodes = self.comma_separated("]", |p, _| Ok(*p.expression(0)?))?;
        self.node(Expr::Array(nodes), open.start)
    }

    fn map(&mut self, open: &Token) -> PResult<Box<Node>> {
        self.expect(Kind::Bracket, "{")?;
        let pairs = self.comma_separated("}", |p, first| {
            if !first && p.cur().is_op(",") {
                return p.unexpected();
            }
            let key = p.map_key()?;
            p.expect(Kind::Operator, ":")?;
            let value = p.expression(0)?;
            Ok((*key, *value))
        })?;
        self.node(Expr::Map(pairs), open.start)
    }

    fn map_key(&mut self) -> PResult<Box<Node>> {
        let tok = self.cur().clone();
        if matches!(tok.kind, Kind::Number | Kind::String | Kind::Identifier) {
            self.next();
            self.node(Expr::Lit(Value::str(&tok.value)), tok.start)
        } else if tok.is_bracket("(") {
            self.expression(0)
        } else {
            self.error(
                format!(
                    "a map key must be a quoted string, a number, a identifier, or an expression enclosed in parentheses (unexpected token {tok})"
                ),
                tok.start,
            )
        }
    }

    /// Items up to the bracket `close`, separated by commas, a trailing
    /// comma allowed; `item` is told whether it is the first.
    fn comma_separated<T>(
        &mut self,
        close: &str,
        mut item: impl FnMut(&mut Self, bool) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        let mut items = Vec::new();
        while !self.cur().is_bracket(close) {
            if self.cur().kind == Kind::Eof {
                return self.unexpected();
            }
            if !items.is_empty() {
                self.expect(Kind::Operator, ",")?;
                if self.cur().is_bracket(close) {
                    break;
                }
            }
            let first = items.is_empty();
            items.push(item(self, first)?);
        }
        self.expect(Kind::Bracket, close)?;
        Ok(items)
    }

    fn postfix(&mut self, mut node: Box<Node>) -> PResult<Box<Node>> {
        loop {
            let tok = self.cur().clone();
            if !matches!(tok.kind, Kind::Operator | Kind::Bracket) {
                break;
            }
            let optional = tok.value == "?.";
            if tok.value == "." || optional {
                self.next();
                let prop = self.cur().clone();
                if optional && prop.is_bracket("[") {
                    node = self.index(node, true)?;
                    continue;
                }
                self.next();
                let is_name = prop.kind == Kind::Identifier
                    || (prop.kind == Kind::Operator && is_valid_identifier(&prop.value));
                if !is_name {
                    return self.error("expected name", prop.start);
                }
                let property = self.node(Expr::Lit(Value::str(&prop.value)), prop.start)?;
                let (base, was_chain) = match node.expr {
                    Expr::Chain(inner) => (inner, true),
                    _ => (node, false),
                };
                let member = self.node(
                    Expr::Member {
                        object: base,
                        property,
                        optional,
                    },
                    prop.start,
                )?;
                node = if self.cur().is_bracket("(") {
                    let args = self.arguments(Vec::new())?;
                    self.node(
                        Expr::MethodCall {
                            callee: member,
                            args,
                        },
                        prop.start,
                    )?
                } else {
                    member
                };
                if was_chain || optional {
                    node = self.node(Expr::Chain(node), prop.start)?;
                }
            } else if tok.value == "[" {
                node = self.index(node, false)?;
            } else {
                break;
            }
        }
        Ok(node)
    }

    /// `[index]` or `[from:to]` after `node`; the current token is `[`.
    fn index(&mut self, node: Box<Node>, optional: bool) -> PResult<Box<Node>> {
        let at = self.cur().start;
        self.next();
        if self.cur().is_op(":") {
            return self.slice(node, None, at);
        }
        let from = self.expression(0)?;
        if self.cur().is_op(":") {
            return self.slice(node, Some(from), at);
        }
        self.expect(Kind::Bracket, "]")?;
        let member = self.node(
            Expr::Member {
                object: node,
                property: from,
                optional,
            },
            at,
        )?;
        if optional {
            return self.node(Expr::Chain(member), at);
        }
        Ok(member)
    }

    /// The rest of `[from:to]`; the current token is `:`.
    fn slice(&mut self, node: Box<Node>, from: Option<Box<Node>>, at: usize) -> PResult<Box<Node>> {
        self.next();
        let to = if self.cur().is_bracket("]") {
            None
        } else {
            Some(self.expression(0)?)
        };
        self.expect(Kind::Bracket, "]")?;
        self.node(
            Expr::Slice {
                object: node,
                from,
                to,
            },
            at,
        )
    }
}

/// Interprets a number token as expr-lang does: hex, octal and binary
/// integers, decimal integers, and floats (anything with `.` or `e`).
fn number_literal(raw: &str) -> Result<Value, String> {
    let text: String = raw.chars().filter(|&c| c != '_').collect();
    let lower = text.to_ascii_lowercase();
    let radix = |prefix: &str, base: u32, what: &str| -> Result<Value, String> {
        let digits = &text[prefix.len()..];
        i64::from_str_radix(digits, base)
            .map(Value::Int)
            .map_err(|_| format!("invalid {what} literal: {raw}"))
    };
    if lower.starts_with("0x") {
        radix("0x", 16, "hex")
    } else if lower.contains('.') || lower.contains('e') {
        match lower.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            Ok(_) => Err("float literal is too large".to_string()),
            Err(_) => Err(format!("invalid float literal: {raw}")),
        }
    } else if lower.starts_with("0b") {
        radix("0b", 2, "binary")
    } else if lower.starts_with("0o") {
        radix("0o", 8, "octal")
    } else {
        text.parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("invalid integer literal: {raw}"))
    }
}
