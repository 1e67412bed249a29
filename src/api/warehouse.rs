//! `Warehouse`: where Freight is discovered, as Kargo declares it:
//! subscriptions to git repositories, image repositories and chart
//! repositories, how often to look (`interval`, a backstop: push webhooks
//! wake discovery), and whether new Freight is made automatically.
//!
//! Kargo keeps `subscriptions` as free-form JSON (a subscription is one
//! key naming its type, plus an optional `name`); [`Warehouse::subscriptions`]
//! reads them into [`Subscription`]s, naming the index of one it cannot.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::validation;

// kube's attributes repeat keys such as `type_` across printer columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "barge.dev",
    version = "v1alpha1",
    kind = "Warehouse",
    plural = "warehouses",
    namespaced,
    status = "WarehouseStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Warehouse discovers Freight: new commits, images and chart versions of the \
           repositories it subscribes to.",
    printcolumn(name = "Shard", type_ = "string", json_path = ".spec.shard"),
    printcolumn(name = "Interval", type_ = "string", json_path = ".spec.interval"),
    printcolumn(
        name = "Last Freight",
        type_ = "string",
        json_path = ".status.lastFreightID"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WarehouseSpec {
    /// Only the controller of this shard discovers for the Warehouse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,

    /// How often to look for new artifacts when no webhook says so
    /// (Go duration; Kargo's default `5m0s`).
    #[serde(default = "default_interval")]
    #[schemars(
        length(max = validation::DURATION_MAX_LENGTH),
        pattern(validation::DURATION_PATTERN)
    )]
    pub interval: String,

    /// `Automatic` (the default): new Freight is made as soon as new
    /// artifacts are found; `Manual`: discovered artifacts are only listed
    /// in `status.discoveredArtifacts`.
    #[serde(default)]
    pub freight_creation_policy: FreightCreationPolicy,

    /// What to watch: each a single key naming its type (`git`, `image`,
    /// `chart`) with that subscription's fields, and an optional `name`.
    #[schemars(length(min = 1))]
    #[schemars(schema_with = "subscription_list")]
    #[serde(deserialize_with = "crate::api::free_form::list")]
    pub subscriptions: Vec<Value>,

    /// An expression new Freight must satisfy to be made automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freight_creation_criteria: Option<FreightCreationCriteria>,
}

fn default_interval() -> String {
    "5m0s".to_string()
}

/// A list of free-form objects, as Kargo's CRD declares subscriptions.
fn subscription_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "minItems": 1,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum FreightCreationPolicy {
    #[default]
    Automatic,
    Manual,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
pub struct FreightCreationCriteria {
    /// An expression over the discovered artifacts (`imageFrom`,
    /// `commitFrom`, `chartFrom`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expression: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WarehouseStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = validation::conditions)]
    pub conditions: Vec<Condition>,

    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_handled_refresh: String,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The Freight made last.
    #[serde(
        default,
        rename = "lastFreightID",
        skip_serializing_if = "String::is_empty"
    )]
    pub last_freight_id: String,

    /// What the last discovery found, per subscription.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::free_form::option"
    )]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub discovered_artifacts: Option<Value>,
}

/// One subscription, read from its free-form JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum Subscription {
    Git {
        name: Option<String>,
        git: GitSubscription,
    },
    Image {
        name: Option<String>,
        image: ImageSubscription,
    },
    Chart {
        name: Option<String>,
        chart: ChartSubscription,
    },
}

impl Subscription {
    /// The repository the subscription watches.
    pub fn repo_url(&self) -> &str {
        match self {
            Subscription::Git { git, .. } => &git.repo_url,
            Subscription::Image { image, .. } => &image.repo_url,
            Subscription::Chart { chart, .. } => &chart.repo_url,
        }
    }
}

impl Warehouse {
    /// The subscriptions, each read or refused with a message naming its
    /// index and what is wrong.
    pub fn subscriptions(&self) -> Vec<Result<Subscription, String>> {
        self.spec
            .subscriptions
            .iter()
            .enumerate()
            .map(|(i, raw)| read_subscription(i, raw))
            .collect()
    }
}

fn read_subscription(i: usize, raw: &Value) -> Result<Subscription, String> {
    let at = format!("spec.subscriptions[{i}]");
    if crate::api::free_form::too_deep(raw) {
        return Err(format!(
            "{at}: {}",
            crate::api::free_form::too_deep_message()
        ));
    }
    let object = raw
        .as_object()
        .ok_or_else(|| format!("{at}: not an object"))?;
    let name = match object.get("name") {
        None => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(format!("{at}.name: not a string")),
    };
    let kinds: Vec<&String> = object.keys().filter(|k| *k != "name").collect();
    let [kind] = kinds.as_slice() else {
        return Err(format!(
            "{at}: must have exactly one field naming its type (git, image or chart) besides name, has {}",
            kinds.len()
        ));
    };
    let body = object[kind.as_str()].clone();
    let typed = |e: serde_json::Error| format!("{at}.{kind}: {e}");
    match kind.as_str() {
        "git" => Ok(Subscription::Git {
            name,
            git: serde_json::from_value(body).map_err(typed)?,
        }),
        "image" => Ok(Subscription::Image {
            name,
            image: serde_json::from_value(body).map_err(typed)?,
        }),
        "chart" => Ok(Subscription::Chart {
            name,
            chart: serde_json::from_value(body).map_err(typed)?,
        }),
        other => Err(format!(
            "{at}: subscriptions of type {other:?} are not supported (git, image, chart)"
        )),
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum CommitSelectionStrategy {
    #[default]
    NewestFromBranch,
    SemVer,
    Lexical,
    NewestTag,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum ImageSelectionStrategy {
    #[default]
    SemVer,
    Lexical,
    NewestBuild,
    Digest,
}

/// Kargo's default and largest `discoveryLimit`.
pub const DEFAULT_DISCOVERY_LIMIT: i64 = 20;
pub const MAX_DISCOVERY_LIMIT: i64 = 100;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSubscription {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    #[serde(default)]
    pub commit_selection_strategy: CommitSelectionStrategy,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub strict_semvers: Option<bool>,
    #[serde(default)]
    pub semver_constraint: String,
    /// Deprecated in Kargo for `allowTagsRegexes`.
    #[serde(default)]
    pub allow_tags: String,
    #[serde(default)]
    pub allow_tags_regexes: Vec<String>,
    #[serde(default)]
    pub ignore_tags: Vec<String>,
    #[serde(default)]
    pub ignore_tags_regexes: Vec<String>,
    #[serde(default)]
    pub expression_filter: String,
    #[serde(default)]
    pub include_paths: Vec<String>,
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    #[serde(default)]
    pub discovery_limit: Option<i64>,
    #[serde(default)]
    pub blobless: Option<bool>,
    #[serde(default)]
    pub since: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSubscription {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    #[serde(default)]
    pub image_selection_strategy: ImageSelectionStrategy,
    #[serde(default)]
    pub strict_semvers: Option<bool>,
    #[serde(default)]
    pub constraint: String,
    /// Deprecated in Kargo for `allowTagsRegexes`.
    #[serde(default)]
    pub allow_tags: String,
    #[serde(default)]
    pub allow_tags_regexes: Vec<String>,
    #[serde(default)]
    pub ignore_tags: Vec<String>,
    #[serde(default)]
    pub ignore_tags_regexes: Vec<String>,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    #[serde(default)]
    pub discovery_limit: Option<i64>,
    #[serde(default)]
    pub cache_by_tag: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChartSubscription {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// The chart's name in an HTTP(S) repository; empty for an OCI one.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub semver_constraint: String,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    #[serde(default)]
    pub discovery_limit: Option<i64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn warehouse(subscriptions: Value) -> Warehouse {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
            "metadata": {"name": "kargo-demo", "namespace": "demo"},
            "spec": {"subscriptions": subscriptions},
        }))
        .unwrap()
    }

    #[test]
    fn kargo_subscriptions_read_with_their_defaults() {
        let w = warehouse(json!([
            {"image": {"repoURL": "public.ecr.aws/nginx/nginx", "constraint": "^1.26.0", "discoveryLimit": 5}},
            {"name": "config", "git": {"repoURL": "https://github.com/example/gitops.git", "commitSelectionStrategy": "SemVer"}},
            {"chart": {"repoURL": "oci://ghcr.io/stefanprodan/charts/podinfo", "semverConstraint": "^6"}},
        ]));
        assert_eq!(w.spec.interval, "5m0s");
        assert_eq!(
            w.spec.freight_creation_policy,
            FreightCreationPolicy::Automatic
        );
        let subs: Vec<Subscription> = w.subscriptions().into_iter().map(Result::unwrap).collect();
        let Subscription::Image { image, name: None } = &subs[0] else {
            panic!("{subs:?}")
        };
        assert_eq!(
            image.image_selection_strategy,
            ImageSelectionStrategy::SemVer
        );
        assert_eq!(image.discovery_limit, Some(5));
        let Subscription::Git { git, name } = &subs[1] else {
            panic!("{subs:?}")
        };
        assert_eq!(name.as_deref(), Some("config"));
        assert_eq!(
            git.commit_selection_strategy,
            CommitSelectionStrategy::SemVer
        );
        assert!(matches!(&subs[2], Subscription::Chart { chart, .. } if chart.name.is_empty()));
    }

    #[test]
    fn a_warehouse_with_a_subscription_nested_past_the_bound_reads_and_names_it() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = format!(
            r#"{{"items": [{{"apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
                "metadata": {{"name": "w", "namespace": "ns"}},
                "spec": {{"subscriptions": [{{"git": {{"repoURL": "https://x"}}}},
                                            {{"git": {{"repoURL": "https://y", "includePaths": {deep}}}}}]}}}}]}}"#
        );
        #[derive(serde::Deserialize)]
        struct List {
            items: Vec<Warehouse>,
        }
        let list: List = serde_json::from_str(&text).unwrap();
        let subs = list.items[0].subscriptions();
        assert!(subs[0].is_ok());
        assert_eq!(
            subs[1].as_ref().unwrap_err(),
            "spec.subscriptions[1]: nests deeper than 100 levels of arrays and objects"
        );
    }

    #[test]
    fn a_subscription_that_cannot_be_read_is_named_by_index_and_field() {
        let w = warehouse(json!([
            {"git": {"repoURL": "https://x", "commitSelectionStrategy": "Oldest"}},
            {"git": {"repoURL": "https://x"}, "image": {"repoURL": "y"}},
            {"artifactory": {"repoURL": "z"}},
            {"image": {"repoURL": "y", "tagz": 1}},
        ]));
        let errors: Vec<String> = w
            .subscriptions()
            .into_iter()
            .map(|r| r.unwrap_err())
            .collect();
        assert!(
            errors[0].starts_with("spec.subscriptions[0].git: unknown variant `Oldest`"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].contains("exactly one field naming its type"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].contains("\"artifactory\" are not supported"),
            "{}",
            errors[2]
        );
        assert!(
            errors[3].contains("spec.subscriptions[3].image: unknown field `tagz`"),
            "{}",
            errors[3]
        );
    }
}
