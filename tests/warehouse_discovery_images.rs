//! Image and chart discovery against real servers: CNCF distribution's
//! registry (`make registry`, or `BARGE_REGISTRY_DIR`), a classic chart
//! repository and, for the bearer token flow, a token-guarding proxy in
//! front of the registry. Each test pushes to repositories of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use barge::api::warehouse::{ChartSubscription, ImageSelectionStrategy, ImageSubscription};

use barge::warehouse::discovered::{DiscoveryError, ImageDiscoveryResult};
use barge::warehouse::oci::{Limits, OciClient};
use barge::warehouse::{Credentials, chart, image};
use barge_testenv::chart_repo::{ChartRepository, index_yaml};
use barge_testenv::registry::{PLATFORM_ANNOTATION, Registry, RegistryOptions};

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const AT: &str = "spec.subscriptions[0].image";
const CREATED: &str = "2026-11-01T00:00:00Z";

/// A client of the test's own: each test has its own runtime, and a pooled
/// connection opened on another test's runtime dies with it ("dispatch task
/// is gone"), so a client shared between tests fails them at random.
fn client() -> OciClient {
    OciClient::new().unwrap()
}

fn subscription(registry: &Registry, repository: &str) -> ImageSubscription {
    ImageSubscription {
        repo_url: format!("{}/{repository}", registry.host()),
        ..Default::default()
    }
}

async fn discover(sub: &ImageSubscription) -> Result<ImageDiscoveryResult, DiscoveryError> {
    image::discover(sub, AT, Some("app"), None, &client()).await
}

fn tags(result: &ImageDiscoveryResult) -> Vec<&str> {
    result.references.iter().map(|r| r.tag.as_str()).collect()
}

async fn push_tags(registry: &Registry, repository: &str, tags: &[&str]) -> TestResult {
    for (i, tag) in tags.iter().enumerate() {
        let created = format!("2026-11-{:02}T00:00:00Z", i + 1);
        registry
            .push_image(repository, tag, ("linux", "amd64"), &created)
            .await?;
    }
    Ok(())
}

const VERSIONS: &[&str] = &[
    "1.26.0",
    "1.27.3",
    "1.27.10",
    "v1.28.0",
    "1.28",
    "1.29.0-rc.1",
    "latest",
    "2.0.0",
];

#[tokio::test]
async fn semver_finds_strict_versions_within_the_constraint_newest_first() -> TestResult {
    let registry = Registry::shared().await?;
    push_tags(registry, "semver/strict", VERSIONS).await?;
    let sub = ImageSubscription {
        constraint: "^1.26.0".into(),
        ..subscription(registry, "semver/strict")
    };
    let found = discover(&sub).await?;
    assert_eq!(tags(&found), ["v1.28.0", "1.27.10", "1.27.3", "1.26.0"]);
    assert_eq!(found.repo_url, sub.repo_url);
    assert_eq!(found.subscription_name, "app");
    // Each reference carries the digest its tag names and the build time.
    let pushed = registry
        .push_image(
            "semver/strict",
            "1.27.11",
            ("linux", "amd64"),
            "2026-12-24T10:00:00.5Z",
        )
        .await?;
    let found = discover(&sub).await?;
    let first = &found.references[1];
    assert_eq!(
        (first.tag.as_str(), first.digest.as_str()),
        ("1.27.11", pushed.digest.as_str())
    );
    assert_eq!(first.created_at.as_deref(), Some("2026-12-24T10:00:00Z"));
    Ok(())
}

#[tokio::test]
async fn non_strict_semver_admits_partial_versions_and_pre_releases_without_a_constraint()
-> TestResult {
    let registry = Registry::shared().await?;
    push_tags(registry, "semver/loose", VERSIONS).await?;
    let sub = ImageSubscription {
        strict_semvers: Some(false),
        ..subscription(registry, "semver/loose")
    };
    let found = discover(&sub).await?;
    assert_eq!(
        tags(&found),
        [
            "2.0.0",
            "1.29.0-rc.1",
            "v1.28.0",
            "1.28",
            "1.27.10",
            "1.27.3",
            "1.26.0"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn lexical_orders_tags_in_reverse_byte_order() -> TestResult {
    let registry = Registry::shared().await?;
    push_tags(
        registry,
        "lexical/app",
        &["build-0009", "build-0010", "build-0002", "nightly"],
    )
    .await?;
    let sub = ImageSubscription {
        image_selection_strategy: ImageSelectionStrategy::Lexical,
        ..subscription(registry, "lexical/app")
    };
    let found = discover(&sub).await?;
    assert_eq!(
        tags(&found),
        ["nightly", "build-0010", "build-0009", "build-0002"]
    );
    Ok(())
}

#[tokio::test]
async fn newest_build_orders_images_by_their_creation_time() -> TestResult {
    let registry = Registry::shared().await?;
    let repo = "newest/app";
    for (tag, created) in [
        ("zeta", "2026-01-03T00:00:00Z"),
        ("alpha", "2026-01-05T00:00:00Z"),
        ("mid", "2026-01-04T12:00:00Z"),
        ("old", "2025-06-01T00:00:00Z"),
    ] {
        registry
            .push_image(repo, tag, ("linux", "amd64"), created)
            .await?;
    }
    let sub = ImageSubscription {
        image_selection_strategy: ImageSelectionStrategy::NewestBuild,
        ..subscription(registry, repo)
    };
    let found = discover(&sub).await?;
    assert_eq!(tags(&found), ["alpha", "mid", "zeta", "old"]);
    assert_eq!(
        found.references[0].created_at.as_deref(),
        Some("2026-01-05T00:00:00Z")
    );
    Ok(())
}

#[tokio::test]
async fn digest_follows_a_moved_tag_to_its_new_digest() -> TestResult {
    let registry = Registry::shared().await?;
    let repo = "digest/app";
    let first = registry
        .push_image(repo, "stable", ("linux", "amd64"), "2026-01-01T00:00:00Z")
        .await?;
    registry
        .push_image(repo, "canary", ("linux", "amd64"), "2026-01-02T00:00:00Z")
        .await?;
    let sub = ImageSubscription {
        image_selection_strategy: ImageSelectionStrategy::Digest,
        constraint: "stable".into(),
        ..subscription(registry, repo)
    };
    let found = discover(&sub).await?;
    assert_eq!(found.references.len(), 1);
    assert_eq!(found.references[0].tag, "stable");
    assert_eq!(found.references[0].digest, first.digest);
    let moved = registry
        .push_image(repo, "stable", ("linux", "amd64"), "2026-01-03T00:00:00Z")
        .await?;
    let found = discover(&sub).await?;
    assert_ne!(moved.digest, first.digest);
    assert_eq!(found.references[0].digest, moved.digest);
    assert_eq!(
        found.references[0].created_at.as_deref(),
        Some("2026-01-03T00:00:00Z")
    );
    Ok(())
}

#[tokio::test]
async fn digest_of_a_tag_that_does_not_exist_finds_nothing() -> TestResult {
    let registry = Registry::shared().await?;
    registry
        .push_image("digest/none", "other", ("linux", "amd64"), CREATED)
        .await?;
    let sub = ImageSubscription {
        image_selection_strategy: ImageSelectionStrategy::Digest,
        constraint: "stable".into(),
        ..subscription(registry, "digest/none")
    };
    assert!(discover(&sub).await?.references.is_empty());
    let sub = ImageSubscription {
        constraint: String::new(),
        ..sub
    };
    let err = discover(&sub).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Config(m) if m.starts_with("spec.subscriptions[0].image.constraint:")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn platform_picks_the_index_entry_and_records_the_index_digest() -> TestResult {
    let registry = Registry::shared().await?;
    let repo = "platform/app";
    let multi = registry
        .push_index(
            repo,
            "1.1.0",
            &["linux/amd64", "linux/arm64/v8"],
            "2026-02-01T00:00:00Z",
            &[(
                "org.opencontainers.image.source",
                "https://git.example.com/app",
            )],
        )
        .await?;
    registry
        .push_index(repo, "1.2.0", &["linux/amd64"], "2026-02-02T00:00:00Z", &[])
        .await?;
    // Not an index: it names no platform, and Kargo skips it.
    registry
        .push_image(repo, "1.3.0", ("linux", "arm64"), "2026-02-03T00:00:00Z")
        .await?;
    let sub = ImageSubscription {
        platform: "linux/arm64/v8".into(),
        ..subscription(registry, repo)
    };
    let found = discover(&sub).await?;
    assert_eq!(found.platform, "linux/arm64/v8");
    assert_eq!(tags(&found), ["1.1.0"]);
    let reference = &found.references[0];
    assert_eq!(reference.digest, multi.digest);
    assert_eq!(
        reference
            .annotations
            .get("org.opencontainers.image.source")
            .map(String::as_str),
        Some("https://git.example.com/app")
    );
    assert_eq!(
        reference
            .annotations
            .get(PLATFORM_ANNOTATION)
            .map(String::as_str),
        Some("linux/arm64/v8")
    );
    assert_eq!(
        reference.created_at.as_deref(),
        Some("2026-02-01T00:00:00Z")
    );
    // Without a platform every image counts, an index by its own digest.
    let all = discover(&subscription(registry, repo)).await?;
    assert_eq!(tags(&all), ["1.3.0", "1.2.0", "1.1.0"]);
    assert_eq!(all.references[2].digest, multi.digest);
    Ok(())
}

#[tokio::test]
async fn a_malformed_platform_is_refused_naming_the_field() -> TestResult {
    let registry = Registry::shared().await?;
    let sub = ImageSubscription {
        platform: "linux".into(),
        ..subscription(registry, "platform/bad")
    };
    let err = discover(&sub).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Config(m) if m.starts_with("spec.subscriptions[0].image.platform:")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn allow_and_ignore_regexes_filter_the_tags() -> TestResult {
    let registry = Registry::shared().await?;
    push_tags(
        registry,
        "regex/app",
        &["1.0.0", "1.1.0", "1.1.0-debug", "2.0.0", "2.1.0"],
    )
    .await?;
    let sub = ImageSubscription {
        strict_semvers: Some(false),
        allow_tags_regexes: vec![r"^1\.".into(), r"^2\.0\.".into()],
        ignore_tags_regexes: vec!["-debug$".into()],
        ..subscription(registry, "regex/app")
    };
    assert_eq!(tags(&discover(&sub).await?), ["2.0.0", "1.1.0", "1.0.0"]);
    Ok(())
}

#[tokio::test]
async fn discovery_limit_caps_the_references() -> TestResult {
    let registry = Registry::shared().await?;
    push_tags(
        registry,
        "limit/app",
        &["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"],
    )
    .await?;
    let sub = ImageSubscription {
        discovery_limit: Some(2),
        ..subscription(registry, "limit/app")
    };
    assert_eq!(tags(&discover(&sub).await?), ["1.4.0", "1.3.0"]);
    let newest = ImageSubscription {
        image_selection_strategy: ImageSelectionStrategy::NewestBuild,
        ..sub.clone()
    };
    assert_eq!(tags(&discover(&newest).await?), ["1.4.0", "1.3.0"]);
    let too_many = ImageSubscription {
        discovery_limit: Some(101),
        ..sub
    };
    let err = discover(&too_many).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Config(m) if m.contains("discoveryLimit")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_constraint_is_refused_naming_the_field() -> TestResult {
    let registry = Registry::shared().await?;
    let sub = ImageSubscription {
        constraint: "^^1".into(),
        ..subscription(registry, "constraint/bad")
    };
    let err = discover(&sub).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Config(m) if m.starts_with("spec.subscriptions[0].image.constraint:")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_repository_is_not_found() -> TestResult {
    let registry = Registry::shared().await?;
    let err = discover(&subscription(registry, "nobody/here"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::NotFound(m) if m.contains("nobody/here")),
        "{err:?}"
    );
    // Digest: the tag may come later, the repository must exist.
    let digest = ImageSubscription {
        image_selection_strategy: ImageSelectionStrategy::Digest,
        constraint: "stable".into(),
        ..subscription(registry, "nobody/here")
    };
    let err = discover(&digest).await.unwrap_err();
    assert!(matches!(&err, DiscoveryError::NotFound(_)), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn a_stopped_registry_is_unavailable() -> TestResult {
    let registry = Registry::start().await?;
    registry
        .push_image("gone/app", "1.0.0", ("linux", "amd64"), CREATED)
        .await?;
    let sub = subscription(&registry, "gone/app");
    assert_eq!(tags(&discover(&sub).await?), ["1.0.0"]);
    registry.stop();
    let err = discover(&sub).await.unwrap_err();
    assert!(matches!(&err, DiscoveryError::Unavailable(_)), "{err:?}");
    assert_eq!(err.reason(), "Unavailable");
    Ok(())
}

const USER: &str = "ci-bot";
const PASSWORD: &str = "hunter2-s3cret";

async fn authenticated() -> Result<&'static Registry, Error> {
    static REGISTRY: tokio::sync::OnceCell<Registry> = tokio::sync::OnceCell::const_new();
    Ok(REGISTRY
        .get_or_try_init(|| async {
            let registry = Registry::start_with(RegistryOptions {
                basic_auth: Some((USER.into(), PASSWORD.into())),
                ..Default::default()
            })
            .await?;
            registry
                .push_image("private/app", "1.0.0", ("linux", "amd64"), CREATED)
                .await?;
            registry.push_chart("private/charts/app", "0.1.0").await?;
            Ok::<_, barge_testenv::Error>(registry)
        })
        .await?)
}

fn credentials(password: &str) -> Credentials {
    Credentials {
        username: USER.into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn an_authenticated_registry_admits_the_right_credentials() -> TestResult {
    let registry = authenticated().await?;
    let sub = subscription(registry, "private/app");
    let found = image::discover(&sub, AT, None, Some(&credentials(PASSWORD)), &client()).await?;
    assert_eq!(tags(&found), ["1.0.0"]);
    assert!(found.references[0].created_at.is_some());
    let chart = ChartSubscription {
        repo_url: format!("oci://{}/private/charts/app", registry.host()),
        ..Default::default()
    };
    let found = chart::discover(
        &chart,
        "spec.subscriptions[1].chart",
        None,
        Some(&credentials(PASSWORD)),
        &client(),
    )
    .await?;
    assert_eq!(found.versions, ["0.1.0"]);
    Ok(())
}

#[tokio::test]
async fn an_authenticated_registry_denies_wrong_credentials_without_repeating_them() -> TestResult {
    let registry = authenticated().await?;
    let sub = subscription(registry, "private/app");
    let err = image::discover(&sub, AT, None, Some(&credentials("wrong-pass")), &client())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Denied(m) if m.contains("refused")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong-pass"));
    assert!(!format!("{err:?}").contains(PASSWORD));
    Ok(())
}

#[tokio::test]
async fn an_authenticated_registry_denies_a_discovery_without_credentials() -> TestResult {
    let registry = authenticated().await?;
    let err = discover(&subscription(registry, "private/app"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Denied(m) if m.contains("needs credentials")),
        "{err:?}"
    );
    assert_eq!(err.reason(), "AccessDenied");
    Ok(())
}

#[tokio::test]
async fn a_repository_of_many_tags_is_listed_across_pages() -> TestResult {
    let registry = Registry::shared().await?;
    let repo = "paged/app";
    registry
        .push_image(repo, "0.0.1", ("linux", "amd64"), CREATED)
        .await?;
    let many: Vec<String> = (0..2500)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect();
    registry.tag_many(repo, "0.0.1", many, 16).await?;
    let sub = ImageSubscription {
        constraint: ">=1.20.0 <1.24.0".into(),
        discovery_limit: Some(3),
        ..subscription(registry, repo)
    };
    // 2,501 tags are three pages of 1,000: the newest are on the last.
    assert_eq!(
        tags(&discover(&sub).await?),
        ["1.23.99", "1.23.98", "1.23.97"]
    );
    let lexical = ImageSubscription {
        image_selection_strategy: ImageSelectionStrategy::Lexical,
        discovery_limit: Some(1),
        ..subscription(registry, repo)
    };
    assert_eq!(tags(&discover(&lexical).await?), ["1.9.99"]);
    // NewestBuild reads each allowed tag's image: 2,501 is over its cap.
    let newest = ImageSubscription {
        image_selection_strategy: ImageSelectionStrategy::NewestBuild,
        ..subscription(registry, repo)
    };
    let err = discover(&newest).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::TooLarge(m) if m.contains("allowTagsRegexes")),
        "{err:?}"
    );
    // A client whose tag budget is smaller refuses to list them all.
    let small = OciClient::with_limits(Limits {
        max_tags: 1500,
        ..Limits::default()
    })?;
    let err = image::discover(&sub, AT, None, None, &small)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::TooLarge(m) if m.contains("paged/app")),
        "{err:?}"
    );
    Ok(())
}

// Charts.

const CHART_AT: &str = "spec.subscriptions[2].chart";

fn chart_sub(url: String, name: &str) -> ChartSubscription {
    ChartSubscription {
        repo_url: url,
        name: name.into(),
        ..Default::default()
    }
}

async fn discover_chart(
    sub: &ChartSubscription,
    credentials: Option<&Credentials>,
) -> Result<Vec<String>, DiscoveryError> {
    Ok(chart::discover(sub, CHART_AT, None, credentials, &client())
        .await?
        .versions)
}

#[tokio::test]
async fn an_http_chart_repository_lists_versions_within_the_constraint_newest_first() -> TestResult
{
    let repo = ChartRepository::start(
        index_yaml(&[
            (
                "podinfo",
                &["6.5.0", "6.6.1", "v6.7.0", "7.0.0", "6.8.0-rc.1", "nightly"],
            ),
            ("other", &["9.9.9"]),
        ]),
        None,
    )
    .await?;
    let sub = ChartSubscription {
        semver_constraint: "^6".into(),
        ..chart_sub(repo.url(), "podinfo")
    };
    assert_eq!(
        discover_chart(&sub, None).await?,
        ["v6.7.0", "6.6.1", "6.5.0"]
    );
    let limited = ChartSubscription {
        semver_constraint: String::new(),
        discovery_limit: Some(2),
        ..sub.clone()
    };
    assert_eq!(
        discover_chart(&limited, None).await?,
        ["7.0.0", "6.8.0-rc.1"]
    );
    let result = chart::discover(&sub, CHART_AT, Some("charts"), None, &client()).await?;
    assert_eq!(
        (
            result.name.as_str(),
            result.semver_constraint.as_str(),
            result.subscription_name.as_str()
        ),
        ("podinfo", "^6", "charts")
    );
    let missing = chart_sub(repo.url(), "absent");
    let err = discover_chart(&missing, None).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::NotFound(m) if m.contains("absent")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_http_chart_subscription_must_name_its_chart() -> TestResult {
    let sub = chart_sub("https://charts.example.com/stable".into(), "");
    let err = discover_chart(&sub, None).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Config(m) if m.starts_with("spec.subscriptions[2].chart.name:")),
        "{err:?}"
    );
    let bad = ChartSubscription {
        semver_constraint: "~>".into(),
        ..chart_sub("https://charts.example.com/stable".into(), "app")
    };
    let err = discover_chart(&bad, None).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Config(m) if m.starts_with("spec.subscriptions[2].chart.semverConstraint:")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_http_chart_repository_behind_basic_auth_needs_its_credentials() -> TestResult {
    let repo = ChartRepository::start(
        index_yaml(&[("app", &["1.0.0", "1.1.0"])]),
        Some((USER, PASSWORD)),
    )
    .await?;
    let sub = chart_sub(repo.url(), "app");
    assert_eq!(
        discover_chart(&sub, Some(&credentials(PASSWORD))).await?,
        ["1.1.0", "1.0.0"]
    );
    let err = discover_chart(&sub, Some(&credentials("nope")))
        .await
        .unwrap_err();
    assert!(matches!(&err, DiscoveryError::Denied(_)), "{err:?}");
    let err = discover_chart(&sub, None).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Denied(m) if m.contains("needs credentials")),
        "{err:?}"
    );
    assert_eq!(repo.refused(), 2);
    Ok(())
}

#[tokio::test]
async fn an_oci_chart_reads_underscores_in_tags_as_plus() -> TestResult {
    let registry = Registry::shared().await?;
    let repo = "charts/podinfo";
    for version in ["6.5.0", "6.6.0+build.7", "6.6.0", "v6.7.0", "7.0.0"] {
        registry.push_chart(repo, version).await?;
    }
    let sub = ChartSubscription {
        repo_url: format!("oci://{}/{repo}", registry.host()),
        semver_constraint: "<7".into(),
        ..Default::default()
    };
    // v6.7.0 is not strict: OCI charts are read as Helm reads them.
    assert_eq!(
        discover_chart(&sub, None).await?,
        ["6.6.0+build.7", "6.6.0", "6.5.0"]
    );
    let named = ChartSubscription {
        name: "podinfo".into(),
        ..sub
    };
    let err = discover_chart(&named, None).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Config(m) if m.starts_with("spec.subscriptions[2].chart.name:")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_oci_chart_is_not_found() -> TestResult {
    let registry = Registry::shared().await?;
    let sub = ChartSubscription {
        repo_url: format!("oci://{}/charts/absent", registry.host()),
        ..Default::default()
    };
    let err = discover_chart(&sub, None).await.unwrap_err();
    assert!(matches!(&err, DiscoveryError::NotFound(_)), "{err:?}");
    Ok(())
}

// The bearer token flow, through a proxy that guards the registry as
// token-authenticated registries (Docker Hub, GHCR) do.

struct TokenProxy {
    host: String,
    token_requests: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    realm: String,
    token_requests: Arc<AtomicUsize>,
}

const TOKEN: &str = "t0ken-for-pull";

async fn token_proxy(upstream: &str) -> Result<TokenProxy, Error> {
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::Response;
    use base64::Engine;

    async fn handle(State(state): State<ProxyState>, uri: Uri, headers: HeaderMap) -> Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let respond = |status: StatusCode, body: String| {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = status;
            r
        };
        if uri.path() == "/token" {
            state.token_requests.fetch_add(1, Ordering::SeqCst);
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
            let query = uri.query().unwrap_or_default();
            if auth != format!("Basic {expected}")
                || !query.contains("service=barge-test")
                || !query.contains("scope=repository%3Atoken%2Fapp%3Apull")
            {
                return respond(StatusCode::UNAUTHORIZED, "{}".into());
            }
            return respond(
                StatusCode::OK,
                format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#),
            );
        }
        if auth != format!("Bearer {TOKEN}") {
            let mut r = respond(
                StatusCode::UNAUTHORIZED,
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.into(),
            );
            let challenge = format!(
                r#"Bearer realm="{}",service="barge-test",scope="repository:token/app:pull""#,
                state.realm
            );
            r.headers_mut()
                .insert("www-authenticate", challenge.parse().unwrap());
            return r;
        }
        let mut request = reqwest::Client::new().get(format!("http://{}{}", state.upstream, uri));
        if let Some(accept) = headers.get("accept") {
            request = request.header("accept", accept.as_bytes());
        }
        let Ok(upstream) = request.send().await else {
            return respond(StatusCode::BAD_GATEWAY, String::new());
        };
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::from_u16(upstream.status().as_u16()).unwrap();
        for name in ["content-type", "docker-content-digest", "link"] {
            if let Some(v) = upstream.headers().get(name) {
                r.headers_mut()
                    .insert(name, v.as_bytes().try_into().unwrap());
            }
        }
        *r.body_mut() = Body::from(upstream.bytes().await.unwrap_or_default());
        r
    }

    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let host = listener.local_addr()?.to_string();
    let token_requests = Arc::new(AtomicUsize::new(0));
    let state = ProxyState {
        upstream: upstream.to_string(),
        realm: format!("http://{host}/token"),
        token_requests: token_requests.clone(),
    };
    let app = axum::Router::new().fallback(handle).with_state(state);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(TokenProxy {
        host,
        token_requests,
        _server: server,
    })
}

#[tokio::test]
async fn a_bearer_challenge_is_answered_with_a_token_fetched_once_and_reused() -> TestResult {
    let registry = Registry::shared().await?;
    push_tags(registry, "token/app", &["1.0.0", "1.1.0", "1.2.0"]).await?;
    let proxy = token_proxy(registry.host()).await?;
    let own = OciClient::new()?;
    let sub = ImageSubscription {
        repo_url: format!("{}/token/app", proxy.host),
        ..Default::default()
    };
    let found = image::discover(&sub, AT, None, Some(&credentials(PASSWORD)), &own).await?;
    assert_eq!(tags(&found), ["1.2.0", "1.1.0", "1.0.0"]);
    // One token served the tag list and six manifest and config reads,
    // and serves the next discovery too.
    assert_eq!(proxy.token_requests.load(Ordering::SeqCst), 1);
    image::discover(&sub, AT, None, Some(&credentials(PASSWORD)), &own).await?;
    assert_eq!(proxy.token_requests.load(Ordering::SeqCst), 1);
    let err = image::discover(&sub, AT, None, Some(&credentials("bad")), &own)
        .await
        .unwrap_err();
    assert!(matches!(&err, DiscoveryError::Denied(_)), "{err:?}");
    let err = image::discover(&sub, AT, None, None, &own)
        .await
        .unwrap_err();
    assert!(matches!(&err, DiscoveryError::Denied(_)), "{err:?}");
    Ok(())
}

// The cost of a large repository: 10,000 tags, SemVer selection. Prints
// JSON; run with `cargo test --release --test warehouse_discovery_images
// -- --ignored --nocapture ten_thousand`. Measured (release, 2 busy
// cores): 10,001 tags listed in 11 pages and 20 images read in 172-190 ms
// (median 185), peak RSS growth 2.0 MiB; tagging them took 13.7 s.

fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
#[ignore = "a measurement: pushes 10,000 tags"]
async fn ten_thousand_tags_measurement() -> TestResult {
    let registry = Registry::start().await?;
    let repo = "bench/app";
    registry
        .push_image(repo, "0.0.1", ("linux", "amd64"), CREATED)
        .await?;
    let started = Instant::now();
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect();
    registry.tag_many(repo, "0.0.1", many, 16).await?;
    let tagging = started.elapsed();
    let own = OciClient::new()?;
    let sub = ImageSubscription {
        constraint: "^1.0.0".into(),
        ..subscription(&registry, repo)
    };
    // Warm up connections, then measure.
    image::discover(&sub, AT, None, None, &own).await?;
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut runs = Vec::new();
    let mut found = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let result = image::discover(&sub, AT, None, None, &own).await?;
        runs.push(started.elapsed());
        found = result.references.len();
    }
    let peak = status_kib("VmHWM:").unwrap_or(0);
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "tags": 10_001,
            "tagging_seconds": tagging.as_secs_f64(),
            "discovery_ms_min": ms(runs[0]),
            "discovery_ms_median": ms(runs[2]),
            "discovery_ms_max": ms(runs[4]),
            "references": found,
            "rss_before_kib": rss_before,
            "peak_rss_kib": peak,
            "peak_growth_kib": peak.saturating_sub(rss_before),
        })
    );
    assert_eq!(found, 20);
    Ok(())
}
