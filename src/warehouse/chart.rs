//! Chart discovery: which versions of a Helm chart a chart subscription
//! finds, newest first, as Kargo's chart selectors pick them.
//!
//! - A classic repository (`http://` or `https://`): its `index.yaml`
//!   (at most [`MAX_INDEX_BYTES`]) lists the versions of the chart `name`
//!   (required). Versions are read as Masterminds' `NewVersion` reads them
//!   (a `v`, a missing minor or patch allowed); others are ignored. A
//!   chart the index does not list is `NotFound` (Kargo finds nothing).
//! - An OCI repository (`oci://host/path/chart`, `name` empty): its tags,
//!   with `_` read as `+` as Helm writes build metadata into tags, strict
//!   semantic versions only (Masterminds' `StrictNewVersion`).
//!
//! Versions satisfying `semverConstraint`, newest first (ties: the greater
//! text), at most `discoveryLimit` (20 by default, 100 at most). HTTP
//! Basic credentials for both.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Deserialize;

use super::constraint::Constraints;
use super::discovered::{ChartDiscoveryResult, DiscoveryError};
use super::oci::{OciClient, Repository, redacted};
use super::tags::is_strict;
use crate::api::warehouse::{ChartSubscription, DEFAULT_DISCOVERY_LIMIT, MAX_DISCOVERY_LIMIT};
use crate::expr::semver::{Version, parse};
use crate::git::Credentials;

/// The largest `index.yaml` read.
pub const MAX_INDEX_BYTES: usize = 32 * 1024 * 1024;

/// Discovers the chart versions `sub` finds. `at` is the subscription's
/// field path (`spec.subscriptions[2].chart`), for messages.
pub async fn discover(
    sub: &ChartSubscription,
    at: &str,
    subscription_name: Option<&str>,
    credentials: Option<&Credentials>,
    client: &OciClient,
) -> Result<ChartDiscoveryResult, DiscoveryError> {
    let limit = match sub.discovery_limit {
        None | Some(0) => DEFAULT_DISCOVERY_LIMIT,
        Some(n) if (1..=MAX_DISCOVERY_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(DiscoveryError::Config(format!(
                "{at}.discoveryLimit: {n} is not between 1 and {MAX_DISCOVERY_LIMIT}"
            )));
        }
    };
    let limit = usize::try_from(limit).unwrap_or(20);
    let constraint = if sub.semver_constraint.trim().is_empty() {
        None
    } else {
        Some(
            Constraints::parse(&sub.semver_constraint)
                .map_err(|e| DiscoveryError::Config(format!("{at}.semverConstraint: {e}")))?,
        )
    };
    let url = sub.repo_url.trim();
    let versions = if let Some(reference) = url.strip_prefix("oci://") {
        if !sub.name.is_empty() {
            return Err(DiscoveryError::Config(format!(
                "{at}.name: must be empty when repoURL starts with oci:// (the chart is the repository's last path component)"
            )));
        }
        let repository = Repository::parse(reference)
            .map_err(|e| DiscoveryError::Config(format!("{at}.repoURL: {e}")))?;
        let session = client.session(repository, credentials, sub.insecure_skip_tls_verify);
        let tags = session.tags().await?;
        tags.iter()
            .filter_map(|tag| {
                let text = tag.replace('_', "+");
                is_strict(&text).then(|| parse(&text).ok()).flatten()
            })
            .collect::<Vec<Version>>()
    } else if url.starts_with("http://") || url.starts_with("https://") {
        if sub.name.is_empty() {
            return Err(DiscoveryError::Config(format!(
                "{at}.name: must name the chart when repoURL starts with http:// or https://"
            )));
        }
        let index_url = format!("{}/index.yaml", url.trim_end_matches('/'));
        let body = client
            .get_file(
                &index_url,
                credentials,
                sub.insecure_skip_tls_verify,
                MAX_INDEX_BYTES,
            )
            .await?;
        let shown = redacted(&index_url);
        let index =
            read_index(&body).map_err(|e| DiscoveryError::Malformed(format!("{shown}: {e}")))?;
        let Some(entries) = index.entries.get(&sub.name) else {
            return Err(DiscoveryError::NotFound(format!(
                "{shown} lists no chart {:?}",
                sub.name
            )));
        };
        entries
            .iter()
            .filter_map(|e| e.version.as_deref().and_then(|v| parse(v).ok()))
            .collect()
    } else {
        return Err(DiscoveryError::Config(format!(
            "{at}.repoURL: {url:?} is neither an oci:// nor an http(s):// repository"
        )));
    };
    let versions = newest_first(versions, constraint.as_ref(), limit);
    tracing::debug!(
        repository = %redacted(url),
        chart = %sub.name,
        found = versions.len(),
        "discovered chart versions"
    );
    Ok(ChartDiscoveryResult {
        repo_url: sub.repo_url.clone(),
        name: sub.name.clone(),
        semver_constraint: sub.semver_constraint.clone(),
        versions,
        subscription_name: subscription_name.unwrap_or_default().to_string(),
    })
}

/// The versions satisfying `constraint`, newest first, at most `limit`.
fn newest_first(
    mut versions: Vec<Version>,
    constraint: Option<&Constraints>,
    limit: usize,
) -> Vec<String> {
    versions.retain(|v| constraint.is_none_or(|c| c.check(v)));
    versions.sort_by(|a, b| match b.compare(a) {
        Ordering::Equal => b.original.cmp(&a.original),
        other => other,
    });
    versions.truncate(limit);
    versions.into_iter().map(|v| v.original).collect()
}

/// A classic repository's index: chart name → its versions.
#[derive(Debug, Default, Deserialize)]
pub struct RepositoryIndex {
    #[serde(default)]
    pub entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct IndexEntry {
    #[serde(default)]
    pub version: Option<String>,
}

/// Reads an `index.yaml` (the fields discovery needs; others ignored),
/// with a parsing budget raised for the large indexes public repositories
/// serve.
pub fn read_index(body: &[u8]) -> Result<RepositoryIndex, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 40_000_000;
    budget.max_nodes = 10_000_000;
    budget.max_reader_input_bytes = Some(MAX_INDEX_BYTES);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| format!("not a chart repository index: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const INDEX: &str = r#"apiVersion: v1
entries:
  podinfo:
    - version: 6.5.0
      appVersion: 6.5.0
      urls: [https://charts.example.com/podinfo-6.5.0.tgz]
      created: "2026-01-01T00:00:00Z"
      digest: abc
    - version: v6.6.1
    - version: "6.6"
    - version: 7.0.0-rc.1
    - version: latest
    - version: 6.10
    - {}
  other:
    - version: 1.0.0
generated: "2026-01-01T00:00:00Z"
"#;

    #[test]
    fn an_index_lists_the_versions_of_each_chart() {
        let index = read_index(INDEX.as_bytes()).unwrap();
        let versions: Vec<_> = index.entries["podinfo"]
            .iter()
            .map(|e| e.version.clone().unwrap_or_default())
            .collect();
        // An unquoted 6.10 is the text Helm wrote, not the number 6.1.
        assert_eq!(
            versions,
            ["6.5.0", "v6.6.1", "6.6", "7.0.0-rc.1", "latest", "6.10", ""]
        );
        assert_eq!(index.entries["other"].len(), 1);
    }

    #[test]
    fn an_unreadable_index_is_an_error() {
        assert!(read_index(b"entries: [unclosed").is_err());
        assert!(read_index(&[0xff, 0xfe]).is_err());
        assert!(read_index(b"{}").unwrap().entries.is_empty());
    }

    #[test]
    fn versions_are_ordered_newest_first_within_the_constraint() {
        let index = read_index(INDEX.as_bytes()).unwrap();
        let versions: Vec<Version> = index.entries["podinfo"]
            .iter()
            .filter_map(|e| e.version.as_deref().and_then(|v| parse(v).ok()))
            .collect();
        let constraint = Constraints::parse("^6").unwrap();
        assert_eq!(
            newest_first(versions.clone(), Some(&constraint), 20),
            ["6.10", "v6.6.1", "6.6", "6.5.0"]
        );
        assert_eq!(newest_first(versions, None, 2), ["7.0.0-rc.1", "6.10"]);
    }
}
