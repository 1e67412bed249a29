//! A classic Helm chart repository for tests: an HTTP server on a loopback
//! port serving the `index.yaml` a test sets (built with [`index_yaml`]),
//! optionally behind HTTP Basic authentication.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;

use crate::Error;

/// A running chart repository. Dropping it stops it.
pub struct ChartRepository {
    port: u16,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    index: Mutex<String>,
    login: Option<(String, String)>,
    requests: AtomicUsize,
    refused: AtomicUsize,
}

impl ChartRepository {
    /// Serves `index` at `/index.yaml` (every other path is 404); with
    /// `login`, only to requests carrying it.
    pub async fn start(index: String, login: Option<(&str, &str)>) -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io(std::path::Path::new("127.0.0.1:0"), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io(std::path::Path::new("127.0.0.1:0"), e))?
            .port();
        let shared = Arc::new(Shared {
            index: Mutex::new(index),
            login: login.map(|(u, p)| (u.to_string(), p.to_string())),
            requests: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            port,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:<port>/charts`: a subscription's `repoURL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/charts", self.port)
    }

    /// Replaces the index served.
    pub fn set_index(&self, index: String) {
        if let Ok(mut current) = self.shared.index.lock() {
            *current = index;
        }
    }

    /// Requests served (or refused) so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests refused for missing or wrong credentials so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for ChartRepository {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Some((user, password)) = &shared.login {
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "));
        if given.is_none_or(|g| g.trim() != expected) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let mut response = respond(StatusCode::UNAUTHORIZED, "authentication required");
            if let Ok(value) = "Basic realm=\"charts\"".parse() {
                response.headers_mut().insert("www-authenticate", value);
            }
            return response;
        }
    }
    if uri.path() != "/charts/index.yaml" {
        return respond(StatusCode::NOT_FOUND, "not found");
    }
    let index = shared.index.lock().map(|i| i.clone()).unwrap_or_default();
    let mut response = respond(StatusCode::OK, index);
    if let Ok(value) = "application/x-yaml".parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

fn respond(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
}

/// An `index.yaml` listing, per chart, its versions (with the fields Helm
/// writes, so that readers skip what they do not need).
pub fn index_yaml(charts: &[(&str, &[&str])]) -> String {
    let mut yaml = String::from("apiVersion: v1\nentries:\n");
    for (name, versions) in charts {
        yaml.push_str(&format!("  {name}:\n"));
        for version in *versions {
            yaml.push_str(&format!(
                "    - apiVersion: v2\n      name: {name}\n      version: \"{version}\"\n      appVersion: \"{version}\"\n      created: \"2026-01-01T00:00:00Z\"\n      digest: 0123456789abcdef\n      urls:\n        - https://charts.example.com/{name}-{version}.tgz\n"
            ));
        }
    }
    yaml.push_str("generated: \"2026-01-01T00:00:00Z\"\n");
    yaml
}
