//! A YAML editor that changes values in place and leaves every other byte
//! of the file as it was: comments, key order, quoting, indentation, blank
//! lines, other documents. A parser finds where each node of the first
//! document lies in the text (Kargo reads the first document too); an edit
//! is a splice of new text over a node's bytes, or new lines next to a
//! node's lines. New text follows the style around it: a value keeps its
//! quotes when the new one allows, new lines take their neighbours'
//! indentation and line endings.

use std::ops::Range;

use granit_parser::{Event, Marker, Parser, ScalarStyle, Span, StructureStyle};

use crate::expr::functions::yaml_reads_as_non_string;
use crate::expr::golang;

/// Why a key could not be split into parts.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("{0:?} has an empty part")]
    EmptyPart(String),
    #[error("{0:?} has an escape other than \\. and \\:")]
    BadEscape(String),
    #[error("{0:?} has a colon that is neither escaped nor the first character of a part")]
    Colon(String),
}

/// Splits a key path such as `image.tag`, `containers.0.image` or
/// `example\.com/version` into its parts as Kargo's `yaml-update` does
/// (`pkg/sjson/split_key.go`): dots separate parts unless escaped (`\.`),
/// `\:` is a colon, an unescaped colon may only start a part (sjson's hint
/// that a number is a key; it is dropped), and nothing else is escaped.
pub fn split_key(key: &str) -> Result<Vec<String>, KeyError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('.' | ':')) => part.push(escaped),
                _ => return Err(KeyError::BadEscape(key.to_string())),
            },
            '.' if part.is_empty() => return Err(KeyError::EmptyPart(key.to_string())),
            '.' => parts.push(std::mem::take(&mut part)),
            ':' if part.is_empty() => {}
            ':' => return Err(KeyError::Colon(key.to_string())),
            c => part.push(c),
        }
    }
    if part.is_empty() {
        return Err(KeyError::EmptyPart(key.to_string()));
    }
    parts.push(part);
    Ok(parts)
}

/// A node of the document, with where it lies in the text.
#[derive(Debug)]
pub struct Node {
    pub kind: Kind,
    /// Where the node's text starts: after its anchor or tag, at the
    /// indicator of a block scalar, at the bracket of a flow collection, at
    /// the first child of a block collection.
    pub start: usize,
    /// Where its content ends; comments and blank lines after it are not
    /// part of it.
    pub end: usize,
    /// Inside a flow collection, where `,[]{}` end a plain scalar.
    pub in_flow: bool,
}

#[derive(Debug)]
pub enum Kind {
    Scalar(Scalar),
    Mapping {
        flow: bool,
        entries: Vec<(Node, Node)>,
    },
    Sequence {
        flow: bool,
        items: Vec<Node>,
    },
    Alias,
}

#[derive(Debug)]
pub struct Scalar {
    /// The value, escapes and folding resolved.
    pub value: String,
    pub style: Style,
    /// Where a literal or folded scalar's parts are.
    pub block: Option<Block>,
    /// An empty value of a flow mapping key written without a colon
    /// (`{a, b}`): a value needs one.
    pub colon_missing: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Single,
    Double,
    Literal,
    Folded,
}

/// A literal or folded scalar: its indicator (`|-`) and its content lines.
#[derive(Clone, Debug)]
pub struct Block {
    pub header: Range<usize>,
    /// From the end of the indicator's line to the end of the last line of
    /// content: empty when there is no content.
    pub body: Range<usize>,
    /// The content's indentation.
    pub indent: usize,
}

impl Node {
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// An empty or `~`/`null` scalar: a key with no value yet.
    pub fn is_null(&self) -> bool {
        self.scalar().is_some_and(|s| {
            s.style == Style::Plain
                && matches!(s.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
        })
    }

    /// The value of `key` in this mapping (the first, as in Kargo).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The position and value of `key` in this mapping.
    pub fn entry(&self, key: &str) -> Option<(usize, &Node)> {
        match &self.kind {
            Kind::Mapping { entries, .. } => entries
                .iter()
                .position(|(k, _)| k.scalar().is_some_and(|s| s.value == key))
                .map(|i| (i, &entries[i].1)),
            _ => None,
        }
    }

    /// What kind of node this is, for messages.
    pub fn what(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(_) => "a scalar",
            Kind::Mapping { .. } => "a mapping",
            Kind::Sequence { .. } => "a sequence",
            Kind::Alias => "an alias",
        }
    }
}

/// The file's text could not be read as YAML.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// The first document of a YAML text, with where its nodes lie.
#[derive(Debug)]
pub struct Document<'t> {
    pub text: &'t str,
    /// `None` for an empty document.
    pub root: Option<Node>,
    /// The line ending new lines get: the file's own.
    pub newline: &'static str,
}

impl<'t> Document<'t> {
    pub fn parse(text: &'t str) -> Result<Self, ParseError> {
        let mut events = Vec::new();
        for next in Parser::new_from_str(text) {
            let (event, span) = next.map_err(|e| ParseError(e.to_string()))?;
            match event {
                Event::DocumentEnd | Event::StreamEnd => break,
                Event::MappingEnd | Event::SequenceEnd => events.push((event, span)),
                event if event.is_node() => events.push((event, span)),
                // Comments, stream and document starts.
                _ => {}
            }
        }
        let mut builder = Builder {
            text,
            events: events.into_iter(),
            prev_end: 0,
        };
        let root = match builder.next(false, Role::Root)? {
            Next::Node(node) => Some(node),
            Next::End(_) | Next::Done => None,
        };
        Ok(Self {
            text,
            root,
            newline: if text.contains("\r\n") { "\r\n" } else { "\n" },
        })
    }

    /// The node at `path` (parts from [`split_key`]), as Kargo finds it:
    /// mapping keys by their value (the first match), sequence items by a
    /// decimal index; aliases are not followed.
    pub fn find(&self, path: &[String]) -> Result<&Node, FindError> {
        let mut node = self.root.as_ref().ok_or(FindError::Empty)?;
        for (depth, part) in path.iter().enumerate() {
            let at = || At(path[..depth].join("."));
            node = match &node.kind {
                Kind::Mapping { .. } => node.get(part).ok_or_else(|| FindError::NoKey {
                    at: at(),
                    key: part.clone(),
                })?,
                Kind::Sequence { items, .. } => {
                    let index = golang::atoi(part).ok_or_else(|| FindError::NotIndex {
                        at: at(),
                        part: part.clone(),
                    })?;
                    usize::try_from(index)
                        .ok()
                        .and_then(|i| items.get(i))
                        .ok_or(FindError::OutOfRange {
                            at: at(),
                            index,
                            len: items.len(),
                        })?
                }
                Kind::Scalar(_) => {
                    return Err(FindError::Scalar {
                        at: at(),
                        part: part.clone(),
                    });
                }
                Kind::Alias => return Err(FindError::Alias { at: at() }),
            };
        }
        Ok(node)
    }
}

/// Where in the document a lookup stopped: the parts walked so far.
#[derive(Debug, PartialEq, Eq)]
pub struct At(String);

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("the document")
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// Why a key path leads nowhere.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    #[error("the document is empty")]
    Empty,
    #[error("{at} has no key {key:?}")]
    NoKey { at: At, key: String },
    #[error("{at} is a sequence and {part:?} is not an index")]
    NotIndex { at: At, part: String },
    #[error("{at} has {len} items, so {index} is out of range")]
    OutOfRange { at: At, index: i64, len: usize },
    #[error("{at} is a scalar, so it has no {part:?}")]
    Scalar { at: At, part: String },
    #[error("{at} is an alias, which is not followed: update the anchored value instead")]
    Alias { at: At },
}

/// Where a node sits in its parent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    Key,
    Value,
    Item,
}

enum Next {
    Node(Node),
    /// The end of a collection, and where it ends.
    End(usize),
    Done,
}

fn unterminated() -> ParseError {
    ParseError("a collection does not end".into())
}

/// Where a collection lies: a flow one from its opening to its closing
/// bracket, a block one from its first child's start to its last child's
/// end.
fn extent(
    flow: bool,
    brackets: Range<usize>,
    first: Option<usize>,
    last: Option<usize>,
) -> (usize, usize) {
    if flow {
        (brackets.start, brackets.end)
    } else {
        (
            first.unwrap_or(brackets.start),
            last.unwrap_or(brackets.start),
        )
    }
}

/// Builds the node tree from the parser's events.
struct Builder<'t, I> {
    text: &'t str,
    events: I,
    /// Where the last scalar, alias or flow collection ended: a block
    /// scalar's indicator comes after it.
    prev_end: usize,
}

impl<'t, I: Iterator<Item = (Event<'t>, Span)>> Builder<'t, I> {
    fn offset(&self, marker: &Marker) -> usize {
        marker.byte_offset().unwrap_or_else(|| {
            // Only the char index is known: count that many chars.
            self.text
                .char_indices()
                .nth(marker.index())
                .map_or(self.text.len(), |(i, _)| i)
        })
    }

    /// The next node, or the end of the collection being read (where it
    /// ends), or of the document.
    fn next(&mut self, in_flow: bool, role: Role) -> Result<Next, ParseError> {
        let Some((event, span)) = self.events.next() else {
            return Ok(Next::Done);
        };
        let start = self.offset(&span.start);
        let end = self.offset(&span.end);
        let node = match event {
            Event::Scalar(value, style, _, _) => {
                let style = match style {
                    ScalarStyle::SingleQuoted => Style::Single,
                    ScalarStyle::DoubleQuoted => Style::Double,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                    _ => Style::Plain,
                };
                let block = match style {
                    Style::Literal | Style::Folded => Some(self.block(start, end, span.indent)?),
                    _ => None,
                };
                let mut colon_missing = false;
                let (start, end) = match &block {
                    Some(b) if b.body.is_empty() => (b.header.start, b.header.end),
                    Some(b) => (b.header.start, b.body.end),
                    // An empty value: the parser puts it anywhere near.
                    None if start == end => {
                        let at = self.empty_value_at(role);
                        colon_missing = at.is_none() && role == Role::Value;
                        let at = at.unwrap_or(if colon_missing { self.prev_end } else { start });
                        (at, at)
                    }
                    None => (start, end),
                };
                self.prev_end = self.prev_end.max(end);
                let value = value.into_owned();
                Node {
                    kind: Kind::Scalar(Scalar {
                        value,
                        style,
                        block,
                        colon_missing,
                    }),
                    start,
                    end,
                    in_flow,
                }
            }
            Event::MappingStart(style, _, _) => {
                let flow = style == StructureStyle::Flow;
                let mut entries = Vec::new();
                let close = loop {
                    let key = match self.next(in_flow || flow, Role::Key)? {
                        Next::Node(key) => key,
                        Next::End(close) => break close,
                        Next::Done => return Err(unterminated()),
                    };
                    let Next::Node(value) = self.next(in_flow || flow, Role::Value)? else {
                        return Err(unterminated());
                    };
                    entries.push((key, value));
                };
                let (start, end) = extent(
                    flow,
                    start..close,
                    entries.first().map(|(k, _)| k.start),
                    entries.last().map(|(_, v)| v.end),
                );
                Node {
                    kind: Kind::Mapping { flow, entries },
                    start,
                    end,
                    in_flow,
                }
            }
            Event::SequenceStart(style, _, _) => {
                let flow = style == StructureStyle::Flow;
                let mut items = Vec::new();
                let close = loop {
                    match self.next(in_flow || flow, Role::Item)? {
                        Next::Node(item) => items.push(item),
                        Next::End(close) => break close,
                        Next::Done => return Err(unterminated()),
                    }
                };
                let (start, end) = extent(
                    flow,
                    start..close,
                    items.first().map(|i| i.start),
                    items.last().map(|i| i.end),
                );
                Node {
                    kind: Kind::Sequence { flow, items },
                    start,
                    end,
                    in_flow,
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                // A flow collection's end is its bracket; a block one's is
                // where the next token starts, and says nothing.
                if in_flow {
                    self.prev_end = end;
                }
                return Ok(Next::End(end));
            }
            // Aliases (and anything else that takes a node's place).
            _ => {
                self.prev_end = end;
                Node {
                    kind: Kind::Alias,
                    start,
                    end,
                    in_flow,
                }
            }
        };
        Ok(Next::Node(node))
    }

    /// Where an empty value goes: right after its key's `:`, or after its
    /// sequence item's `-`, found from where the previous node ended.
    fn empty_value_at(&self, role: Role) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let mut i = self.prev_end;
        let mut passed_colon = false;
        while let Some(&b) = bytes.get(i) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b':' if role == Role::Value => return Some(i + 1),
                // The colon of the key whose first item this is.
                b':' if role == Role::Item && !passed_colon => passed_colon = true,
                b'-' if role == Role::Item => return Some(i + 1),
                b'#' => {
                    i = line_end(self.text, i);
                    continue;
                }
                _ => return None,
            }
            i += 1;
        }
        None
    }

    /// Finds a literal or folded scalar's indicator, which the parser's
    /// span leaves out: on the last line before the content that has text
    /// after the previous node, the first `|` or `>` outside a comment.
    fn block(
        &self,
        content_start: usize,
        content_end: usize,
        indent: Option<usize>,
    ) -> Result<Block, ParseError> {
        let text = self.text;
        let missing = || ParseError("could not find a block scalar's indicator".into());
        let mut line = line_start(text, content_start);
        let header_line = loop {
            if line == 0 {
                return Err(missing());
            }
            let previous = line_start(text, line - 1);
            let from = previous.max(self.prev_end).min(line);
            if text.get(from..line).is_none_or(|t| t.trim().is_empty()) {
                line = previous;
                continue;
            }
            break from..line;
        };
        let bytes = text.as_bytes();
        let mut i = header_line.start;
        let header = loop {
            let Some(&byte) = bytes.get(i).filter(|_| i < header_line.end) else {
                return Err(missing());
            };
            match byte {
                b'|' | b'>' => {
                    let end = (i + 1..header_line.end)
                        .find(|&j| bytes[j].is_ascii_whitespace())
                        .unwrap_or(header_line.end);
                    break i..end;
                }
                b'#' => return Err(missing()),
                b'&' | b'!' => {
                    // An anchor or a tag: skip the token.
                    while bytes.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                        i += 1;
                    }
                }
                _ => i += 1,
            }
        };
        let body_start = next_line_start(text, header.end);
        let content = text.get(content_start..content_end).unwrap_or_default();
        let body = match content.trim_end().len() {
            0 => body_start..body_start,
            n => body_start.min(content_start)..line_end(text, content_start + n),
        };
        let indent = indent.unwrap_or_else(|| content_start - line_start(text, content_start));
        Ok(Block {
            header,
            body,
            indent,
        })
    }
}

/// Where the line holding `pos` starts. (Lines are found by their `\n`
/// bytes, so any position works, on a char boundary or not.)
pub fn line_start(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    bytes[..pos.min(bytes.len())]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1)
}

/// Where the line holding `pos` ends: at its `\n` (or `\r\n`), or the end
/// of the text.
pub fn line_end(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    let pos = pos.min(bytes.len());
    match bytes[pos..].iter().position(|b| *b == b'\n') {
        Some(i) if i > 0 && bytes[pos + i - 1] == b'\r' => pos + i - 1,
        Some(i) => pos + i,
        None => bytes.len(),
    }
}

/// Where the line after the one holding `pos` starts.
fn next_line_start(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    let pos = pos.min(bytes.len());
    bytes[pos..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |i| pos + i + 1)
}

/// The column of `pos`, in bytes (indentation is spaces).
fn column(text: &str, pos: usize) -> usize {
    pos - line_start(text, pos)
}

/// New text for a range of the original.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splice {
    pub range: Range<usize>,
    pub text: String,
}

/// An edit could not be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("two edits overlap")]
    Overlap,
    #[error("{0}")]
    Unsupported(&'static str),
}

/// The text with the splices (computed against it) applied. Splices at the
/// same place apply in the order given.
pub fn apply(text: &str, mut splices: Vec<Splice>) -> Result<String, EditError> {
    splices.sort_by_key(|s| (s.range.start, s.range.end));
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for splice in splices {
        let (start, end) = (splice.range.start, splice.range.end);
        let kept = text.get(cursor..start).filter(|_| start <= end);
        let (Some(kept), true) = (kept, text.get(start..end).is_some()) else {
            return Err(EditError::Overlap);
        };
        out.push_str(kept);
        out.push_str(&splice.text);
        cursor = end;
    }
    out.push_str(text.get(cursor..).unwrap_or_default());
    Ok(out)
}

/// A new scalar: a string, or the text of a number, boolean or null
/// (written plain: the type is the value's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewScalar {
    Str(String),
    Plain(String),
}

impl NewScalar {
    /// What the scalar reads back as.
    pub fn value(&self) -> &str {
        match self {
            NewScalar::Str(s) | NewScalar::Plain(s) => s,
        }
    }
}

/// Sets a scalar node to `new`, in the style of the old value where the new
/// one allows: quotes are kept, a block scalar stays a block when the new
/// value is a string that fits one. A string is quoted when plain text
/// would read as another type or would not parse.
pub fn set_scalar(doc: &Document<'_>, node: &Node, new: &NewScalar) -> Vec<Splice> {
    let text = doc.text;
    let Some(old) = node.scalar() else {
        return Vec::new();
    };
    if let Some(block) = &old.block {
        let header_line_end = line_end(text, block.header.end);
        let body_end = if block.body.is_empty() {
            header_line_end
        } else {
            block.body.end
        };
        if let NewScalar::Str(s) = new
            && let Some((header, lines)) = block_lines(s, old.style)
        {
            let indent = if block.body.is_empty() {
                indentation(text, block.header.start) + 2
            } else {
                block.indent
            };
            let pad = " ".repeat(indent);
            let mut body = String::new();
            for line in lines {
                body.push_str(doc.newline);
                if !line.is_empty() {
                    body.push_str(&pad);
                    body.push_str(line);
                }
            }
            return vec![
                Splice {
                    range: block.header.clone(),
                    text: header,
                },
                Splice {
                    range: header_line_end..body_end,
                    text: body,
                },
            ];
        }
        return vec![
            Splice {
                range: block.header.clone(),
                text: inline(new, Style::Plain, false),
            },
            Splice {
                range: header_line_end..body_end,
                text: String::new(),
            },
        ];
    }
    let mut rendered = inline(new, old.style, node.in_flow);
    // An empty value sits right after its `:` or `-`.
    if old.colon_missing {
        rendered.insert_str(0, ": ");
    } else if node.start == node.end
        && text[..node.start]
            .chars()
            .next_back()
            .is_some_and(|c| !c.is_whitespace())
    {
        rendered.insert(0, ' ');
    }
    vec![Splice {
        range: node.start..node.end,
        text: rendered,
    }]
}

/// Characters a plain, single-quoted or block scalar cannot hold as they
/// are: controls (tabs aside, where allowed), the byte order mark, and the
/// line and paragraph separators, which YAML 1.1 readers (Go's) take for
/// line breaks.
fn awkward(c: char, tab_ok: bool) -> bool {
    (c.is_control() && !(tab_ok && c == '\t')) || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}')
}

/// The leading spaces of the line holding `pos`.
fn indentation(text: &str, pos: usize) -> usize {
    let start = line_start(text, pos);
    text[start..].bytes().take_while(|b| *b == b' ').count()
}

/// A string as a block scalar: its indicator and its lines, when a block
/// can hold it exactly (no other control characters, no leading space that
/// an indentation indicator would have to announce, no trailing blank
/// lines that the chomping would have to keep). A one-line value keeps the
/// old indicator; several lines become literal, which keeps them as they
/// are.
fn block_lines(s: &str, old: Style) -> Option<(String, Vec<&str>)> {
    let (body, chomp) = match s.strip_suffix('\n') {
        Some(body) => (body, ""),
        None => (s, "-"),
    };
    let first = body.lines().find(|l| !l.is_empty())?;
    let fits = !first.starts_with([' ', '\t'])
        && !body.ends_with('\n')
        && !s.chars().any(|c| c != '\n' && awkward(c, true))
        && body
            .split('\n')
            .all(|l| l.is_empty() || !l.trim().is_empty());
    if !fits {
        return None;
    }
    let indicator = if old == Style::Folded && !body.contains('\n') {
        '>'
    } else {
        '|'
    };
    Some((format!("{indicator}{chomp}"), body.split('\n').collect()))
}

/// A scalar on one line: a string in the old quotes if they can hold it,
/// else plain when that reads back as the same string, else in double
/// quotes (Go's `%q`, whose escapes YAML reads).
fn inline(new: &NewScalar, old: Style, in_flow: bool) -> String {
    let s = match new {
        NewScalar::Plain(text) => return text.clone(),
        NewScalar::Str(s) => s,
    };
    match old {
        Style::Double => golang::quote(s),
        Style::Single if !s.chars().any(|c| awkward(c, false)) => {
            format!("'{}'", s.replace('\'', "''"))
        }
        _ if plain_reads_back(s, in_flow) => s.clone(),
        _ => golang::quote(s),
    }
}

/// Whether `s` written plain reads back as the same string: it parses as a
/// plain scalar there, and no YAML 1.1 or 1.2 reader (Helm's included)
/// takes it for a number, boolean, null or timestamp. Kargo quotes what Go
/// parses as a float or boolean, or as JSON; so does this.
pub fn plain_reads_back(s: &str, in_flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let parses = !"-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(":\t")
        && !s.contains(" #")
        && !s.contains("\t#")
        && !s.chars().any(|c| awkward(c, false))
        && !(in_flow && s.contains([',', '[', ']', '{', '}', ':']));
    parses
        && !yaml_reads_as_non_string(s)
        && golang::parse_float(s).is_none()
        && golang::parse_bool(s).is_none()
        && serde_json::from_str::<serde::de::IgnoredAny>(s).is_err()
        && !sexagesimal(s)
}

/// YAML 1.1's base-60 numbers (`1:30`, `-190:20:30.15`).
fn sexagesimal(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut parts = body.split(':');
    let head = parts.next().unwrap_or_default();
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '_');
    let rest: Vec<&str> = parts.collect();
    digits(head)
        && !rest.is_empty()
        && rest.iter().enumerate().all(|(i, p)| {
            let p = if i + 1 == rest.len() {
                p.split_once('.').map_or(*p, |(whole, _)| whole)
            } else {
                p
            };
            digits(p) && p.len() <= 2
        })
}

/// A value to write as new YAML: strings, mappings and sequences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Map(Vec<(String, Value)>),
    Seq(Vec<Value>),
}

/// A string as a new scalar: plain where that reads back, else quoted.
fn string(s: &str, in_flow: bool) -> String {
    if plain_reads_back(s, in_flow) {
        s.to_string()
    } else {
        golang::quote(s)
    }
}

/// A value in flow style, on one line.
pub fn flow(value: &Value) -> String {
    match value {
        Value::Str(s) => string(s, true),
        Value::Map(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", string(k, true), flow(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Seq(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// How new block collections are laid out, taken from the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Columns from a key to the dashes of its sequence (0: `key:\n- a`).
    pub sequence_offset: usize,
    /// Columns from a dash to the keys of its item's mapping.
    pub item_offset: usize,
}

impl Layout {
    /// The layout of the first block sequence under a key in the document,
    /// or Kargo's (kyaml's) `key:\n- a`.
    pub fn of(doc: &Document<'_>) -> Self {
        fn search(doc: &Document<'_>, node: &Node) -> Option<Layout> {
            match &node.kind {
                Kind::Mapping {
                    flow: false,
                    entries,
                } => entries.iter().find_map(|(k, v)| match &v.kind {
                    Kind::Sequence { flow: false, items } => {
                        let first = items.first()?;
                        let dash = dash_of(doc.text, first)?;
                        let offset =
                            column(doc.text, dash).checked_sub(column(doc.text, k.start))?;
                        Some(Layout {
                            sequence_offset: offset,
                            item_offset: item_offset(doc.text, dash, first),
                        })
                    }
                    _ => search(doc, v),
                }),
                Kind::Sequence { items, .. } => items.iter().find_map(|i| search(doc, i)),
                _ => None,
            }
        }
        doc.root
            .as_ref()
            .and_then(|r| search(doc, r))
            .unwrap_or(Layout {
                sequence_offset: 0,
                item_offset: 2,
            })
    }
}

/// Where the dash of a block sequence item is: before its content, with
/// only spaces and line breaks between.
fn dash_of(text: &str, item: &Node) -> Option<usize> {
    let before = text[..item.start].trim_end_matches([' ', '\t', '\n', '\r']);
    before.ends_with('-').then(|| before.len() - 1)
}

/// Columns from an item's dash to its content (2 when the content starts on
/// another line).
fn item_offset(text: &str, dash: usize, item: &Node) -> usize {
    if line_start(text, dash) == line_start(text, item.start) {
        item.start - dash
    } else {
        2
    }
}

/// Writes `value` in block style as the value of a key at column `key_col`
/// (after the `key:`), or as a sequence item's content: lines start with
/// `newline` and are indented from `key_col`.
fn block_value(value: &Value, key_col: usize, layout: Layout, newline: &str, out: &mut String) {
    match value {
        Value::Str(s) => {
            out.push(' ');
            out.push_str(&string(s, false));
        }
        Value::Map(entries) if entries.is_empty() => out.push_str(" {}"),
        Value::Seq(items) if items.is_empty() => out.push_str(" []"),
        Value::Map(entries) => {
            for (k, v) in entries {
                out.push_str(newline);
                out.push_str(&" ".repeat(key_col + 2));
                entry(k, v, key_col + 2, layout, newline, out);
            }
        }
        Value::Seq(items) => {
            let dash = key_col + layout.sequence_offset;
            for item in items {
                out.push_str(newline);
                sequence_item(item, dash, layout, newline, out);
            }
        }
    }
}

/// `key: value` starting at the current position, the key at `col`.
fn entry(key: &str, value: &Value, col: usize, layout: Layout, newline: &str, out: &mut String) {
    out.push_str(&string(key, false));
    out.push(':');
    block_value(value, col, layout, newline, out);
}

/// `- item` with the dash at `dash` (the indentation included).
fn sequence_item(item: &Value, dash: usize, layout: Layout, newline: &str, out: &mut String) {
    out.push_str(&" ".repeat(dash));
    out.push('-');
    match item {
        Value::Map(entries) if !entries.is_empty() => {
            let col = dash + layout.item_offset.max(2);
            out.push_str(&" ".repeat(layout.item_offset.max(2) - 1));
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(newline);
                    out.push_str(&" ".repeat(col));
                }
                entry(k, v, col, layout, newline, out);
            }
        }
        Value::Str(s) => {
            out.push(' ');
            out.push_str(&string(s, false));
        }
        other => {
            out.push(' ');
            out.push_str(&flow(other));
        }
    }
}

/// Adds `key: value` to a mapping: after its entry `after` (the last when
/// `None`), on a new line indented like the others; in a flow mapping,
/// before the closing brace.
pub fn add_entry(
    doc: &Document<'_>,
    mapping: &Node,
    after: Option<usize>,
    key: &str,
    value: &Value,
    layout: Layout,
) -> Result<Splice, EditError> {
    let text = doc.text;
    let Kind::Mapping {
        flow: is_flow,
        entries,
    } = &mapping.kind
    else {
        return Err(EditError::Unsupported("not a mapping"));
    };
    if *is_flow {
        let item = format!("{}: {}", string(key, true), flow(value));
        let (at, item) = match entries.last() {
            Some((_, v)) => (v.end, format!(", {item}")),
            None => (mapping.start + 1, item),
        };
        return Ok(Splice {
            range: at..at,
            text: item,
        });
    }
    let Some((first_key, _)) = entries.first() else {
        return Err(EditError::Unsupported("an empty block mapping"));
    };
    let col = column(text, first_key.start);
    let (_, anchor) = entries
        .get(after.unwrap_or(entries.len() - 1))
        .ok_or(EditError::Unsupported("no such entry"))?;
    let at = line_end(text, anchor.end);
    let mut out = String::from(doc.newline);
    out.push_str(&" ".repeat(col));
    entry(key, value, col, layout, doc.newline, &mut out);
    Ok(Splice {
        range: at..at,
        text: out,
    })
}

/// Removes entry `index` of a block mapping: its lines, or, when the key
/// shares its line with a sequence dash, the text up to the next key.
pub fn remove_entry(doc: &Document<'_>, mapping: &Node, index: usize) -> Result<Splice, EditError> {
    let text = doc.text;
    let Kind::Mapping {
        flow: false,
        entries,
    } = &mapping.kind
    else {
        return Err(EditError::Unsupported("removing from a flow mapping"));
    };
    let (key, value) = entries
        .get(index)
        .ok_or(EditError::Unsupported("no such entry"))?;
    let start = line_start(text, key.start);
    if text[start..key.start].trim().is_empty() {
        return Ok(Splice {
            range: start..next_line_start(text, value.end),
            text: String::new(),
        });
    }
    match entries.get(index + 1) {
        Some((next, _)) => Ok(Splice {
            range: key.start..next.start,
            text: String::new(),
        }),
        None => Err(EditError::Unsupported(
            "removing the only key of a sequence item",
        )),
    }
}

/// Adds an item to a block sequence, before item `before` or at the end,
/// with the dash and indentation of the items there.
pub fn add_item(
    doc: &Document<'_>,
    sequence: &Node,
    before: Option<usize>,
    item: &Value,
) -> Result<Splice, EditError> {
    let text = doc.text;
    let Kind::Sequence { flow: false, items } = &sequence.kind else {
        return Err(EditError::Unsupported("adding to a flow sequence"));
    };
    let unsupported = EditError::Unsupported("a sequence item whose dash is not before it");
    let neighbour = match before {
        Some(i) => items.get(i),
        None => items.last(),
    }
    .ok_or(EditError::Unsupported("no such item"))?;
    let dash = dash_of(text, neighbour).ok_or(unsupported)?;
    let dash_line = line_start(text, dash);
    if !text[dash_line..dash].trim().is_empty() {
        return Err(EditError::Unsupported(
            "a sequence item that shares its line",
        ));
    }
    let layout = Layout {
        sequence_offset: 0,
        item_offset: item_offset(text, dash, neighbour),
    };
    let mut out = String::new();
    match before {
        Some(_) => {
            sequence_item(item, dash - dash_line, layout, doc.newline, &mut out);
            out.push_str(doc.newline);
            Ok(Splice {
                range: dash_line..dash_line,
                text: out,
            })
        }
        None => {
            out.push_str(doc.newline);
            sequence_item(item, dash - dash_line, layout, doc.newline, &mut out);
            let at = line_end(text, neighbour.end);
            Ok(Splice {
                range: at..at,
                text: out,
            })
        }
    }
}

/// Replaces a node with `value` in flow style (for a flow node, or a node
/// inside a flow collection).
pub fn replace_flow(doc: &Document<'_>, node: &Node, value: &Value) -> Splice {
    let mut rendered = flow(value);
    // An empty value sits right after its `:` or `-`.
    if node.start == node.end
        && doc.text[..node.start]
            .chars()
            .next_back()
            .is_some_and(|c| !c.is_whitespace())
    {
        rendered.insert(0, ' ');
    }
    Splice {
        range: node.start..node.end,
        text: rendered,
    }
}

/// Replaces the null value of `key` in a block mapping with `value` in
/// block style: `key: ~` becomes `key:` and the value follows the line,
/// after any comment there.
pub fn replace_null(
    doc: &Document<'_>,
    key: &Node,
    node: &Node,
    value: &Value,
    layout: Layout,
) -> Vec<Splice> {
    let text = doc.text;
    let colon = text[..node.start].trim_end().len();
    let mut out = String::new();
    block_value(
        value,
        column(text, key.start),
        layout,
        doc.newline,
        &mut out,
    );
    let at = line_end(text, node.end.max(colon));
    vec![
        Splice {
            range: colon..node.end,
            text: String::new(),
        },
        Splice {
            range: at..at,
            text: out,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(key: &str) -> Vec<String> {
        split_key(key).unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    /// `text` with the scalar at `key` set to `new`.
    fn set(text: &str, key: &str, new: NewScalar) -> String {
        let doc = Document::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let node = doc.find(&parts(key)).unwrap_or_else(|e| panic!("{e}"));
        apply(text, set_scalar(&doc, node, &new)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn string(s: &str) -> NewScalar {
        NewScalar::Str(s.to_string())
    }

    fn plain(s: &str) -> NewScalar {
        NewScalar::Plain(s.to_string())
    }

    /// Reads the scalar at `key` back from `text`.
    fn read(text: &str, key: &str) -> String {
        let doc = Document::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let node = doc
            .find(&parts(key))
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        node.scalar().map(|s| s.value.clone()).unwrap_or_default()
    }

    #[test]
    fn keys_split_on_unescaped_dots_as_kargo_splits_them() {
        assert_eq!(parts("image.tag"), ["image", "tag"]);
        assert_eq!(parts(r"example\.com/version"), ["example.com/version"]);
        assert_eq!(parts(r"a.b\:c.:2"), ["a", "b:c", "2"]);
        assert_eq!(parts("  spaced.key "), ["spaced", "key"]);
        assert_eq!(split_key(""), Err(KeyError::Empty));
        assert!(matches!(split_key("a..b"), Err(KeyError::EmptyPart(_))));
        assert!(matches!(split_key("a."), Err(KeyError::EmptyPart(_))));
        assert!(matches!(split_key(r"a\nb"), Err(KeyError::BadEscape(_))));
        assert!(matches!(split_key(r"a\\b"), Err(KeyError::BadEscape(_))));
        assert!(matches!(split_key("a:b"), Err(KeyError::Colon(_))));
    }

    #[test]
    fn a_plain_value_changes_and_its_comment_stays() {
        let text = "image:\n  tag: v1.0.0   # the tag\n  pullPolicy: Always\n";
        assert_eq!(
            set(text, "image.tag", string("v1.1.0")),
            "image:\n  tag: v1.1.0   # the tag\n  pullPolicy: Always\n"
        );
    }

    #[test]
    fn quotes_are_kept_when_the_old_value_had_them() {
        let text = "a: \"1.0\"\nb: 'x'\nc: 'it''s'\n";
        let out = set(text, "a", string("2.0"));
        assert_eq!(out, "a: \"2.0\"\nb: 'x'\nc: 'it''s'\n");
        let out = set(&out, "b", string("it's"));
        assert_eq!(out, "a: \"2.0\"\nb: 'it''s'\nc: 'it''s'\n");
        assert_eq!(read(&out, "b"), "it's");
        assert_eq!(
            set(text, "c", string("a\nb")),
            "a: \"1.0\"\nb: 'x'\nc: \"a\\nb\"\n"
        );
    }

    #[test]
    fn a_plain_string_is_quoted_when_plain_text_would_read_as_another_type() {
        for value in [
            "1.5",
            "42",
            "true",
            "yes",
            "off",
            "null",
            "~",
            "",
            "0x1F",
            "1e3",
            "2024-01-02",
            "1:30",
            "t",
            "inf",
            "[1]",
            "- a",
            "a: b",
            "a #b",
            "#c",
            "*x",
            "'q",
            " pad",
        ] {
            let out = set("tag: v1\n", "tag", string(value));
            assert!(out.starts_with("tag: \""), "{value:?}: {out}");
            assert_eq!(read(&out, "tag"), value, "{out}");
        }
        for value in [
            "v1.2.3",
            "1.2.3",
            "sha256:abc",
            "a b",
            "ghcr.io/x/y:1.0",
            "-a",
        ] {
            let out = set("tag: v1\n", "tag", string(value));
            let quoted = out.starts_with("tag: \"");
            assert_eq!(quoted, value == "-a", "{value:?}: {out}");
            assert_eq!(read(&out, "tag"), value, "{out}");
        }
    }

    #[test]
    fn numbers_booleans_and_null_are_written_plain_even_over_quotes() {
        assert_eq!(set("n: \"3\"\n", "n", plain("4")), "n: 4\n");
        assert_eq!(set("b: 'no'\n", "b", plain("true")), "b: true\n");
    }

    #[test]
    fn an_empty_value_gets_one() {
        assert_eq!(set("a:\nb: 1\n", "a", string("x")), "a: x\nb: 1\n");
        assert_eq!(set("a:   # later\n", "a", plain("1")), "a: 1   # later\n");
        assert_eq!(set("l:\n-\n- b\n", "l.0", string("a")), "l:\n- a\n- b\n");
        assert_eq!(
            set("l:\n- b\n-   # c\n", "l.1", string("a")),
            "l:\n- b\n- a   # c\n"
        );
        assert_eq!(set("f: {x: , y}\n", "f.x", plain("1")), "f: {x: 1 , y}\n");
        assert_eq!(set("f: {x: , y}\n", "f.y", plain("2")), "f: {x: , y: 2}\n");
    }

    #[test]
    fn sequence_items_are_found_by_index() {
        let text =
            "containers:\n  - name: app\n    image: app:v1\n  - name: side\n    image: side:v1\n";
        let out = set(text, "containers.1.image", string("side:v2"));
        assert_eq!(out, text.replace("side:v1", "side:v2"));
    }

    #[test]
    fn keys_with_dots_are_found_through_escapes() {
        let text = "configs:\n  example.com/feature:\n    enabled: false\n";
        let out = set(text, r"configs.example\.com/feature.enabled", plain("true"));
        assert_eq!(out, text.replace("false", "true"));
    }

    #[test]
    fn flow_collections_are_edited_in_place() {
        let text = "img: {repo: a, tag: v1}   # flow\nlist: [x, \"y\", z]\n";
        let out = set(text, "img.tag", string("v2"));
        assert_eq!(
            out,
            "img: {repo: a, tag: v2}   # flow\nlist: [x, \"y\", z]\n"
        );
        let out = set(&out, "list.1", string("w"));
        assert_eq!(
            out,
            "img: {repo: a, tag: v2}   # flow\nlist: [x, \"w\", z]\n"
        );
        // Plain text that would end a flow scalar is quoted.
        let out = set(text, "list.0", string("a,b"));
        assert!(out.contains("[\"a,b\", \"y\", z]"), "{out}");
    }

    #[test]
    fn a_multi_line_plain_or_quoted_value_is_replaced_whole() {
        let text = "a: first\n  second\nb: \"x\n  y\"\nc: 1\n";
        let out = set(text, "a", string("one"));
        assert_eq!(out, "a: one\nb: \"x\n  y\"\nc: 1\n");
        let out = set(&out, "b", string("z"));
        assert_eq!(out, "a: one\nb: \"z\"\nc: 1\n");
    }

    #[test]
    fn a_block_scalar_stays_a_block_for_text_and_goes_inline_otherwise() {
        let text = "script: |  # run\n  echo one\n  echo two\n\nnext: 1\n";
        let out = set(text, "script", string("echo three\n"));
        assert_eq!(out, "script: |  # run\n  echo three\n\nnext: 1\n");
        let out = set(text, "script", string("a\nb"));
        assert_eq!(out, "script: |-  # run\n  a\n  b\n\nnext: 1\n");
        assert_eq!(read(&out, "script"), "a\nb");
        let out = set(text, "script", plain("5"));
        assert_eq!(out, "script: 5  # run\n\nnext: 1\n");
        let out = set(text, "script", string(" leading space"));
        assert_eq!(out, "script: \" leading space\"  # run\n\nnext: 1\n");
    }

    #[test]
    fn a_folded_scalar_keeps_its_indicator_for_one_line() {
        let text = "d: >-\n    some text\n    folded\ne: 1\n";
        let out = set(text, "d", string("new text"));
        assert_eq!(out, "d: >-\n    new text\ne: 1\n");
        assert_eq!(read(&out, "d"), "new text");
    }

    #[test]
    fn an_empty_block_scalar_gets_content_indented_under_its_key() {
        let text = "a:\n  b: |\n  c: 1\n";
        let out = set(text, "a.b", string("x\n"));
        assert_eq!(out, "a:\n  b: |\n    x\n  c: 1\n");
        assert_eq!(read(&out, "a.b"), "x\n");
    }

    #[test]
    fn anchors_and_tags_stay_on_the_value() {
        let text = "a: &v 1.0\nb: !!str 2\n";
        let out = set(text, "a", plain("1.1"));
        assert_eq!(out, "a: &v 1.1\nb: !!str 2\n");
        let out = set(text, "b", string("3"));
        assert_eq!(out, "a: &v 1.0\nb: !!str \"3\"\n");
    }

    #[test]
    fn only_the_first_document_is_searched_and_the_others_are_kept() {
        let text = "%YAML 1.2\n---\na: 1\n...\n---\na: 2\n";
        assert_eq!(
            set(text, "a", plain("3")),
            "%YAML 1.2\n---\na: 3\n...\n---\na: 2\n"
        );
    }

    #[test]
    fn crlf_line_endings_are_kept() {
        let text = "a: |\r\n  x\r\nb: 1\r\n";
        let out = set(text, "a", string("y\nz\n"));
        assert_eq!(out, "a: |\r\n  y\r\n  z\r\nb: 1\r\n");
        assert_eq!(set(text, "b", plain("2")), "a: |\r\n  x\r\nb: 2\r\n");
    }

    #[test]
    fn lookups_that_lead_nowhere_say_where_they_stopped() {
        let doc = Document::parse("a:\n  b: [1, 2]\nc: *x\n").map_err(|e| e.to_string());
        // The alias has no anchor: the parser refuses it.
        assert!(doc.is_err());
        let text = "a:\n  b: [1, 2]\nc: &x {d: 1}\ne: *x\n";
        let doc = Document::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let find = |k: &str| doc.find(&parts(k)).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(find("a.x"), Err("\"a\" has no key \"x\"".into()));
        assert_eq!(find("x"), Err("the document has no key \"x\"".into()));
        assert_eq!(
            find("a.b.first"),
            Err("\"a.b\" is a sequence and \"first\" is not an index".into())
        );
        assert_eq!(
            find("a.b.2"),
            Err("\"a.b\" has 2 items, so 2 is out of range".into())
        );
        assert_eq!(
            find("a.b.-1"),
            Err("\"a.b\" has 2 items, so -1 is out of range".into())
        );
        assert_eq!(
            find("a.b.0.x"),
            Err("\"a.b.0\" is a scalar, so it has no \"x\"".into())
        );
        assert_eq!(
            find("e.d"),
            Err(
                "\"e\" is an alias, which is not followed: update the anchored value instead"
                    .into()
            )
        );
        assert_eq!(find("c.d"), Ok(()));
        let empty = Document::parse("# nothing\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(empty.find(&parts("a")).map(|_| ()), Err(FindError::Empty));
    }

    #[test]
    fn any_string_reads_back_whatever_the_old_style() {
        let values = [
            "",
            " ",
            "a\nb",
            "a\n",
            "a\n\n",
            "\n",
            "\na",
            "tab\there",
            "quote\"s",
            "it's",
            "#",
            "a #b",
            "a: b",
            "- x",
            "[x]",
            "{x}",
            "x,y",
            "é",
            "😀",
            "null",
            "~",
            "TRUE",
            "0o17",
            "0755",
            ".5",
            "+1",
            "1_0",
            "\\",
            "%x",
            "@x",
            "`x",
            "!x",
            "&x",
            "*x",
            "|",
            ">",
            "---",
            "...",
            "a\tb",
            "\r",
            "x\r\ny",
            "\u{85}",
            "a\u{2028}b",
            "\u{feff}x",
            "  two\n lines",
            "end space ",
            "x\n  indented\n",
            "?",
            ":",
            "-",
            "a:b",
            "? x",
        ];
        let contexts = [
            ("k: old\n", "k"),
            ("k: 'old'\n", "k"),
            ("k: \"old\"\n", "k"),
            ("k: |\n  old\nz: 1\n", "k"),
            ("k: >-\n  old\n\nz: 1\n", "k"),
            ("k:\nz: 1\n", "k"),
            ("f: {k: old, z: 1}\n", "f.k"),
            ("l: [old, z]\n", "l.0"),
            ("l:\n- old\n- z\n", "l.0"),
            ("- a: old\n  z: 1\n", "0.a"),
        ];
        for (text, key) in contexts {
            for value in values {
                let out = set(text, key, string(value));
                assert_eq!(read(&out, key), value, "{text:?} with {value:?}: {out:?}");
            }
        }
    }

    #[test]
    fn invalid_yaml_is_refused() {
        assert!(
            Document::parse(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))).is_err()
        );
        let deep = format!("a: {}1{}", "[".repeat(250), "]".repeat(250));
        assert!(Document::parse(&deep).is_ok());
        assert!(Document::parse("a: [1, 2\n").is_err());
        assert!(Document::parse("a: b\n c: d\n  - e").is_err());
    }

    #[test]
    fn plain_text_is_used_only_where_it_reads_back() {
        assert!(plain_reads_back("v1.2.3", false));
        assert!(plain_reads_back("a,b", false));
        assert!(!plain_reads_back("a,b", true));
        assert!(!plain_reads_back("1:20", false));
        assert!(plain_reads_back("1:200", false));
        assert!(!plain_reads_back("No", false));
        assert!(!plain_reads_back("1_000", false));
    }

    fn images(text: &str) -> (Document<'_>, Layout) {
        let doc = Document::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let layout = Layout::of(&doc);
        (doc, layout)
    }

    fn image(name: &str, tag: &str) -> Value {
        Value::Map(vec![
            ("name".into(), Value::Str(name.into())),
            ("newTag".into(), Value::Str(tag.into())),
        ])
    }

    #[test]
    fn a_key_is_added_after_the_last_entry_with_the_file_s_sequence_layout() {
        let text = "resources:\n  - a.yaml\nkind: Kustomization # k\n";
        let (doc, layout) = images(text);
        assert_eq!(
            layout,
            Layout {
                sequence_offset: 2,
                item_offset: 2
            }
        );
        let Some(root) = &doc.root else {
            panic!("no root")
        };
        let splice = add_entry(
            &doc,
            root,
            None,
            "images",
            &Value::Seq(vec![image("app", "1.0")]),
            layout,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let out = apply(text, vec![splice]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            "resources:\n  - a.yaml\nkind: Kustomization # k\nimages:\n  - name: app\n    newTag: \"1.0\"\n"
        );
    }

    #[test]
    fn items_are_added_before_an_item_or_at_the_end_and_entries_removed() {
        let text = "images:\n- name: b   # b\n  newName: other\n  newTag: v1\n";
        let (doc, _) = images(text);
        let Some(root) = &doc.root else {
            panic!("no root")
        };
        let Some(seq) = root.get("images") else {
            panic!("no images")
        };
        let Kind::Sequence { items, .. } = &seq.kind else {
            panic!("not a sequence")
        };
        let splices = vec![
            add_item(&doc, seq, Some(0), &image("a", "v1")).unwrap_or_else(|e| panic!("{e}")),
            add_item(&doc, seq, None, &image("c", "v1")).unwrap_or_else(|e| panic!("{e}")),
            remove_entry(&doc, &items[0], 1).unwrap_or_else(|e| panic!("{e}")),
        ];
        let out = apply(text, splices).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            "images:\n- name: a\n  newTag: v1\n- name: b   # b\n  newTag: v1\n- name: c\n  newTag: v1\n"
        );
    }

    #[test]
    fn a_first_key_on_the_dash_line_is_removed_up_to_the_next_key() {
        let text = "l:\n  - newTag: v1\n    name: a\n";
        let (doc, _) = images(text);
        let Some(item) = doc.find(&parts("l.0")).ok() else {
            panic!("no item")
        };
        let splice = remove_entry(&doc, item, 0).unwrap_or_else(|e| panic!("{e}"));
        let out = apply(text, vec![splice]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "l:\n  - name: a\n");
    }

    #[test]
    fn a_null_becomes_a_block_value_and_a_flow_node_a_flow_value() {
        let text = "images: ~  # none yet\nkind: K\n";
        let (doc, layout) = images(text);
        let Some(Kind::Mapping { entries, .. }) = doc.root.as_ref().map(|r| &r.kind) else {
            panic!("no root")
        };
        let (key, node) = &entries[0];
        assert!(node.is_null());
        let value = Value::Seq(vec![image("a", "v1")]);
        let out = apply(text, replace_null(&doc, key, node, &value, layout))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            "images:  # none yet\n- name: a\n  newTag: v1\nkind: K\n"
        );

        let text = "images: []\n";
        let (doc, _) = images(text);
        let Some(node) = doc.root.as_ref().and_then(|r| r.get("images")) else {
            panic!("no images")
        };
        let out =
            apply(text, vec![replace_flow(&doc, node, &value)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "images: [{name: a, newTag: v1}]\n");
    }

    #[test]
    fn overlapping_splices_are_refused() {
        let splices = vec![
            Splice {
                range: 0..3,
                text: "x".into(),
            },
            Splice {
                range: 2..4,
                text: "y".into(),
            },
        ];
        assert_eq!(apply("abcdef", splices), Err(EditError::Overlap));
    }

    /// Every node of the tree, depth first.
    fn nodes<'n>(node: &'n Node, out: &mut Vec<&'n Node>) {
        out.push(node);
        match &node.kind {
            Kind::Mapping { entries, .. } => entries.iter().for_each(|(k, v)| {
                nodes(k, out);
                nodes(v, out);
            }),
            Kind::Sequence { items, .. } => items.iter().for_each(|i| nodes(i, out)),
            _ => {}
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever the text, parsing and every edit either work or say
        /// why: no panic.
        #[test]
        fn no_text_makes_the_editor_panic(text in "[a-c:\\- \n#'\"|>{}\\[\\],&*!?\t0é~]{0,60}") {
            let Ok(doc) = Document::parse(&text) else { return Ok(()) };
            let mut all = Vec::new();
            if let Some(root) = &doc.root {
                nodes(root, &mut all);
            }
            let layout = Layout::of(&doc);
            let value = Value::Seq(vec![image("a", "b")]);
            for node in all {
                for new in [string("x y"), string("a\nb\n"), plain("1")] {
                    let _ = apply(&text, set_scalar(&doc, node, &new));
                }
                let _ = add_entry(&doc, node, None, "k", &value, layout);
                let _ = remove_entry(&doc, node, 0);
                let _ = add_item(&doc, node, Some(0), &image("a", "b"));
                let _ = add_item(&doc, node, None, &image("a", "b"));
                let _ = apply(&text, vec![replace_flow(&doc, node, &value)]);
                if let Kind::Mapping { entries, .. } = &node.kind {
                    for (k, v) in entries {
                        let _ = apply(&text, replace_null(&doc, k, v, &value, layout));
                    }
                }
            }
        }
    }
}
