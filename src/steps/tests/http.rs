//! The `http` step against a real HTTP server on loopback.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::controller::fixtures::PlanRun;

fn json_body(status: StatusCode, body: Value) -> axum::response::Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Serves `/deploy` (echoes the query and the `X-Token` header as JSON),
/// `/state/<s>` (a JSON body `{"state": s}`), `/missing` (404 with a JSON
/// error) and `/config` (YAML); returns its base URL.
async fn server() -> String {
    let app = Router::new()
        .route(
            "/deploy",
            get(|uri: Uri, headers: HeaderMap| async move {
                let query = uri.query().unwrap_or_default().to_string();
                let token = headers
                    .get("x-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                json_body(
                    StatusCode::OK,
                    json!({"query": query, "token": token, "replicas": 3}),
                )
            }),
        )
        .route(
            "/state/{state}",
            get(
                |axum::extract::Path(state): axum::extract::Path<String>| async move {
                    json_body(StatusCode::OK, json!({"state": state}))
                },
            ),
        )
        .route(
            "/missing",
            get(|| async {
                json_body(StatusCode::NOT_FOUND, json!({"message": "no such release"}))
            }),
        )
        .route(
            "/config",
            get(|| async {
                (
                    [("content-type", "application/yaml")],
                    "version: \"2.0\"\nfeatures: [a, b]\n",
                )
                    .into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}")
}

async fn run(config: Value) -> Value {
    let plan = json!([{"uses": "http", "as": "call", "config": config}]);
    PlanRun::default().run(plan).await.0
}

#[tokio::test]
async fn a_response_that_meets_the_success_expression_gives_the_outputs() {
    let base = server().await;

    let status = run(json!({
        "url": format!("{base}/deploy"),
        "queryParams": [{"name": "app", "value": "web & api"}],
        "headers": [{"name": "X-Token", "value": "t0k"}],
        "successExpression": "response.status == 200",
        "outputs": [
            {"name": "status", "fromExpression": "response.status"},
            {"name": "query", "fromExpression": "response.body.query"},
            {"name": "token", "fromExpression": "response.body.token"},
            {"name": "type", "fromExpression": "response.headers['Content-Type'][0]"},
            {"name": "replicas", "fromExpression": "response.body.replicas"},
        ],
    }))
    .await;

    assert_eq!(status["phase"], "Succeeded", "{status}");
    assert_eq!(
        status["state"]["call"],
        json!({"status": 200, "query": "app=web+%26+api", "token": "t0k",
               "type": "application/json", "replicas": 3})
    );
}

#[tokio::test]
async fn a_response_that_meets_the_failure_expression_fails_with_the_error_expression() {
    let base = server().await;

    let status = run(json!({
        "url": format!("{base}/missing"),
        "successExpression": "response.status == 200",
        "failureExpression": "response.status >= 400 && response.status < 500",
        "errorExpression": "response.body?.message ?? response.body?.error",
    }))
    .await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.ends_with("HTTP (404) response met failure criteria: \"no such release\""),
        "{message}"
    );
}

#[tokio::test]
async fn a_response_that_meets_neither_expression_keeps_the_step_running() {
    let base = server().await;

    let status = run(json!({
        "url": format!("{base}/state/progressing"),
        "successExpression": "response.body.state == 'done'",
        "failureExpression": "response.body.state == 'failed'",
        "pollInterval": "1s",
    }))
    .await;

    assert_eq!(status["phase"], "Running", "{status}");
    let step = &status["stepExecutionMetadata"][0];
    assert_eq!(step["status"], "Running");
    assert!(
        step["message"]
            .as_str()
            .is_some_and(|m| m.contains("met neither the success nor the failure criteria")),
        "{step}"
    );
}

#[tokio::test]
async fn without_expressions_a_non_2xx_response_is_an_error_that_is_retried() {
    let base = server().await;

    let plan = json!([{"uses": "http", "as": "call", "retry": {"errorThreshold": 3},
        "config": {"url": format!("{base}/missing")}}]);

    let (status, _) = PlanRun::default().run(plan).await;

    let step = &status["stepExecutionMetadata"][0];
    assert_eq!(step["status"], "Running", "{status}");
    assert_eq!(step["errorCount"], 1);
    assert!(
        step["message"].as_str().is_some_and(
            |m| m.contains("HTTP (404) response is not a success; step will be retried")
        ),
        "{step}"
    );
}

#[tokio::test]
async fn a_yaml_response_is_parsed_as_yaml() {
    let base = server().await;

    let status = run(json!({
        "url": format!("{base}/config"),
        "outputs": [{"name": "version", "fromExpression": "response.body.version"},
                    {"name": "features", "fromExpression": "response.body.features"}],
    }))
    .await;

    assert_eq!(
        status["state"]["call"],
        json!({"version": "2.0", "features": ["a", "b"]}),
        "{status}"
    );
}

#[tokio::test]
async fn bad_http_configs_are_refused_naming_the_field() {
    for (config, expected) in [
        (
            json!({"url": "ftp://example.com/x"}),
            "config.url: only http and https URLs are allowed",
        ),
        (
            json!({"url": "http://127.0.0.1:1/", "method": "GE T"}),
            "config.method:",
        ),
        (
            json!({"url": "http://127.0.0.1:1/", "timeout": "soon"}),
            "config.timeout:",
        ),
        (
            json!({"url": "http://127.0.0.1:1/", "proxy": "proxy:3128"}),
            "config.proxy: the proxy URL needs a scheme",
        ),
    ] {
        let status = run(config).await;

        assert_eq!(status["phase"], "Errored", "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{expected}: {message}");
    }
}
