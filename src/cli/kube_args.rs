//! The flags that say which cluster and namespace, spelled as kubectl's.

use std::path::PathBuf;

use clap::Args;

use super::error::CliError;

/// `--kubeconfig`, `--context` and `-n/--namespace`, shared by every
/// command that talks to the cluster.
#[derive(Clone, Debug, Default, Args)]
pub struct KubeArgs {
    /// Kubeconfig to use; without it, $KUBECONFIG or ~/.kube/config (or the
    /// in-cluster configuration).
    #[arg(long, env = "BARGE_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use; without it, the current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (the Kargo project); without it, the context's, else
    /// "default".
    #[arg(short = 'n', long, alias = "project")]
    pub namespace: Option<String>,
}

/// A client and the namespace commands act in.
pub struct Target {
    pub client: kube::Client,
    pub namespace: String,
}

impl KubeArgs {
    /// The client these flags name and the namespace to act in.
    pub async fn connect(&self) -> Result<Target, CliError> {
        let config = self.config().await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok(Target {
            client: kube::Client::try_from(config)?,
            namespace,
        })
    }

    async fn config(&self) -> Result<kube::Config, CliError> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        Ok(match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let file = kube::config::Kubeconfig::read_from(path)?;
                kube::Config::from_custom_kubeconfig(file, &options).await?
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
            // Only here may the in-cluster configuration be used.
            (None, None) => kube::Config::infer().await?,
        })
    }
}
