//! `yaml-update`: sets the values at key paths (`image.tag`,
//! `containers.0.image`, `example\.com/version`) of a YAML file, as
//! Kargo's: the keys must exist in the first document and hold scalars.
//! Only the values change; comments, quoting, order and every other byte
//! stay. Outputs `commitMessage`, worded as Kargo's.

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::yaml_edit::{self, Document, NewScalar};
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal, text_file};
use crate::expr::golang;
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "yaml-update";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: String,
    updates: Vec<Update>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Update {
    pub key: String,
    pub value: Value,
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
    let path = ctx.path("path", &config.path)?;
    let old = text_file::read(&path, "path", &config.path)?;
    let mut text = old.clone();
    for (i, update) in config.updates.iter().enumerate() {
        text = set(&text, &config.path, i, update)?;
    }
    text_file::write(&path, "path", &config.path, &old, &text)?;
    let mut result = StepResult::new(StepStatus::Succeeded);
    result.output = Some(Value::Object(Map::from_iter([(
        "commitMessage".to_string(),
        json!(commit_message(&config)),
    )])));
    Ok(result)
}

/// `text` with update `i` made, checked by reading the value back.
fn set(text: &str, file: &str, i: usize, update: &Update) -> Result<String, StepError> {
    set_at(text, file, &format!("config.updates[{i}]"), update)
}

/// `text` with `update` made; errors name `field`.
pub(super) fn set_at(
    text: &str,
    file: &str,
    field: &str,
    update: &Update,
) -> Result<String, StepError> {
    let new = scalar(&update.value).ok_or_else(|| {
        terminal(format!(
            "{field}.value: yaml-update sets strings, numbers, booleans and null, not collections"
        ))
    })?;
    let parts =
        yaml_edit::split_key(&update.key).map_err(|e| terminal(format!("{field}.key: {e}")))?;
    let doc = Document::parse(text)
        .map_err(|e| terminal(format!("config.path: {file:?} is not valid YAML: {e}")))?;
    let node = doc.find(&parts).map_err(|e| {
        terminal(format!(
            "{field}.key: {:?} is not in {file:?}: {e}",
            update.key
        ))
    })?;
    if node.scalar().is_none() {
        return Err(terminal(format!(
            "{field}.key: {:?} is {} in {file:?}; yaml-update sets scalar values only",
            update.key,
            node.what()
        )));
    }
    let edited = yaml_edit::apply(text, yaml_edit::set_scalar(&doc, node, &new))
        .map_err(|e| terminal(format!("{field}.key: {e}")))?;
    // The edit must read back as the value asked for, or nothing is written.
    let reads_back = Document::parse(&edited).ok().is_some_and(|doc| {
        doc.find(&parts)
            .ok()
            .and_then(|n| n.scalar())
            .is_some_and(|s| s.value == new.value())
    });
    if !reads_back {
        return Err(terminal(format!(
            "{field}.value: could not write {} at {:?} so that it reads back",
            update.value, update.key
        )));
    }
    Ok(edited)
}

/// A JSON scalar as a YAML one: strings stay strings, the rest is written
/// as YAML reads it (`3`, `1.5`, `true`, `null`).
fn scalar(value: &Value) -> Option<NewScalar> {
    match value {
        Value::String(s) => Some(NewScalar::Str(s.clone())),
        Value::Number(n) => Some(NewScalar::Plain(n.to_string())),
        Value::Bool(b) => Some(NewScalar::Plain(b.to_string())),
        Value::Null => Some(NewScalar::Plain("null".to_string())),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Kargo's message: `Updated <path>`, then `- <key>: <value>` per update,
/// the value as Go's `%v` prints it after Kargo's `QuoteIfNecessary`
/// (strings that would read as a number, boolean or JSON in quotes).
fn commit_message(config: &Config) -> String {
    let mut message = format!("Updated {}\n", config.path);
    for update in &config.updates {
        message.push_str(&format!("\n- {}: {}", update.key, go_value(&update.value)));
    }
    message
}

/// A value as Go's `%v` prints what Kargo decoded (numbers are float64).
fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) if needs_quotes(s) => golang::quote(s),
        Value::String(s) => s.clone(),
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| n.to_string(), golang::format_float_v),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".to_string(),
        other => other.to_string(),
    }
}

/// Kargo's `QuoteIfNecessary`: whether a string would parse as a float, a
/// boolean or JSON.
fn needs_quotes(s: &str) -> bool {
    golang::parse_float(s).is_some()
        || golang::parse_bool(s).is_some()
        || serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_message_quotes_what_kargo_quotes_and_prints_numbers_as_go() {
        let config: Config =
            serde_json::from_value(json!({"path": "chart/values.yaml", "updates": [
                {"key": "image.tag", "value": "v1.2.3"},
                {"key": "numStr", "value": "42"},
                {"key": "realNum", "value": 42},
                {"key": "big", "value": 1_000_000},
                {"key": "flag", "value": "true"},
                {"key": "on", "value": false},
            ]}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            commit_message(&config),
            "Updated chart/values.yaml\n\n- image.tag: v1.2.3\n- numStr: \"42\"\n- realNum: 42\n- big: 1e+06\n- flag: \"true\"\n- on: false"
        );
    }
}
