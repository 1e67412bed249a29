//! What `git-open-pr`, `git-wait-for-pr` and `git-merge-pr` share: the
//! repository's host reached with the credentials the git steps use, the
//! pull request as an output, and the wait on it.

use std::time::Duration;

use serde_json::{Value, json};

use super::repository::find_credentials;
use super::{StepContext, StepRun, config_duration, retryable, terminal};
use crate::await_index::AwaitTarget;
use crate::git::host::{GitHost, HostError, PullRequest};
use crate::promotion::engine::{StepDefaults, StepError, StepResult, StepStatus};

/// A wait on a pull request can last days: a host briefly down or
/// throttling (errors in a row, retried with backoff up to a minute apart,
/// about half an hour in all) does not end it. `retry.errorThreshold`
/// overrides this.
pub const PULL_REQUEST_STEP_DEFAULTS: StepDefaults = StepDefaults {
    timeout: None,
    error_threshold: 30,
};

/// Whether a run leaves the step waiting on its pull request: Running, or
/// failed in a way the next run may not.
fn still_waiting(result: &Result<StepResult, StepError>) -> bool {
    match result {
        Ok(r) => r.status == StepStatus::Running,
        Err(e) => !e.terminal,
    }
}

/// The shortest poll a step may ask for, as Kargo bounds it.
pub const MIN_POLL: Duration = Duration::from_secs(10);

/// The host of `repo_url`, with the token of the git credentials Secret
/// that matches it.
pub async fn host(
    ctx: &StepContext<'_>,
    repo_url: &str,
    provider: Option<&str>,
    insecure_skip_tls_verify: bool,
) -> Result<GitHost, StepError> {
    let credentials = find_credentials(ctx, "git", repo_url).await?;
    GitHost::new(
        repo_url,
        provider,
        credentials.as_ref(),
        insecure_skip_tls_verify,
    )
    .map_err(host_error)
}

pub fn host_error(e: HostError) -> StepError {
    if e.is_retryable() {
        retryable(e.to_string())
    } else {
        terminal(e.to_string())
    }
}

/// The wait on pull request `number` of `repo_url`, reported by the
/// Promotion's namespace's webhook receivers.
fn awaiting(ctx: &StepContext<'_>, repo_url: &str, number: u64) -> AwaitTarget {
    AwaitTarget::PullRequest {
        namespace: ctx.subject.namespace.to_string(),
        repo_url: repo_url.to_string(),
        number,
    }
}

/// Runs `act` on pull request `pr_number` of `repo_url` (checked first).
/// A step that `waits` on it says so before `act` looks, so that an event
/// from then on wakes the Promotion, and keeps waiting on it while `act`
/// leaves the step Running or retrying.
pub async fn on_pull_request<F>(
    ctx: &StepContext<'_>,
    repo_url: &str,
    pr_number: i64,
    waits: bool,
    act: impl FnOnce(u64) -> F,
) -> StepRun
where
    F: std::future::Future<Output = Result<StepResult, StepError>>,
{
    let number = match self::pr_number(pr_number) {
        Ok(n) => n,
        Err(e) => return StepRun::done(Err(e)),
    };
    let target = awaiting(ctx, repo_url, number);
    if waits {
        ctx.register_waits(std::slice::from_ref(&target));
    }
    let result = act(number).await;
    let awaiting = if waits && still_waiting(&result) {
        vec![target]
    } else {
        Vec::new()
    };
    StepRun { result, awaiting }
}

/// How long a waiting step goes without looking when nothing wakes it:
/// the step's `pollInterval` (at least [`MIN_POLL`]); without one, only
/// the controller's backstop when a webhook receiver reports pull requests
/// for the namespace, else `default`.
pub fn poll_interval(
    ctx: &StepContext<'_>,
    configured: Option<&str>,
    default: Duration,
) -> Result<Option<Duration>, StepError> {
    Ok(match config_duration(configured, "pollInterval")? {
        Some(interval) => Some(interval.max(MIN_POLL)),
        None if ctx.services.receivers.serve(ctx.subject.namespace) => None,
        None => Some(default),
    })
}

/// A scratch repository for a step's look at the branches, beside the
/// Promotion's clones rather than in its work directory (which it would
/// otherwise create, hiding that earlier steps' files were lost); the
/// step removes it before it returns.
pub fn scratch_dir(ctx: &StepContext<'_>, name: &str) -> Result<std::path::PathBuf, StepError> {
    let parent = ctx
        .services
        .work_dirs
        .repositories_of(ctx.subject.promotion_uid);
    std::fs::create_dir_all(&parent)
        .map_err(|e| retryable(format!("scratch directory {}: {e}", parent.display())))?;
    Ok(parent.join(format!("scratch-{name}")))
}

/// The step ends Failed (not Errored): the pull request went a way the
/// Promotion cannot continue from, as Kargo reports it.
pub fn failed(message: String) -> StepResult {
    let mut result = StepResult::new(StepStatus::Failed);
    result.message = Some(message);
    result
}

/// `prNumber`, which must be a positive integer.
fn pr_number(value: i64) -> Result<u64, StepError> {
    u64::try_from(value).ok().filter(|n| *n > 0).ok_or_else(|| {
        terminal(format!(
            "config.prNumber: {value} is not a pull request number"
        ))
    })
}

/// Kargo's output of a pull request: `pr.id`, `pr.url`, and its state.
pub fn pr_output(pr: &PullRequest, with_state: bool) -> Value {
    let mut out = json!({ "id": pr.number, "url": pr.url });
    if with_state {
        out["open"] = json!(pr.open);
        out["merged"] = json!(pr.merged);
    }
    out
}
