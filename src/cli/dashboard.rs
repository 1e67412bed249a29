//! `barge dashboard`: the live view served from caches of its own, filled
//! with the user's credentials; and the `--dashboard-addr` of `barge run`,
//! which serves the same view from the controller's caches.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use super::error::CliError;
use super::kube_args::KubeArgs;
use crate::dashboard::Feed;

#[derive(Debug, Args)]
pub(super) struct DashboardArgs {
    /// Where to serve the page (port 0 picks a free one; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    #[command(flatten)]
    kube: KubeArgs,
    /// Show every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Connect(#[from] CliError),
    #[error(transparent)]
    Serve(#[from] crate::dashboard::server::Error),
    #[error("starting the runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Runs `barge dashboard` until interrupted.
pub(super) fn run(args: DashboardArgs) -> ExitCode {
    // Logs on stderr: stdout carries only the URL.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let served = tokio::runtime::Runtime::new()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(serve(args)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("barge dashboard: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: DashboardArgs) -> Result<(), Error> {
    let target = args.kube.connect().await?;
    let namespace = (!args.all_namespaces).then_some(target.namespace);
    let client = target.client;
    let feed = Feed::default();
    let (bound, server) =
        crate::dashboard::serve(args.addr, feed.clone(), super::shutdown_signal()).await?;
    // The one line scripts (and tests) read to find the page.
    println!("Barge dashboard: http://{bound}/");
    let watches = crate::dashboard::source::watch(client, namespace, feed);
    tokio::select! {
        _ = server => {}
        () = watches => {}
    }
    Ok(())
}

/// `barge run --dashboard-addr`: serves the view from the feed the
/// controllers will attach their caches to. `None` when the flag is empty.
pub(super) async fn for_controller(addr: &str) -> Result<Option<Feed>, String> {
    if addr.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad --dashboard-addr {addr:?}: {e}"))?;
    let feed = Feed::default();
    // Served until the process ends, like /metrics.
    crate::dashboard::serve(addr, feed.clone(), std::future::pending())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(feed))
}
