//! Manual approval of a Freight for a Stage, as Kargo does it: the Stage
//! may take it without it passing the upstream Stages
//! (`status.approvedFor`). Asked for with `barge approve`, or declared
//! with the annotation `barge.dev/approve: <stage>[,<stage>...]`, which
//! the controller records (so GitOps-managed Freight can be approved
//! without writing status).

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::Freight;

/// Annotation: the Stages a Freight is approved for, comma-separated.
pub const ANNOTATION_APPROVE: &str = "barge.dev/approve";

/// The Stages the annotation names that the status does not record yet.
pub fn pending(freight: &Freight) -> Vec<String> {
    let approved = freight.status.as_ref().map(|s| &s.approved_for);
    let mut stages: Vec<String> = freight
        .annotations()
        .get(ANNOTATION_APPROVE)
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter(|s| !approved.is_some_and(|a| a.contains_key(*s)))
        .map(str::to_string)
        .collect();
    stages.sort();
    stages.dedup();
    stages
}

/// Records the approval of `freight` for `stages` in its status.
pub async fn approve(
    client: &Client,
    namespace: &str,
    freight: &str,
    stages: &[String],
    now: Timestamp,
) -> Result<(), kube::Error> {
    let approved: serde_json::Map<String, serde_json::Value> = stages
        .iter()
        .map(|s| (s.clone(), json!({"approvedAt": now.to_string()})))
        .collect();
    let api: Api<Freight> = Api::namespaced(client.clone(), namespace);
    api.patch_status(
        freight,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"approvedFor": approved}})),
    )
    .await?;
    Ok(())
}

/// The Freight named `name`, or whose alias is `name`.
pub async fn find(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Freight>, kube::Error> {
    let api: Api<Freight> = Api::namespaced(client.clone(), namespace);
    if let Some(f) = api.get_opt(name).await? {
        return Ok(Some(f));
    }
    let all = api.list(&Default::default()).await?;
    Ok(all
        .items
        .into_iter()
        .find(|f| f.spec.alias.as_deref() == Some(name)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn freight(annotation: Option<&str>, approved: &[&str]) -> Freight {
        let approved: serde_json::Map<String, serde_json::Value> = approved
            .iter()
            .map(|s| {
                (
                    (*s).to_string(),
                    json!({"approvedAt": "2026-11-30T00:00:00Z"}),
                )
            })
            .collect();
        let mut annotations = serde_json::Map::new();
        if let Some(a) = annotation {
            annotations.insert(ANNOTATION_APPROVE.into(), a.into());
        }
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": "f", "namespace": "demo", "annotations": annotations},
            "origin": {"kind": "Warehouse", "name": "w"},
            "status": {"approvedFor": approved},
        }))
        .unwrap()
    }

    #[test]
    fn the_annotation_names_stages_not_yet_approved() {
        assert_eq!(
            pending(&freight(Some("prod, uat,prod,"), &["uat"])),
            vec!["prod"]
        );
        assert!(pending(&freight(Some("prod"), &["prod"])).is_empty());
        assert!(pending(&freight(None, &[])).is_empty());
    }
}
