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

/// A registry with Basic authentication and a notification endpoint: it
/// refuses anonymous reads, takes pushes with its login, and POSTs the
/// push events, with the configured Authorization header, to the endpoint.
#[tokio::test]
async fn an_authenticated_registry_notifies_its_endpoint_of_pushes()
-> Result<(), barge_testenv::Error> {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use barge_testenv::registry::{NotificationEndpoint, RegistryOptions};

    type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;
    async fn receive(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> &'static str {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = serde_json::from_slice(&body).unwrap_or_default();
        if let Ok(mut seen) = seen.lock() {
            seen.push((auth, body));
        }
        "ok"
    }
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| barge_testenv::Error::Io {
            path: "listener".into(),
            source: e,
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| barge_testenv::Error::Io {
            path: "listener".into(),
            source: e,
        })?
        .port();
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(seen.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut endpoint =
        NotificationEndpoint::new("barge", &format!("http://127.0.0.1:{port}/events"));
    endpoint.authorization = Some("Bearer notify-s3cret".into());
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("pusher".into(), "pa55word".into())),
        notifications: vec![endpoint],
    })
    .await?;
    assert_eq!(registry.login(), Some(("pusher", "pa55word")));
    let pushed = registry
        .push_index(
            "team/api",
            "2.0.0",
            &["linux/amd64", "linux/arm64"],
            "2026-11-01T00:00:00Z",
            &[],
        )
        .await?;
    assert_eq!(pushed.platforms.len(), 2);
    let chart = registry.push_chart("charts/api", "1.0.0+build.1").await?;
    assert_eq!(chart.tag, "1.0.0_build.1");
    let anonymous = reqwest::Client::new()
        .get(format!("http://{}/v2/team/api/tags/list", registry.host()))
        .send()
        .await
        .map_err(|source| barge_testenv::Error::Http {
            request: "anonymous tags".into(),
            source,
        })?;
    assert_eq!(anonymous.status().as_u16(), 401);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let index_pushed = |seen: &Seen| {
        seen.lock().is_ok_and(|seen| {
            seen.iter().any(|(auth, body)| {
                auth == "Bearer notify-s3cret"
                    && body["events"].as_array().is_some_and(|events| {
                        events.iter().any(|e| {
                            e["action"] == "push"
                                && e["target"]["tag"] == "2.0.0"
                                && e["target"]["digest"] == pushed.digest.as_str()
                        })
                    })
            })
        })
    };
    while !index_pushed(&seen) {
        assert!(
            std::time::Instant::now() < deadline,
            "no push event for team/api:2.0.0; seen: {:?}",
            seen.lock().map(|s| s.len())
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.abort();
    Ok(())
}
