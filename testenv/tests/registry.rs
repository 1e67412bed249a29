//! The registry harness against the real registry: images pushed through
//! the distribution API are listed and served by digest.

use barge_testenv::registry::Registry;

#[tokio::test]
async fn pushed_images_are_listed_and_their_manifests_served_by_digest()
-> Result<(), barge_testenv::Error> {
    let registry = Registry::shared().await?;
    let first = registry
        .push_image(
            "team/web",
            "1.0.0",
            ("linux", "amd64"),
            "2026-11-01T00:00:00Z",
        )
        .await?;
    let second = registry
        .push_image(
            "team/web",
            "1.1.0",
            ("linux", "amd64"),
            "2026-11-02T00:00:00Z",
        )
        .await?;
    assert_ne!(first.digest, second.digest);
    assert!(first.digest.starts_with("sha256:") && first.digest.len() == 71);
    let mut tags = registry.tags("team/web").await?;
    tags.sort();
    assert_eq!(tags, vec!["1.0.0", "1.1.0"]);
    // A mutable tag moved: same tag, new digest.
    let moved = registry
        .push_image(
            "team/web",
            "1.1.0",
            ("linux", "arm64"),
            "2026-11-03T00:00:00Z",
        )
        .await?;
    assert_ne!(moved.digest, second.digest);
    Ok(())
}

#[test]
fn the_pinned_version_is_the_wrapper_modules() {
    let go_mod = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/registry/go.mod"),
    )
    .unwrap_or_default();
    assert!(
        go_mod.contains(&format!(
            "github.com/distribution/distribution/v3 v{}",
            barge_testenv::registry::REGISTRY_VERSION
        )),
        "hack/registry/go.mod pins another version"
    );
}
