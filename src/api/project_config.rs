//! `ProjectConfig`: a project's (namespace's) settings, as Kargo keeps them:
//! one per namespace, named after it: which Stages auto-promote, and the
//! webhook receivers.

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
    doc = "ProjectConfig holds the settings of the project its namespace is: which Stages \
           auto-promote, and the webhook receivers through which Git hosts report pull-request events. \
           It is named after its namespace."
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectConfigSpec {
    /// Which Stages promote new Freight automatically. The first policy
    /// that matches a Stage decides; a Stage no policy matches follows its
    /// own `spec.autoPromotion` (Barge's shortcut, false by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub promotion_policies: Vec<PromotionPolicy>,

    /// Endpoints Git hosts deliver webhooks to. Each gets a hard-to-guess
    /// path derived from the namespace, its name and its secret, published
    /// in `status.webhookReceivers`. A pull-request event wakes the
    /// Promotions of this namespace waiting on that pull request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = validation::MAX_WEBHOOK_RECEIVERS))]
    pub webhook_receivers: Vec<WebhookReceiverConfig>,
}

/// A Stage, by name or by selector, and whether it auto-promotes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionPolicy {
    /// The Stage's exact name. Deprecated in Kargo for `stageSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), pattern(validation::DNS_SUBDOMAIN_PATTERN))]
    pub stage: Option<String>,

    /// The Stages the policy applies to: by name (exact, `regex:` or
    /// `glob:`), by labels, or both (both must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_selector: Option<PromotionPolicySelector>,

    /// Whether new Freight available to the Stage is promoted automatically.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_promotion_enabled: bool,

    /// Kargo Enterprise's automatic rollback: accepted, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub auto_rollback: Option<serde_json::Value>,
}

/// Which Stages a policy applies to.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionPolicySelector {
    /// An exact name, `regex:<expression>` (or `regexp:`), or
    /// `glob:<pattern>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub name: Option<String>,

    /// Labels the Stage must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<std::collections::BTreeMap<String, String>>,

    /// Label requirements the Stage must meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions:
        Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement>>,
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
