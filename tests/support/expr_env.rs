//! The environment the expression compatibility corpus was recorded with
//! (`tests/expr_compat.rs`) and the differential harness evaluates in
//! (`tests/expr_oracle.rs`): the Go side runs with the same — the same
//! vars and outputs, `now()` fixed at [`NOW`], and (for Kargo's data
//! functions) the same objects in its fake API server: project
//! `kargo-demo`, shared resources namespace `kargo-shared-resources`.

use std::collections::BTreeMap;
use std::sync::Arc;

use barge::expr::{DataByName, Env, ProjectData};
use serde_json::json;

/// What `now()` returns: 2024-03-15T13:04:05.123456789Z.
pub const NOW: &str = "2024-03-15T13:04:05.123456789Z";

fn data(objects: &[(&str, &[(&str, &str)])]) -> DataByName {
    objects
        .iter()
        .map(|(name, kv)| {
            let kv: BTreeMap<String, String> = kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (name.to_string(), kv)
        })
        .collect()
}

fn metadata(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// The ConfigMaps, Secrets and metadata of the Go side's fake API server.
/// (ConfigMap `empty` exists there without data; Stage `dev` and Freight
/// `bare` exist without metadata; Secret `shared-git` is shared but not a
/// generic credential, so Kargo does not show it.)
pub fn project_data() -> ProjectData {
    ProjectData {
        config_maps: data(&[
            (
                "app-config",
                &[
                    ("repoURL", "https://github.com/example/app.git"),
                    ("replicas", "3"),
                ],
            ),
            ("empty", &[]),
        ]),
        secrets: data(&[("slack", &[("token", "xoxb-123-secret"), ("user", "bot")])]),
        shared_config_maps: data(&[("shared-config", &[("region", "eu-west-1")])]),
        shared_secrets: data(&[("shared-generic", &[("apiKey", "shared-key-456")])]),
        stage_metadata: [
            (
                "prod".to_string(),
                metadata(json!({
                    "aws-region": "us-west-2",
                    "tier": "gold",
                    "config": {"settings": {"timeoutSeconds": 60}},
                    "replicas": 3,
                })),
            ),
            ("dev".to_string(), metadata(json!({}))),
        ]
        .into_iter()
        .collect(),
        freight_metadata: [
            (
                "f00d".to_string(),
                metadata(json!({
                    "category": "hotfix",
                    "approved": true,
                    "list": [1, "two"],
                })),
            ),
            ("bare".to_string(), metadata(json!({}))),
        ]
        .into_iter()
        .collect(),
    }
}

pub fn env() -> Env {
    let vars = json!({"n": 3.0, "s": "str", "list": [1.0, 2.0, 3.0], "m": {"a": 1.0}});
    let outputs = json!({"step-1": {"x": "y"}});
    Env {
        vars: vars.as_object().cloned().unwrap_or_default(),
        outputs: outputs.as_object().cloned(),
        data: Arc::new(project_data()),
        now: NOW.parse().ok(),
        ..Env::default()
    }
}
