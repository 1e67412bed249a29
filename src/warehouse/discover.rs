//! One discovery of a Warehouse: every subscription looked at at once,
//! each with the credentials its repository's Secret gives, each result or
//! failure kept apart so one broken subscription names itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::join_all;

use super::discovered::{DiscoveredArtifacts, DiscoveryError};
use super::{CredentialKind, CredentialSecret, Credentials, select_for};
use crate::api::Warehouse;
use crate::api::warehouse::Subscription;

/// A Secret's name and decoded data.
pub type SecretData = (String, BTreeMap<String, String>);

/// The credentials Secrets of the Warehouse's namespace, by `cred-type`
/// (`git`, `image`, `helm`).
#[derive(Default)]
pub struct CredentialSecrets {
    pub by_type: BTreeMap<&'static str, Vec<SecretData>>,
}

impl CredentialSecrets {
    fn pick(&self, kind: CredentialKind, url: &str) -> Result<Option<Credentials>, DiscoveryError> {
        let secrets: Vec<CredentialSecret<'_>> = self
            .by_type
            .get(kind.label_value())
            .into_iter()
            .flatten()
            .map(|(name, data)| CredentialSecret { name, data })
            .collect();
        select_for(kind, url, &secrets).map_err(|e| DiscoveryError::Config(e.to_string()))
    }
}

/// The cred-types a Warehouse's subscriptions need Secrets of.
pub fn credential_types(subscriptions: &[Subscription]) -> Vec<&'static str> {
    let mut types: Vec<&'static str> = subscriptions
        .iter()
        .map(|s| match s {
            Subscription::Git { .. } => CredentialKind::Git.label_value(),
            Subscription::Image { .. } => CredentialKind::Image.label_value(),
            Subscription::Chart { .. } => CredentialKind::Helm.label_value(),
        })
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// What discovery shares across Warehouses.
pub struct Discoverer {
    pub oci: super::oci::OciClient,
    /// Where git subscriptions keep their bare clones between discoveries.
    pub cache_dir: PathBuf,
    /// The longest one subscription's discovery may take.
    pub timeout: Duration,
}

/// How long one subscription's discovery may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

impl Discoverer {
    /// Discovers every subscription. `previous`: the last discovery, when
    /// the spec has not changed since (git skips fetching unmoved refs).
    pub async fn discover(
        &self,
        warehouse: &Warehouse,
        subscriptions: &[Subscription],
        secrets: &CredentialSecrets,
        previous: Option<&DiscoveredArtifacts>,
    ) -> (DiscoveredArtifacts, Vec<DiscoveryError>) {
        let namespace = warehouse.metadata.namespace.clone().unwrap_or_default();
        let name = warehouse.metadata.name.clone().unwrap_or_default();
        let uid = warehouse
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| format!("{namespace}/{name}"));
        let runs = subscriptions.iter().enumerate().map(|(i, sub)| {
            let cache = self.cache_dir.join(&uid).join(i.to_string());
            async move {
                let run = self.one(i, sub, secrets, previous, cache);
                // A source that accepts and never answers (libgit2 has no
                // timeout of its own) must not hold a discovery slot.
                match tokio::time::timeout(self.timeout, run).await {
                    Ok(found) => found,
                    Err(_) => Err(DiscoveryError::Unavailable(format!(
                        "spec.subscriptions[{i}]: {} did not finish within {:?}",
                        sub.repo_url(),
                        self.timeout
                    ))),
                }
            }
        });
        let mut artifacts = DiscoveredArtifacts::default();
        let mut failures = Vec::new();
        for outcome in join_all(runs).await {
            match outcome {
                Ok(Found::Git(r)) => artifacts.git.push(r),
                Ok(Found::Image(r)) => artifacts.images.push(r),
                Ok(Found::Chart(r)) => artifacts.charts.push(r),
                Err(e) => failures.push(e),
            }
        }
        (artifacts, failures)
    }

    /// Subscription `i`, with the credentials its repository's Secret gives.
    async fn one(
        &self,
        i: usize,
        sub: &Subscription,
        secrets: &CredentialSecrets,
        previous: Option<&DiscoveredArtifacts>,
        cache: PathBuf,
    ) -> Result<Found, DiscoveryError> {
        match sub {
            Subscription::Git { name, git } => {
                let creds = secrets.pick(CredentialKind::Git, &git.repo_url)?;
                let subscription_name = name.clone().unwrap_or_default();
                let before = previous.and_then(|p| {
                    p.git.iter().find(|r| {
                        r.repo_url == git.repo_url && r.subscription_name == subscription_name
                    })
                });
                let at = format!("spec.subscriptions[{i}].git");
                super::git::discover(git, &at, name.as_deref(), creds.as_ref(), &cache, before)
                    .await
                    .map(Found::Git)
            }
            Subscription::Image { name, image } => {
                let creds = secrets.pick(CredentialKind::Image, &image.repo_url)?;
                let at = format!("spec.subscriptions[{i}].image");
                super::image::discover(image, &at, name.as_deref(), creds.as_ref(), &self.oci)
                    .await
                    .map(Found::Image)
            }
            Subscription::Chart { name, chart } => {
                let creds = secrets.pick(CredentialKind::Helm, &chart.repo_url)?;
                let at = format!("spec.subscriptions[{i}].chart");
                super::chart::discover(chart, &at, name.as_deref(), creds.as_ref(), &self.oci)
                    .await
                    .map(Found::Chart)
            }
        }
    }
}

enum Found {
    Git(super::discovered::GitDiscoveryResult),
    Image(super::discovered::ImageDiscoveryResult),
    Chart(super::discovered::ChartDiscoveryResult),
}
