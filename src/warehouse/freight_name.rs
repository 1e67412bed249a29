//! The name of the Freight a Warehouse makes of a set of artifacts: Kargo's
//! `GenerateFreightID`, so the same artifacts always make the same Freight,
//! under the same name Kargo would give it. A SHA-1 of the origin and the
//! sorted canonical form of each artifact: a commit by its normalised
//! repository URL, tag and ID; an image by its URL as written, tag and
//! digest; a chart by its normalised repository joined with its name, and
//! version; each followed by its subscription's name when it has one.

use crate::api::freight::{ArtifactReference, Chart, FreightOrigin, GitCommit, Image};
use crate::urls::normalize_git;

/// The Freight's name (40 hex digits).
pub fn freight_name(
    origin: &FreightOrigin,
    commits: &[GitCommit],
    images: &[Image],
    charts: &[Chart],
    artifacts: &[ArtifactReference],
) -> String {
    let mut parts: Vec<String> = commits
        .iter()
        .map(commit_part)
        .chain(images.iter().map(image_part))
        .chain(charts.iter().map(chart_part))
        .chain(artifacts.iter().map(artifact_part))
        .collect();
    // Go's sort.Strings: byte order, as Rust's.
    parts.sort();
    let input = format!("{origin}:{}", parts.join("|"));
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, input.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn with_subscription(base: String, subscription: &str) -> String {
    if subscription.is_empty() {
        base
    } else {
        format!("{base}:{subscription}")
    }
}

fn commit_part(commit: &GitCommit) -> String {
    let repo = normalize_git(&commit.repo_url);
    // One commit may carry several tags: a new tag makes new Freight.
    let base = if commit.tag.is_empty() {
        format!("{repo}:{}", commit.id)
    } else {
        format!("{repo}:{}:{}", commit.tag, commit.id)
    };
    with_subscription(base, &commit.subscription_name)
}

fn image_part(image: &Image) -> String {
    // Both tag and digest: a mutable tag's new digest, or a digest
    // re-tagged, makes new Freight.
    let base = format!("{}:{}@{}", image.repo_url, image.tag, image.digest);
    with_subscription(base, &image.subscription_name)
}

fn chart_part(chart: &Chart) -> String {
    let base = format!(
        "{}:{}",
        go_path_join(&normalize_chart(&chart.repo_url), &chart.name),
        chart.version
    );
    with_subscription(base, &chart.subscription_name)
}

fn artifact_part(artifact: &ArtifactReference) -> String {
    format!(
        "{}:{}:{}",
        artifact.artifact_type.as_deref().unwrap_or_default(),
        artifact.subscription_name,
        artifact.version
    )
}

/// Kargo's `SanitizeURL`: surrounding space and unprintable characters go.
fn sanitize(url: &str) -> String {
    url.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string()
}

/// Kargo's `NormalizeChart`: lower case, without `oci://`, then as an image
/// repository when it parses as one (Docker Hub's many spellings become
/// one); an HTTP(S) repository URL does not, and stays as it was.
pub fn normalize_chart(repo: &str) -> String {
    let repo = sanitize(repo);
    let lower = repo.to_lowercase();
    normalize_image(lower.strip_prefix("oci://").unwrap_or(&lower))
}

/// Kargo's `NormalizeImage`: the repository of an image reference (its
/// tag or digest dropped) as `registry/repository`, Docker Hub's without
/// its registry or `library/`; unchanged when it is not a reference.
pub fn normalize_image(repo_url: &str) -> String {
    let cleaned = sanitize(&repo_url.to_lowercase());
    match parse_repository(&cleaned) {
        Some((registry, repository))
            if registry == DOCKER_HUB || registry == "registry-1.docker.io" =>
        {
            repository
                .strip_prefix("library/")
                .unwrap_or(&repository)
                .to_string()
        }
        Some((registry, repository)) => format!("{registry}/{repository}"),
        None => repo_url.to_string(),
    }
}

const DOCKER_HUB: &str = "index.docker.io";

/// An image reference's registry and repository, as go-containerregistry
/// parses it with weak validation: a digest after `@`, a tag after the last
/// `:` that has no `/` after it; the first path component is the registry
/// when it has a `.` or a `:` or is `localhost`, else Docker Hub (whose
/// one-component repositories are under `library/`).
fn parse_repository(reference: &str) -> Option<(String, String)> {
    let without_digest = match reference.split_once('@') {
        Some((repo, digest)) if !digest.is_empty() => repo,
        Some(_) => return None,
        None => reference,
    };
    let repo = match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => {
            if !valid_tag(tag) {
                return None;
            }
            repo
        }
        _ => without_digest,
    };
    let (registry, repository) = match repo.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), repo.to_string()),
    };
    let registry = if registry == "docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    if !valid_registry(&registry) || !valid_repository(&repository) {
        return None;
    }
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    Some((registry, repository))
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A host, optionally with a port: what survives as the host of
/// `//<registry>`.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = registry.rsplit_once(':').unwrap_or((registry, ""));
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && port.chars().all(|c| c.is_ascii_digit())
}

/// Path components of lower-case letters and digits, separated by `.`,
/// `_`, `__` or runs of `-`.
fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && component.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
                && !component.contains("..")
                && !component.contains("___")
                && !component.contains("._")
                && !component.contains("_.")
                && !component.contains(".-")
                && !component.contains("-.")
                && !component.contains("_-")
                && !component.contains("-_")
        })
}

/// Go's `path.Join(a, b)`: joined by `/` and cleaned (repeated slashes
/// collapse, `.` and `..` resolve, no trailing slash), so an HTTP
/// repository URL `https://host/` becomes `https:/host`, as in Kargo.
fn go_path_join(a: &str, b: &str) -> String {
    let joined = match (a.is_empty(), b.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => b.to_string(),
        (false, true) => a.to_string(),
        (false, false) => format!("{a}/{b}"),
    };
    go_path_clean(&joined)
}

fn go_path_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Cases whose names were computed by Kargo's own `GenerateFreightID`
    /// (pkg/api/freight.go, with pkg/urls), run over the same input.
    #[test]
    fn names_are_the_ones_kargo_computes_for_the_same_artifacts() {
        let recorded: Vec<Value> =
            serde_json::from_str(include_str!("../../tests/fixtures/freight_names.json")).unwrap();
        assert!(recorded.len() >= 19);
        for case in recorded {
            let origin: FreightOrigin = serde_json::from_value(case["origin"].clone()).unwrap();
            let list = |key: &str| case.get(key).cloned().unwrap_or(Value::Array(Vec::new()));
            let commits: Vec<GitCommit> = serde_json::from_value(list("commits")).unwrap();
            let images: Vec<Image> = serde_json::from_value(list("images")).unwrap();
            let charts: Vec<Chart> = serde_json::from_value(list("charts")).unwrap();
            let mut parts: Vec<String> = commits
                .iter()
                .map(commit_part)
                .chain(images.iter().map(image_part))
                .chain(charts.iter().map(chart_part))
                .collect();
            let mut expected_parts: Vec<String> =
                serde_json::from_value(case["hashParts"].clone()).unwrap();
            parts.sort();
            expected_parts.sort();
            assert_eq!(parts, expected_parts, "{}", case["description"]);
            assert_eq!(
                freight_name(&origin, &commits, &images, &charts, &[]),
                case["freightName"].as_str().unwrap(),
                "{}",
                case["description"]
            );
        }
    }

    #[test]
    fn go_path_join_cleans_as_go_does() {
        assert_eq!(
            go_path_join("https://charts.example.com/", "web"),
            "https:/charts.example.com/web"
        );
        assert_eq!(go_path_join("a/b/", ""), "a/b");
        assert_eq!(go_path_join("a/./b/../c", "d"), "a/c/d");
        assert_eq!(go_path_join("", ""), "");
    }
}
