//! What `configMap()`, `secret()`, `stageMetadata()` and `freightMetadata()`
//! read, fetched by the reconciler for the plan that calls them, and Secret
//! values kept out of the status.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::json;

use crate::controller::fixtures::{PlanRun, stage};

const TOKEN: &str = "xoxb-very-secret-token";

fn objects() -> (ConfigMap, Secret, Secret) {
    let config_map = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "demo"},
        "data": {"url": "https://hooks.example.com/deploy"},
    }));
    let generic = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "slack", "namespace": "demo",
                     "labels": {"kargo.akuity.io/cred-type": "generic"}},
        "data": {"token": "eG94Yi12ZXJ5LXNlY3JldC10b2tlbg=="},
    }));
    let credentials = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "git", "namespace": "demo",
                     "labels": {"kargo.akuity.io/cred-type": "git"}},
        "data": {"password": "aHVudGVyMg=="},
    }));
    match (config_map, generic, credentials) {
        (Ok(c), Ok(g), Ok(p)) => (c, g, p),
        _ => panic!("bad fixtures"),
    }
}

#[tokio::test]
async fn expressions_read_config_maps_generic_secrets_and_stage_metadata_of_the_namespace() {
    let (config_map, generic, credentials) = objects();
    let dev = stage(json!([]))
        .set("/status/metadata", json!({"version": "1.4"}))
        .build();
    let plan = json!([
        {"uses": "compose-output", "as": "read", "config": {
            "url": "${{ configMap('settings').url }}",
            "missing": "${{ configMap('nope') }}",
            "version": "${{ stageMetadata('dev').version }}",
            "tokenLength": "${{ len(secret('slack').token) }}",
            "credentials": "${{ secret('git') }}",
        }},
        {"uses": "hold", "as": "hold"},
    ]);

    let (status, _) = PlanRun::default()
        .with(&config_map)
        .with(&generic)
        .with(&credentials)
        .with(&dev)
        .run(plan)
        .await;

    assert_eq!(
        status["state"]["read"],
        json!({"url": "https://hooks.example.com/deploy", "missing": {}, "version": 1.4,
               "tokenLength": TOKEN.len(), "credentials": {}}),
        "{status}"
    );
}

#[tokio::test]
async fn a_secret_a_step_copies_into_its_output_or_message_never_reaches_the_status() {
    let (_, generic, _) = objects();
    let plan = json!([
        {"uses": "compose-output", "as": "leak", "config": {"header": "Bearer ${{ secret('slack').token }}"}},
        {"uses": "fail", "as": "stop", "config": {"message": "token ${{ secret('slack').token }} refused"}},
    ]);

    let (status, _) = PlanRun::default().with(&generic).run(plan).await;

    let text = status.to_string();
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(status["state"]["leak"]["header"], "Bearer ***");
    assert_eq!(status["message"], "step \"stop\": token *** refused");
}
