//! The HTTP side: the page and its script (embedded in the binary), the
//! view as JSON, and a server-sent event stream that carries a new view
//! after each change of the caches.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;

use super::source::Feed;
use super::view;

/// How long a change waits for the ones right behind it (a Promotion's
/// status write moves its Stage and Freight too): a burst becomes one
/// update, well inside the 100 ms a change must take to show.
pub const COALESCE: Duration = Duration::from_millis(5);

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("serving the dashboard on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The dashboard's routes over `feed`.
pub fn router(feed: Feed) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route("/app.js", get(|| asset("text/javascript", SCRIPT)))
        .route("/style.css", get(|| asset("text/css", STYLE)))
        .route("/api/view", get(current))
        .route("/api/events", get(events))
        .with_state(feed)
}

/// Binds `addr` and serves until `shutdown` resolves. Returns once bound,
/// with the address bound (port 0 picks one) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    feed: Feed,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Serve { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Serve { addr, source })?;
    tracing::info!(addr = %bound, "serving the dashboard");
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router(feed))
            .with_graceful_shutdown(shutdown)
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the dashboard stopped");
        }
    });
    Ok((bound, task))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The view as JSON, built from the caches as they are now.
fn view_json(feed: &Feed) -> String {
    let view = view::build(&feed.snapshot());
    // Plain strings, numbers and lists: serializing cannot fail.
    serde_json::to_string(&Page {
        attached: feed.attached(),
        view,
    })
    .unwrap_or_else(|_| "{}".into())
}

#[derive(serde::Serialize)]
struct Page {
    /// False until caches are attached (a controller not leading yet).
    attached: bool,
    #[serde(flatten)]
    view: view::View,
}

async fn current(State(feed): State<Feed>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        view_json(&feed),
    )
        .into_response()
}

async fn events(State(feed): State<Feed>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(updates(feed)).keep_alive(KeepAlive::default())
}

/// The view now, then again after each burst of changes whenever it
/// differs from the last one sent.
fn updates(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    let changes = feed.subscribe();
    futures::stream::unfold(
        (feed, changes, None::<String>),
        |(feed, mut changes, last)| async move {
            loop {
                if last.is_some() {
                    // The sender lives as long as the feed this holds.
                    changes.changed().await.ok()?;
                    tokio::time::sleep(COALESCE).await;
                }
                changes.borrow_and_update();
                let json = view_json(&feed);
                if last.as_deref() != Some(json.as_str()) {
                    let event = Event::default().event("view").data(json.clone());
                    return Some((Ok(event), (feed, changes, Some(json))));
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::StreamExt;
    use kube::runtime::reflector::{self, store::Writer};
    use kube::runtime::watcher;
    use serde_json::json;

    use super::*;
    use crate::api::{Freight, Promotion, Stage, Warehouse};
    use crate::dashboard::Caches;

    fn stage(name: &str) -> Stage {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"requestedFreight": [{"origin": {"kind": "Warehouse", "name": "app"}, "sources": {"direct": true}}]},
        }))
        .unwrap()
    }

    fn feed() -> (Feed, Writer<Stage>) {
        let (stages, writer) = reflector::store::<Stage>();
        let feed = Feed::default();
        feed.attach(Caches {
            stages,
            promotions: reflector::store::<Promotion>().0,
            freight: reflector::store::<Freight>().0,
            warehouses: reflector::store::<Warehouse>().0,
        });
        (feed, writer)
    }

    async fn next_view(stream: &mut (impl Stream<Item = Result<Event, Infallible>> + Unpin)) {
        let _view = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_view_at_once_then_one_update_per_burst_of_changes() {
        let (feed, mut writer) = feed();
        let mut updates = Box::pin(updates(feed.clone()));
        next_view(&mut updates).await;

        // A burst: two Stages in a row, one update.
        writer.apply_watcher_event(&watcher::Event::Apply(stage("dev")));
        feed.changed();
        writer.apply_watcher_event(&watcher::Event::Apply(stage("prod")));
        feed.changed();
        next_view(&mut updates).await;
        assert!(view_json(&feed).contains("\"prod\""));

        // A change that changes nothing shown sends nothing.
        feed.changed();
        let quiet = tokio::time::timeout(COALESCE * 20, updates.next()).await;
        assert!(quiet.is_err(), "an update with nothing new was sent");
    }

    #[tokio::test]
    async fn the_page_is_served_from_the_binary_and_says_when_no_caches_are_attached() {
        let feed = Feed::default();
        assert!(view_json(&feed).contains("\"attached\":false"));
        assert!(INDEX.contains("/app.js") && SCRIPT.contains("EventSource"));
        let (addr, task) = serve(([127, 0, 0, 1], 0).into(), feed, std::future::ready(()))
            .await
            .unwrap();
        assert_ne!(addr.port(), 0);
        task.await.unwrap();
    }
}
