//! A JSON editor that sets a value at a path as tidwall/sjson's `Set` does
//! (what Kargo's `json-update` uses): an existing value's bytes are
//! replaced and the rest of the document is left as it was; a missing key
//! is added to its object, a missing index appended to its array (padded
//! with nulls), and a scalar in the way replaced by the object or array the
//! path needs. Where sjson would squeeze a new member or item against its
//! neighbours, this one copies the spacing of the one before it.

use std::ops::Range;

use crate::expr::golang;

/// The most nulls an index past the end of an array may add.
const MAX_PADDING: usize = 10_000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonEditError {
    #[error("the path is empty")]
    EmptyPath,
    #[error(
        "{0:?} uses query syntax (| # @ * ?), which only finds existing values; escape those characters with \\ to use them in a key"
    )]
    Query(String),
    #[error("cannot set array element for non-numeric key {0:?}")]
    NotIndex(String),
    #[error("index {index} is more than {MAX_PADDING} past the end of an array of {len}")]
    TooFar { index: usize, len: usize },
    #[error("not valid JSON: {0}")]
    Invalid(String),
}

/// One part of a path: a key, or an index where it is all digits, unless a
/// leading `:` forces a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub force_key: bool,
}

impl Part {
    /// The index this part names, as sjson reads one (digits only).
    fn index(&self) -> Option<usize> {
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.name.parse().ok()
    }

    /// Whether the part makes an array when the path has to create one:
    /// an index, or `-1` (append).
    fn makes_array(&self) -> bool {
        !self.force_key && (self.index().is_some() || self.name == "-1")
    }
}

/// Splits an sjson path: parts separated by dots, `\` escaping the next
/// character, a leading `:` making a part a key even if it is all digits.
/// `|`, `#`, `@`, `*` and `?` (unescaped) are query syntax, refused.
pub fn split_path(path: &str) -> Result<Vec<Part>, JsonEditError> {
    if path.is_empty() {
        return Err(JsonEditError::EmptyPath);
    }
    let mut parts = Vec::new();
    let mut chars = path.chars().peekable();
    loop {
        let force_key = chars.next_if_eq(&':').is_some();
        let mut name = String::new();
        let mut more = false;
        while let Some(c) = chars.next() {
            match c {
                '.' => {
                    more = true;
                    break;
                }
                '\\' => name.extend(chars.next()),
                '|' | '#' | '@' | '*' | '?' => return Err(JsonEditError::Query(path.to_string())),
                c => name.push(c),
            }
        }
        parts.push(Part { name, force_key });
        if !more {
            return Ok(parts);
        }
    }
}

/// A value's text as sjson writes it: a string quoted (escaped as Go's
/// JSON encoder does when it has to be), a number in full decimal, a
/// boolean. `None` for null and collections, which Kargo refuses.
pub fn raw(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(string(s)),
        serde_json::Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        }),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON string: in plain quotes when it holds nothing to escape (ASCII,
/// no control characters, quotes or backslashes), else escaped as Go's
/// `encoding/json` does, as sjson does.
fn string(s: &str) -> String {
    let plain = |b: u8| (b' '..=0x7f).contains(&b) && b != b'"' && b != b'\\';
    if !s.bytes().all(plain) {
        let mut out = String::new();
        golang::push_json_string(&mut out, s);
        out
    } else {
        format!("\"{s}\"")
    }
}

/// Sets the value at `path` to the JSON text `raw`.
pub fn set(text: &str, path: &[Part], raw: &str) -> Result<String, JsonEditError> {
    if path.is_empty() {
        return Err(JsonEditError::EmptyPath);
    }
    if text.trim().is_empty() {
        // sjson starts an empty document as the container the path needs.
        return container(path, raw);
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| JsonEditError::Invalid(e.to_string()))?;
    let mut scan = Scan {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let root = scan.value()?;
    let splice = set_in(text, &root, path, raw)?;
    let mut out = String::with_capacity(text.len() + splice.1.len());
    out.push_str(&text[..splice.0.start]);
    out.push_str(&splice.1);
    out.push_str(&text[splice.0.end..]);
    Ok(out)
}

type Edit = (Range<usize>, String);

fn set_in(text: &str, node: &Node, path: &[Part], raw: &str) -> Result<Edit, JsonEditError> {
    let (part, rest) = match path {
        [part, rest @ ..] => (part, rest),
        [] => return Ok((node.span.clone(), raw.to_string())),
    };
    let found = match &node.kind {
        Json::Object(members) => members
            .iter()
            .find(|m| m.key == part.name)
            .map(|m| &m.value),
        Json::Array(items) => part
            .index()
            .and_then(|i| items.get(i))
            .map(|item| &item.value),
        Json::Scalar => None,
    };
    if let Some(child) = found {
        return set_in(text, child, rest, raw);
    }
    match &node.kind {
        Json::Object(members) => {
            let key = string(&part.name);
            let value = build_value(path, raw)?;
            Ok(match members.last() {
                Some(last) => {
                    let lead = lead(text, &last.lead, members.len());
                    let sep = &text[last.key_span.end..last.value.span.start];
                    let at = last.value.span.end;
                    (at..at, format!(",{lead}{key}{sep}{value}"))
                }
                None => {
                    let at = node.span.start + 1;
                    (at..at, format!("{key}:{value}"))
                }
            })
        }
        Json::Array(items) => {
            let padding = match part.index() {
                Some(index) if !part.force_key => index.saturating_sub(items.len()),
                _ if !part.force_key && part.name == "-1" => 0,
                _ => return Err(JsonEditError::NotIndex(part.name.clone())),
            };
            if padding > MAX_PADDING {
                return Err(JsonEditError::TooFar {
                    index: items.len() + padding,
                    len: items.len(),
                });
            }
            let value = build_value(path, raw)?;
            Ok(match items.last() {
                Some(last) => {
                    let lead = lead(text, &last.lead, items.len());
                    let mut out = String::new();
                    for _ in 0..padding {
                        out.push_str(&format!(",{lead}null"));
                    }
                    out.push_str(&format!(",{lead}{value}"));
                    (last.value.span.end..last.value.span.end, out)
                }
                None => (
                    node.span.start + 1..node.span.start + 1,
                    format!("{}{value}", "null,".repeat(padding)),
                ),
            })
        }
        Json::Scalar => Ok((node.span.clone(), container(path, raw)?)),
    }
}

/// What goes between a `,` and a new member or item: what the last one has
/// after the `,` or bracket before it. A lone one squeezed against its
/// bracket says nothing: a space then if the file puts spaces after
/// commas.
fn lead<'t>(text: &'t str, last: &Range<usize>, count: usize) -> &'t str {
    match &text[last.clone()] {
        "" if count == 1 && text.contains(", ") => " ",
        lead => lead,
    }
}

/// The object or array that holds `raw` at `path`, compact, as sjson
/// builds it.
fn container(path: &[Part], raw: &str) -> Result<String, JsonEditError> {
    let Some(first) = path.first() else {
        return Ok(raw.to_string());
    };
    if first.makes_array() {
        let padding = first.index().unwrap_or(0);
        if padding > MAX_PADDING {
            return Err(JsonEditError::TooFar {
                index: padding,
                len: 0,
            });
        }
        Ok(format!(
            "[{}{}]",
            "null,".repeat(padding),
            build_value(path, raw)?
        ))
    } else {
        Ok(format!(
            "{{{}:{}}}",
            string(&first.name),
            build_value(path, raw)?
        ))
    }
}

/// The value at `path[0]`: `raw` at the end of the path, else the
/// container the rest of the path needs.
fn build_value(path: &[Part], raw: &str) -> Result<String, JsonEditError> {
    match path {
        [_] | [] => Ok(raw.to_string()),
        [_, rest @ ..] => container(rest, raw),
    }
}

/// A JSON value and where it lies.
#[derive(Debug)]
struct Node {
    kind: Json,
    span: Range<usize>,
}

#[derive(Debug)]
enum Json {
    Object(Vec<Member>),
    Array(Vec<Item>),
    Scalar,
}

#[derive(Debug)]
struct Member {
    key: String,
    /// The whitespace between the `{` or `,` before it and its key.
    lead: Range<usize>,
    key_span: Range<usize>,
    value: Node,
}

#[derive(Debug)]
struct Item {
    /// The whitespace between the `[` or `,` before it and the value.
    lead: Range<usize>,
    value: Node,
}

/// Reads a JSON text (already validated) into nodes with their spans.
struct Scan<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
}

impl Scan<'_> {
    fn invalid(&self) -> JsonEditError {
        JsonEditError::Invalid(format!("unexpected input at byte {}", self.at))
    }

    fn space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<Node, JsonEditError> {
        self.space();
        let start = self.at;
        let kind = match self.bytes.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                Json::Object(self.members()?)
            }
            Some(b'[') => {
                self.at += 1;
                Json::Array(self.items()?)
            }
            Some(b'"') => {
                self.string_span()?;
                Json::Scalar
            }
            Some(_) => {
                while self.bytes.get(self.at).is_some_and(|b| {
                    !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.at += 1;
                }
                Json::Scalar
            }
            None => return Err(self.invalid()),
        };
        Ok(Node {
            kind,
            span: start..self.at,
        })
    }

    /// A string's span, quotes included.
    fn string_span(&mut self) -> Result<Range<usize>, JsonEditError> {
        let start = self.at;
        self.at += 1;
        loop {
            match self.bytes.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(start..self.at);
                }
                Some(b'\\') => self.at += 2,
                Some(_) => self.at += 1,
                None => return Err(self.invalid()),
            }
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonEditError> {
        self.space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.invalid())
        }
    }

    fn members(&mut self) -> Result<Vec<Member>, JsonEditError> {
        let mut members = Vec::new();
        loop {
            let lead_start = self.at;
            self.space();
            match self.bytes.get(self.at) {
                Some(b'}') => {
                    self.at += 1;
                    return Ok(members);
                }
                Some(b'"') => {}
                _ => return Err(self.invalid()),
            }
            let lead = lead_start..self.at;
            let key_span = self.string_span()?;
            let key: String = serde_json::from_str(&self.text[key_span.clone()])
                .map_err(|e| JsonEditError::Invalid(e.to_string()))?;
            self.expect(b':')?;
            let value = self.value()?;
            members.push(Member {
                key,
                lead,
                key_span,
                value,
            });
            self.space();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {}
                _ => return Err(self.invalid()),
            }
        }
    }

    fn items(&mut self) -> Result<Vec<Item>, JsonEditError> {
        let mut items = Vec::new();
        loop {
            let lead_start = self.at;
            self.space();
            if self.bytes.get(self.at) == Some(&b']') {
                self.at += 1;
                return Ok(items);
            }
            let lead = lead_start..self.at;
            let value = self.value()?;
            items.push(Item { lead, value });
            self.space();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {}
                _ => return Err(self.invalid()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<Part> {
        split_path(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn set_str(text: &str, p: &str, raw: &str) -> String {
        set(text, &path(p), raw).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn paths_split_as_sjson_splits_them() {
        let names = |p: &str| -> Vec<(String, bool)> {
            path(p).into_iter().map(|x| (x.name, x.force_key)).collect()
        };
        assert_eq!(
            names(r"a.b\.c.:2.0"),
            [
                ("a".into(), false),
                ("b.c".into(), false),
                ("2".into(), true),
                ("0".into(), false)
            ]
        );
        assert_eq!(names(r"x\:y\\z"), [("x:y\\z".into(), false)]);
        assert!(matches!(split_path("a.#.b"), Err(JsonEditError::Query(_))));
        assert_eq!(names(r"a\#"), [("a#".into(), false)]);
        assert_eq!(split_path(""), Err(JsonEditError::EmptyPath));
    }

    #[test]
    fn an_existing_value_is_replaced_and_nothing_else_moves() {
        let text = "{\n  \"app\": {\"version\": \"1.0.0\" },\n  \"list\": [1, 2]\n}\n";
        assert_eq!(
            set_str(text, "app.version", "\"1.0.1\""),
            text.replace("1.0.0", "1.0.1")
        );
        assert_eq!(
            set_str(text, "list.1", "3"),
            text.replace("[1, 2]", "[1, 3]")
        );
        assert_eq!(
            set_str(text, "app", "true"),
            "{\n  \"app\": true,\n  \"list\": [1, 2]\n}\n"
        );
    }

    #[test]
    fn a_missing_key_is_added_with_the_spacing_of_the_member_before_it() {
        let text = "{\n  \"a\": 1,\n  \"b\": {}\n}\n";
        assert_eq!(
            set_str(text, "c", "2"),
            "{\n  \"a\": 1,\n  \"b\": {},\n  \"c\": 2\n}\n"
        );
        assert_eq!(
            set_str(text, "b.x.y", "\"v\""),
            "{\n  \"a\": 1,\n  \"b\": {\"x\":{\"y\":\"v\"}}\n}\n"
        );
        assert_eq!(set_str("{\"a\":1}", "b", "2"), "{\"a\":1,\"b\":2}");
    }

    #[test]
    fn arrays_grow_by_index_or_minus_one_padded_with_nulls() {
        assert_eq!(
            set_str("{\"l\": [1, 2]}", "l.-1", "3"),
            "{\"l\": [1, 2, 3]}"
        );
        assert_eq!(
            set_str("{\"l\": [1]}", "l.3", "4"),
            "{\"l\": [1,null,null,4]}"
        );
        assert_eq!(
            set_str("{\"l\": [1], \"m\": 0}", "l.1", "4"),
            "{\"l\": [1, 4], \"m\": 0}"
        );
        assert_eq!(set_str("{\"l\": []}", "l.1", "4"), "{\"l\": [null,4]}");
        assert_eq!(
            set(r#"{"l": [1]}"#, &path("l.x"), "4"),
            Err(JsonEditError::NotIndex("x".into()))
        );
        assert!(matches!(
            set(r#"{"l": []}"#, &path("l.99999"), "4"),
            Err(JsonEditError::TooFar { .. })
        ));
    }

    #[test]
    fn a_path_builds_what_it_needs_where_a_scalar_or_nothing_was() {
        assert_eq!(
            set_str("", "app.version", "\"1\""),
            "{\"app\":{\"version\":\"1\"}}"
        );
        assert_eq!(set_str("  ", "0.a", "1"), "[{\"a\":1}]");
        assert_eq!(set_str("{\"a\": 5}", "a.b", "1"), "{\"a\": {\"b\":1}}");
        assert_eq!(set_str("{\"a\": null}", "a.:0", "1"), "{\"a\": {\"0\":1}}");
        assert_eq!(
            set_str("{\"a\": {}}", "a.x.2", "1"),
            "{\"a\": {\"x\":[null,null,1]}}"
        );
        assert_eq!(set_str("{\"1\": 0}", "1", "2"), "{\"1\": 2}");
    }

    #[test]
    fn values_are_written_as_sjson_writes_them() {
        let raw_of = |v: serde_json::Value| raw(&v);
        assert_eq!(raw_of(serde_json::json!("a<b")), Some("\"a<b\"".into()));
        assert_eq!(raw_of(serde_json::json!("é<")), Some("\"é\\u003c\"".into()));
        assert_eq!(raw_of(serde_json::json!("q\"")), Some("\"q\\\"\"".into()));
        assert_eq!(raw_of(serde_json::json!(100)), Some("100".into()));
        assert_eq!(raw_of(serde_json::json!(1.5)), Some("1.5".into()));
        assert_eq!(
            raw_of(serde_json::json!(1e21)),
            Some("1000000000000000000000".into())
        );
        assert_eq!(raw_of(serde_json::json!(false)), Some("false".into()));
        assert_eq!(raw_of(serde_json::json!(null)), None);
        assert_eq!(raw_of(serde_json::json!([1])), None);
    }

    #[test]
    fn invalid_json_is_refused() {
        assert!(matches!(
            set("{\"a\": }", &path("a"), "1"),
            Err(JsonEditError::Invalid(_))
        ));
    }
}
