//! `argocd-double`: runs the Argo CD application-controller double against a
//! cluster (the sandbox's control plane, or any other).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use barge_argocd_double::{Double, DoubleConfig, HealthAfterSync, install_crd};
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::info;

/// An Argo CD application-controller double: syncs `argoproj.io`
/// Applications as Argo CD would, scripted by `double.barge.dev/*`
/// annotations.
#[derive(Debug, Parser)]
#[command(name = "argocd-double", version)]
struct Args {
    /// Kubeconfig to use; default: $KUBECONFIG, ~/.kube/config or in-cluster.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace whose Applications to sync.
    #[arg(
        long,
        short = 'n',
        default_value = "argocd",
        conflicts_with = "all_namespaces"
    )]
    namespace: String,
    /// Sync Applications in every namespace.
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// Default time a sync takes (Go duration), unless an Application's
    /// `double.barge.dev/sync-delay` says otherwise.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    sync_delay: Duration,
    /// Default health after a successful sync.
    #[arg(long, default_value = "progressing-then-healthy", value_parser = parse_health)]
    health_after_sync: HealthAfterSync,
    /// Periodic resync (Go duration); off by default.
    #[arg(long, value_parser = parse_duration)]
    resync: Option<Duration>,
    /// Apply the Application CRD and wait until it is Established first.
    #[arg(long)]
    install_crd: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    barge_argocd_double::knobs::parse_duration(text)
}

fn parse_health(text: &str) -> Result<HealthAfterSync, String> {
    let annotations = [(
        barge_argocd_double::knobs::HEALTH_AFTER_SYNC.to_string(),
        text.to_string(),
    )]
    .into();
    let (knobs, problems) =
        barge_argocd_double::Knobs::from_annotations(&annotations, &DoubleConfig::default());
    match problems.into_iter().next() {
        Some((_, problem)) => Err(problem),
        None => Ok(knobs.health_after_sync),
    }
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let client = client(args.kubeconfig.as_ref()).await?;
    if args.install_crd {
        install_crd(client.clone(), Duration::from_secs(60))
            .await
            .context("installing the Application CRD")?;
        info!(crd = barge_argocd_double::CRD_NAME, "CRD established");
    }
    let config = DoubleConfig {
        namespace: (!args.all_namespaces).then(|| args.namespace.clone()),
        sync_delay: args.sync_delay,
        health_after_sync: args.health_after_sync,
        resync: args.resync,
        ..DoubleConfig::default()
    };
    let double = Double::new(client, config);
    tokio::select! {
        result = double.run() => result?,
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl-C")?;
            info!("interrupted; stopping");
        }
    }
    Ok(())
}
