//! Fuzzes the decisions Barge takes from an Application as the API server
//! hands it over: arbitrary JSON (when the first byte is odd) or an
//! Application assembled from pools of the values Argo CD writes, with every
//! field present, absent or of the wrong type. Decoding, `decide_sync`,
//! `assess_health` and the authorization check must never panic, and the
//! decisions must agree with each other: a sync Argo CD is running is never
//! reported healthy.

#![no_main]

use arbitrary::Unstructured;
use barge::argocd::{AppHealth, Application, Requester, SyncDecision, assess_health, authorization, decide_sync};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const PHASES: &[&str] = &["Running", "Succeeded", "Failed", "Error", "Terminating", "", "succeeded"];
const TIMES: &[&str] = &[
    "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:05Z",
    "2026-11-20T09:59:59Z",
    "",
    "not a time",
    "2026-11-20T10:00:05.123456789+02:00",
];
const REVISIONS: &[&str] = &["c0ffee1", "c0ffee2", "", "main", "1.2.3"];
const STATUSES: &[&str] = &["Synced", "OutOfSync", "Unknown", "Healthy", "Degraded", "Progressing", "Missing", ""];
const NAMES: &[&str] = &["p1", "p2", "demo", "dev", "uid-1", "uid-2", ""];
const INFO_KEYS: &[&str] = &[
    "barge.dev/promotion",
    "barge.dev/promotion-namespace",
    "barge.dev/promotion-uid",
    "kargo.akuity.io/promotion",
    "reason",
];

fn pick(u: &mut Unstructured<'_>, pool: &[&str]) -> arbitrary::Result<Value> {
    // Now and then the wrong type where a string belongs.
    Ok(match u.int_in_range(0..=9)? {
        0 => json!(u.int_in_range(0..=3)?),
        1 => Value::Null,
        _ => json!(*u.choose(pool)?),
    })
}

/// What `build` makes or, now and then, nothing.
fn maybe(
    u: &mut Unstructured<'_>,
    build: impl FnOnce(&mut Unstructured<'_>) -> arbitrary::Result<Value>,
) -> arbitrary::Result<Option<Value>> {
    if u.ratio(1, 5)? { Ok(None) } else { build(u).map(Some) }
}

fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

fn revisions(u: &mut Unstructured<'_>) -> arbitrary::Result<Value> {
    let n = u.int_in_range(0..=3)?;
    (0..n)
        .map(|_| pick(u, REVISIONS))
        .collect::<arbitrary::Result<Vec<_>>>()
        .map(Value::Array)
}

fn info(u: &mut Unstructured<'_>) -> arbitrary::Result<Value> {
    let n = u.int_in_range(0..=4)?;
    (0..n)
        .map(|_| Ok(json!({"name": pick(u, INFO_KEYS)?, "value": pick(u, NAMES)?})))
        .collect::<arbitrary::Result<Vec<_>>>()
        .map(Value::Array)
}

fn application(u: &mut Unstructured<'_>) -> arbitrary::Result<Value> {
    let operation = object(vec![
        ("sync", maybe(u, |u| Ok(json!({"revision": pick(u, REVISIONS)?, "revisions": revisions(u)?})))?),
        ("info", maybe(u, |u| Ok(info(u)?))?),
    ]);
    let sources = revisions(u)?
        .as_array()
        .map(|r| {
            r.iter()
                .map(|rev| json!({"repoURL": "https://git.example.com/a.git", "targetRevision": rev}))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let operation_state = object(vec![
        ("phase", maybe(u, |u| Ok(pick(u, PHASES)?))?),
        ("message", maybe(u, |u| Ok(pick(u, NAMES)?))?),
        ("startedAt", maybe(u, |u| Ok(pick(u, TIMES)?))?),
        ("finishedAt", maybe(u, |u| Ok(pick(u, TIMES)?))?),
        ("operation", maybe(u, |_| Ok(operation.clone()))?),
        (
            "syncResult",
            maybe(u, |u| Ok(json!({"revision": pick(u, REVISIONS)?, "revisions": revisions(u)?})))?,
        ),
    ]);
    let status = object(vec![
        (
            "sync",
            maybe(u, |u| {
                Ok(json!({"status": pick(u, STATUSES)?, "revision": pick(u, REVISIONS)?, "revisions": revisions(u)?}))
            })?,
        ),
        ("health", maybe(u, |u| Ok(json!({"status": pick(u, STATUSES)?, "message": pick(u, NAMES)?})))?),
        ("operationState", maybe(u, |_| Ok(operation_state))?),
        ("reconciledAt", maybe(u, |u| Ok(pick(u, TIMES)?))?),
        (
            "conditions",
            maybe(u, |u| Ok(json!([{"type": pick(u, &["ComparisonError", "InvalidSpecError", "SyncError"])?, "message": pick(u, NAMES)?}])))?,
        ),
    ]);
    let annotations = object(vec![
        ("barge.dev/authorized-stage", maybe(u, |u| Ok(pick(u, &["demo:dev", "demo:*", "*:dev", "", "demo:dev,other:prod", ":"])?))?),
        ("kargo.akuity.io/authorized-stage", maybe(u, |u| Ok(pick(u, &["demo:dev", ""])?))?),
    ]);
    let spec = object(vec![
        ("source", maybe(u, |u| Ok(json!({"repoURL": "https://git.example.com/a.git", "targetRevision": pick(u, REVISIONS)?})))?),
        ("sources", maybe(u, |_| Ok(Value::Array(sources)))?),
    ]);
    Ok(object(vec![
        ("apiVersion", Some(json!("argoproj.io/v1alpha1"))),
        ("kind", Some(json!("Application"))),
        ("metadata", Some(json!({"name": "demo-dev", "namespace": "argocd", "annotations": annotations}))),
        ("spec", maybe(u, |_| Ok(spec))?),
        ("operation", if u.arbitrary()? { Some(operation) } else { None }),
        ("status", maybe(u, |_| Ok(status))?),
    ]))
}

fn input(data: &[u8]) -> Option<(Value, Vec<String>)> {
    let (first, rest) = data.split_first()?;
    let mut u = Unstructured::new(rest);
    let desired: Vec<String> = (0..u.int_in_range(0..=2).ok()?)
        .filter_map(|_| u.choose(REVISIONS).ok().map(|r| r.to_string()))
        .collect();
    if first % 2 == 1 {
        return serde_json::from_slice(rest).ok().map(|v| (v, desired));
    }
    application(&mut u).ok().map(|app| (app, desired))
}

fuzz_target!(|data: &[u8]| {
    let Some((json, desired)) = input(data) else {
        return;
    };
    let Ok(app) = serde_json::from_value::<Application>(json) else {
        return;
    };
    let requester = Requester {
        namespace: "demo",
        name: "p1",
        uid: "uid-1",
    };
    let decision = decide_sync(&app, requester, &desired);
    let health = assess_health(Some(&app), &desired);
    let _ = authorization(&app, "demo", "dev");
    // A sync running (not merely requested) is never taken for a healthy
    // deployment.
    if matches!(&decision, SyncDecision::Running { phase } if phase == "Running") {
        assert!(!matches!(health, AppHealth::Healthy), "{decision:?} yet {health:?}");
    }
    // Encoding is stable after one round (times keep whole seconds, as the
    // API server's do): what is written back reads back the same.
    let encoded = serde_json::to_value(&app).expect("an Application encodes");
    let once: Application = serde_json::from_value(encoded).expect("an encoded Application decodes");
    let twice: Application = serde_json::from_value(serde_json::to_value(&once).expect("encodes"))
        .expect("an encoded Application decodes");
    assert_eq!(twice, once);
});
