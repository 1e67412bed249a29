//! What the git steps share: finding a remote's credentials among the
//! Promotion's Secrets (`helm-update-chart` finds a chart repository's
//! the same way), running libgit2 off the async runtime, and turning its
//! errors into step errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};

use super::{StepContext, api_error, retryable, terminal};
use crate::git::{self, Access, credentials};
use crate::promotion::engine::StepError;

/// Whoever commits when neither the clone nor the commit names an author.
pub fn default_author() -> git::Author {
    git::Author {
        name: "Barge".to_string(),
        email: "no-reply@barge.dev".to_string(),
    }
}

/// How to reach `url`: the credentials of the Promotion's namespace's
/// Secret that matches it (if any), and the TLS choice.
pub async fn access(
    ctx: &StepContext<'_>,
    url: &str,
    insecure_skip_tls_verify: bool,
) -> Result<Access, StepError> {
    if url.starts_with("file://") || !url.contains("://") {
        return Ok(Access {
            credentials: None,
            insecure_skip_tls_verify,
        });
    }
    Ok(Access {
        credentials: find_credentials(ctx, "git", url).await?,
        insecure_skip_tls_verify,
    })
}

/// The credentials for `url` among the Promotion's namespace's Secrets
/// labelled `cred_type` (`git`, `helm`) with Barge's or Kargo's label.
pub async fn find_credentials(
    ctx: &StepContext<'_>,
    cred_type: &str,
    url: &str,
) -> Result<Option<credentials::Credentials>, StepError> {
    let secrets = credential_secrets(ctx, cred_type).await?;
    select_credentials(&secrets, url)
}

/// The Promotion's namespace's Secrets labelled `cred_type` with Barge's or
/// Kargo's label (one of a name once): their names and decoded data.
pub async fn credential_secrets(
    ctx: &StepContext<'_>,
    cred_type: &str,
) -> Result<Vec<(String, BTreeMap<String, String>)>, StepError> {
    labelled_secrets(&ctx.services.client, ctx.subject.namespace, cred_type)
        .await
        .map_err(|e| api_error(format_args!("listing {cred_type} credentials Secrets"), &e))
}

/// The Secrets of `namespace` labelled `cred_type` (`git`, `helm`,
/// `generic`) with Barge's or Kargo's label, each once: names and data
/// decoded as text.
pub async fn labelled_secrets(
    client: &Client,
    namespace: &str,
    cred_type: &str,
) -> Result<Vec<(String, BTreeMap<String, String>)>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut found: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for label in [credentials::LABEL, credentials::KARGO_LABEL] {
        let selector = format!("{label}={cred_type}");
        for secret in secrets
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            let name = secret.metadata.name.clone().unwrap_or_default();
            if found.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            found.push((name, data));
        }
    }
    Ok(found)
}

/// The credentials for `url` among `secrets` (as `credential_secrets`
/// lists them).
pub fn select_credentials(
    secrets: &[(String, BTreeMap<String, String>)],
    url: &str,
) -> Result<Option<credentials::Credentials>, StepError> {
    let candidates: Vec<credentials::CredentialSecret<'_>> = secrets
        .iter()
        .map(|(name, data)| credentials::CredentialSecret { name, data })
        .collect();
    credentials::select(url, &candidates).map_err(|e| terminal(e.to_string()))
}

/// How a remote's working tree at `path` is reached again by a later step.
pub async fn access_of_tree(ctx: &StepContext<'_>, path: PathBuf) -> Result<Access, StepError> {
    let (url, insecure) = blocking(move || {
        let repo = git::open(&path)?;
        git::access_of(&repo)
    })
    .await?;
    access(ctx, &url, insecure).await
}

/// Runs libgit2 work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> git::Result<T> + Send + 'static,
) -> Result<T, StepError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(step_error),
        Err(e) => Err(retryable(format!("git work stopped: {e}"))),
    }
}

pub fn step_error(e: git::Error) -> StepError {
    if e.is_terminal() {
        terminal(e.to_string())
    } else {
        retryable(e.to_string())
    }
}

/// The directory of a step's bare clone: one per `git-clone` step, named
/// by its alias, so that the step run again replaces its own clone.
pub fn clone_dir(ctx: &StepContext<'_>) -> PathBuf {
    // Injective, so that two aliases never share a clone.
    let name: String = ctx
        .alias
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect();
    ctx.services
        .work_dirs
        .repositories_of(ctx.subject.promotion_uid)
        .join(name)
}
