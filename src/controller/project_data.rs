//! What `configMap()`, `secret()`, `stageMetadata()` and
//! `freightMetadata()` read, fetched for one reconcile of a Promotion, and
//! only for the functions its plan uses: a plan that calls none costs no
//! request. `secret()` sees only Secrets labelled as generic secrets
//! (`barge.dev/cred-type: generic`, or Kargo's label), never credentials.
//! Values are fetched fresh each reconcile, so a `set-metadata` step is
//! seen by the steps after it once the Promotion is reconciled again.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::api::{Freight, Stage};
use crate::expr::ProjectData;
use crate::steps::repository::labelled_secrets;

/// The expression functions whose data must be fetched, found in the plan's
/// text. A name that only appears inside a string (`"configMap("`) costs a
/// needless list, never a wrong result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    pub config_maps: bool,
    pub secrets: bool,
    pub stage_metadata: bool,
    pub freight_metadata: bool,
}

impl Uses {
    pub fn of(plan_text: &str) -> Self {
        let calls = |name: &str| {
            plan_text.match_indices(name).any(|(at, _)| {
                let before = plan_text[..at].chars().next_back();
                let after = plan_text[at + name.len()..].trim_start();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after.starts_with('(')
            })
        };
        Self {
            config_maps: calls("configMap"),
            secrets: calls("secret"),
            stage_metadata: calls("stageMetadata"),
            freight_metadata: calls("freightMetadata"),
        }
    }

    pub fn any(self) -> bool {
        self.config_maps || self.secrets || self.stage_metadata || self.freight_metadata
    }
}

/// The data the plan's functions read, from the Promotion's namespace.
pub async fn fetch(
    client: &Client,
    namespace: &str,
    uses: Uses,
) -> Result<ProjectData, kube::Error> {
    let mut data = ProjectData::default();
    if uses.config_maps {
        let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
        for config_map in api.list(&ListParams::default()).await?.items {
            let name = config_map.name_any();
            data.config_maps
                .insert(name, config_map.data.unwrap_or_default());
        }
    }
    if uses.secrets {
        data.secrets = labelled_secrets(client, namespace, "generic")
            .await?
            .into_iter()
            .collect();
    }
    if uses.stage_metadata {
        let api = Api::<Stage>::namespaced(client.clone(), namespace);
        for stage in api.list(&ListParams::default()).await?.items {
            let metadata = stage.status.map(|s| s.metadata).unwrap_or_default();
            data.stage_metadata.insert(
                stage.metadata.name.unwrap_or_default(),
                metadata.into_iter().collect(),
            );
        }
    }
    if uses.freight_metadata {
        let api = Api::<Freight>::namespaced(client.clone(), namespace);
        for freight in api.list(&ListParams::default()).await?.items {
            let metadata = freight.status.map(|s| s.metadata).unwrap_or_default();
            data.freight_metadata.insert(
                freight.metadata.name.unwrap_or_default(),
                metadata.into_iter().collect(),
            );
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_functions_a_plan_calls_are_fetched() {
        let uses = Uses::of(
            r#"{"url": "${{ configMap('settings').url }}", "token": "${{ secret ('slack').token }}"}"#,
        );
        assert_eq!(
            uses,
            Uses {
                config_maps: true,
                secrets: true,
                ..Uses::default()
            }
        );
        assert!(!Uses::of(r#"{"secretName": "x", "mySecret(": 1}"#).secrets);
        assert!(!Uses::of(r#"{"message": "deploy"}"#).any());
        assert!(Uses::of("stageMetadata(ctx.stage)").stage_metadata);
    }
}
