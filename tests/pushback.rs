//! An API server that pushes back, against a real kube-apiserver and the
//! Argo CD double, backstop one hour: the controller's client is refused
//! with 429 (throttling, with `retryAfterSeconds`; priority and fairness,
//! with only a `Retry-After` header) on its first writes of each kind. The
//! Promotion still succeeds on events, retried after the time asked for,
//! and its Application is synced once.

mod support;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use barge::api::PromotionPhase;
use barge::api_requests::RequestAttributes;
use kube::client::Body;
use serde_json::json;
use support::{Harness, TestResult, message};

/// Refusals per kind of write (verb and resource) before one goes through.
const REFUSED_PER_KIND: usize = 2;

/// Refuses the first writes of each kind with 429, alternating the two ways
/// the API server says it: a throttling Status and a priority-and-fairness
/// rejection.
#[derive(Clone, Default)]
struct PushBack {
    refused: Arc<Mutex<HashMap<(String, String), usize>>>,
}

impl PushBack {
    fn refused(&self) -> HashMap<(String, String), usize> {
        self.refused.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Whether this request is refused (and counted).
    fn refuses(&self, request: &http::Request<Body>) -> Option<usize> {
        let what = RequestAttributes::of(request.method(), request.uri())?;
        if !matches!(what.verb.as_str(), "create" | "patch" | "update") {
            return None;
        }
        let mut refused = self.refused.lock().ok()?;
        let count = refused.entry((what.verb, what.resource)).or_insert(0);
        (*count < REFUSED_PER_KIND).then(|| {
            *count += 1;
            *count
        })
    }
}

fn too_many_requests(nth: usize) -> http::Response<Body> {
    let (body, retry_after) = if nth % 2 == 1 {
        (
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "client rate limiter: too many requests", "reason": "TooManyRequests",
                   "details": {"retryAfterSeconds": 1}, "code": 429}),
            None,
        )
    } else {
        (
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "too many requests, please try again later", "reason": "TooManyRequests",
                   "code": 429}),
            Some("1"),
        )
    };
    let mut response = http::Response::builder()
        .status(429)
        .header("content-type", "application/json");
    if let Some(seconds) = retry_after {
        response = response.header("retry-after", seconds);
    }
    response
        .body(Body::from(body.to_string().into_bytes()))
        .unwrap_or_else(|e| panic!("a 429 response: {e}"))
}

/// The real client behind the refusals.
#[derive(Clone)]
struct PushingBack {
    inner: kube::Client,
    push_back: PushBack,
}

impl tower::Service<http::Request<Body>> for PushingBack {
    type Response = http::Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.push_back.refuses(&request) {
            Some(nth) => Box::pin(async move { Ok(too_many_requests(nth)) }),
            None => {
                let inner = self.inner.clone();
                Box::pin(async move { inner.send(request).await })
            }
        }
    }
}

#[tokio::test]
async fn a_promotion_refused_with_429_on_every_first_write_succeeds_on_events_and_syncs_once()
-> TestResult {
    let mut h = Harness::start(|c| c).await?;
    h.stop_controller().await;
    let push_back = PushBack::default();
    let service = PushingBack {
        inner: h.env.client(),
        push_back: push_back.clone(),
    };
    h.start_controller_with(kube::Client::new(service, h.ns.clone()));

    let app = h.app_name("dev");
    h.promote_to_dev(
        vec![h.dev_application(json!({}))],
        "c0ffee1",
        json!([Harness::update_app(&app)]),
    )
    .await?;
    let p1 = h.finished("p1").await?;
    assert_eq!(p1.phase(), PromotionPhase::Succeeded, "{}", message(&p1));
    assert_eq!(h.syncs_for("p1"), 1, "synced more than once");

    let refused = push_back.refused();
    for kind in [("patch", "promotions/status"), ("patch", "applications")] {
        let key = (kind.0.to_string(), kind.1.to_string());
        assert_eq!(
            refused.get(&key),
            Some(&REFUSED_PER_KIND),
            "{kind:?} was not refused: {refused:?}"
        );
    }
    h.shutdown().await;
    Ok(())
}
