//! `barge dashboard`: the live view served from caches of its own, filled
//! with the user's credentials; and the `--dashboard-addr` of `barge run`,
//! which serves the same view from the controller's caches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::dashboard::Feed;

#[derive(Debug, Args)]
pub(super) struct DashboardArgs {
    /// Where to serve the page (port 0 picks a free one; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// Kubeconfig to use; without it, $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "BARGE_KUBECONFIG", value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (its current one without it).
    #[arg(long)]
    context: Option<String>,
    /// Show this namespace (project); without it, the context's namespace.
    #[arg(
        short = 'n',
        long,
        alias = "project",
        conflicts_with = "all_namespaces"
    )]
    namespace: Option<String>,
    /// Show every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("Kubernetes client: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
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
    let config = config(args.kubeconfig.as_deref(), args.context.clone()).await?;
    let namespace = match (args.all_namespaces, args.namespace) {
        (true, _) => None,
        (false, Some(ns)) => Some(ns),
        (false, None) => Some(config.default_namespace.clone()),
    };
    let client = kube::Client::try_from(config)?;
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

async fn config(
    kubeconfig: Option<&std::path::Path>,
    context: Option<String>,
) -> Result<kube::Config, Error> {
    let options = kube::config::KubeConfigOptions {
        context,
        ..Default::default()
    };
    Ok(match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &options).await?
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    })
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
