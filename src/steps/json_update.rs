//! `json-update`: sets the values at paths (`app.version`, `list.0`,
//! `example\.com/version`; sjson's syntax) of a JSON file, as Kargo's:
//! strings, numbers and booleans; a missing key or index is created. The
//! rest of the file keeps its formatting. Outputs `commitMessage`, worded
//! as Kargo's.

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::json_edit;
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal, text_file};
use crate::expr::golang;
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "json-update";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: String,
    updates: Vec<Update>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    key: String,
    value: Value,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| async move { StepRun::done(run(ctx)) }.boxed())
        .using_work_dir()
        .config::<Config>()
}

fn run(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    if config.updates.is_empty() {
        return Err(terminal("config.updates: at least one update is required"));
    }
    // Every update is checked before the file is read, as Kargo checks
    // each value before it sets it.
    let mut edits = Vec::new();
    for (i, update) in config.updates.iter().enumerate() {
        let path = json_edit::split_path(&update.key)
            .map_err(|e| terminal(format!("config.updates[{i}].key: {e}")))?;
        let raw = json_edit::raw(&update.value).ok_or_else(|| {
            terminal(format!(
                "config.updates[{i}].value: json-update sets strings, numbers and booleans, not {}",
                kind(&update.value)
            ))
        })?;
        edits.push((path, raw));
    }
    let path = ctx.path("path", &config.path)?;
    let old = text_file::read(&path, "path", &config.path)?;
    let mut text = old.clone();
    for (i, (key, raw)) in edits.iter().enumerate() {
        text = json_edit::set(&text, key, raw).map_err(|e| match e {
            json_edit::JsonEditError::Invalid(e) => terminal(format!(
                "config.path: {:?} is not valid JSON: {e}",
                config.path
            )),
            e => terminal(format!("config.updates[{i}].key: {e}")),
        })?;
    }
    text_file::write(&path, "path", &config.path, &old, &text)?;
    let mut result = StepResult::new(StepStatus::Succeeded);
    result.output = Some(Value::Object(Map::from_iter([(
        "commitMessage".to_string(),
        json!(commit_message(&config)),
    )])));
    Ok(result)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        _ => "this",
    }
}

/// Kargo's message: `Updated <path>`, then `- <key>: <value>` per update,
/// strings as Go's `%q`, the rest as `%v` (numbers are Go float64s).
fn commit_message(config: &Config) -> String {
    let mut message = format!("Updated {}\n", config.path);
    for update in &config.updates {
        let value = match &update.value {
            Value::String(s) => golang::quote(s),
            Value::Number(n) => n
                .as_f64()
                .map_or_else(|| n.to_string(), golang::format_float_v),
            other => other.to_string(),
        };
        message.push_str(&format!("\n- {}: {value}", update.key));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_message_quotes_strings_and_prints_numbers_as_go() {
        let config: Config = serde_json::from_value(json!({"path": "config.json", "updates": [
            {"key": "app.version", "value": "1.0.1"},
            {"key": "features.newFeature", "value": true},
            {"key": "threshold", "value": 100},
            {"key": "ratio", "value": 0.00001},
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            commit_message(&config),
            "Updated config.json\n\n- app.version: \"1.0.1\"\n- features.newFeature: true\n- threshold: 100\n- ratio: 1e-05"
        );
    }
}
