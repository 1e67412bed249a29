//! `ProjectConfig`: a project's (namespace's) settings, as Kargo keeps them:
//! one per namespace, named after it. Barge reads its webhook receivers;
//! promotion policies come with the Stage controller's support for them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::validation;

#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "barge.dev",
    version = "v1alpha1",
    kind = "ProjectConfig",
    plural = "projectconfigs",
    namespaced,
    status = "ProjectConfigStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "ProjectConfig holds the settings of the project its namespace is: the webhook receivers \
           through which Git hosts report pull-request events."
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectConfigSpec {
    /// Endpoints Git hosts deliver webhooks to. Each gets a hard-to-guess
    /// path derived from the namespace, its name and its secret, published
    /// in `status.webhookReceivers`. A pull-request event wakes the
    /// Promotions of this namespace waiting on that pull request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = validation::MAX_WEBHOOK_RECEIVERS))]
    pub webhook_receivers: Vec<WebhookReceiverConfig>,
}

/// One webhook receiver: a name and exactly one sender.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::one_webhook_sender)]
pub struct WebhookReceiverConfig {
    /// The receiver's name, unique in the ProjectConfig.
    #[schemars(length(min = 1, max = 253), pattern(validation::DNS_SUBDOMAIN_PATTERN))]
    pub name: String,

    /// Receives GitHub deliveries, signed (`X-Hub-Signature-256`) with the
    /// secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<SecretReceiverConfig>,

    /// Receives GitLab deliveries, which carry the secret as
    /// `X-Gitlab-Token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<SecretReceiverConfig>,

    /// Receives Gitea and Forgejo deliveries, signed with the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitea: Option<SecretReceiverConfig>,
}

/// A receiver authenticated by a shared secret.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReceiverConfig {
    /// A Secret in this namespace whose `secret` key holds the shared
    /// secret the host signs deliveries with.
    pub secret_ref: SecretReference,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
pub struct SecretReference {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectConfigStatus {
    /// Where each receiver listens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_receivers: Vec<WebhookReceiverDetails>,

    /// `Ready`: every receiver is served; otherwise the message names the
    /// receiver and what is wrong with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = validation::conditions)]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceiverDetails {
    pub name: String,
    /// The receiver's path on the webhook endpoint.
    pub path: String,
    /// The whole URL, when the controller knows its public base URL
    /// (`--webhook-base-url`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
}

impl WebhookReceiverConfig {
    /// The sender and its Secret: the first set, in a fixed order (the
    /// schema admits exactly one).
    pub fn sender(&self) -> Option<(crate::webhook::Sender, &SecretReference)> {
        use crate::webhook::Sender;
        [
            (Sender::GitHub, &self.github),
            (Sender::GitLab, &self.gitlab),
            (Sender::Gitea, &self.gitea),
        ]
        .into_iter()
        .find_map(|(sender, config)| config.as_ref().map(|c| (sender, &c.secret_ref)))
    }
}
