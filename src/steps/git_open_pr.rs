//! `git-open-pr`: opens a pull request from `sourceBranch` into
//! `targetBranch`. Output `pr.id`, `pr.url` (and `prNumber`, as Kargo once
//! named it). Skipped when the two branches
//! hold the same files.
//!
//! Run again (after a restart, or with the status write lost), it adopts
//! the pull request it opened before: one from the same branch into the
//! same target whose head is the branch's current commit, open or merged,
//! instead of opening a second.

use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::pull_request::{host, host_error, pr_output, scratch_dir};
use super::repository::{access, blocking};
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal};
use crate::git::host::{NewPullRequest, PullRequest};
use crate::git::{self, BranchHead};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "git-open-pr";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(rename = "repoURL")]
    repo_url: String,
    provider: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    source_branch: String,
    target_branch: String,
    /// Deprecated in Kargo and a no-op there: accepted, ignored.
    #[serde(default)]
    #[allow(dead_code)]
    create_target_branch: bool,
    title: Option<String>,
    description: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

pub fn step() -> BuiltinStep {
    // Its scratch clone is removed before it returns: losing the work
    // directory costs it nothing.
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed()).config::<Config>()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(open(ctx).await)
}

async fn open(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    for (field, value) in [
        ("repoURL", &config.repo_url),
        ("sourceBranch", &config.source_branch),
        ("targetBranch", &config.target_branch),
    ] {
        if value.trim().is_empty() {
            return Err(terminal(format!("config.{field}: must not be empty")));
        }
    }
    // Opened on an earlier run whose output was recorded.
    if let Some(previous) = ctx.previous_output
        && previous.pointer("/pr/id").is_some()
    {
        return Ok(StepResult::succeeded_with(previous.clone()));
    }
    let host = host(
        ctx,
        &config.repo_url,
        config.provider.as_deref(),
        config.insecure_skip_tls_verify,
    )
    .await?;
    let [source, target] = branch_heads(ctx, &config).await?;
    let source = source.ok_or_else(|| {
        terminal(format!(
            "config.sourceBranch: branch {:?} does not exist in {}",
            config.source_branch,
            git::redact_url(&config.repo_url)
        ))
    })?;
    let target = target.ok_or_else(|| {
        terminal(format!(
            "config.targetBranch: branch {:?} does not exist in {} (git-open-pr does not create it)",
            config.target_branch,
            git::redact_url(&config.repo_url)
        ))
    })?;
    let existing = host
        .list(&config.source_branch, &config.target_branch)
        .await
        .map_err(host_error)?;
    if let Some(pr) = adoptable(existing, &source.commit.to_string()) {
        return Ok(opened(&pr));
    }
    if source.tree == target.tree {
        let mut result = StepResult::new(StepStatus::Skipped);
        result.message = Some(format!(
            "{} and {} hold the same files: no pull request to open",
            config.source_branch, config.target_branch
        ));
        return Ok(result);
    }
    let (title, body) = title_and_body(&config, &source.message);
    let pr = host
        .open(&NewPullRequest {
            head: &config.source_branch,
            base: &config.target_branch,
            title: &title,
            body: &body,
            labels: &config.labels,
        })
        .await
        .map_err(host_error)?;
    Ok(opened(&pr))
}

/// `pr.id` and `pr.url`, and `prNumber`, the name pipelines written for
/// Kargo before `pr` existed still read.
fn opened(pr: &PullRequest) -> StepResult {
    StepResult::succeeded_with(json!({ "pr": pr_output(pr, false), "prNumber": pr.number }))
}

/// The heads of the source and target branches, fetched shallowly into a
/// scratch repository of the work directory.
async fn branch_heads(
    ctx: &StepContext<'_>,
    config: &Config,
) -> Result<[Option<BranchHead>; 2], StepError> {
    let access = access(ctx, &config.repo_url, config.insecure_skip_tls_verify).await?;
    let dir = scratch_dir(ctx, &format!("open-pr-{}", scratch_name(ctx.alias)))?;
    let url = config.repo_url.clone();
    let branches = [config.source_branch.clone(), config.target_branch.clone()];
    blocking(move || {
        let result = git::fetch_branches(
            &url,
            &dir,
            &access,
            &[branches[0].as_str(), branches[1].as_str()],
            true,
        );
        let _ = std::fs::remove_dir_all(&dir);
        let (_, mut heads) = result?;
        let target = heads.pop().flatten();
        let source = heads.pop().flatten();
        Ok([source, target])
    })
    .await
}

fn scratch_name(alias: &str) -> String {
    alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The pull request to take as the one this step would open: from the same
/// branch at the same head, open before merged, newest first; never one
/// closed without merge.
fn adoptable(prs: Vec<PullRequest>, head: &str) -> Option<PullRequest> {
    let mut candidates: Vec<PullRequest> = prs
        .into_iter()
        .filter(|pr| pr.head_sha == head && (pr.open || pr.merged))
        .collect();
    // Already newest first: a stable sort keeps that within each group.
    candidates.sort_by_key(|pr| !pr.open);
    candidates.into_iter().next()
}

/// The title and description: as configured, or the source head's commit
/// message (its first line the title, the rest the description).
fn title_and_body(config: &Config, message: &str) -> (String, String) {
    let (first, rest) = message
        .trim()
        .split_once('\n')
        .unwrap_or((message.trim(), ""));
    match (&config.title, &config.description) {
        (Some(title), Some(description)) => (title.clone(), description.clone()),
        (Some(title), None) => (title.clone(), message.trim().to_string()),
        (None, Some(description)) => (first.trim().to_string(), description.clone()),
        (None, None) => (first.trim().to_string(), rest.trim().to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pr(number: u64, head: &str, open: bool, merged: bool, created: &str) -> PullRequest {
        PullRequest {
            number,
            head_sha: head.into(),
            open,
            merged,
            created_at: created.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_open_pull_request_at_the_same_head_is_adopted_before_a_merged_one() {
        let prs = vec![
            pr(3, "abc", false, true, "2026-11-29T10:02:00Z"),
            pr(2, "abc", true, false, "2026-11-29T10:01:00Z"),
        ];
        assert_eq!(adoptable(prs, "abc").map(|p| p.number), Some(2));
    }

    #[test]
    fn a_closed_unmerged_or_other_head_pull_request_is_not_adopted() {
        let prs = vec![
            pr(3, "abc", false, false, "2026-11-29T10:02:00Z"),
            pr(2, "old", true, false, "2026-11-29T10:01:00Z"),
        ];
        assert_eq!(adoptable(prs, "abc"), None);
    }

    #[test]
    fn the_title_and_description_come_from_the_head_commit_unless_configured() {
        let config: Config = serde_json::from_value(json!({
            "repoURL": "https://github.com/a/b", "sourceBranch": "s", "targetBranch": "t"
        }))
        .unwrap();
        let (title, body) = title_and_body(&config, "Promote v2 to prod\n\nimage: app:v2\n");
        assert_eq!(
            (title.as_str(), body.as_str()),
            ("Promote v2 to prod", "image: app:v2")
        );
        let config: Config = serde_json::from_value(json!({
            "repoURL": "https://github.com/a/b", "sourceBranch": "s", "targetBranch": "t",
            "title": "Deploy to prod"
        }))
        .unwrap();
        let (title, body) = title_and_body(&config, "Promote v2\n\nimage: app:v2");
        assert_eq!(
            (title.as_str(), body.as_str()),
            ("Deploy to prod", "Promote v2\n\nimage: app:v2")
        );
    }
}
