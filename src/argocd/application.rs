//! A partial `argoproj.io/v1alpha1` Application. Serde drops every field not
//! named here, so `status.resources`, `status.history`, `summary` and the
//! sync result's resource list never enter the cache; `spec` is kept whole
//! because argocd-update writes its sources back.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Application {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "crate::api::free_form::value")]
    pub spec: serde_json::Value,
    /// The sync request a client wrote and Argo CD has not finished yet.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::free_form::option"
    )]
    pub operation: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ApplicationStatus>,
}

impl Resource for Application {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Application".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "argoproj.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        "argoproj.io/v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "applications".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    /// When Argo CD last compared the live state with the target.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub reconciled_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct HealthStatus {
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationRef>,
    #[serde(default)]
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub started_at: Option<Time>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_result: Option<SyncResult>,
}

/// The parts of the operation copy in `operationState` that tell who started it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperationRef {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Info {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SyncResult {
    #[serde(default)]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub message: String,
}

impl Application {
    /// Drops what no reconcile reads from an Application kept in the cache:
    /// the spec of one no Stage may update (without an authorized-stage
    /// annotation, Barge's or Kargo's), since only argocd-update reads specs,
    /// and only of Applications it may update. In a shared Argo CD most
    /// Applications are such; their status is kept for waits and health.
    /// The annotation's arrival brings the whole object back with its event.
    pub fn slim_for_cache(&mut self) {
        let updatable = self.metadata.annotations.as_ref().is_some_and(|a| {
            a.contains_key(super::AUTHORIZED_STAGE_ANNOTATION)
                || a.contains_key(super::KARGO_AUTHORIZED_STAGE_ANNOTATION)
        });
        if !updatable {
            self.spec = serde_json::Value::Null;
        }
    }

    /// True while Argo CD has a sync requested or running.
    pub fn operation_in_progress(&self) -> bool {
        self.operation.is_some()
            || self
                .status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|op| op.finished_at.is_none())
    }

    /// The messages of conditions that make the Application's target state unusable.
    pub fn comparison_errors(&self) -> Vec<String> {
        self.status
            .iter()
            .flat_map(|s| &s.conditions)
            .filter(|c| c.type_ == "ComparisonError" || c.type_ == "InvalidSpecError")
            .map(|c| format!("{}: {}", c.type_, c.message))
            .collect()
    }

    /// The source list as Argo CD uses it: `spec.sources` when non-empty,
    /// else `spec.source`.
    pub fn sources(&self) -> Vec<&serde_json::Value> {
        match self.spec.get("sources").and_then(|s| s.as_array()) {
            Some(list) if !list.is_empty() => list.iter().collect(),
            _ => self.spec.get("source").into_iter().collect(),
        }
    }

    /// True when the Application uses `spec.sources`.
    pub fn has_multiple_sources(&self) -> bool {
        self.spec
            .get("sources")
            .and_then(|s| s.as_array())
            .is_some_and(|l| !l.is_empty())
    }
}
