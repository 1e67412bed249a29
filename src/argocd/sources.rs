//! argocd-update's source updates: which Application sources a step's
//! `sources` entries apply to, and what they change.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Application;

/// One `sources[]` entry of an argocd-update app.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceUpdate {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    #[serde(default)]
    pub update_target_revision: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmUpdate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeUpdate>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HelmUpdate {
    #[serde(default)]
    pub images: Vec<HelmImageUpdate>,
}

/// Sets the Helm parameter `key` to `value`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HelmImageUpdate {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KustomizeUpdate {
    #[serde(default)]
    pub images: Vec<KustomizeImageUpdate>,
}

/// One kustomize image override, written as `repo[=newName]:tag` or `repo[=newName]@digest`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KustomizeImageUpdate {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("no source of the Application matches repoURL \"{repo_url}\"{}", chart.as_ref().map(|c| format!(" and chart \"{c}\"")).unwrap_or_default())]
    NoMatchingSource {
        repo_url: String,
        chart: Option<String>,
    },
    #[error("sources[{index}].desiredRevision is required when updateTargetRevision is true")]
    MissingDesiredRevision { index: usize },
    #[error("sources[{index}].kustomize.images[{image}] needs exactly one of tag and digest")]
    TagOrDigest { index: usize, image: usize },
    /// Its spec was cut when read (see [`crate::api::free_form`]): writing
    /// its sources back would lose what was cut.
    #[error(
        "spec {}: its sources are not rewritten",
        crate::api::free_form::too_deep_message()
    )]
    TooDeep,
}

/// Whether an update is for this source: the same chart from the same
/// repository, or the same Git repository however its URL is written.
fn matches(source: &Value, update: &SourceUpdate) -> bool {
    let repo = source
        .get("repoURL")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let chart = source.get("chart").and_then(Value::as_str);
    match (&update.chart, chart) {
        (Some(want), Some(have)) => repo == update.repo_url && want == have,
        (None, None) => {
            crate::urls::normalize_git(repo) == crate::urls::normalize_git(&update.repo_url)
        }
        _ => false,
    }
}

/// For each Application source, the revision the step wants it at, or "".
pub fn desired_revisions(app: &Application, updates: &[SourceUpdate]) -> Vec<String> {
    app.sources()
        .iter()
        .map(|source| {
            updates
                .iter()
                .find(|u| matches(source, u))
                .and_then(|u| u.desired_revision.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// Applies the updates to the Application's sources and returns the new
/// `spec.sources` array (or `spec.source` object), or `None` when nothing changes.
pub fn updated_sources(
    app: &Application,
    updates: &[SourceUpdate],
) -> Result<Option<Value>, SourceError> {
    let mut sources: Vec<Value> = app.sources().into_iter().cloned().collect();
    for (index, update) in updates.iter().enumerate() {
        let mut found = false;
        for source in sources.iter_mut().filter(|s| matches(s, update)) {
            found = true;
            apply(source, index, update)?;
        }
        if !found {
            return Err(SourceError::NoMatchingSource {
                repo_url: update.repo_url.clone(),
                chart: update.chart.clone(),
            });
        }
    }
    let before: Vec<Value> = app.sources().into_iter().cloned().collect();
    if sources == before {
        return Ok(None);
    }
    if crate::api::free_form::too_deep(&app.spec) {
        return Err(SourceError::TooDeep);
    }
    Ok(Some(if app.has_multiple_sources() {
        Value::Array(sources)
    } else {
        sources.into_iter().next().unwrap_or(Value::Null)
    }))
}

fn apply(source: &mut Value, index: usize, update: &SourceUpdate) -> Result<(), SourceError> {
    if update.update_target_revision {
        let revision = update
            .desired_revision
            .as_deref()
            .filter(|r| !r.is_empty())
            .ok_or(SourceError::MissingDesiredRevision { index })?;
        source["targetRevision"] = Value::String(revision.to_string());
    }
    if let Some(helm) = update.helm.as_ref().filter(|h| !h.images.is_empty()) {
        if !source.get("helm").is_some_and(Value::is_object) {
            source["helm"] = serde_json::json!({});
        }
        let params = &mut source["helm"]["parameters"];
        if !params.is_array() {
            *params = Value::Array(Vec::new());
        }
        if let Some(list) = params.as_array_mut() {
            for image in &helm.images {
                match list
                    .iter_mut()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some(image.key.as_str()))
                {
                    Some(p) => p["value"] = Value::String(image.value.clone()),
                    None => list.push(serde_json::json!({"name": image.key, "value": image.value})),
                }
            }
        }
    }
    if let Some(kustomize) = update.kustomize.as_ref().filter(|k| !k.images.is_empty()) {
        let mut images = Vec::new();
        for (i, image) in kustomize.images.iter().enumerate() {
            let mut text = image.repo_url.clone();
            if let Some(new_name) = image.new_name.as_deref().filter(|n| !n.is_empty()) {
                text = format!("{text}={new_name}");
            }
            match (image.tag.as_deref(), image.digest.as_deref()) {
                (Some(tag), None) => text = format!("{text}:{tag}"),
                (None, Some(digest)) => text = format!("{text}@{digest}"),
                _ => return Err(SourceError::TagOrDigest { index, image: i }),
            }
            images.push(Value::String(text));
        }
        if !source.get("kustomize").is_some_and(Value::is_object) {
            source["kustomize"] = serde_json::json!({});
        }
        source["kustomize"]["images"] = Value::Array(images);
    }
    Ok(())
}
