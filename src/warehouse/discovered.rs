//! What a discovery found, in the shapes of Kargo's
//! `status.discoveredArtifacts`: per subscription, the candidates newest
//! first. The Warehouse controller writes these to status, and makes
//! Freight of the first candidate of every subscription.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything one discovery of a Warehouse found.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredArtifacts {
    /// When the discovery ran (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub discovered_at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<GitDiscoveryResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageDiscoveryResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<ChartDiscoveryResult>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GitDiscoveryResult {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Newest first; empty when nothing matched.
    #[serde(default)]
    pub commits: Vec<DiscoveredCommit>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscription_name: String,
    /// The remote's refs as last seen (after name filters), so that a
    /// discovery whose refs have not moved can skip fetching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_refs: Option<GitDiscoveryRefs>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GitDiscoveryRefs {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch_head: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<DiscoveredRef>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct DiscoveredRef {
    pub name: String,
    pub id: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredCommit {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// The first line of the commit message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// `Name <email>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub committer: String,
    /// The commit's date, or the tagger's for an annotated tag (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_date: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageDiscoveryResult {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// Newest first; empty when nothing matched.
    #[serde(default)]
    pub references: Vec<DiscoveredImageReference>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscription_name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredImageReference {
    pub tag: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// When the image was built (RFC 3339), where the strategy reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChartDiscoveryResult {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub semver_constraint: String,
    /// Newest first; empty when nothing matched.
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscription_name: String,
}

/// Why a subscription's discovery failed. The message names the
/// subscription's field (`spec.subscriptions[1].image.platform`) or the
/// repository, never a credential.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The subscription cannot work as written: retrying will not help
    /// until the Warehouse changes.
    #[error("{0}")]
    Config(String),
    /// The server refused the credentials (or wants some).
    #[error("{0}")]
    Denied(String),
    /// The repository (or chart) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The server could not be reached, timed out, failed or throttled:
    /// retried with backoff.
    #[error("{0}")]
    Unavailable(String),
    /// The server answered with something that cannot be read.
    #[error("{0}")]
    Malformed(String),
    /// Discovery would exceed its budget (too many tags, too large an
    /// index).
    #[error("{0}")]
    TooLarge(String),
}

impl DiscoveryError {
    /// A short reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DiscoveryError::Config(_) => "InvalidSubscription",
            DiscoveryError::Denied(_) => "AccessDenied",
            DiscoveryError::NotFound(_) => "NotFound",
            DiscoveryError::Unavailable(_) => "Unavailable",
            DiscoveryError::Malformed(_) => "MalformedResponse",
            DiscoveryError::TooLarge(_) => "TooLarge",
        }
    }
}
