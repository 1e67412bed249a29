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
           auto-promote, and the webhook receivers through which Git hosts and registries report pushes and pull-request events. \
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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::free_form::option"
    )]
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

    /// Receives Bitbucket deliveries, signed (`X-Hub-Signature`) with the
    /// Secret's `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitbucket: Option<SecretReceiverConfig>,

    /// Receives Docker Hub pushes. Docker Hub does not sign: the Secret's
    /// `secret` only makes the path hard to guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerhub: Option<SecretReceiverConfig>,

    /// Receives Harbor `PUSH_ARTIFACT` events (default payload format),
    /// whose `Authorization` header must equal the Secret's `auth-header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harbor: Option<SecretReceiverConfig>,

    /// Receives Quay repository pushes. Quay does not sign: the Secret's
    /// `secret` only makes the path hard to guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quay: Option<SecretReceiverConfig>,

    /// Receives JFrog Artifactory docker pushes, signed
    /// (`X-Jfrog-Event-Auth`) with the Secret's `secret-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifactory: Option<ArtifactoryReceiverConfig>,

    /// Receives Azure Container Registry pushes (and Azure DevOps git
    /// pushes). Azure does not sign: the Secret's `secret` only makes the
    /// path hard to guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<SecretReceiverConfig>,

    /// Barge's own: receives the CNCF distribution registry's notifications,
    /// whose `Authorization` header (set in the registry's
    /// `notifications.endpoints[].headers`) must equal the Secret's
    /// `auth-header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<SecretReceiverConfig>,

    /// Receives any POST and runs its actions: refreshes the Warehouses its
    /// criteria select, when its `whenExpression` holds. The Secret's
    /// `secret` only makes the path hard to guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericReceiverConfig>,
}

/// An Artifactory receiver.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactoryReceiverConfig {
    /// A Secret in this namespace whose `secret-token` key holds the
    /// secret Artifactory signs deliveries with.
    pub secret_ref: SecretReference,

    /// A virtual repository Warehouses subscribe through: it replaces the
    /// payload's `data.repo_key` (a local repository) in the repository URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 253))]
    pub virtual_repo_name: String,
}

/// Kargo's generic receiver: actions run on any delivery to its path.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericReceiverConfig {
    /// A Secret in this namespace whose `secret` key makes the path.
    pub secret_ref: SecretReference,

    /// What to do with a delivery: each action whose `whenExpression` holds
    /// runs.
    #[schemars(length(min = 1, max = 20))]
    pub actions: Vec<GenericWebhookAction>,
}

/// One action of a generic receiver.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericWebhookAction {
    /// `Refresh`: the only action.
    pub action: GenericWebhookActionType,

    /// An expression (without `${{ }}`) over `request` (`body`, `header()`,
    /// `headers()`, `params()`, `method`, `url`) and `params`; the action
    /// runs when it is true. Empty: always.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub when_expression: String,

    /// Values for the criteria's expressions (`params.<key>`), static or
    /// `${{ }}` expressions over the request.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub parameters: std::collections::BTreeMap<String, String>,

    /// Which objects the action applies to: the union of every criterion's
    /// selection.
    #[schemars(length(min = 1, max = 20))]
    pub target_selection_criteria: Vec<GenericWebhookTargetSelectionCriteria>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum GenericWebhookActionType {
    #[default]
    Refresh,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum GenericWebhookTargetKind {
    #[default]
    Warehouse,
    /// Accepted by the schema as in Kargo; Barge refuses it in the
    /// receiver's status (Promotions are woken by pull-request events).
    Promotion,
}

/// Objects of one kind in this namespace, by name, labels and index: all
/// that are set must match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericWebhookTargetSelectionCriteria {
    pub kind: GenericWebhookTargetKind,

    /// The object's name (static or a `${{ }}` expression).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub name: String,

    /// Labels the objects must have; values may be `${{ }}` expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,

    /// Values of well-known indices the objects must (not) have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_selector: Option<IndexSelector>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub match_indices: Vec<IndexSelectorRequirement>,
}

/// `subscribedURLs` (a Warehouse's subscribed repositories, normalized):
/// equal, or not equal, to the value.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexSelectorRequirement {
    #[schemars(length(max = 64))]
    pub key: String,
    pub operator: IndexSelectorOperator,
    /// Static, or a `${{ }}` expression.
    #[schemars(length(max = 1024))]
    pub value: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum IndexSelectorOperator {
    #[default]
    Equals,
    NotEquals,
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
        fn secret(c: &Option<SecretReceiverConfig>) -> Option<&SecretReference> {
            c.as_ref().map(|c| &c.secret_ref)
        }
        [
            (Sender::GitHub, secret(&self.github)),
            (Sender::GitLab, secret(&self.gitlab)),
            (Sender::Gitea, secret(&self.gitea)),
            (Sender::Bitbucket, secret(&self.bitbucket)),
            (Sender::DockerHub, secret(&self.dockerhub)),
            (Sender::Harbor, secret(&self.harbor)),
            (Sender::Quay, secret(&self.quay)),
            (
                Sender::Artifactory,
                self.artifactory.as_ref().map(|c| &c.secret_ref),
            ),
            (Sender::Azure, secret(&self.azure)),
            (Sender::Distribution, secret(&self.distribution)),
            (
                Sender::Generic,
                self.generic.as_ref().map(|c| &c.secret_ref),
            ),
        ]
        .into_iter()
        .find_map(|(sender, secret_ref)| secret_ref.map(|r| (sender, r)))
    }
}
