//! `set-metadata`: sets keys of a Stage's or a Freight's `status.metadata`
//! in the Promotion's namespace, for `stageMetadata()` and
//! `freightMetadata()` to read. Each key is replaced whole; other keys stay.

use futures::FutureExt;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{BuiltinStep, StepContext, StepRun, api_error, parse_config, terminal};
use crate::api::{Freight, Stage};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "set-metadata";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    updates: Vec<Update>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    kind: String,
    name: String,
    values: Map<String, Value>,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed()).config::<Config>()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(
        set(ctx)
            .await
            .map(|()| StepResult::new(StepStatus::Succeeded)),
    )
}

async fn set(ctx: &StepContext<'_>) -> Result<(), StepError> {
    let config: Config = parse_config(ctx.config)?;
    if config.updates.is_empty() {
        return Err(terminal("config.updates: at least one update is required"));
    }
    // Check them all before writing any, so bad input writes nothing.
    for (i, update) in config.updates.iter().enumerate() {
        if update.kind != "Stage" && update.kind != "Freight" {
            return Err(terminal(format!(
                "config.updates[{i}].kind: {:?} is neither Stage nor Freight",
                update.kind
            )));
        }
        if update.name.is_empty() {
            return Err(terminal(format!("config.updates[{i}].name: is empty")));
        }
        if update.values.is_empty() {
            return Err(terminal(format!(
                "config.updates[{i}].values: at least one key is required"
            )));
        }
        // Read back cut, it would lose part of what was set.
        if let Some((key, _)) = update
            .values
            .iter()
            .find(|(_, v)| crate::api::free_form::too_deep(v))
        {
            return Err(terminal(format!(
                "config.updates[{i}].values.{key}: {}",
                crate::api::free_form::too_deep_message()
            )));
        }
    }
    let namespace = ctx.subject.namespace;
    let client = ctx.services.client.clone();
    for (i, update) in config.updates.iter().enumerate() {
        let found = match update.kind.as_str() {
            "Stage" => {
                let api = Api::<Stage>::namespaced(client.clone(), namespace);
                write(&api, update).await
            }
            _ => {
                let api = Api::<Freight>::namespaced(client.clone(), namespace);
                write(&api, update).await
            }
        };
        match found {
            Ok(true) => {}
            Ok(false) => {
                return Err(terminal(format!(
                    "config.updates[{i}].name: {} {:?} does not exist in namespace {namespace}",
                    update.kind, update.name
                )));
            }
            Err(e) => {
                return Err(api_error(
                    format_args!(
                        "config.updates[{i}]: setting the metadata of {} {:?}",
                        update.kind, update.name
                    ),
                    &e,
                ));
            }
        }
    }
    Ok(())
}

/// Sets the keys with a JSON patch that first checks the object is the one
/// read, so a concurrent change is never overwritten. False if there is no
/// such object.
async fn write<K>(api: &Api<K>, update: &Update) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let Some(object) = api.get_opt(&update.name).await? else {
        return Ok(false);
    };
    let object = serde_json::to_value(&object).map_err(kube::Error::SerdeError)?;
    let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion",
        "value": object["metadata"]["resourceVersion"]})];
    if !object["status"].is_object() {
        ops.push(json!({"op": "add", "path": "/status", "value": {}}));
    }
    if !object["status"]["metadata"].is_object() {
        ops.push(json!({"op": "add", "path": "/status/metadata", "value": {}}));
    }
    for (key, value) in &update.values {
        let key = key.replace('~', "~0").replace('/', "~1");
        ops.push(json!({"op": "add", "path": format!("/status/metadata/{key}"), "value": value}));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(kube::Error::SerdeError)?;
    api.patch_status(
        &update.name,
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(true)
}
