//! Image discovery: which images of a repository an image subscription
//! finds, newest first, as Kargo's image selectors pick them.
//!
//! - `SemVer` (the default) and `Lexical` order the allowed tags (see
//!   [`TagSelection`]) and read the images of the first ones, in order,
//!   until `discoveryLimit` images are found: an image that lacks the
//!   subscription's `platform` is skipped, so more tags may be read than
//!   the limit. At most [`MAX_INSPECTED`] tags are read; the images found
//!   by then are the result.
//! - `NewestBuild` reads the image of every allowed tag and orders them by
//!   creation time, newest first (ties: the greater tag). Kargo reads them
//!   all, without bound; Barge reads at most [`MAX_INSPECTED`] and refuses
//!   a subscription allowing more (`TooLarge`, pointing at
//!   `allowTagsRegexes`), so a discovery costs a bounded number of
//!   requests.
//! - `Digest` follows one mutable tag (the subscription's `constraint`):
//!   the result is that tag with the digest it names now, or nothing when
//!   the tag does not exist.
//!
//! An image's metadata as Kargo reads it: the digest is that of the
//! manifest the tag names (an index's own digest for a multi-platform
//! image); annotations are the manifest's (or index's, with those of the
//! entry of the subscription's platform over them); the creation time is
//! the `org.opencontainers.image.created` (or `org.label-schema.build-date`)
//! annotation, else the config's `created` (or a later such label). For an
//! index without that annotation, the newest of its platforms' times.
//!
//! `platform` (`os/arch[/variant]`) picks from an index the entry of that
//! platform; an index without one, and an image that is not an index (it
//! names no platforms), is skipped, as Kargo does.
//!
//! Metadata is read with at most [`CONCURRENCY`] requests in flight per
//! discovery.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use serde::Deserialize;

use super::discovered::{DiscoveredImageReference, DiscoveryError, ImageDiscoveryResult};
use super::oci::{
    DOCKER_LIST, DOCKER_MANIFEST, Manifest, OCI_INDEX, OCI_MANIFEST, OciClient, Repository, Session,
};
use super::tags::{Filters, TagSelection};
use crate::api::warehouse::{ImageSelectionStrategy, ImageSubscription};
use crate::git::Credentials;

/// How many tags' images a discovery reads at most.
pub const MAX_INSPECTED: usize = 1000;
/// How many image reads are in flight at once in one discovery.
pub const CONCURRENCY: usize = 8;
/// How many entries of an index are read for their creation times.
pub const MAX_INDEX_ENTRIES: usize = 64;

const CREATED_ANNOTATIONS: [&str; 2] = [
    "org.opencontainers.image.created",
    "org.label-schema.build-date",
];

/// An `os/arch[/variant]` platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: String,
}

impl Platform {
    /// Reads `os/arch` or `os/arch/variant`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, '/');
        let (Some(os), Some(arch)) = (parts.next(), parts.next()) else {
            return Err(format!("{text:?} is not os/arch[/variant]"));
        };
        if os.is_empty() || arch.is_empty() {
            return Err(format!("{text:?} is not os/arch[/variant]"));
        }
        Ok(Self {
            os: os.to_string(),
            arch: arch.to_string(),
            variant: parts.next().unwrap_or_default().to_string(),
        })
    }

    fn matches(&self, p: &PlatformDoc) -> bool {
        self.os == p.os && self.arch == p.architecture && self.variant == p.variant
    }
}

/// What discovery learnt of one tag's image.
#[derive(Clone, Debug)]
struct Image {
    tag: String,
    digest: String,
    annotations: BTreeMap<String, String>,
    created: Option<Timestamp>,
}

impl Image {
    fn reference(self) -> DiscoveredImageReference {
        DiscoveredImageReference {
            tag: self.tag,
            digest: self.digest,
            annotations: self.annotations,
            created_at: self.created.map(rfc3339),
        }
    }
}

/// Kargo's (metav1.Time's) form: UTC, whole seconds.
fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Discovers the images `sub` finds. `at` is the subscription's field
/// path (`spec.subscriptions[0].image`), for messages.
pub async fn discover(
    sub: &ImageSubscription,
    at: &str,
    subscription_name: Option<&str>,
    credentials: Option<&Credentials>,
    client: &OciClient,
) -> Result<ImageDiscoveryResult, DiscoveryError> {
    let platform = if sub.platform.is_empty() {
        None
    } else {
        Some(
            Platform::parse(&sub.platform)
                .map_err(|e| DiscoveryError::Config(format!("{at}.platform: {e}")))?,
        )
    };
    let repository = Repository::parse(&sub.repo_url)
        .map_err(|e| DiscoveryError::Config(format!("{at}.repoURL: {e}")))?;
    let filters = Filters {
        at,
        allow_tags_regexes: &sub.allow_tags_regexes,
        ignore_tags_regexes: &sub.ignore_tags_regexes,
        allow_tags: &sub.allow_tags,
        ignore_tags: &sub.ignore_tags,
        discovery_limit: sub.discovery_limit,
    };
    let session = client.session(repository, credentials, sub.insecure_skip_tls_verify);
    let platform = platform.as_ref();
    let references = match sub.image_selection_strategy {
        ImageSelectionStrategy::Digest => {
            if sub.constraint.trim().is_empty() {
                return Err(DiscoveryError::Config(format!(
                    "{at}.constraint: must name the tag to follow when imageSelectionStrategy is Digest"
                )));
            }
            digest(&session, sub.constraint.trim(), platform).await?
        }
        ImageSelectionStrategy::SemVer => {
            let selection =
                TagSelection::semver(&filters, &sub.constraint, sub.strict_semvers, "constraint")
                    .map_err(DiscoveryError::Config)?;
            in_order(&session, &selection, platform).await?
        }
        ImageSelectionStrategy::Lexical => {
            let selection = TagSelection::lexical(&filters).map_err(DiscoveryError::Config)?;
            in_order(&session, &selection, platform).await?
        }
        ImageSelectionStrategy::NewestBuild => {
            let selection = TagSelection::lexical(&filters).map_err(DiscoveryError::Config)?;
            newest_build(&session, &selection, platform, at).await?
        }
    };
    tracing::debug!(
        repository = %session.repository(),
        strategy = ?sub.image_selection_strategy,
        found = references.len(),
        "discovered images"
    );
    Ok(ImageDiscoveryResult {
        repo_url: sub.repo_url.clone(),
        platform: sub.platform.clone(),
        references: references.into_iter().map(Image::reference).collect(),
        subscription_name: subscription_name.unwrap_or_default().to_string(),
    })
}

/// `Digest`: the tag's current image, if the tag exists.
async fn digest(
    session: &Session<'_>,
    tag: &str,
    platform: Option<&Platform>,
) -> Result<Vec<Image>, DiscoveryError> {
    let manifest = match session.manifest(tag).await {
        Ok(m) => m,
        // A tag that does not exist (yet) is nothing found; a repository
        // that does not exist is an error.
        Err(DiscoveryError::NotFound(message)) if !message.contains("NAME_UNKNOWN") => {
            // Registries answer MANIFEST_UNKNOWN for both: ask whether the
            // repository exists.
            session.check_exists().await?;
            tracing::debug!(repository = %session.repository(), tag, "tag not found");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    Ok(image_of(session, tag, manifest, platform)
        .await?
        .into_iter()
        .collect())
}

/// `SemVer` and `Lexical`: the images of the ordered tags, first ones
/// first, until the limit.
async fn in_order(
    session: &Session<'_>,
    selection: &TagSelection,
    platform: Option<&Platform>,
) -> Result<Vec<Image>, DiscoveryError> {
    let tags = session.tags().await?;
    let ordered = selection.order(tags.iter().map(String::as_str));
    drop(tags);
    let limit = selection.limit();
    let mut found = Vec::with_capacity(limit.min(ordered.len()));
    let mut images = futures::stream::iter(ordered.into_iter().take(MAX_INSPECTED))
        .map(|tag| inspect(session, tag, platform))
        .buffered(if platform.is_some() {
            CONCURRENCY
        } else {
            CONCURRENCY.min(limit)
        });
    while let Some(image) = images.try_next().await? {
        if let Some(image) = image {
            found.push(image);
            if found.len() >= limit {
                break;
            }
        }
    }
    Ok(found)
}

/// `NewestBuild`: every allowed tag's image, newest build first.
async fn newest_build(
    session: &Session<'_>,
    selection: &TagSelection,
    platform: Option<&Platform>,
    at: &str,
) -> Result<Vec<Image>, DiscoveryError> {
    let tags = session.tags().await?;
    let allowed = selection.order(tags.iter().map(String::as_str));
    drop(tags);
    if allowed.len() > MAX_INSPECTED {
        return Err(DiscoveryError::TooLarge(format!(
            "{}: {} tags are allowed, and NewestBuild reads the image of each; it reads at most {MAX_INSPECTED}: narrow {at}.allowTagsRegexes",
            session.repository(),
            allowed.len()
        )));
    }
    let mut images: Vec<Image> = futures::stream::iter(allowed)
        .map(|tag| inspect(session, tag, platform))
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|image| async move { Ok(image) })
        .try_collect()
        .await?;
    images.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.tag.cmp(&a.tag)));
    images.truncate(selection.limit());
    Ok(images)
}

/// The image `tag` names, or `None` when it lacks the platform.
async fn inspect(
    session: &Session<'_>,
    tag: String,
    platform: Option<&Platform>,
) -> Result<Option<Image>, DiscoveryError> {
    let manifest = session.manifest(&tag).await?;
    image_of(session, &tag, manifest, platform).await
}

async fn image_of(
    session: &Session<'_>,
    tag: &str,
    manifest: Manifest,
    platform: Option<&Platform>,
) -> Result<Option<Image>, DiscoveryError> {
    let what = || format!("{}:{tag}", session.repository());
    match manifest.media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            let index: IndexDoc = serde_json::from_slice(&manifest.body).map_err(|e| {
                DiscoveryError::Malformed(format!("the index of {} is not readable: {e}", what()))
            })?;
            let entries: Vec<&Descriptor> = index
                .manifests
                .iter()
                .filter(|d| {
                    d.platform.as_ref().is_some_and(|p| {
                        !p.os.is_empty()
                            && p.os != "unknown"
                            && !p.architecture.is_empty()
                            && p.architecture != "unknown"
                    })
                })
                .collect();
            if entries.is_empty() {
                return Err(DiscoveryError::Malformed(format!(
                    "{} is an index naming no platform, which is not supported",
                    what()
                )));
            }
            let mut annotations = index.annotations.clone();
            if let Some(platform) = platform {
                let Some(entry) = entries
                    .iter()
                    .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
                else {
                    return Ok(None);
                };
                annotations.extend(entry.annotations.clone());
            }
            let created = match created_of(&index.annotations) {
                Some(t) => Some(t),
                None => newest_entry(session, &entries).await?,
            };
            Ok(Some(Image {
                tag: tag.to_string(),
                digest: manifest.digest,
                annotations,
                created,
            }))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            // An image that is not an index names no platform.
            if platform.is_some() {
                return Ok(None);
            }
            let (annotations, created) =
                manifest_metadata(session, &manifest.body, &what()).await?;
            Ok(Some(Image {
                tag: tag.to_string(),
                digest: manifest.digest,
                annotations,
                created,
            }))
        }
        other => Err(DiscoveryError::Malformed(format!(
            "{} is of media type {other:?}, neither an image nor an index",
            what()
        ))),
    }
}

/// The newest creation time of an index's entries: each entry's
/// annotation, else its image's.
async fn newest_entry(
    session: &Session<'_>,
    entries: &[&Descriptor],
) -> Result<Option<Timestamp>, DiscoveryError> {
    let mut newest: Option<Timestamp> = None;
    for entry in entries.iter().take(MAX_INDEX_ENTRIES) {
        let created = match created_of(&entry.annotations) {
            Some(t) => Some(t),
            None => {
                let manifest = session.manifest(&entry.digest).await?;
                if matches!(manifest.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST) {
                    let what = format!("{}@{}", session.repository(), entry.digest);
                    manifest_metadata(session, &manifest.body, &what).await?.1
                } else {
                    None
                }
            }
        };
        newest = newest.max(created);
    }
    Ok(newest)
}

/// A manifest's annotations and creation time (reading its config).
async fn manifest_metadata(
    session: &Session<'_>,
    body: &[u8],
    what: &str,
) -> Result<(BTreeMap<String, String>, Option<Timestamp>), DiscoveryError> {
    let doc: ManifestDoc = serde_json::from_slice(body).map_err(|e| {
        DiscoveryError::Malformed(format!("the manifest of {what} is not readable: {e}"))
    })?;
    if let Some(created) = created_of(&doc.annotations) {
        return Ok((doc.annotations, Some(created)));
    }
    let config = session.blob(&doc.config.digest).await?;
    let config: ConfigDoc = serde_json::from_slice(&config).map_err(|e| {
        DiscoveryError::Malformed(format!("the config of {what} is not readable: {e}"))
    })?;
    let created = config.created.as_deref().and_then(parse_time);
    let labelled = config
        .config
        .and_then(|c| c.labels)
        .and_then(|labels| created_of(&labels));
    Ok((doc.annotations, created.max(labelled)))
}

fn created_of(metadata: &BTreeMap<String, String>) -> Option<Timestamp> {
    CREATED_ANNOTATIONS
        .iter()
        .find_map(|key| metadata.get(*key).and_then(|v| parse_time(v)))
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.trim().parse::<Timestamp>().ok()
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(default)]
    digest: String,
    #[serde(default)]
    platform: Option<PlatformDoc>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PlatformDoc {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: String,
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ConfigDoc {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<ConfigInner>,
}

#[derive(Deserialize)]
struct ConfigInner {
    #[serde(default, rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_is_os_and_arch_with_an_optional_variant() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap(),
            Platform {
                os: "linux".into(),
                arch: "arm64".into(),
                variant: "v8".into()
            }
        );
        assert_eq!(Platform::parse("linux/amd64").unwrap().variant, "");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("/amd64").is_err());
    }

    #[test]
    fn a_variantless_platform_matches_only_variantless_entries() {
        let p = Platform::parse("linux/arm").unwrap();
        let doc = |variant: &str| PlatformDoc {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: variant.into(),
        };
        assert!(p.matches(&doc("")));
        assert!(!p.matches(&doc("v7")));
    }

    #[test]
    fn creation_times_read_as_kargo_records_them() {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.label-schema.build-date".to_string(),
            "2026-11-01T10:20:30.123+02:00".to_string(),
        );
        let t = created_of(&annotations).unwrap();
        assert_eq!(rfc3339(t), "2026-11-01T08:20:30Z");
        annotations.insert(
            "org.opencontainers.image.created".to_string(),
            "not a time".to_string(),
        );
        // An unreadable annotation gives way to the next key.
        assert_eq!(
            rfc3339(created_of(&annotations).unwrap()),
            "2026-11-01T08:20:30Z"
        );
    }
}
