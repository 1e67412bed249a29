//! `git-merge-pr`: merges an open pull request. Output `commit`: the merge
//! commit. A pull request the host will not merge yet fails the step, or,
//! with `wait: true`, keeps it Running and tries again on the next event
//! for the pull request or after `pollInterval`. A conflict fails it either
//! way, naming the files: waiting will not resolve it.

use std::time::Duration;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::pull_request::{
    PULL_REQUEST_STEP_DEFAULTS, failed, host, host_error, on_pull_request, poll_interval,
    scratch_dir,
};
use super::repository::{access, blocking};
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal};
use crate::git;
use crate::git::host::{GitHost, HostError, MergeOutcome, Provider};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "git-merge-pr";

/// Kargo's default retry interval while a pull request is not mergeable.
const DEFAULT_POLL: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(rename = "repoURL")]
    repo_url: String,
    provider: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    pr_number: i64,
    merge_method: Option<String>,
    #[serde(default)]
    wait: bool,
    poll_interval: Option<String>,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .with_defaults(PULL_REQUEST_STEP_DEFAULTS)
        .config::<Config>()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    let config: Config = match parse_config(ctx.config) {
        Ok(config) => config,
        Err(e) => return StepRun::done(Err(e)),
    };
    on_pull_request(
        ctx,
        &config.repo_url,
        config.pr_number,
        config.wait,
        |number| merge(ctx, &config, number),
    )
    .await
}

async fn merge(
    ctx: &StepContext<'_>,
    config: &Config,
    number: u64,
) -> Result<StepResult, StepError> {
    let poll = poll_interval(ctx, config.poll_interval.as_deref(), DEFAULT_POLL)?;
    let host = host(
        ctx,
        &config.repo_url,
        config.provider.as_deref(),
        config.insecure_skip_tls_verify,
    )
    .await?;
    let merge_method = config.merge_method.as_deref().filter(|m| !m.is_empty());
    let outcome = match host.merge(number, merge_method).await {
        Ok(outcome) => outcome,
        Err(HostError::Unmergeable(why)) => return Ok(failed(why)),
        Err(e) => return Err(host_error(e)),
    };
    match outcome {
        MergeOutcome::Merged(pr) => {
            let commit = pr.merge_commit.clone().ok_or_else(|| {
                terminal(format!(
                    "pull request {number} is merged but the host names no merge commit"
                ))
            })?;
            Ok(StepResult::succeeded_with(json!({ "commit": commit })))
        }
        MergeOutcome::NotReady(why) => {
            let conflicts = conflicts(ctx, config, &host, number).await?;
            if !conflicts.is_empty() {
                return Ok(failed(format!(
                    "pull request {number} conflicts with its target branch in {}; resolve the conflicts, or close it and promote again",
                    conflicts.join(", ")
                )));
            }
            if !config.wait {
                return Ok(failed(format!("{why}, and wait is false")));
            }
            let mut result = StepResult::new(StepStatus::Running);
            result.message = Some(why);
            result.poll_after = poll.or(Some(DEFAULT_POLL));
            Ok(result)
        }
    }
}

/// The files a pull request the host calls unmergeable conflicts in.
/// Gitea reports a conflict and a conflict check still running alike, so
/// the merge is tried in memory on the branches' heads.
async fn conflicts(
    ctx: &StepContext<'_>,
    config: &Config,
    host: &GitHost,
    number: u64,
) -> Result<Vec<String>, StepError> {
    if host.provider() != Provider::Gitea {
        return Ok(Vec::new());
    }
    let pr = host.get(number).await.map_err(host_error)?;
    let access = access(ctx, &config.repo_url, config.insecure_skip_tls_verify).await?;
    let dir = scratch_dir(ctx, &format!("merge-pr-{number}"))?;
    let url = config.repo_url.clone();
    blocking(move || {
        let result = (|| {
            let (repo, heads) = git::fetch_branches(
                &url,
                &dir,
                &access,
                &[pr.base_branch.as_str(), pr.head_branch.as_str()],
                false,
            )?;
            match (&heads[0], &heads[1]) {
                (Some(base), Some(head)) => git::merge_conflicts(&repo, base.commit, head.commit),
                _ => Ok(Vec::new()),
            }
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    })
    .await
}
