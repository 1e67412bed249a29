//! Push webhooks against a real kube-apiserver: a ProjectConfig's
//! registry receivers (the CNCF distribution registry's notifications, and
//! Docker Hub's) and a generic receiver are served at the paths published
//! in its status; a delivery annotates `barge.dev/refresh` on exactly the
//! Warehouses it concerns, so they discover at once.

mod support;

use std::collections::BTreeMap;

use barge::api::{ProjectConfig, Warehouse};
use kube::Api;
use serde_json::{Value, json};
use support::{Harness, PATIENCE, TestResult};

const TOKEN: &str = "Bearer registry-notifications-token";

fn warehouse(name: &str, labels: Value, image: &str) -> Value {
    json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
        "metadata": {"name": name, "labels": labels},
        "spec": {"interval": "24h", "subscriptions": [{"image": {"repoURL": image}}]},
    })
}

fn refresh_of(w: &Warehouse) -> Option<String> {
    barge::api::refresh_requested(&w.metadata).map(str::to_string)
}

async fn refreshes(h: &Harness) -> Result<BTreeMap<String, Option<String>>, support::Error> {
    Ok(Api::<Warehouse>::namespaced(h.client.clone(), &h.ns)
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(|w| (w.metadata.name.clone().unwrap_or_default(), refresh_of(w)))
        .collect())
}

fn http() -> Result<reqwest::Client, support::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder().build()?)
}

#[tokio::test]
async fn a_registry_push_refreshes_exactly_the_warehouses_subscribed_to_the_image() -> TestResult {
    let mut h = Harness::start(|c| c).await?;
    h.stop_controller().await;
    let endpoint = barge::webhook::start(
        h.client.clone(),
        Some(h.ns.clone()),
        ([127, 0, 0, 1], 0).into(),
        Some("https://hooks.example.com".into()),
        h.metrics.clone(),
    )
    .await?;
    h.apply(json!([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry"},
         "stringData": {"auth-header": TOKEN}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hub"},
         "stringData": {"secret": "docker-hub-path-secret"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "generic"},
         "stringData": {"secret": "generic-path-secret"}},
        {"apiVersion": "barge.dev/v1alpha1", "kind": "ProjectConfig",
         "metadata": {"name": h.ns},
         "spec": {"webhookReceivers": [
            {"name": "registry", "distribution": {"secretRef": {"name": "registry"}}},
            {"name": "hub", "dockerhub": {"secretRef": {"name": "hub"}}},
            {"name": "ci", "generic": {"secretRef": {"name": "generic"}, "actions": [{
                "action": "Refresh",
                "whenExpression": "request.body.event == 'release'",
                "targetSelectionCriteria": [{"kind": "Warehouse",
                    "labelSelector": {"matchLabels": {"team": "${{ request.body.team }}"}}}]}]}}
         ]}},
        warehouse("api", json!({"team": "backend"}), "registry.example.com:5000/acme/api"),
        warehouse("worker", json!({"team": "backend"}), "registry.example.com:5000/acme/worker"),
        warehouse("web", json!({"team": "frontend"}), "nginx"),
    ]))
    .await?;

    let configs = Api::<ProjectConfig>::namespaced(h.client.clone(), &h.ns);
    let served = |c: Option<&ProjectConfig>| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.webhook_receivers.len() == 3)
    };
    let config = tokio::time::timeout(
        PATIENCE,
        kube::runtime::wait::await_condition(configs, &h.ns, served),
    )
    .await??
    .ok_or("the ProjectConfig disappeared")?;
    let paths: BTreeMap<String, String> = config
        .status
        .iter()
        .flat_map(|s| &s.webhook_receivers)
        .map(|r| (r.name.clone(), r.path.clone()))
        .collect();
    let url = |name: &str| format!("http://{}{}", endpoint.addr, paths[name]);
    let client = http()?;

    // The registry's envelope: a layer and the manifest of acme/api pushed,
    // acme/worker pulled. Without the token: refused, nothing refreshed.
    let envelope = json!({"events": [
        {"action": "push", "target": {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": "sha256:11", "repository": "acme/api"},
         "request": {"host": "registry.example.com:5000", "method": "PUT"}},
        {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:22", "repository": "acme/api", "tag": "1.4.0"},
         "request": {"host": "registry.example.com:5000", "method": "PUT"}},
        {"action": "pull", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:33", "repository": "acme/worker", "tag": "2.0.0"},
         "request": {"host": "registry.example.com:5000", "method": "GET"}}
    ]});
    let refused = client
        .post(url("registry"))
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.events.v2+json",
        )
        .header("Authorization", "Bearer a-guess")
        .body(envelope.to_string())
        .send()
        .await?;
    assert_eq!(refused.status().as_u16(), 401);
    assert!(refreshes(&h).await?.values().all(Option::is_none));

    let answer = client
        .post(url("registry"))
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.events.v2+json",
        )
        .header("Authorization", TOKEN)
        .body(envelope.to_string())
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&answer.text().await?)?;
    assert_eq!(body["msg"], "refreshed 1 warehouse(s)", "{body}");
    let after = refreshes(&h).await?;
    assert!(after["api"].is_some(), "{after:?}");
    assert_eq!((&after["worker"], &after["web"]), (&None, &None));

    // Docker Hub's push of library/nginx: the Warehouse subscribed to
    // `nginx`, whatever the spelling.
    let hub = json!({"push_data": {"pusher": "someone", "tag": "1.27.3"},
        "repository": {"name": "nginx", "namespace": "library", "repo_name": "library/nginx"}});
    let answer = client.post(url("hub")).body(hub.to_string()).send().await?;
    assert_eq!(answer.status().as_u16(), 200);
    let after_hub = refreshes(&h).await?;
    assert!(after_hub["web"].is_some(), "{after_hub:?}");
    assert_eq!(after_hub["api"], after["api"], "api untouched");
    assert_eq!(after_hub["worker"], None);

    // The generic receiver: the backend team's Warehouses, by label.
    let answer = client
        .post(url("ci"))
        .body(json!({"event": "release", "team": "backend"}).to_string())
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&answer.text().await?)?;
    assert_eq!(body["results"][0]["result"], "Success", "{body}");
    let after_generic = refreshes(&h).await?;
    assert!(after_generic["worker"].is_some(), "{after_generic:?}");
    assert_ne!(
        after_generic["api"], after_hub["api"],
        "api refreshed again"
    );
    assert_eq!(after_generic["web"], after_hub["web"], "web untouched");
    Ok(())
}
