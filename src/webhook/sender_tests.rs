//! Every sender, end to end through the endpoint: a delivery shaped as the
//! sender's documentation shows it (fixtures under
//! `tests/fixtures/webhooks/`, values our own) refreshes exactly the
//! Warehouse subscribed to the pushed repository; a delivery with the
//! wrong credentials is refused (401, or 404 for senders whose only
//! credential is the path); a payload that is not what the sender sends is
//! 400; an event the receiver has no use for is acknowledged (200) and
//! refreshes nothing.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ring::hmac;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::api::warehouse::{Warehouse, WarehouseSpec};
use crate::controller::fixtures::FakeApi;

const SECRET: &[u8] = b"0123456789abcdef-receiver-secret";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_hex(algorithm: hmac::Algorithm, secret: &[u8], body: &[u8]) -> String {
    hex(hmac::sign(&hmac::Key::new(algorithm, secret), body).as_ref())
}

/// A delivery's headers.
type Headers = Vec<(&'static str, String)>;

/// How a sender authenticates a delivery of `body` with `secret`.
type Sign = fn(&[u8], &[u8]) -> Headers;

/// The same, capturing.
type Signer = Box<dyn Fn(&[u8], &[u8]) -> Headers>;

fn github(event: &'static str) -> impl Fn(&[u8], &[u8]) -> Vec<(&'static str, String)> {
    move |secret, body| {
        vec![
            ("X-GitHub-Event", event.to_string()),
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex(hmac::HMAC_SHA256, secret, body)),
            ),
        ]
    }
}

struct Case {
    sender: Sender,
    fixture: &'static str,
    sign: Signer,
    /// The subscribed Warehouse's subscription.
    subscription: Value,
    /// An event this receiver ignores: headers' signer and body.
    irrelevant: Option<(Signer, String)>,
    /// Whether the credential is only the path (a wrong one is 404).
    path_only: bool,
}

fn none() -> Sign {
    |_, _| Vec::new()
}

fn cases() -> Vec<Case> {
    let bitbucket = |event: &'static str| {
        move |secret: &[u8], body: &[u8]| {
            vec![
                ("X-Event-Key", event.to_string()),
                (
                    "X-Hub-Signature",
                    format!("sha256={}", hmac_hex(hmac::HMAC_SHA256, secret, body)),
                ),
            ]
        }
    };
    let authorization = |secret: &[u8], _: &[u8]| {
        vec![(
            "Authorization",
            String::from_utf8_lossy(secret).into_owned(),
        )]
    };
    let acr = |_: &[u8], _: &[u8]| vec![("User-Agent", "AzureContainerRegistry/1.0".to_string())];
    let artifactory = |secret: &[u8], body: &[u8]| {
        vec![(
            "X-Jfrog-Event-Auth",
            hmac_hex(hmac::HMAC_SHA256, secret, body),
        )]
    };
    vec![
        Case {
            sender: Sender::GitHub,
            fixture: "github-push.json",
            sign: Box::new(github("push")),
            subscription: json!({"git": {"repoURL": "git@github.com:acme/app.git",
                "includePaths": ["apps/api"]}}),
            irrelevant: Some((Box::new(github("issues")), "{}".into())),
            path_only: false,
        },
        Case {
            sender: Sender::GitHub,
            fixture: "github-package.json",
            sign: Box::new(github("package")),
            subscription: json!({"image": {"repoURL": "ghcr.io/acme/api"}}),
            irrelevant: Some((
                Box::new(github("package")),
                r#"{"action":"published","package":{"package_type":"npm","package_version":{"package_url":"x"}}}"#.into(),
            )),
            path_only: false,
        },
        Case {
            sender: Sender::GitLab,
            fixture: "gitlab-push.json",
            sign: Box::new(|secret, _| {
                vec![
                    ("X-Gitlab-Event", "Push Hook".to_string()),
                    ("X-Gitlab-Token", String::from_utf8_lossy(secret).into_owned()),
                ]
            }),
            subscription: json!({"git": {"repoURL": "https://gitlab.example.com/acme/app",
                "includePaths": ["glob:charts/*/values-*.yaml"]}}),
            irrelevant: Some((
                Box::new(|secret, _| {
                    vec![
                        ("X-Gitlab-Event", "Issue Hook".to_string()),
                        ("X-Gitlab-Token", String::from_utf8_lossy(secret).into_owned()),
                    ]
                }),
                "{}".into(),
            )),
            path_only: false,
        },
        Case {
            sender: Sender::Bitbucket,
            fixture: "bitbucket-push.json",
            sign: Box::new(bitbucket("repo:push")),
            subscription: json!({"git": {"repoURL": "https://bitbucket.org/acme/app.git"}}),
            irrelevant: Some((Box::new(bitbucket("issue:created")), "{}".into())),
            path_only: false,
        },
        Case {
            sender: Sender::DockerHub,
            fixture: "dockerhub-push.json",
            sign: Box::new(none()),
            subscription: json!({"image": {"repoURL": "docker.io/acme/api"}}),
            irrelevant: None,
            path_only: true,
        },
        Case {
            sender: Sender::Harbor,
            fixture: "harbor-push-artifact.json",
            sign: Box::new(authorization),
            subscription: json!({"image": {"repoURL": "harbor.example.com/acme/api"}}),
            irrelevant: Some((
                Box::new(authorization),
                r#"{"type":"PULL_ARTIFACT","event_data":{"resources":[]}}"#.into(),
            )),
            path_only: false,
        },
        Case {
            sender: Sender::Quay,
            fixture: "quay-repo-push.json",
            sign: Box::new(none()),
            subscription: json!({"image": {"repoURL": "quay.io/acme/api"}}),
            irrelevant: None,
            path_only: true,
        },
        Case {
            sender: Sender::Artifactory,
            fixture: "artifactory-docker-pushed.json",
            sign: Box::new(artifactory),
            subscription: json!({"image": {"repoURL": "example.jfrog.io/docker-local/acme/api"}}),
            irrelevant: Some((
                Box::new(artifactory),
                r#"{"domain":"artifact","event_type":"deployed","data":{}}"#.into(),
            )),
            path_only: false,
        },
        Case {
            sender: Sender::Azure,
            fixture: "azure-acr-push.json",
            sign: Box::new(acr),
            subscription: json!({"image": {"repoURL": "acme.azurecr.io/acme/api"}}),
            irrelevant: Some((Box::new(acr), r#"{"action":"delete"}"#.into())),
            path_only: true,
        },
        Case {
            sender: Sender::Distribution,
            fixture: "distribution-events.json",
            sign: Box::new(authorization),
            subscription: json!({"image": {"repoURL": "registry.example.com:5000/acme/api"}}),
            irrelevant: Some((
                Box::new(authorization),
                r#"{"events":[{"action":"pull","target":{"repository":"acme/api","tag":"1"},"request":{"host":"registry.example.com:5000"}}]}"#.into(),
            )),
            path_only: false,
        },
    ]
}

fn warehouse(name: &str, subscription: Value) -> Warehouse {
    let mut w = Warehouse::new(
        name,
        WarehouseSpec {
            subscriptions: vec![subscription],
            ..Default::default()
        },
    );
    w.metadata.namespace = Some("demo".into());
    w.metadata.resource_version = Some("1".into());
    w
}

struct Served {
    app: Router,
    api: FakeApi,
    path: String,
    metrics: Arc<Metrics>,
}

/// A receiver of `sender` in namespace `demo` (secret [`SECRET`]), with
/// Warehouse `subscribed` (to `subscription`) and Warehouse `other`.
fn served(sender: Sender, subscription: Value) -> Served {
    let receiver = Receiver::new("demo", "r", sender, SECRET);
    let path = receiver.path();
    let receivers = Receivers::default();
    receivers.replace("demo", vec![receiver]);
    let api = FakeApi::default()
        .with(&warehouse("subscribed", subscription))
        .with(&warehouse(
            "other",
            json!({"image": {"repoURL": "ghcr.io/someone/else"}}),
        ));
    let metrics = Arc::new(Metrics::default());
    let app = router(receivers, Wakers::new(api.client()), metrics.clone());
    Served {
        app,
        api,
        path,
        metrics,
    }
}

fn refreshed(api: &FakeApi, name: &str) -> bool {
    api.object::<Warehouse>("demo", name)
        .pointer("/metadata/annotations/barge.dev~1refresh")
        .is_some()
}

async fn deliver(
    app: &Router,
    path: &str,
    headers: Vec<(&'static str, String)>,
    body: String,
) -> (StatusCode, String) {
    let mut request = Request::post(path);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let answer = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = answer.status();
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn each_senders_push_refreshes_exactly_the_subscribed_warehouse() {
    for case in cases() {
        let s = served(case.sender, case.subscription.clone());
        let body = fixture(case.fixture);
        let headers = (case.sign)(SECRET, body.as_bytes());
        let (status, answer) = deliver(&s.app, &s.path, headers, body).await;
        let what = format!("{} {}", case.sender.name(), case.fixture);
        assert_eq!(status, StatusCode::OK, "{what}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["msg"], "refreshed 1 warehouse(s)", "{what}");
        assert_eq!(answer["warehouses"], json!(["subscribed"]), "{what}");
        assert!(refreshed(&s.api, "subscribed"), "{what}");
        assert!(!refreshed(&s.api, "other"), "{what}");
        let text = s.metrics.encode();
        assert!(
            text.contains("barge_webhook_wakes_total 1"),
            "{what}: {text}"
        );
    }
}

#[tokio::test]
async fn each_sender_refuses_a_delivery_with_the_wrong_credentials() {
    for case in cases() {
        let s = served(case.sender, case.subscription.clone());
        let body = fixture(case.fixture);
        let headers = (case.sign)(b"a guess", body.as_bytes());
        let what = format!("{} {}", case.sender.name(), case.fixture);
        let path = if case.path_only {
            // The secret is the path: another secret, another path.
            Receiver::new("demo", "r", case.sender, b"a guess").path()
        } else {
            s.path.clone()
        };
        let (status, answer) = deliver(&s.app, &path, headers, body).await;
        let expected = if case.path_only {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(!refreshed(&s.api, "subscribed"), "{what}");
        assert!(
            !answer.contains(std::str::from_utf8(SECRET).unwrap()),
            "{what}: the answer shows the secret"
        );
    }
}

#[tokio::test]
async fn each_sender_answers_a_payload_it_cannot_read_with_400() {
    for case in cases() {
        let s = served(case.sender, case.subscription.clone());
        let body = "{\"truncated\": ".to_string();
        let headers = (case.sign)(SECRET, body.as_bytes());
        let what = format!("{} {}", case.sender.name(), case.fixture);
        let (status, answer) = deliver(&s.app, &s.path, headers, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert!(!refreshed(&s.api, "subscribed"), "{what}");
    }
}

#[tokio::test]
async fn each_sender_acknowledges_an_event_it_has_no_use_for() {
    for case in cases() {
        let Some((sign, body)) = case.irrelevant else {
            continue;
        };
        let s = served(case.sender, case.subscription.clone());
        let headers = sign(SECRET, body.as_bytes());
        let what = format!("{} irrelevant", case.sender.name());
        let (status, answer) = deliver(&s.app, &s.path, headers, body).await;
        assert_eq!(status, StatusCode::OK, "{what}: {answer}");
        assert!(!refreshed(&s.api, "subscribed"), "{what}");
    }
}

#[tokio::test]
async fn a_push_whose_files_the_path_filters_exclude_refreshes_nothing() {
    let s = served(
        Sender::GitHub,
        json!({"git": {"repoURL": "https://github.com/acme/app", "excludePaths": ["apps"]}}),
    );
    let body = fixture("github-push.json");
    let headers = github("push")(SECRET, body.as_bytes());
    let (status, answer) = deliver(&s.app, &s.path, headers, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.contains("refreshed 0 warehouse(s)"), "{answer}");
    assert!(!refreshed(&s.api, "subscribed"));
}

#[tokio::test]
async fn an_artifactory_receivers_virtual_repository_replaces_the_local_one() {
    let receiver =
        Receiver::new("demo", "r", Sender::Artifactory, SECRET).with_virtual_repo("docker-virtual");
    let path = receiver.path();
    let receivers = Receivers::default();
    receivers.replace("demo", vec![receiver]);
    let api = FakeApi::default().with(&warehouse(
        "subscribed",
        json!({"image": {"repoURL": "example.jfrog.io/docker-virtual/acme/api"}}),
    ));
    let app = router(
        receivers,
        Wakers::new(api.client()),
        Arc::new(Metrics::default()),
    );
    let body = fixture("artifactory-docker-pushed.json");
    let headers = vec![(
        "X-Jfrog-Event-Auth",
        hmac_hex(hmac::HMAC_SHA256, SECRET, body.as_bytes()),
    )];
    let (status, answer) = deliver(&app, &path, headers, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(refreshed(&api, "subscribed"));
}

#[tokio::test]
async fn a_generic_receiver_refreshes_what_its_actions_select_and_reports_each() {
    let config: crate::api::project_config::GenericReceiverConfig = serde_json::from_value(json!({
        "secretRef": {"name": "s"},
        "actions": [{
            "action": "Refresh",
            "whenExpression": "request.header('X-Event') == 'release'",
            "targetSelectionCriteria": [{"kind": "Warehouse",
                "labelSelector": {"matchLabels": {"team": "${{ request.body.team }}"}}}]
        }]
    }))
    .unwrap();
    let receiver = Receiver::new("demo", "g", Sender::Generic, SECRET).with_generic(config);
    let path = receiver.path();
    let receivers = Receivers::default();
    receivers.replace("demo", vec![receiver]);
    let mut backend = warehouse("backend", json!({"image": {"repoURL": "ghcr.io/acme/api"}}));
    backend.metadata.labels = Some([("team".to_string(), "backend".to_string())].into());
    let api = FakeApi::default()
        .with(&backend)
        .with(&warehouse("web", json!({"image": {"repoURL": "nginx"}})));
    let app = router(
        receivers,
        Wakers::new(api.client()),
        Arc::new(Metrics::default()),
    );
    // The expression does not hold: nothing.
    let (status, answer) = deliver(
        &app,
        &path,
        vec![("X-Event", "build".into())],
        r#"{"team":"backend"}"#.into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(results["results"][0]["result"], "NotApplicable");
    assert!(!refreshed(&api, "backend"));
    // It holds: the Warehouse its labels select.
    let (status, answer) = deliver(
        &app,
        &format!("{path}?source=ci"),
        vec![("X-Event", "release".into())],
        r#"{"team":"backend"}"#.into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(results["results"][0]["result"], "Success", "{answer}");
    assert_eq!(
        results["results"][0]["selectedTargets"],
        json!([{"namespace": "demo", "name": "backend", "success": true}])
    );
    assert!(refreshed(&api, "backend"));
    assert!(!refreshed(&api, "web"));
    // A body that is not JSON.
    let (status, _) = deliver(&app, &path, vec![], "{".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
