//! Which Warehouses a push concerns, and asking them to discover now.
//!
//! A Warehouse is concerned when one of its subscriptions names the pushed
//! repository, compared as Kargo compares them: a Git repository by its
//! normalized URL whatever the scheme (clone, web or SSH URL), an image by
//! [`normalize_image`] (so `nginx`, `docker.io/library/nginx` and
//! `index.docker.io/library/nginx` are one), a chart by
//! [`normalize_chart`] (`oci://` or not). For Git, as Kargo's
//! `shouldRefresh`: when the push names the refs it updated, one of them
//! must be what the subscription follows (its branch, `main` or `master`
//! when it names none; a tag for the tag strategies), and when it lists
//! the changed files, one of them must pass the subscription's
//! `includePaths`/`excludePaths`. For images and charts, when the push
//! names its tags, one must be one the subscription would discover (its
//! allow/ignore regexes, its semver constraint, a digest subscription's
//! tag).
//!
//! The concerned Warehouses are annotated `barge.dev/refresh` (a merge
//! patch); the Warehouse controller discovers on that annotation.

use std::collections::BTreeSet;

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::event::{Artifact, Push};
use crate::api::ANNOTATION_REFRESH;
use crate::api::warehouse::{
    ChartSubscription, CommitSelectionStrategy, GitSubscription, ImageSelectionStrategy,
    ImageSubscription, Subscription, Warehouse,
};
use crate::urls::repository_key;
use crate::warehouse::freight_name::{normalize_chart, normalize_image};
use crate::warehouse::paths::PathFilter;
use crate::warehouse::tags::{Filters, TagSelection};

/// Whether `push` concerns a Warehouse with these subscriptions. Pure.
pub fn concerns(subscriptions: &[Subscription], push: &Push) -> bool {
    subscriptions
        .iter()
        .any(|s| subscription_concerned(s, push))
}

fn subscription_concerned(subscription: &Subscription, push: &Push) -> bool {
    match (subscription, push.artifact) {
        (Subscription::Git { git, .. }, Artifact::Git) => {
            let key = repository_key(&git.repo_url);
            push.repo_urls.iter().any(|u| repository_key(u) == key)
                && (push.refs.is_empty() || push.refs.iter().any(|r| follows_ref(git, r)))
                && (push.changed_files.is_empty() || watches_paths(git, &push.changed_files))
        }
        (Subscription::Image { image, .. }, Artifact::Image | Artifact::ImageOrChart) => {
            let key = image_key(&image.repo_url);
            push.repo_urls.iter().any(|u| image_key(u) == key)
                && (push.refs.is_empty() || push.refs.iter().any(|t| image_takes_tag(image, t)))
        }
        (Subscription::Chart { chart, .. }, Artifact::Chart | Artifact::ImageOrChart) => {
            let mut keys = vec![normalize_chart(&chart.repo_url)];
            if !chart.name.is_empty() {
                keys.push(normalize_chart(&format!(
                    "{}/{}",
                    chart.repo_url.trim_end_matches('/'),
                    chart.name
                )));
            }
            push.repo_urls
                .iter()
                .any(|u| keys.contains(&normalize_chart(u)))
                && (push.refs.is_empty() || push.refs.iter().any(|v| chart_takes_version(chart, v)))
        }
        _ => false,
    }
}

/// An image repository's key: [`normalize_image`], with Docker Hub's
/// `docker.io/` spelling folded in too.
fn image_key(url: &str) -> String {
    let normalized = normalize_image(url);
    let folded = normalized
        .strip_prefix("docker.io/")
        .map(|rest| rest.strip_prefix("library/").unwrap_or(rest).to_string());
    folded.unwrap_or(normalized)
}

/// Kargo's `MatchesRef`: a branch subscription follows its branch (`main`
/// or `master` when it names none); a tag subscription any tag.
fn follows_ref(git: &GitSubscription, reference: &str) -> bool {
    match git.commit_selection_strategy {
        CommitSelectionStrategy::NewestFromBranch => {
            let Some(branch) = reference.strip_prefix("refs/heads/") else {
                return false;
            };
            if git.branch.is_empty() {
                branch == "main" || branch == "master"
            } else {
                branch == git.branch
            }
        }
        _ => reference.starts_with("refs/tags/"),
    }
}

fn no_filters(at: &str) -> Filters<'_> {
    Filters {
        at,
        allow_tags_regexes: &[],
        ignore_tags_regexes: &[],
        allow_tags: "",
        ignore_tags: &[],
        discovery_limit: None,
    }
}

/// Kargo's image `MatchesTag`: a digest subscription takes its tag; the
/// others a tag their allow/ignore regexes admit, and for `SemVer` one
/// that is a version within the constraint. A subscription the Warehouse
/// controller will refuse takes any (let it say why).
fn image_takes_tag(image: &ImageSubscription, tag: &str) -> bool {
    let filters = Filters {
        allow_tags_regexes: &image.allow_tags_regexes,
        ignore_tags_regexes: &image.ignore_tags_regexes,
        ..no_filters("image")
    };
    let selection = match image.image_selection_strategy {
        ImageSelectionStrategy::Digest => {
            return image.constraint.is_empty() || image.constraint == tag;
        }
        ImageSelectionStrategy::SemVer => TagSelection::semver(
            &filters,
            &image.constraint,
            image.strict_semvers,
            "constraint",
        ),
        ImageSelectionStrategy::Lexical | ImageSelectionStrategy::NewestBuild => {
            TagSelection::lexical(&filters)
        }
    };
    selection.map_or(true, |s| !s.select([tag]).is_empty())
}

/// Kargo's chart `MatchesVersion`: a version within the constraint.
fn chart_takes_version(chart: &ChartSubscription, version: &str) -> bool {
    if chart.semver_constraint.trim().is_empty() {
        return true;
    }
    TagSelection::semver(
        &no_filters("chart"),
        &chart.semver_constraint,
        Some(false),
        "semverConstraint",
    )
    .map_or(true, |s| !s.select([version]).is_empty())
}

fn watches_paths(git: &GitSubscription, files: &[String]) -> bool {
    if git.include_paths.is_empty() && git.exclude_paths.is_empty() {
        return true;
    }
    match PathFilter::new(&git.include_paths, &git.exclude_paths) {
        Ok(filter) => filter.admits_any(files),
        // A pattern the Warehouse controller will refuse: let it say so.
        Err(_) => true,
    }
}

/// The names of the Warehouses `push` concerns, sorted. Pure.
pub fn concerned(warehouses: &[Warehouse], push: &Push) -> Vec<String> {
    let names: BTreeSet<String> = warehouses
        .iter()
        .filter(|w| {
            let subscriptions: Vec<Subscription> = w
                .subscriptions()
                .into_iter()
                .filter_map(Result::ok)
                .collect();
            concerns(&subscriptions, push)
        })
        .map(ResourceExt::name_any)
        .collect();
    names.into_iter().collect()
}

/// The normalized repository URLs a Warehouse subscribes to: Kargo's
/// `subscribedURLs` index (Git by `normalizeGit`, images by
/// `normalizeImage`, charts by `normalizeChart`).
pub fn subscribed_urls(warehouse: &Warehouse) -> Vec<String> {
    warehouse
        .subscriptions()
        .into_iter()
        .filter_map(Result::ok)
        .map(|s| match s {
            Subscription::Git { git, .. } => crate::urls::normalize_git(&git.repo_url),
            Subscription::Image { image, .. } => normalize_image(&image.repo_url),
            Subscription::Chart { chart, .. } => normalize_chart(&chart.repo_url),
        })
        .collect()
}

/// A fresh `barge.dev/refresh` value: the time, to the nanosecond.
pub fn refresh_token() -> String {
    jiff::Timestamp::now().to_string()
}

/// Annotates the named Warehouses of `namespace` for refresh; the names
/// of those annotated (a Warehouse deleted meanwhile is skipped).
pub async fn refresh(
    client: &Client,
    namespace: &str,
    names: &[String],
) -> Result<Vec<String>, kube::Error> {
    let api: Api<Warehouse> = Api::namespaced(client.clone(), namespace);
    let token = refresh_token();
    let patch = json!({ "metadata": { "annotations": { ANNOTATION_REFRESH: token } } });
    let mut refreshed = Vec::new();
    for name in names {
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => refreshed.push(name.clone()),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(refreshed)
}

/// Finds the Warehouses of `namespace` that `push` concerns and annotates
/// them; their names.
pub async fn refresh_subscribers(
    client: &Client,
    namespace: &str,
    push: &Push,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<Warehouse> = Api::namespaced(client.clone(), namespace);
    let warehouses = api.list(&ListParams::default()).await?.items;
    let names = concerned(&warehouses, push);
    refresh(client, namespace, &names).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::api::warehouse::WarehouseSpec;

    fn warehouse(name: &str, subscriptions: Value) -> Warehouse {
        let mut w = Warehouse::new(
            name,
            WarehouseSpec {
                subscriptions: serde_json::from_value(subscriptions).unwrap(),
                ..Default::default()
            },
        );
        w.metadata.namespace = Some("demo".into());
        w
    }

    fn git_push(url: &str, reference: &str, files: &[&str]) -> Push {
        Push {
            artifact: Artifact::Git,
            repo_urls: vec![url.into()],
            changed_files: files.iter().map(|f| f.to_string()).collect(),
            refs: if reference.is_empty() {
                vec![]
            } else {
                vec![reference.into()]
            },
        }
    }

    fn image_push(url: &str) -> Push {
        Push {
            artifact: Artifact::Image,
            repo_urls: vec![url.into()],
            changed_files: vec![],
            refs: vec!["1.2.3".into()],
        }
    }

    #[test]
    fn a_git_push_concerns_the_warehouses_subscribed_to_the_repository_by_any_url() {
        let ws = [
            warehouse(
                "app",
                json!([{"git": {"repoURL": "git@github.com:Example/App.git"}}]),
            ),
            warehouse(
                "other",
                json!([{"git": {"repoURL": "https://github.com/example/other"}}]),
            ),
        ];
        let push = git_push("https://github.com/example/app.git", "refs/heads/main", &[]);
        assert_eq!(concerned(&ws, &push), vec!["app"]);
        let push = git_push("https://github.com/example/app", "", &[]);
        assert_eq!(concerned(&ws, &push), vec!["app"]);
    }

    #[test]
    fn a_branch_subscription_follows_its_branch_or_the_default_one() {
        let ws = [
            warehouse(
                "release",
                json!([{"git": {"repoURL": "https://git.example.com/a/b", "branch": "release"}}]),
            ),
            warehouse(
                "default",
                json!([{"git": {"repoURL": "https://git.example.com/a/b"}}]),
            ),
            warehouse(
                "tags",
                json!([{"git": {"repoURL": "https://git.example.com/a/b", "commitSelectionStrategy": "SemVer"}}]),
            ),
        ];
        let url = "https://git.example.com/a/b.git";
        assert_eq!(
            concerned(&ws, &git_push(url, "refs/heads/release", &[])),
            vec!["release"]
        );
        assert_eq!(
            concerned(&ws, &git_push(url, "refs/heads/master", &[])),
            vec!["default"]
        );
        assert_eq!(
            concerned(&ws, &git_push(url, "refs/tags/v1.0.0", &[])),
            vec!["tags"]
        );
        assert!(concerned(&ws, &git_push(url, "refs/heads/feature", &[])).is_empty());
    }

    #[test]
    fn changed_files_must_pass_the_subscriptions_path_filters() {
        let ws = [
            warehouse(
                "guestbook",
                json!([{"git": {"repoURL": "https://git.example.com/a/b",
                    "includePaths": ["apps/guestbook"], "excludePaths": ["glob:**/*.md"]}}]),
            ),
            warehouse(
                "all",
                json!([{"git": {"repoURL": "https://git.example.com/a/b"}}]),
            ),
        ];
        let url = "https://git.example.com/a/b";
        let docs = git_push(
            url,
            "refs/heads/main",
            &["apps/guestbook/README.md", "x.txt"],
        );
        assert_eq!(concerned(&ws, &docs), vec!["all"]);
        let values = git_push(url, "refs/heads/main", &["apps/guestbook/values.yaml"]);
        assert_eq!(concerned(&ws, &values), vec!["all", "guestbook"]);
        // Files unknown (a truncated payload): every subscriber.
        let unknown = git_push(url, "refs/heads/main", &[]);
        assert_eq!(concerned(&ws, &unknown), vec!["all", "guestbook"]);
    }

    #[test]
    fn docker_hub_names_an_image_in_any_of_its_spellings() {
        for subscribed in [
            "nginx",
            "docker.io/library/nginx",
            "index.docker.io/library/nginx",
        ] {
            let ws = [warehouse(
                "web",
                json!([{"image": {"repoURL": subscribed}}]),
            )];
            for pushed in [
                "nginx",
                "library/nginx",
                "docker.io/library/nginx",
                "index.docker.io/library/nginx:1.27",
            ] {
                assert_eq!(
                    concerned(&ws, &image_push(pushed)),
                    vec!["web"],
                    "{subscribed} vs {pushed}"
                );
            }
            assert!(concerned(&ws, &image_push("ghcr.io/library/nginx")).is_empty());
        }
    }

    #[test]
    fn a_registry_push_concerns_image_and_oci_chart_subscriptions_as_its_type_allows() {
        let ws = [
            warehouse(
                "image",
                json!([{"image": {"repoURL": "registry.example.com:5000/team/app"}}]),
            ),
            warehouse(
                "chart",
                json!([{"chart": {"repoURL": "oci://registry.example.com:5000/team/app"}}]),
            ),
            warehouse(
                "git",
                json!([{"git": {"repoURL": "https://registry.example.com:5000/team/app"}}]),
            ),
        ];
        let mut push = image_push("registry.example.com:5000/team/app");
        assert_eq!(concerned(&ws, &push), vec!["image"]);
        push.artifact = Artifact::Chart;
        assert_eq!(concerned(&ws, &push), vec!["chart"]);
        push.artifact = Artifact::ImageOrChart;
        assert_eq!(concerned(&ws, &push), vec!["chart", "image"]);
    }

    #[test]
    fn a_pushed_tag_must_be_one_the_image_or_chart_subscription_would_discover() {
        let ws = [
            warehouse(
                "stable",
                json!([{"image": {"repoURL": "ghcr.io/acme/api", "constraint": "^1.0.0"}}]),
            ),
            warehouse(
                "no-rc",
                json!([{"image": {"repoURL": "ghcr.io/acme/api", "imageSelectionStrategy": "Lexical",
                    "ignoreTagsRegexes": ["-rc"]}}]),
            ),
            warehouse(
                "latest",
                json!([{"image": {"repoURL": "ghcr.io/acme/api", "imageSelectionStrategy": "Digest",
                    "constraint": "latest"}}]),
            ),
            warehouse(
                "chart",
                json!([{"chart": {"repoURL": "oci://ghcr.io/acme/api", "semverConstraint": "<2"}}]),
            ),
        ];
        let mut push = image_push("ghcr.io/acme/api");
        push.artifact = Artifact::ImageOrChart;
        push.refs = vec!["1.2.3".into()];
        assert_eq!(concerned(&ws, &push), vec!["chart", "no-rc", "stable"]);
        push.refs = vec!["2.0.0-rc1".into()];
        assert!(concerned(&ws, &push).is_empty());
        // Not a version: not one a constrained chart would discover.
        push.refs = vec!["latest".into()];
        assert_eq!(concerned(&ws, &push), vec!["latest", "no-rc"]);
        // No tag named (a push by digest): every subscriber.
        push.refs = vec![];
        assert_eq!(concerned(&ws, &push).len(), 4);
    }

    #[test]
    fn the_subscribed_urls_index_holds_each_subscription_normalized() {
        let w = warehouse(
            "w",
            json!([
                {"git": {"repoURL": "https://GitHub.com/a/b.git"}},
                {"image": {"repoURL": "docker.io/library/nginx"}},
                {"chart": {"repoURL": "oci://ghcr.io/a/chart"}}
            ]),
        );
        assert_eq!(
            subscribed_urls(&w),
            vec!["https://github.com/a/b", "nginx", "ghcr.io/a/chart"]
        );
    }
}
