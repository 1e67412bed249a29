//! Server-side apply of objects given as JSON, of any kind the API server
//! serves: plural and scope come from its discovery, not from a table.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{self, Scope};
use serde_json::Value;

use crate::Error;

/// Discovery answers by group/version/kind; kinds do not move at run time.
static RESOURCES: Mutex<Option<HashMap<GroupVersionKind, (ApiResource, Scope)>>> = Mutex::new(None);

async fn resource_of(
    client: &Client,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, Scope), Error> {
    if let Some(found) = RESOURCES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(gvk).cloned())
    {
        return Ok(found);
    }
    let (resource, capabilities) = discovery::pinned_kind(client, gvk).await?;
    let found = (resource, capabilities.scope);
    RESOURCES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(gvk.clone(), found.clone());
    Ok(found)
}

/// Server-side applies each object (one, or a JSON array) as
/// `field_manager`, forcing conflicts. A namespaced object without a
/// namespace goes to `namespace`.
pub async fn apply(
    client: &Client,
    objects: Value,
    namespace: &str,
    field_manager: &str,
) -> Result<(), Error> {
    let list = match objects {
        Value::Array(list) => list,
        one => vec![one],
    };
    for mut object in list {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let (resource, scope) = resource_of(client, &gvk).await?;
        let api: Api<DynamicObject> = match scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let ns = object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(namespace)
                    .to_string();
                object["metadata"]["namespace"] = Value::String(ns.clone());
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
        };
        let object: DynamicObject = serde_json::from_value(object)
            .map_err(|e| Error::Yaml(format!("{kind} {name}: {e}")))?;
        api.patch(
            &name,
            &PatchParams::apply(field_manager).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| Error::Apply {
            what: format!("{kind} {name}"),
            source: e,
        })?;
    }
    Ok(())
}
