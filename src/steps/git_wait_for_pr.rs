//! `git-wait-for-pr`: waits until a pull request is merged (Succeeded,
//! output `commit`: the merge commit) or closed without merge (Failed).
//! Output `pr` (`id`, `url`, `open`, `merged`) in every state.
//!
//! The wait is recorded in `status.awaiting`; a pull-request event from
//! the namespace's webhook receiver wakes it. It polls the host as a
//! backstop: every `pollInterval`, or, without one, every 30 s when no
//! receiver reports pull requests for the namespace, and on the
//! controller's backstop when one does.

use std::time::Duration;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::pull_request::{
    PULL_REQUEST_STEP_DEFAULTS, failed, host, host_error, on_pull_request, poll_interval, pr_output,
};
use super::{BuiltinStep, StepContext, StepRun, parse_config};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "git-wait-for-pr";

/// Kargo's default poll when nothing else reports the pull request.
const DEFAULT_POLL: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(rename = "repoURL")]
    repo_url: String,
    provider: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    pr_number: i64,
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
    on_pull_request(ctx, &config.repo_url, config.pr_number, true, |number| {
        look(ctx, &config, number)
    })
    .await
}

async fn look(
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
    let pr = host.get(number).await.map_err(host_error)?;
    let mut output = json!({ "pr": pr_output(&pr, true) });
    if pr.open {
        let mut result = StepResult::new(StepStatus::Running);
        result.message = Some(format!(
            "waiting for pull request {number} ({}) to be merged",
            pr.url
        ));
        result.output = Some(output);
        result.poll_after = poll;
        return Ok(result);
    }
    if !pr.merged {
        let mut result = failed(format!(
            "pull request {number} ({}) was closed without being merged",
            pr.url
        ));
        result.output = Some(output);
        return Ok(result);
    }
    if let Some(commit) = &pr.merge_commit {
        output["commit"] = json!(commit);
    }
    Ok(StepResult::succeeded_with(output))
}
