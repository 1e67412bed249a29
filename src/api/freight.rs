//! `Freight`: a set of artifact versions (git commits, images, charts) that
//! moves through Stages. As in Kargo, its fields sit at the top level of the
//! object, not under `spec`; they never change once created.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::stage::VerificationInfo;
use crate::api::validation;

/// The contents of a Freight. On the wire (and in `kubectl explain`) these
/// fields are at the top level of the object, beside `metadata`, exactly as
/// in Kargo; in Rust they are reached through `freight.spec`.
// kube's attributes repeat keys such as `type_` across printer columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "barge.dev",
    version = "v1alpha1",
    kind = "Freight",
    plural = "freights",
    namespaced,
    no_spec,
    status = "FreightStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Freight is a set of specific versions of artifacts (git commits, container images, Helm charts) \
           that is promoted through Stages as one unit. Its origin and artifacts are immutable.",
    printcolumn(name = "Alias", type_ = "string", json_path = ".alias"),
    printcolumn(name = "Origin (Kind)", type_ = "string", json_path = ".origin.kind"),
    printcolumn(name = "Origin (Name)", type_ = "string", json_path = ".origin.name"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = validation::freight)]
pub struct FreightSpec {
    /// A human-friendly name for this Freight, unique in its namespace by
    /// convention (for example `wonky-fox`). Optional; usable as a label value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), pattern(validation::FREIGHT_ALIAS_PATTERN))]
    pub alias: Option<String>,

    /// When this Freight was discovered or created. Informational; defaults
    /// to the object's creation time when unset.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub discovered_at: Option<Time>,

    /// Where this Freight comes from: the Warehouse whose subscriptions
    /// produced it. Stages request Freight by origin.
    pub origin: FreightOrigin,

    /// Specific commits of git repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = validation::MAX_FREIGHT_ARTIFACTS))]
    pub commits: Vec<GitCommit>,

    /// Specific versions of container images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = validation::MAX_FREIGHT_ARTIFACTS))]
    pub images: Vec<Image>,

    /// Specific versions of Helm charts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = validation::MAX_FREIGHT_ARTIFACTS))]
    pub charts: Vec<Chart>,

    /// Specific versions of other kinds of artifacts (Kargo's generic
    /// subscriptions). Accepted for compatibility; Barge's steps do not use
    /// them yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = validation::MAX_FREIGHT_ARTIFACTS))]
    pub artifacts: Vec<ArtifactReference>,
}

/// The kind of object Freight originates from.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    Deserialize,
    Serialize,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
pub enum FreightOriginKind {
    /// A Warehouse: the only origin kind.
    #[default]
    Warehouse,
}

impl std::fmt::Display for FreightOriginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FreightOriginKind::Warehouse => "Warehouse",
        })
    }
}

/// The origin of Freight: a kind and a name.
#[derive(
    Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub struct FreightOrigin {
    /// The kind of object the Freight originates from. Only `Warehouse`.
    pub kind: FreightOriginKind,

    /// The name of that object, in the same namespace.
    #[schemars(length(max = 253))]
    pub name: String,
}

impl FreightOrigin {
    /// A Warehouse origin.
    pub fn warehouse(name: impl Into<String>) -> Self {
        FreightOrigin {
            kind: FreightOriginKind::Warehouse,
            name: name.into(),
        }
    }

    /// Whether this is the empty origin (no name).
    pub fn is_unset(&self) -> bool {
        self.name.is_empty()
    }

    /// The key of this origin in a [`FreightCollection`]'s `items`:
    /// `<Kind>/<name>`, as Kargo writes it.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for FreightOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// A specific commit of a specific git repository.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitCommit {
    /// The URL of the git repository.
    #[serde(rename = "repoURL", default, skip_serializing_if = "String::is_empty")]
    pub repo_url: String,

    /// The commit's ID (its full SHA).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,

    /// The branch on which the commit was found.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,

    /// The tag that matched the selection criteria and resolves to this commit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,

    /// The commit message's first line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,

    /// The commit's author.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,

    /// The commit's committer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub committer: String,

    /// The name of the Warehouse subscription that discovered this commit,
    /// when the subscription has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscription_name: String,
}

/// A specific version of a container image.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The image repository, for example `ghcr.io/example/app`.
    #[serde(rename = "repoURL", default, skip_serializing_if = "String::is_empty")]
    pub repo_url: String,

    /// The image tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,

    /// The image digest, more precise than the tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,

    /// Annotations of the image (for example OCI annotations).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// The name of the Warehouse subscription that discovered this image,
    /// when the subscription has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscription_name: String,
}

/// A specific version of a Helm chart.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chart {
    /// The chart repository URL. For an OCI registry it points at the chart
    /// itself and `name` is empty.
    #[serde(rename = "repoURL", default, skip_serializing_if = "String::is_empty")]
    pub repo_url: String,

    /// The chart's name within a classic (HTTP) chart repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,

    /// The chart version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,

    /// The name of the Warehouse subscription that discovered this chart,
    /// when the subscription has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscription_name: String,
}

/// A specific version of an artifact other than a commit, image or chart.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactReference {
    /// The type of the artifact, often a media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub artifact_type: Option<String>,

    /// The name of the subscription that discovered the artifact.
    #[schemars(length(min = 1))]
    pub subscription_name: String,

    /// The artifact's version.
    #[schemars(length(min = 1))]
    pub version: String,

    /// Free-form attributes of the artifact.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::free_form::option"
    )]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub metadata: Option<serde_json::Value>,
}

/// What the controller observed about a Freight: where it is and has been.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreightStatus {
    /// The Stages currently using this Freight, by Stage name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub currently_in: BTreeMap<String, CurrentStage>,

    /// The Stages in which this Freight has been verified (promoted and found
    /// healthy), by Stage name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verified_in: BTreeMap<String, VerifiedStage>,

    /// The Stages this Freight has been manually approved for, by Stage
    /// name: it may be promoted there without passing the upstream Stages.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approved_for: BTreeMap<String, ApprovedStage>,

    /// Free-form metadata shared by steps and Stages, by key.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::api::free_form::map"
    )]
    #[schemars(schema_with = "crate::api::schema::free_form_map")]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// A Stage currently using a Freight.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentStage {
    /// When the Stage most recently started using the Freight.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub since: Option<Time>,
}

/// A Stage in which a Freight has been verified.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedStage {
    /// When the Freight was first verified in the Stage.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub verified_at: Option<Time>,

    /// The longest completed period during which the Stage used the Freight
    /// continuously, as a Go-style duration (`72h0m0s`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::bounded_duration"
    )]
    #[schemars(
        length(max = crate::api::validation::DURATION_MAX_LENGTH),
        pattern(crate::api::validation::DURATION_PATTERN)
    )]
    pub longest_soak: Option<kube::core::Duration>,
}

/// A Stage for which a Freight has been manually approved.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovedStage {
    /// When the Freight was approved for the Stage.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::validation::saturating_time"
    )]
    pub approved_at: Option<Time>,
}

/// A copy of a Freight's identity and artifacts, as recorded in Stage and
/// Promotion status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreightReference {
    /// The Freight's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,

    /// The Freight's origin.
    #[serde(default, skip_serializing_if = "FreightOrigin::is_unset")]
    pub origin: FreightOrigin,

    /// The Freight's commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<GitCommit>,

    /// The Freight's images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,

    /// The Freight's charts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<Chart>,

    /// The Freight's other artifacts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactReference>,
}

/// The Freight a Stage uses at one time: one Freight per requested origin,
/// plus the verifications of that combination.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreightCollection {
    /// Identifies this combination of Freight: the SHA-1 of the sorted Freight
    /// names joined by `,`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,

    /// The Freight by origin key (`Warehouse/<name>`).
    #[serde(default, skip_serializing_if = "FreightItems::is_empty")]
    #[schemars(with = "BTreeMap<String, FreightReference>")]
    pub items: FreightItems,

    /// The verifications of this collection, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification_history: Vec<VerificationInfo>,
}

/// The Freight of a collection by origin key, in key order: a JSON object,
/// kept as a sorted list. A collection holds one Freight per origin, most
/// often one, and a map's smallest node has room for eleven: every Stage's
/// history holds ten collections, and caches hold every Stage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FreightItems(Vec<(String, FreightReference)>);

impl FreightItems {
    pub fn get(&self, key: &str) -> Option<&FreightReference> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets the Freight of `key`, returning the one it replaces.
    pub fn insert(&mut self, key: String, freight: FreightReference) -> Option<FreightReference> {
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, freight)),
            Err(i) => {
                self.0.insert(i, (key, freight));
                None
            }
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &FreightReference) -> bool) {
        self.0.retain(|(key, freight)| keep(key, freight));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &FreightReference)> {
        self.0.iter().map(|(key, freight)| (key, freight))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(key, _)| key)
    }

    pub fn values(&self) -> impl Iterator<Item = &FreightReference> {
        self.0.iter().map(|(_, freight)| freight)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
}

/// The last Freight of each key wins, as in a map.
impl FromIterator<(String, FreightReference)> for FreightItems {
    fn from_iter<I: IntoIterator<Item = (String, FreightReference)>>(items: I) -> Self {
        let mut collected = FreightItems::default();
        for (key, freight) in items {
            collected.insert(key, freight);
        }
        collected.0.shrink_to_fit();
        collected
    }
}

impl<const N: usize> From<[(String, FreightReference); N]> for FreightItems {
    fn from(items: [(String, FreightReference); N]) -> Self {
        items.into_iter().collect()
    }
}

impl Serialize for FreightItems {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for FreightItems {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = BTreeMap::<String, FreightReference>::deserialize(deserializer)?;
        Ok(items.into_iter().collect())
    }
}

impl Freight {
    /// The Freight's name, origin and artifacts, as Stage and Promotion status
    /// record them.
    pub fn reference(&self) -> FreightReference {
        FreightReference {
            name: self.metadata.name.clone().unwrap_or_default(),
            origin: self.spec.origin.clone(),
            commits: self.spec.commits.clone(),
            images: self.spec.images.clone(),
            charts: self.spec.charts.clone(),
            artifacts: self.spec.artifacts.clone(),
        }
    }
}
