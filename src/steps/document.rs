//! What `yaml-parse` and `json-parse` share: read a file of the work
//! directory (refusing oversized ones), parse it into a mapping, and
//! evaluate each `outputs[].fromExpression` against it.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{StepContext, StepRun, parse_config, retryable, terminal};
use crate::expr::{Document, Engine, Env, Scope};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

/// The largest file a parse step reads.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    path: String,
    outputs: Vec<Output>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Output {
    name: String,
    from_expression: String,
}

/// A file format: its name for messages, how to parse it, and whether its
/// whole numbers are ints to expressions (YAML) or floats (JSON), as in Go.
pub struct Format {
    pub name: &'static str,
    pub parse: fn(&str) -> Result<Value, String>,
    pub integers: bool,
}

pub fn run(ctx: &StepContext<'_>, format: &Format) -> StepRun {
    StepRun::done(parse(ctx, format).map(|outputs| {
        let mut result = StepResult::new(StepStatus::Succeeded);
        result.output = Some(Value::Object(outputs));
        result
    }))
}

fn parse(ctx: &StepContext<'_>, format: &Format) -> Result<Map<String, Value>, StepError> {
    let config: Config = parse_config(ctx.config)?;
    if config.outputs.is_empty() {
        return Err(terminal("config.outputs: at least one output is required"));
    }
    let path = ctx.path("path", &config.path)?;
    let size = std::fs::metadata(&path)
        .map_err(|_| {
            terminal(format!(
                "config.path: {:?} does not exist in the work directory",
                config.path
            ))
        })?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(terminal(format!(
            "config.path: {:?} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit",
            config.path
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| retryable(format!("config.path: reading {:?}: {e}", config.path)))?;
    let document = match (format.parse)(&text) {
        Ok(Value::Object(document)) => document,
        Ok(_) => {
            return Err(terminal(format!(
                "config.path: {:?} is not a {} mapping",
                config.path, format.name
            )));
        }
        Err(e) => {
            return Err(terminal(format!(
                "config.path: {:?} is not valid {}: {e}",
                config.path, format.name
            )));
        }
    };
    let env = Env {
        document: Some(Document {
            fields: document,
            integers: format.integers,
        }),
        // One instant for all the outputs' `now()`.
        now: Some(jiff::Timestamp::now()),
        ..Env::default()
    };
    let engine = Engine::default();
    let mut outputs = Map::new();
    for (i, output) in config.outputs.iter().enumerate() {
        let value = engine
            .evaluate(&output.from_expression, &env, Scope::Vars)
            .map_err(|e| terminal(format!("config.outputs[{i}].fromExpression: {e}")))?;
        outputs.insert(output.name.clone(), value);
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluate(text: &str, integers: bool, expression: &str) -> Option<Value> {
        let fields = serde_saphyr::from_str::<Value>(text)
            .ok()?
            .as_object()?
            .clone();
        let env = Env {
            document: Some(Document { fields, integers }),
            ..Env::default()
        };
        Engine::default()
            .evaluate(expression, &env, Scope::Vars)
            .ok()
    }

    #[test]
    fn whole_numbers_are_ints_in_yaml_and_floats_in_json_as_in_go() {
        assert_eq!(
            evaluate("replicas: 3\n", true, "replicas * 2"),
            Some(serde_json::json!(6))
        );
        assert_eq!(
            evaluate("replicas: 3\n", false, "replicas * 2"),
            Some(serde_json::json!(6.0))
        );
    }
}
