//! `set-metadata` against the in-memory API server.

use serde_json::json;

use crate::api::{Freight, Stage};
use crate::controller::fixtures::{PlanRun, freight, stage};

fn dev_stage_with_metadata() -> Stage {
    stage(json!([]))
        .set(
            "/status/metadata",
            json!({"keep": 1, "deployment": {"region": "eu", "cluster": "a"}}),
        )
        .build()
}

#[tokio::test]
async fn set_metadata_replaces_each_key_whole_and_keeps_the_others() {
    let run = PlanRun::default()
        .with(&dev_stage_with_metadata())
        .with(&freight("f1", 0).build());
    let api = run.api();
    let plan = json!([{"uses": "set-metadata", "as": "meta", "config": {"updates": [
        {"kind": "Stage", "name": "dev", "values": {"deployment": {"region": "us"}, "version": "1.0"}},
        {"kind": "Freight", "name": "f1", "values": {"deployed": true, "a/b": [1, 2]}},
    ]}}]);

    let (status, _) = run.run(plan).await;

    assert_eq!(status["phase"], "Succeeded", "{status}");
    assert_eq!(
        api.object::<Stage>("demo", "dev")["status"]["metadata"],
        json!({"keep": 1, "deployment": {"region": "us"}, "version": "1.0"})
    );
    assert_eq!(
        api.object::<Freight>("demo", "f1")["status"]["metadata"],
        json!({"deployed": true, "a/b": [1, 2]})
    );
}

#[tokio::test]
async fn bad_set_metadata_updates_name_the_field_and_write_nothing() {
    let cases = [
        (
            json!({"kind": "Warehouse", "name": "w", "values": {"a": 1}}),
            "config.updates[1].kind: \"Warehouse\" is neither Stage nor Freight",
        ),
        (
            json!({"kind": "Stage", "name": "dev", "values": {}}),
            "config.updates[1].values: at least one key is required",
        ),
        (
            // Nested deeper than the controller reads back (but not so deep
            // that the expression's JSON text stays a string).
            json!({"kind": "Stage", "name": "dev", "values": {"deep": "${{ reduce(1..120, [#acc], 0) }}"}}),
            "config.updates[1].values.deep: nests deeper than 100 levels of arrays and objects",
        ),
        (
            json!({"kind": "Freight", "name": "nope", "values": {"a": 1}}),
            "config.updates[1].name: Freight \"nope\" does not exist in namespace demo",
        ),
    ];
    for (second, expected) in cases {
        let run = PlanRun::default().with(&dev_stage_with_metadata());
        let api = run.api();
        let plan = json!([{"uses": "set-metadata", "as": "meta", "config": {"updates": [
            {"kind": "Stage", "name": "dev", "values": {"keep": 2}}, second]}}]);

        let (status, _) = run.run(plan).await;

        assert_eq!(status["phase"], "Errored", "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{expected}: {message}");
        if !expected.contains("does not exist") {
            assert_eq!(
                api.object::<Stage>("demo", "dev")["status"]["metadata"]["keep"],
                1,
                "nothing is written when an update is invalid"
            );
        }
    }
}
