//! The webhook endpoint: Git hosts and registries deliver push and
//! pull-request events to a receiver a ProjectConfig declares. A push
//! refreshes the Warehouses of that namespace subscribed to the pushed
//! repository (see [`warehouses`]), so they discover at once, their
//! interval being the backstop; a generic receiver refreshes the
//! Warehouses its actions select (see [`generic`]). A pull-request event
//! wakes the Promotions of that namespace waiting on that pull request;
//! the step's slow poll stays as the backstop for a lost delivery.
//!
//! Every replica serves the endpoint and keeps its own routing table (see
//! [`routes`]), so a delivery is never turned away during a leader change;
//! the replica running the controllers wakes Promotions in memory, any
//! other through the API server (see [`wake`]).

pub mod event;
pub mod generic;
pub mod routes;
pub mod wake;
pub mod warehouses;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use crate::metrics::Metrics;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::post;

pub use event::Sender;
use event::{Event, Headers, Push};
use serde_json::json;

use crate::api::project_config::GenericReceiverConfig;
pub use wake::{PullRequestWaker, Wakers};

/// The largest delivery accepted (GitHub caps payloads at 25 MB; pull
/// request events are a few kB).
const MAX_BODY: usize = 4 << 20;

/// One receiver: where its events go and how its deliveries are checked.
#[derive(Clone, PartialEq)]
pub struct Receiver {
    pub namespace: String,
    pub name: String,
    pub sender: Sender,
    secret: Vec<u8>,
    /// A generic receiver's actions.
    pub generic: Option<Arc<GenericReceiverConfig>>,
    /// An Artifactory receiver's `virtualRepoName`.
    pub virtual_repo: String,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("sender", &self.sender)
            .field("secret", &"<redacted>")
            .field("generic", &self.generic.is_some())
            .field("virtual_repo", &self.virtual_repo)
            .finish()
    }
}

impl Receiver {
    pub fn new(namespace: &str, name: &str, sender: Sender, secret: &[u8]) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            sender,
            secret: secret.to_vec(),
            generic: None,
            virtual_repo: String::new(),
        }
    }

    /// A generic receiver's actions.
    pub fn with_generic(mut self, config: GenericReceiverConfig) -> Self {
        self.generic = Some(Arc::new(config));
        self
    }

    /// An Artifactory receiver's virtual repository.
    pub fn with_virtual_repo(mut self, name: &str) -> Self {
        self.virtual_repo = name.to_string();
        self
    }

    /// The receiver's path: the sender, then a SHA-256 of the namespace,
    /// the receiver's name and its secret, as Kargo derives it, so that a
    /// receiver's URL moves to Barge unchanged and a new secret makes a new
    /// URL.
    pub fn path(&self) -> String {
        let mut input = Vec::new();
        input.extend_from_slice(self.namespace.as_bytes());
        input.extend_from_slice(self.name.as_bytes());
        input.extend_from_slice(&self.secret);
        let digest = ring::digest::digest(&ring::digest::SHA256, &input);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("/{}/{hex}", self.sender.name())
    }
}

/// Every receiver this replica serves, by path.
#[derive(Clone, Default, Debug)]
pub struct Receivers(Arc<RwLock<HashMap<String, Receiver>>>);

impl Receivers {
    /// Replaces the receivers of `namespace` (its ProjectConfig changed).
    pub fn replace(&self, namespace: &str, receivers: Vec<Receiver>) {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.retain(|_, r| r.namespace != namespace);
        for receiver in receivers {
            table.insert(receiver.path(), receiver);
        }
    }

    pub fn get(&self, path: &str) -> Option<Receiver> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned()
    }

    /// Whether a webhook receiver reports pull-request events for
    /// `namespace`: then a waiting step polls only as a backstop.
    pub fn serve(&self, namespace: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|r| r.namespace == namespace && r.sender.reports_pull_requests())
    }
}

#[derive(Clone)]
struct Routes {
    receivers: Receivers,
    wakers: Wakers,
    metrics: Arc<Metrics>,
}

/// The endpoint's routes: `POST /<sender>/<hash>`.
pub fn router(receivers: Receivers, wakers: Wakers, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/{sender}/{hash}", post(deliver))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Routes {
            receivers,
            wakers,
            metrics,
        })
}

/// The running endpoint: its routing table, its wakers (hand them to the
/// controllers' settings) and where it listens. Dropping it stops it.
pub struct Endpoint {
    pub receivers: Receivers,
    pub wakers: Wakers,
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Listens on `addr` and keeps the receivers of the ProjectConfigs (of
/// `namespace`, or all) served, publishing their URLs under `base_url`.
pub async fn start(
    client: kube::Client,
    namespace: Option<String>,
    addr: SocketAddr,
    base_url: Option<String>,
    metrics: Arc<Metrics>,
) -> std::io::Result<Endpoint> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let receivers = Receivers::default();
    let wakers = Wakers::new(client.clone());
    tracing::info!(%addr, "serving webhook receivers");
    let app = router(receivers.clone(), wakers.clone(), metrics);
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "webhook endpoint stopped");
        }
    });
    let sync = tokio::spawn(routes::sync(client, namespace, receivers.clone(), base_url));
    Ok(Endpoint {
        receivers,
        wakers,
        addr,
        tasks: vec![serve, sync],
    })
}

async fn deliver(
    State(endpoint): State<Routes>,
    Path((sender, hash)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = format!("/{sender}/{hash}");
    // Unknown and unauthenticated deliveries get the same answer, so the
    // endpoint does not confirm which paths exist.
    let Some(receiver) = endpoint.receivers.get(&path) else {
        // Not the path's sender: a label must not take whatever is sent.
        endpoint.metrics.webhook_delivery("unknown", "not_found");
        return (StatusCode::NOT_FOUND, "no such receiver\n".into());
    };
    let url = uri
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_string());
    let delivery = Delivery {
        method: method.as_str(),
        url: &url,
        headers,
        body: &body,
    };
    let (status, outcome, answer) = answer(&endpoint, &receiver, delivery).await;
    endpoint
        .metrics
        .webhook_delivery(receiver.sender.name(), outcome);
    (status, answer)
}

/// What was delivered.
struct Delivery<'a> {
    method: &'a str,
    url: &'a str,
    headers: HeaderMap,
    body: &'a [u8],
}

/// The answer to a delivery to `receiver`, and its outcome for the metrics.
async fn answer(
    endpoint: &Routes,
    receiver: &Receiver,
    delivery: Delivery<'_>,
) -> (StatusCode, &'static str, String) {
    let body = delivery.body;
    let headers: Headers = delivery
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    if let Err(why) = event::authenticate(receiver.sender, &headers, body, &receiver.secret) {
        tracing::warn!(namespace = %receiver.namespace, receiver = %receiver.name, %why, "webhook delivery rejected");
        return (StatusCode::UNAUTHORIZED, "unauthorized", format!("{why}\n"));
    }
    if let Some(config) = &receiver.generic {
        let request = generic::Request {
            method: delivery.method,
            url: delivery.url,
            headers: &headers,
            body,
        };
        return answer_generic(endpoint, receiver, config, &request).await;
    }
    let event = match event::parse(receiver.sender, &headers, body) {
        Ok(event) => event,
        Err(why) => {
            tracing::warn!(namespace = %receiver.namespace, receiver = %receiver.name, %why, "webhook delivery not understood");
            return (StatusCode::BAD_REQUEST, "malformed", format!("{why}\n"));
        }
    };
    match event {
        Event::PullRequest {
            repo_urls,
            number,
            action,
        } => match endpoint
            .wakers
            .pull_request(&receiver.namespace, &repo_urls, number)
            .await
        {
            Ok(woken) => {
                tracing::info!(namespace = %receiver.namespace, receiver = %receiver.name, number, %action, woken, "pull request event");
                (
                    StatusCode::OK,
                    "woke",
                    format!("woke {woken} Promotion(s)\n"),
                )
            }
            // The host may redeliver; the step's poll is the backstop.
            Err(e) => {
                tracing::warn!(namespace = %receiver.namespace, receiver = %receiver.name, number, error = %e, "waking Promotions failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "failed",
                    format!("waking Promotions failed: {e}\n"),
                )
            }
        },
        Event::Push(mut push) => {
            if receiver.sender == Sender::Artifactory {
                push.repo_urls = push
                    .repo_urls
                    .iter()
                    .map(|u| event::artifactory_repo_url(u, &receiver.virtual_repo))
                    .collect();
            }
            answer_push(endpoint, receiver, &push).await
        }
        Event::Ping => (
            StatusCode::OK,
            "ignored",
            json!({"msg": "ping event received, webhook is configured correctly"}).to_string(),
        ),
        Event::Other(kind) => (StatusCode::OK, "ignored", format!("{kind} ignored\n")),
    }
}

/// Refreshes the Warehouses `push` concerns; Kargo's JSON answer.
async fn answer_push(
    endpoint: &Routes,
    receiver: &Receiver,
    push: &Push,
) -> (StatusCode, &'static str, String) {
    match endpoint.wakers.warehouses(&receiver.namespace, push).await {
        Ok(refreshed) => {
            endpoint.metrics.webhook_refreshed(refreshed.len());
            tracing::info!(namespace = %receiver.namespace, receiver = %receiver.name, repositories = ?push.repo_urls, refs = ?push.refs, warehouses = ?refreshed, "push event");
            let outcome = if refreshed.is_empty() {
                "ignored"
            } else {
                "woke"
            };
            (
                StatusCode::OK,
                outcome,
                json!({
                    "msg": format!("refreshed {} warehouse(s)", refreshed.len()),
                    "warehouses": refreshed,
                })
                .to_string(),
            )
        }
        // The sender may redeliver; the Warehouse's interval is the backstop.
        Err(e) => {
            tracing::warn!(namespace = %receiver.namespace, receiver = %receiver.name, error = %e, "refreshing Warehouses failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "failed",
                json!({"error": format!("refreshing Warehouses failed: {e}")}).to_string(),
            )
        }
    }
}

/// Runs a generic receiver's actions; Kargo's JSON answer (`results`).
async fn answer_generic(
    endpoint: &Routes,
    receiver: &Receiver,
    config: &GenericReceiverConfig,
    request: &generic::Request<'_>,
) -> (StatusCode, &'static str, String) {
    let base = match generic::base_environment(request) {
        Ok(base) => base,
        Err(why) => {
            tracing::warn!(namespace = %receiver.namespace, receiver = %receiver.name, %why, "webhook delivery not understood");
            return (
                StatusCode::BAD_REQUEST,
                "malformed",
                json!({ "error": why }).to_string(),
            );
        }
    };
    let client = endpoint.wakers.client();
    let api: kube::Api<crate::api::Warehouse> =
        kube::Api::namespaced(client.clone(), &receiver.namespace);
    let warehouses = match api.list(&Default::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(namespace = %receiver.namespace, receiver = %receiver.name, error = %e, "listing Warehouses failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "failed",
                json!({"error": format!("listing Warehouses failed: {e}")}).to_string(),
            );
        }
    };
    let mut results = generic::select(config, &base, &warehouses);
    let mut total = 0;
    for result in &mut results {
        if !result.result.is_empty() {
            continue;
        }
        let names: Vec<String> = result
            .selected_targets
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let refreshed = match warehouses::refresh(client, &receiver.namespace, &names).await {
            Ok(refreshed) => refreshed,
            Err(e) => {
                tracing::warn!(namespace = %receiver.namespace, receiver = %receiver.name, error = %e, "refreshing Warehouses failed");
                Vec::new()
            }
        };
        total += refreshed.len();
        generic::record_refresh(result, &refreshed);
    }
    endpoint.metrics.webhook_refreshed(total);
    tracing::info!(namespace = %receiver.namespace, receiver = %receiver.name, refreshed = total, "generic webhook");
    let status = if generic::any_failed(&results) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let outcome = match (status, total) {
        (StatusCode::OK, 0) => "ignored",
        (StatusCode::OK, _) => "woke",
        _ => "failed",
    };
    (status, outcome, json!({ "results": results }).to_string())
}

#[cfg(test)]
mod sender_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use futures::StreamExt;
    use ring::hmac;
    use tower::ServiceExt;

    use super::*;
    use crate::await_index::{AwaitTarget, SharedAwaitIndex};
    use crate::controller::fixtures::FakeApi;

    const BODY: &str = r#"{"action":"closed","number":5,"pull_request":{"number":5,"merged":true},
        "repository":{"clone_url":"https://gitea.example.com/team/app.git"}}"#;

    struct Served {
        app: Router,
        path: String,
        woken: futures::channel::mpsc::UnboundedReceiver<
            kube::runtime::reflector::ObjectRef<crate::api::Promotion>,
        >,
    }

    /// A receiver of namespace `demo`, and Promotion p1 there waiting on
    /// pull request 5 of team/app, woken through the controllers' index.
    fn served() -> Served {
        let receivers = Receivers::default();
        let receiver = Receiver::new("demo", "gitea", Sender::Gitea, b"s3cret");
        let path = receiver.path();
        receivers.replace("demo", vec![receiver]);
        let index = SharedAwaitIndex::default();
        index.set(
            ("demo".into(), "p1".into()),
            vec![AwaitTarget::PullRequest {
                namespace: "demo".into(),
                repo_url: "https://gitea.example.com/team/app".into(),
                number: 5,
            }],
        );
        let (wake, woken) = futures::channel::mpsc::unbounded();
        let wakers = Wakers::new(FakeApi::default().client());
        let metrics = Arc::new(Metrics::default());
        wakers.set_local(Some(PullRequestWaker {
            index,
            wake,
            metrics: metrics.clone(),
        }));
        Served {
            app: router(receivers, wakers, metrics),
            path,
            woken,
        }
    }

    fn delivery(path: &str, signature: &str) -> Request<Body> {
        Request::post(path)
            .header("X-Gitea-Event", "pull_request")
            .header("X-Gitea-Signature", signature)
            .body(Body::from(BODY))
            .unwrap()
    }

    fn sign(secret: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        hmac::sign(&key, BODY.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[tokio::test]
    async fn a_signed_pull_request_event_wakes_the_promotion_waiting_on_it() {
        let mut s = served();
        let answer = s
            .app
            .oneshot(delivery(&s.path, &sign(b"s3cret")))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let woken = s.woken.next().await.unwrap();
        assert_eq!(
            (woken.name.as_str(), woken.namespace.as_deref()),
            ("p1", Some("demo"))
        );
    }

    #[tokio::test]
    async fn a_delivery_signed_with_another_secret_is_refused_and_wakes_nothing() {
        let mut s = served();
        let answer = s
            .app
            .oneshot(delivery(&s.path, &sign(b"guess")))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert!(s.woken.try_recv().is_err(), "nothing woken");
    }

    #[test]
    fn only_a_receiver_of_pull_request_events_makes_pull_request_waits_rely_on_it() {
        let receivers = Receivers::default();
        receivers.replace(
            "demo",
            vec![
                Receiver::new("demo", "hub", Sender::DockerHub, b"s"),
                Receiver::new("demo", "ci", Sender::Generic, b"s"),
            ],
        );
        assert!(!receivers.serve("demo"));
        receivers.replace(
            "demo",
            vec![Receiver::new("demo", "bb", Sender::Bitbucket, b"s")],
        );
        assert!(receivers.serve("demo"));
        assert!(!receivers.serve("other"));
    }

    #[tokio::test]
    async fn a_delivery_to_a_path_no_receiver_has_is_not_found() {
        let s = served();
        let answer = s
            .app
            .oneshot(delivery("/gitea/0000", &sign(b"s3cret")))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    }
}
