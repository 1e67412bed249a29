//! `barge run` in production: /readyz, /metrics and leader election, against
//! a real kube-apiserver and the Argo CD double.

mod support;

use std::sync::Arc;
use std::time::Duration;

use barge::api::PromotionPhase;
use barge::controller::{Metrics, Settings};
use barge::runtime::{self, LeaderElection};
use barge_testenv::{StoppableTask, TestEnv};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use support::{Harness, TestResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.0 GET: the status code and the body.
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    // Bounded, so that no answer is a failed attempt, not a hung test.
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn free_addr() -> std::net::SocketAddr {
    // Below the ephemeral range, so no outgoing connection can hold it.
    let port = barge_testenv::process::free_port().unwrap_or_else(|e| panic!("no free port: {e}"));
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

async fn until_status(addr: std::net::SocketAddr, path: &str, want: u16) -> TestResult {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        if let Ok((status, _)) = get(addr, path).await
            && status == want
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{path} never answered {want}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_answers_503_until_the_caches_sync_then_200() -> TestResult {
    // A control plane of its own: no other test may install the
    // Application CRD before this one checks that the cache cannot sync.
    let env = TestEnv::from(barge_testenv::ControlPlane::start().await?);
    let ns = env.namespace().await?;
    let metrics = Arc::new(Metrics::default());
    let addr = free_addr();
    let server = tokio::spawn(runtime::serve_http(addr, metrics.clone()));
    // Its own work directory, as support::Harness gives each controller.
    let work_dir = tempfile::tempdir()?;
    let settings = Settings {
        backstop: support::BACKSTOP,
        argocd_namespace: "not-installed-yet".into(),
        namespace: Some(ns.clone()),
        work_dir: work_dir.path().to_path_buf(),
        ..Settings::default()
    };
    let controller = StoppableTask::spawn(|stopped| {
        barge::controller::run(env.client(), settings, metrics.clone(), stopped)
    });
    until_status(addr, "/healthz", 200).await?;
    let (status, body) = get(addr, "/readyz").await?;
    assert_eq!(status, 503, "{body}");

    env.apply_crd_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
        .await?;
    env.apply_crds(barge_argocd_double::CRD_YAML).await?;
    until_status(addr, "/readyz", 200).await?;

    controller.stop().await;
    server.abort();
    Ok(())
}

#[tokio::test]
async fn metrics_show_reconciles_steps_phases_and_wakeup_latency() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let metrics = h.metrics.clone();
    let addr = free_addr();
    let server = tokio::spawn(runtime::serve_http(addr, metrics));
    h.promote_app(json!({})).await?;
    assert_eq!(h.finished("p1").await?.phase(), PromotionPhase::Succeeded);

    // The Stage controller records the Promotion's end asynchronously.
    h.stage_until("dev", "last Promotion recorded", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_promotion.as_ref())
            .is_some()
    })
    .await?;
    // A reconcile is counted when it returns, after its status write (which
    // the wait above saw) and whatever it does next: scrape until the Stage's
    // reconcile has been counted, as Prometheus would on its next scrape.
    let expected = [
        "barge_reconcile_duration_seconds_count{controller=\"promotion\"}",
        "barge_reconcile_duration_seconds_count{controller=\"stage\"}",
        "barge_promotions_finished_total{phase=\"Succeeded\"} 1",
        "barge_promotions{phase=\"Succeeded\"} 1",
        "barge_step_duration_seconds_count{kind=\"argocd-update\",status=\"Succeeded\"} 1",
        "barge_wakeup_latency_seconds_count",
        "barge_reconcile_queue_depth",
        "barge_application_events_total",
    ];
    let deadline = std::time::Instant::now() + support::PATIENCE;
    let body = loop {
        let (status, body) = get(addr, "/metrics").await?;
        assert_eq!(status, 200);
        if expected.iter().all(|series| body.contains(series))
            || std::time::Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for series in expected {
        assert!(body.contains(series), "no {series} in:\n{body}");
    }
    assert!(!body.contains("p1"), "object names must not be labels");
    server.abort();
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_standby_takes_over_from_a_stopped_leader_and_the_promotion_syncs_once() -> TestResult {
    let mut h = Harness::start(|c| c).await?;
    h.stop_controller().await;
    let lease = format!("barge-{}", h.ns);
    let start = |identity: &str| {
        let leader = LeaderElection {
            namespace: h.ns.clone(),
            lease: lease.clone(),
            identity: identity.to_string(),
            duration: Duration::from_secs(3),
        };
        let client = h.env.client();
        let settings = h.settings.clone();
        tokio::spawn(async move {
            runtime::run(
                client,
                settings,
                Arc::new(Metrics::default()),
                Some(leader),
                std::future::pending::<()>(),
            )
            .await
        })
    };
    let first = start("replica-a");
    // Let the first replica take the lease before the second starts.
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.ns);
    held_by(&leases, &lease, "replica-a").await?;
    let second = start("replica-b");

    let app = h
        .promote_app(json!({"double.barge.dev/sync-delay": "4s"}))
        .await?;
    let (ns, name) = (h.argocd_ns.clone(), app.clone());
    h.journal
        .wait_for(support::PATIENCE, |j| !j.syncs_for(&ns, &name).is_empty())
        .await?;
    // The leader stops in the middle of the sync.
    first.abort();
    let _ = first.await;
    held_by(&leases, &lease, "replica-b").await?;

    let p = h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(h.syncs_for("p1"), 1);
    second.abort();
    h.shutdown().await;
    Ok(())
}

/// Waits until the Lease names `holder`.
async fn held_by(leases: &Api<Lease>, lease: &str, holder: &str) -> TestResult {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let current = leases
            .get_opt(lease)
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        if current.as_deref() == Some(holder) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{holder} never held the lease (holder: {current:?})").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
