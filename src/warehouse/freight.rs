//! The Freight a Warehouse makes of what it discovered: the newest
//! candidate of every subscription, named by the hash of its artifacts (so
//! the same artifacts always make the same Freight), with a readable alias
//! derived from that name. Pure: the controller creates what this returns.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;

use super::discovered::DiscoveredArtifacts;
use super::freight_name::freight_name;
use crate::api::freight::{Chart, FreightOrigin, GitCommit, Image};
use crate::api::{Freight, FreightSpec, Warehouse};
use crate::expr::{Env, FreightSnapshot};

/// Why no Freight can be made of a discovery: Kargo's reasons and
/// messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub reason: &'static str,
    pub message: String,
}

/// The Freight of the newest discovered artifacts, or why there is none.
pub fn newest_freight(
    warehouse: &Warehouse,
    artifacts: &DiscoveredArtifacts,
    now: Timestamp,
) -> Result<Freight, Missing> {
    if artifacts.git.is_empty() && artifacts.images.is_empty() && artifacts.charts.is_empty() {
        return Err(Missing {
            reason: "MissingArtifacts",
            message: "No artifacts discovered".into(),
        });
    }
    let mut commits = Vec::new();
    for result in &artifacts.git {
        let Some(c) = result.commits.first() else {
            return Err(Missing {
                reason: "MissingCommits",
                message: format!(
                    "No commits discovered for Git repository {:?}",
                    result.repo_url
                ),
            });
        };
        commits.push(GitCommit {
            repo_url: result.repo_url.clone(),
            id: c.id.clone(),
            branch: c.branch.clone(),
            tag: c.tag.clone(),
            message: c.subject.clone(),
            author: c.author.clone(),
            committer: c.committer.clone(),
            subscription_name: result.subscription_name.clone(),
        });
    }
    let mut images = Vec::new();
    for result in &artifacts.images {
        let Some(r) = result.references.first() else {
            return Err(Missing {
                reason: "MissingImageReferences",
                message: format!(
                    "No references discovered for image repository {:?}",
                    result.repo_url
                ),
            });
        };
        images.push(Image {
            repo_url: result.repo_url.clone(),
            tag: r.tag.clone(),
            digest: r.digest.clone(),
            annotations: r.annotations.clone(),
            subscription_name: result.subscription_name.clone(),
        });
    }
    let mut charts = Vec::new();
    for result in &artifacts.charts {
        let Some(version) = result.versions.first() else {
            let chart = if result.name.is_empty() {
                String::new()
            } else {
                format!("{:?} ", result.name)
            };
            return Err(Missing {
                reason: "MissingChartVersions",
                message: format!(
                    "No versions discovered for chart {chart}from repository {:?}",
                    result.repo_url
                ),
            });
        };
        charts.push(Chart {
            repo_url: result.repo_url.clone(),
            name: result.name.clone(),
            version: version.clone(),
            subscription_name: result.subscription_name.clone(),
        });
    }
    let origin = FreightOrigin::warehouse(warehouse.name_any());
    let name = freight_name(&origin, &commits, &images, &charts, &[]);
    Ok(Freight {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: warehouse.namespace(),
            ..ObjectMeta::default()
        },
        spec: FreightSpec {
            alias: Some(alias(&name)),
            discovered_at: Some(Time(now)),
            origin,
            commits,
            images,
            charts,
            artifacts: Vec::new(),
        },
        status: None,
    })
}

/// Whether `freightCreationCriteria.expression` (a bare expression, as in
/// Kargo, or a `${{ }}` template) holds for the candidate Freight:
/// `imageFrom`, `commitFrom` and `chartFrom` see its artifacts.
pub fn criteria_satisfied(expression: &str, candidate: &Freight) -> Result<bool, String> {
    let expression = expression.trim();
    if expression.is_empty() {
        return Ok(true);
    }
    let template = if crate::expr::template::has_expression(expression) {
        expression.to_string()
    } else {
        format!("${{{{ {expression} }}}}")
    };
    let freight = serde_json::to_value(candidate).map_err(|e| e.to_string())?;
    let env = Env {
        freight: FreightSnapshot {
            freight: vec![freight],
        },
        ..Env::default()
    };
    crate::expr::template::evaluate_bool(&template, &env).map_err(|e| e.to_string())
}

const ADJECTIVES: [&str; 32] = [
    "amber", "brave", "calm", "dapper", "eager", "fancy", "gentle", "happy", "icy", "jolly",
    "keen", "lively", "mellow", "nimble", "odd", "plucky", "quiet", "rapid", "sunny", "tidy",
    "upbeat", "vivid", "witty", "young", "zesty", "bold", "clever", "dusty", "fuzzy", "grand",
    "humble", "lucky",
];
const ANIMALS: [&str; 32] = [
    "otter", "badger", "heron", "lynx", "marten", "newt", "orca", "panda", "quail", "raven",
    "seal", "tapir", "urchin", "vole", "walrus", "yak", "zebra", "bison", "crane", "dingo",
    "egret", "ferret", "gecko", "hare", "ibis", "jackal", "koala", "lemur", "moose", "narwhal",
    "ocelot", "puffin",
];

/// A readable alias derived from the Freight's name, so the same Freight
/// always gets the same alias: two words and four hex digits of the name.
pub fn alias(name: &str) -> String {
    let byte = |i: usize| {
        name.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    let adjective = ADJECTIVES[usize::from(byte(0)) % ADJECTIVES.len()];
    let animal = ANIMALS[usize::from(byte(2)) % ANIMALS.len()];
    let suffix: String = name.chars().skip(4).take(4).collect();
    format!("{adjective}-{animal}-{suffix}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::warehouse::discovered::{
        ChartDiscoveryResult, DiscoveredCommit, DiscoveredImageReference, GitDiscoveryResult,
        ImageDiscoveryResult,
    };

    fn warehouse() -> Warehouse {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
            "metadata": {"name": "kargo-demo", "namespace": "demo"},
            "spec": {"subscriptions": [{"image": {"repoURL": "x"}}]},
        }))
        .unwrap()
    }

    fn image(repo: &str, tags: &[&str]) -> ImageDiscoveryResult {
        ImageDiscoveryResult {
            repo_url: repo.into(),
            references: tags
                .iter()
                .map(|t| DiscoveredImageReference {
                    tag: (*t).into(),
                    digest: format!("sha256:{t}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        "2026-11-30T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn freight_takes_the_newest_candidate_of_every_subscription() {
        let artifacts = DiscoveredArtifacts {
            git: vec![GitDiscoveryResult {
                repo_url: "https://git.example/config.git".into(),
                commits: vec![DiscoveredCommit {
                    id: "abc".into(),
                    branch: "main".into(),
                    subject: "bump".into(),
                    ..Default::default()
                }],
                subscription_name: "config".into(),
                ..Default::default()
            }],
            images: vec![image("registry.example/app", &["1.2.0", "1.1.0"])],
            charts: vec![ChartDiscoveryResult {
                repo_url: "oci://registry.example/charts/app".into(),
                versions: vec!["0.3.0".into(), "0.2.0".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let f = newest_freight(&warehouse(), &artifacts, now()).unwrap();
        assert_eq!(f.spec.images[0].tag, "1.2.0");
        assert_eq!(f.spec.commits[0].message, "bump");
        assert_eq!(f.spec.commits[0].subscription_name, "config");
        assert_eq!(f.spec.charts[0].version, "0.3.0");
        assert_eq!(f.spec.origin, FreightOrigin::warehouse("kargo-demo"));
        assert_eq!(f.namespace().as_deref(), Some("demo"));
        assert_eq!(
            f.name_any(),
            freight_name(
                &f.spec.origin,
                &f.spec.commits,
                &f.spec.images,
                &f.spec.charts,
                &[]
            )
        );
    }

    #[test]
    fn the_same_artifacts_make_the_same_freight_and_alias_at_any_time() {
        let artifacts = DiscoveredArtifacts {
            images: vec![image("registry.example/app", &["1.2.0"])],
            ..Default::default()
        };
        let a = newest_freight(&warehouse(), &artifacts, now()).unwrap();
        let b = newest_freight(&warehouse(), &artifacts, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(a.name_any(), b.name_any());
        assert_eq!(a.spec.alias, b.spec.alias);
        let alias = a.spec.alias.unwrap();
        assert!(
            regex::Regex::new(crate::api::validation::FREIGHT_ALIAS_PATTERN)
                .unwrap()
                .is_match(&alias),
            "{alias}"
        );
    }

    #[test]
    fn a_subscription_that_found_nothing_makes_no_freight_and_says_which() {
        let artifacts = DiscoveredArtifacts {
            images: vec![
                image("registry.example/app", &["1.2.0"]),
                image("registry.example/sidecar", &[]),
            ],
            ..Default::default()
        };
        let missing = newest_freight(&warehouse(), &artifacts, now()).unwrap_err();
        assert_eq!(missing.reason, "MissingImageReferences");
        assert!(missing.message.contains("registry.example/sidecar"));
        let none = newest_freight(&warehouse(), &DiscoveredArtifacts::default(), now());
        assert_eq!(none.unwrap_err().reason, "MissingArtifacts");
    }

    #[test]
    fn creation_criteria_see_the_candidates_artifacts() {
        let artifacts = DiscoveredArtifacts {
            images: vec![image("registry.example/app", &["1.2.0"])],
            ..Default::default()
        };
        let f = newest_freight(&warehouse(), &artifacts, now()).unwrap();
        assert!(
            criteria_satisfied("imageFrom('registry.example/app').Tag == '1.2.0'", &f).unwrap()
        );
        assert!(
            !criteria_satisfied("imageFrom('registry.example/app').Tag == '2.0.0'", &f).unwrap()
        );
        assert!(criteria_satisfied("", &f).unwrap());
        assert!(criteria_satisfied("imageFrom(", &f).is_err());
    }
}
