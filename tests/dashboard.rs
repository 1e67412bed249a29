//! The live view in a real headless Chromium, against a real kube-apiserver
//! and the Argo CD double: served by the controller from its own caches
//! (`barge run --dashboard-addr`) and by `barge dashboard` with a
//! kubeconfig. Every wait is on the page's own DOM changes or on watch
//! events; latencies are printed, never asserted. Screenshots go to
//! `<target>/screenshots/`.

#[path = "support/chromium.rs"]
mod chromium;
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use barge::api::PromotionPhase;
use barge::dashboard::Feed;
use chromium::Browser;
use serde_json::{Value, json};
use support::{COMMIT, Harness, TestResult, hang, promotion, stage};

/// A harness whose controller feeds a dashboard, served on a free port as
/// `barge run --dashboard-addr` serves it. Returns the page's URL.
async fn controller_with_dashboard() -> Result<(Harness, String), support::Error> {
    let mut h = Harness::start(|c| c).await?;
    h.stop_controller().await;
    let feed = Feed::default();
    h.settings.dashboard = Some(feed.clone());
    h.start_controller();
    let (addr, _task) =
        barge::dashboard::serve(([127, 0, 0, 1], 0).into(), feed, std::future::pending()).await?;
    Ok((h, format!("http://{addr}/")))
}

/// dev takes Freight from Warehouse `demo`, staging from dev.
fn pipeline(h: &Harness) -> Vec<Value> {
    let steps = |s: &str| json!([Harness::update_app(&h.app_name(s))]);
    let mut staging = stage("staging", steps("staging"));
    staging["spec"]["requestedFreight"][0]["sources"] = json!({"stages": ["dev"]});
    vec![
        h.freight("f1", COMMIT),
        stage("dev", steps("dev")),
        staging,
        h.application(&h.app_name("staging"), "staging"),
    ]
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
        * 1000.0
}

/// When the page first drew `key` (see `window.barge.seen` in app.js).
async fn drawn_at(browser: &mut Browser, key: &str) -> Result<f64, support::Error> {
    let at = browser
        .eval(&format!("window.barge.seen[{}]", json!(key)))
        .await?;
    at.as_f64()
        .ok_or_else(|| format!("the page never drew {key}").into())
}

#[tokio::test]
async fn the_controller_serves_the_pipeline_as_a_graph_with_each_stages_health_and_freight()
-> TestResult {
    let (h, url) = controller_with_dashboard().await?;
    let mut objects = pipeline(&h);
    objects.push(h.dev_application(json!({})));
    objects.push(promotion("p1", "dev", "f1"));
    // Its discovery fails at once (nothing listens there), and keeps
    // failing: its node says why.
    objects.push(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
        "metadata": {"name": "demo"},
        "spec": {"subscriptions": [{"git": {"repoURL": "http://127.0.0.1:1/demo/app.git"}}]},
    }));
    h.apply(Value::Array(objects)).await?;
    let mut browser = Browser::start().await?;
    browser.open(&url).await?;

    browser
        .wait_for(
            "document.querySelector('svg .node.warehouse[data-warehouse=\"demo\"]:not(.missing)') \
             && document.querySelector('svg .node.warehouse[data-warehouse=\"demo\"]').textContent.includes('1 Freight') \
             && document.querySelector('svg .node.stage[data-stage=\"staging\"]') \
             && document.querySelector('svg path.edge[data-from=\"demo\"][data-to=\"dev\"]') \
             && document.querySelector('svg path.edge[data-from=\"dev\"][data-to=\"staging\"]')",
            "the Warehouse, both Stages and their edges",
        )
        .await?;
    let problem = browser
        .wait_for(
            "(() => { const n = document.querySelector('svg .node.warehouse.failing[data-warehouse=\"demo\"]'); \
              return n && n.querySelector('title').textContent.includes('127.0.0.1:1') \
                && n.querySelector('text.problem').textContent; })()",
            "the Warehouse's failing discovery",
        )
        .await?;
    println!("warehouse node: {problem}");
    browser
        .wait_for(
            "document.querySelector('.card[data-warehouse=\"demo\"] .message').textContent.includes('127.0.0.1:1')",
            "the Warehouse's card with the whole message",
        )
        .await?;
    h.finished("p1").await?;
    let dev = browser
        .wait_for(
            "(() => { const n = document.querySelector('svg .node.stage[data-stage=\"dev\"]'); \
              return n && n.dataset.health === 'Healthy' \
                && n.querySelector('text.freight').textContent.includes('abc1234') \
                && n.textContent; })()",
            "dev Healthy with Freight f1 (commit abc1234)",
        )
        .await?;
    println!("dev node: {dev}");
    let staging = browser
        .eval("document.querySelector('svg .node.stage[data-stage=\"staging\"]').textContent")
        .await?;
    assert!(
        staging.as_str().unwrap_or("").contains("no Freight yet"),
        "{staging}"
    );
    // The Stage's card lists the Promotion that brought the Freight.
    browser
        .wait_for(
            "document.querySelector('.card[data-stage=\"dev\"] [data-promotion=\"p1\"][data-phase=\"Succeeded\"]')",
            "p1 Succeeded in dev's card",
        )
        .await?;
    browser.screenshot("dashboard-graph").await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_running_promotion_shows_its_waiting_step_then_succeeded_without_a_reload() -> TestResult
{
    let (h, url) = controller_with_dashboard().await?;
    promotion_goes_live(&h, &url, "controller").await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn barge_run_with_dashboard_addr_serves_the_same_live_view() -> TestResult {
    let mut h = Harness::start(|c| c).await?;
    // The binary's controller instead of the harness's.
    h.stop_controller().await;
    let port = barge_testenv::process::free_port()?;
    let _controller = tokio::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(["run", "--kubeconfig"])
        .arg(h.env.kubeconfig_path())
        .args(["--namespace", &h.ns, "--argocd-namespace", &h.argocd_ns])
        .args(["--backstop", "1h", "--http-addr", "", "--webhook-addr", ""])
        .arg(format!("--dashboard-addr=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    listening(port).await?;
    promotion_goes_live(&h, &format!("http://127.0.0.1:{port}/"), "barge run").await?;
    h.shutdown().await;
    Ok(())
}

/// Waits until something listens on `port` (a process starting up gives
/// no other sign).
async fn listening(port: u16) -> TestResult {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("nothing listens on port {port}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Stage dev's sync held: the page shows p1's step running and waiting on
/// the Application; released, it shows Succeeded without a reload.
async fn promotion_goes_live(h: &Harness, url: &str, served_by: &str) -> TestResult {
    let app = h.app_name("dev");
    let mut objects = pipeline(h);
    objects.push(h.dev_application(hang()));
    h.apply(Value::Array(objects)).await?;
    let mut browser = Browser::start().await?;
    browser.open(url).await?;
    browser
        .wait_for(
            "document.querySelector('svg .node.stage[data-stage=\"dev\"]')",
            "Stage dev",
        )
        .await?;
    // A reload would lose this.
    browser.eval("window.loadedOnce = true").await?;

    h.apply(promotion("p1", "dev", "f1")).await?;
    h.until_awaiting("p1").await?;
    let waiting = browser
        .wait_for(
            "(() => { const row = document.querySelector('[data-promotion=\"p1\"][data-phase=\"Running\"] \
               tr[data-step=\"update\"][data-status=\"Running\"]'); \
               const w = row && row.querySelector('.waiting'); \
               return w && w.textContent; })()",
            "p1's step update running and waiting on the Application",
        )
        .await?;
    let waiting = waiting.as_str().unwrap_or_default().to_string();
    assert!(
        waiting.contains(&format!("Application {}/{app}", h.argocd_ns)),
        "{waiting}"
    );
    browser
        .wait_for(
            "document.querySelector('svg .node.stage[data-stage=\"dev\"] text.promoting')",
            "dev's node showing p1 in progress",
        )
        .await?;
    browser
        .screenshot(&format!(
            "dashboard-promotion-running-{}",
            served_by.replace(' ', "-")
        ))
        .await?;

    h.release(&app).await?;
    let done = h.reaches("p1", PromotionPhase::Succeeded).await?;
    let seen_by_test = now_ms();
    browser
        .wait_for(
            "document.querySelector('[data-promotion=\"p1\"][data-phase=\"Succeeded\"]')",
            "p1 Succeeded",
        )
        .await?;
    let drawn = drawn_at(&mut browser, &format!("{}/p1/Succeeded", h.ns)).await?;
    println!(
        "latency ({served_by}): p1 Succeeded seen by the test's watch → drawn by the page: {:.1} ms \
         (negative: the page was first)",
        drawn - seen_by_test
    );
    // The controller caches an ended Promotion without its steps; the
    // page shows them from the Stage's copy of its last Promotion.
    browser
        .wait_for(
            "document.querySelector('[data-promotion=\"p1\"] tr[data-step=\"update\"][data-status=\"Succeeded\"]')",
            "step update Succeeded",
        )
        .await?;
    assert_eq!(done.phase(), PromotionPhase::Succeeded);
    assert_eq!(
        browser.eval("window.loadedOnce === true").await?,
        json!(true)
    );
    browser
        .screenshot(&format!(
            "dashboard-promotion-succeeded-{}",
            served_by.replace(' ', "-")
        ))
        .await?;
    Ok(())
}

/// `barge dashboard` on a free port with the test's kubeconfig; the URL it
/// prints.
async fn barge_dashboard(h: &Harness) -> Result<(tokio::process::Child, String), support::Error> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .args([
            "dashboard",
            "--addr",
            "127.0.0.1:0",
            "-n",
            &h.ns,
            "--kubeconfig",
        ])
        .arg(h.env.kubeconfig_path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(support::PATIENCE, lines.next_line())
        .await??
        .ok_or("barge dashboard exited before printing its URL")?;
    let url = line
        .strip_prefix("Barge dashboard: ")
        .ok_or_else(|| format!("unexpected first line: {line}"))?
        .to_string();
    Ok((child, url))
}

#[tokio::test]
async fn barge_dashboard_shows_a_failed_promotion_with_its_message() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let (_dashboard, url) = barge_dashboard(&h).await?;
    let mut objects = pipeline(&h);
    objects.push(h.dev_application(
        json!({"double.barge.dev/outcome": "fail:quota exceeded in namespace shop"}),
    ));
    objects.push(promotion("p1", "dev", "f1"));
    h.apply(Value::Array(objects)).await?;
    let mut browser = Browser::start().await?;
    browser.open(&url).await?;

    let failed = h.finished("p1").await?;
    // The double's failed sync ends the step Errored (an operation that
    // failed to apply is not retried).
    let phase = failed.phase();
    assert!(
        matches!(phase, PromotionPhase::Failed | PromotionPhase::Errored),
        "{:?}",
        failed.status
    );
    let seen_by_test = now_ms();
    let message = browser
        .wait_for(
            &format!(
                "(() => {{ const p = document.querySelector('[data-promotion=\"p1\"][data-phase=\"{phase}\"]'); \
                   const m = p && p.querySelector('.message'); return m && m.textContent; }})()"
            ),
            "p1 ended with its message",
        )
        .await?;
    let drawn = drawn_at(&mut browser, &format!("{}/p1/{phase}", h.ns)).await?;
    println!(
        "latency (barge dashboard): p1 {phase} seen by the test's watch → drawn: {:.1} ms",
        drawn - seen_by_test
    );
    let message = message.as_str().unwrap_or_default();
    assert!(message.contains("quota exceeded"), "{message}");
    assert_eq!(message, support::message(&failed));
    // The failed step is marked so in the step table too.
    browser
        .wait_for(
            &format!("document.querySelector('[data-promotion=\"p1\"] tr[data-step=\"update\"][data-status=\"{phase}\"]')"),
            "step update ended the same way",
        )
        .await?;
    // The graph marks the Stage whose latest Promotion ended badly.
    browser
        .wait_for(
            "document.querySelector('svg .node.stage[data-stage=\"dev\"] text.failed')",
            "dev's node marking p1's failure",
        )
        .await?;
    browser.screenshot("dashboard-promotion-failed").await?;
    h.shutdown().await;
    Ok(())
}
