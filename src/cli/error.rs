//! What can go wrong in a cluster command, said to the user on stderr.

/// An error of a command that talks to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("no cluster configuration: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("watch: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
    /// A user-facing explanation: an object missing, a choice impossible.
    #[error("{0}")]
    Refused(String),
    #[error("cannot print the output: {0}")]
    Output(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// A refusal with this explanation.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::Refused(message.into())
    }
}

/// Runs a command's async work on a fresh runtime; an error goes to stderr
/// as `<bin> <command>: <error>` and exits 1.
pub fn run<F>(command: &str, work: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<std::process::ExitCode, CliError>>,
{
    let result = tokio::runtime::Runtime::new()
        .map_err(CliError::from)
        .and_then(|rt| rt.block_on(work));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {command}: {e}", super::plugin::display_name());
            std::process::ExitCode::FAILURE
        }
    }
}
