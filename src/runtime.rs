//! `barge run` in production: the HTTP endpoints (`/healthz`, `/readyz`,
//! `/metrics`), leader election on a Lease, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{Future, FutureExt};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::controller::{self, Metrics, Settings};

/// How long watches may fail without a success before `/healthz` fails.
pub const UNHEALTHY_AFTER: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("HTTP server on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader lease; stopped reconciling")]
    LostLease,
}

/// Leader election on a `coordination.k8s.io` Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal; a standby takes over after it.
    pub duration: Duration,
}

/// Serves the three endpoints until the process ends.
pub async fn serve_http(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<(), RuntimeError> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Http { addr, source })?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app)
        .await
        .map_err(|source| RuntimeError::Http { addr, source })
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.watch_failing_for() {
        Some(failing) if failing >= UNHEALTHY_AFTER => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("watches failing for {}s\n", failing.as_secs()),
        ),
        _ => (StatusCode::OK, "ok\n".to_string()),
    }
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced\n")
    }
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// Runs the controllers until `shutdown`; with leader election, only while
/// holding the lease. Losing it stops reconciling at once and returns
/// [`RuntimeError::LostLease`], so the process exits and restarts as a standby.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    leader: Option<LeaderElection>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), RuntimeError> {
    let Some(leader) = leader else {
        controller::run(client, settings, metrics, shutdown).await;
        return Ok(());
    };
    let manager = LeaseManagerBuilder::new(client.clone(), &leader.lease)
        .with_namespace(&leader.namespace)
        .with_identity(&leader.identity)
        .with_duration(leader.duration.as_secs().max(2))
        .with_grace((leader.duration.as_secs() / 3).max(1))
        .with_field_manager(crate::CONTROLLER_NAME)
        .build()
        .await?;
    let (mut leading, lease_task) = manager.watch().await;
    // A standby has no caches to sync: it is ready to take over.
    metrics.set_ready(true);
    let shutdown = shutdown.shared();
    tracing::info!(identity = %leader.identity, lease = %leader.lease, "waiting for the leader lease");
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return Err(RuntimeError::LostLease) },
            _ = shutdown.clone() => return Ok(()),
        }
    }
    tracing::info!(identity = %leader.identity, "leading: starting the controllers");
    metrics.set_ready(false);
    let mut watch = leading.clone();
    let lost = async move {
        while watch.changed().await.is_ok() {
            if !*watch.borrow() {
                return;
            }
        }
    }
    .shared();
    let stop = {
        let lost = lost.clone();
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                _ = lost => {},
                _ = shutdown => {},
            }
        }
    };
    controller::run(client, settings, metrics, stop).await;
    let lost_lease = lost.now_or_never().is_some() || !*leading.borrow();
    // Dropping the receiver makes the lease task release the lease.
    drop(leading);
    let _ = lease_task.await;
    if lost_lease {
        Err(RuntimeError::LostLease)
    } else {
        Ok(())
    }
}
