//! The lexer: expr-lang's tokens (`parser/lexer` in expr-lang v1.17) with
//! byte positions.

use std::fmt;

/// What kind of token, as expr-lang names them in its error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Identifier,
    Number,
    String,
    Operator,
    Bracket,
    Eof,
}

/// One token: its kind, its value (the unescaped text for strings) and the
/// byte range it covers in the source.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub value: String,
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// Whether this is a token of `kind` with exactly `value`.
    pub(crate) fn is(&self, kind: Kind, value: &str) -> bool {
        self.kind == kind && self.value == value
    }

    pub(crate) fn is_op(&self, value: &str) -> bool {
        self.is(Kind::Operator, value)
    }

    pub(crate) fn is_bracket(&self, value: &str) -> bool {
        self.is(Kind::Bracket, value)
    }
}

impl fmt::Display for Token {
    /// As expr-lang prints tokens: `Operator(",")`, `EOF`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Identifier => "Identifier",
            Kind::Number => "Number",
            Kind::String => "String",
            Kind::Operator => "Operator",
            Kind::Bracket => "Bracket",
            Kind::Eof => "EOF",
        };
        if self.value.is_empty() {
            write!(f, "{kind}")
        } else {
            write!(f, "{kind}({:?})", self.value)
        }
    }
}

/// A lexing error: a message and the byte offset it is about.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LexError {
    pub message: String,
    pub offset: usize,
}

/// Words that are operators, not identifiers.
const WORD_OPERATORS: &[&str] = &[
    "not",
    "in",
    "or",
    "and",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "let",
    "if",
    "else",
];

fn is_alphabetic(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}

fn is_alphanumeric(c: char) -> bool {
    is_alphabetic(c) || c.is_numeric()
}

/// Splits `source` into tokens, ending with an `Eof` token.
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, LexError> {
    let mut lx = Lexer {
        src: source,
        pos: 0,
        tokens: Vec::new(),
    };
    lx.run()?;
    Ok(lx.tokens)
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    tokens: Vec<Token>,
}

impl<'s> Lexer<'s> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Consumes the next char if it is one of `set`.
    fn accept(&mut self, set: &str) -> bool {
        match self.peek() {
            Some(c) if set.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn emit(&mut self, kind: Kind, start: usize) {
        let value = self.src[start..self.pos].to_string();
        self.emit_value(kind, value, start);
    }

    fn emit_value(&mut self, kind: Kind, value: String, start: usize) {
        self.tokens.push(Token {
            kind,
            value,
            start,
            end: self.pos,
        });
    }

    fn error<T>(&self, message: impl Into<String>, offset: usize) -> Result<T, LexError> {
        Err(LexError {
            message: message.into(),
            offset,
        })
    }

    /// One piece: the lexer's state machine, one `match` arm per token class.
    fn run(&mut self) -> Result<(), LexError> {
        loop {
            let start = self.pos;
            let Some(c) = self.bump() else {
                self.emit_value(Kind::Eof, String::new(), start);
                return Ok(());
            };
            match c {
                c if c.is_whitespace() => {}
                '\'' | '"' => {
                    let s = self.string(c, start)?;
                    self.emit_value(Kind::String, s, start);
                }
                '`' => {
                    let s = self.raw_string(start)?;
                    self.emit_value(Kind::String, s, start);
                }
                '0'..='9' => {
                    self.pos = start;
                    self.number(start)?;
                }
                '?' => {
                    self.accept(".?");
                    self.emit(Kind::Operator, start);
                }
                '/' => {
                    if self.accept("/") {
                        while let Some(c) = self.bump() {
                            if c == '\n' {
                                break;
                            }
                        }
                    } else if self.accept("*") {
                        self.block_comment(start)?;
                    } else {
                        self.emit(Kind::Operator, start);
                    }
                }
                '#' => {
                    self.accept("#");
                    self.emit(Kind::Operator, start);
                    let ident_start = self.pos;
                    while self.peek().is_some_and(is_alphanumeric) {
                        self.bump();
                    }
                    if self.pos > ident_start {
                        self.emit(Kind::Identifier, ident_start);
                    }
                }
                '|' => {
                    self.accept("|");
                    self.emit(Kind::Operator, start);
                }
                ':' => {
                    self.accept(":");
                    self.emit(Kind::Operator, start);
                }
                '(' | '[' | '{' | ')' | ']' | '}' => self.emit(Kind::Bracket, start),
                ',' | ';' | '%' | '+' | '-' | '^' => self.emit(Kind::Operator, start),
                '&' | '!' | '=' | '*' | '<' | '>' => {
                    self.accept("&=*");
                    self.emit(Kind::Operator, start);
                }
                '.' => {
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.pos = start;
                        self.number(start)?;
                    } else {
                        self.accept(".");
                        self.emit(Kind::Operator, start);
                    }
                }
                c if is_alphanumeric(c) => {
                    while self.peek().is_some_and(is_alphanumeric) {
                        self.bump();
                    }
                    let word = &self.src[start..self.pos];
                    let kind = if WORD_OPERATORS.contains(&word) {
                        Kind::Operator
                    } else {
                        Kind::Identifier
                    };
                    self.emit(kind, start);
                }
                c => {
                    return self.error(
                        format!("unrecognized character: U+{:04X} {c:?}", c as u32),
                        start,
                    );
                }
            }
        }
    }

    fn block_comment(&mut self, start: usize) -> Result<(), LexError> {
        loop {
            match self.bump() {
                None => return self.error("unclosed comment", start),
                Some('*') if self.accept("/") => return Ok(()),
                Some(_) => {}
            }
        }
    }

    /// A number as expr-lang scans it; the parser interprets the text.
    fn number(&mut self, start: usize) -> Result<(), LexError> {
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        while self.accept(digits) {}
        let before_dot = self.pos;
        if self.accept(".") {
            if self.peek() == Some('.') {
                // `1..2`: the dot starts a range operator.
                self.pos = before_dot;
                self.emit(Kind::Number, start);
                return Ok(());
            }
            while self.accept(digits) {}
        }
        if self.accept("eE") {
            self.accept("+-");
            while self.accept(digits) {}
        }
        if self.peek().is_some_and(is_alphanumeric) {
            self.bump();
            return self.error(
                format!("bad number syntax: {:?}", &self.src[start..self.pos]),
                start,
            );
        }
        self.emit(Kind::Number, start);
        Ok(())
    }

    /// A quoted string with Go-style escapes; returns the unescaped value.
    fn string(&mut self, quote: char, start: usize) -> Result<String, LexError> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let at = self.pos;
            let Some(c) = self.bump() else {
                return self.error("literal not terminated", start);
            };
            match c {
                c if c == quote => break,
                '\n' => return self.error("literal not terminated", start),
                '\r' => {
                    // expr-lang normalises \r\n and \r to \n.
                    self.accept("\n");
                    out.push(b'\n');
                }
                '\\' => self.escape(quote, at, &mut out)?,
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn escape(&mut self, quote: char, at: usize, out: &mut Vec<u8>) -> Result<(), LexError> {
        let bad = |lx: &Self| lx.error::<()>("invalid char escape", at);
        let Some(c) = self.bump() else {
            return bad(self);
        };
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            c if c == quote => Some(c as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        match c {
            '0'..='7' => {
                let mut v = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.bump().and_then(|d| d.to_digit(8)) {
                        Some(d) => v = v * 8 + d,
                        None => return bad(self),
                    }
                }
                if v > 255 {
                    return bad(self);
                }
                out.push(v as u8);
            }
            'x' => {
                let Some(v) = self.hex_digits(2) else {
                    return bad(self);
                };
                out.push(v as u8);
            }
            'u' | 'U' => {
                let v = if c == 'u' && self.peek() == Some('{') {
                    self.bump();
                    let mut v: u32 = 0;
                    let mut n = 0;
                    loop {
                        match self.bump() {
                            Some('}') if n > 0 => break,
                            Some(d) if n < 6 && d.is_ascii_hexdigit() => {
                                v = v * 16 + d.to_digit(16).unwrap_or(0);
                                n += 1;
                            }
                            _ => return bad(self),
                        }
                    }
                    v
                } else {
                    let n = if c == 'u' { 4 } else { 8 };
                    let Some(v) = self.hex_digits(n) else {
                        return bad(self);
                    };
                    v
                };
                let Some(ch) = char::from_u32(v) else {
                    return bad(self);
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => return bad(self),
        }
        Ok(())
    }

    fn hex_digits(&mut self, n: usize) -> Option<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = self.bump()?.to_digit(16)?;
            v = v.checked_mul(16)?.checked_add(d)?;
        }
        Some(v)
    }

    /// A backtick string: raw, with a doubled backtick standing for one.
    fn raw_string(&mut self, start: usize) -> Result<String, LexError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return self.error("literal not terminated", start),
                Some('`') => {
                    if self.peek() == Some('`') {
                        self.bump();
                        out.push('`');
                    } else {
                        return Ok(out);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, String)> {
        tokenize(src)
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.kind, t.value))
            .collect()
    }

    #[test]
    fn range_after_integer_is_two_numbers_and_an_operator() {
        let toks = kinds("1..3");
        assert_eq!(toks[0], (Kind::Number, "1".into()));
        assert_eq!(toks[1], (Kind::Operator, "..".into()));
        assert_eq!(toks[2], (Kind::Number, "3".into()));
    }

    #[test]
    fn pointer_with_name_is_operator_then_identifier() {
        let toks = kinds("#acc");
        assert_eq!(toks[0], (Kind::Operator, "#".into()));
        assert_eq!(toks[1], (Kind::Identifier, "acc".into()));
    }

    #[test]
    fn escapes_in_strings_are_unescaped() {
        let toks = kinds(r#""a\n\t\"\x41\u00e9\101""#);
        assert_eq!(toks[0], (Kind::String, "a\n\t\"Aé\x41".into()));
    }

    #[test]
    fn unterminated_string_is_an_error() {
        assert!(tokenize("'abc").is_err());
    }

    #[test]
    fn letters_after_number_are_bad_number_syntax() {
        let err = tokenize("12abc").err();
        assert!(err.is_some_and(|e| e.message.starts_with("bad number syntax")));
    }

    #[test]
    fn comments_are_skipped() {
        let toks = kinds("1 /* two */ + // three\n 4");
        assert_eq!(toks.len(), 4);
    }
}
