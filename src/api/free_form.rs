//! Free-form JSON fields (step config, outputs, metadata, an Application's
//! spec) read with a depth bound of their own.
//!
//! The API server stores objects nested thousands of levels deep, but the
//! JSON reader the client uses refuses anything deeper than 128 levels,
//! counted from the top of the list or watch event; and one object it cannot
//! read fails the whole list of its kind, which blinds the controller to
//! every object of that kind until it is deleted. So a free-form value is
//! read to [`MAX_DEPTH`] levels of arrays and objects; a deeper array or
//! object is skipped (the reader skips without recursing, at any depth) and
//! kept empty. The object then reads, and whatever uses the value checks
//! [`too_deep`] and fails naming the field, instead of acting on a part.
//!
//! Values the controller writes are checked against the same bound first,
//! so that whatever it writes it reads back whole.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Most levels of arrays and objects a free-form value may nest. The deepest
/// free-form field (a Stage's step config, in a list) starts 8 levels down,
/// so a value read in full stays well within the reader's 128.
pub const MAX_DEPTH: usize = 100;

/// Why a value cannot be used: it nests deeper than [`MAX_DEPTH`].
pub fn too_deep_message() -> String {
    format!("nests deeper than {MAX_DEPTH} levels of arrays and objects")
}

/// Whether `value` nests deeper than [`MAX_DEPTH`]: it was cut when read, or
/// would be if written.
pub fn too_deep(value: &Value) -> bool {
    depth_exceeds(value, MAX_DEPTH)
}

/// Whether `value` has more than `limit` levels of arrays and objects,
/// without recursing (a value built in memory can be arbitrarily deep).
fn depth_exceeds(value: &Value, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, above)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(entries) => Box::new(entries.values()),
            _ => continue,
        };
        let level = above + 1;
        if level > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, level)));
    }
    false
}

/// `deserialize_with` for `serde_json::Value`.
pub fn value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    Bounded { levels: MAX_DEPTH }.deserialize(deserializer)
}

/// `deserialize_with` for `Option<serde_json::Value>` (absent and `null` are
/// `None`, as serde reads an `Option`).
pub fn option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Ok(match value(deserializer)? {
        Value::Null => None,
        v => Some(v),
    })
}

/// `deserialize_with` for a map of free-form values.
pub fn map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Value>, D::Error> {
    deserializer.deserialize_option(MapOfValues)
}

/// `deserialize_with` for a list of free-form values.
pub fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Value>, D::Error> {
    deserializer.deserialize_option(ListOfValues)
}

/// A value that may still open `levels` arrays or objects; at 0 an array or
/// object is skipped and kept empty.
#[derive(Clone, Copy)]
struct Bounded {
    levels: usize,
}

impl<'de> DeserializeSeed<'de> for Bounded {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Some(levels) = self.levels.checked_sub(1) else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Value::Array(Vec::new()));
        };
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(Bounded { levels })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(levels) = self.levels.checked_sub(1) else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Value::Object(Map::new()));
        };
        let mut entries = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(Bounded { levels })?;
            entries.insert(key, v);
        }
        Ok(Value::Object(entries))
    }
}

/// A map (or `null`) whose values are each [`Bounded`].
struct MapOfValues;

impl<'de> Visitor<'de> for MapOfValues {
    type Value = BTreeMap<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(Bounded { levels: MAX_DEPTH })?;
            entries.insert(key, v);
        }
        Ok(entries)
    }
}

/// A list (or `null`) whose items are each [`Bounded`].
struct ListOfValues;

impl<'de> Visitor<'de> for ListOfValues {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Bounded { levels: MAX_DEPTH })? {
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "option")]
        config: Option<Value>,
        #[serde(default, deserialize_with = "map")]
        state: BTreeMap<String, Value>,
        #[serde(default, deserialize_with = "list")]
        items: Vec<Value>,
    }

    /// `levels` arrays, innermost holding `1`.
    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    fn depth(v: &Value) -> usize {
        (0..).find(|&n| !depth_exceeds(v, n)).unwrap()
    }

    #[test]
    fn a_value_within_the_bound_reads_whole_and_as_serde_json_reads_it() {
        let text = r#"{"config": {"a": [1, -2, 2.5, "x", null, true, {"b": {}}], "n": 18446744073709551615},
                       "state": {"k": {"v": [1]}}, "items": [{"git": {"repoURL": "u"}}]}"#;
        let h: Holder = serde_json::from_str(text).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(h.config.as_ref(), plain.get("config"));
        assert_eq!(json!(h.state), plain["state"]);
        assert_eq!(json!(h.items), plain["items"]);
        let deepest: Value = serde_json::from_str(&nested(MAX_DEPTH)).unwrap();
        assert!(!too_deep(&deepest));
        let h: Holder =
            serde_json::from_str(&format!(r#"{{"config": {}}}"#, nested(MAX_DEPTH))).unwrap();
        assert_eq!(h.config.unwrap(), deepest);
    }

    #[test]
    fn absent_and_null_fields_read_empty() {
        let h: Holder =
            serde_json::from_str(r#"{"config": null, "state": null, "items": null}"#).unwrap();
        assert!(h.config.is_none() && h.state.is_empty() && h.items.is_empty());
        let h: Holder = serde_json::from_str("{}").unwrap();
        assert!(h.config.is_none() && h.state.is_empty() && h.items.is_empty());
    }

    #[test]
    fn a_value_nested_past_the_bound_reads_cut_and_says_so() {
        for levels in [MAX_DEPTH + 1, 1_000, 200_000] {
            let text = format!(
                r#"{{"config": {{"v": {deep}}}, "state": {{"s": {deep}}}, "items": [{deep}], "after": 1}}"#,
                deep = nested(levels)
            );
            let h: Holder = serde_json::from_str(&text).unwrap();
            let config = h.config.unwrap();
            assert!(too_deep(&config), "{levels}");
            assert_eq!(depth(&config), MAX_DEPTH + 1, "{levels}");
            assert!(too_deep(&h.state["s"]) && too_deep(&h.items[0]), "{levels}");
        }
    }

    #[test]
    fn other_readers_than_json_read_the_same() {
        let yaml = "config: {a: [1, {b: c}]}\nstate: {k: 2}\nitems: [x]\n";
        let h: Holder = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(h.config.unwrap(), json!({"a": [1, {"b": "c"}]}));
        assert_eq!(h.state["k"], json!(2));
        assert_eq!(h.items, vec![json!("x")]);
        let h: Holder = serde_json::from_value(json!({"config": {"a": 1}})).unwrap();
        assert_eq!(h.config.unwrap(), json!({"a": 1}));
    }

    #[test]
    fn a_value_built_deeper_than_the_bound_is_too_deep_to_write() {
        let mut v = json!(1);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        assert!(too_deep(&v));
        // Taken apart level by level: dropping it whole recurses.
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
        assert!(!too_deep(&json!({"a": [[{}]]})));
    }
}
