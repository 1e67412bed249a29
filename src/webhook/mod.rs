//! The webhook endpoint: Git hosts deliver pull-request (and push) events
//! to a receiver a ProjectConfig declares. A pull-request event wakes the
//! Promotions of that namespace waiting on that pull request; the step's
//! slow poll stays as the backstop for a lost delivery.
//!
//! Every replica serves the endpoint and keeps its own routing table (see
//! [`routes`]), so a delivery is never turned away during a leader change;
//! the replica running the controllers wakes Promotions in memory, any
//! other through the API server (see [`wake`]).

pub mod event;
pub mod routes;
pub mod wake;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use crate::metrics::Metrics;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

pub use event::Sender;
use event::{Event, Headers};
pub use wake::{PullRequestWaker, Wakers};

/// The largest delivery accepted (GitHub caps payloads at 25 MB; pull
/// request events are a few kB).
const MAX_BODY: usize = 4 << 20;

/// One receiver: where its events go and how its deliveries are checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Receiver {
    pub namespace: String,
    pub name: String,
    pub sender: Sender,
    secret: Vec<u8>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("sender", &self.sender)
            .field("secret", &"<redacted>")
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
        }
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
            .any(|r| r.namespace == namespace)
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
    let (status, outcome, answer) = answer(&endpoint, &receiver, headers, &body).await;
    endpoint
        .metrics
        .webhook_delivery(receiver.sender.name(), outcome);
    (status, answer)
}

/// The answer to a delivery to `receiver`, and its outcome for the metrics.
async fn answer(
    endpoint: &Routes,
    receiver: &Receiver,
    headers: HeaderMap,
    body: &[u8],
) -> (StatusCode, &'static str, String) {
    let headers: Headers = headers
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
        Event::Push { .. } => (StatusCode::OK, "ignored", "push acknowledged\n".into()),
        Event::Ping => (StatusCode::OK, "ignored", "pong\n".into()),
        Event::Other(kind) => (StatusCode::OK, "ignored", format!("{kind} ignored\n")),
    }
}

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
