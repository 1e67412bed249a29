//! `-o json|yaml`: objects as the API server holds them, as kubectl prints
//! them (one object alone, several as a `List`).

use serde::Serialize;
use serde_json::{Value, json};

use super::error::CliError;

/// The output formats of `get`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns of what matters most.
    #[default]
    Table,
    /// More columns.
    Wide,
    Json,
    Yaml,
}

/// `objects` in `format` (json or yaml); one named object alone, otherwise
/// a `v1` `List` of them.
pub fn document<K: Serialize>(
    objects: &[K],
    single: bool,
    format: Format,
) -> Result<String, CliError> {
    let items = objects
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| CliError::Output(e.to_string()))?;
    let value = match (single, items.as_slice()) {
        (true, [one]) => one.clone(),
        _ => {
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
        }
    };
    match format {
        Format::Yaml => {
            serde_saphyr::to_string(&value).map_err(|e| CliError::Output(e.to_string()))
        }
        _ => serde_json::to_string_pretty(&value)
            .map(|mut text| {
                text.push('\n');
                text
            })
            .map_err(|e| CliError::Output(e.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_object_prints_alone_and_several_as_a_list() {
        let one = document(&[json!({"kind": "Stage"})], true, Format::Json).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&one).unwrap(),
            json!({"kind": "Stage"})
        );
        let list = document(&[json!({"a": 1}), json!({"a": 2})], false, Format::Yaml).unwrap();
        assert!(list.contains("kind: List"), "{list}");
        assert!(list.contains("- a: 1"), "{list}");
    }
}
